"""The dashboard in a real headless Chromium, against a running ``llmpulse demo``.

Every page is loaded while the demo's scripted incidents play; the DOM is compared with the
API response the page itself received (the pages poll, so comparing with a second request of
our own would race). No page may log an error or a warning, and every page leaves a full-page
screenshot under ``test-artifacts/screenshots/`` (``$LLMPULSE_ARTIFACTS/screenshots/`` when
set) for a human to look at.

The browser is Debian's Chromium (``./dev test`` installs it); Playwright never downloads one.
Without it the module is skipped, except on CI where that is a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from llmpulse.alerts.state import AlertStateStore, state_paths
from webserve import ANTHROPIC, OPENAI, ServedWeb, make_config, seed, seed_probes

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("LLMPULSE_ARTIFACTS") or REPO / "test-artifacts") / "screenshots"
SPEED = 10
TIMEOUT_MS = 20_000  # per wait: generous for a loaded 2-core machine, still bounded
CHARTS = ("ttft", "latency", "tps", "errors", "ratelimit", "tokens", "cost")
# The series columns each target chart draws (errors: a share of `count`, 0 where checks ran).
CHART_COLUMNS = {
    "ttft": ("ttft_p50", "ttft_p95", "ttft_p99"),
    "latency": ("latency_p50", "latency_p95", "latency_p99"),
    "tps": ("tps_p50",),
    "errors": ("count",),
    "ratelimit": ("ratelimit_utilization",),
    "tokens": ("tokens_per_request",),
    "cost": ("cost",),
}
STEP_S = {"1h": 60, "24h": 900, "7d": 3600, "30d": 21600}


# ---- the demo and the browser --------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium package (./dev test does)"
        if "CI" in os.environ:
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def demo(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running demo with at least one target's alert in its history; yields the base URL."""
    tmp = tmp_path_factory.mktemp("browser-demo")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    args = ["--speed", str(SPEED), "--listen", "127.0.0.1:0", "--db", str(tmp / "demo.db")]
    with (tmp / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=err,  # a file: an undrained pipe could block the demo
            text=True,
            env=env,
        )
    printed: list[str] = []
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # keeps draining stdout for the whole module
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()

    def why() -> str:
        while not lines.empty():
            printed.append(lines.get_nowait())
        return "\n".join(printed) + "\n" + (tmp / "stderr.txt").read_text()

    try:
        deadline = time.monotonic() + 60
        base = None
        while base is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            printed.append(line)
            m = re.match(r"\s+dashboard\s+(http://\S+?)/?$", line)
            if m:
                base = m.group(1)
        assert base, f"the demo printed no dashboard URL:\n{why()}"
        # Until a target has paged (provider-level alerts, e.g. official_status, name a
        # provider): the target page's markers need one.
        paged: list[Any] = []
        while not paged and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                if _get_json(f"{base}/healthz") == {"ok": True}:
                    names = {t["name"] for t in _get_json(f"{base}/api/v1/targets")}
                    history = _get_json(f"{base}/api/v1/alerts")["history"]
                    paged = [e for e in history if e["target"] in names]
            if not paged:
                time.sleep(0.25)
        assert paged, f"no target's alert fired within 60 s:\n{why()}"
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    """A page with everything it logged, requested and received."""

    page: Page
    base: str
    problems: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    responses: list[Response] = field(default_factory=list)
    shot: bool = False

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path, wait_until="load")

    def api_responses(self, path: str) -> list[Response]:
        return [r for r in self.responses if urlsplit(r.url).path == path and r.ok]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        self.shot = True

    def assert_console_clean(self) -> None:
        assert self.problems == [], "the page logged:\n" + "\n".join(self.problems)


@pytest.fixture
def tab(browser: Browser, demo: str, request: pytest.FixtureRequest) -> Iterator[Tab]:
    with _open_tab(browser, demo, request) as t:
        yield t


