"""What a config will alert on, before anything runs (``llmpulse check-config``): every rule in
effect per target with its settings resolved (defaults, then the config's, the provider's and
the target's overrides), the per-provider rules, the budget alerts of each gateway key and team
with a budget, the custom rules with what they select, each SLO's burn-rate alerts, and the
reconciliation of each provider with an admin key."""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from llmpulse.alerts import budgets
from llmpulse.alerts.metric_rules import format_value
from llmpulse.config import Config
from llmpulse.config.rules import MetricRule
from llmpulse.config.slos import Slo, duration_label
from llmpulse.durations import format_duration
from llmpulse.rules import (
    BILLING_DRIFT_RULE,
    BUDGET_EXHAUSTED,
    BUDGET_RULES,
    BUDGET_WARNING,
    DRILL_RULES,
    FAILOVER_PATH_BROKEN,
    GROUP_RULES,
    METRIC_RULES,
    SLO_BURN_RULE,
    STORE_RULES,
    THRESHOLD_UNITS,
    RuleSpec,
    Severity,
    Unit,
    group_subject,
)


@dataclasses.dataclass(frozen=True, slots=True)
class RuleInEffect:
    """One rule as it applies to one subject: a target, a provider (``*``: all of them), or
    the subjects a custom rule's ``by`` and ``match`` choose."""

    subject: str
    rule: str
    kind: str  # built-in | custom | slo | budget
    threshold: str  # in the rule's unit, as a summary shows it
    threshold_value: float | None  # the same in the unit's base (seconds, fractions, ...)
    unit: str | None
    window_s: float
    for_s: float
    min_samples: int
    severity: str
    enabled: bool
    detail: str = ""  # what else decides it (a custom rule's metric, match, by)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def rules_in_effect(config: Config, target_glob: str = "*") -> list[RuleInEffect]:
    """Per target matching ``target_glob``, its built-in rules; then the per-provider rules
    and the custom rules."""
    out = []
    targets = [t for t in config.targets if fnmatch.fnmatchcase(t.name, target_glob)]
    for t in targets:
        for spec in config.target_rules(t).values():
            if spec.id in (*STORE_RULES, *BUDGET_RULES, *DRILL_RULES, *GROUP_RULES):
                continue  # judged per provider, key and team, failover path and group: below
            threshold, value, detail = _threshold(spec), None, ""
            if spec.id == "tps_low":
                floor = t.tps_floor if t.tps_floor is not None else spec.threshold
                threshold = format_value(Unit.TOKENS_PER_S, floor) if floor else "no floor"
                value = floor or None
            elif spec.id == "model_deprecated":
                threshold = f"{spec.threshold / 86400:g} days' notice"
                detail = f"retires {t.retires}" if t.retires else "no retirement date known"
            elif spec.id in METRIC_RULES:
                metric, sources = METRIC_RULES[spec.id]
                detail = f"{metric} > threshold, on {', '.join(sources)} results"
            unit = THRESHOLD_UNITS[spec.id]
            out.append(_row(t.name, spec, "built-in", threshold, detail, unit, value))
    providers = sorted({t.provider for t in config.targets})
    for provider in (*providers, "*"):
        for rule_id in STORE_RULES:
            spec = config.provider_rules(None if provider == "*" else provider)[rule_id]
            detail = f"minimum ${spec.min_usd:g}" if spec.min_usd else ""
            unit = THRESHOLD_UNITS[rule_id]
            out.append(_row(provider, spec, "built-in", _threshold(spec), detail, unit))
    out += _budgets(config)
    if config.gateway is not None and config.gateway.groups:
        # Per failover path of the gateway's groups, from drill results (README "Failover
        # drills"): only the global overrides apply.
        spec = config.provider_rules(None)[FAILOVER_PATH_BROKEN]
        drills = config.gateway.settings.drills
        when = f"scheduled {drills.schedule} ({drills.timezone})" if drills else "llmpulse drill"
        out.append(
            RuleInEffect("failover paths", spec.id, "built-in", "latest drill failed", None, None,
                         0.0, 0.0, 1, str(spec.severity), spec.enabled, f"drills: {when}")
        )  # fmt: skip
    groups = config.gateway.groups if config.gateway else ()
    for group in (g for g in groups if not g.wildcard):
        for rule_id in GROUP_RULES:
            spec = config.provider_rules(None)[rule_id]
            detail = "no fallback of the group is ready (gateway.readiness)"
            out.append(_row(group_subject(group.name), spec, "built-in", "", detail, None))
    for rule in config.custom_rules:
        out.append(_custom(rule))
    for s in config.slos:
        out += _slo(s)
    for b in config.billing:
        detail = (
            f"its bill vs measured, over the last {b.days} UTC days, each read "
            f"{format_duration(b.settle_s) if b.settle_s else 'as soon as it'} after it ends"
        )
        threshold = f"{b.threshold:.0%} and ${b.min_usd:g}"
        out.append(
            RuleInEffect(b.provider, BILLING_DRIFT_RULE, "built-in", threshold, b.threshold,
                         str(Unit.FRACTION), 86400.0, 0.0, 1, str(Severity.WARNING), True, detail)
        )  # fmt: skip
    return out


