"""AWS Bedrock: the Converse protocol, SigV4 from the standard chain, the event-stream decoder,
and probes against the simulator over loopback (every request really signed and verified)."""

from __future__ import annotations

import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from botocore.eventstream import EventStreamBuffer
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.serialize import create_serializer
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.config import ConfigError, parse_config
from llmpulse.config.probes import CONVERSE_FIELDS, canary_probe
from llmpulse.errors import ErrorClass
from llmpulse.probe.runner import run_checks
from llmpulse.providers import PROTOCOLS, bedrock
from llmpulse.providers.base import CredentialsError, ProtocolError
from llmpulse.providers.bedrock import (
    CredentialCache,
    EventStreamDecoder,
    control_url,
    error_type,
    model_path,
)
from llmpulse.result import CheckKind
from llmpulse.sim import bedrock as simbedrock
from llmpulse.sim.server import SimServer
from llmpulse.sse import SSEEvent

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOVA = "amazon.nova-micro-v1:0"
PROFILE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The standard chain with the simulator's keys in the environment, and nothing else of
    the machine's (no shared files, no instance metadata)."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return {"AWS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def bsim() -> Any:
    server = SimServer()
    server.start()
    for name in (NOVA, PROFILE):
        httpx.patch(f"{server.url}/_sim/models/{name}", json={"ttft": "20ms"}).raise_for_status()
    yield server
    server.stop()


def model(sim: SimServer, name: str, **behavior: Any) -> str:
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10).raise_for_status()
    return name


def target(sim: SimServer, name: str, env: dict[str, str], **extra: Any) -> Any:
    raw = {"provider": "bedrock", "model": name, "base_url": sim.bedrock_base, **extra}
    return parse_config({"targets": [raw]}, env=env).targets[0]


async def check(t: Any, kind: CheckKind) -> Any:
    (result,) = await run_checks([t], [kind])
    return result


# --- the wire: model ids, endpoints, error types ----------------------------------------------


def _botocore_path(model_id: str) -> str:
    loader = Loader()
    service = ServiceModel(loader.load_service_model("bedrock-runtime", "service-2"))
    operation = service.operation_model("Converse")
    serialized = create_serializer("rest-json").serialize_to_request(
        {"modelId": model_id, "messages": []}, operation
    )
    return str(serialized["url_path"])


@pytest.mark.parametrize(
    "model_id",
    [
        NOVA,
        PROFILE,
        "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3 d~",
    ],
)
def test_model_ids_are_encoded_as_botocore_encodes_them(model_id: str) -> None:
    assert f"/model/{model_path(model_id)}/converse" == _botocore_path(model_id)


@pytest.mark.parametrize(
    ("model_id", "path"),
    [
        (NOVA, "/foundation-models"),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
            "/foundation-models",
        ),
        (PROFILE, "/inference-profiles?maxResults=1000"),
        (
            "arn:aws:bedrock:us-east-1:1:application-inference-profile/abc",
            "/inference-profiles?maxResults=1000&typeEquals=APPLICATION",
        ),
    ],
)
def test_the_models_check_asks_the_list_holding_the_model(model_id: str, path: str) -> None:
    t = parse_config(
        {"targets": [{"provider": "bedrock", "model": model_id, "region": "us-east-1"}]}, env={}
    ).targets[0]
    spec = PROTOCOLS["bedrock"].models_request(t)
    assert spec.url == f"https://bedrock.us-east-1.amazonaws.com{path}"


def test_control_plane_beside_the_runtime_endpoint() -> None:
    assert control_url("https://bedrock-runtime.eu-west-1.amazonaws.com") == (
        "https://bedrock.eu-west-1.amazonaws.com"
    )
    assert control_url("http://127.0.0.1:9/bedrock") == "http://127.0.0.1:9/bedrock"


def test_error_type_as_botocore_reads_it() -> None:
    assert error_type("ThrottlingException:http://internal.amazon.com/coral/x/") == (
        "ThrottlingException"
    )
    assert error_type("com.amazon.coral.service#UnrecognizedClientException") == (
        "UnrecognizedClientException"
    )
    assert error_type("") is None


