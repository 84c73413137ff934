"""Anthropic Messages <-> IR.

Field names and shapes follow anthropic-sdk-python's types: ``message_create_params.py``,
``tool_param.py``, ``tool_choice_*_param.py``, ``tool_result_block_param.py``,
``image_block_param.py`` (request); ``message.py``, ``usage.py``, ``stop_reason.py``
(response); ``raw_message_stream_event.py`` and its members (``message_start``,
``content_block_start|delta|stop`` with ``text_delta`` / ``input_json_delta``,
``message_delta`` with ``MessageDeltaUsage``, ``message_stop``); and ``_streaming.py`` (events
need an ``event:`` line; ``ping`` is skipped; ``event: error`` is raised).

Server tools have no counterpart elsewhere and are refused. Thinking blocks (with their
signatures) become ``ReasoningPart``s, which only Anthropic is sent back, and only signed.
"""

from __future__ import annotations

from typing import Any

from llmpulse.errors import ErrorClass
from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    MessageStart,
    Part,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolChoiceMode,
    ToolResultPart,
    TranslationError,
    UpstreamRequest,
    UsageUpdate,
    append_message,
    fill_tool_result_names,
    text_of,
)
from llmpulse.gateway.translate import params
from llmpulse.gateway.translate.common import (
    expect_dict,
    expect_list,
    expect_str,
    load_event,
    new_id,
    opt_bool,
    opt_number,
    opt_positive_int,
    opt_str,
    sse,
    stop_list,
    tag_list,
)
from llmpulse.providers.anthropic import API_VERSION, parse_usage
from llmpulse.providers.base import get_str
from llmpulse.result import Usage
from llmpulse.sse import SSEEvent

PATH = "/v1/messages"
DEFAULT_MAX_TOKENS = 4096  # max_tokens is required here and optional elsewhere

_FINISH_IN: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_FINISH_OUT: dict[FinishReason, str | None] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "error": None,  # no stop reason says so; the gateway should have sent an error instead
}
# Keys read into the IR; any other key rides in ``extra``, to Anthropic deployments only.
_READ = frozenset(
    {
        "model",
        "max_tokens",
        "system",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "stream",
        "metadata",
        "thinking",
        "service_tier",
    }
)


# --- the client's request -------------------------------------------------------------------


def parse_request(body: Any) -> ChatRequest:
    obj = expect_dict(body, "body")
    max_tokens = opt_positive_int(obj.get("max_tokens"), "max_tokens")
    if max_tokens is None:
        raise TranslationError("'max_tokens' is required")
    req = ChatRequest(model=expect_str(obj.get("model"), "model"), messages=[], origin="anthropic")
    req.max_tokens = max_tokens
    system = [_system_text(obj["system"], "system")] if obj.get("system") is not None else []
    raw_messages = expect_list(obj.get("messages"), "messages")
    if not raw_messages:
        raise TranslationError("'messages' must not be empty")
    for i, raw in enumerate(raw_messages):
        field = f"messages[{i}]"
        message = expect_dict(raw, field)
        role = message.get("role")
        if role == "system":
            system.append(_system_text(message.get("content"), f"{field}.content"))
        elif role in ("user", "assistant"):
            parts = _content_parts(message.get("content"), f"{field}.content", role)
            append_message(req.messages, role, parts)
        else:
            raise TranslationError(f"'{field}.role' must be user or assistant")
    req.system = "\n\n".join(system) if system else None
    fill_tool_result_names(req.messages)
    req.temperature = opt_number(obj.get("temperature"), "temperature", 0, 1)
    req.top_p = opt_number(obj.get("top_p"), "top_p", 0, 1)
    req.stop = stop_list(obj.get("stop_sequences"), "stop_sequences")
    req.tools = [_parse_tool(t, f"tools[{i}]") for i, t in enumerate(obj.get("tools") or [])]
    if obj.get("tool_choice") is not None:
        choice = expect_dict(obj["tool_choice"], "tool_choice")
        req.tool_choice = _parse_tool_choice(choice)
        if opt_bool(
            choice.get("disable_parallel_tool_use"), "tool_choice.disable_parallel_tool_use"
        ):
            req.parallel_tool_calls = False
    req.stream = bool(opt_bool(obj.get("stream"), "stream"))
    req.include_usage = True  # Anthropic streams always report usage
    if obj.get("metadata") is not None:
        metadata = expect_dict(obj["metadata"], "metadata")
        req.user = opt_str(metadata.get("user_id"), "metadata.user_id")
        # LiteLLM's tags, for llmpulse: only user_id goes upstream (Anthropic takes no other).
        req.tags = tag_list(metadata.get("tags"), "metadata.tags")
    req.top_k = opt_positive_int(obj.get("top_k"), "top_k")
    req.reasoning = _parse_thinking(obj.get("thinking"))
    req.service_tier = opt_str(obj.get("service_tier"), "service_tier")
    req.extra = {k: v for k, v in obj.items() if k not in _READ and v is not None}
    return req


