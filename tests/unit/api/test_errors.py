"""ApiError: RetCode classes and hints, metric labels, and the refused action named."""

from __future__ import annotations

from exporter.api.errors import ApiError, retcode_error

REFUSED = "this cloud does not serve the action"


def test_only_the_hint_of_a_161_is_rewritten_to_name_the_action() -> None:
    err = retcode_error(161, REFUSED)  # the API's own words quote the hint: kept as sent
    assert str(err.naming("GetUMInferAPIModel")) == (
        f"RetCode 161 (this cloud does not serve GetUMInferAPIModel): {REFUSED}")


def test_another_retcode_quoting_the_hint_is_left_alone() -> None:
    err = retcode_error(230, f"bad Model: {REFUSED}")
    assert err.naming("GetUMInferTokenUsage") is err
    plain = ApiError("http", f"HTTP 404 from gateway: {REFUSED}", http_status=404)
    assert plain.naming("GetUMInferTokenUsage") is plain
