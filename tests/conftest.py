"""Shared fixtures: a real simulator on a loopback socket, and targets pointed at it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from llmpulse.config import Target, parse_config
from llmpulse.sim import SimServer

_names = itertools.count()


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    server = SimServer()
    server.start()
    yield server
    server.stop()


def base_url(sim: SimServer, provider: str) -> str:
    if provider == "anthropic":
        return sim.anthropic_base
    if provider == "gemini":
        return sim.gemini_base
    if provider == "azure":
        return sim.azure_base
    return sim.openai_base


def make_target(sim: SimServer, provider: str, model: str, **extra: Any) -> Target:
    raw = {
        "provider": provider,
        "model": model,
        "base_url": base_url(sim, provider),
        "api_key": "os.environ/SIM_KEY",
        **extra,
    }
    if provider == "azure":
        raw.setdefault("api_version", "2024-10-21")
    return parse_config({"targets": [raw]}, env={"SIM_KEY": "sk-sim"}).targets[0]


def sim_model(sim: SimServer, **behavior: Any) -> str:
    """Create a fresh simulated model with the given behaviour; returns its name."""
    name = f"test-model-{next(_names)}"
    response = httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10)
    response.raise_for_status()
    return name


def ground_truth(sim: SimServer, request_id: str) -> dict[str, Any]:
    records = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()
    records = records["requests"] if isinstance(records, dict) else records
    return next(r for r in records if r["request_id"] == request_id)
