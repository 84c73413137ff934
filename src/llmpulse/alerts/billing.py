"""Reconciliation: a provider's own bill for a UTC day against what llmpulse measured, per
model, and the ``billing_drift`` verdict on it.

Model names are matched on their base name (``base_model``): providers bill dated snapshots
(``gpt-4o-2024-08-06``, ``claude-sonnet-4-20250514``) where a config names the alias
(``gpt-4o``, ``claude-sonnet-4-0``, ``claude-3-7-sonnet-latest``). The verdict is on the
day's totals (every line of the bill, and every result of the provider's targets, probes and
traffic); the models say where the difference is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from llmpulse.providers.billing import DayBill

TOP_MODELS = 3  # models named in the alert's summary
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")
_ZERO_ALIAS = re.compile(r"(-\d+)-0$")  # claude-opus-4-0: Anthropic's alias of the first 4 release


def base_model(name: str) -> str:
    """The model a name stands for, whatever snapshot: lower case, without a ``provider/``
    prefix, a date suffix (``-2024-08-06``, ``-20250514``), ``-latest`` or a ``-0``
    release alias."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    base = _DATED.sub("", base).removesuffix("-latest")
    return _ZERO_ALIAS.sub(r"\1", base)


@dataclasses.dataclass(frozen=True, slots=True)
class Measured:
    """What llmpulse recorded for a model (or a provider) over a day."""

    cost_usd: float = 0.0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Measured) -> Measured:
        return Measured(
            self.cost_usd + other.cost_usd,
            self.requests + other.requests,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ModelLine:
    """One model's day on both sides; ``reported_*`` from the provider's reports."""

    model: str  # base name
    reported_usd: float
    measured_usd: float
    reported_input_tokens: int
    measured_input_tokens: int
    reported_output_tokens: int
    measured_output_tokens: int
    reported_requests: int | None
    measured_requests: int
    names: tuple[str, ...] = ()  # the names the provider billed it under

    @property
    def difference_usd(self) -> float:
        """Measured minus billed: negative when the bill is higher."""
        return self.measured_usd - self.reported_usd

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "names": list(self.names)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelLine:
        return cls(**{**data, "names": tuple(data.get("names") or ())})


@dataclasses.dataclass(frozen=True, slots=True)
class Reconciliation:
    """A provider's day: its bill, llmpulse's measure, per model, and whether they drift."""

    provider: str
    day: date
    reported_usd: float
    measured_usd: float
    models: tuple[ModelLine, ...]
    threshold: float
    min_usd: float

    @property
    def difference_usd(self) -> float:
        return self.measured_usd - self.reported_usd

    @property
    def difference(self) -> float | None:
        """The difference as a share of the bill (None on a day the bill is $0)."""
        return self.difference_usd / self.reported_usd if self.reported_usd else None

    @property
    def drift(self) -> bool:
        """More apart than ``threshold`` of the bill, and by at least ``min_usd``."""
        gap = abs(self.difference_usd)
        if gap < max(self.min_usd, 1e-9):
            return False
        return self.reported_usd == 0 or gap / self.reported_usd > self.threshold

    def most_apart(self, n: int = TOP_MODELS) -> list[ModelLine]:
        """The models whose dollars differ most, largest first."""
        apart = [m for m in self.models if abs(m.difference_usd) >= 0.005]
        return sorted(apart, key=lambda m: -abs(m.difference_usd))[:n]

    def summary(self) -> str:
        share = f" ({self.difference:+.1%})" if self.difference is not None else ""
        text = (
            f"{self.provider} {self.day}: the provider billed ${self.reported_usd:,.2f}, "
            f"llmpulse measured ${self.measured_usd:,.2f}{share}"
        )
        if not self.drift:
            return text + f", within {self.threshold:.0%}"
        parts = [_model_part(m) for m in self.most_apart()]
        if parts:
            text += "; most apart: " + "; ".join(parts)
        if self.difference_usd < 0:
            return text + (
                ". Spend llmpulse did not see: traffic around the gateway, a leaked key, or "
                "prices configured too low"
            )
        return text + ". llmpulse counts more: prices configured too high, or another account"

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "min_usd": self.min_usd,
            "models": [m.to_json() for m in self.models],
        }


def _model_part(m: ModelLine) -> str:
    gap = m.difference_usd
    side = "less" if gap < 0 else "more"
    text = f"{m.model} ${abs(gap):,.2f} {side} measured"
    tokens_billed = m.reported_input_tokens + m.reported_output_tokens
    tokens_seen = m.measured_input_tokens + m.measured_output_tokens
    if tokens_billed and abs(tokens_seen - tokens_billed) <= 0.01 * tokens_billed:
        text += " (tokens agree: its price is wrong)"
    elif m.measured_usd == 0 and m.reported_usd > 0:
        text += " (never measured)"
    return text


def reconcile(
    provider: str,
    bill: DayBill,
    measured: Measured,
    measured_models: Mapping[str, Measured],
    *,
    threshold: float,
    min_usd: float,
) -> Reconciliation:
    """``measured``: the provider's whole day in llmpulse; ``measured_models``: per model as
    configured (matched to the bill by ``base_model``)."""
    billed: dict[str, list[tuple[str, float, int, int, int | None]]] = {}
    for name, f in bill.models.items():
        billed.setdefault(base_model(name), []).append(
            (name, f.cost_usd, f.input_tokens, f.output_tokens, f.requests)
        )
    seen: dict[str, Measured] = {}
    for name, m in measured_models.items():
        key = base_model(name)
        seen[key] = seen.get(key, Measured()) + m
    lines = []
    for model in sorted(set(billed) | set(seen)):
        rows = billed.get(model, [])
        mine = seen.get(model, Measured())
        requests = [r[4] for r in rows if r[4] is not None]
        lines.append(
            ModelLine(
                model=model,
                reported_usd=sum(r[1] for r in rows),
                measured_usd=mine.cost_usd,
                reported_input_tokens=sum(r[2] for r in rows),
                measured_input_tokens=mine.input_tokens,
                reported_output_tokens=sum(r[3] for r in rows),
                measured_output_tokens=mine.output_tokens,
                reported_requests=sum(requests) if requests else None,
                measured_requests=mine.requests,
                names=tuple(sorted(r[0] for r in rows)),
            )
        )
    return Reconciliation(
        provider, bill.day, bill.total_usd, measured.cost_usd, tuple(lines), threshold, min_usd
    )


def from_stored(
    provider: str, day: date, reported: float, measured: float, detail: Mapping[str, Any]
) -> Reconciliation:
    """A reconciliation as ``to_json`` stored it."""
    models: Iterable[Mapping[str, Any]] = detail.get("models") or ()
    return Reconciliation(
        provider,
        day,
        reported,
        measured,
        tuple(ModelLine.from_json(m) for m in models),
        float(detail.get("threshold", 0.1)),
        float(detail.get("min_usd", 0.0)),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class BillingDay:
    """A provider's UTC day as the reconciliation job left it: compared (``status`` "ok"), or
    not read, with the class of the error (``auth``, ``server_error``, ``protocol``, ...)."""

    provider: str
    day: date
    checked_at: float
    status: str
    reconciliation: Reconciliation | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"
