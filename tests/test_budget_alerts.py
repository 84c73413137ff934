"""Spend alerts and forecasts per gateway key and team (``alerts.budgets``): the alert leader
judges real stored traffic in compressed time (an injected clock, hourly evaluations over a
month of results in real SQLite), ``Store.costs`` in SQLite and PostgreSQL, routes, silences and
acknowledgement, run-time keys' budgets, ``check-config``'s inventory, ``notify test --route``,
``GET /api/v1/budgets`` and ``llmpulse run``'s leader paging through a webhook."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from conftest import sim_model
from llmpulse.alerts import budgets
from llmpulse.alerts.engine import ALL, alert_scope
from llmpulse.alerts.inventory import rules_in_effect
from llmpulse.alerts.model import Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.alerts.status import says_health
from llmpulse.alerts.testing import route_examples
from llmpulse.cli import main
from llmpulse.config import Config, parse_config
from llmpulse.config.keys import Budget, Period, key_digest
from llmpulse.monitor.alerting import Alerting
from llmpulse.result import CheckKind, CheckResult, Source, Usage
from llmpulse.rules import BUDGET_EXHAUSTED, BUDGET_RULES, BUDGET_WARNING, SPEND_FORECAST
from llmpulse.store import SQLiteStore, open_store
from llmpulse.store.keys import StoredKey
from webserve import ServedWeb

HOUR, DAY = 3600.0, 86400.0
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
ENV = {
    "OPENAI_API_KEY": "sk-upstream-0123456789",
    "ALICE": "sk-alice-0123456789abcdef",
    "HOOK": "https://hooks.slack.com/services/x",
}
NOTIFIERS = [
    {"type": "slack", "name": "pager", "webhook_url": "os.environ/HOOK"},
    {"type": "slack", "name": "chat", "webhook_url": "os.environ/HOOK"},
]


def make_config(extra: dict[str, Any] | None = None, **gateway: Any) -> Config:
    return parse_config(
        {
            "model_list": [
                {"model_name": "m",
                 "litellm_params": {"model": "openai/m", "api_key": "os.environ/OPENAI_API_KEY"}}
            ],
            "gateway": {
                "keys": [
                    {"name": "alice", "key": "os.environ/ALICE", "team": "ml",
                     "budget": {"max_usd": 100, "period": "1mo"}},
                    {"name": "bob", "team": "ml"},  # a run-time key's policy, no budget
                ],
                **gateway,
            },
            "teams": [{"name": "ml", "budget": {"max_usd": 50, "period": "7d"}},
                      {"name": "ops"}],
            "web": {"listen": "127.0.0.1:0"},
            # A repeat of a firing alert is every alert's (default 4 h): here one notice per
            # episode and state, so the month reads as a list of events.
            "alerting": {"repeat_interval": "60d"},
            **(extra or {}),
        },
        env=ENV,
    )  # fmt: skip


def spent(ts: float, usd: float, key: str = "alice", team: str | None = "ml") -> CheckResult:
    return CheckResult(
        target="m/openai/m", provider="openai", model="m", check=CheckKind.INFERENCE,
        timestamp=datetime.fromtimestamp(ts, UTC), ok=True, latency_ms=100.0,
        usage=Usage(10, 10), cost_usd=usd, source=Source.TRAFFIC, key_name=key, team=team,
    )  # fmt: skip


def every_3h(start: float, end: float, usd_per_day: float, **owner: Any) -> list[CheckResult]:
    """Steady spend: one result in the middle of every 3 hours (a binary-exact eighth of a
    day's spend, so sums land exactly on the budgets' thresholds)."""
    n = int((end - start) // (3 * HOUR))
    return [spent(start + (i + 0.5) * 3 * HOUR, usd_per_day / 8, **owner) for i in range(n)]


class Leader:
    """The alert leader's budget evaluation driven by an injected clock, every notice kept
    with the clock's time and its receivers."""

    def __init__(
        self, tmp_path: Path, store: SQLiteStore, config: Config, state: Path | None = None
    ) -> None:
        self.now = 0.0
        self.notices: list[tuple[float, Notification, tuple[str, ...]]] = []
        self.state = AlertStateStore.open(state or tmp_path / "state.db")

        def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
            self.notices.append((self.now, n, tuple(receivers)))

        names = {n.name: None for n in config.notifiers}
        self.alerting = Alerting(config, store, self.state, notify, lambda p: None, notifiers=names)

    def at(self, now: float) -> None:
        self.now = now
        self.alerting.load_silences(now)
        self.alerting.observe_budgets(self.alerting.budget_spend(now), now)
        self.state.save_records(self.alerting.tick(now), now)  # as the daemon's ticker does

    def run(self, start: float, end: float, step: float = HOUR) -> None:
        t = start
        while t <= end:
            self.at(t)
            t += step

    def pages(self, subject: str) -> list[tuple[str, str, str, str]]:
        """(rule, firing|resolved, severity, when) of ``subject``'s notices."""
        return [
            (n.rule, str(n.status), str(n.severity),
             datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M"))
            for t, n, _ in self.notices
            if n.target == subject
        ]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path):
    with SQLiteStore(tmp_path / "r.db") as s:
        yield s


