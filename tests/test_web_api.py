"""Every endpoint of the dashboard's API, over a real socket, against seeded data."""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore, state_paths
from llmpulse.config import ConfigError, parse_config
from llmpulse.probe.scheduler import configured_interval
from llmpulse.result import CheckKind, CheckResult, Source, Usage
from llmpulse.store import ResultFilter, SQLiteStore
from llmpulse.web.view import View
from webserve import (
    ANTHROPIC,
    GROQ,
    OPENAI,
    SECRET,
    SERVED_NEW,
    SERVED_OLD,
    TRAFFIC_COST,
    TRAFFIC_OWNERS,
    ServedWeb,
    make_config,
    official_statuses,
    seed,
    seed_probes,
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    db = tmp_path_factory.mktemp("web") / "r.db"
    now = time.time()
    facts = seed(db, now)
    facts["now"] = now
    official = official_statuses(now)
    served = ServedWeb(make_config(), db, official=official.get)
    with served as web, httpx.Client(base_url=web.url, timeout=10) as client:
        yield client, facts


@pytest.fixture
def client(site: tuple[httpx.Client, dict[str, Any]]) -> httpx.Client:
    return site[0]


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text and "sk-openai-key" not in response.text
    return response.json()


def test_targets_list_names_providers_and_models_only(client: httpx.Client) -> None:
    targets = get(client, "/api/v1/targets")
    assert [t["name"] for t in targets] == [OPENAI, ANTHROPIC, GROQ]
    assert set(targets[0]) == {"name", "provider", "model", "checks", "interval_s"}


def test_overview_cards_show_status_figures_and_alerts(client: httpx.Client, site: Any) -> None:
    facts = site[1]
    overview = get(client, "/api/v1/overview")
    cards = {c["name"]: c for c in overview["cards"]}
    openai, anthropic, groq = cards[OPENAI], cards[ANTHROPIC], cards[GROQ]
    # OpenAI: 60 checks in the hour, TTFT 300..359 ms; p50 is the value at floor(0.5·59) = 29.
    assert openai["status"] == "up"
    assert openai["status_since"] == pytest.approx(facts["ttft"].resolved_at)
    assert openai["checks_1h"] == 60
    assert openai["ttft_p50_ms"] == pytest.approx(329.0)
    assert openai["ttft_p95_ms"] == pytest.approx(356.0)
    assert openai["tps_p50"] == pytest.approx(50.0)
    assert openai["error_rate"] == 0
    assert openai["ratelimit_utilization"] == pytest.approx(0.6)
    assert openai["cost_today_usd"] is not None and openai["cost_today_usd"] > 0
    assert openai["served_model"] == SERVED_NEW
    assert openai["retires"] == "2027-01-15" and anthropic["retires"] is None
    assert openai["alerts"] == [] and openai["last_error"] is None
    # Anthropic: the incident is firing, so the card says down since it fired.
    assert anthropic["status"] == "down"
    assert anthropic["status_since"] == pytest.approx(facts["incident"].fired_at)
    assert anthropic["status_reason"] == "5 consecutive unavailable checks"
    assert anthropic["error_rate"] == pytest.approx(5 / 20)
    assert anthropic["last_error"]["class"] == "unavailable"
    assert "[redacted]" in anthropic["last_error"]["message"]
    assert [a["rule"] for a in anthropic["alerts"]] == ["consecutive_unavailable"]
    assert groq["status"] == "unknown" and groq["checks_1h"] == 0 and groq["ttft_p50_ms"] is None
    providers = {p["provider"]: p for p in overview["providers"]}
    assert providers["anthropic"]["status"] == "down" and providers["openai"]["status"] == "up"
    assert overview["overall"] == "down"
    assert [a["target"] for a in overview["firing"]] == [ANTHROPIC]


def test_target_detail_accepts_names_with_slashes(client: httpx.Client) -> None:
    detail = get(client, f"/api/v1/targets/{OPENAI}")
    assert detail["target"]["name"] == OPENAI
    assert detail["card"]["status"] == "up"
    assert set(detail["windows"]) == {"5m", "1h", "24h", "7d", "30d"}
    assert detail["windows"]["24h"]["count"] == 60
    missing = client.get("/api/v1/targets/nope/nothing")
    assert missing.status_code == 404 and "nope/nothing" in missing.json()["detail"]


def test_results_newest_first_with_keys_redacted(client: httpx.Client) -> None:
    body = get(client, "/api/v1/results", target=ANTHROPIC, limit=3)
    results = body["results"]
    assert len(results) == 3
    stamps = [r["timestamp"] for r in results]
    assert stamps == sorted(stamps, reverse=True)
    assert results[0]["error_class"] == "unavailable" and results[0]["http_status"] == 529
    assert "[redacted]" in results[0]["error_message"]
    assert client.get("/api/v1/results", params={"target": "x"}).status_code == 404
    assert client.get("/api/v1/results", params={"limit": 0}).status_code == 422


def test_results_filter_by_region_and_source(client: httpx.Client, site: Any) -> None:
    now = site[1]["now"]
    eu = get(client, "/api/v1/results", target=OPENAI, region="eu-west", limit=3)["results"]
    assert [(r["agent"], r["region"], r["source"]) for r in eu] == [
        ("probe-eu-1", "eu-west", "probe")
    ] * 3
    assert _ts(eu[0]["timestamp"]) == pytest.approx(now - 150, abs=0.001)  # i = 57
    # region="" is the results without one: OpenAI's single-agent probes, Anthropic's traffic.
    plain = get(client, "/api/v1/results", region="", limit=1000)["results"]
    assert len(plain) == 20 + 10 and {r["agent"] for r in plain} == {None}
    traffic = get(client, "/api/v1/results", source="traffic", limit=1000)["results"]
    assert len(traffic) == 10 and {r["target"] for r in traffic} == {ANTHROPIC}
    assert client.get("/api/v1/results", params={"source": "x"}).status_code == 422


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _figures(group: dict[str, Any]) -> tuple[Any, ...]:
    return (
        group["count"], group["ok"], group["errors"], group["error_rate"],
        group["ttft_p50"], group["ttft_p95"], group["ttft_p99"],
        group["latency_p50"], group["latency_p95"], group["tps_p50"],
    )  # fmt: skip


def test_breakdown_by_region_is_exact(client: httpx.Client, site: Any) -> None:
    now = site[1]["now"]
    body = get(client, "/api/v1/breakdown", by="region", window="1h", target=OPENAI)
    assert (body["by"], body["window"], body["target"]) == ("region", "1h", OPENAI)
    groups = body["groups"]
    assert list(groups) == ["", "eu-west", "us-east"]
    # Every third check per region: TTFT 300+i, latency 900+i for i = 0, 3, .. 57 (eu-west),
    # 1, 4, .. 58 (us-east), 2, 5, .. 59 (no region). Ranks floor(q·19): 9 and 18.
    assert _figures(groups["eu-west"]) == (20, 20, {}, 0, 327, 354, 354, 927, 954, 50)
    assert _figures(groups["us-east"]) == (20, 20, {}, 0, 328, 355, 355, 928, 955, 50)
    assert _figures(groups[""]) == (20, 20, {}, 0, 329, 356, 356, 929, 956, 50)
    assert groups["eu-west"]["last_ts"] == pytest.approx(now - 150)
    assert groups[""]["last_ts"] == pytest.approx(now - 30)
    last5 = get(client, "/api/v1/breakdown", by="region", window="5m", target=OPENAI)
    assert {k: g["count"] for k, g in last5["groups"].items()} == {
        "": 2, "eu-west": 1, "us-east": 2
    }  # fmt: skip
    # All targets, probes only: Anthropic's probes add five checks to each region.
    probes = get(client, "/api/v1/breakdown", by="region", source="probe")
    assert probes["window"] == "1h" and probes["source"] == "probe"
    assert {k: g["count"] for k, g in probes["groups"].items()} == {
        "": 20, "eu-west": 25, "us-east": 25
    }  # fmt: skip


def test_breakdown_by_source_separates_traffic_from_probes(client: httpx.Client, site: Any) -> None:
    now = site[1]["now"]
    groups = get(client, "/api/v1/breakdown", by="source", window="24h", target=ANTHROPIC)["groups"]
    assert list(groups) == ["probe", "traffic"]
    # Probes: TTFT 200..209, latency 500..509, all fine. Traffic: TTFT 210..214 (the five
    # failures measured none), latency 510..519, the last five checks unavailable.
    assert _figures(groups["probe"]) == (10, 10, {}, 0, 204, 208, 208, 504, 508, 80)
    assert _figures(groups["traffic"]) == (
        10, 5, {"unavailable": 5}, 0.5, 212, 213, 213, 514, 518, 80
    )  # fmt: skip
    assert groups["probe"]["last_ts"] == pytest.approx(now - 630)
    assert groups["traffic"]["last_ts"] == pytest.approx(now - 30)
    eu = get(client, "/api/v1/breakdown", by="source", region="eu-west")["groups"]
    assert {k: g["count"] for k, g in eu.items()} == {"probe": 25}
    overall = get(client, "/api/v1/breakdown", by="source", window="7d")["groups"]
    assert {k: g["count"] for k, g in overall.items()} == {"probe": 70, "traffic": 10}
    assert get(client, "/api/v1/breakdown", by="source", target=GROQ)["groups"] == {}
    assert (
        client.get("/api/v1/breakdown", params={"by": "source", "target": "x"}).status_code == 404
    )
    for bad in ({}, {"by": "agent"}, {"by": "region", "window": "30d"}):
        assert client.get("/api/v1/breakdown", params=bad).status_code == 422


def test_aggregates_by_target_provider_and_overall(client: httpx.Client) -> None:
    by_target = get(client, "/api/v1/aggregates", window="1h", by="target")["groups"]
    assert by_target[OPENAI]["count"] == 60 and by_target[ANTHROPIC]["count"] == 20
    by_provider = get(client, "/api/v1/aggregates", window="24h", by="provider")["groups"]
    assert set(by_provider) == {"openai", "anthropic"}
    overall = get(client, "/api/v1/aggregates", window="1h", by="overall")["groups"][""]
    assert overall["count"] == 80
    assert overall["errors"] == {"unavailable": 5}
    assert client.get("/api/v1/aggregates", params={"window": "2h"}).status_code == 422


def test_series_are_columnar_buckets_covering_the_range(client: httpx.Client) -> None:
    series = get(client, "/api/v1/series", target=OPENAI, range="1h")
    assert series["step_s"] == 60
    n = len(series["ts"])
    assert 60 <= n <= 61
    for key in ("count", "ttft_p50", "ttft_p95", "latency_p99", "tps_p50", "error_rate", "cost"):
        assert len(series[key]) == n
    assert sum(series["count"]) == 60
    assert all(b - a == 60 for a, b in zip(series["ts"], series["ts"][1:], strict=False))
    anthropic = get(client, "/api/v1/series", target=ANTHROPIC, range="24h")
    assert anthropic["step_s"] == 900
    assert sum(anthropic["errors"]["unavailable"]) == 5
    everything = get(client, "/api/v1/series", range="7d")
    assert sum(everything["count"]) == 80
    assert client.get("/api/v1/series", params={"target": "x"}).status_code == 404


def test_context_utilization_in_every_aggregate(client: httpx.Client) -> None:
    # Anthropic's: ten probes of 8 tokens, five requests of 20k..100k, of a 200k window; the
    # five failed requests reported no usage. Sorted, ranks floor(0.5·14) = 7, floor(0.95·14) = 13.
    fields = ("context_utilization_p50", "context_utilization_p95", "context_utilization_max")
    exact = get(client, "/api/v1/aggregates", window="1h", by="target")["groups"]
    assert [exact[ANTHROPIC][f] for f in fields] == [8 / 200000, 0.4, 0.5]
    assert [exact[OPENAI][f] for f in fields] == [None, None, None]  # no window known
    for by, key in (("provider", "anthropic"), ("overall", "")):
        rolled = get(client, "/api/v1/aggregates", window="24h", by=by)["groups"][key]
        assert rolled["context_utilization_p50"] == pytest.approx(8 / 200000, rel=0.01)
        assert rolled["context_utilization_p95"] == pytest.approx(0.4, rel=0.01)
        assert rolled["context_utilization_max"] == 0.5
    windows = get(client, f"/api/v1/targets/{ANTHROPIC}")["windows"]
    assert windows["5m"]["context_utilization_max"] is None  # only failures in the last 5 min
    assert windows["7d"]["context_utilization_max"] == 0.5
    series = get(client, "/api/v1/series", target=ANTHROPIC, range="1h")
    maxima = [m for m in series["context_utilization_max"] if m is not None]
    assert len(series["context_utilization_p95"]) == len(series["ts"])
    assert sorted(maxima) == [8 / 200000] * 10 + [0.1, 0.2, 0.3, 0.4, 0.5]
    groups = get(client, "/api/v1/breakdown", by="source", window="1h", target=ANTHROPIC)["groups"]
    assert groups["probe"]["context_utilization_max"] == 8 / 200000
    assert groups["traffic"]["context_utilization_max"] == 0.5


def test_context_utilization_chart_splits_probes_from_traffic(client: httpx.Client) -> None:
    body = get(client, "/api/v1/context_utilization", target=ANTHROPIC, range="1h")
    assert (body["target"], body["range"], body["step_s"]) == (ANTHROPIC, "1h", 60)
    n = len(body["ts"])
    assert 60 <= n <= 61 and set(body["sources"]) == {"probe", "traffic"}
    probe, traffic = body["sources"]["probe"], body["sources"]["traffic"]
    for s in (probe, traffic):
        assert all(len(s[k]) == n for k in ("count", "p50", "p95", "max"))
    # One result a minute: each bucket's figures are its value (p95 within the sketch's 1 %).
    assert sum(probe["count"]) == 10 and sum(traffic["count"]) == 5
    assert [m for m in probe["max"] if m is not None] == [8 / 200000] * 10
    assert [m for m in traffic["max"] if m is not None] == [0.1, 0.2, 0.3, 0.4, 0.5]
    for m, p95 in zip(traffic["max"], traffic["p95"], strict=True):
        assert (p95 is None) if m is None else p95 == pytest.approx(m, rel=0.01)
    # Both sources always; all targets together without one; OpenAI's probes know no window.
    everything = get(client, "/api/v1/context_utilization", range="7d")
    assert everything["step_s"] == 3600 and sum(everything["sources"]["traffic"]["count"]) == 5
    openai = get(client, "/api/v1/context_utilization", target=OPENAI)["sources"]
    assert sum(openai["probe"]["count"]) == sum(openai["traffic"]["count"]) == 0
    assert client.get("/api/v1/context_utilization", params={"target": "x"}).status_code == 404
    assert client.get("/api/v1/context_utilization", params={"range": "2h"}).status_code == 422


def test_events_mark_alerts_and_served_model_changes(client: httpx.Client) -> None:
    events = get(client, "/api/v1/events", target=OPENAI, range="24h")["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("alert_firing") == 1 and kinds.count("alert_resolved") == 1
    changes = [e for e in events if e["kind"] == "model_changed"]
    assert changes[-1]["from"] == SERVED_OLD and changes[-1]["to"] == SERVED_NEW
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)


def test_alerts_firing_and_history(client: httpx.Client) -> None:
    alerts = get(client, "/api/v1/alerts")
    assert [a["target"] for a in alerts["firing"]] == [ANTHROPIC]
    assert alerts["firing"][0]["silenced"] is False
    assert alerts["firing"][0]["scope"] == "target"
    history = alerts["history"]
    assert [h["status"] for h in history] == ["firing", "resolved", "firing"]
    assert history[0]["target"] == ANTHROPIC  # newest first
    only = get(client, "/api/v1/alerts", target=OPENAI)
    assert only["firing"] == [] and len(only["history"]) == 2


def test_silences_create_list_and_end(client: httpx.Client) -> None:
    created = client.post(
        "/api/v1/silences",
        json={"target": ANTHROPIC, "duration": "30m", "comment": "vendor incident"},
    )
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["active"] and silence["ends_at"] - silence["starts_at"] == pytest.approx(1800)
    listed = get(client, "/api/v1/silences")["silences"]
    assert silence["id"] in [s["id"] for s in listed]
    assert get(client, "/api/v1/alerts")["firing"][0]["silenced"] is True
    ended = client.delete(f"/api/v1/silences/{silence['id']}")
    assert ended.status_code == 200 and ended.json()["active"] is False
    assert client.delete(f"/api/v1/silences/{silence['id']}").status_code == 404
    assert silence["id"] not in [s["id"] for s in get(client, "/api/v1/silences")["silences"]]
    assert silence["id"] in [s["id"] for s in get(client, "/api/v1/silences", all=True)["silences"]]
    malformed = client.post("/api/v1/silences", json={"duration": "soon"})
    assert malformed.status_code == 422 and "duration" in str(malformed.json()["detail"])
    zero = client.post("/api/v1/silences", json={"duration": "0s"})
    assert zero.status_code == 400 and "duration" in zero.json()["detail"]
    assert client.post("/api/v1/silences", json={"duration": "400d"}).status_code == 400
    extra = client.post("/api/v1/silences", json={"duration": "1h", "api_key": "x"})
    assert extra.status_code == 422


def test_recurring_silences_round_trip(client: httpx.Client) -> None:
    created = client.post(
        "/api/v1/silences",
        json={"provider": "openai", "cron": "0 2 * * SUN", "timezone": "Europe/Berlin",
              "duration": "2h", "comment": "weekly deploy"},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    weekly = created.json()
    assert weekly["schedule"] == {
        "cron": "0 2 * * SUN",
        "duration_s": 7200.0,
        "timezone": "Europe/Berlin",
    }
    assert weekly["ends_at"] is None and weekly["editable"]
    berlin = ZoneInfo("Europe/Berlin")
    windows = weekly["next_occurrences"]
    assert len(windows) == 3 and windows == sorted(windows)
    for start, end in windows[weekly["active"] :]:  # each a Sunday, 02:00 → 04:00 in Berlin
        local = datetime.fromtimestamp(start, berlin)
        assert (local.weekday(), local.hour, local.minute) == (6, 2, 0)
        assert end - start == 7200
    listed = {s["id"]: s for s in get(client, "/api/v1/silences")["silences"]}
    assert listed[weekly["id"]]["schedule"] == weekly["schedule"]
    assert listed[weekly["id"]]["next_occurrences"] == windows

    # Every minute for two minutes: always in a window, so the firing alert shows silenced.
    assert get(client, "/api/v1/alerts")["firing"][0]["silenced"] is False
    always = client.post(
        "/api/v1/silences", json={"target": ANTHROPIC, "cron": "* * * * *", "duration": "2m"}
    ).json()
    assert always["active"] and always["schedule"]["timezone"] == "UTC"
    (start, end), (following, _) = always["next_occurrences"][:2]
    # The window under way, from when the silence was made: it silences nothing before.
    assert start == always["starts_at"] <= time.time() < end and end % 60 == 0
    assert following == end - 60
    assert get(client, "/api/v1/alerts")["firing"][0]["silenced"] is True
    for s in (weekly, always):
        assert client.delete(f"/api/v1/silences/{s['id']}").status_code == 200
    ended = {s["id"]: s for s in get(client, "/api/v1/silences", all=True)["silences"]}
    assert ended[always["id"]]["active"] is False and ended[always["id"]]["next_occurrences"] == []
    assert ended[always["id"]]["ends_at"] == pytest.approx(time.time(), abs=30)
    assert get(client, "/api/v1/alerts")["firing"][0]["silenced"] is False

    for body, message in (
        ({"cron": "0 2 * *", "duration": "2h"}, "cron: expected 5 fields"),
        (
            {"cron": "0 2 * * SUN", "timezone": "Mars/Olympus", "duration": "2h"},
            "timezone: unknown time zone",
        ),
        ({"timezone": "UTC", "duration": "2h"}, "timezone: only with cron"),
        ({"cron": "0 2 * * SUN", "duration": "0s"}, "duration: must be more than 0"),
    ):
        refused = client.post("/api/v1/silences", json=body)
        assert refused.status_code == 400 and message in refused.json()["detail"], refused.text


def test_a_card_follows_its_apis_components_and_the_provider_row_the_whole_page(
    client: httpx.Client,
) -> None:
    official = get(client, f"/api/v1/targets/{OPENAI}")["card"]["official"]
    assert (official["indicator"], official["description"]) == (
        "none", "All Systems Operational for this API (the page: minor)"
    )  # fmt: skip
    # Shown, with its component, but not counted; its outside text redacted.
    assert official["incidents"] == ["Login errors ([redacted]) (minor; ChatGPT, not this API)"]
    overview = {p["provider"]: p for p in get(client, "/api/v1/overview")["providers"]}
    assert overview["openai"]["official"]["indicator"] == "minor"  # as the poller gave it


def test_providers_announced_maintenance(client: httpx.Client, site: Any) -> None:
    now = site[1]["now"]
    card = get(client, f"/api/v1/targets/{ANTHROPIC}")["card"]
    under_way, upcoming = card["official"]["maintenances"]
    assert under_way == {
        "name": "Database upgrade ([redacted])", "status": "in_progress",
        "starts_at": pytest.approx(now - 600), "ends_at": pytest.approx(now + 3000),
        "url": "https://stspg.io/m1",
    }  # fmt: skip
    assert (upcoming["status"], upcoming["ends_at"], upcoming["url"]) == ("scheduled", None, None)
    assert get(client, f"/api/v1/targets/{OPENAI}")["card"]["official"]["maintenances"] == []
    assert get(client, f"/api/v1/targets/{GROQ}")["card"]["official"] is None
    # The alerts page lists every shown provider's, under way first.
    listed = get(client, "/api/v1/alerts")["maintenances"]
    assert [(m["provider"], m["status"]) for m in listed] == [
        ("anthropic", "in_progress"),
        ("anthropic", "scheduled"),
    ]
    assert get(client, "/api/v1/alerts", target=OPENAI)["maintenances"] == []
    assert len(get(client, "/api/v1/alerts", target=ANTHROPIC)["maintenances"]) == 2
    overview = {p["provider"]: p for p in get(client, "/api/v1/overview")["providers"]}
    assert len(overview["anthropic"]["official"]["maintenances"]) == 2


@pytest.fixture
def ack_site(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """The seeded site on its own: acknowledging changes what the other tests read."""
    db = tmp_path / "r.db"
    facts = seed(db, time.time())
    with ServedWeb(make_config(), db) as web, httpx.Client(base_url=web.url, timeout=10) as client:
        yield client, facts


def test_acknowledging_shows_at_once_keeps_the_first_and_can_be_taken_back(
    ack_site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, facts = ack_site
    fp = facts["incident"].fingerprint
    path = f"/api/v1/alerts/{fp}/ack"
    alert = get(client, f"/api/v1/alerts/{fp}")
    assert alert["state"] == "firing" and alert["acknowledged_by"] is None
    assert alert["escalation_step"] == 0 and alert["notified"] == []

    before = time.time()
    acked = client.post(path, json={"by": "ana", "comment": "on it"})
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["fingerprint"], body["state"]) == (fp, "firing")
    assert body["acknowledged_by"] == "ana" and body["acknowledged_comment"] == "on it"
    assert before - 1 <= body["acknowledged_at"] <= time.time() + 1
    # No leader runs beside this server: every read shows the stored acknowledgement at once.
    assert get(client, f"/api/v1/alerts/{fp}") == body
    (firing,) = get(client, "/api/v1/alerts")["firing"]
    assert (firing["acknowledged_by"], firing["acknowledged_at"]) == (
        "ana",
        body["acknowledged_at"],
    )
    overview = get(client, "/api/v1/overview")
    assert overview["firing"][0]["acknowledged_by"] == "ana"
    card = next(c for c in overview["cards"] if c["name"] == ANTHROPIC)
    assert card["alerts"][0]["acknowledged_comment"] == "on it"

    # Acknowledging again changes nothing: the first one holds.
    again = client.post(path, json={"by": "bob", "comment": "me too"})
    assert again.status_code == 200 and again.json() == body

    taken_back = client.delete(path)
    assert taken_back.status_code == 200
    assert taken_back.json()["acknowledged_by"] is None
    assert taken_back.json()["acknowledged_at"] is None
    assert client.delete(path).status_code == 200  # nothing to take back is no error
    assert get(client, "/api/v1/alerts")["firing"][0]["acknowledged_by"] is None

    # The body is optional.
    bare = client.post(path)
    assert bare.status_code == 200 and bare.json()["acknowledged_by"] == "api"
    assert bare.json()["acknowledged_comment"] == ""


def test_acknowledging_an_unknown_or_resolved_alert_is_refused(
    ack_site: tuple[httpx.Client, dict[str, Any]],
) -> None:
    client, facts = ack_site
    for method in ("GET", "POST", "DELETE"):
        path = "/api/v1/alerts/0123456789abcdef" + ("" if method == "GET" else "/ack")
        missing = client.request(method, path)
        assert missing.status_code == 404, (method, missing.text)
        assert "0123456789abcdef" in missing.json()["detail"]
    resolved = facts["ttft"].fingerprint
    refused = client.post(f"/api/v1/alerts/{resolved}/ack", json={"by": "ana"})
    assert refused.status_code == 409 and "not firing" in refused.json()["detail"]
    assert get(client, f"/api/v1/alerts/{resolved}")["state"] == "resolved"
    path = f"/api/v1/alerts/{facts['incident'].fingerprint}/ack"
    assert client.post(path, json={"by": "ana", "api_key": "x"}).status_code == 422
    assert client.post(path, json={"by": ""}).status_code == 422
    assert client.post(path, json={"by": "x" * 201}).status_code == 422
    assert client.post(path, json={"comment": "x" * 2001}).status_code == 422
    assert client.post("/api/v1/alerts/" + "f" * 65 + "/ack").status_code == 422
    assert get(client, "/api/v1/alerts")["firing"][0]["acknowledged_by"] is None


def test_an_acknowledgement_neither_ends_an_incident_nor_marks_a_chart(
    ack_site: tuple[httpx.Client, dict[str, Any]], tmp_path: Path
) -> None:
    client, facts = ack_site
    incident, now = facts["incident"], time.time()
    state = AlertStateStore(state_paths(tmp_path / "r.db")[0])
    notice = Notification(
        status=AlertState.ACKNOWLEDGED, severity=incident.severity,
        rule=incident.lead_rule or incident.rule, target=incident.target,
        provider=incident.provider, summary=incident.summary, value=incident.value,
        threshold=incident.threshold, starts_at=datetime.fromtimestamp(incident.fired_at, UTC),
        ends_at=None, fingerprint=incident.fingerprint, acknowledged_by="ana",
    )  # fmt: skip
    state.add_event(notice, now - 60)  # as the leader records the acknowledged notice
    kinds = [e["kind"] for e in get(client, "/api/v1/events", target=ANTHROPIC)["events"]]
    assert kinds == ["alert_firing"]
    ongoing = [
        i for i in get(client, "/api/v1/statuspage")["incidents"] if i["target"] == ANTHROPIC
    ]
    assert [i["end"] for i in ongoing] == [None]
    resolved = dataclasses.replace(
        notice, status=AlertState.RESOLVED, ends_at=datetime.fromtimestamp(now - 30, UTC)
    )
    state.add_event(resolved, now - 30)
    state.close()
    ended = [i for i in get(client, "/api/v1/statuspage")["incidents"] if i["target"] == ANTHROPIC]
    assert [i["end"] for i in ended] == [pytest.approx(now - 30)]
    history = get(client, "/api/v1/alerts", target=ANTHROPIC)["history"]
    assert [h["status"] for h in history] == ["resolved", "acknowledged", "firing"]


def test_costs_per_day_target_provider_and_model(client: httpx.Client) -> None:
    costs = get(client, "/api/v1/costs", days=7)
    rows = [r for r in costs["days"] if r["target"] == OPENAI]
    assert sum(r["requests"] for r in rows) == 60
    assert sum(r["tokens"] for r in rows) == 60 * 30
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(0.06)
    assert costs["totals"]["by_provider"]["openai"] == pytest.approx(0.06)
    assert costs["totals"]["by_model"]["gpt-4o-mini"] == pytest.approx(0.06)
    trend = [t for t in costs["tokens_per_request"] if t["target"] == OPENAI]
    assert all(t["value"] == pytest.approx(30.0) for t in trend)


def test_public_status_and_status_page(client: httpx.Client, site: Any) -> None:
    status = get(client, "/api/v1/status")
    assert {t["name"]: t["status"] for t in status["targets"]} == {
        OPENAI: "up",
        ANTHROPIC: "down",
        GROQ: "unknown",
    }
    page = get(client, "/api/v1/statuspage")
    assert page["overall"] == "down"
    rows = {t["name"]: t for t in page["targets"]}
    assert all(len(t["days"]) == 90 for t in page["targets"])
    assert rows[GROQ]["uptime_90d"] is None
    checked = sum(d["checks"] for d in rows[ANTHROPIC]["days"])
    assert checked == 20 and rows[ANTHROPIC]["uptime_90d"] == pytest.approx(0.75)
    assert rows[OPENAI]["uptime_90d"] == 1.0
    today = rows[ANTHROPIC]["days"][-1]
    if today["checks"]:  # the seeded hour may straddle midnight UTC
        assert [i["rule"] for i in today["incidents"]] == ["consecutive_unavailable"]
    incidents = page["incidents"]
    assert {(i["target"], i["end"] is None) for i in incidents} == {
        (ANTHROPIC, True),
        (OPENAI, False),
    }
    # Public: no error messages, thresholds or config, only what users felt.
    assert "consecutive unavailable checks" not in str(page)
    # (529 as a status, not inside a timestamp: the seeded times vary with the clock)
    assert "interval" not in str(page) and not re.search(r"(?<![\d.])529(?![\d.])", str(page))


def test_badges_are_svg_with_the_status(client: httpx.Client) -> None:
    badge = client.get(f"/badge/{ANTHROPIC}.svg")
    assert badge.status_code == 200
    assert badge.headers["content-type"].startswith("image/svg+xml")
    assert ">down</text>" in badge.text and ANTHROPIC in badge.text
    assert ">unknown</text>" in client.get("/badge/nope.svg").text
    labelled = client.get(f"/badge/{OPENAI}.svg", params={"label": "<chat>"})
    assert "&lt;chat&gt;" in labelled.text and ">up</text>" in labelled.text


def test_metrics_exposition(client: httpx.Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "llmpulse_target_status{" in response.text
    assert SECRET not in response.text


def test_openapi_describes_every_endpoint(client: httpx.Client) -> None:
    doc = get(client, "/openapi.json")
    paths = set(doc["paths"])
    for path in (
        "/api/v1/targets",
        "/api/v1/overview",
        "/api/v1/targets/{name}",
        "/api/v1/results",
        "/api/v1/breakdown",
        "/api/v1/aggregates",
        "/api/v1/series",
        "/api/v1/context_utilization",
        "/api/v1/events",
        "/api/v1/alerts",
        "/api/v1/alerts/{fingerprint}",
        "/api/v1/alerts/{fingerprint}/ack",
        "/api/v1/integrations/pagerduty",
        "/api/v1/silences",
        "/api/v1/silences/{silence_id}",
        "/api/v1/costs",
        "/api/v1/status",
        "/api/v1/statuspage",
        "/badge/{name}.svg",
        "/healthz",
    ):
        assert path in paths, path
    assert get(client, "/healthz") == {"ok": True}


def test_pages_and_assets_are_served_locally(client: httpx.Client) -> None:
    for path in ("/", "/alerts", "/cost", "/slos", "/status", f"/targets/{OPENAI}"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "https://" not in page.text  # no CDN
        assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


# --- credentials --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("guarded") / "r.db"
    seed(db, time.time())
    config = make_config(
        {"token": "${WEB_TOKEN}", "username": "sre", "password": "${WEB_PASSWORD}"},
        {"WEB_TOKEN": "t0ken-for-tests", "WEB_PASSWORD": "pa55word"},
    )
    with ServedWeb(config, db) as web:
        yield web.url


def test_token_or_basic_auth_guard_the_dashboard(guarded: str) -> None:
    with httpx.Client(base_url=guarded, timeout=10) as anonymous:
        denied = anonymous.get("/api/v1/overview")
        assert denied.status_code == 401
        assert "Bearer" in denied.headers["www-authenticate"]
        assert "Basic" in denied.headers["www-authenticate"]
        assert anonymous.get("/metrics").status_code == 401
        assert anonymous.get("/openapi.json").status_code == 401
        assert anonymous.post("/api/v1/alerts/0123456789abcdef/ack").status_code == 401
        page = anonymous.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        # The public status page never needs credentials.
        for path in ("/status", "/api/v1/status", "/api/v1/statuspage", f"/badge/{GROQ}.svg",
                     "/healthz", "/static/vendor/uplot/uPlot.min.css"):  # fmt: skip
            assert anonymous.get(path).status_code == 200, path
        wrong = anonymous.get("/api/v1/overview", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    bearer = {"Authorization": "Bearer t0ken-for-tests"}
    assert httpx.get(f"{guarded}/api/v1/overview", headers=bearer).status_code == 200
    basic = "Basic " + base64.b64encode(b"sre:pa55word").decode()
    assert httpx.get(f"{guarded}/metrics", headers={"Authorization": basic}).status_code == 200
    bad = "Basic " + base64.b64encode(b"sre:wrong").decode()
    assert httpx.get(f"{guarded}/metrics", headers={"Authorization": bad}).status_code == 401


def test_login_trades_the_token_for_a_session_cookie(guarded: str) -> None:
    # The sign-in in detail (sessions, sign-out, limits) is in test_web_auth.py.
    with httpx.Client(base_url=guarded, timeout=10, follow_redirects=True) as browser:
        assert browser.get("/login").status_code == 200
        assert browser.post("/login", data={"token": "wrong"}).status_code == 401
        signed_in = browser.post("/login", data={"token": "t0ken-for-tests"})
        assert signed_in.status_code == 200 and signed_in.url.path == "/"
        cookie = browser.cookies.get("llmpulse_session")
        assert cookie and "t0ken" not in cookie
        assert browser.get("/api/v1/overview").status_code == 200


def test_status_only_app_serves_nothing_private(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    seed(db, time.time())
    with ServedWeb(make_config(), db, status_only=True) as web:
        assert httpx.get(f"{web.url}/").status_code == 200
        assert httpx.get(f"{web.url}/api/v1/statuspage").status_code == 200
        for path in ("/api/v1/overview", "/api/v1/results", "/metrics", "/alerts"):
            assert httpx.get(f"{web.url}{path}").status_code == 404, path


def test_listening_off_loopback_requires_credentials() -> None:
    targets = [{"provider": "ollama", "model": "m"}]
    with pytest.raises(ConfigError, match=r"web.listen: 0.0.0.0:8080 is not a loopback"):
        parse_config({"targets": targets, "web": {"listen": "0.0.0.0:8080"}}, env={})
    opted_out = parse_config(
        {"targets": targets, "web": {"listen": "0.0.0.0:8080", "auth": False}}, env={}
    )
    assert opted_out.web.requires_auth is False
    with pytest.raises(ConfigError, match=r"web.token: environment variable T is not set"):
        parse_config({"targets": targets, "web": {"token": "${T}"}}, env={})
    with pytest.raises(ConfigError, match=r"web.token: must reference an environment variable"):
        parse_config({"targets": targets, "web": {"token": "plain"}}, env={})
    with pytest.raises(ConfigError, match=r"web.listen: expected HOST:PORT"):
        parse_config({"targets": targets, "web": {"listen": "8080"}}, env={})


def test_status_listen_adds_a_public_status_only_listener(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    seed(db, time.time())
    config = make_config({"status_listen": "127.0.0.1:0"})
    with ServedWeb(config, db) as web:
        dashboard, status = web.server.urls
        assert status.endswith("/status")
        public = status.removesuffix("status")
        assert httpx.get(f"{public}api/v1/statuspage").status_code == 200
        assert httpx.get(f"{public}api/v1/overview").status_code == 404
        assert httpx.get(f"{dashboard}api/v1/overview").status_code == 200


def _owned(results_by_owner: dict[str, float], owner: dict[str, Any], key: str) -> None:
    names = owner["tags"] if key == "tags" else [owner[key]]
    for name in names or [None]:
        results_by_owner[name] = results_by_owner.get(name, 0.0) + TRAFFIC_COST


def test_costs_by_owner_keep_probes_and_traffic_apart(client: httpx.Client) -> None:
    # Anthropic's traffic: 10 requests, owners in turn, the first five costing TRAFFIC_COST.
    owners = [TRAFFIC_OWNERS[i % len(TRAFFIC_OWNERS)] for i in range(10, 20)]
    for by, field in (("key", "key_name"), ("team", "team"), ("user", "user"), ("tag", "tags")):
        want: dict[str | None, float] = {}
        for owner in owners[:5]:
            _owned(want, owner, field)
        body = get(client, "/api/v1/costs", by=by, source="traffic")
        assert body["by"] == by and body["source"] == "traffic" and body["exact"] is True
        got = {r["name"]: r["cost_usd"] for r in body["rows"]}
        assert {k: v for k, v in got.items() if v} == pytest.approx(want), by
        assert {r["source"] for r in body["rows"]} == {"traffic"}
        assert sum(r["requests"] for r in body["rows"]) >= 10
        # Totals count each request once, whatever its tags.
        (total,) = body["totals"]
        assert total["requests"] == 10 and total["cost_usd"] == pytest.approx(5 * TRAFFIC_COST)
    # Probes name no key: one row of their own, apart from traffic.
    body = get(client, "/api/v1/costs", by="key")
    probes = [r for r in body["rows"] if r["source"] == "probe"]
    assert [(r["name"], r["requests"]) for r in probes] == [(None, 60 + 10)]
    assert probes[0]["cost_usd"] == pytest.approx(0.06)
    assert {t["source"] for t in body["totals"]} == {"probe", "traffic"}
    costs = [r["cost_usd"] for r in body["rows"]]
    assert costs == sorted(costs, reverse=True)
    # Default range: from midnight UTC 30 days back, to now.
    start, end = _ts(body["from"]), _ts(body["to"])
    assert start % 86400 == 0 and 30 * 86400 <= end - start < 31 * 86400
    by_model = get(client, "/api/v1/costs", by="model", source="probe")["rows"]
    assert {r["name"]: r["requests"] for r in by_model} == {"gpt-4o-mini": 60, "claude-haiku": 10}
    days = get(client, "/api/v1/costs", by="day")["rows"]
    assert sum(r["cost_usd"] for r in days) == pytest.approx(0.06 + 5 * TRAFFIC_COST)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["name"]) for r in days)


def test_costs_range_limit_and_bad_parameters(client: httpx.Client, site: Any) -> None:
    now = site[1]["now"]
    old = datetime.fromtimestamp(now - 2 * 86400, UTC).replace(tzinfo=None).isoformat()
    body = get(client, "/api/v1/costs", by="user", source="traffic", limit=1, to=old)
    assert body["rows"] == [] and body["totals"] == []  # nothing before then
    body = get(client, "/api/v1/costs", by="user", source="traffic", limit=1)
    assert len(body["rows"]) == 1 and body["truncated"] == 2  # of bob, carol and alice
    # Bob and Carol paid for two requests each; Bob made more: the largest spender.
    assert body["rows"][0]["name"] == "bob" and body["rows"][0]["requests"] == 4
    window = {"from": datetime.fromtimestamp(now - 1200, UTC).isoformat(), "to": "2099-01-01"}
    assert client.get("/api/v1/costs", params={"by": "key", **window}).status_code == 400
    for params, name in (
        ({"by": "colour"}, "by"),
        ({"by": "key", "source": "gateway"}, "source"),
        ({"by": "key", "from": "yesterday"}, "from"),
        ({"by": "key", "limit": 0}, "limit"),
    ):
        response = client.get("/api/v1/costs", params=params)
        assert response.status_code == 422 and name in str(response.json()["detail"]), params
    backwards = client.get(
        "/api/v1/costs", params={"by": "key", "from": "2026-02-01", "to": "2026-01-01"}
    )
    assert backwards.status_code == 400 and "from" in backwards.json()["detail"]
    long = client.get(
        "/api/v1/costs", params={"by": "key", "from": "2024-01-01T00:00:00Z", "to": "2026-01-01"}
    )
    assert long.status_code == 400 and "400 days" in long.json()["detail"]


def test_metrics_spend_by_key_and_team_match_the_cost_report(client: httpx.Client) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = client.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    midnight = datetime.fromtimestamp(time.time() // 86400 * 86400, UTC).isoformat()
    for by in ("key", "team"):
        report = get(client, "/api/v1/costs", by=by, **{"from": midnight})
        want = {(r["name"] or "", r["source"]): r["cost_usd"] for r in report["rows"]}
        got = {
            (s.labels[f"llmpulse_{by}"], s.labels["source"]): s.value
            for s in samples
            if s.name == f"llmpulse_{by}_spend_usd_total"
        }
        assert got == pytest.approx(want) and want, by
    # Users and tags are left to the API: their label sets are unbounded.
    assert "alice" not in text and "feature=search" not in text


def test_cost_totals_by_tag_cover_the_range_its_rows_do(tmp_path: Path) -> None:
    """A tag report whose edge day is pruned reads the day whole; its totals must cover that
    same range, not the range asked for."""
    day = 86400.0
    t0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()

    def spent(ts: float, usd: float) -> CheckResult:
        return CheckResult(
            target="m/openai/m", provider="openai", model="m", check=CheckKind.INFERENCE,
            timestamp=datetime.fromtimestamp(ts, UTC), ok=True, usage=Usage(1, 1),
            cost_usd=usd, source=Source.TRAFFIC, key_name="k", tags=["feature=a"],
        )  # fmt: skip

    config = parse_config(
        {"targets": [{"provider": "openai", "model": "m"}]}, env={"OPENAI_API_KEY": "sk-x"}
    )
    view = View.open(config, tmp_path / "r.db")
    try:
        view.store.write_results([spent(t0 + 2 * 3600, 1.0), spent(t0 + 20 * 3600, 2.0)])
        view.store.prune(t0 + 10 * day)  # the first day's raw results are gone
        report = view.cost_report("tag", t0 + 12 * 3600, t0 + 5 * day, "traffic", 10)
    finally:
        view.close()
    assert report.from_.timestamp() == t0 and not report.exact  # the day read whole
    assert [(r.name, r.cost_usd) for r in report.rows] == [("feature=a", 3.0)]
    (total,) = report.totals
    assert (total.cost_usd, total.requests) == (3.0, 2)


# --- Custom probes: each its own check, and the correctness rate beside availability ----------


def test_custom_probes_show_as_their_own_checks_with_the_correct_rate(tmp_path: Path) -> None:
    """A custom probe's wrong answers (``assertion``) lower the target's and the probe's
    correct_rate and nothing else; the probe is a check of its own in every listing, and its
    latest wrong answer comes with the answer's excerpt, redacted."""
    now = time.time()
    config = seed_probes(tmp_path / "r.db", now)
    with ServedWeb(config, tmp_path / "r.db") as web, httpx.Client(base_url=web.url) as client:
        targets = {t["name"]: t for t in get(client, "/api/v1/targets")}
        assert targets[OPENAI]["checks"] == ["models", "inference", "stream", "capital"]

        detail = get(client, f"/api/v1/targets/{OPENAI}")
        card = detail["card"]
        assert card["correct_rate"] == pytest.approx(7 / 9)  # 4 stream + 3 capital ok of 9
        assert card["availability"] == 1.0 and card["error_rate"] == 0.0
        assert card["status"] == "up"  # its latest check answered right
        assert detail["windows"]["1h"]["correct_rate"] == pytest.approx(7 / 9)
        checks = {c["name"]: c for c in detail["checks"]}
        assert list(checks) == ["models", "inference", "stream", "capital"]
        assert {n: (c["kind"], c["custom"]) for n, c in checks.items()} == {
            "models": ("models", False), "inference": ("inference", False),
            "stream": ("stream", False), "capital": ("inference", True),
        }  # fmt: skip
        mine = checks["capital"]
        assert (mine["count"], mine["window"]) == (5, "24h")
        assert mine["correct_rate"] == pytest.approx(3 / 5)
        assert mine["availability"] == 1.0 and mine["error_rate"] == 0.0
        assert mine["last_ok"] is True and mine["last_error"] is None
        wrong = mine["last_wrong_answer"]
        assert wrong["ts"] == pytest.approx(now - 290 + 3 * 60)
        assert wrong["message"] == "answer does not contain 'Paris'"
        assert wrong["answer_excerpt"].startswith("<img src=x onerror=alert(1)> Lyon (")
        assert "[redacted]" in wrong["answer_excerpt"]
        assert checks["stream"]["correct_rate"] == 1.0
        assert checks["stream"]["last_wrong_answer"] is None
        assert checks["models"]["count"] == 0 and checks["models"]["correct_rate"] is None

        results = get(client, "/api/v1/results", target=OPENAI, check="capital")["results"]
        assert len(results) == 5 and {(r["check"], r["kind"]) for r in results} == {
            ("capital", "inference")
        }
        assert results[1]["error_class"] == "assertion"
        assert "[redacted]" in results[1]["answer_excerpt"]
        kinds = {r["check"]: r["kind"] for r in get(client, "/api/v1/results")["results"]}
        assert kinds == {"capital": "inference", "stream": "stream"}

        groups = get(client, "/api/v1/aggregates", by="target", check="capital")["groups"]
        assert groups[OPENAI]["correct_rate"] == pytest.approx(3 / 5)
        assert groups[OPENAI]["errors"] == {"assertion": 2}
        by_provider = get(client, "/api/v1/aggregates", by="provider")["groups"]
        assert by_provider["openai"]["correct_rate"] == pytest.approx(7 / 9)
        series = get(client, "/api/v1/series", target=OPENAI, range="1h", check="capital")
        assert [v for v in series["correct_rate"] if v is not None] == [1, 1, 0, 0, 1]
        assert series["errors"]["assertion"][-10:].count(1) == 2

        # The newest result answered wrong: degraded (it answers), never down.
        with SQLiteStore(tmp_path / "r.db") as store:
            (wrong_before,) = store.latest_results(
                limit=1, where=ResultFilter(check="capital", error_class="assertion")
            )
            store.write_results([dataclasses.replace(wrong_before, timestamp=datetime.now(UTC))])
        card = get(client, f"/api/v1/targets/{OPENAI}")["card"]
        assert card["status"] == "degraded"
        assert card["status_reason"] == "wrong answer (capital): answer does not contain 'Paris'"
        assert card["last_error"]["class"] == "assertion"


def test_status_pages_confirmations_are_listed_per_provider_with_a_page(
    client: httpx.Client,
) -> None:
    summary = get(client, "/api/v1/status")
    confirmations = {c["provider"]: c for c in summary["confirmations"]}
    assert confirmations == {  # groq has no status page here
        "openai": {
            "provider": "openai", "incidents": 0, "confirmed": 0, "pending": 0,
            "median_lag_s": None, "missed": [],
            "sentence": "No incident of ours to compare with OpenAI's page in the last 30 days",
        },
        "anthropic": {  # its outage is still firing, and no page of Anthropic's was stored
            "provider": "anthropic", "incidents": 0, "confirmed": 0, "pending": 1,
            "median_lag_s": None, "missed": [],
            "sentence": "Anthropic's page has not posted our ongoing incident yet",
        },
    }  # fmt: skip
    providers = {p["provider"]: p for p in get(client, "/api/v1/overview")["providers"]}
    assert providers["openai"]["confirmation"] == confirmations["openai"]
    assert providers["groq"]["confirmation"] is None
    assert get(client, "/api/v1/statuspage")["confirmations"] == summary["confirmations"]


def test_a_target_is_stale_only_after_its_most_frequent_check_was_due_three_times(
    tmp_path: Path,
) -> None:
    # "probed": only a custom probe, every 5 min (the target's own 30 s runs nothing);
    # "paid": inference every 30 s, stretched to hourly by the probe budget of the daemon.
    raw = [
        {"name": n, "provider": "openai", "model": "m", "base_url": "http://127.0.0.1:1/v1", "api_key": "${K}",
         "interval": "30s", **extra}
        for n, extra in (
            ("probed", {"checks": [], "probes": [{"name": "city", "kind": "inference",
                                                  "interval": "5m"}]}),
            ("paid", {"checks": ["inference"]}),
        )
    ]  # fmt: skip
    config = parse_config({"targets": raw}, env={"K": "k"})
    now = time.time()
    with SQLiteStore(tmp_path / "r.db") as store:
        store.write_results([
            CheckResult(target=n, provider="openai", model="m", check=c, kind=CheckKind.INFERENCE,
                        ok=True, timestamp=datetime.fromtimestamp(now - 600, UTC))
            for n, c in (("probed", "city"), ("paid", "inference"))
        ])  # fmt: skip

    def stretched(target: Any, check: Any) -> float:
        return 3600.0 if target.name == "paid" else configured_interval(target, check)

    alone = View.open(config, tmp_path / "r.db")
    served = View.open(config, tmp_path / "r.db", check_interval=stretched)
    try:
        assert alone.statuses(now)["probed"].status == "up"  # 10 min < 3 × 5 min
        assert alone.statuses(now)["paid"].status == "unknown"  # 10 min > 3 × 30 s
        assert served.statuses(now)["paid"].status == "up"  # 10 min < 3 × 1 h
    finally:
        alone.close()
        served.close()
