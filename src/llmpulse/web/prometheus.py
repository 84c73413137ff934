"""The Prometheus exposition served at ``/metrics`` (every metric is described in docs/metrics.md).

Names follow the OpenTelemetry GenAI semantic conventions where they define the measurement,
converted the way the OTel Prometheus exporter does (dots → underscores, ``_seconds`` for unit
"s", ``{token}`` dropped). Counters and histograms are fed by ``observe`` once per check result;
the gauges (status, availability, rate-limit utilization, official status) are read from a
``Snapshot`` at scrape time, so a scrape shows current values without the daemon pushing them.

Labels carry only names (target, provider, model, served model) and closed sets of values: the
exporter never sees a target's base URL, key or headers, and ignores error messages.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmpulse.monitor.status import Status
from llmpulse.monitor.statuspage import Indicator
from llmpulse.result import CheckKind, CheckResult

log = logging.getLogger(__name__)

# The boundaries gen-ai-metrics.md recommends for gen_ai.client.operation.duration and
# gen_ai.client.operation.time_to_first_chunk (10 ms doubling to 82 s) and for token usage.
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
# From a slow local model to Groq/Cerebras-class serving (well over 1000 tokens/s).
TOKENS_PER_SECOND_BUCKETS = (
    5, 10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000,
)  # fmt: skip

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
}
# The semconv's error.type fallback, for a failure that carries no class.
OTHER = "_OTHER"
# The served model comes from the provider's response: past this many distinct values per
# target the rest share OTHER, so a provider cannot create series without bound.
MAX_RESPONSE_MODELS = 8
INDICATORS: tuple[Indicator, ...] = get_args(Indicator)

_TARGET = ("llmpulse_target", "gen_ai_provider_name", "gen_ai_request_model")
_GENAI = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "llmpulse_target",
    "llmpulse_check",
)


@dataclasses.dataclass(frozen=True, slots=True)
class TargetSnapshot:
    """One target's current state. ``None`` figures (no data) are left out, never shown as 0."""

    name: str
    provider: str
    model: str
    status: Status
    availability: float | None = None  # 0..1 over Snapshot.availability_window
    ratelimit_utilization: float | None = None  # 0..1, from the latest check that reported it


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the gauges show, read once per scrape."""

    targets: Sequence[TargetSnapshot] = ()
    official: Mapping[str, Indicator] = dataclasses.field(default_factory=dict)  # by provider
    availability_window: str = "1h"  # label value only, e.g. "5m", "1h", "24h"


def provider_label(provider: str) -> str:
    """The ``gen_ai_provider_name`` value of an llmpulse provider name."""
    return SEMCONV_PROVIDERS.get(provider, provider)


class MetricsExporter:
    """One registry per instance: several apps (or tests) in one process never share series."""

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._checks = Counter(
            "llmpulse_checks",
            "Checks completed, by outcome (error_type is empty for a success).",
            (*_TARGET, "llmpulse_check", "error_type"),
            registry=r,
        )
        self._duration = Histogram(
            "gen_ai_client_operation_duration",
            "GenAI operation duration: a whole check, connection setup to last byte.",
            (*_GENAI, "error_type"),
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time from sending a streaming request to the first chunk with visible output text.",
            _GENAI,
            unit="seconds",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._tokens = Histogram(
            "gen_ai_client_token_usage",
            "Input and output tokens per check, as the provider reported them.",
            (*_GENAI, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self._tps = Histogram(
            "llmpulse_tokens_per_second",
            "Visible output tokens per second of a streamed response, first to last text chunk.",
            _GENAI,
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=r,
        )
        self._cost = Counter(
            "llmpulse_cost_usd",
            "Cost of the checks in US dollars since the process started.",
            (*_TARGET, "llmpulse_check"),
            registry=r,
        )
        if snapshot is not None:
            r.register(_SnapshotCollector(snapshot))
        self._series: dict[tuple[str, str, str, str, str, str], _Series] = {}
        self._served: dict[str, set[str]] = {}

    def observe(self, result: CheckResult) -> None:
        """Count one check result. O(1): a dict lookup, then updates of bound series; a label
        combination's series are bound when it first has a value for them, so no always-empty
        series appear (no TTFT for a models list, no tokens for a failure)."""
        if result.ok:
            error = ""
        else:
            error = result.error_class.value if result.error_class is not None else OTHER
        served = self._served_label(result.target, result.response_model)
        key = (result.target, result.provider, result.model, result.check, served, error)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = self._bind(key)
        s.checks.inc()
        if result.latency_ms is not None:
            s.duration.observe(result.latency_ms / 1000)
        if result.ttft_ms is not None:
            if s.ttft is None:
                s.ttft = self._ttft.labels(*s.genai)
            s.ttft.observe(result.ttft_ms / 1000)
        if result.tokens_per_s is not None:
            if s.tps is None:
                s.tps = self._tps.labels(*s.genai)
            s.tps.observe(result.tokens_per_s)
        usage = result.usage
        # Estimated counts are not the provider's: the semconv says not to report them.
        if usage.input_tokens is not None and not usage.estimated:
            if s.input_tokens is None:
                s.input_tokens = self._tokens.labels(*s.genai, "input")
            s.input_tokens.observe(usage.input_tokens)
        if usage.output_tokens is not None and not usage.estimated:
            if s.output_tokens is None:
                s.output_tokens = self._tokens.labels(*s.genai, "output")
            s.output_tokens.observe(usage.output_tokens)
        if result.cost_usd is not None:
            if s.cost is None:
                _, provider, model, _, target, check = s.genai
                s.cost = self._cost.labels(target, provider, model, check)
            s.cost.inc(result.cost_usd)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when ``accept`` (the request's
        Accept header) asks for it, else the Prometheus text format. Reads the snapshot, so
        run it off the event loop if the snapshot does I/O."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def _served_label(self, target: str, response_model: str | None) -> str:
        if not response_model:
            return ""
        seen = self._served.get(target)
        if seen is None:
            seen = self._served[target] = set()
        if response_model in seen:
            return response_model
        if len(seen) >= MAX_RESPONSE_MODELS:
            return OTHER
        seen.add(response_model)
        return response_model

    def _bind(self, key: tuple[str, str, str, str, str, str]) -> _Series:
        target, provider, model, check, served, error = key
        provider = provider_label(provider)
        genai = (OPERATIONS[CheckKind(check)], provider, model, served, target, check)
        return _Series(
            genai=genai,
            checks=self._checks.labels(target, provider, model, check, error),
            duration=self._duration.labels(*genai, error),
        )


@dataclasses.dataclass(slots=True)
class _Series:
    """The bound series of one label combination; the optional ones are bound on first use."""

    genai: tuple[str, str, str, str, str, str]  # label values in _GENAI order
    checks: Counter
    duration: Histogram
    ttft: Histogram | None = None
    tps: Histogram | None = None
    input_tokens: Histogram | None = None
    output_tokens: Histogram | None = None
    cost: Counter | None = None


class _SnapshotCollector(Collector):
    """The gauges, built from a fresh snapshot on every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterator[Metric]:
        # Names for the registry's duplicate check, without calling the snapshot.
        return iter(_families(Snapshot()))

    def collect(self) -> Iterator[Metric]:
        try:
            snapshot = self._snapshot()
        except Exception:
            # The counters are still worth scraping; the gauges are absent (no data) this time.
            log.exception("metrics snapshot failed; gauges left out of this scrape")
            return iter(())
        return iter(_families(snapshot))