def test_a_month_of_a_key_forecast_warning_exhaustion_and_the_new_month(
    tmp_path: Path, store: SQLiteStore
) -> None:
    # alice: $100 per calendar month. $2/day for 10 days, then $10/day until the 25th.
    store.write_results(
        every_3h(NOV, NOV + 10 * DAY, 2.0, team=None)
        + every_3h(NOV + 10 * DAY, NOV + 24 * DAY, 10.0, team=None)
    )
    leader = Leader(tmp_path, store, make_config())
    leader.run(NOV, DEC + 2 * HOUR)
    # At $2/day the month ends at $60: no forecast. On the 11th at 05:00 the last 24 h hold six
    # results at $0.25 and two at $1.25: $4/day (the 7 d average is lower), $22.50 spent;
    # $77.50 left lasts 19.375 days: until Nov 30 14:00, before the month ends: forecast.
    # An hour earlier: $3/day, $78.75 left, 26.25 days: past the month's end.
    # $80 (warn_at 80 %) is reached with the last result of Nov 16 (22:30), $100 with that of
    # Nov 18; exhausted, the forecast has come true and resolves at once. On Dec 1 the new
    # month starts at $0 (resolved after resolve_after, 30 s: the next evaluation), and a
    # week's $10 is $1.43/day.
    assert leader.pages("key:alice") == [
        (SPEND_FORECAST, "firing", "warning", "11-11 05:00"),
        (BUDGET_WARNING, "firing", "warning", "11-16 23:00"),
        (BUDGET_EXHAUSTED, "firing", "critical", "11-18 23:00"),
        (SPEND_FORECAST, "resolved", "warning", "11-18 23:00"),
        (BUDGET_WARNING, "resolved", "warning", "12-01 01:00"),
        (BUDGET_EXHAUSTED, "resolved", "critical", "12-01 01:00"),
    ]
    forecast = next(n for _, n, _ in leader.notices if n.rule == SPEND_FORECAST)
    assert "runs out on 2026-11-30" in forecast.summary
    assert (
        "$4.00/day" in forecast.summary and "$22.50 of its $100.00 1mo budget" in forecast.summary
    )
    assert (forecast.provider, forecast.value, forecast.threshold) == (ALL, 22.5, 100.0)
    warning = next(n for _, n, _ in leader.notices if n.rule == BUDGET_WARNING)
    assert (warning.value, warning.threshold) == (80.0, 80.0)
    assert "resets 2026-12-01" in warning.summary
    # Her team's spend was not stamped with a team: team ml's budget saw nothing.
    assert leader.pages("team:ml") == []
    # The exact forecast: at Nov 11 05:00, $77.50 at $4/day.
    use = budgets.Use.of(
        budgets.holders(leader.alerting.config)[0],
        budgets.read_spend(
            store, budgets.holders(leader.alerting.config), NOV + 10 * DAY + 5 * HOUR
        )["key:alice"],
        NOV + 10 * DAY + 5 * HOUR,
    )
    assert use.exhausts_at == NOV + 10 * DAY + 5 * HOUR + 19.375 * DAY
    assert use.resets_at == DEC
    leader.state.close()


