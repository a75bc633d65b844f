"""Log lines in logfmt and JSON: one line per record, quoting, levels, errors."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from exporter.core.logs import configure


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger("exporter")
    level, propagate = logger.level, logger.propagate
    yield out
    # configure() stops propagation: left so, later tests' caplog would see no exporter record.
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
