"""A target's ``probes:`` and ``canary:``: resolved into ``Probe``s, every mistake one line
naming its key."""

from __future__ import annotations

import pytest

from llmpulse.config import ConfigError, parse_config
from llmpulse.result import CheckKind
from llmpulse.target import CANARY, Expectation, Probe

BASE = {"provider": "openai", "model": "gpt-4o-mini", "api_key": "os.environ/K"}


def target(**fields):
    return parse_config({"targets": [{**BASE, **fields}]}, env={"K": "x"}).targets[0]


def error(**fields) -> str:
    with pytest.raises(ConfigError) as caught:
        target(**fields)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_issue_example_resolves():
    t = target(
        probes=[
            {
                "name": "extract-city",
                "kind": "inference",
                "messages": [{"role": "user", "content": "Reply with only the capital of France."}],
                "params": {"temperature": 0, "seed": 7, "max_tokens": 5},
                "expect": {"contains": "Paris"},
                "interval": "5m",
            },
            {"name": "ttft-10k", "kind": "long_context", "input_tokens": 10000, "interval": "30m"},
            {
                "name": "fast",
                "kind": "stream",
                "expect": {"max_ttft": "800ms", "min_tokens_per_s": 20, "regex": "\\d"},
            },
        ]
    )
    city, ttft, fast = t.probes
    assert city == Probe(
        name="extract-city",
        kind=CheckKind.INFERENCE,
        messages=({"role": "user", "content": "Reply with only the capital of France."},),
        params={"temperature": 0, "seed": 7, "max_tokens": 5},
        expect=Expectation(contains="Paris"),
        interval=300.0,
    )
    assert city.messages == ({"role": "user", "content": "Reply with only the capital of France."},)
    assert ttft.kind is CheckKind.LONG_CONTEXT and ttft.input_tokens == 10000
    assert fast.expect == Expectation(regex="\\d", max_ttft_s=0.8, min_tokens_per_s=20)
    assert t.checks == (CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM)


def test_checks_empty_with_probes_runs_probes_only_and_the_canary_is_off_by_default():
    t = target(checks=[], probes=[{"name": "p"}])
    assert t.checks == () and [p.name for p in t.probes] == ["p"]
    assert CANARY not in [p.name for p in target().probes]
    assert "nothing to run" in error(checks=[])