def test_a_rolling_team_budget_fires_and_resolves_as_its_spend_ages_out(
    tmp_path: Path, store: SQLiteStore
) -> None:
    # team ml: $50 per rolling 7 days, warns at $40. $10/day for 6 days from Nov 1.
    store.write_results(every_3h(NOV, NOV + 6 * DAY, 10.0, key="bob"))
    leader = Leader(tmp_path, store, make_config())
    leader.run(NOV, NOV + 14 * DAY)
    # Results at 01:30, 04:30, ... 22:30 each day, $1.25 each, 48 in all ($60) until Nov 6.
    # $10/day is $70 a window: over $50, so it is forecast once the last 24 h's rate passes
    # $50 / 7 d: with the 6th result of the first day ($7.50/day), at 16:30. The 32nd ($40)
    # comes on Nov 4 at 22:30, the 40th ($50) on Nov 5: the forecast came true and resolves.
    # From Nov 8 02:00 the results of Nov 1 leave the window one by one: $48.75 once nine
    # have (Nov 9 02:00, resolved an evaluation later), $38.75 once 17 have (Nov 10 02:00).
    # Nothing is spent any more, and a week's rate ($48.75 / 7 d) over 7 d stays under $50.
    assert leader.pages("team:ml") == [
        (SPEND_FORECAST, "firing", "warning", "11-01 17:00"),
        (BUDGET_WARNING, "firing", "warning", "11-04 23:00"),
        (BUDGET_EXHAUSTED, "firing", "critical", "11-05 23:00"),
        (SPEND_FORECAST, "resolved", "warning", "11-05 23:00"),
        (BUDGET_EXHAUSTED, "resolved", "critical", "11-09 03:00"),
        (BUDGET_WARNING, "resolved", "warning", "11-10 03:00"),
    ]
    forecast = next(n for _, n, _ in leader.notices if n.rule == SPEND_FORECAST)
    # $7.50 spent at $7.50/day: the window gains $7.50 - $7.50 / 7 a day; $42.50 to go.
    at = NOV + 17 * HOUR + 42.5 / (7.5 - 7.5 / 7) * DAY
    assert f"runs out on {datetime.fromtimestamp(at, UTC):%Y-%m-%d}" in forecast.summary
    assert "ages out" in forecast.summary
    # Every key with a budget is judged apart: bob has none, alice spent nothing.
    assert leader.pages("key:bob") == [] and leader.pages("key:alice") == []
    leader.state.close()


def test_a_forecast_that_no_longer_holds_resolves_after_an_hour_clear(
    tmp_path: Path, store: SQLiteStore
) -> None:
    # alice: $10/day for the first 5 days of the month, then nothing: $50 of $100.
    store.write_results(every_3h(NOV, NOV + 5 * DAY, 10.0, team=None))
    leader = Leader(tmp_path, store, make_config())
    leader.run(NOV, NOV + 10 * DAY)
    leader.run(NOV + 10 * DAY + 600, NOV + 12 * DAY, step=600)  # every 10 min from here
    pages = leader.pages("key:alice")
    assert [(rule, status) for rule, status, _, _ in pages] == [
        (SPEND_FORECAST, "firing"),
        (SPEND_FORECAST, "resolved"),
    ]
    # From Nov 6 the last day's rate falls to $0 and the week's average carries the forecast:
    # $50 left at $W / 7 a day runs out before Dec 1 while W > 350 / (days left). On Nov 11 at
    # 04:30 the week still holds Nov 4's 04:30 result: 15 results, $18.75 > 350 / 19.81 =
    # $17.67; at 04:40 (the next evaluation) 14: $17.50 ≤ 350 / 19.81: clear.
    holders = budgets.holders(leader.alerting.config)
    cleared = next(
        t
        for t in (NOV + 10 * DAY + i * 600 for i in range(1, 2 * 144))
        if budgets.Use.of(
            holders[0], budgets.read_spend(store, holders, t)["key:alice"], t
        ).exhausts_at
        is None
    )
    assert datetime.fromtimestamp(cleared, UTC).strftime("%m-%d %H:%M") == "11-11 04:40"
    # Resolved an hour after it cleared (FORECAST_HOLD_S), not after resolve_after (30 s).
    assert pages[1][3] == "11-11 05:40"
    assert budgets.FORECAST_HOLD_S == HOUR
    leader.state.close()


