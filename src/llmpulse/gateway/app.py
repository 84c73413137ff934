"""The gateway's HTTP face: OpenAI- and Anthropic-compatible endpoints over ``Gateway``.

- ``POST /v1/chat/completions``: OpenAI Chat Completions, streaming and not.
- ``POST /v1/messages``: Anthropic Messages, streaming and not.
- ``GET /v1/models``: the served model groups and visible aliases the key may use, in OpenAI's
  list format.
- ``GET /health``: every deployment's breaker state and the warnings said at start (needs a
  gateway key like the API);
  ``GET /health/readiness``: 200 while some deployment can take traffic, else 503 (no key:
  load balancers call it); ``GET /health/liveliness``: the process answers.
- ``/api/v1/keys``: run-time keys (``GET`` list, ``POST`` create, ``DELETE /{name}`` revoke,
  ``POST /{name}/rotate``), for the master key only; given ``results_db``, the app follows
  them there for its lifespan (``gateway.keys``).

Given ``probe_targets`` (``gateway.server`` passes ``GatewayConfig.targets()``, empty when
``gateway.monitor`` is off), the app runs the health loop (``gateway.health``) for its lifespan:
its own probes of its deployments, or, while ``llmpulse run`` probes into ``results_db``, that
daemon's probe results, fed to the selector and to ``record``. With ``gateway.redis_url`` set,
replicas share breakers, cool-downs, usage and latency through Redis (``gateway.shared``).

Clients authenticate with a gateway key (``Authorization: Bearer`` or ``x-api-key``), looked up
by its digest; provider keys stay in the gateway. With no key configured or ever created
(revoked run-time keys count: revoking the last one never opens the gateway), only
loopback clients are served (``gateway.server`` also binds loopback only then). A key whose
``models`` allow neither the model asked for nor the group it names gets 403 before any
upstream call. Errors have the status and JSON shape of the protocol called, so each SDK
raises its own exception types; an error after a stream started is the protocol's error event,
which the SDKs raise too.

A request with ``x-llmpulse-drill: skip-primary`` or ``skip=<deployment name or model_info
id>`` is a live drill (``proxy.Drill``): sent down its fallback path, recorded with ``drill``
set, answered with the header echoed. Only a key with ``drill: true`` or the master key may
(403 otherwise, and on a gateway without keys); a value of neither form, or a ``skip=`` naming
no deployment on the request's path (its group and fallback groups), is a 400. A drill is
real traffic: the key's limits and budget apply, and its spend counts.

Each traffic result names its owner (``llmpulse.attribution``): the presented key's name and
team, and the end user, tags and session the request labels itself with (body fields or
``x-llmpulse-*`` headers); a label past its bounds is a 400 in the caller's shape.

Every response carries the gateway's request id in ``x-request-id`` (the openai SDK's
``_request_id``) and ``request-id`` (the anthropic SDK's), and the answering (or last failing)
attempt's upstream id in ``x-llmpulse-upstream-request-id`` (an answer also names its
deployment, for a stream the one that started it, in ``x-llmpulse-deployment``); the traffic
result keeps the upstream id, and the log line of a failed request names the gateway id, so a
user's report, the log and the provider's own logs meet.

What a client sends is bounded (README's "Limits"): a body past ``max_request_size_mb`` is
refused (413) before it is read, or as soon as a chunked body passes it; JSON nested past
``gateway.max_json_depth`` is a 400, as the proxy answers a model name past
``gateway.max_model_name_length``. Header values made of outside text (model names, upstream
ids) go out through ``header_value``, so a response never fails after the upstream answered. A
client that disconnects before its answer starts cancels the request and its upstream call
(Starlette notices a disconnect only while a response streams; it stops a stream's upstream
read itself); nothing is recorded for it. Requests the server cancels at shutdown (past
``gateway.shutdown_grace``) are answered 503, or a stream's error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmpulse.attribution import LabelError, read_owner
from llmpulse.config.gateway import MIB, GatewayConfig
from llmpulse.config.keys import GatewayKey
from llmpulse.config.storage import redact_url
from llmpulse.config.web import is_loopback
from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerState
from llmpulse.gateway.breaker_log import BreakerLog
from llmpulse.gateway.health import HealthLoop
from llmpulse.gateway.ir import ChatRequest, MessageStart, StreamEvent, TranslationError
from llmpulse.gateway.keys import (
    KeyRefused,
    KeyRing,
    KeyTaken,
    NoSuchKey,
    RunTimeKeys,
    describe,
    key_entry,
)
from llmpulse.gateway.limits import Limits
from llmpulse.gateway.proxy import (
    Drill,
    Gateway,
    GatewayError,
    Recorder,
    RequestIds,
    check_model_name,
)
from llmpulse.gateway.translate import ClientCodec
from llmpulse.gateway.translate import anthropic as tr_anthropic
from llmpulse.gateway.translate import openai as tr_openai
from llmpulse.gateway.translate.params import client_name
from llmpulse.secrets import Redactor
from llmpulse.store import database_errors
from llmpulse.target import Target

log = logging.getLogger(__name__)

DEPLOYMENT_HEADER = "x-llmpulse-deployment"
# A live drill's request header, echoed on its answer (README's "Live drills").
DRILL_HEADER = "x-llmpulse-drill"
SKIP_PRIMARY = "skip-primary"
MAX_DRILL_HEADER = 1024  # characters: a deployment's name with room to spare
_DRILL_FORMS = "skip-primary or skip=<deployment name or model_info id>"
DROPPED_HEADER = "x-llmpulse-dropped-params"  # what drop_params left out, comma-separated
UPSTREAM_ID_HEADER = "x-llmpulse-upstream-request-id"
# The openai SDK reads x-request-id, the anthropic SDK request-id: both carry the gateway's id.
_ID_HEADERS = (b"x-request-id", b"request-id")
_IDS_KEY = "llmpulse.request_ids"
# How long an answer may take before the gateway watches for its client leaving.
WATCH_AFTER_S = 0.25
# A request body may take this many header timeouts in all (and one without a byte).
BODY_TIMEOUTS = 10
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
T = TypeVar("T")
R = TypeVar("R", bound=Response)


class _Format:
    """How one client protocol reads requests and is answered."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.module: ClientCodec = tr_openai if name == "openai" else tr_anthropic

    def error(self, exc: GatewayError) -> Response:
        if self.name == "openai":
            status, body = tr_openai.render_error(
                exc.status, exc.error_class, exc.message, exc.param, exc.code
            )
        else:
            status, body = tr_anthropic.render_error(
                exc.status, exc.error_class, exc.message, code=exc.code
            )
        headers = {}
        if exc.retry_after_s is not None:
            headers["retry-after"] = str(max(1, round(exc.retry_after_s)))
        if exc.code is not None:
            headers["x-should-retry"] = "false"  # the SDKs' own retries could not help
        return JSONResponse(body, status, headers=headers)

    def stream_error(self, exc: GatewayError) -> bytes:
        if self.name == "openai":
            return tr_openai.render_stream_error(exc.error_class, exc.message)
        return tr_anthropic.render_stream_error(exc.status, exc.error_class, exc.message)


