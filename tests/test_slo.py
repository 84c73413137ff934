"""SLOs: config validation, what is an event and what is good, minute counts, budget and burn-rate
math, the leader's counts persisted and resumed without double counting (real SQLite and
PostgreSQL), the burn-rate alert through the engine, /api/v1/slos and /metrics."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmpulse.alerts import slo
from llmpulse.alerts.engine import alert_scope
from llmpulse.alerts.model import Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.config import ConfigError, parse_config
from llmpulse.config.slos import default_alerts
from llmpulse.errors import ErrorClass
from llmpulse.monitor.alerting import Alerting
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.rules import SLO_BURN_RULE, Severity
from llmpulse.store import open_store
from webserve import ServedWeb

ENV = {"K": "sk-test"}
T0 = 1_800_000_000.0 // 3600 * 3600  # an hour's start
TARGETS = [
    {"name": "openai/a", "provider": "openai", "model": "a", "api_key": "${K}"},
    {"name": "openai/b", "provider": "openai", "model": "b", "api_key": "${K}"},
    {"name": "claude", "provider": "anthropic", "model": "c", "api_key": "${K}"},
]


def config(slos: list[dict[str, Any]], **extra: Any):
    return parse_config({"targets": TARGETS, "slos": slos, **extra}, env=ENV)


def one(**raw: Any) -> slo.Slo:
    return config([{"name": "s", "sli": "availability", "objective": "99%", **raw}]).slos[0]


def result(
    ts: float,
    target: str = "openai/a",
    *,
    error: ErrorClass | None = None,
    check: CheckKind = CheckKind.INFERENCE,
    ttft_ms: float | None = None,
    latency_ms: float | None = 500.0,
    source: Source = Source.PROBE,
) -> CheckResult:
    provider = "anthropic" if target == "claude" else "openai"
    return CheckResult(
        target=target, provider=provider, model="m", check=check,
        timestamp=datetime.fromtimestamp(ts, UTC), ok=error is None, error_class=error,
        latency_ms=latency_ms, ttft_ms=ttft_ms, source=source,
    )  # fmt: skip


# --- config ---------------------------------------------------------------------------------


def test_a_full_slo_resolves() -> None:
    c = config(
        [
            {"name": "chat-availability", "match": {"target": "openai/*"}, "sli": "availability",
             "objective": "99.5%", "window": "30d", "source": "all"},
            {"name": "chat-responsiveness", "match": {"provider": "anthropic"}, "sli": "ttft",
             "threshold": "2s", "objective": 0.99, "window": "7d",
             "alerts": [{"severity": "critical", "burn_rate": 10, "long": "1h", "short": "5m"}]},
        ]
    )  # fmt: skip
    a, r = c.slos
    assert (a.objective, a.window_s, a.source, a.threshold_s) == (0.995, 30 * 86400, "all", None)
    assert a.selection.targets == {"openai/a", "openai/b"}
    assert a.window_label == "30d"
    assert [(x.severity, x.burn_rate, x.long_s, x.short_s) for x in a.alerts] == [
        (Severity.CRITICAL, 14.4, 3600, 300),
        (Severity.CRITICAL, 6.0, 6 * 3600, 1800),
        (Severity.WARNING, 1.0, 3 * 86400, 6 * 3600),
    ]
    assert (r.sli, r.threshold_s, r.objective, r.window_s) == ("ttft", 2.0, 0.99, 7 * 86400)
    assert [(x.burn_rate, x.long_s, x.short_s) for x in r.alerts] == [(10, 3600, 300)]
    assert r.selection.targets == {"claude"}
    # At 90 % every event bad burns at 10×: the default 14.4× page is capped there.
    assert [x.burn_rate for x in one(objective="90%").alerts] == pytest.approx([10, 6, 1])
    # Same counting rules, same definition; another threshold counts differently.
    assert one().definition == one(objective="90%").definition != one(window="7d").definition[:0]
    assert one().definition != one(source="probe").definition


def test_default_alert_windows_scale_with_the_slo_window() -> None:
    week = default_alerts(7 * 86400)
    assert [(a.long_s, a.short_s) for a in week] == [(840, 60), (5040, 420), (60480, 5040)]
    hour = default_alerts(3600)  # floors: 5 m long, 1 m short
    assert [(a.long_s, a.short_s) for a in hour] == [(300, 60), (300, 60), (360, 60)]
    assert one(window="2h").windows == (60, 300, 720)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"name": None}, r"^slos\[0\]\.name: "),
        ({"name": ""}, r"^slos\[0\]\.name: "),
        ({"name": "openai/a"}, r"^slos\[0\]\.name: 'openai/a' is a target's name"),
        ({"sli": "uptime"}, r"^slos\[0\]\.sli: "),
        ({"objective": "100%"}, r"^slos\[0\]\.objective: must be strictly between 0 and 1"),
        ({"objective": 0}, r"^slos\[0\]\.objective: must be strictly between"),
        ({"objective": 99.5}, r"^slos\[0\]\.objective: must be strictly between"),
        ({"objective": "high"}, r"^slos\[0\]\.objective: expected a percentage"),
        ({"objective": True}, r"^slos\[0\]\.objective: expected a percentage"),
        ({"objective": 10**400}, r"^slos\[0\]\.objective: must be strictly between"),
        ({"objective": "nan%"}, r"^slos\[0\]\.objective: must be strictly between"),
        ({"name": "two\nlines"}, r"^slos\[0\]\.name: "),
        ({"threshold": "2s"}, r"^slos\[0\]\.threshold: not used by sli availability"),
        ({"sli": "ttft"}, r"^slos\[0\]\.threshold: required for sli ttft"),
        ({"sli": "latency", "threshold": "fast"}, r"^slos\[0\]\.threshold: expected a duration"),
        ({"window": "soon"}, r"^slos\[0\]\.window: expected a duration"),
        ({"window": "1m"}, r"^slos\[0\]\.window: expected whole minutes from 5m to 400d"),
        ({"window": "90s"}, r"^slos\[0\]\.window: expected whole minutes"),
        ({"window": "500d"}, r"^slos\[0\]\.window: expected whole minutes"),
        ({"source": "gateway"}, r"^slos\[0\]\.source: "),
        ({"match": {"target": "nope/*"}}, r"^slos\[0\]\.match: selects no target"),
        ({"match": {"check": "chat"}}, r"^slos\[0\]\.match\.check: matches none"),
        ({"match": {"colour": "red"}}, r"^slos\[0\]\.match\.colour: unknown key"),
        ({"alerts": []}, r"^slos\[0\]\.alerts: "),
        ({"alerts": [{"severity": "page", "burn_rate": 2, "long": "1h", "short": "5m"}]},
         r"^slos\[0\]\.alerts\[0\]\.severity: "),
        ({"alerts": [{"severity": "critical", "burn_rate": 0, "long": "1h", "short": "5m"}]},
         r"^slos\[0\]\.alerts\[0\]\.burn_rate: "),
        ({"alerts": [{"severity": "critical", "burn_rate": 2, "long": "5m", "short": "1h"}]},
         r"^slos\[0\]\.alerts\[0\]\.short: must not be longer than long"),
        ({"objective": "99%",
          "alerts": [{"severity": "critical", "burn_rate": 120, "long": "1h", "short": "5m"}]},
         r"^slos\[0\]\.alerts\[0\]\.burn_rate: at objective 0\.99 the budget burns at most "
         r"100× \(every event bad\), so a 120× alert could never fire"),
        ({"alerts": [{"severity": "critical", "burn_rate": 2, "long": "31d", "short": "1h"}]},
         r"^slos\[0\]\.alerts\[0\]\.long: must not be longer than the window"),
        ({"alerts": [{"severity": "critical", "burn_rate": 2, "long": "1h", "short": "30s"}]},
         r"^slos\[0\]\.alerts\[0\]\.short: expected whole minutes"),
        ({"alerts": [{"severity": "critical", "burn_rate": 2, "long": "1h"}]},
         r"^slos\[0\]\.alerts\[0\]\.short: required key is missing"),
        ({"alerts": [{"severity": "critical", "burn_rate": 2, "long": "1h", "short": "5m",
                      "for": "1m"}]}, r"^slos\[0\]\.alerts\[0\]\.for: unknown key"),
        ({"budget": 3}, r"^slos\[0\]\.budget: unknown key"),
    ],
)  # fmt: skip
def test_every_bad_key_names_its_path(raw: dict[str, Any], error: str) -> None:
    entry = {"name": "s", "sli": "availability", "objective": "99%", **raw}
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(ConfigError, match=error) as exc:
        config([entry])
    assert "\n" not in str(exc.value)


def test_a_duplicate_name_and_a_missing_key_are_refused() -> None:
    s = {"name": "s", "sli": "availability", "objective": "99%"}
    with pytest.raises(ConfigError, match=r"^slos\[1\]\.name: duplicate SLO name 's'"):
        config([s, s])
    with pytest.raises(ConfigError, match=r"^slos\[0\]\.objective: required key is missing"):
        config([{"name": "s", "sli": "availability"}])
    with pytest.raises(ConfigError, match=r"^slos: "):
        config({"name": "s"})  # type: ignore[arg-type]


def test_a_correctness_slo_takes_no_threshold() -> None:
    s = one(sli="correctness")
    assert (s.sli, s.threshold_s) == ("correctness", None)
    with pytest.raises(ConfigError, match=r"^slos\[0\]\.threshold: not used by sli correctness"):
        one(sli="correctness", threshold="1s")


# --- events and counts ----------------------------------------------------------------------


def test_what_is_an_event_and_what_is_good() -> None:
    avail = one()
    assert slo.judge(avail, result(T0)) is True
    assert slo.judge(avail, result(T0, error=ErrorClass.UNAVAILABLE)) is False
    assert slo.judge(avail, result(T0, error=ErrorClass.TIMEOUT)) is False
    assert slo.judge(avail, result(T0, error=ErrorClass.RATE_LIMITED)) is True  # caller's limit
    assert slo.judge(avail, result(T0, error=ErrorClass.AUTH)) is True  # not an outage
    assert slo.judge(avail, result(T0, check=CheckKind.MODELS)) is True
    probes = one(source="probe")
    assert slo.judge(probes, result(T0, source=Source.TRAFFIC)) is None
    assert slo.judge(one(match={"target": "claude"}), result(T0)) is None

    ttft = one(sli="ttft", threshold="2s")
    stream = CheckKind.STREAM
    assert slo.judge(ttft, result(T0, check=stream, ttft_ms=2000)) is True
    assert slo.judge(ttft, result(T0, check=stream, ttft_ms=2001)) is False
    assert slo.judge(ttft, result(T0, check=stream, ttft_ms=None)) is False
    assert slo.judge(ttft, result(T0, ttft_ms=100)) is None  # inference: no TTFT event
    assert slo.judge(ttft, result(T0, check=stream, error=ErrorClass.SERVER_ERROR)) is False
    assert slo.judge(ttft, result(T0, check=stream, error=ErrorClass.QUOTA)) is None
    assert slo.judge(ttft, result(T0, check=stream, error=ErrorClass.RATE_LIMITED)) is None

    latency = one(sli="latency", threshold="1s")
    assert slo.judge(latency, result(T0, latency_ms=1000)) is True
    wrong = ErrorClass.ASSERTION  # a wrong answer on time is a good latency event
    assert slo.judge(latency, result(T0, latency_ms=900, error=wrong)) is True
    assert slo.judge(latency, result(T0, latency_ms=1100, error=wrong)) is False
    assert slo.judge(latency, result(T0, check=stream, latency_ms=1500)) is False
    assert slo.judge(latency, result(T0, check=CheckKind.MODELS)) is None

    # Correctness: the answered results are the events, right answers the good ones.
    right = one(sli="correctness")
    assert slo.judge(right, result(T0)) is True
    assert slo.judge(right, result(T0, error=ErrorClass.ASSERTION)) is False
    for unanswered in (ErrorClass.UNAVAILABLE, ErrorClass.RATE_LIMITED, ErrorClass.AUTH):
        assert slo.judge(right, result(T0, error=unanswered)) is None
    assert slo.judge(avail, result(T0, error=ErrorClass.ASSERTION)) is True  # it answered
    assert slo.judge(latency, result(T0, error=ErrorClass.RATE_LIMITED)) is None


def test_minute_counts_ring_sums_and_forgets() -> None:
    counts = slo.MinuteCounts(5)
    m = int(T0 // 60)
    for minute, good in [(m, True), (m, False), (m + 1, True), (m + 3, False)]:
        assert counts.add(minute, good)
    assert counts.sums(m, m + 4) == (4, 2)
    assert counts.sums(m + 1, m + 3) == (2, 1)
    assert list(counts.minutes()) == [(m, 2, 1), (m + 1, 1, 1), (m + 3, 1, 0)]
    counts.advance(m + 6)  # m and m + 1 leave the window (m + 2 .. m + 6)
    assert counts.sums(m - 10, m + 10) == (1, 0)
    assert not counts.add(m + 1, True)  # older than the window: not counted
    assert counts.add(m + 7, True)  # wraps onto m + 2's slot
    assert counts.sums(m + 3, m + 7) == (2, 1) and counts.get(m + 2) == (0, 0)
    assert (counts.total_events, counts.total_good) == counts.sums(m + 3, m + 7) == (2, 1)
    counts.set(m + 5, 7, 3)
    assert (counts.total_events, counts.total_good) == counts.sums(m + 3, m + 7) == (9, 4)
    assert counts.sums(m + 5, m + 7) == (8, 4)
    counts.advance(m + 100)
    assert counts.sums(m, m + 100) == (0, 0) == (counts.total_events, counts.total_good)


def test_budget_and_burn_rate_math() -> None:
    s = one(objective="99%", window="1h",
            alerts=[{"severity": "critical", "burn_rate": 10, "long": "10m", "short": "2m"},
                    {"severity": "warning", "burn_rate": 2, "long": "30m", "short": "5m"}])  # fmt: skip
    counts = slo.MinuteCounts(60)
    last = int(T0 // 60) + 59
    # 58 minutes of 100 good events, then 2 minutes of 100 events with 25 bad each.
    for minute in range(last - 59, last + 1):
        bad = 25 if minute > last - 2 else 0
        counts.set(minute, 100, 100 - bad)
    now = last * 60 + 30
    r = slo.report(s, counts, now)
    assert (r.events, r.good, r.bad) == (6000, 5950, 50)
    assert r.sli == pytest.approx(5950 / 6000)
    assert r.allowed == pytest.approx(60)
    assert r.budget_remaining == pytest.approx(1 - 50 / 60)
    assert r.budget_remaining_events == pytest.approx(10)
    # (50 / 1000) / 0.01 over 10 m; 25 % / 1 % over the last 2 minutes.
    assert r.burn_rates == {"2m": pytest.approx(25), "5m": pytest.approx(10),
                            "10m": pytest.approx(5), "30m": pytest.approx(50 / 3000 / 0.01)}  # fmt: skip
    assert [c.active for c in r.checks] == [False, False]  # 5× < 10; 1.67× < 2 over 30 m
    assert r.severity is None
    # At 5× (the fastest page's long window) 1/6 of a 1 h budget lasts 2 minutes.
    assert r.exhausted_at == pytest.approx(now + (1 - 50 / 60) * 3600 / 5)
    counts.set(last, 100, 40)  # 60 bad in the last minute: overspent
    r = slo.report(s, counts, now)
    assert r.burn_rates["10m"] == pytest.approx(85 / 1000 / 0.01)
    assert r.severity is Severity.WARNING  # 8.5× over 10 m: a warning (2× over 30 m and 5 m)
    assert r.budget_remaining == pytest.approx(1 - 85 / 60) and r.budget_remaining < 0
    assert r.exhausted_at == now  # already spent
    counts.set(last - 2, 100, 0)
    r = slo.report(s, counts, now)
    assert r.severity is Severity.CRITICAL
    assert "burning 18.5× over 10m and 42.5× over 2m (alert at 10×)" in r.summary()
    assert slo.burn_rate(0, 0, 0.99) is None
    empty = slo.report(s, slo.MinuteCounts(60), now)
    assert (empty.sli, empty.budget_remaining, empty.exhausted_at) == (None, None, None)
    assert slo.since(slo.MinuteCounts(60)) is None
    assert slo.since(counts) == (last - 59) * 60
    # The burn-down falls from 1 to what is left, hour's start to now.
    points = slo.burn_down(r, counts, points=6)
    assert len(points) == 6 and points[0][1] == 1.0
    assert points[-1] == (pytest.approx((last + 1) * 60), pytest.approx(r.budget_remaining))


# --- the leader: counts persisted and resumed -----------------------------------------------


def leader(location: str | Path, store, cfg, sent: list[Notification]):
    def notify(n: Notification, receivers: Sequence[str], *, resend: bool = False) -> None:
        sent.append(n)

    state = AlertStateStore.open(location)
    return Alerting(cfg, store, state, notify, lambda p: None, notifiers={}), state


def test_counts_survive_a_restart_and_a_handover_without_double_counting(
    store_location: str | Path,
) -> None:
    cfg = config([{"name": "avail", "sli": "availability", "objective": "99%", "window": "1h"}])
    now = time.time()
    store = open_store(store_location)
    # 20 minutes of results, one bad in four; leader 1 counts them as they come.
    history = [
        result(now - 1200 + i * 15, error=ErrorClass.UNAVAILABLE if i % 4 == 0 else None)
        for i in range(80)
    ]
    sent: list[Notification] = []
    first, state = leader(store_location, store, cfg, sent)
    recent, cursor = store.tail_start(first.replay_start(now - 1300))
    assert recent == []
    store.write_results(history[:60])
    results, cursor = store.tail(cursor)
    first.feed(results, now - 300)
    state.save_slo_minutes(first.slo_minutes())
    store.write_results(history[60:])
    results, cursor = store.tail(cursor)
    first.feed(results, now)
    state.save_slo_minutes(first.slo_minutes())

    def truth(results: list[CheckResult]) -> tuple[int, int]:
        return len(results), sum(r.error_class is None for r in results)

    assert slo.report(cfg.slos[0], first.slos.counts[0], now).events == 80
    # A restart (or another agent taking the lead): it loads the minutes and recounts those
    # its replay covers; twice, to be sure nothing accumulates.
    for _ in range(2):
        second, state = leader(store_location, store, cfg, sent)
        recent, _ = store.tail_start(second.replay_start(now))
        second.feed(recent, now)
        r = slo.report(cfg.slos[0], second.slos.counts[0], now)
        assert (r.events, r.good) == truth(history)
        state.save_slo_minutes(second.slo_minutes())
    # What the store holds is what the API reads: the same figures, summed there.
    sums, first = state.slo_sums(
        "avail", cfg.slos[0].definition, int(now // 60 * 60), slo.spans(cfg.slos[0])
    )
    assert slo.report_from(cfg.slos[0], now, sums) == r
    assert first == slo.since(second.slos.counts[0])
    minutes = state.slo_minutes("avail", cfg.slos[0].definition, now - 3600)
    assert sum(e for _, e, _ in minutes) == 80
    assert sum(g for _, _, g in minutes) == truth(history)[1]
    # A late result of an old minute (an agent's spool) is added once.
    late = result(now - 1100, error=ErrorClass.SERVER_ERROR)
    store.write_results([late])
    results, cursor = store.tail(cursor)
    second.feed(results, now)
    state.save_slo_minutes(second.slo_minutes())
    third, state = leader(store_location, store, cfg, sent)
    recent, _ = store.tail_start(third.replay_start(now))
    third.feed(recent, now)
    r = slo.report(cfg.slos[0], third.slos.counts[0], now)
    assert (r.events, r.good) == truth([*history, late])
    # Pruning keeps the window of each configured SLO's definition, nothing of others.
    state.save_slo_minutes([("gone", "x", int(now // 60 * 60), 5, 5)])
    state.save_slo_minutes([("avail", cfg.slos[0].definition, int(now // 60 * 60) - 7200, 9, 9)])
    state.prune_slo_minutes(third.slo_retention(now))
    assert state.slo_minutes("gone", "x", 0) == []
    assert sum(e for _, e, _ in state.slo_minutes("avail", cfg.slos[0].definition, 0)) == 81
    # Another definition (a new threshold or match) starts afresh.
    changed = config([{"name": "avail", "sli": "availability", "objective": "99%",
                       "window": "1h", "source": "traffic"}])  # fmt: skip
    fresh, state = leader(store_location, store, changed, sent)
    assert slo.report(changed.slos[0], fresh.slos.counts[0], now).events == 0
    assert sent == []
    state.close()
    store.close()


def test_a_new_slo_is_counted_from_the_raw_results_stored_before_it(
    store_location: str | Path,
) -> None:
    cfg = config([{"name": "lat", "sli": "latency", "threshold": "1s", "objective": "99%",
                   "window": "2h", "match": {"provider": "openai"}}])  # fmt: skip
    now = time.time()
    store = open_store(store_location)
    # Three hours of results (the first one outside the window) of every target, one in three
    # too slow, one in five failed; claude's are not the SLO's.
    history = [
        result(now - 3 * 3600 + i * 30, target=t, latency_ms=1500 if i % 3 == 0 else 200,
               error=ErrorClass.SERVER_ERROR if i % 5 == 0 else None)
        for i in range(360) for t in ("openai/a", "openai/b", "claude")
    ]  # fmt: skip
    store.write_results(history)
    sent: list[Notification] = []
    a, state = leader(store_location, store, cfg, sent)
    start = a.replay_start(now)
    assert [(i, end) for i, _, end in a.backfill] == [(0, start)]
    recent, at_start = store.tail_start(start)
    a.feed(recent, now)
    # Stored after the term started, during the count: fed, and not counted again.
    late = result(now - 3000, target="openai/b", latency_ms=5000)
    store.write_results([late])
    results, cursor = store.tail(at_start)
    a.feed(results, now)
    a.merge_backfill(a.count_backfill(at_start))
    state.save_slo_minutes(a.slo_minutes())
    first_minute = int(now // 60) - 119
    counted = [
        r for r in [*history, late]
        if r.target != "claude" and r.timestamp.timestamp() >= first_minute * 60
    ]  # fmt: skip
    truth = (len(counted), sum(r.ok and r.latency_ms <= 1000 for r in counted))
    r = slo.report(cfg.slos[0], a.slos.counts[0], now)
    assert (r.events, r.good) == truth
    assert slo.since(a.slos.counts[0]) == first_minute * 60
    # The next leader finds it saved: nothing to count again.
    b, state = leader(store_location, store, cfg, sent)
    recent, _ = store.tail_start(b.replay_start(now))
    assert b.backfill == []
    b.feed(recent, now)
    assert (slo.report(cfg.slos[0], b.slos.counts[0], now).events, truth[0]) == (truth[0],) * 2
    # A leader stopped before it is done adds nothing.
    c, state = leader(store_location, store, config([{"name": "other", "sli": "availability",
                                                      "objective": "99%"}]), sent)  # fmt: skip
    c.replay_start(now)
    assert c.backfill and c.count_backfill(cursor, lambda: True) == []
    state.close()
    store.close()


def test_results_stored_while_no_leader_ran_are_counted_by_the_next(
    store_location: str | Path,
) -> None:
    cfg = config([{"name": "avail", "sli": "availability", "objective": "99%", "window": "6h"}])
    now = time.time()
    store = open_store(store_location)
    history = [
        result(now - 4 * 3600 + i * 20, error=ErrorClass.UNAVAILABLE if i % 6 == 0 else None)
        for i in range(720)
    ]  # four hours, three a minute
    led = [r for r in history if r.timestamp.timestamp() < now - 3 * 3600 + 10]
    sent: list[Notification] = []
    a, state = leader(store_location, store, cfg, sent)
    _, cursor = store.tail_start(a.replay_start(now - 4 * 3600 - 60))
    store.write_results(led)  # the last minute only part-way (its first result) when saved
    results, cursor = store.tail(cursor)
    a.feed(results, now - 3 * 3600 + 10)
    state.save_slo_minutes(a.slo_minutes())
    # No leader for three hours, while agents (or the gateway) kept storing results.
    store.write_results(history[len(led) :])
    b, state = leader(store_location, store, cfg, sent)
    start = b.replay_start(now)
    # Before the first minute saved (nothing stored there), and the gap, from the last one.
    gap = (led[-1].timestamp.timestamp() // 60 * 60, start)
    assert [(begin, end) for _, begin, end in b.backfill][1:] == [gap]
    recent, at_start = store.tail_start(start)
    b.feed(recent, now)
    b.merge_backfill(b.count_backfill(at_start))
    r = slo.report(cfg.slos[0], b.slos.counts[0], now)
    assert (r.events, r.good) == (720, sum(r.ok for r in history))
    state.close()
    store.close()


def test_the_burn_rate_alert_pages_once_escalates_and_resolves(tmp_path: Path) -> None:
    cfg = config(
        [{"name": "avail", "sli": "availability", "objective": "90%", "window": "1h",
          "match": {"provider": "openai"},
          "alerts": [{"severity": "critical", "burn_rate": 5, "long": "5m", "short": "1m"},
                     {"severity": "warning", "burn_rate": 2, "long": "10m", "short": "2m"}]}],
        alerting={"resolve_after": "30s"},
    )  # fmt: skip
    store = open_store(tmp_path / "r.db")
    sent: list[Notification] = []
    a, state = leader(tmp_path / "r.db", store, cfg, sent)
    start = T0 + 3600

    def minute(i: int, bad: int, total: int = 10) -> None:
        t = start + i * 60
        a.feed([result(t + j, error=ErrorClass.UNAVAILABLE if j < bad else None)
                for j in range(total)], t + 30)  # fmt: skip
        a.tick(t + 30)
        a.tick(t + 45)

    def pages() -> list[tuple[str, str]]:
        return [(n.status, n.severity) for n in sent if n.rule == SLO_BURN_RULE]

    for i in range(10):
        minute(i, 0)
    minute(10, 3)  # 1 m: 30 % = 3×; 2 m: 15 % = 1.5×
    minute(11, 3)  # 2 m: 3×, but 10 m: 6 % = 0.6×
    for i in range(12, 15):
        minute(i, 3)  # 10 m: 15 % = 1.5× at most
    assert pages() == []
    minute(15, 10)  # 10 m: 25 % = 2.5×, 2 m: 6.5×: a warning; 5 m: 44 % = 4.4×, not a page
    assert pages() == [("firing", "warning")]
    minute(16, 10)  # 5 m: 58 % = 5.8×, 1 m: 10×: the warning escalates
    assert pages() == [("firing", "warning"), ("firing", "critical")]
    minute(17, 0)  # 1 m clear; the warning's 2 m still 5×: firing as paged
    assert len(pages()) == 2
    for i in range(18, 40):
        minute(i, 0)
    assert pages()[2:] == [("resolved", "critical")]
    page = [n for n in sent if n.rule == SLO_BURN_RULE][1]
    assert (page.rule, page.target, page.provider) == (SLO_BURN_RULE, "avail", "openai")
    assert page.threshold == 5 and page.value == pytest.approx(29 / 50 / 0.1)
    assert "avail: error budget burning 5.8× over 5m and 10.0× over 1m" in page.summary
    assert alert_scope(SLO_BURN_RULE) == "slo"
    state.close()
    store.close()


def test_api_and_metrics_read_the_saved_minutes(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    cfg = parse_config(
        {"targets": TARGETS, "web": {"listen": "127.0.0.1:0"},
         "slos": [{"name": "avail", "sli": "availability", "objective": "99%", "window": "1h",
                   "match": {"target": "openai/*"}},
                  {"name": "fast", "sli": "latency", "threshold": "1s", "objective": "0.9",
                   "window": "2h"}]},
        env=ENV,
    )  # fmt: skip
    now = time.time()
    store = open_store(db)
    results = [result(now - 1800 + i * 30, target=t,
                      error=ErrorClass.UNAVAILABLE if i % 10 == 9 else None,
                      latency_ms=2000 if i % 5 == 0 else 300)
               for i in range(60) for t in ("openai/a", "claude")]  # fmt: skip
    store.write_results(results)
    sent: list[Notification] = []
    a, state = leader(db, store, cfg, sent)
    recent, _ = store.tail_start(a.replay_start(now - 3600))
    a.feed(recent, now)
    state.save_slo_minutes(a.slo_minutes())
    state.close()
    store.close()
    with ServedWeb(cfg, db) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        body = client.get("/api/v1/slos").json()
        avail, fast = body
        # openai/a only: 60 results, 6 outages
        assert (avail["events"], avail["good"], avail["exact"]) == (60, 54, True)
        assert avail["sli"] == pytest.approx(0.9) and avail["objective"] == 0.99
        assert avail["budget_remaining"] == pytest.approx(1 - 6 / 0.6)
        assert avail["budget_remaining_events"] == pytest.approx(0.6 - 6)
        assert (avail["window"], avail["source"], avail["kind"]) == ("1h", "all", "availability")
        assert set(avail["burn_rates"]) == {"1m", "5m", "6m"}
        # overspent (and burning, the last result failed): exhausted now
        assert avail["exhausted_at"] is not None and avail["since"] is not None
        exhausted = datetime.fromisoformat(avail["exhausted_at"]).timestamp()
        assert now <= exhausted <= time.time()
        assert avail["alert_state"] == "inactive"
        # both targets; bad: failed (6 each) or slower than 1 s (12 others each)
        assert (fast["events"], fast["good"]) == (120, 120 - 2 * (6 + 12))
        detail = client.get("/api/v1/slos/avail").json()
        # The list's figures are summed by the database, the detail's from the minutes: equal.
        same = [k for k in avail if k != "exhausted_at"]  # "now": each request's own
        assert {k: detail[k] for k in same} == {k: avail[k] for k in same}
        assert len(detail["burn_down"]) == len(detail["burn_down_ts"])
        assert detail["burn_down"][0] == 1.0
        assert detail["burn_down"][-1] == pytest.approx(avail["budget_remaining"])
        assert client.get("/api/v1/slos/nope").status_code == 404
        schema = client.get("/openapi.json").json()
        assert "/api/v1/slos" in schema["paths"]
        metrics = client.get("/metrics").text
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("llmpulse_slo_")
    }
    assert values == {
        'llmpulse_slo_sli{sli="availability",slo="avail"}': pytest.approx(0.9),
        'llmpulse_slo_sli{sli="latency",slo="fast"}': pytest.approx(84 / 120),
        'llmpulse_slo_objective{sli="availability",slo="avail"}': 0.99,
        'llmpulse_slo_objective{sli="latency",slo="fast"}': 0.9,
        'llmpulse_slo_budget_remaining{sli="availability",slo="avail"}': pytest.approx(-9),
        'llmpulse_slo_budget_remaining{sli="latency",slo="fast"}': pytest.approx(1 - 36 / 12),
    }
