"""``llmpulse gateway --num_workers N``: real worker processes on one real port, the simulator
as the provider, the results in a real SQLite file (and Redis for the shared state)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import sim_model
from llmpulse.config import load_config
from llmpulse.errors import ErrorClass
from llmpulse.gateway.server import listening_socket
from llmpulse.gateway.workers import Supervisor
from llmpulse.probe.lock import ProbeLock
from llmpulse.result import CheckResult
from llmpulse.secrets import REDACTED, Redactor, install_log_redaction
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store
from test_gateway_proxy import FAST, deployment, upstream
from test_gateway_shared import REDIS_URL, _redis_down

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


class Workers:
    """``llmpulse gateway --port 0 --num_workers N``, its stderr read as it comes."""

    def __init__(
        self, tmp_path: Path, raw: dict[str, Any], workers: int = 2, *, group: bool = False
    ) -> None:
        config = tmp_path / "gateway.yaml"
        config.write_text(yaml.safe_dump(raw))
        self.db = tmp_path / "traffic.db"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config),
             "--db", str(self.db), "--port", "0", "--num_workers", str(workers)],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "SIM_KEY": "sk-sim"},
            start_new_session=group,  # a process group of its own, as a terminal's job
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        announce = self.wait_for("llmpulse gateway: serving")
        found = re.search(
            r"http://127\.0\.0\.1:(\d+) \((\d+) worker processes, pids ([\d, ]+);", announce
        )
        assert found, announce
        self.port = int(found[1])
        assert self.port != 0
        assert int(found[2]) == workers
        self.pids = [int(p) for p in found[3].split(", ")]
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if text in line:
                    return line
            assert self.proc.poll() is None or self.reader.is_alive(), self.log
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.log}"
            time.sleep(0.05)

    def ask(self) -> int:
        """One chat completion on a connection of its own (any worker may take it)."""
        return httpx.post(f"{self.url}/v1/chat/completions", json=BODY, timeout=20).status_code

    def health(self, client: httpx.Client | None = None) -> dict[str, Any]:
        get = client.get if client is not None else httpx.get
        return get(f"{self.url}/health", timeout=10).json()

    def state(self, name: str, client: httpx.Client | None = None) -> tuple[int, str]:
        """One ``/health``: the worker that answered, and its state of deployment ``name``."""
        health = self.health(client)
        states = {d["name"]: d["state"] for d in health["deployments"]}
        return health["worker"]["index"], states[name]

    def until_open(self, name: str, where: Callable[[int], bool], what: str) -> None:
        """Until a worker ``where`` accepts shows deployment ``name`` open."""
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, f"{what} never showed it open"
            index, state = self.state(name)
            if where(index) and state == "open":
                return
            time.sleep(0.05)

    def states(self, name: str, until: Callable[[dict[int, str]], bool]) -> dict[int, str]:
        """Each worker's state of deployment ``name`` as last seen, once ``until`` holds."""
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 20
        while not until(seen):
            assert time.monotonic() < deadline, seen
            index, state = self.state(name)
            seen[index] = state
        return seen

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self.reader.join(5)
        return code

    def workers(self) -> list[int]:
        """The parent's live children."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []


@contextlib.contextmanager
def workers(
    tmp_path: Path, raw: dict[str, Any], count: int = 2, *, group: bool = False
) -> Iterator[Workers]:
    gateway = Workers(tmp_path, raw, count, group=group)
    try:
        yield gateway
    finally:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait(10)


def traffic_agents(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT agent, count(*) FROM results WHERE source = 'traffic' GROUP BY agent"
        ).fetchall()
    return dict(rows)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie awaiting its reaper is gone too.
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_two_workers_serve_one_port_and_flush_everything_on_sigterm(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, ttft=0.05, tokens_per_s=2000)
    slow = sim_model(sim, ttft=0.01, tokens_per_s=20, output_tokens=30)  # 1.5 s
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model),
                       deployment(sim, "slow", "openai", slow)],
        "gateway": {"monitor": False, "shutdown_grace": "10s"},
    }  # fmt: skip
    with workers(tmp_path, raw) as gateway:
        warning = (
            "warning: --num_workers 2 without gateway.redis_url: each worker keeps its own "
            "breaker, cool-down, rate-limit and budget state, so a key's or deployment's "
            "rpm/tpm limit lets up to 2x through"
        )
        assert gateway.log.count(warning) == 1, gateway.log
        assert sorted(gateway.workers()) == sorted(gateway.pids)
        # Connections of their own, many at once: the kernel hands them to both workers.
        sent = 0
        with ThreadPoolExecutor(16) as pool:
            for _ in range(20):
                assert set(pool.map(lambda _: gateway.ask(), range(32))) == {200}
                sent += 32
                if len(traffic_agents(gateway.db)) == 2:
                    break
                time.sleep(0.3)  # stored within 250 ms
        name = f"{socket.gethostname()}-gateway-{gateway.port}"
        assert set(traffic_agents(gateway.db)) == {f"{name}-w0", f"{name}-w1"}
        # Each worker serves its own /metrics; together they count every request.
        line = gateway.wait_for("llmpulse gateway: metrics at ")
        urls = re.findall(r"http://127\.0\.0\.1:\d+/metrics", line)
        assert len(set(urls)) == 2 and ", one per worker (loopback clients)" in line, line
        # Not on the API's port: a scrape there would reach one worker or the other.
        assert httpx.get(f"{gateway.url}/metrics", timeout=10).status_code == 404

        def counted() -> float:
            total = 0.0
            for url in urls:
                for row in httpx.get(url, timeout=10).text.splitlines():
                    if row.startswith("llmpulse_gateway_requests_total{") and 'status="ok"' in row:
                        total += float(row.rsplit(" ", 1)[1])
            return total

        # A request is counted as its result is recorded, which may follow its answer.
        wait_until(lambda: counted() == sent, f"{sent} requests counted", 5)
        # A request in flight at SIGTERM finishes (the grace is 10 s), then all is flushed.
        streamed: dict[str, Any] = {}

        def stream() -> None:
            body = {**BODY, "model": "slow", "stream": True}
            with httpx.stream(
                "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30
            ) as resp:
                streamed["status"] = resp.status_code
                streamed["text"] = "".join(resp.iter_text())

        waiting = threading.Thread(target=stream)
        waiting.start()
        wait_until(lambda: upstream(sim, slow), "the slow upstream call")
        time.sleep(0.2)
        assert gateway.stop() == 0, gateway.log
        waiting.join(10)
        assert streamed["status"] == 200 and "data: [DONE]" in streamed["text"], streamed
        assert all(gone(pid) for pid in gateway.pids)
        assert "Traceback" not in gateway.log, gateway.log
        assert sum(traffic_agents(gateway.db).values()) == sent + 1


def test_a_dead_worker_is_restarted_and_a_killed_parent_takes_its_workers_down(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST)
    raw = {"model_list": [deployment(sim, "chat", "openai", model)], "gateway": {"monitor": False}}
    with workers(tmp_path, raw) as gateway:
        victim = gateway.pids[1]
        os.kill(victim, signal.SIGKILL)
        gateway.wait_for(f"gateway worker 1 (pid {victim}) was killed by SIGKILL after")
        line = gateway.wait_for("gateway worker 1 restarted (pid ")
        reborn = int(line.split("(pid ")[1].rstrip(")\n"))
        # Its /metrics on a free port again (the gateway's is ephemeral): said where.
        gateway.wait_for(f"gateway worker 1 (pid {reborn}) serving again, metrics at http://")
        wait_until(lambda: sorted(gateway.workers()) == sorted([gateway.pids[0], reborn]),
                   "the replacement")  # fmt: skip
        # The replacement serves: some fresh connection reaches it.
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        while reborn not in seen:
            assert time.monotonic() < deadline, seen
            seen.add(gateway.health()["worker"]["pid"])
        assert gateway.ask() == 200
        # The parent killed outright cannot stop them: they stop themselves.
        children = gateway.workers()
        gateway.proc.kill()
        gateway.proc.wait(10)
        wait_until(lambda: all(gone(pid) for pid in children), "the orphaned workers", 10)


def test_a_worker_whose_event_loop_stalls_is_killed_and_restarted(
    sim: SimServer, tmp_path: Path
) -> None:
    """SIGSTOP stands for a loop stuck in a blocking call: the process lives, the kernel
    still queues connections for it, nothing answers them."""
    model = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model)],
        "gateway": {"monitor": False, "worker_timeout": "3s"},
    }
    with workers(tmp_path, raw) as gateway:
        time.sleep(4)  # past the timeout: beating workers are left alone
        assert "has not run" not in gateway.log
        victim = gateway.pids[1]
        os.kill(victim, signal.SIGSTOP)
        try:
            gateway.wait_for(
                f"gateway worker 1 (pid {victim}): its event loop has not run for", timeout=10
            )
            gateway.wait_for(f"gateway worker 1 (pid {victim}) was killed by SIGKILL after")
            line = gateway.wait_for("gateway worker 1 restarted (pid ")
            reborn = int(line.split("(pid ")[1].rstrip(")\n"))
            gateway.wait_for(f"gateway worker 1 (pid {reborn}) serving again")
            wait_until(lambda: gone(victim), "the stalled worker's end")
            assert all(gateway.ask() == 200 for _ in range(6))
            assert gateway.log.count("has not run") == 1  # the other one and the new one beat
        finally:  # a stopped process would outlive its parent: it cannot see it gone
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def test_a_pause_of_the_whole_gateway_is_no_stall(sim: SimServer, tmp_path: Path) -> None:
    """Ctrl-Z then fg, or docker pause: the parent wakes to beats as old as the pause, before
    the workers' loops have had a turn; none of them is killed for it."""
    model = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model)],
        "gateway": {"monitor": False, "worker_timeout": "3s"},
    }
    with workers(tmp_path, raw, group=True) as gateway:
        os.killpg(gateway.proc.pid, signal.SIGSTOP)
        time.sleep(5)
        os.killpg(gateway.proc.pid, signal.SIGCONT)
        time.sleep(4)
        assert "has not run" not in gateway.log
        assert sorted(gateway.workers()) == sorted(gateway.pids)
        assert gateway.ask() == 200


