"""The simulator's HTTP server: routing, fault injection, status pages, control endpoints,
ground truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Literal, TypeVar

import uvicorn
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmpulse.aio import new_event_loop
from llmpulse.sim import (
    anthropic,
    bedrock,
    gemini,
    gemini_embeddings,
    openai,
    openai_embeddings,
    responses,
    statuspage,
    vertex,
    vertex_anthropic,
)
from llmpulse.sim.billing import BillingApi
from llmpulse.sim.common import Limit, Plan, answer_pieces, dumps, fragments, new_id
from llmpulse.sim.scenario import (
    ModelBehavior,
    ProviderBill,
    Scenario,
    ScenarioError,
    StatusPage,
    default_scenario,
    describe_error,
    merge,
    parse_scenario,
)

PROTOCOLS: dict[str, ModuleType] = {
    "openai": openai,
    "azure": openai,
    "anthropic": anthropic,
    "gemini": gemini,
    "vertex": vertex,
    "vertex-anthropic": vertex_anthropic,
    "responses": responses,
    "openai_embeddings": openai_embeddings,
    "azure_embeddings": openai_embeddings,
    "gemini_embeddings": gemini_embeddings,
    "bedrock": bedrock,
}
STREAM_FAULTS = frozenset({"stall", "cut", "malformed", "no_terminal", "no_done", "error_event"})
# Faults that strike after fault_after_tokens; no_done strikes after the whole answer.
_MID_STREAM = STREAM_FAULTS - {"no_done"}
BODY_FAULTS = frozenset({"garbage_body", "truncated_body"})
HANG_CAP = 3600.0  # hang/stall never outlive an hour even if the client never leaves
LOG_SIZE = 20000
_MIB = 1 << 20
_PAD = b"a" * _MIB
_DEFAULT = ModelBehavior()
# Where a status page is served, by the wire format a monitor reads (its ``SourceKind``).
STATUS_PATHS = {
    "statuspage": "api/v2/summary.json",
    "google": "incidents.json",
    "aws": "rss/{feed}.rss",  # the feed is named after the page, as bedrock-{region}.rss
    "azure": "azure/feed/",
    "rss": "feed.xml",
}
StatusFormat = Literal["statuspage", "google", "aws", "azure", "rss"]
_Timed = TypeVar("_Timed", ModelBehavior, StatusPage)


class SimulatedDisconnect(Exception):
    """Raised after the response started so uvicorn drops the connection mid-body."""


class _QuietFaults(logging.Filter):
    # uvicorn logs every exception that closes a connection; ours are intentional.
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SimulatedDisconnect)


logging.getLogger("uvicorn.error").addFilter(_QuietFaults())


async def _sleep_until(deadline: float) -> None:
    """Sleep until ``deadline`` on ``time.monotonic()``, the clock every plan's ``t0`` is read
    from. Not ``loop.time()``: uvloop's is cached per loop turn in whole milliseconds, so a
    ``t0`` read from it sits up to a millisecond before the request arrived, and the ground
    truth could exceed the TTFT a client measured (by 35 us, once). uvloop's timers can also
    fire up to 1 ms early: sleep again for what is left, so nothing goes out before its time."""
    while (delay := deadline - time.monotonic()) > 0:
        await asyncio.sleep(delay)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class SimResponse:
    """ASGI response that can delay its headers, stream, hang or cut, and stops on disconnect."""

    def __init__(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes | AsyncIterator[bytes] = b"",
        *,
        start_at: float = 0.0,
        hang: bool = False,
        truncate: bool = False,
        content_length: int | None = None,
    ) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.start_at, self.hang, self.truncate = start_at, hang, truncate
        self.logged: dict[str, Any] | None = None  # its ground truth, told if the client leaves
        if isinstance(body, bytes):
            content_length = len(body)
        if content_length is not None:
            self.headers["content-length"] = str(content_length)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Race the response against the client leaving, so delays/stalls end with the client.
        task = asyncio.ensure_future(self._send(send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            watcher.cancel()
            task.result()
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SimulatedDisconnect):
                await task
            if self.logged is not None:
                self.logged["client_left"] = True

    async def _send(self, send: Send) -> None:
        if self.hang:
            await asyncio.sleep(HANG_CAP)
            raise SimulatedDisconnect
        await _sleep_until(self.start_at)
        raw = [(k.encode(), v.encode()) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        if isinstance(self.body, bytes):
            if self.truncate:  # promise Content-Length, deliver half, then drop the socket
                half = self.body[: len(self.body) // 2]
                await send({"type": "http.response.body", "body": half, "more_body": True})
                raise SimulatedDisconnect
            await send({"type": "http.response.body", "body": self.body})
            return
        async for chunk in self.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


# Request fields whose strings are prompt text, in the protocols served.
_TEXT_KEYS = frozenset({"content", "text", "system", "input", "instructions"})
CHARS_PER_TOKEN = 4  # the usual estimate of English text; a prompt counts ceil(chars / 4)


def count_tokens(obj: Any) -> int:
    """Input size as usage reports it: a token per four characters of prompt text (the strings
    under content/text/system/input/instructions keys, at any depth), rounded up."""
    return math.ceil(_text_chars(obj) / CHARS_PER_TOKEN)


def _text_chars(obj: Any, text: bool = False) -> int:
    if isinstance(obj, str):
        return len(obj) if text else 0
    if isinstance(obj, dict):
        return sum(_text_chars(v, k in _TEXT_KEYS) for k, v in obj.items())
    if isinstance(obj, list):
        return sum(_text_chars(v, text) for v in obj)
    return 0


class SimState:
    """Mutable simulator state shared by all requests: behaviour, timeline clock, ground truth."""

    def __init__(self, scenario: Scenario, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self.log: deque[dict[str, Any]] = deque(maxlen=LOG_SIZE)
        self.seq = 0
        self.created = int(time.time())
        # The admin APIs' reports; its log lists each report request (path, query).
        self.billing = BillingApi(lambda: self.bills)
        self.tokens = vertex.TokenIssuer(lambda: self.scenario.google_auth)  # Vertex's OAuth2
        self.load(scenario)

    def load(self, scenario: Scenario | None = None) -> None:
        if scenario is not None:
            self.scenario = scenario
            self.base = dict(scenario.models)
            self.pages = dict(scenario.status_pages)
            self.bills: dict[str, ProviderBill] = {str(k): v for k, v in scenario.billing.items()}
        self.started = time.monotonic()
        # Wall clock minus the monotonic one, read once: a scripted change's wall time is then
        # fixed by ``started``, so a page's incident keeps one start (and one id) however often
        # it is polled, where reading both clocks at every poll made it jitter.
        self.wall_offset = time.time() - time.monotonic()
        self.log.clear()
        self._cache: dict[tuple[str, int], ModelBehavior] = {}
        self._page_cache: dict[tuple[str, int], StatusPage] = {}
        self._windows: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    def scenario_time(self) -> float:
        return (time.monotonic() - self.started) * self.speed

    def effective(self, name: str) -> ModelBehavior | None:
        """Base behaviour with every timeline entry due by now applied (cached per step)."""
        base = self.base.get(name)
        return None if base is None else _in_force(self._cache, name, base, self.scenario_time())

    def effective_page(self, name: str) -> StatusPage | None:
        """A status page with every timeline entry due by now applied."""
        base = self.pages.get(name)
        return (
            None if base is None else _in_force(self._page_cache, name, base, self.scenario_time())
        )

    def patch(self, name: str, data: dict[str, Any]) -> ModelBehavior:
        self.base[name] = _patched(self.base.get(name), data, ModelBehavior)
        self._cache = {k: v for k, v in self._cache.items() if k[0] != name}
        return self.effective(name) or self.base[name]

    def patch_page(self, name: str, data: dict[str, Any]) -> StatusPage:
        self.pages[name] = _patched(self.pages.get(name), data, StatusPage)
        self._page_cache = {k: v for k, v in self._page_cache.items() if k[0] != name}
        return self.effective_page(name) or self.pages[name]

    def snapshot(self, name: str, url: str) -> statuspage.Snapshot | None:
        """The page in force now, with wall-clock times of its last scripted changes."""
        base = self.pages.get(name)
        if base is None:
            return None
        t = self.scenario_time()
        page = _in_force(self._page_cache, name, base, t)

        def since(field: str | None) -> datetime:
            due = t - base.since(t, field)  # scenario time of the change in force
            return datetime.fromtimestamp(self.started + self.wall_offset + due / self.speed, UTC)

        return statuspage.Snapshot(
            name, page, url, since(None), since("incident"), since("maintenance")
        )

    def _used(self, key: tuple[str, str], amount: int, window: float) -> int:
        # Rolling window so "remaining" reflects real traffic when not pinned by the scenario.
        now = time.monotonic()
        q = self._windows.setdefault(key, deque())
        while q and q[0][0] <= now - window:
            q.popleft()
        q.append((now, amount))
        return sum(a for _, a in q)

    def limits(self, p: Plan, b: ModelBehavior) -> list[Limit]:
        rl = b.ratelimit
        if rl is None:
            return []
        out_tokens = p.text_tokens + p.reasoning_tokens
        buckets = (
            ("requests", 1, rl.requests_reset),
            ("tokens", p.input_tokens + out_tokens, rl.tokens_reset),
            ("input-tokens", p.input_tokens, rl.tokens_reset),
            ("output-tokens", out_tokens, rl.tokens_reset),
        )
        out = []
        for name, amount, reset in buckets:
            field = name.replace("-", "_")
            limit = getattr(rl, f"{field}_limit")
            if limit is None:
                continue
            remaining = getattr(rl, f"{field}_remaining")
            if remaining is None:
                remaining = max(0, limit - self._used((p.model, name), amount, reset))
            out.append(Limit(name, limit, remaining, reset))
        return out

    def record(self, p: Plan, status: int, error_kind: str | None) -> dict[str, Any]:
        self.seq += 1
        self.log.append(
            {
                "seq": self.seq,
                "request_id": p.request_id,
                "protocol": p.protocol,
                "model": p.model,
                "stream": p.stream,
                "received_at": round(time.time() - (time.monotonic() - p.t0), 6),
                "status": status,
                "fault": p.fault,
                "error_kind": error_kind,
                "ttft_ms": round(p.ttft * 1000, 3),
                "tokens_per_s": p.tokens_per_s,
                "output_tokens": p.text_tokens,
                "reasoning_tokens": p.reasoning_tokens,
                "input_tokens": p.input_tokens,
                "served_model": p.served_model,
                "body": p.body,
                # The client disconnected before the response was complete.
                "client_left": False,
            }
        )
        return self.log[-1]


def _in_force(
    cache: dict[tuple[str, int], _Timed], name: str, base: _Timed, scenario_time: float
) -> _Timed:
    """``base`` with its timeline entries due at ``scenario_time`` applied (cached per step)."""
    step = base.timeline_step(scenario_time)
    if step == 0:
        return base
    key = (name, step)
    if key not in cache:
        raw = base.model_dump(exclude={"timeline"})
        for entry in base.timeline[:step]:
            raw = merge(raw, entry.set)
        cache[key] = type(base).model_validate(raw)
    return cache[key]


def _patched(base: _Timed | None, data: dict[str, Any], kind: type[_Timed]) -> _Timed:
    return kind.model_validate(merge(base.model_dump(exclude_unset=True), data) if base else data)


def _plan(protocol: str, model: str, b: ModelBehavior, body: Any, stream: bool, t0: float) -> Plan:
    proto = PROTOCOLS[protocol]
    ttft = b.ttft * (1 + random.uniform(-b.jitter, b.jitter)) if b.jitter else b.ttft
    input_tokens = b.input_tokens if b.input_tokens is not None else max(1, count_tokens(body))
    ttft += input_tokens * b.prefill_ms_per_ktok / 1e6
    requested = proto.max_tokens(body) if isinstance(body, dict) else None
    answer = None if b.answer is None else answer_pieces(b.answer)
    text = b.output_tokens if answer is None else len(answer)
    reasoning = b.reasoning_tokens
    finish = "stop"
    if requested is not None and text + reasoning > requested:
        # Reasoning is spent first, so a tiny budget can leave no visible text at all.
        reasoning = min(reasoning, requested)
        text = max(0, min(text, requested - reasoning))
        finish = "length"
    tools = body.get("tools") if isinstance(body, dict) else None
    if protocol == "bedrock" and isinstance(body, dict):  # Converse offers them in toolConfig
        config = body.get("toolConfig")
        tools = config.get("tools") if isinstance(config, dict) else None
    tool, args = None, []
    if b.tool_call is not None and isinstance(tools, list) and tools:
        tool, args = b.tool_call, fragments(dumps(b.tool_call.arguments))
        text, finish = len(args), "tool_calls"
    options = body.get("stream_options") if isinstance(body, dict) else None
    latency = b.latency if b.latency is not None else ttft + text / b.tokens_per_s
    return Plan(
        protocol=protocol,
        model=model,
        served_model=b.served_model or model,
        request_id=new_id() + b.request_id_suffix,
        stream=stream,
        t0=t0,
        created=int(time.time()),
        ttft=ttft,
        latency=latency,
        tokens_per_s=b.tokens_per_s,
        text_tokens=text,
        reasoning_tokens=reasoning,
        input_tokens=input_tokens,
        cached_tokens=min(b.cached_tokens, input_tokens),
        finish=finish,
        behavior=b,
        tool=tool,
        tool_args=args,
        answer=answer,
        include_usage=bool(options.get("include_usage")) if isinstance(options, dict) else False,
        body=body,
    )


async def _stream_body(p: Plan, proto: ModuleType) -> AsyncIterator[bytes]:
    enc = proto.Stream(p)
    head = enc.head()
    if head:
        yield head
    n, fault = p.text_tokens, p.fault
    fault_at = min(n, p.behavior.fault_after_tokens) if fault in _MID_STREAM else -1
    terminal = fault in (None, "malformed", "no_done")
    first = p.t0 + p.ttft
    # Spacing chosen so tokens / (last - first) == tokens_per_s exactly.
    step = n / ((n - 1) * p.tokens_per_s) if n > 1 else 0.0
    for i in range(n + 1):
        if i == fault_at:
            if i == 0:
                await _sleep_until(first)
            if fault == "stall":
                await asyncio.sleep(HANG_CAP)
                raise SimulatedDisconnect
            if fault == "cut":
                raise SimulatedDisconnect
            if fault == "error_event":
                yield _echoed(enc.error_event(), p.echo)
                return
            if fault == "no_terminal":
                return
            yield proto.MALFORMED
        if i == n:
            break
        await _sleep_until(first + i * step)  # absolute schedule: lag never accumulates
        chunk = enc.token(i, terminal and i == n - 1)
        if chunk:  # Gemini sends a function call whole, in its last chunk
            yield chunk
    if n == 0:
        await _sleep_until(first)
    yield enc.tail(done=fault != "no_done")
    if fault == "no_done":  # the answer is whole but the stream never ends: hold it open
        await asyncio.sleep(HANG_CAP)
        raise SimulatedDisconnect


async def _huge_body(prefix: bytes, size: int, suffix: bytes) -> AsyncIterator[bytes]:
    yield prefix
    left = size - len(prefix) - len(suffix)
    while left > 0:
        chunk = _PAD if left >= _MIB else _PAD[:left]
        left -= len(chunk)
        yield chunk
    yield suffix


class SimApp:
    """Request handlers bound to one SimState."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    def _authorized(self, key: str | None) -> bool:
        keys = self.state.scenario.api_keys
        return bool(key) and (keys is None or key in keys)

    @staticmethod
    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return auth[7:].strip() if auth[:7].lower() == "bearer " else None

    async def handle(
        self,
        protocol: str,
        model: str,
        key: str | None,
        stream: bool,
        t0: float,
        body: Any,
        precheck: str | None = None,
        credentials: str = "",
        authorized: bool | None = None,  # the caller checked the credentials (Vertex's tokens)
    ) -> SimResponse:
        state, proto = self.state, PROTOCOLS[protocol]
        b = state.effective(model)
        p = _plan(protocol, model, b or _DEFAULT, body, stream, t0)
        if (b or _DEFAULT).echo_credentials:
            p.echo = credentials
            p.served_model = f"{p.served_model} ({credentials})"
        hdrs = _echo_ids(proto.headers(p, []), p.echo)
        if precheck is None and not (authorized or self._authorized(key)):
            precheck = "auth"
        bad = proto.validate(body) if isinstance(body, dict) else "Request body is not valid JSON."
        if precheck is None and bad:
            precheck = "bad_request"
        if precheck is None and b is None:
            precheck = "not_found"
        counted = b is not None and b.input_tokens is None
        if precheck is None and counted and b is not None and p.input_tokens > b.context_window:
            precheck = "context_length"  # a prompt counted past the model's window
        if precheck is not None:
            status, err = proto.error(precheck, p, bad if precheck == "bad_request" else None)
            state.record(p, status, precheck)
            return self._error(status, err, hdrs, p)
        assert b is not None
        hdrs = _echo_ids(proto.headers(p, state.limits(p, b)), p.echo)
        kind = self._pick_error(b)
        if kind in ("content_filter", "refusal"):
            p.finish = "content_filter"
            p.refusal = kind == "refusal"
        elif kind is not None:
            status, err = proto.error(kind, p)
            if b.retry_after is not None and status in (429, 503, 529):
                hdrs.update(proto.retry_headers(b.retry_after))
            state.record(p, status, kind)
            return self._error(status, err, hdrs, p)
        if b.fault and random.random() < b.fault_rate:
            applies = b.fault not in (BODY_FAULTS if stream else STREAM_FAULTS)
            p.fault = b.fault if applies else None
        response = self._success(p, proto, hdrs)
        response.logged = state.record(p, 200, kind)
        return response

    @staticmethod
    def _pick_error(b: ModelBehavior) -> str | None:
        roll, acc = random.random(), 0.0
        for kind, prob in b.errors.items():
            acc += prob
            if roll < acc:
                return kind
        return None

    @staticmethod
    def _json(status: int, obj: Any, hdrs: dict[str, str], start_at: float = 0.0) -> SimResponse:
        hdrs["content-type"] = "application/json"
        return SimResponse(status, hdrs, dumps(obj).encode(), start_at=start_at)

    def _error(self, status: int, obj: Any, hdrs: dict[str, str], p: Plan) -> SimResponse:
        """An error in the protocol's JSON, or as an HTML page (``error_format: html``); with
        ``echo_credentials``, its message repeats the request's credentials."""
        if isinstance(obj, dict) and bedrock.ERROR_TYPE_KEY in obj:
            # AWS rest-json: the error's type travels in a header, its message in the body.
            obj = dict(obj)
            hdrs[bedrock.ERROR_TYPE_KEY] = obj.pop(bedrock.ERROR_TYPE_KEY)
        if p.echo:
            obj = json.loads(_echoed(dumps(obj).encode(), p.echo))
        if p.behavior.error_format == "html":
            text = " ".join(_messages(obj)) or f"HTTP {status}"
            page = f"<html><body><h1>{status}</h1><p>{text}</p></body></html>\n"
            hdrs["content-type"] = "text/html"
            return SimResponse(status, hdrs, page.encode())
        return self._json(status, obj, hdrs)

    def _success(self, p: Plan, proto: ModuleType, hdrs: dict[str, str]) -> SimResponse:
        if p.fault == "hang":
            return SimResponse(200, hdrs, hang=True)
        if p.fault == "huge_body":
            size = int(p.behavior.huge_body_mb * _MIB)
            pre, suf = (b'data: {"pad":"', b'"}\n\n') if p.stream else (b'{"pad":"', b'"}')
            hdrs["content-type"] = proto.STREAM_CONTENT_TYPE if p.stream else "application/json"
            body = _huge_body(pre, size, suf)
            return SimResponse(200, hdrs, body, start_at=p.t0 + p.ttft, content_length=size)
        if p.stream:
            hdrs["content-type"] = proto.STREAM_CONTENT_TYPE
            hdrs["cache-control"] = "no-cache"
            return SimResponse(200, hdrs, _stream_body(p, proto))
        done = p.t0 + p.latency
        if p.fault == "garbage_body":
            hdrs["content-type"] = "application/json"
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
            return SimResponse(200, hdrs, page, start_at=done)
        resp = self._json(200, proto.completion(p), hdrs, start_at=done)
        resp.truncate = p.fault == "truncated_body"
        return resp

    # --- protocol endpoints -------------------------------------------------------------

    @staticmethod
    async def _body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            return None

    async def openai_chat(self, request: Request) -> SimResponse:
        t0 = time.monotonic()
        body = await self._body(request)
        d = body if isinstance(body, dict) else {}
        model = str(d.get("model", ""))
        return await self.handle(
            "openai",
            model,
            self._bearer(request),
            bool(d.get("stream")),
            t0,
            body,
            credentials=_credentials(request),
        )

    async def openai_responses(self, request: Request) -> SimResponse:
        t0 = time.monotonic()
        body = await self._body(request)
        d = body if isinstance(body, dict) else {}
        return await self.handle(
            "responses",
            str(d.get("model", "")),
            self._bearer(request),
            bool(d.get("stream")),
            t0,
            body,
            credentials=_credentials(request),
        )

    async def openai_embeddings(self, request: Request) -> SimResponse:
        t0 = time.monotonic()
        body = await self._body(request)
        model = str(body.get("model", "")) if isinstance(body, dict) else ""
        return await self.handle(
            "openai_embeddings",
            model,
            self._bearer(request),
            False,
            t0,
            body,
            credentials=_credentials(request),
        )

    async def azure_embeddings(self, request: Request) -> SimResponse | Response:
        t0 = time.monotonic()
        if "api-version" not in request.query_params:
            return _azure_404()
        body = await self._body(request)
        key = request.headers.get("api-key") or self._bearer(request)
        model = request.path_params["deployment"]
        return await self.handle(
            "azure_embeddings", model, key, False, t0, body, credentials=_credentials(request)
        )

    async def azure_chat(self, request: Request) -> SimResponse | Response:
        t0 = time.monotonic()
        if "api-version" not in request.query_params:
            return _azure_404()
        body = await self._body(request)
        d = body if isinstance(body, dict) else {}
        key = request.headers.get("api-key") or self._bearer(request)
        model = request.path_params["deployment"]
        return await self.handle(
            "azure", model, key, bool(d.get("stream")), t0, body, credentials=_credentials(request)
        )

    async def anthropic_messages(self, request: Request) -> SimResponse:
        t0 = time.monotonic()
        body = await self._body(request)
        d = body if isinstance(body, dict) else {}
        key = request.headers.get("x-api-key") or self._bearer(request)
        pre = None
        if self._authorized(key) and "anthropic-version" not in request.headers:
            pre = "missing_version"
        model = str(d.get("model", ""))
        return await self.handle(
            "anthropic",
            model,
            key,
            bool(d.get("stream")),
            t0,
            body,
            pre,
            credentials=_credentials(request),
        )

    async def gemini_call(self, request: Request) -> SimResponse | Response:
        t0 = time.monotonic()
        model, _, method = request.path_params["rest"].rpartition(":")
        if method not in ("generateContent", "streamGenerateContent", "embedContent"):
            return JSONResponse(
                {"error": {"code": 404, "message": "Not found", "status": "NOT_FOUND"}}, 404
            )
        body = await self._body(request)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        model = model.removeprefix("models/")
        stream = method == "streamGenerateContent"
        protocol = "gemini_embeddings" if method == "embedContent" else "gemini"
        return await self.handle(
            protocol, model, key, stream, t0, body, credentials=_credentials(request)
        )

    def _signed(self, request: Request, body: bytes) -> tuple[str | None, str, str]:
        """Bedrock's SigV4 check of ``request``: (error kind or None, key id, region)."""
        raw_path = request.scope["raw_path"].decode("latin-1")
        query = request.scope["query_string"].decode("latin-1")
        url = f"{request.url.scheme}://{request.headers.get('host', '')}{raw_path}"
        url += f"?{query}" if query else ""
        headers = dict(request.headers.items())
        return bedrock.verify(
            request.method, url, headers, body, self.state.scenario.aws_credentials
        )

    async def bedrock_call(self, request: Request) -> SimResponse | Response:
        t0 = time.monotonic()
        # The model id was one percent-encoded label; decoded, an ARN's "/" is in it.
        model, _, operation = request.path_params["rest"].rpartition("/")
        if model.startswith("arn:"):  # a foundation model's or an inference profile's ARN
            model = model.rsplit("/", 1)[-1]
        if operation not in ("converse", "converse-stream"):
            return JSONResponse(
                {"message": "Unknown operation"},
                404,
                headers={bedrock.ERROR_TYPE_KEY: "UnknownOperationException"},
            )
        problem, key, _ = self._signed(request, await request.body())
        return await self.handle(
            "bedrock",
            model,
            key,
            operation == "converse-stream",
            t0,
            await self._body(request),
            problem,
            credentials=_credentials(request),
        )

    async def bedrock_models(self, request: Request) -> SimResponse | Response:
        problem, key, region = self._signed(request, await request.body())
        if problem is None and not self._authorized(key):
            problem = "auth"
        if problem is not None:
            p = _plan("bedrock", "", _DEFAULT, None, False, 0.0)
            status, err = bedrock.error(problem, p)
            return self._error(status, err, bedrock.headers(p, []), p)
        items = {name: self.state.effective(name) or b for name, b in self.state.base.items()}
        names = [name for name, b in items.items() if b.listed]
        if request.scope["route"].name == "inference-profiles":
            return JSONResponse(bedrock.inference_profiles(names, region))
        return JSONResponse(bedrock.foundation_models(names, region))

    async def list_models(self, request: Request) -> Response:
        protocol = request.scope["route"].name
        proto = PROTOCOLS[protocol]
        if protocol == "azure" and "api-version" not in request.query_params:
            return _azure_404()
        key = {
            "openai": self._bearer(request),
            "azure": request.headers.get("api-key") or self._bearer(request),
            "anthropic": request.headers.get("x-api-key") or self._bearer(request),
            "gemini": request.headers.get("x-goog-api-key") or request.query_params.get("key"),
        }[protocol]
        if not self._authorized(key):
            p = _plan(protocol, "", _DEFAULT, None, False, 0.0)
            status, err = proto.error("auth", p)
            return Response(dumps(err), status, proto.headers(p, []), "application/json")
        items = {name: self.state.effective(name) or b for name, b in self.state.base.items()}
        listed = {name: b for name, b in items.items() if b.listed}
        return JSONResponse(proto.models(listed, self.state.created))

    # --- official status pages -----------------------------------------------------------

    async def status_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        human = f"{str(request.base_url).rstrip('/')}/statuspage/{name}"
        snap = self.state.snapshot(name, human)
        if snap is None:
            return JSONResponse({"error": f"no status page {name!r} in the scenario"}, 404)
        if snap.page.unavailable:
            return Response(statuspage.UNAVAILABLE_HTML, 503, media_type="text/html")
        fmt = request.scope["route"].name
        if fmt == "human":
            return HTMLResponse(statuspage.human_page(snap))
        if fmt in statuspage.FEEDS:
            return Response(
                statuspage.FEEDS[fmt](snap),
                headers={"cache-control": "no-cache"},
                media_type="application/rss+xml",
            )
        payload = (
            statuspage.summary(snap) if fmt == "statuspage" else statuspage.google_incidents(snap)
        )
        return JSONResponse(payload, headers={"cache-control": "no-cache"})

    # --- control endpoints --------------------------------------------------------------

    @staticmethod
    def _dump(b: ModelBehavior | StatusPage) -> dict[str, Any]:
        return b.model_dump(mode="json", exclude={"timeline"})

    async def get_state(self, request: Request) -> Response:
        s = self.state
        models = {name: self._dump(s.effective(name) or b) for name, b in s.base.items()}
        pages = {name: self._dump(s.effective_page(name) or p) for name, p in s.pages.items()}
        return JSONResponse(
            {
                "elapsed_s": round(time.monotonic() - s.started, 6),
                "scenario_time_s": round(s.scenario_time(), 6),
                "speed": s.speed,
                "models": models,
                "status_pages": pages,
            }
        )

    async def patch_model(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object of behaviour fields"}, 400)
        name = request.path_params["model"]
        try:
            effective = self.state.patch(name, body)
        except ValidationError as exc:
            return JSONResponse({"error": describe_error(exc, f"models.{name}")}, 400)
        return JSONResponse(self._dump(effective))

    async def patch_status_page(self, request: Request) -> Response:
        body = await self._body(request)
        if not isinstance(body, dict):
            return JSONResponse({"error": "body must be a JSON object of status page fields"}, 400)
        name = request.path_params["name"]
        try:
            effective = self.state.patch_page(name, body)
        except ValidationError as exc:
            return JSONResponse({"error": describe_error(exc, f"status_pages.{name}")}, 400)
        return JSONResponse(self._dump(effective))

    async def patch_billing(self, request: Request) -> Response:
        """Replace fields of a provider's bill (its days, page size, fault), or give it one."""
        body = await self._body(request)
        name = request.path_params["provider"]
        if not isinstance(body, dict) or name not in ("openai", "anthropic"):
            return JSONResponse({"error": "PATCH /_sim/billing/{openai|anthropic}: an object"}, 400)
        base = self.state.bills.get(name)
        data = {**(base.model_dump() if base else {}), **body}
        try:
            self.state.bills[name] = ProviderBill.model_validate(data)
        except ValidationError as exc:
            return JSONResponse({"error": describe_error(exc, f"billing.{name}")}, 400)
        return JSONResponse(self.state.bills[name].model_dump(mode="json"))

    async def reset(self, request: Request) -> Response:
        body = await self._body(request)
        try:
            scenario = parse_scenario(body, "scenario in reset body") if body else None
        except ScenarioError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.state.load(scenario)
        return JSONResponse({"ok": True, "models": sorted(self.state.base)})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.log.clear()
            return JSONResponse({"ok": True})
        try:
            since = int(request.query_params.get("since_seq", "0"))
        except ValueError:
            return JSONResponse({"error": "since_seq must be an integer"}, 400)
        rows = [r for r in self.state.log if r["seq"] > since]
        return JSONResponse({"requests": rows, "last_seq": self.state.seq})


# Where each protocol carries its key, as echoed back by a careless upstream.
_CREDENTIAL_HEADERS = (
    "authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "x-amz-security-token",
)
_ID_HEADERS = ("x-request-id", "request-id")


def _credentials(request: Request) -> str:
    """The request's credentials as a careless upstream would quote them."""
    parts = [f"{h}: {request.headers[h]}" for h in _CREDENTIAL_HEADERS if h in request.headers]
    if "key" in request.query_params:
        parts.append(f"key={request.query_params['key']}")
    return "; ".join(parts)


def _echoed(data: bytes, echo: str) -> bytes:
    """JSON (or an SSE event of it) with ``echo`` added to every ``message``."""
    if not echo:
        return data
    quoted = json.dumps(f"(received {echo}) ")[1:-1].encode()
    return data.replace(b'"message":"', b'"message":"' + quoted)


def _echo_ids(headers: dict[str, str], echo: str) -> dict[str, str]:
    if echo:
        for name in _ID_HEADERS:
            if name in headers:
                headers[name] = f"{headers[name]} {echo}"
    return headers


def _messages(obj: Any) -> list[str]:
    """Every ``message`` string in an error object."""
    if isinstance(obj, dict):
        found = [v for k, v in obj.items() if k == "message" and isinstance(v, str)]
        return found + [m for v in obj.values() if not isinstance(v, str) for m in _messages(v)]
    if isinstance(obj, list):
        return [m for v in obj for m in _messages(v)]
    return []


def _azure_404() -> Response:
    return JSONResponse({"error": {"code": "404", "message": "Resource not found"}}, 404)


def create_app(state: SimState) -> Starlette:
    h = SimApp(state)
    bills = state.billing
    gcp = vertex.VertexApi(state.tokens, h.handle, state.effective)
    return Starlette(
        routes=[
            Route("/openai/v1/organization/costs", bills.openai_costs, methods=["GET"]),
            Route("/openai/v1/organization/usage/completions", bills.openai_usage, methods=["GET"]),
            Route(
                "/anthropic/v1/organizations/cost_report", bills.anthropic_costs, methods=["GET"]
            ),
            Route(
                "/anthropic/v1/organizations/usage_report/messages",
                bills.anthropic_usage,
                methods=["GET"],
            ),
            Route("/openai/v1/models", h.list_models, methods=["GET"], name="openai"),
            Route("/openai/v1/chat/completions", h.openai_chat, methods=["POST"]),
            Route("/openai/v1/responses", h.openai_responses, methods=["POST"]),
            Route("/openai/v1/embeddings", h.openai_embeddings, methods=["POST"]),
            Route("/azure/openai/models", h.list_models, methods=["GET"], name="azure"),
            Route(
                "/azure/openai/deployments/{deployment}/chat/completions",
                h.azure_chat,
                methods=["POST"],
            ),
            Route(
                "/azure/openai/deployments/{deployment}/embeddings",
                h.azure_embeddings,
                methods=["POST"],
            ),
            Route("/anthropic/v1/models", h.list_models, methods=["GET"], name="anthropic"),
            Route("/anthropic/v1/messages", h.anthropic_messages, methods=["POST"]),
            Route("/gemini/v1beta/models", h.list_models, methods=["GET"], name="gemini"),
            # Bedrock's runtime and control plane under one base URL.
            Route("/bedrock/model/{rest:path}", h.bedrock_call, methods=["POST"]),
            Route("/bedrock/foundation-models", h.bedrock_models, methods=["GET"]),
            Route(
                "/bedrock/inference-profiles",
                h.bedrock_models,
                methods=["GET"],
                name="inference-profiles",
            ),
            # The method follows a colon (models/x:generateContent), so match the rest whole.
            Route("/gemini/v1beta/models/{rest:path}", h.gemini_call, methods=["POST"]),
            Route("/vertex/token", gcp.token, methods=["POST"]),
            Route(
                "/vertex/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/"
                "{rest:path}",
                gcp.call,
                methods=["POST"],
            ),
            Route("/vertex/v1/publishers/{publisher}/models/{model}", gcp.publisher_model),
            Route(
                f"/statuspage/{{name}}/{STATUS_PATHS['statuspage']}",
                h.status_page,
                methods=["GET"],
                name="statuspage",
            ),
            *(
                Route(f"/statuspage/{{name}}/{path}", h.status_page, methods=["GET"], name=fmt)
                for fmt, path in STATUS_PATHS.items()
                if fmt != "statuspage"
            ),
            # The human page, where the monitor's status links point (with or without a slash).
            Route("/statuspage/{name}", h.status_page, methods=["GET"], name="human"),
            Route("/statuspage/{name}/", h.status_page, methods=["GET"], name="human"),
            Route("/_sim/state", h.get_state, methods=["GET"]),
            Route("/_sim/models/{model:path}", h.patch_model, methods=["PATCH"]),
            Route("/_sim/status_pages/{name}", h.patch_status_page, methods=["PATCH"]),
            Route("/_sim/billing/{provider}", h.patch_billing, methods=["PATCH"]),
            Route("/_sim/reset", h.reset, methods=["POST"]),
            Route("/_sim/requests", h.requests, methods=["GET", "DELETE"]),
        ]
    )


class SimServer:
    """Run the simulator on a real socket, in a background thread (tests) or via ``serve()``."""

    def __init__(
        self,
        scenario: Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
    ) -> None:
        self.host, self.port = host, port
        self.state = SimState(scenario or default_scenario(), speed)
        self.app = create_app(self.state)
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> socket.socket:
        """Bind the listening socket now, so ``url`` is known before serving (port=0 works)."""
        if self._sock is None:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
            sock.set_inheritable(True)
            self.port = sock.getsockname()[1]
            self._sock = sock
        return self._sock

    @property
    def url(self) -> str:
        self.bind()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/anthropic"

    @property
    def gemini_base(self) -> str:
        return f"{self.url}/gemini/v1beta"

    @property
    def bedrock_base(self) -> str:
        """Bedrock's runtime (Converse) and control plane (model lists), signed with the
        scenario's ``aws_credentials``."""
        return f"{self.url}/bedrock"

    @property
    def azure_base(self) -> str:
        return f"{self.url}/azure"

    @property
    def vertex_base(self) -> str:
        """Vertex AI's v1 root (a target's ``base_url``); its token endpoint is ``token_uri``."""
        return f"{self.url}/vertex/v1"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/vertex/token"

    def status_page_url(self, name: str, kind: StatusFormat = "statuspage") -> str:
        """Where a monitor polls status page ``name`` in the wire format ``kind``: a Statuspage
        v2 ``summary.json``, a Google Cloud ``incidents.json``, an AWS Health service RSS,
        Azure's status RSS or an incident RSS feed (as xAI's)."""
        return f"{self.url}/statuspage/{name}/{STATUS_PATHS[kind]}".replace("{feed}", name)

    async def serve(self) -> None:
        """Serve until stopped (uvicorn handles SIGINT/SIGTERM when run in the main thread)."""
        sock = self.bind()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            http="httptools",
            lifespan="off",
            timeout_graceful_shutdown=2,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        await self._server.serve(sockets=[sock])

    def start(self, timeout: float = 10.0) -> SimServer:
        self.bind()
        self._thread = threading.Thread(target=self._run, name="llmpulse-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self._server and self._server.started):
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("simulator failed to start")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.serve())

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["SimServer", "SimState", "create_app"]
