"""Request parameters end to end: the official SDKs call the gateway on a loopback socket, the
simulator plays the providers and logs each request body it received (``/_sim/requests``), so
each test sees what actually went upstream, which deployments were skipped, and what the SDKs
raise."""

from __future__ import annotations

import itertools
from typing import Any

import anthropic
import httpx
import openai
import pytest

from conftest import sim_model
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.app import DROPPED_HEADER
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST, Served, deployment, gateway_config, upstream

HELLO = [{"role": "user", "content": "hello there"}]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
_names = itertools.count()


def named_model(sim: SimServer, prefix: str, **behavior: Any) -> str:
    """A simulated model whose name says what it is (o3-..., claude-sonnet-4-5-...)."""
    name = f"{prefix}-sim{next(_names)}"
    httpx.patch(f"{sim.url}/_sim/models/{name}", json={**FAST, **behavior}, timeout=10)
    return name


def sent(sim: SimServer, model: str) -> dict[str, Any]:
    """The body of the one request ``model`` received."""
    (row,) = upstream(sim, model)
    return row["body"]


def untouched(served: Served, name: str) -> bool:
    """The deployment was never tried: no request, no failure on its breaker."""
    assert served.gateway is not None
    deployment_id = next(d.id for d in served.config.deployments if d.name == name)
    snap = served.gateway.selector.breaker(deployment_id).snapshot()
    return snap.state == "closed" and snap.window_requests == 0 and snap.consecutive_failures == 0


def test_openai_parameters_reach_an_openai_deployment_unchanged(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Served(gateway_config([deployment(sim, "chat", "openai", model)])) as served:
        served.openai().chat.completions.create(
            model="chat",
            messages=HELLO,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
            },
            seed=7,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            logprobs=True,
            top_logprobs=2,
            logit_bias={"50256": -100},
            user="u-1",
            service_tier="flex",
            extra_body={"verbosity": "low", "prediction": {"type": "content", "content": "x"}},
        )
    body = sent(sim, model)
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
    }
    assert (body["seed"], body["frequency_penalty"], body["presence_penalty"]) == (7, 0.5, -0.5)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert body["logit_bias"] == {"50256": -100}
    assert (body["user"], body["service_tier"]) == ("u-1", "flex")
    # Fields the gateway has no neutral meaning for still reach the same protocol.
    assert body["verbosity"] == "low"
    assert body["prediction"] == {"type": "content", "content": "x"}


def test_openai_parameters_are_translated_for_gemini(sim: SimServer) -> None:
    model = named_model(sim, "gemini-2.5-flash")
    with Served(gateway_config([deployment(sim, "chat", "gemini", model)])) as served:
        served.openai().chat.completions.create(
            model="chat",
            messages=HELLO,
            response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}},
            seed=7,
            frequency_penalty=0.25,
            presence_penalty=0.5,
            reasoning_effort="medium",
        )
    config = sent(sim, model)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    assert (config["seed"], config["frequencyPenalty"], config["presencePenalty"]) == (7, 0.25, 0.5)
    assert config["thinkingConfig"] == {"thinkingBudget": 2048}  # LiteLLM's medium


def test_anthropic_parameters_are_translated_for_openai_and_gemini(sim: SimServer) -> None:
    gpt = named_model(sim, "gpt-5")
    gemini = named_model(sim, "gemini-2.5-pro")
    config = gateway_config(
        [deployment(sim, "gpt", "openai", gpt), deployment(sim, "gem", "gemini", gemini)]
    )
    thinking = {"type": "enabled", "budget_tokens": 3000}
    with Served(config) as served:
        client = served.anthropic()
        client.messages.create(
            model="gpt",
            max_tokens=8000,
            messages=HELLO,
            thinking=thinking,
            metadata={"user_id": "u-9"},
        )
        client.messages.create(
            model="gem",
            max_tokens=8000,
            messages=HELLO,
            thinking=thinking,
            extra_body={"top_k": 40},
        )
    body = sent(sim, gpt)
    assert (body["reasoning_effort"], body["user"]) == ("high", "u-9")  # 3000 > medium's 2048
    assert body["max_completion_tokens"] == 8000
    generation = sent(sim, gemini)["generationConfig"]
    assert generation["topK"] == 40
    assert generation["thinkingConfig"] == {"thinkingBudget": 3000}


def test_a_deployment_that_cannot_honour_a_parameter_is_skipped_not_failed(
    sim: SimServer,
) -> None:
    claude = sim_model(sim, **FAST)
    gpt = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "anthropic", claude, order=1),
            deployment(sim, "chat", "openai", gpt, order=2),
        ]
    )
    with Served(config) as served:
        reply = served.openai().chat.completions.create(model="chat", messages=HELLO, seed=3)
        assert reply.model == gpt
        assert untouched(served, f"chat/anthropic/{claude}")
    assert upstream(sim, claude) == []
    assert sent(sim, gpt)["seed"] == 3
    (record,) = served.records
    assert record.ok and record.attempts == 1


