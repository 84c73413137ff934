"""OpenAI Chat Completions <-> IR.

Field names and shapes follow openai-python's types: ``chat/completion_create_params.py``
(request), ``chat/chat_completion.py`` and ``completion_usage.py`` (response),
``chat/chat_completion_chunk.py`` (stream: ``choices[0].delta`` with ``role``, ``content``,
``tool_calls[{index, id, type, function{name, arguments}}]``; a usage chunk with empty
``choices`` when ``stream_options.include_usage``), and ``_streaming.py`` (``data: [DONE]``
ends the stream; a ``data: {"error": ...}`` event is raised as an APIError).
"""

from __future__ import annotations

import time
from typing import Any

from llmpulse.errors import ErrorClass
from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    MessageStart,
    Part,
    Reasoning,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
    ResponseFormat,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
    UpstreamRequest,
    UsageUpdate,
    append_message,
    fill_tool_result_names,
    text_of,
    without_reasoning,
)
from llmpulse.gateway.translate import params
from llmpulse.gateway.translate.common import (
    dump_json,
    expect_dict,
    expect_list,
    expect_str,
    load_event,
    new_id,
    number,
    opt_bool,
    opt_int,
    opt_number,
    opt_positive_int,
    opt_str,
    parse_arguments,
    split_data_url,
    sse,
    stop_list,
    tag_list,
)
from llmpulse.providers.base import get_str
from llmpulse.providers.openai import parse_usage
from llmpulse.result import Usage
from llmpulse.sse import SSEEvent

PATH = "/chat/completions"
DONE = b"data: [DONE]\n\n"

_FINISH_IN: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# Keys whose answer (audio, legacy function calls) the gateway's response cannot carry.
_UNTRANSLATABLE = ("audio", "functions", "function_call")
# Keys read into the IR; any other key rides in ``extra``, to OpenAI-protocol deployments only.
_READ = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "user",
        "store",
        "metadata",
        "response_format",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "n",
        "logit_bias",
        "reasoning_effort",
        "service_tier",
    }
)


# --- the client's request -------------------------------------------------------------------


def parse_request(body: Any) -> ChatRequest:
    obj = expect_dict(body, "body")
    for key in _UNTRANSLATABLE:
        if obj.get(key) is not None:
            raise TranslationError(f"'{key}' is not supported by this gateway")
    req = ChatRequest(model=expect_str(obj.get("model"), "model"), messages=[], origin="openai")
    system: list[str] = []
    raw_messages = expect_list(obj.get("messages"), "messages")
    if not raw_messages:
        raise TranslationError("'messages' must not be empty")
    for i, raw in enumerate(raw_messages):
        _parse_message(req, system, expect_dict(raw, f"messages[{i}]"), f"messages[{i}]")
    req.system = "\n\n".join(system) if system else None
    fill_tool_result_names(req.messages)
    req.max_tokens = opt_positive_int(obj.get("max_completion_tokens"), "max_completion_tokens")
    if req.max_tokens is None:
        req.max_tokens = opt_positive_int(obj.get("max_tokens"), "max_tokens")
    req.temperature = opt_number(obj.get("temperature"), "temperature", 0, 2)
    req.top_p = opt_number(obj.get("top_p"), "top_p", 0, 1)
    req.stop = stop_list(obj.get("stop"), "stop")
    req.tools = [_parse_tool(t, f"tools[{i}]") for i, t in enumerate(obj.get("tools") or [])]
    req.tool_choice = _parse_tool_choice(obj.get("tool_choice"))
    req.parallel_tool_calls = opt_bool(obj.get("parallel_tool_calls"), "parallel_tool_calls")
    req.stream = bool(opt_bool(obj.get("stream"), "stream"))
    options = obj.get("stream_options")
    if options is not None:
        include = expect_dict(options, "stream_options").get("include_usage")
        req.include_usage = bool(opt_bool(include, "stream_options.include_usage"))
    req.user = opt_str(obj.get("user"), "user")
    req.store = opt_bool(obj.get("store"), "store")
    metadata = obj.get("metadata")
    if metadata is not None:
        _parse_metadata(req, expect_dict(metadata, "metadata"))
    _parse_sampling(req, obj)
    req.extra = {k: v for k, v in obj.items() if k not in _READ and v is not None}
    return req


