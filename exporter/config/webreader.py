"""Reads web-config values at dotted paths, collecting every problem instead of stopping."""

from __future__ import annotations

from exporter.config.reader import cut, render

_UNVERIFIED = ("not supported: Python's ssl cannot accept a client certificate without verifying"
               " it; use RequireAndVerifyClientCert with client_ca_file")
_REFUSED = {  # keys and values the toolkit knows, refused with a reason instead of "unknown"
    "rate_limit": "not supported by uminfer-exporter; rate-limit in a reverse proxy",
    "client_allowed_sans": "not supported by uminfer-exporter; use a dedicated client CA instead",
    "RequireAnyClientCert": _UNVERIFIED,
    "RequireClientCert": _UNVERIFIED,  # the toolkit's old spelling of RequireAnyClientCert
}


class Problems(list[str]):
    """Problems found so far, and readers that add to them instead of stopping."""

    def fail(self, path: str, message: str) -> None:
        """Record ``message`` against the dotted ``path`` ("" is the top level)."""
        self.append(f"{path or '(top level)'}: {message}")

    def section(self, path: str, raw: object, keys: tuple[str, ...]) -> dict[str, object]:
        """The known, non-null ``keys`` of a mapping; unknown and refused keys are problems."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail(path, f"expected a mapping, got {type(raw).__name__}")
            return {}
        for key in raw:
            where = f"{path}.{_key(key)}" if path else _key(key)
            if key in _REFUSED:
                self.fail(where, _REFUSED[key])
            elif key not in keys:
                self.fail(where, f"unknown key (expected one of: {', '.join(keys)})")
        return {k: v for k, v in raw.items() if k in keys and v is not None}

    def string(self, path: str, raw: object, secret: bool = False) -> str | None:
        """A string or None; a ``secret`` value is never echoed in the problem."""
        if raw is None or isinstance(raw, str):
            return raw
        shown = type(raw).__name__ if secret else f"{_shown(raw)} ({type(raw).__name__})"
        self.fail(path, f"expected a string, got {shown}")
        return None

    def choice(self, path: str, raw: object, allowed: tuple[str, ...]) -> str | None:
        """One of ``allowed``, or None after recording why not."""
        text = self.string(path, raw)
        if text is None or text in allowed:
            return text
        reason = f"must be one of {', '.join(allowed)}; got {_shown(text)}"
        self.fail(path, _REFUSED.get(text, reason))
        return None

    def strings(self, path: str, raw: object, allowed: tuple[str, ...]) -> list[str]:
        """The list's items that are among ``allowed``; every other item is a problem."""
        if not isinstance(raw, list):
            self.fail(path, f"expected a list, got {type(raw).__name__}")
            return []
        chosen = [self.choice(f"{path}[{i}]", item, allowed) for i, item in enumerate(raw)]
        return [item for item in chosen if item is not None]

    def flag(self, path: str, raw: object) -> bool | None:
        """A boolean or None."""
        if raw is None or isinstance(raw, bool):
            return raw
        self.fail(path, f"expected true or false, got {_shown(raw)}")
        return None


def _shown(value: object) -> str:
    """A value for a message: bounded however large it is (an alias bomb), one line, short."""
    return cut(repr(value[:100]) if isinstance(value, str) else render(value))


def _key(key: object) -> str:
    return key if isinstance(key, str) and len(key) <= 60 and key.isprintable() else _shown(key)
