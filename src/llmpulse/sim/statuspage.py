"""Official status pages: Atlassian Statuspage v2 ``summary.json``, Google Cloud's
``incidents.json``, an AWS Health Dashboard service RSS, Azure's status RSS, an incident RSS
feed (as xAI's ``feed.xml``) and a small human page, all rendered from one ``StatusPage``
state."""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any
from xml.sax.saxutils import escape

from llmpulse.sim.scenario import StatusPage

DESCRIPTIONS = {  # Statuspage's own words for each indicator
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major System Outage",
}
_COMPONENT = {
    "none": "operational",
    "minor": "degraded_performance",
    "major": "partial_outage",
    "critical": "major_outage",
}
_UPDATE = {  # Statuspage's default update templates
    "investigating": "We are currently investigating this issue.",
    "identified": "The issue has been identified and a fix is being implemented.",
    "monitoring": "A fix has been implemented and we are monitoring the results.",
    "in_progress": "Scheduled maintenance is currently in progress.",
}
_GOOGLE_IMPACT = {
    "none": "SERVICE_INFORMATION",
    "minor": "SERVICE_DISRUPTION",
    "major": "SERVICE_OUTAGE",
    "critical": "SERVICE_OUTAGE",
}
# xAI's feed: an incident's severity, its first category ("available" once it is over).
_XAI_SEVERITY = {"none": "info", "minor": "disruption", "major": "outage", "critical": "outage"}
_GOOGLE_SEVERITY = {"none": "low", "minor": "medium", "major": "high", "critical": "high"}
_GLOBAL = [{"title": "Global", "id": "global"}]
UNAVAILABLE_HTML = b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>\n"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One page as it stands now, with the (wall-clock) times of its scripted changes."""

    name: str
    page: StatusPage  # the state in force: timeline applied
    url: str  # the human page, as status page links point at it
    updated: datetime  # the last change
    incident_since: datetime  # when the incident was opened
    maintenance_since: datetime


def _id(*parts: str) -> str:
    # Stable ids, so a poller sees the same incident on every fetch.
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]


