import concurrent.futures
import contextlib
import dataclasses
import itertools
import random
import sqlite3
from datetime import UTC, datetime

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import postgres_schema
from llmpulse.config import ConfigError, parse_config
from llmpulse.config.storage import resolve_storage
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.store import (
    ModelChange,
    ResultFilter,
    SQLiteStore,
    Totals,
    migrations,
    open_store,
    queries,
    redact_url,
    sqlitedb,
)
from llmpulse.store.base import COST_BY
from llmpulse.store.migrations.legacy_sqlite import SCRIPTS as LEGACY_SCRIPTS
from llmpulse.store.queries import exact_quantile
from llmpulse.store.rollup import RELATIVE_ACCURACY, Summary, quantiles
from llmpulse.store.sqlstore import TIERS, plan
from llmpulse.web.view import View


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


# --- Backends: every test taking `backend` runs against SQLite and PostgreSQL ----------------


class Backend:
    """A fresh, empty location for stores: a SQLite file, or a PostgreSQL schema."""

    def __init__(self, kind: str, location: str) -> None:
        self.kind = kind
        self.location = location

    def open(self):
        return open_store(self.location)

    def sql(self, query: str) -> list[tuple]:
        """Rows of a query on the store's database, beside the store."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.location)) as db:
                rows = db.execute(query).fetchall()
                db.commit()
                return rows
        with psycopg.connect(self.location, autocommit=True) as db:
            cursor = db.execute(query)
            return cursor.fetchall() if cursor.description else []

    @contextlib.contextmanager
    def refusing(self, target: str):
        """The database refuses results of ``target`` (a failing write); yields the error."""
        if self.kind == "sqlite":
            self.sql(
                f"CREATE TRIGGER refuse BEFORE INSERT ON results WHEN NEW.target = '{target}' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
            yield sqlite3.IntegrityError
            self.sql("DROP TRIGGER refuse")
        else:
            self.sql(f"ALTER TABLE results ADD CONSTRAINT refuse CHECK (target <> '{target}')")
            yield psycopg.errors.CheckViolation
            self.sql("ALTER TABLE results DROP CONSTRAINT refuse")


@contextlib.contextmanager
def backend_at(kind: str, tmp_dir):
    if kind == "sqlite":
        yield Backend(kind, str(tmp_dir / "store.db"))
        return
    with postgres_schema() as url:
        yield Backend(kind, url)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    with backend_at(request.param, tmp_path) as b:
        yield b


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_backend(request, tmp_path_factory):
    with backend_at(request.param, tmp_path_factory.mktemp("store")) as b:
        yield b


def test_roundtrip_and_order(backend):
    with backend.open() as store:
        failed = result(
            2, ok=False, error_class=ErrorClass.UNAVAILABLE, http_status=529, ratelimit=None
        )
        store.write_results([result(1), failed])
        latest = store.latest_results()
    assert [r.ok for r in latest] == [False, True]
    assert latest[0].error_class is ErrorClass.UNAVAILABLE
    assert latest[0].ratelimit is None
    assert latest[1].to_json() == result(1).to_json()


def test_an_embeddings_result_keeps_its_dimensions(backend):
    embedded = result(5, check="embeddings", embedding_dimensions=3072)
    with backend.open() as store:
        store.write_results([embedded])
        (latest,) = store.latest_results()
    assert latest.kind is CheckKind.EMBEDDINGS and latest.embedding_dimensions == 3072
    assert latest.to_json() == embedded.to_json()


def test_traffic_results_keep_their_source_attempts_and_fallbacks(backend):
    traffic = result(4, source=Source.TRAFFIC, attempts=3, fallbacks=1, context_window=128000)
    with backend.open() as store:
        store.write_results([result(3), traffic])
        latest = store.latest_results()
    assert [(r.source, r.attempts, r.fallbacks) for r in latest] == [
        (Source.TRAFFIC, 3, 1), (Source.PROBE, None, None)
    ]  # fmt: skip
    assert latest[0].to_json() == traffic.to_json()
    assert latest[0].to_json()["context_utilization"] == pytest.approx(10 / 128000, abs=1e-3)


def test_wal_mode_and_schema_version(tmp_path):
    path = tmp_path / "x.db"
    with SQLiteStore(path) as store:
        assert store.schema_version() == int(migrations.HEAD)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Reopening an up-to-date database migrates nothing and keeps the data.
    with SQLiteStore(path) as store:
        store.write_results([result(3)])
        assert len(store.latest_results(where=ResultFilter(target="t1"))) == 1


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
    db.executescript(LEGACY_SCRIPTS[0])
    db.execute("PRAGMA user_version = 1")
    db.close()
    with SQLiteStore(path) as store:
        assert store.schema_version() == int(migrations.HEAD)
        assert store.rollup_watermark() is None
        store.write_results([result(1)])
    with SQLiteStore(path) as store:
        assert len(store.latest_results()) == 1
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert {"rollups", "rollups_hourly", "rollup_state", "rollups_target_minute"} <= tables


def test_a_version_4_file_from_before_alembic_is_stamped_and_keeps_its_results(tmp_path):
    path = tmp_path / "v4.db"
    db = sqlite3.connect(path, isolation_level=None)
    sqlitedb.migrate(db, LEGACY_SCRIPTS, path)
    db.execute("INSERT INTO results (ts, target, provider, model, check_kind, ok) "
               "VALUES (1e9, 'old', 'openai', 'm', 'stream', 1)")  # fmt: skip
    db.close()
    with SQLiteStore(path) as store:
        assert store.schema_version() == int(migrations.HEAD)
        assert [r.target for r in store.latest_results()] == ["old"]
        store.write_results([result(1)])
    with SQLiteStore(path) as store:
        assert len(store.latest_results()) == 2
    # Revision 1 is the legacy schema: a fresh file has the same tables and columns.
    with SQLiteStore(tmp_path / "fresh.db"):
        pass

    def shape(p):
        db = sqlite3.connect(p)
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: [c[1] for c in db.execute(f"PRAGMA table_info({t})")] for t in tables}

    assert shape(path) == shape(tmp_path / "fresh.db")


def test_refuses_a_newer_revision(tmp_path):
    path = tmp_path / "x.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.commit()
    with pytest.raises(RuntimeError, match="revision 9999, newer than this llmpulse"):
        SQLiteStore(path)


def test_head_is_the_newest_revision():
    assert migrations.script_directory().get_current_head() == migrations.HEAD


def test_reopening_migrates_nothing_and_keeps_the_data(backend):
    with backend.open() as store:
        assert store.schema_version() == int(migrations.HEAD)
        store.write_results([result(1)])
    with backend.open() as store:
        assert store.schema_version() == int(migrations.HEAD)
        assert len(store.latest_results()) == 1


def test_open_store_takes_paths_and_urls(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/a.db") as store:
        assert isinstance(store, SQLiteStore) and store.path == tmp_path / "a.db"
    with open_store(tmp_path / "b.db") as store:
        assert store.path == tmp_path / "b.db"
    with pytest.raises(ValueError, match=r"'mysql://u:\*\*\*@h/db'"):
        open_store("mysql://u:secret@h/db")
    assert redact_url("no postgresql://u:pw@h:5432/db?x=1 here") == (
        "no postgresql://u:***@h:5432/db?x=1 here"
    )


@pytest.fixture
def postgres(tmp_path):
    with backend_at("postgres", tmp_path) as b:
        yield b


def partitions(backend: Backend) -> list[str]:
    return sorted(
        name
        for (name,) in backend.sql(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'results'::regclass"
        )
    )


def test_postgres_retention_drops_whole_daily_partitions(postgres):
    results = history(4.31)  # 1 to 5 November
    cut = NOW - 2 * DAY  # 3 November, 07:17:30
    with postgres.open() as store:
        store.write_results(results)
        # A partition per day with results, and one ahead.
        assert partitions(postgres) == [f"results_2026110{d}" for d in range(1, 7)]
        stats = store.prune(NOW, raw_retention_s=2 * DAY)
        assert partitions(postgres) == [f"results_2026110{d}" for d in range(3, 7)]
        assert stats.results == sum(r.timestamp.timestamp() < cut for r in results)
        kept = store.results_between(0, 2 * NOW)
        assert len(kept) == len(results) - stats.results
        assert min(r.timestamp.timestamp() for r in kept) >= cut
        # The rollups outlive the partitions.
        assert store.totals(T0, NOW, by=None)[(None, "")].total == sum(
            r.timestamp.timestamp() < NOW for r in results
        )
        store.write_results([at(T0 + 3600, "a")])  # late, for a dropped day: made again
        assert partitions(postgres)[0] == "results_20261101"


def test_postgres_refuses_a_newer_revision(postgres):
    postgres.open().close()
    postgres.sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RuntimeError, match="revision 9999, newer than this llmpulse"):
        postgres.open()


def test_results_between_is_half_open_and_ordered(backend):
    with backend.open() as store:
        store.write_results([result(3), result(1), result(2, target="t2"), result(5)])
        start = datetime(2026, 11, 27, 12, 0, 1, tzinfo=UTC).timestamp()
        got = store.results_between(start, start + 4)
        assert [r.timestamp.second for r in got] == [1, 2, 3]
        only_t1 = store.results_between(start, start + 4, where=ResultFilter(target="t1"))
        assert [r.timestamp.second for r in only_t1] == [1, 3]
        values = store.metric_values(start, start + 5, where=ResultFilter(target="t2"))
        assert values == {"": {"ttft": [40.0], "latency": [102.0], "tps": [50.0], "context": []}}


def test_rollup_row_content(backend):
    with backend.open() as store:
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


# --- Totals, tiers, latest results and model changes over days of data -----------------------

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # midnight UTC
DAY = 86400
LAYOUT = {"a": ("openai", "gpt-a"), "b": ("openai", "gpt-b"), "c": ("anthropic", "claude-c")}
CLASSES = [ErrorClass.UNAVAILABLE, ErrorClass.RATE_LIMITED, ErrorClass.TIMEOUT]


def at(ts: float, target: str = "a", **kw) -> CheckResult:
    provider, model = LAYOUT.get(target, ("openai", "m"))
    return result(
        0,
        target=target,
        provider=provider,
        model=model,
        timestamp=datetime.fromtimestamp(ts, UTC),
        **kw,
    )


def history(days: float, seed: int = 1) -> list[CheckResult]:
    """Three targets, a check every ~7 minutes each, some failures, some without a cost."""
    rng = random.Random(seed)
    out = []
    for target in LAYOUT:
        ts = T0 + rng.uniform(0, 60)
        while ts < T0 + days * DAY:
            error = rng.choice(CLASSES) if rng.random() < 0.1 else None
            out.append(
                at(
                    ts,
                    target,
                    ok=error is None,
                    error_class=error,
                    cost_usd=None if error or rng.random() < 0.2 else rng.uniform(1e-5, 1e-3),
                    usage=Usage() if error else Usage(input_tokens=rng.randint(1, 50)),
                    check=rng.choice([CheckKind.STREAM, CheckKind.INFERENCE]),
                )
            )
            ts += rng.uniform(300, 540)
    return out


def reference(
    results: list[CheckResult], start: float, end: float, step: int | None, by: str | None
) -> dict[tuple[int | None, str], Totals]:
    """Totals computed from the results themselves."""
    out: dict[tuple[int | None, str], Totals] = {}
    for r in results:
        ts = r.timestamp.timestamp()
        if not start <= ts < end:
            continue
        group = {"target": r.target, "provider": r.provider, "model": r.model}.get(by or "", "")
        t = out.setdefault((None if step is None else int(ts // step * step), group), Totals())
        t.merge(
            Totals(
                provider=r.provider,
                model=r.model,
                total=1,
                ok=int(r.ok),
                outage=int(r.error_class is not None and r.error_class.is_outage),
                errors={str(r.error_class): 1} if r.error_class else {},
                token_requests=int(r.usage.input_tokens is not None),
                input_tokens=r.usage.input_tokens or 0,
                output_tokens=r.usage.output_tokens or 0,
                cost_requests=int(r.cost_usd is not None),
                cost_usd=r.cost_usd or 0.0,
                first_ts=ts,
                last_ts=ts,
            )
        )
    return out


def assert_totals_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, w in want.items():
        g = got[k]
        assert g.cost_usd == pytest.approx(w.cost_usd, rel=1e-9, abs=1e-15), k
        assert dataclasses.replace(g, cost_usd=0.0) == dataclasses.replace(w, cost_usd=0.0), k


# Watermark mid-day, mid-six-hours and mid-hour: every tier and the raw tail answer a part.
NOW = T0 + 4 * DAY + 7 * 3600 + 17 * 60 + 30


def rolled_store(backend):
    results = history(4.31)
    store = backend.open()
    store.write_results(results)
    store.rollup(NOW - 400)
    return store, results


@pytest.fixture(scope="module")
def days4(module_backend):
    """For tests that only read."""
    store, results = rolled_store(module_backend)
    with store:
        yield store, results, module_backend


@pytest.fixture
def days4_own(backend):
    store, results = rolled_store(backend)
    with store:
        yield store, results, backend


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (T0, NOW),  # whole days, then 6 h, hours, minutes and the raw tail
        (T0 - DAY, NOW + DAY),  # beyond the data on both sides
        (T0 + 3 * DAY + 5000.5, NOW - 10),  # mid-minute edges, straddling the watermark
        (T0 + DAY + 1800, T0 + 2 * DAY + 1800),  # unaligned: half-hours at both edges
        (NOW - 300, NOW),  # after the watermark only: raw rows
    ],
)
@pytest.mark.parametrize("step", [None, 60, 900, 3600, 21600, DAY])
@pytest.mark.parametrize("by", ["target", "provider", "model", None])
def test_totals_equal_the_results(days4, start, end, step, by):
    store, results, _ = days4
    got = store.totals(start, end, step_s=step, by=by)
    assert_totals_equal(got, reference(results, start, end, step, by))


def test_totals_filters_empty_ranges_and_steps(days4):
    store, results, _ = days4
    got = store.totals(T0, NOW, step_s=DAY, where=ResultFilter(target="c"))
    assert {k for k in got} == {(T0 + d * DAY, "c") for d in range(5)}
    assert sum(t.total for t in got.values()) == sum(
        r.target == "c" and r.timestamp.timestamp() < NOW for r in results
    )
    only_stream = store.totals(T0, NOW, by=None, where=ResultFilter(check="stream"))[(None, "")]
    assert only_stream.total == sum(
        r.check == CheckKind.STREAM and r.timestamp.timestamp() < NOW for r in results
    )
    assert store.totals(T0 - 10 * DAY, T0 - DAY) == {}
    assert store.totals(NOW, NOW) == {}
    assert store.totals(NOW, T0) == {}
    with pytest.raises(ValueError):
        store.totals(T0, NOW, step_s=90)
    # Rollups keep neither, so such a filter could hold for the raw rows of the span alone.
    refused = "neither region, source nor error class"
    with pytest.raises(ValueError, match=refused):
        store.totals(T0, NOW, where=ResultFilter(region="eu-west"))
    with pytest.raises(ValueError, match=refused):
        store.summarize(T0, NOW, where=ResultFilter(source="traffic"))
    with pytest.raises(ValueError, match=refused):
        store.summarize(T0, NOW, where=ResultFilter(error_class="assertion"))


def test_totals_of_an_empty_store(backend):
    with backend.open() as store:
        assert store.totals(T0, NOW, step_s=DAY) == {}
        store.rollup(NOW)
        assert store.totals(T0, NOW, step_s=DAY) == {}


def test_late_rows_reach_the_daily_and_six_hour_tiers(days4_own):
    store, results, _ = days4_own
    late = [
        at(T0 + DAY + 3600 + i, "b", ok=False, error_class=ErrorClass.TIMEOUT) for i in range(4)
    ]
    store.write_results(late)
    store.rollup(NOW - 400)
    for step in (DAY, 21600, None):
        got = store.totals(T0, NOW, step_s=step)
        assert_totals_equal(got, reference(results + late, T0, NOW, step, "target"))
    day1 = store.summarize(T0 + DAY, T0 + 2 * DAY, group_by="target")["b"]
    assert day1.errors["timeout"] >= 4 and sum(day1.latency.values()) == day1.total


def test_coarse_tiers_only_hold_complete_periods(days4):
    store, _, backend = days4
    days = [d for (d,) in backend.sql("SELECT DISTINCT day_ts FROM rollups_daily ORDER BY 1")]
    quarters = {q for (q,) in backend.sql("SELECT DISTINCT period_ts FROM rollups_6h")}
    hours = {h for (h,) in backend.sql("SELECT DISTINCT hour_ts FROM rollups_hourly")}
    watermark = store.rollup_watermark()
    assert days == [T0 + d * DAY for d in range(4)]
    assert max(quarters) + 21600 <= watermark < max(quarters) + 2 * 21600
    assert max(hours) + 3600 <= watermark < max(hours) + 2 * 3600


def test_prune_drops_old_coarse_rows(days4_own):
    store, _, backend = days4_own
    store.prune(NOW, raw_retention_s=DAY, rollup_retention_s=2 * DAY + 3600)
    cut = NOW - 2 * DAY - 3600
    for table, col, period in (
        ("rollups_daily", "day_ts", DAY),
        ("rollups_6h", "period_ts", 21600),
    ):
        first = backend.sql(f"SELECT min({col}) FROM {table}")[0][0]
        assert first + period > cut >= first  # the period holding the cut stays
    assert store.totals(cut + DAY, NOW, by=None)[(None, "")].total > 0


@settings(max_examples=500, deadline=None)
@given(
    start=st.integers(0, 30 * DAY * 1000).map(lambda ms: T0 + ms / 1000),
    length=st.integers(0, 30 * DAY * 1000).map(lambda ms: ms / 1000),
    watermark=st.none() | st.integers(0, 60 * 24 * 40).map(lambda m: T0 + m * 60),
    coarse=st.booleans(),
    step=st.sampled_from([0, 60, 120, 900, 3600, 7200, 21600, DAY, 7 * DAY]),
)
def test_plan_covers_the_range_once(start, length, watermark, coarse, step):
    end = start + length
    parts = plan(start, end, watermark, watermark if coarse else None, step)
    pieces = sorted((lo, hi) for _, lo, hi in parts if lo < hi)
    if end > start:
        assert pieces[0][0] == start and pieces[-1][1] == end
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    for tier, lo, hi in parts:
        if tier is None:
            continue
        assert lo % tier.period == 0 and hi % tier.period == 0 and step % tier.period == 0
        assert watermark is not None and hi <= watermark
        assert tier.period <= 3600 or coarse


def test_upgrade_from_version_2_fills_the_new_tiers_and_model_changes(tmp_path):
    path = tmp_path / "v2.db"
    results = history(3.2)
    results[5].response_model = "gpt-a-2"  # target a's model, then another one later
    for r in results[200:]:
        if r.target == "a":
            r.response_model = "gpt-a-3"
    with SQLiteStore(path) as store:
        store.write_results(results)
        store.rollup(T0 + 3.1 * DAY)
        want = store.totals(T0, T0 + 3.1 * DAY, step_s=DAY)
        changes = store.model_changes(None, 0, NOW)
    # What version 2 had: no coarse tiers, no coarse watermark, no model changes.
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE rollups_6h; DROP TABLE rollups_daily; DROP TABLE model_changes;"
        "ALTER TABLE rollup_state DROP COLUMN coarse_watermark_ts;"
        "ALTER TABLE results DROP COLUMN source; ALTER TABLE results DROP COLUMN attempts;"
        "ALTER TABLE results DROP COLUMN fallbacks; PRAGMA user_version = 2;"
        "ALTER TABLE results DROP COLUMN agent; ALTER TABLE results DROP COLUMN region;"
        "DROP TABLE ingested_batches; DROP TABLE alembic_version;"
        "ALTER TABLE rollups DROP COLUMN context_sketch;"
        "ALTER TABLE rollups DROP COLUMN context_max;"
        "ALTER TABLE rollups_hourly DROP COLUMN context_sketch;"
        "ALTER TABLE rollups_hourly DROP COLUMN context_max;"
        "DROP TABLE spend_daily;"
        "ALTER TABLE rollup_state DROP COLUMN spend_watermark_ts; DROP TABLE spend_hourly;"
        "ALTER TABLE rollup_state DROP COLUMN spend_hour_watermark_ts;"
        "DROP TABLE gateway_keys; DROP TABLE breaker_events;"
        + "".join(
            f"ALTER TABLE results DROP COLUMN {c};"
            # ... nor revision 0006's probe columns
            for c in (
                "key_name",
                "team",
                "end_user",
                "tags",
                "session_id",
                "probe_kind",
                "answer_excerpt",
                "embedding_dimensions",
                # ... nor revision 0007's failover columns
                "route",
                "fallback_reason",
                "features",
                "drill",
            )
        )
    )
    db.close()
    with SQLiteStore(path) as store:
        assert store.schema_version() == int(migrations.HEAD)
        assert store.model_changes(None, 0, NOW) == changes  # filled from the raw rows
        assert_totals_equal(store.totals(T0, T0 + 3.1 * DAY, step_s=DAY), want)  # from hours
        store.rollup(T0 + 3.1 * DAY)
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(DISTINCT day_ts) FROM rollups_daily").fetchone()[0] == 3
        assert_totals_equal(store.totals(T0, T0 + 3.1 * DAY, step_s=DAY), want)  # from days


def test_latest_per_target(backend):
    with backend.open() as store:
        assert store.latest_per_target() == {}
        results = history(1.5)
        store.write_results(results)
        # Two results of one target at the same instant: the one written last wins.
        tie = [
            at(T0 + 2 * DAY, "c", request_id="first"),
            at(T0 + 2 * DAY, "c", request_id="second"),
        ]
        store.write_results(tie)
        store.write_results([at(T0 + DAY, "zz-old")])
        latest = store.latest_per_target()
        assert set(latest) == {"a", "b", "c", "zz-old"}
        assert latest["c"].request_id == "second"
        for target, r in latest.items():
            assert (
                r.to_json()
                == store.latest_results(1, where=ResultFilter(target=target))[0].to_json()
            )
        store.prune(T0 + 9 * DAY, raw_retention_s=7 * DAY + 3600)
        assert set(store.latest_per_target()) == {"c"}


def test_metric_values_are_grouped_and_sorted(backend):
    with backend.open() as store:
        store.write_results(
            [
                at(T0 + 1, "a", latency_ms=300.0, ttft_ms=None),
                at(T0 + 2, "a", latency_ms=100.0),
                at(T0 + 3, "b", latency_ms=200.0, check=CheckKind.MODELS),
                at(T0 + 99, "a", latency_ms=1.0),  # outside
            ]
        )
        got = store.metric_values(T0, T0 + 60, group_by="target")
        assert got["a"] == {
            "ttft": [40.0], "latency": [100.0, 300.0], "tps": [50.0, 50.0], "context": []
        }  # fmt: skip
        assert store.metric_values(T0, T0 + 60)[""]["latency"] == [100.0, 200.0, 300.0]
        models = store.metric_values(
            T0, T0 + 60, group_by="provider", where=ResultFilter(check="models")
        )
        assert models == {
            "openai": {"ttft": [40.0], "latency": [200.0], "tps": [50.0], "context": []}
        }  # fmt: skip


def change(ts: float, target: str, previous: str | None, current: str) -> ModelChange:
    return ModelChange(T0 + ts, target, previous, current)


def served(ts: float, target: str, model: str | None) -> CheckResult:
    return at(T0 + ts, target, response_model=model, ok=model is not None)


def test_model_changes_across_batches_targets_and_restarts(backend):
    with backend.open() as store:
        store.write_results(
            [served(1, "a", "m1"), served(1, "b", "x1"), served(2, "a", "m1"), served(3, "a", "m2")]
        )
        store.write_results([served(4, "a", "m2"), served(4, "b", "x2"), served(5, "a", None)])
    with backend.open() as store:  # a restart: the current models come from the database
        store.write_results([served(6, "a", "m2"), served(7, "a", "m3"), served(7, "b", "x2")])
        assert store.model_changes(None, 0, NOW) == [
            change(1, "a", None, "m1"),
            change(1, "b", None, "x1"),
            change(3, "a", "m1", "m2"),
            change(4, "b", "x1", "x2"),
            change(7, "a", "m2", "m3"),
        ]
        assert store.model_changes("a", T0 + 2, T0 + 7) == [change(3, "a", "m1", "m2")]
        assert store.model_changes("nope", 0, NOW) == []
        # Raw results go; the changes stay.
        store.prune(T0 + 30 * DAY, raw_retention_s=DAY)
        assert store.results_between(0, NOW) == []
        assert len(store.model_changes(None, 0, NOW)) == 5


def test_model_changes_are_recorded_once_when_several_processes_write_a_target(backend):
    # A daemon's probes and a gateway's traffic (or two agents) write the same target.
    with backend.open() as daemon, backend.open() as gateway:
        daemon.write_results([served(1, "a", "m1")])
        gateway.write_results([served(2, "a", "m1")])
        gateway.write_results([served(3, "a", "m2")])  # the gateway sees the change first
        daemon.write_results([served(4, "a", "m2")])  # the daemon's cache still says m1
        gateway.write_results([served(5, "a", "m2")])
        assert daemon.model_changes(None, 0, NOW) == [
            change(1, "a", None, "m1"),
            change(3, "a", "m1", "m2"),
        ]


def test_model_changes_follow_time_not_arrival(backend):
    with backend.open() as store:
        store.write_results([served(10, "a", "m2"), served(5, "a", "m1")])  # out of order
        store.write_results([served(8, "a", "m1")])  # late: older than the newest stored
        assert store.model_changes("a", 0, NOW) == [
            change(5, "a", None, "m1"),
            change(10, "a", "m1", "m2"),
        ]
    with backend.open() as store:
        store.write_results([served(9, "a", "m1")])  # still late after a restart
        store.write_results([served(11, "a", "m2")])
        assert len(store.model_changes("a", 0, NOW)) == 2


def test_a_failed_write_records_no_model_change(backend):
    with backend.open() as store:
        store.write_results([served(1, "a", "m1")])
        with backend.refusing("boom") as error, pytest.raises(error):
            store.write_results([served(2, "a", "m2"), served(2, "boom", "z")])
        assert store.model_changes("a", 0, NOW) == [change(1, "a", None, "m1")]
        store.write_results([served(2, "a", "m2")])  # the retried batch
        assert store.model_changes("a", 0, NOW)[-1] == change(2, "a", "m1", "m2")


def test_writes_rollups_and_reads_from_many_threads(backend):
    """As the daemon and the web layer's thread pool use one store."""
    batches = [[at(T0 + b * 90 + i, f"t{b % 4}") for i in range(50)] for b in range(20)]
    with backend.open() as store, concurrent.futures.ThreadPoolExecutor(6) as pool:

        def write() -> None:
            for batch in batches:
                store.write_results(batch)

        def roll_up() -> None:
            for b in range(20):
                store.rollup(T0 + b * 90)

        def read() -> None:
            for _ in range(20):
                store.summarize(T0, T0 + DAY, group_by="target")
                store.latest_per_target()

        jobs = [pool.submit(write), pool.submit(roll_up)] + [pool.submit(read) for _ in range(4)]
        for job in jobs:
            job.result()
        store.rollup(T0 + DAY)
        want = reference([r for batch in batches for r in batch], T0, T0 + DAY, None, "target")
        assert_totals_equal(store.totals(T0, T0 + DAY), want)


