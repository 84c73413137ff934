"""The one write path (store.writer): where every process's results go, spool included."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import pytest

import pgserver
from conftest import POSTGRES_URL
from llmpulse.config.storage import is_postgres
from llmpulse.result import CheckResult
from llmpulse.store import database_errors, open_store
from llmpulse.store.postgres import PostgresStore
from llmpulse.store.spool import Spool, spool_for
from llmpulse.store.writer import (
    SPOOL_WITHIN_S,
    Recording,
    ResultWriter,
    Trouble,
    open_recording,
)
from test_spool import results


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_restarting_database_loses_nothing_and_duplicates_nothing(
    private_postgres: pgserver.PrivateServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = private_postgres
    store = PostgresStore(server.url)
    clock = Clock()
    writer = ResultWriter(store, Spool(tmp_path / "spool.db"), "agent-a", clock=clock)
    try:
        writer.keep(results(0, 10))
        assert writer.drain() and len(writer.spool) == 0
        server.stop()
        writer.keep(results(10, 10))
        assert not writer.drain()  # refused: stays in the spool
        writer.keep(results(20, 10))  # queued behind it, the database not asked again yet
        assert len(writer.spool) == 20
        server.start()
        assert not writer.drain()  # still inside the pause after the refusal
        clock.now += 60
        writer.keep(results(30, 10))
        assert writer.drain()  # in order: the spooled batches, then this one
        assert len(writer.spool) == 0
        writer.keep(results(40, 0))
        assert writer.drain()
        # Said once when the database refused, once when it took results again.
        said = [r.getMessage() for r in caplog.records if "results database" in r.getMessage()]
        assert len(said) == 2
        assert said[0].startswith("results database unwritable (results: ")
        assert said[1] == "results database writable again"
        stored = store.results_between(0, 2e9)
        assert [r.ttft_ms for r in stored] == [float(i) for i in range(40)]
        assert {r.region for r in stored} == {"eu-west"}
    finally:
        store.close()


def test_a_recording_kept_what_the_store_refused_and_its_successor_replays_it_at_start(
    private_postgres: pgserver.PrivateServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = private_postgres
    path = tmp_path / "spool.db"
    store = PostgresStore(server.url)
    server.stop()
    recording = Recording(ResultWriter(store, Spool(path), "gw"))
    recording.start()
    for result in results(100, 10):
        recording.add(result)
    recording.close(timeout=1.0)  # bounded: what the store did not take waits on disk
    store.close()
    assert f"10 results wait in {path} for the next start" in caplog.text
    server.start()
    # A successor on the same spool replays it at start, before anything is added.
    store = PostgresStore(server.url)
    successor = Recording(ResultWriter(store, Spool(path), "gw"))
    successor.start()
    try:
        deadline = time.monotonic() + 30
        while len(successor.writer.spool):
            assert time.monotonic() < deadline, "the spool was not replayed"
            time.sleep(0.05)
        successor.close()
        stored = [r.ttft_ms for r in store.results_between(0, 2e9) if r.ttft_ms >= 100]
        assert sorted(stored) == [float(i) for i in range(100, 110)]
    finally:
        store.close()


def test_a_trouble_is_said_when_it_starts_and_when_every_job_is_over_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trouble = Trouble(logging.getLogger("t"), "down (%s: %s)", "up again")
    trouble.failed("results", OSError("refused"))
    trouble.failed("rollup", OSError("refused"))  # the same trouble: nothing more to say
    trouble.failed("results", OSError("refused"))
    trouble.succeeded("results")  # the rollup still fails
    trouble.succeeded("prune")  # never failed
    trouble.succeeded("rollup")
    trouble.succeeded("rollup")
    assert [r.getMessage() for r in caplog.records] == ["down (results: refused)", "up again"]


class CountingSpool(Spool):
    """A spool that counts the batches committed to it."""

    pushed = 0

    def push(self, batch_id: str, results: Sequence[CheckResult]) -> int:
        self.pushed += 1
        return super().push(batch_id, results)


def test_a_recording_writes_to_a_store_that_keeps_up_once_and_spools_when_it_stalls(
    tmp_path: Path,
) -> None:
    db = tmp_path / "results.db"
    spool = CountingSpool(tmp_path / "spool.db")
    with open_store(db) as store:
        recording = Recording(ResultWriter(store, spool, "gw"))
        recording.start()
        for result in results(0, 20):
            recording.add(result)
        wait_until(lambda: len(store.results_between(0, 2e9)) == 20)
        assert spool.pushed == 0  # the store kept up: each batch written once, straight to it

        # Another writer holds the database: whatever is added is on disk within the bound,
        # the last result (cut into a batch handed to the stalled store) included.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            # The first batch is handed to the stalled store: spooled at the next cut.
            recording.add(results(20, 1)[0])
            time.sleep(SPOOL_WITHIN_S)
            assert len(spool) == 1
            for i in range(21, 30):  # the rest go behind it, at their cuts
                recording.add(results(i, 1)[0])
                time.sleep(0.037)
            time.sleep(SPOOL_WITHIN_S)
            assert len(spool) == 10
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        recording.close()
        stored = sorted(r.ttft_ms for r in store.results_between(0, 2e9))
        assert stored == [float(i) for i in range(30)] and len(spool) == 0  # once each


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def data_home(elsewhere: Path) -> Path:
    """Where spools for PostgreSQL sit: the default file's directory, under ``tmp_path``."""
    return elsewhere.parent / "data" / "llmpulse"