_OPENAI, _ANTHROPIC = _Format("openai"), _Format("anthropic")


class _RequestIdMiddleware:
    """Gives each HTTP request its ``RequestIds`` and puts them on the response's headers when
    it starts, which for a stream is after the first content, so the answering upstream's id
    is known by then."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = scope[_IDS_KEY] = RequestIds()

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in _ID_HEADERS]
                headers += [(name, ids.gateway.encode()) for name in _ID_HEADERS]
                if ids.upstream:
                    upstream = header_value(ids.upstream).encode()
                    headers.append((UPSTREAM_ID_HEADER.encode(), upstream))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_ids)


def _failed(ids: RequestIds, exc: GatewayError) -> None:
    log.warning(
        "gateway request %s failed: %s %s (upstream request id %s)",
        ids.gateway,
        exc.status,
        exc.message,
        ids.upstream or "none",
    )


def create_app(
    config: GatewayConfig,
    *,
    record: Recorder | None = None,
    make_gateway: Callable[[], Gateway] | None = None,
    probe_targets: Sequence[Target] = (),
    follow_probes: str | None = None,
    results_db: str | Path | None = None,
    redactor: Redactor | None = None,
    accept_unenforced_auth: bool = False,
    warnings: Sequence[str] = (),
    breakers: BreakerLog | None = None,
    worker: int | None = None,
) -> Starlette:
    """The ASGI app; its ``Gateway`` (and HTTP session) lives for the app's lifespan.

    ``record`` receives one traffic ``CheckResult`` per client request, and each probe's result
    when ``probe_targets`` (deployments' targets, by deployment name) are probed (with
    ``follow_probes``, the agent name of the gateway worker that probes, never probed here:
    its probe results in ``results_db`` are followed while Redis does not bring them);
    ``make_gateway`` (called inside the event loop) replaces the default
    ``Gateway(config, record=record)``; ``redactor`` (default: of the gateway config's
    secrets) cleans what upstreams say. A config asking for access control llmpulse does not
    enforce raises ``ConfigError`` unless ``accept_unenforced_auth``. ``/health`` lists the
    config's warnings, then ``warnings``, and names the ``worker`` (its number, of
    ``--num_workers``) answering. While the app serves, ``app.state.gateway`` is its
    ``Gateway`` (the metrics read its breakers there). ``breakers`` records the gateway's
    breaker transitions.
    """
    serving_without = config.auth_warning(accept_unenforced_auth)
    said = [*config.warnings, *warnings, *([serving_without] if serving_without else [])]
    settings = config.settings
    limits = Limits(
        settings.keys,
        config.teams,
        results_db=results_db,
        redis_url=settings.redis_url,
        redis_prefix=settings.redis_prefix,
    )
    endpoints = _Endpoints(config, said, limits)
    if worker is not None:
        endpoints.worker = {"index": worker, "pid": os.getpid()}
    runtime = RunTimeKeys(results_db, endpoints.keys) if results_db is not None else None
    admin = _Admin(endpoints, runtime)
    deployment_ids = {d.name: d.id for d in config.deployments}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway = (
            make_gateway() if make_gateway else Gateway(config, record=record, redactor=redactor)
        )
        endpoints.gateway = app.state.gateway = gateway  # the metrics read its breakers
        if breakers is not None:
            breakers.attach(gateway.selector)
        gateway.record = limits.recorder(gateway.record)  # tokens and spend count for limits
        await limits.start()
        stop = asyncio.Event()
        background = [asyncio.create_task(limits.run(stop))]
        if admin.runtime is not None:
            # Read before the first request is served: a created key works from the start.
            await asyncio.to_thread(admin.runtime.refresh)
            background.append(asyncio.create_task(admin.runtime.follow(stop)))
        heard: Callable[[], bool] | None = None
        if config.settings.redis_url:
            from llmpulse.gateway.shared import SharedState  # redis loads only when used

            shared = SharedState(
                config.settings.redis_url, gateway.selector, config.settings.redis_prefix
            )
            background.append(asyncio.create_task(shared.run(stop)))
            heard = shared.connected.is_set  # the probing worker's verdicts come through it
        if probe_targets:
            health = HealthLoop(
                gateway, probe_targets, deployment_ids, record, results_db,
                follow=follow_probes, heard=heard if follow_probes else None,
            )  # fmt: skip
            background.append(asyncio.create_task(health.run(stop)))
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*background)
            await gateway.aclose()
            if admin.runtime is not None:
                await asyncio.to_thread(admin.runtime.close)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", endpoints.chat_completions, methods=["POST"]),
            Route("/chat/completions", endpoints.chat_completions, methods=["POST"]),
            Route("/v1/messages", endpoints.messages, methods=["POST"]),
            Route("/v1/models", endpoints.models, methods=["GET"]),
            Route("/models", endpoints.models, methods=["GET"]),
            Route("/health", endpoints.health, methods=["GET"]),
            Route("/health/readiness", endpoints.readiness, methods=["GET"]),
            Route("/health/liveliness", endpoints.liveliness, methods=["GET"]),
            Route("/api/v1/keys", _unless_db_fails(admin.list), methods=["GET"]),
            Route("/api/v1/keys", _unless_db_fails(admin.create), methods=["POST"]),
            Route(
                "/api/v1/keys/{name:path}/rotate", _unless_db_fails(admin.rotate), methods=["POST"]
            ),
            Route("/api/v1/keys/{name:path}", _unless_db_fails(admin.revoke), methods=["DELETE"]),
        ],
        lifespan=lifespan,
        middleware=[Middleware(_RequestIdMiddleware)],
    )


class _Endpoints:
    """The routes' handlers over one ``Gateway`` (set when the app's lifespan starts)."""

    def __init__(self, config: GatewayConfig, warnings: list[str], limits: Limits) -> None:
        self.config = config
        self.warnings = warnings
        self.limits = limits
        self.keys = KeyRing(config.settings.keys)
        self.worker: dict[str, int] | None = None  # which of --num_workers answers /health
        self.gateway: Gateway  # set as the app's lifespan starts, before any request

    def refused(self, request: Request, fmt: _Format) -> Response | None:
        """None when the request may go on, else the answer refusing it."""
        key = self.authenticate(request, fmt)
        return key if isinstance(key, Response) else None

    def authenticate(self, request: Request, fmt: _Format) -> GatewayKey | Response | None:
        """The gateway key the request presents (None: no keys, a loopback client), or the
        answer refusing it."""
        if not self.keys:
            client = request.client.host if request.client else ""
            if is_loopback(client):
                return None
            return fmt.error(
                GatewayError(403, None, "the gateway has no keys: it serves loopback only")
            )
        return _presented(self.keys, request, fmt)

    async def serve(self, request: Request, fmt: _Format) -> Response:
        key = self.authenticate(request, fmt)
        if isinstance(key, Response):
            return key
        settings = self.config.settings
        ids: RequestIds = request.scope[_IDS_KEY]
        try:
            body = await _read_body(request, settings.max_request_bytes, settings.header_timeout)
            chat = fmt.module.parse_request(_parse_json(body, settings.max_json_depth))
            # Before the key's model check, whose 403 names the model.
            check_model_name(chat.model, settings.max_model_name_length)
        except GatewayError as exc:
            return fmt.error(exc)
        except TranslationError as exc:
            return fmt.error(GatewayError(exc.status, ErrorClass.BAD_REQUEST, exc.message))
        except _ClientLeft:
            return _left(ids)
        group = self.config.aliases.get(chat.model, chat.model)
        if key is not None and not key.allows(chat.model, group):
            return fmt.error(_forbidden_model(key, chat.model, group))
        drill = None
        label = request.headers.get(DRILL_HEADER)
        if label is not None:  # the only cost to requests without it: this lookup
            try:
                drill = self.drill(label, key, chat.model)
            except GatewayError as exc:
                return fmt.error(exc)
        gateway = self.gateway
        try:
            owner = read_owner(
                key.name if key else None,
                key.team if key else None,
                user=chat.user,
                tags=chat.tags,
                headers=request.headers,
                user_field=client_name(chat, "user"),
            ).redacted(gateway.redact)
        except LabelError as exc:
            return _drilled(fmt.error(GatewayError(400, ErrorClass.BAD_REQUEST, str(exc))), drill)
        refusal = await self.limits.admit(key)  # rpm, tpm, budgets: before any upstream call
        if refusal is not None:
            return _drilled(fmt.error(refusal), drill)
        if not chat.stream:
            try:
                answering = gateway.complete(chat, ids, owner, drill)
                answer, deployment = await _unless_client_leaves(request, answering)
            except GatewayError as exc:
                _failed(ids, exc)
                return _drilled(fmt.error(exc), drill)
            except _ClientLeft:
                return _left(ids)
            headers = {
                DEPLOYMENT_HEADER: header_value(deployment.name),
                **_dropped(answer.dropped_params),
            }
            response = JSONResponse(fmt.module.render_response(answer), headers=headers)
            return _drilled(response, drill)
        events = gateway.stream(chat, ids, owner, drill)
        try:
            first = await _unless_client_leaves(request, anext(events, None))
        except GatewayError as exc:
            _failed(ids, exc)
            return _drilled(fmt.error(exc), drill)
        except _ClientLeft:
            return _left(ids)
        dropped = _dropped(first.dropped_params if isinstance(first, MessageStart) else [])
        # The deployment that started the answer (a cut one may be continued on another).
        started = {DEPLOYMENT_HEADER: header_value(ids.deployment)} if ids.deployment else {}
        frames = _sse(fmt, chat, ids, first, events)
        return _drilled(
            _EventStream(fmt, ids, frames, {**_SSE_HEADERS, **started, **dropped}), drill
        )

    def drill(self, label: str, key: GatewayKey | None, model: str) -> Drill:
        """The live drill ``label`` (the header's value) asks for; GatewayError when ``key`` may
        not drill (403) or ``label`` is not a drill (400)."""
        if key is None:
            # Loopback without keys: nobody to hold the permission, so nobody has it.
            raise GatewayError(
                403,
                None,
                f"{DRILL_HEADER}: live drills need a gateway key with drill: true (or the "
                "master key), and this gateway has no keys, so no one may drill; set "
                "general_settings.master_key or gateway.keys",
            )
        if not key.may_drill:
            raise GatewayError(
                403,
                None,
                f"{DRILL_HEADER}: the key {key.name!r} may not drill; give it drill: true "
                "(gateway.keys, or llmpulse keys create --drill) or use the master key",
            )
        if len(label) > MAX_DRILL_HEADER:
            raise _bad_drill(f"is over {MAX_DRILL_HEADER} characters; expected {_DRILL_FORMS}")
        if label == SKIP_PRIMARY:
            return Drill(label, skip_primary=True)
        form, equals, name = label.partition("=")
        if form != "skip" or not equals:
            raise _bad_drill(f"expected {_DRILL_FORMS}, got {label[:100]!r}")
        if not name:
            raise _bad_drill("skip= names no deployment; expected skip=<deployment name or "
                             "model_info id>")  # fmt: skip
        # Only the request's own path: one elsewhere would skip nothing, and a key limited to
        # some models must not learn the names of the deployments of the others.
        if all(name not in (d.name, d.id) for d in self.gateway.reachable(model)):
            raise _bad_drill(
                f"no deployment is named {name!r} on the path of {model!r} (its group and "
                f"fallback groups); expected skip=<deployment name (as in {DEPLOYMENT_HEADER}) "
                "or model_info id>"
            )
        return Drill(label, skip=frozenset({name}))

    async def chat_completions(self, request: Request) -> Response:
        return await self.serve(request, _OPENAI)

    async def messages(self, request: Request) -> Response:
        return await self.serve(request, _ANTHROPIC)

    async def models(self, request: Request) -> Response:
        key = self.authenticate(request, _OPENAI)
        if isinstance(key, Response):
            return key
        aliases = self.config.aliases
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "llmpulse"}
            for name in self.config.model_names
            if key is None or key.allows(name, aliases.get(name, name))
        ]
        return JSONResponse({"object": "list", "data": data})

    def states(self) -> list[dict[str, Any]]:
        selector = self.gateway.selector
        out = []
        for d in self.config.deployments:
            snapshot = selector.breaker(d.id).snapshot()
            out.append(
                {
                    "name": d.name,
                    "group": d.group,
                    "provider": d.provider,
                    "model": d.model,
                    "state": str(snapshot.state),
                    # Without a key it could only answer 401.
                    "available": d.missing_key is None and selector.breaker(d.id).available(),
                    "cooldown_reason": snapshot.cooldown_reason,
                }
            )
        return out

    async def health(self, request: Request) -> Response:
        denied = self.refused(request, _OPENAI)
        if denied is not None:
            return denied
        deployments = self.states()
        healthy = [d for d in deployments if d["state"] == BreakerState.CLOSED]
        status = "ok" if len(healthy) == len(deployments) else "degraded" if healthy else "down"
        body: dict[str, Any] = {
            "status": status,
            "deployments": deployments,
            "warnings": self.warnings,
        }
        if self.worker is not None:
            body["worker"] = self.worker
        return JSONResponse(body)

    async def readiness(self, request: Request) -> Response:
        ready = any(d["available"] for d in self.states())
        return JSONResponse({"status": "ready" if ready else "unavailable"}, 200 if ready else 503)

    async def liveliness(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})


def _bad_drill(problem: str) -> GatewayError:
    """The 400 refusing an ``x-llmpulse-drill`` value, naming the header."""
    return GatewayError(400, ErrorClass.BAD_REQUEST, f"{DRILL_HEADER}: {problem}")


def _drilled(response: R, drill: Drill | None) -> R:
    """``response``, telling a drill's client it was one (its header's value, echoed)."""
    if drill is not None:
        response.headers[DRILL_HEADER] = header_value(drill.label)
    return response


def _dropped(params: list[str]) -> dict[str, str]:
    return {DROPPED_HEADER: header_value(",".join(params))} if params else {}


# Printable ASCII but "%", which marks what is encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if c != ord("%"))


def header_value(text: str) -> str:
    """``text`` as a response header value: printable ASCII as it is, anything else (and ``%``)
    percent-encoded as UTF-8.

    Every header value taken from outside text (a deployment's name holds the model a client
    asked a wildcard group for; upstream request ids) goes through here: one that HTTP cannot
    carry would fail the response after the upstream answered, and billed.
    """
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    # Upstream ids come here already made valid text by the redactor, and model names with
    # lone surrogates are refused before; a config's text may still hold one: its byte, not a 500.
    return quote(text, safe=_HEADER_SAFE, errors="surrogateescape")


def _presented(keys: KeyRing, request: Request, fmt: _Format) -> GatewayKey | Response:
    """The gateway key the request presents (``Authorization: Bearer``, else ``x-api-key``),
    or the 401 refusing it."""
    presented = request.headers.get("x-api-key", "")
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        presented = auth[7:].strip()
    key = keys.lookup(presented)
    if key is not None:
        return key
    message = "invalid or missing gateway key" if presented else "no gateway key given"
    return fmt.error(GatewayError(401, ErrorClass.AUTH, message))


def master_only(keys: KeyRing, request: Request, what: str) -> Response | None:
    """None when the request presents the master key; else the refusal in OpenAI's error
    shape: 401 without a known key, 403 with another (``what`` takes the master key only)."""
    key = _presented(keys, request, _OPENAI)
    if isinstance(key, Response):
        return key
    if not key.master:
        return _admin_error(403, f"{what} takes the master key only")
    return None


def master_key_guard(config: GatewayConfig, what: str) -> Callable[[Request], Response | None]:
    """The check for ``what`` served beside the API: behind the master key when the config
    sets one (``master_only``), else for loopback clients only (a 403 for others)."""
    if not config.settings.has_master_key:

        def loopback_only(request: Request) -> Response | None:
            if is_loopback(request.client.host if request.client else ""):
                return None
            return _admin_error(
                403, f"{what} serves loopback clients only: set general_settings.master_key"
            )

        return loopback_only
    keys = KeyRing(config.settings.keys)
    return lambda request: master_only(keys, request, what)


class _ClientLeft(Exception):
    """The client disconnected before its answer started."""


def _left(ids: RequestIds) -> Response:
    log.info("gateway request %s: the client left before its answer; nothing recorded", ids.gateway)
    return Response(status_code=499)  # nginx's "client closed request"; nobody reads it


async def _read_body(request: Request, limit: int, idle_s: float) -> bytes:
    """The request's body, refused (413) past ``limit`` bytes: a declared Content-Length before
    anything is read, a chunked body as soon as the bytes read pass it. What is not read stays
    in the socket (uvicorn reads at most 64 KiB ahead), so a large body costs no memory.

    A body trickled in a byte at a time holds a connection as slow headers do: it gets 408
    after ``idle_s`` without a byte, or ``BODY_TIMEOUTS`` times that in all.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + BODY_TIMEOUTS * idle_s
    try:
        async with asyncio.timeout(min(end, loop.time() + idle_s)) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
                deadline.reschedule(min(end, loop.time() + idle_s))
    except ClientDisconnect:
        raise _ClientLeft from None
    except TimeoutError:
        raise GatewayError(
            408, None, "the request body did not arrive in time (gateway.header_timeout)"
        ) from None
    return b"".join(chunks)


