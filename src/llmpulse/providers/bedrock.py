"""AWS Bedrock's Converse API, signed with SigV4.

Reference: botocore's service models ``bedrock-runtime`` 2023-09-30 (``Converse``: ``POST
/model/{modelId}/converse``; ``ConverseStream``: ``/model/{modelId}/converse-stream``, an
``application/vnd.amazon.eventstream`` of ``messageStart``, ``contentBlockStart``,
``contentBlockDelta``, ``contentBlockStop``, ``messageStop`` and ``metadata`` events, or an
exception event) and ``bedrock`` 2023-04-20 (``ListFoundationModels``: ``GET
/foundation-models``; ``ListInferenceProfiles``: ``GET /inference-profiles``), both signed as
service ``bedrock``. Errors carry their type in ``x-amzn-ErrorType`` and a JSON ``message``.
The model id is one URI label, percent-encoded whole as botocore's serializer encodes it
(``:`` and the ``/`` of an ARN included), so the URL is sent as built (``encoded_urls``).

Credentials come from the AWS SDKs' standard chain (environment, shared files, profiles, SSO,
instance roles) through botocore, unless a target names a profile or keys. Resolving them may
block (files, SSO, the instance metadata service), so it runs in a thread, once per set of
credentials (fixed ones from files or the environment: again every few minutes); botocore's
refreshable credentials are refreshed in a thread when they near expiry.
botocore is imported where credentials are first resolved: ``llmpulse check`` without AWS
targets should not pay for loading it.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from botocore.eventstream import EventStreamBuffer, ParserError

from llmpulse.errors import classify
from llmpulse.providers.base import (
    Completion,
    CredentialsError,
    ModelsInfo,
    Protocol,
    ProtocolError,
    ProviderError,
    RequestSpec,
    StreamParser,
    StreamUpdate,
    get_int,
    get_str,
    loads_object,
    merge_params,
)
from llmpulse.result import Usage
from llmpulse.secrets import PRE_CLIP_CHARS
from llmpulse.sse import DEFAULT_MAX_EVENT_BYTES, SSEEvent

if TYPE_CHECKING:
    from botocore.credentials import Credentials

    from llmpulse.target import Target

SIGNING_NAME = "bedrock"  # both bedrock and bedrock-runtime sign as "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
EXCEPTION_EVENT = "exception"  # the event an exception message is read into
# Stop reasons that mean a guardrail or content filter blocked the output.
_FILTER_STOP = frozenset({"guardrail_intervened", "content_filtered"})
# Geographic prefixes of cross-region inference profile ids (us.anthropic.claude-...).
_PROFILE_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "jp.", "au.", "ca.", "global.")
_MIN_FRAME = 16  # prelude (12 bytes) and message CRC (4)


def model_path(model: str) -> str:
    """The model id as a URI label: botocore's ``percent_encode`` keeps only ``-._~``."""
    return quote(model, safe="-._~")


def control_url(runtime_url: str) -> str:
    """The control plane (``bedrock``) beside a runtime endpoint (``bedrock-runtime``); another
    base URL (a proxy, the simulator) serves both."""
    parts = urlsplit(runtime_url)
    if parts.hostname and parts.hostname.startswith("bedrock-runtime."):
        netloc = parts.netloc.replace("bedrock-runtime.", "bedrock.", 1)
        return parts._replace(netloc=netloc).geturl()
    return runtime_url


def is_inference_profile(model: str) -> bool:
    # ARNs of system-defined (…:inference-profile/…) and application inference profiles.
    return model.startswith(_PROFILE_PREFIXES) or "inference-profile/" in model


