"""When each check runs.

Every target's check kinds are spread across its interval (at 30 s: inference at 0 s, the
models list at 7.5 s, stream at 15 s), and targets start at random offsets so they never fire
in lockstep. Runs are
fixed-rate from a heap of due times; a check still running when its next turn comes is skipped,
never stacked, so a hanging target cannot pile up work or delay the others.

After an outage-class failure the target is re-checked every ``retry_interval`` until it either
recovers or has failed ``confirmations`` times in a row (the outage is confirmed); then it is
back on its normal interval. With the defaults (30 s, 1.5 s, 3) an inference outage is seen
within 15 s of its onset (7.5 s on average) and confirmed 3 s later. Its provider's other
targets are checked at once on a first failure, so a provider-wide outage is confirmed on all
of them together and pages once, as a provider.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from llmpulse.config import Target
from llmpulse.result import CheckKind, CheckResult

log = logging.getLogger(__name__)


@dataclasses.dataclass(order=True, slots=True)
class _Due:
    at: float
    seq: int
    target: int = dataclasses.field(compare=False)
    kind: CheckKind = dataclasses.field(compare=False)
    regular: bool = dataclasses.field(compare=False)  # False: a retry or a sibling check


class Scheduler:
    def __init__(
        self,
        targets: Sequence[Target],
        check: Callable[[Target, CheckKind], Awaitable[CheckResult]],
        on_result: Callable[[Target, CheckResult], None],
        *,
        concurrency: int = 256,
        retry_interval: float = 1.5,
        confirmations: int = 3,
        rng: random.Random | None = None,
    ) -> None:
        self.targets = list(targets)
        self._check = check
        self._on_result = on_result
        self._gate = asyncio.Semaphore(concurrency)
        self.retry_interval = retry_interval
        self.confirmations = confirmations
        self._rng = rng or random.Random()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._running: set[tuple[int, CheckKind]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Consecutive outage-class failures per (target, check kind), as the alert rule counts.
        self._failures: dict[tuple[int, CheckKind], int] = {}
        self._siblings: dict[str, list[int]] = {}
        for i, t in enumerate(self.targets):
            self._siblings.setdefault(t.provider, []).append(i)
        self._wakeup = asyncio.Event()
        # Start delay of recent checks (seconds past their due time), for lag figures.
        self.lag: deque[float] = deque(maxlen=100_000)

    def _push(self, at: float, target: int, kind: CheckKind, regular: bool) -> None:
        heapq.heappush(self._heap, _Due(at, next(self._seq), target, kind, regular))
        self._wakeup.set()

    async def run(self, stop: asyncio.Event, drain_timeout: float = 30.0) -> None:
        """Check until ``stop`` is set; then let in-flight checks finish (up to drain_timeout)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, target in enumerate(self.targets):
            offset = self._rng.uniform(0, target.interval)
            for kind, phase in _phases(target.checks).items():
                at = start + (offset + phase * target.interval) % target.interval
                self._push(at, i, kind, True)
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                now = loop.time()
                while self._heap and self._heap[0].at <= now:
                    self._launch(heapq.heappop(self._heap), now)
                self._wakeup.clear()
                delay = self._heap[0].at - now if self._heap else None
                woke = asyncio.ensure_future(self._wakeup.wait())
                await asyncio.wait(
                    {stopping, woke}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                woke.cancel()
        finally:
            stopping.cancel()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=drain_timeout)
                for task in self._tasks:
                    task.cancel()

    def _launch(self, due: _Due, now: float) -> None:
        target = self.targets[due.target]
        if due.regular:
            nxt = due.at + target.interval
            if nxt <= now:  # fell behind (e.g. the machine slept): skip missed turns
                nxt += (now - nxt) // target.interval * target.interval + target.interval
            self._push(nxt, due.target, due.kind, True)
        key = (due.target, due.kind)
        if key in self._running:
            return
        self._running.add(key)
        task = asyncio.ensure_future(self._run_one(due, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_one(self, due: _Due, target: Target) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._gate:
                self.lag.append(max(0.0, loop.time() - due.at))
                result = await self._check(target, due.kind)
            self._after(due, result, loop.time())
            self._on_result(target, result)
        except Exception:  # a bug in a callback must not stop the schedule
            log.exception("check of %s %s failed unexpectedly", target.name, due.kind)
        finally:
            self._running.discard((due.target, due.kind))

    def _after(self, due: _Due, result: CheckResult, now: float) -> None:
        key = (due.target, due.kind)
        outage = result.error_class is not None and result.error_class.is_outage
        if not outage:
            self._failures.pop(key, None)
            return
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if failures < self.confirmations:
            self._push(now + self.retry_interval, due.target, due.kind, False)
        if failures == 1:
            for j in self._siblings[self.targets[due.target].provider]:
                sibling = self.targets[j]
                kind = due.kind if due.kind in sibling.checks else sibling.checks[0]
                if j != due.target and (j, kind) not in self._failures:
                    self._push(now, j, kind, False)


def _phases(kinds: Sequence[CheckKind]) -> dict[CheckKind, float]:
    """Where in the interval each kind runs, as a fraction of it.

    The kinds that call the model (inference, stream) are spread evenly, since they are what
    notices an outage: a models list often keeps answering while inference fails. The models
    check sits halfway between two of them.
    """
    calls = [k for k in kinds if k is not CheckKind.MODELS]
    if not calls:
        return {CheckKind.MODELS: 0.0}
    phases = {k: i / len(calls) for i, k in enumerate(calls)}
    if CheckKind.MODELS in kinds:
        phases[CheckKind.MODELS] = 0.5 / len(calls)
    return phases
