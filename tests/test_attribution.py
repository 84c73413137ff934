"""Attribution: every traffic result names its gateway key, team, end user, tags and session,
read from the body fields and headers callers already send (official SDKs through a real
gateway, the simulator playing the providers), from ``Router`` and ``instrument()`` keyword
arguments, and from ``llmpulse.attributed`` blocks."""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

import llmpulse
from conftest import sim_model
from llmpulse import Router, RouterError
from llmpulse.attribution import (
    MAX_TAGS,
    NOBODY,
    LabelError,
    Owner,
    attributed,
    current,
    read_owner,
)
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import parse_gateway
from llmpulse.gateway.ir import TranslationError
from llmpulse.gateway.translate import anthropic as tr_anthropic
from llmpulse.gateway.translate import openai as tr_openai
from llmpulse.instrumentation import recorder_for
from llmpulse.result import CheckResult
from llmpulse.secrets import Redactor
from llmpulse.sim.server import SimServer
from llmpulse.store import ResultFilter, SQLiteStore
from test_gateway_proxy import FAST, Served, deployment, upstream

HI: list[Any] = [{"role": "user", "content": "hi"}]
KEYS = {
    "SEARCH_KEY": "gw-search-0001",
    "SUPPORT_KEY": "gw-support-0001",
    "BATCH_KEY": "gw-batch-01",
}


def keyed_config(entries: list[dict[str, Any]]) -> GatewayConfig:
    """Three named keys: two of them in teams."""
    raw = {
        "model_list": entries,
        "gateway": {
            "keys": [
                {"name": "search-backend", "key": "os.environ/SEARCH_KEY", "team": "search"},
                {"name": "support-bot", "key": "os.environ/SUPPORT_KEY", "team": "support"},
                {"name": "batch", "key": "os.environ/BATCH_KEY"},
            ]
        },
    }
    config = parse_gateway(raw, env={"SIM_KEY": "sk-sim", **KEYS})
    assert config is not None
    return config


def owner_of(r: CheckResult) -> tuple[Any, ...]:
    return (r.key_name, r.team, r.user, r.tags, r.session)


