"""Rolling-metric queries over a month of history: do long windows stay fast?

Builds a temporary SQLite store holding 50 targets checked every 30 s for 30 days (~4.3 M
results), rolls it up, and times what the daemon and the dashboard ask of it: ``aggregate``
per window for one target and for all targets (``aggregate_by_target``), chart ``series`` at
the dashboard's steps, ``totals`` (today, and daily over 90 days), ``latest_per_target`` and
``model_changes``. Goals: a 30-day aggregate of one target under 300 ms; for the dashboard,
``aggregate_by_target`` over 1 h under 25 ms, a 30-day series of one target under 100 ms,
daily totals of 90 days under 50 ms and today's totals under 10 ms.

The month of raw results is generated inside SQLite by one INSERT ... SELECT (building 4.3 M
``CheckResult`` objects in Python would take minutes) into a database of the first schema
version, which the store then migrates (filling ``model_changes`` from the raw rows: a fifth
of the targets change model after 20 days). The ``write_results`` path is timed on its own
with real ``CheckResult`` batches, as the daemon writes them. Raw rows are kept for the whole
month here (more than the default 7-day retention) so that ``rollup`` is timed on all of it;
queries longer than an hour read rollups either way.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.common import report
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import SQLiteStore, queries
from llmpulse.store.migrations.legacy_sqlite import SCRIPTS as LEGACY_SCRIPTS

INTERVAL_S = 30
PROVIDERS = ("openai", "anthropic", "gemini", "groq", "mistral")
# (window, seconds, step): the chart series the web layer asks for.
SERIES = (("1h", 3600, 60), ("24h", 86400, 900), ("7d", 604800, 3600), ("30d", 2592000, 21600))
GOALS = (
    ("aggregate_one_30d_ms", 300, "30-day aggregate of one target"),
    ("aggregate_all_1h_ms", 25, "1-hour aggregates of every target"),
    ("series_one_30d_ms", 100, "30-day series of one target"),
    ("totals_90d_daily_ms", 50, "90 days of daily totals"),
    ("totals_today_ms", 10, "today's totals"),
)


def generate(store_path: Path, targets: int, days: int, now: float) -> int:
    """Insert ``targets`` × ``days`` of 30-second checks ending at ``now``; return the count."""
    n = days * 86400 // INTERVAL_S
    start = now - n * INTERVAL_S
    db = sqlite3.connect(store_path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("CREATE TEMP TABLE t (i INTEGER, name TEXT, provider TEXT)")
    db.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [(i, f"target-{i:02d}", PROVIDERS[i % len(PROVIDERS)]) for i in range(targets)],
    )
    # r: one uniform draw per row in [0, 1e6) decides errors; the others shape the values.
    # ~1 % unavailable, ~1 % rate_limited, the rest ok; lognormal-ish latency via exp();
    # prompts of 12 to 100k tokens of a 128k context window.
    db.execute("BEGIN")
    db.execute(
        f"""
        WITH RECURSIVE seq(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM seq WHERE k < {n - 1}),
        rows AS (
            SELECT {start} + k * {INTERVAL_S} + t.i * 0.5 AS ts, k, t.name, t.provider, t.i,
                   abs(random()) % 1000000 AS r, abs(random()) % 1000000 / 1e6 AS u,
                   abs(random()) % 1000000 / 1e6 AS v
            FROM seq CROSS JOIN t
        )
        INSERT INTO results (ts, target, provider, model, check_kind, ok, error_class,
                             http_status, latency_ms, ttft_ms, tokens_per_s, input_tokens,
                             output_tokens, cost_usd, rl_utilization, response_model,
                             context_window)
        SELECT ts, name, provider, 'model-' || i, 'stream',
               r >= 20000,
               CASE WHEN r < 10000 THEN 'unavailable' WHEN r < 20000 THEN 'rate_limited' END,
               CASE WHEN r < 10000 THEN 503 WHEN r < 20000 THEN 429 ELSE 200 END,
               300 * exp(u) + 20 * i,
               CASE WHEN r >= 20000 THEN 150 * exp(v) + 5 * i END,
               CASE WHEN r >= 20000 THEN 40 + 80 * u END,
               CASE WHEN r >= 20000 THEN 12 + r % 100000 END,
               CASE WHEN r >= 20000 THEN 40 + (r % 25) END,
               CASE WHEN r >= 20000 THEN 2.5e-5 END,
               (r % 1000) / 1000.0,
               'model-' || i || CASE WHEN i % 5 = 0 AND k >= {n * 2 // 3} THEN '-v2' ELSE '' END,
               128000
        FROM rows ORDER BY ts
        """
    )
    db.execute("COMMIT")
    count = db.execute("SELECT count(*) FROM results").fetchone()[0]
    db.close()
    return int(count)


def write_throughput(path: Path, total: int, batch: int) -> float:
    """Results per second through ``write_results`` in daemon-sized batches."""
    rng = random.Random(1)
    base = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    results = [
        CheckResult(
            target=f"target-{i % 50:02d}",
            provider="openai",
            model="gpt-4o-mini",
            check=CheckKind.STREAM,
            timestamp=datetime.fromtimestamp(base + i * 0.6, UTC),
            ok=i % 50 != 0,
            error_class=ErrorClass.UNAVAILABLE if i % 50 == 0 else None,
            http_status=200,
            latency_ms=rng.uniform(300, 900),
            ttft_ms=rng.uniform(100, 400),
            tokens_per_s=rng.uniform(40, 120),
            itl_p50_ms=12.0,
            itl_max_ms=40.0,
            usage=Usage(input_tokens=12, output_tokens=48, cached_tokens=0, reasoning_tokens=0),
            cost_usd=2.5e-5,
            ratelimit=RateLimit(500, 499, 200000, 199000, 0.005, 0.12),
            response_model="gpt-4o-mini-2024-07-18",
            request_id=f"req-{i}",
            finish_reason="length",
        )
        for i in range(total)
    ]
    with SQLiteStore(path) as store:
        t = time.perf_counter()
        for i in range(0, total, batch):
            store.write_results(results[i : i + batch])
        return total / (time.perf_counter() - t)


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time in milliseconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench metrics", description=__doc__)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures["write_results_per_s"] = write_throughput(Path(tmp) / "w.db", 50_000, 500)
        print(f"write_results: {figures['write_results_per_s']:,.0f} results/s (batches of 500)")

        path = Path(tmp) / "m.db"
        db = sqlite3.connect(path)  # the first legacy schema: the store migrates it
        db.executescript(LEGACY_SCRIPTS[0] + "; PRAGMA user_version = 1;")
        db.close()
        # Mid-minute, so the windows end with a raw tail after the rollup watermark.
        now = datetime(2026, 11, 27, 12, 0, 42, tzinfo=UTC).timestamp()
        t = time.perf_counter()
        count = generate(path, args.targets, args.days, now)
        figures["generate_s"] = time.perf_counter() - t
        figures["results"] = float(count)
        print(
            f"generated {count:,} results ({args.targets} targets × 30 s × {args.days} days) "
            f"directly in SQLite in {figures['generate_s']:.1f}s"
        )
        t = time.perf_counter()
        SQLiteStore(path).close()
        figures["migrate_s"] = time.perf_counter() - t
        print(f"migrated to the latest schema in {figures['migrate_s']:.1f}s")
        with SQLiteStore(path) as store:
            t = time.perf_counter()
            store.rollup(now)
            figures["rollup_s"] = time.perf_counter() - t
            print(f"rollup of {args.days} days: {figures['rollup_s']:.1f}s")
            # The daemon's steady state: a minute of new results, then a rollup call.
            minute = [
                CheckResult(
                    target=f"target-{i % args.targets:02d}",
                    provider="openai",
                    model="m",
                    check=CheckKind.STREAM,
                    timestamp=datetime.fromtimestamp(now + 20 + i * 0.3, UTC),
                    ok=True,
                    latency_ms=400.0 + i,
                    ttft_ms=150.0,
                    tokens_per_s=60.0,
                )
                for i in range(2 * args.targets)
            ]
            store.write_results(minute)
            figures["rollup_next_minute_ms"] = timed(lambda: store.rollup(now + 60), repeat=1)
            one = "target-00"
            for name, window_s in queries.WINDOWS.items():
                figures[f"aggregate_one_{name}_ms"] = timed(
                    lambda w=window_s: queries.aggregate(store, w, now=now, target=one)
                )
            for name, window_s in queries.WINDOWS.items():
                figures[f"aggregate_all_{name}_ms"] = timed(
                    lambda w=window_s: queries.aggregate_by_target(store, w, now=now)
                )
            figures["series_30d_1h_one_ms"] = timed(
                lambda: queries.series(store, one, 30 * 86400, 3600, now=now)
            )
            # The dashboard's charts: one target over each window at the web layer's steps.
            for name, window_s, step_s in SERIES:
                figures[f"series_one_{name}_ms"] = timed(
                    lambda w=window_s, s=step_s: queries.series(store, one, w, s, now=now)
                )
            figures["series_all_30d_ms"] = timed(
                lambda: queries.series(store, None, 30 * 86400, 21600, now=now)
            )
            today = now // 86400 * 86400
            figures["totals_today_ms"] = timed(lambda: store.totals(today, now, step_s=86400))
            figures["totals_90d_daily_ms"] = timed(
                lambda: store.totals(today - 89 * 86400, now, step_s=86400)
            )
            figures["totals_30d_model_daily_ms"] = timed(
                lambda: store.totals(today - 29 * 86400, now, step_s=86400, by="model")
            )
            figures["latest_per_target_ms"] = timed(store.latest_per_target)
            figures["model_changes_30d_ms"] = timed(
                lambda: store.model_changes(None, now - 30 * 86400, now)
            )
            changes = store.model_changes(None, now - 30 * 86400, now)
            print(
                f"model changes over 30d: {sum(c.previous is not None for c in changes)} "
                f"(and {sum(c.previous is None for c in changes)} first models)"
            )
            agg = queries.aggregate(store, 30 * 86400, now=now, target=one)
            print(
                f"{one} over 30d: {agg.count:,} checks, availability {agg.availability:.4f}, "
                f"latency p50/p95/p99 {agg.latency_p50:.0f}/{agg.latency_p95:.0f}/"
                f"{agg.latency_p99:.0f} ms"
            )
    report(
        "metrics_query",
        figures,
        lower_is_better=set(figures) - {"write_results_per_s", "results"},
        save=args.save_baseline,
    )
    met = True
    for figure, limit, what in GOALS:
        ok = figures[figure] < limit
        met = met and ok
        print(f"goal ({what} < {limit} ms): {'met' if ok else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
