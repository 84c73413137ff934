"""Google Gemini generateContent <-> IR.

Shapes follow the Gemini API reference and googleapis/python-genai's types: ``contents[]`` of
``{role: user|model, parts[]}`` with ``text``, ``inlineData{mimeType, data}``,
``fileData{mimeType, fileUri}``, ``functionCall{id, name, args}`` and
``functionResponse{id, name, response}`` (``response.output`` or ``response.error``);
``systemInstruction``; ``generationConfig{maxOutputTokens, temperature, topP, topK,
stopSequences, seed, presencePenalty, frequencyPenalty, candidateCount, responseMimeType,
responseJsonSchema, responseLogprobs, logprobs, thinkingConfig{thinkingBudget}}``;
``tools[{functionDeclarations[{name, description, parametersJsonSchema}]}]``;
``toolConfig.functionCallingConfig{mode: AUTO|ANY|NONE, allowedFunctionNames}``. Responses and
each ``streamGenerateContent?alt=sse`` event are a whole GenerateContentResponse
(``candidates[0].content.parts``, ``finishReason``, ``usageMetadata``, ``modelVersion``,
``responseId``; ``logprobsResult{chosenCandidates, topCandidates[{candidates}]}`` of
``{token, logProbability}``, given to clients in OpenAI's logprobs shape). The REST API accepts
snake_case names too, so requests are read in both.

Gemini reports STOP, not a tool-call reason, when it calls functions; tool calls arrive whole,
never as argument fragments; its function calls may have no id, so ids are made up here.
"""

from __future__ import annotations

import mimetypes
from typing import Any
from urllib.parse import quote

from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    MessageStart,
    Part,
    Reasoning,
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
    ToolChoiceMode,
    ToolResultPart,
    TranslationError,
    UpstreamRequest,
    UsageUpdate,
    append_message,
    fill_tool_result_names,
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
    opt_bool,
    opt_int,
    opt_number,
    opt_positive_int,
    opt_str,
    stop_list,
)
from llmpulse.providers.base import get_str
from llmpulse.providers.gemini import parse_usage
from llmpulse.result import Usage
from llmpulse.sse import SSEEvent

_FILTER_FINISH = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
_FINISH_OUT: dict[FinishReason, str] = {
    "stop": "STOP",
    "length": "MAX_TOKENS",
    "tool_calls": "STOP",
    "content_filter": "SAFETY",
    "error": "OTHER",
}
_MODES_IN: dict[str, ToolChoiceMode] = {
    "AUTO": "auto",
    "ANY": "required",
    "NONE": "none",
    "VALIDATED": "auto",
}
_MODES_OUT = {"auto": "AUTO", "required": "ANY", "tool": "ANY", "none": "NONE"}
# Gemini 3 rejects replayed function calls without the thought signature it issued; history
# from another provider has none, and Google documents this value to skip the check.
SKIP_SIGNATURE = "skip_thought_signature_validator"


def _get(obj: dict[str, Any], camel: str) -> Any:
    """A field by its camelCase name or its snake_case one (the REST API takes both)."""
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


# --- the client's request -------------------------------------------------------------------


def parse_request(body: Any, *, model: str, stream: bool = False) -> ChatRequest:
    """``model`` and ``stream`` come from the URL (``models/{model}:streamGenerateContent``)."""
    obj = expect_dict(body, "body")
    req = ChatRequest(
        model=model.removeprefix("models/"), messages=[], stream=stream, origin="gemini"
    )
    req.include_usage = True  # every Gemini chunk carries usageMetadata
    instruction = _get(obj, "systemInstruction")
    if instruction is not None:
        parts = expect_list(expect_dict(instruction, "systemInstruction").get("parts"), "parts")
        req.system = "".join(
            expect_str(expect_dict(p, "systemInstruction.parts[]").get("text"), "text")
            for p in parts
        )
    contents = expect_list(obj.get("contents"), "contents")
    if not contents:
        raise TranslationError("'contents' must not be empty")
    ids = _CallIds()
    for i, raw in enumerate(contents):
        field = f"contents[{i}]"
        content = expect_dict(raw, field)
        role = content.get("role", "user")
        if role not in ("user", "model", "function"):
            raise TranslationError(f"'{field}.role' must be user or model")
        raw_parts = expect_list(content.get("parts"), f"{field}.parts")
        parts = [
            part
            for j, p in enumerate(raw_parts)
            if (
                part := _parse_part(
                    expect_dict(p, f"{field}.parts[{j}]"), f"{field}.parts[{j}]", ids
                )
            )
        ]
        append_message(req.messages, "assistant" if role == "model" else "user", parts)
    fill_tool_result_names(req.messages)
    _parse_generation_config(req, _get(obj, "generationConfig"))
    req.tools = _parse_tools(obj.get("tools"))
    req.tool_choice = _parse_tool_config(_get(obj, "toolConfig"))
    return req


