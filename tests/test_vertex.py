"""Vertex AI over loopback: Gemini and Claude on Vertex probed through the simulator with real
OAuth2 (a service-account file signed by a key made here, google-auth's JWT-bearer grant at the
simulator's token endpoint), tokens refreshed before expiry, and the gateway failing over to
Vertex for OpenAI and Anthropic SDK clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.server
import itertools
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import google.oauth2.credentials
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.oauth2 import service_account

from llmpulse.config import ConfigError, parse_config
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.errors import ErrorClass
from llmpulse.gateway.app import DEPLOYMENT_HEADER
from llmpulse.probe import Prober
from llmpulse.providers import PROTOCOLS
from llmpulse.providers.vertex import SCOPE, token_source
from llmpulse.result import CheckKind
from llmpulse.secrets import Redactor
from llmpulse.sim.common import text_of
from llmpulse.sim.server import SimServer
from llmpulse.target import Target
from test_gateway_proxy import FAST, Served, ask

PROJECT = "sim-project"
ACCOUNT = f"prober@{PROJECT}.iam.gserviceaccount.com"
_names = itertools.count()


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


PRIVATE_KEY, PUBLIC_KEY = _pem_pair()  # made for these tests, never written outside tmp_path


@pytest.fixture(scope="module")
def vsim():
    server = SimServer()
    server.start()
    yield server
    server.stop()


def reset(sim: SimServer, lifetime: float = 3600, **models: dict[str, Any]) -> None:
    """The simulator with these models and a token endpoint trusting this module's key."""
    scenario = {
        "models": models,
        "google_auth": {"service_accounts": {ACCOUNT: PUBLIC_KEY}, "token_lifetime": lifetime},
    }
    httpx.post(f"{sim.url}/_sim/reset", json=scenario, timeout=10).raise_for_status()


def credentials_file(sim: SimServer, tmp_path: Path, private_key: str = PRIVATE_KEY) -> Path:
    """A service-account file whose token_uri is the simulator's (a new path: its own token)."""
    path = tmp_path / f"sa-{next(_names)}.json"
    info = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test-key-1",
        "private_key": private_key,
        "client_email": ACCOUNT,
        "client_id": "1000",
        "token_uri": sim.token_uri,
    }
    path.write_text(json.dumps(info))
    return path


def vertex_target(sim: SimServer, model: str, creds: Path | str, **extra: Any) -> Target:
    raw = {
        "provider": "vertex",
        "model": model,
        "project": PROJECT,
        "location": "us-east5",
        "base_url": sim.vertex_base,
        **({"credentials_file": str(creds)} if creds else {}),
        **extra,
    }
    return parse_config({"targets": [raw]}, env={}).targets[0]


def gateway_config(
    entries: list[dict[str, Any]],
    router: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> GatewayConfig:
    raw = {"model_list": entries, "router_settings": router or {}}
    config = parse_gateway(raw, env={"SIM_KEY": "sk-sim", **(env or {})})
    assert config is not None
    return config


def truth(sim: SimServer) -> list[dict[str, Any]]:
    return httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]


async def check(target: Target, kind: CheckKind = CheckKind.STREAM):
    async with Prober() as prober:
        return await prober.check(target, kind)


# ---- configuration -------------------------------------------------------------------------


def test_a_vertex_target_needs_project_and_location_and_a_real_file(tmp_path):
    with pytest.raises(ConfigError, match="'project' is required for provider vertex"):
        parse_config({"targets": [{"provider": "vertex", "location": "us-east5"}]}, env={})
    with pytest.raises(ConfigError, match="'location' is required for provider vertex"):
        parse_config({"targets": [{"provider": "vertex", "project": PROJECT}]}, env={})
    with pytest.raises(ConfigError, match="'project' is only for provider vertex"):
        parse_config({"targets": [{"provider": "gemini", "project": PROJECT}]}, env={})
    for key, value, expected in (
        ("project", "My Project", "a Google Cloud project id"),
        ("location", "us east", "a Google Cloud region"),
    ):
        raw = {"provider": "vertex", "project": PROJECT, "location": "us-east5", key: value}
        with pytest.raises(ConfigError, match=rf"targets\[0\]\.{key}: expected {expected}"):
            parse_config({"targets": [raw]}, env={})
    missing = tmp_path / "nowhere.json"
    with pytest.raises(
        ConfigError, match=r"targets\[0\]\.credentials_file: .*nowhere\.json is not"
    ):
        parse_config(
            {
                "targets": [
                    {
                        "provider": "vertex",
                        "project": PROJECT,
                        "location": "us-east5",
                        "credentials_file": str(missing),
                    }
                ]
            },
            env={},
        )


