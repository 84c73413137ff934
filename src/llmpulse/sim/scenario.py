"""Scenario model for the simulator: per-model behaviour, status pages, timelines, YAML."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# The simulator's durations may be zero (an instant first token, no Retry-After wait).
from llmpulse.durations import DurationOrZero as Duration

# The admin APIs' bills (served by sim.billing), here so that reading a scenario loads no
# server library.


class ModelBill(BaseModel):
    """One model's day on the bill."""

    model_config = ConfigDict(extra="forbid")

    cost_usd: float = Field(0.0, ge=0)
    input_tokens: int = Field(0, ge=0)  # cached tokens included, as OpenAI counts them
    cached_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    requests: int = Field(0, ge=0)


class ProviderBill(BaseModel):
    """What one provider's admin API reports."""

    model_config = ConfigDict(extra="forbid")

    admin_keys: list[str] = Field(min_length=1)
    # UTC day -> model as the provider names it (dated snapshot) -> figures.
    days: dict[date, dict[str, ModelBill]] = Field(default_factory=dict)
    # Buckets per page at most, whatever ``limit`` asks: small values exercise pagination.
    page_size: int = Field(31, ge=1, le=180)
    fault: Literal["error_500", "rate_limited", "garbage_body", "huge_body"] | None = None
    huge_body_mb: float = Field(9.0, gt=0)


# Error kinds a scenario may inject: HTTP statuses plus protocol-mapped named kinds.
STATUS_KINDS = frozenset({400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 529})
# content_filter blocks the output (a 200 that finishes with the filter's reason); refusal is
# the model declining (a 200 answering with OpenAI's refusal instead of content; elsewhere the
# filter's reason, as Anthropic's refusal stop reason is); content_policy refuses the prompt (a
# 400 naming the policy), as filters do either way.
NAMED_KINDS = frozenset(
    {
        "insufficient_quota",
        "context_length",
        "content_filter",
        "refusal",
        "content_policy",
        "overloaded",
        "model_not_ready",  # Bedrock's ModelNotReadyException (a 429 while a model loads)
    }
)
ERROR_KINDS = frozenset(str(s) for s in STATUS_KINDS) | NAMED_KINDS

Fault = Literal[
    "hang",
    "stall",
    "cut",
    "malformed",
    "no_terminal",
    "no_done",
    "error_event",
    "garbage_body",
    "truncated_body",
    "huge_body",
]
Indicator = Literal["none", "minor", "major", "critical"]  # Statuspage's status.indicator


class ScenarioError(ValueError):
    """A scenario that does not validate; the message names key path, value and expectation."""


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_limit: int | None = Field(None, ge=0)
    requests_remaining: int | None = Field(None, ge=0)
    tokens_limit: int | None = Field(None, ge=0)
    tokens_remaining: int | None = Field(None, ge=0)
    input_tokens_limit: int | None = Field(None, ge=0)
    input_tokens_remaining: int | None = Field(None, ge=0)
    output_tokens_limit: int | None = Field(None, ge=0)
    output_tokens_remaining: int | None = Field(None, ge=0)
    requests_reset: Duration = 60.0
    tokens_reset: Duration = 60.0


class ToolCall(BaseModel):
    """The function a model calls when the request offers tools (any tools: names unchecked)."""

    model_config = ConfigDict(extra="forbid")

    # The pattern OpenAI and Anthropic both require of a tool name.
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    arguments: dict[str, Any] = Field(default_factory=dict)


