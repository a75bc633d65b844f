"""List-price units as the vendor writes them (``Pricing.Unit`` / ``UnitEn``), read exactly.

Prices are kept per million tokens and per image. A unit is understood only from a table of
spellings the vendor uses (per 1K / 1M tokens, per token, per image, and their Chinese forms,
with or without a currency in front); anything else is unknown, and the model stays unpriced
rather than priced by a guess off by a factor of a thousand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from exporter.cost.pricing import money

Kind = Literal["tokens", "image"]


@dataclass(frozen=True, slots=True)
class Unit:
    """What one list price buys: ``scale`` turns it into per million tokens (or per image)."""

    kind: Kind
    scale: Decimal


_PER_MILLION = Unit("tokens", Decimal(1))
_PER_IMAGE = Unit("image", Decimal(1))
#: The spellings understood, after normalisation (lower case, no spaces, no currency, no
#: leading "per", "/" or "每").
SPELLINGS: dict[str, Unit] = {
    **dict.fromkeys(("1mtokens", "1mtoken", "mtokens", "mtoken", "milliontokens",
                     "1milliontokens", "百万tokens", "百万token", "1百万tokens"), _PER_MILLION),
    **dict.fromkeys(("1ktokens", "1ktoken", "ktokens", "ktoken", "thousandtokens",
                     "1thousandtokens", "千tokens", "千token", "1千tokens"),
                    Unit("tokens", Decimal(1000))),
    **dict.fromkeys(("10ktokens", "万tokens", "万token", "1万tokens"),
                    Unit("tokens", Decimal(100))),
    **dict.fromkeys(("token", "tokens", "1token", "1tokens"), Unit("tokens", Decimal(1_000_000))),
    **dict.fromkeys(("image", "images", "1image", "张", "1张", "张图", "张图片", "幅", "1幅",
                     "picture", "pictures", "pic"), _PER_IMAGE),
}
_CURRENCY = re.compile(r"^(?:cny|rmb|usd|元|人民币|美元|¥|￥|\$)")
_LEAD = re.compile(r"^(?:/|per|每)")


def normalise(text: str) -> str:
    """``text`` lower-cased, without spaces, a leading currency or a leading "per"/"/"."""
    flat = "".join(text.lower().split()).replace("\uff0f", "/")  # fullwidth solidus
    previous = None
    while previous != flat:
        previous = flat
        flat = _LEAD.sub("", _CURRENCY.sub("", flat))
    return flat


#: Currency words a unit may carry, each with its code; longer words first (美元 holds 元).
_NAMED = (("人民币", "CNY"), ("美元", "USD"), ("元", "CNY"), ("￥", "CNY"), ("¥", "CNY"),
          ("rmb", "CNY"), ("cny", "CNY"), ("usd", "USD"), ("$", "USD"))


def named_currencies(text: object) -> set[str]:
    """The currency codes that the words in ``text`` name (none for anything but a string)."""
    flat = text.lower() if isinstance(text, str) else ""
    found = set()
    for word, code in _NAMED:
        if word in flat:
            found.add(code)
            flat = flat.replace(word, " ")
    return found


def read_currency(row: object, unit: object, unit_en: object) -> str | None:
    """The currency of a list price: the row's ``Currency``, else the one its units name (元,
    ¥, CNY, $, USD); "" when none is named; None when they name different ones (``USD`` beside
    ``元``): never guessed."""
    named = named_currencies(unit) | named_currencies(unit_en)
    if isinstance(row, str) and row.strip():
        named.add(row.strip().upper())
    if len(named) > 1:
        return None
    return next(iter(named), "")


def parse_unit(text: str) -> Unit | None:
    """The unit ``text`` names, or None when it is not a spelling the table knows."""
    return SPELLINGS.get(normalise(text))


def read_unit(unit: object, unit_en: object) -> Unit | str:
    """The unit of a ``Pricing`` object from ``Unit`` and ``UnitEn``, or why there is none:
    ``missing_unit`` (neither given), ``unknown_unit`` (one given and not understood) or
    ``conflicting_units`` (both understood, and they differ)."""
    given = [u for u in (unit, unit_en) if isinstance(u, str) and u.strip()]
    if not given:
        return "missing_unit"
    read = [parse_unit(u) for u in given]
    if any(r is None for r in read):
        return "unknown_unit"
    if len(set(read)) > 1:
        return "conflicting_units"
    found = read[0]
    assert found is not None  # checked above; mypy cannot see it through any()
    return found


def scale(unit: Unit, input_: Decimal, output: Decimal, image: Decimal
          ) -> tuple[Decimal, Decimal, Decimal] | str:
    """Prices per million input and output tokens and per image, from list prices in ``unit``;
    ``unit_mismatch`` when a price is for something the unit does not measure (token prices
    in a per-image unit, or the other way round)."""
    if unit.kind == "image":
        return "unit_mismatch" if input_ or output else (Decimal(0), Decimal(0), image)
    if image:
        return "unit_mismatch"
    with money():  # a list price may have 36 digits: the default 28 would round it
        return input_ * unit.scale, output * unit.scale, Decimal(0)
