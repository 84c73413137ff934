"""Custom probes with expectations, from the config through the runner to the result, against
the simulator over loopback: each expectation passing and failing on every protocol, streamed
and not."""

from __future__ import annotations

import time

import pytest

from conftest import ground_truth, make_target, patch, sim_model
from llmpulse.config import parse_config
from llmpulse.errors import ErrorClass
from llmpulse.probe import Prober
from llmpulse.probe.assertions import REGEX_TIMEOUT_S, failed_expectation
from llmpulse.result import CheckKind
from llmpulse.secrets import Redactor
from llmpulse.target import Expectation, Probe

PROTOCOLS = ["openai", "anthropic", "gemini"]
ANSWER = '{"city": "Paris", "country": "France"}'
QUESTION = [{"role": "user", "content": "Where is the Eiffel Tower? Answer in JSON."}]
SCHEMA = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
# name -> (expect, the message when it fails, or None when it holds)
EXPECTATIONS = {
    "contains-ok": ({"contains": "Paris"}, None),
    "contains-bad": ({"contains": "Lyon"}, "expected the answer to contain 'Lyon'"),
    "regex-ok": ({"regex": r'"city":\s*"Paris"'}, None),
    "regex-bad": ({"regex": r"^\d+$"}, "expected the answer to match the regex '^\\\\d+$'"),
    "equals-ok": ({"equals": ANSWER}, None),
    "equals-bad": ({"equals": "Paris"}, "expected the answer to equal 'Paris'"),
    "schema-ok": ({"json_schema": SCHEMA}, None),
    "schema-bad": (
        {"json_schema": {**SCHEMA, "required": ["population"]}},
        "expected the answer to be JSON matching the schema: 'population' is a required property",
    ),
}
TIMED = {
    "ttft-ok": ({"max_ttft": "2s"}, None),
    "ttft-bad": ({"max_ttft": "5ms"}, "expected a first token within 5ms, took "),
    "tps-ok": ({"min_tokens_per_s": 1}, None),
    "tps-bad": ({"min_tokens_per_s": 100000}, "expected at least 100000 tokens/s, measured "),
}
TOOLS = {
    "openai": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
    "anthropic": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "gemini": [{"functionDeclarations": [{"name": "get_weather"}]}],
}


def probes(kind, expectations, **extra):
    return [
        {"name": name, "kind": kind, "messages": QUESTION, "expect": expect, **extra}
        for name, (expect, _) in expectations.items()
    ]


async def run(target):
    async with Prober(redactor=Redactor(target.secrets)) as prober:
        return await prober.check_many((target, p) for p in target.probes)


def judged(results, expectations):
    for result in results:
        failure = expectations[result.check][1]
        assert result.http_status == 200
        if failure is None:
            assert result.ok and result.error_class is None, (result.check, result.error_message)
        else:
            assert not result.ok and result.error_class is ErrorClass.ASSERTION, result.check
            assert result.error_message.startswith(failure), result.error_message


@pytest.mark.parametrize("kind", [CheckKind.INFERENCE, CheckKind.STREAM])
@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_each_expectation_holds_or_fails_as_assertion(sim, provider, kind):
    model = sim_model(sim, ttft="30ms", tokens_per_s=200, answer=ANSWER)
    expectations = {**EXPECTATIONS, **(TIMED if kind is CheckKind.STREAM else {})}
    target = make_target(sim, provider, model, probes=probes(kind, expectations))
    results = await run(target)
    assert [r.check for r in results] == list(expectations)
    assert {r.kind for r in results} == {kind}
    judged(results, expectations)
    for result in results:
        assert result.answer_excerpt == ANSWER  # on success and on assertion alike
        assert result.to_json()["check"] == result.check and result.to_json()["kind"] == kind


@pytest.mark.parametrize("kind", [CheckKind.INFERENCE, CheckKind.STREAM])
@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_a_tool_call_is_seen_whether_streamed_or_not(sim, provider, kind):
    model = sim_model(
        sim, ttft="20ms", tokens_per_s=500, tool_call={"name": "get_weather", "arguments": {}}
    )
    expectations = {
        "tool-ok": ({"tool_call": "get_weather"}, None),
        "tool-bad": (
            {"tool_call": "book_flight"},
            "expected a call of the tool 'book_flight' (tools called: 'get_weather')",
        ),
    }
    params = {"tools": TOOLS[provider]}
    target = make_target(sim, provider, model, probes=probes(kind, expectations, params=params))
    judged(await run(target), expectations)


