"""Providers' official status pages, polled so every alert can say what the provider admits to.

Two wire formats cover the presets:

- Atlassian Statuspage v2 ``/api/v2/summary.json`` (Anthropic, Groq, DeepSeek; OpenAI's
  incident.io page serves a compatible one): ``status.indicator`` is none|minor|major|critical,
  ``incidents[]`` are the unresolved ones, ``scheduled_maintenances[]`` the announced ones
  (scheduled, in progress or verifying), kept as ``Maintenance``.
- Google Cloud's ``incidents.json``: a flat array of every recent incident, active while it has
  no ``end``; only those touching Gemini / Vertex AI / generative products count for Gemini.

A status page is a second opinion, never a reason to crash the monitor: ``fetch_status`` turns
every failure into indicator "unknown" with the error, and ``StatusPoller`` only reports
"unknown" after several failures in a row, because status pages blip far more often than they
report real outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import types
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import urlsplit

import aiohttp

from llmpulse.http import read_capped

Indicator = Literal["none", "minor", "major", "critical", "maintenance", "unknown"]
SourceKind = Literal["statuspage", "google"]

DEFAULT_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 2 * 1024 * 1024  # Google's incidents.json is ~200 KB; 10x headroom, no more.

DEFAULT_SOURCES: Mapping[str, tuple[str, SourceKind]] = types.MappingProxyType(
    {
        "openai": ("https://status.openai.com/api/v2/summary.json", "statuspage"),
        "anthropic": ("https://status.claude.com/api/v2/summary.json", "statuspage"),
        "groq": ("https://groqstatus.com/api/v2/summary.json", "statuspage"),
        "deepseek": ("https://status.deepseek.com/api/v2/summary.json", "statuspage"),
        "gemini": ("https://status.cloud.google.com/incidents.json", "google"),
    }
)

# Google's feed covers all of Google Cloud; these substrings of a product title mean "Gemini".
GEMINI_PRODUCTS = ("gemini", "vertex ai", "generative")

# Worst first wins when several signals disagree; maintenance and unknown are not severities.
_SEVERITY: dict[str, int] = {"none": 0, "minor": 1, "major": 2, "critical": 3}
_COMPONENT_SEVERITY = {
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
}
_GOOGLE_IMPACT: dict[str, Indicator] = {
    "SERVICE_OUTAGE": "major",
    "SERVICE_DISRUPTION": "minor",
    "SERVICE_INFORMATION": "none",
}
_DESCRIPTIONS: dict[str, str] = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major System Outage",
    "maintenance": "Service Under Maintenance",
    "unknown": "Status unknown",
}
_RESOLVED = {"resolved", "postmortem", "completed"}
_MAINTENANCE_ACTIVE = {"in_progress", "verifying"}
# What a status is kept of a page's announced maintenance: a handful, each name one short line.
MAX_MAINTENANCES = 5
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 500

MaintenanceStatus = Literal["scheduled", "in_progress", "verifying"]


@dataclasses.dataclass(frozen=True, slots=True)
class Maintenance:
    """A maintenance a status page announces: upcoming (``scheduled``) or under way."""

    name: str
    status: MaintenanceStatus
    starts_at: datetime | None  # the page's scheduled_for
    ends_at: datetime | None  # its scheduled_until
    url: str | None  # its shortlink: an http(s) URL, or None

    @property
    def in_progress(self) -> bool:
        return self.status in _MAINTENANCE_ACTIVE


@dataclasses.dataclass(frozen=True, slots=True)
class OfficialStatus:
    """What one provider's status page said at ``fetched_at``, normalized across formats."""

    provider: str
    indicator: Indicator
    description: str  # the page's own words where it has them, e.g. "Partial System Outage"
    incidents: list[str]  # unresolved incidents as "name (impact)"
    url: str  # the human status page, for the alert's link
    fetched_at: datetime
    error: str | None = None  # set exactly when the page could not be read
    # Under way first, then by start; at most MAX_MAINTENANCES (Statuspage pages only).
    maintenances: list[Maintenance] = dataclasses.field(default_factory=list)

    @property
    def in_maintenance(self) -> bool:
        """The provider announces maintenance under way (also beside an incident)."""
        return self.indicator == "maintenance" or any(m.in_progress for m in self.maintenances)

    def summary(self) -> str:
        """One line for an alert's ``official_status``."""
        if self.error is not None:
            return f"unknown: {self.error}"
        text = f"{self.indicator}: {self.description}"
        return f"{text} — {'; '.join(self.incidents)}" if self.incidents else text


class _SourceError(Exception):
    """A status page answered, but not with something we can read."""


