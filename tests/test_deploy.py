"""The shipped production layout (contrib/deploy) stays true to the code: its config loads and
every llmpulse command it runs parses."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmpulse.cli import main
from llmpulse.config import load_config

DEPLOY = Path(__file__).parent.parent / "contrib" / "deploy"
ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T0/B0/x",
    "LLMPULSE_WEB_TOKEN": "t",
    "OPENAI_API_KEY": "k",
    "ANTHROPIC_API_KEY": "k",
    "GROQ_API_KEY": "k",
    "GATEWAY_KEY": "k",
}


def test_the_example_config_loads_with_everything_it_names(monkeypatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(DEPLOY / "llmpulse.yaml")
    assert config.warnings == ()
    assert config.monitor.min_regions == 2 and config.telemetry is not None
    assert config.gateway is not None and config.gateway.settings.redis_url
    assert {t.provider for t in config.targets} >= {"openai", "anthropic", "groq"}


@pytest.mark.parametrize(
    "service",
    [
        name
        for name, spec in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"].items()
        if "command" in spec and "image" not in spec
    ],
)
def test_every_llmpulse_command_in_the_compose_file_parses(service: str) -> None:
    spec = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"][service]
    name, *args = spec["command"]
    command = main.commands[name]
    with command.make_context(name, list(args)) as ctx:
        assert ctx.params  # parsed: the options exist and take these values
