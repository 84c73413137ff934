"""The gateway's own Prometheus ``/metrics``: traffic, fallbacks and retries counted per request,
breaker state and cool-downs read at scrape time (every metric is described in docs/metrics.md).

Names are LiteLLM's proxy metrics (``litellm_*``, same label names) where the meaning is the
same, so dashboards built on LiteLLM's work as they are; ``llmpulse_gateway_*`` for what
LiteLLM does not export (fallbacks between deployments with their reason, retries, cool-downs).

Counts are plain integers per label tuple, turned into metric families at scrape time as the
monitor's exporter does (``telemetry.prometheus``): ``observe`` is a few dict updates per
request, with no lock and no object per series. Fed only with gateway traffic (live drills
included, their fallbacks with reason ``drill``); probe and drill-run results are not traffic.

Served on the API's port (``metrics_endpoint``), or a socket of its own
(``create_metrics_app``), from the gateway's event loop either way: the breakers are read
where they live, never from another thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmpulse.config.gateway import Deployment, GatewayConfig
from llmpulse.gateway.breaker import BreakerState
from llmpulse.gateway.selector import Selector
from llmpulse.result import CheckResult, Source

# LiteLLM's litellm_deployment_state: 0 healthy, 1 partial outage, 2 complete outage (LiteLLM
# sets 2 when it cools a deployment down: so does a cool-down here, the deployment is skipped).
BREAKER_VALUES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
COOLING_VALUE = 2
DRILL_REASON = "drill"  # a live drill's fallback: the drill passed the deployments over
UNKNOWN_REASON = "unknown"  # left its first deployment without a failure class on record


@dataclasses.dataclass(frozen=True, slots=True)
class _Where:
    """What labels say of a deployment a route names (its target name)."""

    group: str
    model_id: str
    provider: str
    model: str


class GatewayMetrics:
    """One registry per instance: several gateways (or tests) in one process share nothing."""

    def __init__(self, config: GatewayConfig, selector: Callable[[], Selector | None]) -> None:
        self.config = config
        self.selector = selector  # the gateway's, once it serves
        self._where = {d.name: _where(d) for d in config.deployments}
        # The gateway bounds the target names wildcard groups create (max_wildcard_targets),
        # and so the names cached here.
        self._named_limit = len(self._where) + config.settings.max_wildcard_targets + 1
        self.requests: dict[tuple[str, ...], int] = {}
        self.proxy_requests: dict[tuple[str, ...], int] = {}
        self.proxy_failed: dict[tuple[str, ...], int] = {}
        self.successes: dict[tuple[str, ...], int] = {}
        self.fallbacks: dict[tuple[str, ...], int] = {}
        self.litellm_fallbacks: dict[tuple[str, ...], int] = {}
        self.litellm_failed_fallbacks: dict[tuple[str, ...], int] = {}
        self.retries: dict[str, int] = {}
        self.remaining_requests: dict[tuple[str, ...], int] = {}
        self.remaining_tokens: dict[tuple[str, ...], int] = {}
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def observe(self, result: CheckResult) -> None:
        """Count one gateway result: O(1), a few dict updates. Not traffic (probes, drill
        runs): ignored."""
        if result.source is not Source.TRAFFIC:
            return
        route = result.route or [result.target]
        first, last = self.where(route[0]), self.where(route[-1])
        group, answering = first.group, route[-1]
        error = str(result.error_class) if result.error_class is not None else ""
        status = "" if result.http_status is None else str(result.http_status)
        key, team = result.key_name or "", result.team or ""
        _inc(self.requests, (group, answering, "ok" if result.ok else "error", error))
        _inc(self.proxy_requests, (group, status, key, team, last.model_id))
        if result.ok:
            _inc(
                self.successes,
                (group, last.group, last.model, last.model_id, last.provider, key, team),
            )
        else:
            _inc(self.proxy_failed, (group, status, error, key, team))
        if result.moved:
            moved = result.fallback_reason
            reason = DRILL_REASON if result.drill else str(moved) if moved else UNKNOWN_REASON
            if result.fell_back:
                _inc(self.fallbacks, (group, route[0], answering, reason))
            # LiteLLM's fallbacks are moves to another model group (router_settings.fallbacks);
            # a move within the group is a retry there. A drill is no outage.
            if not result.drill and last.group != group:
                counts = self.litellm_fallbacks if result.ok else self.litellm_failed_fallbacks
                _inc(counts, (group, last.group, str(moved) if moved else "", key, team))
        if not result.drill and result.attempts:
            # Attempts beyond one per deployment gone to. A live drill's route also holds the
            # deployments it passed over without an attempt: not counted.
            extra = result.attempts - len(route)
            if extra > 0:
                self.retries[group] = self.retries.get(group, 0) + extra
        limits = result.ratelimit
        if limits is not None:
            labels = (last.group, last.provider, last.model, last.model_id)
            if limits.requests_remaining is not None:
                self.remaining_requests[labels] = limits.requests_remaining
            if limits.tokens_remaining is not None:
                self.remaining_tokens[labels] = limits.tokens_remaining

    def where(self, name: str) -> _Where:
        """The config deployment a route's target name is, or the wildcard deployment whose
        expansion it is (named ``<requested>/<provider>/<model>``): its group is the config's
        (the pattern), never the model a client asked for, so every label but the deployment
        and model names is bounded by the config, and those by ``max_wildcard_targets``."""
        found = self._where.get(name)
        if found is not None:
            return found
        expansion = self.config.named(name)
        found = _Where("", "", "", "") if expansion is None else _where(expansion)
        if len(self._where) < self._named_limit:
            self._where[name] = found
        return found

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type (OpenMetrics when ``accept`` asks for it). Reads
        the breakers: call it on the gateway's event loop."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _where(d: Deployment) -> _Where:
    return _Where(d.group, d.id, d.provider, d.model)


def _inc(counts: dict[tuple[str, ...], int], labels: tuple[str, ...]) -> None:
    counts[labels] = counts.get(labels, 0) + 1


def _counter(
    name: str, doc: str, labels: Sequence[str], counts: dict[tuple[str, ...], int]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for values, n in counts.items():
        family.add_metric(values, n)
    return family


def _gauge(
    name: str, doc: str, labels: Sequence[str], values: dict[tuple[str, ...], int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for label_values, value in values.items():
        family.add_metric(label_values, value)
    return family


_KEY = ("api_key_alias", "team")
_DEPLOYMENT = ("litellm_model_name", "model_id", "api_provider")


class _Collector(Collector):
    """Runs on the gateway's event loop (``render``), as ``observe`` does: nothing changes the
    counts while it reads them."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        yield _counter(
            "llmpulse_gateway_requests",
            "Client requests, by model group and the deployment that answered (or last failed), "
            "with status ok/error and the error class.",
            ("group", "deployment", "status", "error_class"),
            m.requests,
        )
        yield _counter(
            "llmpulse_gateway_fallbacks",
            "Requests answered by a deployment other than the first one chosen (in the group or "
            "a fallback group), by group, from, to and reason (the error class that moved them; "
            "drill for a live drill).",
            ("group", "from", "to", "reason"),
            m.fallbacks,
        )
        retries = CounterMetricFamily(
            "llmpulse_gateway_retries",
            "Attempts beyond one per deployment a request went to (same-deployment retries).",
            labels=("group",),
        )
        for group, n in m.retries.items():
            retries.add_metric((group,), n)
        yield retries
        yield _counter(
            "litellm_proxy_total_requests_metric",
            "Client requests to the gateway (LiteLLM's name; requested_model is the model group).",
            ("requested_model", "status_code", *_KEY, "model_id"),
            m.proxy_requests,
        )
        yield _counter(
            "litellm_proxy_failed_requests_metric",
            "Client requests that got an error (LiteLLM's name; exception_class is llmpulse's "
            "error class).",
            ("requested_model", "exception_status", "exception_class", *_KEY),
            m.proxy_failed,
        )
        yield _counter(
            "litellm_deployment_success_responses",
            "Requests a deployment answered successfully (LiteLLM's name; model_group is the "
            "answering deployment's group).",
            ("requested_model", "model_group", *_DEPLOYMENT, *_KEY),
            m.successes,
        )
        fallback_labels = ("requested_model", "fallback_model", "exception_class", *_KEY)
        yield _counter(
            "litellm_deployment_successful_fallbacks",
            "Requests answered by a fallback model group (LiteLLM's name and meaning; "
            "fallback_model is the answering group; live drills not counted).",
            fallback_labels,
            m.litellm_fallbacks,
        )
        yield _counter(
            "litellm_deployment_failed_fallbacks",
            "Requests that went to a fallback model group and still failed (LiteLLM's name).",
            fallback_labels,
            m.litellm_failed_fallbacks,
        )
        remaining = ("model_group", "api_provider", "litellm_model_name", "model_id")
        yield _gauge(
            "litellm_remaining_requests_metric",
            "Requests left in the provider's rate-limit window, from the last answer's headers.",
            remaining,
            m.remaining_requests,
        )
        yield _gauge(
            "litellm_remaining_tokens_metric",
            "Tokens left in the provider's rate-limit window, from the last answer's headers.",
            remaining,
            m.remaining_tokens,
        )
        yield from self._breakers()

    def _breakers(self) -> Iterator[Metric]:
        selector = self._m.selector()
        if selector is None:  # not serving yet: no state to show
            return
        state = GaugeMetricFamily(
            "litellm_deployment_state",
            "Each deployment's circuit breaker: 0 closed, 1 half-open, 2 open or cooling down "
            "(LiteLLM's healthy / partial outage / complete outage).",
            labels=(*_DEPLOYMENT, "model_group", "deployment"),
        )
        cooling = GaugeMetricFamily(
            "llmpulse_gateway_cooldown_active",
            "1 while a deployment cools down (a 429, an exhausted quota or a refused key: up "
            "but skipped), with the reason; 0 otherwise.",
            labels=("group", "deployment", "reason"),
        )
        trips = CounterMetricFamily(
            "llmpulse_gateway_breaker_trips",
            "Times each deployment's breaker opened since the gateway started.",
            labels=("group", "deployment"),
        )
        for d in self._m.config.deployments:
            snapshot = selector.breaker(d.id).snapshot()
            reason = snapshot.cooldown_reason
            value = COOLING_VALUE if reason else BREAKER_VALUES[snapshot.state]
            state.add_metric((d.model, d.id, d.provider, d.group, d.name), value)
            cooling.add_metric((d.group, d.name, str(reason) if reason else ""), 1 if reason else 0)
            trips.add_metric((d.group, d.name), snapshot.trips)
        yield from (state, cooling, trips)


def metrics_endpoint(
    metrics: GatewayMetrics, refused: Callable[[Request], Response | None]
) -> Callable[[Request], Awaitable[Response]]:
    """``GET /metrics`` over ``metrics``; ``refused`` answers a request that may not read them
    (the gateway's ``master_key_guard``), else None."""

    async def serve(request: Request) -> Response:
        denied = refused(request)
        if denied is not None:
            return denied
        body, content_type = metrics.render(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type})

    return serve


def create_metrics_app(endpoint: Callable[[Request], Awaitable[Response]]) -> Starlette:
    """The app of ``gateway.metrics_listen``'s socket: ``/metrics`` only."""
    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
