"""Failover drills against the simulator: ``llmpulse drill`` walks each failover path with the
deployments before it forced out, and a path whose fallback's key was revoked fails, named."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from conftest import base_url, sim_model, spawn_llmpulse
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.cli import main
from llmpulse.config import Config, load_config
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.drill import (
    JSON_KEYS,
    failover_paths,
    next_run,
    run_drill,
    run_label,
    scheduled_drills,
)
from llmpulse.monitor.alerting import Alerting
from llmpulse.monitor.daemon import Daemon
from llmpulse.probe.lock import ProbeLock
from llmpulse.result import CheckResult, Source
from llmpulse.rules import FAILOVER_PATH_BROKEN, Severity
from llmpulse.sim.scenario import Scenario
from llmpulse.sim.server import SimServer
from llmpulse.store import Store, open_store
from llmpulse.store.writer import open_recording

GOOD, REVOKED = "sk-good", "sk-revoked"
FAST = {"ttft": 0.01, "tokens_per_s": 2000}


@pytest.fixture
def keyed_sim() -> Iterator[SimServer]:
    """A simulator that accepts one key only: any other is refused (401), as a revoked one."""
    server = SimServer(Scenario(api_keys=[GOOD]))
    server.start()
    yield server
    server.stop()


def entry(group: str, provider: str, model: str, base: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {"model": f"{provider}/{model}", "api_base": base, **params},
    }


def drill_file(sim: SimServer, tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Group ``chat``: an OpenAI primary (order 2) and an Anthropic one (order 1); its fallback
    ``backup``'s one deployment takes its key from $BACKUP_KEY, and its errors repeat the key
    they were sent (as some providers' do)."""
    primary, second = (sim_model(sim, **FAST) for _ in range(2))
    backup = sim_model(sim, **FAST, echo_credentials=True)
    raw = {
        "model_list": [
            entry(
                "chat",
                "openai",
                primary,
                base_url(sim, "openai"),
                api_key="os.environ/GOOD_KEY",
                order=2,
            ),
            entry(
                "chat",
                "anthropic",
                second,
                base_url(sim, "anthropic"),
                api_key="os.environ/GOOD_KEY",
                order=1,
            ),
            entry(
                "backup", "openai", backup, base_url(sim, "openai"), api_key="os.environ/BACKUP_KEY"
            ),
        ],
        "router_settings": {"fallbacks": [{"chat": ["backup"]}], "num_retries": 0},
        **(extra or {}),
    }
    path = tmp_path / "llmpulse.yaml"
    path.write_text(json.dumps(raw))
    return path


def drill(config: Path, db: Path, backup_key: str, *args: str) -> Result:
    env = {"GOOD_KEY": GOOD, "BACKUP_KEY": backup_key}
    return CliRunner().invoke(
        main, ["drill", "--config", str(config), "--db", str(db), *args], env=env
    )


def sim_requests(sim: SimServer) -> list[dict[str, Any]]:
    return httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]