def test_only_gemini_and_claude_are_asked_of_vertex(vsim, tmp_path):
    # Vertex serves Llama (an OpenAI-compatible endpoint), Mistral (its own format) and tuned
    # models (projects/.../endpoints/ID) elsewhere: asked as Gemini they could only 404.
    for model in ("meta/llama-3.1-405b-instruct-maas", "mistral-large@2407", "1234567890"):
        with pytest.raises(ConfigError, match=r"targets\[0\]: 'model' of provider vertex"):
            parse_config(
                {
                    "targets": [
                        {"provider": "vertex", "project": PROJECT, "location": "x1", "model": model}
                    ]
                },
                env={},
            )
    creds = credentials_file(vsim, tmp_path)
    config = gateway_config(
        [
            vertex_deployment(vsim, "chat", "gemini-2.5-flash", creds),
            vertex_deployment(vsim, "chat", "meta/llama-3.1-405b-instruct-maas", creds),
            vertex_deployment(vsim, "chat", "gemini/1234567890", creds),
            vertex_deployment(vsim, "vx/*", "*", creds),
        ]
    )
    assert [d.model for d in config.resolve("chat")] == ["gemini-2.5-flash"]
    assert any("gemini/1234567890: not Gemini nor Claude" in w for w in config.warnings)
    assert [d.model for d in config.resolve("vx/claude-haiku-4-5")] == ["claude-haiku-4-5"]
    assert config.resolve("vx/mistral-large@2407") == []


def test_urls_protocols_and_bodies_follow_the_model():
    regional = parse_config(
        {"targets": [{"provider": "vertex", "project": PROJECT, "location": "europe-west4"}]},
        env={},
    ).targets[0]
    assert regional.protocol == "vertex" and regional.credentials_file is None
    spec = PROTOCOLS["vertex"].completion_request(
        regional, messages=[{"role": "user", "content": "hi"}], params={}, max_tokens=5, stream=True
    )
    assert spec.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/sim-project/locations/"
        "europe-west4/publishers/google/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse"
    )
    claude = parse_config(
        {
            "targets": [
                {
                    "provider": "vertex",
                    "project": PROJECT,
                    "location": "global",
                    "model": "claude-haiku-4-5@20251001",
                }
            ]
        },
        env={},
    ).targets[0]
    assert claude.protocol == "vertex-anthropic"
    protocol = PROTOCOLS["vertex-anthropic"]
    spec = protocol.completion_request(
        claude, messages=[{"role": "user", "content": "hi"}], params={}, max_tokens=5, stream=False
    )
    assert spec.url == (
        "https://aiplatform.googleapis.com/v1/projects/sim-project/locations/global/publishers/"
        "anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    )
    assert spec.json == {
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "anthropic_version": "vertex-2023-10-16",
    }
    models = protocol.models_request(claude)
    assert models.url == (
        "https://aiplatform.googleapis.com/v1/publishers/anthropic/models/claude-haiku-4-5"
    )


# ---- probes ----------------------------------------------------------------------------------


async def test_gemini_on_vertex_streams_answers_and_is_listed(vsim, tmp_path):
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "50ms", "tokens_per_s": 200, "output_tokens": 12}})
    target = vertex_target(vsim, "gemini-2.5-flash", credentials_file(vsim, tmp_path))
    stream = await check(target)
    assert stream.ok, stream.error_message
    assert stream.usage.output_tokens == 12 and 50 <= stream.ttft_ms < 150
    assert stream.cost_usd is not None and stream.cost_usd > 0  # genai-prices' google rates
    assert stream.context_window == 1048576
    inference = await check(target, CheckKind.INFERENCE)
    assert inference.ok, inference.error_message
    models = await check(target, CheckKind.MODELS)
    assert models.ok and models.model_listed
    sent = [r for r in truth(vsim) if r["protocol"] == "vertex"]
    assert [r["stream"] for r in sent] == [True, False]
    assert sent[0]["body"]["generationConfig"] == {"maxOutputTokens": target.max_tokens}


