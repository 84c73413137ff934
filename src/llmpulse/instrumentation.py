"""Measure an official ``openai`` or ``anthropic`` SDK client's calls in-process.

``instrument(client)`` wraps the transport of the SDK's own HTTP client (httpx2, or httpx when the
caller passed one). The tap sees every HTTP attempt exactly as the SDK does — request, status and
headers, body chunks with their arrival times, transport errors — and passes everything through
untouched, so return types, exceptions, streams, retries and ``with_raw_response`` stay the SDK's
own. Measuring at the wire also lets the probe's protocol parsers (llmpulse.providers) read
usage, served model and errors, so traffic and probes are judged by the same code, and timed by
the same rule (``llmpulse.timing``): httpcore's ``trace`` extension says when the request went out,
as aiohttp's hook tells the probe.

One SDK call is one result, however many HTTP attempts its own retries made: the client's
``request`` (the SDK's retry loop) is wrapped only to mark where a call begins and ends (its
arguments, result and exceptions pass through untouched), and the call's last attempt — the one
that answered, or the final failure — is recorded with the number of attempts. Only the SDK
decides whether an attempt is retried, so only the end of its loop says which attempt is last.

The caller's path only timestamps and keeps the response bytes (bounded); a ``Recorder`` thread
turns captures into ``CheckResult``s, calls the callback and hands them to the writer every
llmpulse process writes through (``store.writer``): each is in the store, or else in the local
spool, within about 250 ms of its call's end, and the spool is replayed once the store takes
writes again. Prompts are never read beyond the model name, the stream flag and the caller's
attribution labels (``user``, ``metadata.user_id``/``tags``: ``llmpulse.attribution``);
completions are parsed for usage and discarded, never stored.
"""

from __future__ import annotations

import atexit
import contextvars
import dataclasses
import functools
import importlib
import json
import logging
import queue
import socket
import threading
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from llmpulse import attribution, catalog
from llmpulse.attribution import NOBODY, LabelError, Owner, read_owner
from llmpulse.errors import ErrorClass
from llmpulse.providers import PROTOCOLS, ProtocolError
from llmpulse.providers.base import Completion, Protocol, loads_object
from llmpulse.ratelimit import parse_ratelimit, parse_retry_after
from llmpulse.result import CheckKind, CheckResult, Source, Usage
from llmpulse.secrets import NO_SECRETS, Redactor
from llmpulse.sse import SSEDecoder, SSEError
from llmpulse.store import Store
from llmpulse.store.writer import open_recording
from llmpulse.target import preset_target
from llmpulse.timing import Stopwatch

__all__ = ["Recorder", "instrument", "recorder_for"]

log = logging.getLogger(__name__)

C = TypeVar("C")
ResultCallback = Callable[[CheckResult], None]

# Response bytes kept per attempt; beyond this usage is unknown, but timing is still measured.
MAX_CAPTURE_BYTES = 8 << 20
# httpcore's trace event as a connected request starts writing its headers: when aiohttp calls
# the probe's on_request_headers_sent.
_HEADERS_GOING_OUT = ".send_request_headers.started"
_ENDPOINTS = {"openai": "/chat/completions", "azure": "/chat/completions", "anthropic": "/messages"}
_recorders: weakref.WeakKeyDictionary[Any, Recorder] = weakref.WeakKeyDictionary()


@dataclasses.dataclass(slots=True)
class _Capture:
    """One HTTP attempt as the tap saw it; mutated only by the thread making the call."""

    provider: str
    target: str | None
    model: str | None
    stream: bool
    attempts: int | None
    stopwatch: Stopwatch
    wall: datetime
    call: _SdkCall | None = None
    owner: Owner = NOBODY
    label_problem: str | None = None  # the call's labels were refused: why
    status: int | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    chunks: list[tuple[float, bytes]] = dataclasses.field(default_factory=list)
    size: int = 0
    truncated: bool = False
    ended: float | None = None
    complete: bool = False
    error: BaseException | None = None

    def add(self, chunk: bytes) -> None:
        now = time.perf_counter()
        self.size += len(chunk)
        if self.size <= MAX_CAPTURE_BYTES:
            self.chunks.append((now, chunk))
        else:
            self.truncated = True
            # Keep the arrival time: the last text chunk still bounds tokens/s and latency.
            self.chunks.append((now, b""))


