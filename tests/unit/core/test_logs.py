"""Log lines in logfmt and JSON: one line per record, quoting, levels, errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from exporter.core.logs import LogfmtFormatter, configure


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream to log to; configure()'s changes to the exporter logger are undone after."""
    logger = logging.getLogger("exporter")
    level, propagate = logger.level, logger.propagate
    out = io.StringIO()
    yield out
    logger.handlers.clear()
    logger.setLevel(level)
    logger.propagate = propagate


def test_logfmt_quotes_only_what_needs_it(stream: io.StringIO) -> None:
    configure("info", "logfmt", stream)
    poller = logging.getLogger("exporter.polling.poller")
    poller.warning('target %s failing: "%s"', "org/k/m", "a\nb")
    line = stream.getvalue()
    assert line.count("\n") == 1  # one record, one line, even with a newline in the message
    assert " level=warn source=exporter.polling.poller " in line
    assert line.rstrip().endswith('msg="target org/k/m failing: \\"a\\nb\\""')


def test_json_lines_carry_errors(stream: io.StringIO) -> None:
    configure("debug", "json", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("exporter.x").exception("it broke")
    record = json.loads(stream.getvalue())
    assert record["level"] == "error" and record["msg"] == "it broke"
    assert "ValueError: boom" in record["err"]
    assert record["ts"].endswith("Z")


def test_level_filters(stream: io.StringIO) -> None:
    configure("warn", "logfmt", stream)
    logging.getLogger("exporter.x").info("not shown")
    logging.getLogger("exporter.x").error("shown")
    assert "not shown" not in stream.getvalue() and "shown" in stream.getvalue()


@pytest.mark.parametrize(("value", "shown"), [
    ("k\x1b[31mred", "k\\x1b[31mred"), ("a\rb", "a\\rb"), ("tab\there", "tab\\there"),
    ("nul\x00", "nul\\x00"), ("del\x7f", "del\\x7f"), ("ls\u2028", "ls\\u2028"),
    ("lone\ud800", "lone\\ud800"), ("bidi\u202e", "bidi\\u202e"),
])
def test_logfmt_escapes_control_characters_from_the_api(stream: io.StringIO, value: str,
                                                         shown: str) -> None:
    configure("info", "logfmt", stream)
    logging.getLogger("exporter.x").warning("key %s", value)
    line = stream.getvalue()
    assert line.endswith(f'msg="key {shown}"\n')
    assert line.isprintable() or line[:-1].isprintable()


def test_a_logfmt_line_is_exactly_time_level_source_message() -> None:
    record = logging.makeLogRecord({"name": "exporter.x", "levelname": "INFO", "msg": "up",
                                    "created": 1_700_064_000.5, "msecs": 500.0})
    assert LogfmtFormatter().format(record) == (
        "ts=2023-11-15T16:00:00.500Z level=info source=exporter.x msg=up")


def test_critical_is_logged_as_error(stream: io.StringIO) -> None:
    configure("info", "logfmt", stream)
    logging.getLogger("exporter.x").critical("down")
    assert " level=error source=exporter.x msg=down" in stream.getvalue()


@pytest.mark.parametrize(("value", "shown"), [
    ("", '""'),  # an empty value is still a value
    ("k\x1bred", '"k\\x1bred"'),  # a control character alone is quoted too
    ("X-Ray", "X-Ray"), ("a=b", '"a=b"'), ("a\\b", '"a\\\\b"'),
])
def test_logfmt_quotes_empty_and_unprintable_values(value: str, shown: str) -> None:
    record = logging.makeLogRecord({"name": "exporter.x", "levelname": "INFO", "msg": value})
    assert LogfmtFormatter().format(record).endswith(f" msg={shown}")


def test_logfmt_lines_carry_errors(stream: io.StringIO) -> None:
    configure("info", "logfmt", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("exporter.x").exception("it broke")
    assert stream.getvalue().startswith("ts=")
    assert ' msg="it broke" err="Traceback (most recent call last):\\n' in stream.getvalue()
    assert "ValueError: boom" in stream.getvalue()


def test_json_lines_keep_text_beyond_ascii_as_it_is(stream: io.StringIO) -> None:
    configure("info", "json", stream)
    logging.getLogger("exporter.x").info("模型 déjà")
    assert '"msg": "模型 déjà"' in stream.getvalue()


def test_exporter_lines_are_not_repeated_by_the_root_logger(stream: io.StringIO) -> None:
    root = io.StringIO()
    handler = logging.StreamHandler(root)
    logging.getLogger().addHandler(handler)
    try:
        configure("info", "logfmt", stream)
        logging.getLogger("exporter.x").warning("once")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "msg=once" in stream.getvalue()
    assert root.getvalue() == ""
