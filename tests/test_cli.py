"""The command line, run as a user runs it: a real process, real sockets, exit codes."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from conftest import POSTGRES_URL, base_url, postgres_schema, sim_model
from llmpulse.alerts.engine import AlertRecord
from llmpulse.alerts.model import AlertState
from llmpulse.alerts.state import AlertStateStore
from llmpulse.rules import Severity
from llmpulse.store import SQLiteStore, open_store

CONTRACT_KEYS = {
    "target", "provider", "model", "check", "ok", "error_class", "http_status", "latency_ms",
    "ttft_ms", "tokens_per_s", "input_tokens", "output_tokens", "cost_usd", "ratelimit",
    "retry_after_s", "response_model", "request_id", "error_message", "timestamp",
}  # fmt: skip
SECRET = "sk-test-very-secret-key-0123456789"


def run_cli(*args, cwd, env_extra=None, timeout=60, preexec_fn=None):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"XDG_DATA_HOME": str(cwd / "data"), **(env_extra or {})})
    return subprocess.run(
        [sys.executable, "-m", "llmpulse", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def write_config(path, sim, targets):
    lines = ["targets:"]
    for t in targets:
        lines.append(f"  - provider: {t['provider']}")
        lines.append(f"    base_url: {base_url(sim, t['provider'])}")
        for key, value in t.items():
            if key != "provider":
                lines.append(f"    {key}: {value}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_sim_json_contract(tmp_path):
    proc = run_cli("check", "--sim", "--json", "--no-store", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 12
    assert {r["provider"] for r in results} == {"openai", "anthropic", "gemini", "groq"}
    for r in results:
        assert set(r) >= CONTRACT_KEYS, CONTRACT_KEYS - set(r)
        assert r["ok"] is True and r["error_class"] is None
        assert r["timestamp"].endswith("Z")
        if r["check"] == "stream":
            assert r["ttft_ms"] > 0 and r["tokens_per_s"] > 0
        else:
            assert r["ttft_ms"] is None and r["tokens_per_s"] is None
        if r["check"] != "models":
            assert r["cost_usd"] > 0 and r["response_model"]


def test_config_file_results_are_stored_and_failures_exit_1(tmp_path, sim):
    healthy = sim_model(sim, ttft="20ms", output_tokens=8, tokens_per_s=200)
    broken = sim_model(sim, ttft="20ms", errors={"503": 1.0})
    config = write_config(
        tmp_path / "llmpulse.yaml",
        sim,
        [
            {"provider": "openai", "model": healthy, "name": "good", "api_key": "os.environ/TEST_KEY"},
            {"provider": "anthropic", "model": broken, "name": "bad", "api_key": "${TEST_KEY}",
             "checks": "[inference]"},
        ],
    )  # fmt: skip
    db = tmp_path / "results.db"
    # ./llmpulse.yaml is picked up without --config.
    proc = run_cli("check", "--db", str(db), cwd=tmp_path, env_extra={"TEST_KEY": SECRET})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unavailable" in proc.stdout and "3/4 checks passed" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    with SQLiteStore(db) as store:
        stored = store.latest_results()
    assert len(stored) == 4
    assert {r.target for r in stored} == {"good", "bad"}
    assert SECRET.encode() not in db.read_bytes()

    only_good = run_cli(
        "check", "--config", str(config), "--target", "good", "--check", "stream", "--json",
        "--no-store", cwd=tmp_path, env_extra={"TEST_KEY": SECRET},
    )  # fmt: skip
    assert only_good.returncode == 0, only_good.stderr
    assert [(r["target"], r["check"]) for r in json.loads(only_good.stdout)] == [("good", "stream")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("targets:\n  - provider: openai\n    timeout: soon\n", "targets[0].timeout"),
        ("targets:\n  - provider: opneai\n", "targets[0].provider: unknown provider"),
        (f"targets:\n  - provider: openai\n    api_key: {SECRET}\n", "must reference"),
        ("targets: [", "invalid YAML"),
        ("targets:\n  - provider: openai\n    name: a: b\n", "bad.yaml:3:12: invalid YAML: "),
        ("targets:\n  - provider: openai\n    interval: .nan\n", "targets[0].interval"),
    ],
)
def test_config_errors_exit_2_and_name_the_key(tmp_path, content, message):
    (tmp_path / "bad.yaml").write_text(content)
    proc = run_cli("check", "--config", "bad.yaml", cwd=tmp_path, env_extra={"OPENAI_API_KEY": "x"})
    assert proc.returncode == 2
    assert proc.stdout.count("\n") == 1 and proc.stdout.startswith("config error: ")
    assert message in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["check", "gateway", "run"])
def test_a_long_config_error_to_a_pipe_is_one_line(tmp_path, command):
    # Twice the 200 columns a pipe's console has; a key rich would read as markup too.
    key = "k" * 400
    (tmp_path / "bad.yaml").write_text(
        f"targets:\n  - provider: openai\n    {key}: 1\n    '[/x]': 2\n"
    )
    proc = run_cli(command, "--config", "bad.yaml", cwd=tmp_path, env_extra={"OPENAI_API_KEY": "x"})
    assert proc.returncode == 2
    assert (proc.stdout + proc.stderr).splitlines() == [
        f"config error: bad.yaml: targets[0].{key}: unknown key; targets[0].[/x]: unknown key"
    ]


def test_run_with_a_zero_interval_is_a_config_error(tmp_path):
    (tmp_path / "llmpulse.yaml").write_text("targets:\n  - provider: openai\n    interval: 0\n")
    proc = run_cli("run", "--no-web", cwd=tmp_path, env_extra={"OPENAI_API_KEY": "x"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "config error: llmpulse.yaml: targets[0].interval: a duration must be more than 0, got 0"
    ]


@pytest.mark.parametrize("command", [["run", "--no-web"], ["agent"]])
def test_a_database_error_is_one_line(tmp_path, command):
    (tmp_path / "llmpulse.yaml").write_text("targets:\n  - provider: openai\n")
    # libpq's refusal is two lines ("... Connection refused\n\tIs the server running ...").
    proc = run_cli(
        *command, "--db", "postgresql://nobody@127.0.0.1:1/none", cwd=tmp_path,
        env_extra={"OPENAI_API_KEY": "x"},
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("results database error: ") and "Is the server running" in line


def test_no_config_and_no_keys_is_a_usage_error(tmp_path):
    proc = run_cli("check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "OPENAI_API_KEY" in proc.stdout and "--sim" in proc.stdout


def test_unknown_option_and_target_are_usage_errors(tmp_path):
    assert run_cli("check", "--bogus", cwd=tmp_path).returncode == 2
    proc = run_cli("check", "--sim", "--target", "nope", "--no-store", cwd=tmp_path)
    assert proc.returncode == 2 and "no target named nope" in proc.stdout


def test_discovery_from_environment_reaches_the_provider(tmp_path):
    # A discovered target with a real preset URL; the network is closed here, so the checks
    # fail as connection errors — but they run, are classified, and exit 1, never crash.
    proc = run_cli(
        "check", "--json", "--no-store", "--check", "models", cwd=tmp_path,
        env_extra={"GROQ_API_KEY": SECRET}, timeout=90,
    )  # fmt: skip
    assert proc.returncode in (0, 1)
    (result,) = json.loads(proc.stdout)
    assert result["provider"] == "groq" and result["model"] == "llama-3.1-8b-instant"
    assert SECRET not in proc.stdout + proc.stderr


def test_sim_command_serves_until_sigterm(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "sim", "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "llmpulse simulator on" in proc.stdout.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                state = httpx.get(f"http://127.0.0.1:{port}/_sim/state", timeout=1).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert "gpt-4o-mini" in state["models"]
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught, as servers do.
        assert proc.wait(20) in (0, -signal.SIGTERM)


def test_ack_and_undo(tmp_path, db_location):
    db = str(db_location)
    firing = AlertRecord("fp1", "availability", "claude", "anthropic", Severity.CRITICAL,
                         state=AlertState.FIRING, fired_at=100.0, notified=True,
                         lead_rule="consecutive_unavailable")  # fmt: skip
    resolved = AlertRecord("fp2", "ttft_p95_high", "claude", "anthropic", Severity.WARNING,
                           state=AlertState.RESOLVED, fired_at=50.0)  # fmt: skip
    with contextlib.closing(AlertStateStore.open(db)) as state:  # as the leader saved them
        state.save_records([firing, resolved], 100.0)
    acked = run_cli("ack", "fp1", "--by", "ana", "--comment", "on it", "--db", db, cwd=tmp_path)
    assert acked.returncode == 0, acked.stderr
    assert "fp1 (consecutive_unavailable claude): acknowledged by ana at" in acked.stdout
    again = run_cli("ack", "fp1", "--by", "bob", "--db", db, cwd=tmp_path)
    assert "acknowledged by ana" in again.stdout  # the first acknowledgement holds
    with contextlib.closing(AlertStateStore.open(db)) as state:
        [ack] = state.acknowledgements()
    assert (ack.fingerprint, ack.by, ack.comment, ack.episode) == (
        "fp1", "ana", "on it", firing.episode
    )  # fmt: skip
    unknown = run_cli("ack", "nope", "--db", db, cwd=tmp_path)
    assert unknown.returncode == 1 and "no alert nope" in unknown.stderr
    over = run_cli("ack", "fp2", "--db", db, cwd=tmp_path)
    assert over.returncode == 1 and "resolved, not firing" in over.stderr
    undone = run_cli("ack", "fp1", "--undo", "--db", db, cwd=tmp_path)
    assert undone.returncode == 0 and "acknowledgement taken back" in undone.stdout
    with contextlib.closing(AlertStateStore.open(db)) as state:
        assert state.acknowledgements() == []


def test_notify_test_route_prints_the_tree_and_sends_nothing(tmp_path):
    config = tmp_path / "llmpulse.yaml"
    config.write_text(json.dumps({
        "targets": [{"provider": "groq", "model": "llama", "api_key": "os.environ/K"}],
        "notifiers": [
            {"name": "chat", "type": "webhook", "url": "http://127.0.0.1:9/chat"},
            {"name": "pager", "type": "webhook", "url": "http://127.0.0.1:9/pager"},
            {"name": "ml-team", "type": "webhook", "url": "http://127.0.0.1:9/ml"},
        ],
        "alerting": {"routes": [
            {"match": {"severity": "critical"}, "notify": ["pager"],
             "escalate": [{"after": "10m", "notify": ["chat"]}]},
            {"match": {"provider": ["groq", "together"]}, "notify": ["ml-team"], "continue": True},
            {"match": {"rule": "ttft_*"}, "notify": ["chat"]},
        ]},
        "slos": [{"name": "groq-availability", "sli": "availability", "objective": "99%"}],
    }))  # fmt: skip
    out = run_cli("notify", "test", "--route", "--config", str(config), cwd=tmp_path,
                  env_extra={"K": "k", "COLUMNS": "200"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {
        tuple(cell.strip() for cell in line.strip("│ ").split("│")[:2]): line
        for line in out.stdout.splitlines()
        if "│" in line
    }
    assert "pager" in rows[("consecutive_unavailable", "critical")]
    assert "after 10m: chat" in rows[("consecutive_unavailable", "critical")]
    assert "ml-team, chat" in rows[("ttft_p95_high", "warning")]  # continue, then the next
    assert "ml-team" in rows[("error_rate_warning", "warning")]
    assert "groq" in rows[("provider_down", "critical")]  # the group's labels
    assert "*" in rows[("all_providers_down", "critical")]
    slo = rows[("slo_burn_rate", "critical")]  # the SLO's own alert, its target the SLO
    assert "groq-availability" in slo and "pager" in slo
    assert "ml-team" in rows[("slo_burn_rate", "warning")]  # its provider: its targets' one
    missing = run_cli("notify", "test", "--route", "--target", "nope", "--config", str(config),
                      cwd=tmp_path, env_extra={"K": "k"})  # fmt: skip
    assert missing.returncode == 2 and "no configured target" in missing.stdout


def test_silence_add_list_end(tmp_path, db_location):
    db = str(db_location)
    added = run_cli("silence", "add", "--provider", "openai", "--duration", "2h",
                    "--comment", "planned maintenance", "--db", db, cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[1]
    listed = run_cli("silence", "list", "--db", db, cwd=tmp_path)
    assert silence_id in listed.stdout and "provider=openai" in listed.stdout
    with contextlib.closing(AlertStateStore.open(db)) as state:  # the daemon's state, too
        assert [s.id for s in state.silences()] == [silence_id]
    assert "planned maintenance" in listed.stdout
    assert run_cli("silence", "end", silence_id, "--db", db, cwd=tmp_path).returncode == 0
    assert "no silences" in run_cli("silence", "list", "--db", db, cwd=tmp_path).stdout
    assert silence_id in run_cli("silence", "list", "--all", "--db", db, cwd=tmp_path).stdout
    assert run_cli("silence", "end", silence_id, "--db", db, cwd=tmp_path).returncode == 1
    bad = run_cli("silence", "add", "--duration", "soon", "--db", db, cwd=tmp_path)
    assert bad.returncode == 2 and "duration" in bad.stderr


def test_silence_add_and_list_with_cron(tmp_path, db_location):
    db = str(db_location)
    berlin = ZoneInfo("Europe/Berlin")
    # Twelve hours from now there: its 2 h window is never the one in progress (which the
    # listing says as "now ... → ...").
    hour = (datetime.now(berlin).hour + 12) % 24
    cron = f"0 {hour} * * SUN"
    added = run_cli("silence", "add", "--provider", "openai", "--cron", cron,
                    "--duration", "2h", "--timezone", "Europe/Berlin", "--comment", "weekly deploy",
                    "--db", db, cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[1]
    assert f'every "{cron}" (Europe/Berlin) for 2h, next ' in added.stdout
    with contextlib.closing(AlertStateStore.open(db)) as state:
        (stored,) = state.silences(time.time())
    assert stored.id == silence_id and stored.provider == "openai"
    assert stored.schedule is not None
    assert (stored.schedule.cron, stored.schedule.duration_s) == (cron, 7200.0)
    # The next window, in the schedule's own time zone: a Sunday, from the hour, for 2 h.
    ((start, end),) = stored.next_occurrences(time.time(), 1)
    listed = run_cli("silence", "list", "--db", db, cwd=tmp_path)
    window = f"{datetime.fromtimestamp(start, berlin).isoformat()} → {datetime.fromtimestamp(end, berlin).isoformat()}"
    assert f'{silence_id}  every "{cron}" (Europe/Berlin) for 2h, next {window}' in listed.stdout
    assert f"T{hour:02d}:00:00+0" in window and "weekly deploy" in listed.stdout
    assert run_cli("silence", "end", silence_id, "--db", db, cwd=tmp_path).returncode == 0
    assert "no silences" in run_cli("silence", "list", "--db", db, cwd=tmp_path).stdout
    for args, hint, message in (
        (["--cron", "0 2 * *"], "--cron", "expected 5 fields"),
        (
            ["--cron", "0 2 * * SUN", "--timezone", "Mars/Olympus"],
            "--timezone",
            "unknown time zone",
        ),
        (["--timezone", "UTC"], "--timezone", "a time zone is for a --cron schedule"),
    ):
        bad = run_cli("silence", "add", "--duration", "2h", *args, "--db", db, cwd=tmp_path)
        assert bad.returncode == 2 and hint in bad.stderr and message in bad.stderr


def test_notify_test_reports_each_channel(tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    got = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(
                (
                    self.headers.get("X-Llmpulse-Test"),
                    self.rfile.read(int(self.headers["Content-Length"])),
                )
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    (tmp_path / "n.yaml").write_text(
        "targets:\n  - {provider: vllm, model: m, base_url: 'http://127.0.0.1:1/v1'}\n"
        "notifiers:\n"
        f"  - {{name: ops, type: webhook, url: 'http://127.0.0.1:{server.server_port}/h', secret: os.environ/HOOK_SECRET}}\n"
        f"  - {{name: broken, type: slack, webhook_url: 'http://127.0.0.1:{closed}/services/T/B/SECRETTOKEN'}}\n"
    )
    try:
        proc = run_cli(
            "notify", "test", "--config", "n.yaml", cwd=tmp_path, env_extra={"HOOK_SECRET": SECRET}
        )
    finally:
        server.shutdown()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ok   ops: HTTP 204" in proc.stdout
    assert "FAIL broken" in proc.stdout
    assert "SECRETTOKEN" not in proc.stdout and SECRET not in proc.stdout
    ((test_header, body),) = got
    assert test_header == "true" and json.loads(body)["rule"] == "test"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_and_keeps_every_result(tmp_path, sim, sig):
    model = sim_model(sim, ttft="400ms", output_tokens=5, tokens_per_s=50)
    write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": model, "name": "m", "api_key": "${TEST_KEY}",
          "interval": "1s", "checks": "[stream]", "timeout": "5s"}],
    )  # fmt: skip
    (tmp_path / "llmpulse.yaml").write_text(
        (tmp_path / "llmpulse.yaml").read_text() + "monitor: {status_pages: false}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"TEST_KEY": SECRET, "XDG_DATA_HOME": str(tmp_path / "data")})
    db = tmp_path / "r.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "run", "--db", str(db), "--listen", "127.0.0.1:0"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def requests_for_model():
        records = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
        return [r for r in records if r["model"] == model]

    deadline = time.monotonic() + 30
    while len(requests_for_model()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(0.3)  # most likely mid-check: the stream takes ~0.5 s
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "monitoring 1 targets" in err
    assert SECRET not in out + err
    with SQLiteStore(db) as store:
        stored = [r for r in store.latest_results(limit=1000) if r.model == model]
    sent = requests_for_model()
    # Every request the daemon made, including one in flight at the signal, has its result.
    assert len(stored) == len(sent) >= 3


def test_web_serves_an_existing_database_until_sigterm(tmp_path, sim):
    write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": "gpt-4o-mini", "name": "m", "api_key": "${TEST_KEY}"}],
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update({"TEST_KEY": SECRET, "XDG_DATA_HOME": str(tmp_path / "data")})
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "web", "--db", str(tmp_path / "r.db"),
         "--listen", "127.0.0.1:0", "--status-page-only"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "llmpulse: serving http://127.0.0.1:" in line, line
        url = line.split("serving ", 1)[1].strip().removesuffix("status")
        status = httpx.get(f"{url}api/v1/status", timeout=10).json()
        assert [t["name"] for t in status["targets"]] == ["m"]
        assert status["targets"][0]["status"] == "unknown"  # nothing measured yet
        assert httpx.get(f"{url}api/v1/overview", timeout=10).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert SECRET not in err


def test_run_refuses_to_serve_off_loopback_without_credentials(tmp_path, sim):
    write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "${TEST_KEY}"}],
    )  # fmt: skip
    proc = run_cli("run", "--listen", "0.0.0.0:0", cwd=tmp_path, env_extra={"TEST_KEY": "k"})
    assert proc.returncode == 2
    assert "--listen: 0.0.0.0:0 is not a loopback address" in proc.stderr
    assert "web.token" in proc.stderr


def test_run_reports_a_taken_port(tmp_path, sim):
    write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "${TEST_KEY}"}],
    )  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli(
            "run", "--listen", f"127.0.0.1:{port}", cwd=tmp_path, env_extra={"TEST_KEY": "k"}
        )
    assert proc.returncode == 2
    assert f"web.listen: cannot listen on 127.0.0.1:{port}: address already in use" in proc.stderr


def test_litellm_config_is_checked_and_its_ignored_keys_named_once(tmp_path, sim):
    (tmp_path / "llmpulse.yaml").write_text(
        "model_list:\n"
        "  - model_name: chat\n"
        f"    litellm_params: {{model: openai/gpt-4o-mini, api_base: {sim.openai_base},"
        " api_key: os.environ/TEST_KEY}\n"
        "litellm_settings: {success_callback: [langfuse]}\n"
    )
    proc = run_cli("check", "--json", "--no-store", cwd=tmp_path, env_extra={"TEST_KEY": SECRET})
    assert proc.returncode == 0, proc.stderr
    assert [r["model"] for r in json.loads(proc.stdout)] == ["gpt-4o-mini"] * 3
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "litellm_settings.success_callback" in warnings[0]
    assert SECRET not in proc.stdout + proc.stderr


def bound_by_file_modes():
    """A ``preexec_fn`` under which file modes bind the process. Root writes a read-only file
    anyway (CAP_DAC_OVERRIDE): it runs without the capabilities that bypass file modes, dropped
    from its bounding set so that exec does not give them back; anyone else needs nothing."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, bypassing = 24, (1, 2, 3)  # DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER

    def drop() -> None:
        for cap in bypassing:
            if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        subprocess.run(["true"], preexec_fn=drop, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot drop root's file capabilities here: {exc}")
    return drop


@pytest.mark.parametrize("command", ["run", "gateway"])
def test_a_read_only_sqlite_database_is_one_line_and_exit_2_at_start(tmp_path, sim, command):
    db = tmp_path / "results.db"
    SQLiteStore(db).close()
    db.chmod(0o444)
    config = tmp_path / "llmpulse.yaml"
    config.write_text(
        f"""targets:
  - {{provider: openai, model: m, api_key: "${{K}}", base_url: "{sim.openai_base}"}}
model_list:
  - model_name: chat
    litellm_params: {{model: openai/m, api_key: os.environ/K, api_base: "{sim.openai_base}"}}
"""
    )
    args = ["--no-web"] if command == "run" else []
    proc = run_cli(
        command, "--config", str(config), "--db", str(db), *args,
        cwd=tmp_path, env_extra={"K": "sk-test"}, preexec_fn=bound_by_file_modes(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"results database error: {db} refuses writes: attempt to write a readonly database"
    ]


def test_a_postgresql_role_that_may_only_read_is_one_line_and_exit_2_at_start(tmp_path, sim):
    write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": "m", "api_key": "${TEST_KEY}"}],
    )  # fmt: skip
    role = f"reader_{os.getpid()}"
    with postgres_schema() as url, psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        open_store(url).close()  # the tables, as their owner
        schema = url.rpartition("%3D")[2]
        admin.execute(f"CREATE ROLE {role} LOGIN")
        try:
            admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
            admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}")
            reader = url.replace("://postgres@", f"://{role}@", 1)
            assert reader != url, "LLMPULSE_TEST_POSTGRES is expected to log in as postgres"
            proc = run_cli(
                "run", "--db", reader, "--no-web", cwd=tmp_path, env_extra={"TEST_KEY": "k"}
            )
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"results database error: {reader} refuses writes: permission denied for table "
        "ingested_batches"
    ]


