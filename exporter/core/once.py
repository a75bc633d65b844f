"""Saying a thing once: a log line for the first of each kind, not one a second."""

from __future__ import annotations

import threading
from collections.abc import Hashable


class Once:
    """The kinds already said. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: set[Hashable] = set()

    def first(self, kind: Hashable) -> bool:
        """True the first time ``kind`` is given (the caller says it then), False after."""
        with self._lock:
            if kind in self._said:
                return False
            self._said.add(kind)
            return True