def test_routes_silences_and_rule_overrides_apply(tmp_path: Path, store: SQLiteStore) -> None:
    store.write_results(
        every_3h(NOV, NOV + 9 * DAY, 10.0, team=None)  # alice, on her own
        + every_3h(NOV + DAY, NOV + 7 * DAY, 5.0, key="bob")  # team ml: $5/day, then $12
        + every_3h(NOV + 7 * DAY, NOV + 9 * DAY, 12.0, key="bob")
    )
    config = make_config(
        {
            "notifiers": NOTIFIERS,
            "alerting": {
                "repeat_interval": "60d",
                "routes": [
                    {"match": {"rule": ["budget_*", "spend_*"], "target": "team:*"},
                     "notify": ["chat"]},
                    {"match": {"severity": "critical"}, "notify": ["pager"]},
                    {"notify": ["chat"]},
                ],
            },
            # The team's warning is expected: silenced (its state is kept, nothing pages).
            "silences": [{"rule": "budget_warning", "target": "team:ml",
                          "ends": "2027-01-01T00:00:00Z"}],
            # A forecast pages as critical; an exhausted team... is just a warning.
            "rules": {"spend_forecast": {"severity": "critical"},
                      "budget_exhausted": {"enabled": False}},
        }
    )  # fmt: skip
    leader = Leader(tmp_path, store, config)
    # alice: $80 of $100 at $10/day; ml: $42 over 7 d of $50, at $12/day ($84 a week).
    now = NOV + 8 * DAY
    leader.at(now)
    sent = {(n.target, n.rule, str(n.severity), receivers) for _, n, receivers in leader.notices}
    assert sent == {
        ("key:alice", BUDGET_WARNING, "warning", ("chat",)),
        ("key:alice", SPEND_FORECAST, "critical", ("pager",)),
        ("team:ml", SPEND_FORECAST, "critical", ("chat",)),
    }
    records = {(r.target, r.rule): r for r in leader.alerting.engine.records.values()}
    assert str(records["team:ml", BUDGET_WARNING].state) == "firing"  # silenced, not cleared
    assert ("team:ml", BUDGET_EXHAUSTED) not in records  # disabled: never judged
    # Acknowledged like any alert: whoever was paged hears who has it.
    forecast = records["key:alice", SPEND_FORECAST]
    leader.state.acknowledge(forecast.fingerprint, "dana", "raising the budget", now + 60)
    leader.alerting.apply_acknowledgements(leader.state.acknowledgements(), now + 60)
    _, ack, receivers = leader.notices[-1]
    assert (str(ack.status), ack.acknowledged_by, receivers) == ("acknowledged", "dana", ("pager",))
    assert alert_scope(BUDGET_WARNING, None, "team:ml") == "team"
    assert alert_scope(SPEND_FORECAST, None, "key:alice") == "key"
    # Budget alerts say nothing of how a provider answers: no target's status changes.
    assert not any(says_health(rule) for rule in BUDGET_RULES)
    leader.state.close()


def test_spend_is_read_alike_from_sqlite_and_postgresql(store_location: str | Path) -> None:
    config = make_config()
    now = NOV + 20 * DAY + 7 * HOUR
    store = open_store(store_location)
    try:
        store.write_results(
            every_3h(NOV - 5 * DAY, NOV + 21 * DAY, 8.0)  # alice, team ml
            + every_3h(NOV, NOV + 21 * DAY, 4.0, key="bob")  # bob, team ml
            + every_3h(NOV, NOV + 21 * DAY, 16.0, key="carol", team="ops")
            # A probe stamped with alice's name is still no traffic of hers.
            + [dataclasses.replace(spent(now - HOUR, 500.0), source=Source.PROBE)]
        )
        spend = budgets.read_spend(store, budgets.holders(config), now)
    finally:
        store.close()
    # Up to Nov 21 07:00: 162 results of the month so far (alice, $1 each, up to 05:30 today).
    assert spend["key:alice"] == budgets.Spend(period=162.0, day=8.0, week=56.0)
    # ml over 7 days: alice's and bob's; probes (no owner, or not traffic) never count.
    assert spend["team:ml"] == budgets.Spend(period=84.0, day=12.0, week=84.0)
    assert set(spend) == {"key:alice", "team:ml"}  # ops has no budget, carol is no holder