def _parse_thinking(raw: Any) -> Reasoning | None:
    if raw is None:
        return None
    thinking = expect_dict(raw, "thinking")
    kind = thinking.get("type")
    if kind == "disabled":
        return Reasoning(budget_tokens=0)
    if kind != "enabled":
        raise TranslationError("'thinking.type' must be enabled or disabled")
    budget = opt_positive_int(thinking.get("budget_tokens"), "thinking.budget_tokens")
    if budget is None:
        raise TranslationError("'thinking.budget_tokens' is required")
    return Reasoning(budget_tokens=budget)


def _system_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    blocks = [expect_dict(b, f"{field}[{i}]") for i, b in enumerate(expect_list(value, field))]
    for i, block in enumerate(blocks):
        if block.get("type") != "text":
            raise TranslationError(f"'{field}[{i}].type' must be 'text'")
    return "".join(expect_str(b.get("text"), f"{field}.text") for b in blocks)


def _content_parts(content: Any, field: str, role: str) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for i, raw in enumerate(expect_list(content, field)):
        bf = f"{field}[{i}]"
        block = expect_dict(raw, bf)
        kind = block.get("type")
        if kind == "text":
            parts.append(TextPart(expect_str(block.get("text"), f"{bf}.text")))
        elif kind == "image" and role == "user":
            parts.append(_parse_image(expect_dict(block.get("source"), f"{bf}.source"), bf))
        elif kind == "tool_use" and role == "assistant":
            parts.append(
                ToolCallPart(
                    id=expect_str(block.get("id"), f"{bf}.id"),
                    name=expect_str(block.get("name"), f"{bf}.name"),
                    arguments=expect_dict(block.get("input"), f"{bf}.input"),
                )
            )
        elif kind == "tool_result" and role == "user":
            parts.append(
                ToolResultPart(
                    tool_call_id=expect_str(block.get("tool_use_id"), f"{bf}.tool_use_id"),
                    content=_tool_result_text(block.get("content"), f"{bf}.content"),
                    is_error=bool(opt_bool(block.get("is_error"), f"{bf}.is_error")),
                )
            )
        elif kind in ("thinking", "redacted_thinking") and role == "assistant":
            parts.append(_parse_thinking_block(block, bf))
        else:
            raise TranslationError(f"'{bf}.type' {kind!r} is not supported in a {role} message")
    return parts


def _parse_thinking_block(block: dict[str, Any], field: str) -> ReasoningPart:
    if block.get("type") == "redacted_thinking":
        return ReasoningPart("", redacted=expect_str(block.get("data"), f"{field}.data"))
    return ReasoningPart(
        expect_str(block.get("thinking"), f"{field}.thinking"),
        signature=opt_str(block.get("signature"), f"{field}.signature"),
    )


def _parse_image(source: dict[str, Any], field: str) -> ImagePart:
    kind = source.get("type")
    if kind == "base64":
        return ImagePart(
            media_type=expect_str(source.get("media_type"), f"{field}.source.media_type"),
            data=expect_str(source.get("data"), f"{field}.source.data"),
        )
    if kind == "url":
        return ImagePart(url=expect_str(source.get("url"), f"{field}.source.url"))
    raise TranslationError(f"'{field}.source.type' must be base64 or url")


