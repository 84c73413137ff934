"""The one definition of an error class, and the rules that map provider errors onto it.

Provider modules only extract (status, error type, error code, message) from their own error
shapes; ``classify`` decides the class so that every protocol is judged by the same rules.
"""

from __future__ import annotations

import enum


class ErrorClass(enum.StrEnum):
    """Stable strings stored with every result and used by alert rules."""

    RATE_LIMITED = "rate_limited"
    QUOTA = "quota"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    CONTEXT_LENGTH = "context_length"
    CONTENT_FILTER = "content_filter"
    UNAVAILABLE = "unavailable"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    PROTOCOL = "protocol"
    # A 200 whose answer failed a probe's expectation: "it answers, but wrong". Counted in the
    # correctness rate, never in availability or the error rate.
    ASSERTION = "assertion"

    @property
    def is_outage(self) -> bool:
        """Whether this class counts as downtime of the provider.

        Rate limits and exhausted quotas are the caller's limits, not the provider being down;
        client-side mistakes (bad request, auth, context length, content filter) are not outages.
        """
        return self in _OUTAGE

    @property
    def is_wrong_answer(self) -> bool:
        """An answer that failed an expectation: the correctness rate's signal alone."""
        return self is ErrorClass.ASSERTION

    @property
    def is_caller_limit(self) -> bool:
        """The caller's own limits (429, exhausted quota): excluded from error rates."""
        return self in (ErrorClass.RATE_LIMITED, ErrorClass.QUOTA)


_OUTAGE = frozenset(
    {
        ErrorClass.UNAVAILABLE,
        ErrorClass.SERVER_ERROR,
        ErrorClass.TIMEOUT,
        ErrorClass.CONNECTION,
        ErrorClass.PROTOCOL,
    }
)

# Substrings of error types/codes/messages, lower-cased, that decide a class regardless of status.
# Not "exceeded your current quota": Gemini says that on every 429, per-minute limits included.
_QUOTA_MARKERS = (
    "insufficient_quota",
    "billing_error",
    "credit balance is too low",
    "insufficient balance",
    "insufficient_balance",
    "spend limit",
    # Daily caps: Gemini's quotaId (…PerDay…), OpenAI/Groq "requests per day (RPD)" messages.
    # Hours away from resetting, they stop traffic like an empty balance does.
    "perday",
    "per day",
    # AWS: an account's service quota (HTTP 400), not a per-minute throttle.
    "servicequotaexceeded",
)
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "prompt is too long",
    "exceeds the maximum number of tokens",
    "context window",
    "context limit",
    "maximum prompt length",
    "input is too long",  # Bedrock's ValidationException for an oversized prompt
)
_CONTENT_FILTER_MARKERS = (
    "content_filter",
    "content_policy_violation",
    "responsibleaipolicyviolation",
)
# Gemini answers a bad key with 400 INVALID_ARGUMENT and this reason, not with 401.
_AUTH_MARKERS = (
    "api_key_invalid",
    "invalid_api_key",
    "authentication_error",
    # AWS: unknown access key, expired session token, bad SigV4 signature, IAM denial.
    "unrecognizedclient",
    "expiredtoken",
    "invalidsignature",
    "accessdenied",
)
_OVERLOADED_MARKERS = ("overloaded", "unavailable", "capacity")
# Bedrock's ModelNotReadyException comes as a 429, but the model is loading, not throttling us.
_NOT_READY_MARKERS = ("modelnotready",)
# Bedrock's ModelErrorException (HTTP 424): the model failed on a valid request.
_MODEL_FAILED_MARKERS = ("modelerrorexception",)


def classify(
    status: int | None,
    err_type: str | None = None,
    code: str | None = None,
    message: str | None = None,
) -> ErrorClass:
    """Map a provider error to its class.

    ``status`` is the HTTP status, or None for an error event inside a 200 stream, where
    the error type is all there is to go on.
    """
    hay = " ".join(s for s in (err_type, code, message) if s).lower()
    if any(m in hay for m in _QUOTA_MARKERS):
        return ErrorClass.QUOTA
    if any(m in hay for m in _CONTEXT_MARKERS) and status in (None, 400, 413, 422):
        return ErrorClass.CONTEXT_LENGTH
    if any(m in hay for m in _CONTENT_FILTER_MARKERS) and status in (None, 400, 422):
        return ErrorClass.CONTENT_FILTER
    if status is None:
        return _classify_stream_error(hay)
    if any(m in hay for m in _AUTH_MARKERS):
        return ErrorClass.AUTH
    if any(m in hay for m in _NOT_READY_MARKERS):
        return ErrorClass.UNAVAILABLE
    if any(m in hay for m in _MODEL_FAILED_MARKERS):
        return ErrorClass.SERVER_ERROR
    if status == 429:
        return ErrorClass.RATE_LIMITED
    if status in (401, 403):
        return ErrorClass.AUTH
    if status == 402:
        return ErrorClass.QUOTA
    if status == 408:
        return ErrorClass.TIMEOUT
    # Groq's 498 is "flex tier capacity exceeded": the provider cannot serve right now.
    if status in (502, 503, 504, 529, 498):
        return ErrorClass.UNAVAILABLE
    if status >= 500:
        return ErrorClass.UNAVAILABLE if "overloaded" in hay else ErrorClass.SERVER_ERROR
    return ErrorClass.BAD_REQUEST


def _classify_stream_error(hay: str) -> ErrorClass:
    if (
        "rate_limit" in hay
        or "rate limit" in hay
        or "resource_exhausted" in hay
        or "throttling" in hay  # AWS ThrottlingException
    ):
        return ErrorClass.RATE_LIMITED
    if any(m in hay for m in _OVERLOADED_MARKERS):
        return ErrorClass.UNAVAILABLE
    if "timeout" in hay or "deadline" in hay:
        return ErrorClass.TIMEOUT
    if "authentication" in hay or "permission" in hay or "accessdenied" in hay:
        return ErrorClass.AUTH
    if "invalid_request" in hay or "invalid_argument" in hay or "validationexception" in hay:
        return ErrorClass.BAD_REQUEST
    return ErrorClass.SERVER_ERROR
