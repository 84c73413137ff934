from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmpulse.ratelimit import parse_ratelimit, parse_reset, parse_retry_after

NOW = 1_800_000_000.0


def test_openai_headers():
    rl = parse_ratelimit(
        {
            "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499",
            "x-ratelimit-reset-requests": "120ms",
            "x-ratelimit-limit-tokens": "200000",
            "x-ratelimit-remaining-tokens": "50000",
            "x-ratelimit-reset-tokens": "2m59.56s",
        },
        now=NOW,
    )
    assert rl is not None
    assert (rl.requests_limit, rl.requests_remaining) == (500, 499)
    assert (rl.tokens_limit, rl.tokens_remaining) == (200000, 50000)
    assert rl.utilization == pytest.approx(0.75)  # worst dimension: tokens
    assert rl.reset_s == pytest.approx(179.56)  # reset of that worst dimension


def test_groq_daily_requests_and_minute_tokens():
    rl = parse_ratelimit(
        {
            "x-ratelimit-limit-requests": "14400",
            "x-ratelimit-remaining-requests": "1440",
            "x-ratelimit-reset-requests": "1h2m3s",
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "5900",
            "x-ratelimit-reset-tokens": "1s",
        },
        now=NOW,
    )
    assert rl.utilization == pytest.approx(0.9)
    assert rl.reset_s == pytest.approx(3723)


def test_anthropic_headers_with_rfc3339_reset():
    reset = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=30)
    rl = parse_ratelimit(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "10",
            "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
            "anthropic-ratelimit-tokens-limit": "100000",
            "anthropic-ratelimit-tokens-remaining": "90000",
            "anthropic-ratelimit-input-tokens-limit": "80000",
            "anthropic-ratelimit-input-tokens-remaining": "79000",
            "anthropic-ratelimit-output-tokens-limit": "20000",
            "anthropic-ratelimit-output-tokens-remaining": "19000",
        },
        now=NOW,
    )
    assert (rl.requests_limit, rl.requests_remaining) == (50, 10)
    assert (rl.tokens_limit, rl.tokens_remaining) == (100000, 90000)
    assert rl.utilization == pytest.approx(0.8)
    assert rl.reset_s == pytest.approx(30)


def test_mistral_minute_headers():
    rl = parse_ratelimit(
        {
            "x-ratelimit-limit-req-minute": "60",
            "x-ratelimit-remaining-req-minute": "30",
            "x-ratelimit-limit-tokens-minute": "500000",
            "x-ratelimit-remaining-tokens-minute": "400000",
        },
        now=NOW,
    )
    assert (rl.requests_limit, rl.requests_remaining) == (60, 30)
    assert (rl.tokens_limit, rl.tokens_remaining) == (500000, 400000)
    assert rl.utilization == pytest.approx(0.5)


def test_no_headers_means_none():
    assert parse_ratelimit({"content-type": "application/json"}) is None


def test_retry_after_variants():
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    date = "Wed, 21 Oct 2026 07:28:00 GMT"
    when = datetime(2026, 10, 21, 7, 28, tzinfo=UTC).timestamp()
    assert parse_retry_after({"retry-after": date}, now=when - 12) == pytest.approx(12)
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_reset_epochs():
    assert parse_reset(str(int((NOW + 5) * 1000)), NOW) == pytest.approx(5)
    assert parse_reset(str(int(NOW + 8)), NOW) == pytest.approx(8)
    assert parse_reset("garbage", NOW) is None


_NAMES = st.sampled_from(
    [
        "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens", "anthropic-ratelimit-tokens-limit",
        "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset",
        "retry-after", "retry-after-ms", "x-ratelimit-limit", "x-ratelimit-",
    ]
)  # fmt: skip


@given(st.dictionaries(_NAMES, st.text(max_size=40), max_size=10))
def test_header_parsers_never_raise_on_garbage(headers):
    rl = parse_ratelimit(headers, now=NOW)
    if rl is not None and rl.utilization is not None:
        assert 0.0 <= rl.utilization <= 1.0
    retry = parse_retry_after(headers, now=NOW)
    assert retry is None or retry >= 0


@given(st.integers(1, 10**9), st.integers(0, 10**9))
def test_utilization_is_one_minus_remaining_over_limit(limit, remaining):
    remaining = min(remaining, limit)
    rl = parse_ratelimit(
        {"x-ratelimit-limit-tokens": str(limit), "x-ratelimit-remaining-tokens": str(remaining)}
    )
    assert rl.utilization == pytest.approx(1 - remaining / limit, abs=1e-4)
