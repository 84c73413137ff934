"""Rollup records: counts, sums and mergeable quantile sketches of many results.

A sketch is a DDSketch (relative accuracy 1 %, logarithmic mapping) kept only as its bins:
``{key: count}``. Bins of two sketches merge by adding counts, so minute rollups merge into
hours and hours into 30 days without ever revisiting raw rows. Stores keep bins as JSON
objects, which SQLite's ``json_each`` can merge without Python touching every row.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ddsketch import LogarithmicMapping

from llmpulse.errors import ErrorClass

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# key(v) = ceil(log_gamma(v)) = ceil(log2(v) * MULTIPLIER), as LogarithmicMapping computes it;
# spelled out so SQL can compute the same key.
MULTIPLIER = math.log(2) / math.log1p(2 * RELATIVE_ACCURACY / (1 - RELATIVE_ACCURACY))
MIN_VALUE = MAPPING.min_possible
# Zero and negative values (a 0 tokens/s) share one bin; far outside any real key.
ZERO_KEY = -(2**31)

METRICS = ("ttft", "latency", "tps")
OUTAGE_CLASSES = tuple(str(c) for c in ErrorClass if c.is_outage)
# Errors that are the caller's limits, not failures of the provider: left out of error_rate.
NOT_FAILURES = tuple(str(c) for c in ErrorClass if c.is_caller_limit)

Bins = dict[int, int]


def key(value: float) -> int:
    if value <= MIN_VALUE:
        return ZERO_KEY
    return math.ceil(math.log2(value) * MULTIPLIER)


def sql_key(column: str) -> str:
    """SQL for the key of ``column``, the same as ``key`` (SQLite log2 and ceil)."""
    return (
        f"CASE WHEN {column} > {MIN_VALUE!r} "
        f"THEN CAST(ceil(log2({column}) * {MULTIPLIER!r}) AS INTEGER) ELSE {ZERO_KEY} END"
    )


def add_bins(into: Bins, other: Mapping[int, int]) -> None:
    for k, n in other.items():
        into[k] = into.get(k, 0) + n


def bins_from_values(values: Iterable[float]) -> Bins:
    bins: Bins = {}
    for v in values:
        k = key(v)
        bins[k] = bins.get(k, 0) + 1
    return bins


def decode_bins(text: str | None) -> Bins:
    """``{key: count}``, or a list of keys (one per value, as minute rollups keep them)."""
    return {int(k): int(n) for k, n in _counts(text).items()}


def _counts(text: str | None) -> dict[Any, int]:
    if not text:
        return {}
    data = json.loads(text)
    if isinstance(data, list):
        counts: dict[Any, int] = {}
        for k in data:
            counts[k] = counts.get(k, 0) + 1
        return counts
    return {k: int(n) for k, n in data.items()}


def quantiles(bins: Bins, qs: Iterable[float]) -> list[float | None]:
    """``DDSketch.get_quantile_value`` of a sketch holding ``bins``, without building one.

    The same rank (``q·(n−1)``), the same walk (the first bin whose cumulative count exceeds
    the rank, after the zero bin) and the same representative value (``MAPPING.value``), so
    the result is identical; a DDSketch's dense store costs a list as wide as the key range.
    """
    if not bins:
        return [None for _ in qs]
    keys = sorted(bins)
    zero = 0
    if keys[0] == ZERO_KEY:  # the lowest key by far
        zero = bins[ZERO_KEY]
        del keys[0]
    cumulative = list(itertools.accumulate(map(bins.__getitem__, keys)))
    count = zero + (cumulative[-1] if cumulative else 0)
    out: list[float | None] = []
    for q in qs:
        if q < 0 or q > 1:
            out.append(None)
            continue
        rank = q * (count - 1)
        if rank < zero:
            out.append(0.0)
            continue
        i = bisect.bisect_right(cumulative, rank - zero)
        out.append(MAPPING.value(keys[min(i, len(keys) - 1)]))
    return out


@dataclasses.dataclass(slots=True)
class Summary:
    """Merged rollups (or raw rows) of one group: everything metrics need, nothing per row."""

    provider: str = ""
    model: str = ""
    total: int = 0
    ok: int = 0
    outage: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    ttft: Bins = dataclasses.field(default_factory=dict)
    latency: Bins = dataclasses.field(default_factory=dict)
    tps: Bins = dataclasses.field(default_factory=dict)
    # Token-bearing checks (inference, stream): requests with usage, and requests with a cost.
    token_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_requests: int = 0
    cost_usd: float = 0.0
    rl_max: float | None = None
    rl_latest: float | None = None
    rl_latest_ts: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None

    def bins(self, metric: str) -> Bins:
        b: Bins = getattr(self, metric)
        return b

    def merge(self, o: Summary) -> None:
        if not o.total:
            return
        self.provider = self.provider or o.provider
        self.model = self.model or o.model
        self.total += o.total
        self.ok += o.ok
        self.outage += o.outage
        for cls, n in o.errors.items():
            self.errors[cls] = self.errors.get(cls, 0) + n
        for m in METRICS:
            add_bins(self.bins(m), o.bins(m))
        self.token_requests += o.token_requests
        self.input_tokens += o.input_tokens
        self.output_tokens += o.output_tokens
        self.cost_requests += o.cost_requests
        self.cost_usd += o.cost_usd
        if o.rl_max is not None and (self.rl_max is None or o.rl_max > self.rl_max):
            self.rl_max = o.rl_max
        if o.rl_latest_ts is not None and (
            self.rl_latest_ts is None or o.rl_latest_ts >= self.rl_latest_ts
        ):
            self.rl_latest, self.rl_latest_ts = o.rl_latest, o.rl_latest_ts
        if o.first_ts is not None and (self.first_ts is None or o.first_ts < self.first_ts):
            self.first_ts = o.first_ts
        if o.last_ts is not None and (self.last_ts is None or o.last_ts > self.last_ts):
            self.last_ts = o.last_ts

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Summary:
        """From the column order of ``SUMMARY_COLUMNS``."""
        (
            provider, model, total, ok, outage, errors, ttft, latency, tps, token_requests,
            input_tokens, output_tokens, cost_requests, cost_usd, rl_max, rl_latest,
            rl_latest_ts, first_ts, last_ts,
        ) = row  # fmt: skip
        return cls(
            provider=str(provider),
            model=str(model),
            total=int(total),
            ok=int(ok),
            outage=int(outage),
            errors={str(k): n for k, n in _counts(errors).items()},
            ttft=decode_bins(ttft),
            latency=decode_bins(latency),
            tps=decode_bins(tps),
            token_requests=int(token_requests),
            input_tokens=int(input_tokens),
            output_tokens=int(output_tokens),
            cost_requests=int(cost_requests),
            cost_usd=float(cost_usd),
            rl_max=rl_max,
            rl_latest=rl_latest,
            rl_latest_ts=rl_latest_ts,
            first_ts=first_ts,
            last_ts=last_ts,
        )


# The columns every rollup row and every summary query yields, in this order.
SUMMARY_COLUMNS = (
    "provider", "model", "total", "ok", "outage", "errors", "ttft_sketch", "latency_sketch",
    "tps_sketch", "token_requests", "input_tokens", "output_tokens", "cost_requests", "cost_usd",
    "rl_max", "rl_latest", "rl_latest_ts", "first_ts", "last_ts",
)  # fmt: skip


def merge_rows(rows: Iterable[Sequence[Any]]) -> dict[Any, Summary]:
    """Merge rows of ``(group, *SUMMARY_COLUMNS)`` per group.

    The hot loop of long windows: bins are added under their JSON text keys and converted
    once per group at the end, and scalars are added without building a Summary per row.
    """
    acc: dict[Any, tuple[Summary, dict[str, int], list[dict[Any, int]]]] = {}
    for row in rows:
        group = row[0]
        entry = acc.get(group)
        if entry is None:
            entry = acc[group] = (Summary(provider=row[1], model=row[2]), {}, [{}, {}, {}])
        s, errors, bins = entry
        s.total += row[3]
        s.ok += row[4]
        s.outage += row[5]
        for text, into in (
            (row[6], errors),
            (row[7], bins[0]),
            (row[8], bins[1]),
            (row[9], bins[2]),
        ):
            if text:
                data = json.loads(text)
                if isinstance(data, list):
                    for k in data:
                        into[k] = into.get(k, 0) + 1
                else:
                    for k, n in data.items():
                        into[k] = into.get(k, 0) + n
        s.token_requests += row[10]
        s.input_tokens += row[11]
        s.output_tokens += row[12]
        s.cost_requests += row[13]
        s.cost_usd += row[14]
        rl_max, rl_latest, rl_latest_ts, first_ts, last_ts = row[15:20]
        if rl_max is not None and (s.rl_max is None or rl_max > s.rl_max):
            s.rl_max = rl_max
        if rl_latest_ts is not None and (s.rl_latest_ts is None or rl_latest_ts >= s.rl_latest_ts):
            s.rl_latest, s.rl_latest_ts = rl_latest, rl_latest_ts
        if s.first_ts is None or first_ts < s.first_ts:
            s.first_ts = first_ts
        if s.last_ts is None or last_ts > s.last_ts:
            s.last_ts = last_ts
    out: dict[Any, Summary] = {}
    for group, (s, errors, bins) in acc.items():
        s.errors = {str(k): n for k, n in errors.items()}
        s.ttft, s.latency, s.tps = ({int(k): n for k, n in b.items()} for b in bins)
        out[group] = s
    return out
