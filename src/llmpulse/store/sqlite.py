"""SQLite store: one file, WAL journal, a versioned schema migrated forward on open."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store.base import Store

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


def default_path() -> Path:
    """``$LLMPULSE_DB``, else ``$XDG_DATA_HOME/llmpulse/llmpulse.db``."""
    if os.environ.get("LLMPULSE_DB"):
        return Path(os.environ["LLMPULSE_DB"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "llmpulse" / "llmpulse.db"


class SQLiteStore(Store):
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this llmpulse "
                    f"understands ({len(MIGRATIONS)}); upgrade llmpulse"
                )
            for number in range(version, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

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

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


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