def test_a_recording_writes_where_its_location_says_and_spools_beside_it(
    store_location: str | Path, tmp_path: Path, data_home: Path
) -> None:
    recording = open_recording(store_location, "agent a")
    recording.start()
    for result in results(0, 12):
        recording.add(result)
    assert recording.flush()  # stored now, not within the next 250 ms
    with open_store(store_location) as store:
        stored = sorted(r.ttft_ms for r in store.results_between(0, 2e9))
    assert stored == [float(i) for i in range(12)]
    recording.close()
    recording.writer.store.close()
    # Beside the SQLite file; for PostgreSQL, beside the default file.
    postgres = is_postgres(store_location)
    (spool,) = (data_home if postgres else tmp_path).glob("*-spool-*.db")
    assert spool.name.startswith(
        "llmpulse-spool-agent_a-" if postgres else "results-spool-agent_a-"
    )
    if postgres:
        # In the schema the URL's options chose, not the database's default one.
        schema = str(store_location).rpartition("%3D")[2]
        with psycopg.connect(POSTGRES_URL) as conn:
            (count,) = conn.execute(f"SELECT count(*) FROM {schema}.results").fetchone()
        assert count == 12


def test_a_store_given_open_is_written_through_and_left_open(
    db_location: str | Path, data_home: Path
) -> None:
    store = open_store(db_location)
    try:
        recording = open_recording(store, "gw")
        assert recording.writer.store is store
        recording.start()
        recording.add(results(0, 1)[0])
        recording.close()
        assert [r.ttft_ms for r in store.results_between(0, 2e9)] == [0.0]  # still open
        # Its spool is the one its location would have: the same process finds it again.
        spool = spool_for(db_location, "gw")
        assert spool.path == recording.writer.spool.path
        spool.close()
    finally:
        store.close()


def test_a_store_away_at_open_is_a_database_error_naming_it_without_its_password(
    data_home: Path,
) -> None:
    # The command line says it in one line and exits 2 (test_cli); nothing is left open.
    with pytest.raises(database_errors()) as info:
        open_recording("postgresql://nobody:secret@127.0.0.1:1/none", "gw")
    assert "cannot connect to postgresql://nobody:***@127.0.0.1:1/none" in str(info.value)
    assert not data_home.exists()  # no spool opened for a store that is not there


def test_a_flush_while_the_store_refuses_ends_with_the_spool_then_replays_it_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "results.db"
    recording = open_recording(db, "gw")
    recording.start()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # every write fails after the 5 s busy timeout
    try:
        for result in results(0, 3):
            recording.add(result)
        assert recording.flush()  # stored: in the spool, the store having refused them
        assert len(recording.writer.spool) == 3
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    # Within the pause after the refusal, yet a flush asks the store again at once.
    assert recording.flush()
    assert len(recording.writer.spool) == 0
    with open_store(db) as store:
        assert sorted(r.ttft_ms for r in store.results_between(0, 2e9)) == [0.0, 1.0, 2.0]
    recording.close()
    recording.writer.store.close()
    # Said by this recording's writer once each (others of earlier tests may still be trying).
    said = [r.getMessage() for r in caplog.records if r.thread == recording._writer.ident]
    assert said[0].startswith("results database unwritable (results: ")
    assert said[1:] == ["results database writable again"]
