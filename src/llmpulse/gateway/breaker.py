"""A circuit breaker per deployment, fed by live traffic and by the monitor's probes.

States: closed (traffic flows) → open (no traffic) after ``failure_threshold`` consecutive
counted failures, or a failure ratio of at least ``failure_ratio`` over the last ``window_s``
seconds once ``min_requests`` were seen there; open → half-open when the cool-down has passed
(the cool-down grows by ``cooldown_multiplier`` on every trip without a close in between);
half-open lets exactly one probe through; its success closes the breaker, its failure re-opens.

What counts as a failure is decided from ``ErrorClass`` alone:

- outage classes (``ErrorClass.is_outage``: unavailable, server_error, timeout, connection,
  protocol) count;
- caller limits (rate_limited, quota) and a provider's ``auth`` refusal never count: the
  deployment is up, but unusable for a while, so they set a *cool-down* until the retry-after
  (or a default) instead, which routing honours like an open breaker;
- the request's own faults (bad_request, context_length, content_filter) count for nothing.

Outcomes do not carry which acquire they answer: in half-open the next verdict is taken as the
probe's, and in open outcomes of attempts started before the trip are ignored. The monitor's
successful inference or stream check closes the breaker from any state (``record_check``).

Every change of state is told to ``on_change`` (a ``Transition``), so that the gateway can record
breaker opens and closes (``gateway.breaker_log``); a state adopted from another replica
(``hold``, ``force_close``) is marked ``shared``: that replica records its own.

Concurrency: no method awaits or blocks, so on one asyncio event loop every call is atomic. It is
not meant to be shared across threads.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import time
from collections.abc import Callable

from llmpulse.errors import ErrorClass
from llmpulse.ratelimit import QUOTA_COOLDOWN_S, RATE_LIMITED_COOLDOWN_S
from llmpulse.result import CheckKind, CheckResult

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    failure_ratio: float = 0.5
    window_s: float = 30.0
    min_requests: int = 10
    cooldown_s: float = 15.0
    cooldown_multiplier: float = 2.0
    max_cooldown_s: float = 300.0
    # A probe whose outcome never comes back (a lost task) frees its slot after this long.
    probe_timeout_s: float = 60.0
    # Cool-downs for caller limits when the provider gave no retry-after.
    rate_limited_cooldown_s: float = RATE_LIMITED_COOLDOWN_S
    quota_cooldown_s: float = QUOTA_COOLDOWN_S
    # Upper bound on any retry-after we honour: a bogus header must not bench a deployment.
    max_retry_after_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.min_requests < 1:
            raise ValueError("failure_threshold and min_requests must be at least 1")
        if not 0.0 < self.failure_ratio <= 1.0:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.window_s <= 0 or self.cooldown_s < 0 or self.cooldown_multiplier < 1.0:
            raise ValueError("window_s must be > 0, cooldown_s >= 0, cooldown_multiplier >= 1")


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """A breaker entered ``state`` at ``at`` (the breaker's clock). ``reason``: the error class
    that tripped it, or what moved it (``cooldown elapsed``, ``probe succeeded``, ...).
    ``shared``: adopted from another replica, or the half-open that follows such an open."""

    state: BreakerState
    at: float
    reason: str
    shared: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """What metrics and the dashboard show: times are on the breaker's clock."""

    state: BreakerState
    since: float
    consecutive_failures: int
    window_requests: int
    window_failures: int
    trips: int
    open_until: float | None
    cooldown_until: float | None
    cooldown_reason: ErrorClass | None
    probe_in_flight: bool


def counts_as_failure(error_class: ErrorClass) -> bool:
    """Whether an attempt that ended with this class moves the breaker towards open."""
    return error_class.is_outage


def sets_cooldown(error_class: ErrorClass) -> bool:
    """Caller limits and a refused key: the deployment is up but unusable for a while."""
    return error_class.is_caller_limit or error_class is ErrorClass.AUTH


class CircuitBreaker:
    def __init__(self, config: BreakerConfig | None = None, clock: Clock = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._since = clock()
        self._consecutive = 0
        self._trips = 0
        self._open_until = 0.0
        self._probe_started: float | None = None
        self._cooldown_until = 0.0
        self._cooldown_reason: ErrorClass | None = None
        # Per-second buckets [second, requests, failures] keep memory flat under heavy traffic.
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._window_requests = 0
        self._window_failures = 0
        self._shared = False  # the current open (and its half-open) was another replica's
        self.on_change: Callable[[Transition], None] | None = None

    # --- gating -----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        self._advance(self._clock())
        return self._state

    def available(self) -> bool:
        """Whether an attempt could go through now; takes nothing (routing peeks with this)."""
        now = self._clock()
        self._advance(now)
        if now < self._cooldown_until:
            return False
        if self._state is BreakerState.OPEN:
            return False
        return self._state is BreakerState.CLOSED or self._probe_started is None

    def acquire(self) -> bool:
        """Take the right to send one attempt. In half-open this is the single probe slot.

        Every successful acquire must be followed by ``record_success``, ``record_failure`` or
        ``release``.
        """
        if not self.available():
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._probe_started = self._clock()
        return True

    def release(self) -> None:
        """An acquired attempt ended without a verdict (cancelled by the client, say)."""
        self._probe_started = None

    def available_in(self) -> float:
        """Seconds until ``available`` may turn true (0 when it is)."""
        now = self._clock()
        self._advance(now)
        ready = self._cooldown_until
        if self._state is BreakerState.OPEN:
            ready = max(ready, self._open_until)
        elif self._state is BreakerState.HALF_OPEN and self._probe_started is not None:
            ready = max(ready, self._probe_started + self.config.probe_timeout_s)
        return max(0.0, ready - now)

    def probe_wait(self) -> float:
        """Seconds until a monitor probe of this deployment is welcome (0 when it is now): the
        end of a cool-down, and while open the moment a half-open trial would be let through.

        Unlike ``available_in`` a half-open slot held by user traffic does not delay it: a
        probe never takes the slot (``record_check``), and that trial ends within a request.
        """
        now = self._clock()
        self._advance(now)
        ready = self._cooldown_until
        if self._state is BreakerState.OPEN:
            ready = max(ready, self._open_until)
        return max(0.0, ready - now)

    # --- outcomes ---------------------------------------------------------------------------

    def record_success(self) -> None:
        now = self._clock()
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN:
            self._close(now, "probe succeeded")
        elif self._state is BreakerState.CLOSED:
            self._consecutive = 0
            self._count(now, failed=False)
        # In open, a success is an attempt started before the trip: it proves nothing now.

    def record_failure(self, error_class: ErrorClass, retry_after_s: float | None = None) -> None:
        now = self._clock()
        self._advance(now)
        if sets_cooldown(error_class):
            self._cool_down(now, error_class, retry_after_s)
        if not counts_as_failure(error_class):
            # The deployment answered: a half-open probe gets no verdict, the slot is freed.
            if self._state is BreakerState.HALF_OPEN:
                self._probe_started = None
            return
        if self._state is BreakerState.HALF_OPEN:
            self._trip(now, str(error_class))
        elif self._state is BreakerState.CLOSED:
            self._consecutive += 1
            self._count(now, failed=True)
            if self._should_open():
                self._trip(now, str(error_class))

    def record_check(self, result: CheckResult) -> None:
        """A monitor probe of this deployment.

        Only checks that call the model (inference, stream) say anything about serving. A
        failure counts like traffic, so the monitor's confirmations open the breaker before a
        user request fails; while open it restarts the cool-down. A success closes the breaker
        from any state: recovery seen by the monitor brings traffic back without a user probe.
        """
        if result.kind is CheckKind.MODELS:
            return
        now = self._clock()
        self._advance(now)
        if result.ok:
            if self._state is BreakerState.CLOSED:
                self._consecutive = 0
                self._count(now, failed=False)
            else:
                self._close(now, "monitor check succeeded")
            return
        if result.error_class is None:
            return
        if self._state is BreakerState.OPEN and counts_as_failure(result.error_class):
            self._open_until = now + self._current_cooldown()
            return
        # A half-open slot held by user traffic stays with it: the monitor's verdict re-opens
        # (below) or is neutral, but it never takes the probe slot.
        probe = self._probe_started
        self.record_failure(result.error_class, result.retry_after_s)
        if self._state is BreakerState.HALF_OPEN:
            self._probe_started = probe

    def hold(
        self,
        *,
        open_for_s: float | None = None,
        cooldown_for_s: float | None = None,
        reason: ErrorClass | None = None,
    ) -> None:
        """Adopt another gateway replica's decision: open for ``open_for_s`` (from now), or cool
        down for ``cooldown_for_s``. Deadlines only ever move later here."""
        now = self._clock()
        self._advance(now)
        if open_for_s is not None and open_for_s > 0:
            until = now + open_for_s
            if self._state is not BreakerState.OPEN:
                self._probe_started = None
                self._shared = True
                self._set(BreakerState.OPEN, now, "another replica opened it")
                self._open_until = until
            else:
                self._open_until = max(self._open_until, until)
        if cooldown_for_s is not None and cooldown_for_s > 0:
            until = now + min(cooldown_for_s, self.config.max_retry_after_s)
            if until > self._cooldown_until:
                self._cooldown_until = until
                self._cooldown_reason = reason

    def force_close(self) -> None:
        """Another replica's probe succeeded: close here too, so traffic returns together."""
        now = self._clock()
        self._advance(now)
        if self._state is not BreakerState.CLOSED:
            self._close(now, "another replica's probe succeeded", shared=True)

    def snapshot(self) -> BreakerSnapshot:
        now = self._clock()
        self._advance(now)
        self._prune(now)
        cooling = now < self._cooldown_until
        return BreakerSnapshot(
            state=self._state,
            since=self._since,
            consecutive_failures=self._consecutive,
            window_requests=self._window_requests,
            window_failures=self._window_failures,
            trips=self._trips,
            open_until=self._open_until if self._state is BreakerState.OPEN else None,
            cooldown_until=self._cooldown_until if cooling else None,
            cooldown_reason=self._cooldown_reason if cooling else None,
            probe_in_flight=self._probe_started is not None,
        )

    # --- internals --------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        if self._state is BreakerState.OPEN and now >= self._open_until:
            # Noticed now, due since the cool-down ended: that is when it happened.
            self._set(BreakerState.HALF_OPEN, now, "cooldown elapsed", at=self._open_until)
            self._probe_started = None
        elif (
            self._state is BreakerState.HALF_OPEN
            and self._probe_started is not None
            and now - self._probe_started >= self.config.probe_timeout_s
        ):
            self._probe_started = None

    def _set(
        self,
        state: BreakerState,
        now: float,
        reason: str,
        *,
        shared: bool = False,
        at: float | None = None,
    ) -> None:
        self._state = state
        self._since = now
        if self.on_change is not None:
            at = now if at is None else at
            self.on_change(Transition(state, at, reason, shared or self._shared))

    def _current_cooldown(self) -> float:
        cfg = self.config
        grown = cfg.cooldown_s * cfg.cooldown_multiplier ** max(0, self._trips - 1)
        return min(cfg.max_cooldown_s, grown)

    def _trip(self, now: float, reason: str) -> None:
        self._trips += 1
        self._open_until = now + self._current_cooldown()
        self._probe_started = None
        self._shared = False
        self._set(BreakerState.OPEN, now, reason)

    def _close(self, now: float, reason: str, *, shared: bool = False) -> None:
        self._trips = 0
        self._consecutive = 0
        self._probe_started = None
        self._buckets.clear()
        self._window_requests = self._window_failures = 0
        self._shared = False
        self._set(BreakerState.CLOSED, now, reason, shared=shared)

    def _cool_down(self, now: float, error_class: ErrorClass, retry_after_s: float | None) -> None:
        cfg = self.config
        if retry_after_s is None:
            quota_like = error_class is not ErrorClass.RATE_LIMITED
            retry_after_s = cfg.quota_cooldown_s if quota_like else cfg.rate_limited_cooldown_s
        until = now + min(max(0.0, retry_after_s), cfg.max_retry_after_s)
        if until > self._cooldown_until:
            self._cooldown_until = until
            self._cooldown_reason = error_class

    def _should_open(self) -> bool:
        cfg = self.config
        if self._consecutive >= cfg.failure_threshold:
            return True
        return (
            self._window_requests >= cfg.min_requests
            and self._window_failures >= cfg.failure_ratio * self._window_requests
        )

    def _count(self, now: float, *, failed: bool) -> None:
        self._prune(now)
        second = int(now)
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        self._window_requests += 1
        if failed:
            bucket[2] += 1
            self._window_failures += 1

    def _prune(self, now: float) -> None:
        horizon = now - self.config.window_s
        while self._buckets and self._buckets[0][0] + 1 <= horizon:
            _, requests, failures = self._buckets.popleft()
            self._window_requests -= requests
            self._window_failures -= failures
