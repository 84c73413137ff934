"""Outage detection time with the default settings: onset → webhook received; and
acknowledgement → escalation cancelled and the acknowledged notice delivered.

The real daemon (``Daemon``, default intervals: 30 s, checks spread across it, 2 s retries,
3 confirmations, 2 s group wait) watches three simulated targets; local webhook receivers
record what arrives. Alerts are routed (``alerting.routes``): critical ones page "chat" and
escalate to "phone" after 15 s unacknowledged. Each run waits a random time so the onset
falls anywhere between checks, switches one target to a hard outage (every request answers
503), and measures until the firing page arrives; then acknowledges it as the API does and
measures until the acknowledged notice arrives; the outage goes on past the escalation delay
(the phone must get nothing), then recovers and the resolution is awaited. Goal: median ≤ 15 s.
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
from llmpulse.alerts.state import AlertStateStore
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
    phone: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        arrivals.append((time.time(), json.loads(await request.read())))
        return web.Response(text="ok")

    async def phone_hook(request: web.Request) -> web.Response:
        phone.append(json.loads(await request.read()))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_post("/phone", phone_hook)
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
            "notifiers": [
                {"name": "chat", "type": "webhook", "url": hook_url},
                {"name": "phone", "type": "webhook", "url": hook_url.replace("/hook", "/phone")},
            ],
            "alerting": {
                "routes": [
                    {
                        "match": {"severity": "critical"},
                        "notify": ["chat"],
                        "escalate": [{"after": "15s", "notify": ["phone"]}],
                    },
                    {"notify": ["chat"]},
                ]
            },
        },
        env={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"},
    )
    detections: list[float] = []
    recoveries: list[float] = []
    pages_per_incident: list[int] = []
    acknowledged: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(config, db_path=Path(tmp) / "bench.db")
        state = AlertStateStore.open(Path(tmp) / "bench.db")
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
                    fired, page = next(
                        (t, a) for t, a in arrivals[seen:] if a["status"] == "firing"
                    )
                    detections.append(fired - onset)
                    await acknowledge(state, page["fingerprint"])
                    acked = time.time()
                    while not any(a["status"] == "acknowledged" for _, a in arrivals[seen:]):
                        await asyncio.sleep(0.01)
                    told = next(t for t, a in arrivals[seen:] if a["status"] == "acknowledged")
                    acknowledged.append(told - acked)
                    await asyncio.sleep(20)  # the outage goes on, past the escalation delay
                    recovered = time.time()
                    await sim.patch(f"/_sim/models/{model}", json={"errors": {}})
                    while not any(a["status"] == "resolved" for _, a in arrivals[seen:]):
                        await asyncio.sleep(0.05)
                    resolved = next(t for t, a in arrivals[seen:] if a["status"] == "resolved")
                    recoveries.append(resolved - recovered)
                    await asyncio.sleep(5)
                    pages_per_incident.append(
                        sum(a["status"] != "acknowledged" for _, a in arrivals[seen:])
                    )
                    print(
                        f"run {i + 1}/{runs}: {model} detected in {detections[-1]:.1f}s, "
                        f"acknowledgement delivered in {acknowledged[-1] * 1000:.0f}ms, "
                        f"recovery seen in {recoveries[-1]:.1f}s, "
                        f"{pages_per_incident[-1]} notifications"
                    )
        finally:
            daemon.stop_event.set()
            await task
            state.close()
            await runner.cleanup()
    return {
        "runs": float(runs),
        "detection_median_s": statistics.median(detections),
        "detection_max_s": max(detections),
        "recovery_median_s": statistics.median(recoveries),
        "notifications_per_incident_max": float(max(pages_per_incident)),
        "ack_to_notice_median_ms": statistics.median(acknowledged) * 1000,
        "ack_to_notice_max_ms": max(acknowledged) * 1000,
        "escalations_after_ack": float(len(phone)),
    }


async def acknowledge(state: AlertStateStore, fingerprint: str) -> None:
    """As ``POST /api/v1/alerts/{fingerprint}/ack`` does; the leader may save the record a
    moment after its page went out."""
    while state.record(fingerprint) is None:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(state.acknowledge, fingerprint, "bench", "", time.time())


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
    ok = (
        figures["detection_median_s"] <= 15
        and figures["notifications_per_incident_max"] <= 2
        and figures["escalations_after_ack"] == 0
    )
    print(
        "goal (detection median <= 15 s, one page + one recovery, no escalation once "
        f"acknowledged): {'met' if ok else 'NOT met'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