@pytest.mark.skipif(
    not os.environ.get("CI") and _redis_down() is not None, reason="Redis unreachable"
)
def test_with_redis_a_breaker_opened_in_one_worker_is_seen_by_the_other(
    sim: SimServer, tmp_path: Path
) -> None:
    primary = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", primary, order=1),
                       deployment(sim, "chat", "anthropic", spare, order=2)],
        "router_settings": {"allowed_fails": 2, "cooldown_time": 60, "num_retries": 2},
        "gateway": {"redis_url": REDIS_URL, "monitor": False,
                    "redis_prefix": f"llmpulse-test-{uuid.uuid4().hex[:8]}"},
    }  # fmt: skip
    name = f"chat/openai/{primary}"
    with workers(tmp_path, raw) as gateway:
        assert "without gateway.redis_url" not in gateway.log
        # One kept-alive connection: one worker sees the primary fail and opens its breaker.
        with httpx.Client(timeout=20) as client:
            first = gateway.health(client)["worker"]["index"]
            for _ in range(2):
                resp = client.post(f"{gateway.url}/v1/chat/completions", json=BODY)
                assert resp.status_code == 200 and resp.json()["model"] == spare
            assert gateway.state(name, client)[1] == "open"
        tried = len(upstream(sim, primary))
        # The other worker, which never called the primary, has it open too (within ~100 ms).
        gateway.until_open(name, lambda index: index != first, "the other worker")
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: gateway.ask(), range(16))) == {200}
        assert len(upstream(sim, primary)) == tried
        assert gateway.stop() == 0, gateway.log


