"""A dashboard over a seeded database, served on a real loopback socket from a thread.

Used by the API tests and the schemathesis run: the data is known, so responses can be checked
against it; the server is the real ``WebServer`` (uvicorn, auth middleware, the lot).
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmpulse.alerts.engine import AlertRecord, fingerprint
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.slo import Recorder
from llmpulse.alerts.state import AlertStateStore, state_paths
from llmpulse.config import Config, parse_config
from llmpulse.errors import ErrorClass
from llmpulse.probe.official import Maintenance, OfficialIncident, OfficialStatus
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.rules import INCIDENT, Severity
from llmpulse.store import SQLiteStore
from llmpulse.target import Probe
from llmpulse.web.server import WebServer
from llmpulse.web.view import OfficialSource

SECRET = "sk-ant-api03-secretsecretsecret"
OPENAI = "openai/gpt-4o-mini"
ANTHROPIC = "anthropic/claude-haiku"
GROQ = "groq/llama"
SERVED_OLD, SERVED_NEW = "gpt-4o-mini-2024-07-18", "gpt-4o-mini-2025-01-01"


def make_config(
    web: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    notifiers: list[dict[str, Any]] | None = None,
) -> Config:
    return parse_config(
        {
            "notifiers": notifiers or [],
            "targets": [
                {"name": OPENAI, "provider": "openai", "model": "gpt-4o-mini",
                 "api_key": "${OPENAI_KEY}", "interval": "60s", "retires": "2027-01-15"},
                {"name": ANTHROPIC, "provider": "anthropic", "model": "claude-haiku",
                 "api_key": "${ANTHROPIC_KEY}", "interval": "60s"},
                {"name": GROQ, "provider": "groq", "model": "llama", "api_key": "${GROQ_KEY}"},
            ],
            "web": {"listen": "127.0.0.1:0", **(web or {})},
            "slos": [
                {"name": "anthropic-availability", "match": {"provider": "anthropic"},
                 "sli": "availability", "objective": "99%", "window": "1h"},
                {"name": "responsiveness", "sli": "latency", "threshold": "930ms",
                 "objective": "90%", "window": "2h"},
            ],
        },
        env={"OPENAI_KEY": "sk-openai-key-0123456789", "ANTHROPIC_KEY": SECRET,
             "GROQ_KEY": "gsk_groqkey0123456789", **(env or {})},
    )  # fmt: skip


def official_statuses(now: float) -> dict[str, OfficialStatus]:
    """What the providers' status pages say: Anthropic's announces maintenance, one of them
    under way (its name echoing a key: status pages are outside text too), OpenAI's is quiet."""
    at = lambda ts: datetime.fromtimestamp(ts, UTC)  # noqa: E731
    fetched = at(now - 30)
    return {
        "anthropic": OfficialStatus(
            "anthropic", "maintenance", "Service Under Maintenance", [],
            "https://status.claude.com", fetched,
            maintenances=[
                Maintenance(f"Database upgrade ({SECRET})", "in_progress", at(now - 600),
                            at(now + 3000), "https://stspg.io/m1"),
                Maintenance("Network work", "scheduled", at(now + 86400), None, None),
            ],
        ),
        # Down on ChatGPT only (an incident echoing a key), so the API's targets see none.
        "openai": OfficialStatus(
            "openai", "minor", "Minor Service Outage", [], "https://status.openai.com", fetched,
            components={"Chat Completions": "none", "ChatGPT": "minor"},
            open_incidents=(
                OfficialIncident("i1", f"Login errors ({SECRET})", "minor", at(now - 900),
                                 ("ChatGPT",)),
            ),
        ),
    }  # fmt: skip


def _result(target: str, ts: float, **kw: Any) -> CheckResult:
    provider, model = target.split("/")
    return CheckResult(
        target=target,
        provider=provider,
        model=model,
        check=kw.pop("check", CheckKind.STREAM),
        timestamp=datetime.fromtimestamp(ts, UTC),
        **kw,
    )


# Probe agents by region, in turn; None is a single-agent probe (no agent, no region).
AGENTS: tuple[tuple[str | None, str | None], ...] = (
    ("probe-eu-1", "eu-west"),
    ("probe-us-1", "us-east"),
    (None, None),
)


# Who Anthropic's gateway traffic is for, in turn.
TRAFFIC_OWNERS: tuple[dict[str, Any], ...] = (
    {"key_name": "search-backend", "team": "search", "user": "alice",
     "tags": ["feature=search", "env=prod"]},
    {"key_name": "ads-batch", "team": "ads", "user": "bob", "tags": ["env=prod"]},
    {"key_name": "search-backend", "team": "search", "user": "carol", "tags": []},
)  # fmt: skip
TRAFFIC_COST = 0.004