def test_storage_key_environment_override_and_errors():
    assert resolve_storage("r.db", {}) == "r.db"
    assert resolve_storage(None, {}) is None
    url = "postgresql://u:pw@h/db"
    assert resolve_storage("r.db", {"LLMPULSE_STORAGE_URL": url}) == url
    with pytest.raises(
        ConfigError, match=r"^f.yaml: storage: unsupported storage 'mysql://u:\*\*\*@h/db'"
    ):
        resolve_storage("mysql://u:pw@h/db", {}, "f.yaml: ")
    with pytest.raises(ConfigError, match=r"^LLMPULSE_STORAGE_URL: unsupported"):
        resolve_storage(None, {"LLMPULSE_STORAGE_URL": "redis://h"})


def test_the_dashboard_reads_results_from_postgresql(postgres, tmp_path, monkeypatch):
    monkeypatch.setenv("LLMPULSE_DB", str(tmp_path / "local.db"))  # alert state beside it
    config = parse_config(
        {"targets": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "os.environ/K"}]},
        env={"K": "sk-test"},
    )
    name = config.targets[0].name
    now = datetime(2026, 11, 27, 12, 30, tzinfo=UTC).timestamp()
    with postgres.open() as store:
        store.write_results([at(now - 60 * i, name, ttft_ms=300.0 + i) for i in range(1, 31)])
        store.rollup(now)
    view = View.open(config, postgres.location)
    try:
        card = view.overview(now).cards[0]
        assert card.checks_1h == 30 and card.status == "up"
    finally:
        view.close()


