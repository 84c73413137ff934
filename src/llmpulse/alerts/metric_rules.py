"""Metric rules: a metric over a window of the results a rule selects, per subject (a target,
a provider, a model, or all of them), against a threshold. Custom rules (``rules.custom``) and
the built-in rules of ``rules.METRIC_RULES`` are evaluated here.

Like the built-in rules, they read the results the alert leader is fed, in memory, so they see
a result as soon as it is stored. Each (rule, subject) keeps its window in arrays of doubles: a
quantile keeps each value (the newest ``MAX_SAMPLES``); rates, totals and maxima keep one entry
per 1/60th of the window, so their memory does not grow with the traffic and their counts miss
nothing (an entry leaves the window whole: its edge moves a 60th at a time). A subject the
config names is judged even when no result arrives, so a total that falls to zero
("requests < 10") fires, and a firing alert whose window has emptied resolves.
"""

from __future__ import annotations

import bisect
import dataclasses
from array import array
from collections.abc import Iterable, Mapping
from typing import Literal

from llmpulse.alerts.window import Evaluation, says_nothing
from llmpulse.config.match import Selection
from llmpulse.config.rules import MetricRule
from llmpulse.durations import format_duration
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult
from llmpulse.rules import METRIC_RULES, METRICS, Aggregation, RuleSpec, Unit
from llmpulse.store.queries import exact_quantile
from llmpulse.target import Target

ALL = "*"  # the subject of a rule ``by: all``
# A new leader refills rule windows from this much of the stored results at most: a rule with
# a longer window is judged once the leader has watched it whole.
REPLAY_MAX_S = 3600.0
# Every subject is judged this often even without new results (its window moves on).
SWEEP_S = 10.0


Scope = Literal["target", "provider", "model", "all"]


def scopes(rules: Iterable[MetricRule]) -> dict[str, Scope]:
    """What the alerts of each custom rule name in their ``target``: its ``by``."""
    return {r.spec.id: r.by for r in rules}


class _Series:
    """One subject's window of one rule, oldest first: the entries' times and two figures
    (a value and a count, meaning per aggregation). Arrays of doubles, 24 bytes an entry:
    thousands of subjects × rules keep them."""

    __slots__ = ("a", "b", "head", "ts")

    MAX_SAMPLES = 5000

    def __init__(self) -> None:
        self.ts = array("d")
        self.a = array("d")
        self.b = array("d")
        self.head = 0  # entries before it have left the window

    def add(self, ts: float, a: float, b: float, bucket_s: float | None, peak: bool) -> None:
        """Append an entry; with ``bucket_s`` (counts, sums, maxima), fold it into the last
        entry when both fall in one bucket: ``a`` by sum, or by max with ``peak``, ``b`` by
        sum. A late result is inserted in time order."""
        n = len(self.ts)
        if n > self.head and ts < self.ts[-1]:
            i = bisect.bisect_right(self.ts, ts, self.head)
            self.ts.insert(i, ts)
            self.a.insert(i, a)
            self.b.insert(i, b)
        elif bucket_s is not None and n > self.head and ts // bucket_s == self.ts[-1] // bucket_s:
            self.a[-1] = max(self.a[-1], a) if peak else self.a[-1] + a
            self.b[-1] += b
        else:
            self.ts.append(ts)
            self.a.append(a)
            self.b.append(b)
        if len(self.ts) - self.head > self.MAX_SAMPLES:
            self.head += 1

    def since(self, cutoff: float) -> int:
        """Drop entries before ``cutoff``; the index of the first one kept."""
        self.head = bisect.bisect_left(self.ts, cutoff, self.head)
        if self.head > 256 and self.head * 2 > len(self.ts):  # compact now and then
            del self.ts[: self.head], self.a[: self.head], self.b[: self.head]
            self.head = 0
        return self.head


