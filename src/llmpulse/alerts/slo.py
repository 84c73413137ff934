"""SLOs: which results are events and which are good, the counts per minute that record them,
and what an error budget, its burn rate and its alerts are. One definition, read by the alert
leader (from its recorder) and by the dashboard, the API and /metrics (from the persisted
minutes).

- ``availability``: every selected result is an event; it is bad when its error class is an
  outage (``ErrorClass.is_outage``). A 429 or an exhausted quota is the caller's limit, not the
  provider failing: a good event, as in the ``availability`` metric.
- ``correctness``: the answered results are the events (ok, or failed with ``assertion``: an
  answer that failed a probe's expectation); good when ok, as in the ``correct_rate`` metric.
- ``ttft``: stream results are the events; good when ok with a TTFT within the threshold.
- ``latency``: inference and stream results; good when ok with a latency within the threshold.
  For ttft and latency, caller limits (429, quota) are not events, and a wrong answer
  (``assertion``) is judged by its timing alone: whether it is right is correctness' business.

Traffic that failed through the client's own fault (bad request, context length, content
filter) is no event of any SLO: it says nothing about the provider (``monitor.alerting``).

Budget: ``allowed = (1 - objective) × events`` over the window; ``budget_remaining = 1 -
bad / allowed`` (negative once overspent). The burn rate over a window is ``(bad / events) /
(1 - objective)``: 1 spends exactly the budget over the SLO's window. An alert of the SLO is
active while the burn rate is at least its ``burn_rate`` over both its long and its short
window (the SRE workbook's multiwindow, multi-burn-rate alerts). Windows end at the current
minute, which counts whole.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence

from llmpulse.alerts.engine import ALL
from llmpulse.config.slos import BurnAlert, Slo, duration_label
from llmpulse.result import CheckKind, CheckResult
from llmpulse.rules import Severity
from llmpulse.target import Target

# A result stamped further ahead of the leader's clock (an agent's clock gone wrong) is not
# counted: it would move the window on and zero the minutes it passed. A later leader's replay
# counts it if its time has come by then.
FUTURE_MINUTES = 5
_LATENCY_KINDS = (CheckKind.INFERENCE, CheckKind.STREAM)


def judge(slo: Slo, result: CheckResult) -> bool | None:
    """Whether ``result`` is a good event of ``slo``; None when it is no event of it."""
    if slo.source != "all" and result.source != slo.source:
        return None
    if not slo.selection.admits(result):
        return None
    error = result.error_class
    if slo.sli == "availability":
        return error is None or not error.is_outage
    if slo.sli == "correctness":
        if result.ok:
            return True
        return False if error is not None and error.is_wrong_answer else None
    if error is not None and error.is_caller_limit:
        return None
    assert slo.threshold_s is not None
    if slo.sli == "ttft":
        if result.kind is not CheckKind.STREAM:
            return None
        measured = result.ttft_ms
    else:
        if result.kind not in _LATENCY_KINDS:
            return None
        measured = result.latency_ms
    answered = result.ok or (error is not None and error.is_wrong_answer)
    return answered and measured is not None and measured <= slo.threshold_s * 1000


def alert_provider(slo: Slo, targets: Iterable[Target]) -> str:
    """The provider an SLO's alert names (routes and silences match on it): the one provider
    of the targets it selects, else every provider (``*``)."""
    providers = {t.provider for t in targets if slo.selection.admits_target(t.name)}
    return providers.pop() if len(providers) == 1 else ALL


class MinuteCounts:
    """Events and good events per UTC minute (epoch minute numbers) for the last ``size``
    minutes up to the newest seen: two rings of 32-bit counts, 8 bytes a minute, so a 30-day
    SLO holds 43,200 minutes in 350 kB. Moving on to a new minute zeroes those that leave.
    The whole window's totals are kept as they change: the figure read most often."""

    __slots__ = ("events", "good", "latest", "size", "total_events", "total_good")

    def __init__(self, size: int) -> None:
        self.size = size
        self.latest: int | None = None
        self._clear()

    def _clear(self) -> None:
        self.events = array("I", bytes(4 * self.size))
        self.good = array("I", bytes(4 * self.size))
        self.total_events = self.total_good = 0

    def advance(self, minute: int) -> None:
        if self.latest is None:
            self.latest = minute
            return
        if minute <= self.latest:
            return
        if minute - self.latest >= self.size:
            self._clear()
        else:
            for m in range(self.latest + 1, minute + 1):
                slot = m % self.size
                self.total_events -= self.events[slot]
                self.total_good -= self.good[slot]
                self.events[slot] = self.good[slot] = 0
        self.latest = minute

    def holds(self, minute: int) -> bool:
        return self.latest is not None and self.latest - self.size < minute <= self.latest

    def add(self, minute: int, good: bool) -> bool:
        """Count one event; False when its minute is older than the window."""
        self.advance(minute)
        if not self.holds(minute):
            return False
        slot = minute % self.size
        self.events[slot] += 1
        self.total_events += 1
        if good:
            self.good[slot] += 1
            self.total_good += 1
        return True

    def set(self, minute: int, events: int, good: int) -> None:
        self.advance(minute)
        if self.holds(minute):
            slot = minute % self.size
            self.total_events += events - self.events[slot]
            self.total_good += good - self.good[slot]
            self.events[slot], self.good[slot] = events, good

    def get(self, minute: int) -> tuple[int, int]:
        if not self.holds(minute):
            return 0, 0
        return self.events[minute % self.size], self.good[minute % self.size]

    def sums(self, first: int, last: int) -> tuple[int, int]:
        """Events and good events of the minutes ``first`` to ``last``, both included."""
        if self.latest is None:
            return 0, 0
        first, last = max(first, self.latest - self.size + 1), min(last, self.latest)
        if first > last:
            return 0, 0
        if last - first + 1 == self.size:
            return self.total_events, self.total_good
        a, b = first % self.size, last % self.size
        if a <= b:
            return sum(self.events[a : b + 1]), sum(self.good[a : b + 1])
        return (
            sum(self.events[a:]) + sum(self.events[: b + 1]),
            sum(self.good[a:]) + sum(self.good[: b + 1]),
        )

    def minutes(self) -> Iterator[tuple[int, int, int]]:
        """``(minute, events, good)`` of every minute with events, oldest first."""
        if self.latest is None:
            return
        for m in range(self.latest - self.size + 1, self.latest + 1):
            events = self.events[m % self.size]
            if events:
                yield m, events, self.good[m % self.size]


