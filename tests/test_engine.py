"""The alert lifecycle, driven directly with rule evaluations and a fake clock."""

from __future__ import annotations

import contextlib
import dataclasses

from llmpulse.alerts.engine import AlertRecord, AlertSettings, Engine
from llmpulse.alerts.model import AlertState
from llmpulse.alerts.silences import Silence
from llmpulse.alerts.window import Evaluation
from llmpulse.rules import DEFAULT_RULES

DOWN = DEFAULT_RULES["consecutive_unavailable"]
SLOW = DEFAULT_RULES["ttft_p95_high"]


class Harness:
    def __init__(self, targets=None, settings=None, records=()):
        self.sent = []
        self.engine = Engine(
            targets or {"openai": ["o1"], "anthropic": ["a1"]},
            lambda n, receivers, resend=False: self.sent.append(n),
            settings or AlertSettings(resolve_after_s=30, group_wait_s=2),
            records,
            official_status=lambda p: "minor" if p == "openai" else None,
        )

    def feed(self, target, provider, rule, active, now, value=1.0):
        ev = Evaluation(rule, active, value, f"{rule.id} {active}", holding=active)
        self.engine.observe(target, provider, [ev], now)
        self.engine.tick(now)

    def statuses(self):
        return [(n.status.value, n.rule, n.target) for n in self.sent]


def test_one_page_and_one_recovery_per_incident():
    h = Harness()
    for t in range(0, 100, 10):
        h.feed("a1", "anthropic", DOWN, True, t)
    for t in range(100, 200, 10):
        h.feed("a1", "anthropic", DOWN, False, t)
    assert h.statuses() == [
        ("firing", "consecutive_unavailable", "a1"),
        ("resolved", "consecutive_unavailable", "a1"),
    ]
    firing, resolved = h.sent
    assert firing.fingerprint == resolved.fingerprint
    assert resolved.ends_at is not None and firing.ends_at is None
    assert resolved.starts_at == firing.starts_at


def test_pending_for_duration_and_short_blips_never_page():
    h = Harness()
    rule = dataclasses.replace(SLOW, for_s=60)
    h.feed("o1", "openai", rule, True, 0)
    h.feed("o1", "openai", rule, True, 30)
    h.feed("o1", "openai", rule, False, 40)  # cleared while pending: nothing sent
    assert h.sent == []
    for t in range(100, 200, 10):
        h.feed("o1", "openai", rule, True, t)
    assert h.statuses() == [("firing", "ttft_p95_high", "o1")]
    assert h.sent[0].official_status == "minor"


def test_repeat_interval():
    h = Harness(settings=AlertSettings(repeat_interval_s=3600, resolve_after_s=0))
    for t in range(0, 7400, 100):
        h.feed("a1", "anthropic", DOWN, True, t)
    assert [s for s, *_ in h.statuses()] == ["firing", "firing", "firing"]  # at 100, 3700, 7300


def test_flapping_pages_once():
    h = Harness(
        settings=AlertSettings(resolve_after_s=0, flap_threshold=3, flap_resolve_after_s=600)
    )
    t = 0
    for _ in range(10):  # down 20 s, up 20 s, ten times
        h.feed("a1", "anthropic", DOWN, True, t)
        h.engine.tick(t + 3)  # the daemon ticks every second; group_wait is 2 s
        h.feed("a1", "anthropic", DOWN, False, t + 20)
        t += 40
    firing = [s for s in h.statuses() if s[0] == "firing"]
    assert len(firing) == 3  # then it is flapping and stays firing
    h.feed("a1", "anthropic", DOWN, False, t + 700)
    assert h.statuses()[-1][0] == "resolved"


def test_provider_level_alert_instead_of_one_per_model():
    h = Harness(targets={"openai": ["o1", "o2", "o3"], "anthropic": ["a1"]})
    for target in ("o1", "o2", "o3"):
        h.feed(target, "openai", DOWN, True, 10)
    h.engine.tick(13)
    assert h.statuses() == [("firing", "provider_down", "openai")]
    assert "all 3 targets failing" in h.sent[0].summary
    for target in ("o1", "o2", "o3"):
        h.feed(target, "openai", DOWN, False, 100)
    h.engine.tick(200)
    for target in ("o1", "o2", "o3"):
        h.feed(target, "openai", DOWN, False, 200)
    assert h.statuses() == [
        ("firing", "provider_down", "openai"),
        ("resolved", "provider_down", "openai"),
    ]


def test_one_model_down_pages_for_that_model_only():
    h = Harness(targets={"openai": ["o1", "o2"], "anthropic": ["a1"]})
    h.feed("o1", "openai", DOWN, True, 10)
    h.feed("o2", "openai", DOWN, False, 10)
    h.engine.tick(13)
    assert h.statuses() == [("firing", "consecutive_unavailable", "o1")]


