"""What to do after a failed attempt: retry, fail over, fall back, continue, or stop.

Pure and deterministic given its random source: the failover loop describes the attempt that
just failed (``Attempt``) and gets a ``Decision``; it does the waiting, the routing and the I/O.

Fault by fault (``bytes_sent`` false, i.e. nothing reached the client yet):

==================================  ==========================================================
fault                               decision
==================================  ==========================================================
500 (server_error)                  retry the same deployment once (jittered), then fail over
connection refused / reset          fail over; with no other deployment, retry after at least
                                    ``backoff_base_s`` (a refusal is instant: never a tight loop)
502/503/504/529/498 (unavailable)   fail over; with no other deployment, retry with backoff
malformed response (protocol)       fail over; with no other deployment, retry with backoff
timeout (no answer, slow first      fail over; never the same deployment again (a silent
token over the TTFT limit)          deployment would only burn another timeout)
429 with retry-after ≤ cap          retry the same deployment after exactly that wait
429 wait > cap or past the deadline fail over (no wait)
429 without retry-after             fail over; with no other deployment, full-jitter backoff
quota, provider auth refusal        fail over (another deployment has its own key and credit)
context_length                      context_window_fallbacks; never the same model again
content_filter                      content_policy_fallbacks, else stop with the reason
bad_request                         stop: the request's fault, the same anywhere
==================================  ==========================================================

Whatever would fail over but has no other deployment goes to the group's ``fallbacks``, else
stops with the error. The budget is LiteLLM's router's: ``num_retries`` counts the attempts
after the first in one model group, so a group gets at most ``1 + num_retries`` attempts, and a
retry of the same deployment and a failover to another both spend one (LiteLLM re-selects on
every retry, skipping the deployments that failed). Each fallback group gets a fresh
``1 + num_retries``; ``max_fallbacks`` bounds the groups. The total ``deadline_s`` bounds
everything (a wait that would cross it is never taken).

After bytes reached the client (a stream cut or stalled mid-answer), restarting would duplicate
output, so: continue on a deployment that accepts an assistant prefill (``CONTINUE``), else end
the stream with an explicit error (``STOP``). A failed continuation reports the original error
(``report_original``): a prefill rejection must never mask what actually went wrong.
"""

from __future__ import annotations

import dataclasses
import enum
import random

from llmpulse.errors import ErrorClass


class Action(enum.StrEnum):
    RETRY = "retry"  # the same deployment, after ``delay_s``
    FAILOVER = "failover"  # another deployment of the same model group
    FALLBACK = "fallback"  # the next model group of ``Decision.fallback``'s list
    CONTINUE = "continue"  # mid-stream: a deployment accepting a prefill resumes the answer
    STOP = "stop"  # propagate the error (an explicit error event when streaming)


