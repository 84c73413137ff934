"""Probes: run checks against targets and measure them."""

from llmpulse.probe.runner import Prober, make_session, run_checks

__all__ = ["Prober", "make_session", "run_checks"]