def fill(counts: MinuteCounts, rows: Iterable[tuple[int, int, int]]) -> MinuteCounts:
    """``counts`` with persisted ``(minute start ts, events, good)`` rows, oldest first."""
    for ts, events, good in rows:
        counts.set(ts // 60, events, good)
    return counts


class Recorder:
    """The leader's counts of every SLO, fed every result it reads (``monitor.alerting``).

    A result costs one lookup of its target's SLOs (precomputed) and a judgement per SLO that
    selects it. Minutes changed since the last save are ``dirty``: saved with their absolute
    counts, so a save repeated, or a new leader recounting what it replays, never counts twice.
    """

    def __init__(self, slos: Sequence[Slo], targets: Iterable[str]) -> None:
        self.slos = list(slos)
        self.counts = [MinuteCounts(int(s.window_s // 60)) for s in self.slos]
        self.by_target: dict[str, tuple[int, ...]] = {}
        for name in targets:
            chosen = tuple(i for i, s in enumerate(self.slos) if s.selection.admits_target(name))
            if chosen:
                self.by_target[name] = chosen
        self.dirty: set[tuple[int, int]] = set()  # (SLO index, minute)

    def add(self, result: CheckResult, now: float) -> None:
        chosen = self.by_target.get(result.target)
        if chosen is None:
            return
        minute = int(result.timestamp.timestamp() // 60)
        if minute > now // 60 + FUTURE_MINUTES:
            return
        for i in chosen:
            good = judge(self.slos[i], result)
            if good is not None and self.counts[i].add(minute, good):
                self.dirty.add((i, minute))

    def load(self, i: int, rows: Iterable[tuple[int, int, int]]) -> None:
        """Persisted ``(minute start ts, events, good)`` rows of SLO ``i``, oldest first."""
        fill(self.counts[i], rows)

    def begin_replay(self, start_ts: float) -> None:
        """Results from ``start_ts`` (a minute's start) on are about to be fed again: their
        minutes are recounted from them, not added to what a previous leader saved."""
        first = int(start_ts // 60)
        for i, counts in enumerate(self.counts):
            for minute, _, _ in list(counts.minutes()):
                if minute >= first:
                    counts.set(minute, 0, 0)
                    self.dirty.add((i, minute))

    def take_dirty(self) -> list[tuple[str, str, int, int, int]]:
        """``(slo, definition, minute start ts, events, good)`` of the minutes changed since
        the last call, for the state store."""
        rows = []
        for i, minute in self.dirty:
            slo, counts = self.slos[i], self.counts[i]
            if counts.holds(minute):
                rows.append((slo.name, slo.definition, minute * 60, *counts.get(minute)))
        self.dirty.clear()
        return rows

    def unsaved(self, rows: Iterable[tuple[str, str, int, int, int]]) -> None:
        index = {s.name: i for i, s in enumerate(self.slos)}
        self.dirty.update((index[name], ts // 60) for name, _, ts, _, _ in rows if name in index)


def burn_rate(events: int, good: int, objective: float) -> float | None:
    """How fast the budget burns: 1 spends exactly the budget over the SLO's window. None
    without events."""
    if events == 0:
        return None
    return (events - good) / events / (1 - objective)


@dataclasses.dataclass(frozen=True, slots=True)
class BurnCheck:
    alert: BurnAlert
    long: float | None
    short: float | None

    @property
    def active(self) -> bool:
        if self.long is None or self.short is None:
            return False
        return min(self.long, self.short) >= self.alert.burn_rate


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    """An SLO's figures at ``now``, over its window up to the current minute."""

    slo: Slo
    now: float
    events: int
    good: int
    burn_rates: dict[str, float | None]  # by alert window ("5m", "1h", ...)
    checks: tuple[BurnCheck, ...]

    @property
    def bad(self) -> int:
        return self.events - self.good

    @property
    def sli(self) -> float | None:
        return self.good / self.events if self.events else None

    @property
    def allowed(self) -> float:
        """Bad events the budget allows over the window."""
        return (1 - self.slo.objective) * self.events

    @property
    def budget_remaining(self) -> float | None:
        return 1 - self.bad / self.allowed if self.events else None

    @property
    def budget_remaining_events(self) -> float:
        return self.allowed - self.bad

    @property
    def severity(self) -> Severity | None:
        """The alert the burn rates call for now: critical while a page condition holds,
        warning while only a warning holds."""
        active = {c.alert.severity for c in self.checks if c.active}
        if Severity.CRITICAL in active:
            return Severity.CRITICAL
        return Severity.WARNING if active else None

    @property
    def fastest(self) -> BurnCheck | None:
        """The alert with the highest burn rate (the fastest page)."""
        return max(self.checks, key=lambda c: c.alert.burn_rate, default=None)

    @property
    def exhausted_at(self) -> float | None:
        """When the budget runs out at the current burn rate (the fastest page's long
        window); None while it does not burn."""
        fastest, remaining = self.fastest, self.budget_remaining
        if fastest is None or not fastest.long or remaining is None:
            return None
        return self.now + max(remaining, 0.0) * self.slo.window_s / fastest.long

    def summary(self) -> str:
        worst = max(
            (c for c in self.checks if c.active),
            key=lambda c: (c.alert.severity is Severity.CRITICAL, c.alert.burn_rate),
            default=None,
        )
        left = self.budget_remaining
        budget = (
            "" if left is None else f"; {left:.0%} of the {self.slo.window_label} error budget left"
        )
        if worst is None:
            return f"{self.slo.name}: error budget burn rate back under every alert's{budget}"
        a = worst.alert
        return (
            f"{self.slo.name}: error budget burning {worst.long:.1f}× over "
            f"{duration_label(a.long_s)} and {worst.short:.1f}× over {duration_label(a.short_s)} "
            f"(alert at {a.burn_rate:g}×){budget}"
        )


def report(slo: Slo, counts: MinuteCounts, now: float) -> Report:
    last = int(now // 60)
    counts.advance(last)
    return report_from(
        slo, now, {w: counts.sums(last - int(w // 60) + 1, last) for w in spans(slo)}
    )


def spans(slo: Slo) -> tuple[float, ...]:
    """The windows a report sums, each ending with the current minute: the SLO's, its alerts'."""
    return (slo.window_s, *slo.windows)


def report_from(slo: Slo, now: float, sums: Mapping[float, tuple[int, int]]) -> Report:
    """The report of ``(events, good)`` over each of ``spans(slo)`` (from the minutes, or
    summed by the state store)."""
    events, good = sums[slo.window_s]
    rates = {w: burn_rate(*sums[w], slo.objective) for w in slo.windows}
    checks = tuple(BurnCheck(a, rates[a.long_s], rates[a.short_s]) for a in slo.alerts)
    return Report(slo, now, events, good, {duration_label(w): r for w, r in rates.items()}, checks)


def since(counts: MinuteCounts) -> float | None:
    """The start of the first minute with events in the window: where the figures start. A
    scan of the window (not for the leader's every evaluation)."""
    first = next(counts.minutes(), None)
    return None if first is None else first[0] * 60.0


def burn_down(
    report_: Report, counts: MinuteCounts, points: int = 720
) -> list[tuple[float, float | None]]:
    """Budget remaining over the window: at each point, 1 - (bad events from the window's
    start to that point) / (what the whole window so far allows). It falls from 1 to today's
    ``budget_remaining``; about ``points`` points, each a whole number of minutes apart."""
    if counts.latest is None:
        return []
    allowed = report_.allowed
    step = max(1, counts.size // points)
    first = counts.latest - counts.size + 1
    out: list[tuple[float, float | None]] = []
    bad = 0
    for start in range(first, counts.latest + 1, step):
        events, good = counts.sums(start, min(start + step - 1, counts.latest))
        bad += events - good
        end = min(start + step, counts.latest + 1)
        out.append((end * 60.0, 1 - bad / allowed if allowed else None))
    return out
