"""The model lifecycle rules: results into a real rule window, its evaluations into the engine."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

import pytest

from conftest import make_target, patch, sim_model
from llmpulse.alerts.engine import AlertRecord, AlertSettings, Engine
from llmpulse.alerts.model import Notification
from llmpulse.alerts.window import TargetWindow
from llmpulse.config import ConfigError, parse_config
from llmpulse.errors import ErrorClass
from llmpulse.probe import Prober
from llmpulse.result import CheckKind, CheckResult
from llmpulse.rules import DEFAULT_RULES, RuleOverride, RuleSpec, resolve_rules
from llmpulse.target import CANARY, Target

T0 = 1_800_000_000.0
LIFECYCLE = ("model_changed", "model_unlisted", "model_deprecated", "canary_changed")


def answer(t, model="gpt-4o-2024-08-06", fingerprint="fp_a", kind=CheckKind.STREAM):
    return CheckResult(
        target="o1", provider="openai", model="gpt-4o", check=kind,
        timestamp=datetime.fromtimestamp(T0 + t, UTC), ok=True,
        response_model=model, system_fingerprint=fingerprint,
    )  # fmt: skip


def models_check(t, listed):
    return CheckResult(
        target="o1", provider="openai", model="gpt-4o", check=CheckKind.MODELS,
        timestamp=datetime.fromtimestamp(T0 + t, UTC), ok=True, model_listed=listed,
    )  # fmt: skip


class Monitor:
    """One target's rule window feeding an engine, as ``monitor.alerting`` does."""

    def __init__(self, rules=None, records=(), retires=None):
        self.sent: list[Notification] = []
        self.rules: dict[str, RuleSpec] = {
            k: v for k, v in (rules or DEFAULT_RULES).items() if k in LIFECYCLE
        }
        self.retires = retires
        self.window = TargetWindow(horizon_s=300)
        self.engine = Engine(
            {"openai": ["o1"]},
            lambda n, receivers, resend=False: self.sent.append(n),
            AlertSettings(resolve_after_s=10, group_wait_s=1),
            records,
        )

    def feed(self, *results):
        for r in results:
            self.window.add(r)
        now = results[-1].timestamp.timestamp()
        evaluations = self.window.evaluate(self.rules, now, retires=self.retires)
        self.engine.observe("o1", "openai", evaluations, now)
        self.engine.tick(now)

    def notices(self, rule="model_changed"):
        return [(n.status.value, n.previous, n.current) for n in self.sent if n.rule == rule]


def test_first_model_is_no_change_and_a_change_is_one_notice_that_resolves_itself():
    m = Monitor()
    for t in range(0, 60, 5):
        m.feed(answer(t))
    assert m.sent == []  # what is served at start is no change
    m.feed(answer(60, model="gpt-4o-2024-11-20", fingerprint="fp_b"))  # both at once
    for t in range(65, 200, 5):
        m.feed(answer(t, model="gpt-4o-2024-11-20", fingerprint="fp_b"))
    old, new = "gpt-4o-2024-08-06 (fp_a)", "gpt-4o-2024-11-20 (fp_b)"
    assert m.notices() == [("firing", old, new), ("resolved", old, new)]
    firing, resolved = m.sent
    assert firing.severity == "warning" and firing.summary == f"served model changed: {old} → {new}"
    assert firing.to_json()["previous"] == old and firing.to_json()["current"] == new
    assert Notification.from_json(firing.to_json()) == firing
    # resolved by itself: clear from the first evaluation over 1 m (the window) after the
    # change, at 125 s, then resolve_after (10 s) later
    assert resolved.ends_at == datetime.fromtimestamp(T0 + 125 + 10, UTC)


def test_an_answer_without_a_fingerprint_keeps_it_and_a_fingerprint_change_is_a_change():
    m = Monitor()
    m.feed(answer(0))
    m.feed(answer(5, fingerprint=None))  # Anthropic and Gemini send none
    m.feed(answer(6, kind=CheckKind.MODELS, model=None, fingerprint=None))
    assert m.sent == []
    m.feed(answer(10, fingerprint="fp_c"))
    assert m.notices() == [("firing", "gpt-4o-2024-08-06 (fp_a)", "gpt-4o-2024-08-06 (fp_c)")]