async def test_claude_on_vertex_is_asked_in_anthropics_format(vsim, tmp_path):
    model = "claude-haiku-4-5@20251001"
    reset(vsim, **{model: {"ttft": "40ms", "tokens_per_s": 200, "output_tokens": 10}})
    target = vertex_target(vsim, model, credentials_file(vsim, tmp_path))
    result = await check(target)
    assert result.ok, result.error_message
    assert result.usage.output_tokens == 10 and result.context_window == 200000
    # Claude Haiku 4.5 on Vertex: $1 / $5 per MTok
    assert result.cost_usd == pytest.approx((result.usage.input_tokens * 1 + 10 * 5) / 1e6)
    inference = await check(target, CheckKind.INFERENCE)
    assert inference.ok, inference.error_message
    body = next(r for r in truth(vsim) if r["protocol"] == "vertex-anthropic")["body"]
    assert body["anthropic_version"] == "vertex-2023-10-16" and "model" not in body
    assert body["stream"] is True
    # The publisher model is named without its version.
    httpx.patch(f"{vsim.url}/_sim/models/claude-haiku-4-5", json={}, timeout=10)
    models = await check(target, CheckKind.MODELS)
    assert models.ok and models.model_listed, models.error_message


@pytest.mark.parametrize(
    ("model", "kind", "error_class", "said"),
    [
        ("gemini-2.5-flash", "429", ErrorClass.RATE_LIMITED, "RESOURCE_EXHAUSTED"),
        ("gemini-2.5-flash", "503", ErrorClass.UNAVAILABLE, "UNAVAILABLE"),
        ("claude-sonnet-4-5@20250929", "429", ErrorClass.RATE_LIMITED, "RESOURCE_EXHAUSTED"),
        ("claude-sonnet-4-5@20250929", "overloaded", ErrorClass.UNAVAILABLE, "overloaded_error"),
        ("claude-sonnet-4-5@20250929", "context_length", ErrorClass.CONTEXT_LENGTH, "too long"),
    ],
)
async def test_errors_are_read_in_the_shape_vertex_sends(
    vsim, tmp_path, model, kind, error_class, said
):
    reset(vsim, **{model: {"errors": {kind: 1.0}, "retry_after": "7s"}})
    result = await check(vertex_target(vsim, model, credentials_file(vsim, tmp_path)))
    assert not result.ok and result.error_class is error_class, result.error_message
    assert said in result.error_message
    if kind == "429" and model.startswith("gemini"):
        assert result.retry_after_s == 7  # google.rpc.RetryInfo


async def test_an_unknown_model_is_not_found_and_not_listed(vsim, tmp_path):
    reset(vsim)
    target = vertex_target(vsim, "gemini-9-nope", credentials_file(vsim, tmp_path))
    for kind in (CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM):
        result = await check(target, kind)
        assert result.error_class is ErrorClass.BAD_REQUEST, result.error_message
        assert result.http_status == 404
        assert "publishers/google/models/gemini-9-nope" in result.error_message


# ---- credentials -----------------------------------------------------------------------------


async def test_credentials_that_fail_are_auth_naming_the_file_never_its_content(vsim, tmp_path):
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "10ms"}})
    other_private, _ = _pem_pair()  # a key the token endpoint does not trust
    untrusted = credentials_file(vsim, tmp_path, other_private)
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"type": "service_account", "private_key": "SECRET-MATERIAL"')
    for path, reason in ((untrusted, "Invalid JWT Signature"), (garbage, "JSONDecodeError")):
        result = await check(vertex_target(vsim, "gemini-2.5-flash", path))
        assert result.error_class is ErrorClass.AUTH, result.error_message
        assert str(path) in result.error_message and reason in result.error_message
        assert "SECRET-MATERIAL" not in result.error_message
        assert "PRIVATE KEY" not in result.error_message
    assert not truth(vsim)  # nothing reached the model without a token