@pytest.mark.parametrize(("provider", "params"), [
    ("openai", {"temperature": 0}),
    ("anthropic", {"temperature": 0}),
    ("gemini", {"generationConfig": {"temperature": 0}}),
])  # fmt: skip
def test_the_canary_asks_its_question_at_temperature_zero(provider, params):
    t = parse_config(
        {"targets": [{"provider": provider, "model": "m", "canary": True, "checks": []}]},
        env={"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "GEMINI_API_KEY": "x"},
    ).targets[0]
    (canary,) = t.probes
    assert canary.name == CANARY and canary.kind is CheckKind.INFERENCE
    assert canary.params == params and canary.expect is not None and canary.interval is None


@pytest.mark.parametrize(
    ("probe", "message"),
    [
        ({"name": "p", "params": {"model": "x"}}, "targets[0].probes[0].params: 'model' is set by"),
        ({"name": "p", "params": {"stream": True}}, "targets[0].probes[0].params: 'stream' is set"),
        (
            {"name": "p", "expect": {"regex": "(("}},
            "targets[0].probes[0].expect.regex: not a valid",
        ),
        (
            {"name": "p", "expect": {"json_schema": {"type": 5}}},
            "targets[0].probes[0].expect.json_schema: not a valid JSON Schema",
        ),
        ({"name": "p", "expect": {"tool_call": "a b"}}, "targets[0].probes[0].expect.tool_call"),
        ({"name": "p", "expect": {"max_ttft": "soon"}}, "targets[0].probes[0].expect.max_ttft"),
        ({"name": "p", "expect": {"max_ttft": "1s"}}, "'expect.max_ttft' needs a streaming kind"),
        ({"name": "p", "expect": {}}, "targets[0].probes[0].expect: expected at least one of"),
        ({"name": "p", "expect": {"contain": "x"}}, "targets[0].probes[0].expect.contain: unknown"),
        ({"name": "p", "kind": "embeddings", "expect": {"contains": "x"}}, "does not apply"),
        ({"name": "stream"}, "targets[0].probes[0].name: 'stream' names a built-in check"),
        ({"name": "canary"}, "targets[0].probes[0].name: 'canary' names a built-in check"),
        ({"name": "a b"}, "targets[0].probes[0].name"),
        ({"name": "p", "kind": "models"}, "targets[0].probes[0].kind: expected one of inference"),
        ({"name": "p", "kind": "long_context"}, "'input_tokens' is required for kind long_context"),
        ({"name": "p", "input_tokens": 10}, "'input_tokens' applies to kind long_context only"),
        (
            {"name": "p", "kind": "long_context", "input_tokens": 2_000_001},
            "targets[0].probes[0].input_tokens",
        ),
        (
            {"name": "p", "kind": "long_context", "input_tokens": 200_000},
            "targets[0].probes[0].input_tokens: 200000 is over the context window of gpt-4o-mini",
        ),
        (
            {"name": "p", "messages": [{"role": "tool", "content": "x"}]},
            "targets[0].probes[0].messages[0].role",
        ),
        (
            {"name": "p", "messages": [{"role": "user", "content": "x" * 100_001}]},
            "targets[0].probes[0].messages[0].content",
        ),
        (
            {"name": "p", "messages": [{"role": "user", "content": "x"}] * 33},
            "targets[0].probes[0].messages",
        ),
        (
            {"name": "p", "params": {"tools": ["x" * 70_000]}},
            "targets[0].probes[0].params: 70015 bytes as JSON; expected at most 65536",
        ),
        ({"name": "p", "interval": "0s"}, "targets[0].probes[0].interval"),
        (
            {"name": "p", "kind": "responses", "params": {"max_tokens": 5}},
            "targets[0].probes[0]: 'params.max_tokens' is not taken by the Responses API "
            "(kind responses); write max_output_tokens",
        ),
        (
            {"name": "p", "kind": "responses", "params": {"max_output_tokens": 5}},
            "targets[0].probes[0]: 'params.max_output_tokens': expected a whole number of at "
            "least 16 (the Responses API refuses less), got 5",
        ),
        (
            {"name": "p", "messages": [{"role": "system", "content": "Be brief."}]},
            "targets[0].probes[0].messages: expected a user message among them "
            "(Anthropic and Gemini refuse a conversation without one)",
        ),
    ],
)
def test_every_mistake_is_one_line_naming_its_key(probe, message):
    assert message in error(probes=[probe])


def test_probe_names_are_unique_per_target():
    assert "targets[0].probes: two probes are named 'p'" in error(
        probes=[{"name": "p"}, {"name": "p", "kind": "stream"}]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"temperature": 0},
            "targets[0].probes[0].params.temperature: Gemini takes it in generationConfig "
            "(generationConfig: {temperature: ...})",
        ),
        (
            {"max_output_tokens": 5},
            "targets[0].probes[0].params.max_output_tokens: Gemini takes it in generationConfig "
            "(generationConfig: {maxOutputTokens: ...})",
        ),
        (
            {"generation_config": {"temperature": 0}},
            "targets[0].probes[0].params.generation_config: write it generationConfig "
            "(llmpulse sets generationConfig too, and the two would collide)",
        ),
    ],
)
def test_a_gemini_generation_setting_outside_generation_config_names_its_key(params, message):
    raw = {
        "provider": "gemini",
        "model": "gemini-2.0-flash",
        "probes": [{"name": "p", "params": params}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": [raw]}, env={"GEMINI_API_KEY": "x"})
    assert str(caught.value) == message
    # The same setting where Gemini reads it, and any other key of its own, are fine.
    ok = {"generationConfig": {"temperature": 0}, "safetySettings": [], "tools": []}
    parse_config({"targets": [{**raw, "probes": [{"name": "p", "params": ok}]}]},
                 env={"GEMINI_API_KEY": "x"})  # fmt: skip


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"temperature": 0},
            "targets[0].probes[0].params.temperature: Converse takes it in inferenceConfig "
            "(inferenceConfig: {temperature: ...})",
        ),
        (
            {"max_tokens": 5},
            "targets[0].probes[0].params.max_tokens: Converse takes it in inferenceConfig "
            "(inferenceConfig: {maxTokens: ...})",
        ),
        (
            {"top_k": 5},
            "targets[0].probes[0].params.top_k: Converse has no top_k; the model's own field "
            "goes in additionalModelRequestFields (additionalModelRequestFields: {top_k: ...})",
        ),
        (
            {"inference_config": {"temperature": 0}},
            "targets[0].probes[0].params.inference_config: Converse's name for it is "
            "inferenceConfig",
        ),
        (
            {"seed": 7},
            "targets[0].probes[0].params.seed: not a field of Bedrock's Converse request (it "
            "takes additionalModelRequestFields, additionalModelResponseFieldPaths, "
            "guardrailConfig, inferenceConfig, outputConfig, performanceConfig, "
            "projectIdentifier, promptVariables, requestMetadata, serviceTier, toolConfig; a "
            "model's own settings go in additionalModelRequestFields)",
        ),
    ],
)
def test_a_bedrock_setting_outside_converses_fields_names_its_key(params, message):
    """Converse refuses a key it does not define: every run would be a ValidationException."""
    raw = {"provider": "bedrock", "model": "amazon.nova-micro-v1:0", "region": "us-east-1",
           "probes": [{"name": "p", "params": params}]}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_config({"targets": [raw]}, env={})
    assert str(caught.value) == message
    ok = {"inferenceConfig": {"temperature": 0, "topP": 0.5},
          "additionalModelRequestFields": {"top_k": 5}, "toolConfig": {"tools": []}}  # fmt: skip
    t = parse_config({"targets": [{**raw, "probes": [{"name": "p", "params": ok}]}]}, env={})
    assert t.targets[0].probes[0].params == ok


def test_the_built_in_long_context_check_must_fit_the_context_window():
    # gpt-4's window is 8192 tokens: the built-in check's 10000-token prompt could only fail.
    assert error(model="gpt-4", checks=["long_context"]) == (
        "targets[0].checks: long_context sends a prompt of 10000 tokens, over the context "
        "window of gpt-4 (8192 tokens); measure a smaller one with a probe of kind "
        "long_context and its input_tokens"
    )
    assert target(model="gpt-4", checks=["stream"]).checks == (CheckKind.STREAM,)
    assert target(model="gpt-4o-mini", checks=["long_context"]).checks
