"""The failover engine: one client request, attempts on deployments until one answers.

``Gateway.complete`` returns a whole ``ChatResponse``; ``Gateway.stream`` yields IR stream
events. Both raise ``GatewayError`` (status, class, message) when the request cannot be served;
in a stream that happens before the first event (so the caller can still answer with an HTTP
error) or, once output reached the client, as an error the caller turns into an error event.

Per client request: resolve the model group, ``Selector.select`` a deployment, render the request
in the deployment's protocol, send it with aiohttp and read it under one moving deadline (the
deployment's ``timeout``; for streams ``stream_timeout`` and the gateway's ``ttft_limit`` until
the first content, then ``idle_timeout`` between chunks). A failure is classified the way the
probe classifies it (``Protocol.parse_error``, ``errors.classify``) and ``RetryPolicy.decide``
says what comes next; every selection ends in ``Selector.finish`` (a verdict) or ``release``
(the client left). Stream events are held back until the first content arrives, so a slow or
failed first token fails over before any byte reaches the client, and a tool call is held
until it ends, so one cut midway restarts cleanly elsewhere (no partial arguments went out).
After output reached the client, a cut is continued on a deployment accepting an assistant
prefill (text only: a tool call cannot be prefilled), or ends with an error event: a truncated
answer is never presented as complete, and nothing the client has is sent twice. With
``enable_pre_call_checks`` (as in LiteLLM), deployments whose known context window cannot hold
the prompt (an estimate: ``estimate_prompt_tokens``) are skipped before any call, and a group
none of whose deployments fit goes to its ``context_window_fallbacks``. So is a deployment that
cannot honour one of the request's parameters (``translate.params``; not a failure: its breaker
never hears of it), unless its ``drop_params`` drops them; a group none of whose deployments can
goes to its ``fallbacks``, and then the client gets a 400 naming the parameter.

One ``CheckResult`` (``source=traffic``, or the ``Drill``'s) per client request is handed to
``record``: the answering (or last failing) attempt's timing, usage and cost, with the request's
attempts, fallbacks, route (the deployments it went to) and what moved it off the first.
Figures are the attempt's own, not the client's total wait, so a deployment's TTFT is not
blamed for the failovers before it; TTFT, inter-token latency and tokens/s follow
``llmpulse.timing``'s rule, as probes and ``instrument`` do. No prompt or completion text is
recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import aiohttp
from yarl import URL

from llmpulse import catalog
from llmpulse.attribution import NOBODY, Owner
from llmpulse.config.gateway import Deployment, GatewayConfig
from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerConfig
from llmpulse.gateway.ir import (
    ChatRequest,
    ChatResponse,
    Finish,
    MessageStart,
    ReasoningDelta,
    RefusalDelta,
    StreamError,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    TranslationError,
    UpstreamRequest,
    UsageUpdate,
)
from llmpulse.gateway.retry import Action, Attempt, FallbackKind, RetryPolicy
from llmpulse.gateway.selector import Selector, priority
from llmpulse.gateway.translate import UpstreamCodec, params
from llmpulse.gateway.translate import anthropic as tr_anthropic
from llmpulse.gateway.translate import bedrock as tr_bedrock
from llmpulse.gateway.translate import gemini as tr_gemini
from llmpulse.gateway.translate import openai as tr_openai
from llmpulse.gateway.translate.prefill import PREFILL_PROTOCOLS, continuation_request
from llmpulse.http import MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES, make_session, read_capped
from llmpulse.providers import PROTOCOLS, vertex
from llmpulse.providers.base import CredentialsError, ProtocolError, blocked_reason, error_snippet
from llmpulse.providers.openai import OpenAIProtocol
from llmpulse.ratelimit import parse_ratelimit, parse_retry_after
from llmpulse.result import CheckKind, CheckResult, RateLimit, Source, Usage
from llmpulse.secrets import Redactor
from llmpulse.sse import SSEError
from llmpulse.target import Target
from llmpulse.timing import Stopwatch

DEFAULT_TIMEOUT_S = 600.0  # LiteLLM's default request timeout
# A cool-down this much longer than the policy's wait means the breaker opened: go elsewhere.
_COOLDOWN_SLACK_S = 0.1
# Events that release the held ones to the client: anything the model generated. Timing counts
# only output (llmpulse.timing): not the reasoning.
_CONTENT = (TextDelta, RefusalDelta, ReasoningDelta, ToolCallStart, ToolCallDelta)

Recorder = Callable[[CheckResult], None]


@dataclasses.dataclass(frozen=True, slots=True)
class Drill:
    """A request sent down its failover path on purpose: the deployments named in ``skip`` (by
    name or ``model_info.id``), and with ``skip_primary`` the first one the request would have
    gone to, are passed over as if they were out, without a call. The rest of the path is the
    real one: the same selection, fallback groups, eligibility and translation as an outage
    would take. ``label`` marks the recorded result, whose source is ``source``."""

    label: str
    skip: frozenset[str] = frozenset()
    skip_primary: bool = False
    source: Source = Source.TRAFFIC

    def skips(self, deployment: Deployment) -> bool:
        """Whether ``skip`` names ``deployment``, by name or by ``model_info.id`` (a wildcard
        deployment's id covers every model it expands to)."""
        return deployment.name in self.skip or deployment.id in self.skip


class GatewayError(Exception):
    """A client request that could not be served; ``status`` is the HTTP status to answer."""

    def __init__(
        self,
        status: int,
        error_class: ErrorClass | None,
        message: str,
        retry_after_s: float | None = None,
        param: str | None = None,  # the request parameter at fault, as the client named it
        code: str | None = None,  # the gateway's own error kind (budget_exceeded): final
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.message = message
        self.retry_after_s = retry_after_s
        self.param = param
        self.code = code


class _AttemptFailed(Exception):
    def __init__(
        self,
        error_class: ErrorClass,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        ratelimit: RateLimit | None = None,
    ) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.status = status
        self.retry_after_s = retry_after_s
        self.ratelimit = ratelimit

    def to_gateway_error(self) -> GatewayError:
        status = self.status or _STATUS_OF.get(self.error_class, 502)
        return GatewayError(status, self.error_class, self.message, self.retry_after_s)


_STATUS_OF = {
    ErrorClass.TIMEOUT: 504,
    ErrorClass.CONNECTION: 502,
    ErrorClass.PROTOCOL: 502,
    ErrorClass.RATE_LIMITED: 429,
    ErrorClass.CONTENT_FILTER: 400,
    ErrorClass.CONTEXT_LENGTH: 400,
    ErrorClass.BAD_REQUEST: 400,
}


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


@dataclasses.dataclass(slots=True)
class RequestIds:
    """A client request's ids: the gateway's own, and the upstream's of the latest attempt (the
    answering one once an answer started), with that attempt's deployment (its name)."""

    gateway: str = dataclasses.field(default_factory=new_request_id)
    upstream: str | None = None
    deployment: str | None = None


@dataclasses.dataclass(slots=True)
class _Measure:
    """What the current attempt measured; reset per attempt."""

    stopwatch: Stopwatch = dataclasses.field(default_factory=Stopwatch)
    whole: bool = False  # the stream reached its end: its tokens/s counts
    latency_s: float | None = None
    usage: Usage | None = None
    ratelimit: RateLimit | None = None
    http_status: int | None = None
    upstream_request_id: str | None = None
    response_model: str | None = None
    finish_reason: str | None = None
    refused: bool = False  # the model declined: a refusal instead of content
    warnings: list[str] = dataclasses.field(default_factory=list)
    dropped: list[str] = dataclasses.field(default_factory=list)  # drop_params, client's names


@dataclasses.dataclass(slots=True)
class _Call:
    """One client request across its attempts."""

    request: ChatRequest
    root: str  # the requested group after aliases: whose fallback lists apply
    ids: RequestIds
    owner: Owner = NOBODY  # who the request is for, stamped on its traffic result
    attempts: int = 0
    fallbacks: int = 0
    deployment: Deployment | None = None  # the attempt in progress, or the last one
    measure: _Measure = dataclasses.field(default_factory=_Measure)
    sent: bool = False  # content reached the client
    delivered: list[str] = dataclasses.field(default_factory=list)
    tool_started: bool = False
    continuation: ChatRequest | None = None
    trimmed: str = ""  # whitespace the client already has, dropped from the continuation
    original: _AttemptFailed | None = None  # what cut the stream
    # parameter -> deployments that cannot honour it (skipped before any call)
    refused: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    drill: Drill | None = None
    # The deployments (target names) gone to, in order, drill-skipped ones included; what moved
    # the request off its first one; the latest failure's class.
    route: list[str] = dataclasses.field(default_factory=list)
    fallback_reason: ErrorClass | None = None
    failed: ErrorClass | None = None
    primary_skipped: bool = False  # a skip-primary drill has passed over its first choice


class Gateway:
    """Routes chat requests across a ``GatewayConfig``'s deployments with failover.

    Create inside a running event loop (it opens an aiohttp session unless given one) and
    ``aclose`` it when done. ``selector`` and ``policy`` default to the config's settings,
    ``redactor`` to one of the config's secrets.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        record: Recorder | None = None,
        session: aiohttp.ClientSession | None = None,
        selector: Selector | None = None,
        policy: RetryPolicy | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self.record = record
        # What upstreams say (errors, ids, models) passes it as it comes in: it reaches the
        # client, the log and the store. Default: the config's own secrets.
        self.redact = redactor or Redactor(config.secrets)
        self._own_session = session is None
        self.session = session or make_session()
        router, settings = config.router, config.settings
        self.selector = selector or Selector(
            router.strategy,
            breaker_config=_breaker_config(config),
            utilization_threshold=settings.rate_limit_threshold,
        )
        self.policy = policy or RetryPolicy(
            num_retries=router.num_retries, retry_after_cap_s=settings.max_retry_wait
        )
        self._targets: dict[tuple[str, str], Target] = {}
        # Each model a client names through a wildcard group is a target of its own, up to
        # gateway.max_wildcard_targets of them; beyond, results go under the pattern
        # deployment's own name, so clients cannot grow the gateway (or the database) at will.
        self._wildcard_targets = 0
        self._patterns = {d.id: d.name for d in config.deployments if d.wildcard}

    async def aclose(self) -> None:
        if self._own_session:
            await self.session.close()

    # --- public API --------------------------------------------------------------------------

    async def complete(
        self,
        request: ChatRequest,
        ids: RequestIds | None = None,
        owner: Owner = NOBODY,
        drill: Drill | None = None,
    ) -> tuple[ChatResponse, Deployment]:
        """The whole answer and the deployment that gave it; ``ids`` gets the upstream's id,
        the traffic result names ``owner``; ``drill`` forces it down its failover path."""
        request = dataclasses.replace(request, stream=False)
        call = self._call(request, ids, owner, drill)
        try:
            # The attempt settled with the selector before yielding the answer (``_attempt``).
            async for item in self._run(call):
                if isinstance(item, ChatResponse) and call.deployment is not None:
                    self._record(call, None)
                    return item, call.deployment
        except GatewayError as exc:
            self._record(call, exc)
            raise
        raise GatewayError(502, ErrorClass.PROTOCOL, "no response from any deployment")

    async def stream(
        self,
        request: ChatRequest,
        ids: RequestIds | None = None,
        owner: Owner = NOBODY,
        drill: Drill | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer's events; the first one arrives only once content is there."""
        request = dataclasses.replace(request, stream=True)
        call = self._call(request, ids, owner, drill)
        try:
            async for item in self._run(call):
                if not isinstance(item, ChatResponse):
                    yield item
        except GatewayError as exc:
            self._record(call, exc)
            raise
        self._record(call, None)

    def reachable(self, model: str) -> list[Deployment]:
        """The deployments a request for ``model`` may go to: its group's, then its fallback
        groups' of every kind (what a drill may skip)."""
        root = self.config.aliases.get(model, model)
        fallbacks = (g for kind in FallbackKind for g in self._fallback_list(root, kind))
        return [d for group in (model, *fallbacks) for d in self.config.resolve(group)]

    # --- the failover loop -------------------------------------------------------------------

    def _call(
        self, request: ChatRequest, ids: RequestIds | None, owner: Owner, drill: Drill | None
    ) -> _Call:
        # Checked before any lookup: the name goes into target names, headers and logs.
        check_model_name(request.model, self.config.settings.max_model_name_length)
        root = self.config.aliases.get(request.model, request.model)
        return _Call(request, root, ids or RequestIds(), owner, drill=drill)

    def _fallback_list(self, root: str, kind: FallbackKind) -> tuple[str, ...]:
        router = self.config.router
        if kind is FallbackKind.GENERAL:
            return router.fallbacks.get(root) or router.default_fallbacks
        if kind is FallbackKind.CONTEXT_WINDOW:
            return router.context_window_fallbacks.get(root, ())
        return router.content_policy_fallbacks.get(root, ())

    def _has_fallback(
        self, call: _Call, position: dict[FallbackKind, int], kind: FallbackKind
    ) -> bool:
        """Whether ``call`` may still go to a group of its ``kind`` fallbacks."""
        return position[kind] < len(self._fallback_list(call.root, kind)) and self._may_fall(call)

    def _take_fallback(
        self, call: _Call, position: dict[FallbackKind, int], kind: FallbackKind
    ) -> str:
        """The next group of ``kind``'s fallbacks, counted as one fallback of ``call``."""
        group = self._fallback_list(call.root, kind)[position[kind]]
        position[kind] += 1
        call.fallbacks += 1
        return group

    async def _run(self, call: _Call) -> AsyncIterator[StreamEvent | ChatResponse]:
        started = time.monotonic()
        position = dict.fromkeys(FallbackKind, 0)
        group = call.request.model
        while True:
            candidates = self.config.resolve(group)
            if not candidates:
                raise GatewayError(
                    404, ErrorClass.BAD_REQUEST, f"the model {group!r} does not exist"
                )
            if self.config.router.enable_pre_call_checks:
                prompt = estimate_prompt_tokens(call.continuation or call.request)
                fitting = [d for d in candidates if self._fits(d, prompt)]
                if not fitting:
                    if self._has_fallback(call, position, FallbackKind.CONTEXT_WINDOW):
                        group = self._take_fallback(call, position, FallbackKind.CONTEXT_WINDOW)
                        continue
                    raise GatewayError(
                        400,
                        ErrorClass.CONTEXT_LENGTH,
                        f"the prompt (about {prompt} tokens, estimated) fits the context window "
                        f"of no deployment of {group!r}",
                    )
                candidates = fitting
            candidates = self._eligible(call, candidates)
            if not candidates:
                if self._has_fallback(call, position, FallbackKind.GENERAL):
                    group = self._take_fallback(call, position, FallbackKind.GENERAL)
                    continue
                raise _ineligible(call)
            if call.drill is not None and call.drill.skip:
                candidates = self._drill_skipped(call, candidates)
                if not candidates:
                    if self._has_fallback(call, position, FallbackKind.GENERAL):
                        group = self._take_fallback(call, position, FallbackKind.GENERAL)
                        continue
                    raise GatewayError(
                        503,
                        ErrorClass.UNAVAILABLE,
                        f"drill: every deployment of {group!r} is skipped and no fallback is left",
                    )
            keyed = [d for d in candidates if d.missing_key is None]
            if not keyed:
                fallback = self._keyless(call, candidates[0], position, started)
                if fallback is None:
                    raise GatewayError(401, ErrorClass.AUTH, candidates[0].missing_key or "")
                group = self._take_fallback(call, position, fallback)
                continue
            candidates = keyed  # a deployment without a key takes traffic only when alone
            exclude: set[str] = set()
            group_attempts = same = 0
            retry_on: Deployment | None = None
            while True:
                pool = candidates
                if call.continuation is not None:
                    pool = [c for c in candidates if c.protocol in PREFILL_PROTOCOLS]
                deployment = None
                if retry_on is not None and self.selector.acquire(retry_on):
                    deployment = retry_on
                else:
                    same = 0
                    deployment = self.selector.select(pool, exclude)
                retry_on = None
                if call.drill is not None and deployment and self._skip_primary(call, deployment):
                    exclude.add(deployment.id)
                    continue
                if deployment is None:
                    if call.original is None and self._has_fallback(
                        call, position, FallbackKind.GENERAL
                    ):
                        self._passed_over(call, pool)
                        group = self._take_fallback(call, position, FallbackKind.GENERAL)
                        break
                    raise self._unavailable(call, pool, exclude)
                group_attempts += 1
                same += 1
                call.attempts += 1
                call.deployment = deployment
                self._went_to(call, deployment)
                try:
                    async for item in self._attempt(deployment, call):
                        yield item
                    return
                except _AttemptFailed as failure:
                    error = failure
                    call.failed = error.error_class
                exclude_next = exclude | {deployment.id}
                prefill_pool = [c for c in candidates if c.protocol in PREFILL_PROTOCOLS]
                decision = self.policy.decide(
                    Attempt(
                        error_class=error.error_class,
                        http_status=error.status,
                        retry_after_s=error.retry_after_s,
                        message=error.message,
                        bytes_sent=call.sent,
                        is_continuation=call.continuation is not None,
                        elapsed_s=time.monotonic() - started,
                        attempts=group_attempts,
                        same_deployment_attempts=same,
                        has_alternative=bool(self.selector.available(pool, exclude_next)),
                        prefill_alternative=(
                            bool("".join(call.delivered).strip())
                            and not call.tool_started
                            and bool(self.selector.available(prefill_pool, exclude_next))
                        ),
                        fallbacks=frozenset(
                            k
                            for k in FallbackKind
                            if not call.sent and self._has_fallback(call, position, k)
                        ),
                    )
                )
                action = decision.action
                if action is Action.RETRY:
                    if await self._wait_for(deployment, decision.delay_s):
                        retry_on = deployment
                        continue
                    action = Action.FAILOVER  # the breaker opened: not this one again
                if action is Action.FAILOVER:
                    exclude.add(deployment.id)
                    continue
                if action is Action.CONTINUE:
                    self._continue(call, error)
                    exclude.add(deployment.id)
                    continue
                if action is Action.FALLBACK and decision.fallback is not None:
                    group = self._take_fallback(call, position, decision.fallback)
                    break
                final = call.original if decision.report_original and call.original else error
                raise final.to_gateway_error()

    def _keyless(
        self,
        call: _Call,
        deployment: Deployment,
        position: dict[FallbackKind, int],
        started: float,
    ) -> FallbackKind | None:
        """No deployment of the group has a key: its provider's 401 without calling it, which
        the policy may send on to a fallback (the fallback list to take), else None."""
        call.attempts += 1
        call.deployment = deployment
        self._went_to(call, deployment)
        call.failed = ErrorClass.AUTH
        call.measure = _Measure(latency_s=0.0, http_status=401)
        decision = self.policy.decide(
            Attempt(
                error_class=ErrorClass.AUTH,
                http_status=401,
                message=deployment.missing_key,
                elapsed_s=time.monotonic() - started,
                fallbacks=frozenset(
                    k for k in FallbackKind if self._has_fallback(call, position, k)
                ),
            )
        )
        return decision.fallback if decision.action is Action.FALLBACK else None

    def _went_to(self, call: _Call, deployment: Deployment) -> None:
        """Note an attempt on ``deployment`` in the request's route; leaving the first one
        for another names the failure that made it leave."""
        name = self._target(deployment).name
        if call.route and call.route[-1] == name:
            return  # a retry of the same deployment
        if call.route and call.fallback_reason is None and call.failed is not None:
            call.fallback_reason = call.failed
        call.route.append(name)

    def _drill_skipped(self, call: _Call, candidates: list[Deployment]) -> list[Deployment]:
        """``candidates`` but those the drill skips, which go into the route as passed over."""
        assert call.drill is not None
        out = []
        for d in candidates:
            if call.drill.skips(d):
                call.route.append(self._target(d).name)
            else:
                out.append(d)
        return out

    def _skip_primary(self, call: _Call, deployment: Deployment) -> bool:
        """Whether ``deployment`` (just selected) is the primary a ``skip-primary`` drill passes
        over: the request's first choice, handed back unused and noted in the route. Not
        ``call.route`` being empty: deployments ``skip`` names go there first."""
        assert call.drill is not None
        if not call.drill.skip_primary or call.primary_skipped or call.attempts:
            return False
        call.primary_skipped = True
        self.selector.give_back(deployment.id)
        call.route.append(self._target(deployment).name)
        return True

    def _passed_over(self, call: _Call, pool: list[Deployment]) -> None:
        """The request's own group has nothing to call (every breaker open or cooling) and it
        moves to a fallback group before any attempt: its first choice, the group's first by
        priority, goes into the route as passed over and the breaker's reason as what moved it.
        Else an outage's traffic would read as the fallback group's own, no fallback at all."""
        if call.route or not pool:
            return
        first = min(pool, key=priority(pool))
        call.route.append(self._target(first).name)
        reason = self.selector.breaker(first.id).snapshot().cooldown_reason
        call.fallback_reason = reason or ErrorClass.UNAVAILABLE

    async def _wait_for(self, deployment: Deployment, delay: float) -> bool:
        """Sleep the policy's delay, and the deployment's cool-down if that ends a bit later;
        False (no wait) when the breaker opened instead."""
        breaker = self.selector.breaker(deployment.id)
        wait = breaker.available_in()
        if wait > delay + _COOLDOWN_SLACK_S:
            return False
        await asyncio.sleep(max(delay, wait))
        # The loop fires timers up to its clock resolution early: the cool-down may have a
        # millisecond left, and the retry must not be refused for it.
        left = breaker.available_in()
        if 0 < left <= _COOLDOWN_SLACK_S:
            await asyncio.sleep(left + 0.001)
        return True

    def _fits(self, deployment: Deployment, prompt_tokens: int) -> bool:
        """False only when the deployment's context window is known and too small."""
        target = self._target(deployment)
        window = target.context_window or catalog.context_window(target)
        return window is None or prompt_tokens <= window

    def _may_fall(self, call: _Call) -> bool:
        return call.fallbacks < self.config.router.max_fallbacks

    def _continue(self, call: _Call, error: _AttemptFailed) -> None:
        delivered = "".join(call.delivered)
        spent = (call.measure.usage.output_tokens or 0) if call.measure.usage else 0
        plan = continuation_request("anthropic", call.request, delivered, spent)
        if plan is None:  # the policy only continues when there is text to continue
            raise error.to_gateway_error()
        call.continuation, call.trimmed, call.original = plan.request, plan.trimmed, error

    def _unavailable(self, call: _Call, pool: list[Deployment], exclude: set[str]) -> GatewayError:
        if call.original is not None:
            return call.original.to_gateway_error()
        wait = self.selector.wait_hint(pool, exclude)
        hint = None if wait == float("inf") else round(wait, 3)
        cooling = [self.selector.breaker(d.id).snapshot() for d in pool]
        limited = any(s.cooldown_reason is ErrorClass.RATE_LIMITED for s in cooling)
        status, cls = (429, ErrorClass.RATE_LIMITED) if limited else (503, ErrorClass.UNAVAILABLE)
        detail = f"; retry in {hint:g}s" if hint is not None else ""
        name = call.request.model
        message = f"no deployment of {name!r} is available{detail}"
        if call.drill is not None and call.route and not call.attempts:
            # Nothing was called but the drill passed some over: say the drill left nothing, not
            # that the group is down (which it is when nothing was passed over either).
            message = f"drill: after skipping {', '.join(call.route)}, {message}"
        return GatewayError(status, cls, message, hint)

    # --- one attempt -------------------------------------------------------------------------

    async def _attempt(
        self, deployment: Deployment, call: _Call
    ) -> AsyncIterator[StreamEvent | ChatResponse]:
        """Send one attempt (already acquired) and end it in ``finish`` or ``release``."""
        measure = call.measure = _Measure()
        settled = False
        try:
            if call.request.stream:
                # Tool calls are held until they end (the next other event): a call cut midway
                # never reaches the client, so the request can restart cleanly elsewhere, where
                # partial arguments could neither be finished by a prefill nor be taken back.
                held: list[StreamEvent] = []
                async for event in self._stream_attempt(deployment, call, measure):
                    held.append(event)
                    if isinstance(event, ToolCallStart | ToolCallDelta):
                        continue
                    if call.sent or any(isinstance(e, _CONTENT) for e in held):
                        for out in self._release(call, held):
                            yield out
                for out in self._release(call, held):
                    yield out
            else:
                response = await self._complete_attempt(deployment, call, measure)
                # Settled before the answer goes out: its taker returns at once and closes this
                # generator at the yield, which would otherwise release the attempt unjudged (a
                # half-open probe that succeeded would never close its breaker).
                settled = True
                self._succeeded(deployment, measure)
                yield response
                return
            settled = True
            self._succeeded(deployment, measure)
        except _AttemptFailed as failure:
            settled = True
            # Every failure's message is upstream text or holds some: redacted once, here.
            failure.message = self.redact.clipped(failure.message)
            if measure.latency_s is None:
                measure.latency_s = measure.stopwatch.elapsed_s()
            measure.ratelimit = failure.ratelimit or measure.ratelimit
            self.selector.finish(
                deployment.id,
                error_class=failure.error_class,
                latency_s=measure.latency_s,
                ratelimit=measure.ratelimit,
                retry_after_s=failure.retry_after_s,
            )
            raise
        finally:
            if not settled:
                self.selector.release(deployment.id)  # the client went away

    def _succeeded(self, deployment: Deployment, measure: _Measure) -> None:
        self.selector.finish(
            deployment.id,
            ttft_s=measure.stopwatch.ttft_s,
            latency_s=measure.latency_s,
            tokens=_tokens(measure.usage),
            ratelimit=measure.ratelimit,
        )

    @staticmethod
    def _release(call: _Call, held: list[StreamEvent]) -> list[StreamEvent]:
        """Empty ``held`` into what goes to the client, noting what the client now has."""
        out = held[:]
        held.clear()
        for event in out:
            if isinstance(event, _CONTENT):
                call.sent = True
                if isinstance(event, TextDelta):
                    call.delivered.append(event.text)
                elif isinstance(event, ToolCallStart):
                    call.tool_started = True
        return out

    def _unsupported(self, deployment: Deployment, request: ChatRequest) -> list[str]:
        return unsupported(deployment, request, self._target(deployment).model)

    def _eligible(self, call: _Call, candidates: list[Deployment]) -> list[Deployment]:
        """The candidates that can honour every parameter (or drop the rest); a refusal is
        noted on ``call``, never a failure of the deployment."""
        out = []
        for d in candidates:
            missing = self._unsupported(d, call.request)
            if d.drop_params:
                missing = [p for p in missing if p in params.KEPT]
            for param in missing:
                call.refused.setdefault(params.client_name(call.request, param), []).append(d.name)
            if not missing:
                out.append(d)
        return out

    def _upstream(
        self, deployment: Deployment, request: ChatRequest
    ) -> tuple[str, dict[str, str], UpstreamRequest]:
        target = self._target(deployment)
        protocol = PROTOCOLS[deployment.protocol]
        headers = protocol.headers(target)
        if isinstance(protocol, OpenAIProtocol):
            up = tr_openai.render_request(
                request,
                model=deployment.model,
                max_tokens_field=params.max_tokens_field(
                    deployment.protocol,
                    target.model,
                    target.max_tokens_field,
                    deployment.api_version,
                ),
                stream_options=target.stream_include_usage,
            )
            url = protocol.chat_url(target)
        elif deployment.protocol == "vertex-anthropic":
            up = tr_anthropic.render_request(request, model=deployment.model)
            up.body = vertex.anthropic_body(up.body)
            method = "streamRawPredict" if request.stream else "rawPredict"
            url = vertex.model_url(target, deployment.model, method)
        elif deployment.protocol == "vertex":
            up = tr_gemini.render_request(request, model=deployment.model)
            method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
            url = vertex.model_url(target, deployment.model, method)
        elif deployment.protocol == "anthropic":
            up = tr_anthropic.render_request(request, model=deployment.model)
            url = f"{target.base_url}{up.path}"
        elif deployment.protocol == "bedrock":
            up = tr_bedrock.render_request(request, model=deployment.model)
            url = f"{target.base_url}{up.path}"
        else:
            up = tr_gemini.render_request(request, model=deployment.model)
            url = f"{target.base_url}{up.path}"
        return url, {**headers, **up.headers}, up

    async def _send(
        self, deployment: Deployment, request: ChatRequest, call: _Call, measure: _Measure
    ) -> aiohttp.ClientResponse:
        """POST the attempt and return a 2xx response; any other status raises, classified."""
        request = with_defaults(deployment, request)
        if deployment.drop_params:
            dropped = self._unsupported(deployment, request)
            measure.dropped = [params.client_name(request, p) for p in dropped]
            request = params.without(request, dropped)
        url, headers, up = self._upstream(deployment, request)
        body = json.dumps(up.body).encode()
        protocol = PROTOCOLS[deployment.protocol]
        try:
            headers = await protocol.sign(self._target(deployment), "POST", url, headers, body)
        except CredentialsError as exc:
            raise _AttemptFailed(exc.error_class, str(exc)) from None
        headers.setdefault("content-type", "application/json")
        response = await self.session.post(
            URL(url, encoded=protocol.encoded_urls),
            data=body,
            headers=headers,
            allow_redirects=False,
            trace_request_ctx=measure.stopwatch,  # make_session's hook: when it went out
        )
        measure.http_status = response.status
        names = PROTOCOLS[deployment.protocol].request_id_headers
        measure.upstream_request_id = self.redact.clipped(
            next((response.headers[h] for h in names if h in response.headers), None)
        )
        call.ids.upstream = measure.upstream_request_id
        call.ids.deployment = deployment.name
        measure.ratelimit = parse_ratelimit(response.headers)
        if 200 <= response.status < 300:
            return response
        try:
            body = await read_capped(response, MAX_ERROR_BODY_BYTES, truncate=True)
        finally:
            response.release()
        error = PROTOCOLS[deployment.protocol].parse_error(response.status, body, response.headers)
        retry_after = parse_retry_after(response.headers)
        raise _AttemptFailed(
            error.error_class,
            error.message,
            status=response.status,
            retry_after_s=retry_after if retry_after is not None else error.retry_after_s,
            ratelimit=measure.ratelimit,
        )

    async def _complete_attempt(
        self, deployment: Deployment, call: _Call, measure: _Measure
    ) -> ChatResponse:
        timeout = deployment.timeout or self.config.router.timeout or DEFAULT_TIMEOUT_S
        with _Classified(f"no complete answer within {timeout:g}s"):
            async with asyncio.timeout(timeout):
                response = await self._send(deployment, call.request, call, measure)
                try:
                    body = await read_capped(response, MAX_BODY_BYTES, too_large=_too_large)
                finally:
                    response.release()
            measure.latency_s = measure.stopwatch.elapsed_s()
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise _AttemptFailed(
                    ErrorClass.PROTOCOL, f"malformed JSON in a 200: {error_snippet(body)}"
                ) from None
            answer = _codec(deployment.protocol).parse_response(parsed)
        if answer.finish_reason == "error":
            raise _failed_finish()
        measure.usage = answer.usage
        measure.response_model = self.redact.clipped(answer.model) or None
        measure.finish_reason = answer.finish_reason
        measure.refused = answer.refusal is not None
        answer.model = measure.response_model or deployment.model
        answer.id = self.redact.clipped(answer.id)
        answer.dropped_params = list(measure.dropped)
        return answer

    async def _stream_attempt(
        self, deployment: Deployment, call: _Call, measure: _Measure
    ) -> AsyncIterator[StreamEvent]:
        settings = self.config.settings
        timeout = (
            deployment.stream_timeout
            or self.config.router.stream_timeout
            or deployment.timeout
            or self.config.router.timeout
            or DEFAULT_TIMEOUT_S
        )
        first_limit = min(timeout, settings.ttft_limit or timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + first_limit
        reason = f"no first token within {first_limit:g}s"
        request = call.continuation or call.request
        continuing = call.continuation is not None
        with _Classified(reason):
            async with asyncio.timeout_at(deadline):
                response = await self._send(deployment, request, call, measure)
        done = False
        try:
            content_type = response.headers.get("content-type", "")
            framing = PROTOCOLS[deployment.protocol]
            if framing.stream_content_type not in content_type:
                raise _AttemptFailed(
                    ErrorClass.PROTOCOL,
                    f"expected {framing.stream_content_type}, got {content_type!r}",
                )
            decoder = framing.frame_decoder()
            parser = _codec(deployment.protocol).StreamDecoder()
            chunks = response.content.iter_any()
            held: list[StreamEvent] = []  # nothing reaches the client before content
            began = False  # content arrived: the held events went out
            stopwatch = measure.stopwatch
            finished = usage_after_finish = False
            skipped = 0
            while not done:
                try:
                    with _Classified(reason):
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(chunks, None)
                except _AttemptFailed as failure:
                    if finished and failure.error_class is ErrorClass.TIMEOUT:
                        break  # the answer is whole; only the terminal event is late
                    raise
                if chunk is None:
                    break
                now = time.perf_counter()
                try:
                    events = decoder.feed(chunk)
                except (SSEError, ProtocolError) as exc:
                    raise _AttemptFailed(ErrorClass.PROTOCOL, str(exc)) from None
                out: list[StreamEvent] = []
                for sse_event in events:
                    try:
                        decoded = parser.feed(sse_event)
                    except TranslationError:
                        skipped += 1  # a malformed chunk: skipped, never passed on
                        continue
                    for event in decoded:
                        if isinstance(event, StreamError):
                            error = PROTOCOLS[deployment.protocol].error_from_object(
                                event.body, None
                            )
                            raise _AttemptFailed(
                                error.error_class,
                                f"error event in stream: {error.message}",
                                retry_after_s=error.retry_after_s,
                            )
                        if isinstance(event, TextDelta):  # the common case first
                            stopwatch.content(now, len(event.text))
                        elif isinstance(event, ToolCallDelta):
                            stopwatch.content(now, len(event.arguments))
                        elif isinstance(event, ToolCallStart):
                            stopwatch.content(now, len(event.name))
                        elif isinstance(event, RefusalDelta):
                            measure.refused = True
                            stopwatch.content(now, len(event.text))
                        elif isinstance(event, Finish):
                            if event.reason == "error":
                                raise _failed_finish()
                            finished = True
                            measure.finish_reason = event.reason
                        elif isinstance(event, UsageUpdate):
                            measure.usage = event.usage
                            usage_after_finish = finished
                        elif isinstance(event, MessageStart):
                            measure.response_model = self.redact.clipped(event.model) or None
                            if continuing:
                                continue  # the client has had its start
                            model = measure.response_model or deployment.model
                            event = MessageStart(
                                self.redact.clipped(event.id), model, list(measure.dropped)
                            )
                        if not began:
                            if not isinstance(event, _CONTENT):
                                held.append(event)
                                continue
                            began = True
                            out.extend(held)
                            held.clear()
                        if continuing and call.trimmed and isinstance(event, TextDelta):
                            trimmed, call.trimmed = call.trimmed, ""
                            event = TextDelta(event.text.removeprefix(trimmed))
                            if not event.text:
                                continue
                        out.append(event)
                for event in out:
                    yield event
                done = parser.done or usage_after_finish
                if began:
                    deadline = loop.time() + settings.idle_timeout
                    reason = f"stream idle for {settings.idle_timeout:g}s"
            if not finished:
                raise _AttemptFailed(
                    ErrorClass.PROTOCOL, "the stream ended before the answer was complete"
                )
            measure.latency_s = stopwatch.elapsed_s()
            measure.whole = True
            if skipped:
                measure.warnings.append(f"{skipped} malformed stream events skipped")
            for event in held:
                yield event
            done = True
        finally:
            if done:
                response.release()
            else:
                response.close()  # abandoned mid-body: the connection cannot be reused

    # --- bookkeeping -------------------------------------------------------------------------

    def _target(self, deployment: Deployment) -> Target:
        key = (deployment.id, deployment.model)
        target = self._targets.get(key)
        if target is not None:
            return target
        target = deployment.to_target()
        pattern = self._patterns.get(deployment.id)
        if pattern is not None:
            if self._wildcard_targets >= self.config.settings.max_wildcard_targets:
                # The model as requested, recorded under the pattern: not kept, nor counted.
                return dataclasses.replace(target, name=pattern)
            self._wildcard_targets += 1
        self._targets[key] = target
        return target

    def _record(self, call: _Call, error: GatewayError | None) -> None:
        deployment = call.deployment
        if self.record is None or deployment is None:
            return
        target = self._target(deployment)
        measure = call.measure
        result = CheckResult(
            target=target.name,
            provider=deployment.provider,
            model=target.model,
            check=CheckKind.STREAM if call.request.stream else CheckKind.INFERENCE,
            # When the measured attempt started, as a probe's timestamp is its check's start.
            timestamp=datetime.now(UTC) - timedelta(seconds=measure.stopwatch.elapsed_s()),
            ok=error is None,
            error_class=error.error_class if error else None,
            error_message=error.message if error else None,
            http_status=error.status if error else measure.http_status,
            latency_ms=_ms(measure.latency_s),
            usage=measure.usage or Usage(),
            ratelimit=measure.ratelimit,
            retry_after_s=error.retry_after_s if error else None,
            response_model=measure.response_model,
            finish_reason=measure.finish_reason,
            request_id=measure.upstream_request_id,
            warnings=list(measure.warnings),
            source=call.drill.source if call.drill else Source.TRAFFIC,
            attempts=call.attempts,
            fallbacks=call.fallbacks,
            route=list(call.route),
            fallback_reason=call.fallback_reason,
            features=params.features(call.request),
            drill=call.drill.label if call.drill else None,
        )
        measure.stopwatch.apply(result, measure.usage, whole=measure.whole)
        # Judged as probes and instrument() judge the same answer: one wording.
        filtered = measure.finish_reason == "content_filter"
        blocked = blocked_reason(measure.refused, filtered, measure.finish_reason)
        if error is None and blocked is not None:
            result.ok = False
            result.error_class = ErrorClass.CONTENT_FILTER
            result.error_message = blocked
        if measure.usage is not None:
            cost, warning = catalog.cost_usd(target, measure.usage, measure.response_model)
            result.cost_usd = cost
            if warning:
                result.warnings.append(warning)
        result.context_window = target.context_window or catalog.context_window(target)
        call.owner.stamp(result)
        self.record(result)


def with_defaults(deployment: Deployment, request: ChatRequest) -> ChatRequest:
    """``request`` with the deployment's defaults, as it will be sent."""
    if deployment.max_tokens is not None and request.max_tokens is None:
        request = dataclasses.replace(request, max_tokens=deployment.max_tokens)
    if deployment.temperature is not None and request.temperature is None:
        request = dataclasses.replace(request, temperature=deployment.temperature)
    return request


def unsupported(deployment: Deployment, request: ChatRequest, model: str) -> list[str]:
    """The parameters of ``request`` ``deployment`` (asking for ``model``, its target's) cannot
    honour: what decides whether it is eligible, for routing and for readiness alike."""
    prepared = with_defaults(deployment, request)
    return params.unsupported(prepared, deployment.protocol, model, deployment.lacks)


def check_model_name(model: str, limit: int) -> None:
    """GatewayError (400) unless ``model`` is a printable name of at most ``limit`` characters:
    whatever names it (errors, headers, target names, logs) can then echo it."""
    if len(model) > limit:
        raise GatewayError(
            400,
            ErrorClass.BAD_REQUEST,
            f"the model name is {len(model)} characters long; at most {limit} are accepted",
            param="model",
        )
    if not model.isprintable():
        raise GatewayError(
            400,
            ErrorClass.BAD_REQUEST,
            "the model name contains control or other non-printable characters",
            param="model",
        )


def estimate_prompt_tokens(request: ChatRequest) -> int:
    """An estimate of the prompt's tokens for the pre-call context-window check, not a count.

    About 4 characters a token (English prose; code and most other scripts take more tokens a
    character, so they are underestimated and the provider's own context-length error still
    catches them), plus 4 tokens of framing per message and for the system prompt. Tools are
    counted by their JSON; images are not counted (their cost depends on their size).
    """
    chars = len(request.system or "")
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description or "") + len(json.dumps(tool.parameters))
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, TextPart):
                chars += len(part.text)
            elif isinstance(part, ToolCallPart):
                chars += len(part.name) + len(json.dumps(part.arguments))
            elif isinstance(part, ToolResultPart):
                chars += len(part.content)
    return chars // 4 + 4 * (len(request.messages) + 1)


def _breaker_config(config: GatewayConfig) -> BreakerConfig:
    router = config.router
    if router.disable_cooldowns:
        never = 1 << 30
        return BreakerConfig(failure_threshold=never, min_requests=never)
    # LiteLLM cools a deployment down after allowed_fails failures for cooldown_time.
    return BreakerConfig(
        failure_threshold=max(1, router.allowed_fails), cooldown_s=router.cooldown_time
    )


def _codec(protocol: str) -> UpstreamCodec:
    upstream = PROTOCOLS[protocol]
    if isinstance(upstream, OpenAIProtocol):
        # xAI reports reasoning tokens beside completion_tokens, not in it (XAIProtocol).
        if upstream.reasoning_outside_completion:
            return tr_openai.ReasoningOutsideCompletion
        return tr_openai
    if protocol == "bedrock":
        return tr_bedrock
    return tr_anthropic if params.family(protocol) == "anthropic" else tr_gemini


class _Classified:
    """Turn transport failures into classified attempt failures, as the probe classifies them."""

    def __init__(self, timeout_reason: str) -> None:
        self.timeout_reason = timeout_reason

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        if exc is None or isinstance(exc, _AttemptFailed):
            return False
        if isinstance(exc, aiohttp.ConnectionTimeoutError | TimeoutError):
            raise _AttemptFailed(ErrorClass.TIMEOUT, f"timed out: {self.timeout_reason}") from None
        if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
            raise _AttemptFailed(ErrorClass.CONNECTION, f"upstream dropped the connection: {exc}")
        if isinstance(exc, aiohttp.ClientResponseError):
            raise _AttemptFailed(ErrorClass.PROTOCOL, f"unreadable upstream response: {exc}")
        if isinstance(exc, aiohttp.ClientError | OSError):
            raise _AttemptFailed(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TranslationError):
            raise _AttemptFailed(ErrorClass.PROTOCOL, exc.message)
        return False


def _ineligible(call: _Call) -> GatewayError:
    """No deployment can honour the request's parameters: the client's 400, naming them."""
    listing = "; ".join(f"'{p}' (not by {', '.join(names)})" for p, names in call.refused.items())
    return GatewayError(
        400,
        ErrorClass.BAD_REQUEST,
        f"no deployment of {call.request.model!r} can honour {listing}; leave the parameter "
        "out, or set drop_params to drop it",
        param=next(iter(call.refused), None),
    )


def _failed_finish() -> _AttemptFailed:
    # Mistral and OpenRouter end an answer that failed midway with finish_reason "error" (and
    # Gemini's MALFORMED_FUNCTION_CALL maps to it): a failed attempt, never an answer to pass
    # on, as the probes judge it.
    return _AttemptFailed(
        ErrorClass.SERVER_ERROR, "the provider ended generation with finish_reason 'error'"
    )


def _too_large(message: str) -> _AttemptFailed:
    return _AttemptFailed(ErrorClass.PROTOCOL, message)


def _tokens(usage: Usage | None) -> int | None:
    if usage is None:
        return None
    return (usage.input_tokens or 0) + (usage.output_tokens or 0)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
