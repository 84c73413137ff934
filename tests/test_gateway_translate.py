"""Translation between OpenAI, Anthropic and Gemini through the gateway's IR.

The official ``openai`` and ``anthropic`` SDKs read what we render: bodies are validated into
their types, and streams and errors are served to real SDK clients over an httpx mock
transport, so they go through the SDKs' own SSE decoding, accumulation and exception mapping.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmpulse.errors import ErrorClass
from llmpulse.gateway import ir
from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
)
from llmpulse.gateway.translate import anthropic as tr_anthropic
from llmpulse.gateway.translate import gemini as tr_gemini
from llmpulse.gateway.translate import openai as tr_openai
from llmpulse.gateway.translate import params
from llmpulse.gateway.translate.prefill import continuation_request
from llmpulse.result import Usage
from llmpulse.sse import SSEDecoder, SSEEvent

PROTOCOLS = ("openai", "anthropic", "gemini")
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
}


def render(protocol: str, req: ChatRequest) -> dict[str, Any]:
    module = {"openai": tr_openai, "anthropic": tr_anthropic, "gemini": tr_gemini}[protocol]
    return module.render_request(req).body


def parse(protocol: str, body: dict[str, Any], req: ChatRequest) -> ChatRequest:
    if protocol == "gemini":
        return tr_gemini.parse_request(body, model=req.model, stream=req.stream)
    module = tr_openai if protocol == "openai" else tr_anthropic
    return module.parse_request(body)


def canonical(req: ChatRequest, protocol: str) -> ChatRequest:
    """What survives a trip through ``protocol``: the fields it cannot carry are normalised."""
    req = copy.deepcopy(req)
    ir.fill_tool_result_names(req.messages)
    req.origin = protocol
    for field in params.OPTIONAL:
        if field not in params.CARRIED[protocol]:
            setattr(req, field, None)
    _canonical_params(req, protocol)
    if protocol != "openai":
        req.metadata = {}
        req.store = None
    if protocol == "gemini":
        req.user = None
        req.parallel_tool_calls = None
    if protocol == "anthropic":
        # disable_parallel_tool_use lives in tool_choice, which then defaults to auto.
        if req.tool_choice is not None and req.tool_choice.mode == "none":
            req.parallel_tool_calls = None
        if req.parallel_tool_calls is not False:
            req.parallel_tool_calls = None
        elif req.tool_choice is None:
            req.tool_choice = ToolChoice("auto")
    # Anthropic and Gemini streams always report usage; upstream OpenAI streams are asked to.
    req.include_usage = req.stream if protocol == "openai" else True
    for message in req.messages:
        for part in message.parts:
            if isinstance(part, ToolResultPart) and protocol == "openai":
                part.is_error = False  # OpenAI tool messages have no error flag
    if protocol == "gemini":
        ids = iter(range(1_000_000))
        mapping: dict[str, str] = {}
        for message in req.messages:
            for part in message.parts:
                if isinstance(part, ToolCallPart):
                    mapping[part.id] = part.id = f"call_{next(ids)}"
                elif isinstance(part, ToolResultPart):
                    part.tool_call_id = mapping.get(part.tool_call_id, part.tool_call_id)
    return req


def _canonical_params(req: ChatRequest, protocol: str) -> None:
    """Each protocol's own form of the parameters it translates."""
    fmt, reasoning = req.response_format, req.reasoning
    if protocol == "openai" and reasoning is not None:
        effort = params.effort(reasoning)
        req.reasoning = None if effort is None else ir.Reasoning(effort=effort)
    if protocol != "openai" and reasoning is not None:
        budget = params.thinking_budget(reasoning)
        if protocol == "anthropic" and budget:
            budget = max(budget, params.ANTHROPIC_MIN_BUDGET)
        req.reasoning = ir.Reasoning(budget_tokens=budget)
    if protocol == "gemini" and not (req.logprobs and req.top_logprobs):
        req.top_logprobs = None  # Gemini's logprobs count exists only with responseLogprobs
    if protocol == "gemini" and fmt is not None:
        # Gemini has no text format (it is the default) and no schema name or strictness.
        req.response_format = None if fmt.type == "text" else ir.ResponseFormat(fmt.type)
        if fmt.type == "json_schema":
            req.response_format = ir.ResponseFormat("json_schema", fmt.schema, "response")
    if protocol == "anthropic":
        req.n = None
        if req.service_tier is not None:
            req.service_tier = params.ANTHROPIC_TIERS.get(req.service_tier, req.service_tier)
        # Anthropic is sent no blank text and no prefill ending in whitespace.
        messages: list[Message] = []
        for message in req.messages:
            kept = [p for p in message.parts if not isinstance(p, TextPart) or p.text.strip()]
            ir.append_message(messages, message.role, kept)
        if messages and messages[-1].role == "assistant":
            last = messages[-1].parts[-1]
            if isinstance(last, TextPart):
                last.text = last.text.rstrip()
        req.messages = messages


def rich_request(**overrides: Any) -> ChatRequest:
    req = ChatRequest(
        model="my-chat-model",
        system="You are terse.",
        messages=[
            Message("user", [TextPart("Weather in Paris and Rome?")]),
            Message(
                "assistant",
                [
                    TextPart("Checking."),
                    ToolCallPart("call_a", "get_weather", {"city": "Paris"}),
                    ToolCallPart("call_b", "get_weather", {"city": "Rome", "unit": "c"}),
                ],
            ),
            Message(
                "user",
                [
                    ToolResultPart("call_a", "18C cloudy"),
                    ToolResultPart("call_b", "unknown city", is_error=True),
                    TextPart("And tomorrow?"),
                ],
            ),
        ],
        max_tokens=256,
        temperature=0.5,
        top_p=0.9,
        stop=["\n\nHuman:", "END"],
        tools=[Tool("get_weather", "Current weather for a city.", WEATHER_SCHEMA)],
        tool_choice=ToolChoice("auto"),
        user="user-42",
    )
    return dataclasses.replace(req, **overrides)


# --- requests -------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_request_round_trip_in_each_protocol(protocol: str) -> None:
    req = rich_request()
    assert parse(protocol, render(protocol, req), req) == canonical(req, protocol)


@pytest.mark.parametrize("first", PROTOCOLS)
@pytest.mark.parametrize("second", PROTOCOLS)
def test_request_survives_every_direction(first: str, second: str) -> None:
    req = rich_request(tool_choice=ToolChoice("tool", "get_weather"))
    via_first = parse(first, render(first, req), req)
    via_both = parse(second, render(second, via_first), req)
    assert via_both == canonical(canonical(req, first), second)


