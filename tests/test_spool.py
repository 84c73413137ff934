"""The local spool: results survive a database that is down or restarting, written once."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import pgserver
from llmpulse.result import CheckKind, CheckResult
from llmpulse.store import open_store
from llmpulse.store.postgres import PostgresStore
from llmpulse.store.spool import SPOOL_WITHIN_S, Recording, ResultWriter, Spool, Trouble

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def results(first: int, n: int) -> list[CheckResult]:
    return [
        CheckResult(
            target=f"t{i % 3}", provider="openai", model="m", check=CheckKind.STREAM,
            timestamp=T0 + timedelta(seconds=i), ok=True, ttft_ms=float(i), region="eu-west",
        )
        for i in range(first, first + n)
    ]  # fmt: skip


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


def test_the_spool_outlives_the_process_and_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_results=25)
    spool.push("a:1", results(0, 10))
    spool.push("a:2", results(10, 10))
    spool.close()
    spool = Spool(path, max_results=25)  # a restarted agent finds what waited
    assert len(spool) == 20
    spool.push("a:3", results(20, 10))  # over the bound: the oldest batch goes
    assert len(spool) == 20
    _, batch_id, head = spool.head() or (0, "", [])
    assert batch_id == "a:2" and head[0].ttft_ms == 10.0 and head[0].region == "eu-west"
    # Replayed into a store that already has batch a:2 (its ack was lost): written once.
    with open_store(tmp_path / "results.db") as store:
        store.write_results(head, batch_id="a:2")
        writer = ResultWriter(store, spool, "a")
        assert writer.drain()
        assert len(store.latest_results(limit=100)) == 20
    spool.close()


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
