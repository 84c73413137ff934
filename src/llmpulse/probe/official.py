"""Providers' official status pages, polled so every alert can say what the provider admits to.

Five wire formats cover the presets (``DEFAULT_SOURCES``; the README's table says how each URL
was verified):

- Atlassian Statuspage v2 ``/api/v2/summary.json`` (Anthropic, Groq, DeepSeek; OpenAI's
  incident.io page serves a compatible one): ``status.indicator`` is none|minor|major|critical,
  ``components[]`` each have a status, ``incidents[]`` are the unresolved ones with the
  ``components`` they touch, ``scheduled_maintenances[]`` the announced ones (scheduled, in
  progress or verifying), kept as ``Maintenance``.
- Google Cloud's ``incidents.json`` (Vertex AI): a flat array of every recent incident, active
  while it has no ``end``; only those touching AI products (``AI_PRODUCTS``) are kept, their
  ``affected_products`` standing for components.
- AWS Health Dashboard's per-service RSS (``/rss/bedrock-{region}.rss``): one item per update,
  newest first, titled "Informational message: …", "Performance issues: …", "Service
  disruption: …", "Service impact: …" or "Service is operating normally: …"; ``[RESOLVED]``
  after the kind, or a "Resolved: " before it, marks a closed one.
- Azure's status RSS: an item per current communication, with the service and region as its
  ``category`` elements; only those naming Azure OpenAI / AI Foundry are kept.
- An incident feed in RSS/Atom (xAI's ``feed.xml``, a Statuspage history feed): one entry per
  incident, its state a category or the newest update in its text; a "[component] " title
  prefix and the categories that are not a state or a severity stand for components.

RSS and Atom are read with feedparser (a well-kept parser that survives the feeds' encodings
and dialects) from a body already bounded in size.

A target follows only the components that carry its API (``scope``): ``DEFAULT_COMPONENTS`` per
provider, or the target's ``status_components``. Incidents elsewhere stay listed, marked as
such, but do not make its indicator worse.

A status page is a second opinion, never a reason to crash the monitor: ``fetch_status`` turns
every failure into indicator "unknown" with the error, and ``StatusPoller`` only reports
"unknown" after several failures in a row, because status pages blip far more often than they
report real outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import json
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import urlsplit

import aiohttp
import feedparser

from llmpulse.config.alerting import StatusFormat
from llmpulse.http import read_capped
from llmpulse.target import Target

Indicator = Literal["none", "minor", "major", "critical", "maintenance", "unknown"]
SourceKind: TypeAlias = StatusFormat

DEFAULT_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 2 * 1024 * 1024  # Google's incidents.json is ~200 KB; 10x headroom, no more.

DEFAULT_SOURCES: Mapping[str, tuple[str, SourceKind]] = types.MappingProxyType(
    {
        "openai": ("https://status.openai.com/api/v2/summary.json", "statuspage"),
        "anthropic": ("https://status.claude.com/api/v2/summary.json", "statuspage"),
        "groq": ("https://groqstatus.com/api/v2/summary.json", "statuspage"),
        "deepseek": ("https://status.deepseek.com/api/v2/summary.json", "statuspage"),
        # Google Cloud's feed covers Vertex AI, not the Gemini API (generativelanguage), whose
        # page, aistudio.google.com/status, has no documented machine-readable feed: the
        # gemini preset polls nothing rather than a feed about another product.
        "vertex": ("https://status.cloud.google.com/incidents.json", "google"),
        # One feed per region of the provider's targets, merged ({region}: from an endpoint).
        "bedrock": ("https://status.aws.amazon.com/rss/bedrock-{region}.rss", "aws"),
        # The region-independent host: status.azure.com redirects to a geo-routed instance that
        # serves an empty (all clear) feed when its own region is the one in trouble.
        "azure": ("https://rssfeed.azure.status.microsoft/en-us/status/feed/", "azure"),
        # xAI's API docs name this feed for its status.
        "xai": ("https://status.x.ai/feed.xml", "rss"),
    }
)

# The components that carry each provider's API, as globs (case-insensitive). Where the page
# lists none of them (a renamed component), a target follows the whole page: a stale mapping
# must not hide an outage. Names as the pages show them (README, "Status sources"):
DEFAULT_COMPONENTS: Mapping[str, tuple[str, ...]] = types.MappingProxyType(
    {
        # API components beside ChatGPT's ("Conversations", "Login", "Voice mode", ...) and
        # Codex: public clients of the page name "Chat Completions" and "Responses";
        # "Embeddings" is the API reference's name for the endpoint, not seen on the page.
        "openai": ("Chat Completions", "Responses", "Embeddings"),
        # "Claude API (api.anthropic.com)", beside claude.ai and Claude Code.
        "anthropic": ("Claude API*",),
        # A plain "API" component and one per model ({model}: the target's model).
        "groq": ("API", "{model}"),
        # Google Cloud product titles: "Vertex Gemini API", "Generative AI on Vertex AI", ...
        # (not "Gemini for Google Workspace", which the AI filter also lets through).
        "vertex": ("*Vertex*",),
        # xAI's page lists "API (US East)", "API (US West)" beside Grok, and "API Console",
        # its web console (not the API, so not "API*").
        "xai": ("API", "API (*)"),
        # Each AWS feed's incidents carry the feed's name ("bedrock-eu-west-1"): a target
        # follows its own region's ({region}: from its endpoint).
        "bedrock": ("bedrock-{region}",),
        # Azure: none. Its feed's items are already only the AI ones (AZURE_PRODUCTS), and the
        # names of their service categories could not be verified.
    }
)

# Google's and Azure's feeds cover whole clouds; these substrings of a product title, service
# category or item title mean an AI product, the rest are dropped.
AI_PRODUCTS = ("gemini", "vertex ai", "generative")
AZURE_PRODUCTS = ("openai", "ai foundry")
_AWS_REGION = re.compile(r"bedrock(?:-runtime)?[.-]([a-z]{2}(?:-[a-z]+)+-\d)\.")

# Worst first wins when several signals disagree; maintenance and unknown are not severities.
_SEVERITY: dict[str, int] = {"none": 0, "minor": 1, "major": 2, "critical": 3}
_COMPONENT_SEVERITY = {
    "operational": "none",
    "degraded_performance": "minor",
    "partial_outage": "major",
    "major_outage": "critical",
    "under_maintenance": "maintenance",
}
_GOOGLE_IMPACT: dict[str, Indicator] = {
    "SERVICE_OUTAGE": "major",
    "SERVICE_DISRUPTION": "minor",
    "SERVICE_INFORMATION": "none",
}
# An AWS item's title starts with one of these, then ": " and the event's name.
_AWS_IMPACT: dict[str, Indicator] = {
    "service is operating normally": "none",
    "informational message": "minor",
    "performance issues": "minor",
    "service disruption": "major",
    "service impact": "major",
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
# An incident feed's states (a category, or the newest update's word in the entry's text):
# under way, maintenance under way, or over (maintenance announced for later is not under way).
_FEED_OPEN = {"investigating", "identified", "monitoring", "update", "ongoing", "open"}
_FEED_MAINTENANCE = {"in progress", "verifying"}
_FEED_OVER = {"resolved", "postmortem", "completed", "scheduled"}
_FEED_STATES = _FEED_OPEN | _FEED_MAINTENANCE | _FEED_OVER
# Where an entry says its state in its text: Statuspage's history feeds list the updates newest
# first, each "<strong>Resolved</strong> - …"; xAI's items "<h3>Status: Resolved</h3>".
_STATE_IN_TEXT = re.compile(
    r"<strong>\s*([a-z _]{3,20}?)\s*</strong>|status:\s*([a-z _]{3,20}?)\s*<", re.I
)
# An incident feed's categories that are its severity (xAI's words), as an impact.
_FEED_SEVERITY: dict[str, Indicator] = {
    "available": "none",
    "info": "minor",
    "disruption": "minor",
    "outage": "major",
}
_FEED_TITLE = re.compile(r"^\[([^\]]{1,100})\]\s*(.*)$")
# What a status is kept of a page's announced maintenance: a handful, each name one short line.
MAX_MAINTENANCES = 5
MAX_NAME_CHARS = 200
MAX_URL_CHARS = 500
# Of a page's components and open incidents, more than any real page shows.
MAX_COMPONENTS = 200
MAX_INCIDENTS = 50
MAX_INCIDENT_COMPONENTS = 20

MaintenanceStatus = Literal["scheduled", "in_progress", "verifying"]


@dataclasses.dataclass(frozen=True, slots=True)
class Maintenance:
    """A maintenance a status page announces: upcoming (``scheduled``) or under way."""

    name: str
    status: MaintenanceStatus
    starts_at: datetime | None  # the page's scheduled_for
    ends_at: datetime | None  # its scheduled_until
    url: str | None  # its shortlink: an http(s) URL, or None
    components: tuple[str, ...] = ()  # what it touches, as the page names them; () when not said

    @property
    def in_progress(self) -> bool:
        return self.status in _MAINTENANCE_ACTIVE

    def counts_for(self, patterns: tuple[str, ...]) -> bool:
        """It may be on an API of ``patterns``: it touches one, or does not say what."""
        return not patterns or not self.components or any_matches(self.components, patterns)


@dataclasses.dataclass(frozen=True, slots=True)
class OfficialIncident:
    """An unresolved incident as the page posts it."""

    id: str  # the page's own id (stable across fetches)
    name: str  # one line, at most MAX_NAME_CHARS
    impact: Indicator  # none|minor|major|critical
    created_at: datetime | None  # when the page posted it
    components: tuple[str, ...]  # what it touches, as the page names them; () when not said
    url: str | None = None

    def counts_for(self, patterns: tuple[str, ...]) -> bool:
        """It may be about an API of ``patterns``: it touches one, or does not say what."""
        return not patterns or not self.components or any_matches(self.components, patterns)


@dataclasses.dataclass(frozen=True, slots=True)
class OfficialStatus:
    """What one provider's status page said at ``fetched_at``, normalized across formats.

    ``indicator``, ``description`` and ``incidents`` are those of ``scope`` (the components
    followed; () for the whole page); ``page_indicator`` is the whole page's, and ``components``
    and ``open_incidents`` what the page said, from which ``scoped`` computes another scope.
    """

    provider: str
    indicator: Indicator
    description: str  # the page's own words where it has them, e.g. "Partial System Outage"
    incidents: list[str]  # unresolved incidents as "name (impact)", with their components
    url: str  # the human status page, for the alert's link
    fetched_at: datetime
    error: str | None = None  # set exactly when the page could not be read
    # Under way first, then by start; at most MAX_MAINTENANCES (Statuspage pages only).
    maintenances: list[Maintenance] = dataclasses.field(default_factory=list)
    # Component name -> its indicator (none|minor|major|critical|maintenance); Statuspage only.
    components: Mapping[str, Indicator] = dataclasses.field(default_factory=dict)
    open_incidents: tuple[OfficialIncident, ...] = ()
    page_indicator: Indicator | None = None  # None: as ``indicator`` (no scope applied)
    page_description: str | None = None
    scope: tuple[str, ...] = ()

    @property
    def in_maintenance(self) -> bool:
        """The provider announces maintenance under way on the components followed (also
        beside an incident)."""
        return self.indicator == "maintenance" or any(
            m.in_progress and m.counts_for(self.scope) for m in self.maintenances
        )

    def summary(self) -> str:
        """One line for an alert's ``official_status``."""
        if self.error is not None:
            return f"unknown: {self.error}"
        text = f"{self.indicator}: {self.description}"
        return f"{text} — {'; '.join(self.incidents)}" if self.incidents else text


