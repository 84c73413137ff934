"""OpenAI Chat Completions wire format (also used for Azure OpenAI and Groq-style servers)."""

from __future__ import annotations

from typing import Any

from llmpulse.sim.common import (
    MARK,
    Limit,
    Plan,
    dumps,
    go_duration,
    new_id,
    retry_seconds,
    template,
)
from llmpulse.sim.scenario import ModelBehavior

STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"
MALFORMED = b'data: {"id":"chatcmpl-broken","choices":[{"delta":{"content":"oo\n\n'

_500 = "The server had an error while processing your request. Sorry about that!"
_STREAM_ERROR = {"error": {"message": _500, "type": "server_error", "param": None, "code": None}}
STREAM_ERROR = ("data: " + dumps(_STREAM_ERROR) + "\n\n").encode()
_OVERLOADED = "The server is overloaded or not ready yet."
# kind -> (status, type, code, message template); templates see model, cw, n, retry.
_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "400": (400, "invalid_request_error", None, "Invalid request (simulated)."),
    "401": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    ),
    "403": (
        403,
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    "404": (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    "408": (408, "timeout", None, "Request timed out."),
    "413": (413, "invalid_request_error", None, "Request too large."),
    "422": (422, "invalid_request_error", None, "Unprocessable request."),
    "429": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-sim on requests per min (RPM): "
        "Limit 500, Used 500, Requested 1. Please try again in {retry}.",
    ),
    "500": (500, "server_error", None, _500),
    "502": (502, "server_error", None, "Bad gateway."),
    "503": (503, "server_error", None, _OVERLOADED),
    "504": (504, "server_error", None, "Gateway timeout."),
    "529": (529, "server_error", None, _OVERLOADED),
    "overloaded": (503, "server_error", None, _OVERLOADED),
    "insufficient_quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
    ),
    "context_length": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is {cw} tokens. However, your messages resulted "
        "in {n} tokens. Please reduce the length of the messages.",
    ),
    "content_policy": (
        400,
        "invalid_request_error",
        "content_policy_violation",
        "Your request was rejected as a result of our safety system.",
    ),
}
_ERRORS["auth"] = _ERRORS["401"]
_ERRORS["not_found"] = _ERRORS["404"]


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    return value if isinstance(value, int) else None


def validate(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "Missing required parameter: 'messages'."
    return None


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    out = {"x-request-id": p.request_id, "openai-processing-ms": str(int(p.latency * 1000))}
    for lim in limits:
        if lim.name in ("requests", "tokens"):
            out[f"x-ratelimit-limit-{lim.name}"] = str(lim.limit)
            out[f"x-ratelimit-remaining-{lim.name}"] = str(lim.remaining)
            out[f"x-ratelimit-reset-{lim.name}"] = go_duration(lim.reset)
    return out


def retry_headers(seconds: float) -> dict[str, str]:
    return {"retry-after": retry_seconds(seconds), "retry-after-ms": str(int(seconds * 1000))}


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, etype, code, text = _ERRORS.get(kind, _ERRORS["400"])
    b = p.behavior
    n = p.input_tokens if p.input_tokens > b.context_window else b.context_window + p.input_tokens
    retry = go_duration(b.retry_after or 0.12)
    text = message or text.format(model=p.model, cw=b.context_window, n=n, retry=retry)
    param = "messages" if kind == "context_length" else None
    return status, {"error": {"message": text, "type": etype, "param": param, "code": code}}


def _usage(p: Plan) -> dict[str, Any]:
    completion = p.text_tokens + p.reasoning_tokens
    return {
        "prompt_tokens": p.input_tokens,
        "completion_tokens": completion,
        "total_tokens": p.input_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": p.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": p.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(p: Plan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": p.text()}
    if p.refusal:
        message = {"role": "assistant", "content": None, "refusal": p.text()}
    elif p.tool is not None:
        function = {"name": p.tool.name, "arguments": "".join(p.tool_args)}
        call = {"id": new_id("call_"), "type": "function", "function": function}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": p.created,
        "model": p.served_model,
        "choices": [
            {
                "index": 0,
                "message": {**message, "refusal": message.get("refusal"), "annotations": []},
                "logprobs": None,
                "finish_reason": _finish(p),
            }
        ],
        "usage": _usage(p),
        "service_tier": "default",
        "system_fingerprint": p.behavior.system_fingerprint,
    }


def _finish(p: Plan) -> str:
    """A refusal finishes as any answer does: what says it is the refusal field."""
    return "stop" if p.refusal else p.finish


def _chunk_base(p: Plan, cid: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": p.created,
        "model": p.served_model,
        "service_tier": "default",
        "system_fingerprint": p.behavior.system_fingerprint,
    }


def _choice(delta: dict[str, Any], finish: str | None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


class Stream:
    """Per-request stream encoder; the constant parts of each chunk are formatted once."""

    def __init__(self, p: Plan) -> None:
        self.p = p
        self.base = _chunk_base(p, new_id("chatcmpl-"))
        if p.include_usage:
            self.base["usage"] = None  # real streams carry usage:null until the usage chunk
        delta: dict[str, Any] = {"content": MARK}
        if p.refusal:
            delta = {"refusal": MARK}
        elif p.tool is not None:  # argument fragments stream in the call's function
            delta = {"tool_calls": [{"index": 0, "function": {"arguments": MARK}}]}
        pre, suf = template({**self.base, "choices": _choice(delta, None)})
        self.pre, self.suf = "data: " + pre, suf + "\n\n"

    def _event(self, obj: dict[str, Any]) -> bytes:
        return ("data: " + dumps(obj) + "\n\n").encode()

    def head(self) -> bytes:
        delta: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        tool = self.p.tool
        if self.p.refusal:
            delta = {"role": "assistant", "content": None, "refusal": ""}
        elif tool is not None:  # as OpenAI does: id and name first, arguments still empty
            function = {"name": tool.name, "arguments": ""}
            call = {"index": 0, "id": new_id("call_"), "type": "function", "function": function}
            delta = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        return self._event({**self.base, "choices": _choice(delta, None)})

    def token(self, i: int, last: bool) -> bytes:
        piece = dumps(self.p.tool_args[i]) if self.p.tool else self.p.piece_json(i)
        return (self.pre + piece + self.suf).encode()

    def tail(self, done: bool) -> bytes:
        p = self.p
        final: dict[str, Any] = {**self.base, "choices": _choice({}, _finish(p))}
        if p.behavior.x_groq:
            # Groq reports usage in x_groq on the final chunk even without stream_options.
            u = _usage(p)
            final["x_groq"] = {
                "id": p.request_id,
                "usage": {
                    "queue_time": 0.0,
                    "prompt_tokens": u["prompt_tokens"],
                    "prompt_time": 0.0,
                    "completion_tokens": u["completion_tokens"],
                    "completion_time": round(p.text_tokens / p.tokens_per_s, 6),
                    "total_tokens": u["total_tokens"],
                    "total_time": round(p.ttft + p.text_tokens / p.tokens_per_s, 6),
                },
            }
        out = self._event(final)
        if p.include_usage:
            out += self._event({**self.base, "choices": [], "usage": _usage(p)})
        return out + b"data: [DONE]\n\n" if done else out

    def error_event(self) -> bytes:
        return STREAM_ERROR


def models(items: dict[str, ModelBehavior], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "llmpulse-sim"}
            for name in items
        ],
    }
