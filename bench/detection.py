"""Outage detection time with the default settings: onset → webhook received.

The real daemon (``Daemon``, default intervals: 30 s, checks spread across it, 2 s retries,
3 confirmations, 2 s group wait) watches three simulated targets; a local webhook receiver
records what arrives. Each run waits a random time so the onset falls anywhere between
checks, switches one target to a hard outage (every request answers 503), and measures until
the firing page arrives; then recovers it and waits for the resolution. Goal: median ≤ 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from aiohttp import web

from bench.common import report, sim_process
from llmpulse import aio
from llmpulse.config import parse_config
from llmpulse.monitor.daemon import Daemon

MODELS = {
    "bench-gpt": {"ttft": "300ms", "tokens_per_s": 100, "output_tokens": 20},
    "bench-claude": {"ttft": "400ms", "tokens_per_s": 80, "output_tokens": 20},
    "bench-gemini": {"ttft": "350ms", "tokens_per_s": 120, "output_tokens": 20},
}


async def run(url: str, runs: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    arrivals: list[tuple[float, dict]] = []

    async def hook(request: web.Request) -> web.Response:
        arrivals.append((time.time(), json.loads(await request.read())))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hook_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]
    config = parse_config(
        {
            "monitor": {"status_pages": False},
            "web": {"listen": "127.0.0.1:0"},
            "targets": [
                {"provider": "openai", "model": "bench-gpt", "base_url": f"{url}/openai/v1"},
                {"provider": "anthropic", "model": "bench-claude", "base_url": f"{url}/anthropic"},
                {"provider": "gemini", "model": "bench-gemini", "base_url": f"{url}/gemini/v1beta"},
            ],
            "notifiers": [{"type": "webhook", "url": hook_url}],
        },
        env={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"},
    )
    detections: list[float] = []
    recoveries: list[float] = []
    pages_per_incident: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config, db_path=Path(tmp) / "bench.db")
        task = asyncio.ensure_future(daemon.run())
        try:
            async with httpx.AsyncClient(base_url=url) as sim:
                await asyncio.sleep(35)  # every target checked at least once, rules warmed up
                for i in range(runs):
                    model = rng.choice(list(MODELS))
                    await asyncio.sleep(rng.uniform(0, 30))  # onset anywhere in the cycle
                    seen = len(arrivals)
                    onset = time.time()
                    await sim.patch(f"/_sim/models/{model}", json={"errors": {"503": 1.0}})
                    while not any(a["status"] == "firing" for _, a in arrivals[seen:]):
                        await asyncio.sleep(0.05)
                    fired = next(t for t, a in arrivals[seen:] if a["status"] == "firing")
                    detections.append(fired - onset)
                    await asyncio.sleep(20)  # the outage goes on
                    recovered = time.time()
                    await sim.patch(f"/_sim/models/{model}", json={"errors": {}})
                    while not any(a["status"] == "resolved" for _, a in arrivals[seen:]):
                        await asyncio.sleep(0.05)
                    resolved = next(t for t, a in arrivals[seen:] if a["status"] == "resolved")
                    recoveries.append(resolved - recovered)
                    await asyncio.sleep(5)
                    pages_per_incident.append(len(arrivals) - seen)
                    print(
                        f"run {i + 1}/{runs}: {model} detected in {detections[-1]:.1f}s, "
                        f"recovery seen in {recoveries[-1]:.1f}s, "
                        f"{pages_per_incident[-1]} notifications"
                    )
        finally:
            daemon.stop_event.set()
            await task
            await runner.cleanup()
    return {
        "runs": float(runs),
        "detection_median_s": statistics.median(detections),
        "detection_max_s": max(detections),
        "recovery_median_s": statistics.median(recoveries),
        "notifications_per_incident_max": float(max(pages_per_incident)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench detection", description=__doc__)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    with sim_process({"models": MODELS}) as url:
        figures = aio.run(run(url, args.runs, args.seed))
    report(
        "detection",
        figures,
        lower_is_better=set(figures) - {"runs"},
        save=args.save_baseline,
    )
    ok = figures["detection_median_s"] <= 15 and figures["notifications_per_incident_max"] <= 2
    print(f"goal (detection median <= 15 s, one page + one recovery): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