class GarbageTokenEndpoint(http.server.BaseHTTPRequestHandler):
    """A token endpoint answering ``answers[path]`` (status, body) to any grant: what a captive
    portal, a broken proxy or a hostile server sends instead of Google's answer."""

    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        status, body = self.answers[self.path]
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # the client may stop reading a huge one
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def garbage_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), GarbageTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_garbage_from_the_token_endpoint_or_the_file_is_auth_never_a_crash(
    vsim, tmp_path, garbage_endpoint
):
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "0s"}})
    token = {"access_token": "ya29.fine", "expires_in": 3600}
    answers = {
        "/html": (200, b"<html>Sign in to the hotel wifi</html>"),
        "/list": (200, b"[]"),
        "/null": (200, b"null"),
        "/expiry-object": (200, json.dumps({**token, "expires_in": {"s": 1}}).encode()),
        "/expiry-huge": (200, json.dumps({**token, "expires_in": 1e300}).encode()),
        "/token-number": (200, json.dumps({**token, "access_token": 12345678}).encode()),
        "/token-crlf": (200, json.dumps({**token, "access_token": "ya29.a\r\nx-a: b"}).encode()),
        "/token-huge": (
            200,
            json.dumps({**token, "access_token": "ya29." + "a" * 300_000}).encode(),
        ),
        "/body-huge": (200, b" " * 8_000_000 + json.dumps(token).encode()),
    }
    GarbageTokenEndpoint.answers = answers
    paths = []
    for name in answers:
        path = credentials_file(vsim, tmp_path)
        info = json.loads(path.read_text())
        path.write_text(json.dumps({**info, "token_uri": garbage_endpoint + name}))
        paths.append(path)
    # Garbage from the endpoint is the endpoint's fault (protocol), not the credentials'.
    expected = dict.fromkeys(paths, ErrorClass.PROTOCOL)
    not_an_object = tmp_path / "list.json"
    not_an_object.write_text("[1, 2]")
    expected[not_an_object] = ErrorClass.AUTH
    for path, error_class in expected.items():
        target = vertex_target(vsim, "gemini-2.5-flash", path, timeout="5s")
        for _ in range(2):  # and again: a bad token is not kept as if it were good
            result = await check(target, CheckKind.INFERENCE)
            assert result.error_class is error_class, (path, result.error_message)
            assert str(path) in result.error_message
    assert not truth(vsim)  # nothing reached the model without a token


async def test_a_token_endpoint_down_is_an_outage_not_bad_credentials(
    vsim, tmp_path, garbage_endpoint
):
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "0s"}})
    GarbageTokenEndpoint.answers = {
        "/down": (503, b'{"error": "temporarily_unavailable"}'),  # retried by google-auth
        "/refused": (400, b'{"error": "invalid_grant", "error_description": "Invalid JWT"}'),
    }
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    cases = {
        f"{garbage_endpoint}/down": ErrorClass.UNAVAILABLE,
        f"{garbage_endpoint}/refused": ErrorClass.AUTH,
        f"http://127.0.0.1:{closed.getsockname()[1]}/token": ErrorClass.CONNECTION,
    }
    try:
        for token_uri, error_class in cases.items():
            path = credentials_file(vsim, tmp_path)
            path.write_text(json.dumps({**json.loads(path.read_text()), "token_uri": token_uri}))
            target = vertex_target(vsim, "gemini-2.5-flash", path, timeout="15s")
            result = await check(target, CheckKind.INFERENCE)
            assert result.error_class is error_class, (token_uri, result.error_message)
    finally:
        closed.close()


async def test_a_secret_of_unusable_type_is_not_quoted_in_the_reason(vsim, tmp_path):
    # google-auth repr's a private key it cannot convert to bytes: the reason must not show it.
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "0s"}})
    lines = [line for line in PRIVATE_KEY.splitlines() if "PRIVATE KEY" not in line]
    for odd in ([PRIVATE_KEY], {"pem": PRIVATE_KEY}):
        path = credentials_file(vsim, tmp_path)
        path.write_text(json.dumps({**json.loads(path.read_text()), "private_key": odd}))
        result = await check(vertex_target(vsim, "gemini-2.5-flash", path), CheckKind.INFERENCE)
        assert result.error_class is ErrorClass.AUTH and str(path) in result.error_message
        assert "InvalidValue" in result.error_message  # the reason is still said
        assert not any(line[:16] in result.error_message for line in lines), result.error_message


