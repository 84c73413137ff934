"""Failover drills: one small real request, streamed and not, down each failover path of the
gateway's model groups, with the deployments before it forced out (``llmpulse drill``, and
``gateway.drills`` on a schedule).

A group's failover paths are its deployments in the order the gateway tries them (``order``
first under the priority strategy, else the config's order), then each fallback group's
(``router_settings.fallbacks`` of the group, else ``default_fallbacks``), as far as
``max_fallbacks`` lets a request go; a fallback beyond it is never reached, so it is named
unreachable rather than drilled. A path is the deployments forced out before it plus the one
that must answer. Each request goes through the real ``Gateway`` (selection, fallback groups,
eligibility, translation from an OpenAI-shaped request) with a ``Drill`` skipping every other
deployment of the groups on the path, and the fallbacks after the path's own group cut off: only
the path's deployment can answer, so its failure is reported as it is, never masked by a later
fallback. Drills run on a gateway of their own (fresh breakers, no shared state): they neither
disturb live routing nor are steered by it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from llmpulse.config.errors import ConfigError
from llmpulse.config.gateway import (
    Deployment,
    DrillSettings,
    GatewayConfig,
    ModelGroup,
    Strategy,
)
from llmpulse.errors import ErrorClass
from llmpulse.gateway.ir import ChatRequest, Finish, Message, TextPart
from llmpulse.gateway.proxy import DEFAULT_TIMEOUT_S, Drill, Gateway, GatewayError
from llmpulse.gateway.selector import priority
from llmpulse.http import make_session
from llmpulse.probe.costs import probe_cost_per_run
from llmpulse.result import CheckKind, CheckResult, Source
from llmpulse.schedule import Schedule
from llmpulse.secrets import Redactor
from llmpulse.store import database_errors
from llmpulse.store.base import Store
from llmpulse.target import Probe

log = logging.getLogger(__name__)

DRILL_PROMPT = "Reply with the single word: ok"
# The least some APIs take (OpenAI's Responses API: 16); a drill needs only an answer.
DRILL_MAX_TOKENS = 16
MAX_PATHS = 100  # per run: beyond, the rest are named and not drilled
CONCURRENCY = 4  # paths drilled at once: a provider serving several paths is not hammered
TIMEOUT_CAP_S = 60.0  # a request's timeout: the deployment's, at most this
# A scheduled occurrence missed by at most this much (a restart at the drill's time) runs late.
MISSED_GRACE_S = 3600.0
# The keys of ``DrillOutcome.to_json``, in order (the ``--json`` contract).
JSON_KEYS = (
    "group",
    "path",
    "stream",
    "ok",
    "ttft_ms",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "error_class",
    "error_message",
)


@dataclasses.dataclass(frozen=True, slots=True)
class FailoverPath:
    """A request of ``group`` with every deployment but the last of ``deployments`` out: the
    last must answer. ``fallbacks``: the fallback groups the request goes through to reach it."""

    group: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...] = ()

    @property
    def target(self) -> Deployment:
        return self.deployments[-1]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.deployments]

    @property
    def label(self) -> str:
        return " → ".join(self.names)


@dataclasses.dataclass(frozen=True, slots=True)
class DrillPlan:
    """The paths to drill, in order, and what is not drilled (one line each)."""

    paths: tuple[FailoverPath, ...]
    notes: tuple[str, ...] = ()


def ordered(deployments: Sequence[Deployment], strategy: Strategy) -> list[Deployment]:
    """``deployments`` in the order a request tries them when each before fails: by ``order``
    (unset last) under the priority strategy, as the selector does; the config's order under
    the others, whose choice changes with load, latency or chance."""
    if strategy is not Strategy.PRIORITY:
        return list(deployments)
    return sorted(deployments, key=priority(deployments))


def failover_paths(
    config: GatewayConfig, group: str | None = None, *, max_paths: int = MAX_PATHS
) -> DrillPlan:
    """Every failover path of every concrete group (or of ``group``, a group or an alias of
    one: ConfigError if neither), at most ``max_paths`` of them."""
    notes: list[str] = []
    if group is not None:
        name = config.aliases.get(group, group)
        chosen = [g for g in config.groups if g.name == name and not g.wildcard]
        if not chosen:
            raise ConfigError(f"--group: {config.no_group(group)}")
        groups = chosen
    else:
        groups = list(config.groups)
    paths: list[FailoverPath] = []
    for g in groups:
        if g.wildcard:
            notes.append(f"{g.name}: a wildcard group, not drilled (it names no one model)")
            continue
        paths += _group_paths(config, g, notes)
    if len(paths) > max_paths:
        left = paths[max_paths:]
        notes.append(
            f"{len(left)} paths not drilled (at most {max_paths} a run): "
            + ", ".join(f"{p.group}: {p.label}" for p in left[:5])
            + (", ..." if len(left) > 5 else "")
        )
        paths = paths[:max_paths]
    return DrillPlan(tuple(paths), tuple(notes))


def _group_paths(config: GatewayConfig, group: ModelGroup, notes: list[str]) -> list[FailoverPath]:
    router = config.router
    # The gateway's choice (proxy.Gateway._fallback_list): the requested group's own list.
    listed = router.fallbacks.get(group.name) or router.default_fallbacks
    reachable, beyond = listed[: router.max_fallbacks], listed[router.max_fallbacks :]
    if beyond:
        notes.append(
            f"{group.name}: fallbacks {', '.join(beyond)} unreachable "
            f"(router_settings.max_fallbacks is {router.max_fallbacks}), not drilled"
        )
    # Taken only by a prompt too long or a request a provider's content policy refused: a
    # drill's small request cannot go there. Each such group is drilled as a group of its own.
    special = {
        *router.context_window_fallbacks.get(group.name, ()),
        *router.content_policy_fallbacks.get(group.name, ()),
    }
    if special:
        notes.append(
            f"{group.name}: context-window and content-policy fallbacks "
            f"{', '.join(sorted(special))} not drilled down this path (a drill's small request "
            "cannot take them): each is drilled as a group of its own"
        )
    chain = ordered(group.deployments, router.strategy)
    paths = [FailoverPath(group.name, tuple(chain[: i + 1])) for i in range(len(chain))]
    seen = {group.name}
    taken: list[str] = []
    for fallback in reachable:
        taken.append(fallback)
        real = config.aliases.get(fallback, fallback)
        if real in seen:
            continue  # its deployments are on the path already: they are out again
        seen.add(real)
        for d in ordered(config.resolve(real), router.strategy):
            if any(d.name == c.name for c in chain):
                continue
            chain.append(d)
            paths.append(FailoverPath(group.name, tuple(chain), tuple(taken)))
    return paths


def drill_config(
    config: GatewayConfig, path: FailoverPath, timeout_cap: float = TIMEOUT_CAP_S
) -> GatewayConfig:
    """``config`` as a drill of ``path`` runs it: the path's group falls back only as far as
    the path's own fallback groups (no other fallback can answer in its place), and every
    deployment's timeout is capped at ``timeout_cap``."""
    router = config.router

    def capped(d: Deployment) -> Deployment:
        timeout = min(d.timeout or router.timeout or DEFAULT_TIMEOUT_S, timeout_cap)
        stream = min(d.stream_timeout or router.stream_timeout or timeout, timeout_cap)
        return dataclasses.replace(d, timeout=timeout, stream_timeout=stream)

    return dataclasses.replace(
        config,
        groups=tuple(
            ModelGroup(g.name, tuple(capped(d) for d in g.deployments)) for g in config.groups
        ),
        router=dataclasses.replace(
            router,
            fallbacks={path.group: path.fallbacks},
            default_fallbacks=(),
            context_window_fallbacks={},
            content_policy_fallbacks={},
        ),
    )


