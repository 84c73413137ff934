"""Reconciliation with the provider's bill: OpenAI's and Anthropic's admin reports read from the
simulator over loopback, compared with what a real SQLite store measured, stored in the alert
state (SQLite and PostgreSQL) and judged as billing_drift by the leader's engine."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from conftest import serving
from llmpulse.alerts.billing import BillingDay, Measured, base_model, reconcile
from llmpulse.alerts.engine import alert_scope, fingerprint
from llmpulse.alerts.inventory import rules_in_effect
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.alerts.status import says_health
from llmpulse.config import Config, ConfigError, parse_config
from llmpulse.config.billing import BillingSource
from llmpulse.errors import ErrorClass
from llmpulse.monitor.alerting import Alerting
from llmpulse.monitor.billing import Reconciler
from llmpulse.monitor.daemon import Daemon
from llmpulse.providers.billing import (
    MAX_MODELS,
    DayBill,
    ModelFigures,
    ReportError,
    read_bill,
)
from llmpulse.result import CheckKind, CheckResult, Usage
from llmpulse.rules import BILLING_DRIFT_RULE
from llmpulse.secrets import Redactor
from llmpulse.sim.scenario import parse_scenario
from llmpulse.sim.server import SimServer
from llmpulse.store import SQLiteStore
from webserve import ServedWeb

OPENAI_ADMIN = "sk-admin-Zr4vQ8nL2pT6wX1yB9cD3fG7hJ5kM0sA"
ANTHROPIC_ADMIN = "sk-ant-admin01-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz"
ENV = {
    "OPENAI_API_KEY": "sk-o",
    "ANTHROPIC_API_KEY": "sk-a",
    "OPENAI_ADMIN_KEY": OPENAI_ADMIN,
    "ANTHROPIC_ADMIN_KEY": ANTHROPIC_ADMIN,
}
DAYS = [date(2026, 11, 5), date(2026, 11, 6), date(2026, 11, 7)]
NOW = datetime(2026, 11, 8, 3, tzinfo=UTC).timestamp()  # Nov 7 complete and settled
DAY0 = int(datetime(2026, 11, 5, tzinfo=UTC).timestamp())
OPENAI_MODEL, OPENAI_BILLED = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
ANTHROPIC_MODEL, ANTHROPIC_BILLED = "claude-haiku-4-5", "claude-haiku-4-5-20251001"


def bill(cost: float, tokens: tuple[int, int] = (1000, 500), requests: int = 10) -> dict:
    return {"cost_usd": cost, "input_tokens": tokens[0], "output_tokens": tokens[1],
            "requests": requests}  # fmt: skip


def scenario(openai_costs: Sequence[float], anthropic_costs: Sequence[float], **extra: Any):
    return parse_scenario(
        {
            "billing": {
                "openai": {
                    "admin_keys": [OPENAI_ADMIN],
                    "page_size": 1,  # a page per day: pagination is followed
                    "days": {
                        d: {OPENAI_BILLED: bill(c)} for d, c in zip(DAYS, openai_costs, strict=True)
                    },
                    **extra,
                },
                "anthropic": {
                    "admin_keys": [ANTHROPIC_ADMIN],
                    "page_size": 2,
                    "days": {
                        d: {ANTHROPIC_BILLED: bill(c)}
                        for d, c in zip(DAYS, anthropic_costs, strict=True)
                    },
                },
            }
        }
    )


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(scenario([4.0, 5.0, 6.0], [2.0, 2.0, 2.0])) as server:
        yield server


def config(sim: SimServer, **reconciliation: Any) -> Config:
    settings = {"days": 3, "min_usd": 0.5, "settle": "1h", **reconciliation}
    return parse_config(
        {
            "targets": [
                {"provider": "openai", "model": OPENAI_MODEL, "api_key": "os.environ/OPENAI_API_KEY"},
                {"provider": "anthropic", "model": ANTHROPIC_MODEL,
                 "api_key": "os.environ/ANTHROPIC_API_KEY"},
            ],
            "providers": {
                "openai": {
                    "admin_key": "os.environ/OPENAI_ADMIN_KEY",
                    "reconciliation": {"base_url": f"{sim.url}/openai", **settings},
                },
                "anthropic": {
                    "admin_key": "${ANTHROPIC_ADMIN_KEY}",
                    "reconciliation": {"base_url": f"{sim.url}/anthropic", **settings},
                },
            },
        },
        env=ENV,
    )  # fmt: skip


def spent(day: date, provider: str, model: str, usd: float, source: str = "traffic") -> CheckResult:
    return CheckResult(
        target=f"{provider}/{model}",
        provider=provider,
        model=model,
        check=CheckKind.INFERENCE,
        timestamp=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
        ok=True,
        latency_ms=100.0,
        usage=Usage(500, 250),
        cost_usd=usd,
        source=source,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "results.db") as s:
        # Measured: OpenAI $4, $5, $3 (the bill says $6 on the last day); Anthropic $2 a day.
        for day, usd in zip(DAYS, [4.0, 5.0, 3.0], strict=True):
            s.write_results(
                [spent(day, "openai", OPENAI_MODEL, usd / 2), spent(day, "openai", OPENAI_MODEL,
                 usd / 2, "probe")]
            )  # fmt: skip
        for day in DAYS:
            s.write_results([spent(day, "anthropic", ANTHROPIC_MODEL, 2.0)])
        yield s


class Leader:
    """The leader's engine and the reconciliation job over real stores."""

    def __init__(self, cfg: Config, store: SQLiteStore, state: AlertStateStore) -> None:
        self.notices: list[Notification] = []

        def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
            self.notices.append(n)

        self.state = state
        self.alerting = Alerting(cfg, store, state, notify, lambda p: None, notifiers={})
        self.job = Reconciler(cfg.billing, store, state, cfg.targets, cfg.redactor)

    async def run(self, now: float = NOW) -> None:
        async with aiohttp.ClientSession() as session:
            verdicts = await self.job.run(session, now)
        self.alerting.observe_billing(verdicts, now)
        self.alerting.tick(now)

    def record(self, provider: str):
        return self.alerting.engine.records.get(fingerprint(BILLING_DRIFT_RULE, provider))