async def test_a_wrong_answer_fails_the_probe_and_a_right_one_passes(sim):
    """The simulator told to answer wrong, then right: the same probe fails, then holds."""
    model = sim_model(sim, ttft="10ms", answer="The capital of France is Lyon.")
    target = make_target(
        sim, "openai", model,
        probes=[{"name": "capital", "messages": QUESTION, "expect": {"contains": "Paris"}}],
    )  # fmt: skip
    (wrong,) = await run(target)
    assert wrong.error_class is ErrorClass.ASSERTION and not wrong.ok
    assert wrong.error_message == "expected the answer to contain 'Paris'"
    assert wrong.answer_excerpt == "The capital of France is Lyon."
    assert wrong.usage.output_tokens == 6 and wrong.response_model == model
    patch(sim, model, answer="The capital of France is Paris.")
    (right,) = await run(target)
    assert right.ok and right.error_class is None


@pytest.mark.parametrize("provider", PROTOCOLS)
async def test_messages_and_params_reach_the_request_in_each_protocol(sim, provider):
    model = sim_model(sim, ttft="10ms", answer="ok")
    params = {
        "openai": {"temperature": 0, "seed": 7, "max_tokens": 5},
        "anthropic": {"temperature": 0, "max_tokens": 5},
        "gemini": {"generationConfig": {"temperature": 0}},
    }[provider]
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ]
    target = make_target(
        sim, provider, model, max_tokens=40,
        probes=[{"name": "chat", "messages": messages, "params": params}],
    )  # fmt: skip
    (result,) = await run(target)
    assert result.ok, result.error_message
    body = ground_truth(sim, result.request_id)["body"]
    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ]
    if provider == "openai":
        assert body == {"model": model, "messages": messages, "temperature": 0, "seed": 7,
                        "max_tokens": 5}  # fmt: skip
    elif provider == "anthropic":
        assert body == {"model": model, "max_tokens": 5, "messages": turns,
                        "system": "Be brief.", "temperature": 0}  # fmt: skip
    else:
        assert body == {
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello."}]},
                {"role": "user", "parts": [{"text": "Capital of France?"}]},
            ],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            # the probe's settings merged with the target's token budget
            "generationConfig": {"maxOutputTokens": 40, "temperature": 0},
        }


async def test_the_excerpt_is_200_characters_and_redacted(sim):
    key = "sk-sim-abcdefghijklmnopqrstuvwxyz0123456789"
    model = sim_model(sim, ttft="10ms", answer=f"your key is {key} " + "word " * 100)
    raw = {"provider": "openai", "model": model, "base_url": sim.openai_base,
           "api_key": "os.environ/SIM_KEY", "probes": [{"name": "echo"}]}  # fmt: skip
    target = parse_config({"targets": [raw]}, env={"SIM_KEY": key}).targets[0]
    (result,) = await run(target)
    assert result.ok and len(result.answer_excerpt) == 200
    assert key not in result.answer_excerpt and result.answer_excerpt.startswith("your key is ")


async def test_built_in_checks_keep_their_request_and_keep_no_answer(sim):
    model = sim_model(sim, ttft="10ms", answer="pong")
    target = make_target(sim, "openai", model)
    async with Prober() as prober:
        result = await prober.check(target, CheckKind.INFERENCE)
    assert result.ok and result.check == "inference" and result.answer_excerpt is None
    body = ground_truth(sim, result.request_id)["body"]
    assert body == {"model": model, "messages": [{"role": "user", "content": "ping"}],
                    "max_completion_tokens": 1}  # fmt: skip


def test_every_expectation_set_is_judged_in_order():
    expect = Expectation(contains="a", regex="b", max_ttft_s=1.0, min_tokens_per_s=10)
    assert failed_expectation(expect, "ab", [], 0.5, 20) is None
    assert failed_expectation(expect, "b", [], 0.5, 20) == "expected the answer to contain 'a'"
    assert "none came" in failed_expectation(expect, "ab", [], None, 20)
    assert failed_expectation(expect, "ab", [], 0.5, None).endswith("none measured")
    not_json = failed_expectation(
        Expectation(json_schema={"type": "object"}), "Paris", [], None, None
    )
    assert not_json.startswith("expected the answer to be JSON matching the schema: not JSON")
    nested = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert failed_expectation(Expectation(json_schema=nested), '{"a": "x"}', [], None, None) == (
        "expected the answer to be JSON matching the schema: 'x' is not of type 'integer' at /a"
    )


def test_a_regex_that_backtracks_without_end_is_cut_off_as_a_failed_expectation():
    # Python's re takes hours on this (nested quantifiers, no "y" to end them), blocking the
    # event loop every probe's timing runs on.
    started = time.perf_counter()
    failed = failed_expectation(Expectation(regex="(x+x+)+y"), "x" * 5000, [], None, None)
    assert time.perf_counter() - started < 3
    assert failed == (
        "expected the answer to match the regex '(x+x+)+y': it ran over "
        f"{REGEX_TIMEOUT_S:g}s on the answer's 5000 characters"
    )


