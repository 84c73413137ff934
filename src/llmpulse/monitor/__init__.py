"""The monitor: scheduler, rolling metrics and alert rules."""
