"""Official status pages: Statuspage v2 and Google Cloud payloads served by a real local server."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from llmpulse.probe.official import (
    DEFAULT_COMPONENTS,
    DEFAULT_SOURCES,
    OfficialStatus,
    StatusPoller,
    fetch_status,
    guess_format,
    human_url,
)

# --- Fixtures modeled on the real payloads -----------------------------------------------------

_PAGE = {
    "id": "tymt9n04zgry",
    "name": "Claude",
    "url": "https://status.claude.com",
    "time_zone": "Etc/UTC",
    "updated_at": "2026-09-10T14:05:12.345Z",
}


def _component(cid: str, name: str, status: str = "operational") -> dict[str, Any]:
    return {
        "id": cid,
        "name": name,
        "status": status,
        "created_at": "2023-07-11T17:54:17.812Z",
        "updated_at": "2026-09-10T14:05:12.301Z",
        "position": 1,
        "description": None,
        "showcase": True,
        "start_date": None,
        "group_id": None,
        "page_id": "tymt9n04zgry",
        "group": False,
        "only_show_if_degraded": False,
    }


OPERATIONAL: dict[str, Any] = {
    "page": _PAGE,
    "components": [
        _component("rwppv331jlwc", "claude.ai"),
        _component("k8w3r06qmzrp", "Claude API (api.anthropic.com)"),
        _component("yyzkbfz2thpt", "Claude Code"),
    ],
    "incidents": [],
    "scheduled_maintenances": [],
    "status": {"indicator": "none", "description": "All Systems Operational"},
}

_INCIDENT = {
    "id": "5z1x0vbs1hmy",
    "name": "Elevated errors on Claude Sonnet 4.5",
    "status": "investigating",
    "created_at": "2026-09-10T14:02:31.004Z",
    "updated_at": "2026-09-10T14:05:12.290Z",
    "monitoring_at": None,
    "resolved_at": None,
    "impact": "minor",
    "shortlink": "https://stspg.io/abc123",
    "started_at": "2026-09-10T14:02:31.000Z",
    "page_id": "tymt9n04zgry",
    "incident_updates": [
        {
            "id": "q8c4h1",
            "status": "investigating",
            "body": "We are currently investigating this issue.",
            "incident_id": "5z1x0vbs1hmy",
            "created_at": "2026-09-10T14:02:31.150Z",
            "updated_at": "2026-09-10T14:02:31.150Z",
            "display_at": "2026-09-10T14:02:31.150Z",
            "affected_components": [
                {
                    "code": "k8w3r06qmzrp",
                    "name": "Claude API (api.anthropic.com)",
                    "old_status": "operational",
                    "new_status": "degraded_performance",
                }
            ],
        }
    ],
    "components": [
        {
            "id": "k8w3r06qmzrp",
            "name": "Claude API (api.anthropic.com)",
            "status": "degraded_performance",
        }
    ],
}


def degraded() -> dict[str, Any]:
    payload = copy.deepcopy(OPERATIONAL)
    payload["components"][1]["status"] = "degraded_performance"
    payload["incidents"] = [copy.deepcopy(_INCIDENT)]
    payload["status"] = {"indicator": "minor", "description": "Minor Service Outage"}
    return payload


def partial_outage() -> dict[str, Any]:
    payload = degraded()
    payload["components"][1]["status"] = "partial_outage"
    payload["incidents"][0]["impact"] = "major"
    payload["status"] = {"indicator": "major", "description": "Partial System Outage"}
    return payload


def maintenance(status: str) -> dict[str, Any]:
    payload = copy.deepcopy(OPERATIONAL)
    payload["scheduled_maintenances"] = [
        {
            "id": "m1xk",
            "name": "Database upgrade",
            "status": status,
            "impact": "maintenance",
            "shortlink": "https://stspg.io/m1xk",
            "scheduled_for": "2026-09-10T14:00:00.000Z",
            "scheduled_until": "2026-09-10T16:00:00.000Z",
            "created_at": "2026-09-01T09:00:00.000Z",
            "updated_at": "2026-09-10T14:00:03.000Z",
            "incident_updates": [],
            "components": [],
        }
    ]
    return payload


def _gcp(
    iid: str, desc: str, impact: str, products: list[str], *, end: str | None = None
) -> dict[str, Any]:
    incident: dict[str, Any] = {
        "id": iid,
        "number": "1234567890123456",
        "begin": "2026-09-10T13:40:00+00:00",
        "created": "2026-09-10T13:52:11+00:00",
        "modified": "2026-09-10T14:10:02+00:00",
        "external_desc": desc,
        "updates": [
            {
                "created": "2026-09-10T13:52:11+00:00",
                "modified": "2026-09-10T13:52:12+00:00",
                "when": "2026-09-10T13:52:11+00:00",
                "text": "We are investigating.",
                "status": impact,
                "affected_locations": [{"title": "Global", "id": "global"}],
            }
        ],
        "most_recent_update": {
            "created": "2026-09-10T13:52:11+00:00",
            "modified": "2026-09-10T13:52:12+00:00",
            "when": "2026-09-10T13:52:11+00:00",
            "text": "We are investigating.",
            "status": impact,
            "affected_locations": [{"title": "Global", "id": "global"}],
        },
        "status_impact": impact,
        "severity": "medium",
        "service_key": "zall",
        "service_name": "Multiple Products",
        "affected_products": [
            {"title": title, "id": f"id-{n}"} for n, title in enumerate(products)
        ],
        "uri": f"incidents/{iid}",
        "currently_affected_locations": [{"title": "Global", "id": "global"}],
        "previously_affected_locations": [],
    }
    if end is not None:
        incident["end"] = end
    return incident


GOOGLE_QUIET_FOR_GEMINI = [
    _gcp("bqOut1", "BigQuery queries failing in us-central1", "SERVICE_OUTAGE", ["BigQuery"]),
    _gcp(
        "gemOld",
        "Gemini API elevated latency\nMore details inside.",
        "SERVICE_OUTAGE",
        ["Vertex Gemini API"],
        end="2026-09-09T18:52:00+00:00",
    ),
]
GOOGLE_GEMINI_ACTIVE = [
    *GOOGLE_QUIET_FOR_GEMINI,
    _gcp(
        "vtxDis",
        "Elevated error rates for Gemini models on Vertex AI\n\nWe are investigating.",
        "SERVICE_DISRUPTION",
        ["Vertex Gemini API", "Cloud Run"],
    ),
    _gcp(
        "genInf", "Quota dashboards delayed", "SERVICE_INFORMATION", ["Generative AI on Vertex AI"]
    ),
]


# --- A real local server whose answers the test changes over time -------------------------------


@dataclass
class Page:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay_s: float = 0.0


@dataclass
class StatusServer:
    base: str = ""
    pages: dict[str, Page] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"

    def serve(self, path: str, payload: Any = None, *, raw: bytes | None = None, **kw: Any) -> str:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.pages[path] = Page(body=body, **kw)
        return self.url(path)


@pytest.fixture
async def server() -> AsyncIterator[StatusServer]:
    state = StatusServer()

    async def handle(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        state.hits[path] = state.hits.get(path, 0) + 1
        page = state.pages.get(path)
        if page is None:
            return web.Response(
                status=404, text="<html><body>Not Found</body></html>", content_type="text/html"
            )
        if page.delay_s:
            await asyncio.sleep(page.delay_s)
        return web.Response(status=page.status, body=page.body, content_type=page.content_type)

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # don't wait out deliberately slow pages
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.base = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


SUMMARY = "anthropic/api/v2/summary.json"
GOOGLE = "google/incidents.json"


# --- fetch_status: Statuspage -------------------------------------------------------------------


async def test_operational_statuspage(server: StatusServer, session: aiohttp.ClientSession) -> None:
    url = server.serve(SUMMARY, OPERATIONAL)
    status = await fetch_status(session, "anthropic", url)
    assert status.provider == "anthropic"
    assert status.indicator == "none"
    assert status.description == "All Systems Operational"
    assert status.incidents == []
    assert status.error is None
    assert status.url == f"{server.base}/anthropic"
    assert status.fetched_at.tzinfo is UTC


def _openai(flagged: str) -> dict[str, Any]:
    """OpenAI's page as it often reads: an incident naming no component, the component flagged."""
    payload = copy.deepcopy(OPERATIONAL)
    payload["page"] = {**_PAGE, "name": "OpenAI", "url": "https://status.openai.com"}
    payload["components"] = [
        _component("c1", "Chat Completions"),
        _component("c2", "Conversations"),
        _component("c3", "Login"),
    ]
    for c in payload["components"]:
        if c["name"] == flagged:
            c["status"] = "partial_outage"
    incident = {**copy.deepcopy(_INCIDENT), "name": "Elevated errors", "impact": "major"}
    incident["components"] = []
    incident["incident_updates"][0]["affected_components"] = []
    payload["incidents"] = [incident]
    payload["status"] = {"indicator": "major", "description": "Partial System Outage"}
    return payload


