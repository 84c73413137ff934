"""instrument(): real SDK clients against the simulator over loopback, instrumented or not."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

import llmpulse
import pgserver
from conftest import ground_truth, sim_model
from llmpulse.errors import ErrorClass
from llmpulse.instrumentation import recorder_for
from llmpulse.providers.base import REFUSED
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.sim.server import SimServer
from llmpulse.store import ResultFilter, SQLiteStore, open_store

MESSAGES: list[Any] = [{"role": "user", "content": "say something short"}]
TTFT_SLACK_MS = 40  # loopback, SDK parsing and a busy CI machine; the sim is exact


def _catalogued(sim: SimServer, name: str, **behavior: Any) -> str:
    """A simulated model under a real catalogue name, so cost can be computed."""
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10).raise_for_status()
    return name


def _openai(sim: SimServer, cls: type = openai.OpenAI) -> Any:
    return cls(api_key="sk-sim", base_url=sim.openai_base, max_retries=0)


def _anthropic(sim: SimServer, cls: type = anthropic.Anthropic) -> Any:
    return cls(api_key="sk-sim", base_url=sim.anthropic_base, max_retries=0)


def _same(a: Any, b: Any) -> None:
    """Responses of two calls are equal but for the per-request ids and timestamps."""
    assert type(a) is type(b)
    volatile = {"id", "created"}
    assert a.model_dump(exclude=volatile) == b.model_dump(exclude=volatile)


def _without_id(body: Any) -> Any:
    return {k: v for k, v in body.items() if k != "request_id"} if isinstance(body, dict) else body


def _check_truth(sim: SimServer, r: CheckResult, *, streamed: bool) -> None:
    assert r.request_id is not None
    truth = ground_truth(sim, r.request_id)
    assert r.source is Source.TRAFFIC
    assert r.http_status == truth["status"]
    assert r.kind is (CheckKind.STREAM if streamed else CheckKind.INFERENCE)
    assert r.usage.output_tokens == truth["output_tokens"] + truth["reasoning_tokens"]
    assert r.usage.input_tokens == truth["input_tokens"]
    assert r.response_model == truth["served_model"]
    assert r.latency_ms is not None and r.latency_ms >= truth["ttft_ms"]
    if streamed:
        assert r.ttft_ms is not None
        assert truth["ttft_ms"] <= r.ttft_ms < truth["ttft_ms"] + TTFT_SLACK_MS
        assert r.tokens_per_s == pytest.approx(truth["tokens_per_s"], rel=0.25)


def test_openai_sync_results_unchanged_and_measured(sim: SimServer, tmp_path: Path) -> None:
    model = _catalogued(sim, "gpt-4o-mini", ttft="120ms", tokens_per_s=200, output_tokens=12)
    plain = _openai(sim)
    db = tmp_path / "traffic.db"
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_openai(sim), store=db, recorder=seen.append)
    assert client is not plain and isinstance(client, openai.OpenAI)

    _same(
        plain.chat.completions.create(model=model, messages=MESSAGES),
        client.chat.completions.create(model=model, messages=MESSAGES),
    )
    kwargs: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}
    expected = list(plain.chat.completions.create(model=model, messages=MESSAGES, **kwargs))
    with client.chat.completions.create(model=model, messages=MESSAGES, **kwargs) as stream:
        got = list(stream)
    assert len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        _same(a, b)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    assert raw.parse().usage is not None

    recorder_for(client).flush()
    assert [r.check for r in seen] == [CheckKind.INFERENCE, CheckKind.STREAM, CheckKind.INFERENCE]
    _check_truth(sim, seen[0], streamed=False)
    _check_truth(sim, seen[1], streamed=True)
    for r in seen:
        assert r.ok and r.target == f"openai/{model}" and r.attempts == 1
        assert r.cost_usd is not None and r.cost_usd > 0
        assert r.context_window and r.context_utilization is not None
    recorder_for(client).close()
    with SQLiteStore(db) as store:
        stored = store.latest_results(where=ResultFilter(target=f"openai/{model}"))
    assert {r.request_id for r in stored} == {r.request_id for r in seen}
    assert all(r.source is Source.TRAFFIC and r.cost_usd for r in stored)


async def test_anthropic_async_streams_and_store(sim: SimServer, tmp_path: Path) -> None:
    model = _catalogued(sim, "claude-haiku-4-5", ttft="100ms", tokens_per_s=150, output_tokens=10)
    plain = _anthropic(sim, anthropic.AsyncAnthropic)
    store = SQLiteStore(tmp_path / "a.db")
    client = llmpulse.instrument(
        _anthropic(sim, anthropic.AsyncAnthropic), store=store, target="claude-prod"
    )
    args: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": MESSAGES}

    _same(await plain.messages.create(**args), await client.messages.create(**args))
    expected = [e.type async for e in await plain.messages.create(**args, stream=True)]
    assert [e.type async for e in await client.messages.create(**args, stream=True)] == expected
    async with client.messages.stream(**args) as stream:
        text = "".join([t async for t in stream.text_stream])
    assert text

    assert recorder_for(client).flush()
    results = sorted(
        store.latest_results(where=ResultFilter(target="claude-prod")), key=lambda r: r.timestamp
    )
    assert [r.check for r in results] == [CheckKind.INFERENCE, CheckKind.STREAM, CheckKind.STREAM]
    _check_truth(sim, results[0], streamed=False)
    for r in results[1:]:
        _check_truth(sim, r, streamed=True)
    assert all(r.ok and r.cost_usd and r.provider == "anthropic" for r in results)
    recorder_for(client).close()
    store.close()


def test_anthropic_sync_stream_helper(sim: SimServer) -> None:
    model = sim_model(sim, ttft="80ms", tokens_per_s=300, output_tokens=8)
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_anthropic(sim), recorder=seen.append)
    with client.messages.stream(model=model, max_tokens=50, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 8
    recorder_for(client).flush()
    (r,) = seen
    _check_truth(sim, r, streamed=True)
    assert r.cost_usd is None and any("price catalogue" in w for w in r.warnings)


async def test_openai_async_stream(sim: SimServer) -> None:
    model = sim_model(sim, ttft="90ms", tokens_per_s=250, output_tokens=10)
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_openai(sim, openai.AsyncOpenAI), recorder=seen.append)
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None
    recorder_for(client).flush()
    _check_truth(sim, seen[0], streamed=True)


@pytest.mark.parametrize(
    ("provider", "kind", "exc_type", "error_class"),
    [
        ("openai", "429", openai.RateLimitError, ErrorClass.RATE_LIMITED),
        ("openai", "503", openai.InternalServerError, ErrorClass.UNAVAILABLE),
        ("anthropic", "529", anthropic.InternalServerError, ErrorClass.UNAVAILABLE),
        ("anthropic", "429", anthropic.RateLimitError, ErrorClass.RATE_LIMITED),
    ],
)
def test_errors_reraised_unchanged_and_classified(
    sim: SimServer, provider: str, kind: str, exc_type: type, error_class: ErrorClass
) -> None:
    model = sim_model(sim, errors={kind: 1.0}, retry_after="2s")
    seen: list[CheckResult] = []
    make = _openai if provider == "openai" else _anthropic
    plain, client = make(sim), llmpulse.instrument(make(sim), recorder=seen.append)

    def call(c: Any) -> Any:
        if provider == "openai":
            return c.chat.completions.create(model=model, messages=MESSAGES)
        return c.messages.create(model=model, max_tokens=10, messages=MESSAGES)

    with pytest.raises(exc_type) as expected:
        call(plain)
    with pytest.raises(exc_type) as got:
        call(client)
    assert got.value.status_code == expected.value.status_code
    assert type(got.value.body) is type(expected.value.body)  # type: ignore[attr-defined]
    assert _without_id(got.value.body) == _without_id(expected.value.body)  # type: ignore[attr-defined]
    recorder_for(client).flush()
    (r,) = seen
    assert not r.ok and r.error_class is error_class and r.http_status == int(kind)
    assert r.retry_after_s == 2.0
    assert ground_truth(sim, r.request_id or "")["status"] == int(kind)


def test_sdk_retries_are_attempts_of_one_call(sim: SimServer) -> None:
    model = sim_model(sim, errors={"503": 1.0}, retry_after="10ms")
    seen: list[CheckResult] = []
    client = openai.OpenAI(api_key="sk-sim", base_url=sim.openai_base, max_retries=2)
    llmpulse.instrument(client, recorder=seen.append)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=model, messages=MESSAGES)
    recorder_for(client).flush()
    (r,) = seen
    assert r.attempts == 3 and not r.ok and r.error_class is ErrorClass.UNAVAILABLE
    assert r.request_id == _arrivals(sim, model)[-1]["request_id"]  # the final attempt's


def _arrivals(sim: SimServer, model: str) -> list[dict[str, Any]]:
    rows = httpx.get(f"{sim.url}/_sim/requests", timeout=10).json()["requests"]
    return [r for r in rows if r["model"] == model]


def _recover_after_first_attempt(sim: SimServer, model: str) -> threading.Thread:
    """Clear ``model``'s errors once its first request arrived, while the SDK sits out the
    retry-after: the retry answers."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while not _arrivals(sim, model):
            assert time.monotonic() < deadline, "the first attempt never arrived"
            time.sleep(0.01)
        httpx.patch(f"{sim.url}/_sim/models/{model}", json={"errors": {}}, timeout=10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_call_the_sdk_retried_into_success_is_one_result(sim: SimServer) -> None:
    model = sim_model(sim, errors={"503": 1.0}, retry_after="3s", ttft="20ms", output_tokens=5)
    seen: list[CheckResult] = []
    client = openai.OpenAI(api_key="sk-sim", base_url=sim.openai_base, max_retries=2)
    llmpulse.instrument(client, recorder=seen.append)
    recovering = _recover_after_first_attempt(sim, model)
    answer = client.chat.completions.create(model=model, messages=MESSAGES)
    recovering.join(10)
    recorder_for(client).flush()
    (r,) = seen
    first, second = _arrivals(sim, model)
    assert first["status"] == 503 and r.request_id == second["request_id"] == answer._request_id
    assert r.ok and r.attempts == 2 and r.http_status == 200
    _check_truth(sim, r, streamed=False)
    assert r.latency_ms is not None and r.latency_ms < 3000  # not the SDK's 3 s wait


async def test_an_async_stream_the_sdk_retried_is_one_result(sim: SimServer) -> None:
    model = sim_model(sim, errors={"529": 1.0}, retry_after="3s", ttft="20ms", output_tokens=5)
    seen: list[CheckResult] = []
    client = llmpulse.instrument(
        anthropic.AsyncAnthropic(api_key="sk-sim", base_url=sim.anthropic_base, max_retries=2),
        recorder=seen.append,
    )
    recovering = _recover_after_first_attempt(sim, model)
    # A copy shares the tapped transport, and its calls are marked as calls too.
    copy = client.with_options(timeout=30)
    async with copy.messages.stream(model=model, max_tokens=50, messages=MESSAGES) as stream:
        text = "".join([t async for t in stream.text_stream])
    recovering.join(10)
    assert text
    assert recorder_for(client).flush()
    (r,) = seen
    assert r.ok and r.attempts == 2 and r.kind is CheckKind.STREAM
    _check_truth(sim, r, streamed=True)
    assert r.request_id == _arrivals(sim, model)[-1]["request_id"]


def test_connection_error_recorded(sim: SimServer) -> None:
    seen: list[CheckResult] = []
    client = openai.OpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0)
    llmpulse.instrument(client, recorder=seen.append, target="down")
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    recorder_for(client).flush()
    (r,) = seen
    assert r.target == "down" and r.error_class is ErrorClass.CONNECTION and r.http_status is None


