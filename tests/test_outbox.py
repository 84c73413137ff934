"""The outbox against real receivers: outages, restarts, permanent failures, shutdown, and
two processes delivering from one database (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmpulse.alerts.migrations.legacy_sqlite import OUTBOX_SCRIPTS
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers.webhook import WebhookNotifier
from llmpulse.alerts.outbox import Outbox
from llmpulse.rules import Severity
from llmpulse.secrets import Redactor
from llmpulse.store import sqlitedb


def alert(fingerprint: str, status: AlertState = AlertState.FIRING) -> Notification:
    return Notification(
        status=status,
        severity=Severity.CRITICAL,
        rule="availability",
        target="openai/gpt-4o-mini",
        provider="openai",
        summary=f"{fingerprint} {status}",
        value=0.5,
        threshold=0.99,
        starts_at=datetime(2025, 3, 1, 12, tzinfo=UTC),
        ends_at=datetime(2025, 3, 1, 12, 5, tzinfo=UTC) if status is AlertState.RESOLVED else None,
        fingerprint=fingerprint,
    )


@dataclasses.dataclass
class Hit:
    at: float
    status: int
    body: dict[str, Any]


class Receiver:
    """Answers ``status`` (503 while "down"), records every request; ``port`` fixes the port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.status = 200
        self.text = ""  # the body of its answers
        self.headers: dict[str, str] = {}
        self.hits: list[Hit] = []
        self.release = asyncio.Event()
        self.release.set()
        self._runner: web.AppRunner | None = None

    @property
    def delivered(self) -> list[str]:
        return [h.body["summary"] for h in self.hits if h.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await self.release.wait()
        self.hits.append(Hit(time.monotonic(), self.status, body))
        return web.Response(status=self.status, headers=self.headers, text=self.text)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        self.release.set()
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Any]]:
    started: list[Receiver] = []

    async def start(port: int = 0) -> Receiver:
        receiver = await Receiver(port).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def fast_outbox(location: str | Path, **options: Any) -> Outbox:
    return Outbox(location, backoff_base_s=0.02, backoff_max_s=0.1, poll_interval_s=0.2, **options)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Running:
    """An outbox's run() in a task, stopped on exit."""

    def __init__(self, outbox: Outbox, notifiers: list[Any], session: aiohttp.ClientSession):
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(outbox.run(notifiers, session, self.stop))

    async def __aenter__(self) -> Running:
        await asyncio.sleep(0)  # let run() register its workers
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


