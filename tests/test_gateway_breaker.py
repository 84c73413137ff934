from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    counts_as_failure,
    sets_cooldown,
)
from llmpulse.result import CheckKind, CheckResult


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CFG = BreakerConfig(
    failure_threshold=3,
    failure_ratio=0.5,
    window_s=10.0,
    min_requests=6,
    cooldown_s=10.0,
    cooldown_multiplier=2.0,
    max_cooldown_s=30.0,
    probe_timeout_s=20.0,
)


def make(cfg: BreakerConfig = CFG) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(cfg, clock), clock


def check(ok: bool, error_class: ErrorClass | None = None, kind=CheckKind.STREAM, **kw):
    return CheckResult(
        target="t",
        provider="openai",
        model="m",
        check=kind,
        timestamp=datetime.now(UTC),
        ok=ok,
        error_class=error_class,
        **kw,
    )


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.failure_threshold):
        breaker.record_failure(ErrorClass.UNAVAILABLE)


def test_which_classes_count():
    counted = {c for c in ErrorClass if counts_as_failure(c)}
    assert counted == {
        ErrorClass.UNAVAILABLE,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.PROTOCOL,
    }
    cooling = {c for c in ErrorClass if sets_cooldown(c)}
    assert cooling == {ErrorClass.RATE_LIMITED, ErrorClass.QUOTA, ErrorClass.AUTH}


def test_closed_to_open_on_consecutive_failures():
    b, clock = make()
    b.record_failure(ErrorClass.TIMEOUT)
    b.record_failure(ErrorClass.CONNECTION)
    assert b.state is BreakerState.CLOSED and b.available()
    b.record_failure(ErrorClass.SERVER_ERROR)
    assert b.state is BreakerState.OPEN
    assert not b.available() and not b.acquire()
    snap = b.snapshot()
    assert snap.trips == 1 and snap.since == clock.now and snap.open_until == clock.now + 10


def test_success_resets_the_consecutive_count():
    b, _ = make(BreakerConfig(failure_threshold=3, min_requests=100))
    for _ in range(5):
        b.record_failure(ErrorClass.UNAVAILABLE)
        b.record_failure(ErrorClass.UNAVAILABLE)
        b.record_success()
    assert b.state is BreakerState.CLOSED and b.snapshot().consecutive_failures == 0


def test_failure_ratio_needs_minimum_requests():
    b, _ = make(BreakerConfig(failure_threshold=100, failure_ratio=0.5, min_requests=6))
    for _ in range(2):
        b.record_failure(ErrorClass.UNAVAILABLE)
        b.record_success()
    assert b.state is BreakerState.CLOSED  # 2/4 but under the minimum
    b.record_failure(ErrorClass.UNAVAILABLE)
    assert b.state is BreakerState.CLOSED  # 3/5
    b.record_success()  # 3/6 counted on success too: the ratio is only checked on a failure
    assert b.state is BreakerState.CLOSED
    b.record_failure(ErrorClass.UNAVAILABLE)  # 4/7 >= 0.5
    assert b.state is BreakerState.OPEN


def test_failure_ratio_window_slides():
    b, clock = make(BreakerConfig(failure_threshold=100, min_requests=4, window_s=10.0))
    for _ in range(10):
        b.record_success()
    clock.advance(5)
    for _ in range(4):
        b.record_failure(ErrorClass.UNAVAILABLE)
    assert b.state is BreakerState.CLOSED  # 4/14: old successes still dilute
    clock.advance(6)  # the successes left the window, the failures did not
    assert (b.snapshot().window_requests, b.snapshot().window_failures) == (4, 4)
    b.record_failure(ErrorClass.UNAVAILABLE)
    assert b.state is BreakerState.OPEN


def test_request_faults_do_not_count():
    b, _ = make()
    for cls in (ErrorClass.BAD_REQUEST, ErrorClass.CONTEXT_LENGTH, ErrorClass.CONTENT_FILTER) * 5:
        b.record_failure(cls)
    snap = b.snapshot()
    assert snap.state is BreakerState.CLOSED
    assert (snap.consecutive_failures, snap.window_requests) == (0, 0)
    assert b.available()