class _SourceError(Exception):
    """A status page answered, but not with something we can read."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Page:
    """One fetch, parsed: the whole page's verdict and what it is made of."""

    indicator: Indicator
    description: str
    incidents: tuple[OfficialIncident, ...]
    components: Mapping[str, Indicator] = dataclasses.field(default_factory=dict)
    maintenances: list[Maintenance] = dataclasses.field(default_factory=list)


def guess_format(url: str) -> SourceKind:
    """How to read a ``status_page`` URL configured without ``status_format``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "statuspage"
    host, path = (parts.hostname or "").lower(), parts.path.lower()
    if path.endswith("incidents.json"):
        return "google"
    if host == "status.aws.amazon.com":
        return "aws"
    if host.endswith("azure.status.microsoft"):
        return "azure"
    if path.endswith((".rss", ".xml", ".atom", "/feed", "/feed/")):
        return "rss"
    return "statuspage"


def aws_region(base_url: str) -> str | None:
    """The AWS region of a Bedrock endpoint (``bedrock-runtime.{region}.amazonaws.com``)."""
    found = _AWS_REGION.search(base_url)
    return found.group(1) if found else None


def source_urls(url: str, targets: Iterable[Target]) -> tuple[str, ...]:
    """``url`` with ``{region}`` filled from each of ``targets`` that has one (one feed per
    region, in the targets' order); ``url`` itself when it has no ``{region}``."""
    if "{region}" not in url:
        return (url,)
    regions = dict.fromkeys(r for t in targets if (r := aws_region(t.base_url)))
    return tuple(url.replace("{region}", r) for r in regions)


def components_for(target: Target) -> tuple[str, ...]:
    """The component globs a target follows: its ``status_components``, else its provider's
    default mapping, ``{model}`` standing for its model and ``{region}`` for its AWS region (a
    glob naming a region it has not is dropped); () is the whole page."""
    if target.status_components is not None:
        return target.status_components
    region = aws_region(target.base_url)
    return tuple(
        p.replace("{model}", target.model).replace("{region}", region or "")
        for p in DEFAULT_COMPONENTS.get(target.provider, ())
        if region or "{region}" not in p
    )


def provider_scope(targets: Iterable[Target]) -> tuple[str, ...]:
    """What a provider's status follows for alerts: every component its targets follow; the
    whole page as soon as one target follows the whole page."""
    found: dict[str, None] = {}
    for target in targets:
        patterns = components_for(target)
        if not patterns:
            return ()
        found.update(dict.fromkeys(patterns))
    return tuple(found)


def any_matches(names: Iterable[str], patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(n.lower(), p.lower()) for n in names for p in patterns)


async def fetch_status(
    session: aiohttp.ClientSession,
    provider: str,
    url: str,
    kind: SourceKind = "statuspage",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
    products: tuple[str, ...] = AI_PRODUCTS,
    scope: tuple[str, ...] = (),
) -> OfficialStatus:
    """Fetch and normalize one status page, scoped to the components ``scope`` names.
    Never raises (except on cancellation)."""
    page_url = human_url(url, kind)
    now = datetime.now(UTC)
    try:
        if kind not in ("statuspage", "google", *_FEED_PARSERS):  # a typo is not "all clear"
            raise _SourceError(f"unknown status source kind {kind!r}")
        body = await _get(session, url, timeout_s, max_bytes)
        if kind == "statuspage":
            page = _parse_statuspage(_json(body), now)
        elif kind == "google":
            page = _parse_google(_json(body), products)
        else:
            page = _FEED_PARSERS[kind](_feed(body))
        if kind == "aws":  # the feed's name ("bedrock-eu-west-1") says the region
            name = _line(urlsplit(url).path.rsplit("/", 1)[-1].removesuffix(".rss"))
            regional = [
                dataclasses.replace(i, components=(*i.components, name)) for i in page.incidents
            ]
            page = dataclasses.replace(page, incidents=tuple(regional))
    except TimeoutError:  # aiohttp's own timeouts subclass it too
        return _unknown(provider, page_url, now, f"timed out after {timeout_s:g}s")
    except _SourceError as exc:
        return _unknown(provider, page_url, now, str(exc))
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return _unknown(provider, page_url, now, f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a status page must never take the poller down
        return _unknown(provider, page_url, now, f"unexpected {type(exc).__name__}: {exc}")
    whole = OfficialStatus(
        provider,
        page.indicator,
        page.description,
        [_incident_line(i, ()) for i in page.incidents],
        page_url,
        now,
        maintenances=page.maintenances,
        components=page.components,
        open_incidents=page.incidents,
    )
    return scoped(whole, scope)


async def fetch_merged(
    session: aiohttp.ClientSession,
    provider: str,
    urls: Sequence[str],
    kind: SourceKind = "statuspage",
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    scope: tuple[str, ...] = (),
) -> OfficialStatus:
    """One provider's status from several feeds of one format (Bedrock's, one per region):
    the worst of those that could be read, their incidents together; "unknown" only when none
    could. Never raises (except on cancellation)."""
    if len(urls) == 1:
        return await fetch_status(
            session, provider, urls[0], kind, timeout_s=timeout_s, scope=scope
        )
    fetched = await asyncio.gather(
        *(fetch_status(session, provider, u, kind, timeout_s=timeout_s) for u in urls)
    )
    read = [s for s in fetched if s.error is None]
    if not read:
        return fetched[0]
    indicator = _worst(s.indicator for s in read)
    if indicator == "none" and any(s.indicator == "maintenance" for s in read):
        indicator = "maintenance"
    description = read[0].description if len(fetched) == 1 else _DESCRIPTIONS[indicator]
    if len(read) < len(fetched):
        description += f" ({len(fetched) - len(read)} of {len(fetched)} feeds unreadable)"
    merged = OfficialStatus(
        provider,
        indicator,
        description,
        [line for s in read for line in s.incidents],
        read[0].url,
        read[0].fetched_at,
        maintenances=[m for s in read for m in s.maintenances][:MAX_MAINTENANCES],
        components={name: v for s in read for name, v in s.components.items()},
        open_incidents=tuple(i for s in read for i in s.open_incidents)[:MAX_INCIDENTS],
    )
    return scoped(merged, scope)


def scoped(status: OfficialStatus, patterns: tuple[str, ...]) -> OfficialStatus:
    """``status`` as seen by whoever follows the components ``patterns`` names (globs).

    The indicator is the worst of those components' own statuses and of the impacts of the
    open incidents that touch them (or do not say what they touch), and of the page's roll-up
    where nothing on the page explains it. An incident elsewhere stays listed, "not this API",
    but does not count. A page that lists none of the named components is followed whole: a
    renamed component must not hide an outage.
    """
    page_indicator = status.page_indicator or status.indicator
    page_description = status.page_description or status.description
    base = dataclasses.replace(
        status,
        indicator=page_indicator,
        description=page_description,
        incidents=[_incident_line(i, ()) for i in status.open_incidents] or status.incidents,
        page_indicator=None,
        page_description=None,
        scope=(),
    )
    if status.error is not None or not patterns:
        return base
    followed = [sev for name, sev in status.components.items() if any_matches((name,), patterns)]
    if status.components and not followed:
        return base
    counted = [i for i in status.open_incidents if i.counts_for(patterns)]
    indicator = _worst([*followed, *(i.impact for i in counted)])
    explained = _worst([*status.components.values(), *(i.impact for i in status.open_incidents)])
    if _SEVERITY.get(page_indicator, 0) > _SEVERITY[explained]:
        # A roll-up that no component or incident explains is the page's word on everything.
        indicator = _worst([indicator, page_indicator])
    if indicator == "none" and (
        "maintenance" in followed or (not status.components and page_indicator == "maintenance")
    ):
        indicator = "maintenance"
    if indicator == page_indicator:
        description = page_description
    elif page_indicator in _SEVERITY and _SEVERITY[page_indicator] > _SEVERITY.get(indicator, 0):
        description = f"{_DESCRIPTIONS[indicator]} for this API (the page: {page_indicator})"
    else:
        description = _DESCRIPTIONS[indicator]
    return dataclasses.replace(
        base,
        indicator=indicator,
        description=description,
        incidents=[_incident_line(i, patterns) for i in status.open_incidents],
        page_indicator=page_indicator,
        page_description=page_description,
        scope=patterns,
    )


def _incident_line(incident: OfficialIncident, patterns: tuple[str, ...]) -> str:
    """The incident as ``name (impact; components)``, marked when it does not count."""
    said: list[str] = [incident.impact]
    if incident.components:
        more = len(incident.components) - 3
        said.append(", ".join(incident.components[:3]) + (f" +{more}" if more > 0 else ""))
    line = f"{incident.name} ({'; '.join(said)}"
    return f"{line})" if incident.counts_for(patterns) else f"{line}, not this API)"


def human_url(url: str, kind: SourceKind) -> str:
    """The page a person would open: the API URL without its ``/api/v2/...`` or file name."""
    if kind == "statuspage" and "/api/v2/" in url:
        return url.split("/api/v2/", 1)[0]
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host; fetching will report the real error
        return url
    if kind == "aws":  # the RSS lives under /rss/; the dashboard is the host's root
        return f"{parts.scheme}://{parts.netloc}/"
    path, host = parts.path, parts.netloc
    if kind == "azure":  # the feed's own host serves it alone; the page is on the main one
        host = host.removeprefix("rssfeed.")
    if path.endswith((".json", ".rss", ".xml", ".atom")):
        path = path.rsplit("/", 1)[0]
    elif kind in ("azure", "rss") and path.rstrip("/").endswith("/feed"):
        path = path.rstrip("/")[: -len("/feed")]
    return f"{parts.scheme}://{host}{path.rstrip('/')}/"


def _unknown(provider: str, page: str, now: datetime, error: str) -> OfficialStatus:
    return OfficialStatus(provider, "unknown", _DESCRIPTIONS["unknown"], [], page, now, error)


async def _get(session: aiohttp.ClientSession, url: str, timeout_s: float, max_bytes: int) -> bytes:
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    headers = {
        "Accept": "application/json, application/rss+xml, application/atom+xml, text/xml",
        "User-Agent": "llmpulse (status page monitor)",
    }
    async with session.get(url, timeout=timeout, headers=headers) as response:
        if response.status != 200:
            raise _SourceError(f"HTTP {response.status} {response.reason or ''}".rstrip())
        return bytes(await read_capped(response, max_bytes, too_large=_SourceError))


def _head(body: bytes) -> str:
    # An HTML error page or captive portal is the usual culprit; show its first bytes.
    return body[:60].decode("utf-8", "replace").strip()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _SourceError(f"not JSON ({exc.__class__.__name__}): {_head(body)!r}") from None


def _feed(body: bytes) -> Any:
    # Given bytes, feedparser parses them and fetches nothing (no URL, no external entities).
    parsed = feedparser.parse(body)
    if not parsed.get("version"):
        raise _SourceError(f"not an RSS or Atom feed: {_head(body)!r}")
    return parsed


def _indicator(raw: object) -> Indicator | None:
    value = raw.lower() if isinstance(raw, str) else ""  # str(None) would read as "none"
    return cast(Indicator, value) if value in _SEVERITY or value == "maintenance" else None


def _worst(values: Iterable[str]) -> Indicator:
    known = [v for v in values if v in _SEVERITY]  # unknown words never outrank "none"
    return cast(Indicator, max(known, key=_SEVERITY.__getitem__, default="none"))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _names(items: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    names = dict.fromkeys(n for i in items if (n := _line(i.get("name"))))
    return tuple(names)[:MAX_INCIDENT_COMPONENTS]


def _parse_statuspage(payload: Any, now: datetime) -> _Page:
    if not isinstance(payload, dict) or not {"status", "components", "incidents"} & set(payload):
        raise _SourceError("not a Statuspage v2 summary (no status, components or incidents)")
    status = payload.get("status")
    if not isinstance(status, dict):
        status = {}
    open_incidents = [
        i for i in _dicts(payload.get("incidents")) if str(i.get("status", "")) not in _RESOLVED
    ][:MAX_INCIDENTS]
    incidents = []
    for i in open_incidents:
        touched = _names(_dicts(i.get("components")))
        if not touched:  # some pages leave it empty and name them only in the updates
            updates = _dicts(i.get("incident_updates"))
            touched = _names(c for u in updates for c in _dicts(u.get("affected_components")))
        incidents.append(
            OfficialIncident(
                id=_line(i.get("id")) or _line(i.get("name")) or "unnamed",
                name=_line(i.get("name")) or "unnamed incident",
                impact=_indicator(i.get("impact")) or "minor",
                created_at=_when(i.get("created_at")) or _when(i.get("started_at")),
                components=touched,
                url=_link(i.get("shortlink")),
            )
        )
    components: dict[str, Indicator] = {}
    for c in _dicts(payload.get("components"))[:MAX_COMPONENTS]:
        if name := _line(c.get("name")):
            components[name] = cast(
                Indicator, _COMPONENT_SEVERITY.get(str(c.get("status")), "none")
            )
    # OpenAI's page often names no component in an incident while flagging the components
    # themselves: such an incident touches what the page flags (if it flags anything).
    flagged = tuple(n for n, v in components.items() if v in _SEVERITY and v != "none")
    incidents = [
        i if i.components else dataclasses.replace(i, components=flagged[:MAX_INCIDENT_COMPONENTS])
        for i in incidents
    ]

    raw = _indicator(status.get("indicator"))
    indicator = raw
    if indicator is None:
        # No usable roll-up (some compatible pages omit it): derive it the way Statuspage does.
        indicator = _worst([i.impact for i in incidents] + list(components.values()))
    if indicator == "none":
        # Statuspage keeps indicator "none" during planned work; on-call should still know.
        in_maintenance = any(
            m.get("status") in _MAINTENANCE_ACTIVE
            for m in _dicts(payload.get("scheduled_maintenances"))
        ) or any(v == "maintenance" for v in components.values())
        if in_maintenance:
            indicator = "maintenance"
    description = status.get("description")
    if not isinstance(description, str) or not description or raw != indicator:
        description = _DESCRIPTIONS[indicator]  # the page's words describe another indicator
    return _Page(
        indicator, _line(description), tuple(incidents), components, _maintenances(payload, now)
    )


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
        touched = _names(_dicts(m.get("components")))
        found.append(Maintenance(name, status, starts, ends, _link(m.get("shortlink")), touched))
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


def _parse_google(payload: Any, products: tuple[str, ...]) -> _Page:
    if not isinstance(payload, list):
        raise _SourceError("not a Google Cloud incidents.json (expected a JSON array)")
    active: list[tuple[OfficialIncident, str]] = []  # (incident, status_impact)
    for incident in _dicts(payload):
        if incident.get("end") or not _affects(incident, products):
            continue  # ended, or about some other Google Cloud product
        impact = str(incident.get("status_impact") or "")
        uri = incident.get("uri")
        found = OfficialIncident(
            id=_line(incident.get("id")) or _line(incident.get("external_desc")) or "unnamed",
            name=_line(incident.get("external_desc")) or "unnamed incident",
            # An active incident of a kind Google has not documented is still not "all clear".
            impact=_GOOGLE_IMPACT.get(impact, "minor"),
            created_at=_when(incident.get("created")) or _when(incident.get("begin")),
            components=_titles(incident)[:MAX_INCIDENT_COMPONENTS],
            url=_link(f"https://status.cloud.google.com/{uri}") if isinstance(uri, str) else None,
        )
        active.append((found, impact))
        if len(active) == MAX_INCIDENTS:
            break
    if not active:
        return _Page("none", "No active incidents", ())
    worst, impact = max(active, key=lambda a: _SEVERITY[a[0].impact])
    description = impact.replace("_", " ").title() if impact else "Active incident"
    return _Page(worst.impact, description, tuple(i for i, _ in active))


def _titles(incident: dict[str, Any]) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(
            t for p in _dicts(incident.get("affected_products")) if (t := _line(p.get("title")))
        )
    )


def _affects(incident: dict[str, Any], products: tuple[str, ...]) -> bool:
    titles = list(_titles(incident))
    # service_name is often "Multiple Products", but older entries carry only it.
    titles.append(str(incident.get("service_name", "")))
    return any(word in title.lower() for title in titles for word in products)


def _entry_time(entry: Any) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    year, month, day, hour, minute, second = parsed[:6]  # feedparser's *_parsed are UTC
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _categories(entry: Any) -> list[str]:
    return [t for tag in entry.get("tags") or [] if (t := _line(tag.get("term")))]


def _page_of(incidents: list[OfficialIncident]) -> _Page:
    indicator = _worst(i.impact for i in incidents)
    return _Page(indicator, _DESCRIPTIONS[indicator], tuple(incidents[:MAX_INCIDENTS]))


def _parse_aws(feed: Any) -> _Page:
    """The newest items that are not closed, oldest of them first, are the event under way."""
    service = _line(feed.feed.get("title")).removesuffix(" Service Status").strip()
    items = sorted(
        feed.entries[: MAX_INCIDENTS * 4],
        key=lambda e: _entry_time(e) or datetime.min.replace(tzinfo=UTC),
        reverse=True,
    )
    streak = []
    for entry in items:
        title = _line(entry.get("title"))
        kind, _, name = title.partition(":")
        impact = _AWS_IMPACT.get(kind.strip().lower(), "minor")
        # Older items say "Kind: [RESOLVED] name", newer ones "Resolved: Kind: name".
        if impact == "none" or "[resolved]" in title.lower() or kind.strip().lower() == "resolved":
            break  # the newest word is that it is over
        streak.append((entry, impact, name.strip() or title))
    if not streak:
        return _page_of([])
    first, _, name = streak[-1]
    incident = OfficialIncident(
        id=_line(first.get("id")) or name,
        name=name,
        impact=_worst(impact for _, impact, _ in streak),
        created_at=_entry_time(first),
        components=(service,) if service else (),
        url=_link(first.get("link")),
    )
    return _page_of([incident])


def _parse_azure(feed: Any) -> _Page:
    """Every item is a current communication; those about AI products are kept."""
    incidents = []
    for entry in feed.entries:
        title, categories = _line(entry.get("title")), _categories(entry)
        about = " ".join([title, *categories]).lower()
        if not any(word in about for word in AZURE_PRODUCTS):
            continue
        incidents.append(
            OfficialIncident(
                id=_line(entry.get("id")) or title,
                name=title or "unnamed incident",
                impact="minor",  # the feed says no severity; an active one is not all clear
                created_at=_entry_time(entry),
                components=tuple(categories[:MAX_INCIDENT_COMPONENTS]),
                url=_link(entry.get("link")),
            )
        )
    return _page_of(incidents)


def _parse_incident_feed(feed: Any) -> _Page:
    """One entry per incident, open or over as its state says: a category (xAI's items carry
    two, the severity and the state, and are titled "[component] name", as public clients of
    status.x.ai/feed.xml check), else the newest update in its text (a Statuspage history
    feed). A feed none of whose entries says a state is unreadable, not an outage per entry."""
    incidents = []
    entries = feed.entries[: MAX_INCIDENTS * 4]
    stated = 0
    for entry in entries:
        words = [c.lower() for c in _categories(entry)]
        state = _feed_state(entry, words)
        if state is None:
            continue
        stated += 1
        if state in _FEED_OVER:
            continue
        title = _line(entry.get("title"))
        where, name = "", title
        if bracketed := _FEED_TITLE.match(title):
            where, name = bracketed.group(1).strip(), bracketed.group(2).strip()
        severities = [_FEED_SEVERITY[w] for w in words if w in _FEED_SEVERITY]
        others = [
            c for c in _categories(entry) if c.lower() not in _FEED_STATES | set(_FEED_SEVERITY)
        ]
        impact: Indicator = "maintenance" if state in _FEED_MAINTENANCE else "minor"
        incidents.append(
            OfficialIncident(
                id=_line(entry.get("id")) or title,
                name=name or "unnamed incident",
                # No severity said: an open incident is still not all clear.
                impact=_worst(severities) if severities else impact,
                created_at=_entry_time(entry),
                components=tuple(c for c in dict.fromkeys([where, *others]) if c)[
                    :MAX_INCIDENT_COMPONENTS
                ],
                url=_link(entry.get("link")),
            )
        )
        if len(incidents) == MAX_INCIDENTS:
            break
    if entries and not stated:
        raise _SourceError(
            "no entry of the feed says its state (open or resolved): not an incident feed"
        )
    return _page_of(incidents)


def _feed_state(entry: Any, categories: list[str]) -> str | None:
    """An incident feed entry's state, in ``_FEED_STATES``; None where it says none."""
    for word in categories:
        if (state := word.replace("_", " ")) in _FEED_STATES:
            return state
    contents = entry.get("content") or []
    text = contents[0].get("value", "") if contents else entry.get("summary", "")
    found = _STATE_IN_TEXT.search(text if isinstance(text, str) else "")
    if found is None:
        return None
    state = (found.group(1) or found.group(2)).strip().lower().replace("_", " ")
    return state if state in _FEED_STATES else None


_FEED_PARSERS: dict[str, Callable[[Any], _Page]] = {
    "aws": _parse_aws,
    "azure": _parse_azure,
    "rss": _parse_incident_feed,
}


Change: TypeAlias = tuple[OfficialStatus | None, OfficialStatus]


class StatusPoller:
    """Polls every source concurrently and reports changes of the normalized indicator.

    ``current(provider)`` is the latest fetch, failed or not: the caller decides what to show.
    ``changes()`` receives ``(old, new)`` only when the indicator the poller last reported
    changes. The first successful fetch sets that baseline silently; a failure becomes
    "unknown" only after ``failures_before_unknown`` consecutive failures, so one dropped poll
    neither alerts nor hides a real change (none → fail → minor reports none → minor).
    ``scopes`` names, per provider, the components its status follows (``provider_scope``);
    ``also``, further feeds merged into its status (Bedrock's other regions).
    """

    def __init__(
        self,
        sources: Mapping[str, tuple[str, SourceKind]],
        interval_s: float = 60.0,
        *,
        failures_before_unknown: int = 3,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        scopes: Mapping[str, tuple[str, ...]] | None = None,
        also: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        self.sources = dict(sources)
        self.scopes = dict(scopes or {})
        # Further feeds of a provider's format, merged into its status (``fetch_merged``).
        self.also = dict(also or {})
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
                fetch_merged(
                    session,
                    provider,
                    (url, *self.also.get(provider, ())),
                    kind,
                    timeout_s=self.timeout_s,
                    scope=self.scopes.get(provider, ()),
                )
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
