"""The daemon at scale: 1,000 and 5,000 stream targets at a 30 s interval in one process.

For each size the real ``Daemon`` (scheduler, probes, rule windows, alert engine, SQLite
writes) runs in a child process against the simulator for a few intervals. Printed per size:
scheduling lag p99 (how late checks start against their due time), TTFT measurement error
p50/p99 (each stored result matched by request id to the simulator's injected TTFT), checks
per second, and the daemon's peak RSS. Goals: at 5,000 targets lag p99 < 1 s and TTFT error
p99 < 10 ms; RSS < 200 MB at 1,000 targets.

``--rules`` adds 20 custom rules (``RULES``: every kind of metric, per target, provider, model
and overall) and 10 SLOs (``SLOS``: 30-day and 7-day, every SLI) to the config; its goal: at
1,000 targets, lag p99 < 1 s and RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import report, sim_process
from llmpulse import aio
from llmpulse.config import parse_config
from llmpulse.monitor.daemon import Daemon
from llmpulse.store import SQLiteStore

MODEL = {"ttft": "300ms", "jitter": 0.2, "tokens_per_s": 100, "output_tokens": 10}
# Twenty custom rules: quantiles, rates, totals and maxima, most of them per target (the
# costliest: a window per rule and target).
_PER_TARGET = [
    ("ttft_p50", ">", "2s"),
    ("ttft_p95", ">", "3s"),
    ("ttft_p99", ">", "5s"),
    ("latency_p95", ">", "10s"),
    ("latency_p99", ">", "20s"),
    ("tokens_per_s_p50", "<", 5),
    ("tokens_per_s_p05", "<", 1),
    ("itl_p95", ">", "1s"),
    ("error_rate", ">", "10%"),
    ("availability", "<", "99%"),
    ("rate_limited_rate", ">", "20%"),
    ("ratelimit_utilization", ">", "90%"),
    ("requests", "<", 1),
    ("tokens_out", ">", 100_000),
    ("tokens_per_request", ">", 10_000),
    ("context_utilization_p95", ">", "80%"),
]
RULES = [
    {"id": f"bench_{metric}", "metric": metric, "op": op, "threshold": threshold,
     "window": "10m", "min_samples": 3}
    for metric, op, threshold in _PER_TARGET
] + [
    {"id": "bench_cost_provider", "metric": "cost_usd", "by": "provider", "window": "1h",
     "op": ">", "threshold": 100},
    {"id": "bench_ttft_model", "metric": "ttft_p95", "by": "model", "window": "10m",
     "op": ">", "threshold": "3s"},
    {"id": "bench_errors_all", "metric": "error_rate", "by": "all", "window": "5m",
     "op": ">", "threshold": "5%"},
    {"id": "bench_tokens_in_all", "metric": "tokens_in", "by": "all", "window": "1h",
     "op": ">", "threshold": 10_000_000},
]  # fmt: skip
# Ten SLOs: five over every target, five over a tenth of them each.
SLOS = [
    {"name": f"bench-{sli}-{window}", "sli": sli, "objective": "99%", "window": window,
     **({"threshold": "2s"} if sli != "availability" else {})}
    for sli in ("availability", "ttft", "latency") for window in ("30d", "7d")
][:5] + [
    {"name": f"bench-slice-{i}", "sli": "availability", "objective": "99.5%",
     "match": {"target": f"t{i}*"}}
    for i in range(1, 6)
]  # fmt: skip


def child(size: int, duration: float, db: str, url: str, rules: bool) -> None:
    """Run the daemon with ``size`` targets for ``duration`` seconds; print its own figures."""
    config = parse_config(
        {
            "rules": {"custom": RULES if rules else []},
            "slos": SLOS if rules else [],
            "monitor": {"status_pages": False},
            "web": {"listen": "127.0.0.1:0"},
            "targets": [
                {
                    "name": f"t{i}",
                    "provider": "openai-compatible",
                    "model": "scale",
                    "base_url": f"{url}/openai/v1",
                    "checks": ["stream"],
                    "max_tokens": 16,
                    "api_key": "${K}",
                }
                for i in range(size)
            ],
        },
        env={"K": "bench"},
    )
    daemon = Daemon(config, db_path=Path(db))

    async def main() -> None:
        import asyncio

        task = asyncio.ensure_future(daemon.run())
        await asyncio.sleep(duration)
        daemon.stop_event.set()
        await task

    aio.run(main())
    lag = sorted(daemon.scheduler.lag)
    print(
        json.dumps(
            {
                "lag_p50_s": statistics.median(lag),
                "lag_p99_s": lag[int(len(lag) * 0.99) - 1],
                "checks": len(lag),
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def measure(url: str, size: int, duration: float, rules: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "scale.db")
        httpx.delete(f"{url}/_sim/requests", timeout=30)
        start = time.monotonic()
        args = ["--child", str(size), str(duration), db, url, "rules" if rules else "plain"]
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        elapsed = time.monotonic() - start
        own = json.loads(out.strip().splitlines()[-1])
        truth = {
            r["request_id"]: r
            for r in httpx.get(f"{url}/_sim/requests", timeout=60).json()["requests"]
        }
        with SQLiteStore(db) as store:
            results = store.latest_results(limit=10 * size)
    errors = sorted(
        abs(r.ttft_ms - truth[r.request_id]["ttft_ms"])
        for r in results
        if r.ok and r.ttft_ms is not None and r.request_id in truth
    )
    failed = sum(not r.ok for r in results)
    print(
        f"{size} targets{' with 20 custom rules and 10 SLOs' if rules else ''}: "
        f"{own['checks']} checks in {elapsed:.0f}s, {failed} failed, "
        f"{len(errors)} matched to ground truth"
    )
    name = f"{size}_rules" if rules else str(size)
    return {
        f"{name}_lag_p50_s": own["lag_p50_s"],
        f"{name}_lag_p99_s": own["lag_p99_s"],
        f"{name}_ttft_error_p50_ms": statistics.median(errors),
        f"{name}_ttft_error_p99_ms": errors[int(len(errors) * 0.99) - 1],
        f"{name}_checks_per_s": own["checks"] / duration,
        f"{name}_failed_checks": float(failed),
        f"{name}_rss_mb": own["rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--duration", type=float, default=75.0, help="seconds per size")
    parser.add_argument(
        "--rules", action="store_true", help="with 20 custom rules (RULES) and 10 SLOs (SLOS)"
    )
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    with sim_process({"models": {"scale": MODEL}}) as url:
        for size in args.sizes:
            figures.update(measure(url, size, args.duration, args.rules))
    report(
        "scale",
        figures,
        lower_is_better={k for k in figures if not k.endswith("checks_per_s")},
        save=args.save_baseline,
    )
    goals = []
    if "5000_lag_p99_s" in figures:
        goals += [figures["5000_lag_p99_s"] < 1, figures["5000_ttft_error_p99_ms"] < 10]
    if "1000_rss_mb" in figures:
        goals.append(figures["1000_rss_mb"] < 200)
    if "1000_rules_rss_mb" in figures:
        goals += [figures["1000_rules_lag_p99_s"] < 1, figures["1000_rules_rss_mb"] < 200]
    ok = all(goals)
    print(
        "goal (5,000 targets: lag p99 < 1 s, TTFT error p99 < 10 ms; RSS < 200 MB at 1,000; "
        "with --rules at 1,000: lag p99 < 1 s, RSS < 200 MB): " + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(
            int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6] == "rules"
        )
    else:
        raise SystemExit(main())