@pytest.mark.parametrize(
    ("status", "etype", "message", "expected"),
    [
        (429, "ThrottlingException", "Too many requests", ErrorClass.RATE_LIMITED),
        (429, "ModelNotReadyException", "Model is not ready", ErrorClass.UNAVAILABLE),
        (400, "ServiceQuotaExceededException", "exceeds the service quota", ErrorClass.QUOTA),
        (503, "ServiceUnavailableException", "unable to process", ErrorClass.UNAVAILABLE),
        (408, "ModelTimeoutException", "timed out", ErrorClass.TIMEOUT),
        (403, "AccessDeniedException", "no access", ErrorClass.AUTH),
        (403, "UnrecognizedClientException", "invalid token", ErrorClass.AUTH),
        (400, "ExpiredTokenException", "The security token included has expired", ErrorClass.AUTH),
        (400, "ValidationException", "Malformed input request", ErrorClass.BAD_REQUEST),
        (
            400,
            "ValidationException",
            "Input is too long for requested model.",
            ErrorClass.CONTEXT_LENGTH,
        ),
        (404, "ResourceNotFoundException", "Model not found", ErrorClass.BAD_REQUEST),
        (424, "ModelErrorException", "The model failed", ErrorClass.SERVER_ERROR),
        (500, "InternalServerException", "internal error", ErrorClass.SERVER_ERROR),
    ],
)
def test_http_errors_are_classified_by_type(
    status: int, etype: str, message: str, expected: ErrorClass
) -> None:
    body = json.dumps({"message": message}).encode()
    error = PROTOCOLS["bedrock"].parse_error(
        status, body, {"x-amzn-errortype": f"{etype}:http://internal.amazon.com/coral/"}
    )
    assert error.error_class is expected
    assert etype in error.message and message in error.message


@pytest.mark.parametrize(
    ("etype", "expected"),
    [
        ("throttlingException", ErrorClass.RATE_LIMITED),
        ("serviceUnavailableException", ErrorClass.UNAVAILABLE),
        ("modelStreamErrorException", ErrorClass.SERVER_ERROR),
        ("internalServerException", ErrorClass.SERVER_ERROR),
        ("validationException", ErrorClass.BAD_REQUEST),
        ("modelTimeoutException", ErrorClass.TIMEOUT),
    ],
)
def test_stream_exceptions_are_classified(etype: str, expected: ErrorClass) -> None:
    (event,) = EventStreamDecoder().feed(simbedrock.exception(etype, "it went wrong"))
    assert event.event == "exception"
    update = PROTOCOLS["bedrock"].stream_parser().feed(event)
    assert update.error is not None and update.error.error_class is expected


# --- the event-stream decoder -------------------------------------------------------------------

_kind = st.sampled_from(
    ["messageStart", "contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]
)
_payload = st.dictionaries(st.text(max_size=8), st.text(max_size=30), max_size=4)


def _feed_split(data: bytes, cuts: list[int], decoder: EventStreamDecoder) -> list[SSEEvent]:
    events = []
    last = 0
    for pos in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        events += decoder.feed(data[last:pos])
        last = pos
    return events


@given(
    st.lists(st.tuples(_kind, _payload), max_size=8),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_any_chunking_yields_the_same_events(
    messages: list[tuple[str, dict[str, str]]], cuts: list[int]
) -> None:
    data = b"".join(
        simbedrock.frame(
            {":event-type": k, ":content-type": "application/json", ":message-type": "event"},
            json.dumps(p).encode(),
        )
        for k, p in messages
    )
    decoder = EventStreamDecoder()
    got = _feed_split(data, cuts, decoder)
    assert [(e.event, json.loads(e.data)) for e in got] == messages
    assert decoder.close() is False


def test_the_simulators_frames_are_what_botocore_reads() -> None:
    data = simbedrock.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}})
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    (message,) = list(buffer)
    assert message.headers[":event-type"] == "contentBlockDelta"
    assert json.loads(message.payload)["delta"] == {"text": "hi"}


@given(st.binary(max_size=2000), st.lists(st.integers(0, 5000), max_size=10))
@settings(max_examples=300)
def test_garbage_never_crashes(data: bytes, cuts: list[int]) -> None:
    decoder = EventStreamDecoder(max_message_bytes=512)
    try:
        _feed_split(data, cuts, decoder)
    except ProtocolError:
        return
    decoder.close()


