"""Who probes a results database's deployments: the monitor daemon, when one runs on it.

``llmpulse run`` holds an exclusive ``flock`` on a file beside its SQLite database while it runs
(``ProbeLock``); the kernel frees it however the daemon exits. ``llmpulse gateway`` on the same
database sees it held (``held_elsewhere``) and follows the daemon's probe results of its
deployments instead of probing them a second time, and probes them itself again once the lock
is free.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path


def lock_path(db: Path) -> Path:
    return db.with_name(f"{db.name}.probes.lock")


class ProbeLock:
    """The daemon's claim to probe for ``db``."""

    def __init__(self, db: Path) -> None:
        self.path = lock_path(db)
        self._fd: int | None = None

    def acquire(self, wait_s: float = 2.0) -> bool:
        """Take the lock; False if another daemon keeps it for ``wait_s`` (a gateway looking
        holds it for a moment only)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
                continue
            self._fd = fd
            return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


def held_elsewhere(db: Path) -> bool:
    """True while a daemon holds ``db``'s probe lock; never waits."""
    try:
        fd = os.open(lock_path(db), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # A shared lock is refused only while the daemon's exclusive one is held.
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