def test_openai_client_request_rendered_for_anthropic() -> None:
    body = {
        "model": "my-chat-model",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.7,
        "stop": "END",
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    upstream = tr_anthropic.render_request(tr_openai.parse_request(body), model="claude-sonnet-4-6")
    assert upstream.path == "/v1/messages"
    assert upstream.headers == {"anthropic-version": "2023-06-01"}
    assert upstream.body == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "18C"}],
            },
        ],
        "system": "Be brief.",
        "temperature": 0.7,
        "stop_sequences": ["END"],
        "tools": [{"name": "get_weather", "input_schema": WEATHER_SCHEMA}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }


def test_anthropic_client_request_rendered_for_gemini() -> None:
    body = {
        "model": "my-chat-model",
        "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "...", "signature": "sig"},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "18C"}],
                    },
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {"name": "get_weather", "description": "Weather.", "input_schema": WEATHER_SCHEMA}
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "stream": True,
    }
    upstream = tr_gemini.render_request(tr_anthropic.parse_request(body), model="gemini-2.5-flash")
    assert upstream.path == "/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert upstream.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {
                "role": "model",
                "parts": [
                    {
                        "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                        "thoughtSignature": "skip_thought_signature_validator",
                    }
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 64},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather.",
                        "parametersJsonSchema": WEATHER_SCHEMA,
                    }
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
        },
    }


def test_images_translate() -> None:
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    }
    req = tr_openai.parse_request(body)
    assert req.messages[0].parts[1:] == [
        ImagePart(media_type="image/png", data="iVBORw0KGgo="),
        ImagePart(url="https://example.com/cat.jpg"),
    ]
    blocks = tr_anthropic.render_request(req).body["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
    }
    parts = tr_gemini.render_request(req).body["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}
    }
    assert tr_openai.render_request(req).body["messages"] == body["messages"]


@pytest.mark.parametrize(
    ("parser", "body", "field"),
    [
        (tr_openai.parse_request, {"messages": [{"role": "user", "content": "x"}]}, "'model'"),
        (tr_openai.parse_request, {"model": "m", "messages": []}, "'messages'"),
        (
            tr_openai.parse_request,
            {"model": "m", "messages": [{"role": "robot", "content": "x"}]},
            "'messages[0].role'",
        ),
        (
            tr_openai.parse_request,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "'temperature'",
        ),
        (
            tr_openai.parse_request,
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0},
            "'n'",
        ),
        (
            tr_openai.parse_request,
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{bad"},
                            }
                        ],
                    }
                ],
            },
            "'messages[0].tool_calls[0].function.arguments'",
        ),
        (
            tr_openai.parse_request,
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "'messages[0].tool_call_id'",
        ),
        (
            tr_anthropic.parse_request,
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            "'max_tokens'",
        ),
        (
            tr_anthropic.parse_request,
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "'max_tokens'",
        ),
        (
            tr_anthropic.parse_request,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    }
                ],
            },
            "'messages[0].content[0].type'",
        ),
        (
            tr_anthropic.parse_request,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "'tools[0].type'",
        ),
        (
            tr_anthropic.parse_request,
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "maybe"},
            },
            "'tool_choice.type'",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    parser: Callable[[Any], ChatRequest], body: Any, field: str
) -> None:
    with pytest.raises(TranslationError) as info:
        parser(body)
    assert info.value.status == 400
    assert field in info.value.message


def test_gemini_needs_the_name_of_the_call_a_result_answers() -> None:
    req = ChatRequest("m", [Message("user", [ToolResultPart("nowhere", "x")])])
    with pytest.raises(TranslationError, match="answers no tool call"):
        tr_gemini.render_request(req)


# --- responses ------------------------------------------------------------------------------


RESPONSES = [
    ChatResponse(
        id="resp_1",
        model="served-model-2025",
        text="Paris: 18C.",
        finish_reason="stop",
        usage=Usage(input_tokens=120, output_tokens=9, cached_tokens=100, reasoning_tokens=0),
    ),
    ChatResponse(
        id="resp_2",
        model="served-model-2025",
        text="Let me check.",
        tool_calls=[
            ToolCallPart("call_1", "get_weather", {"city": "Paris"}),
            ToolCallPart("call_2", "get_weather", {"city": "Rome"}),
        ],
        finish_reason="tool_calls",
        usage=Usage(input_tokens=50, output_tokens=30, cached_tokens=0, reasoning_tokens=0),
    ),
    ChatResponse(
        id="r3",
        model="m",
        text="Once upon",
        finish_reason="length",
        usage=Usage(input_tokens=5, output_tokens=2, cached_tokens=0, reasoning_tokens=0),
    ),
    ChatResponse(
        id="r4",
        model="m",
        text="",
        finish_reason="content_filter",
        usage=Usage(input_tokens=5, output_tokens=0, cached_tokens=0, reasoning_tokens=0),
    ),
]


def _canonical_response(resp: ChatResponse, protocol: str) -> ChatResponse:
    resp = copy.deepcopy(resp)
    if protocol == "anthropic":
        resp.usage = dataclasses.replace(resp.usage, cache_write_tokens=0, reasoning_tokens=None)
    if protocol == "gemini":
        resp.usage = dataclasses.replace(
            resp.usage, cached_tokens=resp.usage.cached_tokens or None, reasoning_tokens=None
        )
    return resp


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("resp", RESPONSES, ids=lambda r: r.finish_reason)
def test_response_round_trip(protocol: str, resp: ChatResponse) -> None:
    module = {"openai": tr_openai, "anthropic": tr_anthropic, "gemini": tr_gemini}[protocol]
    assert module.parse_response(module.render_response(resp)) == _canonical_response(
        resp, protocol
    )