def test_check_config_and_notify_route_list_the_budget_rules(tmp_path: Path) -> None:
    config = make_config(
        {"notifiers": NOTIFIERS,
         "alerting": {"routes": [{"match": {"target": "key:*"}, "notify": ["pager"]},
                                 {"notify": ["chat"]}]},
         "rules": {"budget_exhausted": {"severity": "warning"}}},
        keys=[{"name": "alice", "key": "os.environ/ALICE",
               "budget": {"max_usd": 100, "period": "1mo", "warn_at": None}}],
    )  # fmt: skip
    rows = {(r.subject, r.rule): r for r in rules_in_effect(config) if r.kind == "budget"}
    assert set(rows) == {(s, r) for s in ("key:alice", "team:ml") for r in BUDGET_RULES}
    team_warning = rows["team:ml", BUDGET_WARNING]
    assert team_warning.threshold == "$40.00 (80% of $50.00 per 7d)"
    assert (team_warning.threshold_value, team_warning.unit) == (40.0, "USD")
    assert team_warning.window_s == 7 * DAY and team_warning.enabled
    assert not rows["key:alice", BUDGET_WARNING].enabled  # warn_at: null
    assert rows["key:alice", BUDGET_EXHAUSTED].severity == "warning"  # overridden
    assert "before the month ends" in rows["key:alice", SPEND_FORECAST].detail
    assert "within the window" in rows["team:ml", SPEND_FORECAST].detail
    # Not listed per target: judged per key and team only.
    assert not any(r.rule in BUDGET_RULES and r.kind != "budget" for r in rules_in_effect(config))
    examples = {(e.rule, e.target, str(e.severity)): e for e in route_examples(config)}
    assert examples[SPEND_FORECAST, "key:alice", "warning"].delivery.notify == ("pager",)
    assert examples[BUDGET_EXHAUSTED, "team:ml", "critical"].delivery.notify == ("chat",)
    assert not any(e.target.endswith("/m") and e.rule in BUDGET_RULES for e in examples.values())
    # The command itself, from a file.
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"model_list": [{"model_name": "m", "litellm_params": {
                "model": "openai/m", "api_key": "os.environ/OPENAI_API_KEY"}}],
             "gateway": {"keys": [{"name": "alice", "budget": {"max_usd": 5, "period": "1d"}}]}}
        )
    )  # fmt: skip
    out = CliRunner(env=ENV).invoke(main, ["check-config", "--config", str(path), "--json"])
    assert out.exit_code == 0, out.output
    listed = [r for r in json.loads(out.stdout) if r["subject"] == "key:alice"]
    assert [(r["rule"], r["kind"], r["threshold_value"]) for r in listed] == [
        (BUDGET_WARNING, "budget", 4.0),
        (BUDGET_EXHAUSTED, "budget", 5.0),
        (SPEND_FORECAST, "budget", 5.0),
    ]


def test_the_budgets_api_shows_use_forecast_and_alerts(tmp_path: Path) -> None:
    now = datetime.now(UTC).timestamp()
    config = make_config()
    db = tmp_path / "r.db"
    with SQLiteStore(db) as store:
        # alice: $30 over the last 3 days, $20 of them in the last 24 h (the month may have
        # begun since: the expected spend is read from the same results below).
        store.write_results(
            [spent(now - DAY - i * HOUR - 60, 0.5, team=None) for i in range(20)]
            + [spent(now - i * 1200 - 60, 0.25) for i in range(72)]  # ml: $18 in 24 h
        )
        leader = Leader(tmp_path, store, config, state=db)  # where `web` reads alert state
        leader.at(now)
        leader.state.close()
    month = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0,
                                                     microsecond=0).timestamp()  # fmt: skip
    alice_spent = 0.5 * sum(now - DAY - i * HOUR - 60 >= month for i in range(20))
    alice_spent += 0.25 * sum(now - i * 1200 - 60 >= month for i in range(72))
    with ServedWeb(config, db) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        body = client.get("/api/v1/budgets").json()
        assert "/api/v1/budgets" in client.get("/openapi.json").json()["paths"]
        alerts = client.get("/api/v1/alerts").json()
        metrics = client.get("/metrics").text
    rows = {(b["scope"], b["name"]): b for b in body["budgets"]}
    assert set(rows) == {("key", "alice"), ("team", "ml")}
    alice, ml = rows["key", "alice"], rows["team", "ml"]
    assert (alice["max_usd"], alice["period"], alice["warn_at"]) == (100.0, "1mo", 0.8)
    assert alice["spent_usd"] == pytest.approx(alice_spent)
    assert alice["remaining_usd"] == pytest.approx(100 - alice_spent)
    assert alice["percent"] == pytest.approx(alice_spent)
    assert alice["rate_usd_per_day"] == pytest.approx(18.0)  # her last 24 h; the week is $28
    assert datetime.fromisoformat(alice["resets_at"]).timestamp() == pytest.approx(
        Period.MONTH.end(now)
    )
    # ml (7 d rolling, $50): $18 in 24 h is $126 a window: $32 left, gaining 18 - 18/7 a day.
    assert (ml["spent_usd"], ml["rate_usd_per_day"], ml["resets_at"]) == (18.0, 18.0, None)
    expected = now + 32 / (18 - 18 / 7) * DAY
    # The server read the store a moment after `now`: the date moves on with it.
    exhausts = datetime.fromisoformat(ml["exhausts_at"]).timestamp()
    assert expected <= exhausts <= expected + (datetime.now(UTC).timestamp() - now)
    assert ml["alert_state"] == "firing"
    assert [(a["rule"], a["state"], a["severity"]) for a in ml["alerts"]] == [
        (SPEND_FORECAST, "firing", "warning")
    ]
    assert "runs out on" in ml["alerts"][0]["summary"]
    listed = {(a["rule"], a["target"], a["scope"]) for a in alerts["firing"]}
    assert (SPEND_FORECAST, "team:ml", "team") in listed
    assert (
        'llmpulse_alerts{alertname="spend_forecast",alertstate="firing",'
        'llmpulse_target="team:ml",provider="*",scope="team",severity="warning"} 1.0'
    ) in metrics


