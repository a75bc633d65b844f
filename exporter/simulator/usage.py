"""The simulator's own usage record and the API's names for it.

Ground truth shares no code with what it checks: the exporter parses these names with its own
table, so a misspelt field cannot be wrong on both sides at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

#: The ``Data`` fields of a GetUMInferTokenUsage answer, in :class:`Usage` field order
#: (as the vendor SDK's ``GetUMInferTokenUsageResponseSchema`` names them).
DATA_FIELDS = ("InTotal", "OutTotal", "Total", "RequestTotal", "ImageGenerationNum")


@dataclass(frozen=True, slots=True)
class Usage:
    """Usage of one event or one window: input, output and all tokens, requests, images."""

    input_tokens: int = 0
    output_tokens: int = 0
    tokens: int = 0
    requests: int = 0
    image_generations: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens, self.tokens + other.tokens,
                     self.requests + other.requests,
                     self.image_generations + other.image_generations)

    def as_dict(self) -> dict[str, int]:
        """Field name to value, for the admin endpoint's JSON."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "tokens": self.tokens, "requests": self.requests,
                "image_generations": self.image_generations}

    def data(self) -> dict[str, int]:
        """The answer's ``Data`` totals."""
        values = (self.input_tokens, self.output_tokens, self.tokens, self.requests,
                  self.image_generations)
        return dict(zip(DATA_FIELDS, values, strict=True))


class Clock(Protocol):
    """All the simulator asks of time: the wall clock, which is the API's clock."""

    def time(self) -> float:
        """Unix seconds."""
        ...


class WallClock:
    """The machine's wall clock."""

    def time(self) -> float:
        """Unix seconds."""
        return time.time()
