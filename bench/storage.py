"""Storage backends side by side: ingest rate and 30-day aggregate queries, SQLite and PostgreSQL.

For each backend: ``write_results`` throughput in daemon-sized batches of real
``CheckResult``s (the daemon flushes what a tick measured; 500 per batch here, as in the
metrics benchmark), then 30 days of history for 100 targets (a check every 5 minutes each,
864,000 results, written through the store's own batched ingest), rolled up, and the queries
the dashboard makes of it: ``aggregate_by_target`` over 30 days, one target's 30-day series
at the web's 6-hour step, and an overview-like read (newest result per target, 1-hour
aggregates of every target, today's totals). Goals: ≥ 20,000 results/s ingest, the overview
under 100 ms and a 30-day series under 300 ms, on both.

PostgreSQL runs in a fresh schema of ``$LLMPULSE_BENCH_POSTGRES`` (default: the test server,
postgresql://postgres@127.0.0.1:5432/test), dropped afterwards; skipped when unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.common import report
from llmpulse.config.storage import redact_url
from llmpulse.errors import ErrorClass
from llmpulse.result import CheckKind, CheckResult, RateLimit, Usage
from llmpulse.store import Store, open_store, queries

POSTGRES_URL = os.environ.get(
    "LLMPULSE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
TARGETS = 100
DAYS = 30
INTERVAL_S = 300
BATCH = 500
INGEST_RESULTS = 100_000
PROVIDERS = ("openai", "anthropic", "gemini", "groq", "mistral")
GOALS = (
    ("ingest_per_s", 20_000, "ingest (results/s)", False),
    ("overview_ms", 100, "overview", True),
    ("series_one_30d_ms", 300, "30-day series of one target", True),
)


def results(count: int, start: float, step_s: float, seed: int) -> Iterator[CheckResult]:
    """``count`` results round-robin over the targets, ``step_s`` apart in all."""
    rng = random.Random(seed)
    for i in range(count):
        target = i % TARGETS
        failed = rng.random() < 0.02
        yield CheckResult(
            target=f"target-{target:03d}",
            provider=PROVIDERS[target % len(PROVIDERS)],
            model=f"model-{target}",
            check=CheckKind.STREAM,
            timestamp=datetime.fromtimestamp(start + i * step_s, UTC),
            ok=not failed,
            error_class=ErrorClass.UNAVAILABLE if failed else None,
            http_status=503 if failed else 200,
            latency_ms=rng.uniform(300, 900),
            ttft_ms=None if failed else rng.uniform(100, 400),
            tokens_per_s=None if failed else rng.uniform(40, 120),
            # Prompts of a few to 100k tokens of a 128k window: context utilization's sketch.
            usage=Usage()
            if failed
            else Usage(input_tokens=int(rng.lognormvariate(7, 2)) % 100_000, output_tokens=48),
            context_window=128_000,
            cost_usd=None if failed else 2.5e-5,
            ratelimit=RateLimit(500, 499, 200000, 199000, rng.random(), 0.12),
            response_model=f"model-{target}-2024",
            request_id=f"req-{i}",
        )


def write(store: Store, batches: Iterator[CheckResult]) -> tuple[int, float]:
    """Write in batches of ``BATCH``; the count and the seconds spent in ``write_results``."""
    count, spent, batch = 0, 0.0, []
    for r in batches:
        batch.append(r)
        if len(batch) == BATCH:
            t = time.perf_counter()
            store.write_results(batch)
            spent += time.perf_counter() - t
            count += len(batch)
            batch = []
    if batch:
        t = time.perf_counter()
        store.write_results(batch)
        spent += time.perf_counter() - t
        count += len(batch)
    return count, spent


def timed(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time in milliseconds."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def overview(store: Store, now: float) -> None:
    """What the dashboard's overview asks of the results store."""
    store.latest_per_target()
    queries.aggregate_by_target(store, queries.WINDOWS["1h"], now)
    store.totals(now // 86400 * 86400, now, by="target")


def measure(name: str, location: str, now: float) -> dict[str, float]:
    figures: dict[str, float] = {}
    with open_store(location) as store:
        # Ingest: a fresh day of results well before the history, then removed by pruning.
        n, spent = write(store, results(INGEST_RESULTS, now - 40 * 86400, 0.6, seed=1))
        figures["ingest_per_s"] = n / spent
        print(f"{name}: ingest {figures['ingest_per_s']:,.0f} results/s (batches of {BATCH})")
        store.prune(now - 35 * 86400, raw_retention_s=0, rollup_retention_s=0)

        count = TARGETS * DAYS * 86400 // INTERVAL_S
        start = now - DAYS * 86400
        t = time.perf_counter()
        write(store, results(count, start, INTERVAL_S / TARGETS, seed=2))
        figures["history_write_s"] = time.perf_counter() - t
        t = time.perf_counter()
        store.rollup(now)
        figures["rollup_s"] = time.perf_counter() - t
        print(
            f"{name}: {count:,} results of history written in {figures['history_write_s']:.1f}s, "
            f"rolled up in {figures['rollup_s']:.1f}s"
        )
        month = DAYS * 86400
        figures["aggregate_all_30d_ms"] = timed(
            lambda: queries.aggregate_by_target(store, month, now)
        )
        figures["series_one_30d_ms"] = timed(
            lambda: queries.series(store, "target-000", month, 6 * 3600, now=now)
        )
        figures["overview_ms"] = timed(lambda: overview(store, now))
        figures["latest_per_target_ms"] = timed(store.latest_per_target)
    return {f"{name}_{k}": v for k, v in figures.items()}


@contextlib.contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A fresh schema's URL, dropped afterwards; None when no server answers."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"postgresql: skipped, unreachable at {redact_url(POSTGRES_URL)}: {exc}")
        yield None
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in POSTGRES_URL else "?"
        try:
            yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench storage", description=__doc__)
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    # Mid-minute, so the windows end with a raw tail after the rollup watermark.
    now = datetime(2026, 11, 27, 12, 0, 42, tzinfo=UTC).timestamp()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures |= measure("sqlite", str(Path(tmp) / "s.db"), now)
    with postgres_schema() as url:
        if url is not None:
            figures |= measure("postgresql", url, now)
    report(
        "storage",
        figures,
        lower_is_better={k for k in figures if not k.endswith("_per_s")},
        save=args.save_baseline,
    )
    met = True
    for backend in ("sqlite", "postgresql"):
        for key, goal, what, lower in GOALS:
            value = figures.get(f"{backend}_{key}")
            if value is None:
                continue
            ok = value < goal if lower else value >= goal
            met &= ok
            print(f"goal ({backend}: {what} {'<' if lower else '≥'} {goal:,}): "
                  f"{'met' if ok else 'MISSED'}")  # fmt: skip
    return 0 if met else 1
