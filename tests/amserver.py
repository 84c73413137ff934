"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``; ``./dev test`` installs
it) of a test's own on loopback: routes to a null receiver, no clustering, served under ``/am``
(as behind a proxy) and behind basic auth (``AUTH``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
# Basic auth in front of the API (Alertmanager's --web.config.file), so a missing
# Authorization header is refused: the bcrypt hash of PASSWORD at the lowest cost.
USER, PASSWORD = "llmpulse", "am-test-password"
PASSWORD_HASH = "$2b$04$whhQtz98pFh6BYVu.w2.FuJ2OvdWdx8ai1Zqu5ZI7b/Y7BIck/mGa"
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Alertmanager:
    url: str  # the base URL, below the path prefix it is served under
    session: aiohttp.ClientSession  # the test's own, logged in

    async def alerts(self, target: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` for one target (each test uses targets of its own)."""
        params = {"filter": f'target="{target}"'}
        async with self.session.get(f"{self.url}/api/v2/alerts", params=params) as response:
            assert response.status == 200, await response.text()
            alerts: list[dict[str, Any]] = await response.json()
            return alerts

    async def silence(self, target: str) -> str:
        now = datetime.now(UTC)
        silence = {
            "matchers": [{"name": "target", "value": target, "isRegex": False}],
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
            "createdBy": "test",
            "comment": "maintenance",
        }
        async with self.session.post(f"{self.url}/api/v2/silences", json=silence) as response:
            assert response.status == 200, await response.text()
            silence_id: str = (await response.json())["silenceID"]
            return silence_id


@contextlib.asynccontextmanager
async def alertmanager_server(tmp_path: Path) -> AsyncIterator[Alertmanager]:
    """A real Alertmanager of its own: routes to a null receiver, no clustering, served under
    ``/am`` (as behind a proxy) and behind basic auth."""
    if BINARY is None:
        pytest.skip("no Alertmanager binary (apt-get install prometheus-alertmanager)")
    config, web = tmp_path / "alertmanager.yml", tmp_path / "web.yml"
    config.write_text('route: {receiver: "null"}\nreceivers: [{name: "null"}]\n')
    web.write_text(f"basic_auth_users:\n  {USER}: {PASSWORD_HASH}\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}/am"
    log = (tmp_path / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--web.config.file={web}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={url}/",  # serves the UI and API under /am
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        async with aiohttp.ClientSession(headers={"Authorization": AUTH}) as session:
            await _ready(f"{url}/-/ready", session, process, tmp_path / "alertmanager.log")
            yield Alertmanager(url, session)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def _ready(
    url: str, session: aiohttp.ClientSession, process: subprocess.Popen[bytes], log: Path
) -> None:
    for _ in range(150):
        if process.poll() is not None:
            pytest.fail(f"alertmanager exited:\n{log.read_text()}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    pytest.fail(f"alertmanager not ready after 15s:\n{log.read_text()}")
