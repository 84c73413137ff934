"""The dashboard, JSON API, /metrics and public status page: they read the stores and never
write results."""
