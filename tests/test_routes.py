"""Routes, escalation and acknowledgement: which notifier gets which notice, on a fake clock."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from llmpulse.alerts.engine import AlertRecord, AlertSettings, Engine
from llmpulse.alerts.model import Acknowledgement, AlertState, Notification
from llmpulse.alerts.routes import Routes
from llmpulse.alerts.silences import Silence
from llmpulse.alerts.window import Evaluation
from llmpulse.config import ConfigError, parse_config
from llmpulse.config.alerting import RouteConfig
from llmpulse.rules import DEFAULT_RULES, RuleSpec

DOWN = DEFAULT_RULES["consecutive_unavailable"]
SLOW = DEFAULT_RULES["ttft_p95_high"]  # a warning
WARN = dataclasses.replace(DEFAULT_RULES["error_rate_warning"], for_s=0)
CRIT = DEFAULT_RULES["error_rate_critical"]
NOTIFIERS = ["chat", "pager", "phone", "ml-team", "am"]
ROUTES: list[dict[str, Any]] = [
    {
        "match": {"severity": "critical"},
        "notify": ["pager", "chat"],
        "escalate": [
            {"after": "10m", "notify": ["phone"]},
            {"after": "30m", "notify": ["ml-team"]},
        ],
    },
    {"match": {"provider": ["groq", "together"]}, "notify": ["ml-team"], "continue": True},
    {"notify": ["chat"]},
]


def routes(raw: list[dict[str, Any]] | None = ROUTES) -> Routes:
    configs = None if raw is None else [RouteConfig.model_validate(r) for r in raw]
    return Routes(configs, NOTIFIERS)


class Harness:
    def __init__(self, raw=ROUTES, records=(), resend=None, maintenance=frozenset()):
        self.sent: list[tuple[Notification, tuple[str, ...], bool]] = []
        self.engine = Engine(
            {"openai": ["o1", "o2"], "groq": ["g1"], "anthropic": ["a1"]},
            self.notify,
            AlertSettings(resolve_after_s=0, group_wait_s=0, repeat_interval_s=3600),
            records,
            routes=routes(raw),
            resend_intervals=resend,
            in_maintenance=lambda provider: provider in maintenance,
            alert_url=lambda fp: f"https://pulse.example.com/alerts#alert-{fp}",
        )

    def notify(self, n: Notification, receivers, *, resend: bool = False) -> None:
        self.sent.append((n, tuple(receivers), resend))

    def feed(self, target: str, provider: str, rule: RuleSpec, active: bool, now: float) -> None:
        ev = Evaluation(rule, active, 1.0, f"{rule.id} {active}", holding=active)
        self.engine.observe(target, provider, [ev], now)
        self.engine.tick(now)

    def log(self) -> list[tuple[str, int, tuple[str, ...]]]:
        return [(str(n.status), n.escalation_step, to) for n, to, _ in self.sent]

    def ack(self, fp: str, now: float, by: str = "ana", via: str | None = None) -> None:
        record = self.engine.records[fp]
        ack = Acknowledgement(fp, record.episode, by, now, via=via)
        assert self.engine.sync_acknowledgements({fp: ack}, now) == []
        self.acks = {fp: ack}


def test_first_match_wins_continue_goes_on_and_globs_match() -> None:
    r = routes()

    def to(**labels: str) -> tuple[str, ...]:
        return r.delivery({"severity": "warning", "rule": "x", "target": "t", **labels}).notify

    assert to(severity="critical", provider="openai") == ("pager", "chat")
    assert to(provider="groq") == ("ml-team", "chat")  # continue: the catch-all too
    assert to(provider="openai") == ("chat",)
    assert routes(None).delivery({"severity": "warning"}).notify == tuple(NOTIFIERS)
    assert (
        routes([{"match": {"rule": "ttft_*"}, "notify": ["chat"]}])
        .delivery({"rule": "error_rate_warning"})
        .notify
        == ()
    )  # no route matches: nobody


def test_a_ttft_warning_reaches_only_the_warning_route() -> None:
    h = Harness()
    h.feed("o1", "openai", SLOW, True, 0)
    assert h.log() == [("firing", 0, ("chat",))]
    h.feed("o1", "openai", SLOW, True, 3000)  # the warning route does not escalate
    h.feed("o1", "openai", SLOW, True, 3600)  # it repeats, to the same notifiers
    h.feed("o1", "openai", SLOW, False, 3601)
    assert h.log() == [
        ("firing", 0, ("chat",)),
        ("firing", 0, ("chat",)),
        ("resolved", 0, ("chat",)),
    ]


def test_an_unacknowledged_outage_escalates_step_by_step_then_resolves_to_all_paged() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    h.engine.tick(1)
    assert h.log() == [("firing", 0, ("pager", "chat"))]
    h.engine.tick(599)
    assert len(h.sent) == 1
    h.engine.tick(600)
    assert h.log()[-1] == ("firing", 1, ("phone",))
    first, escalation = h.sent[0][0], h.sent[1][0]
    assert escalation.fingerprint == first.fingerprint
    assert escalation.starts_at == first.starts_at
    assert escalation.url == f"https://pulse.example.com/alerts#alert-{first.fingerprint}"
    h.engine.tick(1800)
    assert h.log()[-1] == ("firing", 2, ("ml-team",))
    h.engine.tick(3000)
    assert len(h.sent) == 3  # no step left
    h.feed("o1", "openai", DOWN, False, 3001)
    assert h.log()[-1] == ("resolved", 2, ("pager", "chat", "phone", "ml-team"))


def test_acknowledgement_stops_escalation_and_repeats_and_tells_the_paged() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    fp = h.sent[0][0].fingerprint
    h.engine.tick(600)  # escalated to the phone
    h.ack(fp, 700, by="ana")
    n, to, _ = h.sent[-1]
    assert (n.status, to) == (AlertState.ACKNOWLEDGED, ("pager", "chat", "phone"))
    assert n.acknowledged_by == "ana" and n.acknowledged_at is not None
    assert n.to_json()["acknowledged_at"].endswith("Z")
    count = len(h.sent)
    h.engine.sync_acknowledgements(h.acks, 701)  # applied once, not again
    for t in (1800, 3700, 8000):  # no step 2, no repeat after repeat_interval
        h.engine.tick(t)
    assert len(h.sent) == count
    h.feed("o1", "openai", DOWN, False, 8001)
    n, to, _ = h.sent[-1]
    assert (n.status, n.acknowledged_by, to) == (
        AlertState.RESOLVED,
        "ana",
        ("pager", "chat", "phone"),
    )
    # The episode is over: the acknowledgement is stale, and a new firing pages afresh.
    assert h.engine.sync_acknowledgements(h.acks, 8002) == [h.acks[fp]]
    h.feed("o1", "openai", DOWN, True, 9000)
    assert h.log()[-1] == ("firing", 0, ("pager", "chat"))
    assert h.sent[-1][0].acknowledged_by is None


def test_an_acknowledgement_taken_back_lets_escalation_resume() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    h.ack(h.sent[0][0].fingerprint, 60)
    h.engine.tick(700)
    assert [s for s, *_ in h.log()] == ["firing", "acknowledged"]
    h.engine.sync_acknowledgements({}, 701)  # deleted from the store
    h.engine.tick(702)
    assert h.log()[-1] == ("firing", 1, ("phone",))


def test_an_acknowledgement_from_pagerduty_is_not_echoed_back_to_it() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    h.ack(h.sent[0][0].fingerprint, 60, by="Ana (PagerDuty)", via="pager")
    assert h.log()[-1] == ("acknowledged", 0, ("chat",))


def test_a_warning_escalating_to_critical_takes_the_critical_route_and_clock() -> None:
    h = Harness()
    h.feed("a1", "anthropic", WARN, True, 0)
    fp = h.sent[0][0].fingerprint
    h.ack(fp, 30)  # acknowledged as a warning
    h.feed("a1", "anthropic", CRIT, True, 100)
    assert h.log() == [
        ("firing", 0, ("chat",)),
        ("acknowledged", 0, ("chat",)),
        ("firing", 0, ("pager", "chat")),  # the critical route, acknowledgement void
    ]
    assert h.sent[-1][0].acknowledged_by is None
    assert h.engine.sync_acknowledgements(h.acks, 101) == [h.acks[fp]]  # of the warning
    h.engine.tick(100 + 599)
    assert len(h.sent) == 3
    h.engine.tick(100 + 600)  # the clock started at the escalation
    assert h.log()[-1] == ("firing", 1, ("phone",))


def test_grouped_alerts_route_on_the_groups_labels() -> None:
    h = Harness(
        [
            {"match": {"rule": "provider_down"}, "notify": ["pager"]},
            {"match": {"target": "o*"}, "notify": ["ml-team"]},
            {"notify": ["chat"]},
        ]
    )
    for target in ("o1", "o2"):
        h.engine.observe(target, "openai", [Evaluation(DOWN, True, 1.0, "down", True)], 10)
    h.engine.tick(11)
    assert [(n.rule, to) for n, to, _ in h.sent] == [("provider_down", ("pager",))]


def test_without_routes_everyone_gets_everything_and_nothing_escalates() -> None:
    h = Harness(None)
    h.feed("o1", "openai", SLOW, True, 0)
    h.engine.tick(10_000)
    assert h.log() == [("firing", 0, tuple(NOTIFIERS)), ("firing", 0, tuple(NOTIFIERS))]


def test_receivers_that_forget_hear_of_a_firing_alert_again() -> None:
    h = Harness(None, resend={"am": 60.0})
    h.feed("o1", "openai", SLOW, True, 0)
    h.engine.tick(59)
    assert len(h.sent) == 1
    h.engine.tick(60)
    n, to, resend = h.sent[-1]
    assert (n.status, to, resend) == (AlertState.FIRING, ("am",), True)
    h.ack(h.sent[0][0].fingerprint, 61)
    h.engine.tick(121)
    assert [(str(n.status), to, r) for n, to, r in h.sent[-2:]] == [
        ("acknowledged", tuple(NOTIFIERS), False),
        ("acknowledged", ("am",), True),  # still firing for Alertmanager, acknowledged
    ]


def test_official_maintenance_holds_back_that_providers_pages() -> None:
    h = Harness(None, maintenance={"openai"})
    h.feed("o1", "openai", SLOW, True, 0)
    h.feed("a1", "anthropic", SLOW, True, 0)
    assert [n.provider for n, _, _ in h.sent] == ["anthropic"]


def test_a_restart_resumes_escalation_where_it_was() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    h.engine.tick(600)
    saved = [AlertRecord.from_json(r.to_json()) for r in h.engine.take_dirty()]
    again = Harness(records=saved)
    again.engine.tick(601)
    assert again.sent == []  # step 1 went out before the restart
    again.engine.tick(1800)
    assert again.log() == [("firing", 2, ("ml-team",))]


def test_route_config_errors_name_the_path() -> None:
    base = {
        "targets": [{"provider": "openai", "model": "m", "api_key": "os.environ/K"}],
        "notifiers": [{"type": "slack", "webhook_url": "os.environ/HOOK"}],
    }
    env = {"K": "k", "HOOK": "https://hooks.slack.com/services/x"}

    def error(alerting: dict[str, Any], notifiers: Any = None) -> str:
        raw = {**base, "alerting": alerting}
        if notifiers is not None:
            raw["notifiers"] = notifiers
        with pytest.raises(ConfigError) as exc:
            parse_config(raw, env=env)
        assert "\n" not in str(exc.value)
        return str(exc.value)

    assert error({"routes": [{"notify": ["pager"]}]}) == (
        "alerting.routes[0].notify[0]: unknown notifier 'pager'; the notifiers are: slack"
    )
    assert error(
        {"routes": [{"notify": ["slack"], "escalate": [{"after": "5m", "notify": ["x"]}]}]}
    ).startswith("alerting.routes[0].escalate[0].notify[0]: unknown notifier 'x'")
    assert "duplicate notifier name 'slack'" in error(
        {}, [base["notifiers"][0], base["notifiers"][0]]
    )
    assert error({"routes": [{"match": {"severity": 3}, "notify": ["slack"]}]}).startswith(
        "alerting.routes[0].match.severity"
    )
    assert error({"routes": [{"match": {"model": "x"}, "notify": ["slack"]}]}).startswith(
        "alerting.routes[0].match.model"
    )
    assert "in the order of their 'after'" in error(
        {
            "routes": [
                {
                    "notify": ["slack"],
                    "escalate": [
                        {"after": "30m", "notify": ["slack"]},
                        {"after": "10m", "notify": ["slack"]},
                    ],
                }
            ]
        }
    )
    named = {**base["notifiers"][0], "name": "chat"}  # a name replaces the type's
    ok = parse_config({**base, "notifiers": [named], "alerting": {"routes": ROUTES[2:]}}, env=env)
    assert ok.alerting.routes is not None and ok.alerting.routes[0].notify == ["chat"]


def test_an_alert_paged_before_routes_existed_resolves_to_its_route() -> None:
    h = Harness()
    h.feed("o1", "openai", DOWN, True, 0)
    saved = h.engine.take_dirty()
    old = []
    for record in saved:  # as a release before routes saved them: no `paged`, no clock
        data = record.to_json()
        for key in ("paged", "paged_at", "escalation_step", "resent_at"):
            data.pop(key)
        old.append(AlertRecord.from_json(data))
    upgraded = Harness(records=old)
    upgraded.feed("o1", "openai", DOWN, False, 10)
    assert upgraded.log() == [("resolved", 0, ("pager", "chat"))]


def test_an_escalation_in_severity_held_back_by_a_silence_pages_when_it_ends() -> None:
    h = Harness()
    h.feed("a1", "anthropic", WARN, True, 0)
    h.engine.silences = [Silence("s", 50, 200, provider="anthropic")]
    h.feed("a1", "anthropic", CRIT, True, 100)  # escalates inside the silence
    assert h.log() == [("firing", 0, ("chat",))]
    h.engine.tick(200)  # the silence is over: the critical route's page, not in 4 hours
    assert h.log()[-1] == ("firing", 0, ("pager", "chat"))


def test_the_official_status_escalating_takes_the_critical_route_and_a_downgrade_keeps_it() -> None:
    h = Harness()
    h.engine.observe_official("openai", "minor", "Degraded", 0)
    h.engine.tick(0)
    fp = h.sent[0][0].fingerprint
    h.ack(fp, 10)
    h.engine.observe_official("openai", "major", "Outage", 20)
    assert h.log()[-1] == ("firing", 0, ("pager", "chat"))
    assert h.sent[-1][0].severity == "critical" and h.sent[-1][0].acknowledged_by is None
    h.ack(fp, 30)
    h.engine.observe_official("openai", "minor", "Recovering", 40)  # still firing, milder
    record = h.engine.records[fp]
    assert record.severity == "critical" and record.acknowledged_by == "ana"
    assert h.engine.sync_acknowledgements(h.acks, 41) == []  # the acknowledgement holds
    h.engine.tick(10_000)
    assert [s for s, *_ in h.log()] == ["firing", "acknowledged", "firing", "acknowledged"]
