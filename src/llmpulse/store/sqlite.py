"""SQLite store: one file, WAL journal, a versioned schema migrated forward on open."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import sqlitedb
from llmpulse.store.base import (
    RAW_RETENTION_S,
    ROLLUP_RETENTION_S,
    GroupBy,
    PruneStats,
    Sample,
    Store,
)
from llmpulse.store.rollup import SUMMARY_COLUMNS, Summary, merge_rows
from llmpulse.store.sqlite_rollup import Groups, merge_summary_sql, raw_summary_sql

# Rollup columns after the key; errors and sketches are JSON objects ({class: n}, {key: n}).
_ROLLUP_COLUMNS_SQL = """
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        total INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        outage INTEGER NOT NULL,
        errors TEXT,
        ttft_sketch TEXT,
        latency_sketch TEXT,
        tps_sketch TEXT,
        token_requests INTEGER NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_requests INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        rl_max REAL,
        rl_latest REAL,
        rl_latest_ts REAL,
        first_ts REAL NOT NULL,
        last_ts REAL NOT NULL"""

# Each entry moves the schema from version i to i+1; never edit a released entry, append one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error_class TEXT,
        error_message TEXT,
        http_status INTEGER,
        latency_ms REAL,
        ttft_ms REAL,
        tokens_per_s REAL,
        itl_p50_ms REAL,
        itl_max_ms REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        cached_tokens INTEGER,
        cache_write_tokens INTEGER,
        reasoning_tokens INTEGER,
        tokens_estimated INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL,
        rl_requests_limit INTEGER,
        rl_requests_remaining INTEGER,
        rl_tokens_limit INTEGER,
        rl_tokens_remaining INTEGER,
        rl_utilization REAL,
        rl_reset_s REAL,
        retry_after_s REAL,
        response_model TEXT,
        system_fingerprint TEXT,
        request_id TEXT,
        finish_reason TEXT,
        model_listed INTEGER,
        context_window INTEGER,
        warnings TEXT
    );
    CREATE INDEX results_target_ts ON results (target, ts);
    CREATE INDEX results_ts ON results (ts);
    """,
    # Per-minute rollups (the primary key doubles as the index by minute), an hourly tier
    # merged from them so that 30-day windows read ~720 rows per target instead of 43,200,
    # and the rollup progress: the watermark below which minutes are complete, and the last
    # results id seen, which finds rows that arrived late for already rolled-up minutes.
    f"""
    CREATE TABLE rollups (
        minute_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_ROLLUP_COLUMNS_SQL},
        PRIMARY KEY (minute_ts, target, check_kind)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_target_minute ON rollups (target, minute_ts);
    CREATE TABLE rollups_hourly (
        hour_ts INTEGER NOT NULL,
        target TEXT NOT NULL,
        check_kind TEXT NOT NULL,
        {_ROLLUP_COLUMNS_SQL},
        PRIMARY KEY (hour_ts, target, check_kind)
    ) WITHOUT ROWID;
    CREATE INDEX rollups_hourly_target_hour ON rollups_hourly (target, hour_ts);
    CREATE TABLE rollup_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        watermark_ts REAL,
        last_id INTEGER NOT NULL DEFAULT 0,
        pruned_before REAL
    );
    INSERT INTO rollup_state (id) VALUES (1);
    """,
)

_COLUMNS = (
    "ts", "target", "provider", "model", "check_kind", "ok", "error_class", "error_message",
    "http_status", "latency_ms", "ttft_ms", "tokens_per_s", "itl_p50_ms", "itl_max_ms",
    "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens",
    "tokens_estimated", "cost_usd", "rl_requests_limit", "rl_requests_remaining",
    "rl_tokens_limit", "rl_tokens_remaining", "rl_utilization", "rl_reset_s", "retry_after_s",
    "response_model", "system_fingerprint", "request_id", "finish_reason", "model_listed",
    "context_window", "warnings",
)  # fmt: skip
_INSERT = f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SAMPLE_COLUMNS = (
    "ts, target, provider, check_kind, ok, error_class, latency_ms, ttft_ms, tokens_per_s, "
    "input_tokens, output_tokens, cost_usd, rl_utilization"
)
_ROLLUP_INSERT = (
    "INSERT OR REPLACE INTO {table} ({time_col}, target, check_kind, "
    + ", ".join(SUMMARY_COLUMNS)
    + ") SELECT * FROM ({select})"
)
_MINUTE = 60
_HOUR = 3600
# Rollups are computed a day at a time: bounded temporary tables when catching up on months.
_ROLLUP_CHUNK_S = 86400


