"""The acknowledgement record: how late a provider's status page confirmed our incidents, and
which it never posted; stored official incidents, and a daemon recording them from the
simulator's page while its own alerts page."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import httpx

from conftest import patch, sim_model
from llmpulse.alerts.confirmation import (
    AFTER_S,
    BEFORE_S,
    PERIOD_S,
    OurIncident,
    PostedIncident,
    our_incidents,
    record,
)
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore
from llmpulse.rules import Severity
from llmpulse.web.view import View
from test_daemon import make_config, running, wait_for

T0 = 1_800_000_000.0
MIN = 60.0
API = ("Claude API*",)


def event(status: AlertState, rule: str, fp: str, provider: str = "anthropic") -> Notification:
    return Notification(
        status=status, severity=Severity.CRITICAL, rule=rule, target=f"{provider}/m",
        provider=provider, summary="", value=None, threshold=None,
        starts_at=datetime.fromtimestamp(T0, UTC), ends_at=None, fingerprint=fp,
    )  # fmt: skip


def posted(
    at: float, components: tuple[str, ...] = ("Claude API (api.anthropic.com)",)
) -> PostedIncident:
    return PostedIncident("anthropic", f"i{at}", "Elevated errors", at, components)


FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED


def test_overlapping_outage_alerts_are_one_incident() -> None:
    events = [
        (T0, event(FIRING, "consecutive_unavailable", "a")),
        (T0 + 1 * MIN, event(FIRING, "provider_down", "p")),
        (T0 + 2 * MIN, event(FIRING, "ttft_p95_high", "slow")),  # not an outage
        (T0 + 3 * MIN, event(AlertState.ACKNOWLEDGED, "consecutive_unavailable", "a")),
        (T0 + 5 * MIN, event(RESOLVED, "consecutive_unavailable", "a")),
        (T0 + 9 * MIN, event(RESOLVED, "provider_down", "p")),
        (T0 + 60 * MIN, event(FIRING, "error_rate_critical", "b")),
        (T0 + 61 * MIN, event(FIRING, "error_rate_critical", "other", provider="openai")),
    ]
    assert our_incidents(events, "anthropic") == [
        OurIncident(T0, T0 + 9 * MIN),
        OurIncident(T0 + 60 * MIN, None),  # still going on
    ]
    assert our_incidents(events, "openai") == [OurIncident(T0 + 61 * MIN, None)]


def test_confirmed_late_early_missed_and_pending() -> None:
    ours = [
        OurIncident(T0, T0 + 20 * MIN),  # the page posts 11 min after our page
        OurIncident(T0 + 1000 * MIN, T0 + 1010 * MIN),  # the page was 5 min ahead of us
        OurIncident(T0 + 2000 * MIN, T0 + 2010 * MIN),  # only claude.ai posted: missed
        OurIncident(T0 + 3000 * MIN, T0 + 3005 * MIN),  # posted too late: missed
        OurIncident(T0 + 4000 * MIN, None),  # going on, nothing yet: pending
    ]
    pages = [
        posted(T0 + 11 * MIN),
        posted(T0 + 995 * MIN),
        posted(T0 + 2001 * MIN, ("claude.ai",)),
        posted(T0 + 3005 * MIN + AFTER_S + 1),
    ]
    now = T0 + 4001 * MIN
    r = record("anthropic", ours, pages, API, now)
    assert [v.lag_s for v in r.verdicts] == [11 * MIN, -5 * MIN, None, None, None]
    assert [v.pending for v in r.verdicts] == [False, False, False, False, True]
    assert [v.incident.start for v in r.missed] == [T0 + 2000 * MIN, T0 + 3000 * MIN]
    assert r.median_lag_s == 3 * MIN
    assert r.sentence() == (
        "Anthropic's page confirmed 2 of our 4 incidents, a median 3 min after our page "
        "(1 more under way)"
    )
    # Followed whole, the claude.ai incident confirms the third one too.
    assert len(record("anthropic", ours, pages, (), now).confirmed) == 3


def test_window_edges_and_wording() -> None:
    ours = [OurIncident(T0, T0 + MIN)]
    early = record("anthropic", ours, [posted(T0 - BEFORE_S)], API, T0 + 10 * AFTER_S)
    assert early.verdicts[0].lag_s == -BEFORE_S
    assert early.sentence() == (
        "Anthropic's page confirmed 1 of our 1 incident, a median 30 min before our page"
    )
    too_early = record("anthropic", ours, [posted(T0 - BEFORE_S - 1)], API, T0 + 10 * AFTER_S)
    assert too_early.sentence() == "Anthropic's page confirmed 0 of our 1 incident"
    long = [OurIncident(T0, T0 + 60 * MIN)]
    unsaid = record("anthropic", long, [posted(T0 + 150 * MIN, ())], API, T0 + 10 * AFTER_S)
    assert unsaid.verdicts[0].lag_s == 150 * MIN  # no components said: it may be the API
    assert unsaid.sentence().endswith("a median 2.5 h after our page")
    ongoing = record("anthropic", [OurIncident(T0, None)], [], API, T0 + 1)
    assert ongoing.sentence() == "Anthropic's page has not posted our ongoing incident yet"
    nothing = record("xai", [], [], (), T0)
    assert (
        nothing.sentence() == "No incident of ours to compare with xAI's page in the last 30 days"
    )


def test_official_incidents_are_stored_once(db_location: str | Path) -> None:
    state = AlertStateStore(db_location)
    first = PostedIncident("anthropic", "abc", "Elevated\nerrors", T0, ("Claude API",), None)
    state.save_official_incidents([first], T0 + 5)
    renamed = PostedIncident("anthropic", "abc", "Renamed", T0 + 99, (), "https://x/i")
    other = PostedIncident("openai", "z", "Down", T0 + 50, ("Chat Completions",), None)
    state.save_official_incidents([renamed, other], T0 + 65)
    assert state.official_incidents(T0) == [
        PostedIncident("anthropic", "abc", "Elevated errors", T0, ("Claude API",), None, T0 + 65),
        dataclasses.replace(other, last_seen=T0 + 65),
    ]
    assert state.official_incidents(T0 + 66) == []  # neither posted nor seen open since
    assert [i.id for i in state.official_incidents(0, "anthropic")] == ["abc"]
    state.close()


async def test_daemon_records_the_page_and_the_views_tell_how_late_it_was(sim, receiver, tmp_path):
    name = "anthropic-ack"
    components = ["claude.ai", "Claude API (api.anthropic.com)", "Claude Code"]
    httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json={"components": components}, timeout=10)
    model = sim_model(sim, ttft="20ms", output_tokens=5, tokens_per_s=500)
    config = make_config(
        sim, receiver, [{"provider": "anthropic", "model": model, "name": "claude"}],
        monitor={"retry_interval": "300ms", "status_pages": True, "status_interval": "300ms"},
        providers={"anthropic": {"status_page": sim.status_page_url(name)}},
    )  # fmt: skip
    db = tmp_path / "r.db"
    async with running(config, db):
        await asyncio.sleep(1)
        patch(sim, model, errors={"503": 1.0})
        await wait_for(lambda: receiver.events("consecutive_unavailable"))
        # The page posts an incident on the API a second later, by the simulator's clock.
        now = httpx.get(f"{sim.url}/_sim/state", timeout=10).json()["scenario_time_s"]
        incident = {"indicator": "major", "incident": "Elevated errors on the API",
                    "affected": ["Claude API (api.anthropic.com)"]}  # fmt: skip
        timeline = {"timeline": [{"at": now + 1, "set": incident}]}
        httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json=timeline, timeout=10)
        state = AlertStateStore.open(db)
        await wait_for(lambda: state.official_incidents(0, "anthropic"))
        patch(sim, model, errors={})
        await wait_for(lambda: len(receiver.events("consecutive_unavailable")) == 2)
    (stored,) = state.official_incidents(0, "anthropic")
    assert stored.name == "Elevated errors on the API"
    assert stored.components == ("Claude API (api.anthropic.com)",)
    view = View.open(config, db)  # the stored record alone, no poller: as a status-only host
    try:
        summary = view.status_summary()
        (confirmation,) = summary.confirmations
        assert (confirmation.provider, confirmation.incidents, confirmation.confirmed) == (
            "anthropic", 1, 1
        )  # fmt: skip
        assert confirmation.median_lag_s is not None and 0 < confirmation.median_lag_s < 30
        assert confirmation.sentence == (
            "Anthropic's page confirmed 1 of our 1 incident, a median 0 min after our page"
        )
        row = view.overview().providers[0]
        assert row.confirmation == confirmation
        assert view.status_page().confirmations == [confirmation]
    finally:
        view.close()
        state.close()
        httpx.patch(f"{sim.url}/_sim/status_pages/{name}", json={"timeline": []}, timeout=10)


def test_an_incident_the_page_posted_long_before_ours_and_still_open_confirms_it() -> None:
    # Posted 2 h before our page and still listed open when our alert fired: the page was
    # first, not silent.
    ours = [OurIncident(T0, T0 + 10 * MIN)]
    still_open = dataclasses.replace(posted(T0 - 120 * MIN), last_seen=T0 + 5 * MIN)
    r = record("anthropic", ours, [still_open], API, T0 + 10 * AFTER_S)
    assert r.verdicts[0].lag_s == -120 * MIN
    assert r.missed == []
    # One that had closed (last seen open) before the window opened does not.
    closed = dataclasses.replace(posted(T0 - 120 * MIN), last_seen=T0 - BEFORE_S - 1)
    assert record("anthropic", ours, [closed], API, T0 + 10 * AFTER_S).confirmed == []
    # Where one was posted inside the window too, that one is the confirmation.
    fresh = posted(T0 + 3 * MIN)
    both = record("anthropic", ours, [still_open, fresh], API, T0 + 10 * AFTER_S)
    assert both.verdicts[0].posted == fresh


def test_stored_incidents_keep_when_they_were_last_seen_open(db_location: str | Path) -> None:
    state = AlertStateStore(db_location)
    old = PostedIncident("anthropic", "old", "Degraded", T0 - 86400, ("Claude API",), None)
    state.save_official_incidents([old], T0 - 86400)
    state.save_official_incidents([old], T0 + 60)
    # Created before ``since`` but still open after it: listed, with its last sighting.
    (found,) = state.official_incidents(T0)
    assert found.last_seen == T0 + 60
    state.close()


def test_official_incidents_are_kept_while_the_record_can_use_them(
    db_location: str | Path,
) -> None:
    # What the pages post is stored every poll: without an end, a page that renames its
    # incidents (or many pages over years) grows the table for ever.
    state = AlertStateStore(db_location)
    old = PostedIncident("anthropic", "old", "Gone", T0 - PERIOD_S - BEFORE_S - 10, (), None)
    state.save_official_incidents([old], old.created_at)
    recent = PostedIncident("anthropic", "new", "Here", T0 - 60, (), None)
    state.save_official_incidents([recent], T0)
    state.prune_official_incidents(T0)
    assert [i.id for i in state.official_incidents(0)] == ["new"]
    state.close()
