"""The ``llmpulse`` command line."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from llmpulse import aio, report
from llmpulse.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Target,
    discover_targets,
    load_config,
    parse_config,
)
from llmpulse.providers.presets import DISCOVERABLE, PRESETS
from llmpulse.result import CheckKind, CheckResult
from llmpulse.sim.cli import sim_command
from llmpulse.store import SQLiteStore, default_path

if TYPE_CHECKING:
    from llmpulse.sim import SimServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmpulse")
def main() -> None:
    """Monitor LLM APIs the way their users experience them."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Config file (default: ./{DEFAULT_CONFIG_PATH} when present).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON contract instead of a table.")
@click.option(
    "--target", "target_names", multiple=True, help="Only check these targets (repeatable)."
)
@click.option(
    "--check",
    "kinds",
    multiple=True,
    type=click.Choice([k.value for k in CheckKind]),
    help="Only run these check kinds (repeatable).",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SQLite database to record results in (default: $LLMPULSE_DB or the data dir).",
)
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
    kinds: Sequence[str],
    db_path: Path | None,
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
            from llmpulse.sim import SimServer

            sim_server = SimServer()
            sim_server.start()
            targets = _sim_targets(sim_server)
            storage = str(default_path().with_name("llmpulse-sim.db"))
        else:
            targets, storage = _targets(config_path)
        if target_names:
            unknown = set(target_names) - {t.name for t in targets}
            if unknown:
                raise ConfigError(f"--target: no target named {', '.join(sorted(unknown))}")
            targets = [t for t in targets if t.name in target_names]
        from llmpulse.probe import run_checks

        selected = [CheckKind(k) for k in kinds] or None
        results = aio.run(run_checks(targets, selected, concurrency))
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}", highlight=False)
        sys.exit(EXIT_USAGE)
    finally:
        if sim_server is not None:
            sim_server.stop()
    if not no_store:
        _store(results, db_path or (Path(storage) if storage else None), console)
    if as_json:
        click.echo(report.to_json(results))
    else:
        report.print_table(results, console)
    sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILED)


main.add_command(sim_command)


def _console(stderr: bool) -> Console:
    """A terminal gets its own width; pipes and logs get whole lines instead of rich's 80."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console = Console(stderr=stderr, width=200)
    return console


def _targets(config_path: Path | None) -> tuple[list[Target], str | None]:
    if config_path is None and DEFAULT_CONFIG_PATH.exists():
        config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        config = load_config(config_path)
        return config.targets, config.storage
    targets = discover_targets()
    if not targets:
        variables = ", ".join(v for p in DISCOVERABLE for v in PRESETS[p].env)
        raise ConfigError(
            f"no config file (./{DEFAULT_CONFIG_PATH}) and none of {variables} is set; "
            "pass --config FILE, export a key, or try --sim"
        )
    return targets, None


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


def _store(results: list[CheckResult], path: Path | None, console: Console) -> None:
    try:
        with SQLiteStore(path) as store:
            store.write_results(results)
    except (OSError, RuntimeError, sqlite3.Error) as exc:
        # A full disk or a locked database must not hide the results we just measured.
        console.print(f"[yellow]warning:[/yellow] results not recorded: {exc}", highlight=False)
