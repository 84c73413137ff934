"""What the SQL stores share: the write path, rollup bookkeeping, query planning and decoding.

A backend supplies connections (``_reading`` and ``_writing``, which serialises writers),
bulk insertion, the deletion of raw results and the dialect's SQL (``Dialect``). All SQL here
is written with ``?`` placeholders; a backend whose driver wants another style translates it.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import json
import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.store.base import (
    ALL_RESULTS,
    COST_BY,
    MAX_FALLBACK_BUCKETS,
    MAX_ISLANDS,
    RAW_RETENTION_S,
    ROLLUP_RETENTION_S,
    SPEND_TOP_N,
    BreakerEvent,
    CostBy,
    CostReport,
    CostRow,
    EntryTraffic,
    FallbackBucket,
    GroupBy,
    Island,
    ModelChange,
    PruneStats,
    RawGroupBy,
    ResultFilter,
    RouteCount,
    Store,
    Totals,
    TotalsBy,
)
from llmpulse.store.keys import COLUMNS as KEY_COLUMNS
from llmpulse.store.keys import MAX_STORED_KEYS, StoredKey
from llmpulse.store.keys import decode as decode_key
from llmpulse.store.rollup import (
    METRICS,
    OUTAGE_CLASSES,
    SUMMARY_COLUMNS,
    Bins,
    Summary,
    decode_counts,
    decode_summaries,
)

COLUMNS = (
    "ts", "target", "provider", "model", "check_kind", "ok", "error_class", "error_message",
    "http_status", "latency_ms", "ttft_ms", "tokens_per_s", "itl_p50_ms", "itl_max_ms",
    "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "tokens_estimated", "cost_usd", "rl_requests_limit", "rl_requests_remaining",
    "rl_tokens_limit", "rl_tokens_remaining", "rl_utilization", "rl_reset_s", "retry_after_s",
    "response_model", "system_fingerprint", "request_id", "finish_reason", "model_listed",
    "context_window", "warnings", "source", "attempts", "fallbacks", "agent", "region",
    "key_name", "team", "end_user", "tags", "session_id", "probe_kind", "answer_excerpt",
    "embedding_dimensions", "route", "fallback_reason", "features", "drill",
)  # fmt: skip
_ROLLUP_INSERT = (
    "INSERT INTO {table} ({time_col}, target, check_kind, "
    + ", ".join(SUMMARY_COLUMNS)
    + ") SELECT * FROM ({select}) AS s"
)
_NEWEST_ID = "SELECT coalesce(max(id), 0) FROM results"
_CLAIM_BATCH = "INSERT INTO ingested_batches (id, ts) VALUES (?, ?) ON CONFLICT (id) DO NOTHING"
MINUTE = 60
HOUR = 3600
DAY = 86400
# Rollups are computed a day at a time: bounded temporary tables when catching up on months.
_ROLLUP_CHUNK_S = 86400
_ServedModel = tuple[str | None, float]  # a target's current model, and its newest result's ts
Groups = tuple[str, str, str]


class _RolledBack(Exception):
    """Ends a transaction that was only a test, rolling it back."""


@dataclasses.dataclass(frozen=True, slots=True)
class Tier:
    period: int
    table: str
    time_col: str


# Finest first; each tier holds whole periods of the one before it, merged from it.
TIERS = (
    Tier(MINUTE, "rollups", "minute_ts"),
    Tier(HOUR, "rollups_hourly", "hour_ts"),
    Tier(6 * HOUR, "rollups_6h", "period_ts"),
    Tier(DAY, "rollups_daily", "day_ts"),
)


# SQL the dialects share.
OUTAGE_SQL = ", ".join(f"'{c}'" for c in OUTAGE_CLASSES)  # for ``error_class IN (...)``
# 2**20 > 1e6: room for the utilization in millionths below the millisecond timestamp, so
# that one max() finds the latest utilization.
PACK = 1 << 20
# The distinct targets of ``results``, one seek each through the (target, ts) index: no scan.
TARGETS_CTE = """
WITH RECURSIVE targets(name) AS (
    SELECT min(target) FROM results
    UNION ALL
    SELECT (SELECT min(target) FROM results WHERE target > name)
    FROM targets WHERE name IS NOT NULL
)"""
# The sketch column of each metric (rollup.METRICS), in order: merges number them 0, 1, ...
SKETCH_COLUMNS = tuple(f"{m}_sketch" for m in METRICS)
# Each metric's value in a results row. Context utilization as CheckResult computes it: none
# without a context window or without input tokens (CASE: PostgreSQL refuses to divide by 0).
METRIC_SQL = {
    "ttft": "ttft_ms",
    "latency": "latency_ms",
    "tps": "tokens_per_s",
    "context": "(CASE WHEN context_window > 0 "
    "THEN CAST(input_tokens AS DOUBLE PRECISION) / context_window END)",
}
# The end of a merge of rollup rows: its CTEs base, rl, err and bins joined per group.
MERGED_SQL = """
SELECT b.g0, b.g1, b.g2, b.provider, b.model, b.total, b.ok, b.outage, e.errors,
       s0.sketch, s1.sketch, s2.sketch, b.token_requests, b.input_tokens, b.output_tokens,
       b.cost_requests, b.cost_usd, b.rl_max, l.rl_latest, l.rl_latest_ts, b.first_ts, b.last_ts,
       s3.sketch, b.context_max
FROM base AS b
LEFT JOIN rl AS l ON l.g0 = b.g0 AND l.g1 = b.g1 AND l.g2 = b.g2
LEFT JOIN err AS e ON e.g0 = b.g0 AND e.g1 = b.g1 AND e.g2 = b.g2
LEFT JOIN bins AS s0 ON s0.g0 = b.g0 AND s0.g1 = b.g1 AND s0.g2 = b.g2 AND s0.m = 0
LEFT JOIN bins AS s1 ON s1.g0 = b.g0 AND s1.g1 = b.g1 AND s1.g2 = b.g2 AND s1.m = 1
LEFT JOIN bins AS s2 ON s2.g0 = b.g0 AND s2.g1 = b.g1 AND s2.g2 = b.g2 AND s2.m = 2
LEFT JOIN bins AS s3 ON s3.g0 = b.g0 AND s3.g1 = b.g1 AND s3.g2 = b.g2 AND s3.m = 3
"""


def merge_source_sql(table: str, groups: Groups, where: str) -> str:
    """The start of a merge: the CTE ``src``, the rows of ``table`` matching ``where`` under
    their group ``g0, g1, g2``."""
    g0, g1, g2 = groups
    return f"""