def test_results_keep_their_agent_and_region(backend):
    ours = result(5, agent="probe-eu-1", region="eu-west")
    with backend.open() as store:
        store.write_results([result(4), ours])
        latest = store.latest_results()
    assert [(r.agent, r.region) for r in latest] == [("probe-eu-1", "eu-west"), (None, None)]
    assert latest[0].to_json() == ours.to_json()


def test_a_batch_replayed_under_its_id_is_written_once(backend):
    batch = [result(1), result(2)]
    with backend.open() as store:
        assert store.write_results(batch, batch_id="agent-a:1") is True
        # The commit went through but the writer never heard: it replays the same batch.
        assert store.write_results(batch, batch_id="agent-a:1") is False
        assert store.write_results([result(3)], batch_id="agent-b:1") is True
        assert len(store.latest_results()) == 3
        # Batch ids last as long as raw results.
        store.prune(result(3).timestamp.timestamp() + 8 * DAY)
        assert store.write_results(batch, batch_id="agent-a:1") is True


def test_tail_returns_every_writers_results_once_in_commit_order(backend):
    with backend.open() as leader, backend.open() as agent:
        agent.write_results([at(T0 + 1, "a"), at(T0 + 2, "b")])
        recent, cursor = leader.tail_start(T0 + 2)
        assert [r.target for r in recent] == ["b"]  # since_ts filters; the cursor is past both
        assert leader.tail(cursor) == ([], cursor)
        # A result with an older timestamp committed later still comes next: arrival order.
        agent.write_results([at(T0 + 10, "c", region="us-east")])
        leader.write_results([at(T0 + 5, "d", region="eu-west")])
        got, cursor = leader.tail(cursor)
        assert [(r.target, r.region) for r in got] == [("c", "us-east"), ("d", "eu-west")]
        assert leader.tail(cursor) == ([], cursor)
        page, after = leader.tail(0, limit=2)
        assert [r.target for r in page] == ["a", "b"]
        assert [r.target for r in leader.tail(after)[0]] == ["c", "d"]


