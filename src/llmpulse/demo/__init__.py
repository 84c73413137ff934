"""``llmpulse demo``: the whole product on one machine, without an API key.

The simulator plays six providers' models and their official status pages with a scripted
incident timeline that repeats; the monitor (the same ``Daemon`` as ``llmpulse run``, serving
its dashboard) checks them, reads the pages and pages a local webhook sink, which prints every
notification. Nothing is faked: every alert comes from real checks over real sockets, judged by
the real rules, delivered through the real outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import signal
import tempfile
import time
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from llmpulse import aio
from llmpulse.config import ConfigError, parse_config
from llmpulse.demo.scenario import (
    INCIDENTS,
    KEY,
    KEY_VAR,
    MODELS,
    OFFICIAL,
    PERIOD_S,
    Incident,
    build_config,
    build_scenario,
)
from llmpulse.demo.sink import AlertSink
from llmpulse.durations import format_duration
from llmpulse.monitor.daemon import Daemon
from llmpulse.probe import Prober
from llmpulse.sim.server import SimServer
from llmpulse.store.base import Store
from llmpulse.store.queries import MIN_BASELINE_REQUESTS
from llmpulse.target import Target
from llmpulse.web.server import WebError, WebServer, serve_beside

__all__ = ["DemoError", "run_demo"]

# Enough token-bearing checks per target for a tokens-per-request baseline; every demo target
# has an inference and a stream check.
SEED_ROUNDS = math.ceil(MIN_BASELINE_REQUESTS / 2)


class DemoError(Exception):
    """The demo cannot start; the message names the option to change."""


def run_demo(
    console: Console,
    *,
    listen: str = "127.0.0.1:8080",
    speed: float = 1.0,
    db_path: Path | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (Ctrl-C), then stop everything cleanly."""
    # Ctrl-C before the monitor has taken over its signals is a stop request too.
    with contextlib.suppress(KeyboardInterrupt), contextlib.ExitStack() as stack:
        kept = db_path is not None
        if db_path is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="llmpulse-demo-"))
            db_path = Path(tmp) / "llmpulse-demo.db"
        sim = SimServer(build_scenario(speed), speed=speed)
        stack.callback(sim.stop)
        aio.run(_run(console, sim, db_path, kept, listen, speed))


async def _run(
    console: Console, sim: SimServer, db_path: Path, kept: bool, listen: str, speed: float
) -> None:
    sink = AlertSink(console)
    hook = await sink.start()
    narrator: asyncio.Future[None] | None = None
    try:
        daemon, dashboard = _daemon(sim, hook, db_path, listen, speed)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # until the daemon installs its own
            loop.add_signal_handler(sig, daemon.stop_event.set)
        await asyncio.to_thread(sim.start)
        console.print("llmpulse demo: measuring a healthy baseline first…", highlight=False)
        await _seed(daemon.store, daemon.config.targets)
        if not daemon.stop_event.is_set():
            sim.state.load()  # the script's clock starts with the monitor
            _banner(console, daemon, dashboard, sim, sink.url, kept, speed)
            narrator = asyncio.ensure_future(_narrate(console, sim.state.started, speed))
        await daemon.run()
    finally:
        if narrator is not None:
            narrator.cancel()
        await sink.stop()


def _daemon(
    sim: SimServer, hook: str, db_path: Path, listen: str, speed: float
) -> tuple[Daemon, WebServer]:
    """The monitor and its dashboard, whose address is bound first: a taken one fails at once."""
    bases = {"openai": sim.openai_base, "anthropic": sim.anthropic_base,
             "gemini": sim.gemini_base}  # fmt: skip
    pages = {m.provider: sim.status_page_url(m.provider, m.status_format) for m in MODELS}
    try:
        raw = build_config(speed, bases, hook, listen, pages)
        config = parse_config(raw, env={KEY_VAR: KEY})
        daemon = Daemon(config, db_path=db_path)
        dashboard = serve_beside(daemon)
    except (ConfigError, WebError) as exc:
        raise DemoError(
            f"{exc}; choose the dashboard's address with --listen HOST:PORT (or --port PORT)"
        ) from None
    assert dashboard is not None  # the demo's config always serves the dashboard
    return daemon, dashboard


