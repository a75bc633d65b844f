"""Secrets masked as values in messages, never as prose."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Secrets are masked as values, not as text: a secret shorter than _MIN_SECRET is no real key
# (a private key is 40 hex digits) and masking it would garble prose (a key "wrong" would turn
# "signature wrong" into "signature [redacted]"). Up to _ANYWHERE characters a secret is masked
# only as a whole token (not inside a longer word); from there on a chance match in prose is
# implausible, so it is masked wherever it appears, even glued to other text.
_MIN_SECRET = 8
_ANYWHERE = 16
_ALNUM = r"[^\W_]"

def mask_secrets(text: str, secrets: Iterable[str], replacement: str) -> str:
    """``text`` with each occurrence of a secret value replaced by ``replacement``.

    Secrets under 8 characters are left alone; those under 16 are masked only where they stand
    as a whole token (no letter or digit right before or after); longer ones everywhere.
    Longest first, so a secret that contains another is masked whole.
    """
    for secret in sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True):
        if len(secret) >= _ANYWHERE:
            text = text.replace(secret, replacement)
        else:
            token = re.compile(f"(?<!{_ALNUM}){re.escape(secret)}(?!{_ALNUM})")
            text = token.sub(lambda _: replacement, text)
    return text