# The simulator is a server itself: uvicorn is its own, not the command's.
SERVERS = ("uvicorn", "starlette", "fastapi")
HEAVY = ("llmpulse.gateway", "sqlalchemy", "alembic", "psycopg", "redis")


@pytest.mark.parametrize(
    ("args", "heavy"),
    [
        (["check", "--help"], (*HEAVY, "llmpulse.store", *SERVERS)),
        (["check", "--sim", "--no-store", "--json"], (*HEAVY, "llmpulse.store", "fastapi")),
        # Storing into SQLite: no driver, and once the file exists, no migration tooling.
        (["check", "--sim", "--json"], (*HEAVY, "fastapi")),
    ],
)
def test_check_loads_no_gateway_server_or_database_driver(
    args: list[str], heavy: tuple[str, ...], tmp_path: Path
) -> None:
    probe = (
        "import sys\n"
        f"sys.argv = ['llmpulse', *{args!r}]\n"
        "from llmpulse.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted({{m for m in sys.modules if m.startswith({heavy!r})}}), file=sys.stderr)\n"
    )
    env = {**os.environ, "LLMPULSE_DB": str(tmp_path / "results.db")}
    for _ in range(2):  # the first run creates the database
        run = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env
        )
    assert run.stderr.strip().splitlines()[-1] == "[]"