def drill_route(config: GatewayConfig, path: FailoverPath) -> list[str]:
    """The route a drill of ``path`` takes: every deployment of the groups on it but its target,
    in the order the gateway passes them over, then the target."""
    groups = [path.group, *path.fallbacks]
    names = [d.name for g in groups for d in config.resolve(g)] + path.names
    target = path.target.name
    return [*dict.fromkeys(n for n in names if n != target), target]


def drill_skip(config: GatewayConfig, path: FailoverPath) -> frozenset[str]:
    """Every deployment of the groups on ``path`` but its target: passed over unasked."""
    return frozenset(drill_route(config, path)[:-1])


def drill_request(group: str) -> ChatRequest:
    """The drill's request, as an OpenAI client would send it: translated like any other."""
    return ChatRequest(
        model=group,
        messages=[Message("user", [TextPart(DRILL_PROMPT)])],
        max_tokens=DRILL_MAX_TOKENS,
        include_usage=True,
    )


def expected_cost(path: FailoverPath) -> float | None:
    """USD for a path's two requests (only its target is called), from the catalogue's prices
    (``probe.costs``); None when its model has no known price."""
    target = path.target.to_target()
    total = 0.0
    for kind in (CheckKind.INFERENCE, CheckKind.STREAM):
        probe = Probe(
            name="drill",
            kind=kind,
            messages=({"role": "user", "content": DRILL_PROMPT},),
            params={"max_tokens": DRILL_MAX_TOKENS},
        )
        cost = probe_cost_per_run(target, probe)
        if cost is None:
            return None
        total += cost
    return total