def test_paths_follow_priority_then_fallback_groups(sim: SimServer, tmp_path: Path) -> None:
    raw = json.loads(drill_file(sim, tmp_path).read_text())
    config = parse_gateway(raw, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config is not None
    plan = failover_paths(config)
    chat = [d.name for d in config.resolve("chat")]
    backup = config.resolve("backup")[0].name
    # order 1 (the Anthropic deployment) first, then order 2, then the fallback group.
    assert [p.names for p in plan.paths if p.group == "chat"] == [
        [chat[1]],
        [chat[1], chat[0]],
        [chat[1], chat[0], backup],
    ]
    assert [p.names for p in plan.paths if p.group == "backup"] == [[backup]]
    # max_fallbacks 0: the fallback is never reached, so it is named, not drilled.
    raw["router_settings"]["max_fallbacks"] = 0
    config = parse_gateway(raw, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config is not None
    plan = failover_paths(config, "chat")
    assert [len(p.deployments) for p in plan.paths] == [1, 2]
    assert any("backup unreachable" in n and "max_fallbacks" in n for n in plan.notes)


def test_revoked_fallback_key_fails_its_path_and_fixing_it_passes(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    config, db = drill_file(keyed_sim, tmp_path), tmp_path / "results.db"
    result = drill(config, db, REVOKED, "--group", "chat")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "auth" in result.output
    assert REVOKED not in result.output  # the provider's words, redacted
    # The broken path is named under the table: the group, then its deployments in order.
    backup = json.loads(config.read_text())["model_list"][2]["litellm_params"]["model"]
    broken_line = " ".join(result.output.split()).split("broken: ", 1)[1]
    assert broken_line.startswith("1 failover path: chat: chat/")
    assert broken_line.endswith(f"→ backup/{backup}")

    httpx.delete(f"{keyed_sim.url}/_sim/requests", timeout=10)
    result = drill(config, db, REVOKED, "--group", "chat", "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert len(rows) == 6  # three paths, streamed and not
    assert all(tuple(r) == JSON_KEYS for r in rows)
    broken = [r for r in rows if not r["ok"]]
    assert len(broken) == 2 and {r["stream"] for r in broken} == {False, True}
    assert all(len(r["path"]) == 3 and r["error_class"] == "auth" for r in broken)
    assert REVOKED not in result.stdout
    assert all(
        r["ok"] and r["output_tokens"] and r["latency_ms"] for r in rows if len(r["path"]) < 3
    )
    assert all(r["ttft_ms"] is not None for r in rows if r["stream"] and r["ok"])
    # Each primary deployment answered its own path's two requests only: forced out of the
    # paths after it, it was never called there; the revoked fallback answered nothing.
    models = [e["litellm_params"]["model"].split("/", 1)[1] for e in
              json.loads(config.read_text())["model_list"]]  # fmt: skip
    answered = [r["model"] for r in sim_requests(keyed_sim) if r["status"] == 200]
    assert sorted(answered) == sorted([models[0], models[0], models[1], models[1]])

    # Stored as drill results, the route naming every deployment of the path in order.
    with open_store(db) as store:
        stored = store.results_between(0, 2e9)
    drills = [r for r in stored if r.source is Source.DRILL]
    assert len(drills) == 12 and all(r.drill and r.drill.startswith("drill-") for r in drills)
    failed = [r for r in drills if not r.ok]
    assert len(failed) == 4 and all(sorted(r.route) == sorted(broken[0]["path"]) for r in failed)
    assert all(r.route[-1] == broken[0]["path"][-1] for r in failed)
    assert all(REVOKED not in (r.error_message or "") for r in failed)

    result = drill(config, db, GOOD, "--group", "chat")
    assert result.exit_code == 0, result.output


def test_dry_run_sends_nothing(keyed_sim: SimServer, tmp_path: Path) -> None:
    config, db = drill_file(keyed_sim, tmp_path), tmp_path / "results.db"
    httpx.delete(f"{keyed_sim.url}/_sim/requests", timeout=10)
    result = drill(config, db, REVOKED, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "4 paths, 8 requests" in result.output and "nothing sent" in result.output
    result = drill(config, db, REVOKED, "--dry-run", "--json")
    rows = json.loads(result.stdout)
    assert [len(r["path"]) for r in rows] == [1, 2, 3, 1]
    assert sim_requests(keyed_sim) == []
    assert not db.exists()


def test_unknown_group_is_a_usage_error(sim: SimServer, tmp_path: Path) -> None:
    result = drill(drill_file(sim, tmp_path), tmp_path / "r.db", GOOD, "--group", "nope")
    assert result.exit_code == 2
    assert "--group: 'nope' names no model group" in result.output


class Leader:
    """The alert leader's drill judgement: results read back from the store as the daemon's
    ticker reads them (``Store.tail``), fed to the real engine; notices kept with receivers."""

    def __init__(self, tmp_path: Path, config: Config, store: Store) -> None:
        self.store, self.cursor = store, 0
        self.notices: list[tuple[Notification, tuple[str, ...]]] = []
        self.state = AlertStateStore.open(tmp_path / "state.db")

        def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
            self.notices.append((n, tuple(receivers)))

        names = {n.name: None for n in config.notifiers}
        self.alerting = Alerting(config, store, self.state, notify, lambda p: None, notifiers=names)

    def tick(self) -> None:
        now = time.time()
        results, self.cursor = self.store.tail(self.cursor)
        self.alerting.load_silences(now)  # as the leader holds them before any result
        self.alerting.feed(results, now)
        self.state.save_records(self.alerting.tick(now), now)


def drill_once(
    config: Config,
    location: str | Path,
    processes: int = 1,
    requests: int = 8,
    later: float = 0.0,
) -> list[CheckResult]:
    """One occurrence of ``gateway.drills``' schedule, as the daemon runs it: the clock is set
    just before the next minute (the schedule is every minute), so it starts within a second;
    its results are written through the one writer. ``processes``: as many schedulers, each
    with a store of its own (agents or gateway replicas on one database), all willing to run
    it; it ends once ``requests`` results were recorded and a second more passed. ``later``:
    the occurrence ``later`` seconds on (one already claimed is never run again)."""
    assert config.gateway is not None and config.gateway.settings.drills is not None
    settings = config.gateway.settings.drills
    recording = open_recording(location, "test-agent")
    recording.start()
    stores = [open_store(location) for _ in range(processes)]
    # Once the stores are open (migrating a PostgreSQL schema takes a while): the occurrence
    # must still be ahead when the schedulers start.
    start = time.time()
    offset = next_run(settings, start + later) - start - 0.3
    seen: list[CheckResult] = []

    def record(result: CheckResult) -> None:
        seen.append(result)
        recording.add(result)

    async def occurrence() -> None:
        stop = asyncio.Event()

        async def stop_after_run() -> None:
            while len(seen) < requests:  # four paths, two requests each
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # room for a second run, if one were under way
            stop.set()

        watcher = asyncio.ensure_future(stop_after_run())
        await asyncio.wait_for(
            asyncio.gather(*(
                scheduled_drills(
                    config.gateway, settings, stop, record=record,
                    store=store, redactor=config.redactor, clock=lambda: time.time() + offset,
                    missed_grace=0.0,
                )
                for store in stores
            )),
            30,
        )  # fmt: skip
        await watcher

    asyncio.run(occurrence())
    for store in stores:
        store.close()
    recording.close()
    recording.writer.store.close()
    return seen


def test_scheduled_drill_raises_failover_path_broken_and_resolves_once_fixed(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    file = drill_file(
        keyed_sim,
        tmp_path,
        {
            "gateway": {"drills": {"schedule": "* * * * *", "timezone": "Europe/Berlin"}},
            "notifiers": [
                {"type": "slack", "name": "fallbacks", "webhook_url": "https://hooks.slack.com/x"},
                {"type": "slack", "name": "oncall", "webhook_url": "https://hooks.slack.com/y"},
            ],
            # A broken fallback of chat goes to the team owning it; nothing else does.
            "alerting": {"routes": [
                {"match": {"rule": "failover_path_broken", "group": "chat"},
                 "notify": ["fallbacks"]},
                {"match": {"rule": "failover_path_broken", "group": "backup"},
                 "notify": ["fallbacks"]},
                {"match": {"severity": "critical"}, "notify": ["oncall"]},
            ]},
            # backup's own path is routed too, but silenced: it fires and pages no one.
            "silences": [{"rule": "failover_path_broken", "target": "backup: *",
                          "ends": "2099-01-01T00:00:00Z"}],
        },
    )  # fmt: skip
    db = tmp_path / "results.db"
    revoked = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": REVOKED})
    seen = drill_once(revoked, db)
    assert {r.source for r in seen} == {Source.DRILL} and len({r.drill for r in seen}) == 1
    with open_store(db) as store:
        leader = Leader(tmp_path, revoked, store)
        leader.tick()
        firing = {
            r.target: r for r in leader.alerting.engine.records.values()
            if r.rule == FAILOVER_PATH_BROKEN and r.state is AlertState.FIRING
        }  # fmt: skip
        chat = [t for t in firing if t.startswith("chat: ")]
        assert len(firing) == 2 and len(chat) == 1  # chat's third path, and backup's own
        record = firing[chat[0]]
        assert record.severity is Severity.WARNING
        paths = failover_paths(revoked.gateway, "chat").paths  # type: ignore[arg-type]
        assert chat[0] == f"chat: {paths[2].label}"  # named in the drill's order
        assert record.labels["group"] == "chat" and record.labels["path"] == paths[2].label
        assert record.labels["deployment"].startswith("backup/")
        assert "is broken" in record.summary and "auth" in record.summary
        assert REVOKED not in record.summary
        notices = [(n.target, n.status, r) for n, r in leader.notices if n.rule == record.rule]
        assert (chat[0], "firing", ("fallbacks",)) in notices
        assert not any(t.startswith("backup: ") and r for t, _, r in notices)

        fixed = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
        assert all(r.ok for r in drill_once(fixed, db, later=60))
        leader.tick()
        states = {
            r.target: r.state for r in leader.alerting.engine.records.values()
            if r.rule == FAILOVER_PATH_BROKEN and r.state is not None
        }  # fmt: skip
        assert set(states) == set(firing)
        assert set(states.values()) == {AlertState.RESOLVED}
        assert (chat[0], "resolved", ("fallbacks",)) in [
            (n.target, n.status, r) for n, r in leader.notices
        ]


def test_the_daemon_drills_on_schedule_and_its_leader_raises_the_alert(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    """`llmpulse run` with ``gateway.drills`` every minute: its alert leader drills (the previous
    minute's occurrence at once, none having run it), stores the results and fires
    failover_path_broken for the revoked fallback."""
    file = drill_file(
        keyed_sim, tmp_path, {"gateway": {"drills": {"schedule": "* * * * *"}, "monitor": False}}
    )
    config = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": REVOKED})
    db = tmp_path / "results.db"

    async def run() -> list[str]:
        daemon = Daemon(config, db_path=db)
        task = asyncio.ensure_future(daemon.run())
        deadline = time.monotonic() + 90  # the next minute, and the drill
        try:
            while time.monotonic() < deadline:
                alerting = daemon.alerting
                records = alerting.engine.records.values() if alerting is not None else []
                firing = [
                    r.target for r in records
                    if r.rule == FAILOVER_PATH_BROKEN and r.state is AlertState.FIRING
                ]  # fmt: skip
                if len(firing) == 2:
                    return sorted(firing)
                await asyncio.sleep(0.25)
            raise AssertionError("no failover_path_broken within 90 s")
        finally:
            daemon.stop_event.set()
            await asyncio.wait_for(task, 30)

    firing = asyncio.run(run())
    assert firing[0].startswith("backup: ") and firing[1].startswith("chat: ")
    with open_store(db) as store:
        drills = [r for r in store.results_between(0, 2e9) if r.source is Source.DRILL]
    # The previous minute's occurrence (missed: nothing ran) at once, maybe the next one too.
    runs = {r.drill: [d for d in drills if d.drill == r.drill] for r in drills}
    assert len(runs[min(runs)]) == 8 and all(len(run) <= 8 for run in runs.values())
    assert {r.agent for r in drills} == {config.monitor.agent or socket.gethostname()}


@pytest.mark.parametrize("daemon_probes", [False, True])
def test_the_gateway_drills_on_schedule(
    keyed_sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daemon_probes: bool
) -> None:
    """`llmpulse gateway` runs ``gateway.drills`` itself, its results written through its
    recording; also beside a daemon probing into its database (its probe lock held here) whose
    config may have no drills: the occurrence's claim, not who probes, says who drills."""
    file = drill_file(
        keyed_sim, tmp_path, {"gateway": {"drills": {"schedule": "* * * * *"}, "monitor": False}}
    )
    monkeypatch.setenv("GOOD_KEY", GOOD)
    monkeypatch.setenv("BACKUP_KEY", GOOD)
    db = tmp_path / "results.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["gateway", "--config", str(file), "--db", str(db), "--listen", f"127.0.0.1:{port}"]
    probing = ProbeLock(db)
    assert not daemon_probes or probing.acquire()
    gateway = spawn_llmpulse(args, tmp_path, "gateway.log")
    try:
        drills: list[CheckResult] = []
        deadline = time.monotonic() + 90  # the next minute, and the drill
        while (
            len([r for r in drills if r.drill == min((d.drill or "" for d in drills), default="")])
            < 8
        ):
            assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
            assert time.monotonic() < deadline, "no scheduled drill within 90 s"
            time.sleep(0.5)
            if db.exists():
                with open_store(db) as store:
                    rows = store.results_between(0, 2e9)
                drills = [r for r in rows if r.source is Source.DRILL]
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(timeout=30)
        probing.release()
    first = [r for r in drills if r.drill == min(d.drill or "" for d in drills)]
    assert all(r.ok for r in drills) and len(first) == 8
    assert sorted(len(r.route) for r in first) == [1, 1, 2, 2, 2, 2, 3, 3]
    # Said at start, so whoever configured them sees they were taken.
    assert (
        "llmpulse gateway: failover drills at '* * * * *' (UTC)"
        in (tmp_path / "gateway.log").read_text()
    )


def test_an_occurrence_is_drilled_once_among_processes_on_one_database(
    keyed_sim: SimServer, tmp_path: Path, db_location: str | Path
) -> None:
    """Agents, gateway replicas or hosts on one database (SQLite, or PostgreSQL across hosts),
    each willing to drill: the occurrence's claim in the database lets one of them run it."""
    file = drill_file(keyed_sim, tmp_path, {"gateway": {"drills": {"schedule": "* * * * *"}}})
    config = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    seen = drill_once(config, db_location, processes=2)
    assert len(seen) == 8 and len({r.drill for r in seen}) == 1
    answered = [r for r in sim_requests(keyed_sim) if r["status"] == 200]
    assert len(answered) == 8


def test_a_provider_that_never_finishes_is_cut_at_the_drills_bound_and_recorded(
    sim: SimServer, tmp_path: Path
) -> None:
    """A stream trickling a token a second (each within the idle timeout) would hold the drill
    for as long as it trickles: the request's whole time is bounded, and the path fails as a
    timeout, recorded as a drill result like any other (so the scheduled alert sees it)."""
    slow = sim_model(sim, ttft=0.01, tokens_per_s=1)
    raw = {"model_list": [entry("slow", "openai", slow, base_url(sim, "openai"), api_key="k")]}
    config = parse_gateway(raw, env={})
    assert config is not None
    recorded: list[CheckResult] = []

    async def go() -> list[Any]:
        return await run_drill(
            config, failover_paths(config), label="drill-test", record=recorded.append,
            timeout_cap=2.0,
        )  # fmt: skip

    started = time.monotonic()
    outcomes = asyncio.run(go())
    assert time.monotonic() - started < 10  # 16 tokens at 1/s take 16 s
    assert [(o.stream, o.ok, o.error_class) for o in outcomes] == [
        (False, False, "timeout"),
        (True, False, "timeout"),
    ]
    assert [(r.source, r.drill, r.route, r.ok) for r in recorded] == [
        (Source.DRILL, "drill-test", [config.deployments[0].name], False)
    ] * 2
    assert all(o.result is r for o, r in zip(outcomes, recorded, strict=True))


def test_the_alert_of_a_path_the_config_no_longer_has_resolves(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    """chat's fallback is broken and alerted; then the fallback is taken out of the config: no
    drill will ever pass that path again, so its alert resolves, and a result of it read back
    later (a replay) raises nothing."""
    file = drill_file(keyed_sim, tmp_path, {"gateway": {"drills": {"schedule": "* * * * *"}}})
    db = tmp_path / "results.db"
    revoked = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": REVOKED})
    drill_once(revoked, db)
    with open_store(db) as store:
        leader = Leader(tmp_path, revoked, store)
        leader.tick()
        firing = [
            r.target for r in leader.alerting.engine.records.values()
            if r.rule == FAILOVER_PATH_BROKEN and r.state is AlertState.FIRING
        ]  # fmt: skip
        assert len(firing) == 2
        leader.state.close()

        raw = json.loads(file.read_text())
        raw["router_settings"]["fallbacks"] = []
        raw["model_list"] = raw["model_list"][:2]  # backup is gone too
        file.write_text(json.dumps(raw))
        pruned = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": REVOKED})
        leader = Leader(tmp_path, pruned, store)  # a new term, with the state saved
        leader.tick()  # the old run read back: its paths are not this config's
        leader.alerting.retire_drill_paths(time.time())
        states = {
            r.target: r.state for r in leader.alerting.engine.records.values()
            if r.rule == FAILOVER_PATH_BROKEN and r.state is not None
        }  # fmt: skip
        assert set(states) == set(firing) and set(states.values()) == {AlertState.RESOLVED}
        assert {n.target for n, _ in leader.notices if n.status == "resolved"} == set(firing)


def test_an_occurrence_missed_while_down_runs_at_start_once(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    """The day's drill was due two minutes ago while nothing ran (a restart, a deploy): the
    scheduler starting now runs it at once, under its own time's label; a second process
    starting later finds it claimed and runs nothing."""
    due = (int(time.time()) // 60 - 2) * 60
    when = time.gmtime(due)
    file = drill_file(keyed_sim, tmp_path, {
        "gateway": {"drills": {"schedule": f"{when.tm_min} {when.tm_hour} * * *"}},
    })  # fmt: skip
    config = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config.gateway is not None and config.gateway.settings.drills is not None
    gateway, settings = config.gateway, config.gateway.settings.drills
    db = tmp_path / "results.db"

    async def start(seen: list[CheckResult], until: int, wait: float) -> None:
        stop = asyncio.Event()
        with open_store(db) as store:
            task = asyncio.ensure_future(scheduled_drills(
                gateway, settings, stop, record=seen.append, store=store,
                redactor=config.redactor,
            ))  # fmt: skip
            deadline = time.monotonic() + wait
            while len(seen) < until and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(task, 30)

    first: list[CheckResult] = []
    asyncio.run(start(first, 8, 20))
    assert len(first) == 8 and {r.drill for r in first} == {run_label(due)}
    again: list[CheckResult] = []
    asyncio.run(start(again, 1, 2))
    assert again == []


def test_an_agent_that_does_not_lead_drills_an_occurrence_none_claimed(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    """The lead is another agent's (here: its lock is held) and nobody has drilled the occurrence
    due a minute ago: this agent claims it and drills it. Leading is not asked for: a lead not
    yet taken at start, or changing hands at the drill's time, would lose the occurrence."""
    due = (int(time.time()) // 60 - 1) * 60
    when = time.gmtime(due)
    file = drill_file(keyed_sim, tmp_path, {
        "gateway": {"drills": {"schedule": f"{when.tm_min} {when.tm_hour} * * *"},
                    "monitor": False},
    })  # fmt: skip
    config = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    db = tmp_path / "results.db"
    lead = tmp_path / "results.db.leader"
    fd = os.open(lead, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the other agent's lead

    async def run() -> None:
        daemon = Daemon(config, db_path=db)
        task = asyncio.ensure_future(daemon.run())
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and len(stored()) < 8:
                await asyncio.sleep(0.25)
            assert not daemon.leadership.is_leader
        finally:
            daemon.stop_event.set()
            await asyncio.wait_for(task, 30)

    def stored() -> list[CheckResult]:
        with open_store(db) as store:
            return [r for r in store.results_between(0, 2e9) if r.source is Source.DRILL]

    try:
        asyncio.run(run())
    finally:
        os.close(fd)
    drills = stored()
    assert len(drills) == 8 and {r.drill for r in drills} == {run_label(due)}


def test_scheduled_drills_say_what_they_never_drill(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fallback past max_fallbacks is never drilled: the command names it on each run, and
    the scheduler in the log when it starts, not silently."""
    file = drill_file(sim, tmp_path, {"gateway": {"drills": {"schedule": "0 3 * * *"}}})
    raw = json.loads(file.read_text())
    raw["router_settings"]["max_fallbacks"] = 0
    file.write_text(json.dumps(raw))
    config = load_config(file, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config.gateway is not None and config.gateway.settings.drills is not None
    gateway, settings = config.gateway, config.gateway.settings.drills

    async def start() -> None:
        stop = asyncio.Event()
        stop.set()
        with open_store(tmp_path / "results.db") as store:
            await scheduled_drills(
                gateway, settings, stop, record=lambda r: None, store=store, missed_grace=0.0
            )

    asyncio.run(start())
    assert any("backup unreachable" in r.getMessage() for r in caplog.records)
