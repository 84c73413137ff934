"""``llmpulse demo`` as a newcomer runs it: a real process, the scripted incidents, Ctrl-C.

The script runs at --speed 10 (a 15 s period); every alert must come from the real monitor
judging real checks and reading the simulated official status pages, so the test reads what the
sink printed and what the alert history kept.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmpulse.alerts.state import AlertStateStore, state_paths
from llmpulse.config import parse_config
from llmpulse.demo.scenario import (
    INCIDENTS,
    MODELS,
    OFFICIAL,
    PERIOD_S,
    build_config,
    build_scenario,
)
from llmpulse.rules import AVAILABILITY_RULES

SPEED = 10
ANTHROPIC = "anthropic/claude-haiku-4-5"


def _rules(rule: str) -> tuple[str, ...]:
    # The outage pages as one availability incident, under whichever of its rules leads.
    return AVAILABILITY_RULES if rule in AVAILABILITY_RULES else (rule,)


def _demo(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _lines(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_every_incident_fires_and_resolves_and_ctrl_c_exits_0(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    proc = _demo("--speed", str(SPEED), "--listen", "127.0.0.1:0", "--db", str(db))
    out = _lines(proc.stdout)
    printed: list[str] = []
    subjects = [i.model.target for i in INCIDENTS] + [o.model.provider for o in OFFICIAL]
    wanted = {(subject, status) for subject in subjects for status in ("FIRING", "RESOLVED")}
    seen: set[tuple[str, str]] = set()
    # One period (15 s here) plays every incident; allow for start-up and a slow machine.
    deadline = time.monotonic() + 2 * PERIOD_S / SPEED + 30
    try:
        while not wanted <= seen and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = out.get(timeout=0.5)
            except queue.Empty:
                continue
            printed.append(line)
            words = line.split()
            if len(words) > 3 and words[1] in ("FIRING", "RESOLVED"):
                seen.add((words[3], words[1]))
        assert wanted <= seen, "\n".join(printed)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    banner = "\n".join(printed)
    for url in ("dashboard", "status page", "metrics", "simulator", "status pages", "alert sink"):
        assert f"  {url}  " in banner

    state = AlertStateStore(state_paths(db)[0])
    try:
        history = list(reversed(state.events(limit=1000)))  # oldest first
    finally:
        state.close()
    for incident in INCIDENTS:
        target = incident.model.target
        pages = [(str(n.status), n.rule) for n in history if n.target == target]
        rule = pages[0][1] if pages else None
        assert rule in _rules(incident.rule), (target, pages)
        assert pages[:2] == [("firing", rule), ("resolved", rule)], (target, pages)
    # The official page admits the outage only after we paged it, and says nothing of the rest.
    outage = next(n for n in history if n.target == ANTHROPIC and n.status == "firing")
    assert outage.official_status == "none", outage
    printed_page = next(p for p in printed if p.split()[1:4:2] == ["FIRING", ANTHROPIC])
    assert printed_page.endswith(" · status page: none"), printed_page  # the sink says so too
    for script in OFFICIAL:
        provider = script.model.provider
        pages = [(str(n.status), n.rule) for n in history if n.target == provider]
        assert pages[:2] == [("firing", script.rule), ("resolved", script.rule)], pages
        fired = next(n for n in history if n.target == provider)
        assert fired.summary == f"{provider} status page: Partial System Outage (major)"
    # Nothing else paged: the control stayed quiet, no incident raised a stray alert and no other
    # status page spoke up.
    allowed = {(i.model.target, r) for i in INCIDENTS for r in _rules(i.rule)}
    allowed |= {(o.model.provider, o.rule) for o in OFFICIAL}
    assert {(n.target, n.rule) for n in history} <= allowed


def test_a_taken_dashboard_port_names_the_option(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _demo("--port", str(port), "--db", str(tmp_path / "d.db"))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}" in err and "--listen" in err and "in use" in err


@pytest.mark.parametrize("speed", [1, 4])
def test_speed_divides_every_duration(speed: int) -> None:
    pages = {m.provider: f"http://s/statuspage/{m.provider}/api/v2/summary.json" for m in MODELS}
    raw = build_config(speed, {"openai": "http://s/o", "anthropic": "http://s/a",
                               "gemini": "http://s/g"}, "http://sink/hook", "127.0.0.1:0",
                       pages)  # fmt: skip
    config = parse_config(raw, env={"LLMPULSE_DEMO_KEY": "k"})
    assert [t.name for t in config.targets] == [m.target for m in MODELS]
    assert {t.interval for t in config.targets} == {5.0 / speed}
    assert config.rules["ttft_p95_high"].window == 60.0 / speed
    assert config.rules["ttft_p95_high"].threshold == 3.0 / speed
    assert config.rules["tps_low"].clear_window == 15.0 / speed
    assert config.rules["error_rate_warning"].for_ == 10.0 / speed
    assert config.alerting.resolve_after == 10.0 / speed
    assert config.alerting.group_wait == 1.0 / speed
    assert config.monitor.retry_interval == 1.5 / speed
    # Official status pages on, every one of them the simulator's: the demo never leaves the
    # machine.
    assert config.monitor.status_pages is True
    assert config.monitor.status_interval == 5.0 / speed
    assert {p: s.status_page for p, s in config.providers.items()} == pages
    groq = next(t for t in config.targets if t.provider == "groq")
    assert groq.tps_floor == 150 * speed
    scenario = build_scenario(speed)
    openai = scenario.models["gpt-4o-mini"]
    assert openai.loop == PERIOD_S  # scenario time: the simulator itself runs `speed` times faster
    assert openai.ttft == pytest.approx(0.4 / speed)
    assert [e.at for e in openai.timeline] == [10, 20, 50]
    assert scenario.models["gemini-2.5-flash"].timeline == []
    anthropic = scenario.status_pages["anthropic"]
    assert anthropic.loop == PERIOD_S and [e.at for e in anthropic.timeline] == [35, 55, 90]
    assert all(
        not scenario.status_pages[m.provider].timeline for m in MODELS if m.provider != "anthropic"
    )
