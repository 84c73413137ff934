"""Leader election over a real PostgreSQL server and real file locks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from conftest import postgres_schema
from llmpulse.monitor.leader import FileLeadership, Leadership, PostgresLeadership


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _run_all(candidates: list[Leadership], body) -> None:
    stops = [asyncio.Event() for _ in candidates]
    tasks = [asyncio.ensure_future(c.run(s)) for c, s in zip(candidates, stops, strict=True)]
    try:
        await body(stops)
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)


async def test_one_postgres_leader_and_failover_when_its_session_dies(pg_url: str) -> None:
    name = f"test-{uuid.uuid4()}"
    candidates: list[Leadership] = [PostgresLeadership(pg_url, name, retry_s=0.1) for _ in range(3)]
    changes: list[tuple[int, bool]] = []
    for i, c in enumerate(candidates):
        c.on_change(lambda leader, i=i: changes.append((i, leader)))
    killed: list[int] = []

    async def body(stops: list[asyncio.Event]) -> None:
        await _until(lambda: sum(c.is_leader for c in candidates) == 1)
        await asyncio.sleep(0.5)  # followers keep trying: still exactly one leader
        assert sum(c.is_leader for c in candidates) == 1
        first = next(i for i, c in enumerate(candidates) if c.is_leader)
        killed.append(first)
        # The leader's session ends as when its host dies: the server releases the lock.
        pid = candidates[first]._conn.info.backend_pid  # type: ignore[attr-defined]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await _until(lambda: not candidates[first].is_leader)
        await _until(lambda: sum(c.is_leader for c in candidates) == 1)
        # A graceful stop hands over too.
        second = next(i for i, c in enumerate(candidates) if c.is_leader)
        assert second != first
        stops[second].set()
        await _until(lambda: not candidates[second].is_leader)
        await _until(lambda: sum(c.is_leader for c in candidates) == 1)

    await _run_all(candidates, body)
    assert not any(c.is_leader for c in candidates)
    # Each candidate that led took the lead once and lost it once: no flapping on the way. The
    # one whose session was killed reconnects as a follower, and may win the third election
    # (after the graceful handover) once.
    for i in range(3):
        ours = [leader for j, leader in changes if j == i]
        again = [[True, False, True, False]] if killed == [i] else []
        assert ours in ([], [True, False], *again)


async def test_postgres_leadership_survives_an_unreachable_server_and_resumes(
    pg_url: str,
) -> None:
    name = f"test-{uuid.uuid4()}"
    down = PostgresLeadership("postgresql://postgres@127.0.0.1:1/test", name, retry_s=0.1)
    up = PostgresLeadership(pg_url, name, retry_s=0.1)

    async def body(stops: list[asyncio.Event]) -> None:
        await _until(lambda: up.is_leader)
        await asyncio.sleep(0.3)
        assert not down.is_leader  # connection refused: a follower, never a crash

    await _run_all([down, up], body)


async def test_file_lock_leader_is_exclusive_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "results.db.leader"
    ours = FileLeadership(path, retry_s=0.05)
    # Another process holds the lock until told to exit, as a second daemon would.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def body(stops: list[asyncio.Event]) -> None:
            await asyncio.sleep(0.3)
            assert not ours.is_leader
            holder.kill()  # dies without unlocking: the kernel releases the lock
            await _until(lambda: ours.is_leader)

        await _run_all([ours], body)
        assert not ours.is_leader
    finally:
        holder.kill()
        holder.wait()