class BedrockProtocol(Protocol):
    name = "bedrock"
    terminal_event = "metadata"  # it follows messageStop and carries the usage
    request_id_headers = ("x-amzn-requestid",)
    stream_content_type = EVENT_STREAM
    encoded_urls = True

    def __init__(self) -> None:
        self._credentials = CredentialCache()

    def frame_decoder(self) -> EventStreamDecoder:
        return EventStreamDecoder()

    async def sign(
        self, target: Target, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        if not target.region:
            raise CredentialsError("no AWS region for Bedrock: set 'region' or AWS_REGION")
        creds = await self._credentials.get(target.aws)
        return sign_v4(creds, target.region, method, url, headers, body)

    def headers(self, target: Target) -> dict[str, str]:
        # As botocore sends them: no Accept, the stream's type is the operation's.
        return {"content-type": "application/json", **target.headers}

    def models_request(self, target: Target) -> RequestSpec:
        base = control_url(target.base_url)
        if is_inference_profile(target.model):
            kind = "APPLICATION" if ":application-inference-profile/" in target.model else None
            query = "maxResults=1000" + (f"&typeEquals={kind}" if kind else "")
            return RequestSpec("GET", f"{base}/inference-profiles?{query}", self.headers(target))
        return RequestSpec("GET", f"{base}/foundation-models", self.headers(target))

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        body = merge_params(
            {**converse_messages(messages), "inferenceConfig": {"maxTokens": max_tokens}},
            params,
        )
        headers = self.headers(target)
        operation = "converse-stream" if stream else "converse"
        url = f"{target.base_url}/model/{model_path(target.model)}/{operation}"
        return RequestSpec("POST", url, headers, body)

    def parse_models(self, body: Any, model: str) -> ModelsInfo:
        if not isinstance(body, dict):
            raise ProtocolError("models response is not a JSON object")
        if "inferenceProfileSummaries" in body:
            entries, id_key, arn_key = (
                body["inferenceProfileSummaries"],
                "inferenceProfileId",
                "inferenceProfileArn",
            )
        elif "modelSummaries" in body:
            entries, id_key, arn_key = body["modelSummaries"], "modelId", "modelArn"
        else:
            raise ProtocolError("models response has no 'modelSummaries' list")
        if not isinstance(entries, list):
            raise ProtocolError(f"models response: '{id_key}' entries are not a list")
        for entry in entries:
            if isinstance(entry, dict) and model in (entry.get(id_key), entry.get(arn_key)):
                return ModelsInfo(True, None, len(entries))
        return ModelsInfo(listed=False, count=len(entries))

    def parse_completion(self, body: Any) -> Completion:
        if not isinstance(body, dict):
            raise ProtocolError("response is not a JSON object")
        content = _get_path(body, "output", "message", "content")
        if not isinstance(content, list):
            raise ProtocolError("response has no output.message.content list")
        stop = get_str(body, "stopReason")
        completion = Completion(
            usage=parse_usage(body.get("usage")),
            finish_reason=stop,
            filtered=stop in _FILTER_STOP,
        )
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                completion.add_text(block["text"])
            elif isinstance(block, dict):
                completion.add_tool_call(get_str(block, "toolUse", "name"))
        return completion

    def usage_from_headers(self, headers: Mapping[str, str]) -> Usage | None:
        # InvokeModel's headers (Converse puts usage in the body; a proxy may keep only these).
        counts = [_header_int(headers, f"x-amzn-bedrock-{n}-token-count") for n in _HEADER_COUNTS]
        fresh, output, cache_read, cache_write = counts
        if fresh is None and output is None:
            return None
        return Usage(
            input_tokens=(fresh or 0) + (cache_read or 0) + (cache_write or 0),
            output_tokens=output,
            cached_tokens=cache_read,
            cache_write_tokens=cache_write,
        )

    def stream_parser(self) -> StreamParser:
        return BedrockStreamParser()

    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        return error_from_object(obj, status)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        err_type = error_type(headers.get("x-amzn-errortype"))
        try:
            obj = loads_object(body)
        except ProtocolError:
            obj = {"message": body[:PRE_CLIP_CHARS].decode("utf-8", "replace").strip()}
        if err_type and not obj.get("__type"):
            obj["__type"] = err_type
        return error_from_object(obj, status)


def error_type(raw: str | None) -> str | None:
    """``ThrottlingException:http://internal.amazon.com/...`` or ``aws.protocols#X``: the name
    (as botocore's rest-json parser reads ``x-amzn-ErrorType`` and ``__type``)."""
    if not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1] or None


def error_from_object(obj: dict[str, Any], status: int | None) -> ProviderError:
    err_type = error_type(get_str(obj, "__type") or get_str(obj, "code"))
    message = (get_str(obj, "message") or get_str(obj, "Message") or str(obj))[:PRE_CLIP_CHARS]
    original = get_str(obj, "originalMessage")
    if original:
        message = f"{message}: {original}"[:PRE_CLIP_CHARS]
    text = f"{message} ({err_type})" if err_type else message
    if status is not None:
        text = f"HTTP {status}: {text}"
    return ProviderError(classify(status, err_type, None, message), text)


