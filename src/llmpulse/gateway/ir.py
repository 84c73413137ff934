"""The gateway's neutral representation of a chat request, its response and its stream.

Every wire protocol is parsed into these types and rendered from them, so a request that
arrives in one protocol can be served by a deployment speaking another. They hold only what
the protocols can express. A parameter a deployment's protocol or model cannot honour makes
that deployment ineligible for the request (``translate.params``), unless ``drop_params`` lets
the gateway drop it; fields of the client's own protocol with no neutral meaning ride in
``ChatRequest.extra`` and go only to deployments speaking that protocol.

Conventions: ``system`` is separate from ``messages``; tool results are parts of a ``user``
message (Anthropic's and Gemini's model; OpenAI's ``tool`` messages are folded into one);
tool-call arguments are JSON objects; usage follows ``llmpulse.result.Usage`` (input includes
cached tokens, output includes reasoning tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from llmpulse.result import Usage

Role = Literal["user", "assistant"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
ToolChoiceMode = Literal["auto", "none", "required", "tool"]


class TranslationError(ValueError):
    """A client request (or an upstream body) that cannot be translated; ``status`` is HTTP."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(slots=True)
class TextPart:
    text: str


@dataclasses.dataclass(slots=True)
class ImagePart:
    """An image by URL, or inline as base64 ``data`` with its ``media_type``."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None


@dataclasses.dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclasses.dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: str
    is_error: bool = False
    name: str | None = None  # Gemini answers a call by function name; filled from the call


@dataclasses.dataclass(slots=True)
class ReasoningPart:
    """The model's thinking before its answer. Only Anthropic takes it back in a later turn,
    and only with the ``signature`` it issued (or, ``redacted``, its encrypted form)."""

    text: str
    signature: str | None = None
    redacted: str | None = None


Part = TextPart | ImagePart | ToolCallPart | ToolResultPart | ReasoningPart


@dataclasses.dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclasses.dataclass(slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )


@dataclasses.dataclass(slots=True)
class ToolChoice:
    mode: ToolChoiceMode = "auto"
    name: str | None = None  # the one tool to call when mode is "tool"


@dataclasses.dataclass(slots=True)
class ResponseFormat:
    """OpenAI's ``response_format``: free text, any JSON object, or JSON matching ``schema``."""

    type: Literal["text", "json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


@dataclasses.dataclass(slots=True)
class Reasoning:
    """How much the model may think: an OpenAI effort or a token budget (Anthropic, Gemini).

    ``budget_tokens`` 0 means thinking is off (Anthropic ``disabled``, Gemini budget 0).
    """

    effort: str | None = None
    budget_tokens: int | None = None


@dataclasses.dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = dataclasses.field(default_factory=list)
    tools: list[Tool] = dataclasses.field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI's stream_options.include_usage, asked by the client
    user: str | None = None  # OpenAI ``user`` <-> Anthropic ``metadata.user_id``
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)  # OpenAI only
    # LiteLLM's metadata.tags: the caller's labels for llmpulse (``attribution``), never sent on.
    tags: list[str] = dataclasses.field(default_factory=list)
    store: bool | None = None  # OpenAI only; it rejects metadata without store: true
    response_format: ResponseFormat | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    n: int | None = None
    logit_bias: dict[str, float] | None = None
    top_k: int | None = None
    reasoning: Reasoning | None = None
    service_tier: str | None = None
    origin: str = "openai"  # the client's protocol family: whose ``extra`` fields these are
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    text: str = ""
    tool_calls: list[ToolCallPart] = dataclasses.field(default_factory=list)
    finish_reason: FinishReason = "stop"
    stop_sequence: str | None = None  # the stop sequence that ended generation, if known
    usage: Usage = dataclasses.field(default_factory=Usage)
    reasoning: list[ReasoningPart] = dataclasses.field(default_factory=list)
    logprobs: dict[str, Any] | None = None  # OpenAI's choice.logprobs, passed on as sent
    refusal: str | None = None  # the model declined instead of answering (OpenAI's refusal)
    dropped_params: list[str] = dataclasses.field(default_factory=list)
    # The further answers a request with n > 1 asked for (choices 1, 2, ...): each has its own
    # text, tool calls, finish reason, thinking and logprobs; id, model and usage are this one's.
    alternatives: list[ChatResponse] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(slots=True)
class UpstreamRequest:
    """What to send to a deployment: ``path`` is relative to the target's base URL."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


# Stream events. A decoder emits MessageStart first; tool calls are numbered 0, 1, ... in the
# order they start, whatever the upstream protocol's own block indices are.


@dataclasses.dataclass(slots=True)
class MessageStart:
    id: str
    model: str
    dropped_params: list[str] = dataclasses.field(default_factory=list)  # set by the gateway


@dataclasses.dataclass(slots=True)
class TextDelta:
    text: str
    logprobs: dict[str, Any] | None = None  # OpenAI's choice.logprobs for this chunk


@dataclasses.dataclass(slots=True)
class RefusalDelta:
    """A fragment of the model declining to answer, in place of content (OpenAI's refusal)."""

    text: str


@dataclasses.dataclass(slots=True)
class ReasoningDelta:
    """Thinking text; ``signature`` ends a thinking block, ``redacted`` is a whole one."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclasses.dataclass(slots=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclasses.dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the arguments' JSON text


@dataclasses.dataclass(slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None


@dataclasses.dataclass(slots=True)
class UsageUpdate:
    usage: Usage  # running totals: a later update replaces an earlier one


@dataclasses.dataclass(slots=True)
class StreamError:
    """An error the upstream sent after its 200; ``body`` is its error object as sent."""

    body: dict[str, Any]


StreamEvent = (
    MessageStart
    | TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ToolCallStart
    | ToolCallDelta
    | Finish
    | UsageUpdate
    | StreamError
)


def fill_tool_result_names(messages: list[Message]) -> None:
    """Give each tool result the name of the call it answers (protocols that omit it)."""
    names: dict[str, str] = {}
    for message in messages:
        for part in message.parts:
            if isinstance(part, ToolCallPart):
                names[part.id] = part.name
            elif isinstance(part, ToolResultPart) and part.name is None:
                part.name = names.get(part.tool_call_id)


def append_message(messages: list[Message], role: Role, parts: list[Part]) -> None:
    """Append, merging into the previous message when it has the same role.

    Consecutive same-role messages mean the same thing in all three protocols; merging them
    gives one canonical form (OpenAI's run of ``tool`` messages becomes one user message).
    """
    if not parts:
        return
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, parts))


def without_reasoning(messages: list[Message]) -> list[Message]:
    """The conversation as protocols that take no thinking back are sent it."""
    out: list[Message] = []
    for message in messages:
        parts: list[Part] = [p for p in message.parts if not isinstance(p, ReasoningPart)]
        append_message(out, message.role, parts)
    return out


def text_of(parts: list[Part]) -> str:
    return "".join(p.text for p in parts if isinstance(p, TextPart))
