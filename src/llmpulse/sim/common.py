"""Pieces shared by the wire-protocol modules: the per-request plan, tokens, vectors, formatters."""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from llmpulse.sim.scenario import ModelBehavior, ToolCall

_TEXT = "the quick brown fox jumps over a lazy dog while watching large language model streams"
_WORDS = _TEXT.split()
# Token 0 has no leading space so the joined text reads naturally.
TOKENS = ["Hello"] + [" " + w for w in _WORDS]
# Pre-encoded JSON strings so per-token work is a lookup plus a concatenation.
TOKENS_JSON = [json.dumps(t) for t in TOKENS]


def token_index(i: int) -> int:
    return 0 if i == 0 else 1 + (i - 1) % (len(TOKENS) - 1)


def text_of(n: int) -> str:
    return "".join(TOKENS[token_index(i)] for i in range(n))


def answer_pieces(answer: str) -> list[str]:
    """A scripted answer cut as tokens stream: each word with the whitespace before it."""
    return re.findall(r"\s*\S+", answer)


def new_id(prefix: str = "req_", nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


ARGS_PIECE = 4  # characters of tool arguments per streamed fragment (one "token" each)


def fragments(arguments: str) -> list[str]:
    """Split a tool call's JSON arguments the way APIs stream them: a few characters a chunk."""
    return [arguments[i : i + ARGS_PIECE] for i in range(0, len(arguments), ARGS_PIECE)]


MARK = "\x00TOKEN\x00"


def template(obj: Any) -> tuple[str, str]:
    """Split ``dumps(obj)`` around the ``MARK`` string so a token can be spliced in cheaply."""
    prefix, suffix = dumps(obj).split(json.dumps(MARK), 1)
    return prefix, suffix


@dataclass(slots=True)
class Limit:
    """One rate-limit bucket as sent in headers: limit, remaining, seconds until fully reset."""

    name: str  # requests | tokens | input-tokens | output-tokens
    limit: int
    remaining: int
    reset: float


@dataclass(slots=True)
class Plan:
    """Everything injected into one request, decided up front (and logged as ground truth)."""

    protocol: str
    model: str
    served_model: str
    request_id: str
    stream: bool
    t0: float  # time.monotonic() as the request's handler started
    created: int  # unix seconds
    ttft: float
    latency: float
    tokens_per_s: float
    text_tokens: int
    reasoning_tokens: int
    input_tokens: int
    cached_tokens: int
    finish: str  # stop | length | content_filter | tool_calls (protocols map to their own)
    behavior: ModelBehavior
    # The answer is this call instead of text; text_tokens counts its argument fragments.
    tool: ToolCall | None = None
    tool_args: list[str] = field(default_factory=list)
    include_usage: bool = False
    refusal: bool = False  # the model declines: finish is content_filter, OpenAI says refusal
    fault: str | None = None
    body: Any = None  # the request body as received, in the log for tests to inspect
    echo: str = ""  # the request's credentials, repeated back when echo_credentials is on
    answer: list[str] | None = None  # the scenario's scripted answer, cut into tokens

    def piece(self, i: int) -> str:
        """The answer's token ``i``."""
        return self.answer[i] if self.answer is not None else TOKENS[token_index(i)]

    def piece_json(self, i: int) -> str:
        return (
            json.dumps(self.answer[i]) if self.answer is not None else TOKENS_JSON[token_index(i)]
        )

    def text(self) -> str:
        """The whole answer's text (its first ``text_tokens`` tokens)."""
        if self.answer is not None:
            return "".join(self.answer[: self.text_tokens])
        return text_of(self.text_tokens)


def go_duration(seconds: float) -> str:
    """Format like Go's time.Duration.String(), as OpenAI sends resets: 12ms, 6m0s, 2m59.56s."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rem = divmod(ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs = f"{rem / 1000:.3f}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return out + secs + "s"


def rfc3339_in(seconds: float) -> str:
    """Absolute UTC time ``seconds`` from now, as Anthropic's reset headers carry it."""
    when = datetime.now(UTC) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_seconds(retry_after: float) -> str:
    """``retry-after`` takes whole seconds; round up so clients never retry early."""
    return str(max(0, int(-(-retry_after // 1))))


def vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``: the same text always embeds the same."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 8) for v in values]


def dimensions(requested: Any, available: int) -> int:
    """A request's dimensions, within the model's (a model shortens its vector, never lengthens
    it); the model's own when the request names none."""
    if isinstance(requested, int) and not isinstance(requested, bool) and requested > 0:
        return min(requested, available)
    return available
