"""No configured secret ever leaves: a hostile upstream echoes every credential it receives (in
JSON and HTML error bodies, request-id headers, the served model and stream error events), and
`llmpulse check`, `llmpulse run` with its web API, and the gateway with OTLP export run against
it. Every output, log line, database file, client response and exported span is searched for
every configured secret: none may appear, in any encoding a provider might echo it in."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest
import yaml

from conftest import base_url, sim_model
from llmpulse.sim.server import SimServer
from test_gateway_proxy import FAST
from test_telemetry import Collector, free_port
from test_telemetry import collector as collector  # a fixture

# Configured secrets; most are not key-shaped, so only knowing them can remove them.
SECRETS = {
    "OPENAI_KEY": "sk-hostile-openai-0123456789abcdef",
    "ANTHROPIC_KEY": "plain-anthropic-secret-77aa",
    "GEMINI_KEY": "plain-gemini-secret-88bb",
    "CUSTOM_AUTH": "custom-header-secret-99cc",
    "DEPLOY_OPENAI": "plain-deploy-openai-1111",
    "DEPLOY_ANTHROPIC": "plain-deploy-anthropic-2222",
    "DEPLOY_GEMINI": "plain-deploy-gemini-3333",
    "MASTER": "plain-master-key-4444",
    "WEB_TOKEN": "plain-web-token-5555",
    "HOOK_SECRET": "plain-hook-secret-6666",
}
HOSTILE = {"echo_credentials": True, **FAST}
LLMPULSE = [sys.executable, "-m", "llmpulse"]


def leaks(text: str | bytes) -> list[str]:
    """The configured secrets found in ``text``, as is or in an encoding an echo may use."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = []
    for name, secret in SECRETS.items():
        forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
        if any(form.encode() in data for form in forms):
            found.append(name)
    return found


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file() and p.suffix != ".yaml")


@pytest.fixture
def models(sim: SimServer) -> dict[str, str]:
    """The hostile upstream's models: one per way of echoing a credential."""
    return {
        "json": sim_model(sim, errors={"503": 1.0}, **HOSTILE),
        "html": sim_model(sim, errors={"502": 1.0}, error_format="html", **HOSTILE),
        "stream": sim_model(sim, fault="error_event", fault_after_tokens=2, **HOSTILE),
        "denied": sim_model(sim, errors={"401": 1.0}, **HOSTILE),
        "ok": sim_model(sim, **HOSTILE),
    }


def env() -> dict[str, str]:
    return {**os.environ, **SECRETS}


def monitor_config(sim: SimServer, models: dict[str, str], tmp_path: Path, port: int) -> Path:
    path = tmp_path / "llmpulse.yaml"
    fast = {"interval": "1s", "timeout": "3s"}
    path.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "openai-json",
                        "provider": "openai",
                        "model": models["json"],
                        "base_url": base_url(sim, "openai"),
                        "api_key": "os.environ/OPENAI_KEY",
                        "headers": {"X-Custom-Auth": "os.environ/CUSTOM_AUTH"},
                        **fast,
                    },
                    {
                        "name": "openai-html",
                        "provider": "openai",
                        "model": models["html"],
                        "base_url": base_url(sim, "openai"),
                        "api_key": "os.environ/OPENAI_KEY",
                        **fast,
                    },
                    {
                        "name": "anthropic-stream",
                        "provider": "anthropic",
                        "model": models["stream"],
                        "base_url": base_url(sim, "anthropic"),
                        "api_key": "os.environ/ANTHROPIC_KEY",
                        **fast,
                    },
                    {
                        "name": "gemini-denied",
                        "provider": "gemini",
                        "model": models["denied"],
                        "base_url": base_url(sim, "gemini"),
                        "api_key": "os.environ/GEMINI_KEY",
                        **fast,
                    },
                    {
                        "name": "gemini-ok",
                        "provider": "gemini",
                        "model": models["ok"],
                        "base_url": base_url(sim, "gemini"),
                        "api_key": "os.environ/GEMINI_KEY",
                        **fast,
                    },
                ],
                "monitor": {"retry_interval": "300ms", "status_pages": False},
                "alerting": {"resolve_after": "1s", "group_wait": "0s"},
                "notifiers": [
                    # Nothing listens there: its failures are logged, never with the secret.
                    {
                        "type": "webhook",
                        "url": f"http://127.0.0.1:{free_port()}/hook",
                        "secret": "os.environ/HOOK_SECRET",
                    }
                ],
                "web": {"listen": f"127.0.0.1:{port}", "token": "os.environ/WEB_TOKEN"},
            }
        )
    )
    return path


