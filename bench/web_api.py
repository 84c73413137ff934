"""Dashboard API response times over a month of history: is the dashboard fast with real data?

Builds the same store as ``bench metrics`` (50 targets × one check per 30 s × 30 days ≈ 4.3 M
results), adds a month of gateway traffic (1 M requests from 10,000 users under 20 keys of 5
teams, each request with two of 200 tags), rolls it all up (daily spend included), adds alert
history, then starts ``llmpulse web`` on it as its own process and times HTTP requests to it
with a keep-alive client, as a browser polling the dashboard would. Goals: overview < 100 ms,
a 30-day series of one target < 300 ms, 30 days of spend by user and by tag < 300 ms.

``--db PATH`` keeps the generated store and reuses it on the next run (generation and rollup
take about two minutes).
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from bench.common import report
from bench.metrics_query import PROVIDERS, generate
from llmpulse.alerts.engine import INCIDENT, AlertRecord, fingerprint
from llmpulse.alerts.model import AlertState, Notification
from llmpulse.alerts.state import AlertStateStore, state_paths
from llmpulse.rules import Severity
from llmpulse.store import SQLiteStore

GOALS = {
    "overview_ms": 100.0,
    "series_30d_one_ms": 300.0,
    "costs_by_user_30d_ms": 300.0,
    "costs_by_tag_30d_ms": 300.0,
}
TRAFFIC = 1_000_000
USERS = 10_000
KEYS = 20
TEAMS = 5
# Two tags a request: one of 150 features, one of 50 environments.
FEATURES, ENVIRONMENTS = 150, 50


def generate_traffic(db: Path, requests: int, days: int, now: float) -> int:
    """Insert ``requests`` gateway results spread over ``days`` ending at ``now``, by owner:
    users skewed (a few heavy, many light: user i with weight ~ u³), keys and tags uniform."""
    span = days * 86400
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.execute(
        f"""
        WITH RECURSIVE seq(k) AS (
            SELECT 0 UNION ALL SELECT k + 1 FROM seq WHERE k < {requests - 1}
        ),
        rows AS (
            SELECT {now - span} + k * {span / requests} AS ts, abs(random()) % 1000000 / 1e6 AS u,
                   abs(random()) % {KEYS} AS key, abs(random()) % 1000000 AS r
            FROM seq
        )
        INSERT INTO results (ts, target, provider, model, check_kind, ok, http_status,
                             latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, source,
                             key_name, team, end_user, tags)
        SELECT ts, 'target-' || printf('%02d', r % 50), 'openai', 'model-' || (r % 50),
               'stream', 1, 200, 400 + r % 500, 150 + r % 200, 100 + r % 2000, 20 + r % 400,
               (100 + r % 2000) * 1.5e-7 + (20 + r % 400) * 6e-7, 'traffic',
               'key-' || key, 'team-' || (key % {TEAMS}),
               'user-' || CAST({USERS} * u * u * u AS INTEGER),
               json_array('feature=f' || (r % {FEATURES}), 'env=e' || (r / 7 % {ENVIRONMENTS}))
        FROM rows ORDER BY ts
        """
    )
    conn.execute("COMMIT")
    (count,) = conn.execute("SELECT count(*) FROM results WHERE source = 'traffic'").fetchone()
    conn.close()
    return int(count)


def build(db: Path, targets: int, days: int, now: float) -> None:
    """The month of results, rolled up, plus an incident a day somewhere in the fleet."""
    SQLiteStore(db).close()  # the schema
    t = time.perf_counter()
    count = generate(db, targets, days, now)
    traffic = generate_traffic(db, TRAFFIC, days, now)
    print(f"generated {count:,} results ({traffic:,} traffic) in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    with SQLiteStore(db) as store:
        store.rollup(now)
    print(f"rolled up in {time.perf_counter() - t:.1f}s")
    state = AlertStateStore(state_paths(db)[0])
    records = []
    for day in range(days):
        i = day % targets
        name, provider = f"target-{i:02d}", PROVIDERS[i % len(PROVIDERS)]
        fired = now - (days - day) * 86400 + 3600
        resolved = fired + 900
        record = AlertRecord(
            fingerprint=fingerprint(INCIDENT, name), rule=INCIDENT, target=name,
            provider=provider, severity=Severity.CRITICAL, state=AlertState.RESOLVED,
            fired_at=fired, resolved_at=resolved, notified=True,
            summary="error rate 25% > 20%", lead_rule="error_rate_critical",
        )  # fmt: skip
        records.append(record)
        for status, at in ((AlertState.FIRING, fired), (AlertState.RESOLVED, resolved)):
            state.add_event(
                Notification(
                    status=status, severity=Severity.CRITICAL, rule="error_rate_critical",
                    target=name, provider=provider, summary=record.summary, value=0.25,
                    threshold=0.2, starts_at=datetime.fromtimestamp(fired, UTC),
                    ends_at=datetime.fromtimestamp(at, UTC) if at == resolved else None,
                    fingerprint=record.fingerprint,
                ),
                at,
            )  # fmt: skip
    state.save_records(records, now)
    state.close()


def config_file(path: Path, targets: int) -> None:
    entries = [
        {"name": f"target-{i:02d}", "provider": "openai-compatible", "model": f"model-{i}",
         "base_url": "http://127.0.0.1:9/v1"}
        for i in range(targets)
    ]  # fmt: skip
    path.write_text(yaml.safe_dump({"targets": entries, "monitor": {"status_pages": False}}))


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    """Median and max wall time in ms of ``repeat`` GETs (after one warm-up)."""
    client.get(path).raise_for_status()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        client.get(path).raise_for_status()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench web", description=__doc__)
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db", type=Path, help="keep the generated store here and reuse it")
    parser.add_argument("--save-baseline", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        if not db.exists():
            build(db, args.targets, args.days, time.time())
        else:
            print(f"reusing {db}")
        config = Path(tmp) / "llmpulse.yaml"
        config_file(config, args.targets)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmpulse", "web", "--config", str(config), "--db", str(db),
             "--listen", f"127.0.0.1:{port}"],
            env={**os.environ, "OPENAI_API_KEY": "bench"},
        )  # fmt: skip
        try:
            figures = measure(f"http://127.0.0.1:{port}", args.repeat)
        finally:
            proc.terminate()
            proc.wait(10)
    report("web", figures, set(figures), args.save_baseline)
    missed = [k for k, goal in GOALS.items() if figures[k] >= goal]
    for key, goal in GOALS.items():
        verdict = "missed" if key in missed else "met"
        print(f"goal {key} < {goal:.0f} ms: {verdict} ({figures[key]:.1f} ms)")
    return 1 if missed else 0


def measure(url: str, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                client.get("/healthz").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for key, path in (
            ("overview", "/api/v1/overview"),
            ("series_30d_one", "/api/v1/series?target=target-07&range=30d"),
            ("series_7d_one", "/api/v1/series?target=target-07&range=7d"),
            ("series_24h_one", "/api/v1/series?target=target-07&range=24h"),
            ("series_1h_one", "/api/v1/series?target=target-07&range=1h"),
            ("target_detail", "/api/v1/targets/target-07"),
            ("events_30d", "/api/v1/events?target=target-07&range=30d"),
            ("statuspage_90d", "/api/v1/statuspage"),
            ("costs_30d", "/api/v1/costs?days=30"),
            ("costs_by_user_30d", "/api/v1/costs?by=user"),
            ("costs_by_tag_30d", "/api/v1/costs?by=tag"),
            ("costs_by_key_30d", "/api/v1/costs?by=key"),
            ("costs_by_day_30d", "/api/v1/costs?by=day"),
            ("alerts", "/api/v1/alerts"),
            ("metrics_scrape", "/metrics"),
        ):
            median, worst = timed(client, path, repeat)
            figures[f"{key}_ms"] = median
            figures[f"{key}_max_ms"] = worst
            print(f"{path:<48} median {median:8.1f} ms   max {worst:8.1f} ms")
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