@pytest.fixture(scope="module")
def seeded(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API tests' seeded dashboard (two probe regions, gateway traffic: what the demo's
    single region and probes-only checks cannot show); yields the base URL."""
    db = tmp_path_factory.mktemp("browser-seeded") / "r.db"
    seed(db, time.time())
    with ServedWeb(make_config(), db) as web:
        yield web.url


@pytest.fixture
def seeded_tab(browser: Browser, seeded: str, request: pytest.FixtureRequest) -> Iterator[Tab]:
    with _open_tab(browser, seeded, request) as t:
        yield t


@contextlib.contextmanager
def _open_tab(browser: Browser, base: str, request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    t = Tab(page, base)

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            t.problems.append(f"console.{msg.type}: {msg.text} ({msg.location.get('url')})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: t.problems.append(f"pageerror: {exc}"))
    # Playwright tags its handlers with an attribute: builtins such as list.append cannot be.
    page.on("request", lambda r: t.requests.append(r))
    page.on("response", lambda r: t.responses.append(r))
    try:
        yield t
        t.assert_console_clean()  # also for whatever the page logged after the test's own check
    finally:
        if not t.shot:  # a failed test still leaves a picture of what it saw
            with contextlib.suppress(Exception):
                t.screenshot(f"failed-{request.node.name}")
        context.close()


def _expect_api(page: Page, path: str, **query: str) -> Any:
    """page.expect_response for GET `path` whose query contains `query`."""

    def match(r: Response) -> bool:
        u = urlsplit(r.url)
        if u.path != path or r.request.method != "GET":
            return False
        return all(f"{k}={quote(v, safe='')}" in u.query.split("&") for k, v in query.items())

    return page.expect_response(match, timeout=TIMEOUT_MS)


def _num(raw: str | None) -> float | None:
    """A data-value attribute as a number ("" is the API's null)."""
    assert raw is not None, "missing data-value"
    return None if raw == "" else float(raw)


def _same(raw: str | None, value: float | None) -> bool:
    # Both sides print the shortest round-trip repr of the same double: compare exactly.
    return _num(raw) == (None if value is None else float(value))


def _first_match(
    snapshot: Any, responses: list[Response], check: Callable[[Any, Any], None]
) -> Any:
    """The response the DOM shows: pages poll, so the snapshot may be of any of them."""
    assert responses, "the page fetched nothing"
    errors = []
    for r in reversed(responses):
        data = r.json()
        try:
            check(snapshot, data)
            return data
        except AssertionError as exc:
            errors.append(str(exc))
    raise AssertionError(f"the DOM matches none of the {len(responses)} responses: {errors[0]}")


# ---- overview --------------------------------------------------------------------------------

OVERVIEW_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  const val = (root, id) => q(root, id).getAttribute("data-value");
  return {
    generated: val(document, "updated-ago"),
    updatedText: q(document, "updated-ago").textContent,
    connection: q(document, "connection").dataset.state,
    lostHidden: q(document, "connection-lost").hidden,
    overall: q(document, "overall-status").dataset.status,
    overallBadge: q(document, "overall-badge").dataset.status,
    firingCount: val(document, "firing-count"),
    firing: all(document, "firing-alert").map((a) => a.dataset.fingerprint),
    firingEmptyHidden: q(document, "firing-empty").hidden,
    providers: all(document, "provider-status").map((p) => [p.dataset.provider, p.dataset.status]),
    confirmations: all(document, "provider-confirmation").map((c) => c.textContent),
    pageError: q(document, "page-error") ? !q(document, "page-error").hidden : false,
    cards: all(document, "card").map((c) => ({
      target: c.dataset.target,
      status: c.dataset.status,
      badge: q(c, "card-status").dataset.status,
      href: c.getAttribute("href"),
      provider: q(c, "card-provider").textContent,
      model: q(c, "card-model").textContent,
      retires: q(c, "card-retires").dataset.value,
      retiresHidden: q(c, "card-retires").parentElement.hidden,
      ttft_p50_ms: val(c, "card-ttft-p50"),
      ttft_p95_ms: val(c, "card-ttft-p95"),
      tps_p50: val(c, "card-tps"),
      error_rate: val(c, "card-error-rate"),
      availability: val(c, "card-availability"),
      cost_today_usd: val(c, "card-cost-today"),
      ratelimit_utilization: val(c, "card-ratelimit"),
      checks_1h: val(c, "card-checks"),
      alerts: all(c, "card-alert").map((a) => a.dataset.fingerprint),
      ttftText: q(c, "card-ttft-p50").textContent,
    })),
  };
}"""

CARD_FIGURES = (
    "ttft_p50_ms",
    "ttft_p95_ms",
    "tps_p50",
    "error_rate",
    "availability",
    "cost_today_usd",
    "ratelimit_utilization",
    "checks_1h",
)


def _check_overview(dom: Any, data: Any) -> None:
    assert _same(dom["generated"], data["generated_at"]), "another poll"
    assert dom["overall"] == dom["overallBadge"] == data["overall"]
    assert dom["firing"] == [a["fingerprint"] for a in data["firing"]]
    assert _same(dom["firingCount"], len(data["firing"]))
    assert dom["firingEmptyHidden"] == bool(data["firing"])
    assert dom["providers"] == [[p["provider"], p["status"]] for p in data["providers"]]
    assert dom["confirmations"] == [
        f"{p['confirmation']['sentence']}." for p in data["providers"] if p["confirmation"]
    ]
    assert [c["target"] for c in dom["cards"]] == [c["name"] for c in data["cards"]]
    for card, c in zip(dom["cards"], data["cards"], strict=True):
        name = c["name"]
        assert card["status"] == card["badge"] == c["status"], name
        assert card["href"] == "/targets/" + quote(name, safe=""), name
        assert (card["provider"], card["model"]) == (c["provider"], c["model"]), name
        assert (card["retires"], card["retiresHidden"]) == (c["retires"] or "", not c["retires"])
        for key in CARD_FIGURES:
            assert _same(card[key], c[key]), (name, key, card[key], c[key])
        assert card["alerts"] == [a["fingerprint"] for a in c["alerts"]], name
        # the formatted text is there too, not just the attribute
        assert card["ttftText"] not in ("", "—") or c["ttft_p50_ms"] is None, name


def test_overview_cards_match_the_api_and_update_live(tab: Tab) -> None:
    page = tab.page
    with _expect_api(page, "/api/v1/overview") as first:
        tab.goto("/")
    data = first.value.json()
    assert len(data["cards"]) == 6  # the demo's six simulated models
    page.locator('[data-testid="connection"][data-state="ok"]').wait_for()
    dom = page.evaluate(OVERVIEW_SNAPSHOT)
    _first_match(dom, tab.api_responses("/api/v1/overview"), _check_overview)
    assert not dom["pageError"]

    # One live refresh (every 5 s): the page shows the new response, connection still ok.
    shown = dom["generated"]
    with _expect_api(page, "/api/v1/overview") as again:
        pass
    fresh = again.value.json()
    assert fresh["generated_at"] > float(shown)
    page.wait_for_function(
        "(g) => Number(document.querySelector('[data-testid=updated-ago]').dataset.value) >= g",
        arg=fresh["generated_at"],
    )
    dom = page.evaluate(OVERVIEW_SNAPSHOT)
    _first_match(dom, tab.api_responses("/api/v1/overview"), _check_overview)
    assert dom["connection"] == "ok" and dom["lostHidden"]
    assert re.fullmatch(r"updated \d+ s ago", dom["updatedText"]), dom["updatedText"]
    tab.screenshot("overview")
    tab.assert_console_clean()


# ---- target ----------------------------------------------------------------------------------

TARGET_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  const charts = {};
  for (const name of %s) {
    const c = q(document, `chart-${name}`);
    const canvas = c.querySelector("canvas");
    charts[name] = {
      points: c.dataset.points,
      empty: c.dataset.empty,
      canvas: canvas ? [canvas.width, canvas.height] : null,
      markers: all(c, "chart-marker").map((m) => ({kind: m.dataset.kind, count: Number(m.dataset.count)})),
    };
  }
  return {
    name: q(document, "target-name").textContent,
    status: q(document, "target-status").dataset.status,
    pressed: all(document, "range").flatMap((r) => [...r.querySelectorAll("[data-range]")])
      .filter((b) => b.getAttribute("aria-pressed") === "true").map((b) => b.dataset.range),
    count: q(document, "window-stats").querySelector('[data-field="count"] .v').dataset.value,
    charts,
    results: all(document, "result-row").map((r) => ({
      ok: r.dataset.ok,
      timestamp: r.querySelector('[data-field="timestamp"]').dataset.value,
      ttft_ms: r.querySelector('[data-field="ttft_ms"]').dataset.value,
      source: r.querySelector('[data-field="source"]').dataset.value,
      region: r.querySelector('[data-field="region"]').dataset.value,
      agent: r.querySelector('[data-field="agent"]').dataset.value,
    })),
    resultsEmptyHidden: q(document, "results-empty").hidden,
  };
}""" % json.dumps(CHARTS)  # noqa: UP031 (the JS braces would need escaping in an f-string)


