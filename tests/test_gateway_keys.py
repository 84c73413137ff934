"""Run-time gateway keys end to end: created, revoked and rotated with `llmpulse keys` and the
admin API, taken up by running gateways (two replicas sharing PostgreSQL), and model groups a
key may not use refused before any upstream call, as the official SDKs expect."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import yaml
from click.testing import CliRunner

from conftest import postgres_schema, sim_model
from llmpulse.cli import main
from llmpulse.config.keys import key_digest
from llmpulse.sim.server import SimServer
from test_gateway_app import wait_until
from test_gateway_proxy import FAST, Served, ask, deployment, gateway_config, upstream

MASTER = "sk-master-of-keys"
HI = [{"role": "user", "content": "hi"}]


def works(served: Served, key: str) -> bool:
    """Whether the gateway accepts ``key`` (asked where no model is called)."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    status = httpx.get(f"{served.url}/v1/models", headers=headers).status_code
    assert status in (200, 401), status
    return status == 200


def admin(
    served: Served, method: str, path: str = "", key: str = MASTER, **kw: Any
) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, f"{served.url}/api/v1/keys{path}", headers=headers, timeout=10, **kw)  # fmt: skip


def config_for(sim: SimServer, *models: str, keys: list[Any] | None = None, master: bool = True):
    return gateway_config(
        [deployment(sim, group, "openai", m) for group, m in zip(("chat", "other"), models, strict=False)],
        router={"model_group_alias": {"gpt": "chat"}},
        settings={"keys": keys or []},
        general={"master_key": MASTER} if master else None,
    )  # fmt: skip


