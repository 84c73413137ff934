"""Scheduling, with the check function as the seam (the HTTP side is tested in test_probe)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from llmpulse.config import parse_config
from llmpulse.errors import ErrorClass
from llmpulse.probe.scheduler import Scheduler, check_name
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.target import Probe


def targets(*specs):
    raw = [
        {"name": name, "provider": provider, "base_url": "http://127.0.0.1:1/v1", "model": "m",
         "interval": interval, "checks": checks}
        for name, provider, interval, checks in specs
    ]  # fmt: skip
    return parse_config({"targets": raw}, env={}).targets


def result(target, kind, error=None, **fields):
    return CheckResult(
        target=target.name, provider=target.provider, model=target.model, check=kind,
        timestamp=datetime.now(UTC), ok=error is None, error_class=error, **fields,
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


MODEL_CALLS = (CheckKind.INFERENCE, CheckKind.STREAM)


def between(calls, start, end, kinds=MODEL_CALLS):
    return [kind for at, kind in calls if start < at < end and kind in kinds]


async def test_a_retry_after_defers_model_calls_to_its_end_once_and_the_models_list_runs_once():
    (t,) = targets(("limited", "vllm", "300ms", ["models", "inference", "stream"]))
    calls: list[tuple[float, CheckKind]] = []
    t0 = time.monotonic()

    async def check(target, kind):
        at = time.monotonic() - t0
        calls.append((at, kind))
        if kind is not CheckKind.MODELS and at < 0.05:  # the first call is told: wait 1 s
            return result(target, kind, ErrorClass.RATE_LIMITED, retry_after_s=1.0)
        return result(target, kind)

    await run_for(Scheduler([t], check, lambda *_: None, rng=Offsets([0.0])), 1.5)
    assert calls[0] == (pytest.approx(0.0, abs=0.05), CheckKind.INFERENCE)
    # Three turns of each kind came due inside the second: none called the model...
    assert between(calls, 0.02, 0.98) == []
    assert between(calls, 0.02, 0.98, [CheckKind.MODELS]) == ["models"]  # ...one models list
    # ...one model call at its end, not one per turn missed (the other kind waits for its
    # answer), then both back on their interval.
    assert len(between(calls, 0.98, 1.04)) == 1
    assert set(between(calls, 0.98, 1.45)) == {"inference", "stream"}
    for kind in MODEL_CALLS:
        times = [at for at, k in calls if k is kind]
        assert all(b - a > 0.075 for a, b in itertools.pairwise(times))


async def test_a_503_is_rechecked_when_its_retry_after_asks_and_without_one_at_retry_interval():
    asks, plain = targets(
        ("asks", "vllm", "10s", ["inference"]), ("plain", "ollama", "10s", ["inference"])
    )
    calls: dict[str, list[float]] = {"asks": [], "plain": []}
    t0 = time.monotonic()

    async def check(target, kind):
        calls[target.name].append(time.monotonic() - t0)
        retry_after = 0.5 if target.name == "asks" else None
        return result(target, kind, ErrorClass.UNAVAILABLE, retry_after_s=retry_after)

    scheduler = Scheduler([asks, plain], check, lambda *_: None, retry_interval=0.1,
                          confirmations=3, rng=Offsets([0.0, 0.0]))  # fmt: skip
    await run_for(scheduler, 1.3)
    assert len(calls["asks"]) == len(calls["plain"]) == 3  # both confirmed
    assert all(b - a >= 0.48 for a, b in itertools.pairwise(calls["asks"]))
    assert all(b - a < 0.3 for a, b in itertools.pairwise(calls["plain"]))  # detection as fast


async def test_siblings_failing_together_check_each_other_target_once_and_spare_a_limited_one():
    specs = [(name, "openai-compatible", "10s", ["inference"])
             for name in ("limited", "down0", "down1", "down2", "down3", "healthy")]  # fmt: skip
    limited, *downs, healthy = targets(*specs)
    calls: list[str] = []

    async def check(target, kind):
        calls.append(target.name)
        if target is limited:
            return result(target, kind, ErrorClass.RATE_LIMITED, retry_after_s=5.0)
        error = ErrorClass.UNAVAILABLE if target in downs else None
        return result(target, kind, error)

    scheduler = Scheduler(
        [limited, *downs, healthy], check, lambda *_: None, retry_interval=0.2, confirmations=3,
        rng=Offsets([0.0, 0.05, 0.05, 0.05, 0.05, 5.0]),  # the four go down together at 50 ms
    )  # fmt: skip
    await run_for(scheduler, 1.0)
    assert calls.count("healthy") == 1  # one sibling check, not one per failing sibling
    assert calls.count("limited") == 1  # its own turn: no sibling check in its cool-down
    assert all(calls.count(d.name) == 3 for d in downs)


async def test_a_cooldown_from_elsewhere_defers_checks_to_its_end_without_stacking():
    (t,) = targets(("paused", "vllm", "200ms", ["inference", "stream"]))
    calls: list[tuple[float, CheckKind]] = []
    t0 = time.monotonic()
    until = t0 + 0.7  # e.g. the gateway's breaker: a 429 met by traffic, or open until then

    async def check(target, kind):
        calls.append((time.monotonic() - t0, kind))
        return result(target, kind)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]),
                          cooldown=lambda target: max(0.0, until - time.monotonic()))  # fmt: skip
    await run_for(scheduler, 1.2)
    assert between(calls, -1, 0.68) == []
    # Seven turns missed: one model call at the end (the other kind waits for its answer)...
    assert len(between(calls, 0.68, 0.78)) == 1
    # ...then back on its interval, never two of a kind back to back.
    assert len(between(calls, 0.78, 1.2)) >= 2
    for kind in MODEL_CALLS:
        times = [at for at, k in calls if k is kind]
        assert all(b - a > 0.15 for a, b in itertools.pairwise(times))


async def test_a_cooldown_met_elsewhere_counts_from_when_it_was_answered():
    (t,) = targets(("shared", "vllm", "200ms", ["inference"]))
    starts: list[float] = []
    t0 = time.monotonic()

    async def check(target, kind):
        starts.append(time.monotonic() - t0)
        return result(target, kind)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    # A gateway's traffic met a 429 asking for 1.6 s, one second ago (read back from the store).
    traffic = result(t, CheckKind.INFERENCE, ErrorClass.RATE_LIMITED, retry_after_s=1.6,
                     source=Source.TRAFFIC)  # fmt: skip
    scheduler.note(dataclasses.replace(traffic, timestamp=datetime.now(UTC) - timedelta(seconds=1)))
    scheduler.note(dataclasses.replace(traffic, target="not-probed-here"))
    assert scheduler.cooldowns.remaining("not-probed-here") == 0.0
    await run_for(scheduler, 1.0)
    assert starts and 0.55 < starts[0] < 0.7


async def test_first_checks_of_many_targets_are_spread_over_the_interval():
    many = targets(*[(f"t{i}", "vllm", "1s", ["models", "inference", "stream"]) for i in range(20)])
    first: dict[tuple[str, CheckKind], float] = {}
    t0 = time.monotonic()

    async def check(target, kind):
        first.setdefault((target.name, kind), time.monotonic() - t0)
        return result(target, kind)

    await run_for(Scheduler(many, check, lambda *_: None, rng=random.Random(7)), 1.05)
    assert len(first) == 60
    starts = sorted(first.values())
    # 60 first checks over a second: about 6 per 100 ms, never a burst of them.
    assert max(sum(1 for s in starts if a <= s < a + 0.1) for a in starts) <= 15


def with_probes(target, *probes):
    return dataclasses.replace(target, probes=probes)


def probe_result(target, probe, error=None, **fields):
    return CheckResult(
        target=target.name, provider=target.provider, model=target.model, check=probe.name,
        kind=probe.kind, timestamp=datetime.now(UTC), ok=error is None, error_class=error,
        **fields,
    )  # fmt: skip


async def run_one(target, probe_or_kind):
    """The check callable the daemon gives: a built-in check by kind, a custom probe as is."""
    if isinstance(probe_or_kind, Probe):
        return probe_result(target, probe_or_kind)
    return result(target, probe_or_kind)


async def test_custom_probes_run_at_their_own_interval_or_the_targets_spread_with_the_rest():
    (t,) = targets(("a", "vllm", "800ms", ["models", "inference"]))
    own = Probe(name="extract-city", kind=CheckKind.INFERENCE, interval=0.4)
    shared = Probe(name="ttft-10k", kind=CheckKind.LONG_CONTEXT, input_tokens=10_000)
    t = with_probes(t, own, shared)
    starts: list[tuple[float, str]] = []
    t0 = time.monotonic()

    async def check(target, probe):
        starts.append((time.monotonic() - t0, check_name(probe)))
        return await run_one(target, probe)

    await run_for(Scheduler([t], check, lambda *_: None, rng=Offsets([0.0])), 1.7)
    at = {n: [s for s, nn in starts if nn == n] for n in ("inference", "models", "extract-city",
                                                          "ttft-10k")}  # fmt: skip
    # The target's interval holds inference and ttft-10k (model calls, spread at 0 and 400 ms)
    # and the models list halfway between; extract-city runs every 400 ms on its own.
    assert at["inference"][0] == pytest.approx(0.0, abs=0.05)
    assert at["ttft-10k"][0] == pytest.approx(0.4, abs=0.05)
    assert at["models"][0] == pytest.approx(0.2, abs=0.05)
    for name in ("inference", "ttft-10k", "models"):
        assert all(0.75 < b - a < 0.85 for a, b in itertools.pairwise(at[name]))
    assert len(at["extract-city"]) == 5
    assert all(0.35 < b - a < 0.45 for a, b in itertools.pairwise(at["extract-city"]))


async def test_a_custom_probe_is_deferred_in_a_cooldown_like_inference():
    (t,) = targets(("paused", "vllm", "200ms", ["models"]))
    canary = Probe(name="canary", kind=CheckKind.INFERENCE)
    t = with_probes(t, canary)
    calls: list[tuple[float, str]] = []
    t0 = time.monotonic()
    until = t0 + 0.7

    async def check(target, probe):
        calls.append((time.monotonic() - t0, check_name(probe)))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]),
                          cooldown=lambda target: max(0.0, until - time.monotonic()))  # fmt: skip
    await run_for(scheduler, 1.1)
    probes = [at for at, name in calls if name == "canary"]
    assert probes and probes[0] == pytest.approx(0.7, abs=0.06)  # deferred to the end, once
    assert all(b - a > 0.05 for a, b in itertools.pairwise(probes))  # not stacked
    assert [name for at, name in calls if at < 0.68] == ["models"]  # once per cool-down


async def test_successful_traffic_stands_in_for_inference_and_stream_but_not_the_rest():
    (t,) = targets(("busy", "vllm", "300ms", ["models", "inference", "stream"]))
    canary = Probe(name="canary", kind=CheckKind.INFERENCE)
    t = with_probes(t, canary)
    calls: list[tuple[float, str]] = []
    t0 = time.monotonic()

    async def check(target, probe):
        calls.append((time.monotonic() - t0, check_name(probe)))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    stop = asyncio.Event()
    task = asyncio.ensure_future(scheduler.run(stop, drain_timeout=5))
    # Traffic keeps answering for the first second: a success every 100 ms.
    traffic = result(t, CheckKind.STREAM, source=Source.TRAFFIC, latency_ms=5.0)
    failed = result(t, CheckKind.INFERENCE, ErrorClass.UNAVAILABLE, source=Source.TRAFFIC)
    while time.monotonic() - t0 < 1.0:
        scheduler.note(dataclasses.replace(traffic, timestamp=datetime.now(UTC)))
        scheduler.note(dataclasses.replace(failed, timestamp=datetime.now(UTC)))
        await asyncio.sleep(0.1)
    during = scheduler.checked_by_traffic("busy")
    await asyncio.sleep(1.0)
    stop.set()
    await task
    busy = [name for at, name in calls if at < 0.95]
    assert "inference" not in busy and "stream" not in busy
    assert busy.count("models") >= 3 and busy.count("canary") >= 3
    assert set(during) == {"inference", "stream"}
    assert all(time.time() - 1.6 < at < time.time() - 0.9 for at in during.values())
    # Once traffic is older than an interval, the probes call the model again.
    later = [name for at, name in calls if at > 1.35]
    assert "inference" in later and "stream" in later
    assert scheduler.checked_by_traffic("busy") == {}


async def test_failed_or_other_targets_traffic_does_not_skip_a_probe():
    (t,) = targets(("quiet", "vllm", "200ms", ["inference"]))
    calls: list[str] = []

    async def check(target, probe):
        calls.append(check_name(probe))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    scheduler.note(result(t, CheckKind.INFERENCE, ErrorClass.UNAVAILABLE, source=Source.TRAFFIC))
    scheduler.note(result(t, CheckKind.INFERENCE))  # a probe's success is no traffic
    scheduler.note(dataclasses.replace(result(t, CheckKind.INFERENCE, source=Source.TRAFFIC),
                                       target="elsewhere"))  # fmt: skip
    await run_for(scheduler, 0.5)
    assert calls.count("inference") >= 2
    assert scheduler.checked_by_traffic("quiet") == {}


async def test_traffic_of_another_model_under_the_target_name_does_not_skip_a_probe():
    # instrument(client, target="prod") names every call of the client "prod", whatever model
    # it asks: gpt-4o-mini answering says nothing of the target's own model.
    (t,) = targets(("prod", "vllm", "200ms", ["inference", "stream"]))
    calls: list[str] = []

    async def check(target, probe):
        calls.append(check_name(probe))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    other = dataclasses.replace(
        result(t, CheckKind.INFERENCE, source=Source.TRAFFIC), model="another-model"
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(scheduler.run(stop, drain_timeout=5))
    for _ in range(5):
        scheduler.note(dataclasses.replace(other, timestamp=datetime.now(UTC)))
        await asyncio.sleep(0.1)
    stop.set()
    await task
    assert calls.count("inference") >= 2 and calls.count("stream") >= 2
    assert scheduler.checked_by_traffic("prod") == {}


async def test_an_agents_probes_are_not_skipped_for_traffic_from_elsewhere():
    # llmpulse agent --region eu-west: its probes are that region's view (and its part of a
    # min_regions quorum); the gateway's traffic carries no region, another agent's its own.
    (t,) = targets(("shared", "vllm", "200ms", ["inference", "stream"]))
    calls: list[str] = []

    async def check(target, probe):
        calls.append(check_name(probe))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]), region="eu-west")
    traffic = result(t, CheckKind.INFERENCE, source=Source.TRAFFIC)
    stop = asyncio.Event()
    task = asyncio.ensure_future(scheduler.run(stop, drain_timeout=5))
    for _ in range(5):
        now = datetime.now(UTC)
        scheduler.note(dataclasses.replace(traffic, timestamp=now))  # a gateway's
        scheduler.note(dataclasses.replace(traffic, timestamp=now, region="us-east"))
        await asyncio.sleep(0.1)
    assert scheduler.checked_by_traffic("shared") == {}
    scheduler.note(dataclasses.replace(traffic, timestamp=datetime.now(UTC), region="eu-west"))
    await asyncio.sleep(0.25)
    stop.set()
    await task
    assert calls.count("inference") >= 2 and calls.count("stream") >= 2
    assert set(scheduler.checked_by_traffic("shared")) == {"inference", "stream"}


async def test_an_interval_unstretched_comes_back_at_once_not_after_the_stretched_turn():
    # A budget spent last month held the probes hourly; the new month's fit un-stretches them.
    (t,) = targets(("paid", "vllm", "200ms", ["inference"]))
    calls: list[float] = []
    t0 = time.monotonic()

    async def check(target, probe):
        calls.append(time.monotonic() - t0)
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    scheduler.stretch({("paid", "inference"): 3600.0})
    stop = asyncio.Event()
    task = asyncio.ensure_future(scheduler.run(stop, drain_timeout=5))
    await asyncio.sleep(0.3)
    assert len(calls) == 1  # at 0 s, the next one an hour away
    scheduler.stretch({})
    await asyncio.sleep(0.5)
    stop.set()
    await task
    # Overdue by the new interval: at once (0.3 s), then every 200 ms again.
    assert calls[1] == pytest.approx(0.3, abs=0.05)
    assert 3 <= len(calls) <= 5


async def test_a_retry_deferred_by_a_retry_after_runs_though_traffic_answered_before():
    # Traffic succeeded a moment before the probe's 503 (Retry-After: 0.3 s): the suspected
    # outage is re-checked when it asks, not skipped on the older success.
    (t,) = targets(("flaky", "vllm", "2s", ["inference"]))
    calls: list[float] = []
    t0 = time.monotonic()
    scheduler: Scheduler

    async def check(target, probe):
        calls.append(time.monotonic() - t0)
        if len(calls) > 1:
            return result(target, probe)
        before = datetime.now(UTC) - timedelta(seconds=0.05)
        traffic = result(target, probe, source=Source.TRAFFIC)
        scheduler.note(dataclasses.replace(traffic, timestamp=before))
        return result(target, probe, ErrorClass.UNAVAILABLE, retry_after_s=0.3)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]), retry_interval=0.1)
    await run_for(scheduler, 0.6)
    assert len(calls) == 2 and calls[1] == pytest.approx(0.3, abs=0.06)


async def test_stretched_intervals_take_effect_from_the_next_turn_never_below_the_configured():
    (t,) = targets(("paid", "vllm", "200ms", ["models", "inference"]))
    calls: list[tuple[float, str]] = []
    t0 = time.monotonic()

    async def check(target, probe):
        calls.append((time.monotonic() - t0, check_name(probe)))
        return await run_one(target, probe)

    scheduler = Scheduler([t], check, lambda *_: None, rng=Offsets([0.0]))
    scheduler.stretch({("paid", "inference"): 0.5, ("paid", "models"): 0.05})
    assert scheduler.interval(t, CheckKind.INFERENCE) == 0.5
    assert scheduler.interval(t, CheckKind.MODELS) == 0.2  # never shorter than configured
    await run_for(scheduler, 1.2)
    inference = [at for at, name in calls if name == "inference"]
    assert len(inference) == 3  # at 0, 0.5 and 1.0 s instead of every 200 ms
    assert all(0.45 < b - a < 0.55 for a, b in itertools.pairwise(inference))
    assert len([n for _, n in calls if n == "models"]) == 6
