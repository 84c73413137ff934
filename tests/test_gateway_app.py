"""The gateway's HTTP surface: gateway keys, model list, health, and the request shapes of both
SDKs, served on a loopback socket with the simulator as the providers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml

from conftest import sim_model
from llmpulse.config import ConfigError, parse_config
from llmpulse.config.litellm import parse_gateway
from llmpulse.errors import ErrorClass
from llmpulse.gateway.app import create_app
from llmpulse.monitor.daemon import Daemon
from llmpulse.probe.lock import held_elsewhere
from llmpulse.result import CheckKind, Source
from llmpulse.sim.server import SimServer
from llmpulse.store import ResultFilter, SQLiteStore, open_store
from llmpulse.store.spool import Spool
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream

KEY = "gw-secret-key"
PUBLIC = ("--listen", "0.0.0.0:4000")


def test_gateway_keys_by_bearer_or_x_api_key(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", model)],
        settings={"keys": ["os.environ/SIM_KEY"]},
        general={"master_key": KEY},
    )
    with Served(config) as served:
        messages = [{"role": "user", "content": "hi"}]
        with pytest.raises(openai.AuthenticationError):
            served.openai("wrong").chat.completions.create(model="chat", messages=messages)
        with pytest.raises(anthropic.AuthenticationError):
            served.anthropic("wrong").messages.create(model="chat", max_tokens=8, messages=messages)
        assert httpx.get(f"{served.url}/v1/models").status_code == 401
        assert upstream(sim, model) == []  # refused before any provider is called

        # The master key (Bearer, openai) and a gateway.keys entry (x-api-key, anthropic).
        answer = served.openai(KEY).chat.completions.create(model="chat", messages=messages)
        assert answer.model == model
        message = served.anthropic("sk-sim").messages.create(
            model="chat", max_tokens=8, messages=messages
        )
        assert message.model == model


def test_models_lists_groups_and_visible_aliases(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", model), deployment(sim, "fb-*", "openai", "fb-*")],
        router={"model_group_alias": {"gpt": "chat", "secret": {"model": "chat", "hidden": True}}},
    )
    with Served(config) as served:
        listed = served.openai().models.list()
        assert [m.id for m in listed.data] == ["chat", "gpt"]
        # An alias routes like its group.
        reply = served.openai().chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.model == model


def test_wildcard_group_passes_the_requested_name_through(sim: SimServer) -> None:
    name = f"fb-{sim_model(sim)}"
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=FAST, timeout=10).raise_for_status()
    config = gateway_config([deployment(sim, "fb-*", "openai", "fb-*")])
    with Served(config) as served:
        reply = served.openai().chat.completions.create(
            model=name, messages=[{"role": "user", "content": "hi"}]
        )
    assert reply.model == name
    assert len(upstream(sim, name)) == 1
    assert served.records[0].target == f"{name}/openai-compatible/{name}"


def test_health_shows_breaker_states_and_readiness(sim: SimServer) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", down)],
        router={"allowed_fails": 1, "num_retries": 0},
    )
    with Served(config) as served:
        health = httpx.get(f"{served.url}/health").json()
        assert health["status"] == "ok"
        assert health["deployments"][0]["state"] == "closed"
        assert httpx.get(f"{served.url}/health/readiness").status_code == 200
        with pytest.raises(openai.InternalServerError):
            served.openai().chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        health = httpx.get(f"{served.url}/health").json()
        assert health["status"] == "down"
        assert health["deployments"][0]["state"] == "open"
        readiness = httpx.get(f"{served.url}/health/readiness")
        assert readiness.status_code == 503
        # The open breaker fails the next request fast, with a hint, without calling upstream.
        with pytest.raises(openai.InternalServerError) as info:
            served.openai().chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 503 and "retry-after" in info.value.response.headers
    assert len(upstream(sim, down)) == 1


def test_bad_requests_are_answered_in_the_callers_shape(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Served(gateway_config([deployment(sim, "chat", "anthropic", model)])) as served:
        not_json = httpx.post(f"{served.url}/v1/chat/completions", content=b"{nope")
        assert not_json.status_code == 400 and not_json.json()["error"]["message"]
        no_messages = httpx.post(f"{served.url}/v1/messages", json={"model": "chat"})
        assert no_messages.status_code == 400
        assert no_messages.json()["type"] == "error"
    assert upstream(sim, model) == []


def test_cli_gateway_serves_and_records_traffic(
    sim: SimServer, db_location: str | Path, tmp_path: Path
) -> None:
    """Into a SQLite file or PostgreSQL (the schema its URL's search_path option names),
    through the one writer: its spool beside the file, or beside the default one."""
    model = sim_model(sim, **FAST)
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [deployment(sim, "chat", "openai", model)],
                "litellm_settings": {"success_callback": ["langfuse"]},
            }
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["gateway", "--config", str(config), "--db", str(db_location)]
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmpulse", *args, "--listen", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SIM_KEY": "sk-sim", "XDG_DATA_HOME": str(data)},
    )
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=10
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                reply = client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}]
                )
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert reply.model == model
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    assert stderr.count("warning: ignoring settings") == 1
    assert "litellm_settings.success_callback" in stderr
    with open_store(db_location) as store:
        rows = [(r.target, r.source, r.attempts, r.ok) for r in store.latest_results(limit=100)]
    # The gateway also probed its deployment (gateway.monitor is on by default).
    traffic = [r for r in rows if r[1] is Source.TRAFFIC]
    assert traffic == [(f"chat/openai/{model}", Source.TRAFFIC, 1, True)]
    assert {r[1] for r in rows} <= {Source.TRAFFIC, Source.PROBE}
    beside = tmp_path if isinstance(db_location, Path) else data / "llmpulse"
    (spool,) = beside.glob(f"*-spool-*-gateway-{port}-*.db")
    waiting = Spool(spool)
    assert len(waiting) == 0  # everything reached the store
    waiting.close()


def test_cli_gateway_refuses_a_public_address_without_keys(sim: SimServer, tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"model_list": [deployment(sim, "c", "openai", "m")]}))
    result = subprocess.run(
        [sys.executable, "-m", "llmpulse", "gateway", "--config", str(config), *PUBLIC],
        capture_output=True,
        text=True,
        env={**os.environ, "SIM_KEY": "sk-sim"},
        timeout=30,
    )
    assert result.returncode == 2 and "needs keys" in result.stderr


def test_probes_skip_a_down_deployment_before_any_user_request_and_bring_it_back(
    sim: SimServer,
) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", down), deployment(sim, "chat", "anthropic", spare)]
    )
    # Fast probes, non-streaming only: a streaming request at the simulator is a user's.
    targets = [
        dataclasses.replace(t, interval=0.2, checks=(CheckKind.INFERENCE,))
        for t in config.targets()
    ]
    with Served(config, probe_targets=targets) as served:
        wait_for_state(served, f"chat/openai/{down}", "open")
        chunks = list(ask(served.openai(), "chat", stream=True))
        assert {c.model for c in chunks} == {spare}
        assert [r for r in upstream(sim, down) if r["stream"]] == []  # no user attempt there

        httpx.patch(f"{sim.url}/_sim/models/{down}", json={"errors": {}}, timeout=10)
        wait_for_state(served, f"chat/openai/{down}", "closed")  # a probe succeeded
        chunks = list(ask(served.openai(), "chat", stream=True))
        assert {c.model for c in chunks} == {down}
    assert [r["status"] for r in upstream(sim, down) if r["stream"]] == [200]
    probes = [r for r in served.records if r.source is Source.PROBE]
    assert probes and all(r.kind is CheckKind.INFERENCE for r in probes)
    assert any(r.error_class is ErrorClass.UNAVAILABLE for r in probes)


def wait_for_state(served: Served, name: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        health = httpx.get(f"{served.url}/health", timeout=10).json()
        states = {d["name"]: d["state"] for d in health["deployments"]}
        if states[name] == state:
            return
        assert time.monotonic() < deadline, f"{name} never became {state}: {states}"
        time.sleep(0.05)


def test_every_response_carries_the_gateway_and_upstream_request_ids(
    sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    good = sim_model(sim, **FAST)
    broken = sim_model(sim, errors={"400": 1.0}, **FAST)
    config = gateway_config(
        [deployment(sim, "chat", "openai", good), deployment(sim, "bad", "anthropic", broken)]
    )
    with Served(config) as served:
        raw = served.openai().chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        completion = raw.parse()
        openai_id = completion._request_id
        assert openai_id and openai_id.startswith("req_")
        assert raw.headers["request-id"] == openai_id
        upstream_id = raw.headers["x-llmpulse-upstream-request-id"]

        message = served.anthropic().messages.create(
            model="chat", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
        assert message._request_id and message._request_id.startswith("req_")
        assert message._request_id != openai_id

        with served.openai().chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        ) as stream:
            list(stream)
        assert stream.response.headers["x-request-id"].startswith("req_")
        assert stream.response.headers["x-llmpulse-upstream-request-id"]

        with pytest.raises(anthropic.BadRequestError) as info:
            served.anthropic().messages.create(
                model="bad", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
            )
        failed_id = info.value.request_id
        assert failed_id and failed_id.startswith("req_")
        assert info.value.response.headers["x-llmpulse-upstream-request-id"]
        with pytest.raises(openai.NotFoundError) as missing:
            ask(served.openai(), "no-such-group")
        assert missing.value.request_id and missing.value.request_id.startswith("req_")
    assert served.records[0].request_id == upstream_id
    sim_ids = {r["request_id"] for r in upstream(sim, good)}
    assert {r.request_id for r in served.records if r.model == good} <= sim_ids
    assert served.records[-1].request_id in {r["request_id"] for r in upstream(sim, broken)}
    assert any(failed_id in r.getMessage() for r in caplog.records if "failed" in r.getMessage())


class DaemonThread:
    """``llmpulse run``'s daemon in-process, in its own thread and event loop."""

    def __init__(self, raw: dict[str, Any], db: Path) -> None:
        self.daemon = Daemon(parse_config(raw, env={"SIM_KEY": "sk-sim"}), db_path=db)
        # A plain asyncio loop: uvloop refuses the daemon's signal handlers off the main thread.
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.daemon.run(),), daemon=True
        )

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.stop_event.set)
            self.thread.join(30)
            assert not self.thread.is_alive(), "the daemon did not stop"

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_gateway_beside_a_running_daemon_follows_its_probes_instead_of_probing(
    sim: SimServer, tmp_path: Path
) -> None:
    down = sim_model(sim, errors={"503": 1.0}, **FAST)
    spare = sim_model(sim, **FAST)
    entries = [deployment(sim, "chat", "openai", down), deployment(sim, "chat", "anthropic", spare)]
    settings = {"probe_interval": "300ms"}
    config = gateway_config(entries, settings=settings)
    db = tmp_path / "results.db"
    raw = {
        "model_list": entries,
        "gateway": settings,
        "monitor": {"retry_interval": "300ms", "status_pages": False},
        "web": {"enabled": False},
    }
    down_name = f"chat/openai/{down}"

    def daemon_saw_down() -> bool:
        with SQLiteStore(db) as store:
            rows = store.latest_results(limit=50, where=ResultFilter(target=down_name))
        return any(r.source is Source.PROBE and not r.ok for r in rows)

    with DaemonThread(raw, db) as daemon:
        wait_until(lambda: held_elsewhere(db), "the daemon's probe lock")
        wait_until(daemon_saw_down, "the daemon's probe of the down deployment")
        with Served(config, probe_targets=config.targets(), results_db=db) as served:
            wait_for_state(served, down_name, "open")  # learnt from the daemon's results
            chunks = list(ask(served.openai(), "chat", stream=True))
            assert {c.model for c in chunks} == {spare}
            assert [r.attempts for r in served.records] == [1]  # no user attempt on it
            assert not [r for r in served.records if r.source is Source.PROBE]

            daemon.stop()  # the lock is free: the gateway probes its deployments again
            wait_until(
                lambda: any(r.source is Source.PROBE for r in served.records),
                "the gateway's own probes",
            )
    assert not held_elsewhere(db)