def _parse_metadata(req: ChatRequest, metadata: dict[str, Any]) -> None:
    """A list of ``tags`` is LiteLLM's, read for llmpulse and never sent on. The rest is
    OpenAI's own metadata, which it takes only with ``store: true`` (else it answers 400):
    forwarded then, strings as it requires; without it, LiteLLM's other keys (for its loggers)
    are left out, whatever their type."""
    listed = isinstance(metadata.get("tags"), list)
    if listed or not req.store:
        req.tags = tag_list(metadata.get("tags"), "metadata.tags")
    if req.store:
        for key, value in metadata.items():
            if key != "tags" or not listed:
                req.metadata[key] = expect_str(value, f"metadata.{key}")


def _parse_sampling(req: ChatRequest, obj: dict[str, Any]) -> None:
    req.response_format = _parse_response_format(obj.get("response_format"))
    req.seed = opt_int(obj.get("seed"), "seed")
    req.frequency_penalty = opt_number(obj.get("frequency_penalty"), "frequency_penalty", -2, 2)
    req.presence_penalty = opt_number(obj.get("presence_penalty"), "presence_penalty", -2, 2)
    req.logprobs = opt_bool(obj.get("logprobs"), "logprobs")
    req.top_logprobs = opt_int(obj.get("top_logprobs"), "top_logprobs", 0, 20)
    req.n = opt_positive_int(obj.get("n"), "n")
    if obj.get("logit_bias") is not None:
        bias = expect_dict(obj["logit_bias"], "logit_bias")
        req.logit_bias = {k: number(v, f"logit_bias.{k}", -100, 100) for k, v in bias.items()}
    effort = opt_str(obj.get("reasoning_effort"), "reasoning_effort")
    req.reasoning = None if effort is None else Reasoning(effort=effort)
    req.service_tier = opt_str(obj.get("service_tier"), "service_tier")


def _parse_response_format(raw: Any) -> ResponseFormat | None:
    if raw is None:
        return None
    obj = expect_dict(raw, "response_format")
    kind = obj.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise TranslationError("'response_format.type' must be text, json_object or json_schema")
    spec = expect_dict(obj.get("json_schema"), "response_format.json_schema")
    schema = spec.get("schema")
    return ResponseFormat(
        "json_schema",
        schema=None if schema is None else expect_dict(schema, "response_format.json_schema"),
        name=expect_str(spec.get("name"), "response_format.json_schema.name"),
        strict=opt_bool(spec.get("strict"), "response_format.json_schema.strict"),
    )


def _parse_message(req: ChatRequest, system: list[str], m: dict[str, Any], field: str) -> None:
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        system.append(text_of(_content_parts(content, f"{field}.content", images=False)))
    elif role == "user":
        parts = _content_parts(content, f"{field}.content", images=True)
        append_message(req.messages, "user", parts)
    elif role == "assistant":
        parts = [] if content is None else _content_parts(content, f"{field}.content", False)
        calls = m.get("tool_calls") or []
        parts.extend(_parse_call(c, f"{field}.tool_calls[{j}]") for j, c in enumerate(calls))
        append_message(req.messages, "assistant", parts)
    elif role == "tool":
        result = ToolResultPart(
            tool_call_id=expect_str(m.get("tool_call_id"), f"{field}.tool_call_id"),
            content=text_of(_content_parts(content, f"{field}.content", images=False)),
        )
        append_message(req.messages, "user", [result])
    else:
        raise TranslationError(f"'{field}.role' must be system, developer, user, assistant or tool")


def _parse_call(raw: Any, field: str) -> ToolCallPart:
    call = expect_dict(raw, field)
    function = expect_dict(call.get("function"), f"{field}.function")
    return ToolCallPart(
        id=expect_str(call.get("id"), f"{field}.id"),
        name=expect_str(function.get("name"), f"{field}.function.name"),
        arguments=parse_arguments(function.get("arguments"), f"{field}.function.arguments"),
    )


