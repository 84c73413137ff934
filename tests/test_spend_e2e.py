"""Who spent what, end to end: the official SDKs call a real `llmpulse gateway` process under
three keys, for several users and tags; the gateway records into SQLite; `/api/v1/costs` by
every dimension then equals the sums of the per-request costs worked out here from the usage
the simulator reported to each SDK and the prices the config gives."""

from __future__ import annotations

import signal
import socket
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from conftest import base_url, sim_model, spawn_llmpulse
from llmpulse.config import load_config
from llmpulse.sim.server import SimServer
from webserve import ServedWeb

# Prices per token, as a LiteLLM file gives them: every request's cost is exact arithmetic.
PRICES = {"chat": (2e-6, 8e-6), "claude": (3e-6, 15e-6)}
KEYS = {"SEARCH_KEY": "gw-search-e2e-1", "SUPPORT_KEY": "gw-support-e2e-1", "BATCH_KEY": "gw-b-1"}
HI: Any = [{"role": "user", "content": "hello there, how are you today?"}]


def write_config(sim: SimServer, tmp_path: Path, gpt: str, claude: str) -> Path:
    def entry(group: str, provider: str, model: str) -> dict[str, Any]:
        price_in, price_out = PRICES[group]
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"{provider}/{model}",
                "api_base": base_url(sim, provider),
                "api_key": "os.environ/SIM_KEY",
                "input_cost_per_token": price_in,
                "output_cost_per_token": price_out,
            },
        }

    raw = {
        "model_list": [entry("chat", "openai", gpt), entry("claude", "anthropic", claude)],
        "gateway": {
            "monitor": False,  # traffic only: no probe spend in the figures
            "keys": [
                {"name": "search-backend", "key": "os.environ/SEARCH_KEY", "team": "search"},
                {"name": "support-bot", "key": "os.environ/SUPPORT_KEY", "team": "support"},
                {"name": "batch", "key": "os.environ/BATCH_KEY"},
            ],
        },
    }
    path = tmp_path / "llmpulse.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def wait_until_up(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.1)


def test_costs_by_every_dimension_equal_the_requests_costs(
    sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpt = sim_model(sim, ttft="5ms", tokens_per_s=2000, output_tokens=7)
    claude = sim_model(sim, ttft="5ms", tokens_per_s=2000, output_tokens=11)
    config_path = write_config(sim, tmp_path, gpt, claude)
    for name, value in {**KEYS, "SIM_KEY": "sk-sim"}.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "results.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gateway = spawn_llmpulse(
        ["gateway", "--config", str(config_path), "--db", str(db), "--listen", f"127.0.0.1:{port}"],
        tmp_path, "gateway.log",
    )  # fmt: skip
    # (key, team, user, tags, group, cost) of every request, from what each SDK was told.
    made: list[tuple[str, str | None, str | None, list[str], str, float]] = []

    def cost(group: str, input_tokens: int, output_tokens: int) -> float:
        price_in, price_out = PRICES[group]
        return input_tokens * price_in + output_tokens * price_out

    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(f"{url}/health/liveliness")

        def oai(env: str) -> openai.OpenAI:
            return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[env], max_retries=0)

        def ant(env: str) -> anthropic.Anthropic:
            return anthropic.Anthropic(base_url=url, api_key=KEYS[env], max_retries=0)

        plan = [
            ("SEARCH_KEY", "search-backend", "search", "alice", ["feature=search", "env=prod"]),
            ("SEARCH_KEY", "search-backend", "search", "bob", ["feature=search"]),
            ("SUPPORT_KEY", "support-bot", "support", "carol", ["feature=help", "env=prod"]),
            ("BATCH_KEY", "batch", None, None, []),
        ]
        for env, key, team, user, tags in plan:
            # OpenAI's SDK: user and LiteLLM's metadata.tags, plain and streamed.
            answer = oai(env).chat.completions.create(
                model="chat",
                messages=HI,
                user=user or openai.NOT_GIVEN,
                extra_body={"metadata": {"tags": tags}},
            )
            assert answer.usage is not None
            usage = answer.usage
            made.append(
                (key, team, user, tags, "chat", cost("chat", usage.prompt_tokens, usage.completion_tokens))
            )  # fmt: skip
            chunks = list(
                oai(env).chat.completions.create(
                    model="chat",
                    messages=HI,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={
                        "x-llmpulse-user": user or "",
                        "x-llmpulse-tags": ",".join(tags),
                    },
                )
            )
            final = chunks[-1].usage
            assert final is not None
            made.append(
                (key, team, user, tags, "chat", cost("chat", final.prompt_tokens, final.completion_tokens))
            )  # fmt: skip
            # Anthropic's SDK: metadata.user_id, tags in the header, plain and streamed.
            metadata: Any = {"user_id": user} if user else anthropic.NOT_GIVEN
            headers = {"x-llmpulse-tags": ",".join(tags)}
            message = ant(env).messages.create(
                model="claude", max_tokens=64, messages=HI, metadata=metadata, extra_headers=headers
            )
            u = message.usage
            made.append(
                (key, team, user, tags, "claude", cost("claude", u.input_tokens, u.output_tokens))
            )
            with ant(env).messages.stream(
                model="claude", max_tokens=64, messages=HI, metadata=metadata, extra_headers=headers
            ) as stream:
                u = stream.get_final_message().usage
            made.append(
                (key, team, user, tags, "claude", cost("claude", u.input_tokens, u.output_tokens))
            )
    finally:
        gateway.send_signal(signal.SIGINT)
        gateway.wait(timeout=30)  # what it recorded is flushed before it exits

    want: dict[str, dict[str | None, float]] = defaultdict(lambda: defaultdict(float))
    counts: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for key, team, user, tags, group, usd in made:
        # openai/ with another api_base is an OpenAI-compatible server, as LiteLLM reads it.
        provider = "openai-compatible" if group == "chat" else "anthropic"
        model = gpt if group == "chat" else claude
        owners = {"key": [key], "team": [team], "user": [user], "model": [model]}
        owners |= {"provider": [provider], "tag": tags or [None]}
        for by, names in owners.items():
            for name in names:
                want[by][name] += usd
                counts[by][name] += 1
    assert all(usd > 0 for *_, usd in made) and len(made) == 16

    config = load_config(config_path)
    with ServedWeb(config, db) as web:
        for by in ("key", "team", "user", "tag", "model", "provider"):
            for source in ("traffic", "all"):
                got = httpx.get(
                    f"{web.url}/api/v1/costs", params={"by": by, "source": source}, timeout=10
                )
                assert got.status_code == 200, got.text
                body = got.json()
                assert body["by"] == by
                rows = body["rows"]
                assert {r["source"] for r in rows} == {"traffic"}  # no probes ran
                assert {r["name"]: r["cost_usd"] for r in rows} == pytest.approx(want[by]), by
                assert {r["name"]: r["requests"] for r in rows} == counts[by], by
        probes = httpx.get(
            f"{web.url}/api/v1/costs", params={"by": "key", "source": "probe"}, timeout=10
        ).json()
        assert probes["rows"] == []
