"""The cost page's Budgets section in a real headless Chromium (``test_browser``'s browser and
tab), over a dashboard whose config has budgets and whose store has a key's and a team's
traffic and the alert leader's budget alerts: each row shows what ``/api/v1/budgets`` said."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from llmpulse.result import Source
from llmpulse.store import SQLiteStore
from test_browser import Tab, _expect_api, _open_tab, _same, browser, chromium  # noqa: F401
from test_budget_alerts import DAY, Leader, make_config, spent
from webserve import ServedWeb


@pytest.fixture(scope="module")
def budgeted(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    tmp = tmp_path_factory.mktemp("browser-budgets")
    now = time.time()
    config = make_config({"monitor": {"probe_budget_usd": 8}})
    db = tmp / "r.db"
    with SQLiteStore(db) as store:
        # team ml: $60 over the last day, over its $50 a week; alice: the same $60 of $100.
        store.write_results([spent(now - DAY + i * 1440, 1.0) for i in range(60)])
        # The probes: $2 of their $8 this month.
        probe = dataclasses.replace(spent(now - 1, 2.0, key=None, team=None), source=Source.PROBE)
        store.write_results([probe])
        leader = Leader(tmp, store, config, state=db)
        leader.at(now)
        leader.state.close()
    with ServedWeb(config, db) as web:
        yield web.url


def test_budget_rows_match_the_api(browser: Browser, budgeted: str, request) -> None:  # noqa: F811
    with _open_tab(browser, budgeted, request) as tab:
        with _expect_api(tab.page, "/api/v1/budgets") as got:
            tab.goto("/cost")
        body = got.value.json()
        tab.page.wait_for_function(
            "() => document.querySelector('[data-testid=budgets]').dataset.loaded === 'true'"
        )
        rows = tab.page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=budgets-table] tbody tr')].map(
                (r) => ({scope: r.dataset.scope, name: r.dataset.name,
                         spent: r.querySelector('[data-field=spent_usd]').dataset.value,
                         percent: r.querySelector('[data-field=percent]').dataset.value,
                         exhausts: r.querySelector('[data-field=exhausts_at]').textContent,
                         level: r.querySelector('.bar').dataset.level,
                         rules: [...r.querySelectorAll('[data-rule]')].map((s) => s.dataset.rule)}))"""
        )
        probes, *rows = rows  # the probes' own month first
        assert (probes["scope"], probes["name"]) == ("probes", "all targets")
        assert _same(probes["spent"], body["probes"]["spent_usd"]) and body["probes"][
            "spent_usd"
        ] == pytest.approx(2.0)
        assert _same(probes["percent"], 25.0) and probes["level"] == "ok"
        assert [(r["scope"], r["name"]) for r in rows] == [
            (b["scope"], b["name"]) for b in body["budgets"]
        ]
        for row, b in zip(rows, body["budgets"], strict=True):
            assert _same(row["spent"], b["spent_usd"]) and _same(row["percent"], b["percent"])
            assert row["rules"] == [a["rule"] for a in b["alerts"]]
        team = next(r for r in rows if r["scope"] == "team")
        assert team["level"] == "crit" and team["exhausts"] == "exhausted"
        assert "budget_exhausted" in team["rules"]
        assert tab.page.get_by_test_id("budgets-empty").is_hidden()
        tab.screenshot("cost-budgets")
