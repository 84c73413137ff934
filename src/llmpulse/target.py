"""The probe's vocabulary: a resolved ``Target`` (everything a check needs) and its price override.

It sits below everything that measures, prices or routes to a target; the config builds targets
(``llmpulse.config.targets``) but this module knows nothing of files.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from llmpulse.presets import PRESETS
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


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A resolved target: everything a probe needs, the key already read from the environment."""

    name: str
    provider: str
    protocol: str
    model: str
    base_url: str
    api_key: str | None = dataclasses.field(default=None, repr=False)
    checks: tuple[CheckKind, ...] = tuple(CheckKind)
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
        protocol=preset.protocol,
        model=model,
        base_url=preset.base_url or "",
        price_provider=preset.price_provider,
    )
