"""The gateway failing over across clouds with the official SDKs as clients: OpenAI down, then
Bedrock down too, so Gemini on Vertex AI answers; and back to OpenAI once it recovers. Every
Bedrock request is SigV4-verified by the simulator, every Vertex request carries a token its
fake OAuth2 endpoint issued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from llmpulse.config.gateway import GatewayConfig
from llmpulse.sim.server import SimServer
from test_gateway_bedrock import ENV, bedrock_entry
from test_gateway_proxy import FAST, Served
from test_vertex import credentials_file, gateway_config, reset, truth, vertex_deployment

BEDROCK = "amazon.nova-lite-v1:0"
GEMINI = "gemini-2.5-flash"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def sim():
    server = SimServer()
    server.start()
    yield server
    server.stop()


def config(sim: SimServer, tmp_path: Path) -> GatewayConfig:
    openai = {
        "model_name": "chat",
        "litellm_params": {
            "model": "openai/gpt-flaky",
            "api_base": sim.openai_base,
            "api_key": "os.environ/SIM_KEY",
        },
    }
    return gateway_config(
        [
            openai,
            bedrock_entry(sim, "aws", BEDROCK),
            vertex_deployment(sim, "gcp", GEMINI, credentials_file(sim, tmp_path)),
        ],
        # No cool-down: every request walks the whole path (the breakers are tested elsewhere).
        router={"fallbacks": [{"chat": ["aws", "gcp"]}], "num_retries": 0, "allowed_fails": 1000},
        env=ENV,
    )


def patch(sim: SimServer, model: str, behavior: dict[str, Any]) -> None:
    httpx.patch(f"{sim.url}/_sim/models/{model}", json=behavior, timeout=10).raise_for_status()


def answered_by(sim: SimServer, since: int) -> list[tuple[str, bool]]:
    """The upstream requests made since the ``since``-th: (protocol, whether it was a 200)."""
    return [(r["protocol"], r["status"] == 200) for r in truth(sim)[since:]]


def test_openai_to_bedrock_to_vertex_and_back_with_the_official_sdks(
    sim: SimServer, tmp_path: Path
) -> None:
    down = {"errors": {"503": 1.0}, **FAST}
    reset(sim, **{"gpt-flaky": down, BEDROCK: down, GEMINI: dict(FAST)})
    with Served(config(sim, tmp_path)) as served:
        oa, an = served.openai(), served.anthropic()
        answer = oa.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=32)
        assert answer.model == GEMINI and answer.choices[0].message.content
        chunks = list(oa.chat.completions.create(model="chat", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        message = an.messages.create(model="chat", max_tokens=32, messages=MESSAGES)
        assert message.model == GEMINI and message.content[0].type == "text"
        with an.messages.stream(model="chat", max_tokens=32, messages=MESSAGES) as stream:
            assert "".join(stream.text_stream)
        # Each request went down the whole path, in order, and only Vertex answered.
        path = [("openai", False), ("bedrock", False), ("vertex", True)]
        assert answered_by(sim, 0) == path * 4
        assert [r.provider for r in served.records if r.ok] == ["vertex"] * 4

        # Bedrock back: it answers before Vertex is asked.
        patch(sim, BEDROCK, {"errors": {}})
        seen = len(truth(sim))
        answer = oa.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=32)
        assert answer.model == BEDROCK
        assert answered_by(sim, seen) == [("openai", False), ("bedrock", True)]

        # OpenAI back: the fallbacks are left alone again.
        patch(sim, "gpt-flaky", {"errors": {}})
        seen = len(truth(sim))
        with an.messages.stream(model="chat", max_tokens=32, messages=MESSAGES) as stream:
            assert "".join(stream.text_stream)
            assert stream.get_final_message().model == "gpt-flaky"
        assert answered_by(sim, seen) == [("openai", True)]