async def test_down_channel_loses_nothing_keeps_order_and_delays_no_other(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    flaky, healthy = await receivers(), await receivers()
    flaky.status = 503
    notifiers = [WebhookNotifier(flaky.url, name="flaky"), WebhookNotifier(healthy.url, name="ok")]
    outbox = fast_outbox(db_location)
    sent = [alert("a"), alert("a", AlertState.RESOLVED), alert("b")]
    async with Running(outbox, notifiers, session):
        started = time.monotonic()
        for notification in sent:
            outbox.enqueue(notification, ["flaky", "ok"])
        await until(lambda: len(healthy.delivered) == 3)
        assert healthy.hits[0].at - started < 0.5  # woken by enqueue, not by polling
        assert healthy.delivered == [n.summary for n in sent]

        await until(lambda: len(flaky.hits) >= 4)  # retried with backoff, still down
        assert {h.body["summary"] for h in flaky.hits} == {"a firing"}  # head of line
        assert [i.notification for i in outbox.pending("flaky")] == sent
        assert outbox.pending("ok") == []

        flaky.status = 200
        await until(lambda: not outbox.pending())
    assert flaky.delivered == [n.summary for n in sent]
    [first, *_] = sorted(outbox.history(), key=lambda i: i.id)
    assert first.notifier == "flaky" and first.status == "delivered"
    assert first.attempts >= 5 and first.answer == "HTTP 200"
    assert "HTTP 503" in (first.last_error or "")
    outbox.close()


async def test_restart_delivers_pending_exactly_once(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    with socket.socket() as sock:  # a port nobody listens on yet: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = db_location
    url = f"http://127.0.0.1:{port}/hook"
    sent = [alert("x"), alert("y"), alert("x", AlertState.RESOLVED)]

    before = fast_outbox(path)
    async with Running(before, [WebhookNotifier(url, name="hook")], session):
        for notification in sent:
            before.enqueue(notification, ["hook"])
        await until(lambda: before.pending()[0].attempts >= 2)
    before.close()

    receiver = await receivers(port)
    after = fast_outbox(path)
    assert [i.notification for i in after.pending()] == sent
    async with Running(after, [WebhookNotifier(url, name="hook")], session):
        await until(lambda: not after.pending())
        await asyncio.sleep(0.3)  # longer than a poll: nothing is sent twice
    assert receiver.delivered == [n.summary for n in sent]
    assert len(receiver.hits) == 3
    assert "Cannot connect" in (after.history()[-1].last_error or "")
    after.close()

    again = fast_outbox(path)
    assert again.pending() == []
    assert [i.status for i in again.history()] == ["delivered"] * 3
    again.close()


async def test_permanent_failure_is_kept_and_not_retried(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    receiver = await receivers()
    receiver.status = 404
    outbox = fast_outbox(db_location)
    async with Running(outbox, [WebhookNotifier(receiver.url, name="gone")], session):
        outbox.enqueue(alert("p"), ["gone"])
        await until(lambda: len(receiver.hits) == 1)
        await until(lambda: not outbox.pending())
        receiver.status = 200
        outbox.enqueue(alert("q"), ["gone"])  # a failed row does not block the next
        await until(lambda: receiver.delivered == ["q firing"])
        await asyncio.sleep(0.3)
    assert len(receiver.hits) == 2
    failed, delivered = sorted(outbox.history(), key=lambda i: i.id)
    assert (failed.status, failed.attempts, delivered.status) == ("failed", 1, "delivered")
    assert failed.last_error is not None and "HTTP 404" in failed.last_error
    assert failed.to_json()["status"] == "failed"
    assert failed.to_json()["notification"]["fingerprint"] == "p"

    # History is pruned after the retention; undelivered rows never are.
    outbox.enqueue(alert("r"), ["not-configured"])
    assert outbox.prune(now=time.time() + 31 * 86400) == 2
    assert [i.status for i in outbox.history()] == ["pending"]
    outbox.close()


async def test_retry_after_is_honoured(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    receiver = await receivers()
    receiver.status, receiver.headers = 429, {"Retry-After": "1"}
    outbox = fast_outbox(db_location)
    async with Running(outbox, [WebhookNotifier(receiver.url, name="limited")], session):
        outbox.enqueue(alert("l"), ["limited"])
        await until(lambda: len(receiver.hits) == 1)
        receiver.status, receiver.headers = 200, {}
        await until(lambda: len(receiver.delivered) == 1)
    assert receiver.hits[1].at - receiver.hits[0].at >= 0.9  # backoff alone would be 0.02 s
    outbox.close()


async def test_drain_delivers_due_rows_and_keeps_the_rest(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    receiver = await receivers()
    outbox = fast_outbox(db_location)
    notifiers = [WebhookNotifier(receiver.url, name="hook")]
    async with Running(outbox, notifiers, session):
        pass
    # Enqueued after the workers stopped: drain() is what delivers them.
    outbox.enqueue(alert("d1"), ["hook"])
    outbox.enqueue(alert("d2"), ["hook"])
    assert await outbox.drain(timeout=5) == 0
    assert receiver.delivered == ["d1 firing", "d2 firing"]

    receiver.release.clear()  # the receiver now hangs
    outbox.enqueue(alert("d3"), ["hook"])
    assert await outbox.drain(timeout=0.2) == 1
    [kept] = outbox.pending()
    assert kept.notification.fingerprint == "d3"
    outbox.close()
    # Its cut-short attempt's claim went with close(): the next process need not wait it out.
    after = fast_outbox(db_location)
    claimed = after._claim("hook")
    assert claimed is not None and claimed.id == kept.id
    after.close()


async def test_what_a_receiver_answers_is_kept_redacted(
    tmp_path: Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    secret = "hook-signing-secret-0042"
    receiver = await receivers()
    receiver.status = 401
    receiver.text = f"rejected signature of secret {secret}; Authorization: Bearer xyz-123456"
    outbox = fast_outbox(tmp_path / "outbox.db", redactor=Redactor([secret]))
    notifier = WebhookNotifier(receiver.url, name="signed", secret=secret)
    async with Running(outbox, [notifier], session):
        outbox.enqueue(alert("s"), ["signed"])
        await until(lambda: bool(outbox.history()) and not outbox.pending())
    (failed,) = outbox.history()
    assert failed.last_error is not None and "[redacted]" in failed.last_error
    assert secret not in failed.last_error and "xyz-123456" not in failed.last_error
    outbox.close()
    assert secret.encode() not in (tmp_path / "outbox.db").read_bytes()


def test_schema_is_versioned_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    assert outbox.schema_version() == 2
    outbox.enqueue(alert("s"), ["a", "b", "a"])
    assert [i.notifier for i in outbox.pending()] == ["a", "b"]
    outbox.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    payload = json.loads(db.execute("SELECT payload FROM outbox LIMIT 1").fetchone()[0])
    assert payload["test"] is False and payload["fingerprint"] == "s"
    db.execute("UPDATE alembic_version_outbox SET version_num = '9999'")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="revision 9999, newer than this llmpulse"):
        Outbox(path)
    legacy = tmp_path / "newer-legacy.db"
    with contextlib.closing(sqlite3.connect(legacy)) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="version 99, newer than this llmpulse"):
        Outbox(legacy)


async def test_a_file_from_before_alembic_keeps_its_undelivered_rows(
    tmp_path: Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "legacy-outbox.db"
    db = sqlite3.connect(path, isolation_level=None)
    sqlitedb.migrate(db, OUTBOX_SCRIPTS, path)  # as the releases before Alembic made it
    payload = json.dumps({**alert("old").to_json(), "test": False})
    db.execute(
        "INSERT INTO outbox (notifier, payload, created_at, next_attempt_at, delivered_at) "
        "VALUES ('hook', ?, 1, 1, 2), ('hook', ?, 3, 3, NULL)",
        (payload, payload),
    )
    db.close()
    receiver = await receivers()
    outbox = fast_outbox(path)
    assert outbox.schema_version() == 2
    assert [i.status for i in outbox.history()] == ["pending", "delivered"]
    async with Running(outbox, [WebhookNotifier(receiver.url, name="hook")], session):
        await until(lambda: not outbox.pending())
    assert receiver.delivered == ["old firing"]
    outbox.close()
    # Revision 0001 is the legacy schema, and 0002 adds the claims to either.
    Outbox(tmp_path / "fresh.db").close()

    def shape(p: Path) -> dict[str, list[str]]:
        with contextlib.closing(sqlite3.connect(p)) as db:
            tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for (t,) in tables}

    assert shape(path) == shape(tmp_path / "fresh.db")
    assert shape(path)["outbox"][-2:] == ["claimed_by", "claimed_until"]


async def test_two_processes_deliver_every_row_once_and_in_order(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    """A leader handover where both deliver for a while: every row is claimed by one of them."""
    hooks = {"one": await receivers(), "two": await receivers()}
    sent = [alert(f"c{i}", AlertState.RESOLVED if i % 3 == 2 else AlertState.FIRING)
            for i in range(20)]  # fmt: skip
    old, new = fast_outbox(db_location), fast_outbox(db_location)
    for notification in sent:
        old.enqueue(notification, hooks)

    def notifiers() -> list[WebhookNotifier]:
        return [WebhookNotifier(r.url, name=name) for name, r in hooks.items()]

    async with Running(old, notifiers(), session), Running(new, notifiers(), session):
        await until(lambda: not new.pending(), timeout=20)
        await asyncio.sleep(0.5)  # longer than a poll: nothing is sent twice
    for receiver in hooks.values():
        assert receiver.delivered == [n.summary for n in sent]
        assert len(receiver.hits) == len(sent)
    assert {i.attempts for i in new.history(limit=100)} == {1}
    old.close()
    new.close()


async def test_a_dead_processes_claim_is_taken_over_after_its_lease(
    db_location: str | Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    receiver = await receivers()
    dead = fast_outbox(db_location, lease_s=1.0)
    dead.enqueue(alert("orphan"), ["hook"])
    # Claimed (and maybe sent), never marked: the process died before recording the outcome.
    assert dead._claim("hook") is not None
    claimed_at = time.monotonic()
    heir = fast_outbox(db_location)
    async with Running(heir, [WebhookNotifier(receiver.url, name="hook")], session):
        await until(lambda: receiver.delivered == ["orphan firing"], timeout=10)
        await asyncio.sleep(0.3)
    assert receiver.hits[0].at - claimed_at >= 0.9  # not while the claim was held
    assert len(receiver.hits) == 1
    [item] = heir.history()
    assert (item.status, item.attempts) == ("delivered", 1)
    heir.close()


async def test_a_locked_store_when_pruning_delays_the_prune_not_delivery(
    tmp_path: Path,
    receivers: Callable[..., Any],
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sqlite3

    from llmpulse.alerts import outbox as module

    monkeypatch.setattr(module, "_PRUNE_EVERY_S", 0.5)
    receiver = await receivers()
    path = tmp_path / "outbox.db"
    outbox = fast_outbox(path)
    raw = sqlite3.connect(path, isolation_level=None)
    async with Running(outbox, [WebhookNotifier(receiver.url, name="ops")], session):
        raw.execute("BEGIN EXCLUSIVE")  # locked while the outbox runs: a prune fails
        await asyncio.sleep(6)  # past SQLite's busy wait: a prune has given up by now
        raw.execute("COMMIT")
        outbox.enqueue(alert("after"), ["ops"])  # delivery is still running
        await until(lambda: receiver.delivered == ["after firing"], timeout=10)
    raw.close()
    outbox.close()


async def test_alerts_kept_for_a_notifier_no_longer_configured_are_said_at_start(
    tmp_path: Path,
    receivers: Callable[..., Any],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = await receivers()
    outbox = fast_outbox(tmp_path / "outbox.db")
    outbox.enqueue(alert("a"), ["pager"])
    outbox.enqueue(alert("b"), ["pager", "ops"])
    async with Running(outbox, [WebhookNotifier(receiver.url, name="ops")], session):
        await until(lambda: "which is not configured" in caplog.text)
        await until(lambda: receiver.delivered == ["b firing"])
    assert "2 undelivered alert(s) for notifier 'pager'" in caplog.text
    assert "for notifier 'ops'" not in caplog.text
    outbox.close()


async def test_a_store_locked_as_the_outbox_starts_delays_delivery_not_ends_it(
    tmp_path: Path,
    receivers: Callable[..., Any],
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import sqlite3

    receiver = await receivers()
    path = tmp_path / "outbox.db"
    outbox = fast_outbox(path)
    outbox.enqueue(alert("before"), ["ops"])
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN EXCLUSIVE")  # locked as run() starts: its first look at the rows fails
    async with Running(outbox, [WebhookNotifier(receiver.url, name="ops")], session):
        await asyncio.sleep(9)  # well past SQLite's busy wait (5 s)
        raw.execute("COMMIT")
        await until(lambda: receiver.delivered == ["before firing"], timeout=10)
    assert "could not look for alerts of unconfigured notifiers" in caplog.text
    raw.close()
    outbox.close()


async def test_storage_trouble_pauses_a_channel_instead_of_stopping_delivery(
    tmp_path: Path, receivers: Callable[..., Any], session: aiohttp.ClientSession
) -> None:
    import sqlite3

    receiver = await receivers()
    path = tmp_path / "outbox.db"
    outbox = fast_outbox(path)
    outbox.enqueue(alert("garbled"), ["ops"])
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE outbox SET payload = '{not json' WHERE notifier = 'ops'")
    async with Running(outbox, [WebhookNotifier(receiver.url, name="ops")], session):
        outbox.enqueue(alert("good"), ["ops"])
        await until(
            lambda: receiver.delivered == ["good firing"]
        )  # the unreadable row is set aside
        raw.execute("BEGIN EXCLUSIVE")  # the outbox's file is locked: reads and writes fail
        await asyncio.sleep(6)
        raw.execute("COMMIT")
        outbox.enqueue(alert("after"), ["ops"])  # delivery is still running
        await until(lambda: receiver.delivered == ["good firing", "after firing"], timeout=10)
    ((error,),) = raw.execute(
        "SELECT last_error FROM outbox WHERE failed_at IS NOT NULL AND payload = '{not json'"
    ).fetchall()
    assert "unreadable outbox row" in error
    assert [i.notification.fingerprint for i in outbox.history()] == ["after", "good"]
    raw.close()
    outbox.close()