@pytest.mark.parametrize("resp", RESPONSES, ids=lambda r: r.finish_reason)
def test_sdks_validate_rendered_responses(resp: ChatResponse) -> None:
    completion = openai.types.chat.ChatCompletion.model_validate(tr_openai.render_response(resp))
    message = anthropic.types.Message.model_validate(tr_anthropic.render_response(resp))
    assert completion.model == message.model == resp.model
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == resp.usage.input_tokens
    assert completion.usage.prompt_tokens_details.cached_tokens == resp.usage.cached_tokens
    # Anthropic's input_tokens exclude cache reads.
    assert (
        message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0)
        == resp.usage.input_tokens
    )
    expected_stop = {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "content_filter": "refusal",
    }
    assert message.stop_reason == expected_stop[resp.finish_reason]
    assert completion.choices[0].finish_reason == resp.finish_reason
    calls = completion.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        (c.id, c.name, c.arguments) for c in resp.tool_calls
    ]
    tool_uses = [b for b in message.content if b.type == "tool_use"]
    assert [(b.id, b.name, b.input) for b in tool_uses] == [
        (c.id, c.name, c.arguments) for c in resp.tool_calls
    ]


def test_anthropic_stop_sequence_and_gemini_function_call_finish() -> None:
    body = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Hello"}], "stop_reason": "stop_sequence", "stop_sequence": "END",
        "usage": {"input_tokens": 3, "output_tokens": 2, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 5},
    }  # fmt: skip
    resp = tr_anthropic.parse_response(body)
    assert (resp.finish_reason, resp.stop_sequence) == ("stop", "END")
    assert resp.usage.input_tokens == 12 and resp.usage.cached_tokens == 5
    assert tr_anthropic.render_response(resp)["stop_reason"] == "stop_sequence"
    assert tr_openai.render_response(resp)["choices"][0]["finish_reason"] == "stop"
    # Gemini says STOP when it calls a function.
    gemini_body = {
        "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "thoughtsTokenCount": 7, "totalTokenCount": 22},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc",
    }  # fmt: skip
    resp = tr_gemini.parse_response(gemini_body)
    assert resp.finish_reason == "tool_calls"
    assert (resp.usage.output_tokens, resp.usage.reasoning_tokens) == (12, 7)
    assert (
        tr_gemini.parse_response(
            {**gemini_body, "candidates": [{"finishReason": "SAFETY"}]}
        ).finish_reason
        == "content_filter"
    )
    assert (
        tr_gemini.parse_response(
            {**gemini_body, "candidates": [{"finishReason": "MAX_TOKENS"}]}
        ).finish_reason
        == "length"
    )


# --- streams --------------------------------------------------------------------------------

# Recorded as the APIs send them. OpenAI: ChatCompletionChunk (openai-python
# types/chat/chat_completion_chunk.py), tool calls as ChoiceDeltaToolCall, usage chunk with
# empty choices for stream_options.include_usage, then [DONE].
OPENAI_STREAM = """\
data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":"Checking"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"content":" now."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_P","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\"Paris\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_R","type":"function","function":{"name":"get_weather","arguments":"{\\"city\\": \\"Rome\\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_1","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":41,"total_tokens":123,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"""

# Anthropic: RawMessageStreamEvent members (anthropic-sdk-python types/raw_*_event.py), as in
# the Messages streaming docs: ping after the first block start, input_json_delta fragments,
# message_delta with stop_reason and cumulative MessageDeltaUsage.
ANTHROPIC_STREAM = """\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-6","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":60,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" now."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_P","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"Paris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":41}}

event: message_stop
data: {"type":"message_stop"}

"""

# Gemini: streamGenerateContent?alt=sse, each event a whole GenerateContentResponse with the
# running usageMetadata; the function call arrives whole; the last chunk has finishReason.
GEMINI_STREAM = """\
data: {"candidates":[{"content":{"parts":[{"text":"Checking"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":82,"candidatesTokenCount":1,"totalTokenCount":83},"modelVersion":"gemini-2.5-flash","responseId":"gem-1"}

data: {"candidates":[{"content":{"parts":[{"text":" now."},{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":82,"candidatesTokenCount":21,"thoughtsTokenCount":20,"totalTokenCount":123,"cachedContentTokenCount":64},"modelVersion":"gemini-2.5-flash","responseId":"gem-1"}

"""


def decode(protocol: str, raw: str) -> list[ir.StreamEvent]:
    decoder = {"openai": tr_openai, "anthropic": tr_anthropic, "gemini": tr_gemini}[
        protocol
    ].StreamDecoder()
    events: list[ir.StreamEvent] = []
    for event in SSEDecoder().feed(raw.encode()):
        events += decoder.feed(event)
    assert decoder.done
    return events


def encode(client: str, events: list[ir.StreamEvent], include_usage: bool = True) -> bytes:
    encoder: Any = (
        tr_openai.StreamEncoder(model="my-chat-model", include_usage=include_usage)
        if client == "openai"
        else tr_anthropic.StreamEncoder(model="my-chat-model")
    )
    frames = [frame for event in events for frame in encoder.feed(event)]
    return b"".join(frames + encoder.close())


def test_decoders_agree_on_the_recorded_streams() -> None:
    openai_events = decode("openai", OPENAI_STREAM)
    assert openai_events == [
        ir.MessageStart("chatcmpl-1", "gpt-4o-2024-08-06"),
        ir.TextDelta("Checking"),
        ir.TextDelta(" now."),
        ir.ToolCallStart(0, "call_P", "get_weather"),
        ir.ToolCallDelta(0, '{"city": '),
        ir.ToolCallDelta(0, '"Paris"}'),
        ir.ToolCallStart(1, "call_R", "get_weather"),
        ir.ToolCallDelta(1, '{"city": "Rome"}'),
        ir.Finish("tool_calls"),
        ir.UsageUpdate(
            Usage(input_tokens=82, output_tokens=41, cached_tokens=64, reasoning_tokens=0)
        ),
    ]
    anthropic_events = decode("anthropic", ANTHROPIC_STREAM)
    assert anthropic_events[-2:] == [
        ir.Finish("tool_calls"),
        ir.UsageUpdate(
            Usage(input_tokens=80, output_tokens=41, cached_tokens=60, cache_write_tokens=0)
        ),
    ]
    assert [e for e in anthropic_events if isinstance(e, ir.ToolCallDelta)] == [
        ir.ToolCallDelta(0, '{"city": '),
        ir.ToolCallDelta(0, '"Paris"}'),
    ]
    gemini_events = decode("gemini", GEMINI_STREAM)
    assert gemini_events[:2] == [
        ir.MessageStart("gem-1", "gemini-2.5-flash"),
        ir.TextDelta("Checking"),
    ]
    assert gemini_events[-2:] == [
        ir.UsageUpdate(
            Usage(input_tokens=82, output_tokens=41, cached_tokens=64, reasoning_tokens=20)
        ),
        ir.Finish("tool_calls"),
    ]