def _tool_result_text(content: Any, field: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = _content_parts(content, field, "user")
    if any(not isinstance(p, TextPart) for p in parts):
        raise TranslationError(f"'{field}' may only hold text blocks here")
    return text_of(parts)


def _parse_tool(raw: Any, field: str) -> Tool:
    tool = expect_dict(raw, field)
    if tool.get("type") not in (None, "custom"):
        raise TranslationError(f"'{field}.type' {tool.get('type')!r}: only custom tools translate")
    return Tool(
        name=expect_str(tool.get("name"), f"{field}.name"),
        description=opt_str(tool.get("description"), f"{field}.description"),
        parameters=expect_dict(tool.get("input_schema"), f"{field}.input_schema"),
    )


def _parse_tool_choice(choice: dict[str, Any]) -> ToolChoice:
    kind = choice.get("type")
    if kind == "tool":
        return ToolChoice("tool", expect_str(choice.get("name"), "tool_choice.name"))
    modes: dict[Any, ToolChoiceMode] = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in modes:
        raise TranslationError("'tool_choice.type' must be auto, any, tool or none")
    return ToolChoice(modes[kind])


# --- the upstream's request -----------------------------------------------------------------


def render_request(
    req: ChatRequest, *, model: str | None = None, default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> UpstreamRequest:
    """The Messages body for ``req``; the caller adds the key header."""
    body: dict[str, Any] = {
        "model": model or req.model,
        "max_tokens": req.max_tokens or default_max_tokens,
        "messages": _render_messages(req.messages),
    }
    if req.system:
        body["system"] = req.system
    if req.temperature is not None:
        body["temperature"] = req.temperature  # above 1 makes the deployment ineligible
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    if req.tools:
        body["tools"] = [_render_tool(tool) for tool in req.tools]
        choice = _render_tool_choice(req.tool_choice)
        if req.parallel_tool_calls is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if req.tool_choice is not None or len(choice) > 1:
            body["tool_choice"] = choice
    if req.stream:
        body["stream"] = True
    if req.user is not None:
        body["metadata"] = {"user_id": req.user}
    if req.reasoning is not None:
        body["thinking"] = _render_thinking(req.reasoning)
    if req.service_tier is not None:
        body["service_tier"] = params.ANTHROPIC_TIERS.get(req.service_tier, req.service_tier)
    if req.origin == "anthropic":
        body.update(req.extra)
    return UpstreamRequest(PATH, body, {"anthropic-version": API_VERSION})


def _render_thinking(reasoning: Reasoning) -> dict[str, Any]:
    budget = params.thinking_budget(reasoning)
    if not budget:
        return {"type": "disabled"}
    return {"type": "enabled", "budget_tokens": max(budget, params.ANTHROPIC_MIN_BUDGET)}


def _render_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages without the blank text Anthropic rejects ("text content blocks must contain
    non-whitespace text"; OpenAI clients send content "" beside tool calls), a final
    assistant prefill without the trailing whitespace it rejects."""
    kept: list[Message] = []
    for message in messages:
        append_message(kept, message.role, [p for p in message.parts if _sendable(p)])
    if kept and kept[-1].role == "assistant" and isinstance(kept[-1].parts[-1], TextPart):
        # Whitespace-only text was dropped above, so something is left after the strip.
        kept[-1].parts[-1] = TextPart(kept[-1].parts[-1].text.rstrip())
    return [{"role": m.role, "content": _render_content(m.parts)} for m in kept]


def _sendable(part: Part) -> bool:
    """Not blank text, nor thinking without Anthropic's signature (another provider's)."""
    if isinstance(part, TextPart):
        return bool(part.text.strip())
    if isinstance(part, ReasoningPart):
        return bool(part.signature or part.redacted)
    return True


def _render_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    out["input_schema"] = tool.parameters
    return out


def _render_tool_choice(choice: ToolChoice | None) -> dict[str, Any]:
    if choice is None or choice.mode == "auto":
        return {"type": "auto"}
    if choice.mode == "tool":
        return {"type": "tool", "name": choice.name}
    return {"type": "any" if choice.mode == "required" else "none"}


def _render_content(parts: list[Part]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    # Anthropic wants a user turn's tool results before anything else in it.
    ordered: list[Part] = [p for p in parts if isinstance(p, ToolResultPart)]
    ordered += [p for p in parts if not isinstance(p, ToolResultPart)]
    return [_render_block(part) for part in ordered]


def _render_block(part: Part) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        if part.url is not None:
            return {"type": "image", "source": {"type": "url", "url": part.url}}
        source = {"type": "base64", "media_type": part.media_type, "data": part.data}
        return {"type": "image", "source": source}
    if isinstance(part, ToolCallPart):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
    if isinstance(part, ReasoningPart):
        if part.redacted is not None:
            return {"type": "redacted_thinking", "data": part.redacted}
        # Thinking from another provider has no signature; "" keeps the SDK's type valid.
        return {"type": "thinking", "thinking": part.text, "signature": part.signature or ""}
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": part.tool_call_id,
        "content": part.content,
    }
    if part.is_error:
        block["is_error"] = True
    return block


# --- the upstream's response ----------------------------------------------------------------


def parse_response(body: Any) -> ChatResponse:
    obj = expect_dict(body, "response")
    resp = ChatResponse(
        id=get_str(obj, "id") or new_id("msg_"),
        model=get_str(obj, "model") or "",
        usage=parse_usage(obj.get("usage")) or Usage(),
    )
    reason = get_str(obj, "stop_reason")
    resp.finish_reason = _FINISH_IN.get(reason, "error") if reason else "stop"
    resp.stop_sequence = get_str(obj, "stop_sequence")
    texts: list[str] = []
    for i, raw in enumerate(expect_list(obj.get("content"), "content")):
        block = expect_dict(raw, f"content[{i}]")
        if block.get("type") == "text":
            texts.append(expect_str(block.get("text"), f"content[{i}].text"))
        elif block.get("type") in ("thinking", "redacted_thinking"):
            resp.reasoning.append(_parse_thinking_block(block, f"content[{i}]"))
        elif block.get("type") == "tool_use":
            resp.tool_calls.append(
                ToolCallPart(
                    id=expect_str(block.get("id"), f"content[{i}].id"),
                    name=expect_str(block.get("name"), f"content[{i}].name"),
                    arguments=expect_dict(block.get("input"), f"content[{i}].input"),
                )
            )
    resp.text = "".join(texts)
    return resp


# --- the client's response ------------------------------------------------------------------


def render_response(resp: ChatResponse) -> dict[str, Any]:
    content = [_render_block(part) for part in resp.reasoning]
    # An OpenAI refusal is what Claude's refusal is: text, and the refusal stop reason.
    text = resp.text + (resp.refusal or "")
    if text:
        content.append({"type": "text", "text": text})
    content += [_render_block(call) for call in resp.tool_calls]
    stop_reason, stop_sequence = _stop_reason(
        "content_filter" if resp.refusal else resp.finish_reason, resp.stop_sequence
    )
    return {
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": render_usage(resp.usage),
    }


def _stop_reason(reason: FinishReason, stop_sequence: str | None) -> tuple[str | None, str | None]:
    if reason == "stop" and stop_sequence is not None:
        return "stop_sequence", stop_sequence
    return _FINISH_OUT[reason], None


def render_usage(usage: Usage) -> dict[str, Any]:
    """Anthropic's input_tokens excludes cache reads and writes, which ours include."""
    cached = usage.cached_tokens or 0
    written = usage.cache_write_tokens or 0
    return {
        "input_tokens": max((usage.input_tokens or 0) - cached - written, 0),
        "output_tokens": usage.output_tokens or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


# --- errors ---------------------------------------------------------------------------------

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_CLASS_TYPES = {
    ErrorClass.RATE_LIMITED: "rate_limit_error",
    ErrorClass.AUTH: "authentication_error",
    ErrorClass.UNAVAILABLE: "overloaded_error",
    ErrorClass.TIMEOUT: "timeout_error",
}


def render_error(
    status: int,
    error_class: ErrorClass | None,
    message: str,
    request_id: str | None = None,
    code: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error as anthropic-sdk-python reads it (``ErrorResponse``).

    Overload goes out as Anthropic sends it, 529, which the SDK raises as ``OverloadedError``
    (a 503 would be its ``ServiceUnavailableError``). ``code``, an error of the gateway's own
    (``budget_exceeded``), is the error's type: Anthropic's errors have no code, and the SDK
    raises by status (429: ``RateLimitError``), with the body as sent.
    """
    kind = (
        code
        or (error_class and _CLASS_TYPES.get(error_class))
        or _STATUS_TYPES.get(status)
        or ("api_error" if status >= 500 else None)
    )
    if kind == "overloaded_error":
        status = 529
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": kind or "invalid_request_error", "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return status, body


def render_stream_error(status: int, error_class: ErrorClass | None, message: str) -> bytes:
    """The ``event: error`` the SDK raises mid-stream (it carries no status of its own)."""
    return sse(render_error(status, error_class, message)[1], "error")


# --- streams ---------------------------------------------------------------------------------


class StreamDecoder:
    """Upstream Messages SSE events -> IR stream events."""

    def __init__(self) -> None:
        self.done = False
        self._tool_index: dict[int, int] = {}  # content block index -> tool call ordinal
        self._usage: dict[str, Any] = {}

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        kind = event.event
        if kind == "ping":
            return []
        if kind == "message_stop":
            self.done = True
            return []
        if kind not in (
            "message_start",
            "content_block_start",
            "content_block_delta",
            "message_delta",
            "error",
        ):
            return []  # content_block_stop, and event types Anthropic may add
        payload = load_event(event.data)
        if kind == "error":
            return [StreamError(payload)]
        if kind == "message_start":
            message = expect_dict(payload.get("message"), "message_start.message")
            start = MessageStart(get_str(message, "id") or "", get_str(message, "model") or "")
            return [start, *self._merge_usage(message.get("usage"))]
        if kind == "content_block_start":
            block = payload.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                ordinal = len(self._tool_index)
                self._tool_index[_index(payload)] = ordinal
                call_id, name = get_str(block, "id") or "", get_str(block, "name") or ""
                return [ToolCallStart(ordinal, call_id, name)]
            if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                return [TextDelta(block["text"])]
            if isinstance(block, dict) and block.get("type") == "redacted_thinking":
                return [ReasoningDelta(redacted=get_str(block, "data") or "")]
            return []
        if kind == "content_block_delta":
            delta = d if isinstance(d := payload.get("delta"), dict) else {}
            if delta.get("type") == "text_delta" and get_str(delta, "text"):
                return [TextDelta(delta["text"])]
            if delta.get("type") == "thinking_delta" and get_str(delta, "thinking"):
                return [ReasoningDelta(delta["thinking"])]
            if delta.get("type") == "signature_delta" and get_str(delta, "signature"):
                return [ReasoningDelta(signature=delta["signature"])]
            if delta.get("type") == "input_json_delta" and get_str(delta, "partial_json"):
                known = self._tool_index.get(_index(payload))
                if known is None:
                    raise TranslationError("input_json_delta outside a tool_use block", 502)
                return [ToolCallDelta(known, delta["partial_json"])]
            return []  # citations and deltas Anthropic may add
        # message_delta: the stop reason, and usage that is cumulative.
        out: list[StreamEvent] = []
        reason = get_str(payload, "delta", "stop_reason")
        if reason:
            finish = _FINISH_IN.get(reason, "error")
            out.append(Finish(finish, get_str(payload, "delta", "stop_sequence")))
        return out + self._merge_usage(payload.get("usage"))

    def _merge_usage(self, raw: Any) -> list[StreamEvent]:
        if not isinstance(raw, dict):
            return []
        self._usage.update({k: v for k, v in raw.items() if v is not None})
        usage = parse_usage(self._usage)
        return [UsageUpdate(usage)] if usage is not None else []


def _index(payload: dict[str, Any]) -> int:
    index = payload.get("index")
    if not isinstance(index, int):
        raise TranslationError("a content block event has no index", status=502)
    return index


class StreamEncoder:
    """IR stream events -> the events anthropic-sdk-python's ``RawMessageStreamEvent`` parses.

    ``message_start`` waits for the first content so that it can carry the input tokens the
    upstream reported at its start; ``message_delta`` and ``message_stop`` are sent by
    ``close``, after the usage that OpenAI upstreams send only after their finish chunk.
    """

    def __init__(self, *, model: str, response_id: str | None = None) -> None:
        self._model = model
        self._id = response_id or new_id("msg_")
        self._started = False
        self._usage = Usage()
        self._block = -1  # index of the open content block, -1 when none is open
        self._block_kind: str | None = None
        self._tool_blocks: dict[int, int] = {}  # tool call ordinal -> content block index
        self._next_block = 0
        self._stop: tuple[str | None, str | None] = ("end_turn", None)
        self._refused = False  # an OpenAI refusal: text, then Claude's refusal stop reason

    def feed(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, MessageStart):
            self._model = event.model or self._model
            self._id = event.id or self._id
            return []
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return []
        if isinstance(event, StreamError):
            return []  # the gateway decides what an upstream error becomes
        if isinstance(event, Finish):
            self._stop = _stop_reason(event.reason, event.stop_sequence)
            return []
        out = self._start()
        if isinstance(event, TextDelta | RefusalDelta):
            self._refused = self._refused or isinstance(event, RefusalDelta)
            if self._block_kind != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            delta = {"type": "text_delta", "text": event.text}
            out.append(self._event("content_block_delta", index=self._block, delta=delta))
        elif isinstance(event, ReasoningDelta):
            out += self._reasoning(event)
        elif isinstance(event, ToolCallStart):
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            out += self._open(block, "tool_use")
            self._tool_blocks[event.index] = self._block
        elif isinstance(event, ToolCallDelta):
            index = self._tool_blocks.get(event.index)
            if index is None:
                raise TranslationError("arguments for a tool call that never started", 502)
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            out.append(self._event("content_block_delta", index=index, delta=delta))
        return out

    def _reasoning(self, event: ReasoningDelta) -> list[bytes]:
        if event.redacted is not None:
            return self._open({"type": "redacted_thinking", "data": event.redacted}, "redacted")
        out = []
        if self._block_kind != "thinking":  # a signature ended the last thinking block
            out += self._open({"type": "thinking", "thinking": "", "signature": ""}, "thinking")
        if event.text:
            delta = {"type": "thinking_delta", "thinking": event.text}
            out.append(self._event("content_block_delta", index=self._block, delta=delta))
        if event.signature is not None:
            delta = {"type": "signature_delta", "signature": event.signature}
            out.append(self._event("content_block_delta", index=self._block, delta=delta))
            self._block_kind = "signed"
        return out

    def close(self) -> list[bytes]:
        out = self._start() + self._close_block()
        usage = render_usage(self._usage)
        stop = _stop_reason("content_filter", None) if self._refused else self._stop
        delta = {"stop_reason": stop[0], "stop_sequence": stop[1]}
        out.append(self._event("message_delta", delta=delta, usage=usage))
        out.append(self._event("message_stop"))
        return out

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**render_usage(self._usage), "output_tokens": 0},
        }
        return [self._event("message_start", message=message)]

    def _open(self, block: dict[str, Any], kind: str) -> list[bytes]:
        out = self._close_block()
        self._block, self._block_kind = self._next_block, kind
        self._next_block += 1
        out.append(self._event("content_block_start", index=self._block, content_block=block))
        return out

    def _close_block(self) -> list[bytes]:
        if self._block < 0:
            return []
        index, self._block, self._block_kind = self._block, -1, None
        return [self._event("content_block_stop", index=index)]

    @staticmethod
    def _event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, kind)


def stream_encoder(req: ChatRequest) -> StreamEncoder:
    """The encoder of the streamed answer to ``req``."""
    return StreamEncoder(model=req.model)