def patch_bill(sim: SimServer, provider: str, **change: Any) -> None:
    """Change a provider's bill through the simulator's control API."""
    body = json.dumps(change, default=str).encode()
    request = urllib.request.Request(
        f"{sim.url}/_sim/billing/{provider}", body, method="PATCH",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


# --- the reports as read ------------------------------------------------------------------


def source(sim: SimServer, provider: str, key: str) -> BillingSource:
    return BillingSource(provider, key, f"{sim.url}/{provider}")


async def test_openai_costs_and_usage_read_page_by_page(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        bills = await read_bill(
            session, source(sim, "openai", OPENAI_ADMIN), DAYS[0], DAYS[-1] + timedelta(1),
            Redactor(),
        )  # fmt: skip
    assert [bills[d].total_usd for d in DAYS] == pytest.approx([4.0, 5.0, 6.0])
    figures = bills[DAYS[1]].models[OPENAI_BILLED]
    assert figures.cost_usd == pytest.approx(5.0)
    assert (figures.input_tokens, figures.output_tokens, figures.requests) == (1000, 500, 10)
    log = sim.state.billing.log
    costs = [q for path, q in log if path.endswith("/organization/costs")]
    assert len(costs) == 3  # one day per page, next_page followed
    assert costs[0]["group_by"] == ["line_item"] and costs[0]["bucket_width"] == ["1d"]
    assert [q.get("page") for q in costs] == [None, ["page_1"], ["page_2"]]
    usage = [q for path, q in log if path.endswith("/usage/completions")]
    assert usage and usage[0]["group_by"] == ["model"]


async def test_anthropic_amounts_are_cents(sim: SimServer) -> None:
    async with aiohttp.ClientSession() as session:
        bills = await read_bill(
            session, source(sim, "anthropic", ANTHROPIC_ADMIN), DAYS[0], DAYS[-1] + timedelta(1),
            Redactor(),
        )  # fmt: skip
    assert [bills[d].total_usd for d in DAYS] == pytest.approx([2.0, 2.0, 2.0])
    figures = bills[DAYS[2]].models[ANTHROPIC_BILLED]
    assert (figures.input_tokens, figures.output_tokens, figures.requests) == (1000, 500, None)
    paths = [path for path, _ in sim.state.billing.log]
    assert paths.count("/anthropic/v1/organizations/cost_report") == 2  # 2 days, then 1


@pytest.mark.parametrize(
    ("change", "error_class"),
    [
        ({}, ErrorClass.AUTH),  # the wrong key
        ({"fault": "error_500"}, ErrorClass.SERVER_ERROR),
        ({"fault": "rate_limited"}, ErrorClass.RATE_LIMITED),
        ({"fault": "garbage_body"}, ErrorClass.PROTOCOL),
        ({"fault": "huge_body"}, ErrorClass.PROTOCOL),
    ],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_provider_errors_are_classified(
    sim: SimServer, provider: str, change: dict, error_class: ErrorClass
) -> None:
    key = OPENAI_ADMIN if provider == "openai" else ANTHROPIC_ADMIN
    if change:
        patch_bill(sim, provider, **change)
    else:
        key = "sk-admin-notTheRightOne0000000000000000"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ReportError) as caught:
            await read_bill(
                session, source(sim, provider, key), DAYS[0], DAYS[-1] + timedelta(1),
                Redactor([key]),
            )  # fmt: skip
    assert caught.value.error_class is error_class
    assert key not in str(caught.value)


# --- the leader's job -----------------------------------------------------------------------


async def test_a_drifting_day_pages_once_and_matching_ones_do_not(
    sim: SimServer, store: SQLiteStore, db_location: str | Path
) -> None:
    state = AlertStateStore(db_location)
    leader = Leader(config(sim), store, state)
    await leader.run()
    openai = leader.record("openai")
    assert openai is not None and openai.state is AlertState.FIRING
    assert openai.value == pytest.approx(0.5)  # measured $3 of a $6 bill
    assert openai.threshold == pytest.approx(0.1)
    assert "2026-11-07" in openai.summary and "gpt-4o-mini $3.00 less measured" in openai.summary
    anthropic = leader.record("anthropic")
    assert anthropic is not None and anthropic.state is not AlertState.FIRING
    pages = [n for n in leader.notices if n.rule == BILLING_DRIFT_RULE]
    assert [(n.target, str(n.status)) for n in pages] == [("openai", "firing")]
    # Every day stored, per model, on both backends; the next run finds nothing new to page.
    days = state.billing_days(DAYS[0])
    assert [(d.provider, d.day, d.status) for d in days] == [
        (p, d, "ok") for d in DAYS for p in ("anthropic", "openai")
    ]
    last = next(d for d in days if d.provider == "openai" and d.day == DAYS[2])
    assert last.reconciliation is not None and last.reconciliation.drift
    (line,) = last.reconciliation.models
    assert (line.model, line.names) == ("gpt-4o-mini", (OPENAI_BILLED,))
    assert (line.reported_usd, line.measured_usd) == pytest.approx((6.0, 3.0))
    assert (line.reported_input_tokens, line.measured_input_tokens) == (1000, 1000)
    await leader.run(NOW + 3600)
    assert len([n for n in leader.notices if n.rule == BILLING_DRIFT_RULE]) == 1
    # The next day matches: the alert resolves.
    patch_bill(sim, "openai", days={"2026-11-08": {OPENAI_BILLED: bill(1.0)}})
    store.write_results([spent(date(2026, 11, 8), "openai", OPENAI_MODEL, 1.0)])
    await leader.run(NOW + 86400)
    assert leader.record("openai").state is AlertState.RESOLVED
    state.close()


def test_billing_drift_says_nothing_of_health() -> None:
    assert not says_health(BILLING_DRIFT_RULE)
    assert alert_scope(BILLING_DRIFT_RULE) == "provider"


async def test_provider_errors_are_stored_retried_later_and_never_page(
    sim: SimServer, store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    patch_bill(sim, "openai", fault="error_500")
    state = AlertStateStore(tmp_path / "state.db")
    leader = Leader(config(sim, retry="2m"), store, state)
    with caplog.at_level(logging.WARNING):
        await leader.run()
    errors = [d for d in state.billing_days(DAYS[0]) if d.provider == "openai"]
    assert [d.status for d in errors] == ["server_error"] * 3
    assert "HTTP 500" in (errors[0].error or "")
    assert OPENAI_ADMIN not in caplog.text and "retrying in 120 s" in caplog.text
    assert leader.record("openai") is None  # no verdict, no alert
    requests = len(sim.state.billing.log)
    await leader.run(NOW + 60)  # within the backoff: not asked again
    assert len(sim.state.billing.log) == requests
    patch_bill(sim, "openai", fault=None)
    await leader.run(NOW + 121)
    assert {d.status for d in state.billing_days(DAYS[0])} == {"ok"}
    assert leader.record("openai").state is AlertState.FIRING


async def test_days_missed_are_caught_up_and_unsettled_ones_wait(
    sim: SimServer, store: SQLiteStore, tmp_path: Path
) -> None:
    state = AlertStateStore(tmp_path / "state.db")
    leader = Leader(config(sim, settle="6h"), store, state)
    await leader.run()  # 03:00 on Nov 8: Nov 7 not settled before 06:00
    since = date(2026, 11, 1)
    assert {d.day for d in state.billing_days(since)} == {date(2026, 11, 4), *DAYS[:2]}
    await leader.run(NOW + 4 * 3600)
    assert max(d.day for d in state.billing_days(since)) == DAYS[2]
    assert len(state.billing_days(since)) == 2 * 4  # each day once per provider


# --- config and names ---------------------------------------------------------------------


def test_model_names_match_across_snapshots() -> None:
    assert base_model("gpt-4o-2024-08-06") == base_model("gpt-4o") == "gpt-4o"
    assert base_model("claude-sonnet-4-20250514") == base_model("claude-sonnet-4-0")
    assert base_model("claude-3-7-sonnet-latest") == base_model("claude-3-7-sonnet-20250219")
    assert base_model("openai/GPT-4o-mini") == "gpt-4o-mini"
    assert base_model("gpt-4o") != base_model("gpt-4o-mini")


@pytest.mark.parametrize(
    ("provider", "settings", "message"),
    [
        ("groq", {"admin_key": "os.environ/OPENAI_ADMIN_KEY"}, "providers.groq.admin_key"),
        ("openai", {"admin_key": "sk-admin-in-the-file"}, "must reference an environment"),
        ("openai", {"admin_key": "os.environ/UNSET_ADMIN"}, "UNSET_ADMIN is not set"),
        ("openai", {"admin_key": "os.environ/OPENAI_ADMIN_KEY",
                    "reconciliation": {"base_url": "http://10.1.2.3:8080"}}, "https://"),
        ("openai", {"admin_key": "os.environ/OPENAI_ADMIN_KEY",
                    "reconciliation": {"threshold": "150%"}}, "threshold"),
    ],
)  # fmt: skip
def test_config_errors_name_the_key(provider: str, settings: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "targets": [{"provider": "openai", "api_key": "os.environ/OPENAI_API_KEY"}],
                "providers": {provider: settings},
            },
            env=ENV,
        )
    assert message in str(caught.value)
    assert "sk-admin-in-the-file" not in str(caught.value)


def test_admin_keys_are_redacted(sim: SimServer) -> None:
    cfg = config(sim, threshold="5%")
    assert [s.threshold for s in cfg.billing] == [0.05, 0.05]
    assert OPENAI_ADMIN not in repr(cfg.billing)
    text = cfg.redactor(f"refused {OPENAI_ADMIN} and {ANTHROPIC_ADMIN}")
    assert OPENAI_ADMIN not in text and ANTHROPIC_ADMIN not in text


# --- the API ------------------------------------------------------------------------------


def test_the_api_shows_each_day_billed_measured_and_why_not_read(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    SQLiteStore(db).close()
    today = datetime.now(UTC).date()
    drifted, failed = today - timedelta(days=1), today - timedelta(days=2)
    billed = DayBill(drifted, 6.0, {OPENAI_BILLED: ModelFigures(6.0, 1000, 500, 10)})
    seen = Measured(3.0, 10, 1000, 500)
    r = reconcile("openai", billed, seen, {OPENAI_MODEL: seen}, threshold=0.1, min_usd=0.5)
    state = AlertStateStore.open(db)
    state.save_billing_day(BillingDay("openai", drifted, NOW, "ok", r))
    # An error stored by a release that did not redact: the API redacts again.
    error = f"HTTP 401: invalid key {OPENAI_ADMIN}"
    state.save_billing_day(BillingDay("anthropic", failed, NOW, "auth", error=error))
    state.close()
    cfg = config_with_admin_keys()
    with ServedWeb(cfg, db) as web, urllib.request.urlopen(f"{web.url}/api/v1/billing") as answer:
        body = json.loads(answer.read())
    by = {p["provider"]: p["days"] for p in body["providers"]}
    (day,) = by["openai"]
    assert (day["day"], day["status"], day["drift"]) == (drifted.isoformat(), "ok", True)
    assert (day["reported_usd"], day["measured_usd"], day["difference_usd"]) == (6.0, 3.0, -3.0)
    assert day["difference"] == pytest.approx(-0.5)
    (model,) = day["models"]
    assert (model["model"], model["names"], model["difference_usd"]) == (
        "gpt-4o-mini", [OPENAI_BILLED], -3.0,
    )  # fmt: skip
    (failing,) = by["anthropic"]
    assert (failing["status"], failing["reported_usd"], failing["models"]) == ("auth", None, [])
    assert OPENAI_ADMIN not in failing["error"] and "HTTP 401" in failing["error"]


def config_with_admin_keys() -> Config:
    """A config whose redactor knows the admin keys, as a web server's does."""
    return parse_config(
        {
            "targets": [{"provider": "openai", "api_key": "os.environ/OPENAI_API_KEY"}],
            "providers": {"openai": {"admin_key": "os.environ/OPENAI_ADMIN_KEY"}},
            "web": {"listen": "127.0.0.1:0"},
        },
        env=ENV,
    )


# --- the daemon -----------------------------------------------------------------------------


async def test_the_daemon_reconciles_as_soon_as_it_leads_and_pages(
    receiver, tmp_path: Path
) -> None:
    """``llmpulse run`` as composed: the leader reads yesterday's bill from the simulator, finds
    nothing measured against $6, and the webhook gets one billing_drift page."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    billed = {"admin_keys": [OPENAI_ADMIN], "days": {yesterday: {OPENAI_BILLED: bill(6.0)}}}
    with SimServer(parse_scenario({"billing": {"openai": billed}})) as server:
        cfg = parse_config(
            {
                "monitor": {"status_pages": False},
                "targets": [{"provider": "openai", "model": OPENAI_MODEL, "interval": "10s",
                             "api_key": "os.environ/OPENAI_API_KEY",
                             "base_url": server.openai_base}],
                "providers": {"openai": {
                    "admin_key": "os.environ/OPENAI_ADMIN_KEY",
                    "reconciliation": {"base_url": f"{server.url}/openai", "days": 2,
                                       "settle": "0s"},
                }},
                "notifiers": [{"type": "webhook", "url": receiver.url}],
            },
            env=ENV,
        )  # fmt: skip
        daemon = Daemon(cfg, db_path=tmp_path / "r.db")
        task = asyncio.ensure_future(daemon.run())
        try:
            deadline = time.monotonic() + 20
            while not receiver.events(BILLING_DRIFT_RULE):
                assert time.monotonic() < deadline, "no billing_drift page"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1)
        finally:
            daemon.stop_event.set()
            await asyncio.wait_for(task, 30)
    assert receiver.events(BILLING_DRIFT_RULE) == [("firing", BILLING_DRIFT_RULE, "openai")]
    (page,) = [r for r in receiver.received if r["rule"] == BILLING_DRIFT_RULE]
    assert "billed $6.00" in page["summary"] and OPENAI_ADMIN not in json.dumps(receiver.received)
    state = AlertStateStore.open(tmp_path / "r.db")
    (day,) = [d for d in state.billing_days(yesterday) if d.day == yesterday]
    assert day.ok and day.reconciliation is not None and day.reconciliation.drift
    state.close()


async def test_names_from_a_report_are_outside_text(sim: SimServer) -> None:
    """A model name or line item is the provider's text: redacted, on one line, bounded, and
    no more than MAX_MODELS of them a day."""
    many = {f"model-{i}": bill(0.01) for i in range(MAX_MODELS + 50)}
    hostile = f"gpt-4o {OPENAI_ADMIN}\nsecond line " + "x" * 500
    patch_bill(sim, "openai", days={"2026-11-05": {**many, hostile: bill(1.0)}})
    async with aiohttp.ClientSession() as session:
        bills = await read_bill(
            session, source(sim, "openai", OPENAI_ADMIN), DAYS[0], DAYS[0] + timedelta(1),
            Redactor([OPENAI_ADMIN]),
        )  # fmt: skip
    day = bills[DAYS[0]]
    assert len(day.models) == MAX_MODELS + 1  # the rest summed under OTHER
    assert day.total_usd == pytest.approx(1.0 + 0.01 * (MAX_MODELS + 50))
    assert sum(m.cost_usd for m in day.models.values()) == pytest.approx(day.total_usd)
    for name in day.models:
        assert OPENAI_ADMIN not in name and "\n" not in name and len(name) <= 120


def test_days_older_than_the_store_keeps_are_not_compared(
    store: SQLiteStore, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "targets": [{"provider": "openai", "api_key": "os.environ/OPENAI_API_KEY"}],
            "providers": {"openai": {"admin_key": "os.environ/OPENAI_ADMIN_KEY"}},
        },
        env=ENV,
    )
    state = AlertStateStore(tmp_path / "state.db")
    job = Reconciler(cfg.billing, store, state, cfg.targets, cfg.redactor, retention_s=4 * 86400)
    (source_,) = cfg.billing
    # 03:00 on Nov 8: with the default 6 h settle, Nov 6 is the last day due; raw results kept
    # 4 days reach back to 03:00 on Nov 4, so Nov 4 is incomplete and left alone.
    assert job.due(source_, NOW, set()) == [date(2026, 11, 5), date(2026, 11, 6)]
    assert job.due(source_, NOW, {date(2026, 11, 5)}) == [date(2026, 11, 6)]
    state.close()


@pytest.mark.parametrize(
    "page",
    [
        {"data": [{"start_time": 1e300, "results": []}], "has_more": False},
        {"data": [{"start_time": "x", "results": []}], "has_more": False},
        {"data": [{"start_time": DAY0, "results": [{"amount": {"value": "lots"}}]}]},
        {"data": [{"start_time": DAY0, "results": [{"amount": {"value": 1, "currency": "eur"}}]}]},
        {"data": [{"start_time": DAY0, "results": "none"}]},
        {"data": [7]},
        {"data": [], "has_more": True, "next_page": {"a": 1}},
        {"error": "no data"},
        [1, 2, 3],
    ],
)
async def test_answers_of_the_wrong_shape_are_protocol_errors(page: Any) -> None:
    """Valid JSON, wrong shape: a classified error, never an exception of another kind."""

    async def answer(request: web.Request) -> web.Response:
        return web.json_response(page)

    app = web.Application()
    app.router.add_get("/v1/organization/costs", answer)
    async with serving(app) as base, aiohttp.ClientSession() as session:
        with pytest.raises(ReportError) as caught:
            await read_bill(
                session, BillingSource("openai", OPENAI_ADMIN, base), DAYS[0], DAYS[1], Redactor()
            )
    assert caught.value.error_class is ErrorClass.PROTOCOL


def test_check_config_lists_the_reconciliation(sim: SimServer) -> None:
    rows = [r for r in rules_in_effect(config(sim)) if r.rule == BILLING_DRIFT_RULE]
    assert [(r.subject, r.threshold, r.threshold_value) for r in rows] == [
        ("anthropic", "10% and $0.5", 0.1), ("openai", "10% and $0.5", 0.1),
    ]  # fmt: skip
    assert "last 3 UTC days" in rows[0].detail and "1h after it ends" in rows[0].detail
