"""Alert rules evaluated over a target's recent results (the rules themselves: ``llmpulse.rules``).

Rules read an in-memory window of each target's latest results rather than the database, so
evaluating thousands of targets after every check costs microseconds; the figures follow the
same definitions as the stored rolling metrics (``ErrorClass.is_caller_limit`` is excluded from
error rates, quantiles are ``store.queries.exact_quantile``, the rank the rollup sketches use).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from llmpulse.durations import format_duration
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.rules import NOT_WINDOWED, RuleSpec
from llmpulse.store.queries import exact_quantile as quantile
from llmpulse.target import CANARY

_UNAVAILABLE = frozenset({ErrorClass.UNAVAILABLE.value, ErrorClass.TIMEOUT.value})
_REQUEST_FAULTS = frozenset(
    {ErrorClass.BAD_REQUEST, ErrorClass.CONTEXT_LENGTH, ErrorClass.CONTENT_FILTER}
)


def says_nothing(result: CheckResult) -> bool:
    """Traffic that failed through the client's own fault (a bad request, a prompt over the
    context window, filtered content) says nothing about the provider: no rule or SLO counts
    it as a failure, nor as an event."""
    return result.source is Source.TRAFFIC and result.error_class in _REQUEST_FAULTS


_KEY_PROBLEMS = frozenset({ErrorClass.AUTH.value, ErrorClass.QUOTA.value})
_CALLER_LIMITS = frozenset(c.value for c in ErrorClass if c.is_caller_limit)


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    rule: RuleSpec
    active: bool | None  # the condition holds; None: too few samples to say either way
    value: float | None
    summary: str
    holding: bool | None = None  # for a firing alert: the condition over the clear window
    # model_changed: what was served before and after the change (model and fingerprint);
    # canary_changed: the canary's answers before and after (None before: a first answer wrong).
    previous: str | None = None
    current: str | None = None


class _Sample(NamedTuple):
    """One result, reduced to what rules read. A tuple of plain values on purpose: CPython's
    cyclic GC stops tracking such tuples, and thousands of targets keep many of them alive."""

    ts: float
    kind: str  # the check (its probe's name)
    error_class: str | None  # ErrorClass value
    ttft_s: float | None
    tps: float | None
    tokens: int | None
    utilization: float | None
    listed: bool | None  # a models check: whether the provider listed the target's model


class _Change(NamedTuple):
    ts: float
    previous: str | None
    current: str


class _CanaryAnswer(NamedTuple):
    served: str  # the served model's label (``_served_label``)
    digest: str  # CheckResult.answer_hash
    excerpt: str
    wrong: bool

    @property
    def label(self) -> str:
        return f"{self.served}: answered {self.excerpt!r}{' (wrong)' if self.wrong else ''}"


def _served_label(model: str | None, fingerprint: str | None) -> str:
    name = model or "unnamed model"
    return f"{name} ({fingerprint})" if fingerprint else name


class TargetWindow:
    """The recent results of one target: enough history for every rule, and no more."""

    # Gateway traffic can bring thousands of results a second: the window keeps the newest this
    # many, plenty for every rate and quantile, so evaluating it stays cheap.
    MAX_SAMPLES = 5000

    def __init__(self, horizon_s: float, keep_last: int = 16) -> None:
        self.horizon_s = horizon_s
        self.keep_last = keep_last
        self.samples: deque[_Sample] = deque()
        self.latest_by_kind: dict[str, _Sample] = {}
        self.model: str | None = None
        # What the target served last (model, system fingerprint), as of when, and the latest
        # change of it. The first answer seen sets it: the model served at start is no change.
        self.served: tuple[str | None, str | None] | None = None
        self.served_ts = -math.inf
        self.change: _Change | None = None
        # The correctness canary's latest answer, as of when, and the latest change of it.
        self.canary: _CanaryAnswer | None = None
        self.canary_ts = -math.inf
        self.canary_change: _Change | None = None

    def add(self, result: CheckResult) -> None:
        u = result.usage
        tokens = (
            None
            if u.input_tokens is None and u.output_tokens is None
            else (u.input_tokens or 0) + (u.output_tokens or 0)
        )
        sample = _Sample(
            ts=result.timestamp.timestamp(),
            kind=result.check,
            error_class=None if result.error_class is None else result.error_class.value,
            ttft_s=None if result.ttft_ms is None else result.ttft_ms / 1000,
            tps=result.tokens_per_s,
            tokens=tokens if result.kind is not CheckKind.MODELS else None,
            utilization=result.ratelimit.utilization if result.ratelimit else None,
            listed=result.model_listed,
        )
        self.model = result.model
        if result.response_model or result.system_fingerprint:
            self._note_served(sample.ts, result.response_model, result.system_fingerprint)
        if result.check == CANARY and result.answer_excerpt is not None:
            self._note_canary(sample.ts, result)
        self.samples.append(sample)
        self.latest_by_kind[sample.kind] = sample
        cutoff = sample.ts - self.horizon_s
        while len(self.samples) > self.keep_last and self.samples[0].ts < cutoff:
            self.samples.popleft()
        if len(self.samples) > self.MAX_SAMPLES:
            self.samples.popleft()

    def _note_served(self, ts: float, model: str | None, fingerprint: str | None) -> None:
        if ts < self.served_ts:
            return  # an older answer, arrived late: it says nothing of what is served now
        old, self.served_ts = self.served, ts
        # A field an answer leaves out (Anthropic sends no fingerprint) is unchanged.
        new = (model, fingerprint) if old is None else (model or old[0], fingerprint or old[1])
        if old is not None and new != old:
            self.change = _Change(ts, _served_label(*old), _served_label(*new))
        self.served = new

    def _note_canary(self, ts: float, result: CheckResult) -> None:
        if ts < self.canary_ts:
            return  # an older answer, arrived late
        assert result.answer_hash is not None and result.answer_excerpt is not None
        served = _served_label(*self.served) if self.served else "unnamed model"
        new = _CanaryAnswer(
            served,
            result.answer_hash,
            " ".join(result.answer_excerpt.split()),  # as hashed
            result.error_class is ErrorClass.ASSERTION,
        )
        old, self.canary, self.canary_ts = self.canary, new, ts
        # At temperature 0 the same model answers the same: a different answer from it is a
        # change. Another model may word it otherwise (model_changed says so), but never wrong.
        if old is None:
            changed = new.wrong
        else:
            changed = new.digest != old.digest and (new.served == old.served or new.wrong)
        if changed:
            self.canary_change = _Change(ts, None if old is None else old.label, new.label)

    def evaluate(
        self,
        rules: Mapping[str, RuleSpec],
        now: float,
        tps_floor: float | None = None,
        tokens_baseline: float | None = None,
        retires: float | None = None,
    ) -> list[Evaluation]:
        """``retires``: when the target's model is retired (a timestamp), if known."""
        out = []
        for rule in rules.values():
            if not rule.enabled or rule.id in NOT_WINDOWED:
                continue
            ev = self._evaluate(rule, now, tps_floor, tokens_baseline, retires)
            if rule.clear_window_s is None:
                out.append(dataclasses.replace(ev, holding=ev.active))
                continue
            # Multi-window: fire when the long and the recent window both breach, keep firing
            # while the recent one does. Recovery shows within the recent window, and a
            # stale breach in the long window alone cannot fire it again.
            recent = dataclasses.replace(rule, window_s=rule.clear_window_s, min_samples=1)
            holding = self._evaluate(recent, now, tps_floor, tokens_baseline, retires).active
            active = ev.active if ev.active is None or holding is None else ev.active and holding
            out.append(dataclasses.replace(ev, active=active, holding=holding))
        return out

    def _recent(self, window_s: float, now: float) -> list[_Sample]:
        cutoff = now - window_s
        return [s for s in self.samples if s.ts >= cutoff]

    def _evaluate(
        self,
        rule: RuleSpec,
        now: float,
        tps_floor: float | None,
        baseline: float | None,
        retires: float | None,
    ) -> Evaluation:
        recent = self._recent(rule.window_s, now)
        window = format_duration(rule.window_s)
        match rule.id:
            case "ttft_p95_high":
                values = [s.ttft_s for s in recent if s.ttft_s is not None]
                if len(values) < rule.min_samples or (p95 := quantile(values, 0.95)) is None:
                    return Evaluation(rule, None, None, "not enough samples")
                return Evaluation(
                    rule,
                    p95 > rule.threshold,
                    p95,
                    f"p95 TTFT {format_duration(p95)} over {window} "
                    f"(threshold {format_duration(rule.threshold)})",
                )
            case "error_rate_warning" | "error_rate_critical":
                if len(recent) < rule.min_samples:
                    return Evaluation(rule, None, None, "not enough samples")
                errors = [
                    s.error_class
                    for s in recent
                    if s.error_class is not None and s.error_class not in _CALLER_LIMITS
                ]
                rate = len(errors) / len(recent)
                classes = ", ".join(sorted(f"{c}×{errors.count(c)}" for c in set(errors)))
                return Evaluation(
                    rule,
                    rate > rule.threshold,
                    rate,
                    f"error rate {rate:.0%} over {window} ({len(errors)}/{len(recent)} checks"
                    f"{': ' + classes if classes else ''}; threshold {rule.threshold:.0%})",
                )
            case "consecutive_unavailable":
                # Per check kind: a models list that still answers during an inference outage
                # (common) must not hide three failed inference checks in a row.
                needed = max(rule.min_samples, int(rule.threshold))
                if not self.samples:
                    return Evaluation(rule, None, None, "no samples")
                streaks: dict[str, int] = {}
                open_kinds = set(self.latest_by_kind)
                for s in reversed(self.samples):
                    if s.kind not in open_kinds:
                        continue
                    if s.error_class in _UNAVAILABLE:
                        streaks[s.kind] = streaks.get(s.kind, 0) + 1
                    else:
                        open_kinds.discard(s.kind)
                kind, streak = max(streaks.items(), key=lambda kv: kv[1], default=(None, 0))
                last = self.latest_by_kind[kind].error_class if kind else None
                return Evaluation(
                    rule,
                    streak >= needed,
                    float(streak),
                    f"{streak} consecutive {kind or ''} checks failed as unavailable/timeout"
                    f"{f' (last: {last})' if last else ''}",
                )
            case "rate_limit_headroom":
                values = [s.utilization for s in recent if s.utilization is not None]
                if len(values) < rule.min_samples:
                    return Evaluation(rule, None, None, "no rate-limit headers")
                latest = values[-1]
                return Evaluation(
                    rule,
                    latest > rule.threshold,
                    latest,
                    f"rate-limit utilization {latest:.0%} (threshold {rule.threshold:.0%})",
                )
            case "auth_failure":
                if not self.latest_by_kind:
                    return Evaluation(rule, None, None, "no samples")
                bad = [
                    f"{kind}: {s.error_class}"
                    for kind, s in self.latest_by_kind.items()
                    if s.error_class in _KEY_PROBLEMS
                ]
                return Evaluation(
                    rule,
                    bool(bad),
                    float(len(bad)),
                    "key or credit problem: " + ", ".join(bad) if bad else "keys accepted",
                )
            case "tps_low":
                floor = tps_floor if tps_floor is not None else rule.threshold
                values = [s.tps for s in recent if s.tps is not None]
                if not floor:
                    return Evaluation(rule, False, None, "no tokens/s floor set")
                if len(values) < rule.min_samples or (p50 := quantile(values, 0.5)) is None:
                    return Evaluation(rule, None, None, "not enough samples")
                return Evaluation(
                    rule,
                    p50 < floor,
                    p50,
                    f"p50 tokens/s {p50:.1f} over {window} (floor {floor:g})",
                )
            case "tokens_per_request_spike":
                values = [s.tokens for s in recent if s.tokens is not None]
                if not baseline or len(values) < rule.min_samples:
                    return Evaluation(rule, None, None, "no baseline yet or not enough samples")
                mean = sum(values) / len(values)
                ratio = mean / baseline
                return Evaluation(
                    rule,
                    ratio > rule.threshold,
                    ratio,
                    f"{mean:.0f} tokens/request over {window}, {ratio:.1f}× the 24h baseline "
                    f"of {baseline:.0f} (threshold {rule.threshold:g}×)",
                )
            case "model_changed":
                if self.served is None:
                    return Evaluation(rule, None, None, "no model served yet")
                change = self.change
                if change is None or now - change.ts > rule.window_s:
                    return Evaluation(rule, False, None, f"serving {_served_label(*self.served)}")
                return Evaluation(
                    rule,
                    True,
                    None,
                    f"served model changed: {change.previous} → {change.current}",
                    previous=change.previous,
                    current=change.current,
                )
            case "canary_changed":
                if self.canary is None:
                    return Evaluation(rule, None, None, "no canary answer yet")
                change = self.canary_change
                if change is None or now - change.ts > rule.window_s:
                    return Evaluation(rule, False, None, f"canary {self.canary.label}")
                summary = (
                    f"canary answer changed: {change.previous} → {change.current}"
                    if change.previous is not None
                    else f"canary answered wrong: {change.current}"
                )
                return Evaluation(
                    rule, True, None, summary, previous=change.previous, current=change.current
                )
            case "model_unlisted":
                models = self.latest_by_kind.get(CheckKind.MODELS.value)
                if models is None or models.listed is None:
                    return Evaluation(rule, None, None, "models list not checked")
                where = "the provider's models list"
                return Evaluation(
                    rule,
                    not models.listed,
                    None,
                    f"{self.model} is {'listed in' if models.listed else 'missing from'} {where}",
                )
            case "model_deprecated":
                if retires is None:
                    return Evaluation(rule, False, None, "no retirement date known")
                left = retires - now
                day = datetime.fromtimestamp(retires, UTC).date().isoformat()
                when = f"in {_days(left)}" if left > 0 else "already past"
                return Evaluation(
                    rule,
                    left <= rule.threshold,
                    left,
                    f"{self.model} retires on {day} ({when}; notice {_days(rule.threshold)})",
                )
        raise ValueError(f"unknown rule {rule.id!r}")