def test_a_deployment_without_a_key_answers_401_in_the_callers_shape_unless_another_takes_it(
    sim: SimServer,
) -> None:
    keyless, keyed, spare, local = (sim_model(sim, **FAST) for _ in range(4))
    unset = {"api_key": "os.environ/UNSET_KEY"}

    def groq(group: str, model: str) -> dict[str, Any]:
        # Groq's API needs a key; an openai/ deployment with an api_base may be a server that
        # checks none.
        entry = deployment(sim, group, "openai", model, **unset)
        return {**entry, "litellm_params": {**entry["litellm_params"], "model": f"groq/{model}"}}

    config = gateway_config(
        [
            groq("keyless", keyless),
            deployment(sim, "mixed", "anthropic", keyless, **unset),
            deployment(sim, "mixed", "openai", keyed),
            groq("falls", f"{keyless}-2"),
            deployment(sim, "spare", "anthropic", spare),
            deployment(sim, "local", "openai", local, **unset),
        ],
        router={"fallbacks": [{"falls": ["spare"]}]},
    )
    hint = "no API key: UNSET_KEY (model_list[0].litellm_params.api_key) is not set"
    with Served(config) as served:
        with pytest.raises(openai.AuthenticationError) as oai:
            ask(served.openai(), "keyless")
        assert oai.value.status_code == 401 and oai.value.message.endswith(hint)
        with pytest.raises(openai.AuthenticationError):
            ask(served.openai(), "keyless", stream=True)
        with pytest.raises(anthropic.AuthenticationError) as ant:
            served.anthropic().messages.create(
                model="keyless", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
        assert ant.value.body["error"] == {"type": "authentication_error", "message": hint}
        # Another deployment of the group, or a fallback, takes the request instead.
        assert ask(served.openai(), "mixed").model == keyed
        assert ask(served.openai(), "falls").model == spare
        # A server that may check no key is called without one (the simulator does check).
        with pytest.raises(openai.AuthenticationError):
            ask(served.openai(), "local")
        health = httpx.get(f"{served.url}/health").json()
    assert upstream(sim, keyless) == [] and upstream(sim, f"{keyless}-2") == []
    assert [r["status"] for r in upstream(sim, local)] == [401]
    assert [(r.target, r.error_class, r.http_status) for r in served.records[:3]] == [
        (f"keyless/groq/{keyless}", ErrorClass.AUTH, 401)
    ] * 3
    assert [r.fallbacks for r in served.records[3:5]] == [0, 1]
    available = {d["name"]: d["available"] for d in health["deployments"]}
    assert available[f"keyless/groq/{keyless}"] is False
    assert available[f"mixed/openai/{keyed}"] is True
    assert health["warnings"] == [
        "deployments without an API key answer 401 until it is set: model_list[0] (set "
        "UNSET_KEY), model_list[1] (set UNSET_KEY), model_list[3] (set UNSET_KEY)",
        "sending no API key where its variable is unset (a local or OpenAI-compatible server "
        "may need none): model_list[5].litellm_params.api_key (UNSET_KEY)",
    ]


def test_access_control_llmpulse_lacks_is_refused_or_served_with_a_warning_on_health(
    sim: SimServer,
) -> None:
    model = sim_model(sim, **FAST)
    raw = {
        "model_list": [deployment(sim, "chat", "openai", model)],
        "general_settings": {"master_key": KEY, "custom_auth": "custom_auth.user_api_key_auth"},
    }
    config = parse_gateway(raw, {"SIM_KEY": "sk-sim"}, accept_unenforced_auth=True)
    with pytest.raises(ConfigError, match=r"general_settings\.custom_auth: access control"):
        create_app(config)
    with Served(config, accept_unenforced_auth=True) as served:
        assert ask(served.openai(KEY), "chat").model == model  # gateway keys still checked
        with pytest.raises(openai.AuthenticationError):
            ask(served.openai("wrong"), "chat")
        health = httpx.get(f"{served.url}/health", headers={"x-api-key": KEY}).json()
    assert health["warnings"] == [
        "keys written in the file are used as written and kept secret: general_settings.master_key",
        "serving without access control the config asks for (general_settings.custom_auth): "
        "llmpulse checks only general_settings.master_key and gateway.keys",
    ]
    assert KEY not in str(health)
