"""Secrets masked in messages: a secret inside a longer one never leaves the longer one's rest.

(Named for what it tests: test_secrets.py is the end-to-end test of secrets in logs.)
"""

from __future__ import annotations

from exporter.core.secrets import mask_secrets

SHORT = "abcdefghijklmnop"  # 16 characters: masked wherever it appears
LONG = f"0{SHORT}9"  # sorts before SHORT as text, after it by length


def test_a_secret_holding_another_is_masked_whole_in_any_order() -> None:
    for secrets in ([SHORT, LONG], [LONG, SHORT]):
        assert mask_secrets(f"PrivateKey={LONG}&x", secrets, "*") == "PrivateKey=*&x"
        assert mask_secrets(f"key {SHORT} and {LONG}", secrets, "*") == "key * and *"