def test_without_redis_only_worker_0_probes_and_the_other_follows_its_verdicts(
    sim: SimServer, tmp_path: Path
) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", down, order=1),
                       deployment(sim, "chat", "openai", spare, order=2)],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 60},
        "gateway": {"probe_interval": "300ms"},
    }  # fmt: skip
    name = f"chat/openai/{down}"
    with workers(tmp_path, raw) as gateway:
        # No request sent: worker 1 knows the deployment down from worker 0's stored probes.
        gateway.until_open(name, lambda index: index == 1, "worker 1")
        assert gateway.stop() == 0, gateway.log
    with contextlib.closing(sqlite3.connect(gateway.db)) as conn:
        probers = conn.execute("SELECT DISTINCT agent FROM results WHERE source = 'probe'")
        assert [agent for (agent,) in probers] == [
            f"{socket.gethostname()}-gateway-{gateway.port}-w0"
        ]
    assert upstream(sim, down)  # probed, by worker 0 only


def test_a_worker_failing_before_the_gateway_served_stops_it_with_exit_1(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The CLI checks the database before forking; here the workers meet a file where the
    # database's directory should be.
    raw = {
        "model_list": [deployment(sim, "chat", "openai", sim_model(sim, **FAST))],
        "gateway": {"monitor": False},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    sock = listening_socket("127.0.0.1", 0)
    (tmp_path / "file").write_text("")
    supervisor = Supervisor(
        load_config(path), tmp_path / "file" / "t.db", ("127.0.0.1", 0), sock, 2
    )
    announced: list[str] = []
    started = time.monotonic()
    assert supervisor.run(announced.append) == 1
    assert time.monotonic() - started < 20
    assert announced == []
    assert "before the gateway served; stopping" in caplog.text
    assert "restarting" not in caplog.text
    assert sock.fileno() == -1  # closed: the port is free again


def test_a_worker_crashing_logs_its_traceback_instead_of_printing_it(
    sim: SimServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """multiprocessing prints an uncaught exception's traceback to stderr itself, past the log
    formatter's redactor; the worker logs it instead. The crash is injected (no input makes
    the gateway crash, and that is the point), with a key in its message."""
    secret = "sk-crash-0123456789abcdef0123"

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"upstream said {secret}")

    monkeypatch.setattr("llmpulse.gateway.workers.GatewayProcess", crash)
    raw = {"model_list": [deployment(sim, "chat", "openai", sim_model(sim, **FAST))]}
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    sock = listening_socket("127.0.0.1", 0)
    supervisor = Supervisor(load_config(path), tmp_path / "t.db", ("127.0.0.1", 0), sock, 2)
    # The workers inherit this handler: their stderr, as the CLI logs (pytest's own handlers
    # would keep the lines in the children's memory).
    logger = logging.getLogger("llmpulse")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    try:
        install_log_redaction(Redactor([secret]), logger)
        assert supervisor.run(lambda line: None) == 1
    finally:
        logger.removeHandler(handler)
    err = capfd.readouterr().err
    assert "uncaught exception" in err and f"RuntimeError: upstream said {REDACTED}" in err
    assert secret not in err


def test_with_port_0_each_worker_serves_its_metrics_on_a_free_port(
    sim: SimServer, tmp_path: Path
) -> None:
    # As one process on port 0: any free port, not the ports after the gateway's, which may
    # be anyone's (here they are taken).
    raw = {
        "model_list": [deployment(sim, "chat", "openai", sim_model(sim, **FAST))],
        "gateway": {"monitor": False},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw))
    db = tmp_path / "t.db"
    open_store(db, for_writing=True).close()  # as the CLI does before forking
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    with contextlib.ExitStack() as taken:
        for after in (port + 1, port + 2):
            other = taken.enter_context(socket.socket())
            with contextlib.suppress(OSError):  # already someone's: as good
                other.bind(("127.0.0.1", after))
                other.listen()
        supervisor = Supervisor(load_config(path), db, ("127.0.0.1", 0), sock, 2)
        announced: list[str] = []

        def announce(line: str) -> None:
            announced.append(line)
            if "serving" in line:  # the metrics line follows at once; then stop
                os.kill(os.getpid(), signal.SIGTERM)

        assert supervisor.run(announce) == 0
    metrics = [line for line in announced if "metrics at" in line]
    assert len(metrics) == 1, announced
    ports = {int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)/metrics", metrics[0])}
    assert len(ports) == 2 and not ports & {port, port + 1, port + 2}, metrics


def test_a_second_signal_stops_the_workers_without_waiting_for_in_flight_requests(
    sim: SimServer, tmp_path: Path
) -> None:
    slow = sim_model(sim, ttft=0.01, tokens_per_s=2, output_tokens=60)  # 30 s
    raw = {
        "model_list": [deployment(sim, "chat", "openai", slow)],
        "gateway": {"monitor": False, "shutdown_grace": "60s"},
    }
    with workers(tmp_path, raw) as gateway:
        cut: dict[str, Any] = {}

        def stream() -> None:
            body = {**BODY, "stream": True}
            try:
                with httpx.stream(
                    "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=60
                ) as resp:
                    cut["text"] = "".join(resp.iter_text())
            except httpx.HTTPError as exc:
                cut["error"] = exc

        waiting = threading.Thread(target=stream)
        waiting.start()
        wait_until(lambda: upstream(sim, slow), "the slow upstream call")
        started = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # the workers are waiting for the stream: it has 30 s to go
        gateway.proc.send_signal(signal.SIGTERM)
        assert gateway.stop() == 0, gateway.log
        assert time.monotonic() - started < 15, gateway.log  # not the 30 s stream, nor the grace
        assert "SIGTERM again, stopping the workers without waiting" in gateway.log
        waiting.join(10)
        assert "data: [DONE]" not in cut.get("text", ""), cut
        assert all(gone(pid) for pid in gateway.pids)


def test_a_worker_whose_metrics_port_is_the_gateways_stops_it_saying_so(
    sim: SimServer, tmp_path: Path
) -> None:
    # gateway.metrics_listen is worker 0's port; worker 1's, one up, is the gateway's own.
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            metrics = probe.getsockname()[1]
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", metrics + 1))
            break
    raw = {
        "model_list": [deployment(sim, "chat", "openai", sim_model(sim, **FAST))],
        "gateway": {"monitor": False, "metrics_listen": f"127.0.0.1:{metrics}"},
    }
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config),
         "--db", str(tmp_path / "t.db"), "--port", str(metrics + 1), "--num_workers", "2"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SIM_KEY": "sk-sim"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (
        f"gateway worker 1: config error: gateway.metrics_listen: port {metrics + 1} (its port "
        "+ 1, worker 1's) is the gateway's own"
    ) in done.stderr, done.stderr
    assert "before the gateway served; stopping" in done.stderr


