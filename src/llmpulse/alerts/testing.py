"""``llmpulse notify test``: one test alert to every channel, answers reported, nothing queued;
with ``--route``, where an example alert of each rule and severity would go, nothing sent."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp

from llmpulse.alerts import budgets
from llmpulse.alerts.engine import ALL
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.notifiers import DeliveryError, Notifier
from llmpulse.alerts.routes import Delivery, Routes
from llmpulse.alerts.slo import alert_provider
from llmpulse.config import Config
from llmpulse.rules import (
    ALL_PROVIDERS_RULE,
    BILLING_DRIFT_RULE,
    BUDGET_RULES,
    DEFAULT_RULES,
    GROUP_RULES,
    OFFICIAL_STATUS_RULE,
    PROVIDER_RULE,
    SLO_BURN_RULE,
    Severity,
    group_subject,
)


def sample_notification() -> Notification:
    return Notification(
        status=AlertState.FIRING,
        severity=Severity.WARNING,
        rule="test",
        target="llmpulse",
        provider="llmpulse",
        summary="Test alert from `llmpulse notify test`: this channel works.",
        value=None,
        threshold=None,
        starts_at=datetime.now(UTC),
        ends_at=None,
        fingerprint="test",
        test=True,
    )


async def send_test(notifiers: Sequence[Notifier]) -> list[tuple[str, bool, str]]:
    """(name, delivered, what the receiver answered) for every notifier, sent concurrently."""
    notification = sample_notification()
    async with aiohttp.ClientSession() as session:

        async def one(notifier: Notifier) -> tuple[str, bool, str]:
            try:
                return notifier.name, True, await notifier.send(notification, session)
            except DeliveryError as exc:
                return notifier.name, False, str(exc)

        return list(await asyncio.gather(*(one(n) for n in notifiers)))


@dataclasses.dataclass(frozen=True, slots=True)
class RouteExample:
    rule: str
    severity: Severity
    provider: str
    target: str
    delivery: Delivery


def route_examples(
    config: Config, provider: str | None = None, target: str | None = None
) -> list[RouteExample]:
    """Where an alert of every rule and severity would go, for an example target (the first
    configured one of ``provider``, or ``target``); grouped alerts carry the group's labels,
    the burn-rate alerts of the SLOs that select it their SLO's, and the budget alerts those of
    every key and team with a budget (``key:NAME``, ``team:NAME``, provider ``*``)."""
    example = next(
        (
            t
            for t in config.targets
            if (target is None or t.name == target) and (provider is None or t.provider == provider)
        ),
        None,
    )
    if example is None:
        raise LookupError(f"no configured target matches provider={provider} target={target}")
    routes = Routes(config.alerting.routes, [n.name for n in config.notifiers])
    subjects = [
        (rule, example.provider, example.name)
        for rule in DEFAULT_RULES
        if rule not in BUDGET_RULES and rule not in GROUP_RULES
    ]
    subjects += [
        (PROVIDER_RULE, example.provider, example.provider),
        (OFFICIAL_STATUS_RULE, example.provider, example.provider),
        (BILLING_DRIFT_RULE, example.provider, example.provider),
        (ALL_PROVIDERS_RULE, ALL, ALL),
    ]
    subjects += [
        (SLO_BURN_RULE, alert_provider(s, config.targets), s.name)
        for s in config.slos
        if s.selection.admits_target(example.name)
    ]
    subjects += [(rule, ALL, h.subject) for h in budgets.holders(config) for rule in BUDGET_RULES]
    groups = config.gateway.groups if config.gateway else ()
    subjects += [
        (rule, ALL, group_subject(g.name)) for g in groups if not g.wildcard for rule in GROUP_RULES
    ]
    return [
        RouteExample(
            rule,
            severity,
            p,
            t,
            routes.delivery({"severity": str(severity), "provider": p, "target": t, "rule": rule}),
        )
        for rule, p, t in subjects
        for severity in Severity
    ]