def test_recorder_errors_never_break_the_call(sim: SimServer, caplog: Any) -> None:
    model = sim_model(sim, ttft="10ms", output_tokens=3)

    def broken(result: CheckResult) -> None:
        raise RuntimeError("recorder bug")

    client = llmpulse.instrument(_openai(sim), recorder=broken)
    assert client.chat.completions.create(model=model, messages=MESSAGES).choices
    recorder_for(client).flush()
    assert "recorder callback failed" in caplog.text


def test_other_requests_pass_through_unrecorded(sim: SimServer) -> None:
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_openai(sim), recorder=seen.append)
    assert client.models.list().data is not None
    recorder_for(client).flush()
    assert seen == []
    with pytest.raises(ValueError, match="already instrumented"):
        llmpulse.instrument(client)
    with pytest.raises(TypeError):
        llmpulse.instrument(object())


def test_stream_closed_early_is_recorded(sim: SimServer) -> None:
    model = sim_model(sim, ttft="20ms", tokens_per_s=100, output_tokens=30)
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_openai(sim), recorder=seen.append)
    with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as stream:
        next(c for c in stream if c.choices and c.choices[0].delta.content)
    recorder_for(client).flush()
    (r,) = seen
    assert r.ok and r.ttft_ms is not None
    assert "the caller closed the stream before its end" in r.warnings


