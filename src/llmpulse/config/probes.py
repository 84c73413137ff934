"""A target's ``probes:`` (custom probes with expectations) and its built-in correctness canary
(``canary: true``), validated and resolved into ``target.Probe``."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import regex
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmpulse.durations import Duration
from llmpulse.presets import RESPONSES_MIN_OUTPUT_TOKENS
from llmpulse.result import CheckKind
from llmpulse.target import (
    CANARY,
    CANARY_ANSWER,
    CANARY_QUESTION,
    PROBE_OWNED_PARAMS,
    Expectation,
    Probe,
)

MAX_MESSAGES = 32
MAX_MESSAGE_CHARS = 100_000
MAX_PARAMS_BYTES = 64 * 1024  # the params as JSON: tool definitions included
MAX_EXPECT_CHARS = 10_000
MAX_INPUT_TOKENS = 2_000_000
_PROBE_KINDS = [k for k in CheckKind if k is not CheckKind.MODELS]
# The pattern OpenAI and Anthropic both require of a tool name.
_TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class MessageConfig(BaseModel):
    """One message, in the OpenAI chat shape; translated to the target's protocol."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class ExpectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    contains: str | None = Field(default=None, min_length=1, max_length=MAX_EXPECT_CHARS)
    regex: str | None = Field(default=None, min_length=1, max_length=MAX_EXPECT_CHARS)
    equals: str | None = Field(default=None, max_length=MAX_EXPECT_CHARS)
    json_schema: dict[str, Any] | None = None
    tool_call: str | None = Field(default=None, pattern=_TOOL_NAME)
    max_ttft: Duration | None = None
    min_tokens_per_s: float | None = Field(default=None, gt=0)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)  # the module that runs it (``probe.assertions``)
            except regex.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.exceptions.SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path)
                raise ValueError(
                    f"not a valid JSON Schema: {exc.message}" + (f" at /{where}" if where else "")
                ) from None
        return value

    @model_validator(mode="after")
    def _something(self) -> ExpectConfig:
        if not self.model_fields_set:
            raise ValueError(f"expected at least one of {', '.join(ExpectConfig.model_fields)}")
        return self

    def resolve(self) -> Expectation:
        return Expectation(
            contains=self.contains,
            regex=self.regex,
            equals=self.equals,
            json_schema=self.json_schema,
            tool_call=self.tool_call,
            max_ttft_s=self.max_ttft,
            min_tokens_per_s=self.min_tokens_per_s,
        )


class ProbeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    kind: CheckKind = CheckKind.INFERENCE
    messages: list[MessageConfig] = Field(default_factory=list, max_length=MAX_MESSAGES)
    params: dict[str, Any] = Field(default_factory=dict)
    expect: ExpectConfig | None = None
    interval: Duration | None = None
    input_tokens: int | None = Field(default=None, ge=1, le=MAX_INPUT_TOKENS)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in {k.value for k in CheckKind} or value == CANARY:
            raise ValueError(f"{value!r} names a built-in check; give the probe a name of its own")
        return value

    @field_validator("kind")
    @classmethod
    def _probe_kind(cls, value: CheckKind) -> CheckKind:
        if value is CheckKind.MODELS:
            raise ValueError(f"expected one of {', '.join(_PROBE_KINDS)}")
        return value

    @field_validator("messages")
    @classmethod
    def _asks(cls, value: list[MessageConfig]) -> list[MessageConfig]:
        if value and not any(m.role == "user" for m in value):
            raise ValueError(
                "expected a user message among them "
                "(Anthropic and Gemini refuse a conversation without one)"
            )
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, value: dict[str, Any]) -> dict[str, Any]:
        owned = sorted(PROBE_OWNED_PARAMS & value.keys())
        if owned:
            raise ValueError(
                f"'{owned[0]}' is set by llmpulse (from the target, the messages and the kind); "
                "remove it"
            )
        try:
            size = len(json.dumps(value))
        except (TypeError, ValueError):
            raise ValueError("expected values JSON can carry") from None
        if size > MAX_PARAMS_BYTES:
            raise ValueError(f"{size} bytes as JSON; expected at most {MAX_PARAMS_BYTES}")
        return value

    @model_validator(mode="after")
    def _fits_kind(self) -> ProbeConfig:
        kind = self.kind
        if kind is CheckKind.LONG_CONTEXT:
            if self.input_tokens is None:
                raise ValueError("'input_tokens' is required for kind long_context")
            if self.messages:
                raise ValueError("'messages' is not used by kind long_context (its prompt is made)")
        elif self.input_tokens is not None:
            raise ValueError("'input_tokens' applies to kind long_context only")
        if kind is CheckKind.RESPONSES:
            _check_responses_params(self.params)
        expect = self.expect
        if expect is None:
            return self
        if kind is CheckKind.EMBEDDINGS:
            raise ValueError("'expect' does not apply to kind embeddings: it answers no text")
        if not kind.streams:
            timed = [k for k in ("max_ttft", "min_tokens_per_s") if k in expect.model_fields_set]
            if timed:
                raise ValueError(
                    f"'expect.{timed[0]}' needs a streaming kind (stream, responses, "
                    f"long_context); {kind} reads no stream"
                )
        return self

    def resolve(self) -> Probe:
        return Probe(
            name=self.name,
            kind=self.kind,
            messages=tuple(m.model_dump() for m in self.messages),
            params=self.params,
            expect=None if self.expect is None else self.expect.resolve(),
            interval=self.interval,
            input_tokens=self.input_tokens,
        )


