"""Configs as the loader reads them, for tests that need a valid config and care about one or
two sections: ``parsed(pricing={...})`` over one account and the target ``k``/``m``."""

from __future__ import annotations

from typing import Any

from exporter.config import Config, parse_config

#: One account with throwaway keys (no call is ever signed with them).
API = {"public_key": "p", "private_key": "s"}


def targets(*keys: str, model: str = "m") -> list[dict[str, str]]:
    """Targets of these keys (``k`` alone by default), all of ``model``."""
    return [{"key": key, "model": model} for key in keys or ("k",)]


def parsed(**sections: Any) -> Config:
    """A config of ``sections`` (YAML-shaped) over one account and one target ``k``/``m``,
    checked as the loader checks a file (ConfigError when a section is wrong)."""
    return parse_config({"api": dict(API), "targets": targets(), **sections}, {}, ".")
