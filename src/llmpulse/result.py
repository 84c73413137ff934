"""The result record: what one check measured. One definition, used by probes, store and output."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import re
from datetime import UTC, datetime
from typing import Any, cast

from llmpulse.errors import ErrorClass

# How much of a probe's answer a result keeps (``CheckResult.answer_excerpt``).
EXCERPT_CHARS = 200
_WORDS = re.compile(r"\w+")


class CheckKind(enum.StrEnum):
    """What a check does. A result's ``check`` is its probe's name: the kind for the built-in
    checks, the name a custom probe was given otherwise."""

    MODELS = "models"
    INFERENCE = "inference"
    STREAM = "stream"
    RESPONSES = "responses"  # OpenAI's Responses API, streamed
    EMBEDDINGS = "embeddings"
    LONG_CONTEXT = "long_context"  # a stream with a prompt of a given size

    @property
    def streams(self) -> bool:
        """Whether the check reads a stream, so measures TTFT and tokens/s."""
        return self in _STREAMING


_STREAMING = frozenset({CheckKind.STREAM, CheckKind.RESPONSES, CheckKind.LONG_CONTEXT})


class Source(enum.StrEnum):
    """Where a result came from: a scheduled probe, a real request seen by the gateway, or a
    failover drill (one request sent down a failover path on purpose, ``llmpulse drill``)."""

    PROBE = "probe"
    TRAFFIC = "traffic"
    DRILL = "drill"


@dataclasses.dataclass(slots=True)
class RateLimit:
    """Rate-limit headroom read from one response's headers.

    ``utilization`` is 1 − remaining/limit of the most used dimension; ``reset_s`` is when that
    dimension is fully restored.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    utilization: float | None = None
    reset_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Usage:
    """Token counts as the provider reported them, normalised.

    ``input_tokens`` includes cached tokens (OpenAI semantics; Anthropic's separately reported
    cache reads and writes are added in), ``output_tokens`` includes reasoning tokens.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    estimated: bool = False


@dataclasses.dataclass(slots=True)
class CheckResult:
    """One check of one target. ``to_json`` is the stable ``llmpulse check --json`` contract."""

    target: str
    provider: str
    model: str
    check: str  # the probe's name (a built-in check's is its kind)
    timestamp: datetime
    ok: bool
    error_class: ErrorClass | None = None
    error_message: str | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    itl_p50_ms: float | None = None
    itl_max_ms: float | None = None
    usage: Usage = dataclasses.field(default_factory=Usage)
    cost_usd: float | None = None
    ratelimit: RateLimit | None = None
    retry_after_s: float | None = None
    response_model: str | None = None
    system_fingerprint: str | None = None
    request_id: str | None = None
    finish_reason: str | None = None
    model_listed: bool | None = None
    context_window: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    source: Source = Source.PROBE
    # Traffic only: attempts made for the request (1 = first try) and fallback groups used.
    attempts: int | None = None
    fallbacks: int | None = None
    # Which probe agent measured it, from which region (None: a single-agent setup).
    agent: str | None = None
    region: str | None = None
    # Traffic only: who spent it. The gateway key's name and its team; the end user, tags and
    # session the caller named (``llmpulse.attribution``). Probes have none.
    key_name: str | None = None
    team: str | None = None
    user: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    session: str | None = None
    # The check's kind. Optional only to the constructor: a built-in check's name gives it.
    kind: CheckKind = dataclasses.field(default=cast(CheckKind, None))
    # The answer's first characters (redacted), kept where a probe asserts on it.
    answer_excerpt: str | None = None
    # Embeddings checks: the length of the vector the provider returned.
    embedding_dimensions: int | None = None
    # Gateway traffic and drills: the deployments (target names) the request went to, in order,
    # the answering (or last failing) one last; one entry when the first one answered.
    route: list[str] = dataclasses.field(default_factory=list)
    # What moved the request off its first deployment (its error class), when something did.
    fallback_reason: ErrorClass | None = None
    # The request parameters beyond the plain chat the client used (``translate.params.features``:
    # tools, images, response_format, reasoning, ...): what a fallback must be able to take.
    features: list[str] = dataclasses.field(default_factory=list)
    # A drill's label: ``skip-primary`` / ``skip=<deployment>`` for a live drill (the client's
    # ``x-llmpulse-drill`` header), the path's description for a drill run (source=drill).
    drill: str | None = None

    def __post_init__(self) -> None:
        if cast(CheckKind | None, self.kind) is None:
            self.kind = CheckKind(self.check)
        if type(self.check) is not str:
            self.check = str(self.check)  # a CheckKind given: its plain name, as stored

    @property
    def answer_hash(self) -> str | None:
        """A digest of the answer's excerpt, its words alone (case, punctuation and spacing
        folded: "391." is "391"): what a canary compares from one answer to the next (its
        answer is short enough to be whole in the excerpt)."""
        if self.answer_excerpt is None:
            return None
        folded = " ".join(_WORDS.findall(self.answer_excerpt.casefold()))
        return hashlib.sha256(folded.encode()).hexdigest()[:16]

    @property
    def context_utilization(self) -> float | None:
        """Prompt tokens over the context window: how close a request came to the limit."""
        if not self.context_window or self.usage.input_tokens is None:
            return None
        return self.usage.input_tokens / self.context_window

    def to_json(self) -> dict[str, Any]:
        """The documented contract; later versions only add keys."""
        return {
            "target": self.target,
            "provider": self.provider,
            "model": self.model,
            "check": self.check,
            "kind": str(self.kind),
            "ok": self.ok,
            "error_class": str(self.error_class) if self.error_class else None,
            "http_status": self.http_status,
            "latency_ms": _round(self.latency_ms),
            "ttft_ms": _round(self.ttft_ms),
            "tokens_per_s": _round(self.tokens_per_s),
            "itl_p50_ms": _round(self.itl_p50_ms),
            "itl_max_ms": _round(self.itl_max_ms),
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "cached_tokens": self.usage.cached_tokens,
            "reasoning_tokens": self.usage.reasoning_tokens,
            "tokens_estimated": self.usage.estimated,
            "cost_usd": self.cost_usd,
            "ratelimit": self.ratelimit.to_dict() if self.ratelimit else None,
            "retry_after_s": self.retry_after_s,
            "response_model": self.response_model,
            "system_fingerprint": self.system_fingerprint,
            "request_id": self.request_id,
            "finish_reason": self.finish_reason,
            "model_listed": self.model_listed,
            "context_window": self.context_window,
            "error_message": self.error_message,
            "warnings": list(self.warnings),
            "source": str(self.source),
            "attempts": self.attempts,
            "fallbacks": self.fallbacks,
            "agent": self.agent,
            "region": self.region,
            "context_utilization": _round(self.context_utilization),
            "key_name": self.key_name,
            "team": self.team,
            "user": self.user,
            "tags": list(self.tags),
            "session": self.session,
            "answer_excerpt": self.answer_excerpt,
            "answer_hash": self.answer_hash,
            "embedding_dimensions": self.embedding_dimensions,
            "route": list(self.route),
            "fallback_reason": str(self.fallback_reason) if self.fallback_reason else None,
            "features": list(self.features),
            "drill": self.drill,
            "timestamp": self.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
