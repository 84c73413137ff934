"""How late each provider's status page confirmed the incidents we detected, and which it never
posted.

The definitions (the README's "Acknowledgement record" says the same):

- **Our incident**, for one provider: a span during which at least one outage alert of its
  targets was firing (``AVAILABILITY_RULES``, or ``provider_down``); alerts that overlap are one
  incident. **Our page** is when its first alert fired, as the alert history recorded the
  notification (not when the condition began: what the page is compared with is when we told
  someone).
- **Confirmed**: the provider's page posted an incident that touches the components followed
  for the provider (or does not say what it touches), created from ``BEFORE_S`` before our page
  until ``AFTER_S`` after our incident ended, or created earlier and still open then (last seen
  open by the poller). Its creation time is the page's own (``created_at``, ``created``,
  ``pubDate``), or when we first saw it where the page gives none.
- **Lag**: that official incident's creation minus our page, the earliest one created in the
  window, else the latest one open across it; negative when the provider's page was first.
- **Never posted**: an incident of ours whose window has closed (``AFTER_S`` after its end)
  without an official one. While the window is open the incident is pending: counted neither
  way.

Official incidents are what the poller saw open, stored (``AlertStateStore``) the first time,
since status pages list only the unresolved ones.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.probe.official import any_matches
from llmpulse.rules import AVAILABILITY_RULES, PROVIDER_RULE

BEFORE_S = 30 * 60.0  # an incident the page posted this long before our page still confirms it
AFTER_S = 2 * 3600.0  # ... and one posted up to this long after ours ended
PERIOD_S = 30 * 86400.0  # the record covers the last 30 days
KEEP_S = PERIOD_S + BEFORE_S  # an official incident last seen open longer ago is of no use
OUTAGE_RULES = frozenset((*AVAILABILITY_RULES, PROVIDER_RULE))

_NAMES = {
    "openai": "OpenAI", "anthropic": "Anthropic", "gemini": "Gemini", "groq": "Groq",
    "mistral": "Mistral", "deepseek": "DeepSeek", "together": "Together",
    "fireworks": "Fireworks", "openrouter": "OpenRouter", "xai": "xAI", "azure": "Azure",
    "vertex": "Vertex AI", "bedrock": "AWS",
}  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class PostedIncident:
    """An incident a provider's status page posted, as stored."""

    provider: str
    id: str
    name: str
    created_at: float  # the page's own time, else when first seen
    components: tuple[str, ...]
    url: str | None = None
    last_seen: float | None = None  # the last poll that saw it open; None: only at created_at

    @property
    def open_until(self) -> float:
        return self.created_at if self.last_seen is None else max(self.created_at, self.last_seen)


@dataclasses.dataclass(frozen=True, slots=True)
class OurIncident:
    start: float  # our page
    end: float | None  # None: still going on


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    incident: OurIncident
    posted: PostedIncident | None  # the earliest official incident in its window
    pending: bool  # unconfirmed, and its window still open

    @property
    def lag_s(self) -> float | None:
        return None if self.posted is None else self.posted.created_at - self.incident.start


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """A provider's record over the period."""

    provider: str
    verdicts: tuple[Verdict, ...]

    @property
    def decided(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.pending]

    @property
    def confirmed(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.posted is not None]

    @property
    def missed(self) -> list[Verdict]:
        return [v for v in self.decided if v.posted is None]

    @property
    def median_lag_s(self) -> float | None:
        lags = [v.lag_s for v in self.confirmed if v.lag_s is not None]
        return statistics.median(lags) if lags else None

    def sentence(self) -> str:
        """E.g. "Anthropic's page confirmed 7 of our 9 incidents, a median 11 min after our
        page"."""
        name = _NAMES.get(self.provider, self.provider)
        decided, pending = len(self.decided), len(self.verdicts) - len(self.decided)
        if not decided and pending:
            return f"{name}'s page has not posted our ongoing incident yet"
        if not decided:
            return f"No incident of ours to compare with {name}'s page in the last 30 days"
        noun = "incident" if decided == 1 else "incidents"
        text = f"{name}'s page confirmed {len(self.confirmed)} of our {decided} {noun}"
        lag = self.median_lag_s
        if lag is not None:
            when = "after" if lag >= 0 else "before"
            text += f", a median {_minutes(abs(lag))} {when} our page"
        return text + (f" ({pending} more under way)" if pending else "")


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def our_incidents(events: Iterable[tuple[float, Notification]], provider: str) -> list[OurIncident]:
    """The provider's outage alerts, from the history (oldest first), merged where they
    overlap into incidents."""
    spans: list[tuple[float, float | None]] = []
    open_: dict[str, float] = {}
    for at, n in events:
        if n.provider != provider or n.rule not in OUTAGE_RULES:
            continue
        if n.status is AlertState.FIRING:
            open_.setdefault(n.fingerprint, at)
        elif n.status is AlertState.RESOLVED and n.fingerprint in open_:
            spans.append((open_.pop(n.fingerprint), at))
    spans.extend((start, None) for start in open_.values())
    spans.sort(key=lambda s: s[0])
    merged: list[OurIncident] = []
    for start, end in spans:
        last = merged[-1] if merged else None
        if last is not None and (last.end is None or start <= last.end):
            later = None if last.end is None or end is None else max(last.end, end)
            merged[-1] = OurIncident(last.start, later)
        else:
            merged.append(OurIncident(start, end))
    return merged


def record(
    provider: str,
    ours: Sequence[OurIncident],
    posted: Iterable[PostedIncident],
    scope: tuple[str, ...],
    now: float,
) -> Record:
    """Each incident of ours against what the provider's page posted on the followed
    components ``scope`` (globs; () for the whole page)."""
    relevant = sorted(
        (
            p
            for p in posted
            if p.provider == provider
            and (not scope or not p.components or any_matches(p.components, scope))
        ),
        key=lambda p: p.created_at,
    )
    verdicts = []
    for incident in ours:
        opens = incident.start - BEFORE_S
        closes = (incident.end if incident.end is not None else now) + AFTER_S
        # Pages list an incident for as long as it is open: one posted long before ours and
        # still open in the window is the page having been first, not silent.
        overlapping = [p for p in relevant if p.created_at <= closes and p.open_until >= opens]
        found = next((p for p in overlapping if p.created_at >= opens), None)
        if found is None and overlapping:
            found = overlapping[-1]
        pending = found is None and (incident.end is None or closes > now)
        verdicts.append(Verdict(incident, found, pending))
    return Record(provider, tuple(verdicts))