def _openai_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    transport = httpx.MockTransport(handler)
    return openai.OpenAI(
        api_key="gw-key",
        base_url="http://gateway/v1",
        max_retries=0,
        http_client=httpx.Client(transport=transport),
    )


def _anthropic_client(handler: Callable[[Any], Any]) -> anthropic.Anthropic:
    # The anthropic SDK runs on httpx2, openai on httpx.
    transport = httpx2.MockTransport(lambda request: _as_httpx2(handler(request)))
    return anthropic.Anthropic(
        api_key="gw-key",
        base_url="http://gateway",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )


def _as_httpx2(response: httpx.Response) -> httpx2.Response:
    return httpx2.Response(
        response.status_code, headers=dict(response.headers), content=response.content
    )


def _sse_response(body: bytes) -> Callable[[Any], httpx.Response]:
    return lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body
    )


@pytest.mark.parametrize("upstream", PROTOCOLS)
def test_openai_sdk_streams_any_upstream(upstream: str) -> None:
    raw = {"openai": OPENAI_STREAM, "anthropic": ANTHROPIC_STREAM, "gemini": GEMINI_STREAM}[
        upstream
    ]
    body = encode("openai", decode(upstream, raw))
    assert body.endswith(b"data: [DONE]\n\n")
    client = _openai_client(_sse_response(body))
    chunks = list(
        client.chat.completions.create(
            model="my-chat-model",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c for c in chunks if not c.choices] == [chunks[-1]]  # one usage chunk, last
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 41
    assert chunks[-1].usage.prompt_tokens in (80, 82)
    with client.chat.completions.stream(
        model="my-chat-model", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking now."
    calls = [
        (c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []
    ]
    assert calls[0] == ("get_weather", {"city": "Paris"})
    assert (
        final.model
        == {
            "openai": "gpt-4o-2024-08-06",
            "anthropic": "claude-sonnet-4-6",
            "gemini": "gemini-2.5-flash",
        }[upstream]
    )


@pytest.mark.parametrize("upstream", PROTOCOLS)
def test_anthropic_sdk_streams_any_upstream(upstream: str) -> None:
    raw = {"openai": OPENAI_STREAM, "anthropic": ANTHROPIC_STREAM, "gemini": GEMINI_STREAM}[
        upstream
    ]
    body = encode("anthropic", decode(upstream, raw))
    client = _anthropic_client(_sse_response(body))
    events = list(
        client.messages.create(
            model="my-chat-model",
            max_tokens=100,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [e.index for e in events if e.type == "content_block_start"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert starts == stops == list(range(len(starts)))
    with client.messages.stream(
        model="my-chat-model", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "text" and message.content[0].text == "Checking now."
    tool = message.content[1]
    assert tool.type == "tool_use" and (tool.name, tool.input) == ("get_weather", {"city": "Paris"})
    assert message.usage.output_tokens == 41
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) in (80, 82)


def test_openai_stream_without_include_usage_has_no_usage_chunk() -> None:
    body = encode("openai", decode("anthropic", ANTHROPIC_STREAM), include_usage=False)
    chunks = [json.loads(e.data) for e in SSEDecoder().feed(body) if e.data != "[DONE]"]
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stream_errors_reach_sdks_as_their_exceptions() -> None:
    event = SSEEvent(
        '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "error"
    )
    assert tr_anthropic.StreamDecoder().feed(event) == [
        ir.StreamError(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    ]
    start = tr_anthropic.StreamEncoder(model="m").feed(ir.TextDelta("partial"))
    body = b"".join(start) + tr_anthropic.render_stream_error(
        529, ErrorClass.UNAVAILABLE, "upstream cut"
    )
    client = _anthropic_client(_sse_response(body))
    with pytest.raises(anthropic.APIStatusError, match="upstream cut"):
        list(
            client.messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
    first = tr_openai.StreamEncoder(model="m", include_usage=False).feed(ir.TextDelta("partial"))
    body = b"".join(first) + tr_openai.render_stream_error(
        ErrorClass.TIMEOUT, "stream idle for 10s"
    )
    oclient = _openai_client(_sse_response(body))
    with pytest.raises(openai.APIError, match="stream idle for 10s"):
        list(
            oclient.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )


# The error types OpenAI's API sends (its invalid API key is an invalid_request_error).
_OPENAI_TYPES = {"invalid_request_error", "insufficient_quota", "rate_limit_error", "server_error"}


@pytest.mark.parametrize(
    ("status", "error_class", "openai_exc", "anthropic_exc", "anthropic_type"),
    [
        (
            400,
            ErrorClass.CONTEXT_LENGTH,
            openai.BadRequestError,
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
        (
            401,
            ErrorClass.AUTH,
            openai.AuthenticationError,
            anthropic.AuthenticationError,
            "authentication_error",
        ),
        (
            429,
            ErrorClass.RATE_LIMITED,
            openai.RateLimitError,
            anthropic.RateLimitError,
            "rate_limit_error",
        ),
        (
            529,
            ErrorClass.UNAVAILABLE,
            openai.InternalServerError,
            anthropic.OverloadedError,
            "overloaded_error",
        ),
        # Every deployment down: Anthropic's own overload status, OpenAI's 503.
        (
            503,
            ErrorClass.UNAVAILABLE,
            openai.InternalServerError,
            anthropic.OverloadedError,
            "overloaded_error",
        ),
        (
            403,
            None,
            openai.PermissionDeniedError,
            anthropic.PermissionDeniedError,
            "permission_error",
        ),
        (404, None, openai.NotFoundError, anthropic.NotFoundError, "not_found_error"),
        (502, None, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
    ],
)
def test_errors_reach_sdks_as_their_exceptions(
    status: int,
    error_class: ErrorClass | None,
    openai_exc: type[Exception],
    anthropic_exc: type[Exception],
    anthropic_type: str,
) -> None:
    o_status, o_body = tr_openai.render_error(status, error_class, "no luck")
    assert o_status != 529 and o_body["error"]["type"] in _OPENAI_TYPES
    client = _openai_client(lambda request: httpx.Response(o_status, json=o_body))
    with pytest.raises(openai_exc) as o_info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert o_info.value.body == o_body["error"]  # type: ignore[attr-defined]
    a_status, a_body = tr_anthropic.render_error(status, error_class, "no luck", request_id="req_1")
    assert a_body["error"]["type"] == anthropic_type
    aclient = _anthropic_client(lambda request: httpx.Response(a_status, json=a_body))
    with pytest.raises(anthropic_exc) as a_info:
        aclient.messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert a_info.value.body == a_body  # type: ignore[attr-defined]


def test_malformed_upstream_event_is_a_502() -> None:
    with pytest.raises(TranslationError) as info:
        tr_openai.StreamDecoder().feed(SSEEvent("{not json"))
    assert info.value.status == 502


# --- prefill --------------------------------------------------------------------------------


def test_continuation_prefills_anthropic_only() -> None:
    req = rich_request(messages=[Message("user", [TextPart("Tell a story.")])])
    assert continuation_request("openai", req, "Once upon") is None
    assert continuation_request("gemini", req, "Once upon") is None
    assert continuation_request("anthropic", req, "   ") is None
    cont = continuation_request("anthropic", req, "Once upon a ", spent_tokens=3)
    assert cont is not None and cont.trimmed == " "
    assert cont.request.max_tokens == 253 and req.max_tokens == 256
    body = tr_anthropic.render_request(cont.request).body
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon a"}
    assert len(req.messages) == 1  # the original request is untouched


# --- properties -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_names, inner, max_size=3),
    max_leaves=6,
)
_args = st.dictionaries(_names, _json_values, max_size=3)
_images = st.builds(
    ImagePart,
    media_type=st.just("image/png"),
    data=st.from_regex(r"[A-Za-z0-9+/]{4,12}", fullmatch=True),
)


@st.composite
def chat_requests(draw: st.DrawFn) -> ChatRequest:
    """Requests in the IR's canonical form: alternating roles, tool results first in a turn,
    each answering a call of the turn before."""
    tools = draw(
        st.lists(
            st.builds(Tool, _names, st.none() | _text, st.just(WEATHER_SCHEMA)),
            max_size=2,
            unique_by=lambda t: t.name,
        )
    )
    messages: list[Message] = []
    pending: list[ToolCallPart] = []
    for turn in range(draw(st.integers(1, 4))):
        if turn % 2 == 0:
            parts: list[Any] = [
                ToolResultPart(c.id, draw(_text), draw(st.booleans()), c.name) for c in pending
            ]
            parts += draw(
                st.lists(_text.map(TextPart) | _images, min_size=0 if parts else 1, max_size=2)
            )
            messages.append(Message("user", parts))
            pending = []
        else:
            parts = draw(st.lists(_text.map(TextPart), max_size=2))
            count = draw(st.integers(0 if parts else 1, 2))
            pending = [
                ToolCallPart(f"call_{turn}_{k}", draw(_names), draw(_args)) for k in range(count)
            ]
            messages.append(Message("assistant", parts + pending))
    choice = draw(st.none() | st.sampled_from(["auto", "none", "required"]).map(ToolChoice))
    if tools and draw(st.booleans()):
        choice = ToolChoice("tool", tools[0].name)
    return ChatRequest(
        model=draw(_names),
        messages=messages,
        system=draw(st.none() | _text),
        max_tokens=draw(st.integers(1, 100_000)),
        temperature=draw(st.none() | st.floats(0, 1)),
        top_p=draw(st.none() | st.floats(0, 1)),
        stop=draw(st.lists(_text, max_size=3)),
        tools=tools,
        tool_choice=choice if tools else None,
        parallel_tool_calls=draw(st.none() | st.booleans()) if tools else None,
        stream=draw(st.booleans()),
        user=draw(st.none() | _names),
        response_format=draw(st.none() | _formats),
        seed=draw(st.none() | st.integers(-(2**31), 2**31 - 1)),
        frequency_penalty=draw(st.none() | st.floats(-2, 2)),
        presence_penalty=draw(st.none() | st.floats(-2, 2)),
        logprobs=draw(st.none() | st.booleans()),
        top_logprobs=draw(st.none() | st.integers(0, 20)),
        n=draw(st.none() | st.integers(1, 4)),
        logit_bias=draw(
            st.none() | st.dictionaries(st.from_regex(r"[0-9]{1,6}", fullmatch=True), _bias)
        ),
        top_k=draw(st.none() | st.integers(1, 500)),
        reasoning=draw(st.none() | _reasonings),
        service_tier=draw(st.none() | st.sampled_from(["auto", "default", "flex", "priority"])),
    )


_bias = st.integers(-100, 100).map(float)
_formats = st.sampled_from(["text", "json_object"]).map(ir.ResponseFormat) | st.builds(
    ir.ResponseFormat,
    st.just("json_schema"),
    st.just(WEATHER_SCHEMA),
    _names,
    st.none() | st.booleans(),
)
_reasonings = st.builds(
    ir.Reasoning, effort=st.sampled_from(list(params.EFFORT_BUDGETS))
) | st.builds(ir.Reasoning, budget_tokens=st.integers(0, 50_000))


@pytest.mark.parametrize("protocol", PROTOCOLS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(req=chat_requests())
def test_any_request_survives_render_then_parse(protocol: str, req: ChatRequest) -> None:
    body = json.loads(json.dumps(render(protocol, req)))  # what goes over the wire
    assert parse(protocol, body, req) == canonical(req, protocol)


_usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**5),
    cached_tokens=st.integers(0, 10),
    reasoning_tokens=st.just(0),
)


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=30),
    calls=st.lists(st.builds(ToolCallPart, _names, _names, _args), max_size=2),
    usage=_usages,
)
def test_any_response_is_valid_for_both_sdks(
    text: str, calls: list[ToolCallPart], usage: Usage
) -> None:
    resp = ChatResponse(
        "id_1", "served", text, calls, "tool_calls" if calls else "stop", usage=usage
    )
    openai.types.chat.ChatCompletion.model_validate(tr_openai.render_response(resp))
    anthropic.types.Message.model_validate(tr_anthropic.render_response(resp))
    assert tr_openai.parse_response(tr_openai.render_response(resp)) == resp


def test_xai_reasoning_tokens_count_as_completion_tokens_for_clients() -> None:
    """xAI reports reasoning beside ``completion_tokens`` (OpenAI counts it inside): the
    gateway's xai deployments must add it, as the probes' XAIProtocol does."""
    from llmpulse.gateway.proxy import _codec

    codec = _codec("xai")
    assert _codec("openai") is tr_openai and _codec("azure") is tr_openai
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 5,
        "total_tokens": 317,
        "completion_tokens_details": {"reasoning_tokens": 300},
    }
    body = {
        "id": "x1",
        "model": "grok-4",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
        ],
        "usage": usage,
    }
    answer = codec.parse_response(body)
    rendered = openai.types.chat.ChatCompletion.model_validate(tr_openai.render_response(answer))
    assert rendered.usage is not None
    assert (rendered.usage.completion_tokens, rendered.usage.total_tokens) == (305, 317)
    decoder = codec.StreamDecoder()
    chunk = {"id": "x1", "model": "grok-4", "choices": [], "usage": usage}
    events = decoder.feed(SSEEvent(json.dumps(chunk)))
    assert [e.usage.output_tokens for e in events if isinstance(e, ir.UsageUpdate)] == [305]


def test_empty_assistant_text_beside_tool_calls_is_not_sent_as_a_blank_part() -> None:
    """OpenAI clients send ``content: ""`` with tool calls; Anthropic rejects blank text blocks
    ("text content blocks must be non-empty") and Gemini empty text parts ("required oneof
    field 'data' must have one initialized field"), both with a 400."""
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    req = tr_openai.parse_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            ],
        }
    )
    claude = tr_anthropic.render_request(req).body["messages"][1]["content"]
    assert [b["type"] for b in claude] == ["tool_use"]
    gemini = tr_gemini.render_request(req).body["contents"][1]["parts"]
    assert [list(p) for p in gemini] == [["functionCall", "thoughtSignature"]]


def test_openai_store_goes_upstream_with_metadata() -> None:
    """OpenAI answers metadata without ``store: true`` with a 400 ("The 'metadata' parameter
    is only allowed when 'store' is enabled"): a client's store must go upstream with it."""
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "store": True,
        "metadata": {"team": "ai"},
    }
    up = tr_openai.render_request(tr_openai.parse_request(body)).body
    assert (up["store"], up["metadata"]) == (True, {"team": "ai"})
    plain = tr_openai.render_request(tr_openai.parse_request({**body, "store": None})).body
    assert "store" not in plain
    with pytest.raises(TranslationError):
        tr_openai.parse_request({**body, "store": "yes"})


