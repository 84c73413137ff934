"""The daemon at scale: 1,000 and 5,000 stream targets at a 30 s interval in one process.

For each size the real ``Daemon`` (scheduler, probes, rule windows, alert engine, SQLite
writes) runs in a child process against the simulator for a few intervals. Printed per size:
scheduling lag p99 (how late checks start against their due time), TTFT measurement error
p50/p99 (each stored result matched by request id to the simulator's injected TTFT), checks
per second, and the daemon's peak RSS. Goals: at 5,000 targets lag p99 < 1 s and TTFT error
p99 < 10 ms; RSS < 200 MB at 1,000 targets.
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


def child(size: int, duration: float, db: str, url: str) -> None:
    """Run the daemon with ``size`` targets for ``duration`` seconds; print its own figures."""
    config = parse_config(
        {
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


def measure(url: str, size: int, duration: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "scale.db")
        httpx.delete(f"{url}/_sim/requests", timeout=30)
        start = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--child", str(size), str(duration), db, url],
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
        f"{size} targets: {own['checks']} checks in {elapsed:.0f}s, {failed} failed, "
        f"{len(errors)} matched to ground truth"
    )
    return {
        f"{size}_lag_p50_s": own["lag_p50_s"],
        f"{size}_lag_p99_s": own["lag_p99_s"],
        f"{size}_ttft_error_p50_ms": statistics.median(errors),
        f"{size}_ttft_error_p99_ms": errors[int(len(errors) * 0.99) - 1],
        f"{size}_checks_per_s": own["checks"] / duration,
        f"{size}_failed_checks": float(failed),
        f"{size}_rss_mb": own["rss_mb"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--duration", type=float, default=75.0, help="seconds per size")
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    with sim_process({"models": {"scale": MODEL}}) as url:
        for size in args.sizes:
            figures.update(measure(url, size, args.duration))
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
    ok = all(goals)
    print(
        "goal (5,000 targets: lag p99 < 1 s, TTFT error p99 < 10 ms; RSS < 200 MB at 1,000): "
        + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(main())