class BedrockStreamParser(StreamParser):
    def feed(self, event: SSEEvent) -> StreamUpdate:
        kind = event.event
        payload = loads_object(event.data)
        if kind == EXCEPTION_EVENT:
            return StreamUpdate(error=error_from_object(payload, None))
        c = self.completion
        if kind == "contentBlockStart":
            name = get_str(payload, "start", "toolUse", "name")
            c.add_tool_call(name)
            return StreamUpdate(tool_chars=len(name or ""))
        if kind == "contentBlockDelta":
            delta = payload.get("delta")
            if not isinstance(delta, dict):
                raise ProtocolError("contentBlockDelta without a delta")
            text = delta.get("text")
            if isinstance(text, str):
                c.add_text(text)
                return StreamUpdate(text=text)
            return StreamUpdate(tool_chars=len(get_str(delta, "toolUse", "input") or ""))
        if kind == "messageStop":
            stop = get_str(payload, "stopReason")
            c.finish_reason = stop
            c.filtered = stop in _FILTER_STOP
        elif kind == "metadata":
            c.usage = parse_usage(payload.get("usage")) or c.usage
            self.done = True
            return StreamUpdate(done=True)
        # messageStart, contentBlockStop, and event types added later carry no output.
        return StreamUpdate()


_HEADER_COUNTS = ("input", "output", "cache-read-input", "cache-write-input")


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name, "")
    # ASCII digits only: str.isdigit also takes "²", which int() refuses.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else None