# --- parameters: what each deployment can honour --------------------------------------------


def _req(**fields: Any) -> ChatRequest:
    base = rich_request(stop=[], temperature=None, top_p=None, user=None, max_tokens=8000)
    return dataclasses.replace(base, **fields)


@pytest.mark.parametrize(
    ("protocol", "model", "fields", "refused"),
    [
        ("anthropic", "claude-sonnet-4-6", {"seed": 1}, ["seed"]),
        ("gemini", "gemini-2.5-flash", {"seed": 1}, []),
        ("openai", "gpt-4o", {"seed": 1}, []),
        ("openai", "gpt-4o", {"top_k": 5}, ["top_k"]),
        ("anthropic", "claude-sonnet-4-6", {"logit_bias": {"1": 1.0}}, ["logit_bias"]),
        ("gemini", "gemini-2.5-flash", {"user": "u"}, ["user"]),
        ("anthropic", "claude-3-5-haiku", {"response_format": ir.ResponseFormat("json_object")},
         ["response_format"]),
        ("anthropic", "claude-3-5-haiku", {"response_format": ir.ResponseFormat("text")}, []),
        ("gemini", "gemini-2.5-flash", {"n": 2}, []),
        ("openai", "gpt-4o", {"n": 2, "stream": True}, ["n"]),  # a stream is one answer
        ("anthropic", "claude-sonnet-4-6", {"n": 2}, ["n"]),
        ("openai", "gpt-4o", {"n": 1}, []),
        # OpenAI reasoning models: the default sampling only, max_completion_tokens.
        ("openai", "o3-mini", {"temperature": 0.5}, ["temperature"]),
        ("openai", "o3-mini", {"temperature": 1.0, "top_p": 1.0}, []),
        ("openai", "gpt-5-mini", {"presence_penalty": 0.5, "logprobs": True},
         ["presence_penalty", "logprobs"]),
        ("azure", "o4-mini", {"top_p": 0.5}, ["top_p"]),
        ("openai", "gpt-5-chat-latest", {"temperature": 0.5}, []),
        ("openai", "gpt-4o", {"reasoning": ir.Reasoning(effort="low")}, ["reasoning"]),
        ("openai", "o3", {"reasoning": ir.Reasoning(budget_tokens=0)}, ["reasoning"]),
        ("openai", "gpt-4o", {"reasoning": ir.Reasoning(budget_tokens=0)}, []),
        # At most 4 stop sequences at OpenAI and Azure; other OpenAI-protocol servers differ.
        ("openai", "gpt-4o", {"stop": list("abcde")}, ["stop"]),
        ("xai", "grok-4", {"stop": list("abcde")}, []),
        ("anthropic", "claude-sonnet-4-6", {"stop": list("abcde")}, []),
        # Anthropic: temperature to 1; 4.5 models (and Opus 4.1) not temperature with top_p.
        ("anthropic", "claude-sonnet-4-20250514", {"temperature": 1.5}, ["temperature"]),
        ("anthropic", "claude-sonnet-4-5-20250929", {"temperature": 0.5, "top_p": 0.9}, ["top_p"]),
        ("anthropic", "claude-opus-4-1", {"temperature": 0.5, "top_p": 0.9}, ["top_p"]),
        ("anthropic", "claude-haiku-4-5", {"temperature": 0.5}, []),
        ("anthropic", "claude-sonnet-4-20250514", {"temperature": 0.5, "top_p": 0.9}, []),
        ("anthropic", "claude-3-5-sonnet-latest", {"temperature": 0.5, "top_p": 0.9}, []),
        # Thinking needs the default temperature and a budget under max_tokens.
        ("anthropic", "claude-sonnet-4-6",
         {"reasoning": ir.Reasoning(effort="high"), "max_tokens": 4000}, ["reasoning"]),
        ("anthropic", "claude-sonnet-4-6",
         {"reasoning": ir.Reasoning(effort="low"), "temperature": 0.5}, ["temperature"]),
        ("anthropic", "claude-sonnet-4-6", {"reasoning": ir.Reasoning(effort="xhigh")},
         ["reasoning"]),
        ("anthropic", "claude-sonnet-4-6",
         {"reasoning": ir.Reasoning(effort="low"), "top_k": 5, "top_p": 0.9,
          "tool_choice": ToolChoice("required")}, ["top_k", "top_p", "tool_choice"]),
        ("anthropic", "claude-sonnet-4-6",
         {"reasoning": ir.Reasoning(effort="low"), "top_p": 0.95, "tool_choice": ToolChoice()},
         []),
        ("gemini", "gemini-2.5-pro", {"reasoning": ir.Reasoning(budget_tokens=0)}, ["reasoning"]),
        ("gemini", "gemini-2.5-flash", {"reasoning": ir.Reasoning(budget_tokens=0)}, []),
        ("anthropic", "claude-sonnet-4-6", {"service_tier": "flex"}, ["service_tier"]),
        ("anthropic", "claude-sonnet-4-6", {"service_tier": "default"}, []),
    ],
)  # fmt: skip
def test_unsupported_names_what_a_deployment_cannot_honour(
    protocol: str, model: str, fields: dict[str, Any], refused: list[str]
) -> None:
    assert params.unsupported(_req(**fields), protocol, model) == refused


