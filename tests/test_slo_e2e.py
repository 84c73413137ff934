"""An SLO end to end: the daemon probes the simulator, an injected outage burns the error budget,
the burn-rate alert pages once and resolves once (a real webhook receiver), and /api/v1/slos
agrees with the simulator's ground truth of what it failed.

The alert windows are a minute, the shortest an SLO counts: the alert clears at the first minute
boundary after the outage (the new minute is clean), so the test takes up to about a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses

import httpx

from conftest import patch, sim_model
from llmpulse.monitor import alerting as alerting_module
from llmpulse.rules import SLO_BURN_RULE
from test_daemon import make_config, served, wait_for
from webserve import ServedWeb

SLO = "claude-availability"


async def test_an_outage_burns_the_budget_pages_once_and_clears(
    sim, receiver, tmp_path, monkeypatch
):
    monkeypatch.setattr(alerting_module, "SLO_EVERY_S", 1.0)  # judged every second, not 10
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    slos = [
        {
            "name": SLO,
            "match": {"target": "claude", "check": ["inference", "stream"]},
            "sli": "availability",
            "objective": "99%",
            "window": "1h",
            "alerts": [{"severity": "critical", "burn_rate": 5, "long": "1m", "short": "1m"}],
        }
    ]
    config = make_config(
        sim, receiver, [{"provider": "anthropic", "model": model, "name": "claude"}], slos=slos
    )
    db = tmp_path / "r.db"
    async with served(config, db) as (_, web):
        assert web is not None
        api = web.urls[0].rstrip("/")
        await asyncio.sleep(2)
        patch(sim, model, errors={"529": 1.0})
        await wait_for(lambda: receiver.events(SLO_BURN_RULE), timeout=30)
        async with httpx.AsyncClient(base_url=api, timeout=10) as client:
            # The API reads the minutes the leader saves every few seconds.
            for _ in range(100):
                [during] = (await client.get("/api/v1/slos")).json()
                if (during["burn_rates"]["1m"] or 0) >= 5:
                    break
                await asyncio.sleep(0.1)
        assert during["alert_state"] == "firing" and during["alert_severity"] == "critical"
        assert during["budget_remaining"] < 0 and during["burn_rates"]["1m"] >= 5
        await asyncio.sleep(3)  # the outage goes on: still one page
        patch(sim, model, errors={})
        await wait_for(lambda: len(receiver.events(SLO_BURN_RULE)) == 2, timeout=100)
        await asyncio.sleep(1)
    assert receiver.events(SLO_BURN_RULE) == [
        ("firing", SLO_BURN_RULE, SLO),
        ("resolved", SLO_BURN_RULE, SLO),
    ]
    firing = next(r for r in receiver.received if r["rule"] == SLO_BURN_RULE)
    assert firing["severity"] == "critical" and firing["provider"] == "anthropic"
    assert firing["threshold"] == 5 and firing["value"] >= 5

    # The daemon stopped after writing and counting every check: the simulator's log of what
    # it answered is the ground truth of the SLO's events and failures.
    log = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    answered = [r for r in log if r["model"] == model]
    failed = [r for r in answered if r["status"] == 529]
    assert failed and len(failed) < len(answered)
    with ServedWeb(config, db) as served_web, httpx.Client(base_url=served_web.url) as client:
        [slo] = client.get("/api/v1/slos").json()  # as `llmpulse web` serves it
        detail = client.get(f"/api/v1/slos/{SLO}").json()
    assert (slo["events"], slo["events"] - slo["good"]) == (len(answered), len(failed))
    assert slo["sli"] == (len(answered) - len(failed)) / len(answered)
    allowed = 0.01 * len(answered)
    assert abs(slo["budget_remaining"] - (1 - len(failed) / allowed)) < 1e-9
    assert abs(slo["budget_remaining_events"] - (allowed - len(failed))) < 1e-9
    assert slo["exact"] is True and slo["alert_state"] == "inactive"
    # The target's own outage alert is an incident that spent the budget: every failure
    # happened while it was open, or just before it was confirmed.
    [incident] = [i for i in detail["incidents"] if i["target"] == "claude"]
    assert 0 < incident["bad_events"] <= len(failed)
    assert detail["burn_down"][-1] == slo["budget_remaining"]


async def test_a_restarted_daemon_counts_every_check_once(sim, receiver, tmp_path):
    """Run without the SLO, then twice with it, on the same SQLite file: the first run with it
    counts what the first stored (from the raw results, or its replay), the next resumes from
    the saved minutes and recounts those its replay covers; the counts equal what the
    simulator answered, none twice."""
    model = sim_model(sim, ttft="10ms", output_tokens=3, tokens_per_s=1000, errors={"529": 0.3})
    slos = [{"name": "s", "match": {"check": ["inference", "stream"]}, "sli": "availability",
             "objective": "99%", "window": "1h"}]  # fmt: skip
    config = make_config(
        sim, receiver, [{"provider": "anthropic", "model": model, "name": "c"}], slos=slos
    )
    db = tmp_path / "r.db"
    for run in (dataclasses.replace(config, slos=[]), config, config):
        async with served(run, db):
            await asyncio.sleep(3)
    log = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    answered = [r for r in log if r["model"] == model]
    failed = [r for r in answered if r["status"] == 529]
    assert failed and len(failed) < len(answered)
    with ServedWeb(config, db) as served_web, httpx.Client(base_url=served_web.url) as client:
        [slo] = client.get("/api/v1/slos").json()
    assert (slo["events"], slo["events"] - slo["good"]) == (len(answered), len(failed))
