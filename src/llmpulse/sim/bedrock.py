"""AWS Bedrock's Converse API (bedrock-runtime 2023-09-30) and its control plane's model lists.

Errors are rest-json as AWS sends them: ``{"message": ...}`` with the type in
``x-amzn-ErrorType``. Streams are AWS event-stream messages, each with ``:event-type``,
``:content-type`` and ``:message-type`` headers and a JSON payload padded with ``p`` (Bedrock
pads events so their sizes do not give the tokens away). Requests must carry a SigV4 signature,
verified with botocore's own signer (``verify``).
"""

from __future__ import annotations

import hmac
import itertools
import re
import struct
import zlib
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from llmpulse.sim.common import TOKENS_JSON, Limit, Plan, dumps, text_of, token_index

STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
ERROR_TYPE_KEY = "x-amzn-ErrorType"  # carried out of the body into the header by the server
# Geographic prefixes of cross-region inference profiles: listed as profiles, not models.
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "jp.", "au.", "ca.", "global.")
FINISH = {
    "stop": "end_turn",
    "length": "max_tokens",
    "content_filter": "content_filtered",
    "tool_calls": "tool_use",
}
_UNAVAILABLE = "Bedrock is unable to process your request."
_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
# kind -> (status, error type, message)
_ERRORS: dict[str, tuple[int, str, str]] = {
    "400": (400, "ValidationException", "Malformed input request, please reformat your input."),
    "401": (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    ),
    "403": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "404": (404, "ResourceNotFoundException", "Model not found: {model}"),
    "408": (
        408,
        "ModelTimeoutException",
        "Model has timed out in processing the request. Try your request again.",
    ),
    "413": (400, "ValidationException", "Input is too long for requested model."),
    "422": (400, "ValidationException", "Malformed input request, please reformat your input."),
    "429": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "500": (
        500,
        "InternalServerException",
        "The server encountered an internal error while processing the request.",
    ),
    "502": (503, "ServiceUnavailableException", _UNAVAILABLE),
    "503": (503, "ServiceUnavailableException", _UNAVAILABLE),
    "504": (
        408,
        "ModelTimeoutException",
        "Model has timed out in processing the request. Try your request again.",
    ),
    "529": (503, "ServiceUnavailableException", _UNAVAILABLE),
    "overloaded": (503, "ServiceUnavailableException", _UNAVAILABLE),
    "model_not_ready": (
        429,
        "ModelNotReadyException",
        "Model is not ready to serve inference requests. Try again later.",
    ),
    "insufficient_quota": (
        400,
        "ServiceQuotaExceededException",
        "Your request exceeds the service quota for your account. You can view your quotas at "
        "Viewing service quotas. You can resubmit your request later.",
    ),
    "context_length": (400, "ValidationException", "Input is too long for requested model."),
    "content_policy": (
        400,
        "ValidationException",
        "The request was blocked by the model provider's content_filter.",
    ),
    "not_found": (400, "ValidationException", "The provided model identifier is invalid."),
    "signature": (403, "InvalidSignatureException", _SIGNATURE),
    "missing_auth": (403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
}
_ERRORS["auth"] = _ERRORS["401"]

# --- SigV4 -----------------------------------------------------------------------------------

_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;_.-]+),\s*"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


def verify(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: dict[str, str],
) -> tuple[str | None, str, str]:
    """Check a request's SigV4 signature as Bedrock does: (error kind or None, key id, region).

    ``url`` is the request's as received (its path still percent-encoded); the signature is
    recomputed by botocore's ``SigV4Auth`` from the headers the request says it signed."""
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None or "x-amz-date" not in headers:
        return "missing_auth", "", ""
    key, region = match["key"], match["region"]
    secret = credentials.get(key)
    if secret is None:
        return "auth", key, region
    stamp = headers["x-amz-date"]
    if match["service"] != "bedrock" or not stamp.startswith(match["date"]):
        return "signature", key, region
    signed = match["signed"].split(";")
    if any(name not in headers for name in signed):
        return "signature", key, region
    request = AWSRequest(method=method, url=url, data=body, headers={n: headers[n] for n in signed})
    request.context["timestamp"] = stamp
    signer = SigV4Auth(
        Credentials(key, secret, headers.get("x-amz-security-token")), "bedrock", region
    )
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    ok = hmac.compare_digest(expected, match["signature"])
    return (None if ok else "signature"), key, region


