"""Translation between the OpenAI, Anthropic and Gemini wire protocols, through ``gateway.ir``
(and to AWS Bedrock's Converse, as an upstream only: ``bedrock``).

Each module speaks one protocol, in both roles: as the client's protocol (``parse_request``,
``render_response``, a stream encoder, errors) and as the upstream's (``render_request``,
``parse_response``, a stream decoder). ``ClientCodec`` and ``UpstreamCodec`` are what the
gateway calls on a module in each role; the modules themselves are their implementations.
"""

from __future__ import annotations

from typing import Any, Protocol

from llmpulse.gateway.ir import ChatRequest, ChatResponse, StreamEvent
from llmpulse.sse import SSEEvent


class Decoder(Protocol):
    """An upstream's stream read into IR events, one SSE event at a time (``StreamDecoder``)."""

    done: bool  # the stream's terminal event was read

    def feed(self, event: SSEEvent) -> list[StreamEvent]: ...


class Encoder(Protocol):
    """IR events written as a client protocol's SSE frames (``StreamEncoder``)."""

    def feed(self, event: StreamEvent) -> list[bytes]: ...

    def close(self) -> list[bytes]: ...


class ClientCodec(Protocol):
    """A module as the client's protocol: requests read, answers written."""

    def parse_request(self, body: Any, /) -> ChatRequest: ...

    def render_response(self, resp: ChatResponse, /) -> dict[str, Any]: ...

    def stream_encoder(self, req: ChatRequest, /) -> Encoder: ...


class UpstreamCodec(Protocol):
    """A module as the upstream's protocol: its answers read, whole or streamed."""

    def parse_response(self, body: Any, /) -> ChatResponse: ...

    def StreamDecoder(self) -> Decoder: ...  # each module's class of that name