@given(st.integers(0, 200), st.integers(0, 31))
def test_a_flipped_bit_is_a_protocol_error(position: int, bit: int) -> None:
    data = bytearray(simbedrock.event("messageStop", {"stopReason": "end_turn"}))
    data[position % len(data)] ^= 1 << (bit % 8)
    decoder = EventStreamDecoder()
    try:
        events = decoder.feed(bytes(data))
    except ProtocolError:
        return
    # A flipped length can only leave the message incomplete, never yield a corrupt event.
    assert events == [] and decoder.close() is True


def test_an_oversized_message_is_refused_before_it_is_buffered() -> None:
    decoder = EventStreamDecoder(max_message_bytes=1024)
    with pytest.raises(ProtocolError, match="exceeds 1024"):
        decoder.feed(struct.pack(">II", 1 << 30, 0))


def test_a_wrong_crc_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="malformed event-stream"):
        EventStreamDecoder().feed(simbedrock.MALFORMED)
    good = simbedrock.event("messageStop", {})
    bad_prelude = good[:8] + struct.pack(">I", zlib.crc32(good[:8]) ^ 1) + good[12:]
    with pytest.raises(ProtocolError):
        EventStreamDecoder().feed(bad_prelude)


def test_an_error_message_becomes_an_exception_event() -> None:
    headers = {
        ":message-type": "error",
        ":error-code": "InternalFailure",
        ":error-message": "x",
    }
    (event,) = EventStreamDecoder().feed(simbedrock.frame(headers, b""))
    assert event.event == "exception"
    assert json.loads(event.data) == {"__type": "InternalFailure", "message": "x"}


# --- probes against the simulator, signed ---------------------------------------------------------


@pytest.mark.parametrize("name", [NOVA, PROFILE])
async def test_every_check_passes_signed_with_the_standard_chain(
    bsim: SimServer, aws_env: dict[str, str], name: str
) -> None:
    t = target(bsim, name, aws_env)
    results = await run_checks([t])
    assert [r.ok for r in results] == [True, True, True], [r.error_message for r in results]
    models, inference, stream = results
    assert models.model_listed is True
    assert inference.request_id and inference.request_id.startswith("req_")
    assert stream.ttft_ms is not None and stream.ttft_ms >= 20
    assert stream.usage.output_tokens == 16 and not stream.usage.estimated
    assert stream.cost_usd is not None and stream.cost_usd > 0  # genai-prices' "aws" provider
    assert stream.context_window and stream.context_window >= 128000


async def test_an_inference_profile_arn_is_served_and_listed(
    bsim: SimServer, aws_env: dict[str, str]
) -> None:
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}"
    results = await run_checks([target(bsim, arn, aws_env)])
    assert [r.ok for r in results] == [True, True, True], [r.error_message for r in results]
    assert results[0].model_listed is True


async def test_a_model_not_listed_is_said(bsim: SimServer, aws_env: dict[str, str]) -> None:
    name = model(bsim, "amazon.nova-retired-v1:0", listed=False)
    result = await check(target(bsim, name, aws_env), CheckKind.MODELS)
    assert result.ok and result.model_listed is False


