"""cost_spike: an hour's spend against the 7 days before it, per provider and overall, judged
by the leader from a real SQLite store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from llmpulse.alerts.engine import ALL, alert_scope
from llmpulse.alerts.model import Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import ConfigError, parse_config
from llmpulse.monitor.alerting import Alerting
from llmpulse.result import CheckKind, CheckResult, Usage
from llmpulse.store import SQLiteStore, queries

NOW = datetime(2026, 11, 8, 12, tzinfo=UTC).timestamp()
HOUR = 3600
ENV = {"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"}


def spent(ts: float, provider: str, usd: float) -> CheckResult:
    return CheckResult(
        target=f"{provider}/m",
        provider=provider,
        model="m",
        check=CheckKind.INFERENCE,
        timestamp=datetime.fromtimestamp(ts, UTC),
        ok=True,
        latency_ms=100.0,
        usage=Usage(10, 10),
        cost_usd=usd,
    )


def week(provider: str, usd_per_hour: float) -> list[CheckResult]:
    """Steady spend over the 7 days before the last hour."""
    start = NOW - HOUR - 7 * 86400
    return [spent(start + h * HOUR + 60, provider, usd_per_hour) for h in range(7 * 24)]


def alerting(tmp_path: Path, store: SQLiteStore, rules: dict | None = None):
    notices: list[Notification] = []

    def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
        notices.append(n)

    config = parse_config(
        {
            "targets": [
                {"provider": "openai", "model": "m", "api_key": "os.environ/OPENAI_API_KEY"},
                {"provider": "anthropic", "model": "m", "api_key": "os.environ/ANTHROPIC_API_KEY"},
            ],
            **(rules or {}),
        },
        env=ENV,
    )
    state = AlertStateStore(tmp_path / "state.db")
    return Alerting(config, store, state, notify, lambda p: None, notifiers={}), notices


@pytest.fixture
def store(tmp_path):
    with SQLiteStore(tmp_path / "r.db") as s:
        yield s


def test_hourly_spend_per_provider_and_overall(store: SQLiteStore) -> None:
    store.write_results(week("openai", 0.5) + week("anthropic", 0.25))
    store.write_results([spent(NOW - 600, "openai", 4.0), spent(NOW - 300, "openai", 1.0)])
    spend = queries.hourly_spend(store, NOW)
    assert spend["openai"][0] == pytest.approx(5.0)
    assert spend["openai"][1] == pytest.approx(0.5, rel=0.01)
    assert spend["anthropic"] == (0.0, pytest.approx(0.25, rel=0.01))
    assert spend[queries.SPEND_ALL][0] == pytest.approx(5.0)
    assert spend[queries.SPEND_ALL][1] == pytest.approx(0.75, rel=0.01)


def test_a_spike_pages_once_per_subject_and_resolves(tmp_path: Path, store: SQLiteStore) -> None:
    store.write_results(week("openai", 0.5) + week("anthropic", 0.25))
    store.write_results([spent(NOW - 600, "openai", 4.0)])  # 8× openai's hour, 5.3× overall
    a, notices = alerting(tmp_path, store)
    a.observe_spend(a.spend(NOW), NOW)
    a.observe_spend(a.spend(NOW + 60), NOW + 60)  # still spiking: no second notice
    fired = {(n.target, n.status.value, n.rule) for n in notices}
    assert fired == {("openai", "firing", "cost_spike"), (ALL, "firing", "cost_spike")}
    assert len(notices) == 2
    by_subject = {n.target: n for n in notices}
    assert by_subject["openai"].value == pytest.approx(4.0)
    assert by_subject["openai"].provider == "openai" and by_subject[ALL].provider == ALL
    assert "8.0× the 7-day average" in by_subject["openai"].summary
    assert alert_scope("cost_spike") == "provider"
    # An hour later the spend has left the window: it resolves after resolve_after (30 s).
    later = NOW + HOUR
    a.observe_spend(a.spend(later), later)
    a.observe_spend(a.spend(later + 60), later + 60)
    resolved = sorted(n.target for n in notices if n.status.value == "resolved")
    assert resolved == [ALL, "openai"]


def test_below_min_usd_or_threshold_stays_quiet(tmp_path: Path, store: SQLiteStore) -> None:
    store.write_results(week("openai", 0.1))
    store.write_results([spent(NOW - 600, "openai", 0.9)])  # 9×, but under $1
    a, notices = alerting(tmp_path, store)
    a.observe_spend(a.spend(NOW), NOW)
    assert notices == []
    store.write_results([spent(NOW - 300, "openai", 0.2)])  # $1.10: over both
    a.observe_spend(a.spend(NOW + 60), NOW + 60)
    assert {n.target for n in notices} == {"openai", ALL}


def test_threshold_and_min_usd_are_overridable(tmp_path: Path, store: SQLiteStore) -> None:
    store.write_results(week("openai", 0.5))
    store.write_results([spent(NOW - 600, "openai", 4.0)])  # 8×
    rules = {
        "rules": {"cost_spike": {"threshold": 10}},
        "providers": {"openai": {"rules": {"cost_spike": {"threshold": 5, "min_usd": 0.5}}}},
    }
    a, notices = alerting(tmp_path, store, rules)
    a.observe_spend(a.spend(NOW), NOW)
    assert [n.target for n in notices] == ["openai"]  # 8× > 5 for openai, < 10 overall
    assert a.provider_rules["openai"]["cost_spike"].min_usd == 0.5
    with pytest.raises(ConfigError, match=r"rules\.cost_spike\.min_usd"):
        parse_config({**rules, "rules": {"cost_spike": {"min_usd": -1}}, "targets": []}, env=ENV)


def test_no_history_is_no_verdict(tmp_path: Path, store: SQLiteStore) -> None:
    store.write_results([spent(NOW - 600, "openai", 50.0)])  # a new install's first hour
    a, notices = alerting(tmp_path, store)
    a.observe_spend(a.spend(NOW), NOW)
    assert notices == []