def seed(db: Path, now: float) -> dict[str, Any]:
    """An hour of OpenAI probes (served model changes halfway) from eu-west, us-east and a
    single agent in turn, Anthropic probed from eu-west and us-east in turn, then seen in
    gateway traffic only (larger prompts than the probes'; keys, teams, users and tags of
    ``TRAFFIC_OWNERS`` in turn, each request costing ``TRAFFIC_COST`` unless failed), failing
    for the last five minutes with an incident firing, and Groq never checked. Returns the
    facts to assert."""
    results = []
    for i in range(60):  # one a minute, oldest first
        ts = now - 3600 + 30 + i * 60
        agent, region = AGENTS[i % 3]
        results.append(
            _result(
                OPENAI, ts, ok=True, latency_ms=900.0 + i, ttft_ms=300.0 + i, tokens_per_s=50.0,
                usage=Usage(input_tokens=10, output_tokens=20), cost_usd=0.001,
                ratelimit=RateLimit(requests_limit=100, requests_remaining=40, utilization=0.6),
                response_model=SERVED_OLD if i < 30 else SERVED_NEW, agent=agent, region=region,
            )
        )  # fmt: skip
    for i in range(20):
        ts = now - 1200 + 30 + i * 60
        failing = i >= 15
        agent, region = AGENTS[i % 2] if i < 10 else (None, None)
        results.append(
            _result(
                ANTHROPIC, ts, ok=not failing,
                error_class=ErrorClass.UNAVAILABLE if failing else None,
                error_message=f"529 overloaded (key {SECRET})" if failing else None,
                http_status=529 if failing else 200,
                latency_ms=500.0 + i, ttft_ms=None if failing else 200.0 + i,
                tokens_per_s=None if failing else 80.0,
                # Context use: probes' 8 tokens, traffic's 20k to 100k, of a 200k window.
                usage=Usage() if failing else Usage(input_tokens=8 if i < 10 else 20000 * (i - 9)),
                context_window=200000,
                source=Source.PROBE if i < 10 else Source.TRAFFIC, agent=agent, region=region,
                cost_usd=TRAFFIC_COST if 10 <= i < 15 else None,
                **(TRAFFIC_OWNERS[i % len(TRAFFIC_OWNERS)] if i >= 10 else {}),
            )
        )  # fmt: skip
    with SQLiteStore(db) as store:
        store.write_results(results)
        store.rollup(now)
    alerts_path, _ = state_paths(db)
    state = AlertStateStore(alerts_path)
    incident = AlertRecord(
        fingerprint=fingerprint(INCIDENT, ANTHROPIC), rule=INCIDENT, target=ANTHROPIC,
        provider="anthropic", severity=Severity.CRITICAL, state=AlertState.FIRING,
        active_since=now - 270, fired_at=now - 240, notified=True, value=5, threshold=3,
        summary="5 consecutive unavailable checks", lead_rule="consecutive_unavailable",
    )  # fmt: skip
    ttft = AlertRecord(
        fingerprint=fingerprint("ttft_p95_high", OPENAI), rule="ttft_p95_high", target=OPENAI,
        provider="openai", severity=Severity.WARNING, state=AlertState.RESOLVED,
        active_since=now - 1800, fired_at=now - 1790, resolved_at=now - 1500, notified=True,
        summary="TTFT p95 3.4s > 3s",
    )  # fmt: skip
    state.save_records([incident, ttft], now)
    # The SLO minutes the alert leader would have counted from these results.
    recorder = Recorder(make_config().slos, [OPENAI, ANTHROPIC, GROQ])
    for r in results:
        recorder.add(r, now)
    state.save_slo_minutes(recorder.take_dirty())
    for record, status, at in (
        (ttft, AlertState.FIRING, now - 1790),
        (ttft, AlertState.RESOLVED, now - 1500),
        (incident, AlertState.FIRING, now - 240),
    ):
        state.add_event(
            Notification(
                status=status, severity=record.severity,
                rule=record.lead_rule or record.rule, target=record.target,
                provider=record.provider, summary=record.summary, value=record.value,
                threshold=record.threshold,
                starts_at=datetime.fromtimestamp(record.fired_at or at, UTC),
                ends_at=datetime.fromtimestamp(at, UTC) if status is AlertState.RESOLVED else None,
                fingerprint=record.fingerprint,
            ),
            at,
        )  # fmt: skip
    state.close()
    return {"results": results, "incident": incident, "ttft": ttft}


# A custom probe's wrong answer: outside text that is markup and holds a key.
HOSTILE_ANSWER = f"<img src=x onerror=alert(1)> Lyon ({SECRET})"


def seed_probes(db: Path, now: float) -> Config:
    """OpenAI with a custom probe, ``capital`` (inference): four stream checks, then five
    answers of which the third and fourth failed their expectation (``assertion``, the answer
    ``HOSTILE_ANSWER``), the last right. Returns the config naming the probe."""
    config = make_config()
    capital = Probe("capital", CheckKind.INFERENCE)
    targets = [dataclasses.replace(t, probes=(capital,)) if t.name == OPENAI else t
               for t in config.targets]  # fmt: skip
    stream = [
        _result(OPENAI, now - 900 + i * 60, ok=True, latency_ms=300.0, ttft_ms=100.0)
        for i in range(4)
    ]
    answers = [
        _result(
            OPENAI, now - 290 + i * 60, check="capital", kind=CheckKind.INFERENCE,
            ok=i not in (2, 3), error_class=ErrorClass.ASSERTION if i in (2, 3) else None,
            error_message="answer does not contain 'Paris'" if i in (2, 3) else None,
            http_status=200, latency_ms=400.0,
            answer_excerpt=HOSTILE_ANSWER if i in (2, 3) else "Paris",
        )
        for i in range(5)
    ]  # fmt: skip
    with SQLiteStore(db) as store:
        store.write_results([*stream, *answers])
    return dataclasses.replace(config, targets=targets)


class ServedWeb:
    """``WebServer`` running in a thread with its own event loop."""

    def __init__(
        self,
        config: Config,
        db: Path,
        status_only: bool = False,
        official: OfficialSource | None = None,
    ) -> None:
        self.server = WebServer(config, db, status_only=status_only, official=official)
        self.url = self.server.urls[0].removesuffix("status").rstrip("/")
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.server.serve(self._stop))

    def __enter__(self) -> ServedWeb:
        self._thread.start()  # the socket already listens: requests queue until it serves
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self._loop.close()
