"""ListUMInferAPIKey and GetUMInferAPIModel: signed calls and strict parsing.

The secret ``Key`` of each API key is never copied out of the decoded body: parsing reads a
fixed set of other fields, so no object built here can carry, log or export it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from exporter.api.client import ApiClient
from exporter.api.response import as_int, envelope, invalid
from exporter.config.types import ModelPrice
from exporter.core.amounts import TOTAL_DIGITS, TOTAL_PLACES, bounded
from exporter.core.labeltext import id_problem, label_text
from exporter.core.safejson import has_surrogate
from exporter.cost.units import read_currency, read_unit, scale

log = logging.getLogger(__name__)

LIST_KEYS = "ListUMInferAPIKey"
GET_MODELS = "GetUMInferAPIModel"
PAGE = 100  # the API's largest Limit
MAX_PAGES = 1000  # a server that never sends a short page must not loop us forever
MODEL_TYPES = (1, 2)  # text, image


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's public facts (deliberately no field for the secret)."""

    key_id: str
    name: str
    status: int
    disabled: bool
    granted_models: tuple[str, ...]
    expires: int | None = None  # Unix seconds; None: never (ExpireTime -1, 0 or absent)
    daily_limit: Decimal | None = None  # None: no limit (empty, null, or not positive)
    daily_used: Decimal | None = None  # None: not given, or not an amount
    monthly_limit: Decimal | None = None
    monthly_used: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ApiModel:
    """A model a key may call, with its list price when the API gave one it can read.

    ``unpriced`` says why a listed price was not taken (``unknown_unit``, ``missing_unit``,
    ``conflicting_units``, ``unit_mismatch``, ``out_of_range``, ``conflicting_currency``,
    ``missing_currency``); ``unit`` is what the API wrote (cut short), for the log. A price's
    currency is "" when neither the row nor its unit names one (see :func:`with_currency`).
    """

    name: str
    price: ModelPrice | None
    unpriced: str | None = None
    unit: str = ""


def parse_keys(body: object) -> list[ApiKey]:
    """The keys in a ListUMInferAPIKey answer; ApiError on an error or garbage. A key whose
    KeyId, or a granted model whose name, cannot be used as a label and sent back as it is
    (see :func:`id_problem`) is left out, said in one line per answer: one odd key must not
    cost the listing of every other."""
    rows = _rows(envelope(body), ("Data", "KeySet", "Keys"))
    skipped: list[str] = []
    keys = [key for i, row in enumerate(rows)
            if (key := _key(row, f"Data[{i}]", skipped)) is not None]
    if skipped:
        log.warning("%s: %d keys or granted models left out (%s first)", LIST_KEYS,
                    len(skipped), skipped[0])
    return keys


def parse_models(body: object) -> list[ApiModel]:
    """The models in a GetUMInferAPIModel answer (either known shape)."""
    rows = _rows(envelope(body), ("Models", "ModelList", "Data"))
    return [m for i, row in enumerate(rows) if (m := _model(row, f"Data[{i}]")) is not None]


def _rows(data: object, names: tuple[str, ...]) -> list[object]:
    """A list of rows: ``Data`` itself, or the one list inside it (the older shape)."""
    if data is None:
        return []
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list):
                return list(data[name])
    raise invalid("Data is neither a list nor an object holding one")


def _key(row: object, where: str, skipped: list[str]) -> ApiKey | None:
    if not isinstance(row, dict):
        raise invalid(f"{where} is not an object")
    key_id = _text(row, "KeyId", where, required=True)
    if (problem := id_problem(key_id)) is not None:
        skipped.append(f"{where}.KeyId {problem}")
        return None
    # Only named fields are read; messages give a field's type, never a value.
    expires = as_int(row.get("ExpireTime")) or -1  # not a number: no expiry series, no guess
    return ApiKey(
        key_id=key_id, name=label_text(_text(row, "Name", where)),
        status=_int(row, "Status", where), disabled=bool(_int(row, "ModelverseDisabled", where)),
        granted_models=_granted(row.get("GrantedModels"), where, skipped),
        expires=expires if expires > 0 else None,
        daily_limit=_limit(row.get("DailyLimitAmount")),
        daily_used=_quota_amount(row.get("DailyUsedAmount")),
        monthly_limit=_limit(row.get("MonthlyLimitAmount")),
        monthly_used=_quota_amount(row.get("MonthlyUsedAmount")))


def _quota_amount(value: object) -> Decimal | None:
    """A decimal string (in the account's currency) read exactly; None when absent or not an
    amount. Lenient on purpose: a quota field the exporter cannot read must not cost the
    listing that discovery and key health depend on; it only loses its own series."""
    if value is None or value == "":
        return None
    try:  # a float (not what the SDK documents) is read as the shortest decimal it prints
        return bounded(value, TOTAL_DIGITS, TOTAL_PLACES)
    except ValueError:
        return None


def _limit(value: object) -> Decimal | None:
    """A limit: None for no limit (empty, null, zero, negative or not an amount)."""
    amount = _quota_amount(value)
    return amount if amount else None


def _text(row: Mapping[str, object], name: str, where: str, *, required: bool = False) -> str:
    value = row.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise invalid(f"{where}.{name} is not a non-empty string ({type(value).__name__})")
    if required and has_surrogate(value):  # it is sent back to the API: it must encode
        raise invalid(f"{where}.{name} holds a lone surrogate")
    return value


