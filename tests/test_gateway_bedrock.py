"""Bedrock behind the gateway: LiteLLM's bedrock/ deployments read, IR <-> Converse, and the
official OpenAI and Anthropic SDKs failing over from a simulated OpenAI to a simulated Bedrock
that verifies every SigV4 signature."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from conftest import sim_model
from llmpulse.config import ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.ir import (
    ChatRequest,
    Finish,
    ImagePart,
    Message,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    TranslationError,
    UsageUpdate,
)
from llmpulse.gateway.translate import bedrock as tr
from llmpulse.gateway.translate import params
from llmpulse.providers.bedrock import EventStreamDecoder
from llmpulse.sim import bedrock as simbedrock
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, Served, upstream

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
ENV = {"SIM_KEY": "sk-sim", "BEDROCK_KEY_ID": KEY_ID, "BEDROCK_SECRET": SECRET}


def bedrock_entry(sim: SimServer, group: str, model: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"bedrock/converse/{model}",
            "api_base": sim.bedrock_base,
            "aws_region_name": "us-east-1",
            "aws_access_key_id": "os.environ/BEDROCK_KEY_ID",
            "aws_secret_access_key": "os.environ/BEDROCK_SECRET",
            **params,
        },
    }


def failover_config(sim: SimServer, down: str, nova: str) -> GatewayConfig:
    raw = {
        "model_list": [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": f"openai/{down}",
                    "api_base": sim.openai_base,
                    "api_key": "os.environ/SIM_KEY",
                },
            },
            bedrock_entry(sim, "nova", nova),
        ],
        "router_settings": {"fallbacks": [{"chat": ["nova"]}], "num_retries": 0},
    }
    config = parse_gateway(raw, env=ENV)
    assert config is not None
    return config


def bedrock_model(sim: SimServer, **behavior: Any) -> str:
    name = f"amazon.{sim_model(sim, **behavior)}-v1:0"
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10).raise_for_status()
    return name


# --- LiteLLM's bedrock/ deployments -------------------------------------------------------------


def test_a_bedrock_deployment_is_served_with_its_keys_and_region() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    "aws_access_key_id": "os.environ/K",
                    "aws_secret_access_key": "os.environ/S",
                    "aws_region_name": "eu-west-3",
                },
            },
            {
                "model_name": "nova",
                "litellm_params": {"model": "bedrock/converse/amazon.nova-micro-v1:0"},
            },
        ]
    }
    config = parse_gateway(
        raw, env={"K": "AKIDX", "S": "secret-value-123", "AWS_REGION": "ap-south-1"}
    )
    assert config is not None
    claude, nova = config.deployments
    assert claude.protocol == "bedrock" and claude.region == "eu-west-3"
    assert claude.base_url == "https://bedrock-runtime.eu-west-3.amazonaws.com"
    assert claude.aws == {"access_key_id": "AKIDX", "secret_access_key": "secret-value-123"}
    assert "secret-value-123" in claude.secrets and "secret-value-123" not in repr(claude)
    assert claude.missing_key is None
    # No keys: the standard chain; the region from the environment.
    assert nova.model == "amazon.nova-micro-v1:0" and nova.aws == {}
    assert nova.region == "ap-south-1"
    target = nova.to_target()
    assert target.region == "ap-south-1" and target.price_provider == "aws"
    assert not any("bedrock" in w for w in config.warnings)


def test_unset_aws_variables_leave_the_deployment_keyless() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "nova",
                "litellm_params": {
                    "model": "bedrock/amazon.nova-micro-v1:0",
                    "aws_access_key_id": "os.environ/K",
                    "aws_secret_access_key": "os.environ/S",
                },
            }
        ]
    }
    config = parse_gateway(raw, env={})
    assert config is not None
    (nova,) = config.deployments
    assert nova.region == "us-west-2"  # LiteLLM's default
    assert nova.missing_key and "K (model_list[0].litellm_params.aws_access_key_id)" in (
        nova.missing_key
    )


def test_half_a_key_pair_is_refused() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "nova",
                "litellm_params": {"model": "bedrock/x", "aws_access_key_id": "os.environ/K"},
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"aws_secret_access_key: required with aws_access_key"):
        parse_gateway(raw, env={"K": "AKIDX"})


def test_role_assumption_is_skipped_and_said() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "nova",
                "litellm_params": {"model": "bedrock/x", "aws_role_name": "arn:aws:iam::1:role/r"},
            },
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "api_key": "k"}},
        ]
    }
    config = parse_gateway(raw, env={})
    assert config is not None
    assert [d.group for d in config.deployments] == ["gpt"]
    assert any("aws_role_name" in w for w in config.warnings)


# --- IR <-> Converse ---------------------------------------------------------------------------


def test_a_request_in_converse() -> None:
    req = ChatRequest(
        model="chat",
        system="be brief",
        messages=[
            Message(
                "user",
                [TextPart("look"), ImagePart(media_type="image/png", data="iVBORw0KGgo=")],
            ),
            Message("assistant", [TextPart(""), ToolCallPart("t1", "lookup", {"q": "x"})]),
            Message("user", [ToolResultPart("t1", "42", is_error=True)]),
        ],
        max_tokens=100,
        temperature=0.5,
        top_p=0.9,
        stop=["END"],
        tools=[Tool("lookup", "find things", {"type": "object", "properties": {}})],
        tool_choice=ToolChoice("tool", "lookup"),
        stream=True,
    )
    up = tr.render_request(req, model="us.amazon.nova-lite-v1:0")
    assert up.path == "/model/us.amazon.nova-lite-v1%3A0/converse-stream"
    assert up.body == {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "look"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "t1", "name": "lookup", "input": {"q": "x"}}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "t1",
                            "content": [{"text": "42"}],
                            "status": "error",
                        }
                    }
                ],
            },
        ],
        "system": [{"text": "be brief"}],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "lookup",
                        "description": "find things",
                        "inputSchema": {"json": {"type": "object", "properties": {}}},
                    }
                }
            ],
            "toolChoice": {"tool": {"name": "lookup"}},
        },
    }
    with pytest.raises(TranslationError, match="inline"):
        tr.render_request(
            ChatRequest(model="m", messages=[Message("user", [ImagePart(url="https://x/y.png")])])
        )


def test_parameters_converse_cannot_carry_make_the_deployment_ineligible() -> None:
    base = ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])])
    req = ChatRequest(model="m", messages=base.messages, seed=3, n=2, top_k=5)
    assert set(params.unsupported(req, "bedrock", "amazon.nova-micro-v1:0")) == {
        "seed",
        "n",
        "top_k",
    }
    none = ChatRequest(
        model="m", messages=base.messages, tools=[Tool("f")], tool_choice=ToolChoice("none")
    )
    assert params.unsupported(none, "bedrock", "amazon.nova-micro-v1:0") == ["tool_choice"]
    hot = ChatRequest(model="m", messages=base.messages, temperature=1.5)
    assert params.unsupported(hot, "bedrock", "anthropic.claude-3-haiku-20240307-v1:0") == [
        "temperature"
    ]
    assert params.unsupported(hot, "bedrock", "amazon.nova-micro-v1:0") == []
    # Claude 4.5 on Bedrock too: "`temperature` and `top_p` cannot both be specified".
    both = ChatRequest(model="m", messages=base.messages, temperature=0.5, top_p=0.9)
    sonnet = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert params.unsupported(both, "bedrock", sonnet) == ["top_p"]
    assert params.unsupported(both, "bedrock", "anthropic.claude-3-haiku-20240307-v1:0") == []


def test_an_answer_from_converse() -> None:
    resp = tr.parse_response(
        {
            "output": {
                "message": {
                    "role": "assistant",
                    "content": [
                        {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "s"}}},
                        {"text": "hi"},
                        {"toolUse": {"toolUseId": "t", "name": "f", "input": {"a": 1}}},
                    ],
                }
            },
            "stopReason": "tool_use",
            "usage": {"inputTokens": 5, "outputTokens": 7, "cacheReadInputTokens": 3},
            "metrics": {"latencyMs": 12},
        }
    )
    assert resp.text == "hi" and resp.finish_reason == "tool_calls"
    assert resp.tool_calls == [ToolCallPart("t", "f", {"a": 1})]
    assert resp.reasoning[0].text == "hmm" and resp.reasoning[0].signature == "s"
    assert resp.usage.input_tokens == 8 and resp.usage.cached_tokens == 3
    assert (
        tr.parse_response(
            {"output": {"message": {"content": []}}, "stopReason": "guardrail_intervened"}
        ).finish_reason
        == "content_filter"
    )


def test_a_tool_use_stream_from_converse() -> None:
    frames = b"".join(
        [
            simbedrock.event("messageStart", {"role": "assistant"}),
            simbedrock.event(
                "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "ok"}}
            ),
            simbedrock.event("contentBlockStop", {"contentBlockIndex": 0}),
            simbedrock.event(
                "contentBlockStart",
                {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}},
            ),
            simbedrock.event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a"'}}},
            ),
            simbedrock.event(
                "contentBlockDelta",
                {"contentBlockIndex": 1, "delta": {"toolUse": {"input": ":1}"}}},
            ),
            simbedrock.event("messageStop", {"stopReason": "tool_use"}),
            simbedrock.event("metadata", {"usage": {"inputTokens": 2, "outputTokens": 3}}),
        ]
    )
    decoder = tr.StreamDecoder()
    events = [e for sse in EventStreamDecoder().feed(frames) for e in decoder.feed(sse)]
    assert decoder.done
    assert [type(e).__name__ for e in events] == [
        "MessageStart",
        "TextDelta",
        "ToolCallStart",
        "ToolCallDelta",
        "ToolCallDelta",
        "Finish",
        "UsageUpdate",
    ]
    assert events[1] == TextDelta("ok") and events[2] == ToolCallStart(0, "t", "f")
    assert events[3:5] == [ToolCallDelta(0, '{"a"'), ToolCallDelta(0, ":1}")]
    assert events[5] == Finish("tool_calls")
    assert isinstance(events[6], UsageUpdate) and events[6].usage.output_tokens == 3


# --- the SDKs through the gateway, failing over to Bedrock -------------------------------------


def test_openai_sdk_falls_back_to_bedrock(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    nova = bedrock_model(sim, **FAST)
    with Served(failover_config(sim, down, nova)) as served:
        client = served.openai()
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        answer = client.chat.completions.create(
            model="chat", messages=messages, max_tokens=32, temperature=0.2
        )
        assert answer.model == nova
        assert answer.choices[0].message.content and answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None and answer.usage.completion_tokens == 16

        chunks = list(
            client.chat.completions.create(
                model="chat",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == answer.choices[0].message.content
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    sent = upstream(sim, nova)
    assert len(sent) == 2 and len(upstream(sim, down)) == 2
    assert sent[0]["body"]["system"] == [{"text": "be brief"}]
    assert sent[0]["body"]["inferenceConfig"] == {"maxTokens": 32, "temperature": 0.2}
    assert [r.ok for r in served.records] == [True, True]
    assert served.records[0].provider == "bedrock"
    assert served.records[1].ttft_ms is not None


def test_anthropic_sdk_falls_back_to_bedrock(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    nova = bedrock_model(sim, **FAST)
    with Served(failover_config(sim, down, nova)) as served:
        client = served.anthropic()
        messages = [{"role": "user", "content": "hi"}]
        message = client.messages.create(model="chat", max_tokens=32, messages=messages)
        assert message.model == nova and message.stop_reason == "end_turn"
        text = "".join(b.text for b in message.content if b.type == "text")
        assert text and message.usage.output_tokens == 16
        with client.messages.stream(model="chat", max_tokens=32, messages=messages) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert streamed == text and final.usage.output_tokens == 16
    assert len(upstream(sim, nova)) == 2


def test_tool_calls_come_back_from_bedrock(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    nova = bedrock_model(sim, tool_call={"name": "lookup", "arguments": {"city": "Oslo"}}, **FAST)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with Served(failover_config(sim, down, nova)) as served:
        client = served.openai()
        messages = [{"role": "user", "content": "weather?"}]
        answer = client.chat.completions.create(model="chat", messages=messages, tools=tools)
        (call,) = answer.choices[0].message.tool_calls or []
        assert call.function.name == "lookup" and json.loads(call.function.arguments) == {
            "city": "Oslo"
        }
        assert answer.choices[0].finish_reason == "tool_calls"
        chunks = list(
            client.chat.completions.create(
                model="chat", messages=messages, tools=tools, stream=True
            )
        )
        args = "".join(
            c.choices[0].delta.tool_calls[0].function.arguments or ""
            for c in chunks
            if c.choices and c.choices[0].delta.tool_calls
        )
        assert json.loads(args) == {"city": "Oslo"}
    assert upstream(sim, nova)[0]["body"]["toolConfig"]["tools"][0]["toolSpec"]["name"] == "lookup"


def test_a_bad_signature_fails_over_as_auth(sim: SimServer) -> None:
    nova = bedrock_model(sim, **FAST)
    raw = {"model_list": [bedrock_entry(sim, "nova", nova)]}
    config = parse_gateway(raw, env={**ENV, "BEDROCK_SECRET": "wrong-secret-0123456789abcdef"})
    assert config is not None
    with Served(config) as served:
        with pytest.raises(Exception) as info:
            served.openai().chat.completions.create(
                model="nova", messages=[{"role": "user", "content": "hi"}]
            )
        assert "wrong-secret" not in str(info.value)
    (record,) = served.records
    assert record.error_class == "auth" and "InvalidSignatureException" in (
        record.error_message or ""
    )


def test_a_tool_conversation_without_tools_is_answered_by_bedrock(sim: SimServer) -> None:
    """A tool conversation's last turn often offers no tools; Converse refuses its toolUse and
    toolResult blocks without a toolConfig, so one with LiteLLM's stand-in tool is sent."""
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    nova = bedrock_model(sim, **FAST)
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'}}  # fmt: skip
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
    ]
    with Served(failover_config(sim, down, nova)) as served:
        answer = served.openai().chat.completions.create(model="chat", messages=messages)
        assert answer.model == nova and answer.choices[0].message.content
    (sent,) = upstream(sim, nova)
    (tool,) = sent["body"]["toolConfig"]["tools"]
    assert (
        tool["toolSpec"]["name"] == "dummy_tool" and "toolChoice" not in sent["body"]["toolConfig"]
    )
    plain = tr.render_request(ChatRequest(model="m", messages=[Message("user", [TextPart("hi")])]))
    assert "toolConfig" not in plain.body


def test_a_model_arn_names_the_deployments_region() -> None:
    """As LiteLLM reads it: aws_region_name, else the region of a model ARN, else the
    environment's; an eu-west-1 inference profile is not called in us-east-1."""
    arn = "arn:aws:bedrock:eu-west-1:123456789012:application-inference-profile/abc123"
    entry = {"model_name": "p", "litellm_params": {"model": f"bedrock/{arn}"}}
    config = parse_gateway({"model_list": [entry]}, env={"AWS_REGION": "us-east-1"})
    assert config is not None
    (deployment,) = config.deployments
    assert deployment.region == "eu-west-1"
    assert deployment.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    named = {**entry["litellm_params"], "aws_region_name": "eu-central-1"}
    config = parse_gateway({"model_list": [{"model_name": "p", "litellm_params": named}]}, env={})
    assert config is not None and config.deployments[0].region == "eu-central-1"
