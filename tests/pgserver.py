"""A private PostgreSQL server for tests that stop and restart it.

The machine's shared server (127.0.0.1:5432) must not be restarted under other tests, so the
restart tests get their own cluster: ``initdb`` into a temporary directory, on a free port, torn
down afterwards. As root, the server runs as the ``postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def available() -> str | None:
    """None when a private server can be started here, else why not."""
    if _bin("initdb") is None or _bin("pg_ctl") is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) not installed"
    return None


class PrivateServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_bin("initdb") or "initdb", "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--no-sync")  # fmt: skip
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-o", options, "-w",
                  "-l", str(self.root / "log"), "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(_bin("pg_ctl") or "pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    root = Path(tempfile.mkdtemp(prefix="llmpulse-pg-"))
    os.chmod(root, 0o755)
    server = PrivateServer(root)
    try:
        server.init()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