def test_sdk_requests_under_named_keys_carry_their_labels(sim: SimServer) -> None:
    gpt, claude = sim_model(sim, **FAST), sim_model(sim, **FAST)
    config = keyed_config(
        [deployment(sim, "chat", "openai", gpt), deployment(sim, "claude", "anthropic", claude)]
    )
    with Served(config) as served:
        search = served.openai(KEYS["SEARCH_KEY"])
        # LiteLLM's convention: user, and tags in metadata (no longer a 400); header tags add.
        search.chat.completions.create(
            model="chat",
            messages=HI,
            user="alice",
            extra_body={"metadata": {"tags": ["feature=search", "env=prod"]}},
            extra_headers={"x-llmpulse-tags": "env=prod, exp=b ,,", "x-llmpulse-session": "s-1"},
        )
        # The llmpulse header names the user over the body's (which still goes upstream).
        stream = search.chat.completions.create(
            model="chat",
            messages=HI,
            user="alice",
            stream=True,
            extra_headers={"x-llmpulse-user": "bob"},
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        support = served.anthropic(KEYS["SUPPORT_KEY"])
        # Anthropic's metadata.user_id, and LiteLLM's tags beside it, on /v1/messages.
        metadata: Any = {"user_id": "carol", "tags": ["feature=help"]}
        support.messages.create(model="claude", max_tokens=8, messages=HI, metadata=metadata)
        support.messages.create(model="chat", max_tokens=8, messages=HI, metadata=metadata)
        # OpenAI's own metadata (strings, with store: true) still goes upstream, tags apart.
        served.openai(KEYS["BATCH_KEY"]).chat.completions.create(
            model="chat",
            messages=HI,
            store=True,
            extra_body={"metadata": {"run": "nightly", "tags": ["job=etl"]}},
        )
        served.openai(KEYS["BATCH_KEY"]).chat.completions.create(model="chat", messages=HI)

    assert [owner_of(r) for r in served.records] == [
        ("search-backend", "search", "alice", ["feature=search", "env=prod", "exp=b"], "s-1"),
        ("search-backend", "search", "bob", [], None),
        ("support-bot", "support", "carol", ["feature=help"], None),
        ("support-bot", "support", "carol", ["feature=help"], None),
        ("batch", None, None, ["job=etl"], None),
        ("batch", None, None, [], None),
    ]
    sent = [r["body"] for r in upstream(sim, gpt)]
    assert [b.get("user") for b in sent] == ["alice", "alice", "carol", None, None]
    assert [b.get("metadata") for b in sent] == [None, None, None, {"run": "nightly"}, None]
    assert sent[3]["store"] is True
    # Anthropic takes no metadata but user_id.
    assert [r["body"]["metadata"] for r in upstream(sim, claude)] == [{"user_id": "carol"}]


def test_labels_past_their_bounds_get_a_400_in_the_callers_shape(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Served(keyed_config([deployment(sim, "chat", "openai", model)])) as served:
        client = served.openai(KEYS["SEARCH_KEY"])

        def refused(**extra: Any) -> str:
            with pytest.raises(openai.BadRequestError) as info:
                client.chat.completions.create(model="chat", messages=HI, **extra)
            body: Any = info.value.body
            assert body["type"] == "invalid_request_error"
            return str(body["message"])

        many = [f"t{i}" for i in range(MAX_TAGS + 1)]
        assert "at most 32" in refused(extra_body={"metadata": {"tags": many}})
        assert "'metadata.tags[1]' must be a string" in refused(
            extra_body={"metadata": {"tags": ["ok", 7]}}
        )
        assert "'metadata.tags' must be an array" in refused(extra_body={"metadata": {"tags": "x"}})
        long_tag = refused(extra_body={"metadata": {"tags": ["x" * 129]}})
        assert "'metadata.tags[0]' is 129 characters long; at most 128" in long_tag
        assert "'x-llmpulse-user' is 257 characters" in refused(
            extra_headers={"x-llmpulse-user": "u" * 257}
        )
        assert "'user' contains control" in refused(user="eve\nadmin")
        # Body and header tags count together.
        split = refused(
            extra_body={"metadata": {"tags": many[:20]}},
            extra_headers={"x-llmpulse-tags": ",".join(many[20:])},
        )
        assert "the request has 33 tags" in split

        with pytest.raises(anthropic.BadRequestError) as info:
            served.anthropic(KEYS["SEARCH_KEY"]).messages.create(
                model="chat", max_tokens=8, messages=HI, metadata={"user_id": "x" * 300}
            )
        error: Any = info.value.body
        assert error["type"] == "error" and "'metadata.user_id' is 300" in error["error"]["message"]
    assert upstream(sim, model) == []  # refused before any provider was called
    assert served.records == []


def test_labels_are_redacted_like_other_outside_text(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    with Served(keyed_config([deployment(sim, "chat", "openai", model)])) as served:
        served.openai(KEYS["SEARCH_KEY"]).chat.completions.create(
            model="chat",
            messages=HI,
            extra_headers={"x-llmpulse-tags": f"leak={KEYS['SUPPORT_KEY']},plain"},
        )
    assert served.records[0].tags == ["leak=[redacted]", "plain"]


def test_router_keyword_arguments_and_blocks(sim: SimServer, tmp_path: Path) -> None:
    model = sim_model(sim, **FAST)
    db = tmp_path / "router.db"
    entries = [deployment(sim, "chat", "openai", model)]
    with Router({"model_list": entries}, store=db, env={"SIM_KEY": "sk-sim"}) as router:
        with attributed(user="u-block", tags=["team=a"], session="sess-1"):
            router.completion(model="chat", messages=HI, tags=["feature=x"])
            # The call's user (OpenAI's own parameter) wins over the block's.
            router.completion(model="chat", messages=HI, user="u-call", session="sess-2")
            with attributed(tags=["inner"], user="u-inner"):
                streamed = router.messages(model="chat", max_tokens=8, messages=HI, stream=True)
                assert list(streamed)
        router.messages(model="chat", max_tokens=8, messages=HI, user="dave", tags=["t"])

        async def concurrently() -> None:
            async def ask(n: int) -> None:
                with attributed(session=f"task-{n}"):
                    await router.acompletion(model="chat", messages=HI)

            with attributed(user="async-user"):
                await asyncio.gather(*(asyncio.create_task(ask(n)) for n in range(3)))

        asyncio.run(concurrently())
        with pytest.raises(RouterError) as info:
            router.completion(model="chat", messages=HI, tags="one-string")  # type: ignore[arg-type]
        assert info.value.status == 400 and "'tags' must be a list" in info.value.message
        with pytest.raises(RouterError) as info:
            router.completion(model="chat", messages=HI, session="s" * 257)
        assert info.value.status == 400 and "'session' is 257 characters" in info.value.message

    with SQLiteStore(db) as store:
        stored = store.latest_results()
    got = sorted(owner_of(r) for r in stored if r.session is None or "task" not in r.session)
    assert got == sorted(
        [
            (None, None, "u-block", ["team=a", "feature=x"], "sess-1"),
            (None, None, "u-call", ["team=a"], "sess-2"),
            (None, None, "u-inner", ["team=a", "inner"], "sess-1"),
            (None, None, "dave", ["t"], None),
        ]
    )
    tasks = sorted(owner_of(r) for r in stored if r.session and "task" in r.session)
    assert tasks == [(None, None, "async-user", [], f"task-{n}") for n in range(3)]
    # messages(user=...) is the protocol's user: Anthropic's metadata.user_id, OpenAI's user.
    assert "dave" in [r["body"].get("user") for r in upstream(sim, model)]


def _instrumented(sim: SimServer, seen: list[CheckResult], **labels: Any) -> Any:
    client = openai.OpenAI(api_key="sk-sim", base_url=sim.openai_base, max_retries=0)
    return llmpulse.instrument(client, recorder=seen.append, **labels)


def test_instrument_reads_its_labels_the_sdk_body_headers_and_blocks(sim: SimServer) -> None:
    model = sim_model(sim, **FAST)
    seen: list[CheckResult] = []
    client = _instrumented(sim, seen, tags=["svc=api"])
    client.chat.completions.create(
        model=model, messages=HI, user="erin", extra_headers={"x-llmpulse-session": "s9"}
    )
    with attributed(user="frank", tags=["feature=summary"]):
        client.chat.completions.create(model=model, messages=HI)
        client.chat.completions.create(model=model, messages=HI, user="grace")
        # A thread copies the block's labels only when it is told to.
        context = contextvars.copy_context()
        worker = threading.Thread(
            target=context.run,
            args=(client.chat.completions.create,),
            kwargs={"model": model, "messages": HI},
        )
        worker.start()
        worker.join()
    # A label past its bounds cannot fail the caller's call: left out, with a warning.
    answer = client.chat.completions.create(model=model, messages=HI, user="x" * 300)
    assert answer.choices
    client.chat.completions.create(model=model, messages=HI, extra_body={"metadata": {"tags": 5}})
    recorder_for(client).flush()
    assert [owner_of(r) for r in seen] == [
        (None, None, "erin", ["svc=api"], "s9"),
        (None, None, "frank", ["svc=api", "feature=summary"], None),
        (None, None, "grace", ["svc=api", "feature=summary"], None),
        (None, None, "frank", ["svc=api", "feature=summary"], None),
        (None, None, None, ["svc=api"], None),
        (None, None, None, ["svc=api"], None),
    ]
    assert any("'user' is 300 characters long" in w for w in seen[-2].warnings)
    assert any("'metadata.tags' must be a list" in w for w in seen[-1].warnings)
    recorder_for(client).close()


async def test_instrument_async_anthropic_in_tasks(sim: SimServer, tmp_path: Path) -> None:
    model = sim_model(sim, **FAST)
    store = SQLiteStore(tmp_path / "sdk.db")
    client = llmpulse.instrument(
        anthropic.AsyncAnthropic(api_key="sk-sim", base_url=sim.anthropic_base, max_retries=0),
        store=store,
        session="batch-7",
    )

    async def ask(user: str) -> None:
        await client.messages.create(
            model=model, max_tokens=8, messages=HI, metadata={"user_id": user}
        )

    with llmpulse.attributed(tags=["job=nightly"]):
        await asyncio.gather(*(asyncio.create_task(ask(f"user-{n}")) for n in range(3)))
    assert recorder_for(client).flush()
    stored = store.latest_results(where=ResultFilter(target=f"anthropic/{model}"))
    assert sorted(owner_of(r) for r in stored) == [
        (None, None, f"user-{n}", ["job=nightly"], "batch-7") for n in range(3)
    ]
    recorder_for(client).close()
    store.close()


def test_in_process_labels_are_checked_where_they_are_given(sim: SimServer) -> None:
    with pytest.raises(LabelError, match=re.escape("'tags[0]' is 129 characters")):
        _instrumented(sim, [], tags=["x" * 129])
    with pytest.raises(ValueError, match="must be a list of strings"), attributed(tags="x=1"):
        pass
    with pytest.raises(ValueError, match="control"), attributed(session="a\tb"):
        pass
    with (
        attributed(tags=[f"t{i}" for i in range(MAX_TAGS)]),
        pytest.raises(LabelError, match="33 tags"),
        attributed(tags=["one-more"]),
    ):
        pass
    assert current() is NOBODY


def test_read_owner_precedence_and_header_parsing() -> None:
    headers = httpx.Headers(
        {"X-LLMpulse-User": "hdr", "x-llmpulse-tags": " a , b,a,, c ", "x-llmpulse-session": ""}
    )
    block = Owner(user="blk", tags=("z", "a"), session="blk-s")
    owner = read_owner("k", "t", user="body", tags=["b", "d"], headers=headers, within=block)
    assert owner == Owner("k", "t", "hdr", ("z", "a", "b", "d", "c"), "blk-s")
    assert read_owner() is NOBODY
    # UTF-8 header bytes, as a server hands them over (Latin-1 decoded).
    raw = {"x-llmpulse-user": "josé".encode().decode("latin-1")}
    assert read_owner(headers=raw).user == "josé"
    assert Owner(tags=("sk-ant-abcdefghijklmnop",)).redacted(Redactor()).tags == ("[redacted]",)


def test_metadata_tags_are_read_and_never_sent_on() -> None:
    body: dict[str, Any] = {"model": "m", "messages": HI, "metadata": {"tags": ["a"], "x": {}}}
    req = tr_openai.parse_request(body)
    # Without store: true OpenAI refuses metadata: LiteLLM's other keys are left out.
    assert req.tags == ["a"] and "metadata" not in tr_openai.render_request(req).body
    stored = tr_openai.parse_request(
        {**body, "store": True, "metadata": {"tags": ["a"], "run": "1"}}
    )
    assert tr_openai.render_request(stored).body["metadata"] == {"run": "1"}
    # With store, a string "tags" is OpenAI metadata like any other.
    plain = tr_openai.parse_request({**body, "store": True, "metadata": {"tags": "a,b"}})
    assert plain.tags == [] and tr_openai.render_request(plain).body["metadata"] == {"tags": "a,b"}
    with pytest.raises(TranslationError, match=re.escape("'metadata.run' must be a string")):
        tr_openai.parse_request({**body, "store": True, "metadata": {"run": 1}})
    claude = tr_anthropic.parse_request(
        {"model": "m", "max_tokens": 5, "messages": HI, "metadata": {"tags": ["b"]}}
    )
    assert claude.tags == ["b"] and "metadata" not in tr_anthropic.render_request(claude).body
    with pytest.raises(TranslationError, match=re.escape("'metadata.tags[0]' must be a string")):
        tr_anthropic.parse_request(
            {"model": "m", "max_tokens": 5, "messages": HI, "metadata": {"tags": [None]}}
        )