def _load_target(tab: Tab, action: Callable[[], None], range_: str) -> dict[str, Any]:
    """Runs `action` and returns the four API responses the page fetched for it."""
    page = tab.page
    with (
        _expect_api(page, "/api/v1/series", range=range_) as series,
        _expect_api(page, "/api/v1/events", range=range_) as events,
        _expect_api(page, "/api/v1/results") as results,
    ):
        action()
    got = {
        "series": series.value.json(),
        "events": events.value.json()["events"],
        "results": results.value.json()["results"],
    }
    # The page renders once all four answered; wait until the charts show this series.
    page.wait_for_function(
        "(n) => document.querySelector('[data-testid=chart-cost]')?.dataset.points === String(n)",
        arg=len(got["series"]["ts"]),
    )
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=result-row]').length === n",
        arg=len(got["results"]),
    )
    return got


def _check_target(tab: Tab, name: str, range_: str, got: dict[str, Any]) -> None:
    page = tab.page
    s = got["series"]
    assert s["target"] == name and s["range"] == range_ and s["step_s"] == STEP_S[range_]
    n = len(s["ts"])
    assert n > 0
    # Markers are drawn for the events inside the x axis: the first bucket to the last's end.
    shown = [e for e in got["events"] if s["ts"][0] <= e["ts"] <= s["ts"][-1] + s["step_s"]]
    if shown:  # uPlot draws them on its next commit; a timeout falls through to the asserts
        with contextlib.suppress(PlaywrightTimeoutError):
            page.wait_for_function(
                "(names) => names.every((n) => document.querySelector("
                "`[data-testid=chart-${n}] [data-testid=chart-marker]`))",
                arg=list(CHARTS),
            )
    dom = page.evaluate(TARGET_SNAPSHOT)
    assert dom["name"] == name
    assert dom["pressed"] == [range_]
    detail = tab.api_responses("/api/v1/targets/" + quote(name, safe=""))[-1].json()
    assert dom["status"] == detail["card"]["status"]
    assert _same(dom["count"], detail["windows"][range_]["count"])
    for chart, cols in CHART_COLUMNS.items():
        c = dom["charts"][chart]
        assert c["canvas"] and c["canvas"][0] > 0 and c["canvas"][1] > 0, chart
        assert c["points"] == str(n), (chart, c["points"], n)
        empty = all(v is None for col in cols for v in s[col])
        assert c["empty"] == ("true" if empty else "false"), chart
        # every event shown, close ones sharing a marker
        assert sum(m["count"] for m in c["markers"]) == len(shown), (chart, c["markers"])
        kinds = {m["kind"] for m in c["markers"]}
        assert kinds <= {e["kind"] for e in shown}, chart
    assert dom["charts"]["ttft"]["empty"] == "false"  # checks ran: TTFT has data
    results = got["results"]
    assert 0 < len(results) <= 50
    assert dom["resultsEmptyHidden"]
    assert len(dom["results"]) == len(results)
    for row, r in zip(dom["results"], results, strict=True):
        assert row["ok"] == ("true" if r["ok"] else "false")
        assert row["timestamp"] == r["timestamp"]
        assert _same(row["ttft_ms"], r["ttft_ms"])
        assert (row["source"], row["region"], row["agent"]) == (
            r["source"], r["region"] or "", r["agent"] or ""
        )  # fmt: skip


def test_target_charts_and_results_match_the_api(tab: Tab) -> None:
    # A target that has paged, so its charts carry markers (provider-level alerts such as
    # official_status name a provider, not a target: skip those).
    names = {t["name"] for t in _get_json(f"{tab.base}/api/v1/targets")}
    history = _get_json(f"{tab.base}/api/v1/alerts")["history"]
    target = next(e["target"] for e in reversed(history) if e["target"] in names)
    page = tab.page
    path = "/targets/" + quote(target, safe="")
    got = _load_target(tab, lambda: tab.goto(path), "24h")
    assert got["events"], "the target paged, yet /events is empty"
    _check_target(tab, target, "24h", got)
    tab.screenshot("target-24h")

    # A range button puts the range in the URL and refetches.
    got = _load_target(tab, lambda: page.get_by_test_id("range-1h").click(), "1h")
    assert urlsplit(page.url).path == path and urlsplit(page.url).query == "range=1h"
    _check_target(tab, target, "1h", got)

    # Hovering a marker explains it.
    marker = page.get_by_test_id("chart-ttft").get_by_test_id("chart-marker").last
    marker.hover()
    tip = page.get_by_test_id("tooltip")
    tip.wait_for(state="visible")
    assert re.search(r"Alert (fired|resolved)|\d+ events", tip.inner_text())
    page.mouse.move(0, 0)
    tab.screenshot("target-1h")

    # Back in history: the previous range again, fetched anew.
    got = _load_target(tab, page.go_back, "24h")
    _check_target(tab, target, "24h", got)
    tab.assert_console_clean()


# ---- by region, probes vs traffic (seeded) ---------------------------------------------------