async def fetch_status(
    session: aiohttp.ClientSession,
    provider: str,
    url: str,
    kind: SourceKind = "statuspage",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
    products: tuple[str, ...] = GEMINI_PRODUCTS,
) -> OfficialStatus:
    """Fetch and normalize one status page. Never raises (except on cancellation)."""
    page = human_url(url, kind)
    now = datetime.now(UTC)
    try:
        if kind not in ("statuspage", "google"):  # a config typo must not read as "all clear"
            raise _SourceError(f"unknown status source kind {kind!r}")
        payload = await _get_json(session, url, timeout_s, max_bytes)
        maintenances: list[Maintenance] = []
        if kind == "google":
            indicator, description, incidents = _parse_google(payload, products)
        else:
            indicator, description, incidents = _parse_statuspage(payload)
            maintenances = _maintenances(payload, now)
    except TimeoutError:  # aiohttp's own timeouts subclass it too
        return _unknown(provider, page, now, f"timed out after {timeout_s:g}s")
    except _SourceError as exc:
        return _unknown(provider, page, now, str(exc))
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _unknown(provider, page, now, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a status page must never take the poller down
        return _unknown(provider, page, now, f"unexpected {type(exc).__name__}: {exc}")
    return OfficialStatus(
        provider, indicator, description, incidents, page, now, maintenances=maintenances
    )


def human_url(url: str, kind: SourceKind) -> str:
    """The page a person would open: the API URL without its ``/api/v2/...`` or file name."""
    if kind == "statuspage" and "/api/v2/" in url:
        return url.split("/api/v2/", 1)[0]
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host; fetching will report the real error
        return url
    path = parts.path.rsplit("/", 1)[0] if parts.path.endswith(".json") else parts.path
    return f"{parts.scheme}://{parts.netloc}{path.rstrip('/')}/"


def _unknown(provider: str, page: str, now: datetime, error: str) -> OfficialStatus:
    return OfficialStatus(provider, "unknown", _DESCRIPTIONS["unknown"], [], page, now, error)


async def _get_json(
    session: aiohttp.ClientSession, url: str, timeout_s: float, max_bytes: int
) -> Any:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {"Accept": "application/json", "User-Agent": "llmpulse (status page monitor)"}
    async with session.get(url, timeout=timeout, headers=headers) as response:
        if response.status != 200:
            raise _SourceError(f"HTTP {response.status} {response.reason or ''}".rstrip())
        body = await read_capped(response, max_bytes, too_large=_SourceError)
    try:
        return json.loads(bytes(body))
    except ValueError as exc:
        # An HTML error page or captive portal is the usual culprit; show its first bytes.
        head = bytes(body[:60]).decode("utf-8", "replace").strip()
        raise _SourceError(f"not JSON ({exc.__class__.__name__}): {head!r}") from None


def _indicator(raw: object) -> Indicator | None:
    value = raw.lower() if isinstance(raw, str) else ""  # str(None) would read as "none"
    return cast(Indicator, value) if value in _SEVERITY or value == "maintenance" else None


def _worst(values: list[str]) -> Indicator:
    known = [v for v in values if v in _SEVERITY]  # unknown words never outrank "none"
    return cast(Indicator, max(known, key=_SEVERITY.__getitem__, default="none"))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _parse_statuspage(payload: Any) -> tuple[Indicator, str, list[str]]:
    if not isinstance(payload, dict) or not {"status", "components", "incidents"} & set(payload):
        raise _SourceError("not a Statuspage v2 summary (no status, components or incidents)")
    status = payload.get("status")
    if not isinstance(status, dict):
        status = {}
    open_incidents = [
        i for i in _dicts(payload.get("incidents")) if str(i.get("status", "")) not in _RESOLVED
    ]
    incidents = [
        f"{i.get('name') or 'unnamed incident'} ({i.get('impact') or 'unknown impact'})"
        for i in open_incidents
    ]
    components = _dicts(payload.get("components"))

    raw = _indicator(status.get("indicator"))
    indicator = raw
    if indicator is None:
        # No usable roll-up (some compatible pages omit it): derive it the way Statuspage does.
        indicator = _worst(
            [str(i.get("impact", "")) for i in open_incidents]
            + [_COMPONENT_SEVERITY.get(str(c.get("status")), "none") for c in components]
        )
    if indicator == "none":
        # Statuspage keeps indicator "none" during planned work; on-call should still know.
        in_maintenance = any(
            m.get("status") in _MAINTENANCE_ACTIVE
            for m in _dicts(payload.get("scheduled_maintenances"))
        ) or any(c.get("status") == "under_maintenance" for c in components)
        if in_maintenance:
            indicator = "maintenance"
    description = status.get("description")
    if not isinstance(description, str) or not description or raw != indicator:
        description = _DESCRIPTIONS[indicator]  # the page's words describe another indicator
    return indicator, description, incidents


def _maintenances(payload: dict[str, Any], now: datetime) -> list[Maintenance]:
    """The page's announced maintenances, less those it still calls scheduled after their end."""
    found = []
    for m in _dicts(payload.get("scheduled_maintenances")):
        status = m.get("status")
        if status not in ("scheduled", *_MAINTENANCE_ACTIVE):
            continue  # completed, or a word Statuspage does not use
        ends = _when(m.get("scheduled_until"))
        if status == "scheduled" and ends is not None and ends <= now:
            continue
        name = _line(m.get("name")) or "unnamed maintenance"
        starts = _when(m.get("scheduled_for"))
        found.append(Maintenance(name, status, starts, ends, _link(m.get("shortlink"))))
    found.sort(key=lambda m: (not m.in_progress, m.starts_at or datetime.max.replace(tzinfo=UTC)))
    return found[:MAX_MAINTENANCES]


def _line(value: object) -> str:
    """The first line of a text the page wrote, at most ``MAX_NAME_CHARS``."""
    lines = value.strip().splitlines() if isinstance(value, str) else []
    text = lines[0].strip() if lines else ""
    return text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 1] + "…"


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _link(value: object) -> str | None:
    """An http(s) URL to link to; anything else (``javascript:``, a relative path) is none."""
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def _parse_google(payload: Any, products: tuple[str, ...]) -> tuple[Indicator, str, list[str]]:
    if not isinstance(payload, list):
        raise _SourceError("not a Google Cloud incidents.json (expected a JSON array)")
    active: list[tuple[Indicator, str, str]] = []  # (indicator, status_impact, first line)
    for incident in _dicts(payload):
        if incident.get("end") or not _affects(incident, products):
            continue  # ended, or about some other Google Cloud product
        impact = str(incident.get("status_impact") or "")
        # An active incident of a kind Google has not documented is still not "all clear".
        indicator = _GOOGLE_IMPACT.get(impact, "minor")
        lines = str(incident.get("external_desc") or "").strip().splitlines()
        active.append((indicator, impact, lines[0] if lines else "unnamed incident"))
    if not active:
        return "none", "No active incidents", []
    worst, impact, _ = max(active, key=lambda a: _SEVERITY[a[0]])
    description = impact.replace("_", " ").title() if impact else "Active incident"
    return worst, description, [f"{name} ({indicator})" for indicator, _, name in active]