class HangingTokenEndpoint(http.server.BaseHTTPRequestHandler):
    """A token endpoint that takes the grant and answers only when ``release`` is set."""

    release = threading.Event()
    grants = 0

    def do_POST(self) -> None:
        type(self).grants += 1
        self.release.wait(30)
        body = b'{"error": "temporarily_unavailable"}'
        self.send_response(503)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(ConnectionError):
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


async def test_a_hanging_token_endpoint_holds_no_thread_of_the_event_loops(vsim, tmp_path, caplog):
    # Many probes waiting for one credentials' token: they wait for the one refresh, holding
    # no thread of the loop's default executor, where aiohttp resolves every provider's host.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HangingTokenEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    HangingTokenEndpoint.release.clear()
    path = credentials_file(vsim, tmp_path)
    info = json.loads(path.read_text())
    token_uri = f"http://127.0.0.1:{server.server_address[1]}/token"
    path.write_text(json.dumps({**info, "token_uri": token_uri}))
    target = vertex_target(vsim, "gemini-2.5-flash", path, timeout="1s")
    try:
        waiting = [asyncio.create_task(check(target, CheckKind.INFERENCE)) for _ in range(40)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.to_thread(lambda: None), 5)
        assert time.monotonic() - started < 0.5  # the default executor is free
        results = await asyncio.gather(*waiting)
        assert {r.error_class for r in results} == {ErrorClass.TIMEOUT}
        assert "obtaining credentials" in results[0].error_message
        assert HangingTokenEndpoint.grants == 1  # one refresh for them all
        HangingTokenEndpoint.release.set()
        source = token_source(str(path))
        while source._pending is not None:  # the refresh ends (503s, retried by google-auth)
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.1)
        gc.collect()
        assert "never retrieved" not in caplog.text  # its failure was no one's to log
    finally:
        HangingTokenEndpoint.release.set()
        server.shutdown()
        server.server_close()


async def test_application_default_credentials_are_used_without_a_file(vsim, tmp_path, monkeypatch):
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "0s"}})
    target = vertex_target(vsim, "gemini-2.5-flash", "")
    assert target.credentials_file is None
    token_source.cache_clear()  # ADC is one source per process: start from none
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    refused = await check(target, CheckKind.INFERENCE)
    assert refused.error_class is ErrorClass.AUTH
    assert refused.error_message.startswith("Vertex AI application default credentials: ")
    token_source.cache_clear()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(credentials_file(vsim, tmp_path)))
    answered = await check(target, CheckKind.INFERENCE)
    assert answered.ok, answered.error_message
    token_source.cache_clear()


async def test_an_echoed_access_token_is_redacted(vsim, tmp_path):
    reset(vsim, **{"gemini-2.5-flash": {"errors": {"400": 1.0}, "echo_credentials": True}})
    result = await check(vertex_target(vsim, "gemini-2.5-flash", credentials_file(vsim, tmp_path)))
    assert result.error_class is ErrorClass.BAD_REQUEST
    assert "[redacted]" in result.error_message and "ya29." not in result.error_message
    assert Redactor()("refused ya29.a0AfB_byC-12345 here") == "refused [redacted] here"