def test_a_late_answer_from_before_the_change_is_not_a_change_back():
    m = Monitor()
    m.feed(answer(0), answer(10, model="b"), answer(5))  # a batch in any order
    assert m.notices() == [("firing", "gpt-4o-2024-08-06 (fp_a)", "b (fp_a)")]


def test_each_change_is_a_notice_of_its_own_even_while_the_last_is_shown():
    m = Monitor()
    m.feed(answer(0, model="a"))
    m.feed(answer(10, model="b"))
    m.feed(answer(20, model="c"))
    m.feed(answer(30, model="c"))
    assert m.notices() == [
        ("firing", "a (fp_a)", "b (fp_a)"),
        ("resolved", "a (fp_a)", "b (fp_a)"),
        ("firing", "b (fp_a)", "c (fp_a)"),
    ]
    assert len({n.fingerprint for n in m.sent}) == 1  # one alert, an episode per change


def saved(m: Monitor) -> list[AlertRecord]:
    return [AlertRecord.from_json(r.to_json()) for r in m.engine.records.values()]


def test_a_restart_refilling_the_windows_does_not_announce_a_change_again():
    history = [answer(0, model="a"), answer(10, model="b"), answer(20, model="b")]
    before = Monitor()
    for r in history:
        before.feed(r)
    assert before.notices() == [("firing", "a (fp_a)", "b (fp_a)")]
    after = Monitor(records=saved(before))  # firing when it stopped
    after.feed(*history, answer(30, model="b"))
    for t in range(35, 200, 5):
        after.feed(answer(t, model="b"))
    assert after.notices() == [("resolved", "a (fp_a)", "b (fp_a)")]  # only its end

    # Resolved before the restart, and the change still within a (now longer) window.
    longer = resolve_rules({"model_changed": RuleOverride(window=3600)})
    again = Monitor(rules=longer, records=saved(after))
    again.feed(*history, answer(200, model="b"))
    assert again.sent == []
    again.feed(answer(210, model="c"))  # a new change still pages
    assert again.notices() == [("firing", "b (fp_a)", "c (fp_a)")]


def test_model_unlisted_fires_while_the_models_list_lacks_the_model():
    m = Monitor()
    m.feed(models_check(0, True))
    m.feed(models_check(10, False))
    m.feed(answer(15))  # inference still answers: it is the list that says it
    for t in range(20, 60, 10):
        m.feed(models_check(t, True))
    assert m.notices("model_unlisted") == [("firing", None, None), ("resolved", None, None)]
    firing = m.sent[0]
    assert firing.severity == "critical"
    assert firing.summary == "gpt-4o is missing from the provider's models list"


