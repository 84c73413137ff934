"""When each check runs.

Every target's built-in checks are spread across its interval (at 30 s: inference at 0 s, the
models list at 7.5 s, stream at 15 s), and targets start at random offsets so they never fire
in lockstep. A custom probe (``Target.probes``) runs at its own interval, or the target's: the
target's probes of one interval are spread across it together, the built-in ones first. Runs are
fixed-rate from a heap of due times; a check still running when its next turn comes is skipped,
never stacked, so a hanging target cannot pile up work or delay the others.

After an outage-class failure the target is re-checked every ``retry_interval`` until it either
recovers or has failed ``confirmations`` times in a row (the outage is confirmed); then it is
back on its normal interval. With the defaults (30 s, 1.5 s, 3) an inference outage is seen
within 15 s of its onset (7.5 s on average) and confirmed 3 s later. Its provider's other
targets are checked at once on a first failure, so a provider-wide outage is confirmed on all
of them together and pages once, as a provider.

Probes never hammer. A target is left alone while it cools down: after an answer carrying a
Retry-After (a 429, a 503, any error; capped at ``MAX_COOLDOWN_S``) or a rate limit or exhausted
quota without one (``ratelimit``'s defaults), whoever got that answer (``Cooldowns``, fed with
this scheduler's own results and, through ``note``, with other writers' ones), and for as long as
the ``cooldown`` callable says (the gateway's breakers: traffic 429s, other replicas' cool-downs,
an open breaker until it would let a half-open trial through). A check that calls the model
(every kind but a models list: inference, stream, a custom probe) coming due inside a cool-down
is deferred to its end, once per check: not dropped, not stacked, and a regular turn right after
it is skipped; at the end one model call goes first and the target's others wait for its
answer. That holds for retries too,
so a 503 with a Retry-After is re-checked when it asks, and only a 503 without one at
``retry_interval``. A models list, which spends no model quota, runs at most once per
cool-down. Sibling checks are extras: a cooling target gets none, and a target gets one per
``retry_interval`` however many of its siblings fail at once (with the failed check's kind
where it has that built-in check, else its first check).

Real traffic is evidence. When successful traffic (the gateway's, ``instrument()``'s) of a
target's model, from the probes' region (``region``; traffic has none: so only a daemon without
one), was answered within its interval, a turn of its built-in inference or stream check (a
regular one, or one deferred by a cool-down) is skipped, since the traffic showed what it would
(``note``, ``traffic_seen``); the models list and the custom probes still run, as they assert
what traffic does not. Retries (a cool-down's deferred ones too) and sibling checks of a
suspected outage always run, and so does every turn of a check until it stops failing. Each skip
is kept (``checked_by_traffic``) for the dashboard; it writes no result, so availability counts
only what was measured.

Intervals may be stretched while running (``stretch``: the probe budget, ``probe.budget``),
never below the configured ones; a turn set further away than a new, shorter interval is brought
forward at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

from llmpulse.errors import ErrorClass
from llmpulse.ratelimit import QUOTA_COOLDOWN_S, RATE_LIMITED_COOLDOWN_S
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.target import Probe, Target

log = logging.getLogger(__name__)

# The longest a target goes without a model call because it was asked to wait: a bogus or huge
# Retry-After (or a day's quota) costs at most one probe per ten minutes, never the monitoring.
MAX_COOLDOWN_S = 600.0
# Seconds until a target may be probed with a model call (0: now), as someone else knows it.
Cooldown = Callable[[Target], float]
# What a check is: a built-in check by its kind, or a custom probe.
Check = CheckKind | Probe
# The built-in checks that a target's successful traffic stands in for.
_TRAFFIC_CHECKS = (CheckKind.INFERENCE, CheckKind.STREAM)


def calls_model(check: Check) -> bool:
    """Whether the check spends model quota: every kind but a models list."""
    return _kind(check) is not CheckKind.MODELS


def check_name(check: Check) -> str:
    """The name its results carry (``CheckResult.check``)."""
    return check if isinstance(check, CheckKind) else check.name


def _kind(check: Check) -> CheckKind:
    return check if isinstance(check, CheckKind) else check.kind


def cooldown_of(result: CheckResult) -> float | None:
    """How long a result asks its target to be left alone, from when it was answered: its
    Retry-After whatever the error, else a rate limit's or an exhausted quota's default."""
    if result.ok:
        return None
    if result.retry_after_s is not None:
        return min(max(0.0, result.retry_after_s), MAX_COOLDOWN_S)
    if result.error_class is ErrorClass.RATE_LIMITED:
        return RATE_LIMITED_COOLDOWN_S
    if result.error_class is ErrorClass.QUOTA:
        return QUOTA_COOLDOWN_S
    return None


class Cooldowns:
    """Until when each target is to be left alone, by target name.

    Deadlines are wall-clock times counted from when a result was answered (its timestamp plus
    its latency), so results read back from the store, written by other processes or spooled
    for a while, pause the probes exactly as long as they asked.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}

    def note(self, result: CheckResult) -> None:
        seconds = cooldown_of(result)
        if seconds is None:
            return
        answered = result.timestamp.timestamp() + (result.latency_ms or 0.0) / 1000.0
        until = answered + seconds
        if until > self._clock() and until > self._until.get(result.target, 0.0):
            self._until[result.target] = until

    def remaining(self, name: str) -> float:
        until = self._until.get(name)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[name]
            return 0.0
        return min(left, MAX_COOLDOWN_S)  # a writer's clock running ahead gains nothing