def _content_parts(content: Any, field: str, images: bool) -> list[Part]:
    if isinstance(content, str):
        return [TextPart(content)]
    parts: list[Part] = []
    for i, raw in enumerate(expect_list(content, field)):
        pf = f"{field}[{i}]"
        part = expect_dict(raw, pf)
        kind = part.get("type")
        if kind == "text":
            parts.append(TextPart(expect_str(part.get("text"), f"{pf}.text")))
        elif kind == "refusal":
            parts.append(TextPart(expect_str(part.get("refusal"), f"{pf}.refusal")))
        elif kind == "image_url" and images:
            url = expect_str(expect_dict(part.get("image_url"), f"{pf}.image_url").get("url"), pf)
            inline = split_data_url(url)
            image = ImagePart(media_type=inline[0], data=inline[1]) if inline else ImagePart(url)
            parts.append(image)
        else:
            raise TranslationError(f"'{pf}.type' {kind!r} is not supported here")
    return parts


def _parse_tool(raw: Any, field: str) -> Tool:
    tool = expect_dict(raw, field)
    if tool.get("type") != "function":
        raise TranslationError(f"'{field}.type' must be 'function'")
    function = expect_dict(tool.get("function"), f"{field}.function")
    params = function.get("parameters")
    return Tool(
        name=expect_str(function.get("name"), f"{field}.function.name"),
        description=opt_str(function.get("description"), f"{field}.function.description"),
        parameters=expect_dict(params, f"{field}.function.parameters")
        if params is not None
        else Tool("").parameters,
    )