def test_metric_values_split_by_region_and_source(backend):
    with backend.open() as store:
        store.write_results(
            [
                at(T0 + 1, "a", ttft_ms=400.0, region="eu-west"),
                at(T0 + 2, "a", ttft_ms=900.0, region="eu-west"),
                at(T0 + 3, "a", ttft_ms=100.0, region="us-east"),
                at(T0 + 4, "a", ttft_ms=50.0),  # a single-agent result: no region
                at(T0 + 5, "a", ttft_ms=70.0, source=Source.TRAFFIC),
            ]
        )
        by_region = store.metric_values(T0, T0 + 60, group_by="region")
        assert {g: v["ttft"] for g, v in by_region.items()} == {
            "eu-west": [400.0, 900.0], "us-east": [100.0], "": [50.0, 70.0]
        }  # fmt: skip
        by_source = store.metric_values(
            T0, T0 + 60, group_by="source", where=ResultFilter(region="eu-west")
        )
        assert {g: v["ttft"] for g, v in by_source.items()} == {"probe": [400.0, 900.0]}
        traffic = store.metric_values(T0, T0 + 60, where=ResultFilter(source="traffic"))
        assert traffic[""]["ttft"] == [70.0]


def test_raw_summaries_and_latest_results_split_by_region_and_source(backend):
    down = {"ok": False, "error_class": ErrorClass.UNAVAILABLE}
    with backend.open() as store:
        store.write_results(
            [
                at(T0 + 1, "a", region="eu-west"),
                at(T0 + 2, "a", region="eu-west", **down),
                at(T0 + 3, "a", region="us-east", ok=False, error_class=ErrorClass.RATE_LIMITED),
                at(T0 + 4, "a"),  # a single-agent result: no region
                at(T0 + 5, "a", source=Source.TRAFFIC, **down),
                at(T0 + 6, "b", region="eu-west"),
            ]
        )
        by_region = store.summarize_raw(
            T0, T0 + 60, group_by="region", where=ResultFilter(target="a")
        )
        assert {g: (s.total, s.ok, s.outage, s.errors) for g, s in by_region.items()} == {
            "eu-west": (2, 1, 1, {"unavailable": 1}),
            "us-east": (1, 0, 0, {"rate_limited": 1}),
            "": (2, 1, 1, {"unavailable": 1}),
        }
        assert (by_region[""].first_ts, by_region[""].last_ts) == (T0 + 4, T0 + 5)
        by_source = store.summarize_raw(
            T0, T0 + 60, group_by="source", where=ResultFilter(region="")
        )
        assert {g: s.total for g, s in by_source.items()} == {"probe": 1, "traffic": 1}
        assert store.summarize_raw(T0, T0 + 1) == {}

        def latest(**kw: str) -> list[tuple[float, str | None, str]]:
            return [
                (r.timestamp.timestamp(), r.region, str(r.source))
                for r in store.latest_results(where=ResultFilter(**kw))
            ]

        assert latest(region="eu-west") == [
            (T0 + 6, "eu-west", "probe"), (T0 + 2, "eu-west", "probe"), (T0 + 1, "eu-west", "probe")
        ]  # fmt: skip
        assert latest(target="a", region="") == [(T0 + 5, None, "traffic"), (T0 + 4, None, "probe")]
        assert latest(source="traffic") == [(T0 + 5, None, "traffic")]


