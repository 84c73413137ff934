"""Probes: run checks against targets and measure them."""

from llmpulse.probe.runner import Prober, make_client, run_checks

__all__ = ["Prober", "make_client", "run_checks"]