def test_rate_limit_cools_down_until_retry_after_without_opening():
    b, clock = make()
    for _ in range(10):
        b.record_failure(ErrorClass.RATE_LIMITED, retry_after_s=7.0)
    snap = b.snapshot()
    assert snap.state is BreakerState.CLOSED and snap.trips == 0
    assert snap.cooldown_until == clock.now + 7 and snap.cooldown_reason is ErrorClass.RATE_LIMITED
    assert not b.available() and b.available_in() == pytest.approx(7)
    clock.advance(7)
    assert b.available() and b.snapshot().cooldown_until is None


def test_cooldown_defaults_and_cap():
    cfg = BreakerConfig(rate_limited_cooldown_s=3, quota_cooldown_s=50, max_retry_after_s=100)
    b, _ = make(cfg)
    b.record_failure(ErrorClass.RATE_LIMITED)
    assert b.available_in() == pytest.approx(3)
    b.record_failure(ErrorClass.QUOTA)
    assert b.available_in() == pytest.approx(50)
    b.record_failure(ErrorClass.RATE_LIMITED, retry_after_s=1)  # never shortens a cooldown
    assert b.available_in() == pytest.approx(50)
    b.record_failure(ErrorClass.AUTH, retry_after_s=10_000)
    assert b.available_in() == pytest.approx(100)
    assert b.snapshot().cooldown_reason is ErrorClass.AUTH


def test_open_to_half_open_after_cooldown_then_single_probe_closes():
    b, clock = make()
    trip(b)
    clock.advance(9.9)
    assert b.state is BreakerState.OPEN and b.available_in() == pytest.approx(0.1)
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.acquire()
    assert not b.acquire() and not b.available()  # one probe at a time
    assert b.snapshot().probe_in_flight
    b.record_success()
    snap = b.snapshot()
    assert snap.state is BreakerState.CLOSED and snap.trips == 0 and snap.since == clock.now
    assert b.acquire() and b.acquire()


def test_half_open_probe_failure_reopens_with_growing_cooldown():
    b, clock = make()
    trip(b)
    for expected in (20.0, 30.0, 30.0):  # 10 → 20 → 40 capped at 30
        clock.advance(b.available_in())
        assert b.acquire()
        b.record_failure(ErrorClass.TIMEOUT)
        assert b.state is BreakerState.OPEN
        assert b.available_in() == pytest.approx(expected)
    clock.advance(30)
    assert b.acquire()
    b.record_success()
    trip(b)  # after a close the growth starts over
    assert b.available_in() == pytest.approx(10)


def test_half_open_neutral_outcome_frees_the_slot():
    b, clock = make()
    trip(b)
    clock.advance(10)
    assert b.acquire()
    b.record_failure(ErrorClass.BAD_REQUEST)
    assert b.state is BreakerState.HALF_OPEN and b.acquire()
    b.release()
    assert b.acquire()


def test_lost_probe_frees_its_slot_after_probe_timeout():
    b, clock = make()
    trip(b)
    clock.advance(10)
    assert b.acquire()
    clock.advance(19)
    assert not b.acquire() and b.available_in() == pytest.approx(1)
    clock.advance(1)
    assert b.acquire()


def test_outcomes_in_open_are_stale():
    b, _ = make()
    trip(b)
    b.record_success()
    b.record_failure(ErrorClass.UNAVAILABLE)
    assert b.state is BreakerState.OPEN and b.snapshot().trips == 1
    assert b.available_in() == pytest.approx(10)


def test_monitor_failures_open_before_any_user_request():
    b, _ = make()
    for _ in range(3):
        b.record_check(check(False, ErrorClass.UNAVAILABLE, http_status=529))
    assert b.state is BreakerState.OPEN and not b.available()


def test_monitor_models_check_is_ignored():
    b, _ = make()
    for _ in range(5):
        b.record_check(check(False, ErrorClass.UNAVAILABLE, kind=CheckKind.MODELS))
    assert b.state is BreakerState.CLOSED


def test_monitor_recovery_closes_from_open_and_half_open():
    b, clock = make()
    trip(b)
    b.record_check(check(True))
    assert b.state is BreakerState.CLOSED and b.available()
    trip(b)
    clock.advance(10)
    assert b.acquire()
    b.record_check(check(True))
    assert b.state is BreakerState.CLOSED


def test_monitor_failure_while_open_restarts_the_cooldown():
    b, clock = make()
    trip(b)
    clock.advance(8)
    b.record_check(check(False, ErrorClass.TIMEOUT))
    assert b.available_in() == pytest.approx(10)
    assert b.snapshot().trips == 1


