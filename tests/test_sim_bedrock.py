"""The simulated Bedrock as AWS's own SDK sees it: botocore's clients (bedrock-runtime and
bedrock) call it over loopback, sign with SigV4, and parse its answers, event streams and
errors with their own code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import botocore.session
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError

from llmpulse.sim.server import SimServer

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
NOVA = "amazon.nova-micro-v1:0"
PROFILE = "us.amazon.nova-lite-v1:0"


@pytest.fixture(scope="module")
def bsim() -> Iterator[SimServer]:
    with SimServer() as server:
        for name in (NOVA, PROFILE):
            behavior = {"ttft": "10ms", "tokens_per_s": 2000, "cached_tokens": 2}
            httpx.patch(f"{server.url}/_sim/models/{name}", json=behavior).raise_for_status()
        yield server


def client(sim: SimServer, service: str = "bedrock-runtime", secret: str = SECRET) -> Any:
    return botocore.session.get_session().create_client(
        service,
        region_name="us-east-1",
        endpoint_url=sim.bedrock_base,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def model(sim: SimServer, name: str, **behavior: Any) -> str:
    httpx.patch(f"{sim.url}/_sim/models/{name}", json=behavior, timeout=10).raise_for_status()
    return name


MESSAGES = [{"role": "user", "content": [{"text": "hello there"}]}]


def test_converse_as_the_sdk_reads_it(bsim: SimServer) -> None:
    answer = client(bsim).converse(
        modelId=NOVA, messages=MESSAGES, inferenceConfig={"maxTokens": 5}
    )
    assert answer["stopReason"] == "max_tokens"
    assert answer["output"]["message"]["content"][0]["text"].startswith("Hello")
    assert answer["usage"]["outputTokens"] == 5
    assert answer["usage"]["cacheReadInputTokens"] == 2
    assert answer["ResponseMetadata"]["RequestId"].startswith("req_")


def test_converse_stream_as_the_sdk_reads_it(bsim: SimServer) -> None:
    stream = client(bsim).converse_stream(modelId=PROFILE, messages=MESSAGES)["stream"]
    events = list(stream)
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-3:] == [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    assert len(text.split()) == 16
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 16


def test_an_arn_names_its_model(bsim: SimServer) -> None:
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{PROFILE}"
    answer = client(bsim).converse(modelId=arn, messages=MESSAGES)
    assert answer["stopReason"] == "end_turn"


def test_the_model_lists(bsim: SimServer) -> None:
    control = client(bsim, "bedrock")
    models = control.list_foundation_models()["modelSummaries"]
    assert NOVA in {m["modelId"] for m in models}
    assert PROFILE not in {m["modelId"] for m in models}
    profiles = control.list_inference_profiles()["inferenceProfileSummaries"]
    assert PROFILE in {p["inferenceProfileId"] for p in profiles}


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        ("429", "ThrottlingException", 429),
        ("model_not_ready", "ModelNotReadyException", 429),
        ("503", "ServiceUnavailableException", 503),
        ("408", "ModelTimeoutException", 408),
        ("context_length", "ValidationException", 400),
        ("insufficient_quota", "ServiceQuotaExceededException", 400),
        ("403", "AccessDeniedException", 403),
    ],
)
def test_errors_as_the_sdk_reads_them(bsim: SimServer, kind: str, code: str, status: int) -> None:
    name = model(bsim, f"amazon.sdk-{kind}-v1:0", errors={kind: 1.0})
    with pytest.raises(ClientError) as info:
        client(bsim).converse(modelId=name, messages=MESSAGES)
    error = info.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status


def test_a_wrong_secret_is_refused_as_aws_refuses_it(bsim: SimServer) -> None:
    with pytest.raises(ClientError) as info:
        client(bsim, secret="not-the-secret").converse(modelId=NOVA, messages=MESSAGES)
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"
    unsigned = httpx.post(f"{bsim.bedrock_base}/model/{NOVA}/converse", json={"messages": MESSAGES})
    assert unsigned.status_code == 403
    assert unsigned.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_a_stream_exception_as_the_sdk_reads_it(bsim: SimServer) -> None:
    name = model(bsim, "amazon.sdk-midstream-v1:0", fault="error_event", ttft="5ms")
    stream = client(bsim).converse_stream(modelId=name, messages=MESSAGES)["stream"]
    with pytest.raises(EventStreamError) as info:
        list(stream)
    assert info.value.response["Error"]["Code"] == "serviceUnavailableException"
