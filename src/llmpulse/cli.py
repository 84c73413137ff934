"""The ``llmpulse`` command line: it parses arguments and calls into the packages.

Each command imports the packages it runs inside its own function, so that a command loads only
what it uses: ``llmpulse check`` loads no server, gateway or database driver it does not need.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.text import Text

from llmpulse import aio, report
from llmpulse.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigError,
    ServeOnly,
    discover_targets,
    load_config,
    parse_config,
    with_web,
)
from llmpulse.config.storage import default_path, redact_url, resolve_storage, results_location
from llmpulse.config.web import WebConfig
from llmpulse.durations import format_duration
from llmpulse.presets import DISCOVERABLE, PRESETS
from llmpulse.result import CheckResult
from llmpulse.secrets import Redactor, install_log_redaction
from llmpulse.sim.cli import sim_command
from llmpulse.target import Target

if TYPE_CHECKING:
    from llmpulse.alerts.silences import Silence
    from llmpulse.alerts.state import AlertStateStore
    from llmpulse.config.gateway import GatewayConfig
    from llmpulse.gateway.drill import DrillOutcome, FailoverPath
    from llmpulse.gateway.keys import RunTimeKeys
    from llmpulse.monitor.daemon import Daemon
    from llmpulse.probe.budget import PlannedProbe
    from llmpulse.sim.server import SimServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Config file (default: ./{DEFAULT_CONFIG_PATH} when present).",
)
db_option = click.option(
    "--db",
    "db_path",
    metavar="PATH|URL",
    help="Results database: a SQLite file or a postgresql:// URL (default: "
    "$LLMPULSE_STORAGE_URL, the config's storage, $LLMPULSE_DB or the data dir). Alert state "
    "and the notification outbox live beside the SQLite file, or in the PostgreSQL database.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmpulse")
def main() -> None:
    """Monitor LLM APIs the way their users experience them."""


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON contract instead of a table.")
@click.option(
    "--target", "target_names", multiple=True, help="Only check these targets (repeatable)."
)
@click.option(
    "--check",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only run these checks (repeatable): a built-in check by its kind (models, "
    "inference, stream) or a custom probe by its name.",
)
@db_option
@click.option("--no-store", is_flag=True, help="Do not record results.")
@click.option(
    "--sim",
    is_flag=True,
    help="Start the built-in simulator and check simulated OpenAI, Anthropic, Gemini "
    "and Groq models (no API keys needed).",
)
@click.option("--concurrency", default=16, show_default=True, type=click.IntRange(1, 1000))
def check(
    config_path: Path | None,
    as_json: bool,
    target_names: Sequence[str],
    names: Sequence[str],
    db_path: str | None,
    no_store: bool,
    sim: bool,
    concurrency: int,
) -> None:
    """Check every target once: models, inference and stream."""
    console = _console(stderr=as_json)
    storage: str | None = None
    sim_server = None
    try:
        if sim:
            from llmpulse.sim.server import SimServer

            sim_server = SimServer()
            sim_server.start()
            targets = _sim_targets(sim_server)
            storage = str(default_path().with_name("llmpulse-sim.db"))
            redactor = None
        else:
            targets, storage, redactor = _targets(config_path)
        if target_names:
            unknown = set(target_names) - {t.name for t in targets}
            if unknown:
                raise ConfigError(f"--target: no target named {', '.join(sorted(unknown))}")
            targets = [t for t in targets if t.name in target_names]
        if names:
            # What the selected targets run: a name nothing runs would check nothing, exit 0.
            known = {k.value for t in targets for k in t.checks}
            known |= {p.name for t in targets for p in t.probes}
            unknown = set(names) - known
            if unknown:
                raise ConfigError(
                    f"--check: no check named {', '.join(sorted(unknown))}; "
                    f"expected one of {', '.join(sorted(known))}"
                )
        from llmpulse.probe import run_checks

        results = aio.run(run_checks(targets, list(names) or None, concurrency, redactor))
    except ConfigError as exc:
        _usage_error(console, exc)
    finally:
        if sim_server is not None:
            sim_server.stop()
    if not no_store:
        _store(results, results_location(db_path, storage), console)
    if as_json:
        click.echo(report.to_json(results))
    else:
        report.print_table(results, console)
    sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


listen_option = click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve the dashboard and API here (web.listen; default 127.0.0.1:8080).",
)
status_only_option = click.option(
    "--status-page-only",
    is_flag=True,
    help="Serve only the public status page (no dashboard, API or metrics) on --listen.",
)


@main.command()
@config_option
@db_option
@listen_option
@click.option(
    "--status-listen",
    metavar="HOST:PORT",
    help="Also serve the public status page alone on this address (web.status_listen).",
)
@status_only_option
@click.option("--no-web", is_flag=True, help="Do not serve the dashboard.")
@click.option("-v", "--verbose", is_flag=True, help="Log every alert and background event.")
def run(
    config_path: Path | None,
    db_path: str | None,
    listen: str | None,
    status_listen: str | None,
    status_page_only: bool,
    no_web: bool,
    verbose: bool,
) -> None:
    """Monitor every target continuously, send alerts and serve the dashboard, until
    SIGINT/SIGTERM."""
    from llmpulse.monitor.daemon import Daemon
    from llmpulse.store import database_errors
    from llmpulse.web.server import WebError, serve_beside

    _logging(verbose)
    console = _console(stderr=True)
    web = {"listen": listen, "status_listen": status_listen, "enabled": False if no_web else None}
    try:
        config = _load(config_path, require_file=False, web=web)
        install_log_redaction(config.redactor)
        daemon = Daemon(config, db_path=db_path)
        server = serve_beside(daemon, status_only=status_page_only)
    except (ConfigError, WebError) as exc:
        _usage_error(console, exc)
    except database_errors() as exc:
        _database_error(console, exc)
    console.print(
        f"llmpulse: monitoring {len(config.targets)} targets, "
        f"{len(config.notifiers)} notifiers; Ctrl-C to stop",
        highlight=False,
    )
    if server is not None:
        for url in server.urls:
            console.print(f"llmpulse: serving {url}", highlight=False)
    _print_probe_spend(console, daemon)
    aio.run(daemon.run())


@main.command()
@config_option
@db_option
@click.option(
    "--region",
    metavar="NAME",
    help="Where this agent probes from (monitor.region): any metric can be split by it.",
)
@click.option(
    "--name",
    "agent",
    metavar="NAME",
    help="This agent's name in results (monitor.agent; default: the host name).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every alert and background event.")
def agent(
    config_path: Path | None,
    db_path: str | None,
    region: str | None,
    agent: str | None,
    verbose: bool,
) -> None:
    """Probe every target into a shared store (PostgreSQL) without serving a dashboard.

    Run one per region. One agent at a time (or `llmpulse run`) leads: it evaluates alerts over
    every agent's results and sends the notifications; another takes over if it stops."""
    from llmpulse.monitor.daemon import Daemon
    from llmpulse.store import database_errors

    _logging(verbose)
    console = _console(stderr=True)
    try:
        config = _load(config_path, require_file=False, web={"enabled": False})
        install_log_redaction(config.redactor)
        daemon = Daemon(config, db_path=db_path, agent=agent, region=region)
    except ConfigError as exc:
        _usage_error(console, exc)
    except database_errors() as exc:
        _database_error(console, exc)
    where = f" from {daemon.region}" if daemon.region else ""
    console.print(
        f"llmpulse agent {daemon.agent}: probing {len(config.targets)} targets{where}; "
        "Ctrl-C to stop",
        highlight=False,
    )
    _print_probe_spend(console, daemon)
    aio.run(daemon.run())