def test_check_prints_and_stores_no_secret(
    sim: SimServer, models: dict[str, str], tmp_path: Path
) -> None:
    config = monitor_config(sim, models, tmp_path, free_port())
    db = tmp_path / "check.db"
    outputs = []
    for extra in (["--json"], []):
        done = subprocess.run(
            [*LLMPULSE, "check", "--config", str(config), "--db", str(db), *extra],
            capture_output=True,
            env=env(),
            timeout=120,
        )
        assert done.returncode == 1, done.stderr  # the hostile targets fail, as they should
        outputs += [done.stdout, done.stderr]
    results = json.loads(outputs[0])
    failed = {r["target"]: r for r in results if not r["ok"]}
    assert set(failed) == {"openai-json", "openai-html", "anthropic-stream", "gemini-denied"}
    assert "[redacted]" in failed["openai-json"]["error_message"]
    assert "[redacted]" in failed["openai-html"]["error_message"]
    served = [r for r in results if r["target"] == "gemini-ok" and r["check"] == "stream"]
    assert served[0]["ok"] and "[redacted]" in served[0]["response_model"]
    assert "[redacted]" in served[0]["request_id"]
    for output in outputs:
        assert leaks(output) == []
    for path in files_under(tmp_path):
        assert leaks(path.read_bytes()) == [], path


def test_run_logs_stores_and_serves_no_secret(
    sim: SimServer, models: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    config = monitor_config(sim, models, tmp_path, port)
    db = tmp_path / "run.db"
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*LLMPULSE, "run", "--config", str(config), "--db", str(db), "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env(), "XDG_DATA_HOME": str(data)},
    )
    bodies: list[bytes] = []
    try:
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {SECRETS['WEB_TOKEN']}"},
            timeout=10,
        )
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                results = api.get("/api/v1/results", params={"limit": 500})
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            checked = {r["target"] for r in results.json()["results"] if not r["ok"]}
            alerts = api.get("/api/v1/alerts").json()
            if len(checked) == 4 and "auth_failure" in json.dumps(alerts):
                break
            time.sleep(0.3)
        for path in ("/api/v1/results?limit=500", "/api/v1/overview", "/api/v1/alerts",
                     "/api/v1/targets/openai-json", "/metrics", "/api/v1/status", "/status"):  # fmt: skip
            response = api.get(path)
            assert response.status_code == 200, path
            bodies.append(response.content)
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert b"[redacted]" in b"".join(bodies)
    assert b"webhook" in stderr  # the notifier's failures were logged
    for output in (stdout, stderr, *bodies):
        assert leaks(output) == []
    for path in files_under(tmp_path):
        assert leaks(path.read_bytes()) == [], path


def gateway_config(sim: SimServer, models: dict[str, str], collector_url: str) -> dict[str, Any]:
    def entry(group: str, provider: str, model: str, key: str) -> dict[str, Any]:
        return {
            "model_name": group,
            "litellm_params": {
                "model": f"{provider}/{model}",
                "api_base": base_url(sim, provider),
                "api_key": f"os.environ/{key}",
            },
        }

    return {
        "model_list": [
            entry("json", "openai", models["json"], "DEPLOY_OPENAI"),
            entry("html", "openai", models["html"], "DEPLOY_OPENAI"),
            entry("stream", "anthropic", models["stream"], "DEPLOY_ANTHROPIC"),
            entry("gemini-stream", "gemini", models["stream"], "DEPLOY_GEMINI"),
            entry("denied", "gemini", models["denied"], "DEPLOY_GEMINI"),
            entry("ok", "anthropic", models["ok"], "DEPLOY_ANTHROPIC"),
        ],
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": "os.environ/MASTER"},
        "gateway": {"probe_interval": "1s"},
        "telemetry": {"endpoint": collector_url, "metrics": False},
    }