class _CallIds:
    """Ids for function calls that have none, and the call each unlabelled response answers."""

    def __init__(self) -> None:
        self._count = 0
        self._open: list[tuple[str, str]] = []  # (name, id) of calls not yet answered

    def call(self, name: str, given: str | None) -> str:
        call_id = given or f"call_{self._count}"
        self._count += 1
        self._open.append((name, call_id))
        return call_id

    def response(self, name: str, given: str | None) -> str:
        for k, (open_name, open_id) in enumerate(self._open):
            if (given and open_id == given) or (not given and open_name == name):
                del self._open[k]
                return open_id
        return given or f"call_{self._count}"


def _parse_part(part: dict[str, Any], field: str, ids: _CallIds) -> Part | None:
    if part.get("thought"):
        return None  # a thought summary, not part of the conversation
    if "text" in part:
        return TextPart(expect_str(part["text"], f"{field}.text"))
    if (inline := _get(part, "inlineData")) is not None:
        inline = expect_dict(inline, f"{field}.inlineData")
        return ImagePart(
            media_type=expect_str(_get(inline, "mimeType"), f"{field}.inlineData.mimeType"),
            data=expect_str(inline.get("data"), f"{field}.inlineData.data"),
        )
    if (file := _get(part, "fileData")) is not None:
        file = expect_dict(file, f"{field}.fileData")
        return ImagePart(
            url=expect_str(_get(file, "fileUri"), f"{field}.fileData.fileUri"),
            media_type=opt_str(_get(file, "mimeType"), f"{field}.fileData.mimeType"),
        )
    if (call := _get(part, "functionCall")) is not None:
        call = expect_dict(call, f"{field}.functionCall")
        name = expect_str(call.get("name"), f"{field}.functionCall.name")
        args = call.get("args")
        return ToolCallPart(
            id=ids.call(name, opt_str(call.get("id"), f"{field}.functionCall.id")),
            name=name,
            arguments={} if args is None else expect_dict(args, f"{field}.functionCall.args"),
        )
    if (result := _get(part, "functionResponse")) is not None:
        result = expect_dict(result, f"{field}.functionResponse")
        name = expect_str(result.get("name"), f"{field}.functionResponse.name")
        response = expect_dict(result.get("response"), f"{field}.functionResponse.response")
        content, is_error = _response_content(response)
        call_id = ids.response(name, opt_str(result.get("id"), f"{field}.functionResponse.id"))
        return ToolResultPart(call_id, content, is_error, name)
    raise TranslationError(f"'{field}' has no part type this gateway translates")


def _response_content(response: dict[str, Any]) -> tuple[str, bool]:
    """``{"output": ...}`` or ``{"error": ...}``; any other object is the output itself."""
    if set(response) == {"error"}:
        value, is_error = response["error"], True
    elif set(response) == {"output"}:
        value, is_error = response["output"], False
    else:
        value, is_error = response, False
    return (value if isinstance(value, str) else dump_json(value)), is_error