def test_one_worker_is_the_single_process_gateway(sim: SimServer, tmp_path: Path) -> None:
    raw = {"model_list": [deployment(sim, "chat", "openai", sim_model(sim, **FAST))],
           "gateway": {"monitor": False}}  # fmt: skip
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(raw))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config),
         "--db", str(tmp_path / "t.db"), "--port", str(port), "--num_workers", "1"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "SIM_KEY": "sk-sim"},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"{url}/health", timeout=5).json()
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        assert "worker" not in health
        assert httpx.post(f"{url}/v1/chat/completions", json=BODY, timeout=20).status_code == 200
        # Served by this process itself, /metrics on the API's port as well: nothing forked.
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children == []
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"serving http://127.0.0.1:{port} (1 deployments" in err, err
    assert "without gateway.redis_url" not in err and "[" + str(proc.pid) + "]" not in err


def test_without_redis_the_other_workers_follow_worker_0s_probes_not_other_gateways(
    sim: SimServer, tmp_path: Path
) -> None:
    # A results database shared with another gateway (another host, region): its probes find
    # the deployment down there; here worker 0 finds it up, and worker 1 must agree with it.
    healthy = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", healthy)],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 60},
        "gateway": {"probe_interval": "1h"},
    }  # fmt: skip
    name = f"chat/openai/{healthy}"
    with workers(tmp_path, raw) as gateway:
        with contextlib.closing(open_store(gateway.db)) as store:
            for _ in range(3):
                store.write_results([CheckResult(
                    target=name, provider="openai", model=healthy, check="inference",
                    timestamp=datetime.now(UTC), ok=False, error_class=ErrorClass.SERVER_ERROR,
                    http_status=503, agent="elsewhere-gateway-4000-w0",
                )])  # fmt: skip
        time.sleep(2.5)  # worker 1 reads the database every second
        seen = gateway.states(name, until=lambda seen: len(seen) == 2)
        assert seen == {0: "closed", 1: "closed"}
        assert gateway.stop() == 0, gateway.log


