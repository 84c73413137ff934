"""Scheduling, with the check function as the seam (the HTTP side is tested in test_probe)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import UTC, datetime

import pytest

from llmpulse.config import parse_config
from llmpulse.errors import ErrorClass
from llmpulse.monitor.scheduler import Scheduler
from llmpulse.result import CheckKind, CheckResult


def targets(*specs):
    raw = [
        {"name": name, "provider": provider, "base_url": "http://127.0.0.1:1/v1", "model": "m",
         "interval": interval, "checks": checks}
        for name, provider, interval, checks in specs
    ]  # fmt: skip
    return parse_config({"targets": raw}, env={}).targets


def result(target, kind, error=None):
    return CheckResult(
        target=target.name, provider=target.provider, model=target.model, check=kind,
        timestamp=datetime.now(UTC), ok=error is None, error_class=error,
    )  # fmt: skip


class Offsets(random.Random):
    """Start offsets chosen by the test instead of at random."""

    def __init__(self, offsets):
        super().__init__()
        self.offsets = iter(offsets)

    def uniform(self, a, b):
        return next(self.offsets)


async def run_for(scheduler, seconds):
    stop = asyncio.Event()
    task = asyncio.ensure_future(scheduler.run(stop, drain_timeout=5))
    await asyncio.sleep(seconds)
    stop.set()
    await task


async def test_kinds_are_spread_across_the_interval_at_a_fixed_rate():
    (t,) = targets(("a", "vllm", "900ms", ["models", "inference", "stream"]))
    starts: list[tuple[float, CheckKind]] = []

    async def check(target, kind):
        starts.append((time.monotonic(), kind))
        return result(target, kind)

    await run_for(Scheduler([t], check, lambda *_: None, rng=Offsets([0.0])), 2.75)
    kinds = [k for _, k in starts]
    # Inference at 0, models at 225 ms, stream at 450 ms, then again every 900 ms.
    assert kinds[:6] == ["inference", "models", "stream"] * 2
    at = {k: [t - starts[0][0] for t, kk in starts if kk == k] for k in CheckKind}
    assert at["stream"][0] == pytest.approx(0.45, abs=0.05)
    assert at["models"][0] == pytest.approx(0.225, abs=0.05)
    for times in at.values():
        assert all(0.85 < b - a < 0.95 for a, b in itertools.pairwise(times))  # fixed rate


async def test_a_hanging_check_neither_stacks_nor_delays_others():
    hang, fast = targets(
        ("hang", "vllm", "300ms", ["stream"]), ("fast", "ollama", "300ms", ["stream"])
    )
    calls = {"hang": 0, "fast": 0}
    done: list[str] = []

    async def check(target, kind):
        calls[target.name] += 1
        if target.name == "hang":
            await asyncio.sleep(3)
        return result(target, kind)

    scheduler = Scheduler([hang, fast], check, lambda t, r: done.append(t.name))
    await run_for(scheduler, 2.1)
    assert calls["hang"] == 1  # never stacked while still running
    assert calls["fast"] >= 6
    assert max(scheduler.lag) < 0.1
    assert "hang" in done  # stopping waited for the in-flight check and kept its result


async def test_failures_are_retried_quickly_until_confirmed_and_siblings_checked():
    down, sibling = targets(
        ("down", "openai-compatible", "10s", ["inference"]),
        ("sibling", "openai-compatible", "10s", ["inference"]),
    )
    calls: list[tuple[str, float]] = []
    t0 = time.monotonic()

    async def check(target, kind):
        calls.append((target.name, time.monotonic() - t0))
        error = ErrorClass.UNAVAILABLE if target.name == "down" else None
        return result(target, kind, error)

    scheduler = Scheduler(
        [down, sibling], check, lambda *_: None, retry_interval=0.2, confirmations=3,
        rng=Offsets([0.0, 5.0]),  # "down" is due at once, "sibling" not for 5 s
    )  # fmt: skip
    await run_for(scheduler, 2.0)
    down_calls = [t for name, t in calls if name == "down"]
    assert len(down_calls) == 3  # first failure + two quick retries = confirmed, then back to 10 s
    assert 0.15 < down_calls[1] - down_calls[0] < 0.35
    sibling_calls = [t for name, t in calls if name == "sibling"]
    assert any(abs(t - down_calls[0]) < 0.1 for t in sibling_calls)  # checked at once


async def test_rate_limits_are_not_retried_quickly():
    (t,) = targets(("limited", "vllm", "10s", ["inference"]))
    calls = []

    async def check(target, kind):
        calls.append(kind)
        return result(target, kind, ErrorClass.RATE_LIMITED)

    await run_for(Scheduler([t], check, lambda *_: None, retry_interval=0.1), 1.0)
    assert len(calls) <= 1


async def test_retries_count_per_check_kind():
    (t,) = targets(("mixed", "vllm", "600ms", ["models", "inference"]))
    calls: list[CheckKind] = []

    async def check(target, kind):
        calls.append(kind)
        error = ErrorClass.UNAVAILABLE if kind is CheckKind.INFERENCE else None
        return result(target, kind, error)

    scheduler = Scheduler([t], check, lambda *_: None, retry_interval=0.05, confirmations=3,
                          rng=Offsets([0.0]))  # fmt: skip
    await run_for(scheduler, 0.55)  # inference due at 0.3 s, retried at 0.35 and 0.4 s
    # Models answers in between, yet inference is retried until it failed three times in a row.
    assert calls.count(CheckKind.INFERENCE) == 3
