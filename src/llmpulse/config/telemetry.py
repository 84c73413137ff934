"""The ``telemetry`` section: OTLP export, its collector credentials read from the environment."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmpulse.config.fields import read_reference
from llmpulse.durations import Duration
from llmpulse.secrets import env_var


class TelemetrySettings(BaseModel):
    """OTLP export (http/protobuf) of a span and metrics per check result; off unless present.

    Unset keys leave the OpenTelemetry SDK's standard variables in charge
    (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
    OTEL_METRIC_EXPORT_INTERVAL, ...).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    # The collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces and /v1/metrics are
    # appended.
    endpoint: str | None = None
    # Header name -> os.environ/NAME or ${NAME}: collector credentials never sit in the file.
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str | None = None
    traces: bool = True
    metrics: bool = True
    export_interval: Duration | None = None

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL (OTLP over HTTP)")
        return value

    @field_validator("headers")
    @classmethod
    def _env_references(cls, value: dict[str, str]) -> dict[str, str]:
        for name, ref in value.items():
            if env_var(ref) is None:
                raise ValueError(
                    f"header {name!r} must reference an environment variable as os.environ/NAME "
                    "or ${NAME}; credentials are never written in the config file"
                )
        return value


@dataclasses.dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Resolved telemetry settings: header values read from the environment (never shown)."""

    endpoint: str | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    service_name: str | None = None
    traces: bool = True
    metrics: bool = True
    export_interval: float | None = None


def resolve_telemetry(
    settings: TelemetrySettings, env: Mapping[str, str], where: str = ""
) -> TelemetryConfig:
    headers = {
        name: read_reference(ref, env, f"{where}telemetry.headers.{name}")
        for name, ref in settings.headers.items()
    }
    return TelemetryConfig(
        endpoint=settings.endpoint.rstrip("/") if settings.endpoint else None,
        headers=headers,
        service_name=settings.service_name,
        traces=settings.traces,
        metrics=settings.metrics,
        export_interval=settings.export_interval,
    )
