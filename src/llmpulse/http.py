"""HTTP plumbing every outbound caller shares (probes, the gateway, official status pages): the
session factory whose trace hook starts a request's ``Stopwatch``, and reads capped in bytes,
so that no answer, however large or hostile, costs more memory than its cap."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import aiohttp

from llmpulse.timing import Stopwatch

MAX_BODY_BYTES = 8 << 20  # a completion's JSON
MAX_ERROR_BODY_BYTES = 64 << 10  # an error's body: kept to classify it, then clipped


def make_session(max_connections: int = 0) -> aiohttp.ClientSession:
    """A session whose trace hook tells a request's ``Stopwatch`` (its ``trace_request_ctx``)
    when the request starts to go out: aiohttp calls it once connected, as it writes the headers.

    ``max_connections=0`` means no pool limit: concurrency is bounded by the caller instead, so a
    check never waits for a pooled connection while its clock runs.
    """
    trace = aiohttp.TraceConfig()

    async def headers_sent(
        session: aiohttp.ClientSession,
        ctx: SimpleNamespace,
        params: aiohttp.TraceRequestHeadersSentParams,
    ) -> None:
        if isinstance(ctx.trace_request_ctx, Stopwatch):
            ctx.trace_request_ctx.sent()

    trace.on_request_headers_sent.append(headers_sent)
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0)
    return aiohttp.ClientSession(
        connector=connector, trace_configs=[trace], timeout=aiohttp.ClientTimeout(total=None)
    )


async def read_capped(
    response: aiohttp.ClientResponse,
    limit: int,
    *,
    truncate: bool = False,
    too_large: Callable[[str], Exception] = ValueError,
) -> bytes:
    """Read at most ``limit`` bytes; beyond it either truncate (error bodies) or raise what
    ``too_large`` makes of the message. A body that says it is larger is refused unread."""
    if not truncate and (response.content_length or 0) > limit:
        raise too_large(_past(limit))
    buf = bytearray()
    async for chunk in response.content.iter_chunked(64 << 10):
        buf += chunk
        if len(buf) > limit:
            if truncate:
                return bytes(buf[:limit])
            raise too_large(_past(limit))
    return bytes(buf)


def _past(limit: int) -> str:
    size = f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"
    return f"response body exceeds {size}; not read further"
