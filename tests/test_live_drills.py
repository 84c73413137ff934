"""Live drills: a permitted gateway key's ``x-llmpulse-drill`` header forces the app's own request
down its fallback path, through the official SDKs, streaming and not; the simulator's request
log (``/_sim/requests``) says which deployments were called."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from click.testing import CliRunner

from conftest import sim_model
from llmpulse.cli import main
from llmpulse.config import ConfigError
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.app import DEPLOYMENT_HEADER, DRILL_HEADER
from llmpulse.result import Source
from llmpulse.sim.server import SimServer
from test_gateway_app import wait_until
from test_gateway_keys import works
from test_gateway_proxy import FAST, Served, deployment, upstream

MASTER = "sk-master-drills"
TESTER = "sk-drill-tester"  # drill: true
PLAIN = "sk-no-drills"  # no drill permission
HI = [{"role": "user", "content": "hi"}]


class Path3:
    """A group ``chat`` of a primary (openai, model_info id ``primary-id``) and a second
    deployment (anthropic), falling back to the group ``rescue`` (gemini)."""

    def __init__(self, sim: SimServer) -> None:
        self.primary, self.second = sim_model(sim, **FAST), sim_model(sim, **FAST)
        self.rescue = sim_model(sim, **FAST)
        self.names = [
            "chat/primary-id",  # named by its model_info id, as LiteLLM does
            f"chat/anthropic/{self.second}",
            f"rescue/gemini/{self.rescue}",
        ]
        self.entries = [
            {**deployment(sim, "chat", "openai", self.primary, order=1),
             "model_info": {"id": "primary-id"}},
            deployment(sim, "chat", "anthropic", self.second, order=2),
            deployment(sim, "rescue", "gemini", self.rescue),
        ]  # fmt: skip

    def config(self, keys: list[Any] | None = None, master: bool = True) -> GatewayConfig:
        return config_of(
            self.entries,
            {"fallbacks": [{"chat": ["rescue"]}], "routing_strategy": "priority"},
            keys,
            master,
        )

    def calls(self, sim: SimServer) -> list[int]:
        return [len(upstream(sim, m)) for m in (self.primary, self.second, self.rescue)]


KEYS = [
    {"name": "tester", "key": "os.environ/TESTER_KEY", "drill": True},
    {"name": "plain", "key": "os.environ/PLAIN_KEY"},
]


def config_of(
    entries: list[dict[str, Any]],
    router: dict[str, Any],
    keys: list[Any] | None = None,
    master: bool = True,
) -> GatewayConfig:
    raw: dict[str, Any] = {"model_list": entries, "router_settings": router}
    raw["gateway"] = {"keys": keys or []}
    if master:
        raw["general_settings"] = {"master_key": MASTER}
    env = {"SIM_KEY": "sk-sim", "TESTER_KEY": TESTER, "PLAIN_KEY": PLAIN}
    config = parse_gateway(raw, env=env)
    assert config is not None
    return config


def drilling(value: str) -> dict[str, str]:
    return {DRILL_HEADER: value}


def test_a_permitted_key_reaches_the_fallback_only_with_each_sdk(sim: SimServer) -> None:
    path = Path3(sim)
    with Served(path.config(KEYS)) as served:
        oa, claude = served.openai(TESTER), served.anthropic(TESTER)
        raw = oa.chat.completions.with_raw_response.create(
            model="chat", messages=HI, extra_headers=drilling("skip-primary")
        )
        assert raw.parse().choices[0].message.content
        assert raw.headers[DEPLOYMENT_HEADER] == path.names[1]
        assert raw.headers[DRILL_HEADER] == "skip-primary"  # the client is told it drilled

        # By model_info id, the header's name in any case (HTTP's): streamed to the end.
        stream = oa.chat.completions.create(
            model="chat", messages=HI, stream=True,
            extra_headers={"X-LLMPulse-Drill": "skip=primary-id"},
        )  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text and stream.response.headers[DEPLOYMENT_HEADER] == path.names[1]
        assert stream.response.headers[DRILL_HEADER] == "skip=primary-id"

        answer = claude.messages.with_raw_response.create(
            model="chat", max_tokens=20, messages=HI, extra_headers=drilling("skip-primary")
        )
        assert answer.parse().content[0].text  # type: ignore[union-attr]
        assert answer.headers[DEPLOYMENT_HEADER] == path.names[1]
        with claude.messages.stream(
            model="chat", max_tokens=20, messages=HI,
            extra_headers=drilling(f"skip={path.names[0]}"),
        ) as events:  # fmt: skip
            assert events.get_final_text()
            assert events.response.headers[DRILL_HEADER] == f"skip={path.names[0]}"

        # The master key may always drill; skipping the second leaves the primary answering.
        master = served.openai(MASTER).chat.completions.with_raw_response.create(
            model="chat", messages=HI, extra_headers=drilling(f"skip={path.names[1]}")
        )
        assert master.headers[DEPLOYMENT_HEADER] == path.names[0]
        # Without the header, the same key's request goes to the primary as ever.
        plain = oa.chat.completions.with_raw_response.create(model="chat", messages=HI)
        assert plain.headers[DEPLOYMENT_HEADER] == path.names[0]
        assert DRILL_HEADER not in plain.headers

    assert path.calls(sim) == [2, 4, 0]  # the primary only for the last two
    drills, undrilled = served.records[:4], served.records[5]
    assert [r.drill for r in drills] == [
        "skip-primary", "skip=primary-id", "skip-primary", f"skip={path.names[0]}"
    ]  # fmt: skip
    for r in drills:
        assert r.route == path.names[:2] and r.ok and r.key_name == "tester"
        assert r.source is Source.TRAFFIC and r.target == path.names[1]
        assert r.fallback_reason is None  # forced off the primary: nothing failed
    by_master = served.records[4]
    assert by_master.key_name == "master" and by_master.drill == f"skip={path.names[1]}"
    # The skipped deployment is in the route, passed over, before the one that answered.
    assert by_master.route == [path.names[1], path.names[0]]
    assert by_master.target == path.names[0]
    assert undrilled.drill is None and undrilled.route == path.names[:1]
    assert served.records[0].to_json()["drill"] == "skip-primary"


def test_a_drill_on_a_group_of_one_takes_its_fallback_group_across_protocols(
    sim: SimServer,
) -> None:
    solo, rescue = sim_model(sim, **FAST), sim_model(sim, **FAST)
    config = config_of(
        [deployment(sim, "solo", "openai", solo), deployment(sim, "rescue", "gemini", rescue)],
        {"fallbacks": [{"solo": ["rescue"]}]},
        KEYS,
    )
    names = [f"solo/openai/{solo}", f"rescue/gemini/{rescue}"]
    with Served(config) as served:
        stream = served.openai(TESTER).chat.completions.create(
            model="solo", messages=HI, stream=True, extra_headers=drilling("skip-primary")
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert stream.response.headers[DEPLOYMENT_HEADER] == names[1]
        answer = served.anthropic(TESTER).messages.create(
            model="solo", max_tokens=20, messages=HI, extra_headers=drilling(f"skip={names[0]}")
        )
        assert answer.content[0].text  # type: ignore[union-attr]
    assert not upstream(sim, solo) and len(upstream(sim, rescue)) == 2
    assert [(r.route, r.fallbacks, r.target) for r in served.records] == [(names, 1, names[1])] * 2


def test_a_drill_that_leaves_nothing_to_answer_says_so_and_records_nothing(
    sim: SimServer,
) -> None:
    alone = sim_model(sim, **FAST)
    config = config_of([deployment(sim, "alone", "openai", alone)], {}, KEYS)
    with Served(config) as served:
        for stream in (False, True):
            with pytest.raises(openai.InternalServerError, match="drill: after skipping alone/"):
                served.openai(TESTER).chat.completions.create(
                    model="alone",
                    messages=HI,
                    stream=stream,
                    extra_headers=drilling("skip-primary"),
                )
        raw = httpx.post(
            f"{served.url}/v1/messages",
            json={"model": "alone", "max_tokens": 20, "messages": HI},
            headers={"x-api-key": TESTER, **drilling(f"skip=alone/openai/{alone}")},
            timeout=10,
        )
        # Anthropic says unavailable as 529 (overloaded).
        assert raw.status_code == 529 and raw.headers[DRILL_HEADER] == f"skip=alone/openai/{alone}"
        assert raw.json()["error"]["message"].startswith("drill: every deployment of 'alone'")
    assert not upstream(sim, alone) and served.records == []


def test_keys_without_the_permission_are_refused_before_any_upstream_call(sim: SimServer) -> None:
    path = Path3(sim)
    with Served(path.config(KEYS)) as served:
        with pytest.raises(openai.PermissionDeniedError, match="'plain' may not drill") as oa:
            served.openai(PLAIN).chat.completions.create(
                model="chat", messages=HI, extra_headers=drilling("skip-primary")
            )
        assert oa.value.body["type"] == "invalid_request_error"  # type: ignore[index]
        with pytest.raises(openai.PermissionDeniedError):
            served.openai(PLAIN).chat.completions.create(
                model="chat", messages=HI, stream=True, extra_headers=drilling("skip-primary")
            )
        with pytest.raises(anthropic.PermissionDeniedError, match="drill: true") as an:
            served.anthropic(PLAIN).messages.create(
                model="chat", max_tokens=20, messages=HI, extra_headers=drilling("skip-primary")
            )
        assert an.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    # Loopback without any key: nobody holds the permission, so nobody may drill.
    with Served(path.config(master=False)) as open_gateway:
        with pytest.raises(openai.PermissionDeniedError, match="this gateway has no keys"):
            open_gateway.openai().chat.completions.create(
                model="chat", messages=HI, extra_headers=drilling("skip-primary")
            )
        assert open_gateway.openai().chat.completions.create(model="chat", messages=HI)
    assert path.calls(sim) == [1, 0, 0]  # only the last, undrilled request
    assert served.records == [] and len(open_gateway.records) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("skip-everything", "expected skip-primary or skip=<deployment name or model_info id>"),
        ("SKIP-PRIMARY", "got 'SKIP-PRIMARY'"),
        ("skip=", "skip= names no deployment"),
        ("skip=chat/openai/nope", "no deployment is named 'chat/openai/nope'"),
        ("skip=" + "x" * 1100, "over 1024 characters"),
        ("", "expected skip-primary or skip="),
    ],
)
def test_a_malformed_drill_header_is_a_400_naming_it(
    sim: SimServer, value: str, expected: str
) -> None:
    path = Path3(sim)
    with Served(path.config(KEYS)) as served:
        with pytest.raises(openai.BadRequestError, match=expected) as oa:
            served.openai(TESTER).chat.completions.create(
                model="chat", messages=HI, extra_headers=drilling(value)
            )
        assert f"{DRILL_HEADER}:" in oa.value.message
        with pytest.raises(anthropic.BadRequestError, match=DRILL_HEADER) as an:
            served.anthropic(MASTER).messages.create(
                model="chat", max_tokens=20, messages=HI, extra_headers=drilling(value)
            )
        assert an.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert path.calls(sim) == [0, 0, 0] and served.records == []


def test_run_time_keys_carry_the_permission_from_the_cli_and_the_api(
    sim: SimServer, tmp_path: Path
) -> None:
    path = Path3(sim)
    db = tmp_path / "results.db"
    keys_url = "/api/v1/keys"
    auth = {"authorization": f"Bearer {MASTER}"}
    with Served(path.config(), results_db=db) as served:
        made = CliRunner().invoke(main, ["keys", "create", "ci", "--drill", "--db", str(db)])
        assert made.exit_code == 0, made.output
        ci = made.stdout.strip()
        created = httpx.post(
            served.url + keys_url, json={"name": "app"}, headers=auth, timeout=10
        ).json()
        app_key = created["key"]
        assert created["drill"] is False
        bad = httpx.post(
            served.url + keys_url, json={"name": "x", "drill": "yes"}, headers=auth, timeout=10
        )
        assert bad.status_code == 400 and "drill" in bad.json()["error"]["message"]
        wait_until(lambda: works(served, ci), "the gateway to take up the CLI's key", 10)
        raw = served.openai(ci).chat.completions.with_raw_response.create(
            model="chat", messages=HI, extra_headers=drilling("skip-primary")
        )
        assert raw.headers[DEPLOYMENT_HEADER] == path.names[1]
        with pytest.raises(openai.PermissionDeniedError, match="'app' may not drill"):
            served.openai(app_key).chat.completions.create(
                model="chat", messages=HI, extra_headers=drilling("skip-primary")
            )
        listed = {k["name"]: k["drill"] for k in httpx.get(served.url + keys_url, headers=auth).json()["keys"]}  # fmt: skip
        assert listed == {"app": False, "ci": True}
        # Revoked, the key takes its permission with it: refused before any upstream call.
        revoked = httpx.delete(f"{served.url}{keys_url}/ci", headers=auth, timeout=10)
        assert revoked.status_code == 200, revoked.text
        with pytest.raises(openai.AuthenticationError):
            served.openai(ci).chat.completions.create(
                model="chat", messages=HI, extra_headers=drilling("skip-primary")
            )
    assert path.calls(sim) == [0, 1, 0]
    assert [(r.key_name, r.drill) for r in served.records] == [("ci", "skip-primary")]


def test_drill_in_the_config_must_be_a_boolean(sim: SimServer) -> None:
    path = Path3(sim)
    with pytest.raises(ConfigError, match=r"gateway\.keys\[0\]\.drill: Input should be a valid boolean"):  # fmt: skip
        path.config([{"name": "a", "key": "os.environ/TESTER_KEY", "drill": "true"}])


def test_skip_names_only_deployments_on_the_requests_own_path(sim: SimServer) -> None:
    """A drill key limited to some models learns nothing of the others' deployments: naming one
    of them is the same 400 as naming none, and nothing is called or recorded."""
    path = Path3(sim)
    hidden = sim_model(sim, **FAST)
    secret = {**deployment(sim, "secret", "openai", hidden), "model_info": {"id": "secret-id"}}
    narrow = [{"name": "narrow", "key": "os.environ/TESTER_KEY", "drill": True, "models": ["chat"]}]
    router = {"fallbacks": [{"chat": ["rescue"]}], "routing_strategy": "priority"}
    with Served(config_of([*path.entries, secret], router, narrow)) as served:
        client = served.openai(TESTER)
        for name in (f"secret/openai/{hidden}", "secret-id", "secret/openai/none"):
            expected = re.escape(f"no deployment is named {name!r} on the path of 'chat'")
            with pytest.raises(openai.BadRequestError, match=expected):
                client.chat.completions.create(
                    model="chat", messages=HI, extra_headers=drilling(f"skip={name}")
                )
        # A fallback group's deployment is on the path: skipping it is a drill of its own.
        raw = client.chat.completions.with_raw_response.create(
            model="chat", messages=HI, extra_headers=drilling(f"skip={path.names[2]}")
        )
        assert raw.headers[DEPLOYMENT_HEADER] == path.names[0]
    assert not upstream(sim, hidden)
    assert [r.drill for r in served.records] == [f"skip={path.names[2]}"]


def test_passing_over_the_primary_leaves_its_rate_limit_headroom_alone(
    sim: SimServer,
) -> None:
    """The skipped primary was selected, then handed back: a request that never reached it
    must not count against its rpm, or rate-limit-aware routing would shun it afterwards."""
    primary, second = sim_model(sim, **FAST), sim_model(sim, **FAST)
    config = config_of(
        [
            deployment(sim, "chat", "openai", primary, order=1, rpm=1),
            deployment(sim, "chat", "anthropic", second, order=2, rpm=1000),
        ],
        {"routing_strategy": "usage-based-routing-v2"},
        KEYS,
    )
    names = [f"chat/openai/{primary}", f"chat/anthropic/{second}"]
    with Served(config) as served:
        client = served.openai(TESTER).chat.completions
        drilled = client.with_raw_response.create(
            model="chat", messages=HI, extra_headers=drilling("skip-primary")
        )
        assert drilled.headers[DEPLOYMENT_HEADER] == names[1]
        plain = client.with_raw_response.create(model="chat", messages=HI)
        assert plain.headers[DEPLOYMENT_HEADER] == names[0]  # its one request a minute unused
    assert len(upstream(sim, primary)) == 1 and len(upstream(sim, second)) == 1


def test_a_drill_refused_by_its_keys_limits_is_still_told_it_was_one(sim: SimServer) -> None:
    path = Path3(sim)
    limited = [{"name": "tester", "key": "os.environ/TESTER_KEY", "drill": True, "rpm": 1}]
    with Served(path.config(limited)) as served:
        client = served.openai(TESTER).chat.completions
        client.create(model="chat", messages=HI, extra_headers=drilling("skip-primary"))
        with pytest.raises(openai.RateLimitError) as refused:
            client.create(model="chat", messages=HI, extra_headers=drilling("skip-primary"))
        assert refused.value.response.headers[DRILL_HEADER] == "skip-primary"
    assert path.calls(sim) == [0, 1, 0]  # a drill is real traffic: the key's rpm counts it
