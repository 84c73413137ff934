"""The probe's vocabulary: a resolved ``Target`` (everything a check needs) and its price override.

It sits below everything that measures, prices or routes to a target; the config builds targets
(``llmpulse.config.targets``) but this module knows nothing of files.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmpulse.presets import PRESETS, protocol_for
from llmpulse.result import CheckKind
from llmpulse.rules import RuleOverride
from llmpulse.secrets import credentials


class PriceOverride(BaseModel):
    """USD per million tokens. Cached/cache-write rates fall back to the catalogue's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


# Request keys a probe's ``params`` may not set: llmpulse builds them from the target (model),
# the probe's messages (messages, contents, system, systemInstruction, input) and its kind
# (stream, stream_options).
PROBE_OWNED_PARAMS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "system",
        "contents",
        "systemInstruction",
        "input",
    }
)

# The prompt size of the built-in long_context check (a probe's ``input_tokens`` sets its own):
# the middle of the usual 1k/10k/100k. Here, where the config can check it fits the model.
LONG_CONTEXT_TOKENS = 10_000

# The built-in correctness canary (``canary: true``): a probe of this name asks a question with
# one right answer at temperature 0; a wrong or changed answer is ``canary_changed``.
CANARY = "canary"
CANARY_QUESTION = "What is 17 multiplied by 23? Reply with the number only."
CANARY_ANSWER = "391"


@dataclasses.dataclass(frozen=True, slots=True)
class Expectation:
    """What a probe's answer must satisfy: every field set is checked, and the first that fails
    makes the result ``assertion`` (``llmpulse.probe.assertions``)."""

    contains: str | None = None
    regex: str | None = None
    equals: str | None = None
    json_schema: Mapping[str, Any] | None = dataclasses.field(default=None, hash=False)
    tool_call: str | None = None  # the name of a tool the answer must call
    max_ttft_s: float | None = None
    min_tokens_per_s: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Probe:
    """A custom probe of a target (``probes:`` in the config): its result's ``check`` is
    ``name``. The built-in checks are a target's ``checks``, by kind."""

    name: str
    kind: CheckKind
    # The conversation sent, in the OpenAI chat shape ({role, content}); empty: the kind's own
    # prompt. Translated to the target's protocol when it speaks another.
    messages: tuple[Mapping[str, Any], ...] = dataclasses.field(default=(), hash=False)
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    expect: Expectation | None = None
    interval: float | None = None  # None: the target's
    input_tokens: int | None = None  # long_context: the prompt's size in tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A resolved target: everything a probe needs, the key already read from the environment."""

    name: str
    provider: str
    protocol: str
    model: str
    base_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    checks: tuple[CheckKind, ...] = (CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM)
    interval: float = 30.0
    timeout: float = 20.0
    connect_timeout: float = 5.0
    first_token_timeout: float | None = None
    idle_timeout: float = 10.0
    max_tokens: int = 64
    prices: PriceOverride | None = None
    context_window: int | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    api_version: str | None = None
    deployment: str | None = None
    max_tokens_field: str = "max_tokens"
    stream_include_usage: bool = True
    price_provider: str | None = None
    tps_floor: float | None = None
    rules: Mapping[str, RuleOverride] = dataclasses.field(default_factory=dict, repr=False)
    # A gateway deployment with no key to send: what to set. Its probes report auth without
    # calling the provider.
    missing_key: str | None = None
    retires: datetime.date | None = None  # the model's announced retirement, from the config
    probes: tuple[Probe, ...] = ()  # custom probes, besides the built-in ``checks``
    # Vertex AI: the Google Cloud project and location (region, or "global"), and the
    # service-account file's path (None: application default credentials), never its content.
    project: str | None = None
    location: str | None = None
    credentials_file: str | None = None
    # Or the credentials' JSON itself (LiteLLM's vertex_credentials holding it): a secret.
    credentials_info: str | None = dataclasses.field(default=None, repr=False)
    # The model's URL up to ":method", used as is (LiteLLM's vertex_ai/ api_base: a proxy's).
    model_endpoint: str | None = None
    # Status-page components (globs) carrying its API; None: the provider's default mapping.
    status_components: tuple[str, ...] | None = None
    region: str | None = None  # a cloud provider's region (AWS Bedrock's signing scope)
    # AWS credentials named instead of the standard chain: ``profile``, or ``access_key_id``,
    # ``secret_access_key`` and ``session_token`` (LiteLLM's aws_* params), resolved.
    aws: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def retires_at(self) -> float | None:
        """When the model is retired: the start of its retirement day, UTC."""
        if self.retires is None:
            return None
        return datetime.datetime.combine(self.retires, datetime.time(), datetime.UTC).timestamp()

    @property
    def secrets(self) -> tuple[str, ...]:
        """Its key and credential headers: what a provider may echo back."""
        aws = (v for k, v in self.aws.items() if k != "profile")
        return credentials(self.api_key, self.headers) + tuple(aws)


@functools.lru_cache(maxsize=1024)
def preset_target(provider: str, model: str) -> Target:
    """A keyless target of a preset's defaults: what prices and context windows are looked up
    by when only a provider and a model are known (SDK calls, routing by cost)."""
    preset = PRESETS[provider]
    return Target(
        name=f"{provider}/{model}",
        provider=provider,
        protocol=protocol_for(provider, model),
        model=model,
        base_url=preset.base_url or "",
        price_provider=preset.price_provider,
    )