# A result's contribution to a metric: (a, b) for the series, or None when it has none.
def extract(metric: str, r: CheckResult) -> tuple[float, float] | None:
    match metric:
        case "ttft_p50" | "ttft_p95" | "ttft_p99":
            return None if r.ttft_ms is None else (r.ttft_ms / 1000, 1.0)
        case "latency_p50" | "latency_p95" | "latency_p99":
            return None if r.latency_ms is None else (r.latency_ms / 1000, 1.0)
        case "tokens_per_s_p50" | "tokens_per_s_p05":
            return None if r.tokens_per_s is None else (r.tokens_per_s, 1.0)
        case "itl_p95":
            return None if r.itl_p50_ms is None else (r.itl_p50_ms / 1000, 1.0)
        case "context_utilization_p95":
            share = r.context_utilization
            return None if share is None else (share, 1.0)
        case "error_rate":
            if says_nothing(r):
                return None
            cls = r.error_class
            failed = cls is not None and not cls.is_caller_limit and not cls.is_wrong_answer
            return (1.0, float(failed))
        case "availability":  # b counts outages; the value is 1 - outages/results
            return (1.0, float(r.error_class is not None and r.error_class.is_outage))
        case "correct_rate":  # of the answered results (ok or assertion), b counts the ok
            cls = r.error_class
            if not r.ok and (cls is None or not cls.is_wrong_answer):
                return None
            return (1.0, float(r.ok))
        case "rate_limited_rate":
            return (1.0, float(r.error_class is ErrorClass.RATE_LIMITED))
        case "ratelimit_utilization":
            used = r.ratelimit.utilization if r.ratelimit else None
            return None if used is None else (used, 1.0)
        case "requests":
            return (1.0, 1.0)
        case "tokens_in":
            n = r.usage.input_tokens
            return None if n is None else (float(n), 1.0)
        case "tokens_out":
            n = r.usage.output_tokens
            return None if n is None else (float(n), 1.0)
        case "tokens_per_request":
            u = r.usage
            if r.kind is CheckKind.MODELS or (u.input_tokens is None and u.output_tokens is None):
                return None
            return (float((u.input_tokens or 0) + (u.output_tokens or 0)), 1.0)
        case "cost_usd":
            return None if r.cost_usd is None else (r.cost_usd, 1.0)
    raise ValueError(f"unknown metric {metric!r}")


def format_value(unit: Unit, value: float) -> str:
    """A figure in its unit, for summaries."""
    match unit:
        case Unit.SECONDS:
            return format_duration(value)
        case Unit.FRACTION:
            return f"{value:.2%}" if value and abs(value) < 0.01 else f"{value:.1%}"
        case Unit.USD:
            return f"${value:,.2f}" if value >= 0.01 or not value else f"${value:.4f}"
        case Unit.TOKENS_PER_S:
            return f"{value:.1f} tokens/s"
        case Unit.TOKENS:
            return f"{value:,.0f} tokens"
        case Unit.COUNT:
            return f"{value:,.0f}"
        case Unit.TIMES:
            return f"{value:g}×"


@dataclasses.dataclass(slots=True)
class _Subject:
    rule: MetricRule
    name: str
    provider: str
    series: _Series


