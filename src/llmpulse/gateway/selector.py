"""Which deployment of a model group gets the next attempt.

``Selector`` owns, per deployment, the circuit breaker and the ``DeploymentStats`` (the one place
live TTFT, latency, rate-limit utilization, in-flight count and per-minute usage are kept), fed
by traffic (``acquire``/``finish``/``release``) and by the monitor (``record_check``).

Every strategy first drops deployments already tried by this request, those whose breaker is
open (or half-open with its probe out) and those cooling down after a 429, an exhausted quota or
a refused key. If nothing is left, ``select`` returns None at once (fail fast) and
``wait_hint`` says when the first one may come back: sending traffic to a deployment we know is
down only adds a timeout to the user's wait and load to a struggling provider; the caller answers
503 (or 429 when every deployment is rate-limited) with that hint as Retry-After.

Strategies (LiteLLM's names are accepted, see ``Strategy.parse``):

- priority (default): lowest ``order`` first (unset is last), then the order of the config.
- weighted (``simple-shuffle``): random, proportional to ``weight``, else ``rpm``, else ``tpm``
  (the first of them any deployment sets; unset counts 0), uniform when all are 0.
- latency: EWMA of TTFT (the latency when no TTFT is known yet) from traffic and probes; a
  deployment with no measurement scores 0 so it gets measured. Uniform among those within
  ``latency_buffer`` (a fraction) of the fastest, LiteLLM's ``lowest_latency_buffer``.
- least-busy: fewest attempts in flight, ties at random.
- rate-limit-aware (``usage-based-routing-v2``): skips deployments whose last headers show a
  utilization above ``utilization_threshold`` or whose own ``rpm``/``tpm`` are used up this
  minute, unless all are; then the least used, ties by priority.
- cost: cheapest input + output price per token from the catalogue; unknown prices last.

Concurrency: nothing here awaits, so on one event loop each call is atomic; not thread-safe.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol, TypeVar

from llmpulse.catalog import cost_usd
from llmpulse.config.gateway import Strategy
from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerConfig, CircuitBreaker, Clock, Transition
from llmpulse.presets import PRESETS
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.target import Target, preset_target


class Deployment(Protocol):
    """What routing needs of a deployment; the gateway config's deployment type satisfies it.

    ``id`` is unique across the gateway; ``order`` is LiteLLM's priority (lower first);
    ``weight``, ``rpm`` and ``tpm`` are as configured (None when unset); ``provider`` (a preset
    name) and ``model`` price it.
    """

    @property
    def id(self) -> str: ...
    @property
    def order(self) -> int | None: ...
    @property
    def weight(self) -> float | None: ...
    @property
    def rpm(self) -> int | None: ...
    @property
    def tpm(self) -> int | None: ...
    @property
    def provider(self) -> str: ...
    @property
    def model(self) -> str: ...


D = TypeVar("D", bound=Deployment)


def priority(candidates: Sequence[Deployment]) -> Callable[[Deployment], tuple[float, int]]:
    """The priority strategy's order of ``candidates`` as a sort key: lowest ``order`` first
    (unset last), then their order in ``candidates`` (the config's). The one definition: the
    selector, drills' paths and a request passed over its group all read it."""
    position = {d.id: i for i, d in enumerate(candidates)}
    return lambda d: (math.inf if d.order is None else d.order, position[d.id])


PriceOf = Callable[[Deployment], float | None]


# How long header utilization is trusted when the headers gave no reset time.
_UTILIZATION_TTL_S = 60.0


class DeploymentStats:
    """Live figures of one deployment. Times are seconds on the selector's clock."""

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self.ttft_s: float | None = None
        self.latency_s: float | None = None
        self.in_flight = 0
        self._utilization: float | None = None
        self._utilization_until = 0.0
        self._minute = -1
        self._minute_requests = 0
        self._minute_tokens = 0

    def begin(self, now: float) -> None:
        self.in_flight += 1
        self.count_request(now)

    def count_request(self, now: float) -> None:
        """One more request this minute (rpm), ours or another replica's."""
        self._roll(now)
        self._minute_requests += 1

    def end(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def cancel(self) -> None:
        """Undo ``begin``: an attempt taken but never sent counts neither in flight nor towards
        this minute's requests (a minute rolled over in between costs the new one, at worst
        one request)."""
        self.end()
        self._minute_requests = max(0, self._minute_requests - 1)

    def observe(
        self,
        now: float,
        *,
        ttft_s: float | None = None,
        latency_s: float | None = None,
        tokens: int | None = None,
        ratelimit: RateLimit | None = None,
    ) -> None:
        if ttft_s is not None:
            self.ttft_s = self._ewma(self.ttft_s, ttft_s)
        if latency_s is not None:
            self.latency_s = self._ewma(self.latency_s, latency_s)
        if tokens:
            self._roll(now)
            self._minute_tokens += tokens
        if ratelimit is not None and ratelimit.utilization is not None:
            self._utilization = ratelimit.utilization
            ttl = ratelimit.reset_s if ratelimit.reset_s is not None else _UTILIZATION_TTL_S
            self._utilization_until = now + ttl

    def utilization(self, now: float) -> float | None:
        """The last headers' utilization, until the limit they describe resets."""
        return self._utilization if now < self._utilization_until else None

    def minute_usage(self, now: float) -> tuple[int, int]:
        """Requests and tokens sent through the gateway in the current clock minute."""
        self._roll(now)
        return self._minute_requests, self._minute_tokens

    def _ewma(self, old: float | None, sample: float) -> float:
        return sample if old is None else old + self.alpha * (sample - old)

    def _roll(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self._minute:
            self._minute, self._minute_requests, self._minute_tokens = minute, 0, 0


def price_per_mtok(target: Target) -> float | None:
    """Input + output USD per million tokens (LiteLLM's cost-based score), overrides included."""
    cost, _ = cost_usd(target, Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    return cost


def catalog_price(deployment: Deployment) -> float | None:
    """The catalogue's price of a deployment by its provider preset and model."""
    return _preset_price(deployment.provider, deployment.model)


@functools.lru_cache(maxsize=1024)
def _preset_price(provider: str, model: str) -> float | None:
    if provider not in PRESETS:
        return None
    return price_per_mtok(preset_target(provider, model))


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt on (or probe of) a deployment ended; ``error_class`` None: a success."""

    error_class: ErrorClass | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    tokens: int | None = None
    ratelimit: RateLimit | None = None
    retry_after_s: float | None = None


class Selector:
    def __init__(
        self,
        strategy: Strategy = Strategy.PRIORITY,
        *,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        breaker_config: BreakerConfig | None = None,
        latency_buffer: float = 0.0,
        utilization_threshold: float = 0.9,
        ewma_alpha: float = 0.3,
        price_of: PriceOf = catalog_price,
    ) -> None:
        if latency_buffer < 0 or not 0.0 < utilization_threshold <= 1.0:
            raise ValueError("latency_buffer >= 0 and utilization_threshold in (0, 1]")
        self.strategy = strategy
        self._clock = clock
        self._rng = rng or random.Random()
        self._breaker_config = breaker_config or BreakerConfig()
        self._latency_buffer = latency_buffer
        self._threshold = utilization_threshold
        self._alpha = ewma_alpha
        self._price_of = price_of
        self._stats: dict[str, DeploymentStats] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        # Told of every local outcome (``gateway.shared`` sends them to the other replicas).
        self.listener: Callable[[str, Outcome], None] | None = None
        # Told of every breaker's change of state, by deployment id (``gateway.breaker_log``).
        self.on_transition: Callable[[str, Transition], None] | None = None

    @property
    def clock(self) -> Clock:
        return self._clock

    def stats(self, deployment_id: str) -> DeploymentStats:
        stats = self._stats.get(deployment_id)
        if stats is None:
            stats = self._stats[deployment_id] = DeploymentStats(self._alpha)
        return stats

    def breaker(self, deployment_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(deployment_id)
        if breaker is None:
            breaker = CircuitBreaker(self._breaker_config, self._clock)
            breaker.on_change = functools.partial(self._transition, deployment_id)
            self._breakers[deployment_id] = breaker
        return breaker

    def _transition(self, deployment_id: str, transition: Transition) -> None:
        if self.on_transition is not None:
            self.on_transition(deployment_id, transition)

    # --- choosing ---------------------------------------------------------------------------

    def available(self, candidates: Sequence[D], exclude: Collection[str] = ()) -> list[D]:
        """Candidates not tried yet whose breaker lets an attempt through and not cooling down."""
        return [d for d in candidates if d.id not in exclude and self.breaker(d.id).available()]

    def select(self, candidates: Sequence[D], exclude: Collection[str] = ()) -> D | None:
        """Pick and ``acquire`` a deployment, or None when none is available (fail fast).

        The caller must end every selection with ``finish`` or ``release``.
        """
        pool = self.available(candidates, exclude)
        while pool:
            choice = self._choose(candidates, pool)
            if self.acquire(choice):
                return choice
            pool.remove(choice)
        return None

    def wait_hint(self, candidates: Sequence[Deployment], exclude: Collection[str] = ()) -> float:
        """Seconds until some untried candidate may be available again (inf when all tried)."""
        waits = [self.breaker(d.id).available_in() for d in candidates if d.id not in exclude]
        return min(waits, default=math.inf)

    def _choose(self, candidates: Sequence[D], pool: list[D]) -> D:
        by_priority = priority(candidates)
        strategy = self.strategy
        if strategy is Strategy.WEIGHTED:
            return self._weighted(pool)
        if strategy is Strategy.LATENCY:
            return self._lowest_latency(pool)
        if strategy is Strategy.LEAST_BUSY:
            fewest = min(self.stats(d.id).in_flight for d in pool)
            return self._rng.choice([d for d in pool if self.stats(d.id).in_flight == fewest])
        if strategy is Strategy.RATE_LIMIT_AWARE:
            now = self._clock()
            pressure = {d.id: self._pressure(d, now) for d in pool}
            roomy = [d for d in pool if self._has_headroom(d, now)]
            return min(roomy or pool, key=lambda d: (pressure[d.id], *by_priority(d)))
        if strategy is Strategy.COST:

            def cost(d: Deployment) -> tuple[float, float, int]:
                price = self._price_of(d)
                return (math.inf if price is None else price, *by_priority(d))

            return min(pool, key=cost)
        return min(pool, key=by_priority)

    def _weighted(self, pool: list[D]) -> D:
        for field in ("weight", "rpm", "tpm"):
            values = [getattr(d, field) for d in pool]
            if any(v is not None for v in values):
                weights = [max(0.0, float(v or 0)) for v in values]
                if sum(weights) > 0:
                    return self._rng.choices(pool, weights=weights)[0]
                break
        return self._rng.choice(pool)

    def _lowest_latency(self, pool: list[D]) -> D:
        def score(d: Deployment) -> float:
            stats = self.stats(d.id)
            known = stats.ttft_s if stats.ttft_s is not None else stats.latency_s
            return 0.0 if known is None else known

        scores = {d.id: score(d) for d in pool}
        ceiling = min(scores.values()) * (1.0 + self._latency_buffer)
        return self._rng.choice([d for d in pool if scores[d.id] <= ceiling])

    def _pressure(self, d: Deployment, now: float) -> float:
        """The most used of: header utilization, own rpm and tpm this minute (1.0 = used up)."""
        stats = self.stats(d.id)
        requests, tokens = stats.minute_usage(now)
        used = [stats.utilization(now) or 0.0]
        if d.rpm:
            used.append(requests / d.rpm)
        if d.tpm:
            used.append(tokens / d.tpm)
        return max(used)

    def _has_headroom(self, d: Deployment, now: float) -> bool:
        stats = self.stats(d.id)
        requests, tokens = stats.minute_usage(now)
        utilization = stats.utilization(now)
        return (
            (utilization is None or utilization <= self._threshold)
            and (not d.rpm or requests < d.rpm)
            and (not d.tpm or tokens < d.tpm)
        )

    # --- outcomes ---------------------------------------------------------------------------

    def acquire(self, deployment: Deployment) -> bool:
        """Take an attempt on this deployment (a retry on the same one comes here directly)."""
        if not self.breaker(deployment.id).acquire():
            return False
        self.stats(deployment.id).begin(self._clock())
        return True

    def finish(
        self,
        deployment_id: str,
        *,
        error_class: ErrorClass | None = None,
        ttft_s: float | None = None,
        latency_s: float | None = None,
        tokens: int | None = None,
        ratelimit: RateLimit | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """An acquired attempt ended; ``error_class`` None is a success.

        Pass ``latency_s`` for timeouts too: the time burnt is what latency routing must see.
        """
        outcome = Outcome(error_class, ttft_s, latency_s, tokens, ratelimit, retry_after_s)
        self.stats(deployment_id).end()
        self._learn(deployment_id, outcome)
        if self.listener is not None:
            self.listener(deployment_id, outcome)

    def apply_remote(self, deployment_id: str, outcome: Outcome) -> None:
        """Another replica's attempt ended: learn from it as from one of ours, except that it
        was never acquired here (no in-flight count, no half-open slot of ours)."""
        self.stats(deployment_id).count_request(self._clock())
        self._learn(deployment_id, outcome)

    def _learn(self, deployment_id: str, o: Outcome) -> None:
        self.stats(deployment_id).observe(
            self._clock(),
            ttft_s=o.ttft_s,
            latency_s=o.latency_s,
            tokens=o.tokens,
            ratelimit=o.ratelimit,
        )
        breaker = self.breaker(deployment_id)
        if o.error_class is None:
            breaker.record_success()
        else:
            breaker.record_failure(o.error_class, o.retry_after_s)

    def release(self, deployment_id: str) -> None:
        """An acquired attempt ended without a verdict (the client went away)."""
        self.stats(deployment_id).end()
        self.breaker(deployment_id).release()

    def give_back(self, deployment_id: str) -> None:
        """A selection handed back unsent (a drill passing over its primary): as if it had
        never been made, so routing (in-flight counts, rpm headroom, the half-open probe
        slot) is not skewed by a request that went elsewhere."""
        self.stats(deployment_id).cancel()
        self.breaker(deployment_id).release()

    def record_check(self, deployment_id: str, result: CheckResult) -> None:
        """A monitor probe of this deployment: breaker, latency and headroom all learn from it."""
        self.breaker(deployment_id).record_check(result)
        if result.kind is CheckKind.MODELS:
            return
        timed_out = result.error_class is ErrorClass.TIMEOUT
        ttft_s = _seconds(result.ttft_ms) if result.ok else None
        latency_s = _seconds(result.latency_ms) if result.ok or timed_out else None
        self.stats(deployment_id).observe(
            self._clock(), ttft_s=ttft_s, latency_s=latency_s, ratelimit=result.ratelimit
        )
        if self.listener is not None:
            outcome = Outcome(
                result.error_class, ttft_s, latency_s, None, result.ratelimit, result.retry_after_s
            )
            self.listener(deployment_id, outcome)


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0
