"""The UCloud request signature: SHA-1 over sorted, flattened parameters plus the private key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        # Never scientific notation: the gateway signs the decimal spelling.
        return format(Decimal(repr(value)), "f")
    return str(value)


def flatten(params: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """Flatten lists to ``Name.0``, ``Name.1`` and dicts to ``Name.Sub``; drop None values."""
    flat: dict[str, str] = {}
    for name, value in params.items():
        key = f"{prefix}{name}"
        if value is None:
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{key}."))
        elif isinstance(value, list | tuple):
            flat.update(flatten({str(i): v for i, v in enumerate(value)}, f"{key}."))
        else:
            flat[key] = _scalar(value)
    return flat


def signature(params: Mapping[str, str], private_key: str) -> str:
    """Signature of already-flattened ``params`` (excluding ``Signature`` itself)."""
    payload = "".join(f"{k}{params[k]}" for k in sorted(params) if k != "Signature")
    return hashlib.sha1((payload + private_key).encode("utf-8"), usedforsecurity=False).hexdigest()


def sign(params: Mapping[str, object], public_key: str, private_key: str) -> dict[str, str]:
    """Return the flattened parameters with ``PublicKey`` and ``Signature`` added."""
    flat = flatten({**params, "PublicKey": public_key})
    flat["Signature"] = signature(flat, private_key)
    return flat
