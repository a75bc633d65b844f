"""The simulator's API keys and model catalog, for ListUMInferAPIKey and GetUMInferAPIModel."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 100


@dataclass(frozen=True)
class SimKey:
    """An API key as the API lists it, secret included (the exporter must drop it)."""

    project: str
    key_id: str
    name: str
    secret: str
    status: int = 1
    disabled: bool = False
    granted_models: tuple[str, ...] = ()

    def as_api(self) -> dict[str, Any]:
        """The ``Data[]`` entry, in the vendor's field names."""
        return {"KeyId": self.key_id, "Name": self.name, "Status": self.status,
                "ModelverseDisabled": int(self.disabled),
                "GrantedModels": list(self.granted_models), "Key": self.secret}


@dataclass(frozen=True)
class SimModel:
    """A model with its list price; ``kind`` 1 = text, 2 = image."""

    name: str
    kind: int = 1
    prompt: str = "0"
    completion: str = "0"
    image: str = "0"
    currency: str = "USD"

    def as_api(self, index: int) -> dict[str, Any]:
        """The ``Data[]`` entry, in the vendor's field names (prices as strings, as it sends)."""
        return {"ServedModelName": self.name, "Name": self.name, "Id": f"model-{index}",
                "Pricing": {"Prompt": self.prompt, "Completion": self.completion,
                            "Image": self.image, "Currency": self.currency}}


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
