"""Protocol parsers against wire shapes taken from the official SDKs and API references.

The simulator covers the common paths end to end; these pin the provider-specific corners that
the simulator does not produce (Azure filter chunks, Groq's x_groq, xAI usage, Together's bare
model list, DeepSeek cache fields, Gemini error details, Anthropic cumulative usage).
"""

from __future__ import annotations

import json

from llmpulse.errors import ErrorClass
from llmpulse.providers import PROTOCOLS
from llmpulse.providers.base import ANSWER_CHARS, MAX_TOOL_CALLS
from llmpulse.sse import SSEEvent

openai = PROTOCOLS["openai"]
xai = PROTOCOLS["xai"]
anthropic = PROTOCOLS["anthropic"]
gemini = PROTOCOLS["gemini"]


def feed(parser, *events):
    return [parser.feed(e) for e in events]


def data(obj) -> SSEEvent:
    return SSEEvent(data=obj if isinstance(obj, str) else json.dumps(obj))


def chunk(delta=None, finish=None, **extra):
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m-2026",
        "choices": choices,
        **extra,
    }


def test_openai_stream_with_azure_filter_chunk_usage_chunk_and_done():
    parser = openai.stream_parser()
    updates = feed(
        parser,
        data(
            {"id": "", "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}
        ),
        data(chunk({"role": "assistant", "content": ""})),
        data(chunk({"content": "Hel"})),
        data(chunk({"content": "lo"}, system_fingerprint="fp_1")),
        data(chunk({}, finish="stop")),
        data(
            chunk(
                None,
                usage={
                    "prompt_tokens": 9,
                    "completion_tokens": 2,
                    "prompt_tokens_details": {"cached_tokens": 4},
                    "completion_tokens_details": {"reasoning_tokens": 0},
                },
            )
        ),
        data("[DONE]"),
    )
    assert [u.text for u in updates] == ["", "", "Hel", "lo", "", "", ""]
    assert updates[-1].done and parser.done
    c = parser.completion
    assert (c.response_model, c.system_fingerprint, c.finish_reason) == ("m-2026", "fp_1", "stop")
    assert (c.usage.input_tokens, c.usage.output_tokens, c.usage.cached_tokens) == (9, 2, 4)
    assert c.text_chars == 5


def test_groq_usage_in_x_groq_and_error():
    parser = openai.stream_parser()
    usage = {"prompt_tokens": 5, "completion_tokens": 7}
    feed(parser, data(chunk({"content": "x"}, finish="stop", x_groq={"id": "r", "usage": usage})))
    assert parser.completion.usage.output_tokens == 7
    (update,) = feed(parser, data(chunk({}, x_groq={"id": "r", "error": "stream stopped early"})))
    assert update.error is not None and "stream stopped early" in update.error.message


def test_finish_reason_error_fails_stream_and_non_stream():
    (update,) = feed(openai.stream_parser(), data(chunk({"content": ""}, finish="error")))
    assert update.error.error_class is ErrorClass.SERVER_ERROR
    body = {"choices": [{"message": {"content": ""}, "finish_reason": "error"}], "model": "m"}
    assert openai.parse_completion(body).error is not None


def test_in_stream_error_with_http_code_openrouter_style():
    (update,) = feed(
        openai.stream_parser(),
        data({"error": {"code": 429, "message": "Rate limit exceeded upstream"}}),
    )
    assert update.error.error_class is ErrorClass.RATE_LIMITED


def test_xai_counts_reasoning_outside_completion_tokens():
    body = {
        "model": "grok-3-mini",
        "choices": [{"message": {"content": ""}, "finish_reason": "length"}],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 1,
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }
    assert xai.parse_completion(body).usage.output_tokens == 31
    assert openai.parse_completion(body).usage.output_tokens == 1


def test_deepseek_cache_hit_tokens():
    body = {
        "choices": [],
        "usage": {"prompt_tokens": 100, "completion_tokens": 1, "prompt_cache_hit_tokens": 64},
    }
    assert openai.parse_completion(body).usage.cached_tokens == 64


def test_model_lists_of_openai_compatible_servers():
    together = [{"id": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "context_length": 131072}]
    info = openai.parse_models(together, "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo")
    assert info.listed and info.context_window == 131072
    vllm = {"object": "list", "data": [{"id": "m", "max_model_len": 8192}]}
    assert openai.parse_models(vllm, "m").context_window == 8192
    groq = {"object": "list", "data": [{"id": "m", "context_window": 131072}]}
    assert openai.parse_models(groq, "m").context_window == 131072
    assert not openai.parse_models({"data": [{"id": "other"}]}, "m").listed


def test_anthropic_stream_cumulative_usage_and_unknown_events():
    parser = anthropic.stream_parser()
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x-20260101",
            "content": [],
            "usage": {
                "input_tokens": 10,
                "cache_read_input_tokens": 90,
                "cache_creation_input_tokens": 5,
                "output_tokens": 1,
            },
        },
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"},
    }
    updates = feed(
        parser,
        SSEEvent(json.dumps(start), event="message_start"),
        SSEEvent(json.dumps({"type": "ping"}), event="ping"),
        SSEEvent(json.dumps({"type": "future_event"}), event="future_event"),
        SSEEvent(json.dumps(delta), event="content_block_delta"),
        SSEEvent(
            json.dumps(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 15},
                }
            ),
            event="message_delta",
        ),
        SSEEvent(json.dumps({"type": "message_stop"}), event="message_stop"),
    )
    assert [u.text for u in updates] == ["", "", "", "Hi", "", ""]
    assert parser.done
    u = parser.completion.usage
    assert (u.input_tokens, u.cached_tokens, u.cache_write_tokens, u.output_tokens) == (
        105,
        90,
        5,
        15,
    )
    assert parser.completion.finish_reason == "end_turn"