class FallbackKind(enum.StrEnum):
    """Which of the config's fallback lists to walk."""

    GENERAL = "fallbacks"
    CONTEXT_WINDOW = "context_window_fallbacks"
    CONTENT_POLICY = "content_policy_fallbacks"


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """The attempt that just failed, and what is left to try.

    ``attempts`` counts every attempt of this request in the current model group, this one
    included; ``same_deployment_attempts`` those in a row on this deployment. ``has_alternative``
    says routing can still offer another deployment of the group (not tried, breaker not open,
    not cooling down), ``prefill_alternative`` that one of those accepts an assistant prefill.
    ``fallbacks`` holds the kinds of fallback lists that still have an entry to try.
    """

    error_class: ErrorClass
    http_status: int | None = None
    retry_after_s: float | None = None
    message: str | None = None
    bytes_sent: bool = False
    is_continuation: bool = False
    elapsed_s: float = 0.0
    attempts: int = 1
    same_deployment_attempts: int = 1
    has_alternative: bool = False
    prefill_alternative: bool = False
    fallbacks: frozenset[FallbackKind] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    delay_s: float = 0.0
    fallback: FallbackKind | None = None
    # STOP after a failed continuation: surface the error that cut the stream, not this one.
    report_original: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 2
    deadline_s: float = 600.0
    # The longest server-directed wait we sit through before going elsewhere.
    retry_after_cap_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    # Attempts in a row on one deployment for a transient fault (500, connection reset).
    same_deployment_tries: int = 2
    rng: random.Random = dataclasses.field(default_factory=random.Random, compare=False)

    def __post_init__(self) -> None:
        if self.num_retries < 0 or self.deadline_s <= 0 or self.same_deployment_tries < 1:
            raise ValueError("num_retries >= 0, deadline_s > 0 and same_deployment_tries >= 1")

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base·2^retry)], so clients never sync up."""
        return self.rng.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * 2**retry))

    def decide(self, attempt: Attempt) -> Decision:
        cls = attempt.error_class
        if attempt.elapsed_s >= self.deadline_s:
            return _stop(attempt, f"deadline of {self.deadline_s:g}s reached after {cls}")
        if attempt.bytes_sent or attempt.is_continuation:
            return self._mid_stream(attempt)
        if cls is ErrorClass.CONTEXT_LENGTH:
            return _fallback_or_stop(attempt, FallbackKind.CONTEXT_WINDOW, "context window")
        if cls is ErrorClass.CONTENT_FILTER:
            return _fallback_or_stop(attempt, FallbackKind.CONTENT_POLICY, "content filter")
        if cls is ErrorClass.BAD_REQUEST:
            return _stop(attempt, "the request itself was refused; no deployment would differ")
        if cls is ErrorClass.RATE_LIMITED:
            return self._rate_limited(attempt)
        if cls in (ErrorClass.QUOTA, ErrorClass.AUTH, ErrorClass.TIMEOUT):
            # A timeout is not retried on the same route: it would only burn another one.
            return self._elsewhere(attempt, f"{cls} on this deployment")
        if cls is ErrorClass.SERVER_ERROR:
            if attempt.same_deployment_attempts < self.same_deployment_tries:
                return self._retry_same(attempt, f"transient {cls}")
            return self._elsewhere(attempt, f"{cls} persists", backoff_alone=True)
        if cls is ErrorClass.CONNECTION:
            # Nothing listens, or it dropped us: the route is broken for now, so another
            # deployment is the better bet, and a refusal repeated without a wait is a tight loop.
            return self._elsewhere(
                attempt, f"{cls} on this deployment", backoff_alone=True, floor=self.backoff_base_s
            )
        # unavailable (502/503/504/529), protocol: overloaded or broken, go elsewhere.
        return self._elsewhere(attempt, f"{cls}", backoff_alone=True)

    def _budget_left(self, attempt: Attempt) -> bool:
        return attempt.attempts <= self.num_retries

    def _fits(self, attempt: Attempt, delay: float) -> bool:
        return attempt.elapsed_s + delay < self.deadline_s

    def _retry_same(self, attempt: Attempt, why: str, delay: float | None = None) -> Decision:
        if not self._budget_left(attempt):
            return self._exhausted(attempt)
        if delay is None:
            delay = self.backoff(attempt.same_deployment_attempts - 1)
        if not self._fits(attempt, delay):
            return self._elsewhere(attempt, f"{why}; a wait of {delay:.2f}s passes the deadline")
        return Decision(Action.RETRY, why, delay_s=delay)

    def _elsewhere(
        self, attempt: Attempt, why: str, *, backoff_alone: bool = False, floor: float = 0.0
    ) -> Decision:
        """Fail over; alone in the group, back off on the same one when allowed (at least
        ``floor`` seconds), else fall back."""
        if attempt.has_alternative:
            if not self._budget_left(attempt):
                return self._exhausted(attempt)
            return Decision(Action.FAILOVER, why)
        if backoff_alone and self._budget_left(attempt):
            delay = max(floor, self.backoff(attempt.same_deployment_attempts - 1))
            if self._fits(attempt, delay):
                return Decision(Action.RETRY, f"{why}; no other deployment", delay_s=delay)
        return _fallback_or_stop(attempt, FallbackKind.GENERAL, why)

    def _exhausted(self, attempt: Attempt) -> Decision:
        why = f"{self.num_retries} retries used"
        return _fallback_or_stop(attempt, FallbackKind.GENERAL, why)

    def _rate_limited(self, attempt: Attempt) -> Decision:
        wait = attempt.retry_after_s
        if wait is None:
            # Nothing says when it frees up; another deployment has its own limits.
            return self._elsewhere(attempt, "429 without retry-after", backoff_alone=True)
        if wait <= self.retry_after_cap_s and self._fits(attempt, wait):
            return self._retry_same(attempt, f"429: honouring retry-after {wait:g}s", delay=wait)
        return self._elsewhere(attempt, f"429: retry-after {wait:g}s exceeds the budget")

    def _mid_stream(self, attempt: Attempt) -> Decision:
        if attempt.is_continuation:
            return _stop(attempt, "the continuation failed", report_original=True)
        if not attempt.error_class.is_outage:
            return _stop(attempt, f"{attempt.error_class} after output reached the client")
        if attempt.prefill_alternative and self._budget_left(attempt):
            return Decision(Action.CONTINUE, "stream cut: resuming on a prefill deployment")
        return _stop(attempt, "stream cut after output reached the client; cannot resume")


def _fallback_or_stop(attempt: Attempt, kind: FallbackKind, why: str) -> Decision:
    if kind in attempt.fallbacks:
        return Decision(Action.FALLBACK, f"{why}: trying {kind}", fallback=kind)
    return _stop(attempt, why)


def _stop(attempt: Attempt, why: str, *, report_original: bool = False) -> Decision:
    detail = f": {attempt.message}" if attempt.message else ""
    return Decision(Action.STOP, f"{why}{detail}", report_original=report_original)
