"""The alert leader's work: rules over every agent's results, the alert engine, its state.

Only the process holding the lead (``monitor.leader``) runs this. It reads results back from the
store, not from its own probes, so that with several agents it judges all of them, and the
gateway's real traffic too: data flows probe → store → rules → engine → outbox.

Each target keeps one rule window per region (``None`` in a single-region setup); a condition
holds for the target when it holds in at least ``monitor.min_regions`` of the regions that can
say (``alerts.window.agree_across_regions``); a region without a result for three probe intervals
cannot say. Traffic results count like probes, except the requests'
own faults (bad request, context length, content filter): a client sending broken requests says
nothing about the provider.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

from llmpulse.alerts import budgets, slo
from llmpulse.alerts.engine import ALL, AlertRecord, AlertSettings, Engine, Notify, fingerprint
from llmpulse.alerts.metric_rules import REPLAY_MAX_S, MetricRules, builtin_rules
from llmpulse.alerts.model import Acknowledgement, AlertState
from llmpulse.alerts.routes import Routes
from llmpulse.alerts.silences import configured_silences
from llmpulse.alerts.state import AlertStateStore
from llmpulse.alerts.window import (
    TargetWindow,
    agree_across_regions,
    cost_spike,
    says_nothing,
)
from llmpulse.config import Config
from llmpulse.gateway import readiness
from llmpulse.monitor.billing import Verdict
from llmpulse.monitor.drills import DrillJudge, PathKey
from llmpulse.result import CheckResult
from llmpulse.rules import (
    BILLING_DRIFT_RULE,
    BUDGET_RULES,
    FAILOVER_NOT_READY,
    FAILOVER_PATH_BROKEN,
    NOT_WINDOWED,
    SLO_BURN_RULE,
    RuleSpec,
    group_subject,
)
from llmpulse.store import ResultFilter, Store, queries
from llmpulse.target import Target

log = logging.getLogger(__name__)

SLO_EVERY_S = 10.0  # SLO burn rates judged this often: their shortest window is a minute


@dataclasses.dataclass(frozen=True, slots=True)
class JudgedBudget:
    """A holder's budget use, and per budget rule whether it is on and holds (``active``) and
    whether it had an alert record when judged (``recorded``)."""

    use: budgets.Use
    active: Mapping[str, bool]
    recorded: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetJudgement:
    """``Alerting.budget_spend``: the holders the engine must see, and every holder's subject
    (an alert whose subject is not among them has no budget any more)."""

    observed: list[JudgedBudget]
    subjects: frozenset[str]


class Alerting:
    def __init__(
        self,
        config: Config,
        store: Store,
        state: AlertStateStore,
        notify: Notify,
        official_status: Callable[[str], str | None],
        *,
        notifiers: Mapping[str, float | None],
        in_maintenance: Callable[[str], bool] | None = None,
    ) -> None:
        """``notifiers``: every configured notifier's name, and the interval at which it must
        hear of a firing alert again (None: once is enough). ``in_maintenance``: whether a
        provider announces maintenance under way, heeded with
        ``alerting.silence_official_maintenance``."""
        self.config = config
        self.store = store
        self.state = state
        self.min_regions = config.monitor.min_regions
        self.targets: dict[str, Target] = {t.name: t for t in config.targets}
        self.rules: dict[str, dict[str, RuleSpec]] = {}
        self.horizons: dict[str, float] = {}
        by_provider: dict[str, list[str]] = defaultdict(list)
        for t in config.targets:
            self.rules[t.name] = config.target_rules(t)
            self.horizons[t.name] = max(
                (r.window_s for r in self.rules[t.name].values() if r.id not in NOT_WINDOWED),
                default=0.0,
            )
            by_provider[t.provider].append(t.name)
        # The store rules' settings per provider, and for all of them (ALL: global rules only).
        self.provider_rules = {ALL: config.provider_rules(None)} | {
            p: config.provider_rules(p) for p in by_provider
        }
        self.spend_at = -math.inf  # when spend was last judged: never yet
        self.budgets_at = -math.inf  # when budgets were last judged: never yet
        self.failover_at = -math.inf  # when failover readiness was last judged: never yet
        self.metric_rules = MetricRules(
            [*config.custom_rules, *builtin_rules(config.targets, self.rules)], config.targets
        )
        self.windows: dict[str, dict[str | None, TargetWindow]] = defaultdict(dict)
        self.baselines: dict[str, float | None] = {}
        self.baselines_at = -math.inf  # when they were last computed: never yet
        self._short: set[str] = set()  # targets with fewer fresh regions than min_regions
        a = config.alerting
        self.engine = Engine(
            by_provider,
            notify,
            AlertSettings(
                repeat_interval_s=a.repeat_interval,
                resolve_after_s=a.resolve_after,
                group_wait_s=a.group_wait,
                flap_window_s=a.flap_window,
                flap_threshold=a.flap_threshold,
                flap_resolve_after_s=a.flap_resolve_after,
            ),
            state.load_records(),  # a new leader resumes with what the last one saved
            official_status=official_status,
            routes=Routes(a.routes, list(notifiers)),
            resend_intervals={n: s for n, s in notifiers.items() if s is not None},
            in_maintenance=in_maintenance if a.silence_official_maintenance else None,
            alert_url=config.web.alert_url,
        )
        # SLOs: counted per minute from every result fed, resumed from what the last leader
        # saved (minutes the replay covers are recounted from it: ``begin_replay``).
        self.slos = slo.Recorder(config.slos, self.targets)
        now = time.time()
        for i, s in enumerate(config.slos):
            self.slos.load(i, state.slo_minutes(s.name, s.definition, now - s.window_s))
        self.slo_providers = {s.name: slo.alert_provider(s, config.targets) for s in config.slos}
        self.slo_at = -math.inf  # when SLOs were last judged: never yet
        self.slo_pruned_at = -math.inf
        # (SLO index, from, until): what ``replay_start`` found to count from raw results.
        self.backfill: list[tuple[int, float, float]] = []
        self.drills = DrillJudge(config.gateway)  # failover_path_broken per failover path

    @property
    def longest_horizon(self) -> float:
        """How far back a new leader refills its windows from the store."""
        metric = min(self.metric_rules.longest_window, REPLAY_MAX_S)
        return max(*self.horizons.values(), metric, 0.0)

    def replay_start(self, now: float) -> float:
        """Where a new term re-reads results from: the rule windows' horizon, from the start of
        its minute, since the SLO counts of the minutes it covers are recounted from them.

        An SLO's minutes before both the replay and the first it has saved (a new SLO, or one
        whose selection or SLI changed) are counted from the raw results still stored, if any:
        ``backfill`` lists them for ``count_backfill``."""
        start = (now - self.longest_horizon) // 60 * 60
        oldest = now - self.config.monitor.raw_retention
        self.backfill = []
        for i, (s, counts) in enumerate(zip(self.slos.slos, self.slos.counts, strict=True)):
            counted = [minute for minute, _, _ in counts.minutes()]
            end = start if not counted else min(counted[0] * 60, start)
            begin = max(now - s.window_s + 60, oldest) // 60 * 60  # the window's first minute
            if begin < end:
                self.backfill.append((i, begin, end))
            if counted and counted[-1] * 60 < start:
                # No leader counted from the last saved minute (saved part-way, so recounted
                # whole) to the replay: the results stored meanwhile are counted from the store.
                gap = max(counted[-1] * 60, begin)
                if gap == counted[-1] * 60:
                    counts.set(counted[-1], 0, 0)
                self.backfill.append((i, gap, start))
        self.slos.begin_replay(start)
        return start

    def count_backfill(
        self, cursor: int, stopped: Callable[[], bool] = lambda: False
    ) -> list[tuple[int, int, int, int]]:
        """``(SLO index, minute start ts, events, good)`` of the raw results ``backfill``
        names, stored up to ``cursor`` (those after come through ``feed``), read a target and
        an hour at a time (a query each: run it off the loop); nothing once ``stopped``."""
        out = []
        for i, begin, end in self.backfill:
            s = self.slos.slos[i]
            counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for name in self.targets:
                if not s.selection.admits_target(name):
                    continue
                # An hour at a time: a busy gateway target's day would be millions of results.
                source = None if s.source == "all" else s.source
                for hour in range(int(begin), int(end), 3600):
                    if stopped():
                        return []
                    chunk = self.store.results_between(
                        hour, min(end, hour + 3600),
                        where=ResultFilter(target=name, source=source), until_cursor=cursor,
                    )  # fmt: skip
                    for result in chunk:
                        if says_nothing(result):
                            continue
                        good = slo.judge(s, result)
                        if good is not None:
                            minute = counts[int(result.timestamp.timestamp() // 60)]
                            minute[0] += 1
                            minute[1] += good
            out += [(i, m * 60, e, g) for m, (e, g) in sorted(counts.items())]
        return out

    def merge_backfill(self, rows: Iterable[tuple[int, int, int, int]]) -> None:
        """Add what ``count_backfill`` found: minutes no one counted, but for results stored
        since, which ``feed`` counted."""
        for i, ts, events, good in rows:
            counts, minute = self.slos.counts[i], ts // 60
            had_events, had_good = counts.get(minute)
            counts.set(minute, had_events + events, had_good + good)
            if counts.holds(minute):
                self.slos.dirty.add((i, minute))
        self.backfill = []

    def feed(self, results: Iterable[CheckResult], now: float | None = None) -> None:
        """Add results (any agent's, any order within a batch) and evaluate the targets they
        touched once each."""
        touched: set[str] = set()
        drilled: set[PathKey] = set()
        now = time.time() if now is None else now
        for result in results:
            path = self.drills.add(result)
            if path is not None:
                drilled.add(path)
            if result.target not in self.targets:
                continue  # a target no longer in the config, or traffic of an unmonitored one
            self.metric_rules.add(result)  # custom rules count traffic's own faults too
            if says_nothing(result):
                continue
            self.slos.add(result, now)
            windows = self.windows[result.target]
            window = windows.get(result.region)
            if window is None:
                window = windows[result.region] = TargetWindow(self.horizons[result.target])
            window.add(result)
            touched.add(result.target)
        for name in touched:
            self._evaluate(self.targets[name], now)
        for path in drilled:
            self.observe_drill(path, now)

    def observe_drill(self, path: PathKey, now: float) -> None:
        """``failover_path_broken`` for one failover path, at the rule's severity (``rules:
        {failover_path_broken: {severity: critical}}`` to page): it fires when the path's
        latest drill failed and resolves with the next drill of the path that passes."""
        rule = self.provider_rules[ALL][FAILOVER_PATH_BROKEN]
        v = self.drills.verdict(path)
        severity = rule.severity if rule.enabled and v.failed is not None else None
        self.engine.observe_graded(
            FAILOVER_PATH_BROKEN, v.subject, v.provider, severity, v.summary, now,
            resolve_after=0.0, labels=v.labels,
        )  # fmt: skip

    def retire_drill_paths(self, now: float) -> None:
        """Resolve the ``failover_path_broken`` alerts no drill will resolve: of a path the
        config no longer has (a fallback or deployment taken out, or reordered: the path's
        name changed), or all of them while the rule is disabled."""
        enabled = self.provider_rules[ALL][FAILOVER_PATH_BROKEN].enabled
        if enabled and self.config.gateway is None:
            return  # paths are named as their drills recorded them: none is known to be gone
        subjects = self.drills.subjects
        for record in list(self.engine.records.values()):
            if (
                record.rule == FAILOVER_PATH_BROKEN
                and record.state in (AlertState.FIRING, AlertState.PENDING)
                and (not enabled or record.target not in subjects)
            ):
                why = "no longer configured" if enabled else "no longer judged (rule disabled)"
                self.engine.observe_graded(
                    FAILOVER_PATH_BROKEN, record.target, record.provider, None,
                    f"failover path {record.target} is {why}", now, resolve_after=0.0,
                )  # fmt: skip

    def _evaluate(self, target: Target, now: float) -> None:
        rules, baseline = self.rules[target.name], self.baselines.get(target.name)
        # A region whose agent stopped reporting (it died, or its link to the database did)
        # says nothing: its last verdict must neither hold an incident open nor count.
        fresh_after = now - (3 * target.interval + target.timeout)
        per_region = {
            region: window.evaluate(rules, now, target.tps_floor, baseline, target.retires_at)
            for region, window in self.windows[target.name].items()
            if window.samples and window.samples[-1].ts >= fresh_after
        }
        if not per_region:
            return
        short = len(per_region) < self.min_regions
        if short != (target.name in self._short):
            # Fewer regions report than must agree: nothing can page for this target.
            (self._short.add if short else self._short.discard)(target.name)
            log.warning(
                "%s: %d of monitor.min_regions=%d regions reporting%s",
                target.name,
                len(per_region),
                self.min_regions,
                "; it cannot page until more agents report" if short else " again",
            )
        evaluations = agree_across_regions(per_region, self.min_regions)
        self.engine.observe(target.name, target.provider, evaluations, now)

    def tick(self, now: float) -> list[AlertRecord]:
        """Metric rules (and every ``SLO_EVERY_S`` the SLOs' burn rates), then grouping,
        repeats and silences; returns the records to save."""
        if now - self.slo_at >= SLO_EVERY_S:
            self.observe_slos(now)
        for subject, provider, evaluation in self.metric_rules.evaluate(now):
            self.engine.observe(subject, provider, [evaluation], now)
        self.engine.tick(now)
        return self.engine.take_dirty()

    def unsaved(self, records: Iterable[AlertRecord]) -> None:
        """Records whose save failed: saved again with the next tick's."""
        self.engine.dirty.update(r.fingerprint for r in records)

    def apply_acknowledgements(
        self, acks: Iterable[Acknowledgement], now: float
    ) -> list[Acknowledgement]:
        """Apply what was acknowledged (the API, the CLI, PagerDuty) as the store has it now;
        returns the acknowledgements of episodes that are over, for the store to forget."""
        return self.engine.sync_acknowledgements({a.fingerprint: a for a in acks}, now)

    def load_silences(self, now: float) -> None:
        self.engine.silences = configured_silences(self.config.silences) + self.state.silences(now)

    def refresh_baselines(self, now: float) -> None:
        for name in self.targets:
            self.baselines[name] = queries.tokens_per_request_baseline(self.store, name, now=now)
        self.baselines_at = now

    def spend(self, now: float) -> dict[str, tuple[float, float | None]]:
        """The store's spend figures for ``observe_spend`` (a query: run it off the loop)."""
        return queries.hourly_spend(self.store, now)

    def observe_spend(self, spend: Mapping[str, tuple[float, float | None]], now: float) -> None:
        """``cost_spike`` per configured provider and overall; one without spend is at $0."""
        for subject, rules in self.provider_rules.items():
            rule = rules["cost_spike"]
            if rule.enabled:
                spent, baseline = spend.get(subject, (0.0, None))
                self.engine.observe(subject, subject, [cost_spike(rule, spent, baseline)], now)
        self.spend_at = now

    def budget_spend(self, now: float) -> BudgetJudgement:
        """Every key and team with a budget (run-time keys included), what each spent, and
        which of them ``observe_budgets`` must see: those whose rule holds, or that have a
        budget alert record. Queries and per-holder work: run it off the loop (there may be
        a hundred thousand run-time keys)."""
        reading = budgets.read(self.store, self.config, now)
        rules = self.provider_rules[ALL]
        records = self.engine.records  # read only; a record added meanwhile is seen next time
        observed = []
        for holder in reading.holders:
            use = budgets.Use.of(holder, reading.spend.get(holder.subject, budgets.Spend()), now)
            active = {r: rules[r].enabled and use.holds(r) for r in BUDGET_RULES}
            known = {r for r in BUDGET_RULES if fingerprint(r, holder.subject) in records}
            if known or any(active.values()):
                observed.append(JudgedBudget(use, active, frozenset(known)))
        return BudgetJudgement(observed, frozenset(h.subject for h in reading.holders))

    def observe_budgets(self, judged: BudgetJudgement, now: float) -> None:
        """``budget_warning``, ``budget_exhausted`` and ``spend_forecast`` per key and team with
        a budget, each at its rule's severity (``rules: {budget_exhausted: {severity: ...}}``).
        They name no provider (``*``), so a provider's maintenance never holds them back. A
        budget alert whose key or team has no budget any more (revoked, or taken from the
        config) resolves. A holder whose rule does not hold and never did gets no record: there
        may be a hundred thousand run-time keys."""
        rules = self.provider_rules[ALL]
        engine = self.engine
        for j in judged.observed:
            use = j.use
            subject = use.holder.subject
            for rule_id in BUDGET_RULES:
                active = j.active[rule_id]  # a rule turned off resolves
                if not active and rule_id not in j.recorded:
                    continue  # budget records are made here only, after the judgement
                engine.observe_graded(
                    rule_id, subject, ALL, rules[rule_id].severity if active else None,
                    use.summary(rule_id), now,
                    value=use.spent, threshold=use.threshold(rule_id),
                    resolve_after=use.resolve_after(rule_id),
                )  # fmt: skip
        for record in list(engine.records.values()):
            if (
                record.rule in BUDGET_RULES
                and record.state in (AlertState.FIRING, AlertState.PENDING)
                and record.target not in judged.subjects
            ):
                scope, _, name = record.target.partition(":")
                engine.observe_graded(
                    record.rule, record.target, record.provider, None,
                    f"{scope} {name} has no budget any more", now, resolve_after=0.0,
                )  # fmt: skip
        self.budgets_at = now

    def failover_readiness(self, now: float) -> list[readiness.GroupReadiness]:
        """Every gateway model group's readiness (``gateway.readiness``), for
        ``observe_failover``: queries, and Redis when shared, so run it off the loop."""
        gateway = self.config.gateway
        if gateway is None:
            return []
        return readiness.judge(readiness.read_facts(gateway, self.store, now))

    def observe_failover(self, groups: Iterable[readiness.GroupReadiness], now: float) -> None:
        """``failover_not_ready`` per model group with a fallback: it fires when no fallback
        is ready and none at risk either (the group lost its last ready fallback) for the
        rule's ``for`` (a fallback's one bad probe pages no one), and stays until one is ready
        again (at risk is not enough to resolve). A group without any
        fallback is a choice of the config, not a loss: it never fires. An alert whose group
        is no longer configured resolves."""
        rule = self.provider_rules[ALL][FAILOVER_NOT_READY]
        engine = self.engine
        seen = set()
        for g in groups:
            subject = group_subject(g.group)
            seen.add(subject)
            record = engine.records.get(fingerprint(FAILOVER_NOT_READY, subject))
            live = record is not None and record.state in (AlertState.FIRING, AlertState.PENDING)
            lost = g.status is readiness.Status.NOT_READY and bool(g.fallbacks)
            holds = rule.enabled and (lost or (live and g.status is readiness.Status.AT_RISK))
            if not holds and not live:
                continue  # records are made here only, once a group loses its fallbacks
            engine.observe_graded(
                FAILOVER_NOT_READY, subject, ALL, rule.severity if holds else None,
                f"model group {g.group}: {g.reason}", now, resolve_after=0.0, for_s=rule.for_s,
            )  # fmt: skip
        for record in list(engine.records.values()):
            if (
                record.rule == FAILOVER_NOT_READY
                and record.state in (AlertState.FIRING, AlertState.PENDING)
                and record.target not in seen
            ):
                engine.observe_graded(
                    FAILOVER_NOT_READY, record.target, record.provider, None,
                    f"{record.target} is no longer configured", now, resolve_after=0.0,
                )  # fmt: skip
        self.failover_at = now

    def observe_slos(self, now: float) -> None:
        """One ``slo_burn_rate`` alert per SLO: critical while a page condition holds, warning
        while only a warning does (``alerts.slo``). Memory only: a few sums per SLO."""
        for s, counts in zip(self.slos.slos, self.slos.counts, strict=True):
            r = slo.report(s, counts, now)
            severity = r.severity
            active = [c for c in r.checks if c.active and c.alert.severity is severity]
            worst = max(active, key=lambda c: c.alert.burn_rate, default=None)
            self.engine.observe_graded(
                SLO_BURN_RULE, s.name, self.slo_providers[s.name], severity, r.summary(), now,
                value=worst.long if worst else None,
                threshold=worst.alert.burn_rate if worst else None,
            )  # fmt: skip
        self.slo_at = now

    def slo_minutes(self) -> list[tuple[str, str, int, int, int]]:
        """The SLO minutes counted since the last call, for the state store."""
        return self.slos.take_dirty()

    def slo_retention(self, now: float) -> dict[str, tuple[str, float]]:
        """What the state store keeps of each SLO (``prune_slo_minutes``)."""
        return {s.name: (s.definition, now - s.window_s) for s in self.slos.slos}

    def observe_billing(self, verdicts: Iterable[Verdict], now: float) -> None:
        """``billing_drift`` per provider whose bill was compared (``monitor.billing``): it
        fires on a day that drifts and resolves with the next day compared that does not."""
        for v in verdicts:
            self.engine.observe_graded(
                BILLING_DRIFT_RULE, v.provider, v.provider, v.severity, v.summary, now,
                value=v.value, threshold=v.threshold, resolve_after=0.0,
            )  # fmt: skip

    def observe_official(self, provider: str, indicator: str, description: str) -> None:
        self.engine.observe_official(provider, indicator, description, time.time())