def test_monitor_failure_in_half_open_reopens():
    b, clock = make()
    trip(b)
    clock.advance(10)
    b.record_check(check(False, ErrorClass.CONNECTION))
    assert b.state is BreakerState.OPEN and b.snapshot().trips == 2


def test_monitor_neutral_result_keeps_the_traffic_probe_slot():
    b, clock = make()
    trip(b)
    clock.advance(10)
    assert b.acquire()
    b.record_check(check(False, ErrorClass.BAD_REQUEST))
    assert b.snapshot().probe_in_flight and not b.acquire()


def test_monitor_rate_limit_sets_cooldown():
    b, _ = make()
    b.record_check(check(False, ErrorClass.RATE_LIMITED, retry_after_s=4.0))
    assert b.state is BreakerState.CLOSED and b.available_in() == pytest.approx(4)


def test_probes_wait_out_a_cooldown_and_an_open_breaker_until_its_half_open_trial():
    b, clock = make()
    assert b.probe_wait() == 0.0
    b.record_failure(ErrorClass.RATE_LIMITED, retry_after_s=2.0)  # a traffic 429
    assert b.probe_wait() == pytest.approx(2.0)
    clock.advance(2)
    trip(b)
    assert b.probe_wait() == pytest.approx(10.0)  # the half-open pace, not every tick
    clock.advance(10)
    assert b.probe_wait() == 0.0
    assert b.acquire()  # user traffic holds the half-open slot: a probe need not wait for it
    assert b.probe_wait() == 0.0 and b.available_in() > 0
    b.record_check(check(False, ErrorClass.TIMEOUT))  # the probe's verdict drives the breaker
    assert b.state is BreakerState.OPEN and b.probe_wait() == pytest.approx(20.0)


def test_config_validation():
    with pytest.raises(ValueError):
        BreakerConfig(failure_ratio=0)
    with pytest.raises(ValueError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerConfig(cooldown_multiplier=0.5)


_EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0, 15)),
        st.tuples(st.just("acquire"), st.none()),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("success"), st.none()),
        st.tuples(st.just("failure"), st.sampled_from(list(ErrorClass))),
        st.tuples(st.just("check"), st.sampled_from([None, *ErrorClass])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(_EVENTS)
def test_never_two_probes_in_flight(events):
    """However outcomes interleave, half-open never admits a second probe while one is out."""
    b, clock = make()
    outstanding = 0  # half-open probes admitted and not yet resolved
    admitted_at = 0.0
    for kind, arg in events:
        if kind == "advance":
            clock.advance(arg)
            if clock.now - admitted_at >= CFG.probe_timeout_s:
                outstanding = 0  # lost: the breaker gives its slot back, by design
        elif kind == "acquire":
            half_open = b.state is BreakerState.HALF_OPEN
            if b.acquire() and half_open:
                outstanding += 1
                admitted_at = clock.now
                assert outstanding == 1
        elif kind == "release":
            b.release()
            outstanding = 0
        elif kind == "success":
            b.record_success()
            outstanding = 0
        elif kind == "failure":
            b.record_failure(arg)
            if b.state is not BreakerState.HALF_OPEN or not b.snapshot().probe_in_flight:
                outstanding = 0
        else:
            b.record_check(check(arg is None, arg))
            if not b.snapshot().probe_in_flight:
                outstanding = 0
        snap = b.snapshot()
        assert snap.window_failures <= snap.window_requests
        if snap.state is BreakerState.OPEN:
            assert not b.available()


def test_another_replicas_hold_opens_or_cools_and_only_moves_deadlines_later() -> None:
    clock = FakeClock()
    b = CircuitBreaker(CFG, clock)
    b.hold(open_for_s=20.0)
    assert b.state is BreakerState.OPEN and b.available_in() == 20.0
    b.hold(open_for_s=5.0)  # an older decision arriving late does not shorten ours
    assert b.available_in() == 20.0
    clock.advance(20.0)
    assert b.state is BreakerState.HALF_OPEN
    b.force_close()  # another replica's probe succeeded
    assert b.state is BreakerState.CLOSED and b.available()
    b.hold(cooldown_for_s=7.0, reason=ErrorClass.RATE_LIMITED)
    snap = b.snapshot()
    assert snap.state is BreakerState.CLOSED and snap.cooldown_reason is ErrorClass.RATE_LIMITED
    assert not b.available() and b.available_in() == 7.0
    b.hold(cooldown_for_s=1e9)  # capped like a retry-after header
    assert b.available_in() == CFG.max_retry_after_s
