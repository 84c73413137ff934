import pytest

from llmpulse.errors import ErrorClass, classify


@pytest.mark.parametrize(
    ("status", "err_type", "code", "message", "expected"),
    [
        (429, "requests", "rate_limit_exceeded", "Rate limit reached", ErrorClass.RATE_LIMITED),
        (
            429,
            "insufficient_quota",
            "insufficient_quota",
            "You exceeded your current quota",
            ErrorClass.QUOTA,
        ),
        (401, "invalid_request_error", "invalid_api_key", "Incorrect API key", ErrorClass.AUTH),
        (403, "permission_error", None, "no access", ErrorClass.AUTH),
        (400, "INVALID_ARGUMENT", "API_KEY_INVALID", "API key not valid", ErrorClass.AUTH),
        (
            400,
            "invalid_request_error",
            None,
            "Your credit balance is too low to access the API",
            ErrorClass.QUOTA,
        ),
        (402, "billing_error", None, "pay up", ErrorClass.QUOTA),
        (
            400,
            "invalid_request_error",
            "context_length_exceeded",
            "too long",
            ErrorClass.CONTEXT_LENGTH,
        ),
        (
            400,
            "invalid_request_error",
            None,
            "prompt is too long: 300000 tokens > 200000 maximum",
            ErrorClass.CONTEXT_LENGTH,
        ),
        (400, "invalid_request_error", "content_filter", "filtered", ErrorClass.CONTENT_FILTER),
        (400, "invalid_request_error", None, "bad", ErrorClass.BAD_REQUEST),
        (404, "not_found_error", None, "model: x", ErrorClass.BAD_REQUEST),
        (413, "request_too_large", None, "big", ErrorClass.BAD_REQUEST),
        (422, None, None, "unprocessable", ErrorClass.BAD_REQUEST),
        (408, None, None, "timeout", ErrorClass.TIMEOUT),
        (500, "api_error", None, "Internal", ErrorClass.SERVER_ERROR),
        (500, "api_error", None, "Overloaded", ErrorClass.UNAVAILABLE),
        (501, None, None, "", ErrorClass.SERVER_ERROR),
        (502, None, None, "", ErrorClass.UNAVAILABLE),
        (503, None, None, "", ErrorClass.UNAVAILABLE),
        (504, None, None, "", ErrorClass.UNAVAILABLE),
        (529, "overloaded_error", None, "Overloaded", ErrorClass.UNAVAILABLE),
        (498, None, None, "flex tier capacity exceeded", ErrorClass.UNAVAILABLE),
        (
            429,
            "RESOURCE_EXHAUSTED",
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "Quota exceeded",
            ErrorClass.QUOTA,
        ),
        (
            429,
            "RESOURCE_EXHAUSTED",
            "GenerateRequestsPerMinutePerProjectPerModel",
            "Quota exceeded",
            ErrorClass.RATE_LIMITED,
        ),
        # In-stream errors arrive after a 200: only the type says what happened.
        (None, "overloaded_error", None, "Overloaded", ErrorClass.UNAVAILABLE),
        (None, "api_error", None, "Internal server error", ErrorClass.SERVER_ERROR),
        (None, "server_error", None, "The server had an error", ErrorClass.SERVER_ERROR),
        (None, "rate_limit_error", None, "slow down", ErrorClass.RATE_LIMITED),
        (None, "UNAVAILABLE", None, "The model is overloaded", ErrorClass.UNAVAILABLE),
    ],
)
def test_classify(status, err_type, code, message, expected):
    assert classify(status, err_type, code, message) is expected


def test_rate_limits_and_quota_are_never_outages():
    assert not ErrorClass.RATE_LIMITED.is_outage
    assert not ErrorClass.QUOTA.is_outage
    assert ErrorClass.UNAVAILABLE.is_outage
    assert ErrorClass.TIMEOUT.is_outage


def test_error_class_strings_are_stable():
    assert [str(c) for c in ErrorClass] == [
        "rate_limited",
        "quota",
        "auth",
        "bad_request",
        "context_length",
        "content_filter",
        "unavailable",
        "server_error",
        "timeout",
        "connection",
        "protocol",
        "assertion",
    ]
    # A wrong answer is its own signal: neither an outage nor a caller limit.
    wrong = ErrorClass.ASSERTION
    assert wrong.is_wrong_answer and not wrong.is_outage and not wrong.is_caller_limit
    assert [c for c in ErrorClass if c.is_wrong_answer] == [wrong]
