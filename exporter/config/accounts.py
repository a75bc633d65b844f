"""The ``accounts`` section: several cloud accounts in one exporter, each like ``api``.

A single entry is read exactly as ``api:`` (no ``account`` label, identities unchanged); with
two or more every target names its account and series carry an ``account`` label. Each account
keeps its own client, rate limit and concurrency (separate quotas at the cloud): nothing is
made up for them together (``Config.longest_timeout`` and the like say what is summed).
"""

from __future__ import annotations

from dataclasses import replace

from exporter.config.reader import Reader, got, quote
from exporter.config.sections import api_section, required_string
from exporter.config.types import ACCOUNT_LABEL, AccountConfig, Target


def accounts_section(r: Reader, raw: object, base_dir: str) -> tuple[AccountConfig, ...] | None:
    """The ``accounts`` list; None when absent (the single ``api`` form)."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        r.fail("accounts", f"expected a non-empty list of accounts, got {got(raw)}")
        return None
    accounts: list[AccountConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"accounts[{i}]"
        if not isinstance(item, dict):
            r.fail(path, f"expected a mapping with name, endpoint and keys, got {got(item)}")
            continue
        name = required_string(r, f"{path}.name", item.get("name"))
        api = api_section(r, item, base_dir, path, extra=("name",))
        if name is None:
            continue
        if name in seen:
            r.fail(f"{path}.name", f"duplicate of accounts[{seen[name]}].name {quote(name)}")
            continue
        seen[name] = i
        accounts.append(AccountConfig(name, api))
    return tuple(accounts)


def labelled(target: Target, several: bool) -> Target:
    """``target`` as polled: with several accounts its ``account`` label added, with one its
    account cleared (so nothing about it changes from the ``api:`` form)."""
    if not several:
        return replace(target, account="")
    return replace(target, labels=tuple(sorted((*target.labels, (ACCOUNT_LABEL,
                                                                  target.account)))))
