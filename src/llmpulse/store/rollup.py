"""Rollup records: counts, sums and mergeable quantile sketches of many results.

A sketch is a DDSketch (relative accuracy 1 %, logarithmic mapping) kept only as its bins:
``{key: count}``. Bins of two sketches merge by adding counts, so minute rollups merge into
hours, hours into days and days into months without ever revisiting raw rows. Stores keep
bins as JSON, which the database merges (SQLite's ``json_each``, PostgreSQL's jsonb
functions) when rollups are written.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import math
from collections import Counter
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

# Each a sketch; "context" is context-window utilization (prompt tokens / context window, a
# fraction), whose maximum is kept beside its sketch (``Summary.context_max``).
METRICS = ("ttft", "latency", "tps", "context")
OUTAGE_CLASSES = tuple(str(c) for c in ErrorClass if c.is_outage)
# Answers that failed a probe's expectation ("assertion"): counted by the correctness rate
# alone, from the per-class error counts every rollup tier keeps.
WRONG_ANSWERS = tuple(str(c) for c in ErrorClass if c.is_wrong_answer)
# Left out of error_rate: the caller's limits, which are not failures of the provider, and wrong
# answers, which are their own signal (correct_rate).
NOT_FAILURES = (*(str(c) for c in ErrorClass if c.is_caller_limit), *WRONG_ANSWERS)

Bins = dict[int, int]


def key(value: float) -> int:
    if value <= MIN_VALUE:
        return ZERO_KEY
    return math.ceil(math.log2(value) * MULTIPLIER)


def sql_key(column: str, log2: str = "log2({})") -> str:
    """SQL for the key of ``column``, the same as ``key``; ``log2`` spells the logarithm in
    the database's SQL (SQLite's log2 by default)."""
    return (
        f"CASE WHEN {column} > {MIN_VALUE!r} THEN "
        f"CAST(ceil({log2.format(column)} * {MULTIPLIER!r}) AS INTEGER) ELSE {ZERO_KEY} END"
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
    context: Bins = dataclasses.field(default_factory=dict)
    # The largest context utilization, exact (a sketch's largest bin is within 1 %).
    context_max: float | None = None
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

    @property
    def assertions(self) -> int:
        """Answers that failed an expectation: with ``ok``, the correctness rate's counts."""
        return sum(self.errors.get(c, 0) for c in WRONG_ANSWERS)

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
        if o.context_max is not None and (
            self.context_max is None or o.context_max > self.context_max
        ):
            self.context_max = o.context_max


# The columns every rollup row and every summary query yields, in this order (the context
# columns last: a migration added them).
SUMMARY_COLUMNS = (
    "provider", "model", "total", "ok", "outage", "errors", "ttft_sketch", "latency_sketch",
    "tps_sketch", "token_requests", "input_tokens", "output_tokens", "cost_requests", "cost_usd",
    "rl_max", "rl_latest", "rl_latest_ts", "first_ts", "last_ts", "context_sketch",
    "context_max",
)  # fmt: skip


def decode_summaries(rows: Sequence[Sequence[Any]]) -> list[Summary]:
    """Summaries of rows of ``(g0, g1, g2, *SUMMARY_COLUMNS)`` whose errors and sketches each
    hold comma-separated JSON values: ``group_concat`` of one table's rows, so either arrays
    (one entry per result: minute rollups, raw rows) or ``{key: count}`` objects (coarser
    tiers), see ``sqlite_rollup``.

    Each JSON column of all the rows is decoded by one ``json.loads``: the overhead of a call
    costs more than parsing a small value. Arrays are counted by ``Counter`` in C; only
    objects' bins are added one by one.
    """
    columns = [_parse([row[i] for row in rows]) for i in (8, 9, 10, 11, 22)]
    return [
        Summary(
            provider=row[3],
            model=row[4],
            total=row[5],
            ok=row[6],
            outage=row[7],
            errors=_count(errors),
            ttft=_int_keys(_count(ttft)),
            latency=_int_keys(_count(latency)),
            tps=_int_keys(_count(tps)),
            context=_int_keys(_count(context)),
            context_max=row[23],
            token_requests=row[12],
            input_tokens=row[13],
            output_tokens=row[14],
            cost_requests=row[15],
            cost_usd=row[16],
            rl_max=row[17],
            rl_latest=row[18],
            rl_latest_ts=row[19],
            first_ts=row[20],
            last_ts=row[21],
        )
        for row, errors, ttft, latency, tps, context in zip(rows, *columns, strict=True)
    ]


def decode_counts(texts: Sequence[str | None]) -> list[dict[str, int]]:
    """Errors of such rows alone: ``{class: count}`` per text."""
    return [_count(parts) for parts in _parse(texts)]


def _parse(texts: Sequence[str | None]) -> list[list[Any]]:
    """One list of JSON values per text: ``'[1,2],[3]'`` -> ``[[1, 2], [3]]``."""
    joined = ",".join(f"[{t}]" if t else "[]" for t in texts)
    parsed: list[list[Any]] = json.loads(f"[{joined}]")
    return parsed


def _count(parts: list[Any]) -> dict[Any, int]:
    if not parts:
        return {}
    if isinstance(parts[0], list):
        return dict(Counter(itertools.chain.from_iterable(parts)))
    counts: dict[Any, int] = parts[0]
    get = counts.get
    for part in parts[1:]:
        for k, n in part.items():
            counts[k] = get(k, 0) + n
    return counts


def _int_keys(counts: dict[Any, int]) -> Bins:
    """JSON object keys are strings; array entries are the integers already."""
    if not counts or isinstance(next(iter(counts)), int):
        return counts
    return dict(zip(map(int, counts), counts.values(), strict=True))
