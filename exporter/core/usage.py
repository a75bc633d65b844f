"""The five usage quantities the API reports, as one immutable value, and one answer of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Totals:
    """Usage totals over some interval; every field is a non-negative integer."""

    input_tokens: int = 0
    output_tokens: int = 0
    tokens: int = 0
    requests: int = 0
    image_generations: int = 0

    NAMES: ClassVar[tuple[str, ...]] = ("input_tokens", "output_tokens", "tokens", "requests",
                                         "image_generations")

    # Spelled out field by field: these are the accounting's hottest lines (a generic zip over
    # values() cost three times as much in the model-based proof).
    def __add__(self, other: Totals) -> Totals:
        return Totals(self.input_tokens + other.input_tokens,
                      self.output_tokens + other.output_tokens, self.tokens + other.tokens,
                      self.requests + other.requests,
                      self.image_generations + other.image_generations)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.input_tokens - other.input_tokens,
                      self.output_tokens - other.output_tokens, self.tokens - other.tokens,
                      self.requests - other.requests,
                      self.image_generations - other.image_generations)

    def values(self) -> tuple[int, int, int, int, int]:
        """The five numbers in field order (spelled out: this is the hottest path in accounting)."""
        return (self.input_tokens, self.output_tokens, self.tokens, self.requests,
                self.image_generations)

    def maximum(self, other: Totals) -> Totals:
        """Field-wise maximum: a reading never lowers what was seen before."""
        return Totals(max(self.input_tokens, other.input_tokens),
                      max(self.output_tokens, other.output_tokens),
                      max(self.tokens, other.tokens), max(self.requests, other.requests),
                      max(self.image_generations, other.image_generations))

    def dominates(self, other: Totals) -> bool:
        """True when no field of ``self`` is below ``other``'s."""
        return (self.input_tokens >= other.input_tokens
                and self.output_tokens >= other.output_tokens and self.tokens >= other.tokens
                and self.requests >= other.requests
                and self.image_generations >= other.image_generations)

    def as_dict(self) -> dict[str, int]:
        """Field name to value, for JSON state."""
        return dict(zip(self.NAMES, self.values(), strict=True))

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Totals:
        """Inverse of :meth:`as_dict`; missing fields are zero."""
        return cls(*(int(data.get(name, 0)) for name in cls.NAMES))


ZERO = Totals()


@dataclass(frozen=True, slots=True)
class Reading:
    """One answer of the usage API: its totals, the distinct ``Usages[].Timestamp`` values
    (ascending) it reported them under, which say how the API buckets time (see api.buckets),
    and the totals of each label's rows, in the same order (empty when not given)."""

    totals: Totals
    labels: tuple[int, ...] = ()
    rows: tuple[Totals, ...] = ()