def _print_probe_spend(console: Console, daemon: Daemon) -> None:
    """Before probing: what the long-context probes cost a day, and the budget they keep to."""
    from llmpulse.probe.budget import DAY_S, MONTH_S, long_context_costs

    for line in long_context_costs(daemon.probes):
        console.print(f"llmpulse: {line}", highlight=False)
    limit = daemon.config.monitor.probe_budget_usd
    if limit is not None:
        expected = sum(p.usd_per_s() for p in daemon.probes)
        console.print(
            f"llmpulse: probe budget ${limit:.2f} a month; the probes at their intervals cost "
            f"about ${expected * MONTH_S:.2f} a month (${expected * DAY_S:.2f} a day)",
            highlight=False,
        )


@main.command()
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="Serve the dashboard here.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    metavar="PORT",
    help="Shorthand: --listen with this port (0: any free port).",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 50, min_open=True),
    metavar="N",
    help="Play everything N times faster (every duration divided by N; up to 50).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the demo's data in this SQLite database (default: a temporary directory, "
    "deleted on exit).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every alert and background event.")
def demo(listen: str, port: int | None, speed: float, db_path: Path | None, verbose: bool) -> None:
    """See the whole product in two minutes, no API key: simulated providers with scripted
    incidents, the monitor with its dashboard, and alerts firing and resolving."""
    import logging

    from llmpulse.demo import DemoError, run_demo

    # The sink prints every alert; the daemon's own alert log lines would repeat them.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if port is not None:
        listen = f"{listen.rpartition(':')[0] or '127.0.0.1'}:{port}"
    try:
        run_demo(_console(stderr=False), listen=listen, speed=speed, db_path=db_path)
    except DemoError as exc:
        _console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)


@main.command("web")
@config_option
@db_option
@listen_option
@status_only_option
@click.option("-v", "--verbose", is_flag=True, help="Log requests that fail.")
def web_command(
    config_path: Path | None,
    db_path: str | None,
    listen: str | None,
    status_page_only: bool,
    verbose: bool,
) -> None:
    """Serve the dashboard (or only the status page) over a database that `llmpulse run`
    writes elsewhere, without probing: e.g. a public status page on its own host. It needs no
    provider key (nor, for the status page, web credentials): the targets are the config's, or
    without one those the database recorded."""
    from llmpulse.store import database_errors
    from llmpulse.web.server import WebError, serve_forever

    _logging(verbose)
    console = _console(stderr=True)

    def announce(urls: list[str]) -> None:
        for url in urls:
            console.print(f"llmpulse: serving {url}", highlight=False)

    try:
        config = _load(
            config_path,
            require_file=False,
            web={"listen": listen},
            serve_only="status_page" if status_page_only else "dashboard",
        )
        install_log_redaction(config.redactor)
        serve_forever(
            config,
            results_location(db_path, config.storage),
            status_only=status_page_only,
            announce=announce,
        )
    except (ConfigError, WebError) as exc:
        _usage_error(console, exc)
    except database_errors() as exc:
        _database_error(console, exc)


# A bound, as on every input: a typo's 1000 would fork a gateway per port up from the metrics
# port, each of them about 100 MB.
MAX_WORKERS = 128