def _affects(incident: dict[str, Any], products: tuple[str, ...]) -> bool:
    titles = [str(p.get("title", "")) for p in _dicts(incident.get("affected_products"))]
    # service_name is often "Multiple Products", but older entries carry only it.
    titles.append(str(incident.get("service_name", "")))
    return any(word in title.lower() for title in titles for word in products)


Change: TypeAlias = tuple[OfficialStatus | None, OfficialStatus]


class StatusPoller:
    """Polls every source concurrently and reports changes of the normalized indicator.

    ``current(provider)`` is the latest fetch, failed or not: the caller decides what to show.
    ``changes()`` receives ``(old, new)`` only when the indicator the poller last reported
    changes. The first successful fetch sets that baseline silently; a failure becomes
    "unknown" only after ``failures_before_unknown`` consecutive failures, so one dropped poll
    neither alerts nor hides a real change (none → fail → minor reports none → minor).
    """

    def __init__(
        self,
        sources: Mapping[str, tuple[str, SourceKind]],
        interval_s: float = 60.0,
        *,
        failures_before_unknown: int = 3,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.sources = dict(sources)
        self.interval_s = interval_s
        self.failures_before_unknown = failures_before_unknown
        self.timeout_s = timeout_s
        self._latest: dict[str, OfficialStatus] = {}
        self._reported: dict[str, OfficialStatus] = {}
        self._failures: dict[str, int] = {}
        self._changes: asyncio.Queue[Change] = asyncio.Queue()

    def current(self, provider: str) -> OfficialStatus | None:
        return self._latest.get(provider)

    def changes(self) -> asyncio.Queue[Change]:
        return self._changes

    async def poll_once(self, session: aiohttp.ClientSession) -> list[OfficialStatus]:
        """One round over every source; returns the fresh statuses in source order."""
        fetched = await asyncio.gather(
            *(
                fetch_status(session, provider, url, kind, timeout_s=self.timeout_s)
                for provider, (url, kind) in self.sources.items()
            )
        )
        for status in fetched:
            self._observe(status)
        return list(fetched)

    async def run(self, session: aiohttp.ClientSession, stop_event: asyncio.Event) -> None:
        """Poll every ``interval_s`` (measured start to start) until ``stop_event`` is set."""
        loop = asyncio.get_running_loop()
        while not stop_event.is_set():
            started = loop.time()
            round_ = asyncio.ensure_future(self.poll_once(session))
            stopper = asyncio.ensure_future(stop_event.wait())
            try:
                # A stop must not wait for a slow status page's full timeout.
                await asyncio.wait({round_, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (round_, stopper):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            remaining = self.interval_s - (loop.time() - started)
            if stop_event.is_set() or remaining <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_event.wait(), timeout=remaining)

    def _observe(self, status: OfficialStatus) -> None:
        provider = status.provider
        self._latest[provider] = status
        old = self._reported.get(provider)
        if status.error is not None:
            self._failures[provider] = self._failures.get(provider, 0) + 1
            if self._failures[provider] < self.failures_before_unknown:
                return  # a blip: keep reporting what we last knew
            if old is not None and old.indicator == "unknown":
                return  # still down; already reported
        else:
            self._failures[provider] = 0
            if old is None:
                self._reported[provider] = status  # the baseline is not news
                return
            if old.indicator == status.indicator:
                self._reported[provider] = status  # same indicator, fresher details
                return
        self._reported[provider] = status
        self._changes.put_nowait((old, status))
