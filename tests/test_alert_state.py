"""Alert state on SQLite and PostgreSQL: what one leader writes, the next one reads back."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import sqlite3
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import postgres_schema
from llmpulse.alerts.engine import AlertRecord
from llmpulse.alerts.migrations.legacy_sqlite import STATE_SCRIPTS
from llmpulse.alerts.model import AlertState
from llmpulse.alerts.outbox import Outbox
from llmpulse.alerts.silences import NO_END, Silence
from llmpulse.alerts.state import (
    AlertStateStore,
    NotFiring,
    UnknownAlert,
    state_locations,
    state_paths,
)
from llmpulse.rules import Severity
from llmpulse.schedule import Schedule
from llmpulse.store import sqlitedb
from test_outbox import alert


def record(fingerprint: str, state: AlertState, since: float) -> AlertRecord:
    return AlertRecord(
        fingerprint, "availability", "openai/gpt-4o-mini", "openai", Severity.CRITICAL,
        state=state, active_since=since, notified=state is AlertState.FIRING,
    )  # fmt: skip


def sql(location: str | Path, query: str) -> list[tuple[object, ...]]:
    if isinstance(location, Path):
        with contextlib.closing(sqlite3.connect(location)) as db, db:
            return db.execute(query).fetchall()
    with psycopg.connect(location, autocommit=True) as db:
        cursor = db.execute(query)
        return cursor.fetchall() if cursor.description else []


def test_the_next_leader_reads_what_the_last_one_wrote(db_location: str | Path) -> None:
    leader = AlertStateStore(db_location)
    leader.save_records([record("a", AlertState.PENDING, 10)], now=10)
    leader.save_records(
        [record("a", AlertState.FIRING, 10), record("b", AlertState.FIRING, 20)], 20
    )
    for i, fingerprint in enumerate(["a", "b", "a"]):
        leader.add_event(alert(fingerprint), now=100 + i)
    leader.add_silence(Silence("s1", starts_at=0, ends_at=50, provider="anthropic"))
    leader.add_silence(Silence("s2", starts_at=5, ends_at=500, rule="ttft_*", comment="deploy"))
    leader.add_silence(Silence("s1", starts_at=0, ends_at=60, provider="anthropic"))  # replaced
    leader.close()

    heir = AlertStateStore(db_location)
    assert {(r.fingerprint, r.state) for r in heir.load_records()} == {
        ("a", AlertState.FIRING),
        ("b", AlertState.FIRING),
    }
    assert [n.fingerprint for n in heir.events(limit=2)] == ["a", "b"]  # newest first
    between = heir.events_between(100, 102)
    assert [(at, n.fingerprint) for at, n in between] == [(100, "a"), (101, "b")]
    assert [at for at, _ in heir.events_between(0, float("inf"), limit=2)] == [101, 102]
    assert heir.events_between(0, 1e12, target="elsewhere") == []
    assert [(s.id, s.ends_at) for s in heir.silences()] == [("s1", 60), ("s2", 500)]
    assert heir.silences(now=100)[0].comment == "deploy"
    assert heir.end_silence("s2", now=100) and not heir.end_silence("s2", now=100)
    assert heir.silences(now=100) == []
    heir.close()


def test_a_recurring_silence_keeps_its_schedule(db_location: str | Path) -> None:
    weekly = Schedule("0 2 * * SUN", 7200.0, "Europe/Berlin")
    leader = AlertStateStore(db_location)
    leader.add_silence(
        Silence("w", starts_at=10, ends_at=NO_END, provider="openai", schedule=weekly)
    )
    leader.add_silence(Silence("b", starts_at=10, ends_at=2e9, schedule=Schedule("0 * * * *", 60)))
    leader.add_silence(Silence("o", starts_at=10, ends_at=20))  # one-off, ended by 100
    leader.close()

    heir = AlertStateStore(db_location)
    now = 1.9e9
    assert {s.id: s.schedule for s in heir.silences(now)} == {
        "w": weekly,
        "b": Schedule("0 * * * *", 60.0, "UTC"),
    }
    (w,) = (s for s in heir.silences(now) if s.id == "w")
    assert (w.starts_at, w.ends_at, w.provider) == (10, NO_END, "openai")
    # Selected by ``ends_at > now`` until the year 9999; ending it bounds its schedule.
    assert [s.id for s in heir.silences(now=2e11)] == ["w"]
    assert heir.silences(now=NO_END) == []
    assert sql(db_location, "SELECT ends_at FROM silences WHERE id = 'w'") == [(NO_END,)]
    assert heir.end_silence("w", now=now)
    (ended,) = (s for s in heir.silences() if s.id == "w")
    assert ended.ends_at == now and ended.schedule == weekly and not ended.active(now + 1)
    heir.close()


def test_calls_from_a_thread_pool(db_location: str | Path) -> None:
    store = AlertStateStore(db_location)

    def work(i: int) -> int:
        store.add_event(alert(f"f{i}"), now=float(i))
        store.save_records([record(f"f{i}", AlertState.FIRING, i)], now=i)
        return len(store.events(limit=1000))

    with ThreadPoolExecutor(8) as pool:
        assert all(n >= 1 for n in pool.map(work, range(40)))
    assert len(store.events(limit=1000)) == 40
    assert len(store.load_records()) == 40
    store.close()


def test_a_file_from_before_alembic_keeps_its_state_and_is_stamped(tmp_path: Path) -> None:
    path = tmp_path / "legacy-alerts.db"
    db = sqlite3.connect(path, isolation_level=None)
    sqlitedb.migrate(db, STATE_SCRIPTS, path)  # as the releases before Alembic made it
    kept = record("old", AlertState.FIRING, 5)
    db.execute("INSERT INTO alert_records VALUES (?, ?, 5)", ("old", json.dumps(kept.to_json())))
    db.execute(
        "INSERT INTO silences VALUES ('s', 0, 2e9, ?)",
        (json.dumps(Silence("s", 0, 2e9, comment="kept").to_json()),),
    )
    db.close()
    store = AlertStateStore(path)
    assert [r.to_json() for r in store.load_records()] == [kept.to_json()]
    assert [s.comment for s in store.silences()] == ["kept"]
    store.add_event(alert("new"), now=6)
    store.close()
    # Stamped at 0001 (the legacy schema), then upgraded to the head like any other file.
    assert sql(path, "SELECT version_num FROM alembic_version_alerts") == [("0005",)]

    # A fresh file ends with the same tables and columns.
    AlertStateStore(tmp_path / "fresh.db").close()

    def shape(p: Path) -> dict[str, list[str]]:
        tables = sql(p, "SELECT name FROM sqlite_master WHERE type = 'table'")
        return {t: [c[1] for c in sql(p, f"PRAGMA table_info({t})")] for (t,) in tables}

    assert shape(path) == shape(tmp_path / "fresh.db")


def test_refuses_a_newer_revision(db_location: str | Path) -> None:
    AlertStateStore(db_location).close()
    sql(db_location, "UPDATE alembic_version_alerts SET version_num = '9999'")
    with pytest.raises(RuntimeError, match="revision 9999, newer than this llmpulse"):
        AlertStateStore(db_location)


def test_state_lives_beside_sqlite_results_or_in_the_postgres_database(tmp_path: Path) -> None:
    url = "postgresql://probe@db.internal:5432/llmpulse"
    assert state_locations(url) == (url, url)
    assert state_locations(tmp_path / "r.db") == state_paths(tmp_path / "r.db")
    assert state_locations(f"sqlite:///{tmp_path}/r.db") == state_paths(tmp_path / "r.db")
    with pytest.raises(ValueError, match="unsupported storage"):
        state_locations("mysql://h/llmpulse")
    with contextlib.closing(AlertStateStore.open(tmp_path / "r.db")) as store:
        assert store.location == tmp_path / "r-alerts.db"


def _start_agent(locations: tuple[str | Path, str | Path], ready: Any) -> None:
    ready.wait(60)  # every agent opens at the same moment
    AlertStateStore(locations[0]).close()
    Outbox(locations[1]).close()


def test_agents_starting_together_migrate_once() -> None:
    """Agents (processes) opening one fresh PostgreSQL schema at once: one migrates, the others
    wait for it; threads of one process take turns (Alembic's context is process-wide)."""
    spawn = multiprocessing.get_context("spawn")
    with (
        postgres_schema() as url,
        spawn.Manager() as manager,
        ProcessPoolExecutor(3, mp_context=spawn) as agents,
        ThreadPoolExecutor(2) as threads,
    ):
        ready = manager.Barrier(5)
        started = [agents.submit(_start_agent, (url, url), ready) for _ in range(3)]
        started += [threads.submit(_start_agent, (url, url), ready) for _ in range(2)]
        for future in started:
            future.result()
        assert sql(url, "SELECT version_num FROM alembic_version_alerts") == [("0005",)]
        assert sql(url, "SELECT version_num FROM alembic_version_outbox") == [("0002",)]


def test_acknowledgements_are_one_line_kept_once_and_forgotten_per_episode(
    db_location: str | Path,
) -> None:
    store = AlertStateStore(db_location)
    firing = record("fp", AlertState.FIRING, 5)
    firing.fired_at = 5.0
    store.save_records([firing, record("off", AlertState.RESOLVED, 1)], now=6)
    _, ack = store.acknowledge("fp", "ana\nroot\x1b[2J", "on\r\nit", now=7)
    assert (ack.by, ack.comment, ack.episode) == ("ana root [2J", "on it", firing.episode)
    assert store.acknowledge("fp", "bob", "", now=8)[1] == ack  # the first one holds
    with pytest.raises(UnknownAlert):
        store.acknowledge("nope", "ana", "", now=9)
    with pytest.raises(NotFiring):
        store.acknowledge("off", "ana", "", now=9)
    stale = dataclasses.replace(ack, episode="1.0/critical")
    store.forget_acknowledgements([stale])  # of another episode: this one stays
    assert store.acknowledgements() == [ack]
    store.forget_acknowledgements([ack])
    assert store.acknowledgements() == []
    store.close()