@pytest.mark.parametrize("sigterm_first", [False, True], ids=["sigint-first", "sigterm-first"])
def test_ctrl_c_reaching_the_parent_and_its_workers_at_once_stops_them_gracefully(
    sim: SimServer, tmp_path: Path, sigterm_first: bool
) -> None:
    # A terminal's Ctrl-C signals the whole process group: the workers get SIGINT themselves,
    # and the parent's SIGTERM; that is one stop, not a second signal. A worker may note the
    # two in either order (the threads taking them race): the second case forces that order.
    slow = sim_model(sim, ttft=0.01, tokens_per_s=20, output_tokens=30)  # 1.5 s
    raw = {
        "model_list": [deployment(sim, "chat", "openai", slow)],
        "gateway": {"monitor": False, "shutdown_grace": "10s"},
    }
    with workers(tmp_path, raw, group=True) as gateway:
        streamed: dict[str, Any] = {}

        def stream() -> None:
            body = {**BODY, "stream": True}
            with httpx.stream(
                "POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30
            ) as resp:
                streamed["text"] = "".join(resp.iter_text())

        waiting = threading.Thread(target=stream)
        waiting.start()
        wait_until(lambda: upstream(sim, slow), "the slow upstream call")
        if sigterm_first:
            for pid in gateway.pids:
                os.kill(pid, signal.SIGTERM)
        os.killpg(gateway.proc.pid, signal.SIGINT)
        assert gateway.proc.wait(30) == 0, gateway.log
        waiting.join(10)
        assert "data: [DONE]" in streamed.get("text", ""), streamed
        assert all(gone(pid) for pid in gateway.pids)
        assert "Traceback" not in gateway.log, gateway.log
        assert sum(traffic_agents(gateway.db).values()) == 1