async def test_a_wrong_secret_fails_the_signature_and_says_no_secret(
    bsim: SimServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all-0123456789")
    result = await check(target(bsim, NOVA, aws_env), CheckKind.INFERENCE)
    assert result.error_class is ErrorClass.AUTH
    assert "InvalidSignatureException" in (result.error_message or "")
    assert "not-the-secret" not in (result.error_message or "")


async def test_an_unknown_key_id_is_auth(
    bsim: SimServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
    result = await check(target(bsim, NOVA, aws_env), CheckKind.MODELS)
    assert result.error_class is ErrorClass.AUTH
    assert "UnrecognizedClientException" in (result.error_message or "")


async def test_a_session_token_is_signed(
    bsim: SimServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLETOKEN")
    result = await check(target(bsim, NOVA, aws_env), CheckKind.STREAM)
    assert result.ok, result.error_message


async def test_no_credentials_is_auth_naming_what_to_set(
    bsim: SimServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    seen = httpx.get(f"{bsim.url}/_sim/requests").json()["last_seq"]
    result = await check(target(bsim, NOVA, aws_env), CheckKind.INFERENCE)
    assert result.error_class is ErrorClass.AUTH
    assert "AWS_ACCESS_KEY_ID" in (result.error_message or "")
    assert httpx.get(f"{bsim.url}/_sim/requests").json()["last_seq"] == seen  # nothing sent


async def test_a_named_profile_and_refreshing_credentials(
    bsim: SimServer, aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile whose credential_process hands out credentials that expire at once: botocore
    refreshes them (in a thread) before each signature, and every request verifies."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    calls = tmp_path / "calls"
    script = tmp_path / "creds.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"p = pathlib.Path({str(calls)!r}); p.write_text(str(int(p.read_text() or 0) + 1)"
        " if p.exists() else '1')\n"
        "soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)\n"
        f"print(json.dumps({{'Version': 1, 'AccessKeyId': {KEY_ID!r}, "
        f"'SecretAccessKey': {SECRET!r}, 'Expiration': soon.isoformat()}}))\n"
    )
    (tmp_path / "config").write_text(
        f"[profile sim]\ncredential_process = {sys.executable} {script}\n"
    )
    t = target(bsim, NOVA, aws_env, aws_profile="sim")
    first = await check(t, CheckKind.INFERENCE)
    second = await check(t, CheckKind.INFERENCE)
    assert first.ok and second.ok, (first.error_message, second.error_message)
    # 30 s left is inside botocore's mandatory refresh window: each use refreshed them.
    assert int(calls.read_text()) >= 2


async def test_an_unknown_profile_is_auth(bsim: SimServer, aws_env: dict[str, str]) -> None:
    result = await check(target(bsim, NOVA, aws_env, aws_profile="nope"), CheckKind.MODELS)
    assert result.error_class is ErrorClass.AUTH
    assert "nope" in (result.error_message or "")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("429", ErrorClass.RATE_LIMITED),
        ("model_not_ready", ErrorClass.UNAVAILABLE),
        ("503", ErrorClass.UNAVAILABLE),
        ("408", ErrorClass.TIMEOUT),
        ("403", ErrorClass.AUTH),
        ("context_length", ErrorClass.CONTEXT_LENGTH),
        ("insufficient_quota", ErrorClass.QUOTA),
        ("500", ErrorClass.SERVER_ERROR),
        ("400", ErrorClass.BAD_REQUEST),
    ],
)
async def test_simulated_errors_are_classified(
    bsim: SimServer, aws_env: dict[str, str], kind: str, expected: ErrorClass
) -> None:
    name = model(bsim, f"amazon.err-{kind}-v1:0", errors={kind: 1.0})
    for check_kind in (CheckKind.INFERENCE, CheckKind.STREAM):
        result = await check(target(bsim, name, aws_env), check_kind)
        assert result.error_class is expected, result.error_message
        assert result.request_id


@pytest.mark.parametrize(
    ("fault", "expected", "says"),
    [
        ("error_event", ErrorClass.UNAVAILABLE, "serviceUnavailableException"),
        ("malformed", ErrorClass.PROTOCOL, "malformed event-stream"),
        ("no_terminal", ErrorClass.PROTOCOL, "without metadata"),
        ("huge_body", ErrorClass.PROTOCOL, "exceeds"),
    ],
)
async def test_stream_faults_are_classified(
    bsim: SimServer, aws_env: dict[str, str], fault: str, expected: ErrorClass, says: str
) -> None:
    name = model(bsim, f"amazon.fault-{fault}-v1:0", fault=fault, ttft="10ms")
    result = await check(target(bsim, name, aws_env), CheckKind.STREAM)
    assert result.error_class is expected
    assert says in (result.error_message or "")


async def test_the_request_as_sent(bsim: SimServer, aws_env: dict[str, str]) -> None:
    t = target(bsim, NOVA, aws_env)
    spec = PROTOCOLS["bedrock"].completion_request(
        t, messages=[{"role": "user", "content": "x"}], params={}, max_tokens=8, stream=True
    )
    assert spec.url.endswith("/model/amazon.nova-micro-v1%3A0/converse-stream")
    assert spec.json == {
        "messages": [{"role": "user", "content": [{"text": "x"}]}],
        "inferenceConfig": {"maxTokens": 8},
    }
    # A custom probe's conversation and params (the canary's temperature) in Converse's shape.
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "17 x 23?"},
        {"role": "assistant", "content": "391"},
        {"role": "user", "content": "sure?"},
    ]
    canary = canary_probe("bedrock")
    spec = PROTOCOLS["bedrock"].completion_request(
        t, messages=messages, params=canary.params, max_tokens=8, stream=False
    )
    assert spec.url.endswith("/converse")
    assert spec.json == {
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": "17 x 23?"}]},
            {"role": "assistant", "content": [{"text": "391"}]},
            {"role": "user", "content": [{"text": "sure?"}]},
        ],
        "inferenceConfig": {"maxTokens": 8, "temperature": 0},
    }


