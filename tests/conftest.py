"""Shared fixtures: a real simulator on a loopback socket, targets pointed at it, and fresh
PostgreSQL schemas."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import psycopg
import pytest
from aiohttp import web

import amserver
import pgserver
from llmpulse.config import parse_config
from llmpulse.config.storage import redact_url
from llmpulse.sim.server import SimServer
from llmpulse.target import Target

_names = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def _own_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every process a test starts without ``--db`` writes its default database and spools
    under the session's own directory, never the user's ``~/.local/share/llmpulse``: a
    database left there by another checkout (or a newer schema) cannot decide a test."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    server = SimServer()
    server.start()
    yield server
    server.stop()


def base_url(sim: SimServer, provider: str) -> str:
    if provider == "anthropic":
        return sim.anthropic_base
    if provider == "gemini":
        return sim.gemini_base
    if provider == "azure":
        return sim.azure_base
    return sim.openai_base


def make_target(sim: SimServer, provider: str, model: str, **extra: Any) -> Target:
    raw = {
        "provider": provider,
        "model": model,
        "base_url": base_url(sim, provider),
        "api_key": "os.environ/SIM_KEY",
        **extra,
    }
    if provider == "azure":
        raw.setdefault("api_version", "2024-10-21")
    return parse_config({"targets": [raw]}, env={"SIM_KEY": "sk-sim"}).targets[0]


def sim_model(sim: SimServer, **behavior: Any) -> str:
    """Create a fresh simulated model with the given behaviour; returns its name."""
    name = f"test-model-{next(_names)}"
    response = httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10)
    response.raise_for_status()
    return name


def ground_truth(sim: SimServer, request_id: str) -> dict[str, Any]:
    records = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()
    records = records["requests"] if isinstance(records, dict) else records
    return next(r for r in records if r["request_id"] == request_id)


POSTGRES_URL = os.environ.get("LLMPULSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards. Skips the test when the
    server is unreachable, unless CI is set: CI runs a server, its PostgreSQL cases must run."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL unreachable at {redact_url(POSTGRES_URL)}: {exc}".strip())
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in POSTGRES_URL else "?"
        try:
            yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """Where a component keeps its tables: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield tmp_path / "component.db"
        return
    with postgres_schema() as url:
        yield url


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, and the default file's directory (where the spools of a
    PostgreSQL store sit) ``tmp_path/data/llmpulse``; returns the working directory."""
    monkeypatch.delenv("LLMPULSE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(params=["path", "sqlite-url", "postgresql-url"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """A fresh results store as a caller may name it: a file path, a ``sqlite:///`` URL, or a
    ``postgresql://`` URL whose ``options=-csearch_path=...`` picks a fresh schema."""
    if request.param == "postgresql-url":
        with postgres_schema() as url:
            yield url
        return
    db = tmp_path / "results.db"
    yield db if request.param == "path" else f"sqlite:///{db}"


class Receiver:
    """A webhook receiver that records what it got; it can be taken down for a while."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.down = False
        self.refused = 0

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            self.refused += 1
            return web.Response(status=503, text="receiver down")
        self.received.append(json.loads(await request.read()))
        return web.Response(status=200, text="ok")

    def events(self, rule: str | None = None) -> list[tuple[str, str, str]]:
        return [
            (r["status"], r["rule"], r["target"])
            for r in self.received
            if rule is None or r["rule"] == rule
        ]


@contextlib.asynccontextmanager
async def serving(app: web.Application):
    """Serve ``app`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver():
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    async with serving(app) as base:
        rec.url = f"{base}/hook"
        yield rec


def patch(sim, model, **behavior):
    httpx.patch(f"{sim.url}/_sim/models/{model}", json=behavior, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[pgserver.PrivateServer]:
    """A PostgreSQL server of the module's own, which its tests may stop and restart."""
    why = pgserver.available()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    with pgserver.private_server() as server:
        yield server


def llmpulse_env(workdir: Path) -> dict[str, str]:
    """The environment ``spawn_llmpulse`` gives by default: this one, the simulator's keys set,
    spools and lock files under ``workdir/data`` (not the home directory)."""
    return {**os.environ, "K": "sk-test", "SIM_KEY": "sk-sim",
            "XDG_DATA_HOME": str(workdir / "data")}  # fmt: skip


def spawn_llmpulse(
    args: list[str], workdir: Path, log: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``llmpulse ARGS`` as its own process, its stderr in ``workdir/log``, in ``env`` (default:
    ``llmpulse_env(workdir)``)."""
    with (workdir / log).open("w") as stderr:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "llmpulse", *args],
            stderr=stderr,
            env=llmpulse_env(workdir) if env is None else env,
        )


class LiveGateway:
    """``llmpulse gateway --config CONFIG ARGS`` as its own process (``spawn_llmpulse``), on
    ``port`` (default: a free one) of loopback, recording into ``workdir/traffic.db``, its
    stderr in ``workdir/gateway.log``. ``started`` (or entering it) waits until it serves;
    ``stop`` (or leaving it) stops it with SIGINT, as Ctrl-C would."""

    def __init__(
        self,
        workdir: Path,
        config: Path,
        *args: str,
        port: int = 0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.port = port or amserver.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "traffic.db"
        self.log = workdir / "gateway.log"
        argv = ["gateway", "--config", str(config), "--port", str(self.port), "--db", str(self.db)]
        self.proc = spawn_llmpulse([*argv, *args], workdir, self.log.name, env)

    def started(self) -> Self:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health/liveliness", timeout=5).status_code == 200:
                    return self
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGINT, then 20 s to stop; past them it is killed and the wait's timeout raised."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise

    def __enter__(self) -> Self:
        return self.started()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[amserver.Alertmanager]:
    """A real Alertmanager of the test's own (``amserver``)."""
    async with amserver.alertmanager_server(tmp_path) as server:
        yield server