async def _seed(store: Store, targets: list[Target]) -> None:
    """Check every target a few times while all is healthy, and record the results.

    The tokens-per-request rule compares with a 24 h baseline that the daemon reads from the
    store when it starts, and a fresh database has none: these real measurements are that
    history, as if the monitor had been running for a while (they also start the charts).
    """
    pairs = [(t, kind) for _ in range(SEED_ROUNDS) for t in targets for kind in t.checks]
    async with Prober() as prober:
        results = await prober.check_many(pairs)
    await asyncio.to_thread(store.write_results, results)


def _banner(
    console: Console,
    daemon: Daemon,
    dashboard: WebServer,
    sim: SimServer,
    sink: str,
    kept: bool,
    speed: float,
) -> None:
    web = dashboard.urls[0]
    rows = [
        ("dashboard", web),
        ("status page", f"{web}status"),
        ("metrics", f"{web}metrics"),
        ("simulator", f"{sim.url}  (OpenAI-style /openai/v1, /anthropic, /gemini/v1beta; "
                      "live state /_sim/state)"),
        ("status pages", f"{sim.url}/statuspage/PROVIDER  (the official pages the monitor "
                         "reads, as Statuspage v2 /api/v2/summary.json; gemini: incidents.json)"),
        ("alert sink", f"{sink}/  (webhook POST /hook; GET / lists the last notifications)"),
        ("data", f"{daemon.location}  "
                 f"({'kept' if kept else 'deleted on exit; --db PATH keeps it'})"),
    ]  # fmt: skip
    console.print(
        f"\n[bold]llmpulse demo[/bold]: {len(MODELS)} simulated models, scripted incidents "
        f"repeating every {format_duration(PERIOD_S / speed)}, no API key\n",
        highlight=False,
    )
    for name, value in rows:
        console.print(f"  {name:<12}  {escape(value)}", highlight=False)
    at = "from now" if speed == 1 else f"at speed ×1; ÷{speed:g} here"
    console.print(f"\n  The script (minutes:seconds {at}):", highlight=False)
    for incident in INCIDENTS:
        when = f"{_clock(incident.start)}–{_clock(incident.end)}"
        console.print(
            f"    {when}  {incident.model.target:<30}  {incident.story}  "
            f"[dim]→ {incident.rule}[/dim]",
            highlight=False,
        )
    control = [m.target for m in MODELS if all(i.model is not m for i in INCIDENTS)]
    console.print(f"    {', '.join(control)} stays healthy: the control.", highlight=False)
    for page in OFFICIAL:
        when = f"{_clock(page.start)}–{_clock(page.end)}"
        console.print(
            f"    {when}  {_page(page):<30}  {page.story}  [dim]→ {page.rule}[/dim]",
            highlight=False,
        )
    quiet = [m.provider for m in MODELS if all(o.model is not m for o in OFFICIAL)]
    console.print(
        f"    The official status pages of {', '.join(quiet)} report no incident throughout, "
        "whatever we measure.",
        highlight=False,
    )
    console.print(
        "\nScripted changes and every notification the sink receives appear below. "
        "Ctrl-C to stop.\n",
        highlight=False,
    )


def _page(script: Incident) -> str:
    return f"{script.model.provider} (status page)"


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


async def _narrate(console: Console, started: float, speed: float) -> None:
    """Print each scripted change as the simulator makes it, so cause precedes effect."""
    steps = sorted(
        [(s.at, i.model.target, s.says) for i in INCIDENTS for s in i.steps]
        + [(s.at, _page(o), s.says) for o in OFFICIAL for s in o.steps],
        key=lambda step: step[0],
    )
    for period in itertools.count():
        if period:
            due = started + period * PERIOD_S / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            console.print(f"{datetime.now():%H:%M:%S}  [cyan]script[/cyan]    the script starts "
                          "again", highlight=False)  # fmt: skip
        for at, target, says in steps:
            due = started + (period * PERIOD_S + at) / speed
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            console.print(
                f"{datetime.now():%H:%M:%S}  [cyan]script[/cyan]    {target:<30}  {says}",
                highlight=False,
            )