# regular: the target's own turn; retry: re-check until confirmed; sibling: a provider's other
# target failed; deferred: a check that came due inside a cool-down, at its end.
_Why = Literal["regular", "retry", "sibling", "deferred"]


@dataclasses.dataclass(order=True, slots=True)
class _Due:
    at: float
    seq: int
    target: int = dataclasses.field(compare=False)
    check: Check = dataclasses.field(compare=False)
    why: _Why = dataclasses.field(compare=False)


_Key = tuple[int, Check]  # a target (its index) and one of its checks


class Scheduler:
    def __init__(
        self,
        targets: Sequence[Target],
        check: Callable[[Target, Check], Awaitable[CheckResult]],
        on_result: Callable[[Target, CheckResult], None],
        *,
        concurrency: int = 256,
        retry_interval: float = 1.5,
        confirmations: int = 3,
        rng: random.Random | None = None,
        cooldown: Cooldown | None = None,
        clock: Callable[[], float] = time.time,
        region: str | None = None,
    ) -> None:
        self.targets = list(targets)
        # Where these probes run from: only traffic from there stands in for them.
        self.region = region
        self._check = check
        self._on_result = on_result
        self._cooldown = cooldown
        self._clock = clock
        self.cooldowns = Cooldowns(clock)
        self._by_name = {t.name: t for t in self.targets}
        self._gate = asyncio.Semaphore(concurrency)
        self.retry_interval = retry_interval
        self.confirmations = confirmations
        self._rng = rng or random.Random()
        self._heap: list[_Due] = []
        self._seq = itertools.count()
        self._running: set[_Key] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # Consecutive outage-class failures per (target, check), as the alert rule counts.
        self._failures: dict[_Key, int] = {}
        self._siblings: dict[str, list[int]] = {}
        for i, t in enumerate(self.targets):
            self._siblings.setdefault(t.provider, []).append(i)
        # When each (target, check) last started, was last asked for as a sibling, and the
        # pending deferral of each (its seq).
        self._started: dict[_Key, float] = {}
        self._sibling_checks: dict[_Key, float] = {}
        self._deferred: dict[_Key, int] = {}
        # When each target was first found cooling down, while it still is; those found so
        # since their last model call; and the model call that went first after, while it runs.
        self._quiet: dict[int, float] = {}
        self._cooled: set[int] = set()
        self._first: dict[int, _Key] = {}
        # Stretched intervals by (target name, check name): the probe budget's.
        self._stretched: dict[tuple[str, str], float] = {}
        # When each target's newest successful traffic was answered (wall clock), and when each
        # of its checks was last skipped for it.
        self._traffic: dict[str, float] = {}
        self._skipped: dict[str, dict[str, float]] = {}
        self._wakeup = asyncio.Event()
        # Start delay of recent checks (seconds past their due time), for lag figures.
        self.lag: deque[float] = deque(maxlen=100_000)

    def _push(self, at: float, target: int, check: Check, why: _Why) -> int:
        seq = next(self._seq)
        heapq.heappush(self._heap, _Due(at, seq, target, check, why))
        self._wakeup.set()
        return seq

    def note(self, result: CheckResult) -> None:
        """Learn from a result of one of these targets measured elsewhere (another agent's
        probe, a gateway's traffic): a cool-down, its target not probed until it ends; and
        successful traffic, which stands in for the target's inference and stream checks."""
        target = self._by_name.get(result.target)
        if target is None:
            return
        self.cooldowns.note(result)
        # Only traffic of the model probed: a client labelling all its calls with one target
        # name (instrument(target=...)) shows nothing of the target's model by another one's.
        # And from the probes' region: an agent's probes are its region's view (and what makes
        # a min_regions quorum), which no other region's traffic (nor a gateway's, which has
        # none) can stand in for.
        model = result.model in (target.model, target.deployment)
        here = result.region == self.region
        if result.source is Source.TRAFFIC and result.ok and model and here:
            answered = result.timestamp.timestamp() + (result.latency_ms or 0.0) / 1000.0
            self.traffic_seen(result.target, answered)

    def traffic_seen(self, name: str, at: float) -> None:
        """Successful traffic of target ``name`` was answered at ``at`` (wall clock)."""
        if name in self._by_name and at > self._traffic.get(name, -math.inf):
            self._traffic[name] = min(at, self._clock())  # a clock running ahead gains nothing

    def checked_by_traffic(self, name: str) -> dict[str, float]:
        """The checks of target ``name`` whose latest turn was skipped because traffic checked
        it (within two of its intervals, and none ran since), and when (wall clock)."""
        target = self._by_name.get(name)
        if target is None:
            return {}
        wall = self._clock()
        return {
            check: at
            for check, at in self._skipped.get(name, {}).items()
            if wall - at < 2 * self.interval(target, CheckKind(check))
        }

    def interval(self, target: Target, check: Check) -> float:
        """How often ``check`` runs now: as configured, unless stretched (never shorter)."""
        stretched = self._stretched.get((target.name, check_name(check)), 0.0)
        return max(configured_interval(target, check), stretched)

    def stretch(self, intervals: Mapping[tuple[str, str], float]) -> None:
        """Run these checks, by (target name, check name), this often (the others as
        configured). A longer interval takes effect from the next turn; a shorter one at once:
        a turn already set an hour away (a budget spent last month) comes when it now says."""
        before = {due.seq: self.interval(self.targets[due.target], due.check) for due in self._heap}
        self._stretched = dict(intervals)
        moved = False
        for due in self._heap:
            if due.why != "regular":
                continue
            interval = self.interval(self.targets[due.target], due.check)
            last = self._started.get((due.target, due.check))
            # Its last run plus the new interval (overdue: at once); not run yet, its first
            # turn as much nearer as the interval shrank.
            at = last + interval if last is not None else due.at - before[due.seq] + interval
            if at < due.at:
                due.at = at
                moved = True
        if moved:
            heapq.heapify(self._heap)
            self._wakeup.set()

    def wait(self, target: Target) -> float:
        """Seconds until ``target`` may be probed with a model call (0: now)."""
        wait = self.cooldowns.remaining(target.name)
        if self._cooldown is not None:
            try:
                wait = max(wait, self._cooldown(target))
            except Exception:  # a bug in a callback must not stop the schedule
                log.exception("cool-down of %s unknown; probing on its own results", target.name)
        return min(wait, MAX_COOLDOWN_S)

    async def run(self, stop: asyncio.Event, drain_timeout: float = 30.0) -> None:
        """Check until ``stop`` is set; then let in-flight checks finish (up to drain_timeout)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i, target in enumerate(self.targets):
            offset = self._rng.uniform(0, target.interval)
            groups: dict[float, list[Check]] = {}
            for check in checks_of(target):
                groups.setdefault(self.interval(target, check), []).append(check)
            for interval, checks in groups.items():
                for check, phase in _phases(checks).items():
                    at = start + (offset + phase * interval) % interval
                    self._push(at, i, check, "regular")
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
        key = (due.target, due.check)
        interval = self.interval(target, due.check)
        if due.why == "regular":
            nxt = due.at + interval
            if nxt <= now:  # fell behind (e.g. the machine slept): skip missed turns
                nxt += (now - nxt) // interval * interval + interval
            self._push(nxt, due.target, due.check, "regular")
        elif due.why == "deferred" and self._deferred.get(key) != due.seq:
            return  # a check of this kind ran since: this one is moot
        if key in self._running:
            return
        # A check whose last run failed as an outage is re-checked, whatever traffic says: a
        # retry deferred by a cool-down comes back as "deferred", and the failure is news
        # traffic that answered before it cannot outweigh.
        if (
            due.why in ("regular", "deferred")
            and key not in self._failures
            and self._by_traffic(target, due.check, interval)
        ):
            self._deferred.pop(key, None)
            return
        last = self._started.get(key, -math.inf)
        wait = self.wait(target)
        model_call = calls_model(due.check)
        if wait > 0:
            quiet = self._quiet.setdefault(due.target, now)
            self._cooled.add(due.target)
            if model_call:
                if due.why == "deferred" or key not in self._deferred:
                    self._deferred[key] = self._push(now + wait, due.target, due.check, "deferred")
                return
            if last >= quiet:  # a models list at most once per cool-down
                return
        else:
            self._quiet.pop(due.target, None)
            # A check of this kind just ran (deferred, retry or sibling): it stood in for the turn.
            if due.why == "regular" and now - last < interval / 4:
                return
            if model_call and not self._goes_first(due, key, now):
                return
        self._deferred.pop(key, None)
        skipped = self._skipped.get(target.name, {})
        if check_name(due.check) in skipped:  # measured again: no longer checked by traffic
            self._skipped[target.name] = {
                k: v for k, v in skipped.items() if k != check_name(due.check)
            }
        self._started[key] = now
        self._running.add(key)
        task = asyncio.ensure_future(self._run_one(due, target))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _by_traffic(self, target: Target, check: Check, interval: float) -> bool:
        """Skip this turn of a built-in inference or stream check: successful traffic was
        answered within its interval."""
        if check not in _TRAFFIC_CHECKS or target.name not in self._traffic:
            return False
        wall = self._clock()
        if wall - self._traffic[target.name] >= interval:
            return False
        # A new mapping each time: the dashboard reads it from another thread.
        self._skipped[target.name] = {**self._skipped.get(target.name, {}), str(check): wall}
        return True

    def _goes_first(self, due: _Due, key: _Key, now: float) -> bool:
        """At a cool-down's end one model call goes first; the target's others wait for its
        answer, which may start another cool-down (an open breaker's one half-open trial)."""
        first = self._first.get(due.target)
        if first is not None and first not in self._running:
            del self._first[due.target]
        elif first is not None:
            self._deferred[key] = self._push(
                now + self.retry_interval, due.target, due.check, "deferred"
            )
            return False
        if due.target in self._cooled:
            self._cooled.discard(due.target)
            self._first[due.target] = key
        return True

    async def _run_one(self, due: _Due, target: Target) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._gate:
                self.lag.append(max(0.0, loop.time() - due.at))
                result = await self._check(target, due.check)
            self.cooldowns.note(result)
            self._after(due, result, loop.time())
            self._on_result(target, result)
        except Exception:  # a bug in a callback must not stop the schedule
            log.exception("check of %s %s failed unexpectedly", target.name, check_name(due.check))
        finally:
            self._running.discard((due.target, due.check))

    def _after(self, due: _Due, result: CheckResult, now: float) -> None:
        key = (due.target, due.check)
        outage = result.error_class is not None and result.error_class.is_outage
        if not outage:
            self._failures.pop(key, None)
            return
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        if failures < self.confirmations:
            # Deferred at launch to the end of a cool-down the failure may have asked for.
            self._push(now + self.retry_interval, due.target, due.check, "retry")
        if failures == 1:
            for j in self._siblings[self.targets[due.target].provider]:
                sibling = self.targets[j]
                check = _sibling_check(sibling, due.check)
                if check is None:
                    continue
                asked = self._sibling_checks.get((j, check), -math.inf)
                if (
                    j != due.target
                    and (j, check) not in self._failures
                    and now - asked >= self.retry_interval  # many failing at once: one check
                    and self.wait(sibling) == 0
                ):
                    self._sibling_checks[(j, check)] = now
                    self._push(now, j, check, "sibling")


def _sibling_check(sibling: Target, failed: Check) -> Check | None:
    """What a sibling is checked with when ``failed`` failed on its provider: the same built-in
    check, or one of its kind, else the sibling's first check (None: it has none)."""
    kind = _kind(failed)
    if kind in sibling.checks:
        return kind
    return next(iter(checks_of(sibling)), None)


def checks_of(target: Target) -> tuple[Check, ...]:
    """The target's built-in checks, then its custom probes."""
    return (*target.checks, *target.probes)


def configured_interval(target: Target, check: Check) -> float:
    """How often the config says ``check`` runs: a custom probe's interval, else the target's."""
    if isinstance(check, Probe) and check.interval is not None:
        return check.interval
    return target.interval


def _phases(checks: Sequence[Check]) -> dict[Check, float]:
    """Where in the interval each check runs, as a fraction of it.

    The checks that call the model are spread evenly, since they are what notices an outage: a
    models list often keeps answering while inference fails. A models list sits halfway
    between two of them.
    """
    calls = [c for c in checks if calls_model(c)]
    lists = [c for c in checks if not calls_model(c)]
    if not calls:
        return {c: i / len(lists) for i, c in enumerate(lists)}
    phases: dict[Check, float] = {c: i / len(calls) for i, c in enumerate(calls)}
    for i, c in enumerate(lists):
        phases[c] = (i + 0.5) / max(len(calls), len(lists))
    return phases