def cli(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_keys_created_by_the_cli_and_the_api_work_until_revoked_and_rotate(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    model = sim_model(sim, **FAST)
    db = tmp_path / "results.db"
    policy = {"name": "from-config", "team": "ops", "models": ["chat"]}
    texts: list[str] = []
    with Served(config_for(sim, model, keys=[policy]), results_db=db) as served:
        # The CLI writes to the database; the running gateway takes the key up within seconds.
        made = cli("keys", "create", "svc", "--team", "search", "--models", "chat", "--db", str(db))
        assert made.exit_code == 0, made.output
        key = made.stdout.strip()
        texts.append(key)
        assert key.startswith("sk-llmp-") and len(key) > 40
        started = time.monotonic()
        wait_until(lambda: works(served, key), "the gateway to take up the CLI's key", 10)
        assert time.monotonic() - started < 5
        assert ask(served.openai(key), "chat").model == model
        assert served.records[-1].key_name == "svc" and served.records[-1].team == "search"

        # The admin API: the key is in its answer once; this replica serves it at once.
        created = admin(served, "POST", json={"name": "api-made", "rpm": 5, "budget": {"max_usd": 3, "period": "1mo", "warn_at": "50%"}})  # fmt: skip
        assert created.status_code == 201, created.text
        assert created.headers["cache-control"] == "no-store"
        body = created.json()
        api_key = body.pop("key")
        texts.append(api_key)
        assert body["name"] == "api-made" and body["rpm"] == 5
        assert body["budget"] == {"max_usd": 3.0, "period": "1mo", "warn_at": 0.5}
        assert body["fingerprint"] == key_digest(api_key)[:8]
        assert works(served, api_key)

        # A config entry without `key` is the policy of the run-time key of its name: it wins.
        made = cli("keys", "create", "from-config", "--team", "ignored", "--db", str(db))
        texts.append(made.stdout.strip())
        wait_until(lambda: works(served, texts[-1]), "the policy key", 10)
        ask(served.openai(texts[-1]), "gpt")
        assert (served.records[-1].key_name, served.records[-1].team) == ("from-config", "ops")
        with pytest.raises(openai.PermissionDeniedError):
            ask(served.openai(texts[-1]), "other")

        listed = admin(served, "GET").json()["keys"]
        assert [(k["name"], k["policy"], k["team"]) for k in listed] == [
            ("api-made", "stored", None), ("from-config", "config", "ops"), ("svc", "stored", "search")
        ]  # fmt: skip

        # Revoked through the API: refused at once here.
        revoked = admin(served, "DELETE", "/api-made")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert not works(served, api_key)
        with pytest.raises(openai.AuthenticationError):
            ask(served.openai(api_key), "chat")

        # Rotated through the CLI: the old key stops, the new one works, same name and policy.
        rotated = cli("keys", "rotate", "svc", "--db", str(db))
        assert rotated.exit_code == 0, rotated.output
        new = rotated.stdout.strip()
        texts.append(new)
        wait_until(lambda: works(served, new) and not works(served, key), "the rotation", 10)
        ask(served.openai(new), "chat")
        assert served.records[-1].key_name == "svc"

        # Rotated through the API.
        again = admin(served, "POST", "/svc/rotate")
        assert again.status_code == 200
        newer = again.json()["key"]
        texts.append(newer)
        assert works(served, newer) and not works(served, new)

        # Revoked through the CLI.
        assert cli("keys", "revoke", "svc", "--db", str(db)).exit_code == 0
        wait_until(lambda: not works(served, newer), "the CLI's revocation", 10)
        listed = cli("keys", "list", "--json", "--db", str(db))
        rows = json.loads(listed.stdout)
        assert [(r["name"], r["revoked_at"] is not None) for r in rows] == [
            ("api-made", True), ("from-config", False), ("svc", True)
        ]  # fmt: skip
        table = cli("keys", "list", "--db", str(db)).output
    # No key is ever stored, logged or listed: only digests.
    dump = repr(sqlite3.connect(db).execute("SELECT * FROM gateway_keys").fetchall())
    logs = caplog.text
    for text in texts:
        assert (
            text not in dump
            and text not in logs
            and text not in listed.output
            and text not in table
        )
        assert text[8:] not in dump  # nor the random part alone
    assert key_digest(texts[-1]) in dump


def test_the_admin_api_takes_the_master_key_only_and_bounded_valid_bodies(
    sim: SimServer, tmp_path: Path
) -> None:
    model = sim_model(sim, **FAST)
    config = config_for(sim, model, keys=["os.environ/SIM_KEY"])  # a plain key: sk-sim
    with Served(config, results_db=tmp_path / "r.db") as served:
        assert admin(served, "GET", key="").status_code == 401
        bad = admin(served, "GET", key="wrong")
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
        other = admin(served, "GET", key="sk-sim")
        assert other.status_code == 403 and "master key only" in other.json()["error"]["message"]
        assert admin(served, "POST", key="sk-sim", json={"name": "x"}).status_code == 403
        assert admin(served, "DELETE", "/x", key="sk-sim").status_code == 403
        assert admin(served, "GET").json() == {"keys": []}

        def refused(body: Any, status: int, message: str) -> None:
            answer = admin(served, "POST", content=body if isinstance(body, bytes) else json.dumps(body))  # fmt: skip
            assert answer.status_code == status, answer.text
            assert message in answer.json()["error"]["message"]

        refused(b"{" * 10, 400, "JSON")
        refused(b"x" * 70_000, 413, "")
        refused(["a"], 400, "expected a JSON object")
        refused({"name": "a b"}, 400, "name")
        refused({"name": "a", "key": "mine"}, 400, "generated, never given")
        refused({"name": "a", "models": ["chta"]}, 400, "models[0]: 'chta' names no model group")
        refused({"name": "a", "budget": {"max_usd": 1, "warn_at": "200%"}}, 400, "budget.warn_at")
        refused({"name": "a", "colour": "red"}, 400, "colour: unknown key")
        refused({"name": "master"}, 400, "'master' is a key of the config")
        assert admin(served, "POST", json={"name": "a"}).status_code == 201
        refused({"name": "a"}, 409, "exists")
        assert admin(served, "DELETE", "/nobody").status_code == 404
        assert admin(served, "POST", "/nobody/rotate").status_code == 404
        # A name with a slash is a name: it is read whole from the path.
        assert admin(served, "POST", json={"name": "team/a"}).status_code == 201
        assert admin(served, "POST", "/team/a/rotate").status_code == 200
        assert admin(served, "DELETE", "/team%2Fa").status_code == 200


def test_without_a_master_key_the_admin_api_says_so(sim: SimServer, tmp_path: Path) -> None:
    model = sim_model(sim, **FAST)
    with Served(config_for(sim, model, master=False), results_db=tmp_path / "r.db") as served:
        answer = admin(served, "GET", key="")
        assert answer.status_code == 403
        assert "general_settings.master_key" in answer.json()["error"]["message"]


def test_a_key_may_use_only_its_model_groups_as_each_sdk_expects(
    sim: SimServer, tmp_path: Path
) -> None:
    chat, other = sim_model(sim, **FAST), sim_model(sim, **FAST)
    anthropic_model = sim_model(sim, **FAST)
    entries = [deployment(sim, "chat", "openai", chat), deployment(sim, "other", "openai", other)]
    entries.append(deployment(sim, "claude", "anthropic", anthropic_model))
    config = gateway_config(
        entries,
        router={"model_group_alias": {"gpt": "chat", "o": "other"}},
        settings={"keys": [{"name": "narrow", "key": "os.environ/SIM_KEY", "models": ["chat", "claude"]}]},
        general={"master_key": MASTER},
    )  # fmt: skip
    with Served(config, results_db=tmp_path / "r.db") as served:
        client = served.openai("sk-sim")
        with pytest.raises(openai.PermissionDeniedError) as info:
            ask(client, "other")
        assert info.value.status_code == 403
        assert "'narrow' may not use the model group 'other'" in info.value.message
        assert info.value.body["param"] == "model"  # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError, match=r"'other' \(asked for as 'o'\)"):
            ask(client, "o")
        with pytest.raises(openai.PermissionDeniedError):  # streaming: refused before it starts
            ask(client, "other", stream=True)
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            served.anthropic("sk-sim").messages.create(model="other", max_tokens=8, messages=HI)
        assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert "'other'" in refused.value.message
        assert upstream(sim, other) == []  # no upstream call was made
        # A model name past the gateway's bound is a 400 that does not echo it, not a 403 that
        # would (the key's check names the model).
        with pytest.raises(openai.BadRequestError) as long_name:
            ask(client, "x" * 300)
        assert "at most 256" in long_name.value.message and "x" * 50 not in long_name.value.message
        # Its groups, an alias of one, and the other protocol all work.
        assert ask(client, "chat").model == chat and ask(client, "gpt").model == chat
        served.anthropic("sk-sim").messages.create(model="claude", max_tokens=8, messages=HI)
        # /v1/models lists only what the key may use; the master key sees everything.
        assert [m.id for m in client.models.list().data] == ["chat", "claude", "gpt"]
        assert [m.id for m in served.openai(MASTER).models.list().data] == ["chat", "other", "claude", "gpt", "o"]  # fmt: skip
        ask(served.openai(MASTER), "other")


def test_wildcard_groups_are_allowed_by_pattern_or_by_model(sim: SimServer, tmp_path: Path) -> None:
    name = f"fb-{sim_model(sim)}"
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=FAST, timeout=10).raise_for_status()
    config = gateway_config(
        [deployment(sim, "fb-*", "openai", "fb-*")],
        general={"master_key": MASTER},
    )
    with Served(config, results_db=tmp_path / "r.db") as served:
        pattern = admin(served, "POST", json={"name": "all-fb", "models": ["fb-*"]}).json()["key"]
        one = admin(served, "POST", json={"name": "one-fb", "models": [name]}).json()["key"]
        assert ask(served.openai(pattern), name).model == name
        assert ask(served.openai(one), name).model == name
        with pytest.raises(openai.PermissionDeniedError):
            ask(served.openai(one), "fb-another")


def test_replicas_sharing_postgresql_take_up_and_drop_keys_within_seconds(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    config = config_for(sim, model)
    with postgres_schema() as url, Served(config, results_db=url) as a, Served(config, results_db=url) as b:  # type: ignore[arg-type]  # fmt: skip
        key = admin(a, "POST", json={"name": "shared", "team": "t"}).json()["key"]
        assert works(a, key)
        started = time.monotonic()
        wait_until(lambda: works(b, key), "replica b to take up the key", 10)
        assert time.monotonic() - started < 5
        assert ask(b.openai(key), "chat").model == model
        assert admin(b, "DELETE", "/shared").status_code == 200
        assert not works(b, key)
        wait_until(lambda: not works(a, key), "replica a to drop the key", 10)
        assert time.monotonic() - started < 10


def test_a_database_that_fails_keeps_the_keys_last_read(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = sim_model(sim, **FAST)
    db = tmp_path / "r.db"
    with Served(config_for(sim, model), results_db=db) as served:
        key = admin(served, "POST", json={"name": "kept"}).json()["key"]
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE gateway_keys RENAME TO gone")
        wait_until(lambda: "cannot read the run-time keys" in caplog.text, "the failure's log line", 10)  # fmt: skip
        time.sleep(2.5)  # another poll fails: said once, and the key still works
        assert caplog.text.count("cannot read the run-time keys") == 1
        assert works(served, key)
        # The keys API says so in its JSON shape, and stores nothing.
        for method, path, body in (("GET", "", None), ("POST", "", {"name": "new"}), ("DELETE", "/kept", None)):  # fmt: skip
            answer = admin(served, method, path, json=body)
            assert answer.status_code == 503, answer.text
            assert "the results database is unavailable" in answer.json()["error"]["message"]
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE gone RENAME TO gateway_keys")
            conn.execute("UPDATE gateway_keys SET revoked_at = 1 WHERE name = 'kept'")
        wait_until(lambda: not works(served, key), "the revocation once readable again", 10)
        assert "the run-time keys are read again" in caplog.text


def test_cli_refuses_bad_keys_in_one_line(tmp_path: Path) -> None:
    db = str(tmp_path / "r.db")
    config = tmp_path / "llmpulse.yaml"
    config.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "chat", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/NOPE_KEY"}}],
        "gateway": {"keys": [{"name": "in-config", "key": "os.environ/GW_KEY"}]},
    }))  # fmt: skip
    env = {"GW_KEY": "sk-gw-config"}
    cases = [
        (["--models", "chta"], "models[0]: 'chta' names no model group", 2),
        (["--period", "7d"], "--period and --warn-at need --budget", 2),
        (["--budget", "5", "--period", "2w"], "budget.period", 2),
        (["--rpm", "0"], "rpm", 2),
    ]
    for extra, message, code in cases:
        result = CliRunner().invoke(main, ["keys", "create", "k", "--db", db, "--config", str(config), *extra], env=env)  # fmt: skip
        assert result.exit_code == code, result.output
        assert message in result.output and result.stdout == ""
    taken = CliRunner().invoke(main, ["keys", "create", "in-config", "--db", db, "--config", str(config)], env=env)  # fmt: skip
    assert taken.exit_code == 2 and "'in-config' is a key of the config" in taken.output
    assert cli("keys", "create", "k", "--db", db).exit_code == 0
    again = cli("keys", "create", "k", "--db", db)
    assert again.exit_code == 1 and "exists" in again.output
    assert cli("keys", "revoke", "nobody", "--db", db).exit_code == 1
    assert cli("keys", "rotate", "nobody", "--db", db).exit_code == 1