def test_an_answer_nested_too_deeply_is_not_json_rather_than_a_crash():
    failed = failed_expectation(Expectation(json_schema={}), "[" * 60_000, [], None, None)
    assert (
        failed == "expected the answer to be JSON matching the schema: not JSON (nested too deeply)"
    )


@pytest.mark.parametrize(
    "answer",
    [
        '```json\n{"city": "Paris"}\n```',
        '\n```\n{"city": "Paris"}\n```\n',
        '```JSON {"city": "Paris"}```',
    ],
)
def test_json_in_one_markdown_fence_is_judged_as_json(answer):
    assert failed_expectation(Expectation(json_schema=SCHEMA), answer, [], None, None) is None


def test_json_with_prose_around_its_fence_is_not_json():
    answer = 'Here it is:\n```json\n{"city": "Paris"}\n```'
    failed = failed_expectation(Expectation(json_schema=SCHEMA), answer, [], None, None)
    assert failed.startswith("expected the answer to be JSON matching the schema: not JSON")


def test_a_schema_reference_that_does_not_resolve_fails_the_expectation_rather_than_the_check():
    # check_schema accepts it; only judging an answer that reaches the $ref finds it missing.
    schema = {"properties": {"city": {"$ref": "#/$defs/city"}}}
    assert (
        failed_expectation(Expectation(json_schema=schema), '{"town": 1}', [], None, None) is None
    )
    failed = failed_expectation(Expectation(json_schema=schema), ANSWER, [], None, None)
    assert failed == (
        "expected the answer to be JSON matching the schema: "
        "the schema's reference '/$defs/city' does not resolve (only ones within it do)"
    )


def test_a_schema_pattern_that_backtracks_without_end_is_cut_off_too():
    schema = {"properties": {"city": {"type": "string", "pattern": "(x+x+)+y"}}}
    assert failed_expectation(Expectation(json_schema=schema), ANSWER, [], None, None) == (
        "expected the answer to be JSON matching the schema: 'Paris' does not match '(x+x+)+y' at /city"
    )
    started = time.perf_counter()
    answer = '{"city": "' + "x" * 5000 + '"}'
    failed = failed_expectation(Expectation(json_schema=schema), answer, [], None, None)
    assert time.perf_counter() - started < 3
    assert failed == (
        "expected the answer to be JSON matching the schema: "
        f"the schema's pattern '(x+x+)+y' ran over {REGEX_TIMEOUT_S:g}s on the answer"
    )


async def test_responses_probes_judge_their_answer(sim):
    """The Responses API's answer is judged as chat's is: its text, streamed or whole."""
    model = sim_model(sim, ttft="30ms", tokens_per_s=200, answer=ANSWER)
    expectations = {**EXPECTATIONS, **TIMED}
    target = make_target(sim, "openai", model, probes=probes("responses", expectations))
    results = await run(target)
    judged(results, expectations)
    assert {r.answer_excerpt for r in results} == {ANSWER}
    whole = Probe(
        name="whole",
        kind=CheckKind.RESPONSES,
        messages=tuple(QUESTION),
        params={"stream": False},
        expect=Expectation(contains="Paris"),
    )
    async with Prober() as prober:
        result = await prober.check(target, whole)
    assert result.ok and result.answer_excerpt == ANSWER, result.error_message


@pytest.mark.parametrize("stream", [True, False])
async def test_a_tool_call_is_seen_on_the_responses_api(sim, stream):
    model = sim_model(
        sim, ttft="20ms", tokens_per_s=500, tool_call={"name": "get_weather", "arguments": {}}
    )
    tools = [{"type": "function", "name": "get_weather", "parameters": {}}]
    target = make_target(sim, "openai", model)
    probes_ = [
        Probe(
            name=name,
            kind=CheckKind.RESPONSES,
            messages=tuple(QUESTION),
            params={"tools": tools, **({} if stream else {"stream": False})},
            expect=Expectation(tool_call=tool),
        )
        for name, tool in (("tool-ok", "get_weather"), ("tool-bad", "book_flight"))
    ]
    async with Prober() as prober:
        ok, bad = await prober.check_many((target, p) for p in probes_)
    assert ok.ok, ok.error_message
    assert bad.error_class is ErrorClass.ASSERTION
    assert bad.error_message == (
        "expected a call of the tool 'book_flight' (tools called: 'get_weather')"
    )
