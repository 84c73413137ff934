import sqlite3
from datetime import UTC, datetime

import pytest

from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import SQLiteStore
from llmpulse.store.sqlite import MIGRATIONS


def result(i: int, **kw) -> CheckResult:
    base = dict(
        target="t1",
        provider="openai",
        model="gpt-4o-mini",
        check=CheckKind.STREAM,
        timestamp=datetime(2026, 11, 27, 12, 0, i, tzinfo=UTC),
        ok=True,
        latency_ms=100.0 + i,
        ttft_ms=40.0,
        tokens_per_s=50.0,
        usage=Usage(input_tokens=10, output_tokens=20, cached_tokens=0, reasoning_tokens=2),
        ratelimit=RateLimit(500, 400, 1000, 10, 0.99, 1.5),
        cost_usd=1e-5,
        response_model="gpt-4o-mini-2024-07-18",
        warnings=["w"],
    )
    base.update(kw)
    return CheckResult(**base)


def test_roundtrip_and_order(tmp_path):
    path = tmp_path / "x.db"
    with SQLiteStore(path) as store:
        failed = result(
            2, ok=False, error_class=ErrorClass.UNAVAILABLE, http_status=529, ratelimit=None
        )
        store.write_results([result(1), failed])
        latest = store.latest_results()
    assert [r.ok for r in latest] == [False, True]
    assert latest[0].error_class is ErrorClass.UNAVAILABLE
    assert latest[0].ratelimit is None
    assert latest[1].to_json() == result(1).to_json()


def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "x.db"
    with SQLiteStore(path) as store:
        assert store.schema_version() == len(MIGRATIONS)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Reopening an up-to-date database migrates nothing and keeps the data.
    with SQLiteStore(path) as store:
        store.write_results([result(3)])
        assert len(store.latest_results(target="t1")) == 1


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this llmpulse"):
        SQLiteStore(path)


def test_migrates_a_version_1_database_and_keeps_its_results(tmp_path):
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.close()
    with SQLiteStore(path) as store:
        assert store.schema_version() == len(MIGRATIONS) >= 2
        assert store.rollup_watermark() is None
        store.write_results([result(1)])
    with SQLiteStore(path) as store:
        assert len(store.latest_results()) == 1
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"rollups", "rollups_hourly", "rollup_state", "rollups_target_minute"} <= tables


def test_results_between_is_half_open_and_ordered(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store:
        store.write_results([result(3), result(1), result(2, target="t2"), result(5)])
        start = datetime(2026, 11, 27, 12, 0, 1, tzinfo=UTC).timestamp()
        got = store.results_between(start, start + 4)
        assert [r.timestamp.second for r in got] == [1, 2, 3]
        only_t1 = store.results_between(start, start + 4, target="t1")
        assert [r.timestamp.second for r in only_t1] == [1, 3]
        samples = store.samples(start, start + 5, target="t2")
        assert [(s.target, s.ok, s.rl_utilization) for s in samples] == [("t2", True, 0.99)]


def test_rollup_row_content(tmp_path):
    with SQLiteStore(tmp_path / "x.db") as store:
        failed = result(
            30, ok=False, error_class=ErrorClass.RATE_LIMITED, usage=Usage(), cost_usd=None
        )
        store.write_results([result(10), result(20, ratelimit=RateLimit(utilization=0.5)), failed])
        until = datetime(2026, 11, 27, 12, 1, 0, tzinfo=UTC).timestamp()
        assert store.rollup(until) == 1
        summary = store.summarize(until - 60, until)[""]
        assert (summary.total, summary.ok, summary.outage) == (3, 2, 0)
        assert summary.errors == {"rate_limited": 1}
        assert summary.token_requests == 2 and summary.input_tokens == 20
        assert summary.cost_requests == 2 and summary.cost_usd == pytest.approx(2e-5)
        # Latest utilization in the minute: the rate-limited result carried the 0.99 headers.
        assert summary.rl_max == 0.99 and summary.rl_latest == 0.99
        assert summary.rl_latest_ts == until - 30
        assert sum(summary.latency.values()) == 3 and sum(summary.ttft.values()) == 3
