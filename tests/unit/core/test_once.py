"""Once: the first of each kind is said, later ones are not, whatever thread asks."""

from __future__ import annotations

import threading

from exporter.core.once import Once


def test_only_the_first_of_each_kind_is_first() -> None:
    once = Once()
    assert [once.first(k) for k in ("a", "b", "a", ("a", 1), ("a", 1))] == [
        True, True, False, True, False]


def test_many_threads_asking_at_once_get_one_first() -> None:
    once, start = Once(), threading.Barrier(8)
    firsts: list[bool] = []

    def ask() -> None:
        start.wait()
        firsts.extend(True for _ in range(1000) if once.first("kind"))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert firsts == [True]