@dataclasses.dataclass(slots=True)
class DrillOutcome:
    """One drill request: its path, whether it answered completely, and what it measured."""

    group: str
    path: list[str]
    stream: bool
    ok: bool
    ttft_ms: float | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    error_class: str | None = None
    error_message: str | None = None
    # What was recorded of it (the gateway's result, or the drill's own when the gateway
    # recorded none: refused before calling a deployment, or cut off by the drill's bound).
    result: CheckResult = dataclasses.field(kw_only=True, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in JSON_KEYS}


async def run_drill(
    config: GatewayConfig,
    plan: DrillPlan,
    *,
    label: str,
    record: Callable[[CheckResult], None] | None = None,
    redactor: Redactor | None = None,
    session: aiohttp.ClientSession | None = None,
    concurrency: int = CONCURRENCY,
    timeout_cap: float = TIMEOUT_CAP_S,
) -> list[DrillOutcome]:
    """Drill every path of ``plan``: a non-streaming then a streaming request each, at most
    ``concurrency`` paths at once. Each recorded result (``source=drill``, ``drill=label``) also
    goes to ``record``. The outcomes are in the plan's order."""
    redact = redactor or Redactor(config.secrets)
    own = session is None
    http = session or make_session()
    gate = asyncio.Semaphore(concurrency)

    async def one(path: FailoverPath) -> list[DrillOutcome]:
        async with gate:
            return await _drill_path(config, path, label, record, redact, http, timeout_cap)

    try:
        done = await asyncio.gather(*(one(p) for p in plan.paths))
    finally:
        if own:
            await http.close()
    return [o for outcomes in done for o in outcomes]


async def _drill_path(
    config: GatewayConfig,
    path: FailoverPath,
    label: str,
    record: Callable[[CheckResult], None] | None,
    redact: Redactor,
    session: aiohttp.ClientSession,
    timeout_cap: float,
) -> list[DrillOutcome]:
    routed = drill_config(config, path, timeout_cap)
    drill = Drill(label=label, skip=drill_skip(config, path), source=Source.DRILL)
    request = drill_request(path.group)
    outcomes = []
    for stream in (False, True):
        recorded: list[CheckResult] = []
        # A gateway per request: a failure's cool-down must not stand in for the next request.
        gateway = Gateway(routed, record=recorded.append, session=session, redactor=redact)
        error: GatewayError | None = None
        finished = not stream
        started = datetime.now(UTC)
        try:
            # The whole request, retries and a trickling stream included: a provider that
            # never ends its answer cannot hold the drill (the deployment's timeouts bound each
            # wait, not their sum).
            async with asyncio.timeout(timeout_cap):
                if stream:
                    async for event in gateway.stream(request, drill=drill):
                        finished = finished or isinstance(event, Finish)
                else:
                    await gateway.complete(request, drill=drill)
        except GatewayError as exc:
            error = exc
        except TimeoutError:  # the gateway records nothing of a request cut off: said below
            bound = f"no complete answer within {timeout_cap:g}s (the drill's bound)"
            error = GatewayError(504, ErrorClass.TIMEOUT, bound)
        finally:
            await gateway.aclose()
        result = (
            recorded[-1] if recorded else _unrecorded(config, path, stream, label, started, error)
        )
        outcome = _outcome(path, stream, result, finished, redact)
        # Recorded once judged: a verdict changed afterwards could miss the store.
        if record is not None:
            record(result)
        outcomes.append(outcome)
    return outcomes


