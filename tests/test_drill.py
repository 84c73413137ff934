"""Failover drills against the simulator: ``llmpulse drill`` walks each failover path with the
deployments before it forced out, and a path whose fallback's key was revoked fails, named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from conftest import base_url, sim_model
from llmpulse.cli import main
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.drill import JSON_KEYS, failover_paths
from llmpulse.result import Source
from llmpulse.sim.scenario import Scenario
from llmpulse.sim.server import SimServer
from llmpulse.store import open_store

GOOD, REVOKED = "sk-good", "sk-revoked"
FAST = {"ttft": 0.01, "tokens_per_s": 2000}


@pytest.fixture
def keyed_sim() -> Iterator[SimServer]:
    """A simulator that accepts one key only: any other is refused (401), as a revoked one."""
    server = SimServer(Scenario(api_keys=[GOOD]))
    server.start()
    yield server
    server.stop()


def entry(group: str, provider: str, model: str, base: str, **params: Any) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {"model": f"{provider}/{model}", "api_base": base, **params},
    }


def drill_file(sim: SimServer, tmp_path: Path, extra: dict[str, Any] | None = None) -> Path:
    """Group ``chat``: an OpenAI primary (order 2) and an Anthropic one (order 1); its fallback
    ``backup``'s one deployment takes its key from $BACKUP_KEY."""
    primary, second, backup = (sim_model(sim, **FAST) for _ in range(3))
    raw = {
        "model_list": [
            entry(
                "chat",
                "openai",
                primary,
                base_url(sim, "openai"),
                api_key="os.environ/GOOD_KEY",
                order=2,
            ),
            entry(
                "chat",
                "anthropic",
                second,
                base_url(sim, "anthropic"),
                api_key="os.environ/GOOD_KEY",
                order=1,
            ),
            entry(
                "backup", "openai", backup, base_url(sim, "openai"), api_key="os.environ/BACKUP_KEY"
            ),
        ],
        "router_settings": {"fallbacks": [{"chat": ["backup"]}], "num_retries": 0},
        **(extra or {}),
    }
    path = tmp_path / "llmpulse.yaml"
    path.write_text(json.dumps(raw))
    return path


def drill(config: Path, db: Path, backup_key: str, *args: str) -> Result:
    env = {"GOOD_KEY": GOOD, "BACKUP_KEY": backup_key}
    return CliRunner().invoke(
        main, ["drill", "--config", str(config), "--db", str(db), *args], env=env
    )


def sim_requests(sim: SimServer) -> list[dict[str, Any]]:
    return httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]


def test_paths_follow_priority_then_fallback_groups(sim: SimServer, tmp_path: Path) -> None:
    raw = json.loads(drill_file(sim, tmp_path).read_text())
    config = parse_gateway(raw, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config is not None
    plan = failover_paths(config)
    chat = [d.name for d in config.resolve("chat")]
    backup = config.resolve("backup")[0].name
    # order 1 (the Anthropic deployment) first, then order 2, then the fallback group.
    assert [p.names for p in plan.paths if p.group == "chat"] == [
        [chat[1]],
        [chat[1], chat[0]],
        [chat[1], chat[0], backup],
    ]
    assert [p.names for p in plan.paths if p.group == "backup"] == [[backup]]
    # max_fallbacks 0: the fallback is never reached, so it is named, not drilled.
    raw["router_settings"]["max_fallbacks"] = 0
    config = parse_gateway(raw, env={"GOOD_KEY": GOOD, "BACKUP_KEY": GOOD})
    assert config is not None
    plan = failover_paths(config, "chat")
    assert [len(p.deployments) for p in plan.paths] == [1, 2]
    assert any("backup unreachable" in n and "max_fallbacks" in n for n in plan.notes)


def test_revoked_fallback_key_fails_its_path_and_fixing_it_passes(
    keyed_sim: SimServer, tmp_path: Path
) -> None:
    config, db = drill_file(keyed_sim, tmp_path), tmp_path / "results.db"
    result = drill(config, db, REVOKED, "--group", "chat")
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "auth" in result.output
    assert REVOKED not in result.output  # the provider's words, redacted

    httpx.delete(f"{keyed_sim.url}/_sim/requests", timeout=10)
    result = drill(config, db, REVOKED, "--group", "chat", "--json")
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert len(rows) == 6  # three paths, streamed and not
    assert all(tuple(r) == JSON_KEYS for r in rows)
    broken = [r for r in rows if not r["ok"]]
    assert len(broken) == 2 and {r["stream"] for r in broken} == {False, True}
    assert all(len(r["path"]) == 3 and r["error_class"] == "auth" for r in broken)
    assert all(
        r["ok"] and r["output_tokens"] and r["latency_ms"] for r in rows if len(r["path"]) < 3
    )
    assert all(r["ttft_ms"] is not None for r in rows if r["stream"] and r["ok"])
    # Each primary deployment answered its own path's two requests only: forced out of the
    # paths after it, it was never called there; the revoked fallback answered nothing.
    models = [e["litellm_params"]["model"].split("/", 1)[1] for e in
              json.loads(config.read_text())["model_list"]]  # fmt: skip
    answered = [r["model"] for r in sim_requests(keyed_sim) if r["status"] == 200]
    assert sorted(answered) == sorted([models[0], models[0], models[1], models[1]])

    # Stored as drill results, the route naming every deployment of the path in order.
    with open_store(db) as store:
        stored = store.results_between(0, 2e9)
    drills = [r for r in stored if r.source is Source.DRILL]
    assert len(drills) == 12 and all(r.drill and r.drill.startswith("drill-") for r in drills)
    failed = [r for r in drills if not r.ok]
    assert len(failed) == 4 and all(sorted(r.route) == sorted(broken[0]["path"]) for r in failed)
    assert all(r.route[-1] == broken[0]["path"][-1] for r in failed)

    result = drill(config, db, GOOD, "--group", "chat")
    assert result.exit_code == 0, result.output


def test_dry_run_sends_nothing(keyed_sim: SimServer, tmp_path: Path) -> None:
    config, db = drill_file(keyed_sim, tmp_path), tmp_path / "results.db"
    httpx.delete(f"{keyed_sim.url}/_sim/requests", timeout=10)
    result = drill(config, db, REVOKED, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "4 paths, 8 requests" in result.output and "nothing sent" in result.output
    result = drill(config, db, REVOKED, "--dry-run", "--json")
    rows = json.loads(result.stdout)
    assert [len(r["path"]) for r in rows] == [1, 2, 3, 1]
    assert sim_requests(keyed_sim) == []
    assert not db.exists()


def test_unknown_group_is_a_usage_error(sim: SimServer, tmp_path: Path) -> None:
    result = drill(drill_file(sim, tmp_path), tmp_path / "r.db", GOOD, "--group", "nope")
    assert result.exit_code == 2
    assert "--group: 'nope' names no model group" in result.output