BREAKDOWN_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const table = (by) => ({
    hidden: q(document, `breakdown-${by}`).hidden,
    window: q(document, `breakdown-${by}-window`).textContent,
    rows: [...q(document, `breakdown-${by}-table`).querySelectorAll('[data-testid="breakdown-row"]')]
      .map((r) => ({
        key: r.dataset.key,
        label: r.querySelector('[data-field="key"]').textContent,
        values: Object.fromEntries(
          [...r.querySelectorAll("[data-field]")].map((c) => [c.dataset.field, c.dataset.value]),
        ),
      })),
  });
  return {region: table("region"), source: table("source")};
}"""
CONTEXT_CHARTS = """() => Object.fromEntries(["traffic", "probe"].map((source) => {
  const c = document.querySelector(`[data-testid="chart-context-${source}"]`);
  return [source, {points: c.dataset.points, empty: c.dataset.empty, canvas: !!c.querySelector("canvas")}];
}))"""
BREAKDOWN_FIGURES = (
    "count", "ok", "error_rate", "ttft_p50", "ttft_p95", "ttft_p99", "latency_p50",
    "latency_p95", "tps_p50", "context_utilization_p95", "last_ts",
)  # fmt: skip
GROUP_LABELS = {"": "no region", "probe": "probes", "traffic": "gateway traffic"}


def _load_breakdowns(tab: Tab, path: str) -> dict[str, Any]:
    """Opens the target page at `path`; the breakdowns its first load received, by `by`."""
    page = tab.page
    with (
        _expect_api(page, "/api/v1/breakdown", by="region", source="probe") as regions,
        _expect_api(page, "/api/v1/breakdown", by="source") as sources,
        _expect_api(page, "/api/v1/results") as results,
    ):
        tab.goto(path)
    got = {"region": regions.value.json(), "source": sources.value.json()}
    # The page renders once every call answered: the results table is filled last but one.
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=result-row]').length === n",
        arg=len(results.value.json()["results"]),
    )
    return got


def _check_breakdown(table: Any, data: Any) -> None:
    assert table["window"] == f"last {data['window']}"
    assert [r["key"] for r in table["rows"]] == list(data["groups"])
    for row, (key, group) in zip(table["rows"], data["groups"].items(), strict=True):
        assert row["label"] == GROUP_LABELS.get(key, key)
        for figure in BREAKDOWN_FIGURES:
            assert _same(row["values"][figure], group[figure]), (key, figure)
        assert json.loads(row["values"]["errors"]) == group["errors"], key


def test_breakdowns_by_region_and_source_match_the_api(seeded_tab: Tab) -> None:
    tab = seeded_tab
    # Anthropic: probed from two regions, then seen in gateway traffic only.
    got = _load_breakdowns(tab, "/targets/" + quote(ANTHROPIC, safe=""))
    assert list(got["region"]["groups"]) == ["eu-west", "us-east"]
    assert list(got["source"]["groups"]) == ["probe", "traffic"]
    assert got["region"]["window"] == got["source"]["window"] == "24h"  # the page's range
    dom = tab.page.evaluate(BREAKDOWN_SNAPSHOT)
    assert not dom["region"]["hidden"] and not dom["source"]["hidden"]
    _check_breakdown(dom["region"], got["region"])
    _check_breakdown(dom["source"], got["source"])
    assert dom["source"]["rows"][1]["values"]["error_rate"] == "0.5"
    # Context window use, probes and traffic apart: each chart its source's buckets.
    context = tab.api_responses("/api/v1/context_utilization")[-1].json()
    assert context["range"] == "24h"
    charts = tab.page.evaluate(CONTEXT_CHARTS)
    for source in ("traffic", "probe"):
        assert charts[source]["points"] == str(len(context["ts"])), source
        assert charts[source]["empty"] == "false" and charts[source]["canvas"], source
    tab.screenshot("target-breakdowns")

    # OpenAI: probes only, from two regions and a single agent ("no region").
    got = _load_breakdowns(tab, "/targets/" + quote(OPENAI, safe=""))
    assert list(got["region"]["groups"]) == ["", "eu-west", "us-east"]
    assert list(got["source"]["groups"]) == ["probe"]
    dom = tab.page.evaluate(BREAKDOWN_SNAPSHOT)
    assert not dom["region"]["hidden"] and dom["source"]["hidden"]
    _check_breakdown(dom["region"], got["region"])
    # Its probes know no context window: nothing to chart.
    charts = tab.page.evaluate(CONTEXT_CHARTS)
    assert charts["traffic"]["empty"] == charts["probe"]["empty"] == "true"
    tab.assert_console_clean()


CHECKS_SNAPSHOT = """() => {
  const table = document.querySelector('[data-testid="checks-table"]');
  const field = (row, name) => row.querySelector(`[data-field="${name}"]`);
  return {
    hidden: document.querySelector('[data-testid="checks"]').hidden,
    injected: document.querySelectorAll("main img").length,
    correct: document.querySelector('[data-testid="window-stats"] [data-field="correct_rate"] .v')
      .dataset.value,
    rows: [...table.querySelectorAll('[data-testid="check-row"]')].map((r) => ({
      name: r.dataset.name,
      kind: r.dataset.kind,
      custom: r.dataset.custom,
      kindText: field(r, "kind").textContent,
      correct: field(r, "correct_rate").dataset.value,
      wrong: field(r, "last_wrong_answer").dataset.value,
      excerpt: r.querySelector('[data-testid="answer-excerpt"]')?.textContent ?? null,
    })),
    checkCells: [...document.querySelectorAll('[data-testid="result-row"] [data-field="check"]')]
      .map((c) => [c.textContent, c.dataset.kind]),
  };
}"""


def test_custom_probes_are_checks_of_their_own_and_wrong_answers_show_as_text(
    browser: Browser, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = tmp_path / "r.db"
    config = seed_probes(db, time.time())
    with ServedWeb(config, db) as web, _open_tab(browser, web.url, request) as tab:
        with _expect_api(tab.page, "/api/v1/targets/" + quote(OPENAI, safe="")) as first:
            tab.goto("/targets/" + quote(OPENAI, safe=""))
        detail = first.value.json()
        tab.page.wait_for_selector('[data-testid="check-row"][data-name="capital"]')
        tab.page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=result-row]').length === 9"
        )
        dom = tab.page.evaluate(CHECKS_SNAPSHOT)
        assert not dom["hidden"]
        assert _same(dom["correct"], detail["windows"]["24h"]["correct_rate"])
        assert [(r["name"], r["kind"], r["custom"]) for r in dom["rows"]] == [
            ("models", "models", "false"), ("inference", "inference", "false"),
            ("stream", "stream", "false"), ("capital", "inference", "true"),
        ]  # fmt: skip
        capital = dom["rows"][-1]
        summary = next(c for c in detail["checks"] if c["name"] == "capital")
        assert capital["kindText"] == "inference · custom probe"
        assert _same(capital["correct"], summary["correct_rate"])
        assert _same(capital["wrong"], summary["last_wrong_answer"]["ts"])
        # The answer is shown as the text it is: its markup never becomes an element.
        assert capital["excerpt"] == summary["last_wrong_answer"]["answer_excerpt"]
        assert capital["excerpt"].startswith("<img src=x onerror=alert(1)> Lyon (")
        assert dom["injected"] == 0
        assert ["capital (inference)", "inference"] in dom["checkCells"]
        assert ["stream", "stream"] in dom["checkCells"]
        tab.screenshot("target-custom-probes")


# ---- SLOs -------------------------------------------------------------------------------------

SLO_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  const field = (row, name) => row.querySelector(`[data-field="${name}"]`).dataset.value;
  return {
    rows: all(document, "slo-row").map((r) => ({
      name: r.dataset.slo,
      sli: field(r, "sli"),
      objective: field(r, "objective"),
      budget: field(r, "budget_remaining"),
      left: field(r, "budget_remaining_events"),
    })),
    details: all(document, "slo-detail").map((d) => ({
      name: d.dataset.slo,
      points: q(d, "chart-slo-burn-down").dataset.points,
      incidents: all(q(d, "slo-incidents"), "slo-incident").map((i) => [i.dataset.target, field(i, "bad_events")]),
    })),
  };
}"""