async def test_the_simulator_refuses_missing_unknown_and_expired_tokens(vsim, tmp_path):
    reset(vsim, lifetime=1, **{"gemini-2.5-flash": {"ttft": "0s"}})
    creds = service_account.Credentials.from_service_account_file(
        str(credentials_file(vsim, tmp_path)), scopes=[SCOPE]
    )
    from google.auth.transport.requests import Request

    await asyncio.to_thread(creds.refresh, Request())
    url = (
        f"{vsim.vertex_base}/projects/{PROJECT}/locations/us-east5/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    live = httpx.post(url, json=body, headers={"authorization": f"Bearer {creds.token}"})
    assert live.status_code == 200, live.text
    await asyncio.sleep(1.1)
    cases = {
        "ACCESS_TOKEN_EXPIRED": {"authorization": f"Bearer {creds.token}"},
        "ACCESS_TOKEN_TYPE_UNSUPPORTED": {"authorization": "Bearer ya29.made-up"},
        "CREDENTIALS_MISSING": {},
    }
    for reason, headers in cases.items():
        refused = httpx.post(url, json=body, headers=headers)
        assert refused.status_code == 401
        error = refused.json()["error"]
        assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED"
        assert error["details"][0]["reason"] == reason


async def test_tokens_are_refreshed_before_they_expire_without_a_failed_request(vsim, tmp_path):
    # google-auth deems a token expired 3 min 45 s before it is: a token of 228 s is fresh for
    # 3 s only, and must be replaced then, while the simulator would still accept it.
    reset(vsim, lifetime=228, **{"gemini-2.5-flash": {"ttft": "0s", "output_tokens": 2}})
    target = vertex_target(vsim, "gemini-2.5-flash", credentials_file(vsim, tmp_path))
    issued = vsim.state.tokens.issued
    async with Prober() as prober:
        # A burst of concurrent first requests: one refresh, which every caller waits for.
        burst = await asyncio.gather(*(prober.check(target, CheckKind.STREAM) for _ in range(8)))
        assert all(r.ok for r in burst), [r.error_message for r in burst]
        assert vsim.state.tokens.issued == issued + 1
        started = time.monotonic()
        results = []
        while time.monotonic() - started < 4.5:
            results.append(await prober.check(target, CheckKind.INFERENCE))
            await asyncio.sleep(0.25)
    assert all(r.ok for r in results), [r.error_message for r in results if not r.ok]
    assert vsim.state.tokens.issued == issued + 2  # the second, about 3 s in


async def test_short_lived_tokens_never_fail_a_request(vsim, tmp_path):
    # Tokens of 2 s, which google-auth refreshes for every request: none is sent expired.
    reset(vsim, lifetime=2, **{"claude-haiku-4-5": {"ttft": "0s", "output_tokens": 2}})
    target = vertex_target(vsim, "claude-haiku-4-5", credentials_file(vsim, tmp_path))
    issued = vsim.state.tokens.issued
    started = time.monotonic()
    async with Prober() as prober:
        results = []
        while time.monotonic() - started < 5:
            results.append(await prober.check(target, CheckKind.INFERENCE))
            await asyncio.sleep(0.3)
    assert all(r.ok for r in results), [r.error_message for r in results if not r.ok]
    assert vsim.state.tokens.issued - issued >= 3


# ---- gateway ---------------------------------------------------------------------------------


def model_base(sim: SimServer, model: str) -> str:
    """LiteLLM's vertex_ai/ api_base: the model's URL up to ``:method``."""
    publisher = "anthropic" if model.startswith("claude-") else "google"
    return f"{sim.vertex_base}/projects/{PROJECT}/locations/us-east5/publishers/{publisher}/models/{model}"


def vertex_deployment(sim: SimServer, group: str, model: str, creds: Path) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {
            "model": f"vertex_ai/{model}",
            "api_base": model_base(sim, model),
            "vertex_project": PROJECT,
            "vertex_location": "us-east5",
            "vertex_credentials": str(creds),
        },
    }