def test_every_provider_down_says_it_is_probably_us():
    h = Harness(targets={"openai": ["o1", "o2"], "anthropic": ["a1", "a2"]})
    for target, provider in (
        ("o1", "openai"),
        ("o2", "openai"),
        ("a1", "anthropic"),
        ("a2", "anthropic"),
    ):
        h.feed(target, provider, DOWN, True, 10)
    h.engine.tick(13)
    assert h.statuses() == [("firing", "all_providers_down", "*")]
    assert "probably on our side" in h.sent[0].summary


def test_silence_holds_back_pages_but_not_state():
    h = Harness()
    h.engine.silences = [Silence("s1", starts_at=0, ends_at=100, provider="anthropic")]
    for t in range(0, 150, 10):
        h.feed("a1", "anthropic", DOWN, True, t)
    # Silenced until 100, then the still-firing alert is sent.
    assert h.statuses() == [("firing", "consecutive_unavailable", "a1")]
    assert h.sent[0].starts_at.timestamp() == 0
    h2 = Harness()
    h2.engine.silences = [Silence("s2", starts_at=0, ends_at=1000, rule="consecutive_*")]
    for t in range(0, 100, 10):
        h2.feed("a1", "anthropic", DOWN, t < 50, t)
    assert h2.sent == []  # fired and resolved inside the silence
    assert h2.engine.records[next(iter(h2.engine.records))].state is AlertState.RESOLVED


def test_restart_does_not_page_again_and_still_recovers():
    h = Harness()
    for t in range(0, 50, 10):
        h.feed("a1", "anthropic", DOWN, True, t)
    saved = [AlertRecord.from_json(r.to_json()) for r in h.engine.take_dirty()]
    restarted = Harness(records=saved)
    restarted.feed("a1", "anthropic", DOWN, True, 60)
    assert restarted.sent == []
    for t in range(70, 120, 10):
        restarted.feed("a1", "anthropic", DOWN, False, t)
    assert restarted.statuses() == [("resolved", "consecutive_unavailable", "a1")]


def test_insufficient_data_changes_nothing():
    h = Harness()
    h.feed("a1", "anthropic", DOWN, True, 0)
    h.feed("a1", "anthropic", DOWN, None, 100)
    assert h.statuses() == [("firing", "consecutive_unavailable", "a1")]


def test_official_status_alert():
    h = Harness()
    h.engine.observe_official("openai", "major", "Partial System Outage", 0)
    h.engine.observe_official("openai", "none", "All Systems Operational", 60)
    assert [(n.status.value, n.rule, n.severity.value) for n in h.sent] == [
        ("firing", "official_status", "critical"),
        ("resolved", "official_status", "critical"),
    ]


def test_hard_outage_trips_three_rules_but_pages_once():
    h = Harness()
    warn, crit = DEFAULT_RULES["error_rate_warning"], DEFAULT_RULES["error_rate_critical"]
    h.feed("a1", "anthropic", warn, True, 0)
    h.feed("a1", "anthropic", crit, True, 1)
    h.feed("a1", "anthropic", DOWN, True, 1.5)
    h.engine.tick(5)
    assert [(n.status.value, n.rule, n.severity.value) for n in h.sent] == [
        ("firing", "consecutive_unavailable", "critical")
    ]
    for rule in (DOWN, crit, warn):
        h.feed("a1", "anthropic", rule, False, 100)
    h.engine.tick(200)
    for rule in (DOWN, crit, warn):
        h.feed("a1", "anthropic", rule, False, 200)
    assert [n.status.value for n in h.sent] == ["firing", "resolved"]
    assert h.sent[0].fingerprint == h.sent[1].fingerprint


def test_escalation_from_warning_to_critical_pages_again():
    h = Harness()
    warn = dataclasses.replace(DEFAULT_RULES["error_rate_warning"], for_s=0)
    crit = DEFAULT_RULES["error_rate_critical"]
    h.feed("a1", "anthropic", warn, True, 0)
    h.engine.tick(5)
    h.feed("a1", "anthropic", crit, True, 60)
    assert [(n.rule, n.severity.value) for n in h.sent] == [
        ("error_rate_warning", "warning"),
        ("error_rate_critical", "critical"),
    ]


def test_a_failed_hand_over_is_retried_not_lost():
    attempts = []

    def flaky(notification, receivers, resend=False):
        attempts.append(notification.status.value)
        if len(attempts) in (1, 3):  # the first firing and the first resolved hand-over fail
            raise OSError("disk full")

    engine = Engine({"anthropic": ["a1"]}, flaky, AlertSettings(resolve_after_s=0, group_wait_s=0))
    ev = Evaluation(DOWN, True, 3.0, "down", holding=True)
    engine.observe("a1", "anthropic", [ev], 0)
    engine.tick(1)  # group flush: hand-over fails
    engine.tick(2)  # retried
    clear = Evaluation(DOWN, False, 0.0, "up", holding=False)
    with contextlib.suppress(OSError):  # the resolution's hand-over fails inside observe()
        engine.observe("a1", "anthropic", [clear], 10)
    engine.tick(11)
    assert attempts == ["firing", "firing", "resolved", "resolved"]
    engine.tick(12)
    assert len(attempts) == 4  # delivered once each, nothing repeated
