"""OTLP export (http/protobuf) of every check result: one CLIENT span and the GenAI client
metrics per result, probes and gateway traffic alike (docs/telemetry.md).

``emit`` runs on the event loop that times TTFT, so it only builds a span and records three
histograms in memory: the SDK's BatchSpanProcessor and PeriodicExportingMetricReader export
from their own threads. A collector that is down costs nothing here: the exporters retry with
backoff in those threads, and the span queue is bounded (the oldest spans are dropped past it).
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmpulse.config.telemetry import TelemetryConfig
from llmpulse.result import CheckResult
from llmpulse.target import Target
from llmpulse.telemetry.semconv import (
    OPERATION_DURATION,
    OPERATIONS,
    TIME_TO_FIRST_CHUNK,
    TOKEN_USAGE,
    ServedModels,
    error_type,
    provider_name,
)

log = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "llmpulse"
SCOPE = "llmpulse"
# How long a graceful shutdown waits for the collector, all signals together: a collector that
# is down would otherwise hold it for the exporters' retries (10 s per signal by default).
SHUTDOWN_TIMEOUT_S = 5.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Telemetry:
    """The OTLP sink: ``emit(result)`` once per check result, ``shutdown()`` once at exit.

    Own tracer and meter providers (never the process-global ones), so a gateway and a daemon,
    or several tests, in one process do not share an exporter.
    """

    def __init__(self, config: TelemetryConfig, targets: Iterable[Target] = ()) -> None:
        resource = Resource.create(
            {SERVICE_NAME: config.service_name} if config.service_name else {}
        )
        # Resource.create reads OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES; only when neither
        # names the service does it fall back to "unknown_service", which says nothing.
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
        # None leaves the SDK's OTEL_EXPORTER_OTLP_* variables in charge.
        headers = dict(config.headers) or None
        version = importlib.metadata.version("llmpulse")
        # server.address/port of each target, parsed once; the base URL's path stays out.
        self._servers: dict[str, tuple[str, int | None]] = {}
        for target in targets:
            url = urlsplit(target.base_url)
            if url.hostname:
                self._servers[target.name] = (url.hostname, url.port)
        self._tracer_provider: TracerProvider | None = None
        self._meter_provider: MeterProvider | None = None
        if config.traces:
            # No atexit hook: ``shutdown`` is called, and bounded; the SDK's hook is not.
            self._tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self._tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(endpoint=_signal(config.endpoint, "traces"), headers=headers)
                )
            )
            self._tracer = self._tracer_provider.get_tracer(SCOPE, version)
        if config.metrics:
            interval = config.export_interval
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=_signal(config.endpoint, "metrics"), headers=headers),
                export_interval_millis=interval * 1000 if interval is not None else None,
            )
            self._meter_provider = MeterProvider(
                resource=resource, metric_readers=[reader], shutdown_on_exit=False
            )
            meter = self._meter_provider.get_meter(SCOPE, version)
            self._duration, self._ttft, self._tokens = (
                meter.create_histogram(
                    h.name,
                    unit=h.unit,
                    description=h.description,
                    explicit_bucket_boundaries_advisory=h.buckets,
                )
                for h in (OPERATION_DURATION, TIME_TO_FIRST_CHUNK, TOKEN_USAGE)
            )
            self._served = ServedModels()

    def emit(self, result: CheckResult) -> None:
        """Record one result; never raises (telemetry must not break probing or routing)."""
        try:
            if self._tracer_provider is not None:
                self._span(result)
            if self._meter_provider is not None:
                self._measure(result)
        except Exception:
            log.exception("telemetry: result of %s not exported", result.target)

    def shutdown(self) -> None:
        """Export what is buffered, then stop; blocks SHUTDOWN_TIMEOUT_S at most.

        The SDK's own shutdown waits out the exporters' retries (up to 30 s for spans), so it
        runs in a daemon thread that is left behind if the collector does not answer in time.
        """

        def stop() -> None:
            if self._tracer_provider is not None:
                self._tracer_provider.shutdown()
            if self._meter_provider is not None:
                self._meter_provider.shutdown()

        thread = threading.Thread(target=stop, name="llmpulse-telemetry-shutdown", daemon=True)
        thread.start()
        thread.join(SHUTDOWN_TIMEOUT_S)
        if thread.is_alive():
            log.warning(
                "telemetry: the collector did not take the last spans and metrics within %.0f s; "
                "they are dropped",
                SHUTDOWN_TIMEOUT_S,
            )

    def _common(self, result: CheckResult) -> dict[str, AttributeValue]:
        """The semconv attributes spans and metrics share."""
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": OPERATIONS[result.kind],
            "gen_ai.provider.name": provider_name(result.provider),
            "gen_ai.request.model": result.model,
            "llmpulse.target": result.target,
            "llmpulse.check": result.check,  # the probe's name
            "llmpulse.check.kind": result.kind.value,
            "llmpulse.source": str(result.source),
        }
        if result.region is not None:  # split any metric by where it was measured from
            attributes["llmpulse.region"] = result.region
        server = self._servers.get(result.target)
        if server is not None:
            attributes["server.address"] = server[0]
            if server[1] is not None:
                attributes["server.port"] = server[1]
        return attributes

    def _span(self, result: CheckResult) -> None:
        attributes = self._common(result)
        # The result's timestamp is when the check (or the request's last attempt) started;
        # its latency runs from there to the last byte.
        start = _unix_ns(result.timestamp)
        end = start + round((result.latency_ms or 0.0) * 1e6)
        optional: Mapping[str, AttributeValue | None] = {
            "gen_ai.response.model": result.response_model,
            "gen_ai.response.finish_reasons": [result.finish_reason]
            if result.finish_reason
            else None,
            "http.response.status_code": result.http_status,
            "error.type": error_type(result),
            "llmpulse.ttft_ms": result.ttft_ms,
            "llmpulse.tokens_per_s": result.tokens_per_s,
            "llmpulse.agent": result.agent,
            "llmpulse.attempts": result.attempts,
            "llmpulse.fallbacks": result.fallbacks,
            "llmpulse.cost_usd": result.cost_usd,
            # A provider request id header, or the completion id when there is none.
            "llmpulse.request_id": result.request_id,
        }
        if not result.usage.estimated:  # the semconv reports only the provider's counts
            optional = {
                **optional,
                "gen_ai.usage.input_tokens": result.usage.input_tokens,
                "gen_ai.usage.output_tokens": result.usage.output_tokens,
            }
        attributes.update({k: v for k, v in optional.items() if v is not None})
        span = self._tracer.start_span(
            f"{OPERATIONS[result.kind]} {result.model}",
            context=Context(),  # a root span: never a child of whatever is current
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start,
        )
        if not result.ok:
            span.set_status(Status(StatusCode.ERROR, result.error_message))
        span.end(end_time=end)

    def _measure(self, result: CheckResult) -> None:
        attributes = self._common(result)
        served = self._served.label(result.target, result.response_model)
        if served:
            attributes["gen_ai.response.model"] = served
        if result.latency_ms is not None:
            failed = error_type(result)
            self._duration.record(
                result.latency_ms / 1000,
                {**attributes, "error.type": failed} if failed else attributes,
            )
        if result.ttft_ms is not None:
            self._ttft.record(result.ttft_ms / 1000, attributes)
        usage = result.usage
        if not usage.estimated:
            for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if count is not None:
                    self._tokens.record(count, {**attributes, "gen_ai.token.type": kind})


def _unix_ns(moment: datetime) -> int:
    """Exact nanoseconds since the epoch (a float of seconds loses the microseconds)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _signal(endpoint: str | None, signal: str) -> str | None:
    """The per-signal URL of a base endpoint, as the SDK builds it from
    OTEL_EXPORTER_OTLP_ENDPOINT; None lets the SDK read its variables."""
    return f"{endpoint}/v1/{signal}" if endpoint else None
