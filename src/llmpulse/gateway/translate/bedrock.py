"""AWS Bedrock Converse <-> IR, as the upstream's protocol only (no client speaks Converse here).

Shapes follow botocore's ``bedrock-runtime`` service model (2023-09-30): ``messages[]`` of
``{role, content[]}`` with ``text``, ``image{format, source{bytes}}`` (base64 in JSON),
``toolUse{toolUseId, name, input}`` and ``toolResult{toolUseId, content[{text}], status}``;
``system[{text}]``; ``inferenceConfig{maxTokens, temperature, topP, stopSequences}``;
``toolConfig{tools[{toolSpec{name, description, inputSchema{json}}}], toolChoice{auto|any|
tool{name}}}``. The answer is ``output.message.content``, ``stopReason`` and ``usage``; a stream
is ``messageStart``, ``contentBlockStart`` (tool use), ``contentBlockDelta`` (``text``,
``toolUse.input`` fragments, ``reasoningContent``), ``contentBlockStop``, ``messageStop`` and
``metadata`` (usage), as ``providers.bedrock``'s frame decoder reads them.

Converse has no "none" tool choice, no n, and takes only the four sampling settings above:
``translate.params`` keeps requests needing more away from Bedrock deployments.
"""

from __future__ import annotations

from typing import Any

from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    MessageStart,
    Part,
    ReasoningDelta,
    ReasoningPart,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    TranslationError,
    UpstreamRequest,
    UsageUpdate,
    without_reasoning,
)
from llmpulse.gateway.translate.common import (
    dump_json,
    expect_dict,
    expect_str,
    load_event,
    new_id,
)
from llmpulse.providers.base import get_str
from llmpulse.providers.bedrock import EXCEPTION_EVENT, model_path, parse_usage
from llmpulse.result import Usage
from llmpulse.sse import SSEEvent

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
# LiteLLM's stand-in tool (``add_dummy_tool``): Converse refuses toolUse and toolResult blocks in
# a request without a toolConfig, and clients send a tool conversation's last turn without tools.
_STAND_IN_TOOL = {
    "toolSpec": {
        "name": "dummy_tool",
        "description": "This is a dummy tool call",
        "inputSchema": {"json": {"type": "object", "properties": {}}},
    }
}
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


# --- the upstream's request -----------------------------------------------------------------


def render_request(req: ChatRequest, *, model: str | None = None) -> UpstreamRequest:
    """The Converse body; ``path`` picks ConverseStream when ``req.stream``."""
    operation = "converse-stream" if req.stream else "converse"
    body: dict[str, Any] = {
        "messages": [
            {"role": m.role, "content": _render_content(m.parts)}
            for m in without_reasoning(req.messages)
        ]
    }
    if req.system:
        body["system"] = [{"text": req.system}]
    config: dict[str, Any] = {}
    if req.max_tokens is not None:
        config["maxTokens"] = req.max_tokens
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.stop:
        config["stopSequences"] = list(req.stop)
    if config:
        body["inferenceConfig"] = config
    if req.tools:
        tool_config: dict[str, Any] = {"tools": [_render_tool(t) for t in req.tools]}
        choice = req.tool_choice
        if choice is not None and choice.mode == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif choice is not None and choice.mode == "tool":
            tool_config["toolChoice"] = {"tool": {"name": choice.name}}
        elif choice is not None and choice.mode == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        body["toolConfig"] = tool_config
    elif any(
        "toolUse" in block or "toolResult" in block
        for m in body["messages"]
        for block in m["content"]
    ):
        body["toolConfig"] = {"tools": [_STAND_IN_TOOL]}
    path = f"/model/{model_path(model or req.model)}/{operation}"
    return UpstreamRequest(path, body)


def _render_tool(tool: Tool) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:
        spec["description"] = tool.description
    return {"toolSpec": spec}


def _render_content(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, TextPart):
            if part.text.strip():  # Converse rejects blank text blocks
                out.append({"text": part.text})
        elif isinstance(part, ImagePart):
            out.append(_render_image(part))
        elif isinstance(part, ToolCallPart):
            call = {"toolUseId": part.id, "name": part.name, "input": part.arguments}
            out.append({"toolUse": call})
        elif isinstance(part, ToolResultPart):
            result: dict[str, Any] = {
                "toolUseId": part.tool_call_id,
                "content": [{"text": part.content}],
            }
            if part.is_error:
                result["status"] = "error"
            out.append({"toolResult": result})
    return out or [{"text": " "}]  # a message of blank text only: Converse wants a block