class _SdkCall:
    """One SDK call: its HTTP attempts (the SDK's retries), recorded once, as its last attempt.

    ``done`` runs when the SDK's retry loop returned or raised. The last attempt is submitted
    when both it ended and the loop is done: a returned stream ends only once it is read.
    """

    __slots__ = ("attempts", "last", "looping", "submit")

    def __init__(self) -> None:
        self.attempts = 0
        self.last: _Capture | None = None
        self.looping = True
        self.submit: Callable[[_Capture], None] | None = None

    def began(self, capture: _Capture, submit: Callable[[_Capture], None]) -> None:
        self.attempts += 1
        self.last, self.submit = capture, submit  # an earlier attempt was retried: superseded
        capture.call = self

    def ended(self, capture: _Capture) -> None:
        if capture is self.last and not self.looping:
            self._emit()

    def done(self) -> None:
        self.looping = False
        if self.last is not None and self.last.ended is not None:
            self._emit()

    def _emit(self) -> None:
        capture, self.last = self.last, None
        if capture is not None and self.submit is not None:
            capture.attempts = self.attempts
            self.submit(capture)


_current_call: contextvars.ContextVar[_SdkCall | None] = contextvars.ContextVar(
    "llmpulse_sdk_call", default=None
)


class Recorder:
    """Turns captures into results off the caller's path: each goes to the callback, and to
    the store through a ``store.writer.Recording`` (stored within about 250 ms, in the store or
    else in the local spool).

    ``store``: where results live (a ``postgresql://`` URL, ``sqlite:///`` URL or file path:
    opened here, and closed by ``close``), a ``Store`` (written through as it is; the caller
    closes it, after this), or None (the callback only). Its spool is named after this host
    (``<host>-sdk``): processes and recorders of a host writing to one store each hold their
    own, and the next to start replays what a killed one left. ``flush()`` blocks until
    everything submitted so far is recorded and stored; ``close()`` (also run at exit) flushes
    and stops the threads.
    """

    def __init__(
        self,
        store: Store | str | Path | None = None,
        callback: ResultCallback | None = None,
        *,
        max_queue: int = 100_000,
        redactor: Redactor = NO_SECRETS,
    ) -> None:
        self.recording = (
            None if store is None else open_recording(store, f"{socket.gethostname()}-sdk")
        )
        self._owns_store = not isinstance(store, Store)
        self.callback = callback
        # Captured calls are provider text: redacted as they become results.
        self.redact = redactor
        self.dropped = 0
        self._queue: queue.Queue[_Capture | CheckResult | threading.Event | None] = queue.Queue(
            max_queue
        )
        self._closed = False
        if self.recording is not None:
            self.recording.start()  # replays what a predecessor left in the spool, at once
        self._thread = threading.Thread(target=self._run, name="llmpulse-recorder", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def submit(self, capture: _Capture | CheckResult) -> None:
        """Queue a captured call (measured here) or a result built elsewhere (the gateway's)."""
        try:
            self._queue.put_nowait(capture)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("llmpulse recorder queue full: %d results dropped", self.dropped)

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until all submitted captures are recorded and stored (in the store, or in the
        spool while the store refuses them); False on timeout."""
        if self._closed:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        done = threading.Event()
        self._queue.put(done)
        if not done.wait(timeout):
            return False
        if self.recording is None:
            return True
        return self.recording.flush(None if deadline is None else deadline - time.monotonic())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)  # after everything submitted so far
        self._thread.join(timeout=30)
        atexit.unregister(self.close)
        if self.recording is not None:
            self.recording.close()
            if self._owns_store:
                self.recording.writer.store.close()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, threading.Event):
                item.set()  # a flush: everything queued before it is recorded
            elif isinstance(item, _Capture):
                self._record(item)
            else:
                self._accept(item)

    def _record(self, capture: _Capture) -> None:
        try:
            result = self.redact.result(build_result(capture))
            capture.owner.redacted(self.redact).stamp(result)
            if capture.label_problem:
                result.warnings.append(capture.label_problem)
        except Exception:
            log.exception("llmpulse could not build a result from a captured call")
            return
        self._accept(result)

    def _accept(self, result: CheckResult) -> None:
        if self.callback is not None:
            try:
                self.callback(result)
            except Exception:
                log.exception("llmpulse recorder callback failed")
        if self.recording is not None:
            self.recording.add(result)


def instrument(
    client: C,
    *,
    store: Store | str | Path | None = None,
    target: str | None = None,
    recorder: ResultCallback | None = None,
    user: str | None = None,
    tags: Iterable[str] = (),
    session: str | None = None,
) -> C:
    """Measure every chat completion / message call ``client`` makes; returns ``client`` itself.

    Works for ``openai.OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI``, ``AsyncAzureOpenAI``,
    ``anthropic.Anthropic`` and ``AsyncAnthropic``. Each SDK call becomes one
    ``CheckResult(source=traffic)`` named ``target`` (default ``"<provider>/<model>"``): its
    final outcome and the timing of its last attempt, with ``attempts`` counting the SDK's own
    retries. It is passed to ``recorder`` and written to ``store``: a ``Store``, or where one is
    (a ``postgresql://`` URL, its ``options=-csearch_path=...`` naming the schema, a
    ``sqlite:///`` URL or a file path), through the writer every llmpulse process uses, local
    spool included (see ``Recorder``). Clients made from it with ``with_options``/``copy``
    share its HTTP client and are measured too.

    ``user``, ``tags`` and ``session`` label every call of the client; a call's own labels
    (``llmpulse.attribution``) add to them: its ``attributed()`` blocks, the user the SDK sends
    (OpenAI ``user=``, Anthropic ``metadata={"user_id": ...}``) and ``x-llmpulse-*`` headers
    (``extra_headers=``). ``LabelError`` (a ``ValueError``) for a label past its bounds.
    """
    defaults = attribution.labels(user, tags, session)
    provider = _provider_of(client)
    http: Any = getattr(client, "_client", None)  # the SDK's httpx client, untyped here
    lib = _http_library(http)
    if lib is None:
        raise TypeError(f"cannot instrument {type(client).__name__}: unknown HTTP client {http!r}")
    if client in _recorders:
        raise ValueError("client is already instrumented")
    # The SDK's own key (and Anthropic's auth token) is what a provider would echo back.
    keys = (getattr(client, name, None) for name in ("api_key", "auth_token"))
    sink = Recorder(store, recorder, redactor=Redactor(k for k in keys if isinstance(k, str)))
    tap_sync, tap_async = _tap_types(lib)
    tap = tap_async if isinstance(http, lib.AsyncClient) else tap_sync

    def wrap(transport: Any) -> Any:
        return tap(transport, provider, target, sink.submit, defaults)

    http._transport = wrap(http._transport)
    http._mounts = {pattern: None if t is None else wrap(t) for pattern, t in http._mounts.items()}
    _mark_calls(client, isinstance(http, lib.AsyncClient))
    _recorders[client] = sink
    return client


def _mark_calls(client: Any, is_async: bool) -> None:
    """Wrap ``client.request`` (the SDK's retry loop) to mark one call's attempts; copies made
    with ``copy``/``with_options`` are marked too, as they share the tapped transport."""
    loop = client.request
    if is_async:

        async def request(*args: Any, **kwargs: Any) -> Any:
            call = _SdkCall()
            token = _current_call.set(call)
            try:
                return await loop(*args, **kwargs)
            finally:
                _current_call.reset(token)
                _safe("ending a call", call.done)

    else:
        # Not the async variant's signature, by design: mypy wants conditional variants alike.
        def request(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            call = _SdkCall()
            token = _current_call.set(call)
            try:
                return loop(*args, **kwargs)
            finally:
                _current_call.reset(token)
                _safe("ending a call", call.done)

    copy = client.copy

    def copied(*args: Any, **kwargs: Any) -> Any:
        new = copy(*args, **kwargs)
        _mark_calls(new, is_async)
        return new

    client.request = request
    client.copy = client.with_options = copied


def recorder_for(client: Any) -> Recorder:
    """The Recorder of an instrumented client: ``flush()`` it before reading the store."""
    return _recorders[client]


def _provider_of(client: Any) -> str:
    package = type(client).__module__.split(".")[0]
    names = {cls.__name__ for cls in type(client).__mro__}
    if package == "openai" and names & {"AzureOpenAI", "AsyncAzureOpenAI"}:
        return "azure"
    if package == "openai" and names & {"OpenAI", "AsyncOpenAI"}:
        return "openai"
    if package == "anthropic" and names & {"Anthropic", "AsyncAnthropic"}:
        return "anthropic"
    raise TypeError(f"cannot instrument {type(client).__name__}: not an openai/anthropic client")


def _http_library(http: Any) -> Any:
    for cls in type(http).__mro__:
        if cls.__module__.split(".")[0] in ("httpx", "httpx2"):
            return importlib.import_module(cls.__module__.split(".")[0])
    return None


def _begin(
    request: Any,
    provider: str,
    target: str | None,
    submit: Callable[[_Capture], None],
    is_async: bool,
    defaults: Owner,
) -> _Capture | None:
    """A capture for a completion request, or None for anything else (passed through unseen)."""
    if request.method != "POST" or not request.url.path.endswith(_ENDPOINTS[provider]):
        return None
    model, stream, body = None, False, None
    try:
        body = json.loads(request.content)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        stream = body.get("stream") is True
    except Exception:
        pass  # a body we cannot read is still measured; the response may name the model
    owner, problem = _owner(body, request.headers, provider, defaults)
    capture = _Capture(
        provider=provider,
        target=target,
        model=model,
        stream=stream,
        attempts=None,
        stopwatch=Stopwatch(),
        wall=datetime.now(UTC),
        owner=owner,
    )
    capture.label_problem = problem
    _trace_sent(request, capture.stopwatch, is_async)
    call = _current_call.get()
    if call is not None:
        call.began(capture, submit)
    return capture


def _owner(body: Any, headers: Any, provider: str, defaults: Owner) -> tuple[Owner, str | None]:
    """The call's labels: the client's ``defaults``, the caller's ``attributed()`` blocks, the
    user and LiteLLM tags in the SDK's body, the ``x-llmpulse-*`` headers. Labels past their
    bounds cannot fail the caller's call: the client's defaults stand, with a warning why."""
    user: Any = None
    tags: Any = ()
    if isinstance(body, dict):
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        user = metadata.get("user_id") if provider == "anthropic" else body.get("user")
        tags = metadata.get("tags") or ()
    try:
        return read_owner(
            user=user,
            tags=tags,
            headers=headers,
            within=attribution.nested(defaults, attribution.current()),
            user_field="metadata.user_id" if provider == "anthropic" else "user",
        ), None
    except LabelError as exc:
        return defaults, f"attribution labels left out: {exc}"


def _trace_sent(request: Any, stopwatch: Stopwatch, is_async: bool) -> None:
    """Have httpcore tell ``stopwatch`` when ``request`` starts to go out; a ``trace`` the caller
    set still sees every event. (Another transport never calls it: TTFT then counts from the
    attempt's start.)"""
    inner = request.extensions.get("trace")
    if is_async:

        async def trace(name: str, info: dict[str, Any]) -> None:
            if name.endswith(_HEADERS_GOING_OUT):
                stopwatch.sent()
            if inner is not None:
                await inner(name, info)

    else:

        def trace(name: str, info: dict[str, Any]) -> None:  # type: ignore[misc]
            if name.endswith(_HEADERS_GOING_OUT):
                stopwatch.sent()
            if inner is not None:
                inner(name, info)

    request.extensions["trace"] = trace


def _responded(capture: _Capture, response: Any) -> None:
    capture.status = response.status_code
    capture.headers = {k.lower(): v for k, v in response.headers.items()}


def _failed(capture: _Capture, error: BaseException, submit: Callable[[_Capture], None]) -> None:
    capture.error = error
    _end(capture, submit)


def _end(capture: _Capture, submit: Callable[[_Capture], None]) -> None:
    if capture.ended is None:
        capture.ended = time.perf_counter()
        if capture.call is not None:
            capture.call.ended(capture)  # submitted once the SDK stops retrying
        else:
            submit(capture)


def _safe(what: str, fn: Callable[[], Any]) -> Any:
    """Run measurement code; a bug in it is logged and must never break the caller's call."""
    try:
        return fn()
    except Exception:
        log.exception("llmpulse instrumentation failed while %s", what)
        return None


@functools.cache
def _tap_types(lib: Any) -> tuple[type, type]:
    """Transport and byte-stream wrappers built on ``lib``'s base classes (httpx or httpx2),
    whose clients check the types they get back."""

    # lib (httpx or httpx2, chosen at run time) is Any to the checker: so are these bases.
    class SyncTapStream(lib.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, capture: _Capture, submit: Callable[..., None]) -> None:
            self._inner, self._capture, self._submit = inner, capture, submit

        def __iter__(self) -> Iterator[bytes]:
            capture = self._capture
            try:
                for chunk in self._inner:
                    capture.add(chunk)
                    yield chunk
            except Exception as exc:
                _safe(
                    "recording a read error", functools.partial(_failed, capture, exc, self._submit)
                )
                raise
            capture.complete = True
            _safe("ending a response", lambda: _end(capture, self._submit))

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                _safe("ending a response", lambda: _end(self._capture, self._submit))

    class AsyncTapStream(lib.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, capture: _Capture, submit: Callable[..., None]) -> None:
            self._inner, self._capture, self._submit = inner, capture, submit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            capture = self._capture
            try:
                async for chunk in self._inner:
                    capture.add(chunk)
                    yield chunk
            except Exception as exc:
                _safe(
                    "recording a read error", functools.partial(_failed, capture, exc, self._submit)
                )
                raise
            capture.complete = True
            _safe("ending a response", lambda: _end(capture, self._submit))

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                _safe("ending a response", lambda: _end(self._capture, self._submit))

    class _Tap:
        def __init__(
            self,
            inner: Any,
            provider: str,
            target: str | None,
            submit: Callable[..., None],
            labels: Owner,
        ) -> None:
            self._inner, self._provider, self._target = inner, provider, target
            self._submit, self._labels = submit, labels

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)  # pool settings etc. stay visible

    class SyncTap(_Tap, lib.BaseTransport):  # type: ignore[misc]
        def handle_request(self, request: Any) -> Any:
            capture = _safe(
                "reading a request",
                lambda: _begin(
                    request, self._provider, self._target, self._submit, False, self._labels
                ),
            )
            if capture is None:
                return self._inner.handle_request(request)
            try:
                response = self._inner.handle_request(request)
            except Exception as exc:
                _safe("recording an error", functools.partial(_failed, capture, exc, self._submit))
                raise
            _safe("reading a response", lambda: _responded(capture, response))
            response.stream = SyncTapStream(response.stream, capture, self._submit)
            return response

        def close(self) -> None:
            self._inner.close()

    class AsyncTap(_Tap, lib.AsyncBaseTransport):  # type: ignore[misc]
        async def handle_async_request(self, request: Any) -> Any:
            capture = _safe(
                "reading a request",
                lambda: _begin(
                    request, self._provider, self._target, self._submit, True, self._labels
                ),
            )
            if capture is None:
                return await self._inner.handle_async_request(request)
            try:
                response = await self._inner.handle_async_request(request)
            except Exception as exc:
                _safe("recording an error", functools.partial(_failed, capture, exc, self._submit))
                raise
            _safe("reading a response", lambda: _responded(capture, response))
            response.stream = AsyncTapStream(response.stream, capture, self._submit)
            return response

        async def aclose(self) -> None:
            await self._inner.aclose()

    return SyncTap, AsyncTap


# --- turning a capture into a result (recorder thread) ----------------------------------------


def build_result(capture: _Capture) -> CheckResult:
    provider = capture.provider
    protocol: Protocol = PROTOCOLS[provider]
    headers = capture.headers
    content_type = headers.get("content-type", "")
    streamed = capture.stream or "text/event-stream" in content_type
    model = capture.model or "unknown"
    result = CheckResult(
        target=capture.target or f"{provider}/{model}",
        provider=provider,
        model=model,
        check=CheckKind.STREAM if streamed else CheckKind.INFERENCE,
        timestamp=capture.wall,
        ok=False,
        http_status=capture.status,
        source=Source.TRAFFIC,
        attempts=capture.attempts,
    )
    if capture.ended is not None:
        result.latency_ms = capture.stopwatch.elapsed_s(capture.ended) * 1000
    if capture.status is None:
        _fail(result, _transport_error_class(capture.error), _describe(capture.error))
        return result
    result.ratelimit = parse_ratelimit(headers)
    result.request_id = next(
        (headers[h] for h in protocol.request_id_headers if h in headers), None
    )
    chunks = _decoded(capture, result)
    if capture.status >= 400:
        error = protocol.parse_error(capture.status, b"".join(c for _, c in chunks), headers)
        result.retry_after_s = parse_retry_after(headers) or error.retry_after_s
        _fail(result, error.error_class, error.message)
        return result
    completion: Completion | None
    if streamed:
        completion = _read_stream(capture, chunks, protocol, result)
    else:
        completion = _read_body(capture, chunks, protocol, result)
    _finish(capture, result, completion)
    return result


def _decoded(capture: _Capture, result: CheckResult) -> list[tuple[float, bytes]]:
    """The body's chunks as the SDK saw them after content decoding, with arrival times."""
    encoding = capture.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return capture.chunks
    if encoding not in ("gzip", "deflate"):
        result.warnings.append(f"response body encoded as {encoding!r}; usage not read")
        return [(t, b"") for t, _ in capture.chunks]
    inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
    try:
        return [(t, inflater.decompress(c)) for t, c in capture.chunks]
    except zlib.error:
        result.warnings.append(f"response body is not valid {encoding}; usage not read")
        return [(t, b"") for t, _ in capture.chunks]


def _read_body(
    capture: _Capture, chunks: Iterable[tuple[float, bytes]], protocol: Protocol, r: CheckResult
) -> Completion | None:
    if capture.error is not None:
        _fail(r, _transport_error_class(capture.error), _describe(capture.error))
        return None
    if not capture.complete or capture.truncated:
        r.ok = True  # the caller stopped reading, or the body was too big to keep
        r.warnings.append("response body not read to the end; usage unknown")
        return None
    try:
        completion = protocol.parse_completion(loads_object(b"".join(c for _, c in chunks)))
    except ProtocolError as exc:
        _fail(r, ErrorClass.PROTOCOL, f"unreadable completion: {exc}")
        return None
    if completion.error is not None:
        _fail(r, completion.error.error_class, completion.error.message)
    elif completion.blocked:
        _fail(r, ErrorClass.CONTENT_FILTER, completion.blocked)
    else:
        r.ok = True
    return completion


def _read_stream(
    capture: _Capture, chunks: Iterable[tuple[float, bytes]], protocol: Protocol, r: CheckResult
) -> Completion:
    decoder, parser = SSEDecoder(), protocol.stream_parser()
    stopwatch = capture.stopwatch
    failure: tuple[ErrorClass, str] | None = None
    try:
        for at, chunk in chunks:
            for event in decoder.feed(chunk):
                update = parser.feed(event)
                if update.error is not None and failure is None:
                    failure = (update.error.error_class, f"error event: {update.error.message}")
                stopwatch.content(at, update.output_chars)
    except (ProtocolError, SSEError) as exc:
        failure = failure or (ErrorClass.PROTOCOL, f"malformed stream: {exc}")
    completion = parser.completion
    if failure is None and capture.error is not None:
        failure = (_transport_error_class(capture.error), _describe(capture.error))
    stopwatch.apply(r, completion.usage, whole=failure is None and parser.done)
    if failure is not None:
        _fail(r, *failure)
    elif capture.truncated:
        r.ok = True
        r.warnings.append("stream too large to keep; usage may be unknown")
    elif not parser.done and capture.complete:
        _fail(r, ErrorClass.PROTOCOL, f"stream ended without {protocol.terminal_event}")
    elif completion.blocked:
        _fail(r, ErrorClass.CONTENT_FILTER, completion.blocked)
    else:
        r.ok = True
        if not parser.done:
            r.warnings.append("the caller closed the stream before its end")
    return completion


def _finish(capture: _Capture, r: CheckResult, completion: Completion | None) -> None:
    if completion is not None:
        r.response_model = completion.response_model
        r.system_fingerprint = completion.system_fingerprint
        r.finish_reason = completion.finish_reason
        if completion.usage is not None:
            r.usage = completion.usage
    if capture.model is None and r.response_model:
        r.model = r.response_model
        r.target = capture.target or f"{r.provider}/{r.model}"
    if r.usage == Usage():
        r.warnings.append("the provider reported no token usage")
    target = preset_target(r.provider, r.model)
    cost, warning = catalog.cost_usd(target, r.usage, r.response_model)
    r.cost_usd = cost
    if warning:
        r.warnings.append(warning)
    r.context_window = catalog.context_window(target)


def _fail(result: CheckResult, error_class: ErrorClass, message: str) -> None:
    result.ok = False
    result.error_class = error_class
    result.error_message = message


def _transport_error_class(error: BaseException | None) -> ErrorClass:
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & {"TimeoutException", "TimeoutError"}:
        return ErrorClass.TIMEOUT
    if names & {"RemoteProtocolError", "DecodingError"}:
        return ErrorClass.PROTOCOL
    return ErrorClass.CONNECTION


def _describe(error: BaseException | None) -> str:
    return f"{type(error).__name__}: {error}" if error is not None else "no response"