def test_gateway_returns_logs_stores_and_exports_no_secret(
    sim: SimServer, models: dict[str, str], collector: Collector, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(gateway_config(sim, models, collector.url)))
    port = free_port()
    db = tmp_path / "gateway.db"
    listen = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*LLMPULSE, "gateway", "--config", str(config), "--db", str(db), "--listen", listen, "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**env(), "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    base = f"http://127.0.0.1:{port}"
    key = SECRETS["MASTER"]
    seen: list[bytes] = []
    try:
        raw = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=20)
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                raw.get("/health/liveliness")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        message = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 32}
        failed = raw.post("/v1/chat/completions", json={"model": "json", **message})
        assert failed.status_code == 503 and "[redacted]" in failed.json()["error"]["message"]
        ok = raw.post("/v1/chat/completions", json={"model": "ok", **message})
        assert ok.status_code == 200
        assert "[redacted]" in ok.json()["model"]
        assert "[redacted]" in ok.headers["x-llmpulse-upstream-request-id"]
        seen += [failed.content, ok.content, json.dumps(dict(ok.headers)).encode()]
        for group in ("json", "html", "denied", "ok"):
            for stream in (False, True):
                for path in ("/v1/chat/completions", "/v1/messages"):
                    response = raw.post(path, json={"model": group, "stream": stream, **message})
                    seen.append(response.content)
                    seen.append(json.dumps(dict(response.headers)).encode())
                    if group != "ok":
                        assert response.status_code >= 400 or stream, (group, response.text)

        # The official SDKs, streaming into an error event after some output.
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
        for group in ("stream", "gemini-stream"):
            with pytest.raises(openai.APIError) as error:
                for _ in client.chat.completions.create(
                    model=group, stream=True, **message
                ):  # the error event arrives after two tokens
                    pass
            seen.append(str(error.value).encode())
            seen.append(json.dumps(error.value.body).encode())
        claude = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
        with (
            pytest.raises(anthropic.APIError) as failure,
            claude.messages.stream(model="stream", **message) as events,
        ):
            for _ in events:
                pass
        seen.append(str(failure.value).encode())
        with pytest.raises(anthropic.APIStatusError) as denied:
            claude.messages.create(model="denied", **message)
        seen.append(str(denied.value).encode() + json.dumps(denied.value.body).encode())
        seen.append(raw.get("/health").content)
        time.sleep(1.5)  # a round of the gateway's own probes of every deployment
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert b"failed" in stderr  # failed requests were logged, with their upstream's message
    spans = collector.span_list()
    assert spans and any(s.status.message for _, s in spans)
    exported = [str(span).encode() for _, span in spans]
    for output in (stdout, stderr, *seen, *exported):
        assert leaks(output) == []
    for path in files_under(tmp_path):
        assert leaks(path.read_bytes()) == [], path


@contextlib.contextmanager
def status_host(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`llmpulse web --status-page-only` with ``args``, until it answers; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        # On every address, as a public status host is: it still needs no credentials.
        [*LLMPULSE, "web", "--status-page-only", "--listen", f"0.0.0.0:{port}", *args],
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stderr and proc.stderr.read()
            assert time.monotonic() < deadline
            try:
                httpx.get(f"{url}/healthz", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_status_host_needs_no_provider_key(
    sim: SimServer, models: dict[str, str], tmp_path: Path
) -> None:
    """`llmpulse web --status-page-only --db PATH` on a host without any key: the targets come
    from the database, or from the config without reading its variables."""
    config = monitor_config(sim, models, tmp_path, free_port())
    db = tmp_path / "status.db"
    check = [*LLMPULSE, "check", "--config", str(config), "--db", str(db), "--check", "inference"]
    subprocess.run(check, capture_output=True, env=env(), timeout=120)
    bare = {k: v for k, v in os.environ.items() if not k.endswith(("_KEY", "_TOKEN"))}
    empty = tmp_path / "empty"  # no ./llmpulse.yaml
    empty.mkdir()
    with status_host(["--db", str(db)], bare, empty) as url:
        page = httpx.get(f"{url}/api/v1/statuspage", timeout=5)
        assert page.status_code == 200
        names = {t["name"] for t in page.json()["targets"]}
        assert names == {"openai-json", "openai-html", "anthropic-stream", "gemini-denied",
                         "gemini-ok"}  # fmt: skip
        # The dashboard is not served there.
        assert httpx.get(f"{url}/api/v1/results", timeout=5).status_code == 404
    with status_host(["--db", str(db), "--config", str(config)], bare, empty) as url:
        assert httpx.get(f"{url}/status", timeout=5).status_code == 200
