"""Alerting state that must survive a restart: alert records, their history, and silences.

Kept in its own SQLite file beside the results database: it is written by the one process that
evaluates alerts, read by the CLI (``llmpulse silence``) and, later, the dashboard.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

from llmpulse.alerts.engine import AlertRecord
from llmpulse.alerts.model import Notification
from llmpulse.alerts.silences import Silence
from llmpulse.store import sqlitedb

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE alert_records (
        fingerprint TEXT PRIMARY KEY,
        record TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        rule TEXT NOT NULL,
        target TEXT NOT NULL,
        provider TEXT NOT NULL,
        notification TEXT NOT NULL
    );
    CREATE INDEX alert_events_at ON alert_events (at);
    CREATE TABLE silences (
        id TEXT PRIMARY KEY,
        starts_at REAL NOT NULL,
        ends_at REAL NOT NULL,
        silence TEXT NOT NULL
    );
    """,
)


def state_paths(results_db: Path) -> tuple[Path, Path]:
    """Alert state and the notification outbox live beside the results database."""
    return (
        results_db.with_name(results_db.stem + "-alerts.db"),
        results_db.with_name(results_db.stem + "-outbox.db"),
    )


class AlertStateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlitedb.connect(self.path)
        with self._lock:
            sqlitedb.migrate(self._db, MIGRATIONS, self.path)

    def _tx(self) -> AbstractContextManager[None]:
        return sqlitedb.transaction(self._db)

    def load_records(self) -> list[AlertRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM alert_records").fetchall()
        return [AlertRecord.from_json(json.loads(r[0])) for r in rows]

    def save_records(self, records: Iterable[AlertRecord], now: float) -> None:
        rows = [(r.fingerprint, json.dumps(r.to_json()), now) for r in records]
        if not rows:
            return
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT INTO alert_records (fingerprint, record, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (fingerprint) DO UPDATE SET record = excluded.record, "
                "updated_at = excluded.updated_at",
                rows,
            )

    def add_event(self, n: Notification, now: float) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO alert_events (at, fingerprint, status, rule, target, provider, "
                "notification) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, n.fingerprint, str(n.status), n.rule, n.target, n.provider,
                 json.dumps(n.to_json())),
            )  # fmt: skip

    def events(self, limit: int = 100) -> list[Notification]:
        with self._lock:
            rows = self._db.execute(
                "SELECT notification FROM alert_events ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [Notification.from_json(json.loads(r[0])) for r in rows]

    def events_between(
        self,
        start_ts: float,
        end_ts: float,
        *,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[float, Notification]]:
        """``(recorded_at, notification)`` with ``start_ts <= at < end_ts``, oldest first; with
        ``limit``, the newest ``limit`` of them."""
        sql = "SELECT at, notification FROM alert_events WHERE at >= ? AND at < ?"
        args: tuple[object, ...] = (start_ts, min(end_ts, 1e300))
        if target is not None:
            sql += " AND target = ?"
            args += (target,)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args += (limit,)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [(at, Notification.from_json(json.loads(raw))) for at, raw in reversed(rows)]

    def add_silence(self, silence: Silence) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO silences (id, starts_at, ends_at, silence) "
                "VALUES (?, ?, ?, ?)",
                (silence.id, silence.starts_at, silence.ends_at, json.dumps(silence.to_json())),
            )

    def silences(self, now: float | None = None) -> list[Silence]:
        """All silences, or only those not yet ended at ``now``."""
        sql = "SELECT id, starts_at, ends_at, silence FROM silences"
        args: tuple[float, ...] = ()
        if now is not None:
            sql += " WHERE ends_at > ?"
            args = (now,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY starts_at", args).fetchall()
        out = []
        for sid, starts, ends, raw in rows:
            data = json.loads(raw)
            out.append(
                Silence(
                    id=sid, starts_at=starts, ends_at=ends, target=data["target"],
                    provider=data["provider"], rule=data["rule"], comment=data["comment"],
                    created_by=data["created_by"],
                )
            )  # fmt: skip
        return out

    def end_silence(self, silence_id: str, now: float) -> bool:
        with self._lock, self._tx():
            cursor = self._db.execute(
                "UPDATE silences SET ends_at = ? WHERE id = ? AND ends_at > ?",
                (now, silence_id, now),
            )
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