def test_check_config_lists_every_rule_in_effect_and_refuses_a_bad_rule(tmp_path):
    config = tmp_path / "llmpulse.yaml"
    config.write_text(json.dumps({
        "targets": [
            {"provider": "openai", "model": "gpt-4o-mini", "api_key": "os.environ/K",
             "rules": {"ttft_p95_high": {"threshold": "2s"}}},
            {"provider": "groq", "model": "llama", "api_key": "os.environ/K"},
        ],
        "providers": {"groq": {"rules": {"cost_spike": {"min_usd": 5}}}},
        "rules": {"custom": [
            {"id": "chat_ttft_p99", "metric": "ttft_p99", "match": {"provider": "openai"},
             "window": "10m", "op": ">", "threshold": "4s", "for": "1m", "min_samples": 5},
        ]},
        "slos": [{"name": "fast", "sli": "ttft", "threshold": "2s", "objective": "99%",
                  "window": "7d", "match": {"provider": "groq"}}],
    }))  # fmt: skip
    out = run_cli("check-config", "--config", str(config), "--json", cwd=tmp_path,
                  env_extra={"K": "k"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    slo = [(r["kind"], r["threshold"], r["window_s"], r["severity"]) for r in listed
           if (r["subject"], r["rule"]) == ("fast", "slo_burn_rate")]  # fmt: skip
    assert slo == [("slo", "14.4× burn", 840.0, "critical"), ("slo", "6× burn", 5040.0,
                   "critical"), ("slo", "1× burn", 60480.0, "warning")]  # fmt: skip
    assert "groq/llama" in next(r["detail"] for r in listed if r["subject"] == "fast")
    rows = {(r["subject"], r["rule"]): r for r in listed}
    assert rows[("openai/gpt-4o-mini", "ttft_p95_high")]["threshold_value"] == 2.0
    assert rows[("groq/llama", "ttft_p95_high")]["threshold_value"] == 3.0
    assert rows[("groq/llama", "tps_low")]["threshold"] == "100.0 tokens/s"  # Groq's preset
    assert rows[("groq", "cost_spike")]["detail"] == "minimum $5"
    assert rows[("openai", "cost_spike")]["detail"] == "minimum $1"
    custom = rows[("each target", "chat_ttft_p99")]
    assert (custom["kind"], custom["threshold"], custom["unit"], custom["for_s"]) == (
        "custom", "> 4s", "seconds", 60.0,
    )  # fmt: skip
    assert "openai/gpt-4o-mini" in custom["detail"]
    table = run_cli("check-config", "--config", str(config), "--target", "groq/*", cwd=tmp_path,
                    env_extra={"K": "k", "COLUMNS": "250"})  # fmt: skip
    assert table.returncode == 0 and "valid: 2 targets" in table.stdout
    assert "1 custom rules, 1 SLOs" in table.stdout
    assert "│ groq/llama " in table.stdout and "│ openai/gpt-4o-mini " not in table.stdout
    raw = json.loads(config.read_text())
    raw["rules"]["custom"][0]["threshold"] = "4 parsecs"
    config.write_text(json.dumps(raw))
    bad = run_cli("check-config", "--config", str(config), cwd=tmp_path, env_extra={"K": "k"})
    assert bad.returncode == 2
    assert "rules.custom[0].threshold: ttft_p99 is in seconds" in bad.stdout + bad.stderr


def test_check_config_prints_the_probes_expected_monthly_cost_against_the_budget(tmp_path):
    config = tmp_path / "llmpulse.yaml"
    prices = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
    raw = {
        "monitor": {"probe_budget_usd": 5},
        "targets": [
            {"name": "busy", "provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
             "model": "m", "interval": "10s", "prices": prices},
            {"name": "calm", "provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
             "model": "m", "interval": "10m", "prices": prices},
            {"name": "unpriced", "provider": "vllm", "base_url": "http://127.0.0.1:1/v1",
             "model": "m", "checks": ["models", "inference"]},
        ],
    }  # fmt: skip
    config.write_text(json.dumps(raw))
    out = run_cli("check-config", "--config", str(config), cwd=tmp_path,
                  env_extra={"COLUMNS": "250"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.stdout.splitlines()
            if line.startswith("│") and "models" in line}  # fmt: skip
    # A run of the three checks: 0 + 3 + 146 millionths of a dollar; 259,200 turns in 30 days.
    assert rows["busy"] == ["models, inference, stream", "777,600", "38.62"]
    assert rows["calm"] == ["models, inference, stream", "12,960", "0.64"]
    assert rows["unpriced"] == ["models, inference", "172,800", "0.00 (no price: inference)"]
    assert "probes: about $39.26 a month in all" in out.stdout
    assert "over the probe budget $5.00: `run` and `agent` stretch 2 probes to every" in out.stdout
    raw["monitor"]["probe_budget_usd"] = 50
    config.write_text(json.dumps(raw))
    within = run_cli("check-config", "--config", str(config), cwd=tmp_path,
                     env_extra={"COLUMNS": "250"})  # fmt: skip
    assert "within the probe budget $50.00" in within.stdout
    raw["monitor"]["probe_budget_usd"] = -1
    config.write_text(json.dumps(raw))
    bad = run_cli("check-config", "--config", str(config), cwd=tmp_path)
    assert bad.returncode == 2 and "monitor.probe_budget_usd" in bad.stdout + bad.stderr


def test_check_selects_a_custom_probe_by_name_and_json_shows_its_kind(tmp_path, sim):
    model = sim_model(sim, ttft="10ms", answer="Lyon")
    probes = (
        "[{name: capital, messages: [{role: user, content: Capital of France?}], "
        "expect: {contains: Paris}}, {name: fast, kind: stream}]"
    )
    config = write_config(
        tmp_path / "llmpulse.yaml", sim,
        [{"provider": "openai", "model": model, "api_key": "os.environ/TEST_KEY",
          "probes": probes}],
    )  # fmt: skip
    env = {"TEST_KEY": SECRET}
    proc = run_cli(
        "check", "--config", str(config), "--check", "capital", "--check", "models", "--json",
        "--no-store", cwd=tmp_path, env_extra=env,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # the answer was wrong
    results = json.loads(proc.stdout)
    assert [(r["check"], r["kind"]) for r in results] == [
        ("models", "models"),
        ("capital", "inference"),
    ]
    wrong = results[1]
    assert wrong["error_class"] == "assertion" and wrong["http_status"] == 200
    assert wrong["error_message"] == "expected the answer to contain 'Paris'"
    assert wrong["answer_excerpt"] == "Lyon"

    unknown = run_cli(
        "check", "--config", str(config), "--check", "capitol", cwd=tmp_path, env_extra=env
    )
    assert unknown.returncode == 2 and unknown.stdout.count("\n") == 1
    assert unknown.stdout.startswith("config error: --check: no check named capitol; ")
    # A kind no target runs (and the canary, off here) is no check either: it would run
    # nothing and exit 0. The names offered are the ones configured.
    nothing = run_cli(
        "check", "--config", str(config), "--check", "embeddings", "--check", "canary",
        cwd=tmp_path, env_extra=env,
    )  # fmt: skip
    assert nothing.returncode == 2 and nothing.stdout.count("\n") == 1
    assert nothing.stdout.strip().endswith(
        "--check: no check named canary, embeddings; "
        "expected one of capital, fast, inference, models, stream"
    )


def test_check_config_prints_custom_probes_cost_and_a_long_context_probes_cost_a_day(tmp_path):
    config = tmp_path / "llmpulse.yaml"
    config.write_text(json.dumps({
        "monitor": {"probe_budget_usd": 5},
        "targets": [{
            "name": "ctx", "provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1",
            "model": "m", "prices": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "checks": ["models"],
            "probes": [
                {"name": "ttft-10k", "kind": "long_context", "input_tokens": 10000,
                 "interval": "30m", "params": {"max_tokens": 16}},
                {"name": "city", "messages": [{"role": "user", "content": "Capital of France?"}],
                 "expect": {"contains": "Paris"}, "interval": "5m"},
            ],
        }],
    }))  # fmt: skip
    out = run_cli("check-config", "--config", str(config), cwd=tmp_path,
                  env_extra={"COLUMNS": "250"})  # fmt: skip
    assert out.returncode == 0, out.stderr
    # The models list every 30 s, ttft-10k 48 times a day and city 288 times, for 30 days.
    assert "│ ctx    │ models, ttft-10k, city │ 96,480       │ 15.60       │" in out.stdout
    # Every paying probe at the hourly cap is still over: said so.
    assert "stretch 2 probes to every 1h (about $7.32 a month; still over" in out.stdout
    assert "long_context probe ttft-10k of ctx: every 30m, about $0.48 a day" in out.stdout
