"""The OpenTelemetry GenAI token usage series (exporter.metrics.genai), line by line."""

from __future__ import annotations

from exporter.accounting.snapshot import Snapshot, TargetSnapshot
from exporter.config import MetricsConfig, Target
from exporter.core.usage import Totals
from exporter.metrics import genai
from exporter.metrics.exposition import target_labels
from exporter.metrics.shape import Shape

CHAT = Target("key-a", 'deep"seek', "org\\1", (("team", "search"),))
IMAGE = Target("key-b", "flux", "org-2")


def lines(snapshot: Snapshot, shape: Shape) -> list[str]:
    rows = [(t, target_labels(t.target, shape.drop)) for t in snapshot.targets]
    return list(genai.FAMILY.samples(genai.FAMILY, snapshot, rows, shape))


def test_sum_and_count_per_token_type_with_the_conventions_labels_first() -> None:
    snap = Snapshot(targets=(TargetSnapshot(CHAT, Totals(1200, 300, 1500, 7, 0)),))
    labels = ('gen_ai_operation_name="chat",gen_ai_provider_name="ucloud",'
              'gen_ai_system="ucloud",gen_ai_request_model="deep\\"seek",'
              'project_id="org\\\\1",key_id="key-a",team="search"')
    assert lines(snap, Shape(genai=True)) == [
        f'gen_ai_client_token_usage_sum{{{labels},gen_ai_token_type="input"}} 1200\n',
        f'gen_ai_client_token_usage_count{{{labels},gen_ai_token_type="input"}} 7\n',
        f'gen_ai_client_token_usage_sum{{{labels},gen_ai_token_type="output"}} 300\n',
        f'gen_ai_client_token_usage_count{{{labels},gen_ai_token_type="output"}} 7\n',
    ]


def test_provider_and_operation_are_the_shapes_and_escaped() -> None:
    shape = Shape.of(MetricsConfig(semconv="otel-genai", genai_provider_name='my "cloud"',
                                   genai_operation_name="text\\completion"))
    snap = Snapshot(targets=(TargetSnapshot(IMAGE, Totals(1, 2, 3, 4, 0)),))
    assert lines(snap, shape)[0] == (
        'gen_ai_client_token_usage_sum{gen_ai_operation_name="text\\\\completion",'
        'gen_ai_provider_name="my \\"cloud\\"",gen_ai_system="my \\"cloud\\"",'
        'gen_ai_request_model="flux",project_id="org-2",key_id="key-b",'
        'gen_ai_token_type="input"} 1\n')


def test_dropped_labels_are_left_out_and_model_takes_the_request_model_along() -> None:
    shape = Shape.of(MetricsConfig(semconv="otel-genai", drop_labels=("model", "key_id", "team")))
    snap = Snapshot(targets=(TargetSnapshot(CHAT, Totals(1, 2, 3, 4, 0)),))
    assert genai.genai_labels(snap.targets[0], shape) == (
        'gen_ai_operation_name="chat",gen_ai_provider_name="ucloud",gen_ai_system="ucloud",'
        'project_id="org\\\\1"')


def test_only_counting_targets_have_series_wherever_they_stand() -> None:
    behind = TargetSnapshot(CHAT, Totals(5, 5, 10, 1, 0), counting=False)
    counting = TargetSnapshot(IMAGE, Totals(1, 2, 3, 4, 0))
    got = lines(Snapshot(targets=(behind, counting, behind)), Shape(genai=True))
    assert len(got) == 4
    assert all('key_id="key-b"' in line for line in got)
