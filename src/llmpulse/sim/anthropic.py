"""Anthropic Messages wire format."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmpulse.sim.common import (
    MARK,
    Limit,
    Plan,
    dumps,
    new_id,
    retry_seconds,
    rfc3339_in,
    template,
)
from llmpulse.sim.scenario import ModelBehavior, ToolCall

STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
MALFORMED = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{\n\n'
)
FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "refusal",
    "tool_calls": "tool_use",
}

# kind -> (status, error type, message template); templates see model, cw, n.
_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "invalid_request_error", "Invalid request (simulated)."),
    "401": (401, "authentication_error", "invalid x-api-key"),
    "403": (
        403,
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    "404": (404, "not_found_error", "model: {model}"),
    "408": (408, "timeout_error", "Request timed out."),
    "413": (413, "request_too_large", "Request exceeds the maximum allowed number of bytes."),
    "422": (422, "invalid_request_error", "Unprocessable request."),
    "429": (
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per "
        "minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.",
    ),
    "500": (500, "api_error", "Internal server error"),
    "502": (502, "api_error", "Bad gateway"),
    "503": (503, "overloaded_error", "Overloaded"),
    "504": (504, "timeout_error", "Request timed out"),
    "529": (529, "overloaded_error", "Overloaded"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "insufficient_quota": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    ),
    "context_length": (
        400,
        "invalid_request_error",
        "prompt is too long: {n} tokens > {cw} maximum",
    ),
    "content_policy": (400, "invalid_request_error", "Output blocked by content filtering policy"),
    "missing_version": (400, "invalid_request_error", "anthropic-version: header is required"),
}
_ERRORS["auth"] = _ERRORS["401"]
_ERRORS["not_found"] = _ERRORS["404"]


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_tokens")
    return value if isinstance(value, int) else None


def validate(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    return None


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    out = {"request-id": p.request_id}
    for lim in limits:
        prefix = f"anthropic-ratelimit-{lim.name}"
        out[f"{prefix}-limit"] = str(lim.limit)
        out[f"{prefix}-remaining"] = str(lim.remaining)
        out[f"{prefix}-reset"] = rfc3339_in(lim.reset)
    return out


def retry_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": retry_seconds(seconds)}


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, etype, text = _ERRORS.get(kind, _ERRORS["400"])
    cw = p.behavior.context_window
    n = p.input_tokens if p.input_tokens > cw else cw + p.input_tokens
    text = message or text.format(model=p.model, cw=cw, n=n)
    body = {"type": "error", "error": {"type": etype, "message": text}, "request_id": p.request_id}
    return status, body


def _usage(p: Plan, output_tokens: int) -> dict[str, Any]:
    # Anthropic's input_tokens excludes cache reads, which are reported separately.
    return {
        "input_tokens": p.input_tokens - p.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": p.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _message(p: Plan, mid: str, content: list[Any], stop: str | None, out: int) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": p.served_model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": _usage(p, out),
    }


def _tool_use(tool: ToolCall, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": new_id("toolu_"), "name": tool.name, "input": arguments}


def completion(p: Plan) -> dict[str, Any]:
    content = [{"type": "text", "text": p.text()}]
    if p.tool is not None:
        content = [_tool_use(p.tool, p.tool.arguments)]
    out = p.text_tokens + p.reasoning_tokens
    return _message(p, new_id("msg_"), content, FINISH[p.finish], out)


def _event(name: str, obj: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {dumps(obj)}\n\n"


class Stream:
    """Per-request stream encoder for the named-event Messages stream."""

    def __init__(self, p: Plan) -> None:
        self.p = p
        delta = {"type": "text_delta", "text": MARK}
        if p.tool is not None:
            delta = {"type": "input_json_delta", "partial_json": MARK}
        pre, suf = template({"type": "content_block_delta", "index": 0, "delta": delta})
        self.pre, self.suf = "event: content_block_delta\ndata: " + pre, suf + "\n\n"

    def head(self) -> bytes:
        msg = _message(self.p, new_id("msg_"), [], None, 1)
        block: dict[str, Any] = {"type": "text", "text": ""}
        if self.p.tool is not None:  # the block opens with empty input; partial JSON follows
            block = _tool_use(self.p.tool, {})
        return (
            _event("message_start", {"type": "message_start", "message": msg})
            + _event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            )
            + _event("ping", {"type": "ping"})
        ).encode()

    def token(self, i: int, last: bool) -> bytes:
        piece = dumps(self.p.tool_args[i]) if self.p.tool else self.p.piece_json(i)
        return (self.pre + piece + self.suf).encode()

    def tail(self, done: bool) -> bytes:
        p = self.p
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": FINISH[p.finish], "stop_sequence": None},
            "usage": {"output_tokens": p.text_tokens + p.reasoning_tokens},
        }
        out = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
        out += _event("message_delta", delta)
        if done:
            out += _event("message_stop", {"type": "message_stop"})
        return out.encode()

    def error_event(self) -> bytes:
        err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return _event("error", err).encode()


def models(items: dict[str, ModelBehavior], created: int) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    data = [
        {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": stamp,
            "max_input_tokens": b.context_window,
            "max_tokens": b.max_output_tokens,
        }
        for name, b in items.items()
    ]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