def _families(snapshot: Snapshot) -> list[Metric]:
    status = GaugeMetricFamily(
        "llmpulse_target_status",
        "Target status as a state set: 1 for the current status, 0 for the others.",
        labels=(*_TARGET, "status"),
    )
    availability = GaugeMetricFamily(
        "llmpulse_target_availability",
        "Share of checks that were not an outage, over llmpulse_window.",
        labels=(*_TARGET, "llmpulse_window"),
        unit="ratio",
    )
    utilization = GaugeMetricFamily(
        "llmpulse_target_ratelimit_utilization",
        "Rate-limit use of the most used dimension (1 - remaining/limit), latest check.",
        labels=_TARGET,
        unit="ratio",
    )
    official = GaugeMetricFamily(
        "llmpulse_provider_official_status",
        "The provider's official status page indicator as a state set.",
        labels=("gen_ai_provider_name", "indicator"),
    )
    for t in snapshot.targets:
        labels = (t.name, provider_label(t.provider), t.model)
        for s in Status:
            status.add_metric((*labels, s.value), 1.0 if s is t.status else 0.0)
        if t.availability is not None:
            availability.add_metric((*labels, snapshot.availability_window), t.availability)
        if t.ratelimit_utilization is not None:
            utilization.add_metric(labels, t.ratelimit_utilization)
    for provider, indicator in snapshot.official.items():
        for i in INDICATORS:
            official.add_metric((provider_label(provider), i), 1.0 if i == indicator else 0.0)
    return [status, availability, utilization, official]