def test_no_deployment_able_to_honour_a_parameter_is_a_400_naming_it(sim: SimServer) -> None:
    claude = sim_model(sim, **FAST)
    gpt = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "claude", "anthropic", claude), deployment(sim, "gpt", "openai", gpt)]
    )
    with Served(config) as served:
        with pytest.raises(openai.BadRequestError) as info:
            served.openai().chat.completions.create(model="claude", messages=HELLO, seed=3)
        error = info.value.body
        assert isinstance(error, dict)
        assert (error["type"], error["param"]) == ("invalid_request_error", "seed")
        assert f"claude/anthropic/{claude}" in error["message"]
        with pytest.raises(anthropic.BadRequestError) as caught:
            served.anthropic().messages.create(
                model="gpt", max_tokens=8, messages=HELLO, extra_body={"top_k": 5}
            )
        body = caught.value.body
        assert isinstance(body, dict)
        assert body["error"]["type"] == "invalid_request_error"
        assert "'top_k'" in body["error"]["message"] and gpt in body["error"]["message"]
        assert untouched(served, f"claude/anthropic/{claude}")
    assert upstream(sim, claude) == [] and upstream(sim, gpt) == []


def test_a_group_that_cannot_honour_a_parameter_goes_to_its_fallback(sim: SimServer) -> None:
    claude = sim_model(sim, **FAST)
    gpt = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "claude", "anthropic", claude), deployment(sim, "gpt", "openai", gpt)],
        router={"fallbacks": [{"claude": ["gpt"]}]},
    )
    with Served(config) as served:
        reply = served.openai().chat.completions.create(
            model="claude", messages=HELLO, response_format={"type": "json_object"}
        )
    assert reply.model == gpt
    assert sent(sim, gpt)["response_format"] == {"type": "json_object"}
    assert upstream(sim, claude) == []


def drop_config(sim: SimServer, entries: list[dict[str, Any]], drop: bool) -> GatewayConfig:
    raw = {"model_list": entries, "litellm_settings": {"drop_params": drop}}
    config = parse_gateway(raw, env={"SIM_KEY": "sk-sim"})
    assert config is not None and config.warnings == ()  # drop_params is acted on
    return config


@pytest.mark.parametrize("stream", [False, True])
def test_drop_params_drops_and_names_what_was_dropped(sim: SimServer, stream: bool) -> None:
    claude = sim_model(sim, **FAST)
    config = drop_config(sim, [deployment(sim, "chat", "anthropic", claude)], drop=True)
    with Served(config) as served:
        raw = served.openai().chat.completions.with_raw_response.create(
            model="chat", messages=HELLO, seed=3, logit_bias={"1": 2}, top_p=0.5, stream=stream
        )
        if stream:
            list(raw.parse())
        else:
            raw.parse()
    assert raw.headers[DROPPED_HEADER] == "seed,logit_bias"
    body = sent(sim, claude)
    assert "seed" not in body and "logit_bias" not in body and body["top_p"] == 0.5


def test_drop_params_per_deployment_overrides_the_global_setting(sim: SimServer) -> None:
    keeps = sim_model(sim, **FAST)
    drops = sim_model(sim, **FAST)
    config = drop_config(
        sim,
        [
            deployment(sim, "strict", "anthropic", keeps, drop_params=False),
            deployment(sim, "lax", "anthropic", drops),
        ],
        drop=True,
    )
    with Served(config) as served:
        with pytest.raises(openai.BadRequestError):
            served.openai().chat.completions.create(model="strict", messages=HELLO, seed=1)
        raw = served.openai().chat.completions.with_raw_response.create(
            model="lax", messages=HELLO, seed=1
        )
    assert raw.headers[DROPPED_HEADER] == "seed"
    assert upstream(sim, keeps) == [] and "seed" not in sent(sim, drops)


def test_openai_reasoning_models_get_max_completion_tokens_and_no_sampling(
    sim: SimServer,
) -> None:
    o3 = named_model(sim, "o3-mini")
    chat = named_model(sim, "gpt-5-chat-latest")
    config = gateway_config(
        [
            deployment(sim, "r", "openai", o3, order=1),
            deployment(sim, "r", "openai", chat, order=2),
        ]
    )
    with Served(config) as served:
        client = served.openai()
        client.chat.completions.create(model="r", messages=HELLO, max_tokens=50, temperature=1)
        # A non-default temperature is rejected by o3: gpt-5-chat, which takes it, answers.
        reply = client.chat.completions.create(model="r", messages=HELLO, temperature=0.2)
        assert reply.model == chat
        # o3 answered the first request only; the second passed it over without a failure.
        assert served.gateway is not None
        o3_id = next(d.id for d in config.deployments if d.model == o3)
        snap = served.gateway.selector.breaker(o3_id).snapshot()
        assert (snap.window_requests, snap.window_failures, snap.consecutive_failures) == (1, 0, 0)
    body = sent(sim, o3)
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert sent(sim, chat)["temperature"] == 0.2


