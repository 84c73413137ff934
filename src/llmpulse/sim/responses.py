"""OpenAI Responses API wire format (``POST /v1/responses``): a Response object, or named SSE
events (``event: <type>`` and the same ``type`` in the data, with a ``sequence_number``), the
usage only in the terminal ``response.completed`` / ``response.incomplete``. Errors before the
200 are Chat Completions' (``sim.openai``)."""

from __future__ import annotations

from typing import Any

from llmpulse.sim import openai
from llmpulse.sim.common import (
    MARK,
    Plan,
    dumps,
    new_id,
    template,
)

STREAM_CONTENT_TYPE = openai.STREAM_CONTENT_TYPE
MALFORMED = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"oo\n\n'
)
MIN_OUTPUT_TOKENS = 16
headers = openai.headers
retry_headers = openai.retry_headers
error = openai.error

_500 = (
    "An error occurred while processing your request. Please include the request ID in your "
    "message."
)


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    return value if isinstance(value, int) else None


def validate(body: dict[str, Any]) -> str | None:
    given = body.get("input")
    if not (isinstance(given, str) and given) and not (isinstance(given, list) and given):
        return "Missing required parameter: 'input'."
    n = max_tokens(body)
    if n is not None and n < MIN_OUTPUT_TOKENS:
        return (
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {n} instead."
        )
    return None


def _usage(p: Plan) -> dict[str, Any]:
    output = p.text_tokens + p.reasoning_tokens
    return {
        "input_tokens": p.input_tokens,
        "input_tokens_details": {"cached_tokens": p.cached_tokens},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
        "total_tokens": p.input_tokens + output,
    }


def _status(p: Plan) -> tuple[str, dict[str, str] | None]:
    """completed, or incomplete with why: the token budget ran out, or a filter cut it."""
    if p.finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if p.finish == "content_filter" and not p.refusal:
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


class _Ids:
    def __init__(self) -> None:
        self.response = new_id("resp_", 24)
        self.message = new_id("msg_", 24)
        self.reasoning = new_id("rs_", 24)
        self.call = new_id("fc_", 24)
        self.call_id = new_id("call_")


def _reasoning_item(ids: _Ids) -> dict[str, Any]:
    return {"id": ids.reasoning, "type": "reasoning", "summary": []}


def _answer_item(p: Plan, ids: _Ids, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if p.tool is not None:
        args = "".join(p.tool_args) if done else ""
        return {
            "id": ids.call,
            "type": "function_call",
            "status": status,
            "arguments": args,
            "call_id": ids.call_id,
            "name": p.tool.name,
        }
    content = [_part(p)] if done else []
    return {
        "id": ids.message,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def _part(p: Plan, text: str | None = None) -> dict[str, Any]:
    text = p.text() if text is None else text
    if p.refusal:
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _response(p: Plan, ids: _Ids, status: str, output: list[Any], usage: Any) -> dict[str, Any]:
    incomplete = _status(p)[1] if status == "incomplete" else None
    return {
        "id": ids.response,
        "object": "response",
        "created_at": p.created,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": max_tokens(p.body) if isinstance(p.body, dict) else None,
        "model": p.served_model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _output(p: Plan, ids: _Ids) -> list[dict[str, Any]]:
    items = [_reasoning_item(ids)] if p.reasoning_tokens else []
    return [*items, _answer_item(p, ids, done=True)]


def completion(p: Plan) -> dict[str, Any]:
    ids = _Ids()
    return _response(p, ids, _status(p)[0], _output(p, ids), _usage(p))


class Stream:
    """Per-request event encoder; each delta event is formatted from a template."""

    def __init__(self, p: Plan) -> None:
        self.p = p
        self.ids = _Ids()
        self.seq = 0
        self.opened = False  # whether the answer's item was announced (``_opening``)
        self.index = 1 if p.reasoning_tokens else 0  # the answer's output_index
        if p.tool is not None:
            kind = "response.function_call_arguments.delta"
            delta: dict[str, Any] = {"type": kind, "item_id": self.ids.call}
        else:
            kind = "response.refusal.delta" if p.refusal else "response.output_text.delta"
            delta = {"type": kind, "item_id": self.ids.message, "content_index": 0}
        delta.update({"output_index": self.index, "delta": MARK})
        pre, suf = template(delta)
        self.pre = f"event: {kind}\ndata: {pre}"
        self.suf = suf.removesuffix("}") + ',"sequence_number":'

    def _event(self, obj: dict[str, Any]) -> str:
        obj["sequence_number"] = self.seq
        self.seq += 1
        return f"event: {obj['type']}\ndata: {dumps(obj)}\n\n"

    def _state(self, kind: str, status: str, output: list[Any], usage: Any) -> str:
        response = _response(self.p, self.ids, status, output, usage)
        return self._event({"type": kind, "response": response})

    def head(self) -> bytes:
        p, ids = self.p, self.ids
        out = self._state("response.created", "in_progress", [], None)
        out += self._state("response.in_progress", "in_progress", [], None)
        if p.reasoning_tokens:
            item = _reasoning_item(ids)
            out += self._event(
                {"type": "response.output_item.added", "output_index": 0, "item": item}
            )
            out += self._event(
                {"type": "response.output_item.done", "output_index": 0, "item": item}
            )
        return out.encode()

    def _opening(self) -> str:
        """The answer's item, opened as the model starts it: with its first output, not at the
        200 (a function call's item carries its name, output a client sees at that moment)."""
        if self.opened:
            return ""
        self.opened = True
        p, ids = self.p, self.ids
        item = _answer_item(p, ids, done=False)
        out = self._event(
            {"type": "response.output_item.added", "output_index": self.index, "item": item}
        )
        if p.tool is None:
            out += self._event(
                {
                    "type": "response.content_part.added",
                    "item_id": ids.message,
                    "output_index": self.index,
                    "content_index": 0,
                    "part": _part(p, ""),
                }
            )
        return out

    def token(self, i: int, last: bool) -> bytes:
        piece = dumps(self.p.tool_args[i]) if self.p.tool else self.p.piece_json(i)
        opening = self._opening()
        seq = self.seq
        self.seq += 1
        return f"{opening}{self.pre}{piece}{self.suf}{seq}}}\n\n".encode()

    def tail(self, done: bool) -> bytes:
        p, ids = self.p, self.ids
        out = self._opening()
        if p.tool is not None:
            out += self._event(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": ids.call,
                    "output_index": self.index,
                    "arguments": "".join(p.tool_args),
                }
            )
        else:
            text = p.text()
            kind = "response.refusal.done" if p.refusal else "response.output_text.done"
            field = "refusal" if p.refusal else "text"
            common = {"item_id": ids.message, "output_index": self.index, "content_index": 0}
            out += self._event({"type": kind, **common, field: text})
            out += self._event({"type": "response.content_part.done", **common, "part": _part(p)})
        item = _answer_item(p, ids, done=True)
        out += self._event(
            {"type": "response.output_item.done", "output_index": self.index, "item": item}
        )
        if done:
            status = _status(p)[0]
            kind = "response.completed" if status == "completed" else "response.incomplete"
            out += self._state(kind, status, _output(p, ids), _usage(p))
        return out.encode()

    def error_event(self) -> bytes:
        # A failure after the 200: the Response ends failed, its error says why.
        response = _response(self.p, self.ids, "failed", [], None)
        response["error"] = {"code": "server_error", "message": _500}
        return self._event({"type": "response.failed", "response": response}).encode()