def test_region_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = {"targets": [{"provider": "bedrock"}]}
    with pytest.raises(ConfigError, match=r"targets\[0\]\.region: not set.*AWS_REGION"):
        parse_config(raw, env={})
    t = parse_config(raw, env={"AWS_DEFAULT_REGION": "eu-central-1"}).targets[0]
    assert t.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert t.region == "eu-central-1" and t.model == NOVA and t.price_provider == "aws"
    t = parse_config(
        {"targets": [{"provider": "bedrock", "region": "us-west-2"}]},
        env={"AWS_REGION": "eu-central-1"},
    ).targets[0]
    assert t.region == "us-west-2"
    with pytest.raises(ConfigError, match="region"):
        parse_config({"targets": [{"provider": "openai", "region": "us-west-2"}]}, env={})


async def test_a_failure_to_find_credentials_is_kept_a_while(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential_process that fails is asked once; the next checks fail at once with the
    same message instead of waiting on the chain again."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    calls = tmp_path / "calls"
    script = tmp_path / "fail.py"
    script.write_text(
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(calls)!r}); p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "sys.exit('no credentials here')\n"
    )
    (tmp_path / "config").write_text(
        f"[profile broken]\ncredential_process = {sys.executable} {script}\n"
    )
    cache = CredentialCache()
    for _ in range(3):
        with pytest.raises(CredentialsError, match="AWS credentials could not be loaded"):
            await cache.get({"profile": "broken"})
    assert calls.read_text() == "x"