def test_old_azure_api_versions_get_max_tokens(sim: SimServer) -> None:
    old = sim_model(sim, **FAST)
    new = sim_model(sim, **FAST)
    azure = gateway_config(
        [
            {
                "model_name": name,
                "litellm_params": {
                    "model": f"azure/{model}",
                    "api_base": sim.azure_base,
                    "api_key": "os.environ/SIM_KEY",
                    "api_version": version,
                },
            }
            for name, model, version in (("old", old, "2024-06-01"), ("new", new, "2024-10-21"))
        ]
    )
    with Served(azure) as served:
        for group in ("old", "new"):
            served.openai().chat.completions.create(model=group, messages=HELLO, max_tokens=20)
    assert sent(sim, old)["max_tokens"] == 20 and "max_completion_tokens" not in sent(sim, old)
    assert sent(sim, new)["max_completion_tokens"] == 20


def test_provider_limits_make_deployments_ineligible(sim: SimServer) -> None:
    claude = named_model(sim, "claude-sonnet-4-5")
    other = named_model(sim, "claude-sonnet-4-5")
    gpt = sim_model(sim, **FAST)
    config = gateway_config(
        [
            deployment(sim, "chat", "anthropic", claude, order=1),
            deployment(sim, "chat", "openai", gpt, order=2),
            deployment(sim, "claude", "anthropic", other),
        ]
    )
    with Served(config) as served:
        client = served.openai()
        # Anthropic's temperature ends at 1; Sonnet 4.5 takes temperature or top_p.
        for extra in ({"temperature": 1.5}, {"temperature": 0.5, "top_p": 0.9}):
            assert (
                client.chat.completions.create(model="chat", messages=HELLO, **extra).model == gpt
            )
        # OpenAI takes 4 stop sequences; Anthropic more.
        stops = ["a", "b", "c", "d", "e"]
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="chat", messages=HELLO, stop=stops, seed=1)
        assert isinstance(info.value.body, dict) and info.value.body["param"] in ("stop", "seed")
        anthropic_client = served.anthropic()
        anthropic_client.messages.create(
            model="claude",
            max_tokens=8,
            messages=HELLO,
            stop_sequences=stops,
            extra_body={"temperature": 0.5},
        )
        assert untouched(served, f"chat/anthropic/{claude}")
    assert upstream(sim, claude) == []
    assert sent(sim, other)["stop_sequences"] == stops


def test_requests_are_rendered_within_each_apis_rules(sim: SimServer) -> None:
    claude = sim_model(sim, **FAST)
    gpt = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "claude", "anthropic", claude), deployment(sim, "gpt", "openai", gpt)]
    )
    blank_then_text = [{"type": "text", "text": "  "}, {"type": "text", "text": "hi"}]
    with Served(config) as served:
        # Anthropic rejects whitespace-only text blocks and a prefill ending in whitespace.
        served.openai().chat.completions.create(
            model="claude",
            messages=[
                {"role": "user", "content": blank_then_text},
                {"role": "assistant", "content": "Sure: "},
            ],
        )
        # OpenAI rejects tool_choice without tools.
        served.openai().chat.completions.create(model="gpt", messages=HELLO, tool_choice="none")
    assert sent(sim, claude)["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Sure:"},
    ]
    assert "tool_choice" not in sent(sim, gpt)


def test_every_deployment_down_maps_to_each_sdks_overload_exception(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", down)],
        router={"allowed_fails": 1, "num_retries": 0},
    )
    with Served(config) as served:
        with pytest.raises(openai.InternalServerError):
            served.openai().chat.completions.create(model="chat", messages=HELLO)
        # The breaker is open now: the gateway itself has no deployment left.
        with pytest.raises(anthropic.OverloadedError) as info:
            served.anthropic().messages.create(model="chat", max_tokens=8, messages=HELLO)
        assert info.value.status_code == 529
        with pytest.raises(openai.InternalServerError) as caught:
            served.openai().chat.completions.create(model="chat", messages=HELLO)
        assert caught.value.status_code == 503
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "server_error"


def test_an_invalid_gateway_key_is_openais_invalid_api_key(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", model)], general={"master_key": "gw-key"}
    )
    with Served(config) as served, pytest.raises(openai.AuthenticationError) as info:
        served.openai("wrong").chat.completions.create(model="chat", messages=HELLO)
    body = info.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"]) == ("invalid_request_error", "invalid_api_key")


def test_n_answers_are_served_whole_and_refused_in_a_stream(sim: SimServer) -> None:
    model = named_model(sim, "gemini-2.5-flash")
    with Served(gateway_config([deployment(sim, "chat", "gemini", model)])) as served:
        served.openai().chat.completions.create(model="chat", messages=HELLO, n=2)
        with pytest.raises(openai.BadRequestError) as info:
            list(
                served.openai().chat.completions.create(
                    model="chat", messages=HELLO, n=2, stream=True
                )
            )
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "n"
    assert sent(sim, model)["generationConfig"]["candidateCount"] == 2