def test_litellm_vertex_deployments_are_served_with_their_settings(vsim, tmp_path):
    creds = credentials_file(vsim, tmp_path)
    config = gateway_config(
        [
            vertex_deployment(vsim, "gemini", "gemini-2.5-flash", creds),
            {"model_name": "claude", "litellm_params": {"model": "vertex_ai/claude-haiku-4-5"}},
        ],
        env={"VERTEXAI_PROJECT": "env-project"},
    )
    gemini, claude = (g.deployments[0] for g in config.groups)
    assert (gemini.protocol, gemini.project, gemini.location) == ("vertex", PROJECT, "us-east5")
    assert gemini.credentials_file == str(creds)
    target = claude.to_target()
    assert target.protocol == "vertex-anthropic" and target.project == "env-project"
    assert target.base_url == "https://us-central1-aiplatform.googleapis.com/v1"  # LiteLLM's
    assert target.credentials_file is None  # application default credentials
    proxied = gateway_config(
        [
            vertex_deployment(vsim, "gone", "gemini-2.5-flash", tmp_path / "gone.json"),
            {
                "model_name": "proxied",
                "litellm_params": {
                    "model": "vertex_ai/gemini-2.5-flash",
                    "vertex_project": PROJECT,
                    "api_base": "https://proxy.example/vertex/gemini",
                },
            },
        ]
    )
    gone, opaque = (g.deployments[0] for g in proxied.groups)
    assert "gone.json" in (gone.missing_key or "")  # answers 401, as LiteLLM's
    assert any("no file at vertex_credentials" in w for w in proxied.warnings)
    # LiteLLM's api_base: {api_base}:{method}, the models looked up at the root it shows.
    target = gone.to_target()
    assert target.base_url == vsim.vertex_base and CheckKind.MODELS in target.checks
    hi = [{"role": "user", "content": "hi"}]
    stream = PROTOCOLS["vertex"].completion_request(
        target, messages=hi, params={}, max_tokens=1, stream=True
    )
    assert stream.url == model_base(vsim, "gemini-2.5-flash") + ":streamGenerateContent?alt=sse"
    target = opaque.to_target()
    assert target.checks == (CheckKind.INFERENCE, CheckKind.STREAM)  # no publisher model there
    url = PROTOCOLS["vertex"].completion_request(
        target, messages=hi, params={}, max_tokens=1, stream=False
    )
    assert url.url == "https://proxy.example/vertex/gemini:generateContent"
    wildcard = gateway_config([vertex_deployment(vsim, "vx-*", "*", creds)]).groups[0]
    claude_of = wildcard.deployments[0].expand("claude-haiku-4-5", ("claude-haiku-4-5",))
    assert claude_of.protocol == "vertex-anthropic"  # the model a wildcard takes decides
    for project in ("p/locations/x", "my project", "a?b=1"):  # into the URL's path as is
        entry = vertex_deployment(vsim, "g", "gemini-2.5-flash", creds)
        entry["litellm_params"]["vertex_project"] = project
        with pytest.raises(ConfigError, match=r"vertex_project: expected a Google Cloud project"):
            gateway_config([entry])
    with pytest.raises(ConfigError, match=r"vertex_project: required for vertex_ai/"):
        gateway_config([{"model_name": "x", "litellm_params": {"model": "vertex_ai/gemini-x"}}])


async def test_litellm_vertex_credentials_given_as_json_text_or_mapping_are_used(vsim, tmp_path):
    # LiteLLM's vertex_credentials: a path, else the JSON itself (text, a variable holding it,
    # or a YAML mapping); without vertex_project, the credentials' project_id is the project.
    reset(vsim, **{"gemini-2.5-flash": {"ttft": "0s"}})
    text = credentials_file(vsim, tmp_path).read_text()

    def entry(group: str, credentials: Any) -> dict[str, Any]:
        params = {
            "model": "vertex_ai/gemini-2.5-flash",
            "api_base": model_base(vsim, "gemini-2.5-flash"),
        }
        return {
            "model_name": group,
            "litellm_params": {**params, "vertex_credentials": credentials},
        }

    config = gateway_config(
        [
            entry("variable", "os.environ/VERTEX_SA_JSON"),
            entry("written", text),
            entry("mapping", json.loads(text)),
        ],
        env={"VERTEX_SA_JSON": text},
    )
    assert [g.name for g in config.groups] == ["variable", "written", "mapping"]
    (written,) = (w for w in config.warnings if w.startswith("keys written in the file"))
    assert "[1].litellm_params.vertex_credentials" in written and "[0]" not in written
    assert "[2].litellm_params.vertex_credentials" in written
    for group in config.groups:
        deployment = group.deployments[0]
        target = deployment.to_target()
        assert target.project == PROJECT and target.credentials_file is None
        assert "PRIVATE KEY" not in repr(deployment) + repr(target) + repr(config.warnings)
        result = await check(target, CheckKind.INFERENCE)
        assert result.ok, result.error_message
    with pytest.raises(ConfigError, match=r"litellm_params\.vertex_credentials: expected a cred"):
        gateway_config([entry("broken", '{"type": "service_account", ')])
    with pytest.raises(ConfigError) as refused:
        gateway_config([entry("b", '{"private_key": SECRET')])
    assert "SECRET" not in str(refused.value)