def _render_image(part: ImagePart) -> dict[str, Any]:
    fmt = _IMAGE_FORMATS.get(part.media_type or "")
    if part.data is None or fmt is None:
        raise TranslationError(
            "Bedrock takes images inline as PNG, JPEG, GIF or WebP (a data: URL), not by URL"
        )
    return {"image": {"format": fmt, "source": {"bytes": part.data}}}


# --- the upstream's response ----------------------------------------------------------------


def parse_response(body: Any) -> ChatResponse:
    obj = expect_dict(body, "response")
    output = expect_dict(obj.get("output"), "output")
    message = expect_dict(output.get("message"), "output.message")
    content = message.get("content")
    if not isinstance(content, list):
        raise TranslationError("output.message.content is not a list", 502)
    resp = ChatResponse(id=new_id("msg_"), model="", usage=parse_usage(obj.get("usage")) or Usage())
    texts: list[str] = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = use.get("input")
            resp.tool_calls.append(
                ToolCallPart(
                    id=get_str(use, "toolUseId") or new_id("tooluse_"),
                    name=expect_str(use.get("name"), "toolUse.name"),
                    arguments=arguments if isinstance(arguments, dict) else {},
                )
            )
        elif isinstance(block.get("reasoningContent"), dict):
            text = get_str(block["reasoningContent"], "reasoningText", "text") or ""
            signature = get_str(block["reasoningContent"], "reasoningText", "signature")
            resp.reasoning.append(ReasoningPart(text, signature))
    resp.text = "".join(texts)
    resp.finish_reason = _finish(get_str(obj, "stopReason"))
    return resp


def _finish(reason: str | None) -> FinishReason:
    if reason is None:
        return "stop"
    return _FINISH.get(reason, "error")  # malformed_model_output, malformed_tool_use


# --- streams ---------------------------------------------------------------------------------


class StreamDecoder:
    """ConverseStream events (from the event-stream frame decoder) -> IR stream events."""

    def __init__(self) -> None:
        self.done = False
        self._calls: dict[int, int] = {}  # content block index -> tool call number

    def feed(self, event: SSEEvent) -> list[StreamEvent]:
        kind = event.event
        payload = load_event(event.data)
        if kind == EXCEPTION_EVENT:
            return [StreamError(payload)]
        if kind == "messageStart":
            return [MessageStart(new_id("msg_"), "")]
        if kind == "contentBlockStart":
            start = payload.get("start")
            use = start.get("toolUse") if isinstance(start, dict) else None
            if not isinstance(use, dict):
                return []
            index = len(self._calls)
            self._calls[_block(payload)] = index
            name = expect_str(use.get("name"), "toolUse.name")
            return [ToolCallStart(index, get_str(use, "toolUseId") or new_id("tooluse_"), name)]
        if kind == "contentBlockDelta":
            delta = expect_dict(payload.get("delta"), "contentBlockDelta.delta")
            if isinstance(delta.get("text"), str):
                return [TextDelta(delta["text"])] if delta["text"] else []
            use = delta.get("toolUse")
            if isinstance(use, dict):
                call = self._calls.get(_block(payload))
                if call is None:
                    raise TranslationError("tool input for a block that started no tool use", 502)
                piece = use.get("input")
                return [ToolCallDelta(call, piece if isinstance(piece, str) else dump_json(piece))]
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict):
                return [
                    ReasoningDelta(
                        get_str(reasoning, "text") or "",
                        signature=get_str(reasoning, "signature"),
                    )
                ]
            return []
        if kind == "messageStop":
            return [Finish(_finish(get_str(payload, "stopReason")))]
        if kind == "metadata":
            self.done = True
            usage = parse_usage(payload.get("usage"))
            return [UsageUpdate(usage)] if usage is not None else []
        return []  # contentBlockStop, and event types added later


def _block(payload: dict[str, Any]) -> int:
    index = payload.get("contentBlockIndex")
    return index if isinstance(index, int) else 0
