"""The local spool: results survive a database that is down or restarting, written once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmpulse.result import CheckKind, CheckResult
from llmpulse.store import open_store
from llmpulse.store.spool import Spool, spool_for
from llmpulse.store.writer import ResultWriter

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)


def results(first: int, n: int) -> list[CheckResult]:
    return [
        CheckResult(
            target=f"t{i % 3}", provider="openai", model="m", check=CheckKind.STREAM,
            timestamp=T0 + timedelta(seconds=i), ok=True, ttft_ms=float(i), region="eu-west",
        )
        for i in range(first, first + n)
    ]  # fmt: skip


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


def test_a_spool_is_held_by_one_process_at_a_time_and_the_next_replays_what_it_left(
    tmp_path: Path,
) -> None:
    db = tmp_path / "results.db"
    # A process of the same writer and database, killed outright with a batch in its spool.
    held = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from llmpulse.store.spool import spool_for; from test_spool import results;"
         f"spool = spool_for({str(db)!r}, 'host-sdk'); spool.push('a:1', results(0, 5));"
         "print(spool.path, flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        assert held.stdout is not None
        first = Path(held.stdout.readline().strip())
        assert first.parent == tmp_path and first.name.startswith("results-spool-host-sdk-")
        # While it runs, another process (or recording) of the same name takes the next spool:
        # it neither sees nor replays the batches the first is writing.
        second = spool_for(db, "host-sdk")
        assert second.path == first.with_name(f"{first.stem}-2.db") and len(second) == 0
    finally:
        held.send_signal(signal.SIGKILL)
        held.wait(timeout=10)
    # The kill freed its spool: the next to start takes it, and what it left.
    third = spool_for(db, "host-sdk")
    assert third.path == first and len(third) == 5
    gateway = spool_for(db, "host-gateway-4000")  # another writer: a spool of its own
    assert gateway.path.name.startswith("results-spool-host-gateway-4000-")
    for spool in (second, third, gateway):
        spool.close()
    again = spool_for(db, "host-sdk")
    assert again.path == first  # closed: free again
    again.close()
