"""The local spool: results survive a database that is down or restarting, written once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pgserver
from llmpulse.result import CheckKind, CheckResult
from llmpulse.store import open_store
from llmpulse.store.postgres import PostgresStore
from llmpulse.store.spool import ResultWriter, Spool

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
    private_postgres: pgserver.PrivateServer, tmp_path: Path
) -> None:
    server = private_postgres
    store = PostgresStore(server.url)
    clock = Clock()
    writer = ResultWriter(store, Spool(tmp_path / "spool.db"), "agent-a", clock=clock)
    try:
        writer.write(results(0, 10))
        server.stop()
        writer.write(results(10, 10))  # refused: spooled
        writer.write(results(20, 10))  # queued behind it, the database not asked again yet
        assert len(writer.spool) == 20
        server.start()
        assert not writer.drain()  # still inside the pause after the refusal
        clock.now += 60
        writer.write(results(30, 10))  # drains the spool first, in order, then writes this
        assert len(writer.spool) == 0
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