async def test_an_incident_naming_no_component_touches_what_the_page_flags(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    api = DEFAULT_COMPONENTS["openai"]
    chatgpt = await fetch_status(
        session, "openai", server.serve("o1.json", _openai("Conversations")), scope=api
    )
    assert chatgpt.open_incidents[0].components == ("Conversations",)
    assert (chatgpt.indicator, chatgpt.page_indicator) == ("none", "major")
    assert chatgpt.incidents == ["Elevated errors (major; Conversations, not this API)"]
    ours = await fetch_status(
        session, "openai", server.serve("o2.json", _openai("Chat Completions")), scope=api
    )
    assert ours.indicator == "major"
    # A page that flags nothing leaves the incident unplaced: it counts.
    quiet = _openai("none")
    unplaced = await fetch_status(session, "openai", server.serve("o3.json", quiet), scope=api)
    assert (unplaced.open_incidents[0].components, unplaced.indicator) == ((), "major")


async def test_incident_with_impact(server: StatusServer, session: aiohttp.ClientSession) -> None:
    status = await fetch_status(session, "anthropic", server.serve(SUMMARY, partial_outage()))
    assert status.indicator == "major"
    assert status.description == "Partial System Outage"
    assert status.incidents == [
        "Elevated errors on Claude Sonnet 4.5 (major; Claude API (api.anthropic.com))"
    ]
    assert (
        status.summary() == "major: Partial System Outage — Elevated errors on Claude Sonnet 4.5 "
        "(major; Claude API (api.anthropic.com))"
    )


async def test_maintenance_only_while_in_progress(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    active = await fetch_status(session, "groq", server.serve(SUMMARY, maintenance("in_progress")))
    assert (active.indicator, active.description) == ("maintenance", "Service Under Maintenance")
    upcoming = await fetch_status(session, "groq", server.serve(SUMMARY, maintenance("scheduled")))
    assert upcoming.indicator == "none"
    # Maintenance never masks a real problem.
    payload = degraded()
    payload["scheduled_maintenances"] = maintenance("in_progress")["scheduled_maintenances"]
    assert (
        await fetch_status(session, "groq", server.serve(SUMMARY, payload))
    ).indicator == "minor"


async def test_maintenance_elsewhere_is_not_the_apis(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    # claude.ai under maintenance: listed, but the API is not in maintenance (with
    # alerting.silence_official_maintenance, the API's own alerts were held back).
    payload = maintenance("in_progress")
    payload["components"][0]["status"] = "under_maintenance"
    payload["scheduled_maintenances"][0]["components"] = [
        {"id": "rwppv331jlwc", "name": "claude.ai", "status": "under_maintenance"}
    ]
    url = server.serve(SUMMARY, payload)
    api = await fetch_status(session, "anthropic", url, scope=DEFAULT_COMPONENTS["anthropic"])
    assert (api.indicator, api.in_maintenance) == ("none", False)
    assert [m.name for m in api.maintenances] == ["Database upgrade"]  # still shown
    assert (await fetch_status(session, "anthropic", url)).in_maintenance
    assert (await fetch_status(session, "anthropic", url, scope=("claude.ai",))).in_maintenance
    # One that names no component may be the API's.
    assert (
        await fetch_status(
            session, "anthropic", server.serve(SUMMARY, maintenance("in_progress")),
            scope=DEFAULT_COMPONENTS["anthropic"],
        )
    ).in_maintenance  # fmt: skip


def _maintenance(mid: str, name: str, status: str, start: str, end: str | None) -> dict[str, Any]:
    # As Statuspage's summary.json lists one (its fields, in its order).
    return {
        "id": mid,
        "name": name,
        "status": status,
        "created_at": "2026-09-01T09:00:00.000Z",
        "updated_at": "2026-09-10T14:00:03.000Z",
        "monitoring_at": None,
        "resolved_at": None,
        "impact": "maintenance",
        "shortlink": f"https://stspg.io/{mid}",
        "started_at": start,
        "page_id": "tymt9n04zgry",
        "incident_updates": [
            {
                "id": f"u-{mid}",
                "status": status,
                "body": "The scheduled maintenance will be performed as planned.",
                "incident_id": mid,
                "created_at": "2026-09-01T09:00:00.000Z",
                "updated_at": "2026-09-01T09:00:00.000Z",
                "display_at": "2026-09-01T09:00:00.000Z",
                "affected_components": [],
            }
        ],
        "components": [],
        "scheduled_for": start,
        "scheduled_until": end,
    }


async def test_announced_maintenance_is_kept_bounded(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    payload = copy.deepcopy(OPERATIONAL)
    upcoming = [
        _maintenance(f"up{i}", f"Network work #{i}", "scheduled",
                     f"2099-0{i + 1}-01T02:00:00.000Z", f"2099-0{i + 1}-01T04:00:00.000Z")
        for i in range(6)
    ]  # fmt: skip
    now = _maintenance("now1", "Database upgrade\nDetails follow.", "in_progress",
                       "2026-09-10T14:00:00.000Z", "2026-09-10T16:00:00.000Z")  # fmt: skip
    odd = [
        _maintenance("done", "Finished", "completed", "2026-09-09T14:00:00.000Z", None),
        _maintenance(
            "past", "Forgotten", "scheduled", "2020-01-01T00:00:00Z", "2020-01-01T01:00:00Z"
        ),
        _maintenance("huh", "Unknown status", "postponed", "2099-01-01T00:00:00Z", None),
    ]
    payload["scheduled_maintenances"] = [*reversed(upcoming), *odd, now]
    payload["scheduled_maintenances"][0]["shortlink"] = "javascript:alert(1)"
    payload["scheduled_maintenances"][1]["name"] = "x" * 5000
    payload["scheduled_maintenances"][1]["scheduled_for"] = "soon"
    status = await fetch_status(session, "anthropic", server.serve(SUMMARY, payload))
    assert (status.indicator, status.error) == ("maintenance", None)
    # Under way first, then by start; past, completed and unknown ones left out; at most five.
    assert [m.name for m in status.maintenances] == [
        "Database upgrade", "Network work #0", "Network work #1", "Network work #2",
        "Network work #3",
    ]  # fmt: skip
    first = status.maintenances[0]
    assert first.status == "in_progress" and first.in_progress
    assert first.starts_at == datetime(2026, 9, 10, 14, tzinfo=UTC)
    assert first.ends_at == datetime(2026, 9, 10, 16, tzinfo=UTC)
    assert first.url == "https://stspg.io/now1"
    assert not status.maintenances[1].in_progress

    # Beyond the five most pressing, the rest were left out: a bad link, a long name, no start.
    payload["scheduled_maintenances"] = payload["scheduled_maintenances"][:2]
    status = await fetch_status(session, "anthropic", server.serve(SUMMARY, payload))
    linked, named = status.maintenances  # one without a start comes last
    assert (linked.name, linked.url) == ("Network work #5", None)
    assert len(named.name) == 200 and named.name.endswith("…") and named.starts_at is None
    assert status.indicator == "none"  # only scheduled: no maintenance under way


async def test_google_announces_no_maintenance(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    status = await fetch_status(
        session, "gemini", server.serve(GOOGLE, GOOGLE_GEMINI_ACTIVE), "google"
    )
    assert status.maintenances == []


async def test_missing_rollup_is_derived(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    # Some Statuspage-compatible pages omit "status"; the components and incidents still tell.
    payload = partial_outage()
    del payload["status"]
    status = await fetch_status(session, "openai", server.serve(SUMMARY, payload))
    assert (status.indicator, status.description) == ("major", "Partial System Outage")


# --- fetch_status: Google Cloud -----------------------------------------------------------------


async def test_google_filters_to_gemini_products(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    quiet = await fetch_status(
        session, "gemini", server.serve(GOOGLE, GOOGLE_QUIET_FOR_GEMINI), "google"
    )
    # A BigQuery outage and an ended Gemini incident say nothing about Gemini now.
    assert (quiet.indicator, quiet.incidents, quiet.error) == ("none", [], None)
    assert quiet.url == f"{server.base}/google/"

    active = await fetch_status(
        session, "gemini", server.serve(GOOGLE, GOOGLE_GEMINI_ACTIVE), "google"
    )
    assert active.indicator == "minor"
    assert active.description == "Service Disruption"
    assert active.incidents == [
        "Elevated error rates for Gemini models on Vertex AI (minor; Vertex Gemini API, Cloud Run)",
        "Quota dashboards delayed (none; Generative AI on Vertex AI)",
    ]


async def test_google_outage_is_major(server: StatusServer, session: aiohttp.ClientSession) -> None:
    payload = [
        *GOOGLE_GEMINI_ACTIVE,
        _gcp("gemOut", "Gemini API unavailable", "SERVICE_OUTAGE", ["Gemini API"]),
    ]
    status = await fetch_status(session, "gemini", server.serve(GOOGLE, payload), "google")
    assert (status.indicator, status.description) == ("major", "Service Outage")
    assert len(status.incidents) == 3


async def test_google_information_only_is_none(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    payload = [
        _gcp(
            "genInf",
            "Quota dashboards delayed",
            "SERVICE_INFORMATION",
            ["Generative AI on Vertex AI"],
        )
    ]
    status = await fetch_status(session, "gemini", server.serve(GOOGLE, payload), "google")
    assert (status.indicator, status.incidents) == (
        "none",
        ["Quota dashboards delayed (none; Generative AI on Vertex AI)"],
    )


# --- fetch_status: never raises -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "page", "error_part"),
    [
        ("statuspage", Page(status=404, body=b"Not Found", content_type="text/plain"), "HTTP 404"),
        ("statuspage", Page(status=503, body=b'{"error": "unavailable"}'), "HTTP 503"),
        (
            "statuspage",
            Page(
                body=b"<!DOCTYPE html><html><head><title>Just a moment...</title>",
                content_type="text/html",
            ),
            "not JSON",
        ),
        ("statuspage", Page(body=b"\x00\xff\xfe garbage \x81"), "not JSON"),
        ("statuspage", Page(body=b"[1, 2, 3]"), "not a Statuspage v2 summary"),
        ("statuspage", Page(body=b'{"page": {"name": "x"}}'), "not a Statuspage v2 summary"),
        ("google", Page(body=b'{"incidents": []}'), "expected a JSON array"),
        ("google", Page(body=b'[{"status_impact": "SERVICE_OUTAGE"'), "not JSON"),
    ],
)
async def test_unreadable_pages_are_unknown(
    server: StatusServer, session: aiohttp.ClientSession, kind: Any, page: Page, error_part: str
) -> None:
    server.pages["bad.json"] = page
    status = await fetch_status(session, "openai", server.url("bad.json"), kind)
    assert status.indicator == "unknown"
    assert status.error is not None and error_part in status.error
    assert status.incidents == []
    assert status.summary().startswith("unknown: ")


# A Statuspage "Incident History" feed (history.atom), as its public captures show it: no
# categories; each entry's content lists its updates newest first.
def _history_entry(iid: str, title: str, *states: str) -> str:
    updates = "".join(
        f"&lt;p&gt;&lt;small&gt;Sep 7, 11:30 UTC&lt;/small&gt;&lt;br&gt;&lt;strong&gt;{s}"
        f"&lt;/strong&gt; - Update.&lt;/p&gt;"
        for s in states
    )
    return (
        f"<entry><id>tag:status.together.ai,2005:Incident/{iid}</id>"
        "<published>2026-09-07T10:00:00Z</published><updated>2026-09-07T11:30:00Z</updated>"
        f'<link rel="alternate" type="text/html" href="https://status.together.ai/incidents/{iid}"/>'
        f'<title>{title}</title><content type="html">{updates}</content></entry>'
    )


def _history(*entries: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><feed xml:lang="en-US" '
        'xmlns="http://www.w3.org/2005/Atom"><id>tag:status.together.ai,2005:/history</id>'
        "<title>Together Status - Incident History</title>"
        f"<updated>2026-09-07T11:30:00Z</updated>{''.join(entries)}</feed>"
    ).encode()


async def test_an_incident_history_feed_keeps_only_the_open_ones(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    feed = _history(
        _history_entry("3", "Elevated API errors", "Monitoring", "Investigating"),
        _history_entry("2", "Dashboard latency", "Resolved", "Investigating"),
        _history_entry("1", "Database maintenance", "Completed", "In progress"),
    )
    url = server.serve("history.atom", raw=feed, content_type="application/atom+xml")
    assert guess_format(url) == "rss"
    status = await fetch_status(session, "together", url, "rss")
    assert (status.error, status.indicator) == (None, "minor")
    assert [i.name for i in status.open_incidents] == ["Elevated API errors"]
    # Every one over: all clear, not a minor outage per incident of the past.
    quiet = _history(_history_entry("2", "Dashboard latency", "Resolved", "Investigating"))
    url = server.serve("quiet.atom", raw=quiet, content_type="application/atom+xml")
    status = await fetch_status(session, "together", url, "rss")
    assert (status.error, status.indicator, status.open_incidents) == (None, "none", ())


async def test_a_feed_whose_entries_say_no_state_is_unknown(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    # A news feed, or a page's feed of another shape: which of its entries are open cannot be
    # told, so it is not read as every entry being an outage under way.
    feed = _history(_history_entry("1", "We launched a new model"))
    url = server.serve("news.atom", raw=feed, content_type="application/atom+xml")
    status = await fetch_status(session, "together", url, "rss")
    assert status.indicator == "unknown"
    assert status.error is not None and "state" in status.error


async def test_unknown_kind_is_unknown(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    status = await fetch_status(session, "x", server.serve(SUMMARY, OPERATIONAL), "atom")  # type: ignore[arg-type]
    assert (status.indicator, status.error) == ("unknown", "unknown status source kind 'atom'")


async def test_timeout_is_unknown(server: StatusServer, session: aiohttp.ClientSession) -> None:
    url = server.serve(SUMMARY, OPERATIONAL, delay_s=2.0)
    started = time.monotonic()
    status = await fetch_status(session, "anthropic", url, timeout_s=0.2)
    assert time.monotonic() - started < 1.5
    assert (status.indicator, status.error) == ("unknown", "timed out after 0.2s")


async def test_oversized_body_is_refused(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    padded = {**OPERATIONAL, "padding": "x" * (2 * 1024 * 1024)}  # valid JSON, just too big
    status = await fetch_status(session, "anthropic", server.serve(SUMMARY, padded))
    assert status.indicator == "unknown"
    assert status.error is not None and "exceeds 2 MiB" in status.error


async def test_connection_refused_is_unknown(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status = await fetch_status(session, "deepseek", f"http://127.0.0.1:{port}/api/v2/summary.json")
    assert status.indicator == "unknown"
    assert status.error is not None and "Connect" in status.error


# --- StatusPoller: when a change is news --------------------------------------------------------


def drain(poller: StatusPoller) -> list[tuple[str | None, str]]:
    out = []
    queue = poller.changes()
    while not queue.empty():
        old, new = queue.get_nowait()
        out.append((old.indicator if old else None, new.indicator))
    return out


async def test_first_fetch_is_baseline_then_degradation_is_one_change(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    poller = StatusPoller({"anthropic": (server.serve(SUMMARY, OPERATIONAL), "statuspage")})
    assert poller.current("anthropic") is None
    await poller.poll_once(session)
    assert drain(poller) == []
    current = poller.current("anthropic")
    assert current is not None and current.indicator == "none"

    server.serve(SUMMARY, degraded())
    await poller.poll_once(session)
    await poller.poll_once(session)  # still minor: not news again
    changes = drain(poller)
    assert changes == [("none", "minor")]
    current = poller.current("anthropic")
    assert current is not None and current.incidents == [
        "Elevated errors on Claude Sonnet 4.5 (minor; Claude API (api.anthropic.com))"
    ]


async def test_unknown_only_after_three_failures(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    url = server.serve(SUMMARY, OPERATIONAL)
    poller = StatusPoller({"anthropic": (url, "statuspage")})
    await poller.poll_once(session)

    server.serve(SUMMARY, status=502, raw=b"<html>Bad Gateway</html>", content_type="text/html")
    for _ in range(2):
        await poller.poll_once(session)
        assert drain(poller) == []
        # current() shows the failure as it is; only the change stream waits.
        current = poller.current("anthropic")
        assert current is not None and current.error == "HTTP 502 Bad Gateway"
    await poller.poll_once(session)
    assert drain(poller) == [("none", "unknown")]
    await poller.poll_once(session)
    assert drain(poller) == []  # still failing: reported once

    server.serve(SUMMARY, OPERATIONAL)
    await poller.poll_once(session)
    assert drain(poller) == [("unknown", "none")]


async def test_a_blip_neither_alerts_nor_hides_a_change(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    poller = StatusPoller({"anthropic": (server.serve(SUMMARY, OPERATIONAL), "statuspage")})
    await poller.poll_once(session)
    server.serve(SUMMARY, raw=b"garbage")
    await poller.poll_once(session)
    await poller.poll_once(session)
    server.serve(SUMMARY, OPERATIONAL)
    await poller.poll_once(session)  # back before the third failure: nothing happened
    assert drain(poller) == []

    server.serve(SUMMARY, raw=b"garbage")
    await poller.poll_once(session)
    server.serve(SUMMARY, degraded())
    await poller.poll_once(session)
    assert poller.changes().qsize() == 1
    old, new = poller.changes().get_nowait()
    assert old is not None and old.indicator == "none" and old.error is None  # the last good one
    assert new.indicator == "minor"


async def test_a_page_that_never_worked_is_reported(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    poller = StatusPoller({"groq": (server.url("nothing-here.json"), "statuspage")})
    for _ in range(3):
        await poller.poll_once(session)
    assert drain(poller) == [(None, "unknown")]


async def test_google_change_through_poller(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    poller = StatusPoller({"gemini": (server.serve(GOOGLE, GOOGLE_QUIET_FOR_GEMINI), "google")})
    await poller.poll_once(session)
    server.serve(GOOGLE, GOOGLE_GEMINI_ACTIVE)
    await poller.poll_once(session)
    assert drain(poller) == [("none", "minor")]


# --- StatusPoller.run ---------------------------------------------------------------------------


async def test_run_polls_concurrently_and_reports_changes(
    server: StatusServer, session: aiohttp.ClientSession
) -> None:
    sources = {
        "anthropic": (server.serve(SUMMARY, OPERATIONAL, delay_s=0.5), "statuspage"),
        "gemini": (server.serve(GOOGLE, GOOGLE_QUIET_FOR_GEMINI, delay_s=0.5), "google"),
    }
    poller = StatusPoller(sources, interval_s=0.05)
    stop = asyncio.Event()
    started = time.monotonic()
    task = asyncio.create_task(poller.run(session, stop))
    while poller.current("anthropic") is None or poller.current("gemini") is None:
        await asyncio.sleep(0.01)
    assert time.monotonic() - started < 0.9  # both slow pages fetched side by side

    server.serve(SUMMARY, degraded())
    old, new = await asyncio.wait_for(poller.changes().get(), timeout=5)
    assert (old and old.indicator, new.provider, new.indicator) == ("none", "anthropic", "minor")

    server.pages[SUMMARY].delay_s = 5.0  # stopping must not wait for a slow page
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    assert server.hits[SUMMARY] >= 3


def test_default_sources() -> None:
    assert set(DEFAULT_SOURCES) == {
        "openai", "anthropic", "groq", "deepseek", "vertex", "bedrock", "azure", "xai"
    }  # fmt: skip
    assert DEFAULT_SOURCES["anthropic"] == (
        "https://status.claude.com/api/v2/summary.json",
        "statuspage",
    )
    # Google Cloud's feed is Vertex AI's; the Gemini API has no machine-readable page.
    assert DEFAULT_SOURCES["vertex"] == ("https://status.cloud.google.com/incidents.json", "google")
    assert "gemini" not in DEFAULT_SOURCES
    for provider, (url, kind) in DEFAULT_SOURCES.items():
        assert guess_format(url) == kind, provider  # a URL set by hand is read the same way
    assert human_url(DEFAULT_SOURCES["openai"][0], "statuspage") == "https://status.openai.com"
    assert human_url(DEFAULT_SOURCES["vertex"][0], "google") == "https://status.cloud.google.com/"
    assert human_url(DEFAULT_SOURCES["xai"][0], "rss") == "https://status.x.ai/"
    assert human_url(DEFAULT_SOURCES["azure"][0], "azure") == (
        "https://azure.status.microsoft/en-us/status/"
    )
    bedrock = DEFAULT_SOURCES["bedrock"][0].replace("{region}", "eu-west-1")
    assert human_url(bedrock, "aws") == "https://status.aws.amazon.com/"


def test_summary_of_a_quiet_page() -> None:
    status = OfficialStatus(
        "groq", "none", "All Systems Operational", [], "https://groqstatus.com", datetime.now(UTC)
    )
    assert status.summary() == "none: All Systems Operational"