def _parse_generation_config(req: ChatRequest, raw: Any) -> None:
    if raw is None:
        return
    config = expect_dict(raw, "generationConfig")
    field = "generationConfig."
    req.n = opt_positive_int(_get(config, "candidateCount"), field + "candidateCount")
    req.max_tokens = opt_positive_int(_get(config, "maxOutputTokens"), field + "maxOutputTokens")
    req.temperature = opt_number(config.get("temperature"), field + "temperature", 0, 2)
    req.top_p = opt_number(_get(config, "topP"), field + "topP", 0, 1)
    req.top_k = opt_positive_int(_get(config, "topK"), field + "topK")
    req.stop = stop_list(_get(config, "stopSequences"), field + "stopSequences")
    req.seed = opt_int(config.get("seed"), field + "seed")
    for name, camel in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        setattr(req, name, opt_number(_get(config, camel), field + camel, -2, 2))
    mime = opt_str(_get(config, "responseMimeType"), field + "responseMimeType")
    schema = _get(config, "responseJsonSchema")
    if schema is not None:
        schema = expect_dict(schema, field + "responseJsonSchema")
        req.response_format = ResponseFormat("json_schema", schema=schema, name="response")
    elif mime == "application/json":
        req.response_format = ResponseFormat("json_object")
    req.logprobs = opt_bool(_get(config, "responseLogprobs"), field + "responseLogprobs")
    req.top_logprobs = opt_int(config.get("logprobs"), field + "logprobs", 0, 20)
    thinking = _get(config, "thinkingConfig")
    if thinking is not None:
        budget = _get(expect_dict(thinking, field + "thinkingConfig"), "thinkingBudget")
        budget = opt_int(budget, field + "thinkingConfig.thinkingBudget", -1)
        # -1 is dynamic thinking, the model's default.
        req.reasoning = None if budget in (None, -1) else Reasoning(budget_tokens=budget)


def _parse_tools(raw: Any) -> list[Tool]:
    tools: list[Tool] = []
    for i, entry in enumerate(expect_list(raw, "tools") if raw is not None else []):
        entry = expect_dict(entry, f"tools[{i}]")
        declarations = _get(entry, "functionDeclarations")
        if declarations is None:
            raise TranslationError(f"'tools[{i}]': only functionDeclarations translate")
        for j, raw_decl in enumerate(expect_list(declarations, f"tools[{i}].functionDeclarations")):
            field = f"tools[{i}].functionDeclarations[{j}]"
            decl = expect_dict(raw_decl, field)
            schema = _get(decl, "parametersJsonSchema")
            if schema is None:
                schema = decl.get("parameters")
            tool = Tool(
                name=expect_str(decl.get("name"), f"{field}.name"),
                description=opt_str(decl.get("description"), f"{field}.description"),
            )
            if schema is not None:
                tool.parameters = expect_dict(schema, f"{field}.parameters")
            tools.append(tool)
    return tools


def _parse_tool_config(raw: Any) -> ToolChoice | None:
    if raw is None:
        return None
    config = _get(expect_dict(raw, "toolConfig"), "functionCallingConfig")
    if config is None:
        return None
    config = expect_dict(config, "toolConfig.functionCallingConfig")
    mode = config.get("mode", "AUTO")
    if mode not in _MODES_IN:
        raise TranslationError("'toolConfig.functionCallingConfig.mode' must be AUTO, ANY or NONE")
    names = _get(config, "allowedFunctionNames") or []
    if mode == "ANY" and isinstance(names, list) and len(names) == 1:
        return ToolChoice("tool", expect_str(names[0], "allowedFunctionNames[0]"))
    return ToolChoice(_MODES_IN[mode])


# --- the upstream's request -----------------------------------------------------------------

