"""The ``pricing`` and ``budgets`` config sections: exact prices and spending limits."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from exporter.config.reader import Reader, build, got, join, quote
from exporter.config.sections import required_string
from exporter.config.types import BudgetConfig, ModelPrice, PricingConfig
from exporter.core.safejson import has_surrogate

PRICING_KEYS = ("currency", "from_api", "models")
PRICE_KEYS = ("input", "output", "image", "request", "currency")
BUDGET_KEYS = ("name", "period", "project", "key", "model", "tokens", "cost", "currency")
PERIODS = ("daily", "monthly")
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{1,9}")
_DECIMAL = re.compile(r"[0-9]{1,18}(\.[0-9]{1,18})?")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def pricing_section(r: Reader, raw: object) -> PricingConfig:
    """The ``pricing`` section."""
    d = r.section("pricing", raw, PRICING_KEYS)
    written = _currency(r, "pricing.currency", d.get("currency"))
    currency = written or PricingConfig.currency
    models = []
    for model, item in r.mapping("pricing.models", d.get("models")).items():
        price = _price(r, join("pricing.models", model), model, item, currency)
        if price is not None:
            models.append(price)
    return build(PricingConfig, currency=currency, models=tuple(models), listed_currency=written,
                 from_api=r.flag("pricing.from_api", d.get("from_api")))


def _price(r: Reader, path: str, model: object, raw: object, currency: str) -> ModelPrice | None:
    if not isinstance(model, str) or not model or has_surrogate(model):
        r.fail(path, "a model name must be a non-empty string")
        return None
    d = r.section(path, raw, PRICE_KEYS)
    amounts = {name: amount(r, f"{path}.{name}", d.get(name))
               for name in ("input", "output", "image", "request")}
    own = _currency(r, f"{path}.currency", d.get("currency"))
    return build(ModelPrice, model=model, currency=own or currency, **amounts)


def amount(r: Reader, path: str, raw: object) -> Decimal | None:
    """A non-negative decimal amount, exactly as written (``0.27`` or ``"0.27"``)."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        r.fail(path, f"expected a decimal amount like 0.27, got {got(raw)}")
        return None
    text = r.string(path, raw) if isinstance(raw, str) else _number(r, path, raw)
    if text is None:
        return None
    if not _DECIMAL.fullmatch(text.strip()):
        r.fail(path, f"expected a decimal amount >= 0 like 0.27, got {quote(raw)}")
        return None
    try:
        return Decimal(text.strip())
    except InvalidOperation:  # pragma: no cover -- the pattern admits only valid decimals
        r.fail(path, f"not a decimal amount: {quote(raw)}")
        return None


def _number(r: Reader, path: str, raw: int | float) -> str | None:
    """A YAML number's decimal spelling: repr() of a float is its shortest one (0.27 stays
    0.27, not 0.27000000000000002). A float that does not hold what was written (more digits
    than a binary float keeps) is refused rather than rounded."""
    shortest = repr(raw)
    written = str(getattr(raw, "written", shortest)).replace("_", "")
    try:
        held = Decimal(written) == Decimal(shortest)
    except InvalidOperation:  # not a decimal spelling (.inf): the pattern refuses it next
        held = True
    if not held:
        r.fail(path, f"{written} has more digits than a YAML number holds (it reads as "
                     f"{shortest}): quote it to keep every digit, {quote(written)}")
        return None
    return shortest


def _currency(r: Reader, path: str, raw: object) -> str | None:
    text = r.string(path, raw)
    if text is not None and not _CURRENCY.fullmatch(text):
        r.fail(path, f"expected a currency code like USD or CNY, got {quote(text)}")
        return None
    return text


def budgets_section(r: Reader, raw: object, currency: str) -> tuple[BudgetConfig, ...]:
    """The ``budgets`` list; names must be unique (they are the ``budget`` label)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.fail("budgets", f"expected a list of budgets, got {got(raw)}")
        return ()
    budgets: list[BudgetConfig] = []
    first: dict[str, int] = {}  # each name's index in the file (not among the budgets kept)
    for i, item in enumerate(raw):
        budget = _budget(r, f"budgets[{i}]", item, currency)
        if budget is None:
            continue
        if budget.name in first:
            r.fail(f"budgets[{i}].name",
                   f"duplicate of budgets[{first[budget.name]}] ({quote(budget.name)})")
            continue
        first[budget.name] = i
        budgets.append(budget)
    return tuple(budgets)


def _budget(r: Reader, path: str, raw: object, currency: str) -> BudgetConfig | None:
    if not isinstance(raw, dict):
        r.fail(path, f"expected a mapping with name, period and tokens or cost, got {got(raw)}")
        return None
    d = r.section(path, raw, BUDGET_KEYS)
    name = required_string(r, f"{path}.name", d.get("name"))
    if name is not None and not _NAME.fullmatch(name):
        r.fail(f"{path}.name", "use 1-64 letters, digits, _ . : or -")
        name = None
    period = required_string(r, f"{path}.period", d.get("period"))
    if period is not None and period not in PERIODS:
        r.fail(f"{path}.period", f"expected daily or monthly, got {quote(period)}")
        period = None
    tokens = r.integer(f"{path}.tokens", d.get("tokens"), 1, 2**63 - 1)
    cost = amount(r, f"{path}.cost", d.get("cost"))
    if ("tokens" in d) == ("cost" in d):
        r.fail(path, "set exactly one of tokens or cost")
        return None
    selectors = {s: r.string(f"{path}.{s}", d.get(s)) for s in ("project", "key", "model")}
    own = _currency(r, f"{path}.currency", d.get("currency"))
    if name is None or period is None or (tokens is None and cost is None):
        return None
    return BudgetConfig(name=name, period=period, tokens=tokens, cost=cost,
                        currency=own or currency, **selectors)