def test_slo_page_matches_the_api(seeded_tab: Tab) -> None:
    tab, page = seeded_tab, seeded_tab.page
    with (
        _expect_api(page, "/api/v1/slos") as listed,
        _expect_api(page, "/api/v1/slos/responsiveness") as last,
    ):
        tab.goto("/slos")
    slos = listed.value.json()
    assert [s["name"] for s in slos] == ["anthropic-availability", "responsiveness"]
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=slo-detail] canvas').length === 2"
    )
    dom = page.evaluate(SLO_SNAPSHOT)
    assert [r["name"] for r in dom["rows"]] == [s["name"] for s in slos]
    for row, s in zip(dom["rows"], slos, strict=True):
        for key, name in (
            ("sli", "sli"),
            ("objective", "objective"),
            ("budget", "budget_remaining"),
            ("left", "budget_remaining_events"),
        ):
            assert _same(row[key], s[name]), (s["name"], key)  # fmt: skip
    detail = last.value.json()
    [responsive] = [d for d in dom["details"] if d["name"] == "responsiveness"]
    assert responsive["points"] == str(len(detail["burn_down"]))
    assert responsive["incidents"] == [
        [i["target"], str(i["bad_events"])] for i in detail["incidents"]
    ]
    # The Anthropic outage firing now spent the availability budget.
    [availability] = [d for d in dom["details"] if d["name"] == "anthropic-availability"]
    [(target, bad)] = availability["incidents"]
    assert target == ANTHROPIC and int(bad) > 0
    tab.screenshot("slos")
    tab.assert_console_clean()


# ---- alerts ----------------------------------------------------------------------------------

ALERTS_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  const rows = (table) => all(q(document, table), "alert-row").map((r) => [r.dataset.state, r.dataset.fingerprint]);
  return {
    connection: q(document, "connection").dataset.state,
    firing: rows("firing-table"),
    pending: rows("pending-table"),
    firingCount: q(document, "firing-count").dataset.value,
    pendingCount: q(document, "pending-count").dataset.value,
    history: all(document, "history-row").map((r) => [r.dataset.status, r.dataset.fingerprint]),
    timeline: all(document, "timeline-row").map((r) => r.dataset.fingerprint),
  };
}"""


def _check_alerts(dom: Any, data: Any) -> None:
    assert dom["firing"] == [["firing", a["fingerprint"]] for a in data["firing"]]
    assert dom["pending"] == [["pending", a["fingerprint"]] for a in data["pending"]]
    assert _same(dom["firingCount"], len(data["firing"]))
    assert _same(dom["pendingCount"], len(data["pending"]))
    history = data["history"]
    assert dom["history"] == [[e["status"], e["fingerprint"]] for e in history[:50]]
    fingerprints = {e["fingerprint"] for e in history} | {a["fingerprint"] for a in data["firing"]}
    assert sorted(dom["timeline"]) == sorted(fingerprints)


def _silence_row(page: Page, silence_id: str) -> Any:
    return page.locator(f'[data-testid="silence-row"][data-id="{silence_id}"]')


def test_alerts_match_the_api_and_a_silence_is_created_and_ended(tab: Tab) -> None:
    page = tab.page
    with _expect_api(page, "/api/v1/alerts") as first:
        tab.goto("/alerts")
    assert first.value.json()["history"], "the fixture waited for an alert"
    page.locator('[data-testid="connection"][data-state="ok"]').wait_for()
    page.get_by_test_id("history-row").first.wait_for()
    dom = page.evaluate(ALERTS_SNAPSHOT)
    _first_match(dom, tab.api_responses("/api/v1/alerts"), _check_alerts)
    assert dom["history"], "history rows"

    # Create a silence through the form.
    comment = f"browser test {uuid.uuid4().hex[:8]}"
    page.get_by_test_id("silence-target").fill("gemini/*")
    page.get_by_test_id("silence-provider").fill("gemini")
    page.get_by_test_id("silence-rule").fill("*")
    page.get_by_test_id("silence-duration").fill("30m")
    page.get_by_test_id("silence-comment").fill(comment)
    page.get_by_test_id("silence-created-by").fill("test_browser")
    with page.expect_response(
        lambda r: urlsplit(r.url).path == "/api/v1/silences" and r.request.method == "POST"
    ) as posted:
        page.get_by_test_id("silence-submit").click()
    assert posted.value.status == 201, posted.value.text()
    silence = posted.value.json()
    sid = silence["id"]
    assert [silence[k] for k in ("target", "provider", "comment")] == [
        "gemini/*",
        "gemini",
        comment,
    ]
    row = _silence_row(page, sid)
    row.wait_for()
    assert row.get_attribute("data-state") == "active"
    assert row.get_attribute("data-active") == "true"
    assert comment in row.inner_text()
    ok = page.get_by_test_id("silence-ok")
    assert ok.is_visible() and sid in ok.inner_text()
    assert page.get_by_test_id("silence-error").is_hidden()
    active = {s["id"]: s for s in _get_json(f"{tab.base}/api/v1/silences")["silences"]}
    assert active[sid]["active"] and active[sid]["comment"] == comment
    tab.screenshot("alerts")

    # End it with its button: it leaves the active list and shows as ended with "show ended".
    with page.expect_response(
        lambda r: urlsplit(r.url).path == f"/api/v1/silences/{sid}" and r.request.method == "DELETE"
    ) as deleted:
        row.get_by_test_id("silence-end").click()
    assert deleted.value.status == 200 and deleted.value.json()["active"] is False
    row.wait_for(state="detached")
    page.get_by_test_id("silence-ok").filter(has_text=f"Silence {sid} ended").wait_for()
    page.get_by_test_id("silences-show-all").check()
    ended = page.locator(f'[data-testid="silence-row"][data-id="{sid}"][data-state="ended"]')
    ended.wait_for()
    assert ended.get_attribute("data-active") == "false"
    assert ended.get_by_test_id("silence-end").count() == 0  # nothing left to end
    assert sid not in {s["id"] for s in _get_json(f"{tab.base}/api/v1/silences")["silences"]}
    every = {s["id"]: s for s in _get_json(f"{tab.base}/api/v1/silences?all=true")["silences"]}
    assert every[sid]["active"] is False
    assert every[sid]["ends_at"] <= time.time() + 1
    tab.assert_console_clean()


# ---- acknowledgements ------------------------------------------------------------------------


@pytest.fixture
def escalated(chromium: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The seeded dashboard on its own (the test acknowledges), its firing incident escalated
    to step 1 after paging two notifiers; yields the base URL and the seeded facts."""
    db = tmp_path / "r.db"
    now = time.time()
    facts = seed(db, now)
    state = AlertStateStore(state_paths(db)[0])
    incident = dataclasses.replace(
        facts["incident"], paged=["oncall", "slack"], paged_at=now - 240, escalation_step=1
    )
    state.save_records([incident], now)
    state.close()
    with ServedWeb(make_config(), db) as web:
        yield web.url, facts