async def test_llmpulse_run_pages_an_exhausted_budget_and_serves_it(sim, receiver, tmp_path):
    """The daemon as `llmpulse run` composes it: its leader judges the budgets from the store
    (no clock injected) and pages through the webhook; its web server answers the API."""
    from test_daemon import make_config as daemon_config
    from test_daemon import served, wait_for

    config = daemon_config(
        sim, receiver, [{"provider": "openai", "model": sim_model(sim), "name": "probe"}],
        gateway={"keys": [{"name": "alice", "budget": {"max_usd": 10, "period": "1d"}}]},
    )  # fmt: skip
    db = tmp_path / "r.db"
    now = datetime.now(UTC).timestamp()
    with SQLiteStore(db) as store:
        store.write_results([spent(now - 3 * HOUR + i * 600, 1.0, team=None) for i in range(12)])
    async with served(config, db) as (_, web):
        await wait_for(lambda: len(receiver.events()) >= 2)
        async with httpx.AsyncClient() as http:  # the daemon serves on this event loop
            body = (await http.get(f"{web.urls[0]}api/v1/budgets", timeout=10)).json()
    assert set(receiver.events()) == {
        ("firing", BUDGET_WARNING, "key:alice"),
        ("firing", BUDGET_EXHAUSTED, "key:alice"),
    }
    page = next(r for r in receiver.received if r["rule"] == BUDGET_EXHAUSTED)
    assert (page["provider"], page["severity"], page["value"]) == ("*", "critical", 12.0)
    [alice] = body["budgets"]
    assert (alice["name"], alice["spent_usd"], alice["alert_state"]) == ("alice", 12.0, "firing")
    assert alice["exhausts_at"] is None and alice["remaining_usd"] == -2.0


def test_run_time_keys_have_budgets_until_revoked(tmp_path: Path, store: SQLiteStore) -> None:
    config = make_config()
    daily = Budget(5.0, Period.DAY)
    store.add_key(StoredKey("robot", key_digest("sk-llmp-robot"), budget=daily, created_at=NOV))
    # bob's policy in the config (no budget) wins whole over what was stored for him.
    store.add_key(StoredKey("bob", key_digest("sk-llmp-bob"), budget=daily, created_at=NOV))
    store.write_results([spent(NOV + i * HOUR, 1.0, key="robot", team=None) for i in range(6)])
    held = budgets.holders(config, store.stored_keys())
    assert [(h.subject, h.budget) for h in held] == [
        ("key:alice", Budget(100.0, Period.MONTH)),
        ("key:robot", daily),
        ("team:ml", Budget(50.0, Period.WEEK)),
    ]
    leader = Leader(tmp_path, store, config)
    leader.at(NOV + 6 * HOUR)  # robot: $6 of $5 a day
    assert {(rule, status) for rule, status, _, _ in leader.pages("key:robot")} == {
        (BUDGET_WARNING, "firing"),
        (BUDGET_EXHAUSTED, "firing"),
    }
    # Only what held got a record: a hundred thousand quiet keys cost nothing.
    records = leader.alerting.engine.records.values()
    assert {r.target for r in records if r.rule in BUDGET_RULES} == {"key:robot"}
    store.revoke_key("robot", NOV + 7 * HOUR)
    leader.at(NOV + 7 * HOUR)
    resolved = [(n.rule, n.summary) for _, n, _ in leader.notices if str(n.status) == "resolved"]
    assert sorted(resolved) == [
        (BUDGET_EXHAUSTED, "key robot has no budget any more"),
        (BUDGET_WARNING, "key robot has no budget any more"),
    ]
    leader.state.close()