class ModelBehavior(BaseModel):
    """How one model behaves; every field optional. Durations accept '400ms', '2s', '6m0s'."""

    model_config = ConfigDict(extra="forbid")

    ttft: Duration = 0.3
    # Prefill: milliseconds of TTFT per 1000 prompt tokens, added to ``ttft``, so a long prompt
    # is slower to its first token as it is on a real model.
    prefill_ms_per_ktok: float = Field(0.0, ge=0)
    tokens_per_s: float = Field(50.0, gt=0)
    output_tokens: int = Field(16, ge=0)
    latency: Duration | None = None
    jitter: float = Field(0.0, ge=0, le=1)
    input_tokens: int | None = Field(None, ge=0)
    cached_tokens: int = Field(0, ge=0)
    reasoning_tokens: int = Field(0, ge=0)
    served_model: str | None = None
    # Appended to each request id the model's responses carry (ids in odd characters).
    request_id_suffix: str = ""
    system_fingerprint: str | None = "fp_sim"
    context_window: int = Field(128000, gt=0)
    # False: the model is left out of the models list (a provider retiring it), still served.
    listed: bool = True
    max_output_tokens: int = Field(8192, gt=0)
    # Embeddings: the vector's length (a request may ask for fewer: ``dimensions``,
    # ``outputDimensionality``).
    embedding_dimensions: int = Field(1536, ge=1, le=65536)
    x_groq: bool = False
    errors: dict[str, float] = Field(default_factory=dict)
    retry_after: Duration | None = None
    fault: Fault | None = None
    fault_after_tokens: int = Field(3, ge=0)
    fault_rate: float = Field(1.0, ge=0, le=1)
    huge_body_mb: float = Field(64.0, gt=0)
    # A careless upstream, as OpenAI's 401 names the key it refused: error messages, request ids,
    # the served model and stream error events repeat the credentials the request carried.
    echo_credentials: bool = False
    # html: errors come as an HTML page, as from a proxy in front of the API.
    error_format: Literal["json", "html"] = "json"
    tool_call: ToolCall | None = None
    # The answer's text, scripted (a model that answers right, or wrong); None: filler words,
    # ``output_tokens`` of them. Cut into tokens at word boundaries; a token budget cuts it short.
    answer: str | None = Field(None, max_length=100_000)
    ratelimit: RateLimit | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    # Replay the timeline every ``loop`` of scenario time: each period starts from the base
    # behaviour again, so a scripted incident recurs for as long as the simulator runs.
    loop: Duration | None = Field(None, gt=0)

    @field_validator("errors", mode="before")
    @classmethod
    def _check_errors(cls, value: Any) -> Any:
        # YAML gives int keys ({503: 0.2}), JSON gives strings: normalise to str.
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for key, prob in value.items():
            kind = str(key)
            if kind not in ERROR_KINDS:
                raise ValueError(
                    f"unknown error kind {key!r}; expected one of "
                    f"{sorted(STATUS_KINDS)} or {sorted(NAMED_KINDS)}"
                )
            if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 <= prob <= 1:
                raise ValueError(f"probability for {key!r} must be a number in 0..1, got {prob!r}")
            out[kind] = float(prob)
        if sum(out.values()) > 1 + 1e-9:
            raise ValueError(f"error probabilities sum to {sum(out.values()):g}; must be <= 1")
        return out

    @field_validator("timeline")
    @classmethod
    def _sort_timeline(cls, value: list[TimelineEntry]) -> list[TimelineEntry]:
        return sorted(value, key=lambda e: e.at)

    @model_validator(mode="after")
    def _timeline_fits_loop(self) -> ModelBehavior:
        _check_fits_loop(self.timeline, self.loop)
        return self

    def timeline_step(self, scenario_time: float) -> int:
        """How many timeline entries are in force at ``scenario_time`` (wrapped by ``loop``)."""
        return _step(self.timeline, self.loop, scenario_time)


class TimelineEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration
    set: dict[str, Any]

    @field_validator("set")
    @classmethod
    def _check_set(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_override(ModelBehavior, value)


def _check_override(model: type[BaseModel], value: dict[str, Any]) -> dict[str, Any]:
    # Validate the override on its own so mistakes surface at load time, not mid-run.
    nested = {"timeline", "loop"} & set(value)
    if nested:
        raise ValueError(f"a timeline entry cannot set {sorted(nested)[0]!r}")
    try:
        model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(describe_error(exc).replace("\n", "; ")) from None
    return value


def _check_fits_loop(
    timeline: Sequence[TimelineEntry | StatusPageEntry], loop: float | None
) -> None:
    # An entry at or after the loop period would never be reached.
    late = [e.at for e in timeline if loop is not None and e.at >= loop]
    if late:
        raise ValueError(
            f"timeline entry at {late[0]:g}s is not before loop ({loop:g}s); "
            "every entry must fall inside one period"
        )


def _step(
    timeline: Sequence[TimelineEntry | StatusPageEntry], loop: float | None, scenario_time: float
) -> int:
    t = scenario_time % loop if loop else scenario_time
    return sum(1 for e in timeline if e.at <= t)


ModelBehavior.model_rebuild()


class StatusPage(BaseModel):
    """A provider's official status page as the simulator serves it; every field optional.

    Served as an Atlassian Statuspage v2 ``summary.json``, a Google Cloud ``incidents.json``,
    an AWS Health service RSS, Azure's status RSS and an incident RSS feed, all from the same
    state. The components ``affected`` names (every one when None) follow the page: their
    status is derived from ``indicator`` (or ``under_maintenance`` during ``maintenance``),
    and the incident touches them; the others stay operational.
    """

    model_config = ConfigDict(extra="forbid")

    indicator: Indicator = "none"
    description: str | None = None  # None: Statuspage's own words for the indicator
    components: list[str] = Field(default_factory=lambda: ["API"])  # Google: product titles
    incident: str | None = None  # the name of one unresolved incident
    affected: list[str] | None = None  # the components it touches; None: every one
    incident_status: Literal["investigating", "identified", "monitoring"] = "investigating"
    impact: Indicator | None = None  # the incident's impact; None: the indicator
    maintenance: str | None = None  # the name of a scheduled maintenance in progress
    unavailable: bool = False  # the status page itself is down: 503 with an HTML error page
    timeline: list[StatusPageEntry] = Field(default_factory=list)
    loop: Duration | None = Field(None, gt=0)  # as for a model: replay the timeline

    @field_validator("timeline")
    @classmethod
    def _sort_timeline(cls, value: list[StatusPageEntry]) -> list[StatusPageEntry]:
        return sorted(value, key=lambda e: e.at)

    @model_validator(mode="after")
    def _timeline_fits_loop(self) -> StatusPage:
        _check_fits_loop(self.timeline, self.loop)
        return self

    def timeline_step(self, scenario_time: float) -> int:
        """How many timeline entries are in force at ``scenario_time`` (wrapped by ``loop``)."""
        return _step(self.timeline, self.loop, scenario_time)

    def since(self, scenario_time: float, field: str | None = None) -> float:
        """Scenario seconds since the last entry in force (setting ``field``, if given) came
        due; since the period (or the run) started if there is none."""
        t = scenario_time % self.loop if self.loop else scenario_time
        due = [e.at for e in self.timeline if e.at <= t and (field is None or field in e.set)]
        return t - max(due, default=0.0)


class StatusPageEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: Duration
    set: dict[str, Any]

    @field_validator("set")
    @classmethod
    def _check_set(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_override(StatusPage, value)


StatusPage.model_rebuild()


class GoogleAuth(BaseModel):
    """Vertex AI's fake OAuth2 token endpoint (``sim.vertex``): the service accounts whose
    signed JWT-bearer grants it accepts (``client_email`` -> PEM public key or certificate),
    and how long the access tokens it issues live."""

    model_config = ConfigDict(extra="forbid")

    service_accounts: dict[str, str] = Field(default_factory=dict)
    token_lifetime: Duration = Field(3600.0, gt=0)


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_keys: list[str] | None = None
    # AWS access key id -> secret access key: what the Bedrock endpoints verify SigV4 with (the
    # key ids are also checked against api_keys when that is set). AWS's documentation pair.
    aws_credentials: dict[str, str] = Field(
        default_factory=lambda: {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
    )
    models: dict[str, ModelBehavior] = Field(default_factory=dict)
    status_pages: dict[str, StatusPage] = Field(default_factory=dict)  # by provider name
    # The admin APIs' cost and usage reports (sim.billing): "openai", "anthropic".
    billing: dict[Literal["openai", "anthropic"], ProviderBill] = Field(default_factory=dict)
    google_auth: GoogleAuth = Field(default_factory=GoogleAuth)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Overlay ``over`` on ``base``; ``ratelimit`` merges field-wise, everything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if key == "ratelimit" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def describe_error(exc: ValidationError, root: str = "") -> str:
    """One line per problem: key path, offending value, what was expected."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in (root, *err["loc"]) if p != "")
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{path or '<root>'}: got {err.get('input')!r}: {msg}")
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(data or {})
    except ValidationError as exc:
        raise ScenarioError(f"invalid {source}:\n{describe_error(exc)}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Load a YAML (or JSON) scenario file."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=str(path))


DEFAULT_SCENARIO: dict[str, Any] = {
    "models": {
        "gpt-4o-mini": {
            "served_model": "gpt-4o-mini-2024-07-18",
            "ttft": "400ms",
            "prefill_ms_per_ktok": 30,
            "tokens_per_s": 80,
            "ratelimit": {
                "requests_limit": 500,
                "tokens_limit": 200000,
                "tokens_remaining": 199000,
                "requests_reset": "120ms",
                "tokens_reset": "6m0s",
            },
        },
        "claude-haiku-4-5": {
            "served_model": "claude-haiku-4-5-20251001",
            "ttft": "500ms",
            "prefill_ms_per_ktok": 25,
            "tokens_per_s": 90,
            "context_window": 200000,
            "max_output_tokens": 64000,
            "ratelimit": {
                "requests_limit": 50,
                "input_tokens_limit": 50000,
                "output_tokens_limit": 10000,
                "tokens_limit": 60000,
                "requests_reset": "1s",
                "tokens_reset": "1m",
            },
        },
        "gemini-2.5-flash": {
            "ttft": "600ms",
            "prefill_ms_per_ktok": 15,
            "tokens_per_s": 150,
            "context_window": 1048576,
            "max_output_tokens": 65536,
        },
        "llama-3.1-8b-instant": {
            "ttft": "150ms",
            "tokens_per_s": 500,
            "x_groq": True,
            "context_window": 131072,
            "ratelimit": {
                "requests_limit": 14400,
                "tokens_limit": 6000,
                "requests_reset": "24h",
                "tokens_reset": "1m",
            },
        },
        "gpt-5-nano": {
            "served_model": "gpt-5-nano-2025-08-07",
            "ttft": "1s",
            "tokens_per_s": 120,
            "reasoning_tokens": 64,
            "context_window": 400000,
            "max_output_tokens": 128000,
        },
        # Embedding models answer after ``ttft`` with no tokens to stream.
        "text-embedding-3-small": {"ttft": "80ms", "embedding_dimensions": 1536},
        "gemini-embedding-001": {"ttft": "120ms", "embedding_dimensions": 3072},
        "amazon.nova-micro-v1:0": {  # provider: bedrock's default model
            "ttft": "350ms",
            "tokens_per_s": 200,
            "context_window": 128000,
            "max_output_tokens": 10000,
        },
    },
    # All quiet; change them live with PATCH /_sim/status_pages/{name}.
    "status_pages": {
        "openai": {"components": ["APIs"]},
        "anthropic": {"components": ["Claude API (api.anthropic.com)"]},
        "groq": {"components": ["API"]},
        "gemini": {"components": ["Gemini API", "Vertex Gemini API"]},  # Google's product titles
    },
}


def default_scenario() -> Scenario:
    return parse_scenario(DEFAULT_SCENARIO, source="built-in scenario")