def default_path() -> Path:
    """``$LLMPULSE_DB``, else ``$XDG_DATA_HOME/llmpulse/llmpulse.db``."""
    if os.environ.get("LLMPULSE_DB"):
        return Path(os.environ["LLMPULSE_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmpulse" / "llmpulse.db"


class SQLiteStore(Store):
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self._lock = threading.Lock()
        self._db = sqlitedb.connect(self.path)
        _ensure_math_functions(self._db)
        with self._lock:
            sqlitedb.migrate(self._db, MIGRATIONS, self.path)

    def schema_version(self) -> int:
        with self._lock:
            return sqlitedb.schema_version(self._db)

    def write_results(self, results: Sequence[CheckResult]) -> None:
        if not results:
            return
        rows = [_row(r) for r in results]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already
                    self._db.execute("ROLLBACK")
                raise

    def latest_results(self, limit: int = 100, target: str | None = None) -> list[CheckResult]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM results"
        args: tuple[object, ...] = ()
        if target is not None:
            sql += " WHERE target = ?"
            args = (target,)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_result(row) for row in rows]

    def results_between(
        self, start_ts: float, end_ts: float, target: str | None = None
    ) -> list[CheckResult]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM results WHERE ts >= ? AND ts < ?"
        args: tuple[object, ...] = (start_ts, end_ts)
        if target is not None:
            sql += " AND target = ?"
            args += (target,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY ts, id", args).fetchall()
        return [_result(row) for row in rows]

    def samples(
        self,
        start_ts: float,
        end_ts: float,
        *,
        target: str | None = None,
        provider: str | None = None,
        check: str | None = None,
    ) -> list[Sample]:
        where, args = _where("ts", start_ts, end_ts, target, provider, check)
        sql = f"SELECT {_SAMPLE_COLUMNS} FROM results WHERE {where}"
        with self._lock:
            cursor = self._db.execute(sql, args)
            cursor.row_factory = None  # plain tuples: several times faster than sqlite3.Row
            rows = cursor.fetchall()
        return [
            Sample(
                r[0],
                r[1],
                r[2],
                r[3],
                bool(r[4]),
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                r[11],
                r[12],
            )
            for r in rows
        ]

    def rollup_watermark(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT watermark_ts FROM rollup_state").fetchone()
        return None if row is None else row[0]

    def rollup(self, until_ts: float) -> int:
        cutoff = math.floor(until_ts / _MINUTE) * _MINUTE
        written = 0
        with self._lock, sqlitedb.transaction(self._db):
            state = self._db.execute(
                "SELECT watermark_ts, last_id, pruned_before FROM rollup_state"
            ).fetchone()
            watermark, last_id, pruned_before = state[0], state[1], state[2]
            max_id = self._db.execute("SELECT coalesce(max(id), 0) FROM results").fetchone()[0]
            if watermark is None:
                first = self._db.execute("SELECT min(ts) FROM results").fetchone()[0]
                watermark = cutoff if first is None else min(cutoff, _floor(first, _MINUTE))
            ranges: list[tuple[int, int]] = []
            if max_id > last_id:
                # Rows inserted since the last call, for minutes already rolled up: recompute
                # those minutes, unless pruning has removed part of their raw rows.
                late = self._db.execute(
                    "SELECT DISTINCT CAST(ts / 60 AS INTEGER) * 60 FROM results "
                    "WHERE id > ? AND id <= ? AND ts < ? ORDER BY 1",
                    (last_id, max_id, watermark),
                ).fetchall()
                minutes = [m for (m,) in late if pruned_before is None or m >= pruned_before]
                ranges += _runs(minutes, _MINUTE)
            if cutoff > watermark:
                ranges.append((int(watermark), cutoff))
            for lo, hi in ranges:
                for a, b in _chunks(lo, hi, _ROLLUP_CHUNK_S):
                    written += self._rollup_minutes(a, b)
            hours = sorted({h for lo, hi in ranges for h in range(_floor(lo, _HOUR), hi, _HOUR)})
            for lo, hi in _runs(hours, _HOUR):
                for a, b in _chunks(lo, hi, _ROLLUP_CHUNK_S):
                    self._rollup_hours(a, b)
            self._db.execute(
                "UPDATE rollup_state SET watermark_ts = ?, last_id = ?",
                (max(watermark, cutoff), max_id),
            )
        return written

    def _rollup_minutes(self, lo: int, hi: int) -> int:
        self._db.execute("DELETE FROM rollups WHERE minute_ts >= ? AND minute_ts < ?", (lo, hi))
        select = raw_summary_sql(
            ("CAST(ts / 60 AS INTEGER) * 60", "target", "check_kind"), "ts >= ? AND ts < ?"
        )
        sql = _ROLLUP_INSERT.format(table="rollups", time_col="minute_ts", select=select)
        return self._db.execute(sql, (lo, hi)).rowcount

    def _rollup_hours(self, lo: int, hi: int) -> None:
        self._db.execute("DELETE FROM rollups_hourly WHERE hour_ts >= ? AND hour_ts < ?", (lo, hi))
        select = merge_summary_sql(
            "rollups",
            ("minute_ts / 3600 * 3600", "target", "check_kind"),
            "minute_ts >= ? AND minute_ts < ?",
        )
        sql = _ROLLUP_INSERT.format(table="rollups_hourly", time_col="hour_ts", select=select)
        self._db.execute(sql, (lo, hi))

    def summarize(
        self,
        start_ts: float,
        end_ts: float,
        *,
        group_by: GroupBy = None,
        step_s: int | None = None,
        target: str | None = None,
        provider: str | None = None,
        check: str | None = None,
    ) -> dict[str | int, Summary]:
        step = 0
        if group_by == "bucket":
            if not step_s or step_s % _MINUTE:
                raise ValueError(f"step_s must be a positive multiple of 60, got {step_s!r}")
            step = int(step_s)
        filters = (target, provider, check)
        out: dict[str | int, Summary] = {}
        with self._lock:
            watermark = self._db.execute("SELECT watermark_ts FROM rollup_state").fetchone()[0]
            for source, lo, hi in _plan(start_ts, end_ts, watermark, step):
                if source == "results":
                    groups = _groups(group_by, "ts", step)
                    where, args = _where("ts", lo, hi, *filters)
                    sql = raw_summary_sql(groups, where)
                else:
                    # Rollup rows are merged here rather than by json_each in SQL: decoding a
                    # sketch with json.loads and adding its bins is ~10x faster per bin.
                    time_col = "minute_ts" if source == "rollups" else "hour_ts"
                    where, args = _where(time_col, lo, hi, *filters)
                    g0 = _groups(group_by, time_col, step)[0]
                    sql = f"SELECT {g0}, {', '.join(SUMMARY_COLUMNS)} FROM {source} WHERE {where}"
                    for key, part in merge_rows(self._db.execute(sql, args)).items():
                        _merge_into(out, key, part)
                    continue
                for row in self._db.execute(sql, args):
                    _merge_into(out, row[0], Summary.from_row(tuple(row)[3:]))
        return out

    def prune(
        self,
        now: float,
        raw_retention_s: float = RAW_RETENTION_S,
        rollup_retention_s: float = ROLLUP_RETENTION_S,
    ) -> PruneStats:
        # Roll up first: no raw row is deleted before its minute is in the rollups.
        self.rollup(now)
        raw_cut = now - raw_retention_s
        rollup_cut = now - rollup_retention_s
        with self._lock, sqlitedb.transaction(self._db):
            results = self._db.execute("DELETE FROM results WHERE ts < ?", (raw_cut,)).rowcount
            rollups = self._db.execute(
                "DELETE FROM rollups WHERE minute_ts < ?", (rollup_cut,)
            ).rowcount
            self._db.execute("DELETE FROM rollups_hourly WHERE hour_ts + 3600 <= ?", (rollup_cut,))
            # Without AUTOINCREMENT, SQLite reuses ids above the largest one left: lower the
            # late-row marker to it, or rows written next would look already rolled up.
            self._db.execute(
                "UPDATE rollup_state SET last_id = min(last_id, "
                "(SELECT coalesce(max(id), 0) FROM results)), "
                "pruned_before = max(coalesce(pruned_before, ?), ?)",
                (raw_cut, raw_cut),
            )
        return PruneStats(results=results, rollups=rollups)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _merge_into(out: dict[str | int, Summary], key: str | int, part: Summary) -> None:
    existing = out.get(key)
    if existing is None:
        out[key] = part
    else:
        existing.merge(part)


def _ensure_math_functions(db: sqlite3.Connection) -> None:
    """Sketch keys need log2 and ceil, absent when SQLite was built without math functions."""
    try:
        db.execute("SELECT log2(2.0), ceil(0.5)").fetchone()
    except sqlite3.OperationalError:
        db.create_function("log2", 1, math.log2, deterministic=True)
        db.create_function("ceil", 1, math.ceil, deterministic=True)


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


def _plan(
    start: float, end: float, watermark: float | None, step: int
) -> list[tuple[str, float, float]]:
    """Which source answers which part of [start, end): hourly rollups for whole hours,
    minute rollups for whole minutes at the edges, raw rows for partial minutes and for the
    tail after the watermark. Hours are used for buckets only when buckets are whole hours."""
    a = _ceil(start, _MINUTE)
    if watermark is None or watermark <= a or end <= a:
        return [("results", start, end)]
    b = min(int(watermark), _floor(end, _MINUTE))
    plan: list[tuple[str, float, float]] = []
    if start < a:
        plan.append(("results", start, a))
    if b < end:
        plan.append(("results", b, end))
    ha, hb = _ceil(a, _HOUR), _floor(b, _HOUR)
    if ha < hb and step % _HOUR == 0:
        plan.append(("rollups_hourly", ha, hb))
        plan += [("rollups", lo, hi) for lo, hi in ((a, ha), (hb, b)) if lo < hi]
    elif a < b:
        plan.append(("rollups", a, b))
    return plan


def _groups(group_by: GroupBy, time_col: str, step: int) -> Groups:
    if group_by == "bucket":
        return (f"CAST({time_col} / {step} AS INTEGER) * {step}", "''", "''")
    if group_by in ("target", "provider"):
        return (group_by, "''", "''")
    return ("''", "''", "''")


def _where(
    time_col: str,
    lo: float,
    hi: float,
    target: str | None,
    provider: str | None,
    check: str | None,
) -> tuple[str, tuple[object, ...]]:
    where = f"{time_col} >= ? AND {time_col} < ?"
    args: tuple[object, ...] = (lo, hi)
    for column, value in (("target", target), ("provider", provider), ("check_kind", check)):
        if value is not None:
            where += f" AND {column} = ?"
            args += (value,)
    return where, args


def _row(r: CheckResult) -> tuple[object, ...]:
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
        r.context_window, json.dumps(r.warnings) if r.warnings else None,
    )  # fmt: skip


def _result(row: sqlite3.Row) -> CheckResult:
    has_rl = any(
        row[k] is not None for k in ("rl_requests_limit", "rl_tokens_limit", "rl_utilization")
    )
    return CheckResult(
        target=row["target"],
        provider=row["provider"],
        model=row["model"],
        check=CheckKind(row["check_kind"]),
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
    )
