"""The health loop: the gateway probes its own deployments, so their breakers learn of an outage
before a user request fails on it; or, while ``llmpulse run`` probes into the same database (it
holds the probe lock), it follows that daemon's probe results instead of repeating them. A
gateway worker other than the first (``--num_workers``) always follows the first: its probes,
which are in the database too, or, while it follows a daemon, that daemon's; never another
gateway's sharing the database (another host's, another region's verdicts)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmpulse.gateway.proxy import Gateway
from llmpulse.probe.lock import held_elsewhere
from llmpulse.probe.runner import Prober
from llmpulse.probe.scheduler import Scheduler
from llmpulse.result import CheckResult, Source
from llmpulse.store import ResultFilter, Store, local_path, open_store
from llmpulse.target import Target

FOLLOW_POLL_S = 1.0  # how often the daemon's probe results are read, and its lock checked
_PROBES = ResultFilter(source=Source.PROBE.value)  # followed: not the traffic beside them


class HealthLoop:
    """Feeds ``gateway``'s breakers probe results of ``targets`` (deployments' targets, by
    deployment name), each also to ``record``; ``results_db`` is where a daemon may probe.
    With ``follow`` (the agent name of the worker that probes), nothing is probed here: that
    agent's probe results in ``results_db`` are followed, or all of them while a daemon
    probes there (as that worker then follows them); but not while ``heard()`` is true (Redis
    brings that worker's verdicts then: learnt twice, a failure would count double)."""

    def __init__(
        self,
        gateway: Gateway,
        targets: Sequence[Target],
        deployment_ids: dict[str, str],
        record: Callable[[CheckResult], None] | None = None,
        results_db: str | Path | None = None,
        *,
        follow: str | None = None,
        heard: Callable[[], bool] | None = None,
    ) -> None:
        self.follow = follow
        self.heard = heard
        self.gateway = gateway
        self.targets = targets
        self.deployment_ids = deployment_ids
        self.record = record
        self.results_db = results_db

    def learn(self, target: Target, result: CheckResult) -> None:
        self.gateway.selector.record_check(self.deployment_ids[target.name], result)

    def probed(self, target: Target, result: CheckResult) -> None:
        self.learn(target, result)
        if self.record is not None:
            self.record(result)

    def cooldown(self, target: Target) -> float:
        # Traffic's 429s, other replicas' cool-downs, an open breaker's half-open pace.
        return self.gateway.selector.breaker(self.deployment_ids[target.name]).probe_wait()

    async def run(self, stop: asyncio.Event) -> None:
        """Probe, never inside a ``cooldown``; or, while a daemon holds the probe lock, pass its
        new probe results to ``learn``; until ``stop``."""
        targets, results_db = self.targets, self.results_db
        by_name = {t.name: t for t in targets}
        # On taking over, the daemon's recent verdicts count: two intervals back.
        since = datetime.now(UTC) - timedelta(seconds=2 * max(t.interval for t in targets))
        store: Store | None = None

        async def daemon_probing() -> bool:
            if results_db is None:
                return False
            return await asyncio.to_thread(held_elsewhere, local_path(results_db))

        async def wait() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), FOLLOW_POLL_S)

        try:
            while not stop.is_set():
                daemon = await daemon_probing()
                if daemon or self.follow is not None:
                    assert results_db is not None
                    if store is None:
                        store = open_store(results_db)
                    start, end = since.timestamp(), time.time() + 3600  # any clock skew ahead
                    rows = await asyncio.to_thread(store.results_between, start, end, where=_PROBES)
                    agent = None if daemon else self.follow
                    heard = self.heard is not None and self.heard()
                    for result in rows:
                        if agent is not None and result.agent != agent:
                            continue  # another gateway's, sharing the database
                        target = by_name.get(result.target)
                        if (
                            target is not None
                            and result.source is Source.PROBE
                            and result.timestamp > since
                            and not heard
                        ):
                            self.learn(target, result)
                        since = max(since, result.timestamp)
                    await wait()
                    continue
                own = asyncio.Event()
                prober = Prober(self.gateway.session, self.gateway.redact)
                scheduler = Scheduler(targets, prober.check, self.probed, cooldown=self.cooldown)
                # A probe still running at shutdown is abandoned after a second, not waited out.
                task = asyncio.create_task(scheduler.run(own, drain_timeout=1.0))
                try:
                    while not stop.is_set() and not await daemon_probing():
                        await wait()
                finally:
                    own.set()
                    await task
                since = datetime.now(UTC)  # the daemon's results from here on are new
        finally:
            if store is not None:
                store.close()