def test_fields_of_the_clients_protocol_go_only_to_that_protocol() -> None:
    req = tr_openai.parse_request(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "verbosity": "low"}
    )
    assert req.extra == {"verbosity": "low"}
    assert params.unsupported(req, "xai", "grok-4") == []
    assert params.unsupported(req, "anthropic", "claude-sonnet-4-6") == ["extra:verbosity"]
    assert params.client_name(req, "extra:verbosity") == "verbosity"
    assert tr_openai.render_request(req).body["verbosity"] == "low"
    assert "verbosity" not in tr_anthropic.render_request(req).body
    dropped = params.without(req, ["extra:verbosity"])
    assert dropped.extra == {} and req.extra == {"verbosity": "low"}  # a copy, not in place


def test_without_drops_each_parameter_to_its_default() -> None:
    req = _req(seed=3, stop=["x"], n=2, top_k=4, user="u")
    dropped = params.without(req, ["seed", "stop", "n", "top_k"])
    assert (dropped.seed, dropped.stop, dropped.n, dropped.top_k) == (None, [], None, None)
    assert dropped.user == "u" and (req.seed, req.stop) == (3, ["x"])


def test_client_names_follow_the_clients_protocol() -> None:
    anthropic_req = _req(origin="anthropic")
    assert params.client_name(anthropic_req, "reasoning") == "thinking"
    assert params.client_name(anthropic_req, "user") == "metadata.user_id"
    assert params.client_name(_req(origin="openai"), "reasoning") == "reasoning_effort"


