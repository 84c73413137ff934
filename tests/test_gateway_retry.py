import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.errors import ErrorClass, classify
from llmpulse.gateway.retry import Action, Attempt, Decision, FallbackKind, RetryPolicy

ALL_FALLBACKS = frozenset(FallbackKind)


def policy(**kw) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **kw)


def decide(cls: ErrorClass, pol: RetryPolicy | None = None, **kw) -> Decision:
    return (pol or policy()).decide(Attempt(error_class=cls, **kw))


# --- fault by fault, nothing sent to the client yet ---------------------------------------------


def test_500_once_retries_same_then_fails_over():
    first = decide(classify(500), has_alternative=True)
    assert first.action is Action.RETRY and 0 <= first.delay_s <= 0.5
    second = decide(classify(500), has_alternative=True, attempts=2, same_deployment_attempts=2)
    assert second.action is Action.FAILOVER


@pytest.mark.parametrize("status", [502, 503, 504, 529, 498])
def test_unavailable_fails_over(status):
    cls = classify(status)
    assert cls is ErrorClass.UNAVAILABLE
    assert decide(cls, has_alternative=True).action is Action.FAILOVER


def test_unavailable_alone_backs_off_then_falls_back():
    alone = decide(ErrorClass.UNAVAILABLE, http_status=529)
    assert alone.action is Action.RETRY and alone.delay_s <= 0.5
    spent = decide(ErrorClass.UNAVAILABLE, attempts=3, fallbacks=ALL_FALLBACKS)
    assert (spent.action, spent.fallback) == (Action.FALLBACK, FallbackKind.GENERAL)
    assert decide(ErrorClass.UNAVAILABLE, attempts=3).action is Action.STOP


def test_connection_refused_or_reset_fails_over_at_once():
    assert decide(ErrorClass.CONNECTION, has_alternative=True).action is Action.FAILOVER


def test_connection_failure_alone_waits_at_least_the_base_backoff():
    pol = policy(backoff_base_s=0.5)
    for seed in range(50):
        pol.rng.seed(seed)
        alone = decide(ErrorClass.CONNECTION, pol)
        assert alone.action is Action.RETRY and 0.5 <= alone.delay_s <= 0.5 * 2


def test_timeout_never_retries_the_same_deployment():
    assert decide(ErrorClass.TIMEOUT, has_alternative=True).action is Action.FAILOVER
    alone = decide(ErrorClass.TIMEOUT, fallbacks=ALL_FALLBACKS)
    assert (alone.action, alone.fallback) == (Action.FALLBACK, FallbackKind.GENERAL)
    assert decide(ErrorClass.TIMEOUT).action is Action.STOP


def test_protocol_error_fails_over():
    assert decide(ErrorClass.PROTOCOL, has_alternative=True).action is Action.FAILOVER


def test_429_with_retry_after_within_cap_is_honoured_exactly():
    d = decide(ErrorClass.RATE_LIMITED, retry_after_s=3.0, has_alternative=True)
    assert (d.action, d.delay_s) == (Action.RETRY, 3.0)


def test_429_with_retry_after_over_cap_fails_over_without_waiting():
    d = decide(ErrorClass.RATE_LIMITED, retry_after_s=30.0, has_alternative=True)
    assert (d.action, d.delay_s) == (Action.FAILOVER, 0.0)
    alone = decide(ErrorClass.RATE_LIMITED, retry_after_s=30.0, message="slow down")
    assert alone.action is Action.STOP and "slow down" in alone.reason


def test_429_wait_past_the_deadline_fails_over():
    pol = policy(deadline_s=10.0)
    d = decide(ErrorClass.RATE_LIMITED, pol, retry_after_s=5.0, elapsed_s=6.0, has_alternative=True)
    assert d.action is Action.FAILOVER


def test_429_without_retry_after_fails_over_or_backs_off_with_jitter():
    assert decide(ErrorClass.RATE_LIMITED, has_alternative=True).action is Action.FAILOVER
    d = decide(ErrorClass.RATE_LIMITED, same_deployment_attempts=3)
    assert d.action is Action.RETRY and 0.0 <= d.delay_s <= 2.0


@pytest.mark.parametrize("cls", [ErrorClass.QUOTA, ErrorClass.AUTH])
def test_quota_and_provider_auth_fail_over_never_retry(cls):
    assert decide(cls, has_alternative=True).action is Action.FAILOVER
    assert decide(cls).action is Action.STOP


def test_context_length_goes_to_context_window_fallbacks():
    cls = classify(400, "invalid_request_error", "context_length_exceeded")
    d = decide(cls, has_alternative=True, fallbacks=ALL_FALLBACKS)
    assert (d.action, d.fallback) == (Action.FALLBACK, FallbackKind.CONTEXT_WINDOW)
    # Never the same model again, not even another deployment of the group.
    assert decide(cls, has_alternative=True).action is Action.STOP


def test_content_filter_propagates_the_reason():
    cls = classify(400, "invalid_request_error", "content_filter", "blocked by the safety system")
    d = decide(cls, has_alternative=True, message="blocked by the safety system")
    assert d.action is Action.STOP and "blocked by the safety system" in d.reason
    fb = decide(cls, fallbacks=frozenset({FallbackKind.CONTENT_POLICY}))
    assert (fb.action, fb.fallback) == (Action.FALLBACK, FallbackKind.CONTENT_POLICY)


def test_bad_request_stops():
    d = decide(classify(422), has_alternative=True, fallbacks=ALL_FALLBACKS)
    assert d.action is Action.STOP


