"""OpenAI's Responses API (``POST /v1/responses``), read by the OpenAI protocol.

Reference: openai-python (``types/responses/response_stream_event.py``, ``response.py``,
``response_error_event.py``, ``_streaming.py``): named SSE events whose data carries the same
``type``; the answer's text in ``response.output_text.delta``; the whole Response, usage
included, only in the terminal ``response.completed``, ``response.incomplete`` or
``response.failed``; an ``error`` event (``{type, code, message, param}``) for a failure the
response object does not carry.
"""

from __future__ import annotations

from typing import Any

from llmpulse.errors import classify
from llmpulse.providers.base import (
    Completion,
    ProtocolError,
    ProviderError,
    StreamParser,
    StreamUpdate,
    get_int,
    get_str,
    loads_object,
)
from llmpulse.result import Usage
from llmpulse.secrets import PRE_CLIP_CHARS
from llmpulse.sse import SSEEvent

# The stream's end: the Response in its final state (``response.incomplete``: cut short, by the
# token budget or a content filter; ``response.failed``: an error, in ``response.error``).
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_FILTER_REASON = "content_filter"


class ResponsesStreamParser(StreamParser):
    def feed(self, event: SSEEvent) -> StreamUpdate:
        if event.data.startswith("[DONE]"):
            # Chat's end marker, which compatible servers may append (the SDK skips it too);
            # the stream is whole only if a terminal event came before it.
            return StreamUpdate()
        data = loads_object(event.data)
        kind = get_str(data, "type") or event.event
        c = self.completion
        if kind == "error" or (kind not in TERMINAL and isinstance(data.get("error"), dict)):
            return StreamUpdate(error=_error_event(data))
        if kind == "response.output_text.delta":
            text = get_str(data, "delta") or ""
            c.add_text(text)  # kept: a probe's expectations read it
            return StreamUpdate(text=text)
        if kind == "response.refusal.delta":
            text = get_str(data, "delta") or ""
            c.refused = c.refused or bool(text)
            c.add_text(text)
            return StreamUpdate(text=text)
        if kind == "response.function_call_arguments.delta":
            return StreamUpdate(tool_chars=len(get_str(data, "delta") or ""))
        if (
            kind == "response.output_item.added"
            and get_str(data, "item", "type") == "function_call"
        ):
            # The call's name comes whole in the item it opens; its arguments follow in deltas.
            name = get_str(data, "item", "name")
            c.add_tool_call(name)
            return StreamUpdate(tool_chars=len(name or ""))
        response = data.get("response")
        if isinstance(response, dict):
            # created / in_progress say the id and model; the terminal events say everything.
            _merge_response(c, response)
        if kind in TERMINAL:
            if not isinstance(response, dict):
                raise ProtocolError(f"{kind} event without a response object")
            self.done = True
            return StreamUpdate(done=True, error=c.error)
        return StreamUpdate()


def parse_response(body: Any) -> Completion:
    """A non-streamed Response: its output items hold the answer (message content parts) and
    the tools called (``function_call`` items)."""
    if not isinstance(body, dict) or get_str(body, "object") not in (None, "response"):
        raise ProtocolError("response is not a Response object")
    output = body.get("output")
    if not isinstance(output, list):
        raise ProtocolError("response has no 'output' list")
    c = Completion()
    _merge_response(c, body)
    for item in output:
        if get_str(item, "type") == "function_call":
            c.add_tool_call(get_str(item, "name"))
        content = item.get("content") if isinstance(item, dict) else None
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "output_text":
                c.add_text(get_str(part, "text") or "")
            elif part.get("type") == "refusal":
                c.refused = True
                c.add_text(get_str(part, "refusal") or "")
    return c


def _merge_response(c: Completion, response: dict[str, Any]) -> None:
    c.response_id = get_str(response, "id") or c.response_id
    c.response_model = get_str(response, "model") or c.response_model
    usage = parse_usage(response.get("usage"))
    if usage is not None:
        c.usage = usage
    status = get_str(response, "status")
    if status == "incomplete":
        reason = get_str(response, "incomplete_details", "reason") or "incomplete"
        c.finish_reason = reason
        c.filtered = reason == _FILTER_REASON
    elif status in ("completed", "failed", "cancelled"):
        c.finish_reason = status
    error = response.get("error")
    if isinstance(error, dict):
        c.error = _error(error)
    elif status in ("failed", "cancelled"):
        c.error = ProviderError(classify(None), f"the response {status} without an error object")


def parse_usage(raw: Any) -> Usage | None:
    """``input_tokens`` include the cached ones, ``output_tokens`` the reasoning ones."""
    if not isinstance(raw, dict):
        return None
    prompt = get_int(raw, "input_tokens")
    output = get_int(raw, "output_tokens")
    if prompt is None and output is None:
        return None
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        cached_tokens=get_int(raw, "input_tokens_details", "cached_tokens"),
        reasoning_tokens=get_int(raw, "output_tokens_details", "reasoning_tokens"),
    )


def _error(err: dict[str, Any]) -> ProviderError:
    """A ResponseError ``{code, message}`` (in ``response.error``) or an error event's fields."""
    message = (get_str(err, "message") or "no message")[:PRE_CLIP_CHARS]
    code = get_str(err, "code")
    err_type = get_str(err, "type")
    if err_type == "error":
        err_type = None  # the error event's own type field, not a kind of error
    label = ", ".join(x for x in (err_type, code) if x)
    text = f"{message} ({label})" if label else message
    return ProviderError(classify(None, err_type, code, message), text)


def _error_event(data: dict[str, Any]) -> ProviderError:
    nested = data.get("error")
    return _error(nested if isinstance(nested, dict) else data)
