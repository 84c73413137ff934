"""The OpenTelemetry GenAI semantic conventions as llmpulse applies them: metric names, bucket
boundaries and attribute values. One definition, used by the Prometheus exposition
(``llmpulse.telemetry.prometheus``) and the OTLP export (``llmpulse.telemetry.otlp``).

The conventions are defined in ``docs/gen-ai/`` of the semantic conventions (status:
Development, so names may still change); docs/metrics.md and docs/telemetry.md describe how
llmpulse uses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from llmpulse.result import CheckKind, CheckResult

# The boundaries gen-ai-metrics.md recommends for gen_ai.client.operation.duration and
# gen_ai.client.operation.time_to_first_chunk (10 ms doubling to 82 s) and for token usage.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Histogram:
    """A GenAI client histogram: its semconv name and unit, what llmpulse records in it."""

    name: str
    unit: str
    description: str
    buckets: tuple[float, ...]


OPERATION_DURATION = Histogram(
    "gen_ai.client.operation.duration",
    "s",
    "GenAI operation duration: a whole check, connection setup to last byte.",
    DURATION_BUCKETS,
)
TIME_TO_FIRST_CHUNK = Histogram(
    "gen_ai.client.operation.time_to_first_chunk",
    "s",
    "Time from sending a streaming request to the first chunk with visible output text.",
    DURATION_BUCKETS,
)
TOKEN_USAGE = Histogram(
    "gen_ai.client.token.usage",
    "{token}",
    "Input and output tokens per check, as the provider reported them.",
    TOKEN_BUCKETS,
)

# llmpulse provider names for which the semconv's gen_ai.provider.name has another well-known
# value (which it says MUST be used); every other name passes through unchanged.
SEMCONV_PROVIDERS: Mapping[str, str] = {
    "azure": "azure.ai.openai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}
# "chat" is the semconv's value for chat completions; listing models has none, so a custom one.
OPERATIONS: Mapping[CheckKind, str] = {
    CheckKind.MODELS: "list_models",
    CheckKind.INFERENCE: "chat",
    CheckKind.STREAM: "chat",
    CheckKind.RESPONSES: "chat",
    CheckKind.EMBEDDINGS: "embeddings",
    CheckKind.LONG_CONTEXT: "chat",
}
# The semconv's error.type fallback, for a failure that carries no class.
OTHER = "_OTHER"
# The served model comes from the provider's response: past this many distinct values per
# target the rest share OTHER, so a provider cannot create series without bound.
MAX_RESPONSE_MODELS = 8


def provider_name(provider: str) -> str:
    """The ``gen_ai.provider.name`` value of an llmpulse provider name."""
    return SEMCONV_PROVIDERS.get(provider, provider)


def error_type(result: CheckResult) -> str | None:
    """``error.type`` of a result: its error class, ``_OTHER`` without one, None on success."""
    if result.ok:
        return None
    return result.error_class.value if result.error_class is not None else OTHER


class ServedModels:
    """Bounds the ``gen_ai.response.model`` values of each target for use as a metric label."""

    def __init__(self) -> None:
        self._seen: dict[str, set[str]] = {}

    def label(self, target: str, response_model: str | None) -> str:
        """The model itself while the target has few; OTHER past MAX_RESPONSE_MODELS; "" if
        unknown."""
        if not response_model:
            return ""
        seen = self._seen.get(target)
        if seen is None:
            seen = self._seen[target] = set()
        if response_model in seen:
            return response_model
        if len(seen) >= MAX_RESPONSE_MODELS:
            return OTHER
        seen.add(response_model)
        return response_model