WITH src AS MATERIALIZED (
    SELECT {g0} AS g0, {g1} AS g1, {g2} AS g2, {", ".join(SUMMARY_COLUMNS)}
    FROM {table} WHERE {where}
)"""


class Conn(Protocol):
    """A connection of the store's, taking ``?`` placeholders and yielding plain tuples."""

    def all(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def run(self, sql: str, args: Sequence[object] = ()) -> int:
        """Execute; the number of rows changed."""
        ...

    def many(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...


C = TypeVar("C", bound=Conn)  # a backend's connection: its _insert_results may use more


class Dialect(Protocol):
    """The SQL that differs between backends (``sqlite_rollup``, ``postgres_rollup``)."""

    def bucket(self, column: str, step: int) -> str:
        """The start of ``column``'s period of ``step`` seconds, an integer."""
        ...

    def raw_summary_sql(
        self, groups: Groups, where: str, sketches: bool = True, ratelimit: bool = True
    ) -> str: ...

    def rollup_select_sql(self, groups: Groups, where: str) -> str:
        """``raw_summary_sql`` with sketches and ratelimit, as minute rollups store them."""
        ...

    def merge_summary_sql(self, below: Tier, groups: Groups, where: str) -> str: ...

    def tier_summary_sql(
        self, table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
    ) -> str: ...

    def tier_rows_sql(
        self, table: str, groups: tuple[str, str], where: str, sketches: bool, ratelimit: bool
    ) -> str: ...

    def latest_per_target_sql(self, columns: str) -> str: ...

    def json_first(self, column: str) -> str:
        """The first element of the JSON list in ``column``, as text (NULL for NULL)."""
        ...

    def tag_values(self) -> tuple[str, str]:
        """A FROM clause of ``results`` beside its rows' tags, a row per tag, and the tag's
        column in it."""
        ...

    def key(self, column: str) -> str:
        """The sketch key of ``column`` (``rollup.key``) in the dialect's SQL."""
        ...


def one(conn: Conn, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...]:
    return conn.all(sql, args)[0]


class SQLStore(Store, Generic[C]):
    dialect: Dialect

    def __init__(self) -> None:
        # Per target, loaded from the database on first write: the store is the only writer.
        self._served: dict[str, _ServedModel] = {}
        # The newest result id after this store's last write. Other processes write the same
        # targets (a gateway beside the daemon, several agents): when one has written since, the
        # served-model cache may be stale, and is dropped rather than trusted.
        self._last_id = 0
        # Writes of this process one at a time, the cache above updated with them.
        self._write_lock = threading.Lock()

    @abc.abstractmethod
    def _reading(self) -> contextlib.AbstractContextManager[C]: ...

    @abc.abstractmethod
    def _writing(self) -> contextlib.AbstractContextManager[C]:
        """A transaction, committed on exit; writers wait for one another."""

    @abc.abstractmethod
    def _insert_results(self, conn: C, rows: list[tuple[object, ...]]) -> None: ...

    def _prepare(self, rows: list[tuple[object, ...]]) -> None:
        """Before the rows' transaction: what the backend needs to store them."""

    def write_results(self, results: Sequence[CheckResult], batch_id: str | None = None) -> bool:
        if not results:
            return True
        rows = [encode(r) for r in results]
        with self._write_lock:
            self._prepare(rows)
            with self._writing() as conn:
                if batch_id is not None and not conn.run(_CLAIM_BATCH, (batch_id, rows[0][0])):
                    return False  # written before: its commit went through, its ack did not
                if self._served and one(conn, _NEWEST_ID)[0] != self._last_id:
                    self._served.clear()
                changes, served = self._model_changes_in(conn, results)
                self._insert_results(conn, rows)
                conn.many(
                    "INSERT INTO model_changes (ts, target, previous, current) VALUES (?, ?, ?, ?)",
                    changes,
                )
                (last_id,) = one(conn, _NEWEST_ID)
            # Only once committed: a failed batch is retried.
            self._served.update(served)
            self._last_id = last_id
        return True

    def check_writable(self) -> None:
        # A claim rolled back: the database must grant the write, and nothing is left behind.
        try:
            with self._write_lock, self._writing() as conn:
                conn.run(_CLAIM_BATCH, ("llmpulse:check_writable", 0))
                raise _RolledBack
        except _RolledBack:
            pass

    def claim(self, key: str, ts: float) -> bool:
        # The batch ids' table: a primary key any backend enforces across connections and hosts.
        with self._writing() as conn:
            return bool(conn.run(_CLAIM_BATCH, (key, ts)))

    def add_key(self, key: StoredKey) -> bool:
        with self._writing() as conn:
            if one(conn, "SELECT count(*) FROM gateway_keys")[0] >= MAX_STORED_KEYS:
                return False
            placeholders = ", ".join("?" * len(key.row()))
            return bool(
                conn.run(
                    f"INSERT INTO gateway_keys ({KEY_COLUMNS}) VALUES ({placeholders}) "
                    "ON CONFLICT DO NOTHING",
                    key.row(),
                )
            )

    def stored_keys(self, *, revoked: bool = False) -> list[StoredKey]:
        where = "" if revoked else "WHERE revoked_at IS NULL "
        with self._reading() as conn:
            rows = conn.all(
                f"SELECT {KEY_COLUMNS} FROM gateway_keys {where}ORDER BY name LIMIT ?",
                (MAX_STORED_KEYS,),
            )
        return [decode_key(r) for r in rows]

    def revoke_key(self, name: str, at: float) -> StoredKey | None:
        with self._writing() as conn:
            conn.run(
                "UPDATE gateway_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (at, name),
            )
            rows = conn.all(f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE name = ?", (name,))
        return decode_key(rows[0]) if rows else None

    def rotate_key(self, name: str, digest: str, at: float) -> StoredKey | None:
        with self._writing() as conn:
            if conn.all("SELECT 1 FROM gateway_keys WHERE digest = ?", (digest,)):
                return None
            changed = conn.run(
                "UPDATE gateway_keys SET digest = ?, rotated_at = ? "
                "WHERE name = ? AND revoked_at IS NULL",
                (digest, at, name),
            )
            rows = conn.all(f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE name = ?", (name,))
        return decode_key(rows[0]) if changed else None

    def write_breaker_events(self, events: Sequence[BreakerEvent]) -> None:
        rows = [(e.ts, e.agent, e.deployment, e.state, e.reason) for e in events]
        if not rows:
            return
        with self._writing() as conn:
            conn.many(
                "INSERT INTO breaker_events (ts, agent, deployment, state, reason) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    def breaker_events(
        self, start_ts: float, end_ts: float, limit: int = 1000
    ) -> list[BreakerEvent]:
        with self._reading() as conn:
            rows = conn.all(
                "SELECT ts, agent, deployment, state, reason FROM breaker_events "
                "WHERE ts >= ? AND ts < ? ORDER BY ts DESC, agent DESC, deployment DESC LIMIT ?",
                (start_ts, end_ts, limit),
            )
        return [BreakerEvent(float(r[0]), *r[1:]) for r in reversed(rows)]

    def route_counts(self, start_ts: float, end_ts: float, step_s: int) -> list[RouteCount]:
        first = self._first()
        bucket = self.dialect.bucket("ts", _step(step_s))
        with self._reading() as conn:
            rows = conn.all(
                f"""SELECT {bucket} AS b, {first} AS f, target, ok, fallback_reason,
                           CASE WHEN drill IS NULL THEN 0 ELSE 1 END AS d, count(*)
                    FROM results WHERE ts >= ? AND ts < ? AND source = ?
                    GROUP BY b, f, target, ok, fallback_reason, d""",
                (start_ts, end_ts, str(Source.TRAFFIC)),
            )
        counts = [
            RouteCount(int(b), f, a, bool(ok), reason, bool(d), int(n))
            for b, f, a, ok, reason, d, n in rows
        ]
        return sorted(counts, key=lambda c: (c.bucket, c.first, c.answered, c.ok, c.live_drill))

    def _first(self) -> str:
        """The SQL of a gateway request's first choice: its route's first deployment."""
        return f"coalesce({self.dialect.json_first('route')}, target)"

    def fallback_buckets(self, start_ts: float, end_ts: float, step_s: int) -> list[FallbackBucket]:
        first = self._first()
        bucket = self.dialect.bucket("ts", _step(step_s))
        with self._reading() as conn:
            rows = conn.all(
                f"""SELECT DISTINCT {bucket} AS b, {first} AS f
                    FROM results WHERE ts >= ? AND ts < ? AND source = ? AND drill IS NULL
                    AND {first} <> target ORDER BY b DESC, f DESC LIMIT ?""",
                (start_ts, end_ts, str(Source.TRAFFIC), MAX_FALLBACK_BUCKETS),
            )
        # Past the cap the newest are kept: the page reports the most recent incidents.
        return [FallbackBucket(int(b), f) for b, f in reversed(rows)]

    def first_choice_answer(
        self, start_ts: float, end_ts: float, firsts: Sequence[str]
    ) -> float | None:
        if not firsts:
            return None
        first, marks = self._first(), ", ".join("?" * len(firsts))
        with self._reading() as conn:
            (ts,) = one(
                conn,
                f"SELECT min(ts) FROM results WHERE ts >= ? AND ts < ? AND source = ? "
                f"AND drill IS NULL AND target IN ({marks}) AND {first} = target",
                (start_ts, end_ts, str(Source.TRAFFIC), *firsts),
            )
        return None if ts is None else float(ts)

    def fallback_counts(
        self, start_ts: float, end_ts: float, firsts: Sequence[str]
    ) -> dict[tuple[str, str, str | None], int]:
        if not firsts:
            return {}
        first, marks = self._first(), ", ".join("?" * len(firsts))
        with self._reading() as conn:
            rows = conn.all(
                f"""SELECT {first} AS f, target, fallback_reason, count(*) FROM results
                    WHERE ts >= ? AND ts < ? AND source = ? AND drill IS NULL
                    AND {first} IN ({marks}) AND {first} <> target
                    GROUP BY f, target, fallback_reason""",
                (start_ts, end_ts, str(Source.TRAFFIC), *firsts),
            )
        return {(f, a, reason): int(n) for f, a, reason, n in rows}

    def route_islands(self, start_ts: float, end_ts: float, firsts: Sequence[str]) -> list[Island]:
        if not firsts:
            return []
        first, marks = self._first(), ", ".join("?" * len(firsts))
        # Gaps and islands: within a run, the rank among all rows and the rank among rows of
        # the same kind grow together, so their difference names the run.
        with self._reading() as conn:
            rows = conn.all(
                f"""SELECT moved, min(ts) AS t0, max(ts), count(*) FROM (
                        SELECT ts, moved,
                               row_number() OVER (ORDER BY ts, id)
                               - row_number() OVER (PARTITION BY moved ORDER BY ts, id) AS run
                        FROM (SELECT id, ts, CASE WHEN {first} <> target THEN 1 ELSE 0 END AS moved
                              FROM results WHERE ts >= ? AND ts < ? AND source = ?
                              AND drill IS NULL AND {first} IN ({marks})) AS r
                    ) AS s GROUP BY moved, run ORDER BY t0 DESC LIMIT ?""",
                (start_ts, end_ts, str(Source.TRAFFIC), *firsts, MAX_ISLANDS),
            )
        return [Island(bool(m), float(a), float(b), int(n)) for m, a, b, n in reversed(rows)]

    def _model_changes_in(
        self, conn: Conn, results: Sequence[CheckResult]
    ) -> tuple[list[tuple[float, str, str | None, str]], dict[str, _ServedModel]]:
        """Rows for ``model_changes`` and each target's new state, from results in time order.

        A result older than the newest one already stored for its target changes nothing: it
        arrived late (a long stream check), and the history has moved on without it.
        """
        served: dict[str, _ServedModel] = {}
        changes: list[tuple[float, str, str | None, str]] = []
        for r in sorted(results, key=lambda r: r.timestamp):
            state = served.get(r.target) or self._served.get(r.target)
            model, newest = state if state is not None else _load_served(conn, r.target)
            ts = r.timestamp.timestamp()
            if ts < newest:
                continue
            if r.response_model is not None and r.response_model != model:
                changes.append((ts, r.target, model, r.response_model))
                model = r.response_model
            served[r.target] = (model, ts)
        return changes, served

    def cost_report(
        self, by: CostBy, start_ts: float, end_ts: float, *, source: str | None = None
    ) -> CostReport:
        if by not in COST_BY:
            raise ValueError(f"cannot report costs by {by!r}")  # spliced into SQL
        with self._reading() as conn:
            rolled_until, hours_until, pruned_before = one(
                conn,
                "SELECT spend_watermark_ts, spend_hour_watermark_ts, pruned_before "
                "FROM rollup_state",
            )
            held = None
            if rolled_until is not None and hours_until is not None:
                first = rolled_until
                if by not in RANKED_DIMENSIONS:  # kept per hour for past days too
                    kept = one(conn, _KEPT_HOURS)[0]
                    first = first if kept is None else min(first, kept)
                held = (first, hours_until)
            days, hours, raw, lo, hi = cost_plan(
                start_ts, end_ts, rolled_until, pruned_before, held
            )
            fetched: list[tuple[Any, ...]] = []
            if days is not None:
                sql, args = _rolled_spend_sql(by, "spend_daily", "day", "day", days, source)
                fetched += conn.all(sql, args)
            for span in hours:
                day = self.dialect.bucket("hour", DAY)
                sql, args = _rolled_spend_sql(by, "spend_hourly", "hour", day, span, source)
                fetched += conn.all(sql, args)
            for a, b in raw:
                sql, args = self._raw_spend_sql(by, a, b, source)
                fetched += [(name, 0, *rest) for name, *rest in conn.all(sql, args)]
        merged: dict[tuple[str | None, int, str], list[Any]] = {}
        for name, other, src, requests, _, cost, tokens_in, tokens_out in fetched:
            if by == "day":
                name = _iso_day(name)
            entry = merged.get((name, other, src))
            if entry is None:
                merged[(name, other, src)] = [requests, cost, tokens_in, tokens_out]
            else:
                entry[0] += requests
                entry[1] += cost
                entry[2] += tokens_in
                entry[3] += tokens_out
        rows = [
            CostRow(name, src, float(c), int(n), int(i), int(o), other=bool(other))
            for (name, other, src), (n, c, i, o) in merged.items()
        ]
        rows.sort(key=lambda r: (-r.cost_usd, -r.requests, r.other, r.source, r.name or ""))
        widened = (lo, hi) != (start_ts, end_ts)
        return CostReport(rows, lo, hi, exact=not widened and not any(r.other for r in rows))

    def _raw_spend_sql(
        self, by: CostBy, lo: float, hi: float, source: str | None
    ) -> tuple[str, list[object]]:
        """Spend of the raw results of ``[lo, hi)`` per owner of kind ``by`` and source:
        rows of ``(name, source, requests, cost_requests, cost_usd, input_tokens,
        output_tokens)``, the name NULL for none."""
        where = "ts >= ? AND ts < ?"
        args: list[object] = [lo, hi]
        if source is not None:
            where += " AND source = ?"
            args.append(source)
        if by == "tag":
            # Each tag of a result counts it once; untagged spend is its own row.
            tagged, tag = self.dialect.tag_values()
            name = f"NULLIF({tag}, '')"
            sql = (
                f"SELECT {name} AS name, {_SPEND_SUMS} FROM {tagged} WHERE {where} "
                f"GROUP BY {name}, source UNION ALL SELECT NULL, {_SPEND_SUMS} FROM results "
                f"WHERE {where} AND tags IS NULL GROUP BY source"
            )
            return sql, args + args
        column = self.dialect.bucket("ts", DAY) if by == "day" else _COST_COLUMNS[by]
        sql = (
            f"SELECT {column} AS name, {_SPEND_SUMS} FROM results WHERE {where} "
            f"GROUP BY {column}, source"
        )
        return sql, args

    def _rollup_spend(
        self,
        conn: Conn,
        table: str,
        start: int,
        period: int,
        top_n: int | None,
        dimensions: tuple[CostBy, ...] | None = None,
        *,
        from_hours: bool = False,
    ) -> None:
        """Write one period's rows of ``table`` (``spend_daily``: a UTC day, users and tags
        bounded to the top ``top_n``; ``spend_hourly``: an hour, every name) of
        ``dimensions`` (None: all), in place of any there were; summed from the raw results,
        or ``from_hours`` from ``spend_hourly`` (a day whose raw rows are pruned in part)."""
        time_col = "day" if table == "spend_daily" else "hour"
        dimensions = SPEND_DIMENSIONS if dimensions is None else dimensions
        listed = ", ".join(f"'{d}'" for d in dimensions)
        conn.run(f"DELETE FROM {table} WHERE {time_col} = ? AND dimension IN ({listed})", (start,))
        for dimension in dimensions:
            args: list[object]
            if from_hours:
                raw, args = _HOURS_SPEND_SQL, [dimension, start, start + period]
            else:
                raw, args = self._raw_spend_sql(dimension, start, start + period, None)
            sums = (
                "CAST(sum(requests) AS BIGINT), CAST(sum(cost_requests) AS BIGINT), "
                "CAST(sum(cost_usd) AS DOUBLE PRECISION), CAST(sum(input_tokens) AS BIGINT), "
                "CAST(sum(output_tokens) AS BIGINT)"
            )
            if top_n is not None and dimension in RANKED_DIMENSIONS:
                # The day's top N owners per source by name, the rest as one "other" row; no
                # owner (NULL) is a row of its own, never ranked.
                past = "rk > ?"
                ranked = (
                    "SELECT g.*, CASE WHEN name IS NULL THEN 0 ELSE row_number() OVER ("
                    "PARTITION BY source, CASE WHEN name IS NULL THEN 1 ELSE 0 END "
                    "ORDER BY cost_usd DESC, requests DESC, name) END AS rk "
                    f"FROM ({raw}) AS g"
                )
                select = (
                    f"SELECT CAST(? AS DOUBLE PRECISION), source, '{dimension}', "
                    f"CASE WHEN {past} THEN '' ELSE coalesce(name, '') END, "
                    f"CASE WHEN {past} THEN 1 ELSE 0 END, {sums} FROM ({ranked}) AS r "
                    "GROUP BY 2, 4, 5"
                )
                args = [start, top_n, top_n, *args]
            else:
                select = (
                    f"SELECT CAST(? AS DOUBLE PRECISION), source, '{dimension}', "
                    f"coalesce(name, ''), 0, {sums} FROM ({raw}) AS g GROUP BY 2, 4"
                )
                args = [start, *args]
            columns = _SPEND_COLUMNS.replace("day", time_col, 1)
            conn.run(f"INSERT INTO {table} ({columns}) {select}", args)

    def latest_results(
        self, limit: int = 100, *, where: ResultFilter = ALL_RESULTS
    ) -> list[CheckResult]:
        sql = f"SELECT {', '.join(COLUMNS)} FROM results"
        cond, args = _where(where)
        if cond:
            sql += f" WHERE {cond}"
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        with self._reading() as conn:
            rows = conn.all(sql, (*args, limit))
        return [decode(row) for row in rows]

    def traffic_by_entry(
        self, start_ts: float, end_ts: float, recent_ts: float
    ) -> dict[str, EntryTraffic]:
        first = self.dialect.json_first("route")
        where = "ts >= ? AND ts < ? AND source = 'traffic' AND drill IS NULL AND route IS NOT NULL"
        span = (start_ts, end_ts)
        with self._reading() as conn:
            counts = conn.all(
                f"SELECT {first}, count(*), "
                "coalesce(sum(CASE WHEN ts >= ? THEN 1 ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN ts >= ? THEN coalesce(input_tokens, 0) "
                "+ coalesce(output_tokens, 0) ELSE 0 END), 0) "
                f"FROM results WHERE {where} GROUP BY 1",
                (recent_ts, recent_ts, *span),
            )
            # A handful of distinct lists: requests of one app look alike.
            listed = conn.all(
                f"SELECT DISTINCT {first}, features FROM results "
                f"WHERE {where} AND features IS NOT NULL",
                span,
            )
            # The value at index floor(0.99 (n - 1)) of each entry's sorted prompts, in integers.
            p99 = conn.all(
                f"SELECT f, input_tokens FROM (SELECT {first} AS f, input_tokens, "
                f"row_number() OVER (PARTITION BY {first} ORDER BY input_tokens) - 1 AS i, "
                f"count(*) OVER (PARTITION BY {first}) AS n FROM results "
                f"WHERE {where} AND input_tokens IS NOT NULL) AS q "
                "WHERE i * 100 <= 99 * (n - 1) AND (i + 1) * 100 > 99 * (n - 1)",
                span,
            )
        features: dict[str, set[str]] = {}
        for name, raw in listed:
            features.setdefault(name, set()).update(json.loads(raw))
        prompts = {name: int(value) for name, value in p99}
        return {
            name: EntryTraffic(
                int(total),
                int(recent),
                int(tokens),
                prompts.get(name),
                frozenset(features.get(name, ())),
            )
            for name, total, recent, tokens in counts
        }

    def tail_start(self, since_ts: float) -> tuple[list[CheckResult], int]:
        with self._reading() as conn:
            (cursor,) = one(conn, "SELECT coalesce(max(id), 0) FROM results")
            rows = conn.all(
                f"SELECT {', '.join(COLUMNS)} FROM results WHERE ts >= ? AND id <= ? "
                "ORDER BY ts, id",
                (since_ts, cursor),
            )
        return [decode(row) for row in rows], cursor

    def tail(self, cursor: int, limit: int = 10_000) -> tuple[list[CheckResult], int]:
        # Ids grow in commit order in both backends (SQLite has one writer; PostgreSQL writers
        # hold an advisory lock until they commit), so no row can appear below the cursor.
        with self._reading() as conn:
            rows = conn.all(
                f"SELECT id, {', '.join(COLUMNS)} FROM results WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            )
            if not rows:
                # Pruning every row lets SQLite hand out ids again from the largest left.
                (newest,) = one(conn, "SELECT coalesce(max(id), 0) FROM results")
                return [], min(cursor, newest)
        return [decode(row[1:]) for row in rows], rows[-1][0]

    def latest_per_target(self) -> dict[str, CheckResult]:
        sql = self.dialect.latest_per_target_sql(", ".join(f"r.{c}" for c in COLUMNS))
        with self._reading() as conn:
            rows = conn.all(sql)
        return {row[1]: decode(row) for row in rows}

    def results_between(
        self,
        start_ts: float,
        end_ts: float,
        *,
        where: ResultFilter = ALL_RESULTS,
        until_cursor: int | None = None,
    ) -> list[CheckResult]:
        cond, args = _where(where, ("ts", start_ts, end_ts))
        if until_cursor is not None:
            cond, args = f"{cond} AND id <= ?", (*args, until_cursor)
        sql = f"SELECT {', '.join(COLUMNS)} FROM results WHERE {cond} ORDER BY ts, id"
        with self._reading() as conn:
            rows = conn.all(sql, args)
        return [decode(row) for row in rows]

    def metric_values(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: RawGroupBy = None,
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[str, dict[str, list[float]]]:
        group = _raw_group(group_by)
        cond, args = _where(where, ("ts", start_ts, end_ts))
        columns = ", ".join(METRIC_SQL[m] for m in METRICS)
        sql = f"SELECT {group}, {columns} FROM results WHERE {cond}"
        with self._reading() as conn:
            rows = conn.all(sql, args)
        lists: dict[str, tuple[list[float], list[float], list[float], list[float]]] = {}
        for g, ttft, latency, tps, context in rows:
            entry = lists.get(g)
            if entry is None:
                entry = lists[g] = ([], [], [], [])
            if ttft is not None:
                entry[0].append(ttft)
            if latency is not None:
                entry[1].append(latency)
            if tps is not None:
                entry[2].append(tps)
            if context is not None:
                entry[3].append(context)
        for entry in lists.values():
            for values in entry:
                values.sort()
        return {g: dict(zip(METRICS, entry, strict=True)) for g, entry in lists.items()}

    def summarize_raw(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: RawGroupBy = None,
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[str, Summary]:
        group = _raw_group(group_by)
        cond, args = _where(where, ("ts", start_ts, end_ts))
        sql = self.dialect.raw_summary_sql(("NULL", group, "''"), cond, sketches=False)
        with self._reading() as conn:
            rows = conn.all(sql, args)
        return {row[1]: s for row, s in zip(rows, decode_summaries(rows), strict=True)}

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
        group = _raw_group(group_by)
        step = _step(step_s)
        if metric not in METRIC_SQL:
            raise ValueError(f"no metric {metric!r}")
        value = METRIC_SQL[metric]
        cond, args = _where(where, ("ts", start_ts, end_ts))
        # Counted per key in the database: one row per bin, however many results.
        sql = f"""
SELECT b, g, {self.dialect.key("v")}, count(*), max(v) FROM (
    SELECT {self.dialect.bucket("ts", step)} AS b, {group} AS g, {value} AS v
    FROM results WHERE {cond}
) AS r WHERE v IS NOT NULL GROUP BY 1, 2, 3"""
        with self._reading() as conn:
            rows = conn.all(sql, args)
        out: dict[tuple[int, str], tuple[Bins, float]] = {}
        for bucket, g, k, n, largest in rows:
            entry = out.get((bucket, g))
            if entry is None:
                out[(bucket, g)] = ({k: n}, largest)
            else:
                entry[0][k] = n
                if largest > entry[1]:
                    out[(bucket, g)] = (entry[0], largest)
        return out

    def rollup_watermark(self) -> float | None:
        with self._reading() as conn:
            rows = conn.all("SELECT watermark_ts FROM rollup_state")
        return None if not rows else rows[0][0]

    def rollup(self, until_ts: float, *, spend_top_n: int = SPEND_TOP_N) -> int:
        if spend_top_n < 1:
            raise ValueError(f"spend_top_n must be at least 1, got {spend_top_n!r}")
        cutoff = math.floor(until_ts / MINUTE) * MINUTE
        written = 0
        with self._write_lock, self._writing() as conn:
            watermark, last_id, pruned_before, coarse, spent_days, spent_hours = one(
                conn,
                "SELECT watermark_ts, last_id, pruned_before, coarse_watermark_ts, "
                "spend_watermark_ts, spend_hour_watermark_ts FROM rollup_state",
            )
            max_id = one(conn, "SELECT coalesce(max(id), 0) FROM results")[0]
            backfill: list[tuple[int, int]] = []
            if coarse is None and watermark is not None:
                # Tiers added by a migration start empty: fill them from the hourly rows once.
                first = one(conn, "SELECT min(hour_ts) FROM rollups_hourly")[0]
                if first is not None:
                    backfill.append((first, int(watermark)))
            if watermark is None:
                first = one(conn, "SELECT min(ts) FROM results")[0]
                watermark = cutoff if first is None else min(cutoff, _floor(first, MINUTE))
            ranges: list[tuple[int, int]] = []
            if max_id > last_id:
                # Rows inserted since the last call, for minutes already rolled up: recompute
                # those minutes, unless pruning has removed part of their raw rows.
                late = conn.all(
                    f"SELECT DISTINCT {self.dialect.bucket('ts', MINUTE)} FROM results "
                    "WHERE id > ? AND id <= ? AND ts < ? ORDER BY 1",
                    (last_id, max_id, watermark),
                )
                minutes = [m for (m,) in late if pruned_before is None or m >= pruned_before]
                ranges += _runs(minutes, MINUTE)
            if cutoff > watermark:
                ranges.append((int(watermark), cutoff))
            for lo, hi in ranges:
                for a, b in _chunks(lo, hi, _ROLLUP_CHUNK_S):
                    written += self._rollup_minutes(conn, a, b)
            watermark = max(watermark, cutoff)
            for below, tier in itertools.pairwise(TIERS):
                # Queries read whole periods only (see plan): write a period once it is
                # complete, and again whenever late rows change it.
                spans = ranges + backfill if tier.period > HOUR else ranges
                p = tier.period
                starts = {a for lo, hi in spans for a in range(_floor(lo, p), hi, p)}
                complete = sorted(a for a in starts if a + p <= watermark)
                for lo, hi in _runs(complete, p):
                    for a, b in _chunks(lo, hi, max(p, _ROLLUP_CHUNK_S)):
                        self._rollup_tier(conn, below, tier, a, b)
            spent_days, spent_hours = self._rollup_spend_days(
                conn, ranges, watermark, (spent_days, spent_hours), pruned_before, spend_top_n
            )
            conn.run(
                "UPDATE rollup_state SET watermark_ts = ?, last_id = ?, coarse_watermark_ts = ?, "
                "spend_watermark_ts = ?, spend_hour_watermark_ts = ?",
                (watermark, max_id, watermark, spent_days, spent_hours),
            )
        return written

    def _rollup_spend_days(
        self,
        conn: Conn,
        changed: list[tuple[int, int]],
        watermark: float,
        spent: tuple[float | None, float | None],
        pruned_before: float | None,
        top_n: int,
    ) -> tuple[int, int]:
        """Roll up the daily spend of the UTC days completed since the spend watermark (from
        the first whole day of raw results on the first call) and of the rolled-up days whose
        minutes ``changed`` (late results), unless pruning has removed part of their raw rows;
        then the hourly spend of the hours completed since the hourly watermark (and of the
        hours that ``changed``, likewise). Users and tags per hour only for the days not
        rolled up (dropped once their day is); keys, teams, models and providers per hour for
        ``HOURLY_SPEND_KEPT_S`` (pruned), so that a rolling budget's window, which starts
        within a day whose raw results are pruned, is summed exactly from its first whole
        hour. The hours come first: a day whose raw rows are pruned in part (``raw_retention``
        under a day) is summed from its hours, every name kept until then. Returns the new
        daily and hourly watermarks."""
        first_day, due_days, days = self._spend_days_due(
            conn, changed, watermark, spent[0], pruned_before
        )
        done = _floor(watermark, HOUR)
        start = days if spent[1] is None else int(spent[1])
        if spent[1] is None:
            # First call: the kept hours of the past days too, as far as raw rows are whole.
            first = one(conn, "SELECT min(ts) FROM results")[0]
            if first is not None:
                start = max(_floor(first, HOUR), _ceil(done - HOURLY_SPEND_KEPT_S, HOUR))
                if pruned_before is not None:
                    start = max(start, _ceil(pruned_before, HOUR))
                start = min(start, days)
        kept = one(conn, _KEPT_HOURS)[0]
        late = {h for lo, hi in changed for h in range(_floor(lo, HOUR), hi, HOUR)}
        # Only hours whose raw rows are whole, and the past days' hours only where they are kept.
        late = {
            h
            for h in late
            if h < start
            and (pruned_before is None or h >= pruned_before)
            and (h >= first_day or (kept is not None and h >= kept))
        }
        for hour in sorted(late) + list(range(start, done, HOUR)):
            dimensions = SPEND_DIMENSIONS if hour >= first_day else HOURLY_KEPT_DIMENSIONS
            self._rollup_spend(conn, "spend_hourly", hour, HOUR, None, dimensions)
        for day in due_days:
            whole = pruned_before is None or day >= pruned_before
            self._rollup_spend(conn, "spend_daily", day, DAY, top_n, from_hours=not whole)
        if spent[0] is None or days > spent[0]:
            ranked = ", ".join(f"'{d}'" for d in RANKED_DIMENSIONS)
            conn.run(
                f"DELETE FROM spend_hourly WHERE hour < ? AND dimension IN ({ranked})", (days,)
            )
        return days, max(start, done)

    def _spend_days_due(
        self,
        conn: Conn,
        changed: list[tuple[int, int]],
        watermark: float,
        spent: float | None,
        pruned_before: float | None,
    ) -> tuple[int, list[int], int]:
        """The first day not in ``spend_daily`` yet, the days to roll up now (late ones whose
        raw rows are whole, then those completed), and the new daily watermark."""
        done = _floor(watermark, DAY)
        if spent is None:
            first = one(conn, "SELECT min(ts) FROM results")[0]
            spent = done if first is None else min(done, _floor(first, DAY))
            if pruned_before is not None and spent < pruned_before:
                spent = min(done, _ceil(pruned_before, DAY))
        start = int(spent)
        late = {d for lo, hi in changed for d in range(_floor(lo, DAY), hi, DAY) if d < start}
        if pruned_before is not None:
            late = {d for d in late if d >= pruned_before}
        return start, sorted(late) + list(range(start, done, DAY)), max(start, done)

    def _rollup_minutes(self, conn: Conn, lo: int, hi: int) -> int:
        conn.run("DELETE FROM rollups WHERE minute_ts >= ? AND minute_ts < ?", (lo, hi))
        select = self.dialect.rollup_select_sql(
            (self.dialect.bucket("ts", MINUTE), "target", "check_kind"), "ts >= ? AND ts < ?"
        )
        sql = _ROLLUP_INSERT.format(table="rollups", time_col="minute_ts", select=select)
        return conn.run(sql, (lo, hi))

    def _rollup_tier(self, conn: Conn, below: Tier, tier: Tier, lo: int, hi: int) -> None:
        table, col, p = tier.table, tier.time_col, tier.period
        conn.run(f"DELETE FROM {table} WHERE {col} >= ? AND {col} < ?", (lo, hi))
        select = self.dialect.merge_summary_sql(
            below,
            (f"{below.time_col} / {p} * {p}", "target", "check_kind"),
            f"{below.time_col} >= ? AND {below.time_col} < ?",
        )
        conn.run(_ROLLUP_INSERT.format(table=table, time_col=col, select=select), (lo, hi))

    def prune(
        self,
        now: float,
        raw_retention_s: float = RAW_RETENTION_S,
        rollup_retention_s: float = ROLLUP_RETENTION_S,
        *,
        spend_top_n: int = SPEND_TOP_N,
    ) -> PruneStats:
        # Roll up first: no raw row is deleted before its minute is in the rollups.
        self.rollup(now, spend_top_n=spend_top_n)
        raw_cut = now - raw_retention_s
        rollup_cut = now - rollup_retention_s
        with self._write_lock, self._writing() as conn:
            results = self._prune_results(conn, raw_cut)
            # Minute rollups before the cut, and the coarser periods ending by it.
            rollups = conn.run("DELETE FROM rollups WHERE minute_ts < ?", (rollup_cut,))
            for tier in TIERS[1:]:
                conn.run(
                    f"DELETE FROM {tier.table} WHERE {tier.time_col} + {tier.period} <= ?",
                    (rollup_cut,),
                )
            conn.run(f"DELETE FROM spend_daily WHERE day + {DAY} <= ?", (rollup_cut,))
            hours_cut = max(rollup_cut, now - HOURLY_SPEND_KEPT_S)
            conn.run(f"DELETE FROM spend_hourly WHERE hour + {HOUR} <= ?", (hours_cut,))
            # Batch ids are kept as long as raw results: no spool replays anything older.
            conn.run("DELETE FROM ingested_batches WHERE ts < ?", (raw_cut,))
            # Breaker events mark charts of raw results: kept as long.
            conn.run("DELETE FROM breaker_events WHERE ts < ?", (raw_cut,))
        return PruneStats(results=results, rollups=rollups)

    @abc.abstractmethod
    def _prune_results(self, conn: Conn, raw_cut: float) -> int:
        """Delete the raw results before ``raw_cut`` (returning how many) and record the cut
        in ``rollup_state.pruned_before``: minutes before it are not rolled up again."""

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
        bucketed = group_by == "bucket"
        by = None if bucketed else group_by
        step = _step(step_s) if bucketed else 0
        out: dict[str | int, Summary] = {}
        for rows in self._fetch(start_ts, end_ts, step, by, where, sketches=sketches):
            for row, part in zip(rows, decode_summaries(rows), strict=True):
                key = row[0] if bucketed else row[1]
                existing = out.get(key)
                if existing is None:
                    out[key] = part
                else:
                    existing.merge(part)
        return out

    def totals(
        self,
        start_ts: float,
        end_ts: float,
        *,
        step_s: int | None = None,
        by: TotalsBy = "target",
        where: ResultFilter = ALL_RESULTS,
    ) -> dict[tuple[int | None, str], Totals]:
        step = 0 if step_s is None else _step(step_s)
        out: dict[tuple[int | None, str], Totals] = {}
        parts = self._fetch(start_ts, end_ts, step, by, where, sketches=False, ratelimit=False)
        for rows in parts:
            for row, errors in zip(rows, decode_counts([r[8] for r in rows]), strict=True):
                part = Totals(
                    provider=row[3],
                    model=row[4],
                    total=row[5],
                    ok=row[6],
                    outage=row[7],
                    errors=errors,
                    token_requests=row[12],
                    input_tokens=row[13],
                    output_tokens=row[14],
                    cost_requests=row[15],
                    cost_usd=row[16],
                    first_ts=row[20],
                    last_ts=row[21],
                )
                existing = out.get((row[0], row[1]))
                if existing is None:
                    out[(row[0], row[1])] = part
                else:
                    existing.merge(part)
        return out

    def _fetch(
        self,
        start: float,
        end: float,
        step: int,
        by: str | None,
        where: ResultFilter,
        *,
        sketches: bool,
        ratelimit: bool = True,
    ) -> list[list[tuple[Any, ...]]]:
        """Rows of ``(bucket start or None, by column or "", "", *SUMMARY_COLUMNS)``, one list
        per source of the plan, for the caller to decode (after the connection is released)
        and to merge per group."""
        if by not in (None, "target", "provider", "model"):
            raise ValueError(f"cannot group by {by!r}")  # a column name, spliced into SQL
        if where.region is not None or where.source is not None or where.error_class is not None:
            raise ValueError(
                "rollups keep neither region, source nor error class: filter raw results"
            )
        d = self.dialect
        fetched: list[list[tuple[Any, ...]]] = []
        with self._reading() as conn:
            watermark, coarse = one(
                conn, "SELECT watermark_ts, coarse_watermark_ts FROM rollup_state"
            )
            for tier, lo, hi in plan(start, end, watermark, coarse, step):
                time_col = "ts" if tier is None else tier.time_col
                bucket = d.bucket(time_col, step) if step else "NULL"
                cond, args = _where(where, (time_col, lo, hi))
                groups = (bucket, by or "''")
                if tier is None:
                    sql = d.raw_summary_sql((*groups, "''"), cond, sketches, ratelimit)
                elif step == tier.period and (by == "target" or where.target is not None):
                    # A group is one row per check kind: merged below by the caller.
                    sql = d.tier_rows_sql(tier.table, groups, cond, sketches, ratelimit)
                else:
                    sql = d.tier_summary_sql(tier.table, groups, cond, sketches, ratelimit)
                fetched.append(conn.all(sql, args))
        return fetched

    def model_changes(
        self, target: str | None, start_ts: float, end_ts: float
    ) -> list[ModelChange]:
        # The table's target and ts are the results': the same conditions select them.
        cond, args = _where(ResultFilter(target=target), ("ts", start_ts, end_ts))
        sql = f"SELECT ts, target, previous, current FROM model_changes WHERE {cond}"
        with self._reading() as conn:
            rows = conn.all(sql + " ORDER BY ts, id", args)
        return [ModelChange(*row) for row in rows]


def _load_served(conn: Conn, target: str) -> _ServedModel:
    model, newest = one(
        conn,
        "SELECT (SELECT current FROM model_changes WHERE target = ? "
        "ORDER BY ts DESC, id DESC LIMIT 1), (SELECT max(ts) FROM results WHERE target = ?)",
        (target, target),
    )
    return model, -math.inf if newest is None else newest


def _step(step_s: int | None) -> int:
    if not step_s or step_s % MINUTE:
        raise ValueError(f"step_s must be a positive multiple of 60, got {step_s!r}")
    return int(step_s)


def _floor(ts: float, step: int) -> int:
    return math.floor(ts / step) * step


def _ceil(ts: float, step: int) -> int:
    return math.ceil(ts / step) * step


def _runs(starts: Sequence[int], step: int) -> list[tuple[int, int]]:
    """Sorted period starts -> half-open ranges of consecutive periods."""
    runs: list[tuple[int, int]] = []
    for s in starts:
        if runs and runs[-1][1] == s:
            runs[-1] = (runs[-1][0], s + step)
        else:
            runs.append((s, s + step))
    return runs


def _chunks(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    return [(a, min(a + size, hi)) for a in range(lo, hi, size)]


def plan(
    start: float, end: float, watermark: float | None, coarse: float | None, step: int
) -> list[tuple[Tier | None, float, float]]:
    """Which source answers which part of [start, end): raw rows (None) for partial minutes and
    for the tail after the watermark, and for the rest the coarsest tiers whose periods fit
    whole (and, with buckets, divide the step), finer tiers at the edges. The six-hour and
    daily tiers only below their own watermark ``coarse``."""
    a = _ceil(start, MINUTE)
    if watermark is None or watermark <= a or end <= a:
        return [(None, start, end)]
    b = min(int(watermark), _floor(end, MINUTE))
    plan: list[tuple[Tier | None, float, float]] = []
    if start < a:
        plan.append((None, start, a))
    if b < end:
        plan.append((None, b, end))
    tiers = [t for t in TIERS if step % t.period == 0]
    return plan + _cover(a, b, tiers, coarse)


def _cover(
    lo: int, hi: int, tiers: list[Tier], coarse: float | None
) -> list[tuple[Tier | None, float, float]]:
    """[lo, hi) (whole minutes) from the coarsest of ``tiers`` (finest first) and finer ones."""
    if lo >= hi:
        return []
    *finer, tier = tiers
    if not finer:
        return [(tier, lo, hi)]
    top = hi if tier.period <= HOUR else min(hi, coarse if coarse is not None else lo)
    a, b = _ceil(lo, tier.period), _floor(top, tier.period)
    if a >= b:
        return _cover(lo, hi, finer, coarse)
    return [*_cover(lo, a, finer, coarse), (tier, a, b), *_cover(b, hi, finer, coarse)]


# Results of a single-agent setup have no region: they group, and are selected, as "".
_REGION = "coalesce(region, '')"


def _raw_group(group_by: RawGroupBy) -> str:
    """The SQL of a raw results group: a column name, spliced into SQL, so checked."""
    if group_by not in (None, "target", "provider", "region", "source", "agent"):
        raise ValueError(f"cannot group by {group_by!r}")
    if group_by is None:
        return "''"
    if group_by == "agent":
        return "coalesce(agent, '')"
    return _REGION if group_by == "region" else group_by


def _where(
    where: ResultFilter, span: tuple[str, float, float] | None = None
) -> tuple[str, tuple[object, ...]]:
    """The conditions of ``where`` and of ``lo <= column < hi`` for a ``span`` of
    ``(column, lo, hi)``, joined by AND ("" for none), and their args."""
    conds: list[str] = []
    args: list[object] = []
    if span is not None:
        column, lo, hi = span
        conds.append(f"{column} >= ? AND {column} < ?")
        args += (lo, hi)
    for column, value in (
        ("target", where.target),
        ("provider", where.provider),
        ("check_kind", where.check),
        (_REGION, where.region),
        ("source", where.source),
        ("error_class", where.error_class),
        ("model", where.model),
    ):
        if value is not None:
            conds.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(conds), tuple(args)


# An owner's name in the raw results: an empty one counts as none.
_COST_COLUMNS = {
    "key": "NULLIF(key_name, '')",
    "team": "NULLIF(team, '')",
    "user": "NULLIF(end_user, '')",
    "model": "model",
    "provider": "provider",
}
# What the daily spend rollup keeps; users and tags only the top N per day by name.
SPEND_DIMENSIONS: tuple[CostBy, ...] = ("key", "team", "user", "tag", "model", "provider")
RANKED_DIMENSIONS = ("user", "tag")
# Kept per hour past their day (``HOURLY_SPEND_KEPT_S``): the configured, bounded owners.
HOURLY_KEPT_DIMENSIONS: tuple[CostBy, ...] = ("key", "team", "model", "provider")
# The longest rolling budget (30 d) and a day: its window's first partial day, raw results
# pruned, is read from whole hours.
HOURLY_SPEND_KEPT_S = 31 * DAY
# An owner's spend from spend_hourly over a span, as ``_raw_spend_sql`` has it from raw rows.
_HOURS_SPEND_SQL = (
    "SELECT CASE WHEN name = '' THEN NULL ELSE name END AS name, source, "
    "CAST(sum(requests) AS BIGINT) AS requests, "
    "CAST(sum(cost_requests) AS BIGINT) AS cost_requests, "
    "CAST(sum(cost_usd) AS DOUBLE PRECISION) AS cost_usd, "
    "CAST(sum(input_tokens) AS BIGINT) AS input_tokens, "
    "CAST(sum(output_tokens) AS BIGINT) AS output_tokens "
    "FROM spend_hourly WHERE dimension = ? AND hour >= ? AND hour < ? GROUP BY 1, 2"
)
# The first hour kept in spend_hourly: every hour since, to its watermark, is rolled up (a
# result always has a provider row). Read through the primary key (dimension, hour).
_KEPT_HOURS = "SELECT min(hour) FROM spend_hourly WHERE dimension = 'provider'"
_SPEND_COLUMNS = (
    "day, source, dimension, name, other, requests, cost_requests, cost_usd, input_tokens, "
    "output_tokens"
)
_SPEND_SUMS = (
    "source, count(*) AS requests, count(cost_usd) AS cost_requests, "
    "CAST(coalesce(sum(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd, "
    "CAST(coalesce(sum(input_tokens), 0) AS BIGINT) AS input_tokens, "
    "CAST(coalesce(sum(output_tokens), 0) AS BIGINT) AS output_tokens"
)


def _rolled_spend_sql(
    by: CostBy,
    table: str,
    time_col: str,
    day: str,
    span: tuple[float, float],
    source: str | None,
) -> tuple[str, list[object]]:
    """Rows of ``table`` (``spend_daily``, ``spend_hourly``) over a span of its whole
    periods, summed per owner of kind ``by`` and source: ``(name, other, source, requests,
    cost_requests, cost_usd, input_tokens, output_tokens)``, the name NULL for none. Every
    result is under exactly one provider, so days (``day``: the SQL of a row's UTC day) are
    counted from the provider rows."""
    dimension = "provider" if by == "day" else by
    name = day if by == "day" else "CASE WHEN name = '' THEN NULL ELSE name END"
    where = f"dimension = ? AND {time_col} >= ? AND {time_col} < ?"
    args: list[object] = [dimension, *span]
    if source is not None:
        where += " AND source = ?"
        args.append(source)
    sql = (
        f"SELECT {name}, other, source, CAST(sum(requests) AS BIGINT), "
        "CAST(sum(cost_requests) AS BIGINT), CAST(sum(cost_usd) AS DOUBLE PRECISION), "
        "CAST(sum(input_tokens) AS BIGINT), CAST(sum(output_tokens) AS BIGINT) "
        f"FROM {table} WHERE {where} GROUP BY 1, 2, 3"
    )
    return sql, args


def cost_plan(
    start: float,
    end: float,
    rolled_until: float | None,
    pruned_before: float | None,
    hours: tuple[float, float] | None = None,
) -> tuple[
    tuple[float, float] | None, list[tuple[float, float]], list[tuple[float, float]], float, float
]:
    """Which part of ``[start, end)`` a cost report reads from ``spend_daily`` (whole UTC
    days before ``rolled_until``, or None), which from ``spend_hourly`` (whole hours in
    ``hours``, the span it holds for the dimension) and which from raw results (the rest),
    and the range it then covers: an edge hour or day whose raw results are pruned (before
    ``pruned_before``) is taken whole from the hourly rollup where it holds it, else from
    the daily one, which widens the range to its bounds."""
    if end <= start:
        return None, [], [(start, end)], start, end
    gone = -math.inf if pruned_before is None else pruned_before
    h0, h1 = hours if hours is not None else (math.inf, -math.inf)

    def held(x: float, y: float) -> bool:
        return h0 <= x and y <= h1

    lo, hi = start, end
    if lo < gone and held(_floor(lo, HOUR), _ceil(lo, HOUR)):
        lo = _floor(lo, HOUR)
    if _floor(hi, HOUR) < gone and held(_floor(hi, HOUR), _ceil(hi, HOUR)):
        hi = _ceil(hi, HOUR)
    days = None
    if rolled_until is not None:
        a, b = _ceil(lo, DAY), min(_floor(hi, DAY), int(rolled_until))
        x, y = lo, hi
        if lo < a and lo < gone and not held(lo, a) and a - DAY < rolled_until:
            a = x = a - DAY
        end_pruned = b < hi and b == _floor(hi, DAY) and b < gone and not held(b, hi)
        if end_pruned and b + DAY <= rolled_until:
            b = y = b + DAY
        if a < b:
            days, lo, hi = (a, b), x, y
    rest = [(lo, hi)] if days is None else [(lo, days[0]), (days[1], hi)]
    spans: list[tuple[float, float]] = []
    raw: list[tuple[float, float]] = []
    for x, y in rest:
        if x >= y:
            continue
        p, q = max(_ceil(x, HOUR), h0), min(_floor(y, HOUR), h1)
        if p >= q:
            raw.append((x, y))
            continue
        spans.append((p, q))
        raw += [(u, v) for u, v in ((x, p), (q, y)) if u < v]
    return days, spans, raw, lo, hi


def _iso_day(value: Any) -> str:
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d")


def encode(r: CheckResult) -> tuple[object, ...]:
    """A result as the values of ``COLUMNS`` (plain JSON-able values: the spool keeps them)."""
    rl = r.ratelimit or RateLimit()
    u = r.usage
    return (
        r.timestamp.timestamp(), r.target, r.provider, r.model, str(r.check), int(r.ok),
        str(r.error_class) if r.error_class else None, r.error_message, r.http_status,
        r.latency_ms, r.ttft_ms, r.tokens_per_s, r.itl_p50_ms, r.itl_max_ms,
        u.input_tokens, u.output_tokens, u.cached_tokens, u.cache_write_tokens,
        u.reasoning_tokens, int(u.estimated), r.cost_usd,
        rl.requests_limit, rl.requests_remaining, rl.tokens_limit, rl.tokens_remaining,
        rl.utilization, rl.reset_s, r.retry_after_s, r.response_model, r.system_fingerprint,
        r.request_id, r.finish_reason, None if r.model_listed is None else int(r.model_listed),
        r.context_window, json.dumps(r.warnings) if r.warnings else None, str(r.source),
        r.attempts, r.fallbacks, r.agent, r.region,
        r.key_name, r.team, r.user, json.dumps(r.tags) if r.tags else None, r.session,
        str(r.kind), r.answer_excerpt, r.embedding_dimensions,
        json.dumps(r.route) if r.route else None,
        str(r.fallback_reason) if r.fallback_reason else None,
        json.dumps(r.features) if r.features else None, r.drill,
    )  # fmt: skip


def decode(values: Sequence[Any]) -> CheckResult:
    row = dict(zip(COLUMNS, values, strict=True))
    has_rl = any(
        row[k] is not None for k in ("rl_requests_limit", "rl_tokens_limit", "rl_utilization")
    )
    return CheckResult(
        target=row["target"],
        provider=row["provider"],
        model=row["model"],
        check=row["check_kind"],
        kind=CheckKind(row["probe_kind"] or row["check_kind"]),
        timestamp=datetime.fromtimestamp(row["ts"], UTC),
        ok=bool(row["ok"]),
        error_class=ErrorClass(row["error_class"]) if row["error_class"] else None,
        error_message=row["error_message"],
        http_status=row["http_status"],
        latency_ms=row["latency_ms"],
        ttft_ms=row["ttft_ms"],
        tokens_per_s=row["tokens_per_s"],
        itl_p50_ms=row["itl_p50_ms"],
        itl_max_ms=row["itl_max_ms"],
        usage=Usage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            cached_tokens=row["cached_tokens"],
            cache_write_tokens=row["cache_write_tokens"],
            reasoning_tokens=row["reasoning_tokens"],
            estimated=bool(row["tokens_estimated"]),
        ),
        cost_usd=row["cost_usd"],
        ratelimit=RateLimit(
            requests_limit=row["rl_requests_limit"],
            requests_remaining=row["rl_requests_remaining"],
            tokens_limit=row["rl_tokens_limit"],
            tokens_remaining=row["rl_tokens_remaining"],
            utilization=row["rl_utilization"],
            reset_s=row["rl_reset_s"],
        )
        if has_rl
        else None,
        retry_after_s=row["retry_after_s"],
        response_model=row["response_model"],
        system_fingerprint=row["system_fingerprint"],
        request_id=row["request_id"],
        finish_reason=row["finish_reason"],
        model_listed=None if row["model_listed"] is None else bool(row["model_listed"]),
        context_window=row["context_window"],
        warnings=json.loads(row["warnings"]) if row["warnings"] else [],
        source=Source(row["source"]),
        attempts=row["attempts"],
        fallbacks=row["fallbacks"],
        agent=row["agent"],
        region=row["region"],
        key_name=row["key_name"],
        team=row["team"],
        user=row["end_user"],
        tags=json.loads(row["tags"]) if row["tags"] else [],
        session=row["session_id"],
        answer_excerpt=row["answer_excerpt"],
        embedding_dimensions=row["embedding_dimensions"],
        route=json.loads(row["route"]) if row["route"] else [],
        fallback_reason=ErrorClass(row["fallback_reason"]) if row["fallback_reason"] else None,
        features=json.loads(row["features"]) if row["features"] else [],
        drill=row["drill"],
    )