def test_a_rolling_budget_counts_no_spend_from_before_its_window(
    store_location: str | Path,
) -> None:
    """30 days back from 20:00 is 20:00 of a day whose raw results are pruned (kept 7 days): the
    spend of that day before 20:00 is outside the window and must not count."""
    config = make_config({"teams": [{"name": "ml", "budget": {"max_usd": 30, "period": "30d"}}]})
    now = DEC + 10 * DAY + 20 * HOUR
    store = open_store(store_location)
    try:
        store.write_results(
            [
                spent(now - 30 * DAY - 18 * HOUR, 40.0),  # 02:00 that day: outside the window
                spent(now - 30 * DAY + 2 * HOUR, 4.0),  # 22:00 that day: inside
                *every_3h(now - 20 * DAY, now - 20 * DAY + DAY, 8.0),
            ]
        )
        store.prune(now)  # rolled up, then raw results older than 7 days deleted
        spend = budgets.read_spend(store, budgets.holders(config), now)
        rows = store.costs("team", now - 30 * DAY, now, source="traffic")
    finally:
        store.close()
    assert spend["team:ml"].period == 12.0
    assert [(r.name, r.cost_usd) for r in rows] == [("ml", 12.0)]


def test_quiet_budgets_are_judged_off_the_event_loop(tmp_path: Path, store: SQLiteStore) -> None:
    """``budget_spend`` runs in a thread and ``observe_budgets`` on the daemon's event loop:
    the per-holder work (use, rules, fingerprints) is the thread's, and only holders whose rule
    holds or that have an alert record reach the loop, however many run-time keys are quiet."""
    config = make_config()
    for i in range(300):
        budget = Budget(5.0, Period.DAY)
        store.add_key(StoredKey(f"quiet{i}", key_digest(f"sk-q{i}"), budget=budget, created_at=NOV))
    store.write_results([spent(NOV + HOUR, 6.0, key="quiet7", team=None)])
    leader = Leader(tmp_path, store, config)
    judged = leader.alerting.budget_spend(NOV + 2 * HOUR)
    assert [j.use.holder.subject for j in judged.observed] == ["key:quiet7"]
    assert len(judged.subjects) == 302  # alice, 300 run-time keys, team ml
    leader.at(NOV + 2 * HOUR)
    # Once recorded, a holder whose rules no longer hold reaches the loop to resolve.
    judged = leader.alerting.budget_spend(NOV + 2 * DAY)
    assert [j.use.holder.subject for j in judged.observed] == ["key:quiet7"]
    leader.state.close()


def test_a_config_policy_budget_goes_with_its_revoked_run_time_key(
    tmp_path: Path, store: SQLiteStore
) -> None:
    """A ``gateway.keys`` mapping without ``key`` is the policy of the run-time key of that
    name: once that key is revoked (its name never given again), no budget to judge or list."""
    daily = {"max_usd": 5, "period": "1d"}
    config = make_config(
        keys=[{"name": "alice", "key": "os.environ/ALICE"}, {"name": "bob", "budget": daily}]
    )
    store.add_key(StoredKey("bob", key_digest("sk-llmp-bob"), created_at=NOV))
    store.write_results([spent(NOV + HOUR, 6.0, key="bob")])
    held = {h.subject: h.budget for h in budgets.holders(config, store.stored_keys())}
    assert held["key:bob"] == Budget(5.0, Period.DAY)  # the config's policy wins
    leader = Leader(tmp_path, store, config)
    leader.at(NOV + 2 * HOUR)
    assert (BUDGET_EXHAUSTED, "firing") in {(r, s) for r, s, _, _ in leader.pages("key:bob")}
    store.revoke_key("bob", NOV + 3 * HOUR)
    every = store.stored_keys(revoked=True)
    assert "key:bob" not in {h.subject for h in budgets.holders(config, every)}
    leader.at(NOV + 3 * HOUR)
    assert (BUDGET_EXHAUSTED, "resolved") in {(r, s) for r, s, _, _ in leader.pages("key:bob")}
    leader.state.close()
