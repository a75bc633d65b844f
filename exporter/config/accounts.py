"""The ``accounts`` section: several cloud accounts in one exporter, each like ``api``.

A single entry is read exactly as ``api:`` (no ``account`` label, identities unchanged); with
two or more every target names its account, series carry an ``account`` label, and ``api``
becomes their aggregate for the poll loop (each account keeps its own client, rate limit and
concurrency: they are separate quotas at the cloud).
"""

from __future__ import annotations

from dataclasses import replace

from exporter.config.reader import Reader, got, quote
from exporter.config.sections import api_section, required_string
from exporter.config.types import ACCOUNT_LABEL, AccountConfig, ApiConfig, Target


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


def aggregate(accounts: tuple[AccountConfig, ...]) -> ApiConfig:
    """What the poll loop plans with: the longest timeout, the summed concurrency and rate
    (unlimited if any account is), and the first account's endpoint for display."""
    apis = [a.api for a in accounts]
    rates = [api.rate_limit for api in apis]
    return ApiConfig(endpoint=apis[0].endpoint, timeout=max(api.timeout for api in apis),
                     max_concurrency=sum(api.max_concurrency for api in apis),
                     rate_limit=0.0 if 0 in rates else sum(rates))


def labelled(target: Target, several: bool) -> Target:
    """``target`` as polled: with several accounts its ``account`` label added, with one its
    account cleared (so nothing about it changes from the ``api:`` form)."""
    if not several:
        return replace(target, account="")
    return replace(target, labels=tuple(sorted((*target.labels, (ACCOUNT_LABEL,
                                                                  target.account)))))
