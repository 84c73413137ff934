"""Probes: run checks against targets and measure them, on a schedule, with a claim to probe
(``lock``) and the providers' official status pages (``official``)."""

from llmpulse.probe.runner import Prober, run_checks

__all__ = ["Prober", "run_checks"]
