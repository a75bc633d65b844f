"""The simulator's API keys and model catalog, for ListUMInferAPIKey and GetUMInferAPIModel."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 100


@dataclass(frozen=True)
class SimKey:
    """An API key as the API lists it, secret included (the exporter must drop it).

    Amounts are decimal strings in the account's currency, as the vendor SDK's ``APIKey``
    types them; an empty limit is no limit. ``expire_time`` is Unix seconds, -1 never.
    """

    project: str
    key_id: str
    name: str
    secret: str
    status: int = 1
    disabled: bool = False
    granted_models: tuple[str, ...] = ()
    expire_time: int = -1
    daily_limit: str = ""
    daily_used: str = "0"
    monthly_limit: str = ""
    monthly_used: str = "0"
    created: int = 1_767_225_600  # 2026-01-01
    metered: bool = False  # used amounts grow by what the key spends (simulator.spend)

    def as_api(self) -> dict[str, Any]:
        """The ``Data[]`` entry: every field of the SDK's ``APIKeySchema``, in its types."""
        return {"KeyId": self.key_id, "Name": self.name, "Status": self.status,
                "ModelverseDisabled": int(self.disabled), "SandBoxDisabled": 0,
                "ExpireTime": self.expire_time, "CreateTime": self.created,
                "DailyLimitAmount": self.daily_limit, "DailyUsedAmount": self.daily_used,
                "MonthlyLimitAmount": self.monthly_limit,
                "MonthlyUsedAmount": self.monthly_used,
                "GrantAllModels": not self.granted_models,
                "GrantedModels": list(self.granted_models), "DeniedModels": [],
                "ModelAccessMode": "deny" if not self.granted_models else "allow",
                "IPWhitelist": "", "InferenceLogEnabled": 0, "ChannelId": 0,
                "OrganizationId": 1, "TopOrganizationId": 1, "Key": self.secret}


#: ``Pricing.Unit`` / ``UnitEn`` by model kind when a model names none; ``Unit`` names the
#: model's currency (元 for CNY, 美元 for USD, else its code), as the vendor's units do.
DEFAULT_UNITS = {1: ("{}/百万tokens", "per 1M tokens"), 2: ("{}/张", "per image")}
CURRENCY_WORDS = {"CNY": "元", "USD": "美元"}


@dataclass(frozen=True)
class SimModel:
    """A model with its list price; ``kind`` 1 = text, 2 = image.

    Prices are floats, as the SDK's ``PricingSchema`` types them (a string is sent as given,
    for tests of a hostile API); ``unit``/``unit_en`` None means the kind's usual unit.
    """

    name: str
    kind: int = 1
    prompt: float | str = 0.0
    completion: float | str = 0.0
    image: float | str = 0.0
    currency: str = "USD"
    unit: str | None = None
    unit_en: str | None = None
    tokens_per_price: int = 1_000_000  # what one Prompt/Completion price buys (the truth)

    def as_api(self, index: int) -> dict[str, Any]:
        """The ``Data[]`` entry, in the SDK's ``UMinferAPIModelSchema`` names and types."""
        unit, unit_en = DEFAULT_UNITS.get(self.kind, ("", ""))
        unit = unit.format(CURRENCY_WORDS.get(self.currency, self.currency))
        return {"ServedModelName": self.name, "Name": self.name, "Id": f"model-{index}",
                "CreateAt": 1_767_225_600, "UpdateAt": 1_767_225_600, "Icon": "",
                "Language": ["zh", "en"], "SimpleDescribe": "",
                "Pricing": {"Prompt": self.prompt, "Completion": self.completion,
                            "Image": self.image, "Currency": self.currency,
                            "Unit": unit if self.unit is None else self.unit,
                            "UnitEn": unit_en if self.unit_en is None else self.unit_en,
                            "Video": ""}}


class Catalog:
    """Keys by (project, key id) and models by name; safe to change while serving."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], SimKey] = {}
        self._models: dict[str, SimModel] = {}
        self._lock = threading.Lock()

    def add_key(self, key: SimKey) -> None:
        """Add or replace a key."""
        with self._lock:
            self._keys[(key.project, key.key_id)] = key

    def remove_key(self, project: str, key_id: str) -> bool:
        """Remove a key; False if there was none."""
        with self._lock:
            return self._keys.pop((project, key_id), None) is not None

    def add_model(self, model: SimModel) -> None:
        """Add or replace a model."""
        with self._lock:
            self._models[model.name] = model

    def prices(self) -> dict[str, SimModel]:
        """The models by name, as they are now."""
        with self._lock:
            return dict(self._models)

    def page(self, project: str, offset: int, limit: int) -> list[SimKey]:
        """Keys of ``project`` in creation order, ``limit`` from ``offset``."""
        with self._lock:
            keys = [k for (p, _), k in self._keys.items() if p == project]
        return keys[offset:offset + limit]

    def models(self, key_id: str, kind: int) -> list[tuple[int, SimModel]] | None:
        """The models of ``kind`` the key may call (all, if it lists none); None: no such key."""
        with self._lock:
            keys = [k for (_, kid), k in self._keys.items() if kid == key_id]
            if not keys:
                return None
            granted = set(keys[0].granted_models)
            return [(i, m) for i, m in enumerate(self._models.values())
                    if m.kind == kind and (not granted or m.name in granted)]
