"""The Responses API reader on the events and bodies the simulator does not send: the error
event, failures by code, garbage, and the vector shapes embeddings may come in."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from llmpulse.errors import ErrorClass
from llmpulse.providers import PROTOCOLS
from llmpulse.providers.base import ProtocolError, vector_length
from llmpulse.providers.openai_responses import ResponsesStreamParser, parse_response
from llmpulse.sse import SSEEvent


def event(obj: dict[str, Any]) -> SSEEvent:
    return SSEEvent(data=json.dumps(obj), event=str(obj.get("type", "message")))


def test_error_event_is_classified_by_its_code():
    parser = ResponsesStreamParser()
    update = parser.feed(
        event({"type": "error", "code": "rate_limit_exceeded", "message": "Slow down",
               "param": None, "sequence_number": 3})
    )  # fmt: skip
    assert update.error is not None
    assert update.error.error_class is ErrorClass.RATE_LIMITED
    assert update.error.message == "Slow down (rate_limit_exceeded)"


def test_failed_response_ends_the_stream_with_its_error():
    parser = ResponsesStreamParser()
    parser.feed(event({"type": "response.created", "response": {"id": "resp_1", "model": "m"}}))
    failed = {"id": "resp_1", "status": "failed", "model": "m-2026", "usage": None,
              "error": {"code": "server_error", "message": "boom"}}  # fmt: skip
    update = parser.feed(event({"type": "response.failed", "response": failed}))
    assert parser.done and update.error is not None
    assert update.error.error_class is ErrorClass.SERVER_ERROR
    assert parser.completion.response_id == "resp_1"
    assert parser.completion.response_model == "m-2026"


def test_output_kinds_and_usage():
    parser = ResponsesStreamParser()
    item = {"type": "function_call", "name": "get_weather", "arguments": ""}
    assert parser.feed(event({"type": "response.output_item.added", "item": item})).tool_chars == 11
    args = {"type": "response.function_call_arguments.delta", "delta": '{"a":1}'}
    assert parser.feed(event(args)).tool_chars == 7
    refusal = parser.feed(event({"type": "response.refusal.delta", "delta": "No."}))
    assert refusal.text == "No." and parser.completion.refused
    # Reasoning summaries are not the answer.
    summary = {"type": "response.reasoning_summary_text.delta", "delta": "thinking"}
    assert parser.feed(event(summary)).output_chars == 0
    usage = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 4},
             "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}}  # fmt: skip
    done = {"id": "r", "status": "incomplete", "usage": usage,
            "incomplete_details": {"reason": "content_filter"}}  # fmt: skip
    assert parser.feed(event({"type": "response.incomplete", "response": done})).done
    c = parser.completion
    assert (c.usage.input_tokens, c.usage.cached_tokens, c.usage.reasoning_tokens) == (9, 4, 2)
    assert c.finish_reason == "content_filter" and c.filtered


@pytest.mark.parametrize(
    "data",
    ["not json", "[1, 2]", json.dumps({"type": "response.completed"})],
)
def test_garbage_events_are_protocol_errors(data):
    with pytest.raises(ProtocolError):
        ResponsesStreamParser().feed(SSEEvent(data=data, event="response.completed"))


def test_parse_response_reads_text_and_refusals():
    body = {"object": "response", "id": "r", "status": "completed", "model": "m",
            "output": [{"type": "reasoning", "summary": []},
                       {"type": "message", "content": [{"type": "output_text", "text": "Paris"},
                                                       {"type": "refusal", "refusal": "no"}]}],
            "usage": {"input_tokens": 3, "output_tokens": 2}}  # fmt: skip
    c = parse_response(body)
    assert c.text_chars == 7 and c.refused and c.finish_reason == "completed"
    with pytest.raises(ProtocolError):
        parse_response({"object": "chat.completion", "choices": []})


def test_vector_length_accepts_floats_and_base64_only():
    assert vector_length([0.1, -2, 3.5]) == 3
    packed = base64.b64encode(struct.pack("<5f", *range(5))).decode()
    assert vector_length(packed) == 5
    for bad in ([], [True, 0.1], ["0.1"], "not base64!", base64.b64encode(b"abc").decode(), None):
        with pytest.raises(ProtocolError):
            vector_length(bad)


def test_embeddings_bodies_that_are_not_embeddings():
    openai, gemini = PROTOCOLS["openai"], PROTOCOLS["gemini"]
    for body in ({}, {"data": []}, {"data": [{"embedding": "%%%"}]}, []):
        with pytest.raises(ProtocolError):
            openai.parse_embeddings(body)
    for body in ({}, {"embedding": {"values": []}}, {"embedding": [1.0]}):
        with pytest.raises(ProtocolError):
            gemini.parse_embeddings(body)
    info = openai.parse_embeddings({"data": [{"embedding": [0.5] * 8}], "model": "e"})
    assert (info.dimensions, info.usage, info.response_model) == (8, None, "e")


def test_a_done_marker_is_not_an_ending():
    parser = ResponsesStreamParser()
    assert not parser.feed(SSEEvent(data="[DONE]")).done and not parser.done