def _ack_response(fingerprint: str, method: str) -> Callable[[Response], bool]:
    path = f"/api/v1/alerts/{fingerprint}/ack"
    return lambda r: urlsplit(r.url).path == path and r.request.method == method


def test_a_firing_alert_is_acknowledged_from_its_row_and_taken_back_on_the_overview(
    browser: Browser, escalated: tuple[str, dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    base, facts = escalated
    fp = facts["incident"].fingerprint
    with _open_tab(browser, base, request) as tab:
        page = tab.page
        # A notice's link lands on the alert's row, in view and marked.
        tab.goto(f"/alerts#alert-{fp}")
        row = page.locator(f"#alert-{fp}")
        row.wait_for()
        assert "is-target" in (row.get_attribute("class") or "")
        page.wait_for_function(
            "(id) => { const r = document.getElementById(id).getBoundingClientRect();"
            " return r.top >= 0 && r.bottom <= innerHeight; }",
            arg=f"alert-{fp}",
        )
        assert row.get_attribute("data-acknowledged") == "false"
        assert row.get_by_test_id("escalation").get_attribute("data-value") == "1"
        assert row.get_by_test_id("notified").get_attribute("data-value") == "oncall,slack"

        row.get_by_test_id("alert-ack").click()
        form = page.get_by_test_id("ack-form")
        form.get_by_test_id("ack-by").fill("Ana (browser)")
        form.get_by_test_id("ack-comment").fill("looking into it")
        with page.expect_response(_ack_response(fp, "POST")) as posted:
            form.get_by_test_id("ack-submit").click()
        assert posted.value.status == 200, posted.value.text()
        acked = page.locator(f'#alert-{fp}[data-acknowledged="true"]')
        acked.wait_for()
        shown = acked.get_by_test_id("acknowledged")
        assert "acknowledged by Ana (browser)" in shown.inner_text()
        assert "looking into it" in shown.inner_text()
        assert form.count() == 0
        # The API has it at once, as the page shows it.
        alert = _get_json(f"{base}/api/v1/alerts/{fp}")
        assert alert["acknowledged_by"] == "Ana (browser)"
        assert alert["acknowledged_comment"] == "looking into it"
        assert _same(shown.get_attribute("data-at"), alert["acknowledged_at"])
        assert "Acknowledged" in page.get_by_test_id("ack-msg").inner_text()
        tab.screenshot("alerts-acknowledged")

        # The overview shows it acknowledged: take it back, then acknowledge it again there
        # (the name is remembered).
        tab.goto("/")
        line = f'[data-testid="firing-alert"][data-fingerprint="{fp}"]'
        page.locator(f'{line}[data-acknowledged="true"]').wait_for()
        assert page.get_by_test_id("card-alert-acked").count() == 1
        with page.expect_response(_ack_response(fp, "DELETE")) as deleted:
            page.locator(line).get_by_test_id("alert-unack").click()
        assert deleted.value.status == 200
        page.locator(f'{line}[data-acknowledged="false"]').wait_for()
        assert _get_json(f"{base}/api/v1/alerts/{fp}")["acknowledged_by"] is None
        page.locator(line).get_by_test_id("alert-ack").click()
        assert page.locator(line).get_by_test_id("ack-by").input_value() == "Ana (browser)"
        with page.expect_response(_ack_response(fp, "POST")) as posted:
            page.locator(line).get_by_test_id("ack-submit").click()
        assert posted.value.status == 200
        page.locator(f'{line}[data-acknowledged="true"]').wait_for()
        again = _get_json(f"{base}/api/v1/alerts/{fp}")
        assert (again["acknowledged_by"], again["acknowledged_comment"]) == ("Ana (browser)", "")
        tab.screenshot("overview-acknowledged")

        # A link to an alert that fires no more says what became of it and marks its history.
        ttft = facts["ttft"].fingerprint
        tab.goto(f"/alerts#alert-{ttft}")
        notice = page.get_by_test_id("target-notice")
        notice.wait_for(state="visible")
        assert "ttft_p95_high on openai/gpt-4o-mini is resolved" in notice.inner_text()
        marked = f'[data-testid="timeline-row"][data-fingerprint="{ttft}"].is-target'
        page.locator(marked).wait_for()
        assert (
            page.locator(
                f'[data-testid="history-row"][data-fingerprint="{ttft}"].is-target'
            ).count()
            == 2
        )
        tab.assert_console_clean()


# ---- cost ------------------------------------------------------------------------------------

COST_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  return {
    traffic: q(document, "cost-traffic").dataset.value,
    probe: q(document, "cost-probe").dataset.value,
    requests: q(document, "cost-requests").dataset.value,
    rows: all(document, "cost-row").map((r) =>
      [r.dataset.name, r.dataset.source, r.dataset.other, r.dataset.value]),
    top: Object.fromEntries(["key", "team", "user", "tag"].map((by) =>
      [by, all(q(document, `top-${by}`), "top-row").map((r) => [r.dataset.name, r.dataset.value])])),
    daily: q(document, "chart-cost-daily").dataset.points,
    dailyCanvas: !!q(document, "chart-cost-daily").querySelector("canvas"),
    pressed: [...document.querySelectorAll("[aria-pressed=true]")].map((b) => b.textContent),
    budgets: !!document.getElementById("budgets"),
    inexact: q(document, "cost-inexact").hidden,
  };
}"""


# The cost table asks for this many rows; the top spenders for fewer.
TABLE_LIMIT = "100"


def _wait_for_rows(page: Any, report: dict[str, Any]) -> None:
    """Until the cost table shows the report's rows by name: a count alone can be met by the
    table of the dimension before, when both have as many rows."""
    page.wait_for_function(
        "(names) => JSON.stringify([...document.querySelectorAll('[data-testid=cost-row]')]"
        ".map((r) => r.dataset.name)) === JSON.stringify(names)",
        arg=[r["name"] or "" for r in report["rows"]],
    )


def _cost_rows(report: dict[str, Any]) -> list[list[str]]:
    """The API's rows as the cost table's data attributes."""
    return [
        [r["name"] or "", r["source"], "true" if r["other"] else "false", repr(r["cost_usd"])]
        for r in report["rows"]
    ]


def _source_total(report: dict[str, Any], source: str) -> float:
    return next((t["cost_usd"] for t in report["totals"] if t["source"] == source), 0.0)


def _same_rows(dom: list[list[str]], api: list[list[str]]) -> None:
    assert [r[:3] for r in dom] == [r[:3] for r in api]
    for got, want in zip(dom, api, strict=True):
        assert _same(got[3], float(want[3])), got


def test_cost_page_shows_probe_spend_apart(tab: Tab) -> None:
    page = tab.page
    with (
        _expect_api(page, "/api/v1/costs", by="day") as days,
        _expect_api(page, "/api/v1/costs", by="key", limit=TABLE_LIMIT) as keys,
    ):
        tab.goto("/cost")
    per_day, per_key = days.value.json(), keys.value.json()
    assert _source_total(per_day, "probe") > 0, "the demo's checks cost something"
    _wait_for_rows(page, per_key)
    dom = page.evaluate(COST_SNAPSHOT)
    # The probes' spend is its own figure, never added to traffic's (the demo has none).
    assert _same(dom["probe"], _source_total(per_day, "probe"))
    assert _same(dom["traffic"], _source_total(per_day, "traffic"))
    _same_rows(dom["rows"], _cost_rows(per_key))
    assert {r[1] for r in dom["rows"]} <= {"probe", "traffic"}
    assert dom["daily"] == "30" and dom["dailyCanvas"]
    assert dom["pressed"] == ["30 days", "Key"] and dom["budgets"] and dom["inexact"]
    tab.screenshot("cost")
    tab.assert_console_clean()


def test_cost_page_spend_by_owner_and_top_spenders(seeded_tab: Tab) -> None:
    tab, page = seeded_tab, seeded_tab.page
    with (
        _expect_api(page, "/api/v1/costs", by="user", limit=TABLE_LIMIT) as users,
        _expect_api(page, "/api/v1/costs", by="key", source="traffic") as top_keys,
        _expect_api(page, "/api/v1/costs", by="tag", source="traffic") as top_tags,
    ):
        tab.goto("/cost?by=user&days=7")
    per_user = users.value.json()
    assert {r["name"] for r in per_user["rows"] if r["source"] == "traffic"} >= {"alice", "bob"}
    _wait_for_rows(page, per_user)
    dom = page.evaluate(COST_SNAPSHOT)
    _same_rows(dom["rows"], _cost_rows(per_user))
    assert dom["pressed"] == ["7 days", "User"] and dom["daily"] == "7"
    assert _same(dom["traffic"], _source_total(per_user, "traffic"))
    assert _same(dom["probe"], _source_total(per_user, "probe"))
    for by, got in (("key", top_keys), ("tag", top_tags)):
        named = [r for r in got.value.json()["rows"] if r["name"] is not None]
        assert [n for n, _ in dom["top"][by]] == [r["name"] for r in named], by
        for (_, raw), r in zip(dom["top"][by], named, strict=True):
            assert _same(raw, r["cost_usd"]), by
    # Another dimension, then a chosen range of UTC days.
    with _expect_api(page, "/api/v1/costs", by="tag", limit=TABLE_LIMIT) as tags:
        page.locator('[data-testid="cost-by"] [data-by="tag"]').click()
    per_tag = tags.value.json()
    _wait_for_rows(page, per_tag)
    _same_rows(page.evaluate(COST_SNAPSHOT)["rows"], _cost_rows(per_tag))
    today = date.today().isoformat()
    page.locator('[data-testid="cost-from"]').fill(today)
    page.locator('[data-testid="cost-to"]').fill(today)
    ranged_table = {"from": f"{today}T00:00:00Z", "limit": TABLE_LIMIT}
    with _expect_api(page, "/api/v1/costs", by="tag", **ranged_table) as ranged:
        page.locator('[data-testid="cost-range-apply"]').click()
    assert ranged.value.json()["from"].startswith(today)
    assert f"from={today}" in page.url and "days=" not in page.url
    page.locator('[data-testid="cost-daily"]').wait_for(state="hidden")  # one day: no chart
    tab.screenshot("cost-owners")
    tab.assert_console_clean()


# ---- public status page ----------------------------------------------------------------------

STATUS_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  return {
    overall: q(document, "overall-status").dataset.status,
    updated: q(document, "sp-updated").dataset.value,
    nav: all(document, "nav").length,
    rows: all(document, "status-row").map((r) => ({
      target: r.dataset.target,
      status: r.dataset.status,
      name: q(r, "status-name").textContent,
      uptime: q(r, "uptime-90d").dataset.value,
      bars: all(r, "uptime-bar").map((b) => [b.dataset.day, b.dataset.value, Number(b.dataset.incidents)]),
      badge: q(r, "badge-snippet").dataset.path,
    })),
    incidents: all(document, "incident-row").length,
    images: [...document.images].map((i) => [i.getAttribute("src"), i.complete && i.naturalWidth > 0]),
  };
}"""


def _us_day(day: str) -> str:
    """The tooltip's date: toLocaleDateString("en-US", weekday/month short) of a UTC day."""
    d = date.fromisoformat(day)
    weekday = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d.weekday()]
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    month = months[d.month - 1]
    return f"{weekday}, {month} {d.day}, {d.year}"