def test_an_authorized_user_file_is_read_as_one(tmp_path):
    # gcloud auth application-default login's file, which LiteLLM's vertex_credentials takes:
    # a refresh-token grant at Google's endpoint (not played here), its quota project the
    # project when none is given.
    user = tmp_path / "adc.json"
    user.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "1.apps.googleusercontent.com",
                "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
                "refresh_token": "1//refresh-SECRET",
                "quota_project_id": PROJECT,
            }
        )
    )
    params = {"model": "vertex_ai/gemini-2.5-flash", "vertex_credentials": str(user)}
    config = gateway_config([{"model_name": "g", "litellm_params": params}])
    target = config.groups[0].deployments[0].to_target()
    assert target.project == PROJECT and target.credentials_file == str(user)
    # Application default credentials: google.auth.default's project, as LiteLLM takes it.
    bare = {"model": "vertex_ai/gemini-2.5-flash"}
    for env, project in (
        ({"GOOGLE_CLOUD_PROJECT": "env-project-1"}, "env-project-1"),
        ({"GOOGLE_APPLICATION_CREDENTIALS": str(user)}, PROJECT),
    ):
        adc = gateway_config([{"model_name": "g", "litellm_params": bare}], env=env)
        assert adc.groups[0].deployments[0].project == project
    creds = token_source(str(user))._load()
    assert isinstance(creds, google.oauth2.credentials.Credentials)
    assert creds.refresh_token == "1//refresh-SECRET"


def test_openai_sdk_falls_back_to_gemini_on_vertex(vsim, tmp_path):
    reset(
        vsim,
        **{"gpt-down": {"errors": {"503": 1.0}, **FAST}, "gemini-2.5-flash": dict(FAST)},
    )
    config = gateway_config(
        [
            {
                "model_name": "chat",
                "litellm_params": {
                    "model": "openai/gpt-down",
                    "api_base": vsim.openai_base,
                    "api_key": "os.environ/SIM_KEY",
                },
            },
            vertex_deployment(
                vsim, "vertex-gemini", "gemini-2.5-flash", credentials_file(vsim, tmp_path)
            ),
        ],
        router={"fallbacks": [{"chat": ["vertex-gemini"]}]},
    )
    with Served(config) as served:
        client = served.openai()
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        answer = raw.parse()
        assert raw.headers[DEPLOYMENT_HEADER] == "vertex-gemini/vertex_ai/gemini-2.5-flash"
        assert answer.choices[0].message.content == text_of(16)
        assert answer.usage is not None and answer.usage.completion_tokens == 16
        chunks = list(ask(client, "chat", stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == text_of(16)
    sent = [r for r in truth(vsim) if r["protocol"] == "vertex"]
    assert [r["stream"] for r in sent] == [False, True]
    assert sent[0]["body"]["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    records = [r for r in served.records if r.ok]
    assert len(records) == 2 and all(r.provider == "vertex" for r in records)
    assert all(r.cost_usd and r.cost_usd > 0 for r in records)


def test_anthropic_sdk_falls_back_to_claude_on_vertex(vsim, tmp_path):
    model = "claude-haiku-4-5@20251001"
    reset(vsim, **{"claude-down": {"errors": {"overloaded": 1.0}, **FAST}, model: dict(FAST)})
    config = gateway_config(
        [
            {
                "model_name": "claude",
                "litellm_params": {
                    "model": "anthropic/claude-down",
                    "api_base": vsim.anthropic_base,
                    "api_key": "os.environ/SIM_KEY",
                },
            },
            vertex_deployment(vsim, "vertex-claude", model, credentials_file(vsim, tmp_path)),
        ],
        router={"fallbacks": [{"claude": ["vertex-claude"]}]},
    )
    messages = [{"role": "user", "content": "hi"}]
    with Served(config) as served:
        client = served.anthropic()
        message = client.messages.create(model="claude", max_tokens=64, messages=messages)
        assert message.content[0].text == text_of(16)
        assert message.usage.output_tokens == 16 and message.stop_reason == "end_turn"
        with client.messages.stream(model="claude", max_tokens=64, messages=messages) as stream:
            streamed = "".join(stream.text_stream)
        assert streamed == text_of(16)
    sent = [r for r in truth(vsim) if r["protocol"] == "vertex-anthropic"]
    assert [r["stream"] for r in sent] == [False, True]
    for record in sent:
        assert record["body"]["anthropic_version"] == "vertex-2023-10-16"
        assert "model" not in record["body"]
