"""Google Gemini API (generativelanguage v1beta) wire format."""

from __future__ import annotations

from typing import Any

from llmpulse.sim.common import Limit, Plan, dumps, retry_seconds
from llmpulse.sim.scenario import ModelBehavior

STREAM_CONTENT_TYPE = "text/event-stream"
MALFORMED = b'data: {"candidates":[{"content":{"parts":[{"text":\n\n'
# A function call finishes with STOP: Gemini has no finish reason of its own for it.
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY", "tool_calls": "STOP"}
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    529: "UNAVAILABLE",
}
_OVERLOADED = "The model is overloaded. Please try again later."
_QUOTA = "You exceeded your current quota, please check your plan and billing details."
# kind -> (status, message template); templates see model, cw, n.
_ERRORS: dict[str, tuple[int, str]] = {
    "400": (400, "Request contains an invalid argument."),
    "401": (400, "API key not valid. Please pass a valid API key."),
    "403": (403, "The caller does not have permission"),
    "404": (
        404,
        "models/{model} is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
    ),
    "408": (408, "Deadline expired before operation could complete."),
    "413": (413, "Request payload size exceeds the limit."),
    "422": (422, "Request contains an invalid argument."),
    "429": (429, _QUOTA),
    "500": (
        500,
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    "502": (502, _OVERLOADED),
    "503": (503, _OVERLOADED),
    "504": (504, "Deadline expired before operation could complete."),
    "529": (529, _OVERLOADED),
    "overloaded": (503, _OVERLOADED),
    "insufficient_quota": (429, _QUOTA),
    "context_length": (
        400,
        "The input token count ({n}) exceeds the maximum number of tokens allowed ({cw}).",
    ),
    "content_policy": (400, "The request was blocked by the content_filter (SAFETY)."),
}
_ERRORS["auth"] = _ERRORS["401"]
_ERRORS["not_found"] = _ERRORS["404"]


def max_tokens(body: dict[str, Any]) -> int | None:
    cfg = body.get("generationConfig") or body.get("generation_config") or {}
    value = (
        cfg.get("maxOutputTokens", cfg.get("max_output_tokens")) if isinstance(cfg, dict) else None
    )
    return value if isinstance(value, int) else None


def validate(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("contents"), list) or not body["contents"]:
        return "* GenerateContentRequest.contents: contents is not specified"
    return None


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    # Gemini sends no rate-limit headers; x-request-id only cross-references ground truth.
    return {"x-request-id": p.request_id}


def retry_headers(seconds: float) -> dict[str, str]:
    return {}  # Gemini carries the delay in a google.rpc.RetryInfo detail instead


_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"


def _quota_failure(model: str, per_day: bool) -> dict[str, Any]:
    period = "PerDay" if per_day else "PerMinute"
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": _METRIC,
                "quotaId": f"GenerateRequests{period}PerProjectPerModel-FreeTier",
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": "250" if per_day else "10",
            }
        ],
    }


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, text = _ERRORS.get(kind, _ERRORS["400"])
    cw = p.behavior.context_window
    n = p.input_tokens if p.input_tokens > cw else cw + p.input_tokens
    details: list[dict[str, Any]] = []
    if kind in ("auth", "401"):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    if status == 429:
        details.append(_quota_failure(p.model, kind == "insufficient_quota"))
    retry = p.behavior.retry_after
    if retry is not None and status in (429, 503, 529):
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": retry_seconds(retry) + "s",
            }
        )
    body: dict[str, Any] = {
        "error": {
            "code": status,
            "message": message or text.format(model=p.model, cw=cw, n=n),
            "status": STATUS[status],
        }
    }
    if details:
        body["error"]["details"] = details
    return status, body


def _usage(p: Plan, candidates: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "promptTokenCount": p.input_tokens,
        "candidatesTokenCount": candidates,
        "totalTokenCount": p.input_tokens + candidates + p.reasoning_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": p.input_tokens}],
    }
    if p.cached_tokens:
        usage["cachedContentTokenCount"] = p.cached_tokens
    if p.reasoning_tokens:
        usage["thoughtsTokenCount"] = p.reasoning_tokens
    return usage


def _response(p: Plan, text: str, candidates: int, finish: bool) -> dict[str, Any]:
    part: dict[str, Any] = {"text": text}
    if p.tool is not None:
        part = {"functionCall": {"name": p.tool.name, "args": p.tool.arguments}}
    cand: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = FINISH[p.finish]
    return {
        "candidates": [cand],
        "usageMetadata": _usage(p, candidates),
        "modelVersion": p.served_model,
        "responseId": p.request_id,
    }


def completion(p: Plan) -> dict[str, Any]:
    return _response(p, p.text(), p.text_tokens, True)


class Stream:
    """Each SSE event is a whole GenerateContentResponse; the last one has finishReason."""

    def __init__(self, p: Plan) -> None:
        self.p = p

    def head(self) -> bytes:
        return b""

    def token(self, i: int, last: bool) -> bytes:
        if self.p.tool is not None and not last:
            return b""  # Gemini streams a function call whole, never its arguments in parts
        obj = _response(self.p, self.p.piece(i), i + 1, last)
        return ("data: " + dumps(obj) + "\r\n\r\n").encode()

    def tail(self, done: bool) -> bytes:
        # Gemini has no terminal event (the stream just ends), so ``done`` changes nothing here.
        # With tokens, finishReason rode on the last token chunk (as the real API does).
        if self.p.text_tokens:
            return b""
        return ("data: " + dumps(_response(self.p, "", 0, True)) + "\r\n\r\n").encode()

    def error_event(self) -> bytes:
        err = {"error": {"code": 503, "message": _OVERLOADED, "status": "UNAVAILABLE"}}
        return ("data: " + dumps(err) + "\r\n\r\n").encode()


def models(items: dict[str, ModelBehavior], created: int) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": f"models/{name}",
                "version": "001",
                "displayName": name,
                "description": "Simulated by llmpulse.",
                "inputTokenLimit": b.context_window,
                "outputTokenLimit": b.max_output_tokens,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
                "thinking": b.reasoning_tokens > 0,
            }
            for name, b in items.items()
        ]
    }