# Chat's names for the output budget: the Responses API refuses them ("unsupported parameter").
_CHAT_BUDGET_PARAMS = ("max_tokens", "max_completion_tokens")


def _check_responses_params(params: dict[str, Any]) -> None:
    """The output budget as the Responses API takes it; any other would fail every run."""
    for key in _CHAT_BUDGET_PARAMS:
        if key in params:
            raise ValueError(
                f"'params.{key}' is not taken by the Responses API (kind responses); "
                "write max_output_tokens"
            )
    budget = params.get("max_output_tokens")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, int)
        or budget < RESPONSES_MIN_OUTPUT_TOKENS
    ):
        raise ValueError(
            f"'params.max_output_tokens': expected a whole number of at least "
            f"{RESPONSES_MIN_OUTPUT_TOKENS} (the Responses API refuses less), got {budget!r}"
        )


# The protocols that take Gemini's request body (``generationConfig``, ``systemInstruction``).
GEMINI_FORMAT = ("gemini", "vertex")
# Gemini's GenerationConfig fields (REST names): a probe's params that set one at the top of
# the body, as OpenAI's and Anthropic's requests have them, would be refused by every request.
_GENERATION_FIELDS = frozenset(
    {
        "candidateCount",
        "frequencyPenalty",
        "logprobs",
        "maxOutputTokens",
        "mediaResolution",
        "presencePenalty",
        "responseJsonSchema",
        "responseLogprobs",
        "responseMimeType",
        "responseModalities",
        "responseSchema",
        "seed",
        "speechConfig",
        "stopSequences",
        "temperature",
        "thinkingConfig",
        "topK",
        "topP",
    }
)
# Other APIs' names for the same settings.
_GENERATION_ALIASES = {"max_tokens": "maxOutputTokens", "stop": "stopSequences"}


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word.capitalize() for word in rest)


def gemini_params_problem(params: dict[str, Any]) -> tuple[str, str] | None:
    """The first of a probe's params that Gemini's body does not take where it is written, with
    where it belongs; None when every key is where Gemini reads it."""
    for key in params:
        field = _GENERATION_ALIASES.get(key, _camel(key))
        if field in _GENERATION_FIELDS:
            return key, f"Gemini takes it in generationConfig (generationConfig: {{{field}: ...}})"
        if key != field and field in ("generationConfig", "systemInstruction"):
            # The JSON parser takes either spelling; with both in one body it refuses it.
            return key, (f"write it {field} (llmpulse sets {field} too, and the two would collide)")
    return None


# The members of Bedrock's ConverseRequest (botocore's bedrock-runtime 2023-09-30; modelId is
# the URL's): Converse refuses any other key ("extraneous key [...] is not permitted").
CONVERSE_FIELDS = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "projectIdentifier",
        "additionalModelRequestFields",
        "promptVariables",
        "additionalModelResponseFieldPaths",
        "requestMetadata",
        "performanceConfig",
        "serviceTier",
        "outputConfig",
    }
)
# Other APIs' names for Converse's InferenceConfiguration fields.
_INFERENCE_FIELDS = {
    "maxTokens": "maxTokens",
    "max_tokens": "maxTokens",
    "temperature": "temperature",
    "topP": "topP",
    "top_p": "topP",
    "stop": "stopSequences",
    "stopSequences": "stopSequences",
    "stop_sequences": "stopSequences",
}


def converse_params_problem(params: dict[str, Any]) -> tuple[str, str] | None:
    """The first of a probe's params that Bedrock's Converse body does not take, with where it
    belongs; None when every key is one of Converse's."""
    for key in params:
        if key in CONVERSE_FIELDS:
            continue
        if key in _INFERENCE_FIELDS:
            field = _INFERENCE_FIELDS[key]
            return key, f"Converse takes it in inferenceConfig (inferenceConfig: {{{field}: ...}})"
        if key in ("top_k", "topK"):
            return key, (
                "Converse has no top_k; the model's own field goes in "
                f"additionalModelRequestFields (additionalModelRequestFields: {{{key}: ...}})"
            )
        if _camel(key) in CONVERSE_FIELDS:
            return key, f"Converse's name for it is {_camel(key)}"
        return key, (
            "not a field of Bedrock's Converse request (it takes "
            f"{', '.join(sorted(CONVERSE_FIELDS - PROBE_OWNED_PARAMS))}; a model's own settings "
            "go in additionalModelRequestFields)"
        )
    return None


def canary_probe(protocol: str) -> Probe:
    """The built-in correctness canary: a question with one right answer, at temperature 0 in
    the protocol's own words (Gemini sets it in ``generationConfig``, Bedrock's Converse in
    ``inferenceConfig``)."""
    temperature: dict[str, Any] = {"temperature": 0}
    if protocol in ("gemini", "vertex"):
        temperature = {"generationConfig": temperature}
    elif protocol == "bedrock":
        temperature = {"inferenceConfig": temperature}  # Converse's
    return Probe(
        name=CANARY,
        kind=CheckKind.INFERENCE,
        messages=({"role": "user", "content": CANARY_QUESTION},),
        params=temperature,
        expect=Expectation(regex=rf"(?<!\d){CANARY_ANSWER}(?!\d)"),
    )
