"""Run one check against one target over HTTP and measure it exactly.

Time is taken with ``time.perf_counter`` at the moments that matter to a user: the request
leaving, the first output arriving, each later output chunk, and the last byte; what they make
of TTFT, inter-token latency and tokens/s is ``llmpulse.timing``'s rule, shared with the gateway
and ``instrument``.
The transport is aiohttp: its C HTTP parser costs a fraction of httpx's per stream chunk, and
per-chunk cost is what turns into measurement error when hundreds of streams run at once.
Every failure, including garbage, truncated or oversized responses, becomes a classified
``CheckResult``; nothing a provider sends can crash a check or grow memory without bound.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from llmpulse import catalog
from llmpulse.errors import ErrorClass
from llmpulse.http import MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES, make_session, read_capped
from llmpulse.probe.assertions import failed_expectation
from llmpulse.probe.prompts import (
    EMBEDDINGS_TEXT,
    INFERENCE_PROMPT,
    LONG_CONTEXT_MAX_TOKENS,
    STREAM_PROMPT,
    estimate_tokens,
    synthetic_prompt,
    text_of,
)
from llmpulse.providers import PROTOCOLS, Protocol, ProtocolError
from llmpulse.providers.base import (
    NESTED_TOO_DEEPLY,
    Completion,
    CredentialsError,
    EmbeddingsInfo,
    RequestSpec,
    error_snippet,
)
from llmpulse.providers.openai_responses import TERMINAL as RESPONSES_TERMINAL
from llmpulse.ratelimit import parse_ratelimit, parse_retry_after
from llmpulse.result import CheckKind, CheckResult, Usage
from llmpulse.secrets import NO_SECRETS, PRE_CLIP_CHARS, Redactor
from llmpulse.sse import SSEError
from llmpulse.target import LONG_CONTEXT_TOKENS, Probe, Target
from llmpulse.timing import CHARS_PER_TOKEN, Stopwatch

log = logging.getLogger(__name__)

# An embedding of 3072 floats is ~60 KB of JSON: this leaves room for larger ones, not for junk.
MAX_EMBEDDING_BODY_BYTES = 1 << 20
NO_USAGE = "the provider reported no token usage; tokens are estimated"
# A long_context prompt counted this far from its requested size is worth a warning.
INPUT_TOKENS_TOLERANCE = 0.2


@dataclasses.dataclass(slots=True)
class ProbeRequest:
    """One check's request, and what its result is judged against."""

    spec: RequestSpec
    stream: bool = False
    prompt: str = ""  # what was sent, for an estimate when the provider reports no usage
    input_tokens: int | None = None  # long_context: the prompt's requested size


def build_request(
    target: Target, protocol: Protocol, kind: CheckKind, custom: Probe | None = None
) -> ProbeRequest:
    """The request a check of ``kind`` sends: a custom probe's own messages and params where it
    has them, the kind's built-in prompt otherwise (a long_context check: its synthetic prompt
    of the probe's size). Raises ``Unsupported`` for a kind the protocol does not offer."""
    if not protocol.supports(kind):
        raise protocol.unsupported(kind)
    if kind is CheckKind.MODELS:
        return ProbeRequest(protocol.models_request(target))
    params = {} if custom is None else custom.params
    given = () if custom is None else custom.messages
    if kind is CheckKind.EMBEDDINGS:
        text = text_of(given) or EMBEDDINGS_TEXT
        return ProbeRequest(
            protocol.embeddings_request(target, text=text, params=params), prompt=text
        )
    if kind is CheckKind.RESPONSES:
        messages = given or ({"role": "user", "content": STREAM_PROMPT},)
        stream = params.get("stream") is not False  # a probe built in code may ask a whole one
        spec = protocol.responses_request(
            target, messages=messages, params=params, max_tokens=target.max_tokens, stream=stream
        )
        return ProbeRequest(spec, stream=stream, prompt=text_of(messages))
    if kind is CheckKind.LONG_CONTEXT:
        size = (custom.input_tokens if custom is not None else None) or LONG_CONTEXT_TOKENS
        prompt = synthetic_prompt(size, nonce=secrets.token_hex(4))
        spec = protocol.completion_request(
            target,
            messages=({"role": "user", "content": prompt},),
            params=params,
            max_tokens=LONG_CONTEXT_MAX_TOKENS,
            stream=True,
        )
        return ProbeRequest(spec, stream=True, prompt=prompt, input_tokens=size)
    stream = kind is CheckKind.STREAM
    messages = given or (
        {"role": "user", "content": STREAM_PROMPT if stream else INFERENCE_PROMPT},
    )
    # The built-in inference check asks for one token (cheap); an answer to assert on needs
    # the target's budget, unless the probe's params set their own.
    spec = protocol.completion_request(
        target,
        messages=messages,
        params=params,
        max_tokens=target.max_tokens if stream or custom is not None else 1,
        stream=stream,
    )
    return ProbeRequest(spec, stream=stream, prompt=text_of(messages))