async def test_token_counts_from_the_bedrock_headers_when_the_body_has_none(
    aws_env: dict[str, str],
) -> None:
    """An answer without ``usage`` (a proxy that strips it, InvokeModel's shape) is counted
    from the ``x-amzn-bedrock-*-token-count`` headers, cache reads and writes in the input."""
    body = {"output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
            "stopReason": "end_turn"}  # fmt: skip
    counts = {"x-amzn-bedrock-input-token-count": "12", "x-amzn-bedrock-output-token-count": "3",
              "x-amzn-bedrock-cache-read-input-token-count": "100",
              "x-amzn-bedrock-invocation-latency": "250"}  # fmt: skip
    seen: list[str] = []

    async def converse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("authorization", ""))
        return web.json_response(body, headers=counts)

    app = web.Application()
    app.router.add_post("/model/{model}/converse", converse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        raw = {"provider": "bedrock", "model": NOVA, "base_url": f"http://127.0.0.1:{port}",
               "region": "us-east-1"}  # fmt: skip
        t = parse_config({"targets": [raw]}, env=aws_env).targets[0]
        result = await check(t, CheckKind.INFERENCE)
    finally:
        await runner.cleanup()
    assert result.ok, result.error_message
    assert seen and seen[0].startswith("AWS4-HMAC-SHA256 Credential=")
    u = result.usage
    assert (u.input_tokens, u.output_tokens, u.cached_tokens) == (112, 3, 100)
    assert not u.estimated and result.cost_usd is not None
    assert not any("estimated" in w for w in result.warnings)


def test_token_count_headers_that_are_not_numbers_are_not_read() -> None:
    """Header values come from whoever answered: "²" is a digit to str.isdigit, not to int."""
    protocol = PROTOCOLS["bedrock"]
    for value in ("²", "３", "-1", "1e3", "9" * 13):
        headers = {"x-amzn-bedrock-input-token-count": value,
                   "x-amzn-bedrock-output-token-count": value}  # fmt: skip
        assert protocol.usage_from_headers(headers) is None
    usage = protocol.usage_from_headers({"x-amzn-bedrock-output-token-count": "7"})
    assert usage is not None and usage.output_tokens == 7


def test_the_config_knows_every_field_of_converse() -> None:
    """The probe params the config lets through are ConverseRequest's members, as botocore's
    service model has them (modelId is the URL's)."""
    for operation in ("Converse", "ConverseStream"):
        shape = (
            ServiceModel(Loader().load_service_model("bedrock-runtime", "service-2"))
            .operation_model(operation)
            .input_shape
        )
        assert set(shape.members) - {"modelId"} == CONVERSE_FIELDS


async def test_a_rotated_session_token_in_the_shared_file_is_read_again(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed credentials from a profile are what the file said when read: once its session
    token expires and a tool writes the next one there, it is read again (after a while), not
    used expired until a restart."""

    def write(token: str) -> None:
        (tmp_path / "credentials").write_text(
            f"[rot]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
            f"aws_session_token = {token}\n"
        )

    write("FwoGZXIvYXdzTOKENONE")
    cache = CredentialCache()
    assert (await cache.get({"profile": "rot"})).token == "FwoGZXIvYXdzTOKENONE"
    write("FwoGZXIvYXdzTOKENTWO")
    assert (await cache.get({"profile": "rot"})).token == "FwoGZXIvYXdzTOKENONE"  # kept a while
    monkeypatch.setattr(bedrock, "REREAD_FIXED_S", 0.0, raising=False)
    assert (await cache.get({"profile": "rot"})).token == "FwoGZXIvYXdzTOKENTWO"


async def test_a_probes_consecutive_messages_of_one_role_are_one_turn(
    bsim: SimServer, aws_env: dict[str, str]
) -> None:
    """Converse wants user and assistant turns to alternate; a probe's two user messages (or
    two around a system one) are one user turn of two text blocks, as LiteLLM merges them."""
    messages = [
        {"role": "user", "content": "context: a city list"},
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "the capital of France?"},
    ]
    probe = {"name": "two-users", "kind": "inference", "messages": messages}
    t = target(bsim, NOVA, aws_env, checks=[], probes=[probe])
    (result,) = await run_checks([t], ["two-users"])
    assert result.ok, result.error_message
    spec = PROTOCOLS["bedrock"].completion_request(
        t, messages=messages, params={}, max_tokens=8, stream=False
    )
    assert spec.json is not None and spec.json["messages"] == [
        {"role": "user",
         "content": [{"text": "context: a city list"}, {"text": "the capital of France?"}]},
    ]  # fmt: skip


def test_a_model_arn_names_the_targets_region() -> None:
    arn = "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.amazon.nova-micro-v1:0"
    env = {"AWS_REGION": "us-east-1"}
    (t,) = parse_config({"targets": [{"provider": "bedrock", "model": arn}]}, env=env).targets
    assert (
        t.region == "eu-west-1" and t.base_url == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    )
    raw = {"provider": "bedrock", "model": arn, "region": "eu-central-1"}
    assert parse_config({"targets": [raw]}, env=env).targets[0].region == "eu-central-1"
    # An id that is no ARN: the environment's.
    assert (
        parse_config({"targets": [{"provider": "bedrock", "model": NOVA}]}, env=env)
        .targets[0]
        .region
        == "us-east-1"
    )


async def test_a_session_token_an_upstream_echoes_is_not_kept(
    bsim: SimServer, aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain's session token is in no config, so no redactor knows it; Bedrock quotes it
    back (its signature errors list the signed headers' values), and so may a proxy."""
    token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIHx+Zm9v/YmFy=="
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)
    name = model(bsim, "amazon.nova-echo-v1:0", errors={"400": 1.0}, echo_credentials=True)
    result = await check(target(bsim, name, aws_env), CheckKind.INFERENCE)
    assert result.error_class is ErrorClass.BAD_REQUEST
    assert "x-amz-security-token" in (result.error_message or "")
    assert "IQoJb3JpZ2lu" not in json.dumps(result.to_json())