# --- mid-stream ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [ErrorClass.TIMEOUT, ErrorClass.CONNECTION, ErrorClass.PROTOCOL, ErrorClass.UNAVAILABLE]
)
def test_cut_after_bytes_continues_on_a_prefill_deployment(cls):
    d = decide(cls, bytes_sent=True, has_alternative=True, prefill_alternative=True)
    assert d.action is Action.CONTINUE


def test_cut_after_bytes_without_prefill_ends_with_an_error():
    d = decide(ErrorClass.TIMEOUT, bytes_sent=True, has_alternative=True, fallbacks=ALL_FALLBACKS)
    assert d.action is Action.STOP and not d.report_original


def test_cut_before_bytes_restarts_cleanly():
    assert decide(ErrorClass.TIMEOUT, has_alternative=True).action is Action.FAILOVER


def test_failed_continuation_reports_the_original_error():
    d = decide(
        ErrorClass.BAD_REQUEST,
        is_continuation=True,
        bytes_sent=True,
        prefill_alternative=True,
        message="prefill not supported",
    )
    assert d.action is Action.STOP and d.report_original


def test_content_filter_mid_stream_stops():
    d = decide(ErrorClass.CONTENT_FILTER, bytes_sent=True, prefill_alternative=True)
    assert d.action is Action.STOP


# --- budgets ------------------------------------------------------------------------------------


def test_num_retries_bounds_retries_and_failovers():
    pol = policy(num_retries=2)
    assert decide(ErrorClass.UNAVAILABLE, pol, attempts=2, has_alternative=True).action is (
        Action.FAILOVER
    )
    spent = decide(ErrorClass.UNAVAILABLE, pol, attempts=3, has_alternative=True)
    assert spent.action is Action.STOP and "2 retries" in spent.reason
    assert decide(ErrorClass.SERVER_ERROR, policy(num_retries=0)).action is Action.STOP
    cont = decide(ErrorClass.TIMEOUT, pol, attempts=3, bytes_sent=True, prefill_alternative=True)
    assert cont.action is Action.STOP


def test_deadline_stops_everything():
    pol = policy(deadline_s=30.0)
    d = decide(ErrorClass.UNAVAILABLE, pol, elapsed_s=30.0, has_alternative=True)
    assert d.action is Action.STOP and "deadline" in d.reason


def test_backoff_that_crosses_the_deadline_is_not_taken():
    pol = RetryPolicy(deadline_s=1.0, backoff_base_s=100.0, backoff_cap_s=100.0)
    pol.rng.seed(1)
    d = decide(ErrorClass.SERVER_ERROR, pol, elapsed_s=0.99, has_alternative=True)
    assert d.action is Action.FAILOVER


def test_policy_validation():
    with pytest.raises(ValueError):
        RetryPolicy(num_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(same_deployment_tries=0)


@given(st.integers(0, 20), st.integers(0, 2**32))
def test_full_jitter_bounds(retry, seed):
    pol = RetryPolicy(backoff_base_s=0.25, backoff_cap_s=5.0, rng=random.Random(seed))
    delay = pol.backoff(retry)
    assert 0.0 <= delay <= min(5.0, 0.25 * 2**retry)


def test_full_jitter_spreads_over_the_whole_range():
    pol = policy(backoff_base_s=1.0, backoff_cap_s=8.0)
    delays = [pol.backoff(3) for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5
    assert sum(delays) / len(delays) == pytest.approx(4.0, rel=0.1)


_ATTEMPTS = st.builds(
    Attempt,
    error_class=st.sampled_from(list(ErrorClass)),
    http_status=st.none() | st.integers(400, 599),
    retry_after_s=st.none() | st.floats(0, 1000),
    bytes_sent=st.booleans(),
    is_continuation=st.booleans(),
    elapsed_s=st.floats(0, 700),
    attempts=st.integers(1, 6),
    same_deployment_attempts=st.integers(1, 6),
    has_alternative=st.booleans(),
    prefill_alternative=st.booleans(),
    fallbacks=st.frozensets(st.sampled_from(list(FallbackKind))),
)


@settings(max_examples=500)
@given(_ATTEMPTS)
def test_decisions_respect_every_rule(attempt):
    pol = policy(num_retries=2, deadline_s=600.0)
    d = pol.decide(attempt)
    assert d.delay_s >= 0
    if d.delay_s:
        assert d.action is Action.RETRY and attempt.elapsed_s + d.delay_s < 600.0
    if d.action in (Action.RETRY, Action.FAILOVER, Action.CONTINUE):
        assert attempt.attempts <= 2  # num_retries
    if d.action is Action.RETRY:
        assert attempt.error_class not in (ErrorClass.TIMEOUT, ErrorClass.CONTEXT_LENGTH)
        if attempt.error_class is ErrorClass.CONNECTION:
            assert not attempt.has_alternative and d.delay_s >= pol.backoff_base_s
        assert not attempt.bytes_sent  # never restart output the client already has
    if d.action is Action.FAILOVER:
        assert attempt.has_alternative and not attempt.bytes_sent
    if d.action is Action.CONTINUE:
        assert attempt.bytes_sent and attempt.prefill_alternative
    if d.action is Action.FALLBACK:
        assert d.fallback in attempt.fallbacks and not attempt.bytes_sent
    if attempt.error_class in (ErrorClass.BAD_REQUEST,) and not attempt.is_continuation:
        assert d.action is Action.STOP