def _parse_tool_choice(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    if raw in ("auto", "none", "required"):
        return ToolChoice(raw)
    choice = expect_dict(raw, "tool_choice")
    if choice.get("type") != "function":
        raise TranslationError("'tool_choice' must be auto, none, required or a function")
    name = expect_dict(choice.get("function"), "tool_choice.function").get("name")
    return ToolChoice("tool", expect_str(name, "tool_choice.function.name"))


# --- the upstream's request -----------------------------------------------------------------


def render_request(
    req: ChatRequest,
    *,
    model: str | None = None,
    max_tokens_field: str = "max_completion_tokens",
    stream_options: bool = True,
) -> UpstreamRequest:
    """The Chat Completions body for ``req``, addressed to ``model`` (default: the client's).

    ``max_tokens_field`` and ``stream_options`` follow the deployment's preset: some
    OpenAI-compatible servers want ``max_tokens`` or reject ``stream_options``. Usage is always
    asked for in streams when allowed, since the gateway records it.
    """
    body: dict[str, Any] = {"model": model or req.model, "messages": _render_messages(req)}
    if req.max_tokens is not None:
        body[max_tokens_field] = req.max_tokens
    for key, value in (("temperature", req.temperature), ("top_p", req.top_p)):
        if value is not None:
            body[key] = value
    if req.stop:
        body["stop"] = list(req.stop)
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": _render_function(tool)} for tool in req.tools
        ]
    if req.tool_choice is not None and req.tools:  # OpenAI rejects tool_choice without tools
        choice = req.tool_choice
        body["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    if req.parallel_tool_calls is not None and req.tools:
        body["parallel_tool_calls"] = req.parallel_tool_calls
    if req.stream:
        body["stream"] = True
        if stream_options:
            body["stream_options"] = {"include_usage": True}
    if req.user is not None:
        body["user"] = req.user
    if req.store is not None:
        body["store"] = req.store
    if req.metadata:
        body["metadata"] = dict(req.metadata)
    _render_sampling(req, body)
    if req.origin == "openai":
        body.update(req.extra)
    return UpstreamRequest(PATH, body)


def _render_sampling(req: ChatRequest, body: dict[str, Any]) -> None:
    if req.response_format is not None:
        body["response_format"] = _render_response_format(req.response_format)
    for key in ("seed", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.n is not None:
        body["n"] = req.n
    if req.logit_bias is not None:
        body["logit_bias"] = dict(req.logit_bias)
    effort = None if req.reasoning is None else params.effort(req.reasoning)
    if effort is not None:
        body["reasoning_effort"] = effort
    if req.service_tier is not None:
        body["service_tier"] = req.service_tier


def _render_response_format(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    spec: dict[str, Any] = {"name": fmt.name or "response"}
    if fmt.schema is not None:
        spec["schema"] = fmt.schema
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": spec}


def _render_function(tool: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.parameters
    return function


def _render_messages(req: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system is not None:
        out.append({"role": "system", "content": req.system})
    for message in without_reasoning(req.messages):
        if message.role == "assistant":
            out.append(_render_assistant(message.parts))
            continue
        # Tool results become ``tool`` messages, which must directly follow the tool calls.
        rest: list[Part] = []
        for part in message.parts:
            if isinstance(part, ToolResultPart):
                out.append(
                    {"role": "tool", "tool_call_id": part.tool_call_id, "content": part.content}
                )
            else:
                rest.append(part)
        if rest:
            out.append({"role": "user", "content": _render_content(rest)})
    return out


def _render_assistant(parts: list[Part]) -> dict[str, Any]:
    texts = [p for p in parts if isinstance(p, TextPart)]
    calls = [p for p in parts if isinstance(p, ToolCallPart)]
    if len(texts) + len(calls) != len(parts):
        raise TranslationError("assistant messages can only hold text and tool calls")
    message: dict[str, Any] = {"role": "assistant", "content": _render_content(texts) or None}
    if calls:
        message["tool_calls"] = [_render_call(call) for call in calls]
    return message


def _render_call(call: ToolCallPart) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": dump_json(call.arguments)},
    }


def _render_content(parts: list[Any]) -> str | list[dict[str, Any]]:
    if len(parts) == 1 and isinstance(parts[0], TextPart):
        return parts[0].text
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            out.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            url = part.url or f"data:{part.media_type};base64,{part.data}"
            out.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise TranslationError(f"a {type(part).__name__} cannot appear here")
    return out


# --- the upstream's response ----------------------------------------------------------------


def parse_response(body: Any, *, reasoning_outside_completion: bool = False) -> ChatResponse:
    """``reasoning_outside_completion``: xAI counts reasoning beside ``completion_tokens``."""
    obj = expect_dict(body, "response")
    choices = expect_list(obj.get("choices"), "choices")
    if not choices:
        raise TranslationError("the response has no choices", status=502)
    resp, *alternatives = [_parse_choice(c, f"choices[{i}]") for i, c in enumerate(choices)]
    resp.id = get_str(obj, "id") or new_id("chatcmpl-")
    resp.model = get_str(obj, "model") or ""
    resp.usage = parse_usage(obj.get("usage"), reasoning_outside_completion) or Usage()
    resp.alternatives = alternatives
    return resp


def _parse_choice(raw: Any, field: str) -> ChatResponse:
    choice = expect_dict(raw, field)
    message = expect_dict(choice.get("message"), f"{field}.message")
    thought = get_str(message, "reasoning_content")
    calls = message.get("tool_calls") or []
    return ChatResponse(
        id="",
        model="",
        text=get_str(message, "content") or "",
        refusal=get_str(message, "refusal") or None,
        finish_reason=finish_from_openai(get_str(choice, "finish_reason")),
        reasoning=[ReasoningPart(thought)] if thought else [],
        logprobs=choice["logprobs"] if isinstance(choice.get("logprobs"), dict) else None,
        tool_calls=[
            _parse_call(c, f"{field}.message.tool_calls[{j}]") for j, c in enumerate(calls)
        ],
    )


def finish_from_openai(reason: str | None) -> FinishReason:
    if reason is None:
        return "stop"
    return _FINISH_IN.get(reason, "error")


# --- the client's response ------------------------------------------------------------------


def render_response(resp: ChatResponse) -> dict[str, Any]:
    answers = [resp, *resp.alternatives]
    return {
        "id": resp.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": resp.model,
        "choices": [_render_choice(answer, i) for i, answer in enumerate(answers)],
        "usage": render_usage(resp.usage),
        "system_fingerprint": None,
    }


def _render_choice(resp: ChatResponse, index: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        # null beside tool calls or a refusal, as OpenAI sends them
        "content": resp.text if resp.text or not (resp.tool_calls or resp.refusal) else None,
        "refusal": resp.refusal,
    }
    if resp.tool_calls:
        message["tool_calls"] = [_render_call(call) for call in resp.tool_calls]
    thought = "".join(part.text for part in resp.reasoning)
    if thought:
        message["reasoning_content"] = thought  # as LiteLLM passes thinking on
    return {
        "index": index,
        "message": message,
        "finish_reason": resp.finish_reason,
        "logprobs": resp.logprobs,
    }


def render_usage(usage: Usage) -> dict[str, Any]:
    prompt = usage.input_tokens or 0
    completion = usage.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
    }


# --- errors ---------------------------------------------------------------------------------

# ErrorClass -> (type, code) as OpenAI itself sends them.
_ERROR_KINDS: dict[ErrorClass, tuple[str, str | None]] = {
    ErrorClass.RATE_LIMITED: ("rate_limit_error", "rate_limit_exceeded"),
    ErrorClass.QUOTA: ("insufficient_quota", "insufficient_quota"),
    ErrorClass.AUTH: ("invalid_request_error", "invalid_api_key"),
    ErrorClass.BAD_REQUEST: ("invalid_request_error", None),
    ErrorClass.CONTEXT_LENGTH: ("invalid_request_error", "context_length_exceeded"),
    ErrorClass.CONTENT_FILTER: ("invalid_request_error", "content_filter"),
    ErrorClass.UNAVAILABLE: ("server_error", "service_unavailable"),
    ErrorClass.SERVER_ERROR: ("server_error", None),
    ErrorClass.TIMEOUT: ("server_error", "timeout"),
    ErrorClass.CONNECTION: ("server_error", "upstream_connection_error"),
    ErrorClass.PROTOCOL: ("server_error", "upstream_protocol_error"),
}


def render_error(
    status: int,
    error_class: ErrorClass | None,
    message: str,
    param: str | None = None,
    code: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of an error as openai-python reads it (``body["error"]``).

    529 is Anthropic's; OpenAI clients get 503, which OpenAI uses for overload. ``code``, an
    error of the gateway's own (``budget_exceeded``, LiteLLM's type for it too), is both the type
    and the code (the SDK's ``exc.type`` and ``exc.code``).
    """
    if code is not None:
        kind = code
    elif error_class is None:
        kind = "invalid_request_error" if status < 500 else "server_error"
    else:
        kind, code = _ERROR_KINDS[error_class]
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return (503 if status == 529 else status), body


def render_stream_error(error_class: ErrorClass | None, message: str) -> bytes:
    """The ``data: {"error": ...}`` event openai-python raises as an APIError mid-stream."""
    return sse(render_error(500, error_class, message)[1])


# --- streams ---------------------------------------------------------------------------------


class StreamDecoder:
    """Upstream Chat Completions SSE events -> IR stream events."""

    def __init__(self, *, reasoning_outside_completion: bool = False) -> None:
        self.done = False
        self._started = False
        self._reasoning_outside = reasoning_outside_completion

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        if event.data.startswith("[DONE]"):
            self.done = True
            return []
        chunk = load_event(event.data)
        if chunk.get("error") is not None:
            return [StreamError(chunk)]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            out.append(MessageStart(get_str(chunk, "id") or "", get_str(chunk, "model") or ""))
        choices = chunk.get("choices")
        # Azure may start with a chunk whose choices are empty (prompt filter results).
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = d if isinstance(d := choice.get("delta"), dict) else {}
            thought = get_str(delta, "reasoning_content")
            if thought:
                out.append(ReasoningDelta(thought))
            text = get_str(delta, "content")
            logprobs = choice.get("logprobs")
            if text:
                out.append(TextDelta(text, logprobs if isinstance(logprobs, dict) else None))
            refusal = get_str(delta, "refusal")
            if refusal:
                out.append(RefusalDelta(refusal))
            for call in delta.get("tool_calls") or []:
                out.extend(_tool_call_events(call))
            reason = get_str(choice, "finish_reason")
            if reason:
                out.append(Finish(finish_from_openai(reason)))
        x_groq = chunk.get("x_groq")
        outside = self._reasoning_outside
        usage = parse_usage(chunk.get("usage"), outside) or parse_usage(
            x_groq.get("usage") if isinstance(x_groq, dict) else None, outside
        )
        if usage is not None:
            out.append(UsageUpdate(usage))
        return out


def _tool_call_events(call: Any) -> list[StreamEvent]:
    if not isinstance(call, dict) or not isinstance(call.get("index"), int):
        raise TranslationError("a streamed tool call has no index", status=502)
    index = call["index"]
    function = call.get("function") if isinstance(call.get("function"), dict) else {}
    out: list[StreamEvent] = []
    call_id, name = get_str(call, "id"), get_str(function, "name")
    if call_id and name:
        out.append(ToolCallStart(index, call_id, name))
    arguments = get_str(function, "arguments")
    if arguments:
        out.append(ToolCallDelta(index, arguments))
    return out


class StreamEncoder:
    """IR stream events -> the chunks openai-python's ``ChatCompletionChunk`` parses.

    ``feed`` returns the SSE frames to send now; ``close`` the usage chunk (when the client
    asked with ``stream_options.include_usage``) and ``[DONE]``.
    """

    def __init__(self, *, model: str, include_usage: bool, response_id: str | None = None):
        self._model = model
        self._include_usage = include_usage
        self._id = response_id or new_id("chatcmpl-")
        self._created = int(time.time())
        self._started = False
        self._usage: Usage | None = None

    def feed(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, MessageStart):
            self._model = event.model or self._model
            return []  # the first chunk says whether content or a refusal follows
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return []
        if isinstance(event, StreamError):
            return []  # the gateway decides what an upstream error becomes
        out = self._start(refusal=isinstance(event, RefusalDelta))
        if isinstance(event, TextDelta):
            out.append(self._chunk({"content": event.text}, logprobs=event.logprobs))
        elif isinstance(event, RefusalDelta):
            out.append(self._chunk({"refusal": event.text}))
        elif isinstance(event, ReasoningDelta) and event.text:
            out.append(self._chunk({"reasoning_content": event.text}))
        elif isinstance(event, ToolCallStart):
            call = {
                "index": event.index,
                "id": event.id,
                "type": "function",
                "function": {"name": event.name, "arguments": ""},
            }
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, ToolCallDelta):
            call = {"index": event.index, "function": {"arguments": event.arguments}}
            out.append(self._chunk({"tool_calls": [call]}))
        elif isinstance(event, Finish):
            out.append(self._chunk({}, event.reason))
        return out

    def close(self) -> list[bytes]:
        out = self._start()
        if self._include_usage:
            usage = render_usage(self._usage or Usage())
            out.append(sse(self._envelope([], usage)))
        out.append(DONE)
        return out

    def _start(self, refusal: bool = False) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        if refusal:  # as OpenAI starts a refusal: no content at all
            return [self._chunk({"role": "assistant", "content": None, "refusal": ""})]
        return [self._chunk({"role": "assistant", "content": ""})]

    def _chunk(
        self,
        delta: dict[str, Any],
        finish: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
        return sse(self._envelope([choice], None))

    def _envelope(self, choices: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = usage  # null on every chunk but the last, as OpenAI sends it
        return chunk


def stream_encoder(req: ChatRequest) -> StreamEncoder:
    """The encoder of the streamed answer to ``req``, as its client asked for it."""
    return StreamEncoder(model=req.model, include_usage=req.include_usage)


class ReasoningOutsideCompletion:
    """This module as the codec of an upstream counting reasoning tokens beside
    ``completion_tokens``, not in them (xAI; OpenAI and the others count them inside)."""

    @staticmethod
    def parse_response(body: Any) -> ChatResponse:
        return parse_response(body, reasoning_outside_completion=True)

    @staticmethod
    def StreamDecoder() -> StreamDecoder:  # stands in for the class
        return StreamDecoder(reasoning_outside_completion=True)
