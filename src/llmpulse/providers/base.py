"""The interface every wire protocol implements.

A protocol only knows its own wire format: how to build the three requests, and how to read
models lists, completions, stream events and error bodies. Timing, timeouts, size bounds and
error classification policy live in ``llmpulse.probe`` and ``llmpulse.errors``.
"""

from __future__ import annotations

import abc
import base64
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from typing import Protocol as Interface

from llmpulse import presets
from llmpulse.errors import ErrorClass, classify
from llmpulse.result import CheckKind, Usage
from llmpulse.secrets import PRE_CLIP_CHARS
from llmpulse.sse import SSEDecoder, SSEEvent

if TYPE_CHECKING:
    from llmpulse.target import Target


class ProtocolError(ValueError):
    """A response that does not have the shape its protocol defines."""


class Unsupported(ValueError):
    """A check kind the protocol's API does not offer (Anthropic has no embeddings API)."""


class CredentialsError(Exception):
    """A request could not be authenticated before it was sent: credentials missing, unreadable
    or refused by their token endpoint (an ``auth`` failure; the message names no secret), or
    the token endpoint unreachable or failing (``error_class`` says so: not the credentials')."""

    def __init__(self, message: str, error_class: ErrorClass = ErrorClass.AUTH) -> None:
        super().__init__(message)
        self.error_class = error_class


@dataclasses.dataclass(slots=True)
class RequestSpec:
    method: str
    url: str
    headers: dict[str, str]
    json: dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class ProviderError:
    error_class: ErrorClass
    message: str
    retry_after_s: float | None = None


@dataclasses.dataclass(slots=True)
class ModelsInfo:
    listed: bool
    context_window: int | None = None
    count: int = 0


@dataclasses.dataclass(slots=True)
class EmbeddingsInfo:
    """What an embeddings response said: the vector's length (not the vector: nothing keeps
    it) and the tokens billed, where the provider reports them."""

    dimensions: int
    usage: Usage | None = None
    response_model: str | None = None


# What a completion keeps of its answer's text for expectations to read (``probe.assertions``),
# and how many tool calls' names: a runaway stream must not grow memory.
ANSWER_CHARS = 64 * 1024
MAX_TOOL_CALLS = 64

# A model that declines answers with a refusal instead of content (OpenAI's ``refusal``): the
# request was answered, but not with what was asked, so it is measured as content_filter.
REFUSED = "the model refused: a refusal instead of content"


@dataclasses.dataclass(slots=True)
class Completion:
    """What a non-streaming response, or a whole stream, said besides timing."""

    text_chars: int = 0  # the whole answer's length; its text is kept up to ANSWER_CHARS
    usage: Usage | None = None
    response_model: str | None = None
    system_fingerprint: str | None = None
    response_id: str | None = None
    finish_reason: str | None = None
    filtered: bool = False  # a content filter blocked the output (its finish reason says so)
    refused: bool = False  # the model declined: OpenAI's refusal instead of content
    error: ProviderError | None = None  # a 200 whose content says the generation failed
    tool_calls: list[str] = dataclasses.field(default_factory=list)  # names of the tools called
    _pieces: list[str] = dataclasses.field(default_factory=list, repr=False)
    _kept: int = 0

    def add_text(self, text: str) -> None:
        """Count a piece of the answer, and keep it while the kept text is under ANSWER_CHARS."""
        self.text_chars += len(text)
        if self._kept < ANSWER_CHARS and text:
            piece = text[: ANSWER_CHARS - self._kept]
            self._pieces.append(piece)
            self._kept += len(piece)

    def add_tool_call(self, name: str | None) -> None:
        if name and len(self.tool_calls) < MAX_TOOL_CALLS:
            self.tool_calls.append(name)

    @property
    def text(self) -> str:
        """The answer's first ANSWER_CHARS characters."""
        if len(self._pieces) > 1:
            self._pieces[:] = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    @property
    def blocked(self) -> str | None:
        """Why the answer counts as ``content_filter``, or None (``blocked_reason``)."""
        return blocked_reason(self.refused, self.filtered, self.finish_reason)


def blocked_reason(refused: bool, filtered: bool, finish_reason: str | None) -> str | None:
    """Why an answer counts as ``content_filter``, or None: one wording wherever it is measured
    (probes, instrumented calls, gateway traffic)."""
    if refused:
        return REFUSED
    if filtered:
        return f"output blocked by a content filter (finish reason {finish_reason})"
    return None


@dataclasses.dataclass(slots=True)
class StreamUpdate:
    text: str = ""  # the answer's text in this event, a refusal included
    done: bool = False
    error: ProviderError | None = None
    tool_chars: int = 0  # tool-call output in this event: a call's name, its arguments' JSON

    @property
    def output_chars(self) -> int:
        """The output a user waits for (not reasoning): what ``llmpulse.timing`` times."""
        return len(self.text) + self.tool_chars


class StreamParser(abc.ABC):
    """Consumes one stream's events; ``completion`` accumulates what they said."""

    def __init__(self) -> None:
        self.completion = Completion()
        self.done = False

    @abc.abstractmethod
    def feed(self, event: SSEEvent) -> StreamUpdate:
        """Read one event. Raises ProtocolError on an event its protocol cannot contain."""


class FrameDecoder(Interface):
    """A stream's byte framing, read into events as chunks arrive: SSE for most providers,
    AWS's binary event-stream for Bedrock (an event's type in ``event``, its JSON in ``data``).
    Raises a ValueError (``SSEError``, ``ProtocolError``) on bytes its framing cannot hold."""

    def feed(self, chunk: bytes) -> list[SSEEvent]: ...

    def close(self) -> bool:
        """End of stream: whether a partial frame was left over."""
        ...