def _logging(verbose: bool, processes: bool = False) -> None:
    """Log to stderr; with ``processes``, each line names its process id (which worker)."""
    import logging

    pid = "[%(process)d]" if processes else ""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s %(levelname)s %(name)s{pid}: %(message)s",
    )


@main.command("gateway")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Config file (default: ./{DEFAULT_CONFIG_PATH} when present).",
)
@db_option
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="Serve here instead of the config's gateway.listen (default 127.0.0.1:4000).",
)
@click.option(
    "--host",
    metavar="HOST",
    help="Serve on this host (LiteLLM's flag; the default stays 127.0.0.1, not LiteLLM's 0.0.0.0).",
)
@click.option("--port", type=click.IntRange(0, 65535), metavar="PORT", help="Serve on this port.")
@click.option(
    "--accept-unenforced-auth",
    is_flag=True,
    help="Serve a config asking for access control llmpulse does not enforce (general_settings "
    "enable_jwt_auth, custom_auth, allowed_routes, allowed_ips, ...), checking gateway keys only.",
)
@click.option(
    "--num_workers",
    type=click.IntRange(1, MAX_WORKERS),
    metavar="N",
    help=f"Serve with N worker processes on the one port (LiteLLM's flag; default 1, at most "
    f"{MAX_WORKERS}). They share breaker and limit state only through gateway.redis_url.",
)
@click.option(
    "--run_gunicorn",
    is_flag=True,
    help="LiteLLM's flag, accepted with a warning: uvicorn serves (see --num_workers).",
)
@click.option("--debug", "--detailed_debug", "debug", is_flag=True, help="LiteLLM's flags: as -v.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
def gateway_command(
    config_path: Path | None,
    db_path: str | None,
    listen: str | None,
    host: str | None,
    port: int | None,
    accept_unenforced_auth: bool,
    num_workers: int | None,
    run_gunicorn: bool,
    debug: bool,
    verbose: bool,
) -> None:
    """Serve the failover gateway: OpenAI- and Anthropic-compatible endpoints routing the
    config's model_list, every request recorded as traffic in the results database. The
    deployments are probed too (unless gateway.monitor is false), so routing skips one the probes
    found down."""
    from llmpulse.gateway.server import GatewayProcess, listen_address, served
    from llmpulse.store import database_errors

    _logging(verbose or debug, processes=(num_workers or 1) > 1)
    console = _console(stderr=True)
    try:
        config = _load(config_path, require_file=True)  # prints the config's warnings once
        install_log_redaction(config.redactor)
        gateway = served(config)
        host, port = listen_address(gateway, listen=listen, host=host, port=port)
        where = f"{config.source}: " if config.source else ""
        serving_without = gateway.auth_warning(accept_unenforced_auth, where)
    except ConfigError as exc:
        _usage_error(console, exc)
    workers = num_workers or 1
    said = []
    if run_gunicorn:  # said once, not refused
        said.append(
            "ignoring LiteLLM's --run_gunicorn: llmpulse serves with uvicorn; --num_workers N "
            "runs N worker processes"
        )
    if workers > 1:
        from llmpulse.gateway.workers import shared_state_warning

        apart = shared_state_warning(gateway, workers)
        said += [apart] if apart else []
    for warning in [*said, *([serving_without] if serving_without else [])]:
        click.echo(f"warning: {warning}", err=True)

    def announce(line: str) -> None:
        console.print(line, highlight=False)

    location = results_location(db_path, config.storage)
    if workers > 1:
        _serve_workers(
            config, location, (host, port), workers, console, announce,
            accept_unenforced_auth=accept_unenforced_auth, warnings=said, verbose=verbose,
        )  # fmt: skip
    try:
        process = GatewayProcess(
            config,
            location,
            (host, port),
            accept_unenforced_auth=accept_unenforced_auth,
            warnings=said,
        )
    except database_errors() as exc:
        _database_error(console, exc)
    except ConfigError as exc:  # gateway.metrics_listen cannot be bound
        _usage_error(console, exc)
    aio.run(process.serve(verbose=verbose, announce=announce))


def _serve_workers(
    config: Config,
    location: str | Path,
    address: tuple[str, int],
    workers: int,
    console: Console,
    announce: Callable[[str], None],
    *,
    accept_unenforced_auth: bool,
    warnings: list[str],
    verbose: bool,
) -> NoReturn:
    """``llmpulse gateway --num_workers N`` (N > 1): the database checked and the port bound
    here, once, then served by the workers until a signal."""
    from llmpulse.gateway.server import listening_socket
    from llmpulse.gateway.workers import Supervisor
    from llmpulse.store import database_errors, open_store

    try:
        # Opened (and migrated) once before the workers open it together.
        open_store(location, for_writing=True).close()
    except database_errors() as exc:
        _database_error(console, exc)
    host, port = address
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        _error_line(console, "cannot listen:", f"{host}:{port}: {exc}")
        sys.exit(1)
    supervisor = Supervisor(
        config, location, address, sock, workers,
        accept_unenforced_auth=accept_unenforced_auth, warnings=warnings, verbose=verbose,
    )  # fmt: skip
    sys.exit(supervisor.run(announce))


@main.command("drill")
@config_option
@click.option("--group", default=None, help="Only this model group (or alias of one).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option("--dry-run", is_flag=True, help="Print the paths and their expected cost only.")
@db_option
@click.option("--no-store", is_flag=True, help="Do not record results.")
def drill(
    config_path: Path | None,
    group: str | None,
    as_json: bool,
    dry_run: bool,
    db_path: str | None,
    no_store: bool,
) -> None:
    """Walk every failover path of the gateway's model groups: one small real request,
    streamed and not, down each path with the deployments before it forced out. Exit 0 when
    every path answers completely, 1 otherwise."""
    from llmpulse.gateway.drill import expected_cost, failover_paths, run_drill, run_label
    from llmpulse.gateway.server import served

    console = _console(stderr=as_json)
    try:
        config = _load(config_path, require_file=True)
        gateway = served(config)
        plan = failover_paths(gateway, group)
        if not plan.paths:
            raise ConfigError("no failover path to drill: " + "; ".join(plan.notes))
    except ConfigError as exc:
        _usage_error(console, exc)
    notes = _console(stderr=True)
    for note in plan.notes:
        _error_line(notes, "note:", note)
    if dry_run:
        costs = [expected_cost(p) for p in plan.paths]
        if as_json:
            rows = [
                {"group": p.group, "path": p.names, "expected_cost_usd": c}
                for p, c in zip(plan.paths, costs, strict=True)
            ]
            click.echo(json.dumps(rows, indent=2))
        else:
            _print_drill_plan(console, plan.paths, costs)
        return
    results: list[CheckResult] = []
    outcomes = aio.run(
        run_drill(
            gateway, plan, label=run_label(time.time()), record=results.append,
            redactor=config.redactor,
        )
    )  # fmt: skip
    if not no_store and results:
        _store(results, results_location(db_path, config.storage), notes)
    if as_json:
        click.echo(json.dumps([o.to_json() for o in outcomes], indent=2))
    else:
        _print_drill(console, outcomes)
    sys.exit(EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED)


def _print_drill_plan(
    console: Console, paths: Sequence[FailoverPath], costs: Sequence[float | None]
) -> None:
    from rich.table import Table

    table = Table(header_style="bold", pad_edge=False)
    table.add_column("Group")
    table.add_column("Path")
    table.add_column("Expected $ (2 requests)", justify="right", no_wrap=True)
    for p, c in zip(paths, costs, strict=True):
        table.add_row(p.group, p.label, "unknown" if c is None else f"{c:.6f}")
    console.print(table)
    known = [c for c in costs if c is not None]
    unknown = len(costs) - len(known)
    console.print(
        f"{_paths(len(paths))}, {2 * len(paths)} requests, expected ${sum(known):.6f}"
        + (f" (+ {_paths(unknown)} of unknown price)" if unknown else "")
        + "; nothing sent (--dry-run)",
        highlight=False,
    )


def _paths(n: int, kind: str = "") -> str:
    return f"{n} {kind}path" + ("" if n == 1 else "s")


def _print_drill(console: Console, outcomes: Sequence[DrillOutcome]) -> None:
    from rich.table import Table

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:.0f} ms"

    table = Table(header_style="bold", pad_edge=False)
    for header in ("Group", "Path", "Stream", "OK"):
        table.add_column(header)
    for header in ("TTFT", "Latency", "Tokens", "Cost $"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Error")
    for o in outcomes:
        known = o.input_tokens is not None or o.output_tokens is not None
        tokens = f"{o.input_tokens or 0}/{o.output_tokens or 0}" if known else "—"
        error = f"{o.error_class}: {o.error_message}" if o.error_class or o.error_message else ""
        table.add_row(
            o.group,
            Text(" → ".join(o.path)),
            "yes" if o.stream else "no",
            Text("ok", style="green") if o.ok else Text("FAILED", style="red"),
            ms(o.ttft_ms),
            ms(o.latency_ms),
            tokens,
            "—" if o.cost_usd is None else f"{o.cost_usd:.6f}",
            Text(error, style="red"),  # never read as markup: it is the provider's text
        )
    console.print(table)
    broken = dict.fromkeys(f"{o.group}: {' → '.join(o.path)}" for o in outcomes if not o.ok)
    if broken:
        _error_line(console, "broken:", f"{_paths(len(broken), 'failover ')}: " + "; ".join(broken))


@main.group()
def silence() -> None:
    """Silence alerts for a while (maintenance windows); the data is still recorded."""


@silence.command("add")
@click.option("--target", default="*", show_default=True, help="Glob on the target name.")
@click.option("--provider", default="*", show_default=True, help="Glob on the provider.")
@click.option("--rule", default="*", show_default=True, help="Glob on the rule id.")
@click.option("--duration", required=True, help="How long, e.g. 30m, 2h; with --cron, each window.")
@click.option(
    "--cron",
    metavar="EXPR",
    help='Recurring: a window starts at each time of this cron expression, e.g. "0 2 * * SUN".',
)
@click.option(
    "--timezone", metavar="ZONE", help="The --cron expression's time zone [default: UTC]."
)
@click.option("--comment", default="", help="Why (shown in listings).")
@config_option
@db_option
def silence_add(
    target: str, provider: str, rule: str, duration: str, cron: str | None,
    timezone: str | None, comment: str, config_path: Path | None, db_path: str | None,
) -> None:  # fmt: skip
    """Add a silence starting now, or recurring windows (--cron) from now on."""
    import getpass

    from llmpulse.alerts.silences import NO_END, Silence
    from llmpulse.durations import DurationError, positive_duration
    from llmpulse.schedule import Schedule, ScheduleError, parse_cron, parse_timezone

    try:
        seconds = positive_duration(duration)
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    schedule = None
    if cron is None and timezone is not None:
        raise click.BadParameter("a time zone is for a --cron schedule", param_hint="--timezone")
    if cron is not None:
        hint = "--cron"
        try:
            cron = parse_cron(cron)
            hint = "--timezone"
            schedule = Schedule(cron, seconds, parse_timezone(timezone or "UTC"))
        except ScheduleError as exc:
            raise click.BadParameter(str(exc), param_hint=hint) from None
    now = time.time()
    entry = Silence(
        id=Silence.new_id(), starts_at=now, ends_at=NO_END if schedule else now + seconds,
        target=target, provider=provider, rule=rule, comment=comment,
        created_by=getpass.getuser(), schedule=schedule,
    )  # fmt: skip
    with _alert_state(config_path, db_path) as state:
        state.add_silence(entry)
    when = _silence_when(entry, now) if schedule else f"until {entry.to_json()['ends_at']}"
    click.echo(f"silence {entry.id} {when}")


@silence.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include ended silences.")
@config_option
@db_option
def silence_list(show_all: bool, config_path: Path | None, db_path: str | None) -> None:
    """List silences (active and upcoming unless --all)."""
    now = time.time()
    with _alert_state(config_path, db_path) as state:
        entries = state.silences(None if show_all else now)
    for entry in entries:
        click.echo(
            f"{entry.id}  {_silence_when(entry, now)}  target={entry.target} "
            f"provider={entry.provider} rule={entry.rule}  {entry.comment}"
        )
    if not entries:
        click.echo("no silences")


def _silence_when(entry: Silence, now: float) -> str:
    """When a silence holds: its one window, or its schedule and its next window (in the
    schedule's time zone)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from llmpulse.alerts.silences import NO_END
    from llmpulse.durations import format_duration

    data = entry.to_json()
    if entry.schedule is None:
        return f"{data['starts_at']} → {data['ends_at']}"
    s = entry.schedule
    text = f'every "{s.cron}" ({s.timezone}) for {format_duration(s.duration_s)}'
    if entry.ends_at != NO_END:
        text += f" until {data['ends_at']}"
    upcoming = entry.next_occurrences(now, 1)
    if not upcoming:
        return text + ", no window left"
    start, end = (datetime.fromtimestamp(t, ZoneInfo(s.timezone)).isoformat() for t in upcoming[0])
    return text + f", {'now' if upcoming[0][0] <= now else 'next'} {start} → {end}"


@silence.command("end")
@click.argument("silence_id")
@config_option
@db_option
def silence_end(silence_id: str, config_path: Path | None, db_path: str | None) -> None:
    """End a silence now."""
    with _alert_state(config_path, db_path) as state:
        ended = state.end_silence(silence_id, time.time())
    if not ended:
        click.echo(f"no active silence {silence_id}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(f"silence {silence_id} ended")


@main.group()
def notify() -> None:
    """Notification channels."""


@notify.command("test")
@click.option(
    "--route",
    is_flag=True,
    help="Send nothing: print which notifiers an alert of each rule and severity would reach.",
)
@click.option("--provider", default=None, help="With --route: the example alerts' provider.")
@click.option("--target", default=None, help="With --route: the example alerts' target.")
@config_option
def notify_test(
    route: bool, provider: str | None, target: str | None, config_path: Path | None
) -> None:
    """Send a test alert to every configured channel and show what each answered."""
    from llmpulse.alerts.notifiers import build_notifiers  # loaded by the commands that send
    from llmpulse.alerts.testing import send_test

    console = _console(stderr=False)
    try:
        config = _load(config_path, require_file=True)
        notifiers = build_notifiers(config.notifiers, f"{config.source}: " if config.source else "")
    except ConfigError as exc:
        _usage_error(console, exc)
    if route:
        _print_routes(console, config, provider, target)
        return
    if not notifiers:
        console.print("no notifiers configured (add a 'notifiers:' list to the config)")
        sys.exit(EXIT_USAGE)
    answers = aio.run(send_test(notifiers))
    for name, ok, answer in answers:
        style = "green" if ok else "red"
        console.print(f"[{style}]{'ok  ' if ok else 'FAIL'}[/{style}] {name}: {answer}",
                      highlight=False)  # fmt: skip
    sys.exit(EXIT_OK if all(ok for _, ok, _ in answers) else EXIT_FAILED)


def _print_routes(
    console: Console, config: Config, provider: str | None, target: str | None
) -> None:
    from rich.table import Table

    from llmpulse.alerts.testing import route_examples

    try:
        examples = route_examples(config, provider, target)
    except LookupError as exc:
        console.print(str(exc), highlight=False)
        sys.exit(EXIT_USAGE)
    if config.alerting.routes is None:
        console.print("no alerting.routes: every notifier gets every alert", highlight=False)
    table = Table("rule", "severity", "provider", "target", "notifies", "escalates")
    for e in examples:
        steps = "; ".join(
            f"after {format_duration(s.after_s)}: {', '.join(s.notify)}"
            for s in e.delivery.escalate
        )
        table.add_row(
            e.rule, str(e.severity), e.provider, e.target,
            ", ".join(e.delivery.notify) or "nobody", steps or "—",
        )  # fmt: skip
    console.print(table)


@main.command("check-config")
@config_option
@click.option(
    "--target", "target_glob", default="*", show_default=True,
    help="Glob on the target name: list the rules of these targets only.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rules as a JSON array.")
def check_config(config_path: Path | None, target_glob: str, as_json: bool) -> None:
    """Validate a config without running anything, and list every rule in effect: per target
    with its resolved thresholds, per provider, per gateway key and team with a budget, the
    custom rules and the SLOs' burn-rate alerts. Exits 2 when invalid."""
    import json

    from llmpulse.alerts.inventory import rules_in_effect

    console = _console(stderr=as_json)
    try:
        config = _load(config_path, require_file=True)
    except ConfigError as exc:
        _usage_error(console, exc)
    rows = rules_in_effect(config, target_glob)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    from rich.table import Table

    console.print(
        f"{config.source}: valid: {len(config.targets)} targets, {len(config.notifiers)} "
        f"notifiers, {len(config.custom_rules)} custom rules, {len(config.slos)} SLOs",
        highlight=False,
    )
    table = Table("subject", "rule", "threshold", "window", "for", "min samples", "severity",
                  "detail")  # fmt: skip
    for r in rows:
        table.add_row(
            r.subject, r.rule if r.enabled else f"{r.rule} (disabled)", r.threshold,
            format_duration(r.window_s), format_duration(r.for_s) if r.for_s else "—",
            str(r.min_samples), r.severity, r.detail,
        )  # fmt: skip
    console.print(table)
    _print_probe_costs(console, config, target_glob)


def _print_probe_costs(console: Console, config: Config, target_glob: str) -> None:
    """What the probes are expected to cost a month per target (those ``target_glob``
    matches), the total of all, and what the probe budget makes of it (the daemon's rule:
    ``probe.budget``)."""
    import fnmatch

    from rich.table import Table

    from llmpulse.probe.budget import MONTH_S, fit, long_context_costs, scheduled

    probes = scheduled(config.targets)
    if not probes:
        return
    table = Table("target", "probes", "runs a month", "USD a month", title="Probe spend, estimated")
    per_target: dict[str, list[PlannedProbe]] = {}
    for p in probes:
        per_target.setdefault(p.target.name, []).append(p)
    for name, own in per_target.items():
        if not fnmatch.fnmatchcase(name, target_glob):
            continue
        unknown = [p.name for p in own if p.cost_per_run is None]
        cost = f"{sum(p.usd_per_s() for p in own) * MONTH_S:.2f}"
        if unknown:
            cost += f" (no price: {', '.join(unknown)})"
        runs = sum(MONTH_S / p.interval for p in own)
        table.add_row(name, ", ".join(p.name for p in own), f"{runs:,.0f}", cost)
    console.print(table)
    total = sum(p.usd_per_s() for p in probes) * MONTH_S
    limit = config.monitor.probe_budget_usd
    line = f"probes: about ${total:.2f} a month in all (a 30-day month, output budgets spent whole)"
    if limit is None:
        console.print(f"{line}; no monitor.probe_budget_usd", highlight=False)
    else:
        fitted = fit(probes, limit / MONTH_S)
        if fitted.floor is None:
            console.print(f"{line}, within the probe budget ${limit:.2f}", highlight=False)
        else:
            still = (
                "; still over: they stretch no further"
                if fitted.fitted_usd_per_s * MONTH_S > limit * 1.0001
                else ""
            )
            console.print(
                f"{line}, over the probe budget ${limit:.2f}: `run` and `agent` stretch "
                f"{len(fitted.intervals)} probes to every {format_duration(fitted.floor)} "
                f"(about ${fitted.fitted_usd_per_s * MONTH_S:.2f} a month{still})",
                highlight=False,
            )
    for text in long_context_costs(probes):
        console.print(text, highlight=False)


@main.command("ack")
@click.argument("fingerprint")
@click.option("--by", default=None, help="Who has it (default: your user name).")
@click.option("--comment", default="", help="A note for whoever looks next.")
@click.option("--undo", is_flag=True, help="Take the acknowledgement back: escalation resumes.")
@config_option
@db_option
def ack(
    fingerprint: str, by: str | None, comment: str, undo: bool,
    config_path: Path | None, db_path: str | None,
) -> None:  # fmt: skip
    """Acknowledge a firing alert: its escalation and repeats stop, and the notifiers it paged
    are told who has it (FINGERPRINT: as the alerts page, the API and every notice show it)."""
    import getpass

    from llmpulse.alerts.state import NotFiring, UnknownAlert

    with _alert_state(config_path, db_path) as state:
        try:
            if undo:
                record = state.unacknowledge(fingerprint)
                click.echo(f"{fingerprint} ({record.lead_rule or record.rule} "
                           f"{record.target}): acknowledgement taken back")  # fmt: skip
                return
            record, entry = state.acknowledge(
                fingerprint, by or getpass.getuser(), comment, time.time()
            )
        except UnknownAlert:
            click.echo(f"no alert {fingerprint}", err=True)
            sys.exit(EXIT_FAILED)
        except NotFiring as exc:
            click.echo(str(exc), err=True)
            sys.exit(EXIT_FAILED)
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(entry.at))
    click.echo(
        f"{fingerprint} ({record.lead_rule or record.rule} {record.target}): acknowledged by "
        f"{entry.by} at {when}"
    )


@main.group("keys")
def keys_group() -> None:
    """Gateway keys created at run time: stored only as digests in the results database, and
    taken up (or dropped) by every gateway replica within seconds."""


@keys_group.command("create")
@click.argument("name")
@click.option("--team", default=None, help="The team its spend counts to.")
@click.option(
    "--models", default=None, metavar="A,B", help="Model groups it may use (globs); default all."
)
@click.option("--rpm", type=int, default=None, help="Requests per minute at most.")
@click.option("--tpm", type=int, default=None, help="Tokens per minute at most.")
@click.option("--budget", type=float, default=None, metavar="USD", help="Spend allowed per period.")
@click.option(
    "--period", default=None, metavar="1d|7d|30d|1mo", help="The budget's period (default 30d)."
)
@click.option(
    "--warn-at",
    default=None,
    metavar="80%|0.8",
    help="Warn at this share of the budget (default 80%).",
)
@click.option(
    "--drill", is_flag=True, help="It may send live drills (the x-llmpulse-drill header)."
)
@config_option
@db_option
def keys_create(
    name: str, team: str | None, models: str | None, rpm: int | None, tpm: int | None,
    budget: float | None, period: str | None, warn_at: str | None, drill: bool,
    config_path: Path | None, db_path: str | None,
) -> None:  # fmt: skip
    """Create the key NAME and print it, once: only its digest is stored. Its models must be
    groups the config's gateway serves; a gateway.keys entry named NAME without `key` gives
    its policy instead of these options."""
    from llmpulse.gateway.keys import KeyRefused, KeyTaken, key_entry

    console = _console(stderr=True)
    fields: dict[str, object] = {
        "name": name, "team": team, "rpm": rpm, "tpm": tpm, "drill": drill,
    }  # fmt: skip
    if models is not None:
        fields["models"] = [m.strip() for m in models.split(",")]
    if budget is not None:
        spend = {"max_usd": budget, "period": period, "warn_at": warn_at}
        fields["budget"] = {k: v for k, v in spend.items() if v is not None}
    elif period is not None or warn_at is not None:
        _usage_error(console, ConfigError("--period and --warn-at need --budget"))
    with _run_time_keys(console, config_path, db_path) as (keys, gateway):
        try:
            entry = key_entry(fields, gateway, keys.ring)
            text, row = keys.create(entry, time.time())
        except KeyRefused as exc:
            _error_line(console, "error:", str(exc))
            sys.exit(EXIT_FAILED if isinstance(exc, KeyTaken) else EXIT_USAGE)
    click.echo(text)
    console.print(
        f"created key {row.name} (fingerprint {row.fingerprint}): keep it now, it is not shown "
        "again; gateways take it up within seconds",
        highlight=False,
        soft_wrap=True,
    )


@keys_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as a JSON array.")
@config_option
@db_option
def keys_list(as_json: bool, config_path: Path | None, db_path: str | None) -> None:
    """List the run-time keys, revoked ones too (never a key: its digest's first characters
    tell which it is)."""
    import json

    from llmpulse.gateway.keys import describe

    console = _console(stderr=as_json)
    with _run_time_keys(console, config_path, db_path) as (keys, _):
        rows = [describe(k, keys.ring) for k in keys.listed()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    def when(ts: float | None) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "—"

    table = Table("name", "fingerprint", "team", "models", "rpm", "tpm", "budget", "drill",
                  "created", "revoked")  # fmt: skip
    for r in rows:
        b = r["budget"]
        table.add_row(
            r["name"], r["fingerprint"], r["team"] or "—", ", ".join(r["models"]) or "all",
            str(r["rpm"] or "—"), str(r["tpm"] or "—"),
            f"${b['max_usd']:g}/{b['period']}" if b else "—", "yes" if r["drill"] else "—",
            when(r["created_at"]),
            when(r["revoked_at"]),
        )  # fmt: skip
    console.print(table)


@keys_group.command("revoke")
@click.argument("name")
@config_option
@db_option
def keys_revoke(name: str, config_path: Path | None, db_path: str | None) -> None:
    """Revoke the key NAME: every gateway refuses it within seconds. Its name stays taken."""
    from llmpulse.gateway.keys import KeyRefused

    console = _console(stderr=True)
    with _run_time_keys(console, config_path, db_path) as (keys, _):
        try:
            keys.revoke(name, time.time())
        except KeyRefused as exc:
            _error_line(console, "error:", str(exc))
            sys.exit(EXIT_FAILED)
    console.print(f"revoked key {name}", highlight=False)


@keys_group.command("rotate")
@click.argument("name")
@config_option
@db_option
def keys_rotate(name: str, config_path: Path | None, db_path: str | None) -> None:
    """Give the key NAME a new key, printed once, with the same name and policy; the old one
    is refused from now on (within seconds on every gateway)."""
    from llmpulse.gateway.keys import KeyRefused

    console = _console(stderr=True)
    with _run_time_keys(console, config_path, db_path) as (keys, _):
        try:
            text, row = keys.rotate(name, time.time())
        except KeyRefused as exc:
            _error_line(console, "error:", str(exc))
            sys.exit(EXIT_FAILED)
    click.echo(text)
    console.print(
        f"rotated key {name} (fingerprint {row.fingerprint}); the old key is refused from now "
        "on. Keep the new one now, it is not shown again",
        highlight=False,
        soft_wrap=True,
    )


@contextlib.contextmanager
def _run_time_keys(
    console: Console, config_path: Path | None, db_path: str | None
) -> Iterator[tuple[RunTimeKeys, GatewayConfig | None]]:
    """The results database's run-time keys, beside the config's gateway (None without a
    config file or a gateway in it): its key names are taken, its groups are what ``models``
    may name."""
    from llmpulse.gateway.keys import KeyRing, RunTimeKeys
    from llmpulse.store import database_errors

    config = None
    try:
        if config_path is not None or DEFAULT_CONFIG_PATH.exists():
            config = _load(config_path, require_file=True)
    except ConfigError as exc:
        _usage_error(console, exc)
    storage = config.storage if config is not None else resolve_storage(None, os.environ)
    gateway = config.gateway if config is not None else None
    ring = KeyRing(gateway.settings.keys if gateway is not None else ())
    keys = RunTimeKeys(results_location(db_path, storage), ring)
    try:
        yield keys, gateway
    except database_errors() as exc:
        _database_error(console, exc)
    finally:
        keys.close()


main.add_command(sim_command)


def _load(
    config_path: Path | None,
    require_file: bool,
    web: dict[str, Any] | None = None,
    serve_only: ServeOnly | None = None,
) -> Config:
    """The config file, or (for run) targets discovered from the environment; ``web`` holds
    command-line overrides of the web section; ``serve_only``: loaded to serve the web UI, so
    no provider key is needed (nor a target: the database has them)."""
    if config_path is None and DEFAULT_CONFIG_PATH.exists():
        config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        config = _read_config(config_path, serve_only)
    elif require_file:
        raise ConfigError(f"no config file: pass --config FILE or create ./{DEFAULT_CONFIG_PATH}")
    else:
        targets = discover_targets() if serve_only else _targets(None)[0]
        # The public status page alone needs no credentials on any address.
        web_settings = WebConfig(auth=serve_only != "status_page")
        config = Config(
            targets=targets, storage=resolve_storage(None, os.environ), web=web_settings
        )
    return with_web(config, **web) if web else config


def _read_config(path: Path, serve_only: ServeOnly | None = None) -> Config:
    """Load the config file, saying once what in it llmpulse does not act on."""
    config = load_config(path, serve_only=serve_only)
    for warning in config.warnings:
        click.echo(f"warning: {warning}", err=True)
    return config


@contextlib.contextmanager
def _alert_state(config_path: Path | None, db_path: str | None) -> Iterator[AlertStateStore]:
    storage = None
    if db_path is None:
        try:
            if config_path is not None or DEFAULT_CONFIG_PATH.exists():
                storage = _load(config_path, require_file=True).storage
            else:
                storage = resolve_storage(None, os.environ)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
    from llmpulse.alerts.state import AlertStateStore  # SQLAlchemy only for the commands using it

    state = AlertStateStore.open(results_location(db_path, storage))
    try:
        yield state
    finally:
        state.close()


def _usage_error(console: Console, exc: Exception) -> NoReturn:
    _error_line(console, "config error:", str(exc))
    sys.exit(EXIT_USAGE)


def _database_error(console: Console, exc: Exception) -> NoReturn:
    """The results database cannot be opened (a server away, a file unreadable)."""
    _error_line(console, "results database error:", redact_url(str(exc)))
    sys.exit(EXIT_USAGE)


def _error_line(console: Console, label: str, message: str) -> None:
    """One line however long, for scripts and logs to read: never wrapped at the console's
    width, never read as rich markup (a key may be written ``[/x]``)."""
    line = " ".join(part.strip() for part in message.splitlines())
    console.print(Text.assemble((label, "red"), " ", line), soft_wrap=True)


def _console(stderr: bool) -> Console:
    """A terminal gets its own width; pipes and logs get whole lines instead of rich's 80."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)
    return console


def _targets(config_path: Path | None) -> tuple[list[Target], str | None, Redactor | None]:
    """Targets to check, where results go, and the redactor of every configured secret (None:
    the targets' own keys are all there is)."""
    if config_path is None and DEFAULT_CONFIG_PATH.exists():
        config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        config = _read_config(config_path)
        return config.targets, config.storage, config.redactor
    targets = discover_targets()
    if not targets:
        variables = ", ".join(v for p in DISCOVERABLE for v in PRESETS[p].env)
        raise ConfigError(
            f"no config file (./{DEFAULT_CONFIG_PATH}) and none of {variables} is set; "
            "pass --config FILE, export a key, or try --sim"
        )
    return targets, resolve_storage(None, os.environ), None


def _sim_targets(server: SimServer) -> list[Target]:
    """Real presets pointed at the simulator, so the same code paths run as in production."""
    targets = [
        ("openai", "gpt-4o-mini", server.openai_base),
        ("anthropic", "claude-haiku-4-5", server.anthropic_base),
        ("gemini", "gemini-2.5-flash", server.gemini_base),
        ("groq", "llama-3.1-8b-instant", server.openai_base),
    ]
    raw = {
        "targets": [
            {"provider": p, "model": m, "base_url": url, "api_key": "${LLMPULSE_SIM_KEY}"}
            for p, m, url in targets
        ]
    }
    return parse_config(raw, env={"LLMPULSE_SIM_KEY": "sim-key"}).targets


def _store(results: list[CheckResult], location: str | Path, console: Console) -> None:
    from llmpulse.store import database_errors, open_store

    try:
        with open_store(location) as store:
            store.write_results(results)
    except database_errors(OSError, RuntimeError, ValueError) as exc:
        # A full disk or a locked database must not hide the results we just measured.
        console.print(
            f"[yellow]warning:[/yellow] results not recorded: {redact_url(str(exc))}",
            highlight=False,
        )