# --- Context-window utilization: a sketch and a maximum in every tier ---------------------------


def with_context(results: list[CheckResult], seed: int) -> list[CheckResult]:
    """The results with prompts of a few to a million tokens against known context windows,
    or an unknown one (those count nowhere)."""
    rng = random.Random(seed)
    for r in results:
        r.context_window = rng.choice([8192, 128000, 1_000_000, None])
        if r.usage.input_tokens is not None:
            r.usage.input_tokens = int(rng.lognormvariate(8, 2.5))
    return results


def assert_context(summary: Summary, values: list[float]) -> None:
    """The summary's context sketch within DDSketch's accuracy of the exact values, its
    maximum exact."""
    assert sum(summary.context.values()) == len(values)
    if not values:
        assert summary.context_max is None
        return
    assert summary.context_max == max(values)
    for q, got in zip((0.5, 0.95), quantiles(summary.context, (0.5, 0.95)), strict=True):
        want = exact_quantile(values, q)
        assert got is not None and abs(got - want) <= RELATIVE_ACCURACY * want + 1e-12, (q, want)


def test_context_utilization_rolls_up_through_every_tier(backend):
    results = with_context(history(4.31, seed=5), seed=5)
    with backend.open() as store:
        store.write_results(results)
        store.rollup(NOW - 400)
        for tier in TIERS:
            (n,) = backend.sql(
                f"SELECT count(*) FROM {tier.table} "
                "WHERE context_sketch IS NOT NULL AND context_max IS NOT NULL"
            )[0]
            assert n > 0, tier.table
        # Buckets of each tier's period: every tier answers its own (the raw tail the last).
        for step in (60, 3600, 21600, DAY):
            values: dict[int, list[float]] = {}
            for r in results:
                ts = r.timestamp.timestamp()
                if ts < NOW and r.context_utilization is not None:
                    values.setdefault(int(ts // step * step), []).append(r.context_utilization)
            got = store.summarize(T0, NOW, group_by="bucket", step_s=step)
            assert {k for k, s in got.items() if s.context} == set(values)
            for bucket, summary in got.items():
                assert_context(summary, values.get(int(bucket), []))
        # And a span of every tier at once, per target.
        by_target = store.summarize(T0 + 1800.5, NOW - 10, group_by="target")
        for target, summary in by_target.items():
            assert_context(
                summary,
                [
                    r.context_utilization
                    for r in results
                    if r.target == target
                    and T0 + 1800.5 <= r.timestamp.timestamp() < NOW - 10
                    and r.context_utilization is not None
                ],
            )


def test_rollups_from_before_context_utilization_keep_their_rows(backend):
    old = with_context(history(1.3, seed=3), seed=3)
    first = T0 + DAY + 1800  # mid-hour: the next rollup merges old minutes with new ones
    with backend.open() as store:
        store.write_results(old)
        store.rollup(first)
        want = store.totals(T0, first, step_s=3600)
    # The database as revision 0002 left it: no context columns in the rollups.
    for tier in TIERS:
        backend.sql(f"ALTER TABLE {tier.table} DROP COLUMN context_sketch")
        backend.sql(f"ALTER TABLE {tier.table} DROP COLUMN context_max")
    # ... nor revision 0004's attribution.
    backend.sql("DROP TABLE spend_daily")
    backend.sql("DROP TABLE spend_hourly")
    backend.sql("ALTER TABLE rollup_state DROP COLUMN spend_watermark_ts")
    backend.sql("ALTER TABLE rollup_state DROP COLUMN spend_hour_watermark_ts")
    backend.sql("DROP TABLE gateway_keys")  # ... nor revision 0005's
    columns = ("key_name", "team", "end_user", "tags", "session_id")
    revision_6 = ("probe_kind", "answer_excerpt", "embedding_dimensions")
    revision_7 = ("route", "fallback_reason", "features", "drill")
    for column in (*columns, *revision_6, *revision_7):  # ... nor revisions 0006 and 0007's
        backend.sql(f"ALTER TABLE results DROP COLUMN {column}")
    backend.sql("DROP TABLE breaker_events")  # ... nor revision 0009's
    backend.sql("UPDATE alembic_version SET version_num = '0002'")
    with backend.open() as store:
        assert store.schema_version() == int(migrations.HEAD)
        for tier in TIERS:
            (n,) = backend.sql(
                f"SELECT count(*) FROM {tier.table} "
                "WHERE context_sketch IS NOT NULL OR context_max IS NOT NULL"
            )[0]
            assert n == 0, tier.table
        assert_totals_equal(store.totals(T0, first, step_s=3600), want)
        # Rolled up before: no bins, no maximum, though their raw rows had windows.
        day0 = store.summarize(T0, T0 + DAY)[""]
        assert day0.total > 0 and day0.context == {} and day0.context_max is None
        new = [
            at(first + 60 * i + 5, "a", context_window=128000, usage=Usage(input_tokens=999 * i))
            for i in range(40)
        ]
        store.write_results(new)
        store.rollup(T0 + 2 * DAY)
        # Day 1 from the daily tier: hours rolled up before without bins, merged with those
        # rolled up since (the new results, and the old ones not rolled up before).
        day1 = store.summarize(T0 + DAY, T0 + 2 * DAY)[""]
        assert day1.total == len(new) + sum(r.timestamp.timestamp() >= T0 + DAY for r in old)
        since = [r for r in old + new if r.timestamp.timestamp() >= first]
        values = [r.context_utilization for r in since if r.context_utilization is not None]
        assert len(values) > len(new)
        assert_context(day1, values)


def test_metric_bins_per_bucket_and_source(backend):
    def ctx(ts: float, tokens: int, window: int | None, target: str = "a", **kw) -> CheckResult:
        return at(ts, target, usage=Usage(input_tokens=tokens), context_window=window, **kw)

    results = [
        ctx(T0 + 10, 12, 128000),
        ctx(T0 + 20, 24, 128000),
        ctx(T0 + 30, 64000, 128000, source=Source.TRAFFIC),
        ctx(T0 + 40, 0, 128000, source=Source.TRAFFIC),  # 0: counted, in the zero bin
        ctx(T0 + 50, 5000, None, source=Source.TRAFFIC),  # no window: nothing
        ctx(T0 + 70, 120000, 128000, source=Source.TRAFFIC, region="eu-west"),
        ctx(T0 + 80, 500, 128000, target="b"),
    ]
    with backend.open() as store:
        store.write_results(results)
        got = store.metric_bins(
            T0, T0 + 120, 60, "context", group_by="source", where=ResultFilter(target="a")
        )
        assert {k: (sum(b.values()), m) for k, (b, m) in got.items()} == {
            (T0, "probe"): (2, 24 / 128000),
            (T0, "traffic"): (2, 0.5),
            (T0 + 60, "traffic"): (1, 120000 / 128000),
        }
        assert quantiles(got[(T0, "traffic")][0], (0.0,)) == [0.0]
        by_region = store.metric_bins(T0, T0 + 120, 120, "ttft", group_by="region")
        assert {k: sum(b.values()) for k, (b, _) in by_region.items()} == {
            (T0, ""): 6, (T0, "eu-west"): 1
        }  # fmt: skip
        with pytest.raises(ValueError, match="no metric"):
            store.metric_bins(T0, T0 + 120, 60, "ttft_ms; DROP TABLE results")


def test_costs_by_owner_and_source(backend):
    traffic = [
        at(T0 + 10, "a", source=Source.TRAFFIC, cost_usd=0.5, key_name="k1", team="t",
           user="u1", tags=["feature=search", "env=prod"], usage=Usage(10, 2)),
        at(T0 + 20, "b", source=Source.TRAFFIC, cost_usd=0.25, key_name="k2", team="t",
           user="u2", tags=["feature=search"], usage=Usage(5, 1)),
        at(T0 + 30, "a", source=Source.TRAFFIC, cost_usd=1.0, key_name="k1", usage=Usage(1, 1)),
    ]  # fmt: skip
    probe = at(T0 + 40, "a", cost_usd=0.125, usage=Usage(3, 3))
    with backend.open() as store:
        store.write_results([*traffic, probe, at(T0 + 3600, "a", cost_usd=9.0)])

        def rows(by, **kw):
            got = store.costs(by, T0, T0 + 60, **kw)
            return sorted(
                ((r.name, r.source, r.cost_usd, r.requests, r.input_tokens, r.output_tokens)
                 for r in got), key=repr,
            )  # fmt: skip

        assert rows("key") == sorted(
            [("k1", "traffic", 1.5, 2, 11, 3), ("k2", "traffic", 0.25, 1, 5, 1),
             (None, "probe", 0.125, 1, 3, 3)], key=repr,
        )  # fmt: skip
        assert rows("team", source="traffic") == sorted(
            [("t", "traffic", 0.75, 2, 15, 3), (None, "traffic", 1.0, 1, 1, 1)], key=repr
        )
        assert rows("tag", source="traffic") == sorted(
            [("feature=search", "traffic", 0.75, 2, 15, 3), ("env=prod", "traffic", 0.5, 1, 10, 2),
             (None, "traffic", 1.0, 1, 1, 1)], key=repr,
        )  # fmt: skip
        assert rows("user", source="probe") == [(None, "probe", 0.125, 1, 3, 3)]
        assert {r[0]: r[2] for r in rows("model", source="traffic")} == {
            "gpt-a": 1.5,
            "gpt-b": 0.25,
        }
        assert rows("provider") == [
            ("openai", "probe", 0.125, 1, 3, 3),
            ("openai", "traffic", 1.75, 3, 16, 4),
        ]
        (back,) = [r for r in store.latest_results(10) if r.user == "u1"]
        assert back.tags == ["feature=search", "env=prod"] and back.key_name == "k1"


# --- Daily spend rollups ---------------------------------------------------------------------


def spend_history(days: float, seed: int = 7, users: int = 6) -> list[CheckResult]:
    """Traffic from a few keys, teams, users and tags, and probes, every ~17 minutes."""
    rng = random.Random(seed)
    out = []
    for i in range(int(days * DAY / 1000)):
        ts = T0 + i * 1000 + rng.random() * 900
        if rng.random() < 0.25:
            out.append(at(ts, rng.choice(["a", "b"]), cost_usd=rng.choice([0.01, None]),
                          usage=Usage(rng.randint(1, 9), rng.randint(1, 9))))  # fmt: skip
            continue
        key = rng.choice(["k1", "k2", "k3", None])
        team = {"k1": "search", "k2": "search", "k3": "ads"}.get(key or "")
        traffic = at(
            ts, rng.choice(["a", "b"]), source=Source.TRAFFIC,
            cost_usd=round(rng.random() * (10 if key == "k1" else 1), 4), key_name=key, team=team,
            user=rng.choice([f"u{n}" for n in range(users)] + [None]),
            tags=rng.sample(["feature=search", "env=prod", "env=dev"], rng.randint(0, 2)),
            usage=Usage(rng.randint(10, 99), rng.randint(1, 30)),
        )  # fmt: skip
        out.append(traffic)
    return out


def expected_costs(results, by, lo, hi, source=None):
    """Spend per (name, source) from the results themselves: what the store must report."""
    out: dict[tuple, list] = {}
    for r in results:
        ts = r.timestamp.timestamp()
        if not lo <= ts < hi or (source is not None and str(r.source) != source):
            continue
        if by == "tag":
            names = r.tags or [None]
        elif by == "day":
            names = [r.timestamp.strftime("%Y-%m-%d")]
        else:
            names = [{"key": r.key_name, "team": r.team, "user": r.user, "model": r.model,
                      "provider": r.provider}[by]]  # fmt: skip
        for name in names:
            e = out.setdefault((name, str(r.source)), [0.0, 0, 0, 0])
            e[0] += r.cost_usd or 0.0
            e[1] += 1
            e[2] += r.usage.input_tokens or 0
            e[3] += r.usage.output_tokens or 0
    return out


def reported(rows):
    return {(r.name, r.source): [r.cost_usd, r.requests, r.input_tokens, r.output_tokens]
            for r in rows}  # fmt: skip


def assert_costs_equal(got, want):
    assert got.keys() == want.keys()
    for k, (cost, *counts) in want.items():
        assert got[k][0] == pytest.approx(cost, rel=1e-9, abs=1e-12), k
        assert got[k][1:] == counts, k


def test_spend_rollup_reports_what_raw_results_do(backend):
    results = spend_history(3.6)
    now = T0 + 3.6 * DAY
    ranges = [
        (T0, T0 + 3 * DAY),  # whole days: from the rollup
        (T0 + 0.3 * DAY, T0 + 2.7 * DAY),  # partial edges from raw rows
        (T0 + 0.5 * DAY, now),  # and today, not rolled up
        (T0 + 1.2 * DAY, T0 + 1.4 * DAY),  # inside one day
        (T0 - DAY, T0 + 10 * DAY),
    ]
    with backend.open() as store:
        store.write_results(results)
        before = {
            (by, r, s): reported(store.costs(by, *r, source=s))
            for by in COST_BY for r in ranges for s in (None, "traffic")
        }  # fmt: skip
        store.rollup(now)
        (days,) = backend.sql("SELECT count(DISTINCT day) FROM spend_daily")[0]
        assert days == 3  # the complete days only
        # Today's whole hours, with every name: a report reads at most an hour of raw rows.
        hourly = "SELECT min(hour), max(hour), count(DISTINCT hour) FROM spend_hourly"
        hours = backend.sql(f"{hourly} WHERE dimension = 'user'")
        assert hours == [(T0 + 3 * DAY, T0 + 3 * DAY + 13 * 3600, 14)]
        # Keys, teams, models and providers per hour from the first result on (as long as
        # the longest rolling budget): a budget's window starts at any hour.
        hours = backend.sql(f"{hourly} WHERE dimension = 'team'")
        assert hours == [(T0, T0 + 3 * DAY + 13 * 3600, 3 * 24 + 14)]
        for by in COST_BY:
            for lo, hi in ranges:
                for source in (None, "traffic", "probe"):
                    report = store.cost_report(by, lo, hi, source=source)
                    assert report.exact and (report.start_ts, report.end_ts) == (lo, hi)
                    want = expected_costs(results, by, lo, hi, source)
                    assert_costs_equal(reported(report.rows), want)
                    if source != "probe":
                        assert_costs_equal(before[(by, (lo, hi), source)], want)
        # Any range: whole days, whole hours of today and raw edges add up to the results.
        rng = random.Random(3)
        for _ in range(40):
            lo = T0 + rng.random() * 3.6 * DAY
            hi = lo + rng.random() * (now - lo)
            by = rng.choice(COST_BY)
            report = store.cost_report(by, lo, hi)
            assert report.exact
            assert_costs_equal(reported(report.rows), expected_costs(results, by, lo, hi))
        # Probes name no owner; they stay apart from traffic under every dimension.
        keys = reported(store.costs("key", T0, now))
        assert {n for n, s in keys if s == "probe"} == {None}
        assert {n for n, s in keys if s == "traffic"} == {"k1", "k2", "k3", None}
        # Sorted by spend, largest first.
        rows = store.costs("key", T0, now, source="traffic")
        assert rows[0].name == "k1" and [r.cost_usd for r in rows] == sorted(
            (r.cost_usd for r in rows), reverse=True
        )


def test_spend_rollup_day_boundaries_and_late_results(backend):
    midnight = T0 + DAY
    results = [
        at(midnight - 0.001, source=Source.TRAFFIC, key_name="k", cost_usd=1.0),
        at(midnight, source=Source.TRAFFIC, key_name="k", cost_usd=2.0),  # the next day's
        at(midnight + DAY - 1, source=Source.TRAFFIC, key_name="k", cost_usd=4.0),
    ]
    with backend.open() as store:
        store.write_results(results)
        store.rollup(midnight + DAY)
        assert backend.sql("SELECT day, cost_usd FROM spend_daily WHERE dimension = 'key' "
                           "ORDER BY day") == [(T0, 1.0), (midnight, 6.0)]  # fmt: skip
        assert [(r.name, r.cost_usd) for r in store.costs("day", T0, midnight + DAY)] == [
            ("2026-11-02", 6.0),
            ("2026-11-01", 1.0),
        ]
        # A result arriving late for a day rolled up already: the day is rolled up again.
        store.write_results([at(T0 + 5, source=Source.TRAFFIC, key_name="k", cost_usd=8.0)])
        store.rollup(midnight + DAY + 60)
        assert [(r.name, r.cost_usd) for r in store.costs("key", T0, midnight)] == [("k", 9.0)]
        assert backend.sql(
            f"SELECT cost_usd FROM spend_daily WHERE dimension = 'key' AND day = {T0}"
        ) == [(9.0,)]
        # Today so far is rolled up per hour; a late result changes its hour too.
        today = midnight + DAY
        store.write_results([at(today + 30, source=Source.TRAFFIC, key_name="k", cost_usd=16.0)])
        store.rollup(today + 7200)
        hourly = (
            f"SELECT hour, cost_usd FROM spend_hourly WHERE dimension = 'key' AND hour >= {today} "
            "ORDER BY hour"
        )
        assert backend.sql(hourly) == [(today, 16.0)]
        store.write_results([at(today + 40, source=Source.TRAFFIC, key_name="k", cost_usd=32.0)])
        store.rollup(today + 7260)
        assert backend.sql(hourly) == [(today, 48.0)]
        assert [(r.name, r.cost_usd) for r in store.costs("key", today, today + 7200)] == [
            ("k", 48.0)
        ]
        # Once the day is rolled up, its hours of users and tags go; keys' stay.
        store.rollup(today + DAY)
        assert backend.sql(hourly) == [(today, 48.0)]
        ranked = f"SELECT count(*) FROM spend_hourly WHERE hour < {today + DAY} AND dimension "
        assert backend.sql(ranked + "IN ('user', 'tag')") == [(0,)]
        assert [(r.name, r.cost_usd) for r in store.costs("key", today, today + DAY)] == [
            ("k", 48.0)
        ]
        # Idempotent: rolling up again changes nothing.
        store.rollup(midnight + DAY + 60)
        (n,) = backend.sql("SELECT count(*) FROM spend_daily")[0]
        store.rollup(midnight + DAY + 120)
        assert backend.sql("SELECT count(*) FROM spend_daily")[0] == (n,)


def test_spend_rollup_keeps_the_top_n_users_and_tags_per_day(backend):
    results = spend_history(2.0, seed=11, users=9)
    with backend.open() as store:
        store.write_results(results)
        store.rollup(T0 + 2 * DAY, spend_top_n=3)
        for day in (T0, T0 + DAY):
            for by in ("user", "tag"):
                for source in ("traffic", "probe"):
                    want = expected_costs(results, by, day, day + DAY, source)
                    named = sorted(
                        ((k, v) for k, v in want.items() if k[0] is not None),
                        key=lambda kv: (-kv[1][0], -kv[1][1], kv[0][0]),
                    )
                    rows = backend.sql(
                        "SELECT name, other, cost_usd, requests FROM spend_daily WHERE "
                        f"dimension = '{by}' AND day = {day} AND source = '{source}'"
                    )
                    kept = {name for name, other, _, _ in rows if not other and name}
                    assert kept == {k[0] for k, _ in named[:3]}
                    rest = [v for _, v in named[3:]]
                    others = [(c, n) for _, other, c, n in rows if other]
                    if rest:
                        (cost, n), = others  # fmt: skip
                        assert cost == pytest.approx(sum(v[0] for v in rest))
                        assert n == sum(v[1] for v in rest)
                    else:
                        assert others == []
        # The report sums whole days from the rollup: totals stay exact, the names past the
        # top 3 are in "other", and the report says it is not exact per name.
        report = store.cost_report("user", T0, T0 + 2 * DAY, source="traffic")
        assert not report.exact
        other = [r for r in report.rows if r.other]
        assert len(other) == 1 and other[0].name is None
        want = expected_costs(results, "user", T0, T0 + 2 * DAY, "traffic")
        assert sum(r.cost_usd for r in report.rows) == pytest.approx(
            sum(v[0] for v in want.values())
        )
        assert sum(r.requests for r in report.rows) == sum(v[1] for v in want.values())
        # Keys are never bucketed.
        assert store.cost_report("key", T0, T0 + 2 * DAY).exact
        with pytest.raises(ValueError, match="spend_top_n"):
            store.rollup(T0 + 2 * DAY, spend_top_n=0)


def test_spend_edges_past_raw_retention_are_whole_days(backend):
    results = spend_history(4.0, seed=5)
    now = T0 + 4 * DAY
    with backend.open() as store:
        store.write_results(results)
        store.prune(now, raw_retention_s=2.5 * DAY)  # raw rows before T0 + 1.5 days are gone
        report = store.cost_report("user", T0 + 0.5 * DAY, T0 + 1.25 * DAY)
        # Both edges fall in pruned days: read whole from the rollup, and said so.
        assert (report.start_ts, report.end_ts) == (T0, T0 + 2 * DAY) and not report.exact
        assert_costs_equal(reported(report.rows), expected_costs(results, "user", T0, T0 + 2 * DAY))
        # Teams (keys, models, providers) are kept per hour: whole hours are exact, and a
        # pruned partial hour is read whole.
        report = store.cost_report("team", T0 + 0.5 * DAY, T0 + 1.25 * DAY)
        assert (report.start_ts, report.end_ts) == (T0 + 0.5 * DAY, T0 + 1.25 * DAY)
        assert report.exact
        want = expected_costs(results, "team", T0 + 0.5 * DAY, T0 + 1.25 * DAY)
        assert_costs_equal(reported(report.rows), want)
        report = store.cost_report("team", T0 + 0.5 * DAY + 60, T0 + 1.25 * DAY + 60)
        assert (report.start_ts, report.end_ts) == (T0 + 0.5 * DAY, T0 + 1.25 * DAY + 3600)
        assert not report.exact
        want = expected_costs(results, "team", T0 + 0.5 * DAY, T0 + 1.25 * DAY + 3600)
        assert_costs_equal(reported(report.rows), want)
        # Any range of the kept dimensions, pruned or not: widened by less than an hour.
        rng = random.Random(7)
        for _ in range(30):
            lo = T0 + rng.random() * 4 * DAY
            hi = lo + rng.random() * (now - lo)
            by = rng.choice(("key", "team", "model", "provider", "day"))
            report = store.cost_report(by, lo, hi)
            assert lo - 3600 < report.start_ts <= lo and hi <= report.end_ts < hi + 3600
            want = expected_costs(results, by, report.start_ts, report.end_ts)
            assert_costs_equal(reported(report.rows), want)
        # An edge in a day whose raw rows are all there is exact.
        report = store.cost_report("team", T0 + 1.0 * DAY, T0 + 3.3 * DAY)
        assert report.exact
        assert_costs_equal(
            reported(report.rows), expected_costs(results, "team", T0 + DAY, T0 + 3.3 * DAY)
        )
        # Daily spend is kept as long as the other rollups.
        store.prune(now, raw_retention_s=2.5 * DAY, rollup_retention_s=2 * DAY)
        assert backend.sql("SELECT min(day) FROM spend_daily") == [(T0 + 2 * DAY,)]


def test_daily_spend_is_whole_when_raw_results_are_kept_less_than_a_day(backend):
    """With ``raw_retention`` under a day, the morning's raw rows are pruned before the day
    completes: the day's spend must still count them (from its hourly rollup)."""
    results = spend_history(1.0, seed=11)
    with backend.open() as store:
        t = T0
        while t <= T0 + DAY + 3600:
            store.write_results([r for r in results if t - 3600 <= r.timestamp.timestamp() < t])
            store.prune(t, raw_retention_s=2 * 3600)  # hourly, as the daemon does
            t += 3600
        for by in COST_BY:
            report = store.cost_report(by, T0, T0 + DAY)
            assert report.exact, by
            assert_costs_equal(reported(report.rows), expected_costs(results, by, T0, T0 + DAY))


# --- Correctness: answers that failed an expectation, counted in every tier ------------------


def test_assertions_roll_up_through_every_tier_and_give_the_correct_rate(backend):
    """A custom probe's wrong answers (``assertion``) are counted per bucket at every tier, so
    correct_rate = ok / (ok + assertion) is the same from raw rows and from rollups, and they
    never count against availability or the error rate."""
    rng = random.Random(7)
    probe = []
    for i in range(int(4.31 * DAY // 420)):
        wrong = rng.random() < 0.3
        probe.append(
            at(
                T0 + i * 420 + rng.uniform(0, 60),
                "a",
                check="capital",
                kind=CheckKind.INFERENCE,
                ok=not wrong,
                error_class=ErrorClass.ASSERTION if wrong else None,
                answer_excerpt="Lyon" if wrong else "Paris",
            )
        )
    results = history(4.31, seed=9) + probe
    with backend.open() as store:
        store.write_results(results)
        store.rollup(NOW - 400)
        for step in (60, 3600, 21600, DAY):
            want: dict[int, list[int]] = {}
            for r in probe:
                ts = r.timestamp.timestamp()
                if ts < NOW:
                    counts = want.setdefault(int(ts // step * step), [0, 0])
                    counts[0 if r.ok else 1] += 1
            got = store.summarize(
                T0, NOW, group_by="bucket", step_s=step, where=ResultFilter(check="capital")
            )
            assert {int(k): [s.ok, s.assertions] for k, s in got.items()} == want, step
        answered = [r for r in probe if r.timestamp.timestamp() < NOW]
        ok = sum(r.ok for r in answered)
        for window in ("1h", "30d"):  # exact from raw rows; merged from every tier
            span = queries.WINDOWS[window]
            agg = queries.aggregate(store, span, now=NOW, check="capital")
            inside = [r for r in answered if r.timestamp.timestamp() >= NOW - span]
            good = sum(r.ok for r in inside)
            assert agg.correct_rate == pytest.approx(good / len(inside)), window
            assert agg.availability == 1.0 and agg.error_rate == 0.0
            assert agg.errors == {"assertion": len(inside) - good}
        overall = queries.aggregate(store, 30 * DAY, now=NOW, target="a")
        others = [r for r in results if r.target == "a" and r.timestamp.timestamp() < NOW]
        assert overall.correct_rate == pytest.approx(
            sum(r.ok for r in others)
            / sum(r.ok or r.error_class is ErrorClass.ASSERTION for r in others)
        )
        assert ok < len(answered)
        # Built-in checks only: nothing asserted, every answer correct.
        stream = queries.aggregate(store, 30 * DAY, now=NOW, check="stream")
        assert stream.correct_rate == 1.0
        latest = store.latest_results(limit=1, where=ResultFilter(check="capital"))[0]
        assert latest.kind is CheckKind.INFERENCE and latest.check == "capital"
        # The latest wrong answer, from the raw rows (rollups keep no single result's class).
        wrong = ResultFilter(check="capital", error_class="assertion")
        (last_wrong,) = store.latest_results(limit=1, where=wrong)
        assert last_wrong.timestamp == max(r.timestamp for r in probe if not r.ok)
        assert last_wrong.answer_excerpt == "Lyon"