_SAMPLING_OUT = (
    ("top_k", "topK"),
    ("seed", "seed"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("n", "candidateCount"),
)


def _render_sampling(req: ChatRequest, config: dict[str, Any]) -> None:
    for name, camel in _SAMPLING_OUT:
        if getattr(req, name) is not None:
            config[camel] = getattr(req, name)
    if req.logprobs is not None:
        config["responseLogprobs"] = req.logprobs
    if req.logprobs and req.top_logprobs:
        config["logprobs"] = req.top_logprobs  # only with responseLogprobs, and at least 1
    fmt = req.response_format
    if fmt is not None and fmt.type != "text":
        config["responseMimeType"] = "application/json"
        if fmt.schema is not None:
            config["responseJsonSchema"] = fmt.schema
    if req.reasoning is not None:
        budget = params.thinking_budget(req.reasoning)
        if budget is not None:
            config["thinkingConfig"] = {"thinkingBudget": budget}


def render_request(req: ChatRequest, *, model: str | None = None) -> UpstreamRequest:
    """The generateContent body; ``path`` picks the streaming method when ``req.stream``."""
    name = quote((model or req.model).removeprefix("models/"), safe="-._")
    method = "streamGenerateContent?alt=sse" if req.stream else "generateContent"
    names = {p.id: p.name for m in req.messages for p in m.parts if isinstance(p, ToolCallPart)}
    body: dict[str, Any] = {
        "contents": [
            _render_content(m.role, m.parts, names) for m in without_reasoning(req.messages)
        ]
    }
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": req.system}]}
    config: dict[str, Any] = {}
    if req.max_tokens is not None:
        config["maxOutputTokens"] = req.max_tokens
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.stop:
        config["stopSequences"] = list(req.stop)
    _render_sampling(req, config)
    if config:
        body["generationConfig"] = config
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_render_tool(t) for t in req.tools]}]
        if req.tool_choice is not None:
            calling: dict[str, Any] = {"mode": _MODES_OUT[req.tool_choice.mode]}
            if req.tool_choice.mode == "tool":
                calling["allowedFunctionNames"] = [req.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
    return UpstreamRequest(f"/models/{name}:{method}", body)


def _render_tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    # Full JSON Schema: the older ``parameters`` field takes only an OpenAPI subset.
    out["parametersJsonSchema"] = tool.parameters
    return out


def _render_content(role: str, parts: list[Part], names: dict[str, str]) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    signed = False
    for part in parts:
        if isinstance(part, TextPart):
            if part.text or len(parts) == 1:  # "" sets no part data: a 400 ("oneof field")
                out.append({"text": part.text})
        elif isinstance(part, ImagePart):
            out.append(_render_image(part))
        elif isinstance(part, ToolCallPart):
            rendered: dict[str, Any] = {"functionCall": {"name": part.name, "args": part.arguments}}
            if not signed:  # only a turn's first call carries a signature
                rendered["thoughtSignature"] = SKIP_SIGNATURE
                signed = True
            out.append(rendered)
        elif isinstance(part, ToolResultPart):
            name = part.name or names.get(part.tool_call_id)
            if name is None:
                raise TranslationError(
                    f"tool result {part.tool_call_id!r} answers no tool call in the conversation"
                )
            key = "error" if part.is_error else "output"
            response = {"name": name, "response": {key: part.content}}
            out.append({"functionResponse": response})
    return {"role": "model" if role == "assistant" else "user", "parts": out}


def _render_image(part: ImagePart) -> dict[str, Any]:
    if part.url is None:
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    mime = part.media_type or mimetypes.guess_type(part.url)[0] or "image/jpeg"
    return {"fileData": {"mimeType": mime, "fileUri": part.url}}


# --- the upstream's response ----------------------------------------------------------------


def parse_response(body: Any) -> ChatResponse:
    obj = expect_dict(body, "response")
    resp = ChatResponse(
        id=get_str(obj, "responseId") or new_id("gen-"),
        model=get_str(obj, "modelVersion") or "",
        usage=parse_usage(obj.get("usageMetadata")) or Usage(),
    )
    candidates = _candidates(obj) or [{}]  # a blocked prompt has none: an empty answer
    answers = [_parse_candidate(candidate, obj) for candidate in candidates]
    resp.text, resp.tool_calls = answers[0].text, answers[0].tool_calls
    resp.finish_reason, resp.logprobs = answers[0].finish_reason, answers[0].logprobs
    resp.alternatives = answers[1:]
    return resp


def _parse_candidate(candidate: dict[str, Any], chunk: dict[str, Any]) -> ChatResponse:
    answer = ChatResponse(id="", model="", logprobs=_logprobs(candidate))
    texts: list[str] = []
    for part in _parts(candidate):
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            answer.tool_calls.append(_call_part(part["functionCall"]))
    answer.text = "".join(texts)
    reason = get_str(candidate, "finishReason")
    answer.finish_reason = _finish(reason, bool(answer.tool_calls), chunk)
    return answer


def _candidates(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    candidates = chunk.get("candidates")
    if not isinstance(candidates, list):
        return []
    return [c for c in candidates if isinstance(c, dict)]


def _answer_parts(chunk: dict[str, Any]) -> list[dict[str, Any]]:
    """The first candidate's parts (a stream is one answer)."""
    candidates = _candidates(chunk)
    return _parts(candidates[0]) if candidates else []


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    """A candidate's parts, in order, without thought summaries."""
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        return []
    return [p for p in parts if isinstance(p, dict) and not p.get("thought")]


def _logprobs(candidate: dict[str, Any]) -> dict[str, Any] | None:
    """A candidate's ``logprobsResult`` as OpenAI's ``choice.logprobs``."""
    result = candidate.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = [c for c in result.get("chosenCandidates") or [] if isinstance(c, dict)]
    tops = [t for t in result.get("topCandidates") or [] if isinstance(t, dict)]
    content = []
    for i, token in enumerate(chosen):
        alternatives = tops[i].get("candidates") or [] if i < len(tops) else []
        entry = _token_logprob(token)
        entry["top_logprobs"] = [_token_logprob(a) for a in alternatives if isinstance(a, dict)]
        content.append(entry)
    return {"content": content, "refusal": None}


def _token_logprob(candidate: dict[str, Any]) -> dict[str, Any]:
    token = get_str(candidate, "token") or ""
    logprob = candidate.get("logProbability")
    return {
        "token": token,
        "logprob": float(logprob) if isinstance(logprob, int | float) else 0.0,
        "bytes": list(token.encode()),
    }


def _call_part(call: dict[str, Any]) -> ToolCallPart:
    name = expect_str(call.get("name"), "functionCall.name")
    args = call.get("args")
    return ToolCallPart(
        id=get_str(call, "id") or new_id("call_"),
        name=name,
        arguments=args if isinstance(args, dict) else {},
    )


def _finish(reason: str | None, called: bool, chunk: dict[str, Any]) -> FinishReason:
    if get_str(chunk, "promptFeedback", "blockReason"):
        return "content_filter"
    if reason is None or reason == "STOP":
        return "tool_calls" if called else "stop"
    if reason == "MAX_TOKENS":
        return "length"
    return "content_filter" if reason in _FILTER_FINISH else "error"


# --- the client's response ------------------------------------------------------------------


def render_response(resp: ChatResponse) -> dict[str, Any]:
    answers = [resp, *resp.alternatives]
    return {
        "candidates": [_render_candidate(answer, i) for i, answer in enumerate(answers)],
        "usageMetadata": render_usage(resp.usage),
        "modelVersion": resp.model,
        "responseId": resp.id,
    }


def _render_candidate(resp: ChatResponse, index: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": resp.text}] if resp.text else []
    parts += [
        {"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}} for c in resp.tool_calls
    ]
    return {
        "content": {"role": "model", "parts": parts},
        "finishReason": _FINISH_OUT[resp.finish_reason],
        "index": index,
    }


def render_usage(usage: Usage) -> dict[str, Any]:
    """Ours counts thoughts in the output; Gemini reports them beside the candidates."""
    prompt = usage.input_tokens or 0
    thoughts = usage.reasoning_tokens or 0
    output = usage.output_tokens or 0
    out = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(output - thoughts, 0),
        "totalTokenCount": prompt + output,
    }
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    if usage.cached_tokens:
        out["cachedContentTokenCount"] = usage.cached_tokens
    return out


# --- streams ---------------------------------------------------------------------------------


class StreamDecoder:
    """Upstream streamGenerateContent SSE events -> IR stream events."""

    def __init__(self) -> None:
        self.done = False
        self._started = False
        self._calls = 0

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        chunk = load_event(event.data)
        if isinstance(chunk.get("error"), dict):
            return [StreamError(chunk)]
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            model = get_str(chunk, "modelVersion") or ""
            out.append(MessageStart(get_str(chunk, "responseId") or "", model))
        candidates = _candidates(chunk)
        # The chunk's tokens: given with its first text.
        logprobs = _logprobs(candidates[0]) if candidates else None
        for part in _answer_parts(chunk):
            if isinstance(part.get("text"), str) and part["text"]:
                out.append(TextDelta(part["text"], logprobs))
                logprobs = None
            elif isinstance(part.get("functionCall"), dict):
                call = _call_part(part["functionCall"])
                out.append(ToolCallStart(self._calls, call.id, call.name))
                out.append(ToolCallDelta(self._calls, dump_json(call.arguments)))
                self._calls += 1
        usage = parse_usage(chunk.get("usageMetadata"))
        if usage is not None:
            out.append(UsageUpdate(usage))
        raw = chunk.get("candidates")
        reason = None
        if isinstance(raw, list) and raw and isinstance(raw[0], dict):
            reason = get_str(raw[0], "finishReason")
        if reason or get_str(chunk, "promptFeedback", "blockReason"):
            out.append(Finish(_finish(reason, self._calls > 0, chunk)))
            self.done = True
        return out