# --- event-stream encoding -------------------------------------------------------------------


def encode_headers(headers: dict[str, str]) -> bytes:
    """Event-stream headers, every value a string (type 7)."""
    raw = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    return raw


def frame(headers: dict[str, str] | bytes, payload: bytes) -> bytes:
    """One event-stream message: prelude (total length, headers length, CRC32), headers,
    payload, message CRC32. Hand-written: botocore only decodes event streams."""
    raw = headers if isinstance(headers, bytes) else encode_headers(headers)
    prelude = struct.pack(">II", 12 + len(raw) + len(payload) + 4, len(raw))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw + payload
    return message + struct.pack(">I", zlib.crc32(message))


_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
_EVENT_HEADERS: dict[str, bytes] = {}  # by event type: the same three headers every time


def _event_headers(kind: str) -> bytes:
    raw = _EVENT_HEADERS.get(kind)
    if raw is None:
        raw = _EVENT_HEADERS[kind] = encode_headers(
            {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
        )
    return raw


def event(kind: str, obj: dict[str, Any]) -> bytes:
    text = dumps(obj)
    # Bedrock's padding: "p" of a varying length, so event sizes do not give the tokens away.
    body = text[:-1] + (',"p":"' if len(text) > 2 else '"p":"') + _PAD[: 1 + len(text) % 52] + '"}'
    return frame(_event_headers(kind), body.encode())


def exception(kind: str, message: str) -> bytes:
    headers = {
        ":exception-type": kind,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, dumps({"message": message}).encode())


# A frame whose message CRC is wrong.
_good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}})
MALFORMED = _good[:-4] + struct.pack(">I", (zlib.crc32(_good[:-4]) + 1) & 0xFFFFFFFF)

# --- the wire protocol, as the server calls it -----------------------------------------------


def max_tokens(body: dict[str, Any]) -> int | None:
    config = body.get("inferenceConfig")
    value = config.get("maxTokens") if isinstance(config, dict) else None
    return value if isinstance(value, int) else None


