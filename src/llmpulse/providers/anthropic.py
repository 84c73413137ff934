"""Anthropic Messages API.

Reference: anthropic-sdk-python (``_streaming.py``: named events, ``ping`` skipped, ``event: error``
raised) and the Messages streaming docs (usage in ``message_delta`` is cumulative).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmpulse.errors import classify
from llmpulse.providers.base import (
    Completion,
    ModelsInfo,
    Protocol,
    ProtocolError,
    ProviderError,
    RequestSpec,
    StreamParser,
    StreamUpdate,
    get_int,
    get_str,
    loads_object,
    merge_params,
)
from llmpulse.result import Usage
from llmpulse.secrets import PRE_CLIP_CHARS
from llmpulse.sse import SSEEvent

if TYPE_CHECKING:
    from llmpulse.target import Target

API_VERSION = "2023-06-01"
_FILTER_STOP = "refusal"
_KNOWN_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
)


class AnthropicProtocol(Protocol):
    name = "anthropic"
    terminal_event = "message_stop"
    request_id_headers = ("request-id", "x-request-id")

    def headers(self, target: Target) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "anthropic-version": API_VERSION,
            **target.headers,
        }
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    def models_request(self, target: Target) -> RequestSpec:
        # The list is paginated (default 20); one page of the maximum size holds every model.
        return RequestSpec("GET", f"{target.base_url}/v1/models?limit=1000", self.headers(target))

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        # The Messages API takes the system prompt apart, as a top-level ``system``.
        system = [str(m["content"]) for m in messages if m["role"] == "system"]
        body: dict[str, Any] = {
            "model": target.model,
            "max_tokens": max_tokens,
            "messages": [
                {"role": m["role"], "content": m["content"]}
                for m in messages
                if m["role"] != "system"
            ],
        }
        if system:
            body["system"] = "\n\n".join(system)
        if stream:
            body["stream"] = True
        body = merge_params(body, params)
        return RequestSpec("POST", f"{target.base_url}/v1/messages", self.headers(target), body)

    def parse_models(self, body: Any, model: str) -> ModelsInfo:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProtocolError("models response has no 'data' list")
        for entry in data:
            if not isinstance(entry, dict):
                continue
            model_id = entry.get("id")
            # Aliases such as claude-haiku-4-5 resolve to dated ids (claude-haiku-4-5-20251001).
            if model_id == model or (
                isinstance(model_id, str) and model_id.startswith(model + "-20")
            ):
                return ModelsInfo(True, get_int(entry, "max_input_tokens"), len(data))
        return ModelsInfo(listed=False, count=len(data))

    def parse_completion(self, body: Any) -> Completion:
        if not isinstance(body, dict) or body.get("type") != "message":
            raise ProtocolError("expected an object of type 'message'")
        content = body.get("content")
        if not isinstance(content, list):
            raise ProtocolError("message has no 'content' list")
        stop = get_str(body, "stop_reason")
        completion = Completion(
            usage=parse_usage(body.get("usage")),
            response_model=get_str(body, "model"),
            response_id=get_str(body, "id"),
            finish_reason=stop,
            filtered=stop == _FILTER_STOP,
        )
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                completion.add_text(block["text"])
            elif block.get("type") == "tool_use":
                completion.add_tool_call(get_str(block, "name"))
        return completion

    def stream_parser(self) -> StreamParser:
        return AnthropicStreamParser()

    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        return error_from_object(obj, status)


class AnthropicStreamParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> StreamUpdate:
        kind = event.event
        if kind not in _KNOWN_EVENTS:
            # Anthropic documents that new event types may be added; ignore them.
            return StreamUpdate()
        if kind == "ping":
            return StreamUpdate()
        payload = loads_object(event.data)
        if kind == "error":
            return StreamUpdate(error=error_from_object(payload, None))
        c = self.completion
        if kind == "message_start":
            message = payload.get("message")
            if not isinstance(message, dict):
                raise ProtocolError("message_start without a message")
            c.response_model = get_str(message, "model")
            c.response_id = get_str(message, "id")
            self._merge_usage(message.get("usage"))
        elif kind == "content_block_start":
            block = payload.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                name = get_str(block, "name") or ""
                c.add_tool_call(name)
                return StreamUpdate(tool_chars=len(name))
        elif kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    c.add_text(text)
                    return StreamUpdate(text=text)
            if isinstance(delta, dict) and delta.get("type") == "input_json_delta":
                return StreamUpdate(tool_chars=len(get_str(delta, "partial_json") or ""))
        elif kind == "message_delta":
            stop = get_str(payload, "delta", "stop_reason")
            if stop:
                c.finish_reason = stop
                c.filtered = stop == _FILTER_STOP
            self._merge_usage(payload.get("usage"))
        elif kind == "message_stop":
            self.done = True
            return StreamUpdate(done=True)
        return StreamUpdate()

    def _merge_usage(self, raw: Any) -> None:
        # message_delta usage is cumulative: later values replace earlier ones field by field.
        if not isinstance(raw, dict):
            return
        for key, value in raw.items():
            if value is not None:
                self._usage[key] = value
        self.completion.usage = parse_usage(self._usage)


def parse_usage(raw: Any) -> Usage | None:
    """Anthropic's input_tokens excludes cache reads and writes; ours includes them."""
    if not isinstance(raw, dict):
        return None
    fresh = get_int(raw, "input_tokens")
    output = get_int(raw, "output_tokens")
    if fresh is None and output is None:
        return None
    cache_read = get_int(raw, "cache_read_input_tokens") or 0
    cache_write = get_int(raw, "cache_creation_input_tokens") or 0
    total_input = None if fresh is None else fresh + cache_read + cache_write
    return Usage(
        input_tokens=total_input,
        output_tokens=output,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=get_int(raw, "output_tokens_details", "thinking_tokens"),
    )


def error_from_object(obj: dict[str, Any], status: int | None) -> ProviderError:
    err = obj.get("error")
    if not isinstance(err, dict):
        err = obj
    err_type = get_str(err, "type")
    message = (get_str(err, "message") or str(err))[:PRE_CLIP_CHARS]
    text = f"{message} ({err_type})" if err_type else message
    if status is not None:
        text = f"HTTP {status}: {text}"
    return ProviderError(classify(status, err_type, None, message), text)