def test_a_store_url_is_opened_as_the_store_it_names(
    sim: SimServer, store_location: str | Path, elsewhere: Path
) -> None:
    """A ``postgresql://`` URL (its search_path option naming the schema) is PostgreSQL, a
    ``sqlite:///`` URL its file: neither a SQLite file named after the URL."""
    model = sim_model(sim, ttft="5ms", output_tokens=3)
    client = llmpulse.instrument(_openai(sim), store=store_location)
    client.chat.completions.create(model=model, messages=MESSAGES)
    recorder = recorder_for(client)
    assert recorder.flush()
    with open_store(store_location) as store:
        (stored,) = store.latest_results(where=ResultFilter(target=f"openai/{model}"))
    assert stored.source is Source.TRAFFIC and stored.ok and stored.agent is None
    recorder.close()
    assert list(elsewhere.iterdir()) == []


def test_a_store_given_open_is_written_to_and_left_open(
    sim: SimServer, db_location: str | Path, elsewhere: Path
) -> None:
    model = sim_model(sim, ttft="5ms", output_tokens=3)
    with open_store(db_location) as store:
        client = llmpulse.instrument(_openai(sim), store=store)
        client.chat.completions.create(model=model, messages=MESSAGES)
        recorder_for(client).close()
        assert (
            len(store.latest_results(where=ResultFilter(target=f"openai/{model}"))) == 1
        )  # still open


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_that_refuses_has_the_results_spooled_said_once_and_replayed(
    sim: SimServer,
    backend: str,
    tmp_path: Path,
    elsewhere: Path,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import sqlite3

    model = sim_model(sim, ttft="5ms", output_tokens=3)
    if backend == "sqlite":
        location: str | Path = tmp_path / "traffic.db"
        blocker = sqlite3.connect(location, isolation_level=None)

        def away() -> None:
            blocker.execute("BEGIN EXCLUSIVE")  # every write fails after the 5 s busy timeout

        def back() -> None:
            blocker.execute("COMMIT")
            blocker.close()
    else:
        server: pgserver.PrivateServer = request.getfixturevalue("private_postgres")
        location, away, back = server.url, server.stop, server.start
    client = llmpulse.instrument(_openai(sim), store=location)
    recorder = recorder_for(client)
    assert recorder.recording is not None
    spool = recorder.recording.writer.spool
    client.chat.completions.create(model=model, messages=MESSAGES)
    assert recorder.flush() and len(spool) == 0  # the store took it
    away()
    try:
        for _ in range(2):
            client.chat.completions.create(model=model, messages=MESSAGES)
        assert recorder.flush()
        assert len(spool) == 2  # on local disk: a kill now would lose neither
    finally:
        back()
    # Replayed once the store answers: SQLite at once, PostgreSQL once its pool reconnects.
    deadline = time.monotonic() + 30
    while len(spool):
        assert time.monotonic() < deadline, "the spool was not replayed"
        assert recorder.flush()
    recorder.close()
    with open_store(location) as store:
        assert len(store.latest_results(where=ResultFilter(target=f"openai/{model}"))) == 3
    said = [r.getMessage() for r in caplog.records if r.thread == recorder.recording._writer.ident]
    assert len(said) == 2 and said[0].startswith("results database unwritable (results: "), said
    assert said[1] == "results database writable again"


def test_a_refusal_is_content_filter_as_probes_and_the_gateway_measure_it(sim: SimServer) -> None:
    model = sim_model(sim, errors={"refusal": 1.0}, ttft="5ms", output_tokens=4)
    seen: list[CheckResult] = []
    client = llmpulse.instrument(_openai(sim), recorder=seen.append)
    answer = client.chat.completions.create(model=model, messages=MESSAGES)
    assert answer.choices[0].message.refusal and answer.choices[0].message.content is None
    with client.chat.completions.create(model=model, messages=MESSAGES, stream=True) as stream:
        assert "".join(c.choices[0].delta.refusal or "" for c in stream if c.choices)
    recorder_for(client).close()
    assert [(r.check, r.ok, r.error_class, r.error_message) for r in seen] == [
        (CheckKind.INFERENCE, False, ErrorClass.CONTENT_FILTER, REFUSED),
        (CheckKind.STREAM, False, ErrorClass.CONTENT_FILTER, REFUSED),
    ]
    assert seen[1].ttft_ms is not None  # the refusal is the answer: its first token is timed
