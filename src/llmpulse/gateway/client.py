"""``Router``: the gateway's routing and failover in-process, without an HTTP server.

Requests and answers have the shapes the gateway's endpoints speak, as plain dicts:
``completion``/``acompletion`` take and return OpenAI Chat Completions JSON (``stream=True``:
an iterator of ``chat.completion.chunk`` dicts), ``messages``/``amessages`` Anthropic Messages
JSON (``stream=True``: an iterator of its stream event dicts). ``response["model"]`` is the model
of the deployment that answered.

One ``Gateway`` (and its aiohttp session) lives on a private event loop in a background thread,
so sync and async callers, from any thread or loop, share one set of breakers and in-flight
counts. Async calls hop to that loop and back; a stream is advanced there one step per pull, so
a slow reader holds back the upstream like an HTTP client would. Traffic is recorded like the
gateway's (one ``source=traffic`` result per request) through the instrument ``Recorder``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncGenerator, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from llmpulse.aio import new_event_loop
from llmpulse.attribution import LabelError, Owner, current, labels, nested, read_owner
from llmpulse.config import Config, ConfigError, load_config
from llmpulse.config.gateway import GatewayConfig
from llmpulse.config.litellm import SECTIONS, parse_gateway
from llmpulse.errors import ErrorClass
from llmpulse.gateway.ir import ChatRequest, TranslationError
from llmpulse.gateway.proxy import Gateway, GatewayError
from llmpulse.gateway.translate import ClientCodec
from llmpulse.gateway.translate import anthropic as tr_anthropic
from llmpulse.gateway.translate import openai as tr_openai
from llmpulse.gateway.translate.params import client_name
from llmpulse.instrumentation import Recorder
from llmpulse.sse import SSEDecoder
from llmpulse.store import Store

__all__ = ["Router", "RouterError"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Chunk = dict[str, Any]


class RouterError(GatewayError):
    """A request the router could not serve: the gateway's error, with a readable ``str``.

    ``status`` is the HTTP status the gateway would answer with (404 unknown model, 400 bad
    request or content filter, 429 rate limited, 503/502/504 when every deployment failed, ...);
    ``error_class`` the llmpulse ``ErrorClass`` of the failure (None when the router refused the
    request itself); ``message`` what went wrong; ``retry_after_s`` the upstream's hint, if any.
    Raised by the call, or by a stream's iterator once output has started.
    """

    def __str__(self) -> str:
        return f"{self.status} {self.error_class or 'error'}: {self.message}"


class Router:
    """Route chat requests across a LiteLLM-format ``model_list`` with the gateway's failover.

    ``config``: a ``Config`` or ``GatewayConfig``, a config file path, or a mapping with the
    file's sections (``model_list``, ``router_settings``, ...). LiteLLM's keyword form works too:
    ``Router(model_list=[...], fallbacks=[...], routing_strategy=...)``, other keywords being
    ``router_settings`` keys. ``store`` receives the traffic: a ``Store``, or a ``postgresql://``
    URL (its ``options=-csearch_path=...`` naming the schema), ``sqlite:///`` URL or file path,
    written through the writer every llmpulse process uses, local spool included (as
    ``instrument()``'s ``Recorder``); ``env`` resolves ``os.environ/...`` references (default:
    the process environment).

    ``close()`` (or ``aclose()``, or leaving a ``with``/``async with`` block) stops the loop
    thread and flushes the recorded traffic.
    """

    def __init__(
        self,
        config: Config | GatewayConfig | str | Path | Mapping[str, Any] | None = None,
        *,
        store: Store | str | Path | None = None,
        env: Mapping[str, str] | None = None,
        model_list: list[dict[str, Any]] | None = None,
        **router_settings: Any,
    ) -> None:
        self.config = _gateway_config(config, env, model_list, router_settings)
        for warning in self.config.warnings:
            log.warning("llmpulse Router: %s", warning)
        self._recorder = Recorder(store) if store is not None else None
        # Reentrant: a stream's __del__ may run (GC) inside _submit on the same thread.
        self._lock = threading.RLock()
        self._closed = False
        self._loop = new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="llmpulse-router", daemon=True)
        self._thread.start()
        record = self._recorder.submit if self._recorder else None
        self._gateway: Gateway = self._run(_make_gateway(self.config, record))

    # --- OpenAI shape ------------------------------------------------------------------------

    async def acompletion(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool = False,
        tags: Sequence[str] = (),
        session: str | None = None,
        **params: Any,
    ) -> Chunk | AsyncStream:
        """An OpenAI ``chat.completion`` dict, or (``stream=True``) an async chunk iterator.
        ``user`` (OpenAI's own parameter), ``tags`` and ``session`` label its traffic result."""
        body = {**params, "model": model, "messages": messages, "stream": stream}
        return await self._arequest(tr_openai, body, None, tags, session)

    def completion(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        stream: bool = False,
        tags: Sequence[str] = (),
        session: str | None = None,
        **params: Any,
    ) -> Chunk | SyncStream:
        """An OpenAI ``chat.completion`` dict, or (``stream=True``) a chunk iterator.
        ``user`` (OpenAI's own parameter), ``tags`` and ``session`` label its traffic result."""
        body = {**params, "model": model, "messages": messages, "stream": stream}
        return self._request(tr_openai, body, None, tags, session)

    # --- Anthropic shape ---------------------------------------------------------------------

    async def amessages(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        stream: bool = False,
        user: str | None = None,
        tags: Sequence[str] = (),
        session: str | None = None,
        **params: Any,
    ) -> Chunk | AsyncStream:
        """An Anthropic ``message`` dict, or (``stream=True``) an async event iterator.
        ``user`` (sent as Anthropic's ``metadata.user_id``), ``tags`` and ``session`` label its
        traffic result."""
        body = {**params, "model": model, "messages": messages, "max_tokens": max_tokens}
        return await self._arequest(tr_anthropic, {**body, "stream": stream}, user, tags, session)

    def messages(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        stream: bool = False,
        user: str | None = None,
        tags: Sequence[str] = (),
        session: str | None = None,
        **params: Any,
    ) -> Chunk | SyncStream:
        """An Anthropic ``message`` dict, or (``stream=True``) an event iterator. ``user`` (sent
        as Anthropic's ``metadata.user_id``), ``tags`` and ``session`` label its traffic
        result."""
        body = {**params, "model": model, "messages": messages, "max_tokens": max_tokens}
        return self._request(tr_anthropic, {**body, "stream": stream}, user, tags, session)

    # --- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Block until the traffic recorded so far is written to the store."""
        if self._recorder is not None:
            self._recorder.flush()

    def close(self) -> None:
        """Close the gateway's session, stop the loop thread, flush and close the recorder."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            shutdown = asyncio.run_coroutine_threadsafe(self._gateway.aclose(), self._loop)
        try:
            shutdown.result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            if self._recorder is not None:
                self._recorder.close()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the loop thread ---------------------------------------------------------------------

    def _serve(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Calls still in flight at close end cancelled, so no caller waits forever.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("the Router is closed")
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Router call from the router's own loop would deadlock")
        future = self._submit(coro)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the Router was closed during the call") from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: the request stops with its caller
            raise

    async def _arun(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await asyncio.wrap_future(self._submit(coro))
        except asyncio.CancelledError:
            if self._closed:
                raise RuntimeError("the Router was closed during the call") from None
            raise

    def _request(
        self,
        codec: ClientCodec,
        body: dict[str, Any],
        user: str | None,
        tags: Sequence[str],
        session: str | None,
    ) -> Chunk | SyncStream:
        chat, owner = self._parse(codec, body, user, tags, session)
        if not chat.stream:
            return self._run(self._complete(codec, chat, owner))
        events, first = self._run(self._open(codec, chat, owner))
        return SyncStream(self, events, first)

    async def _arequest(
        self,
        codec: ClientCodec,
        body: dict[str, Any],
        user: str | None,
        tags: Sequence[str],
        session: str | None,
    ) -> Chunk | AsyncStream:
        chat, owner = self._parse(codec, body, user, tags, session)
        if not chat.stream:
            return await self._arun(self._complete(codec, chat, owner))
        events, first = await self._arun(self._open(codec, chat, owner))
        return AsyncStream(self, events, first)

    def _parse(
        self,
        codec: ClientCodec,
        body: dict[str, Any],
        user: str | None,
        tags: Sequence[str],
        session: str | None,
    ) -> tuple[ChatRequest, Owner]:
        """The request and its owner, labelled by the caller's ``attributed()`` blocks: read
        here, in the caller's context, not on the router's loop."""
        try:
            chat = codec.parse_request(body)
        except TranslationError as exc:
            raise RouterError(exc.status, ErrorClass.BAD_REQUEST, exc.message) from None
        if user is not None:
            chat.user = user
        try:
            owner = read_owner(
                user=chat.user,
                tags=chat.tags,
                session=session,
                # The call's tags= add to its blocks' like an inner block's.
                within=nested(current(), labels(tags=tags)),
                user_field="user" if user is not None else client_name(chat, "user"),
            )
        except LabelError as exc:
            raise RouterError(400, ErrorClass.BAD_REQUEST, str(exc)) from None
        return chat, owner.redacted(self._gateway.redact)

    # --- on the loop -------------------------------------------------------------------------

    async def _complete(self, codec: ClientCodec, chat: ChatRequest, owner: Owner) -> Chunk:
        try:
            answer, _ = await self._gateway.complete(chat, owner=owner)
        except GatewayError as exc:
            raise _router_error(exc) from None
        return codec.render_response(answer)

    async def _open(
        self, codec: ClientCodec, chat: ChatRequest, owner: Owner
    ) -> tuple[AsyncGenerator[list[Chunk], None], list[Chunk]]:
        """Start a stream; errors before its first content raise here, from the call."""
        events = self._chunks(codec, chat, owner)
        return events, await anext(events, [])

    async def _chunks(
        self, codec: ClientCodec, chat: ChatRequest, owner: Owner
    ) -> AsyncGenerator[list[Chunk], None]:
        encoder = codec.stream_encoder(chat)
        decoder = SSEDecoder()
        try:
            async with contextlib.aclosing(self._gateway.stream(chat, owner=owner)) as events:
                async for event in events:
                    frames = encoder.feed(event)
                    if frames:
                        yield _decode(decoder, frames)
        except GatewayError as exc:
            raise _router_error(exc) from None
        except TranslationError as exc:
            raise RouterError(502, ErrorClass.PROTOCOL, exc.message) from None
        yield _decode(decoder, encoder.close())


class _Stream:
    """A stream's chunks, pulled from the router's loop a batch (one upstream event) at a time."""

    def __init__(
        self, router: Router, events: AsyncGenerator[list[Chunk], None], first: list[Chunk]
    ) -> None:
        self._router = router
        self._events = events
        self._buffer = deque(first)
        self._done = not first

    async def _pull(self) -> list[Chunk]:
        return await anext(self._events, [])

    def _closer(self) -> Coroutine[Any, Any, None] | None:
        self._buffer.clear()  # closed: what was received but not read is not read either
        if self._done:
            return None
        self._done = True
        return _aclose(self._events)

    def __del__(self) -> None:
        # An abandoned stream still holds its deployment and connection: close it on the loop.
        closer = self._closer()
        if closer is not None:
            with contextlib.suppress(RuntimeError):  # the router, so the stream, is closed
                self._router._submit(closer)


class SyncStream(_Stream, Iterator[Chunk]):
    """Chunk dicts of a streamed answer; ``RouterError`` if the answer fails midway."""

    def __iter__(self) -> SyncStream:
        return self

    def __next__(self) -> Chunk:
        while not self._buffer:
            if self._done:
                raise StopIteration
            try:
                batch = self._router._run(self._pull())
            except BaseException:
                self._done = True
                raise
            if not batch:
                self._done = True
            self._buffer.extend(batch)
        return self._buffer.popleft()

    def close(self) -> None:
        """Stop reading: the upstream request ends and its deployment is released."""
        closer = self._closer()
        if closer is not None:
            self._router._run(closer)

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncStream(_Stream):
    """Chunk dicts of a streamed answer; ``RouterError`` if the answer fails midway."""

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Chunk:
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            try:
                batch = await self._router._arun(self._pull())
            except BaseException:
                self._done = True
                raise
            if not batch:
                self._done = True
            self._buffer.extend(batch)
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop reading: the upstream request ends and its deployment is released."""
        closer = self._closer()
        if closer is not None:
            await self._router._arun(closer)

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _aclose(events: AsyncGenerator[list[Chunk], None]) -> None:
    # run_coroutine_threadsafe takes coroutines only, not aclose()'s awaitable.
    await events.aclose()


async def _make_gateway(config: GatewayConfig, record: Any) -> Gateway:
    return Gateway(config, record=record)  # its aiohttp session binds to the running loop


def _gateway_config(
    config: Config | GatewayConfig | str | Path | Mapping[str, Any] | None,
    env: Mapping[str, str] | None,
    model_list: list[dict[str, Any]] | None,
    router_settings: dict[str, Any],
) -> GatewayConfig:
    env = os.environ if env is None else env
    if model_list is not None or router_settings:
        if config is not None:
            raise TypeError("pass either a config or LiteLLM's keyword form, not both")
        config = {"model_list": model_list or [], "router_settings": router_settings}
    if config is None:
        raise TypeError("Router needs a config, a config path or model_list=[...]")
    if isinstance(config, str | Path):
        config = load_config(config, env)
    if isinstance(config, Config):
        gateway = config.gateway
    elif isinstance(config, GatewayConfig):
        gateway = config
    else:
        # In-process calls are not gateway clients: general_settings' access control, which
        # LiteLLM's Router ignores too, has nothing to guard here.
        gateway = parse_gateway(config, env, accept_unenforced_auth=True)
    if gateway is not None and gateway.skipped and not gateway.deployments:
        raise ConfigError(gateway.nothing_to_serve)
    if gateway is None or not gateway.deployments:
        raise ConfigError(
            f"no model_list: the Router has nothing to route (expected one of {sorted(SECTIONS)})"
        )
    return gateway


def _decode(decoder: SSEDecoder, frames: list[bytes]) -> list[Chunk]:
    out = []
    for event in decoder.feed(b"".join(frames)):
        if event.data != "[DONE]":
            out.append(json.loads(event.data))
    return out


def _router_error(exc: GatewayError) -> RouterError:
    return RouterError(exc.status, exc.error_class, exc.message, exc.retry_after_s)