class _Failure(Exception):
    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


class _Deadline:
    """One asyncio timeout whose deadline moves as the request goes through its phases."""

    def __init__(self, target: Target, start: float) -> None:
        self.target = target
        self.total_at = start + target.timeout
        first = target.first_token_timeout or target.timeout
        self.first_at = start + first
        self.reason = f"no first token within {first:g}s"
        self.scope: asyncio.Timeout | None = None

    @property
    def initial(self) -> float:
        return min(self.total_at, self.first_at)

    def data_arrived(self, now: float) -> None:
        """After the first token, silence longer than the idle timeout ends the stream."""
        idle_at = now + self.target.idle_timeout
        if idle_at < self.total_at:
            self.reason = f"stream idle for {self.target.idle_timeout:g}s"
            self._set(idle_at)
        else:
            self.reason = f"total timeout of {self.target.timeout:g}s"
            self._set(self.total_at)

    def headers_arrived(self, streaming: bool) -> None:
        if not streaming:
            self.reason = f"total timeout of {self.target.timeout:g}s"
            self._set(self.total_at)

    def _set(self, when: float) -> None:
        if self.scope is not None:
            self.scope.reschedule(when)

    def message(self, phase: str) -> str:
        return f"timed out {phase}: {self.reason}"


class Prober:
    """Runs checks with one shared HTTP session (connection pool).

    Must be created inside a running event loop; pass ``session`` (made by ``make_session``)
    to share a pool or to route requests through another connector. Every result leaves
    through ``redactor`` (the config's): what the provider said may echo a key back.
    """

    def __init__(
        self, session: aiohttp.ClientSession | None = None, redactor: Redactor = NO_SECRETS
    ) -> None:
        self._own_session = session is None
        self.session = session or make_session()
        self.redact = redactor
        self._windows: dict[str, int] = {}

    async def aclose(self) -> None:
        if self._own_session:
            await self.session.close()

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def check_many(
        self, pairs: Iterable[tuple[Target, CheckKind | Probe]], concurrency: int = 16
    ) -> list[CheckResult]:
        """Run checks concurrently (bounded); results come back in the order given."""
        gate = asyncio.Semaphore(concurrency)

        async def one(target: Target, probe: CheckKind | Probe) -> CheckResult:
            async with gate:
                return await self.check(target, probe)

        return list(await asyncio.gather(*(one(t, p) for t, p in pairs)))

    async def check(self, target: Target, probe: CheckKind | Probe) -> CheckResult:
        """Run a built-in check (its kind) or a custom probe once; its result is named after it."""
        custom = probe if isinstance(probe, Probe) else None
        kind = probe if isinstance(probe, CheckKind) else probe.kind
        protocol = PROTOCOLS[target.protocol]
        result = CheckResult(
            target=target.name,
            provider=target.provider,
            model=target.model,
            check=probe_name(probe),
            kind=kind,
            timestamp=datetime.now(UTC),
            ok=False,
        )
        if target.missing_key is not None:
            # The provider could only refuse a keyless request: say what to set, call nobody.
            _fail(result, ErrorClass.AUTH, target.missing_key)
            return result
        try:
            request = build_request(target, protocol, kind, custom)
        except ValueError as exc:  # Unsupported, or a prompt size out of bounds
            # The config refuses these; a probe built in code may still ask.
            _fail(result, ErrorClass.BAD_REQUEST, str(exc))
            return self.redact.result(result)
        spec = request.spec
        loop = asyncio.get_running_loop()
        deadline = _Deadline(target, loop.time())
        phase = "waiting for response headers"
        stopwatch = Stopwatch()
        body = b"" if spec.json is None else json.dumps(spec.json).encode()
        try:
            async with asyncio.timeout_at(deadline.initial) as scope:
                deadline.scope = scope
                phase = "obtaining credentials"
                headers = await protocol.sign(target, spec.method, spec.url, spec.headers, body)
                if spec.json is not None:
                    headers.setdefault("content-type", "application/json")
                phase = "waiting for response headers"
                # Only connecting is timed by aiohttp; every later phase is governed by _Deadline.
                async with self.session.request(
                    spec.method,
                    URL(spec.url, encoded=protocol.encoded_urls),
                    headers=headers,
                    data=body or None,
                    timeout=aiohttp.ClientTimeout(total=None, connect=target.connect_timeout),
                    trace_request_ctx=stopwatch,
                    allow_redirects=False,
                ) as response:
                    phase = "reading the response"
                    await self._read(
                        target,
                        protocol,
                        kind,
                        custom,
                        request,
                        response,
                        result,
                        deadline,
                        stopwatch,
                    )
        except aiohttp.ConnectionTimeoutError:  # a TimeoutError too: catch it first
            _fail(result, ErrorClass.TIMEOUT, f"connect timeout after {target.connect_timeout:g}s")
        except TimeoutError:
            _fail(result, ErrorClass.TIMEOUT, deadline.message(phase))
        except _Failure as failure:
            _fail(result, failure.error_class, failure.message)
        except CredentialsError as exc:
            _fail(result, exc.error_class, str(exc))
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            # Before the status line this is a dropped connection; after, a truncated body.
            cls = ErrorClass.CONNECTION if result.http_status is None else ErrorClass.PROTOCOL
            _fail(result, cls, _describe(exc))
        except aiohttp.ClientResponseError as exc:
            # aiohttp raises this for a response it cannot parse (bad status line or headers).
            _fail(result, ErrorClass.PROTOCOL, _describe(exc))
        except (aiohttp.ClientError, OSError) as exc:
            _fail(result, ErrorClass.CONNECTION, _describe(exc))
        except (SSEError, ProtocolError) as exc:
            _fail(result, ErrorClass.PROTOCOL, str(exc))
        if result.latency_ms is None:
            result.latency_ms = stopwatch.elapsed_s() * 1000
        if result.context_window is None:
            result.context_window = self._windows.get(target.name) or catalog.context_window(target)
        return self.redact.result(result)

    async def _read(
        self,
        target: Target,
        protocol: Protocol,
        kind: CheckKind,
        custom: Probe | None,
        request: ProbeRequest,
        response: aiohttp.ClientResponse,
        result: CheckResult,
        deadline: _Deadline,
        stopwatch: Stopwatch,
    ) -> None:
        result.http_status = response.status
        result.request_id = next(
            (response.headers[h] for h in protocol.request_id_headers if h in response.headers),
            None,
        )
        result.ratelimit = parse_ratelimit(response.headers)
        result.retry_after_s = parse_retry_after(response.headers)
        success = 200 <= response.status < 300
        streaming = request.stream and success
        deadline.headers_arrived(streaming)

        if not success:
            body = await read_capped(response, MAX_ERROR_BODY_BYTES, truncate=True)
            result.latency_ms = stopwatch.elapsed_s() * 1000
            error = protocol.parse_error(response.status, body, response.headers)
            if error.retry_after_s is not None and result.retry_after_s is None:
                result.retry_after_s = error.retry_after_s
            raise _Failure(error.error_class, error.message)

        if streaming:
            completion = await self._read_stream(
                protocol, kind, response, result, deadline, stopwatch
            )
        else:
            cap = MAX_EMBEDDING_BODY_BYTES if kind is CheckKind.EMBEDDINGS else MAX_BODY_BYTES
            body = await read_capped(response, cap, too_large=_too_large)
            result.latency_ms = stopwatch.elapsed_s() * 1000
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _Failure(
                    ErrorClass.PROTOCOL,
                    f"malformed JSON in a {response.status}: {exc}: {error_snippet(body)!r}",
                ) from None
            except RecursionError:  # "[[[[..." deeper than json's C scanner goes
                raise _Failure(
                    ErrorClass.PROTOCOL,
                    f"malformed JSON in a {response.status}: {NESTED_TOO_DEEPLY}",
                ) from None
            if kind is CheckKind.MODELS:
                info = protocol.parse_models(parsed, target.model)
                result.ok = True
                result.model_listed = info.listed
                if info.context_window:
                    self._windows[target.name] = info.context_window
                    result.context_window = info.context_window
                if not info.listed:
                    result.warnings.append(
                        f"model {target.model!r} is not in the provider's models list "
                        f"({info.count} models listed)"
                    )
                return
            if kind is CheckKind.EMBEDDINGS:
                self._finish_embeddings(target, request, protocol.parse_embeddings(parsed), result)
                return
            if kind is CheckKind.RESPONSES:
                completion = protocol.parse_responses(parsed)
            else:
                completion = protocol.parse_completion(parsed)
        if completion.usage is None:
            completion.usage = protocol.usage_from_headers(response.headers)
        self._finish(target, custom, request, completion, result)

    async def _read_stream(
        self,
        protocol: Protocol,
        kind: CheckKind,
        response: aiohttp.ClientResponse,
        result: CheckResult,
        deadline: _Deadline,
        stopwatch: Stopwatch,
    ) -> Completion:
        content_type = response.headers.get("content-type", "")
        if protocol.stream_content_type not in content_type:
            body = await read_capped(response, MAX_ERROR_BODY_BYTES, truncate=True)
            got = content_type or "no content type"
            raise _Failure(
                ErrorClass.PROTOCOL,
                f"expected {protocol.stream_content_type}, got {got}: {error_snippet(body)!r}",
            )
        decoder = protocol.frame_decoder()
        responses = kind is CheckKind.RESPONSES
        parser = protocol.responses_stream_parser() if responses else protocol.stream_parser()
        terminal = " or ".join(RESPONSES_TERMINAL) if responses else protocol.terminal_event
        error = None
        try:
            async for chunk in response.content.iter_any():
                now = time.perf_counter()
                for event in decoder.feed(chunk):
                    update = parser.feed(event)
                    if update.error is not None:
                        error = update.error
                        break
                    stopwatch.content(now, update.output_chars)
                    if update.done:
                        break
                if error is not None or parser.done:
                    break
                if stopwatch.first is not None:
                    deadline.data_arrived(asyncio.get_running_loop().time())
        finally:
            # A stream cut by a timeout or a dropped connection keeps what it measured so far.
            stopwatch.apply(result, parser.completion.usage, whole=error is None and parser.done)
        result.latency_ms = stopwatch.elapsed_s() * 1000
        completion = parser.completion
        if error is not None:
            _apply_completion(result, completion)
            result.retry_after_s = result.retry_after_s or error.retry_after_s
            raise _Failure(error.error_class, f"error event in stream: {error.message}")
        if not parser.done:
            leftover = decoder.close()
            _apply_completion(result, completion)
            detail = " (in the middle of an event)" if leftover else ""
            raise _Failure(
                ErrorClass.PROTOCOL,
                f"stream ended without {terminal}{detail}",
            )
        return completion

    def _finish(
        self,
        target: Target,
        custom: Probe | None,
        request: ProbeRequest,
        completion: Completion,
        result: CheckResult,
    ) -> None:
        _apply_completion(result, completion)
        if custom is not None:
            # The answer's start, cut far beyond the excerpt: the redactor cuts it once clean.
            result.answer_excerpt = completion.text[:PRE_CLIP_CHARS] or None
        if completion.usage is None:
            result.usage = Usage(
                input_tokens=estimate_tokens(request.prompt),
                output_tokens=round(completion.text_chars / CHARS_PER_TOKEN),
                estimated=True,
            )
            result.warnings.append(NO_USAGE)
        elif request.input_tokens is not None:
            _check_prompt_size(result, request.input_tokens)
        if completion.error is not None:
            _fail(result, completion.error.error_class, completion.error.message)
        elif completion.blocked:
            _fail(result, ErrorClass.CONTENT_FILTER, completion.blocked)
        else:
            # An empty answer within a 1-token budget (reasoning models) is still a success.
            result.ok = True
            if custom is not None and custom.expect is not None:
                ttft = None if result.ttft_ms is None else result.ttft_ms / 1000
                failed = failed_expectation(
                    custom.expect,
                    completion.text,
                    completion.tool_calls,
                    ttft,
                    result.tokens_per_s,
                )
                if failed is not None:
                    _fail(result, ErrorClass.ASSERTION, failed)
        _price(target, result)

    def _finish_embeddings(
        self, target: Target, request: ProbeRequest, info: EmbeddingsInfo, result: CheckResult
    ) -> None:
        result.ok = True
        result.embedding_dimensions = info.dimensions
        result.response_model = info.response_model
        if info.usage is not None:
            result.usage = info.usage
        else:
            # Gemini's embedContent reports no usage at all.
            result.usage = Usage(
                input_tokens=estimate_tokens(request.prompt), output_tokens=0, estimated=True
            )
            result.warnings.append(NO_USAGE)
        _price(target, result)


