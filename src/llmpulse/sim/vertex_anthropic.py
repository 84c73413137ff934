"""Claude on Vertex AI: Anthropic's Messages format at ``rawPredict``/``streamRawPredict``.

The body is Anthropic's without ``model`` (the URL names it) and with ``anthropic_version:
vertex-2023-10-16``; answers, stream events and the model's own errors (invalid requests,
overloaded) are Anthropic's. What Vertex answers before the model is reached (a missing or
expired token, a quota, an unknown model) is Google's google.rpc.Status (``sim.vertex``).
"""

from __future__ import annotations

from typing import Any

from llmpulse.sim import anthropic
from llmpulse.sim.anthropic import MALFORMED, STREAM_CONTENT_TYPE, Stream, completion, max_tokens
from llmpulse.sim.common import Limit, Plan
from llmpulse.sim.vertex import GOOGLE_KINDS, vertex_error

__all__ = [
    "MALFORMED",
    "STREAM_CONTENT_TYPE",
    "Stream",
    "completion",
    "error",
    "headers",
    "max_tokens",
    "retry_headers",
    "validate",
]

VERSION = "vertex-2023-10-16"


def validate(body: dict[str, Any]) -> str | None:
    if body.get("anthropic_version") != VERSION:
        return f"anthropic_version: Input should be '{VERSION}'"
    if "model" in body:
        # The SDK (lib/vertex) takes the model out of the body: it is the URL's.
        return "model: Extra inputs are not permitted"
    return anthropic.validate(body)


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    return {"request-id": p.request_id}  # Vertex sends none of Anthropic's rate-limit headers


def retry_headers(seconds: float) -> dict[str, str]:
    return anthropic.retry_headers(seconds)


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, Any]:
    if kind in GOOGLE_KINDS:
        return vertex_error(kind, "anthropic", p, message)
    return anthropic.error(kind, p, message)