class Protocol(abc.ABC):
    name: str
    request_id_headers: tuple[str, ...] = ("x-request-id",)
    terminal_event: str  # named in the error when a stream ends without it
    stream_content_type: str = "text/event-stream"  # what a streaming 200 must be
    # Its URLs are percent-encoded as they must go out (Bedrock signs the path as sent): callers
    # pass them as ``yarl.URL(url, encoded=True)``, which aiohttp does not re-quote.
    encoded_urls: bool = False

    def frame_decoder(self) -> FrameDecoder:
        """A decoder of this protocol's stream framing (SSE unless overridden)."""
        return SSEDecoder()

    async def sign(
        self, target: Target, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        """The headers to send with this exact request: where a protocol authenticates per
        request (AWS SigV4 over the body, a refreshed OAuth2 token), it adds them here. Every
        caller sends ``body`` byte for byte as signed."""
        return headers

    @abc.abstractmethod
    def headers(self, target: Target) -> dict[str, str]: ...

    @abc.abstractmethod
    def models_request(self, target: Target) -> RequestSpec: ...

    @abc.abstractmethod
    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        """A chat request: ``messages`` in the OpenAI chat shape ({role, content}, roles
        system/user/assistant), translated to this protocol; ``params`` (the protocol's own
        request parameters, tools included) merged into the body over what it sets itself;
        ``max_tokens`` unless ``params`` set the protocol's token budget."""

    @abc.abstractmethod
    def parse_models(self, body: Any, model: str) -> ModelsInfo: ...

    @abc.abstractmethod
    def parse_completion(self, body: Any) -> Completion: ...

    def usage_from_headers(self, headers: Mapping[str, str]) -> Usage | None:
        """Token counts a protocol sends as response headers, for an answer whose body reports
        none (Bedrock's ``x-amzn-bedrock-*-token-count``)."""
        return None

    @abc.abstractmethod
    def stream_parser(self) -> StreamParser: ...

    @abc.abstractmethod
    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        """Read this protocol's error object; ``status`` is None for an error inside a stream."""

    def supports(self, kind: CheckKind) -> bool:
        """Whether this protocol's API offers ``kind`` (``presets.supports``: the config asks it
        too, to refuse a check the provider cannot answer)."""
        return presets.supports(self.name, kind)

    def unsupported(self, kind: CheckKind) -> Unsupported:
        """The error for a check of a kind this protocol does not offer."""
        return Unsupported(
            f"the {self.name} API offers no {kind!s} check (it has no such endpoint)"
        )

    def responses_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        """A request to OpenAI's Responses API (``messages`` in the chat shape; ``params``
        are further body fields, sent as given)."""
        raise self.unsupported(CheckKind.RESPONSES)

    def responses_stream_parser(self) -> StreamParser:
        raise self.unsupported(CheckKind.RESPONSES)

    def parse_responses(self, body: Any) -> Completion:
        """Read a non-streamed Responses API answer."""
        raise self.unsupported(CheckKind.RESPONSES)

    def embeddings_request(
        self, target: Target, *, text: str, params: Mapping[str, Any]
    ) -> RequestSpec:
        """A request for the embedding of ``text`` (``params``: further body fields)."""
        raise self.unsupported(CheckKind.EMBEDDINGS)

    def parse_embeddings(self, body: Any) -> EmbeddingsInfo:
        raise self.unsupported(CheckKind.EMBEDDINGS)

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
        """Read an error response (the body may be anything, even empty or HTML)."""
        try:
            obj = loads_object(body)
        except ProtocolError:
            return ProviderError(classify(status), f"HTTP {status}: {error_snippet(body)}")
        return self.error_from_object(obj, status)


def merge_params(body: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` over ``body``, an object in both merged key by key (Gemini's
    ``generationConfig``, OpenAI's ``stream_options``): a probe's settings win."""
    for key, value in params.items():
        current = body.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[key] = {**current, **value}
        else:
            body[key] = value
    return body


NESTED_TOO_DEEPLY = "nested too deeply to parse"


def loads_object(data: str | bytes) -> dict[str, Any]:
    """Parse JSON that must be an object; ProtocolError otherwise."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    except RecursionError:  # "[[[[..." deeper than json's C scanner goes
        raise ProtocolError(f"malformed JSON: {NESTED_TOO_DEEPLY}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"expected a JSON object, got {type(value).__name__}")
    return value


def get_int(obj: Any, *keys: str) -> int | None:
    """Walk nested dicts; return an int leaf, or None if absent or not a number."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    return int(obj)


def get_str(obj: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, str) else None


def vector_length(value: Any) -> int:
    """The length of an embedding: a list of numbers, or base64 of little-endian float32s (what
    OpenAI sends for ``encoding_format: base64``). ProtocolError if it is neither, or empty."""
    if isinstance(value, str):
        try:
            size = len(base64.b64decode(value, validate=True))
        except ValueError:
            raise ProtocolError("embedding is a string but not base64") from None
        if size % 4:
            raise ProtocolError(f"base64 embedding of {size} bytes is not float32s")
        count = size // 4
    elif isinstance(value, list):
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
            raise ProtocolError("embedding holds something other than numbers")
        count = len(value)
    else:
        raise ProtocolError(f"embedding is {type(value).__name__}, not a list of numbers")
    if count == 0:
        raise ProtocolError("embedding is empty")
    return count


def error_snippet(body: bytes, limit: int = PRE_CLIP_CHARS) -> str:
    """A printable excerpt of a body that is not the error JSON we expected (cut generously:
    the redactor clips it short once it is clean)."""
    text = body[:limit].decode("utf-8", errors="replace").strip()
    return text or "(empty body)"