def _too_large(limit: int) -> GatewayError:
    # No error class: the protocols' own 413 kinds (Anthropic's request_too_large).
    return GatewayError(
        413,
        None,
        f"the request body is larger than the gateway accepts ({limit / MIB:g} MB, "
        "max_request_size_mb)",
    )


def _parse_json(body: bytes, max_depth: int) -> Any:
    """The body as JSON; 400 when it is not JSON or nests deeper than ``max_depth``.

    Deep nesting would recurse past Python's limit somewhere after parsing (translating it,
    encoding it upstream): refused here, whole. Brackets counted in C bound the depth, so the
    walk runs only for bodies with many of them.
    """
    too_deep = GatewayError(
        400,
        ErrorClass.BAD_REQUEST,
        f"the JSON body nests deeper than {max_depth} levels (gateway.max_json_depth)",
    )
    try:
        value = json.loads(body)
    except RecursionError:  # deeper than the parser goes: far past any limit
        raise too_deep from None
    except ValueError:  # UnicodeDecodeError too
        raise GatewayError(400, ErrorClass.BAD_REQUEST, "body is not JSON") from None
    if body.count(b"[") + body.count(b"{") > max_depth and _nests_deeper(value, max_depth):
        raise too_deep
    return value


_CONTAINERS = frozenset({dict, list})


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value``'s containers nest more than ``limit`` deep (walked a level at a time,
    without recursion: a large agent request's few hundred containers in tens of µs)."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return False