class MetricRules:
    """Every metric rule's windows, fed the results the leader reads; single-threaded."""

    def __init__(self, rules: Iterable[MetricRule], targets: Iterable[Target]) -> None:
        self.subjects: dict[tuple[str, str], _Subject] = {}
        # Per target: the (rule, subject) windows its results may go to.
        self.routes: dict[str, list[_Subject]] = {}
        self.dirty: set[tuple[str, str]] = set()
        self.watched_since: float | None = None
        self._sweep: list[tuple[str, str]] = []  # judged next when no result comes
        self._swept_at: float | None = None
        self._due = 0.0  # subjects owed a judgement by the sweep
        by_name = {t.name: t for t in targets}
        for rule in rules:
            names = rule.selection.targets
            chosen = (
                list(by_name.values())
                if names is None
                else [by_name[n] for n in names if n in by_name]
            )
            providers: dict[str, set[str]] = {}
            for t in chosen:
                name = _subject(rule, t)
                providers.setdefault(name, set()).add(t.provider)
            for name, ps in providers.items():
                provider = next(iter(ps)) if len(ps) == 1 else ALL
                self.subjects[(rule.spec.id, name)] = _Subject(rule, name, provider, _Series())
            for t in chosen:
                self.routes.setdefault(t.name, []).append(
                    self.subjects[(rule.spec.id, _subject(rule, t))]
                )

    @property
    def longest_window(self) -> float:
        return max((s.rule.spec.window_s for s in self.subjects.values()), default=0.0)

    def add(self, result: CheckResult) -> None:
        for subject in self.routes.get(result.target, ()):
            rule = subject.rule
            if not rule.selection.admits(result):
                continue
            point = extract(rule.metric.name, result)
            if point is None:
                continue
            aggregation = rule.metric.aggregation
            bucket = None if aggregation is Aggregation.QUANTILE else rule.spec.window_s / 60
            peak = aggregation is Aggregation.MAX
            subject.series.add(result.timestamp.timestamp(), *point, bucket, peak)
            self.dirty.add((rule.spec.id, subject.name))

    def evaluate(self, now: float) -> list[tuple[str, str, Evaluation]]:
        """(subject, provider, evaluation) of every window fed since the last call, and of a
        slice of the others in proportion to the time since, so that each is judged at least
        every ``SWEEP_S`` however often this is called."""
        if self.watched_since is None:
            self.watched_since = now - REPLAY_MAX_S
        elapsed = SWEEP_S if self._swept_at is None else max(0.0, now - self._swept_at)
        self._swept_at = now
        self._due += len(self.subjects) * min(elapsed, SWEEP_S) / SWEEP_S
        step = int(self._due)
        self._due -= step
        keys = set(self.dirty)
        self.dirty.clear()
        while step > 0 and self.subjects:
            if not self._sweep:
                self._sweep = list(self.subjects)
            taken = self._sweep[-step:]
            del self._sweep[-step:]
            keys.update(taken)
            step -= len(taken)
        out = []
        for key in keys:
            subject = self.subjects[key]
            ev = self._evaluate(subject, now)
            if ev is not None:
                out.append((subject.name, subject.provider, ev))
        return out

    def _evaluate(self, subject: _Subject, now: float) -> Evaluation | None:
        rule, spec, series = subject.rule, subject.rule.spec, subject.series
        assert self.watched_since is not None
        if now - spec.window_s < self.watched_since:
            return None  # not watched for a whole window yet (a new leader)
        i = series.since(now - spec.window_s)
        a, b = series.a[i:], series.b[i:]
        metric = rule.metric
        match metric.aggregation:
            case Aggregation.QUANTILE:
                samples = len(a)
                value = (
                    exact_quantile(a.tolist(), metric.q) if samples >= spec.min_samples else None
                )
            case Aggregation.RATE:
                samples = int(sum(a))
                hits = sum(b)
                ok = samples and samples >= spec.min_samples
                rate = hits / samples if ok else None
                value = 1 - rate if rate is not None and metric.name == "availability" else rate
            case Aggregation.TOTAL:
                samples = int(sum(b))
                value = sum(a)  # a total of nothing is 0, not unknown: min_samples aside
            case Aggregation.RATIO:
                samples = int(sum(b))
                value = sum(a) / samples if samples and samples >= spec.min_samples else None
            case Aggregation.MAX:
                samples = int(sum(b))
                value = max(a) if samples and samples >= spec.min_samples else None
        if value is None:
            # An empty window shows no problem: a firing alert resolves (traffic that stopped
            # must not hold a TTFT alert for days); too few results say nothing either way.
            return Evaluation(spec, False, None, _CLEAR, False) if samples == 0 else None
        active = rule.breached(value)
        # Only a breach's summary is ever shown (a clear evaluation of a firing alert keeps the
        # summary it fired with): formatting one for every clear window was half the cost.
        summary = _summary(subject, value, samples) if active else _CLEAR
        return Evaluation(spec, active, value, summary, active)


_CLEAR = "within its threshold"


def _subject(rule: MetricRule, t: Target) -> str:
    match rule.by:
        case "target":
            return t.name
        case "provider":
            return t.provider
        case "model":
            return t.model
    return ALL


def _summary(subject: _Subject, value: float, samples: int) -> str:
    rule = subject.rule
    unit = rule.metric.unit
    fields = {
        "value": format_value(unit, value),
        "threshold": format_value(unit, rule.spec.threshold),
        "window": format_duration(rule.spec.window_s),
        "subject": "all targets" if subject.name == ALL and rule.by == "all" else subject.name,
        "metric": rule.metric.name,
        "rule": rule.spec.id,
        "op": rule.op,
        "samples": str(samples),
    }
    if rule.summary is not None:
        return rule.summary.format_map(fields)
    return (
        "{metric} {value} over {window} on {subject} "
        "(threshold {op} {threshold}; {samples} results)".format_map(fields)
    )


def builtin_rules(
    targets: Iterable[Target], rules: Mapping[str, Mapping[str, RuleSpec]]
) -> list[MetricRule]:
    """The built-in metric rules of each target, with its resolved settings (``rules``: per
    target name, as ``rules.resolve_rules`` gives them)."""
    out = []
    for t in targets:
        for rule_id, (metric, sources) in METRIC_RULES.items():
            spec = rules[t.name][rule_id]
            if spec.enabled:
                selection = Selection(targets=frozenset({t.name}), sources=frozenset(sources))
                out.append(MetricRule(spec, METRICS[metric], selection, "target", ">"))
    return out