def test_reasoning_effort_and_budget_follow_litellm() -> None:
    # litellm/constants.py DEFAULT_REASONING_EFFORT_{MINIMAL,LOW,MEDIUM,HIGH}_THINKING_BUDGET
    budgets = {e: params.thinking_budget(ir.Reasoning(effort=e)) for e in ("low", "medium")}
    assert budgets == {"low": 1024, "medium": 2048}
    assert params.thinking_budget(ir.Reasoning(effort="high")) == 4096
    assert params.thinking_budget(ir.Reasoning(effort="minimal")) == 128
    efforts = [params.effort(ir.Reasoning(budget_tokens=b)) for b in (0, 100, 1024, 1500, 9000)]
    assert efforts == [None, "minimal", "low", "medium", "high"]
    body = tr_anthropic.render_request(_req(reasoning=ir.Reasoning(effort="minimal"))).body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}  # Anthropic's least
    off = tr_anthropic.render_request(_req(reasoning=ir.Reasoning(effort="none"))).body
    assert off["thinking"] == {"type": "disabled"}
    assert (
        "reasoning_effort"
        not in tr_openai.render_request(_req(reasoning=ir.Reasoning(budget_tokens=0))).body
    )  # thinking off: a model that does not reason, as OpenAI's chat models


def test_max_tokens_field_by_model_and_api_version() -> None:
    field = params.max_tokens_field
    assert field("azure", "gpt-4o", "max_completion_tokens", "2024-06-01") == "max_tokens"
    assert field("azure", "gpt-4o", "max_completion_tokens", "2024-08-01-preview") == "max_tokens"
    preview = "2024-09-01-preview"
    assert field("azure", "gpt-4o", "max_completion_tokens", preview) == "max_completion_tokens"
    assert field("azure", "o1", "max_completion_tokens", "2025-04-01-preview") == (
        "max_completion_tokens"
    )
    assert field("openai", "o3-mini", "max_tokens", None) == "max_completion_tokens"
    assert field("openai", "llama-3.1-8b", "max_tokens", None) == "max_tokens"


def test_openai_response_format_becomes_gemini_json_mode() -> None:
    fmt = ir.ResponseFormat("json_schema", WEATHER_SCHEMA, "weather", True)
    config = tr_gemini.render_request(_req(response_format=fmt, top_k=7, seed=2)).body[
        "generationConfig"
    ]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == WEATHER_SCHEMA
    assert (config["topK"], config["seed"]) == (7, 2)
    plain = tr_gemini.render_request(_req(response_format=ir.ResponseFormat("json_object"))).body
    assert plain["generationConfig"]["responseMimeType"] == "application/json"
    assert "responseJsonSchema" not in plain["generationConfig"]


def test_openai_tool_choice_without_tools_is_left_out() -> None:
    body = tr_openai.render_request(_req(tools=[], tool_choice=ToolChoice("none"))).body
    assert "tool_choice" not in body


def test_anthropic_gets_no_blank_text_and_no_trailing_space_in_a_prefill() -> None:
    req = _req(
        messages=[
            Message("user", [TextPart(" \n"), TextPart("hi")]),
            Message("assistant", [TextPart("Let me think ")]),
        ]
    )
    assert tr_anthropic.render_request(req).body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me think"},
    ]


# --- thinking ---------------------------------------------------------------------------------

ANTHROPIC_THINKING = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Paris is in France.", "signature": "sig-1"},
        {"type": "redacted_thinking", "data": "enc-1"},
        {"type": "text", "text": "Paris."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 20},
}


