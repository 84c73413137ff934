"""The storage interface. SQLite is the zero-setup default; other backends implement the same."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from llmpulse.result import CheckResult
from llmpulse.store.keys import StoredKey
from llmpulse.store.rollup import Bins, Summary

RAW_RETENTION_S = 7 * 86400
ROLLUP_RETENTION_S = 400 * 86400
# Users and tags kept by name per UTC day and source in the daily spend rollup; the rest of
# the day's spend is summed in one ``other`` row (keys, teams, models and providers: all).
SPEND_TOP_N = 1000
# Buckets with moved requests one ``fallback_buckets`` call returns: a week of minutes, 3 first
# choices.
MAX_FALLBACK_BUCKETS = 30_000
MAX_ISLANDS = 10_000  # runs of moved / not moved requests one ``route_islands`` call returns

GroupBy = Literal["target", "provider", "bucket"] | None
# Raw results also know who measured them and why: by region (agents) or source (probe/traffic).
RawGroupBy = Literal["target", "provider", "region", "source", "agent"] | None
TotalsBy = Literal["target", "provider", "model"] | None
# Who spent it: the gateway key, its team, the end user, each tag, or what was called; or
# when (the UTC day, named YYYY-MM-DD).
CostBy = Literal["key", "team", "user", "tag", "model", "provider", "day"]
COST_BY: tuple[CostBy, ...] = ("key", "team", "user", "tag", "model", "provider", "day")


@dataclasses.dataclass(frozen=True, slots=True)
class CostRow:
    """Spend of one owner from one source (probe or traffic) over a range. ``name`` is None
    for results that name no owner of the kind (probes have no key; untagged traffic; an
    empty name counts as none). ``other``: the users or tags past a day's top N
    (``SPEND_TOP_N``) in the daily rollups, summed (``name`` None)."""

    name: str | None
    source: str
    cost_usd: float
    requests: int
    input_tokens: int
    output_tokens: int
    other: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CostReport:
    """``Store.cost_report``: the rows over ``[start_ts, end_ts)``, the range actually read
    (widened to whole UTC days where the raw results of a partial day are pruned already).
    ``exact``: every row is its owner's exact spend over the range asked for: no widening and
    no ``other`` row."""

    rows: list[CostRow]
    start_ts: float
    end_ts: float
    exact: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ResultFilter:
    """Which results a query reads: those matching every field that is not None.

    ``check`` is a check's name (a custom probe's, or a built-in check's kind). ``region=""``
    selects the results without a region. Rollups keep neither region, source nor single
    results' error class: queries that read them (``summarize``, ``totals``) refuse those.
    """

    target: str | None = None
    provider: str | None = None
    check: str | None = None
    region: str | None = None
    source: str | None = None
    error_class: str | None = None
    model: str | None = None  # the model asked for (``CheckResult.model``)


ALL_RESULTS = ResultFilter()


@dataclasses.dataclass(slots=True)
class Totals:
    """Counts and sums of one group over a span: a ``Summary`` without its sketches.

    ``provider`` and ``model`` are those of the group's results (the largest name if several).
    """

    provider: str = ""
    model: str = ""
    total: int = 0
    ok: int = 0
    # Results whose error class is an outage (ErrorClass.is_outage).
    outage: int = 0
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    # Token-bearing checks (inference, stream): requests with usage, and requests with a cost.
    token_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_requests: int = 0
    cost_usd: float = 0.0
    first_ts: float | None = None
    last_ts: float | None = None

    def merge(self, o: Totals) -> None:
        self.provider = max(self.provider, o.provider)
        self.model = max(self.model, o.model)
        self.total += o.total
        self.ok += o.ok
        self.outage += o.outage
        for cls, n in o.errors.items():
            self.errors[cls] = self.errors.get(cls, 0) + n
        self.token_requests += o.token_requests
        self.input_tokens += o.input_tokens
        self.output_tokens += o.output_tokens
        self.cost_requests += o.cost_requests
        self.cost_usd += o.cost_usd
        if o.first_ts is not None and (self.first_ts is None or o.first_ts < self.first_ts):
            self.first_ts = o.first_ts
        if o.last_ts is not None and (self.last_ts is None or o.last_ts > self.last_ts):
            self.last_ts = o.last_ts


@dataclasses.dataclass(frozen=True, slots=True)
class ModelChange:
    """``target`` served ``current`` from ``ts`` on (its first result naming it), after
    ``previous``; None when ``current`` is the first model recorded for the target."""

    ts: float
    target: str
    previous: str | None
    current: str


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerEvent:
    """A gateway's circuit breaker for ``deployment`` (its target name) entered ``state``
    (closed, open, half_open) at ``ts``, for ``reason``; ``agent`` names the gateway process."""

    ts: float
    agent: str
    deployment: str
    state: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class RouteCount:
    """Gateway traffic of one bucket counted in the database: ``requests`` whose first choice
    was ``first`` (``route[0]``; the target for results without a route) and which ended on
    ``answered`` (``route[-1]``, the result's target), successfully (``ok``) or not, moved off
    the first by ``fallback_reason``; ``live_drill``: sent with a drill header."""

    bucket: int
    first: str
    answered: str
    ok: bool
    fallback_reason: str | None
    live_drill: bool
    requests: int

    @property
    def fell_back(self) -> bool:
        """These requests are fallbacks (``CheckResult.fell_back``): answered, by another
        deployment than their first choice."""
        return self.ok and self.answered != self.first


@dataclasses.dataclass(frozen=True, slots=True)
class FallbackBucket:
    """A bucket in which a gateway request (live drills aside) whose first choice was
    ``first`` moved: another deployment answered it or failed last."""

    bucket: int
    first: str


@dataclasses.dataclass(frozen=True, slots=True)
class Island:
    """A run of consecutive requests, all moved or all not: the first at ``start_ts``, the
    last at ``end_ts``."""

    moved: bool
    start_ts: float
    end_ts: float
    requests: int


@dataclasses.dataclass(frozen=True, slots=True)
class EntryTraffic:
    """``Store.traffic_by_entry``: the gateway traffic that entered at one deployment (the
    first of its route, wherever it was answered) over a window."""

    requests: int
    # Since the window's ``recent_ts``: the current rate's requests and tokens (in + out).
    recent_requests: int
    recent_tokens: int
    prompt_p99: int | None  # input tokens, DDSketch's rank (``queries.exact_quantile``)
    features: frozenset[str]  # every request's ``features``, together


@dataclasses.dataclass(slots=True)
class PruneStats:
    results: int
    rollups: int


class Store(abc.ABC):
    @abc.abstractmethod
    def write_results(self, results: Sequence[CheckResult], batch_id: str | None = None) -> bool:
        """Persist results in one transaction. With a ``batch_id``, a batch written before under
        the same id is skipped (returns False): replaying a batch never writes it twice."""

    @abc.abstractmethod
    def latest_results(
        self, limit: int = 100, *, where: ResultFilter = ALL_RESULTS
    ) -> list[CheckResult]:
        """Most recent results first."""

    # ---- gateway keys created at run time (``store.keys``) ----

    @abc.abstractmethod
    def add_key(self, key: StoredKey) -> bool:
        """Store a new key; False (nothing stored) when its name or digest is taken, revoked
        keys' included, or ``MAX_STORED_KEYS`` are stored."""

    @abc.abstractmethod
    def stored_keys(self, *, revoked: bool = False) -> list[StoredKey]:
        """The keys by name; revoked ones only when ``revoked``."""

    @abc.abstractmethod
    def revoke_key(self, name: str, at: float) -> StoredKey | None:
        """Revoke the key ``name`` (once: revoking again keeps the first time); None when no
        key has that name."""

    @abc.abstractmethod
    def rotate_key(self, name: str, digest: str, at: float) -> StoredKey | None:
        """Give the key ``name`` a new digest, the old one refused from now on; None when no
        unrevoked key has that name (or the digest is taken)."""

    @abc.abstractmethod
    def schema_version(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    def location(self) -> str | Path:
        """Where the store is: its file, or its URL with the password redacted. What a process
        keeps beside it (a writer's spool) is named after it."""
        raise NotImplementedError

    def check_writable(self) -> None:
        """Raise what the database raises when it refuses writes (a read-only file, directory or
        replica, a role without the grants), without writing anything."""
        raise NotImplementedError

    # Rollups and metrics. Not abstract, so that test doubles of the write path keep working.

    def costs(
        self, by: CostBy, start_ts: float, end_ts: float, *, source: str | None = None
    ) -> list[CostRow]:
        """Spend of ``start_ts <= ts < end_ts`` per owner of kind ``by`` and per source (only
        ``source`` when given): ``cost_report``'s rows."""
        return self.cost_report(by, start_ts, end_ts, source=source).rows

    def cost_report(
        self, by: CostBy, start_ts: float, end_ts: float, *, source: str | None = None
    ) -> CostReport:
        """Spend of ``start_ts <= ts < end_ts`` per owner of kind ``by`` and per source (only
        ``source`` when given). A result with several tags counts once under each. Whole UTC
        days in the daily spend rollup are read from it, the rest (partial days at the edges,
        days not rolled up yet) from the raw results; an edge day whose raw results are pruned
        is read whole from the rollup (the report says so)."""
        raise NotImplementedError

    def results_between(
        self,
        start_ts: float,
        end_ts: float,
        *,
        where: ResultFilter = ALL_RESULTS,
        until_cursor: int | None = None,
    ) -> list[CheckResult]:
        """Results with ``start_ts <= timestamp < end_ts``, oldest first; with
        ``until_cursor`` (a ``tail`` cursor), only those stored up to it."""
        raise NotImplementedError

    def metric_values(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: RawGroupBy = None,
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[str, dict[str, list[float]]]:
        """The raw values of ``start_ts <= ts < end_ts`` per group (target, provider, region or
        agent (``""`` for results without one), source, or ``""`` for ``group_by=None``), each
        metric (``rollup.METRICS``) sorted: exact quantiles."""
        raise NotImplementedError

    def summarize_raw(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: RawGroupBy = None,
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[str, Summary]:
        """Summaries without sketches (counts and sums) of the raw results of
        ``start_ts <= ts < end_ts``, grouped and filtered as ``metric_values``: what rollups
        cannot answer, since they keep neither region nor source. Groups without data are
        absent."""
        raise NotImplementedError

    def metric_bins(
        self,
        start_ts: float,
        end_ts: float,
        step_s: int,
        metric: str,
        *,
        group_by: RawGroupBy = None,
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[tuple[int, str], tuple[Bins, float]]:
        """Sketch bins and the largest value of one metric (``rollup.METRICS``) of the raw
        results of ``start_ts <= ts < end_ts``, keyed by ``(bucket start, group)``: buckets
        aligned to multiples of ``step_s`` (a multiple of 60), groups as ``metric_values``'.
        What a chart split by region or source needs (rollups keep neither), counted in the
        database so that no row reaches Python. Buckets and groups without a value are absent."""
        raise NotImplementedError

    def claim(self, key: str, ts: float) -> bool:
        """Claim ``key`` (of time ``ts``) for this process: True for the one claimant of all the
        processes writing to this database, False when it was claimed before. What makes a
        scheduled job run once per occurrence among agents, gateway replicas and hosts; claims
        are pruned with the raw results."""
        raise NotImplementedError

    def write_breaker_events(self, events: Sequence[BreakerEvent]) -> None:
        """Store breaker events in one transaction; one stored before (same time, agent,
        deployment and state) is kept once."""
        raise NotImplementedError

    def breaker_events(
        self, start_ts: float, end_ts: float, limit: int = 1000
    ) -> list[BreakerEvent]:
        """Breaker events of ``start_ts <= ts < end_ts``, oldest first; the newest ``limit``."""
        raise NotImplementedError

    def route_counts(self, start_ts: float, end_ts: float, step_s: int) -> list[RouteCount]:
        """Gateway traffic (source traffic) of ``start_ts <= ts < end_ts`` counted in the
        database per bucket (multiples of ``step_s``, a multiple of 60), first choice, answering
        deployment, success, fallback reason and live drill."""
        raise NotImplementedError

    # The four below read a request's *first choice* as its route's first deployment (the
    # target for results without a route) and call it *moved* when another deployment answered
    # it or failed last.

    def fallback_buckets(self, start_ts: float, end_ts: float, step_s: int) -> list[FallbackBucket]:
        """The (bucket, first choice) pairs of ``start_ts <= ts < end_ts`` in which a gateway
        request (not a live drill) was moved, oldest first: the newest ``MAX_FALLBACK_BUCKETS``."""
        raise NotImplementedError

    def first_choice_answer(
        self, start_ts: float, end_ts: float, firsts: Sequence[str]
    ) -> float | None:
        """The time of the earliest gateway request (not a live drill) of
        ``start_ts <= ts < end_ts`` whose first choice is one of ``firsts`` and answered it."""
        raise NotImplementedError

    def fallback_counts(
        self, start_ts: float, end_ts: float, firsts: Sequence[str]
    ) -> dict[tuple[str, str, str | None], int]:
        """Gateway requests (not live drills) of ``start_ts <= ts < end_ts`` whose first choice
        is one of ``firsts`` and which were moved, counted by (first choice, the deployment
        they ended on, fallback reason)."""
        raise NotImplementedError

    def route_islands(self, start_ts: float, end_ts: float, firsts: Sequence[str]) -> list[Island]:
        """The gateway requests (not live drills) of ``start_ts <= ts < end_ts`` whose first
        choice is one of ``firsts``, in time order, as runs of moved and not moved requests:
        the newest ``MAX_ISLANDS``."""
        raise NotImplementedError

    def traffic_by_entry(
        self, start_ts: float, end_ts: float, recent_ts: float
    ) -> dict[str, EntryTraffic]:
        """Gateway traffic of ``start_ts <= ts < end_ts`` (not drills) by the deployment its
        route started at, computed in the database: a busy hour never reaches Python."""
        raise NotImplementedError

    def tail_start(self, since_ts: float) -> tuple[list[CheckResult], int]:
        """Results with ``timestamp >= since_ts`` stored so far, oldest first, and the cursor
        after them for ``tail``: the alert leader's starting point."""
        raise NotImplementedError

    def tail(self, cursor: int, limit: int = 10_000) -> tuple[list[CheckResult], int]:
        """Results stored after ``cursor`` (by any process), in the order they were committed,
        and the cursor after them."""
        raise NotImplementedError

    def latest_per_target(self) -> dict[str, CheckResult]:
        """The newest result of every target that has raw results."""
        raise NotImplementedError

    def model_changes(
        self, target: str | None, start_ts: float, end_ts: float
    ) -> list[ModelChange]:
        """Changes of the served model (``response_model``) with ``start_ts <= ts < end_ts``,
        oldest first, of one target or all; they outlive the raw results. Results count in
        time order: one older than its target's newest stored result changes nothing."""
        raise NotImplementedError

    def rollup(self, until_ts: float, *, spend_top_n: int = SPEND_TOP_N) -> int:
        """Roll up every complete minute before ``until_ts`` not rolled up yet, and recompute
        minutes that received results since the last call, then the coarser periods (hours,
        ...) they complete or change, and the daily spend of the UTC days they complete or
        change (users and tags: the top ``spend_top_n`` per day and source by name, the rest
        as ``other``). Idempotent; returns the number of minute rollup rows written."""
        raise NotImplementedError

    def rollup_watermark(self) -> float | None:
        """Minutes before this are rolled up (None before the first ``rollup``)."""
        raise NotImplementedError

    def summarize(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: GroupBy = None,
        step_s: int | None = None,
        where: ResultFilter = ALL_RESULTS,
        sketches: bool = True,
    ) -> dict[str | int, Summary]:
        """Merged summaries of ``start_ts <= ts < end_ts``: rollups where complete, raw rows for
        the rest. Keyed by target, provider, bucket start (``group_by="bucket"``, aligned to
        multiples of ``step_s``) or ``""`` (``group_by=None``); groups without data are absent.
        Without ``sketches`` the summaries' bins are left empty (and cost nothing to read).
        """
        raise NotImplementedError

    def totals(
        self,
        start_ts: float,
        end_ts: float,
        *,
        step_s: int | None = None,
        by: TotalsBy = "target",
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[tuple[int | None, str], Totals]:
        """Counts and sums of ``start_ts <= ts < end_ts`` from rollups where complete and raw
        rows for the rest, keyed by ``(bucket start, group)``: buckets aligned to multiples of
        ``step_s`` (UTC days for 86400; None without a step), groups by target, provider or
        model name (``""`` for ``by=None``). Groups and buckets without data are absent."""
        raise NotImplementedError

    def prune(
        self,
        now: float,
        raw_retention_s: float = RAW_RETENTION_S,
        rollup_retention_s: float = ROLLUP_RETENTION_S,
        *,
        spend_top_n: int = SPEND_TOP_N,
    ) -> PruneStats:
        """Roll up, then delete raw results and rollups (daily spend too) older than their
        retention."""
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