def _ts(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _description(page: StatusPage) -> str:
    return page.description or DESCRIPTIONS[page.indicator]


def _component_status(page: StatusPage, name: str | None = None) -> str:
    if name is not None and page.affected is not None and name not in page.affected:
        return "operational"
    if page.maintenance and page.indicator == "none":
        return "under_maintenance"
    return _COMPONENT[page.indicator]


def _affected(page: StatusPage) -> list[str]:
    return page.components if page.affected is None else page.affected


def summary(s: Snapshot) -> dict[str, Any]:
    """Statuspage v2 ``/api/v2/summary.json``."""
    page, page_id = s.page, _id(s.name)
    components = [
        {
            "id": _id(s.name, name),
            "name": name,
            "status": _component_status(page, name),
            "created_at": "2023-07-11T17:54:17.812Z",
            "updated_at": _ts(s.updated),
            "position": position,
            "description": None,
            "showcase": True,
            "start_date": None,
            "group_id": None,
            "page_id": page_id,
            "group": False,
            "only_show_if_degraded": False,
        }
        for position, name in enumerate(page.components, 1)
    ]
    incidents = []
    if page.incident:
        impact = page.impact or page.indicator
        incidents.append(
            _incident(s, page.incident, page.incident_status, impact, s.incident_since, components)
        )
    maintenances = []
    if page.maintenance:
        m = _incident(
            s, page.maintenance, "in_progress", "maintenance", s.maintenance_since, components
        )
        m["scheduled_for"] = _ts(s.maintenance_since)
        m["scheduled_until"] = _ts(s.maintenance_since + timedelta(hours=2))
        maintenances.append(m)
    return {
        "page": {
            "id": page_id,
            "name": s.name,
            "url": s.url,
            "time_zone": "Etc/UTC",
            "updated_at": _ts(s.updated),
        },
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": maintenances,
        "status": {"indicator": page.indicator, "description": _description(page)},
    }


def _incident(
    s: Snapshot,
    name: str,
    status: str,
    impact: str,
    since: datetime,
    components: list[dict[str, Any]],
) -> dict[str, Any]:
    iid = _id(s.name, name, _ts(since))
    components = [c for c in components if c["name"] in _affected(s.page)]
    affected = [
        {"code": c["id"], "name": c["name"], "old_status": "operational", "new_status": c["status"]}
        for c in components
    ]
    return {
        "id": iid,
        "name": name,
        "status": status,
        "created_at": _ts(since),
        "updated_at": _ts(s.updated),
        "monitoring_at": _ts(s.updated) if status == "monitoring" else None,
        "resolved_at": None,
        "impact": impact,
        "shortlink": f"{s.url}/incidents/{iid}",
        "started_at": _ts(since),
        "page_id": _id(s.name),
        "incident_updates": [
            {
                "id": _id(iid, status),
                "status": status,
                "body": _UPDATE[status],
                "incident_id": iid,
                "created_at": _ts(s.updated),
                "updated_at": _ts(s.updated),
                "display_at": _ts(s.updated),
                "affected_components": affected,
            }
        ],
        "components": components,
    }


def google_incidents(s: Snapshot) -> list[dict[str, Any]]:
    """Google Cloud's ``incidents.json``: the page's open incident, on its ``components`` as
    affected products (only titles naming Gemini, Vertex AI or generative count for Gemini)."""
    page = s.page
    if not page.incident and page.indicator == "none":
        return []
    name = page.incident or _description(page)
    impact = _GOOGLE_IMPACT[page.impact or page.indicator]
    iid = _id(s.name, name, _ts(s.incident_since))
    update = {
        "created": s.updated.isoformat(timespec="seconds"),
        "modified": s.updated.isoformat(timespec="seconds"),
        "when": s.updated.isoformat(timespec="seconds"),
        "text": _UPDATE[page.incident_status],
        "status": impact,
        "affected_locations": _GLOBAL,
    }
    return [
        {
            "id": iid,
            "number": str(int(iid, 16)),
            "begin": s.incident_since.isoformat(timespec="seconds"),
            "created": s.incident_since.isoformat(timespec="seconds"),
            "modified": s.updated.isoformat(timespec="seconds"),
            "external_desc": name,
            "updates": [update],
            "most_recent_update": update,
            "status_impact": impact,
            "severity": _GOOGLE_SEVERITY[page.impact or page.indicator],
            "service_key": "zall",
            "service_name": "Multiple Products",
            "affected_products": [{"title": c, "id": _id(s.name, c)} for c in _affected(page)],
            "uri": f"incidents/{iid}",
            "currently_affected_locations": _GLOBAL,
            "previously_affected_locations": [],
        }
    ]


def human_page(s: Snapshot) -> str:
    """What the dashboard's status links open: the page's status and open incidents."""
    page = s.page
    lines = [f"<h2>{html.escape(_description(page))} ({page.indicator})</h2>"]
    for title, status in ((page.incident, page.incident_status), (page.maintenance, "maintenance")):
        if title:
            lines.append(f"<p>{html.escape(title)}: {status}</p>")
    components = "".join(
        f"<li>{html.escape(c)}: {_component_status(page, c)}</li>" for c in page.components
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(s.name)} status"
        f"</title></head><body><h1>{html.escape(s.name)} status (simulated)</h1>"
        f"{''.join(lines)}<ul>{components}</ul><p>Updated {_ts(s.updated)}</p></body></html>\n"
    )


# --- RSS feeds ---------------------------------------------------------------------------------

_AWS_PREFIX = {  # the AWS Health Dashboard's words for an event of each impact
    "none": "Informational message",
    "minor": "Performance issues",
    "major": "Service disruption",
    "critical": "Service impact",
}


def _rss(title: str, link: str, items: list[str], generator: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title><![CDATA[{title}]]></title><link>{escape(link)}</link>"
        f"<language>en-us</language><generator>{escape(generator)}</generator>"
        f"<description><![CDATA[{title}]]></description><ttl>5</ttl>"
        f"{''.join(items)}</channel></rss>\n"
    ).encode()


