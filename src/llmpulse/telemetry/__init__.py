"""OpenTelemetry GenAI naming (``semconv``, shared with the Prometheus exporter) and the
optional OTLP export of every check result (``otlp``, imported only when configured)."""
