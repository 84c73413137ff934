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