def _item(
    title: str, link: str, when: datetime, guid: str, body: str, categories: list[str]
) -> str:
    tags = "".join(f"<category>{escape(c)}</category>" for c in categories)
    return (
        f"<item><title><![CDATA[{title}]]></title><link>{escape(link)}</link>"
        f"<pubDate>{format_datetime(when)}</pubDate>"
        f'<guid isPermaLink="false">{escape(guid)}</guid>'
        f"<description><![CDATA[{body}]]></description>{tags}</item>"
    )


def aws_rss(s: Snapshot) -> bytes:
    """An AWS Health Dashboard service feed (``/rss/{service}-{region}.rss``): newest first,
    the open event's update over old resolved ones, as the real feed keeps them."""
    page = s.page
    service = " / ".join(page.components)
    items = []
    if page.incident:
        prefix = _AWS_PREFIX[page.impact or page.indicator]
        epoch = int(s.incident_since.timestamp())
        items.append(
            _item(
                f"{prefix}: {page.incident}", s.url, s.incident_since,
                f"{s.url}#{s.name}_{epoch}", _UPDATE[page.incident_status], [],
            )
        )  # fmt: skip
    # Closed events, in both of the feed's words for it: "[RESOLVED]" after the kind (older
    # items) and a "Resolved: " prefix (newer ones).
    for days, title in (
        (1, "Resolved: Informational message: Recovery underway"),
        (2, "Informational message: [RESOLVED] Increased error rates"),
    ):
        old = s.updated - timedelta(days=days)
        items.append(
            _item(
                title, s.url, old, f"{s.url}#{s.name}_{int(old.timestamp())}",
                "The issue has been resolved and the service is operating normally.", [],
            )
        )  # fmt: skip
    return _rss(f"{service} Service Status", s.url, items, "AWS Service Health Dashboard RSS")


def azure_rss(s: Snapshot) -> bytes:
    """Azure's status feed: an item per current communication, the service and the region as
    its categories (here: the affected components)."""
    page, items = s.page, []
    if page.incident:
        iid = _id(s.name, page.incident, _ts(s.incident_since))
        items.append(
            _item(
                page.incident, f"{s.url}#{iid}", s.incident_since, iid,
                _UPDATE[page.incident_status], _affected(page),
            )
        )  # fmt: skip
    return _rss("Azure Status", s.url, items, "Azure Status")


def incident_rss(s: Snapshot) -> bytes:
    """xAI's ``feed.xml``: one item per incident titled "[component] name", its severity and
    its state as the two categories ("outage", "disruption", "available"; "investigating" ...
    "resolved"), the same two in the description; an old resolved one below."""
    page, items = s.page, []
    if page.incident:
        iid = "INC" + _id(s.name, page.incident, _ts(s.incident_since))
        where = (_affected(page) or ["API"])[0]
        severity = _XAI_SEVERITY[page.impact or page.indicator]
        items.append(
            _item(
                f"[{where}] {page.incident}", f"{s.url}/incidents/{iid}", s.incident_since, iid,
                f"<h3>Status: {page.incident_status.title()}</h3><p>Severity: "
                f"{severity.title()}</p><p>{_UPDATE[page.incident_status]}</p>",
                [severity, page.incident_status],
            )
        )  # fmt: skip
    old = s.updated - timedelta(days=3)
    oid = "INC" + _id(s.name, "old", _ts(old))
    first = page.components[0] if page.components else "API"
    items.append(
        _item(
            f"[{first}] Elevated error rates", f"{s.url}/incidents/{oid}", old, oid,
            "<h3>Status: Resolved</h3><p>Severity: Available</p>"
            "<p>This incident has been resolved.</p>",
            ["available", "resolved"],
        )
    )  # fmt: skip
    return _rss(f"{s.name} status", s.url, items, "status page")


FEEDS: dict[str, Callable[[Snapshot], bytes]] = {
    "aws": aws_rss,
    "azure": azure_rss,
    "rss": incident_rss,
}