def test_num_workers_is_bounded(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmpulse", "gateway", "--config", str(tmp_path / "none.yaml"),
         "--num_workers", "1000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "'--num_workers': 1000 is not in the range 1<=x<=128" in done.stderr, done.stderr


def test_beside_a_daemon_every_worker_follows_the_daemons_probes(
    sim: SimServer, tmp_path: Path
) -> None:
    # `llmpulse run` probing into the same database (it holds the probe lock): worker 0
    # follows its probes, and so does worker 1 (not only worker 0's, which it then has none of).
    healthy = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", healthy)],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 60},
        "gateway": {"probe_interval": "1h"},
    }  # fmt: skip
    name = f"chat/openai/{healthy}"
    daemon = ProbeLock(tmp_path / "traffic.db")
    assert daemon.acquire()
    try:
        with workers(tmp_path, raw) as gateway:
            with contextlib.closing(open_store(gateway.db)) as store:
                for _ in range(3):
                    store.write_results([CheckResult(
                        target=name, provider="openai", model=healthy, check="inference",
                        timestamp=datetime.now(UTC), ok=False, http_status=503,
                        error_class=ErrorClass.SERVER_ERROR, agent="the-daemon",
                    )])  # fmt: skip
            gateway.states(name, until=lambda seen: seen == {0: "open", 1: "open"})
            assert gateway.stop() == 0, gateway.log
    finally:
        daemon.release()
    assert not upstream(sim, healthy)  # nothing probed: the daemon probes


def test_with_redis_unreachable_the_other_workers_follow_worker_0s_probes_from_the_database(
    sim: SimServer, tmp_path: Path
) -> None:
    # Redis would bring worker 0's verdicts; while it does not answer, the database does.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = probe.getsockname()[1]  # closed again: nothing listens there
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", down, order=1),
                       deployment(sim, "chat", "openai", spare, order=2)],
        "router_settings": {"allowed_fails": 1, "cooldown_time": 60},
        "gateway": {"probe_interval": "300ms", "redis_url": f"redis://127.0.0.1:{nobody}/0"},
    }  # fmt: skip
    name = f"chat/openai/{down}"
    with workers(tmp_path, raw) as gateway:
        gateway.until_open(name, lambda index: index == 1, "worker 1")
        assert gateway.stop() == 0, gateway.log
