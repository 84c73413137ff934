"""Breaker transitions of a gateway process, written to the results store (``breaker_events``).

The selector tells ``BreakerLog.add`` of every change of a breaker's state, on the event loop:
``add`` only appends to memory. A thread of its own writes what was added to the store about
every ``every`` seconds, so the event loop never waits for the database. While the database
refuses (down, restarting), the events stay in memory and are written when it answers; a batch
whose commit went through but whose acknowledgement was lost is harmless (the table's key keeps
one copy). What is still unwritten when the process ends is logged as lost: unlike traffic,
these are not spooled to disk (a few rows a minute; the traffic results tell the same story).

Bounded: at most ``per_minute`` events per deployment are kept per rolling minute; beyond
that a flapping breaker's transitions are coalesced: the latest one is kept back, its reason
counting the ones folded into it, and written once the deployment's minute allows (so the last
state written is always the true one). Memory holds at most ``max_pending`` events.

Transitions a replica adopted from another through Redis (``Transition.shared``) are not
recorded: the replica that decided records them, so N replicas do not store N copies of one
open. A close each replica's own monitor probe decides is its own, and recorded by each.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from llmpulse.config.storage import redact_url
from llmpulse.gateway.breaker import Clock, Transition
from llmpulse.gateway.selector import Selector
from llmpulse.store import database_errors, open_store
from llmpulse.store.base import BreakerEvent, Store

log = logging.getLogger(__name__)

PER_MINUTE = 12
MAX_PENDING = 10_000
WRITE_EVERY_S = 0.5
RETRY_S = 2.0


class BreakerLog:
    """Records the breaker transitions of ``selector`` (``attach``) under ``agent``, naming
    deployments by ``names`` (deployment id -> name; an unknown id is used as is)."""

    def __init__(
        self,
        location: str | Path,
        agent: str,
        names: Mapping[str, str],
        *,
        per_minute: int = PER_MINUTE,
        max_pending: int = MAX_PENDING,
        every: float = WRITE_EVERY_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.location = location
        self.agent = agent
        self.names = dict(names)
        self.per_minute = per_minute
        self.every = every
        self._wall = wall
        self._mono: Clock = time.monotonic
        self._lock = threading.Lock()  # the queues below, between the loop and the writer
        self._pending: collections.deque[BreakerEvent] = collections.deque(maxlen=max_pending)
        self._recent: dict[str, collections.deque[float]] = {}  # accepted times per deployment
        self._held: dict[str, tuple[BreakerEvent, int]] = {}  # coalesced: latest, how many
        self._dropping = False  # said once per time the queue is full
        self._stop = threading.Event()
        self._wake = threading.Event()  # a flush, or the stop
        self._written = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="llmpulse-breaker-log", daemon=True)
        self._store: Store | None = None

    def attach(self, selector: Selector) -> None:
        """Record ``selector``'s transitions (after whoever was told of them before)."""
        self._mono = selector.clock
        before = selector.on_transition

        def told(deployment_id: str, transition: Transition) -> None:
            if before is not None:
                before(deployment_id, transition)
            self.add(deployment_id, transition)

        selector.on_transition = told if before is not None else self.add

    def start(self) -> None:
        self._thread.start()

    # --- the event loop's side ---------------------------------------------------------------

    def add(self, deployment_id: str, transition: Transition) -> None:
        if transition.shared:
            return
        # The breaker's clock is monotonic: its time, as wall-clock time.
        ts = self._wall() - (self._mono() - transition.at)
        event = BreakerEvent(
            ts=ts,
            agent=self.agent,
            deployment=self.names.get(deployment_id, deployment_id),
            state=str(transition.state),
            reason=transition.reason,
        )
        with self._lock:
            if event.deployment in self._held or not self._admit(event.deployment, ts):
                _, folded = self._held.get(event.deployment, (event, 0))
                self._held[event.deployment] = (event, folded + 1)
                return
            if len(self._pending) == self._pending.maxlen and not self._dropping:
                # The database has been away long: the oldest go (the deque drops them).
                log.error("breaker events: %d unwritten; dropping the oldest", len(self._pending))
                self._dropping = True
            self._pending.append(event)

    def _admit(self, deployment: str, ts: float) -> bool:
        """Whether ``deployment`` may have one more event at ``ts`` (the lock held)."""
        recent = self._recent.setdefault(deployment, collections.deque())
        while recent and recent[0] <= ts - 60.0:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return False
        recent.append(ts)
        return True

    # --- the writer thread -------------------------------------------------------------------

    def _release_held(self, *, all_of_them: bool = False) -> None:
        """Coalesced events whose deployment's minute has room again go out; on the way out,
        all of them: the last state must be written (the lock held)."""
        for deployment, (event, folded) in list(self._held.items()):
            if all_of_them or self._admit(deployment, max(event.ts, self._wall())):
                del self._held[deployment]
                reason = event.reason
                if folded > 1:
                    reason = f"{reason} (after {folded - 1} more transitions coalesced)"
                self._pending.append(
                    BreakerEvent(event.ts, event.agent, event.deployment, event.state, reason)
                )

    def _run(self) -> None:
        warned = False
        while True:
            stopping = self._stop.is_set()
            with self._lock:
                self._release_held(all_of_them=stopping)
                batch = list(self._pending)
            failed = False
            if batch:
                try:
                    if self._store is None:
                        self._store = open_store(self.location)
                    self._store.write_breaker_events(batch)
                except database_errors(OSError) as exc:
                    failed = True
                    if not warned:
                        where = redact_url(str(self.location))
                        log.warning("breaker events wait to be written to %s: %s", where, exc)
                        warned = True
                except Exception:  # a bug must not stop the log: the events wait, said once
                    failed = True
                    if not warned:
                        log.exception("writing breaker events failed")
                        warned = True
                else:
                    warned = False
                    written = set(batch)
                    with self._lock:
                        # By value, not count: a full queue may have dropped some meanwhile.
                        while self._pending and self._pending[0] in written:
                            self._pending.popleft()
                        self._dropping = False
            with self._written:
                self._written.notify_all()
            if stopping:
                return
            # A refusing database is asked less often; a flush asks at once.
            self._wake.wait(RETRY_S if failed else self.every)
            self._wake.clear()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until what was added is written, coalesced events held back aside (or
        ``timeout``); False if some is not."""
        deadline = time.monotonic() + timeout
        with self._written:
            while self._waiting():
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._wake.set()
                self._written.wait(min(left, self.every))
        return True

    def _waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def unwritten(self) -> int:
        with self._lock:
            return len(self._pending) + len(self._held)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is left, coalesced events too (within ``timeout``), then stop; what the
        database did not take is logged as lost."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        lost = self.unwritten()
        if lost:
            log.warning("%d breaker events were not written: the database refused them", lost)
        if self._store is not None and not self._thread.is_alive():
            self._store.close()