async def run_checks(
    targets: Sequence[Target],
    names: Sequence[str] | None = None,
    concurrency: int = 16,
    redactor: Redactor | None = None,
) -> list[CheckResult]:
    """Run every target's built-in checks and custom probes (or only those ``names`` name: a
    built-in check by its kind) and return the results, redacted by ``redactor`` (default: of
    the targets' own secrets)."""
    pairs = [
        (t, p) for t in targets for p in _every_check(t) if names is None or probe_name(p) in names
    ]
    if redactor is None:
        redactor = Redactor(s for t in targets for s in t.secrets)
    async with Prober(redactor=redactor) as prober:
        return await prober.check_many(pairs, concurrency)


def _every_check(target: Target) -> Iterator[CheckKind | Probe]:
    yield from target.checks
    yield from target.probes


def probe_name(probe: CheckKind | Probe) -> str:
    """What a check's result is named: a built-in check's kind, a custom probe's name."""
    return str(probe) if isinstance(probe, CheckKind) else probe.name


def _price(target: Target, result: CheckResult) -> None:
    cost, warning = catalog.cost_usd(target, result.usage, result.response_model)
    result.cost_usd = cost
    if warning:
        result.warnings.append(warning)


def _check_prompt_size(result: CheckResult, requested: int) -> None:
    """Warn when the provider counted the prompt far from the size asked for: its TTFT is then
    the TTFT of another size than the probe's name says."""
    counted = result.usage.input_tokens
    if counted is not None and abs(counted - requested) > INPUT_TOKENS_TOLERANCE * requested:
        result.warnings.append(
            f"the provider counted {counted} input tokens for a prompt built for {requested} "
            f"(more than {INPUT_TOKENS_TOLERANCE:.0%} apart)"
        )


def _apply_completion(result: CheckResult, completion: Completion) -> None:
    result.response_model = completion.response_model
    result.system_fingerprint = completion.system_fingerprint
    result.finish_reason = completion.finish_reason
    if completion.usage is not None:
        result.usage = completion.usage
    if result.request_id is None:
        result.request_id = completion.response_id


def _fail(result: CheckResult, error_class: ErrorClass, message: str) -> None:
    result.ok = False
    result.error_class = error_class
    result.error_message = message


def _too_large(message: str) -> _Failure:
    return _Failure(ErrorClass.PROTOCOL, message)


def _describe(exc: BaseException) -> str:
    """Client errors often have a terse message; add the cause chain."""
    parts = [str(exc)] if str(exc) else []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(parts) < 3:
        if str(cause) and str(cause) not in parts:
            parts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {'; '.join(parts) or 'no detail'}"