def test_public_status_page_matches_the_api_and_calls_nothing_private(tab: Tab) -> None:
    page = tab.page
    with _expect_api(page, "/api/v1/statuspage") as got:
        tab.goto("/status")
    data = got.value.json()
    targets = data["targets"]
    assert len(targets) == 6
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=status-row]').length === n",
        arg=len(targets),
    )
    # the badges are part of the page: wait for them before judging requests and the picture
    page.wait_for_function("() => [...document.images].every((i) => i.complete)")
    dom = page.evaluate(STATUS_SNAPSHOT)
    assert dom["overall"] == data["overall"]
    assert _same(dom["updated"], data["generated_at"])
    assert dom["nav"] == 0  # the public page links nowhere into the dashboard
    assert [r["target"] for r in dom["rows"]] == [t["name"] for t in targets]
    for row, t in zip(dom["rows"], targets, strict=True):
        assert row["status"] == t["status"] and row["name"] == t["name"]
        assert _same(row["uptime"], t["uptime_90d"]), t["name"]
        assert len(row["bars"]) == 90, t["name"]
        for (day, raw, incidents), d in zip(row["bars"], t["days"], strict=True):
            assert day == d["day"] and _same(raw, d["availability"]), (t["name"], day)
            assert incidents == len(d["incidents"]), (t["name"], day)
        assert row["badge"] == "/badge/" + quote(t["name"]) + ".svg"
    assert all(ok for _, ok in dom["images"]), dom["images"]
    assert dom["incidents"] == min(len(data["incidents"]), 15)
    # How each provider's own page confirmed our incidents: the demo serves every one's page.
    assert {c["provider"] for c in data["confirmations"]} == {t["provider"] for t in targets}
    rows = page.get_by_test_id("confirmation-row").all()
    assert [(r.get_attribute("data-provider"), r.inner_text()) for r in rows] == [
        (c["provider"], f"{c['sentence']}.") for c in data["confirmations"]
    ]

    # Hovering a day shows its date: today (with data) and a day long before the demo (none).
    first = page.get_by_test_id("status-row").first
    tip = page.get_by_test_id("tooltip")
    for i, expect in ((89, "available"), (0, "No data")):
        day = targets[0]["days"][i]
        first.get_by_test_id("uptime-bar").nth(i).hover()
        tip.wait_for(state="visible")
        text = tip.inner_text()
        assert _us_day(day["day"]) in text and expect in text, (day, text)
    page.mouse.move(0, 0)
    tip.wait_for(state="hidden")
    tab.screenshot("status")

    # Only public things were fetched: the page, its assets, the statuspage API and badges.
    origin = tab.base
    fetched = [r.url for r in tab.requests if not r.url.startswith("data:")]
    for url in fetched:
        assert url.startswith(origin + "/"), url
        path = urlsplit(url).path
        public = path in ("/status", "/api/v1/statuspage", "/favicon.ico")
        assert public or path.startswith(("/static/", "/badge/")), f"the page fetched {url}"
    assert any(urlsplit(u).path == "/api/v1/statuspage" for u in fetched)
    tab.assert_console_clean()


