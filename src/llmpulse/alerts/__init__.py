"""Alerting: the alert lifecycle engine, the delivery outbox and one module per notifier."""