def _budgets(config: Config) -> list[RuleInEffect]:
    """Per gateway key and team with a budget, its three budget alerts (``alerts.budgets``):
    thresholds are the budget's, severity and enabled the rules' (global overrides only)."""
    rules = config.provider_rules(None)
    rows = []
    for h in budgets.holders(config):
        b = h.budget
        budget = f"${b.max_usd:,.2f} per {b.period}"
        for rule_id in BUDGET_RULES:
            spec = rules[rule_id]
            enabled = spec.enabled
            if rule_id == BUDGET_WARNING:
                if b.warn_at is None:
                    threshold, value, enabled = "never (warn_at: null)", None, False
                else:
                    value = b.warn_at * b.max_usd
                    threshold = f"{format_value(Unit.USD, value)} ({b.warn_at:.0%} of {budget})"
                detail = "spend over the period reaches warn_at"
            elif rule_id == BUDGET_EXHAUSTED:
                threshold, value = budget, b.max_usd
                detail = "spend over the period reaches the budget"
            else:
                threshold, value = budget, b.max_usd
                detail = (
                    "at the higher of the last 24 h's and 7 d's rate, spend reaches the budget "
                    + ("before the month ends" if not b.period.rolling else "within the window")
                )
            rows.append(
                RuleInEffect(h.subject, rule_id, "budget", threshold, value, str(Unit.USD),
                             b.period.seconds, 0.0, 1, str(spec.severity), enabled, detail)
            )  # fmt: skip
    return rows


def _slo(s: Slo) -> list[RuleInEffect]:
    """An SLO's burn-rate alerts (one alert, ``slo_burn_rate``, at the worst that holds)."""
    sli = s.sli if s.threshold_s is None else f"{s.sli} ≤ {format_duration(s.threshold_s)}"
    rows = []
    for a in s.alerts:
        detail = (
            f"{sli} {s.objective:.4g} over {s.window_label}, also over "
            f"{duration_label(a.short_s)}; of {s.selection.describe()}"
        )
        rows.append(
            RuleInEffect(s.name, SLO_BURN_RULE, "slo", f"{a.burn_rate:g}× burn", a.burn_rate,
                         None, a.long_s, 0.0, 1, str(a.severity), True, detail)
        )  # fmt: skip
    return rows


def _row(
    subject: str,
    spec: RuleSpec,
    kind: str,
    threshold: str,
    detail: str,
    unit: Unit | None,
    value: float | None = None,
) -> RuleInEffect:
    """``value``: the threshold in base units when it is not the rule's own (a tps floor)."""
    if value is None and unit is not None:
        value = spec.threshold
    return RuleInEffect(
        subject, spec.id, kind, threshold, value,
        None if unit is None else str(unit), spec.window_s, spec.for_s, spec.min_samples,
        str(spec.severity), spec.enabled, detail,
    )  # fmt: skip


def _threshold(spec: RuleSpec) -> str:
    unit = THRESHOLD_UNITS[spec.id]
    return "—" if unit is None else format_value(unit, spec.threshold)


def _custom(rule: MetricRule) -> RuleInEffect:
    subjects = {"target": "each target", "provider": "each provider", "model": "each model"}
    threshold = f"{rule.op} {format_value(rule.metric.unit, rule.spec.threshold)}"
    detail = f"{rule.metric.name} ({rule.metric.unit}) of {rule.selection.describe()}"
    subject = subjects.get(rule.by, "all targets together")
    return _row(subject, rule.spec, "custom", threshold, detail, rule.metric.unit)