def test_anthropic_error_event_and_refusal():
    (update,) = feed(
        anthropic.stream_parser(),
        SSEEvent(
            json.dumps(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            ),
            event="error",
        ),
    )
    assert update.error.error_class is ErrorClass.UNAVAILABLE
    body = {
        "type": "message",
        "content": [],
        "stop_reason": "refusal",
        "usage": {"input_tokens": 1, "output_tokens": 0},
    }
    assert anthropic.parse_completion(body).filtered


def test_gemini_thoughts_usage_and_block():
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"text": "thinking...", "thought": True}, {"text": "Answer"}],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 20,
            "cachedContentTokenCount": 8,
            "candidatesTokenCount": 3,
            "thoughtsTokenCount": 40,
        },
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "r1",
    }
    c = gemini.parse_completion(body)
    assert c.text_chars == len("Answer")
    assert (c.usage.input_tokens, c.usage.cached_tokens) == (20, 8)
    assert (c.usage.output_tokens, c.usage.reasoning_tokens) == (43, 40)
    assert (c.response_model, c.response_id) == ("gemini-2.5-flash-001", "r1")
    blocked = gemini.parse_completion({"promptFeedback": {"blockReason": "SAFETY"}})
    assert blocked.filtered


def test_tool_calls_are_output_and_reasoning_is_not():
    """What ``llmpulse.timing`` times, as the gateway's decoders see it: a tool call's name and
    arguments (Gemini's as compact JSON) are output, reasoning is not."""
    args = '{"q": "weather"}'
    call = {
        "index": 0,
        "id": "c",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    updates = feed(
        openai.stream_parser(),
        data(chunk({"reasoning_content": "hmm"})),
        data(chunk({"tool_calls": [call]})),
        data(chunk({"tool_calls": [{"index": 0, "function": {"arguments": args}}]})),
    )
    assert [u.output_chars for u in updates] == [0, len("lookup"), len(args)]
    start = {"index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "lookup"}}
    updates = feed(
        anthropic.stream_parser(),
        SSEEvent(
            event="content_block_delta",
            data=json.dumps({"index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        ),
        SSEEvent(event="content_block_start", data=json.dumps(start)),
        SSEEvent(
            event="content_block_delta",
            data=json.dumps(
                {"index": 1, "delta": {"type": "input_json_delta", "partial_json": args}}
            ),
        ),
    )
    assert [u.output_chars for u in updates] == [0, len("lookup"), len(args)]
    parts = [
        {"text": "hmm", "thought": True},
        {"functionCall": {"name": "lookup", "args": {"q": "w"}}},
    ]
    (update,) = feed(gemini.stream_parser(), data({"candidates": [{"content": {"parts": parts}}]}))
    assert (update.text, update.output_chars) == ("", len("lookup") + len('{"q":"w"}'))


def test_gemini_error_details():
    def err(status, code, message, *details):
        body = {
            "error": {"code": code, "message": message, "status": status, "details": list(details)}
        }
        return gemini.parse_error(code, json.dumps(body).encode(), {})

    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "58s"}
    minute = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
    }
    day = {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}],
    }
    bad_key = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    rate = err("RESOURCE_EXHAUSTED", 429, "You exceeded your current quota", minute, retry)
    assert (rate.error_class, rate.retry_after_s) == (ErrorClass.RATE_LIMITED, 58)
    assert err("RESOURCE_EXHAUSTED", 429, "quota", day).error_class is ErrorClass.QUOTA
    assert err("INVALID_ARGUMENT", 400, "API key not valid", bad_key).error_class is ErrorClass.AUTH
    assert err("UNAVAILABLE", 503, "overloaded").error_class is ErrorClass.UNAVAILABLE


def test_non_json_error_bodies_fall_back_to_status():
    for protocol in (openai, anthropic, gemini):
        error = protocol.parse_error(502, b"<html>Bad Gateway</html>", {})
        assert error.error_class is ErrorClass.UNAVAILABLE
        assert "Bad Gateway" in error.message
        assert protocol.parse_error(500, b"", {}).message.endswith("(empty body)")


def test_an_answer_is_kept_up_to_its_bound_and_counted_whole():
    parser = openai.stream_parser()
    piece = "x" * 1000
    for _ in range(100):
        feed(parser, data(chunk({"content": piece})))
    c = parser.completion
    assert c.text_chars == 100_000 and c.text == "x" * ANSWER_CHARS


def test_tool_call_names_are_read_from_every_protocol_and_bounded():
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    parser = openai.stream_parser()
    feed(parser, data(chunk({"tool_calls": [call]})), data(chunk({"tool_calls": [
        {"index": 0, "function": {"arguments": "{}"}}]})))  # fmt: skip
    assert parser.completion.tool_calls == ["f"]
    message = {"role": "assistant", "content": None,
               "tool_calls": [{**call, "function": {"name": "g", "arguments": "{}"}}] * 100}  # fmt: skip
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}]}
    assert openai.parse_completion(body).tool_calls == ["g"] * MAX_TOOL_CALLS
    blocks = [{"type": "text", "text": "Let me check."},
              {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]  # fmt: skip
    done = anthropic.parse_completion({"type": "message", "content": blocks})
    assert done.tool_calls == ["get_weather"] and done.text == "Let me check."
    parts = [{"functionCall": {"name": "lookup", "args": {"q": 1}}}]
    candidate = {"content": {"parts": parts}, "finishReason": "STOP"}
    assert gemini.parse_completion({"candidates": [candidate]}).tool_calls == ["lookup"]