def retirement(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def test_model_deprecated_within_the_notice_period():
    now = datetime.fromtimestamp(T0, UTC)  # 2027-01-15T08:00Z
    assert now.date() == dt.date(2027, 1, 15)
    far = Monitor(retires=retirement("2027-03-01"))
    far.feed(answer(0))
    assert far.sent == []
    near = Monitor(retires=retirement("2027-02-01"))
    near.feed(answer(0))
    [firing] = near.sent
    assert (firing.rule, firing.severity, firing.threshold) == (
        "model_deprecated",
        "warning",
        30 * 86400,
    )
    assert firing.value == pytest.approx(retirement("2027-02-01") - T0)
    assert firing.summary == "gpt-4o retires on 2027-02-01 (in 16 days; notice 30 days)"
    shorter = resolve_rules({"model_deprecated": RuleOverride(threshold="14d")})
    notice = Monitor(rules=shorter, retires=retirement("2027-02-01"))
    notice.feed(answer(0))
    assert notice.sent == []
    past = Monitor(retires=retirement("2027-01-01"))
    past.feed(answer(0))
    assert "already past" in past.sent[0].summary
    unknown = Monitor()
    unknown.feed(answer(0))
    assert unknown.sent == []


def test_lifecycle_rules_are_overridable_and_retires_is_a_target_setting():
    config = parse_config(
        {
            "rules": {"model_changed": {"severity": "critical", "window": "5m"}},
            "providers": {"openai": {"rules": {"model_unlisted": {"enabled": False}}}},
            "targets": [{"provider": "openai", "model": "gpt-4o", "retires": "2027-01-15"}],
        },
        env={"OPENAI_API_KEY": "sk-test"},
    )
    [target] = config.targets
    assert target.retires == dt.date(2027, 1, 15)
    assert target.retires_at == retirement("2027-01-15")
    rules = resolve_rules(config.rules, config.providers["openai"].rules, target.rules)
    assert rules["model_changed"].severity == "critical" and rules["model_changed"].window_s == 300
    assert not rules["model_unlisted"].enabled
    assert Target("t", "openai", "openai", "m", "http://x").retires_at is None


@pytest.mark.parametrize("value", ["soon", "2027-13-01", [2027]])
def test_a_bad_retires_date_names_its_path(value):
    with pytest.raises(ConfigError, match=r"^targets\[0\]\.retires: "):
        parse_config(
            {"targets": [{"provider": "openai", "model": "m", "retires": value}]},
            env={"OPENAI_API_KEY": "sk-test"},
        )


def test_a_bad_lifecycle_override_names_its_path():
    with pytest.raises(ConfigError, match=r"rules\.model_deprecated\.threshold"):
        parse_config({"rules": {"model_deprecated": {"threshold": "soonish"}}}, env={})


# --- canary_changed: the correctness canary's answer ------------------------------------


def canary(t, excerpt, model="gpt-4o-2024-08-06", fingerprint="fp_a", wrong=False):
    result = answer(t, model, fingerprint, kind=CheckKind.INFERENCE)
    result.check, result.answer_excerpt = CANARY, excerpt
    if wrong:
        result.ok, result.error_class = False, ErrorClass.ASSERTION
    return result


def test_a_changed_canary_answer_from_the_same_model_is_a_notice_with_its_evidence():
    m = Monitor()
    m.feed(canary(0, "391"), canary(5, " 391\n"))  # the same answer, spaced otherwise
    assert m.sent == []
    m.feed(canary(10, "391."))
    old, new = (
        "gpt-4o-2024-08-06 (fp_a): answered '391'",
        "gpt-4o-2024-08-06 (fp_a): answered '391.'",
    )
    assert m.notices("canary_changed") == [("firing", old, new)]
    assert m.sent[0].summary == f"canary answer changed: {old} → {new}"
    for t in range(15, 200, 5):
        m.feed(canary(t, "391."))
    assert m.notices("canary_changed") == [("firing", old, new), ("resolved", old, new)]


def test_another_model_may_word_it_otherwise_but_not_answer_wrong():
    m = Monitor()
    m.feed(canary(0, "391"))
    m.feed(canary(10, "The answer is 391.", model="gpt-4o-2024-11-20"))
    assert m.notices("canary_changed") == [] and m.notices("model_changed") != []
    m.feed(canary(20, "392", model="gpt-4o-2024-11-20", fingerprint="fp_b", wrong=True))
    assert m.notices("canary_changed") == [(
        "firing",
        "gpt-4o-2024-11-20 (fp_a): answered 'The answer is 391.'",
        "gpt-4o-2024-11-20 (fp_b): answered '392' (wrong)",
    )]  # fmt: skip


def test_a_first_canary_answer_that_is_wrong_is_a_notice_and_a_late_one_changes_nothing():
    m = Monitor()
    m.feed(canary(10, "17"), canary(0, "391"), canary(5, "391"))  # a batch in any order
    assert m.notices("canary_changed") == []  # 17 was its first answer and right, as far as known
    wrong = Monitor()
    wrong.feed(canary(0, "17", wrong=True))
    assert wrong.notices("canary_changed") == [
        ("firing", None, "gpt-4o-2024-08-06 (fp_a): answered '17' (wrong)")
    ]
    assert wrong.sent[0].summary.startswith("canary answered wrong: ")


async def test_the_simulator_answering_otherwise_fires_canary_changed(sim):
    model = sim_model(sim, ttft="10ms", answer="391", served_model="snap-1")
    target = make_target(sim, "openai", model, checks=[], canary=True)
    (probe,) = target.probes
    m = Monitor()
    async with Prober() as prober:
        for _ in range(2):
            m.feed(await prober.check(target, probe))
        assert m.sent == []
        patch(sim, model, answer="389")  # the same model, now wrong
        result = await prober.check(target, probe)
    assert result.error_class is ErrorClass.ASSERTION and result.answer_excerpt == "389"
    assert result.to_json()["answer_hash"] == result.answer_hash != None  # noqa: E711
    m.feed(result)
    assert m.notices("canary_changed") == [
        ("firing", "snap-1 (fp_sim): answered '391'", "snap-1 (fp_sim): answered '389' (wrong)")
    ]
