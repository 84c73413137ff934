"""Status sources beyond Statuspage and component scoping, read from the simulator's pages over
loopback: AWS Health's service RSS, Azure's status RSS, an incident feed (xAI's), and a target
following only the components that carry its API."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from conftest import make_target
from llmpulse.config import ConfigError, parse_config
from llmpulse.monitor.daemon import Daemon
from llmpulse.probe.official import (
    DEFAULT_COMPONENTS,
    StatusPoller,
    aws_region,
    components_for,
    fetch_merged,
    fetch_status,
    provider_scope,
    scoped,
    source_urls,
)
from llmpulse.sim.server import SimServer, StatusFormat

CLAUDE = ["claude.ai", "Claude API (api.anthropic.com)", "Claude Code"]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


_pages = iter(range(10_000))


def page(sim: SimServer, **fields: Any) -> str:
    """A fresh simulated status page with these fields; returns its name."""
    name = f"page-{next(_pages)}"
    httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json=fields, timeout=10).raise_for_status()
    return name


async def read(
    sim: SimServer,
    session: aiohttp.ClientSession,
    name: str,
    kind: StatusFormat,
    scope: tuple[str, ...] = (),
) -> Any:
    return await fetch_status(
        session, "p", sim.status_page_url(name, kind), kind, scope=scope, timeout_s=5
    )


# --- AWS Health Dashboard service RSS ----------------------------------------------------------


async def test_aws_feed_event_under_way(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(
        sim, indicator="major", incident="Increased error rates for InvokeModel",
        components=["Amazon Bedrock (N. Virginia)"],
    )  # fmt: skip
    status = await read(sim, session, name, "aws")
    assert status.error is None
    assert status.indicator == "major"  # "Service disruption: ..."
    (incident,) = status.open_incidents
    assert incident.name == "Increased error rates for InvokeModel"
    assert incident.components == ("Amazon Bedrock (N. Virginia)", name)  # the feed's name
    assert incident.created_at is not None
    assert status.url == f"{sim.url}/"  # the dashboard is the host's root


async def test_aws_feed_with_only_resolved_items_is_quiet(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    # The feed keeps old items, "Resolved: Informational message: ..." the newest: over.
    status = await read(sim, session, page(sim), "aws")
    assert (status.error, status.indicator, status.open_incidents) == (None, "none", ())


async def test_aws_service_impact_is_major(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(sim, indicator="critical", incident="Increased Connectivity Issues")
    status = await read(sim, session, name, "aws")
    assert status.indicator == "major"  # "Service impact: ..."


async def test_aws_minor_impact(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(sim, indicator="minor", incident="Elevated latencies")
    status = await read(sim, session, name, "aws")
    assert status.indicator == "minor"  # "Performance issues: ..."
    assert status.incidents == [f"Elevated latencies (minor; API, {name})"]


# --- Azure status RSS --------------------------------------------------------------------------


async def test_azure_feed_keeps_only_ai_items(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    openai = page(
        sim, indicator="major", incident="Azure OpenAI: elevated errors in Sweden Central",
        components=["Azure OpenAI Service", "Sweden Central"],
    )  # fmt: skip
    status = await read(sim, session, openai, "azure")
    assert status.indicator == "minor"  # the feed says no severity: active is not all clear
    (incident,) = status.open_incidents
    assert incident.components == ("Azure OpenAI Service", "Sweden Central")
    storage = page(
        sim, indicator="major", incident="Storage: degraded availability",
        components=["Storage", "West US"],
    )  # fmt: skip
    quiet = await read(sim, session, storage, "azure")
    assert (quiet.error, quiet.indicator, quiet.incidents) == (None, "none", [])


async def test_azure_quiet_feed(sim: SimServer, session: aiohttp.ClientSession) -> None:
    status = await read(sim, session, page(sim), "azure")
    assert (status.error, status.indicator) == (None, "none")


# --- an incident feed (xAI's feed.xml) ---------------------------------------------------------


async def test_incident_feed(sim: SimServer, session: aiohttp.ClientSession) -> None:
    # As xAI's feed.xml: "[API (US East)] Elevated API errors", categories severity and state.
    name = page(
        sim, indicator="minor", incident="Elevated API errors", incident_status="identified",
        components=["API (US East)", "Grok (Web)"], affected=["API (US East)"],
    )  # fmt: skip
    status = await read(sim, session, name, "rss")
    assert status.indicator == "minor"
    (incident,) = status.open_incidents  # the resolved one below it is over
    assert incident.name == "Elevated API errors"
    assert incident.components == ("API (US East)",)  # neither its severity nor its state
    assert incident.url is not None and "/incidents/" in incident.url
    quiet = await read(sim, session, page(sim), "rss")
    assert (quiet.error, quiet.indicator) == (None, "none")


async def test_incident_feed_outage_on_the_api_counts_as_major(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    name = page(
        sim, indicator="major", incident="API unavailable", incident_status="investigating",
        components=["API (US West)", "Grok (Web)"], affected=["API (US West)"],
    )  # fmt: skip
    status = await read(sim, session, name, "rss", DEFAULT_COMPONENTS["xai"])
    assert status.indicator == "major"  # severity "outage"
    assert status.incidents == ["API unavailable (major; API (US West))"]


@pytest.mark.parametrize("kind", ["aws", "azure", "rss"])
async def test_garbage_feeds_are_unknown(
    sim: SimServer, session: aiohttp.ClientSession, kind: StatusFormat
) -> None:
    # The Statuspage JSON (or an HTML error page) where a feed was expected.
    status = await fetch_status(session, "p", sim.status_page_url(page(sim)), kind)
    assert status.indicator == "unknown"
    assert status.error is not None and "not an RSS or Atom feed" in status.error
    down = page(sim, unavailable=True)
    status = await fetch_status(session, "p", sim.status_page_url(down, kind), kind)
    assert (status.indicator, status.error) == ("unknown", "HTTP 503 Service Unavailable")


async def test_feeds_are_bounded(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(sim, indicator="minor", incident="x" * 5000)
    status = await fetch_status(
        session, "p", sim.status_page_url(name, "rss"), "rss", max_bytes=512
    )
    assert status.indicator == "unknown" and status.error is not None
    status = await read(sim, session, name, "rss")
    clipped = status.open_incidents[0].name  # one clipped line, less its "[component] "
    assert len(clipped) <= 200 and clipped.endswith("x…")


# --- component scoping -------------------------------------------------------------------------


async def test_incident_on_another_component_is_shown_but_does_not_count(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    name = page(
        sim, indicator="major", incident="claude.ai unavailable", components=CLAUDE,
        affected=["claude.ai"],
    )  # fmt: skip
    whole = await read(sim, session, name, "statuspage")
    assert whole.indicator == "major"
    status = await read(sim, session, name, "statuspage", DEFAULT_COMPONENTS["anthropic"])
    assert status.indicator == "none"
    assert status.page_indicator == "major"
    assert status.description == "All Systems Operational for this API (the page: major)"
    assert status.incidents == ["claude.ai unavailable (major; claude.ai, not this API)"]
    assert status.summary().startswith("none: ")
    # The same fetch seen whole again, and scoped to claude.ai: computed from what was read.
    assert scoped(status, ()).indicator == "major"
    assert scoped(status, ("claude.ai",)).indicator == "major"


async def test_incident_on_the_api_counts(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(
        sim, indicator="minor", incident="Elevated errors", components=CLAUDE,
        affected=["Claude API (api.anthropic.com)"],
    )  # fmt: skip
    status = await read(sim, session, name, "statuspage", ("Claude API*",))
    assert (status.indicator, status.description) == ("minor", "Minor Service Outage")
    assert status.incidents == ["Elevated errors (minor; Claude API (api.anthropic.com))"]


async def test_a_page_without_the_named_components_is_followed_whole(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    # A renamed component must not hide an outage.
    name = page(sim, indicator="major", incident="Outage", components=["Everything"])
    status = await read(sim, session, name, "statuspage", ("Chat Completions",))
    assert status.indicator == "major"
    assert status.scope == ()


async def test_feed_incidents_are_scoped_by_their_components(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    name = page(
        sim, indicator="minor", incident="Grok slow", components=["Grok (Web)", "API (US East)"],
        affected=["Grok (Web)"],
    )  # fmt: skip
    status = await read(sim, session, name, "rss", DEFAULT_COMPONENTS["xai"])
    assert status.indicator == "none"
    assert status.incidents == ["Grok slow (minor; Grok (Web), not this API)"]
    # The API Console is xAI's web console (console.x.ai), not the API.
    name = page(
        sim, indicator="major", incident="Console login failing",
        components=["API (US East)", "API Console"], affected=["API Console"],
    )  # fmt: skip
    status = await read(sim, session, name, "rss", DEFAULT_COMPONENTS["xai"])
    assert status.indicator == "none"
    assert status.incidents == ["Console login failing (major; API Console, not this API)"]


async def test_google_products_scope_vertex(sim: SimServer, session: aiohttp.ClientSession) -> None:
    name = page(
        sim, indicator="major", incident="Gemini in Workspace errors",
        components=["Gemini for Google Workspace"],
    )  # fmt: skip
    status = await read(sim, session, name, "google", DEFAULT_COMPONENTS["vertex"])
    assert (status.page_indicator, status.indicator) == ("major", "none")
    for product in ("Vertex Gemini API", "Generative AI on Vertex AI"):
        name = page(sim, indicator="major", incident="Vertex errors", components=[product])
        status = await read(sim, session, name, "google", DEFAULT_COMPONENTS["vertex"])
        assert status.indicator == "major", product


async def test_poller_reports_changes_of_the_scoped_indicator(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    name = page(sim, components=CLAUDE)
    url = sim.status_page_url(name)
    poller = StatusPoller(
        {"anthropic": (url, "statuspage")}, scopes={"anthropic": ("Claude API*",)}
    )
    await poller.poll_once(session)
    patch = {"indicator": "major", "incident": "claude.ai down", "affected": ["claude.ai"]}
    httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json=patch, timeout=10)
    await poller.poll_once(session)
    assert poller.changes().empty()  # the page is major, but not on the API
    patch = {"affected": ["claude.ai", "Claude API (api.anthropic.com)"]}
    httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json=patch, timeout=10)
    await poller.poll_once(session)
    old, new = poller.changes().get_nowait()
    assert (old and old.indicator, new.indicator) == ("none", "major")


# --- which components a target follows ---------------------------------------------------------


def test_components_for_targets(sim: SimServer) -> None:
    anthropic = make_target(sim, "anthropic", "claude-haiku-4-5")
    assert components_for(anthropic) == ("Claude API*",)
    groq = make_target(sim, "groq", "llama-3.1-8b-instant")
    assert components_for(groq) == ("API", "llama-3.1-8b-instant")
    own = make_target(sim, "openai", "gpt-4o-mini", status_components=["Batch", "Files*"])
    assert components_for(own) == ("Batch", "Files*")
    whole = make_target(sim, "openai", "gpt-4o-mini", status_components=[])
    assert components_for(whole) == ()
    assert components_for(make_target(sim, "deepseek", "deepseek-chat")) == ()  # no mapping
    openai = make_target(sim, "openai", "gpt-4o-mini")
    assert provider_scope([openai, own]) == (
        "Chat Completions",
        "Responses",
        "Embeddings",
        "Batch",
        "Files*",
    )
    assert provider_scope([openai, whole]) == ()


def test_status_components_config_errors() -> None:
    target = {"provider": "openai", "model": "m", "api_key": "os.environ/K"}
    with pytest.raises(ConfigError, match="status_components"):
        parse_config({"targets": [{**target, "status_components": "API"}]}, env={"K": "k"})
    with pytest.raises(ConfigError, match="status_format"):
        parse_config(
            {"targets": [target], "providers": {"openai": {"status_format": "json"}}},
            env={"K": "k"},
        )


def test_bedrock_region_and_source_urls(sim: SimServer) -> None:
    assert aws_region("https://bedrock-runtime.eu-west-3.amazonaws.com") == "eu-west-3"
    assert aws_region("https://bedrock-runtime.us-gov-west-1.amazonaws.com/") == "us-gov-west-1"
    assert aws_region("https://api.openai.com/v1") is None
    template = "https://status.aws.amazon.com/rss/bedrock-{region}.rss"
    endpoint = "https://bedrock-runtime.{}.amazonaws.com"
    south, west = (make_target(sim, "openai", "m", base_url=endpoint.format(r))
                   for r in ("ap-south-1", "eu-west-1"))  # fmt: skip
    plain = make_target(sim, "openai", "m")
    assert source_urls(template, [south, plain, west, south]) == (
        "https://status.aws.amazon.com/rss/bedrock-ap-south-1.rss",
        "https://status.aws.amazon.com/rss/bedrock-eu-west-1.rss",
    )
    assert source_urls(template, [plain]) == ()
    assert source_urls("https://x/feed.xml", [south]) == ("https://x/feed.xml",)
    # A Bedrock target follows its own region's feed (the preset's default mapping).
    bedrock = dataclasses.replace(south, provider="bedrock")
    assert components_for(bedrock) == ("bedrock-ap-south-1",)
    assert components_for(dataclasses.replace(plain, provider="bedrock")) == ()


async def test_feeds_of_several_regions_are_one_status(
    sim: SimServer, session: aiohttp.ClientSession
) -> None:
    bad = page(sim, indicator="major", incident="InvokeModel errors")
    good = page(sim)
    urls = [sim.status_page_url(bad, "aws"), sim.status_page_url(good, "aws")]
    status = await fetch_merged(session, "bedrock", urls, "aws")
    assert (status.error, status.indicator) == (None, "major")
    assert status.open_incidents[0].components == ("API", bad)  # the feed's name: its region
    # Each region's targets follow their own feed.
    assert (await fetch_merged(session, "bedrock", urls, "aws", scope=(good,))).indicator == "none"
    assert (await fetch_merged(session, "bedrock", urls, "aws", scope=(bad,))).indicator == "major"
    # A feed that cannot be read hides nothing the others say; all unreadable is unknown.
    gone = sim.status_page_url(page(sim, unavailable=True), "aws")
    partly = await fetch_merged(session, "bedrock", [urls[0], gone], "aws")
    assert partly.indicator == "major"
    assert partly.description == "Partial System Outage (1 of 2 feeds unreadable)"
    assert (await fetch_merged(session, "bedrock", [gone, gone], "aws")).indicator == "unknown"


def test_the_daemon_polls_each_providers_source_with_its_scope(tmp_path: Path) -> None:
    targets = [
        {"provider": "anthropic", "model": "claude-haiku-4-5", "status_components": ["claude.ai"]},
        {"provider": "xai", "model": "grok-3-mini"},
        {"provider": "gemini", "model": "gemini-2.5-flash"},  # no machine-readable page
        # A Bedrock-style regional feed named by hand: {region} from each target's endpoint.
        {"provider": "openai", "model": "m",
         "base_url": "https://bedrock-runtime.eu-west-1.amazonaws.com/openai/v1"},
        {"provider": "openai", "model": "m", "name": "m2",
         "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1"},
        {"provider": "groq", "model": "llama-3.1-8b-instant"},
        {"provider": "deepseek", "model": "deepseek-chat"},
    ]  # fmt: skip
    providers = {
        "openai": {"status_page": "https://status.aws.amazon.com/rss/bedrock-{region}.rss"},
        "groq": {"status_page": "http://127.0.0.1:1/feed", "status_format": "azure"},
        "deepseek": {"status_page": False},
    }
    raw = {
        "targets": [{**t, "api_key": "${K}"} for t in targets],
        "providers": providers,
        "monitor": {"status_interval": "5s"},
    }
    daemon = Daemon(parse_config(raw, env={"K": "k"}), db_path=tmp_path / "r.db")
    assert daemon.status.sources == {
        "anthropic": ("https://status.claude.com/api/v2/summary.json", "statuspage"),
        "xai": ("https://status.x.ai/feed.xml", "rss"),
        "openai": ("https://status.aws.amazon.com/rss/bedrock-eu-west-1.rss", "aws"),
        "groq": ("http://127.0.0.1:1/feed", "azure"),
    }
    assert daemon.status.also == {
        "openai": ("https://status.aws.amazon.com/rss/bedrock-us-east-1.rss",)
    }
    assert daemon.status.scopes["anthropic"] == ("claude.ai",)  # the target's own
    assert daemon.status.scopes["xai"] == ("API", "API (*)")
    assert daemon.status.scopes["groq"] == ("API", "llama-3.1-8b-instant")
    assert daemon.status.scopes["gemini"] == ()