# ---- signing in ------------------------------------------------------------------------------

BROWSER_TOKEN = "browser-t0ken-for-tests"


@pytest.fixture(scope="module")
def guarded(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The seeded dashboard behind a token; yields the base URL."""
    db = tmp_path_factory.mktemp("browser-guarded") / "r.db"
    seed(db, time.time())
    config = make_config({"token": "${WEB_TOKEN}"}, {"WEB_TOKEN": BROWSER_TOKEN})
    with ServedWeb(config, db) as web:
        yield web.url


def test_signing_in_with_the_form_and_out_again(
    browser: Browser, guarded: str, request: pytest.FixtureRequest
) -> None:
    with _open_tab(browser, guarded, request) as tab:
        page = tab.page
        tab.goto("/alerts")
        assert urlsplit(page.url).path == "/login"  # and back to /alerts once signed in
        page.get_by_label("Access token").fill(BROWSER_TOKEN)
        tab.screenshot("login")
        with _expect_api(page, "/api/v1/alerts") as alerts:
            page.get_by_role("button", name="Sign in").click()
        assert alerts.value.ok and urlsplit(page.url).path == "/alerts"
        # The token went in a POST body, never in a URL (history, logs, Referer).
        assert all(BROWSER_TOKEN not in r.url for r in tab.requests)
        posted = [
            r for r in tab.requests if r.method == "POST" and urlsplit(r.url).path == "/login"
        ]
        assert len(posted) == 1 and BROWSER_TOKEN in (posted[0].post_data or "")
        (cookie,) = page.context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert BROWSER_TOKEN not in cookie["value"]

        tab.goto("/logout")
        with page.expect_navigation():
            page.get_by_role("button", name="Sign out").click()
        assert urlsplit(page.url).path == "/login" and page.context.cookies() == []
        # The old cookie is dead on the server too, not just forgotten by the browser.
        page.context.add_cookies([cookie])  # type: ignore[list-item]
        assert page.context.request.get(f"{guarded}/api/v1/overview").status == 401


# ---- gateway ---------------------------------------------------------------------------------

GATEWAY_SNAPSHOT = """() => {
  const q = (root, id) => root.querySelector(`[data-testid="${id}"]`);
  const all = (root, id) => [...root.querySelectorAll(`[data-testid="${id}"]`)];
  return {
    nav: q(document, "nav-gateway").getAttribute("aria-current"),
    totals: q(document, "gateway-totals").textContent,
    incidents: all(document, "gateway-incident").map((i) => [i.dataset.group, i.dataset.ongoing, i.textContent]),
    fallbackPoints: q(document, "chart-fallbacks").dataset.points,
    fallbackCanvas: q(document, "chart-fallbacks").querySelectorAll("canvas").length,
    markers: all(q(document, "chart-fallbacks"), "chart-marker").map((m) => m.dataset.kinds),
    groups: all(document, "gateway-group").map((g) => [
      g.dataset.group, q(g, "chart-share").dataset.points, g.querySelectorAll("canvas").length,
    ]),
    drills: all(document, "gateway-drill").map((d) => [d.dataset.ok, d.children[1].textContent]),
  };
}"""


@pytest.fixture(scope="module")
def gateway_site(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The gateway page's test data (tests/test_gateway_page.py) served; yields the base URL."""
    from test_gateway_page import page_config, seed_gateway

    db = tmp_path_factory.mktemp("browser-gateway") / "r.db"
    seed_gateway(db, (time.time() - 60) // 60 * 60 + 50)
    with ServedWeb(page_config(), db) as web:
        yield web.url


def test_gateway_page_draws_its_charts_incidents_and_drills(
    browser: Browser, gateway_site: str, request: pytest.FixtureRequest
) -> None:
    with _open_tab(browser, gateway_site, request) as tab:
        page = tab.page
        with _expect_api(page, "/api/v1/gateway", window="1h") as got:
            tab.goto("/gateway")
        data = got.value.json()
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=gateway-group] canvas').length >= 2"
            " && document.querySelectorAll('[data-testid=gateway-incident]').length === 2"
        )
        dom = page.evaluate(GATEWAY_SNAPSHOT)
        assert dom["nav"] == "page"
        assert f"{data['requests']} requests, {data['fallbacks']} fallbacks" in dom["totals"]
        assert dom["fallbackPoints"] == str(len(data["ts"])) and dom["fallbackCanvas"] >= 1
        assert [g[0] for g in dom["groups"]] == [g["group"] for g in data["groups"]]
        assert all(points == str(len(data["ts"])) and n >= 1 for _, points, n in dom["groups"])
        # Newest first: the ongoing one, then the one that is over.
        (ongoing, over) = dom["incidents"]
        assert ongoing[:2] == ["chat", "true"] and "not back yet" in ongoing[2]
        assert over[:2] == ["chat", "false"]
        assert "traffic moved from chat/primary to chat/backup at" in over[2]
        assert "back at" in over[2]
        kinds = " ".join(dom["markers"])
        assert "breaker_open" in kinds and "breaker_closed" in kinds
        assert dom["drills"] == [
            ["true", "chat/primary"],
            ["false", "chat/primary → chat/backup"],
        ]
        tab.screenshot("gateway")
