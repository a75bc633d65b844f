"""Series that differ only in dropped labels, made one (exporter.metrics.merge), line by line:
the text Prometheus reads, not only the numbers it parses out of it."""

from __future__ import annotations

from decimal import Decimal

from exporter.accounting.snapshot import KeyHealth, KeysSnapshot, Snapshot, TargetSnapshot
from exporter.config import Target
from exporter.core.usage import Totals
from exporter.metrics.exposition import render
from exporter.metrics.merge import merged
from exporter.metrics.shape import Shape

ALL = frozenset({"project_id", "key_id", "model"})


def lines(body: bytes, family: str) -> list[str]:
    """The sample lines of ``family`` (with no longer name starting with it)."""
    return [line for line in body.decode().splitlines()
            if line.startswith((f"{family}{{", f"{family} "))]


def two_targets(team: str = "x") -> Snapshot:
    a = TargetSnapshot(Target("key-a", "m", "p", (("team", team),)), Totals(10, 1, 11, 2, 0),
                       up=True, last_success=40.5, failures=(("timeout", 2),))
    b = TargetSnapshot(Target("key-b", "m", "p", (("team", team),)), Totals(20, 2, 22, 3, 0),
                       up=False, last_success=50.0, failures=(("timeout", 1),))
    return Snapshot(targets=(a, b))


def test_with_every_label_dropped_a_series_has_no_braces_and_whole_values_stay_whole() -> None:
    body = render(two_targets(), Shape(drop=ALL | {"team"}))
    assert lines(body, "uminfer_tokens_total") == ["uminfer_tokens_total 33"]  # not 33.0
    assert lines(body, "uminfer_up") == ["uminfer_up 0"]  # not uminfer_up{} 0
    assert lines(body, "uminfer_last_success_timestamp_seconds") == [
        "uminfer_last_success_timestamp_seconds 40.5"]  # the oldest, not rounded
    # The labels a family adds to the dropped ones come first, without a comma before them.
    assert 'uminfer_target_failures_total{reason="timeout"} 3' in lines(
        body, "uminfer_target_failures_total")


def test_a_kept_label_value_with_braces_and_commas_is_left_as_it_is() -> None:
    body = render(two_targets(team="a{,b} c"), Shape(drop=frozenset({"key_id"})))
    assert lines(body, "uminfer_tokens_total") == [
        'uminfer_tokens_total{project_id="p",model="m",team="a{,b} c"} 33']


def test_key_health_merges_by_a_key_name_with_spaces_braces_and_quotes() -> None:
    name = 'team {a} "b"'
    keys = KeysSnapshot((KeyHealth("p", "k1", name, 1, False, 200, Decimal(5)),
                         KeyHealth("p", "k2", name, 1, True, 100, Decimal("7.5"))), 1.0)
    body = render(Snapshot(keys=keys), Shape(drop=frozenset({"key_id"})))
    assert lines(body, "uminfer_key_info") == [
        'uminfer_key_info{project_id="p",key_name="team {a} \\"b\\"",status="1"} 2']
    assert lines(body, "uminfer_key_limit_amount") == [
        'uminfer_key_limit_amount{project_id="p",period="daily"} 12.5']
    body = render(Snapshot(keys=keys), Shape(drop=frozenset({"project_id", "key_id"})))
    assert lines(body, "uminfer_key_disabled") == ["uminfer_key_disabled 1"]  # no braces
    assert lines(body, "uminfer_key_expiry_timestamp_seconds") == [
        "uminfer_key_expiry_timestamp_seconds 100"]  # the earliest


def test_merged_keeps_the_order_of_first_appearance_and_each_familys_rule() -> None:
    drop = frozenset({"key_id"})
    up = ['uminfer_up{key_id="b",m="2"} 1\n', 'uminfer_up{key_id="a",m="1"} 1\n',
          'uminfer_up{key_id="c",m="2"} 0\n']
    assert merged("uminfer_up", up, drop) == ['uminfer_up{m="2"} 0\n', 'uminfer_up{m="1"} 1\n']
    catchup = ['uminfer_catchup_remaining_seconds{key_id="a"} 5\n',
               'uminfer_catchup_remaining_seconds{key_id="b"} 60\n']
    assert merged("uminfer_catchup_remaining_seconds", catchup, drop) == [
        "uminfer_catchup_remaining_seconds 60\n"]
    cost = ['uminfer_cost_total{key_id="a"} 0.1\n', 'uminfer_cost_total{key_id="b"} 0.2\n']
    assert merged("uminfer_cost_total", cost, drop) == ["uminfer_cost_total 0.3\n"]  # exact
