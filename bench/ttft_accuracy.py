"""Measurement accuracy under load: many concurrent stream checks against the simulator.

The simulator runs in its own process and records the TTFT and tokens/s it injected for every
request (its ground truth); each check's request id finds that record. Goal: with 200 concurrent
stream checks, the median |measured TTFT - injected TTFT| <= 5 ms, and tokens/s within 5 %.

A long-context case follows: ``long_context`` checks whose synthetic prompts are 10k and 100k
tokens, against a model whose TTFT grows with the prompt (``prefill_ms_per_ktok``), so the
injected TTFT includes the prefill and the upload of a 400 KB body is inside what is timed.

Checks start over a short ramp (as the daemon's jittered schedule starts them), and the streams
last longer than the ramp, so all of them are in flight at once: ``max_in_flight`` shows it.
Without a ramp, 200 requests landing in the same millisecond queue inside the single-threaded
simulator before it can start their clocks; that queueing is the simulator's, not a measurement
error, and ``--ramp 0`` shows how large it is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import httpx

from bench.common import report, sim_process
from llmpulse import aio
from llmpulse.config import parse_config
from llmpulse.probe import Prober
from llmpulse.result import CheckKind, CheckResult
from llmpulse.target import Probe, Target

# Realistic spread: a fast Groq-like model, a mid OpenAI-like one, a slower Claude-like one, a
# Gemini-like one and one on Bedrock (SigV4-signed, AWS event-stream framing), with ±20 % TTFT
# jitter so every request has its own injected truth.
MODELS = {
    "fast": {"ttft": "200ms", "tokens_per_s": 100, "output_tokens": 60, "jitter": 0.2},
    "mid": {"ttft": "400ms", "tokens_per_s": 60, "output_tokens": 60, "jitter": 0.2},
    "slow": {"ttft": "800ms", "tokens_per_s": 40, "output_tokens": 60, "jitter": 0.2},
    "gem": {"ttft": "500ms", "tokens_per_s": 80, "output_tokens": 60, "jitter": 0.2},
    "amazon.bed-v1:0": {"ttft": "600ms", "tokens_per_s": 70, "output_tokens": 60, "jitter": 0.2},
}
PROVIDERS = {
    "fast": "openai",
    "mid": "openai",
    "slow": "anthropic",
    "gem": "gemini",
    "amazon.bed-v1:0": "bedrock",
}
# The simulator's AWS key pair (its scenario's default), found by the standard chain.
SIM_AWS = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}
# The long-context model: 300 ms plus 20 ms per 1k prompt tokens (10k: 0.5 s, 100k: 2.3 s).
LONG_MODEL = {
    "ttft": "300ms",
    "prefill_ms_per_ktok": 20,
    "tokens_per_s": 60,
    "output_tokens": 16,
    "jitter": 0.2,
    "context_window": 200000,
}
LONG_SIZES = (10_000, 100_000)
LONG_PROVIDERS = ("openai", "anthropic", "gemini")


async def run(url: str, concurrency: int, rounds: int, ramp: float) -> dict[str, float]:
    bases = {
        "openai": f"{url}/openai/v1",
        "anthropic": f"{url}/anthropic",
        "gemini": f"{url}/gemini/v1beta",
        "bedrock": f"{url}/bedrock",
    }
    raw = [
        {
            "name": f"{model}-{i}",
            "provider": PROVIDERS[model],
            "model": model,
            "base_url": bases[PROVIDERS[model]],
            "max_tokens": 64,
            **({"region": "us-east-1"} if PROVIDERS[model] == "bedrock" else {"api_key": "${K}"}),
        }
        for i in range(concurrency)
        for model in [list(MODELS)[i % len(MODELS)]]
    ]
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.update(SIM_AWS)
    targets = parse_config({"targets": raw}, env={"K": "bench"}).targets
    results = []
    in_flight = max_in_flight = 0

    async def one(prober: Prober, target: Target, delay: float) -> CheckResult:
        nonlocal in_flight, max_in_flight
        await asyncio.sleep(delay)
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            return await prober.check(target, CheckKind.STREAM)
        finally:
            in_flight -= 1

    async with Prober() as prober:
        for _ in range(rounds):
            start = time.perf_counter()
            step = ramp / len(targets)
            results += await asyncio.gather(
                *(one(prober, t, i * step) for i, t in enumerate(targets))
            )
            print(f"round of {concurrency} streams: {time.perf_counter() - start:.2f}s")
    truth = _truth(url)
    ttft_err, tps_err, bedrock_err = [], [], []
    failed = 0
    for r in results:
        t = truth.get(r.request_id or "")
        if not r.ok or t is None or r.ttft_ms is None or r.tokens_per_s is None:
            failed += 1
            continue
        ttft_err.append(abs(r.ttft_ms - t["ttft_ms"]))
        if r.provider == "bedrock":
            bedrock_err.append(ttft_err[-1])
        tps_err.append(abs(r.tokens_per_s - t["tokens_per_s"]) / t["tokens_per_s"] * 100)
    ttft_err.sort()
    tps_err.sort()
    return {
        "checks": float(len(results)),
        "max_in_flight": float(max_in_flight),
        "failed_or_unmatched": float(failed),
        "ttft_abs_error_median_ms": statistics.median(ttft_err),
        "ttft_abs_error_p95_ms": ttft_err[int(len(ttft_err) * 0.95) - 1],
        "bedrock_ttft_abs_error_median_ms": statistics.median(bedrock_err),
        "tps_error_median_pct": statistics.median(tps_err),
        "tps_error_p95_pct": tps_err[int(len(tps_err) * 0.95) - 1],
    }


def _truth(url: str) -> dict[str, dict[str, object]]:
    rows = httpx.get(f"{url}/_sim/requests", timeout=30).json()["requests"]
    return {r["request_id"]: r for r in rows}


async def run_long(url: str, per_size: int, ramp: float) -> dict[str, float]:
    """``per_size`` long_context checks of each size at once, over the three protocols."""
    bases = {
        "openai": f"{url}/openai/v1",
        "anthropic": f"{url}/anthropic",
        "gemini": f"{url}/gemini/v1beta",
    }
    raw = [
        {
            "name": f"long-{provider}",
            "provider": provider,
            "model": "long",
            "base_url": bases[provider],
            "api_key": "${K}",
            "timeout": "30s",
        }
        for provider in LONG_PROVIDERS
    ]
    targets = parse_config({"targets": raw}, env={"K": "bench"}).targets
    probes = [Probe(f"ttft-{s}", CheckKind.LONG_CONTEXT, input_tokens=s) for s in LONG_SIZES]
    runs = [(targets[i % len(targets)], p) for p in probes for i in range(per_size)]

    async def one(prober: Prober, target: Target, probe: Probe, delay: float) -> CheckResult:
        await asyncio.sleep(delay)
        return await prober.check(target, probe)

    async with Prober() as prober:
        start = time.perf_counter()
        step = ramp / len(runs)
        results = await asyncio.gather(
            *(one(prober, t, p, i * step) for i, (t, p) in enumerate(runs))
        )
        print(f"round of {len(runs)} long-context streams: {time.perf_counter() - start:.2f}s")
    truth = _truth(url)
    figures: dict[str, float] = {}
    for size in LONG_SIZES:
        errors, counted, failed = [], [], 0
        for r in results:
            t = truth.get(r.request_id or "")
            if r.check != f"ttft-{size}":
                continue
            if not r.ok or t is None or r.ttft_ms is None:
                failed += 1
                continue
            errors.append(abs(r.ttft_ms - float(t["ttft_ms"])))  # type: ignore[arg-type]
            counted.append(abs((r.usage.input_tokens or 0) - size) / size * 100)
        errors.sort()
        label = f"long_{size // 1000}k"
        figures[f"{label}_failed"] = float(failed)
        figures[f"{label}_ttft_abs_error_median_ms"] = statistics.median(errors)
        figures[f"{label}_ttft_abs_error_p95_ms"] = errors[max(0, int(len(errors) * 0.95) - 1)]
        figures[f"{label}_input_tokens_error_max_pct"] = max(counted)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench ttft", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--ramp", type=float, default=0.5, help="seconds over which each round's checks start"
    )
    parser.add_argument(
        "--long", type=int, default=15, help="long-context checks of each size (10k, 100k)"
    )
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    with sim_process({"models": {**MODELS, "long": LONG_MODEL}}) as url:
        figures = aio.run(run(url, args.concurrency, args.rounds, args.ramp))
        if args.long:
            figures |= aio.run(run_long(url, args.long, args.ramp))
    report(
        "ttft_accuracy",
        figures,
        lower_is_better=set(figures) - {"checks", "max_in_flight"},
        save=args.save_baseline,
    )
    long_ok = all(
        figures[f"long_{size // 1000}k_ttft_abs_error_median_ms"] <= 5
        and figures[f"long_{size // 1000}k_failed"] == 0
        for size in LONG_SIZES
        if args.long
    )
    ok = (
        figures["max_in_flight"] >= args.concurrency
        and figures["ttft_abs_error_median_ms"] <= 5
        and figures["bedrock_ttft_abs_error_median_ms"] <= 5
        and figures["tps_error_median_pct"] <= 5
        and long_ok
    )
    print(
        "goal (median TTFT error <= 5 ms, Bedrock's and long-context's too; tokens/s within "
        "5 %): "
        f"{'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