def _int(row: Mapping[str, object], name: str, where: str) -> int:
    value = row.get(name, 0)
    if isinstance(value, bool):
        return int(value)  # flags such as ModelverseDisabled may come as booleans
    number = as_int(value)
    if number is None:
        raise invalid(f"{where}.{name} is not an integer ({type(value).__name__})")
    return number


def _granted(value: object, where: str, skipped: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in items:
        name = item.get("ServedModelName") or item.get("Name") if isinstance(item, dict) else item
        if not isinstance(name, str) or has_surrogate(name):
            raise invalid(f"{where}.GrantedModels holds a {type(name).__name__} that is not a "
                          "model name")
        names.extend(n.strip() for n in name.split(",") if n.strip())
    usable = []
    for name in names:  # each becomes a target's model label and is sent back as Model
        if (problem := id_problem(name)) is None:
            usable.append(name)
        else:
            skipped.append(f"{where}.GrantedModels: a model name {problem}")
    return tuple(usable)


def _model(row: object, where: str) -> ApiModel | None:
    if not isinstance(row, dict):
        raise invalid(f"{where} is not an object")
    name = row.get("ServedModelName") or row.get("Name")
    if not isinstance(name, str) or not name or id_problem(name) is not None:
        return None  # a model without a usable name cannot be matched to a target
    pricing = row.get("Pricing")
    if not isinstance(pricing, dict):
        return ApiModel(name, None)
    price = _price(name, pricing, where)
    written = [str(pricing[f]) for f in ("Unit", "UnitEn") if pricing.get(f)]
    if price == "conflicting_currency" and pricing.get("Currency"):
        written.append(f"Currency {pricing['Currency']}")
    unit = " / ".join(written)[:60]
    if isinstance(price, str):
        return ApiModel(name, None, price, unit)
    return ApiModel(name, price, None, unit)


def _price(model: str, pricing: Mapping[str, object], where: str) -> ModelPrice | str:
    """The list price per million tokens and per image, scaled by the unit the API names
    (``Unit``/``UnitEn``); a reason instead when the unit cannot be read or does not measure
    what is priced. All prices zero is free whatever the unit."""
    fields = (("input_", "Prompt"), ("output", "Completion"), ("image", "Image"))
    amounts = {field: _amount(pricing.get(api), f"{where}.Pricing.{api}") for field, api in fields}
    currency = read_currency(pricing.get("Currency"), pricing.get("Unit"), pricing.get("UnitEn"))
    if currency is None:
        return "conflicting_currency"
    currency = label_text(currency) if currency else currency
    if not any(amounts.values()):
        return ModelPrice(model, currency=currency)
    unit = read_unit(pricing.get("Unit"), pricing.get("UnitEn"))
    scaled = scale(unit, **amounts) if not isinstance(unit, str) else unit
    if isinstance(scaled, str):
        return scaled
    try:  # a per-token price scaled to per million must still be a price we can hold
        input_, output, image = (bounded(str(amount)) for amount in scaled)
    except ValueError:
        return "out_of_range"
    return ModelPrice(model, input=input_, output=output, image=image, currency=currency)


def _amount(value: object, where: str) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    try:  # bounded, so pricing with it can never overflow (a list price of "1e999999999")
        return bounded(value)
    except ValueError as exc:
        raise invalid(f"{where} is not a price: {exc}") from None


def with_currency(model: ApiModel, fallback: str | None) -> ApiModel:
    """``model`` in the currency its list price names, else in ``fallback`` (``pricing.currency``
    when the config sets it); unpriced ``missing_currency`` when neither names one."""
    if model.price is None or model.price.currency:
        return model
    if fallback:
        return replace(model, price=replace(model.price, currency=fallback))
    return replace(model, price=None, unpriced="missing_currency")


class KeyClient:
    """Lists keys and their models through the shared ApiClient (its retries, rate limit and
    metrics apply)."""

    def __init__(self, client: ApiClient) -> None:
        self._client = client

    def list_keys(self, project: str, deadline: float) -> list[ApiKey]:
        """Every key of ``project`` ("" = default), paging until a short page."""
        keys: list[ApiKey] = []
        for page in range(MAX_PAGES):
            params: dict[str, object] = {"Action": LIST_KEYS, "Offset": page * PAGE, "Limit": PAGE}
            if project:
                params["ProjectId"] = project
            batch = self._client.call(params, parse_keys, deadline, project or "default project")
            keys.extend(batch)
            if len(batch) < PAGE:
                return keys
        raise invalid(f"{LIST_KEYS} returned more than {MAX_PAGES} full pages")

    def list_models(self, project: str, key_id: str, deadline: float) -> list[ApiModel]:
        """The text and image models ``key_id`` (of ``project``, "" = default) may call, with
        list prices. ``ProjectId`` is sent as for every other action (the SDK's request schema
        requires it; a blank one means the default project)."""
        models: list[ApiModel] = []
        for kind in MODEL_TYPES:
            params: dict[str, object] = {"Action": GET_MODELS, "KeyId": key_id, "ModelType": kind}
            if project:
                params["ProjectId"] = project
            models.extend(self._client.call(params, parse_models, deadline, key_id))
        return models