async def _unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, while watching the client: when it disconnects first, ``work`` is
    cancelled (and with it the upstream call, which would otherwise run on, billed, up to its
    timeout) and ``_ClientLeft`` raised. Starlette notices a disconnect only while a response
    streams, and until the answer starts there is none.

    The watch starts only once ``work`` has taken ``WATCH_AFTER_S``: a watching task per
    request would cost every quick answer more than an abandoned one could still bill.

    The request's body must have been read. When the server cancels the request (shutdown, past
    ``gateway.shutdown_grace``), the client gets a 503 it can retry elsewhere, not a bare 500.
    """
    handler = asyncio.current_task()
    assert handler is not None
    left = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal left
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        handler.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.ensure_future(watch())

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work
    except asyncio.CancelledError:
        # Ours to handle either way: answered (or dropped) instead of failing the request.
        handler.uncancel()
        if left:
            raise _ClientLeft from None
        raise _shutting_down() from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


def _shutting_down() -> GatewayError:
    return GatewayError(503, None, "the gateway is shutting down; retry the request")


class _EventStream(StreamingResponse):
    """An answer's SSE stream. When the server cancels it at shutdown (past
    ``gateway.shutdown_grace``), it ends with the protocol's error event, which the SDKs raise:
    the client learns why its answer is short, and no traceback is logged."""

    def __init__(
        self, fmt: _Format, ids: RequestIds, frames: AsyncIterator[bytes], headers: dict[str, str]
    ) -> None:
        super().__init__(frames, media_type="text/event-stream", headers=headers)
        self.fmt, self.ids = fmt, ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = False  # started and not yet ended: an event can still go out

        async def sending(message: Message) -> None:
            nonlocal streaming
            streaming = message["type"] == "http.response.start" or message.get("more_body", False)
            await send(message)

        try:
            await super().__call__(scope, receive, sending)
        except asyncio.CancelledError:
            # A client that left ends the stream without raising; this is the server stopping.
            if not streaming:
                raise
            task = asyncio.current_task()
            assert task is not None
            task.uncancel()
            error = _shutting_down()
            _failed(self.ids, error)
            frame = self.fmt.stream_error(error)
            await send({"type": "http.response.body", "body": frame, "more_body": False})


async def _sse(
    fmt: _Format,
    chat: ChatRequest,
    ids: RequestIds,
    first: StreamEvent | None,
    events: AsyncIterator[StreamEvent],
) -> AsyncIterator[bytes]:
    encoder = fmt.module.stream_encoder(chat)
    try:
        if first is not None:
            for frame in encoder.feed(first):
                yield frame
        async for event in events:
            for frame in encoder.feed(event):
                yield frame
    except GatewayError as exc:
        # Output already went out: an explicit error event, never a silently short answer.
        _failed(ids, exc)
        yield fmt.stream_error(exc)
        return
    except TranslationError as exc:
        error = GatewayError(502, ErrorClass.PROTOCOL, exc.message)
        _failed(ids, error)
        yield fmt.stream_error(error)
        return
    for frame in encoder.close():
        yield frame


def _forbidden_model(key: GatewayKey, model: str, group: str) -> GatewayError:
    """403 (Anthropic's permission_error): the key's ``models`` allow neither name."""
    asked = f" (asked for as {model!r})" if group != model else ""
    message = f"the key {key.name!r} may not use the model group {group!r}{asked}"
    return GatewayError(403, None, message, param="model")


# Admin requests are small: a key's name and policy.
_ADMIN_BODY_BYTES = 64 * 1024


class _Admin:
    """``/api/v1/keys``: run-time keys, for the master key only. Answers are JSON in OpenAI's
    error shape when refused; a new or rotated key is in the answer once and never again."""

    def __init__(self, endpoints: _Endpoints, runtime: RunTimeKeys | None) -> None:
        self.endpoints = endpoints
        self.runtime = runtime

    def _refused(self, request: Request) -> Response | RunTimeKeys:
        """The run-time keys when the request presents the master key, else the refusal."""
        if not self.endpoints.config.settings.has_master_key:
            return _admin_error(
                403, "the keys API needs a master key: set general_settings.master_key"
            )
        refused = master_only(self.endpoints.keys, request, "the keys API")
        if refused is not None:
            return refused
        if self.runtime is None:
            return _admin_error(404, "this gateway has no results database for run-time keys")
        return self.runtime

    async def list(self, request: Request) -> Response:
        runtime = self._refused(request)
        if isinstance(runtime, Response):
            return runtime
        stored = await asyncio.to_thread(runtime.listed)
        return _no_store({"keys": [describe(s, runtime.ring) for s in stored]})

    async def create(self, request: Request) -> Response:
        runtime = self._refused(request)
        if isinstance(runtime, Response):
            return runtime
        settings = self.endpoints.config.settings
        try:
            body = await _read_body(request, _ADMIN_BODY_BYTES, settings.header_timeout)
            fields = _parse_json(body, settings.max_json_depth)
        except GatewayError as exc:
            return _admin_error(exc.status, exc.message)
        except _ClientLeft:
            return Response(status_code=499)
        if not isinstance(fields, dict):
            return _admin_error(
                400, "expected a JSON object: name, team, models, rpm, tpm, budget, drill"
            )
        try:
            entry = key_entry(fields, self.endpoints.config, runtime.ring)
            text, row = await asyncio.to_thread(runtime.create, entry, time.time())
        except KeyRefused as exc:
            return _admin_error(409 if isinstance(exc, KeyTaken) else 400, str(exc))
        await asyncio.to_thread(runtime.refresh)  # this replica serves it at once
        return _no_store({"key": text, **describe(row, runtime.ring)}, 201)

    async def revoke(self, request: Request) -> Response:
        runtime = self._refused(request)
        if isinstance(runtime, Response):
            return runtime
        try:
            row = await asyncio.to_thread(runtime.revoke, request.path_params["name"], time.time())
        except NoSuchKey as exc:
            return _admin_error(404, str(exc))
        await asyncio.to_thread(runtime.refresh)
        return _no_store(describe(row, runtime.ring))

    async def rotate(self, request: Request) -> Response:
        runtime = self._refused(request)
        if isinstance(runtime, Response):
            return runtime
        try:
            text, row = await asyncio.to_thread(
                runtime.rotate, request.path_params["name"], time.time()
            )
        except NoSuchKey as exc:
            return _admin_error(404, str(exc))
        await asyncio.to_thread(runtime.refresh)
        return _no_store({"key": text, **describe(row, runtime.ring)})


def _unless_db_fails(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``handler``, answering 503 when the results database fails under it."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except database_errors() as exc:
            reason = redact_url(str(exc))
            log.warning("keys API: the results database failed: %s", reason)
            return _admin_error(503, f"the results database is unavailable: {reason}")

    return guarded


def _admin_error(status: int, message: str) -> Response:
    error_class = ErrorClass.AUTH if status == 401 else None
    return _OPENAI.error(GatewayError(status, error_class, message))


def _no_store(body: dict[str, Any], status: int = 200) -> Response:
    # An answer may hold a key: no cache keeps it.
    return JSONResponse(body, status, headers={"cache-control": "no-store"})