def _unrecorded(
    config: GatewayConfig,
    path: FailoverPath,
    stream: bool,
    label: str,
    started: datetime,
    error: GatewayError | None,
) -> CheckResult:
    """The failed drill request the gateway recorded nothing of (refused before calling any
    deployment, or cut off by the drill's bound): a result all the same, so that the alert
    leader judges the path from the store as the command's exit code judges it."""
    target = path.target
    return CheckResult(
        target=target.name,
        provider=target.provider,
        model=target.model,
        check=CheckKind.STREAM if stream else CheckKind.INFERENCE,
        timestamp=started,
        ok=False,
        error_class=(error.error_class if error else None) or ErrorClass.UNAVAILABLE,
        error_message=error.message if error else "no answer",
        http_status=error.status if error else None,
        source=Source.DRILL,
        route=drill_route(config, path),
        drill=label,
    )


def _outcome(
    path: FailoverPath, stream: bool, result: CheckResult, finished: bool, redact: Redactor
) -> DrillOutcome:
    out = DrillOutcome(path.group, path.names, stream, ok=False, result=result)
    out.ttft_ms, out.latency_ms, out.cost_usd = result.ttft_ms, result.latency_ms, result.cost_usd
    out.input_tokens, out.output_tokens = result.usage.input_tokens, result.usage.output_tokens
    answered = result.route[-1] if result.route else None
    if result.ok and answered != path.target.name:
        # Cannot happen while the drill skips the rest; said rather than counted as a pass.
        result.ok, result.error_class = False, ErrorClass.UNAVAILABLE
        result.error_message = f"answered by {answered}, not the path's {path.target.name}"
    elif result.ok and not finished:
        result.ok, result.error_class = False, ErrorClass.PROTOCOL
        result.error_message = "the stream ended without finishing"
    result.error_message = redact.clipped(result.error_message)
    out.ok = result.ok
    out.error_class = str(result.error_class) if result.error_class else None
    out.error_message = result.error_message
    return out


def next_run(settings: DrillSettings, now: float) -> float:
    """When the next scheduled drill after ``now`` starts (``gateway.drills``)."""
    start, _ = next(Schedule(settings.schedule, 0.0, settings.timezone).windows(now))
    return start


def run_label(now: float) -> str:
    """A drill run's label: when it started, so runs sort and a path's latest is plain."""
    return "drill-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


async def scheduled_drills(
    config: GatewayConfig,
    settings: DrillSettings,
    stop: asyncio.Event,
    *,
    record: Callable[[CheckResult], None],
    store: Store,
    redactor: Redactor | None = None,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] = time.time,
    missed_grace: float = MISSED_GRACE_S,
) -> None:
    """Run every path's drill at each occurrence of ``settings``'s schedule until ``stop``,
    each result to ``record``. An occurrence runs once among every process on ``store``'s
    database: the one that claims it first (``Store.claim``; agents, gateway replicas and hosts
    on one PostgreSQL database alike). One the database cannot be asked about is passed, said
    in the log: a drill run twice costs tokens, one passed is run at the next occurrence. An
    occurrence at most ``missed_grace`` old when this starts (every process was down,
    restarting or deploying then) runs at once, unless a process ran it; an older one is left
    to the next."""
    plan = failover_paths(config)
    for note in plan.notes:  # what no occurrence will drill: said once, as the command says it
        log.warning("scheduled failover drills: %s", note)
    missed = Schedule(settings.schedule, missed_grace, settings.timezone).window(clock())
    while not stop.is_set():
        if missed is not None:
            due, missed = missed[0], None
        else:
            due = next_run(settings, clock())
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, due - clock()))
            return
        except TimeoutError:
            pass
        label = run_label(due)
        try:
            if not await asyncio.to_thread(store.claim, f"drill:{label}", due):
                continue  # another process drills this occurrence
        except database_errors(OSError) as exc:
            log.warning("failover drill %s passed: the database cannot be asked (%s)", label, exc)
            continue
        try:
            outcomes = await run_drill(
                config, plan, label=label, record=record, redactor=redactor, session=session
            )
        except Exception:  # a bug in one run: logged, and the next occurrence runs
            log.exception("scheduled failover drill failed")
            continue
        broken = [o for o in outcomes if not o.ok]
        log.info("failover drill: %d requests, %d failed", len(outcomes), len(broken))