def test_anthropic_thinking_reaches_both_sdks() -> None:
    resp = tr_anthropic.parse_response(ANTHROPIC_THINKING)
    assert resp.reasoning == [
        ir.ReasoningPart("Paris is in France.", signature="sig-1"),
        ir.ReasoningPart("", redacted="enc-1"),
    ]
    # Anthropic clients get the blocks back as sent, signatures included.
    message = anthropic.types.Message.model_validate(tr_anthropic.render_response(resp))
    assert [b.model_dump(exclude_none=True) for b in message.content] == ANTHROPIC_THINKING[
        "content"
    ]
    # OpenAI clients get the thinking as reasoning_content, as LiteLLM passes it on.
    completion = tr_openai.render_response(resp)
    assert completion["choices"][0]["message"]["reasoning_content"] == "Paris is in France."
    openai.types.chat.ChatCompletion.model_validate(completion)


def test_signed_thinking_goes_back_to_anthropic_only() -> None:
    body = {
        "model": "m",
        "max_tokens": 5000,
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": ANTHROPIC_THINKING["content"]},
            {"role": "user", "content": "And Italy?"},
        ],
    }
    req = tr_anthropic.parse_request(body)
    assert (
        tr_anthropic.render_request(req).body["messages"][1]["content"]
        == body["messages"][1]["content"]
    )
    assert tr_openai.render_request(req).body["messages"][1] == {
        "role": "assistant",
        "content": "Paris.",
    }
    gemini_turn = tr_gemini.render_request(req).body["contents"][1]
    assert gemini_turn == {"role": "model", "parts": [{"text": "Paris."}]}
    # Thinking another provider produced has no signature: Anthropic would reject it.
    req.messages[1].parts[:2] = [ir.ReasoningPart("unsigned")]
    assert tr_anthropic.render_request(req).body["messages"][1]["content"] == "Paris."


ANTHROPIC_THINKING_STREAM = "".join(
    f"event: {kind}\ndata: {json.dumps(data)}\n\n"
    for kind, data in [
        ("message_start", {"type": "message_start", "message": {**ANTHROPIC_THINKING, "content": []}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "Paris is "}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "thinking_delta", "thinking": "in France."}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "signature_delta", "signature": "sig-1"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                 "delta": {"type": "text_delta", "text": "Paris."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"output_tokens": 20}}),
        ("message_stop", {"type": "message_stop"}),
    ]
)  # fmt: skip


def test_streamed_thinking_reaches_both_sdks() -> None:
    events = decode("anthropic", ANTHROPIC_THINKING_STREAM)
    client = _anthropic_client(_sse_response(encode("anthropic", events)))
    with client.messages.stream(
        model="m", max_tokens=5000, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = stream.get_final_message()
    thinking, text = message.content
    assert thinking.type == "thinking" and thinking.thinking == "Paris is in France."
    assert thinking.signature == "sig-1"
    assert text.type == "text" and text.text == "Paris."
    openai_client = _openai_client(_sse_response(encode("openai", events)))
    chunks = list(
        openai_client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    thoughts = [
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices
    ]
    assert "".join(t for t in thoughts if t) == "Paris is in France."
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Paris."


def test_openai_logprobs_pass_through_to_openai_clients() -> None:
    logprobs = {
        "content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]
    }
    upstream = {
        "id": "chatcmpl-1",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi"},
                "finish_reason": "stop",
                "logprobs": logprobs,
            }
        ],
    }
    completion = tr_openai.render_response(tr_openai.parse_response(upstream))
    assert completion["choices"][0]["logprobs"] == logprobs
    openai.types.chat.ChatCompletion.model_validate(completion)
    chunk = {"id": "c", "model": "gpt-4o", "choices": [
        {"index": 0, "delta": {"content": "Hi"}, "finish_reason": None, "logprobs": logprobs}
    ]}  # fmt: skip
    events = tr_openai.StreamDecoder().feed(SSEEvent(json.dumps(chunk)))
    encoder = tr_openai.StreamEncoder(model="m", include_usage=False)
    frames = b"".join(frame for event in events for frame in encoder.feed(event))
    sent = [json.loads(e.data) for e in SSEDecoder().feed(frames)]
    assert [
        c["choices"][0]["logprobs"] for c in sent if c["choices"][0]["delta"].get("content")
    ] == [logprobs]


def test_gemini_logprobs_reach_openai_clients_in_openai_shape() -> None:
    config = tr_gemini.render_request(_req(logprobs=True, top_logprobs=2)).body["generationConfig"]
    assert (config["responseLogprobs"], config["logprobs"]) == (True, 2)
    candidate = {"token": "Hi", "logProbability": -0.25}
    upstream = {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": "Hi"}]},
                "finishReason": "STOP",
                "logprobsResult": {
                    "chosenCandidates": [candidate],
                    "topCandidates": [
                        {"candidates": [candidate, {"token": "Hey", "logProbability": -1.5}]}
                    ],
                },
            }
        ],
        "modelVersion": "gemini-2.5-flash",
    }
    completion = tr_openai.render_response(tr_gemini.parse_response(upstream))
    parsed = openai.types.chat.ChatCompletion.model_validate(completion)
    logprobs = parsed.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    (token,) = logprobs.content
    assert (token.token, token.logprob, token.bytes) == ("Hi", -0.25, [72, 105])
    assert [(t.token, t.logprob) for t in token.top_logprobs] == [("Hi", -0.25), ("Hey", -1.5)]
    (event,) = [
        e
        for e in tr_gemini.StreamDecoder().feed(SSEEvent(json.dumps(upstream)))
        if isinstance(e, ir.TextDelta)
    ]
    assert event.logprobs == completion["choices"][0]["logprobs"]


def test_n_answers_reach_openai_clients_as_choices() -> None:
    assert tr_gemini.render_request(_req(n=2)).body["generationConfig"]["candidateCount"] == 2
    assert tr_openai.render_request(_req(n=2)).body["n"] == 2
    gemini = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Yes."}]}, "finishReason": "STOP"},
            {
                "content": {"role": "model", "parts": [{"text": "No"}]},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
        "modelVersion": "gemini-2.5-flash",
    }
    completion = tr_openai.render_response(tr_gemini.parse_response(gemini))
    parsed = openai.types.chat.ChatCompletion.model_validate(completion)
    answers = [(c.index, c.message.content, c.finish_reason) for c in parsed.choices]
    assert answers == [(0, "Yes.", "stop"), (1, "No", "length")]
    again = tr_openai.render_response(tr_openai.parse_response(completion))
    assert again["choices"] == completion["choices"]  # OpenAI to OpenAI: every choice kept
    rendered = tr_gemini.render_response(tr_gemini.parse_response(gemini))
    assert rendered["candidates"][1] == gemini["candidates"][1]
