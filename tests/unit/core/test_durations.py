"""Prometheus duration syntax: parsing, errors that say what to fix, and formatting back."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.core.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("7d", 7 * 86400),
        ("1w", 7 * 86400),
        ("1y", 365 * 86400),
        ("0s", 0),
        ("1d12h", 129600),
        ("1y2w3d4h5m6s7ms", 365 * 86400 + 17 * 86400 + 4 * 3600 + 5 * 60 + 6.007),
        ("90m", 5400),
    ],
)
def test_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_the_largest_durations_prometheus_holds_are_taken() -> None:
    assert parse_duration("292471208y21366775807ms") == (2**63 - 1) / 1000  # int64 ms
    assert parse_duration("9" * 15 + "ms") == 999_999_999_999.999  # the most digits a part has


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration; write whole numbers with units (ms, s, m, h, d, w, y),"
             " like 30s, 5m or 1h30m"),
        ("-5m", 'invalid duration "-5m": negative durations are not allowed'),
        ("60", 'invalid duration "60": missing unit; did you mean 60s?'),
        ("1.5h", 'invalid duration "1.5h": fractions are not allowed; combine units,'
                 " like 1h30m or 1500ms"),
        ("5x", 'invalid duration "5x": unknown unit "x" (use ms, s, m, h, d, w or y)'),
        ("5M", 'invalid duration "5M": unknown unit "M" (use ms, s, m, h, d, w or y)'),
        ("30m1h", 'invalid duration "30m1h": units must go from largest to smallest, each once,'
                  " like 1h30m"),
        ("1h1h", 'invalid duration "1h1h": units must go from largest to smallest, each once,'
                 " like 1h30m"),
        ("1h30", 'invalid duration "1h30": missing unit after 30; write whole numbers with units'
                 " (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"),
        ("5 m", "invalid duration \"5 m\": unexpected ' '; write whole numbers with units"
                " (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"),
        ("h", "invalid duration \"h\": unexpected 'h'; write whole numbers with units"
              " (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"),
        ("9" * 16 + "y", f'invalid duration "{"9" * 16}y": too large'),
        ("300000000y", 'invalid duration "300000000y": too large'),
        # Prometheus's limit is int64 milliseconds: its largest duration is taken, not one more.
        ("292471208y21366775808ms", 'invalid duration "292471208y21366775808ms": too large'),
        # A number of 16 digits is refused before it is read, whatever its unit.
        ("1" + "0" * 15 + "ms", f'invalid duration "1{"0" * 15}ms": too large'),
        # An operator's own text is quoted as written (a micro sign typed for "us" stays one).
        ("5\u00b5s", 'invalid duration "5\u00b5s": unexpected \'\u00b5\'; write whole numbers with'
                   " units (ms, s, m, h, d, w, y), like 30s, 5m or 1h30m"),
    ],
)
def test_parse_rejects_with_actionable_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (90, "1m30s"),
        (3600, "1h"),
        (5400, "1h30m"),
        (86400, "1d"),
        (7 * 86400, "1w"),
        (90 * 86400, "90d"),  # not 12w6d: weeks and years only when exact
        (365 * 86400, "1y"),
        (366 * 86400, "366d"),
        (86400 + 0.001, "1d1ms"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [-1, float("inf"), float("nan")])
def test_format_rejects_what_no_duration_can_spell(seconds: float) -> None:
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        format_duration(seconds)


@given(st.integers(min_value=0, max_value=10 * 365 * 86_400_000))
def test_round_trip_from_milliseconds(ms: int) -> None:
    text = format_duration(ms / 1000)
    assert round(parse_duration(text) * 1000) == ms
    assert format_duration(parse_duration(text)) == text


@given(st.text(max_size=12))
def test_parse_only_raises_value_error(text: str) -> None:
    # Anything else (IndexError, OverflowError from a huge number...) would escape as a traceback.
    message = ""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        message = str(exc)
    else:
        assert seconds >= 0
        return
    assert message.startswith(("invalid duration", "empty duration"))