def test_a_loopback_gateway_that_took_keys_up_stays_closed_when_they_are_revoked(
    sim: SimServer, tmp_path: Path
) -> None:
    """With no key in the config a loopback gateway serves anyone; once run-time keys exist it
    asks for one. Revoking the last of them must not open it again (a reverse proxy on the
    same host makes every client loopback), here or after a restart."""
    model = sim_model(sim, **FAST)
    db = tmp_path / "r.db"
    config = config_for(sim, model, master=False)
    with Served(config, results_db=db) as served:
        assert works(served, "")  # no keys anywhere: loopback clients are served
        made = cli("keys", "create", "only", "--db", str(db))
        key = made.stdout.strip()
        wait_until(lambda: works(served, key) and not works(served, ""), "the key to close it", 10)
        assert cli("keys", "revoke", "only", "--db", str(db)).exit_code == 0
        wait_until(lambda: not works(served, key), "the revocation", 10)
        time.sleep(2.5)  # another poll
        assert not works(served, "")
    with Served(config, results_db=db) as served:
        assert not works(served, "")


def test_a_refresh_that_read_before_a_change_never_undoes_it(tmp_path: Path) -> None:
    """The poll and an admin request refresh in two threads: a read taken before a key was
    created (or revoked, or rotated) must not be loaded after the read that saw the change."""
    import threading

    from llmpulse.config.keys import KeyConfig
    from llmpulse.gateway.keys import KeyRing, RunTimeKeys

    keys = RunTimeKeys(tmp_path / "r.db", KeyRing(()))
    store = keys.store
    read = store.stored_keys
    first_read, release = threading.Event(), threading.Event()

    def slow_poll_read(**kw: Any) -> Any:
        rows = read(**kw)
        if threading.current_thread().name == "poll":
            first_read.set()
            release.wait(5)
        return rows

    store.stored_keys = slow_poll_read  # type: ignore[method-assign]
    poll = threading.Thread(target=keys.refresh, name="poll")
    poll.start()
    assert first_read.wait(5)
    text, _ = keys.create(KeyConfig(name="fresh"), time.time())
    admin_refresh = threading.Thread(target=keys.refresh, name="admin")
    admin_refresh.start()
    time.sleep(0.3)  # the admin request's refresh has run (or waits for the poll's)
    release.set()
    poll.join(5)
    admin_refresh.join(5)
    keys.close()
    assert keys.ring.lookup(text) is not None


def test_a_gateway_that_cannot_read_its_run_time_keys_at_start_is_not_open(
    sim: SimServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first read happens before the app serves, so a restart never opens a window without
    its keys; when that read fails, the gateway asks for a key (only the config's can match)
    until one succeeds, rather than serving every loopback client."""
    model = sim_model(sim, **FAST)
    db = tmp_path / "r.db"
    key = cli("keys", "create", "svc", "--db", str(db)).stdout.strip()
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE gateway_keys RENAME TO gone")
    with Served(config_for(sim, model, master=False), results_db=db) as served:
        assert not works(served, "")
        assert "until they are read, only the config's keys are accepted" in caplog.text
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE gone RENAME TO gateway_keys")
        wait_until(lambda: works(served, key), "the keys once readable", 10)
        assert not works(served, "")
