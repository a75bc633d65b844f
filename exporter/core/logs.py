"""Log output in logfmt or JSON, the two formats Prometheus exporters speak."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
FORMATS = ("logfmt", "json")


def _timestamp(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


def _level(record: logging.LogRecord) -> str:
    return {"WARNING": "warn", "CRITICAL": "error"}.get(record.levelname, record.levelname.lower())


def _logfmt_value(value: str) -> str:
    """Bare when plain, else quoted with every control character escaped: values may come
    from the API or a request line, and a raw ESC or CR must not reach a terminal or a
    log pipeline (it could forge a line or recolour one)."""
    if value and value.isprintable() and not any(c in value for c in ' ="\\'):
        return value
    text = value.translate(_ESCAPES)
    if not text.isprintable():  # beyond ASCII: line separators, bidi overrides, surrogates
        text = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text)
    return f'"{text}"'


_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n", ord("\r"): "\\r",
            ord("\t"): "\\t", **{c: f"\\x{c:02x}" for c in (*range(32), 127)
                                 if c not in (9, 10, 13)}}


def _fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, str]:
    """What every log line says, in order: time, level, source, message, and any error."""
    fields = {"ts": _timestamp(record), "level": _level(record),
              "source": record.name, "msg": record.getMessage()}
    if record.exc_info:
        fields["err"] = formatter.formatException(record.exc_info)
    return fields


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… source=… msg="…"``, one line per record."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(self, record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        return json.dumps(_fields(self, record), ensure_ascii=False)


def configure(level: str, fmt: str, stream: TextIO = sys.stderr) -> None:
    """Route the ``exporter`` loggers to ``stream`` in the chosen format."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    logger = logging.getLogger("exporter")
    logger.handlers[:] = [handler]
    logger.setLevel(LEVELS[level])
    logger.propagate = False
