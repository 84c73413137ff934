"""Spend alerts and forecasts per gateway key and team (``alerts.budgets``): the alert leader
judges real stored traffic in compressed time (an injected clock, hourly evaluations over a
month of results in real SQLite), ``Store.costs`` in SQLite and PostgreSQL, routes and silences,
``check-config``'s inventory, ``notify test --route`` and ``GET /api/v1/budgets``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmpulse.alerts import budgets
from llmpulse.alerts.engine import ALL
from llmpulse.alerts.model import Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import Config, parse_config
from llmpulse.monitor.alerting import Alerting
from llmpulse.result import CheckKind, CheckResult, Source, Usage
from llmpulse.rules import BUDGET_EXHAUSTED, BUDGET_WARNING, SPEND_FORECAST
from llmpulse.store import SQLiteStore

HOUR, DAY = 3600.0, 86400.0
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
ENV = {"OPENAI_API_KEY": "sk-upstream-0123456789", "ALICE": "sk-alice-0123456789abcdef"}


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

    def __init__(self, tmp_path: Path, store: SQLiteStore, config: Config) -> None:
        self.now = 0.0
        self.notices: list[tuple[float, Notification, tuple[str, ...]]] = []
        self.state = AlertStateStore(tmp_path / "state.db")

        def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
            self.notices.append((self.now, n, tuple(receivers)))

        names = {n.name: None for n in config.notifiers}
        self.alerting = Alerting(config, store, self.state, notify, lambda p: None, notifiers=names)

    def at(self, now: float) -> None:
        self.now = now
        self.alerting.load_silences(now)
        self.alerting.observe_budgets(self.alerting.budget_spend(now), now)
        self.alerting.tick(now)

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
    # Nov 18; exhausted, the forecast has come true and resolves (after resolve_after, 30 s: the
    # next evaluation). On Dec 1 the new month starts at $0 and a week's $10 is $1.43/day.
    assert leader.pages("key:alice") == [
        (SPEND_FORECAST, "firing", "warning", "11-11 05:00"),
        (BUDGET_WARNING, "firing", "warning", "11-16 23:00"),
        (BUDGET_EXHAUSTED, "firing", "critical", "11-18 23:00"),
        (SPEND_FORECAST, "resolved", "warning", "11-19 00:00"),
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
        (SPEND_FORECAST, "resolved", "warning", "11-06 00:00"),
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
