"""Sinks fed per result: the Prometheus exporter, the optional OTLP export (``otlp``, imported
only when configured) and the OpenTelemetry GenAI names both use (``semconv``)."""