def converse_messages(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Chat messages in Converse's shape: system messages in ``system``, the rest as text
    content blocks, consecutive ones of a role in one message (Converse refuses a conversation
    whose user and assistant turns do not alternate)."""
    system = [{"text": str(m["content"])} for m in messages if m["role"] == "system"]
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m["role"] == "system":
            continue
        block = {"text": str(m["content"])}
        if turns and turns[-1]["role"] == m["role"]:
            turns[-1]["content"].append(block)
        else:
            turns.append({"role": m["role"], "content": [block]})
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system
    return out


def parse_usage(raw: Any) -> Usage | None:
    """Bedrock's inputTokens leaves out cache reads and writes; ours includes them."""
    if not isinstance(raw, dict):
        return None
    fresh = get_int(raw, "inputTokens")
    output = get_int(raw, "outputTokens")
    if fresh is None and output is None:
        return None
    cache_read = get_int(raw, "cacheReadInputTokens") or 0
    cache_write = get_int(raw, "cacheWriteInputTokens") or 0
    return Usage(
        input_tokens=None if fresh is None else fresh + cache_read + cache_write,
        output_tokens=output,
        cached_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _get_path(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# --- AWS event-stream framing ---------------------------------------------------------------


class EventStreamDecoder:
    """AWS event-stream messages, read as chunks arrive, into events (``FrameDecoder``).

    Each message is cut out by the total length its prelude starts with, and bounded by
    ``max_message_bytes`` before it is buffered; botocore's parser checks both CRCs and reads
    the headers and payload. An event message becomes ``SSEEvent(event=<:event-type>,
    data=<payload>)``; an exception or error message ``SSEEvent(event="exception")`` whose data
    is its JSON with the exception's type in ``__type``."""

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_message_bytes
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf
        buf += chunk
        events: list[SSEEvent] = []
        while len(buf) >= 4:
            total = int.from_bytes(buf[:4], "big")
            if total > self._max:
                raise ProtocolError(f"event-stream message of {total} bytes exceeds {self._max}")
            if total < _MIN_FRAME:
                raise ProtocolError(f"event-stream message of {total} bytes is too short")
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            del buf[:total]
            events.append(_event(frame))
        return events

    def close(self) -> bool:
        leftover = bool(self._buf)
        self._buf.clear()
        return leftover


def _event(frame: bytes) -> SSEEvent:
    parser = EventStreamBuffer()
    parser.add_data(frame)
    try:
        message = next(parser)
    except StopIteration:
        raise ProtocolError("event-stream message shorter than its prelude says") from None
    except (ParserError, struct.error, KeyError, IndexError, ValueError) as exc:
        # CRC mismatches, oversized or unknown headers: botocore's ParserError and what its
        # header reader raises on bytes that passed the CRC yet are not headers.
        raise ProtocolError(f"malformed event-stream message: {exc}") from None
    headers = message.headers
    payload = message.payload.decode("utf-8", errors="replace")
    message_type = headers.get(":message-type")
    if message_type == "event":
        event_type = headers.get(":event-type")
        if not isinstance(event_type, str):
            raise ProtocolError("event-stream event without an :event-type")
        return SSEEvent(data=payload, event=event_type)
    if message_type == "exception":
        try:
            body = loads_object(payload)
        except ProtocolError:
            body = {"message": payload[:PRE_CLIP_CHARS]}
        body["__type"] = str(headers.get(":exception-type") or "exception")
    elif message_type == "error":
        body = {
            "__type": str(headers.get(":error-code") or "error"),
            "message": str(headers.get(":error-message") or ""),
        }
    else:
        raise ProtocolError(f"event-stream message of unknown type {message_type!r}")
    return SSEEvent(data=json.dumps(body), event=EXCEPTION_EVENT)


# --- credentials and SigV4 ------------------------------------------------------------------


def sign_v4(
    creds: Credentials,
    region: str,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, str]:
    """``headers`` with SigV4's (``X-Amz-Date``, ``Authorization``, a session token's
    ``X-Amz-Security-Token``) for this exact request, signed by botocore."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    SigV4Auth(creds, SIGNING_NAME, region).add_auth(request)
    return dict(request.headers.items())


_MISSING = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
    "(shared config/credentials files, SSO), or run with an instance or task role"
)


# How long a failure to find credentials is kept: the chain's last resort (the instance metadata
# service) can take seconds to answer that there is nothing, which every check would wait for.
RETRY_MISSING_S = 60.0
# How long fixed credentials read from a profile or the chain are used before it is read again:
# tools (saml2aws, gimme-aws-creds, `aws configure set`) rewrite a shared credentials file with
# a new session token when the old one expires, which botocore cannot refresh by itself.
REREAD_FIXED_S = 300.0


class CredentialCache:
    """Credentials by what names them (a profile, keys, or the standard chain as the environment
    sets it up), each resolved once and refreshed when botocore says it is due (fixed ones from
    a profile or the chain: read again after ``REREAD_FIXED_S``); a failure to find them is kept
    for ``RETRY_MISSING_S``."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, ...], Credentials] = {}
        self._read_at: dict[tuple[str, ...], float] = {}  # fixed credentials from the chain
        self._failed: dict[tuple[str, ...], tuple[float, str]] = {}
        self._lock = threading.Lock()

    async def get(self, named: Mapping[str, str]) -> Credentials:
        key = _cache_key(named)
        creds = self._found.get(key)
        read_at = self._read_at.get(key)
        if read_at is not None and time.monotonic() - read_at >= REREAD_FIXED_S:
            creds = None  # read the files again: a rotated session token is there
        if creds is None:
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < RETRY_MISSING_S:
                raise CredentialsError(failed[1])
            try:
                creds = await asyncio.to_thread(self._resolve, key, dict(named))
            except CredentialsError as exc:
                self._failed[key] = (time.monotonic(), str(exc))
                raise
        refresh_needed = getattr(creds, "refresh_needed", None)
        if refresh_needed is not None and refresh_needed():
            # A refresh calls STS, SSO or the metadata service: blocking.
            return await asyncio.to_thread(_frozen, creds)
        return _frozen(creds)

    def _resolve(self, key: tuple[str, ...], named: dict[str, str]) -> Credentials:
        import botocore.auth  # loaded here, off the event loop, for sign_v4
        import botocore.session
        from botocore.credentials import Credentials
        from botocore.exceptions import BotoCoreError, ClientError

        if named.get("access_key_id") and named.get("secret_access_key"):
            creds: Credentials | None = Credentials(
                named["access_key_id"], named["secret_access_key"], named.get("session_token")
            )
        else:
            try:
                session = botocore.session.Session(profile=named.get("profile"))
                creds = session.get_credentials()
            except (BotoCoreError, ClientError) as exc:  # a bad profile, SSO, STS refusing
                raise CredentialsError(f"AWS credentials could not be loaded: {exc}") from None
        if creds is None:
            raise CredentialsError(_MISSING)
        with self._lock:
            if getattr(creds, "refresh_needed", None) is None and "access_key_id" not in named:
                self._read_at[key] = time.monotonic()
                self._found[key] = creds
                return creds
            return self._found.setdefault(key, creds)


def _frozen(creds: Credentials) -> Credentials:
    """A consistent snapshot (key, secret, token) of credentials that may be refreshed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return creds.get_frozen_credentials()
    except (BotoCoreError, ClientError) as exc:
        raise CredentialsError(f"AWS credentials could not be refreshed: {exc}") from None


def _cache_key(named: Mapping[str, str]) -> tuple[str, ...]:
    """What the credentials depend on. The standard chain reads the environment, so its key
    holds the variables that pick them (a changed key or profile is resolved afresh)."""
    if named:
        return tuple(f"{k}={v}" for k, v in sorted(named.items()))
    return tuple(
        os.environ.get(v, "")
        for v in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    )
