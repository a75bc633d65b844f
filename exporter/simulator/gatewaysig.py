"""The gateway's own signature check, written from the API reference and not from the client.

The simulator must not verify signatures with ``exporter.api.signing``: a bug there would then sign
and check alike, and no end-to-end test could see it. This is a second, independent reading
of the algorithm (docs: reference ``api.md``, "Signature"); tests hold both to the vendor's
published vectors and to the vendor SDK's signer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal


def spell(value: object) -> str:
    """A value as the gateway signs it: true/false, whole floats as integers, never 1e-07."""
    if value is True or value is False:
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{Decimal(str(value)):f}"
    return str(value)


def flatten(params: Mapping[str, object]) -> dict[str, str]:
    """Nested JSON parameters as the gateway sees them: ``Name.0``, ``Name.Sub``; None dropped."""
    flat: dict[str, str] = {}
    pending: list[tuple[str, object]] = list(params.items())
    while pending:
        name, value = pending.pop()
        if isinstance(value, Mapping):
            pending.extend((f"{name}.{sub}", v) for sub, v in value.items())
        elif isinstance(value, list | tuple):
            pending.extend((f"{name}.{i}", v) for i, v in enumerate(value))
        elif value is not None:
            flat[name] = spell(value)
    return flat


def signature(params: Mapping[str, str], private_key: str) -> str:
    """Hex SHA-1 of each ``name + value`` but Signature, by code point, then the private key."""
    names = sorted(name for name in params if name != "Signature")
    text = "".join(name + params[name] for name in names) + private_key
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