def validate(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return (
            "1 validation error detected: Value at 'messages' failed to satisfy constraint: "
            "Member must have length greater than or equal to 1"
        )
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if any(a == b for a, b in itertools.pairwise(roles)):
        return (
            "A conversation must alternate between user and assistant roles. Make sure the "
            "conversation alternates between user and assistant roles and try again."
        )
    uses_tools = any(
        isinstance(block, dict) and ("toolUse" in block or "toolResult" in block)
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("content"), list)
        for block in m["content"]
    )
    if uses_tools and "toolConfig" not in body:
        return (
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    return None


def headers(p: Plan, limits: list[Limit]) -> dict[str, str]:
    # Bedrock sends no rate-limit headers.
    return {"x-amzn-RequestId": p.request_id}


def retry_headers(seconds: float) -> dict[str, str]:
    return {}  # Bedrock says neither Retry-After nor when


def error(kind: str, p: Plan, message: str | None = None) -> tuple[int, dict[str, Any]]:
    status, etype, text = _ERRORS.get(kind, _ERRORS["400"])
    return status, {ERROR_TYPE_KEY: etype, "message": message or text.format(model=p.model)}


def _usage(p: Plan) -> dict[str, Any]:
    fresh = p.input_tokens - p.cached_tokens
    output = p.text_tokens + p.reasoning_tokens
    usage = {"inputTokens": fresh, "outputTokens": output, "totalTokens": p.input_tokens + output}
    if p.cached_tokens:
        usage["cacheReadInputTokens"] = p.cached_tokens
        usage["cacheWriteInputTokens"] = 0
    return usage


def _latency_ms(p: Plan) -> int:
    return round(p.latency * 1000)


def completion(p: Plan) -> dict[str, Any]:
    if p.tool is not None:
        block: dict[str, Any] = {
            "toolUse": {"toolUseId": _tool_id(p), "name": p.tool.name, "input": p.tool.arguments}
        }
    else:
        block = {"text": text_of(p.text_tokens)}
    return {
        "output": {"message": {"role": "assistant", "content": [block]}},
        "stopReason": FINISH[p.finish],
        "usage": _usage(p),
        "metrics": {"latencyMs": _latency_ms(p)},
    }


def _tool_id(p: Plan) -> str:
    return "tooluse_" + p.request_id.removeprefix("req_")[:22]


# A text delta's payload around its token (JSON-encoded), padded as event() pads.
_TEXT_DELTA = (
    '{"contentBlockIndex":0,"delta":{"text":',
    '},"p":"' + _PAD[:24] + '"}',
)


class Stream:
    """messageStart, then one contentBlockDelta a token (a toolUse block opens with
    contentBlockStart), contentBlockStop, messageStop, and metadata with the usage."""

    def __init__(self, p: Plan) -> None:
        self.p = p

    def head(self) -> bytes:
        return event("messageStart", {"role": "assistant"})

    def token(self, i: int, last: bool) -> bytes:
        p = self.p
        if p.tool is None:
            body = _TEXT_DELTA[0] + TOKENS_JSON[token_index(i)] + _TEXT_DELTA[1]
            return frame(_event_headers("contentBlockDelta"), body.encode())
        out = b""
        if i == 0:
            start = {"toolUse": {"toolUseId": _tool_id(p), "name": p.tool.name}}
            out = event("contentBlockStart", {"contentBlockIndex": 0, "start": start})
        delta = {"toolUse": {"input": p.tool_args[i]}}
        return out + event("contentBlockDelta", {"contentBlockIndex": 0, "delta": delta})

    def tail(self, done: bool) -> bytes:
        p = self.p
        out = event("contentBlockStop", {"contentBlockIndex": 0})
        out += event("messageStop", {"stopReason": FINISH[p.finish]})
        if done:
            metrics = {"latencyMs": _latency_ms(p)}
            out += event("metadata", {"usage": _usage(p), "metrics": metrics})
        return out

    def error_event(self) -> bytes:
        return exception("serviceUnavailableException", _UNAVAILABLE)


def foundation_models(names: list[str], region: str) -> dict[str, Any]:
    """ListFoundationModels: every model but the inference profiles."""
    return {
        "modelSummaries": [
            {
                "modelArn": f"arn:aws:bedrock:{region}::foundation-model/{name}",
                "modelId": name,
                "modelName": name,
                "providerName": "Simulated",
                "inputModalities": ["TEXT"],
                "outputModalities": ["TEXT"],
                "responseStreamingSupported": True,
                "customizationsSupported": [],
                "inferenceTypesSupported": ["ON_DEMAND"],
                "modelLifecycle": {"status": "ACTIVE"},
            }
            for name in names
            if not name.startswith(PROFILE_PREFIXES)
        ]
    }


def inference_profiles(names: list[str], region: str) -> dict[str, Any]:
    """ListInferenceProfiles (system-defined, one page): the models named like profiles."""
    account = "123456789012"
    return {
        "inferenceProfileSummaries": [
            {
                "inferenceProfileName": name,
                "inferenceProfileArn": (
                    f"arn:aws:bedrock:{region}:{account}:inference-profile/{name}"
                ),
                "inferenceProfileId": name,
                "models": [
                    {
                        "modelArn": (
                            f"arn:aws:bedrock:{region}::foundation-model/{name.split('.', 1)[1]}"
                        )
                    }
                ],
                "status": "ACTIVE",
                "type": "SYSTEM_DEFINED",
            }
            for name in names
            if name.startswith(PROFILE_PREFIXES)
        ]
    }
