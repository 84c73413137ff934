"""``llmpulse sim``: run the simulator in the foreground."""

from __future__ import annotations

import asyncio

import click

from llmpulse.aio import new_event_loop, quiet_gc
from llmpulse.sim.scenario import ScenarioError, load_scenario


@click.command("sim")
@click.option("--scenario", "scenario_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8600, show_default=True, type=int)
@click.option("--speed", default=1.0, show_default=True, type=float, help="Timeline compression.")
def sim_command(scenario_path: str | None, host: str, port: int, speed: float) -> None:
    """Serve simulated OpenAI, Anthropic and Gemini APIs (and the scenario's official status
    pages) until SIGINT/SIGTERM."""
    if speed <= 0:
        raise click.BadParameter("must be > 0", param_hint="--speed")
    try:
        scenario = load_scenario(scenario_path) if scenario_path else None
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    from llmpulse.sim.server import SimServer  # the server loads only when it runs

    server = SimServer(scenario, host=host, port=port, speed=speed)
    try:
        server.bind()  # bind first so the printed URLs are already reachable
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
    click.echo(f"llmpulse simulator on {server.url} (speed x{speed:g})")
    click.echo(f"  openai     {server.openai_base}")
    click.echo(f"  azure      {server.azure_base}")
    click.echo(f"  anthropic  {server.anthropic_base}")
    click.echo(f"  gemini     {server.gemini_base}")
    click.echo(f"  vertex     {server.vertex_base}  (token_uri {server.token_uri})")
    click.echo(f"  bedrock    {server.bedrock_base}  (SigV4: the scenario's aws_credentials)")
    click.echo(f"  control    {server.url}/_sim/state")
    click.echo(f"  models     {', '.join(sorted(server.state.base))}")
    for name in sorted(server.state.pages):
        click.echo(f"  status     {server.status_page_url(name)}  (Google format: incidents.json)")
    quiet_gc()  # GC pauses would show up as injected-TTFT error in benchmarks
    # uvicorn installs SIGINT/SIGTERM handlers in the main thread and exits cleanly on them.
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(server.serve())