def _days(seconds: float) -> str:
    """A retirement's distance: whole days when two or more, as dates are announced."""
    return f"{int(seconds // 86400)} days" if seconds >= 2 * 86400 else format_duration(seconds)


def cost_spike(rule: RuleSpec, spent: float, hourly_baseline: float | None) -> Evaluation:
    """``cost_spike`` over one subject's spend (a provider's, or all of it): the last window's
    US dollars against the hourly average before it (``store.queries.hourly_spend``)."""
    hours = rule.window_s / 3600
    if spent <= rule.min_usd:
        return Evaluation(
            rule, False, spent, f"${spent:.2f} over {format_duration(rule.window_s)}", False
        )
    if hourly_baseline is None:
        return Evaluation(rule, None, spent, "no spend history yet")
    expected = hourly_baseline * hours
    ratio = spent / expected if expected else math.inf
    active = ratio > rule.threshold
    return Evaluation(
        rule,
        active,
        spent,
        f"${spent:.2f} spent over {format_duration(rule.window_s)}, "
        f"{ratio:.1f}× the 7-day average of ${expected:.2f} "
        f"(threshold {rule.threshold:g}×, minimum ${rule.min_usd:g})",
        active,
    )


def agree_across_regions(
    per_region: Mapping[str | None, list[Evaluation]], min_regions: int
) -> list[Evaluation]:
    """One target's evaluations from several regions' windows, as one verdict per rule.

    A condition holds when it holds in at least ``min_regions`` regions, so a region whose agent
    has a local network problem cannot page alone; regions that cannot say (too few samples)
    count for nothing, and with none that can, the verdict is unknown. The value and summary
    are those of the worst region that agrees. Results without a region (an agent or a gateway
    started without one, beside agents with one) are a region of their own, which can make a
    condition hold where one region suffices but never completes a quorum of two or more: they
    may come from the same place as any named region.
    """
    regions = sorted(per_region, key=lambda r: (r is not None, r or ""))
    if len(regions) == 1 and min_regions <= 1:
        return per_region[regions[0]]
    combined = []
    for i, first in enumerate(per_region[regions[0]]):
        evaluations = {region: per_region[region][i] for region in regions}
        quorum = (
            evaluations
            if min_regions <= 1
            else {r: e for r, e in evaluations.items() if r is not None}
        )
        active = _agreed({r: e.active for r, e in quorum.items()}, min_regions)
        holding = _agreed({r: e.holding for r, e in quorum.items()}, min_regions)
        agreeing = [r for r, e in evaluations.items() if e.active or e.holding]
        if agreeing:
            worst = max(agreeing, key=lambda r: _severity(first.rule, evaluations[r].value))
            chosen = evaluations[worst]
            names = ", ".join(r or "no region" for r in agreeing)
            summary = f"{chosen.summary} [regions: {names}]"
        else:
            chosen = next((e for e in evaluations.values() if e.active is not None), first)
            summary = chosen.summary
        combined.append(
            Evaluation(
                first.rule, active, chosen.value, summary, holding, chosen.previous, chosen.current
            ),
        )
    return combined


def _agreed(verdicts: Mapping[str | None, bool | None], min_regions: int) -> bool | None:
    known = [v for v in verdicts.values() if v is not None]
    if not known:
        return None
    return sum(known) >= min_regions


def _severity(rule: RuleSpec, value: float | None) -> float:
    """How bad a value is, larger is worse (tokens/s and time left before retirement are bad
    when low)."""
    if value is None:
        return float("-inf")
    return -value if rule.id in ("tps_low", "model_deprecated") else value
