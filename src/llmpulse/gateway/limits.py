"""Per-key rate limits (``rpm``, ``tpm``) and hard budgets, enforced before any upstream call.

``Limits.admit`` runs right after a request is authenticated: a key over its budget
(``gateway.budgets``) or over its rpm or tpm in the last 60 s is answered 429, in the caller's
protocol, with ``retry-after`` the seconds until a slot frees (or, for a calendar budget, until
the period resets).

The window slides in whole seconds: a request or token counts for 60 to 61 s after the second
it was counted in, so no 60 s ever holds more than the limit. A request counts at admission; its
tokens (input + output, from its traffic result) count when it ends, as LiteLLM counts them:
a request is admitted while the window's tokens are under ``tpm``. No estimate is reserved up
front: the prompt estimate (``proxy.estimate_prompt_tokens``) is a guess at a quarter of the
cost (output is unknown), and correcting it at the end would need a hook on every way a request
can end (client gone, failed before an attempt); rpm bounds a burst instead. So tpm can be
exceeded by the tokens of the requests in flight when the window fills.

With ``gateway.redis_url`` the windows live in Redis, shared by every replica: one Lua script
per request reads the key's window, refuses or counts the request, atomically (Redis's clock,
so replicas' clocks do not matter). Tokens and spend go to Redis in the background, in batches
at most ``SEND_EVERY_S`` apart (one round trip per batch), never on the request path. While
Redis is unreachable each replica enforces the limits alone, on its own traffic (logged once),
and goes back to Redis when it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmpulse.config.keys import GatewayKey, Team
from llmpulse.errors import ErrorClass
from llmpulse.gateway.budgets import REFRESH_S, Budgets
from llmpulse.gateway.proxy import GatewayError, Recorder
from llmpulse.result import CheckResult, Source

if TYPE_CHECKING:  # redis loads only when configured
    import redis.asyncio as redis

log = logging.getLogger(__name__)

WINDOW_S = 60
# A bucket leaves the window once its second is more than WINDOW_S behind the current one.
_KEPT = WINDOW_S + 1
FLUSH_S = 0.1  # the longest a sender waits without news (and its first backoff)
SEND_EVERY_S = 0.02
READ_BLOCK_MS = 400  # a blocking read returns before the socket times out
REDIS_TIMEOUT_S = 0.5  # a request waits at most this for Redis before going local
RETRY_REDIS_S = 1.0  # after a failure, the request path tries Redis again this much later
STREAM_MAXLEN = 10_000
MAX_QUEUED = 100_000

# KEYS[1]: the key's window, a hash: 'r<second>' and 't<second>' buckets of requests and tokens,
# 'R' and 'T' their sums, 'P' the oldest second not yet pruned. Each call prunes the seconds
# that left since the last (usually none), so a check is O(1); only a refusal scans the buckets
# for its retry-after. ARGV: rpm, tpm (0: none). Returns {verdict, seconds to wait}.
_ADMIT = """
local k = KEYS[1]
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec + tonumber(t[2]) / 1e6
local oldest = sec - 60
local got = redis.call('HMGET', k, 'P', 'R', 'T')
local p = tonumber(got[1]) or oldest
if p < oldest then
  if oldest - p > 61 then
    redis.call('DEL', k)
    got = {false, false, false}
  else
    for b = p, oldest - 1 do
      local n = redis.call('HGET', k, 'r' .. b)
      if n then redis.call('HINCRBY', k, 'R', -n); redis.call('HDEL', k, 'r' .. b) end
      n = redis.call('HGET', k, 't' .. b)
      if n then redis.call('HINCRBY', k, 'T', -n); redis.call('HDEL', k, 't' .. b) end
    end
    got = redis.call('HMGET', k, 'P', 'R', 'T')
  end
end
if got[1] ~= tostring(oldest) then redis.call('HSET', k, 'P', oldest) end
local reqs, toks = tonumber(got[2]) or 0, tonumber(got[3]) or 0
local function wait(kind, need)
  local list = {}
  local h = redis.call('HGETALL', k)
  for i = 1, #h, 2 do
    if string.sub(h[i], 1, 1) == kind then
      list[#list + 1] = {tonumber(string.sub(h[i], 2)), tonumber(h[i + 1])}
    end
  end
  table.sort(list, function(x, y) return x[1] < y[1] end)
  local freed = 0
  for _, e in ipairs(list) do
    freed = freed + e[2]
    if freed >= need then return e[1] + 61 - now end
  end
  return 61
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if rpm > 0 and reqs >= rpm then return {'rpm', tostring(wait('r', reqs - rpm + 1))} end
if tpm > 0 and toks >= tpm then return {'tpm', tostring(wait('t', toks - tpm + 1))} end
redis.call('HINCRBY', k, 'r' .. sec, 1)
redis.call('HINCRBY', k, 'R', 1)
redis.call('EXPIRE', k, 62)
return {'ok', '0'}
"""
# KEYS[1]: the key's window; ARGV[1]: tokens of a request that ended.
_TOKENS = """
local sec = redis.call('TIME')[1]
redis.call('HINCRBY', KEYS[1], 't' .. sec, ARGV[1])
redis.call('HINCRBY', KEYS[1], 'T', ARGV[1])
redis.call('EXPIRE', KEYS[1], 62)
return 0
"""


class _Window:
    """One key's last 60 s in this process: [second, requests, tokens] buckets, oldest first."""

    __slots__ = ("buckets", "requests", "tokens")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()
        self.requests = 0
        self.tokens = 0

    def _bucket(self, now: float) -> list[int]:
        second = math.floor(now)
        buckets = self.buckets
        while buckets and buckets[0][0] < second - WINDOW_S:
            _, requests, tokens = buckets.popleft()
            self.requests -= requests
            self.tokens -= tokens
        if not buckets or buckets[-1][0] != second:
            buckets.append([second, 0, 0])
        return buckets[-1]

    def admit(self, now: float, rpm: int | None, tpm: int | None) -> tuple[str, float] | None:
        """None and the request counted, or (what is over, seconds until a slot frees)."""
        bucket = self._bucket(now)
        if rpm is not None and self.requests >= rpm:
            return "rpm", self._wait(now, 1, self.requests - rpm + 1)
        if tpm is not None and self.tokens >= tpm:
            return "tpm", self._wait(now, 2, self.tokens - tpm + 1)
        bucket[1] += 1
        self.requests += 1
        return None

    def count(self, now: float, tokens: int) -> None:
        self._bucket(now)[2] += tokens
        self.tokens += tokens

    def _wait(self, now: float, field: int, need: int) -> float:
        freed = 0
        for bucket in self.buckets:
            freed += bucket[field]
            if freed >= need:
                return bucket[0] + _KEPT - now
        return float(_KEPT)


def _refusal(key: GatewayKey, over: str, wait: float) -> GatewayError:
    limit = key.rpm if over == "rpm" else key.tpm
    unit = "requests" if over == "rpm" else "tokens"
    return GatewayError(
        429,
        ErrorClass.RATE_LIMITED,
        f"key {key.name!r} is over its {over} limit ({limit} {unit} per minute); retry in "
        f"{max(1, math.ceil(wait))} s",
        retry_after_s=max(1, math.ceil(wait)),  # whole seconds, never early
    )


class Limits:
    """The rate limits and budgets of the gateway's keys.

    ``admit`` per request; ``recorder`` wraps the gateway's recorder so that every traffic
    result counts its tokens and cost; ``run`` (for the app's lifespan) reads the store's spend
    every ``refresh_s`` and, with Redis, exchanges tokens and spend with the other replicas.
    """

    def __init__(
        self,
        keys: Iterable[GatewayKey],
        teams: Iterable[Team],
        *,
        results_db: str | Path | None = None,
        redis_url: str | None = None,
        redis_prefix: str = "llmpulse:gateway",
        refresh_s: float = REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        keys = tuple(keys)
        self.budgets = Budgets(keys, teams, results_db)
        self.refresh_s = refresh_s
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._tpm_keys: set[str] = set()  # keys seen with a tpm: their tokens go to Redis
        self._redis: _RedisLimits | None = None
        # Keys created at run time (kept in the results store) may bring limits of their own;
        # without those and without limits in the config, Redis is left alone.
        limited = any(k.rpm or k.tpm for k in keys) or bool(self.budgets) or bool(results_db)
        if redis_url and limited:
            self._redis = _RedisLimits(redis_url, redis_prefix, self.budgets)

    # --- the request path -------------------------------------------------------------------

    async def admit(self, key: GatewayKey | None) -> GatewayError | None:
        """The refusal of a request by ``key`` (None: admitted, and counted)."""
        if key is None:
            return None
        if key.budget is not None or key.team is not None:
            refusal = self.budgets.check(key, self.clock())
            if refusal is not None:
                return refusal
        if key.rpm is None and key.tpm is None:
            return None
        if self._redis is not None:
            if key.tpm is not None:
                self._tpm_keys.add(key.name)
            verdict = await self._redis.admit(key)
            if verdict is not None:  # Redis answered
                if verdict[0] != "ok":
                    return _refusal(key, *verdict)
                self._window(key.name).admit(self.clock(), None, None)  # for a fallback
                return None
        over = self._window(key.name).admit(self.clock(), key.rpm, key.tpm)
        return None if over is None else _refusal(key, *over)

    def _window(self, name: str) -> _Window:
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = _Window()
        return window

    # --- what requests used -----------------------------------------------------------------

    def recorder(self, inner: Recorder | None) -> Recorder:
        """``inner``, with every traffic result also counted here."""

        def record(result: CheckResult) -> None:
            self.observe(result)
            if inner is not None:
                inner(result)

        return record

    def observe(self, result: CheckResult) -> None:
        name = result.key_name
        if result.source is not Source.TRAFFIC or name is None:
            return
        tokens = (result.usage.input_tokens or 0) + (result.usage.output_tokens or 0)
        if tokens:
            self._window(name).count(self.clock(), tokens)
            if self._redis is not None and name in self._tpm_keys:
                self._redis.tokens(name, tokens)
        if result.cost_usd:
            self.budgets.observe(result)
            if self._redis is not None:
                ts = result.timestamp.timestamp()
                self._redis.spent(name, result.team, ts, result.cost_usd)

    # --- the background ---------------------------------------------------------------------

    async def start(self) -> None:
        """Read the store's spend once before the first request (bounded: a store that does
        not answer in time is read again by ``run``)."""
        if self.budgets and self.budgets.results_db is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.budgets.refresh(), 10)

    async def run(self, stop: asyncio.Event) -> None:
        tasks = []
        if self.budgets.results_db is not None:  # budgets may come with run-time keys
            tasks.append(asyncio.create_task(self._refresh(stop)))
        if self._redis is not None:
            tasks.append(asyncio.create_task(self._redis.run(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            self.budgets.close()
            if self._redis is not None:
                await self._redis.aclose()

    async def _refresh(self, stop: asyncio.Event) -> None:
        wait = self.refresh_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if not stop.is_set():
                started = time.monotonic()
                await self.budgets.refresh()
                # A slow read (a month of raw results) is not repeated back to back: the store
                # spends at most a tenth of its time on it.
                wait = max(self.refresh_s, 9 * (time.monotonic() - started))


class _RedisLimits:
    """The windows in Redis, and the exchange of tokens and spend with the other replicas."""

    def __init__(self, url: str, prefix: str, budgets: Budgets) -> None:
        import redis.asyncio as redis  # loads only when configured

        self.prefix = prefix
        self.budgets = budgets
        self.stream = f"{prefix}:spend"
        self.replica = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self.url = url
        self._admit = self.client.register_script(_ADMIT)
        self._tokens = self.client.register_script(_TOKENS)
        self._retry_at = 0.0  # monotonic: while ahead, the request path stays local
        self._away = False  # logged once per outage
        self._queue: deque[tuple[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._queued = asyncio.Event()

    def _key(self, name: str) -> str:
        return f"{self.prefix}:window:{name}"

    async def admit(self, key: GatewayKey) -> tuple[str, float] | None:
        """Redis's verdict, or None when Redis cannot be asked (then the caller goes local)."""
        from redis.exceptions import RedisError

        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        try:
            verdict, wait = await self._admit(
                keys=[self._key(key.name)], args=[key.rpm or 0, key.tpm or 0]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._retry_at = time.monotonic() + RETRY_REDIS_S
            self._went_away(exc)
            return None
        if self._away:
            self._away = False
            log.warning("rate limits: Redis answers again; limits are shared across replicas")
        self._retry_at = 0.0
        return verdict.decode(), float(wait)

    def _went_away(self, exc: BaseException) -> None:
        if not self._away:
            self._away = True
            log.warning(
                "rate limits: Redis unreachable (%s); each replica enforces limits alone", exc
            )

    def tokens(self, name: str, tokens: int) -> None:
        self._queue.append(("tokens", (name, tokens, time.monotonic())))
        self._queued.set()

    def spent(self, key: str, team: str | None, ts: float, cost: float) -> None:
        self._queue.append(("spend", {"r": self.replica, "k": key, "t": team, "ts": ts,
                                      "c": cost}))  # fmt: skip
        self._queued.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send tokens and spend as they come, read the others' spend, until ``stop``."""
        await asyncio.gather(self._keep(stop, self._send), self._keep(stop, self._read))

    async def _keep(self, stop: asyncio.Event, loop: Callable[[asyncio.Event], Any]) -> None:
        """Run ``loop`` until ``stop``, again with backoff whenever Redis fails it (the request
        path finds Redis again by itself)."""
        from redis.exceptions import RedisError

        backoff = FLUSH_S
        while not stop.is_set():
            try:
                await loop(stop)
            except (RedisError, OSError, TimeoutError) as exc:
                self._went_away(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(5.0, backoff * 2)

    async def _send(self, stop: asyncio.Event) -> None:
        # At most one batch every SEND_EVERY_S: under load a round trip carries many requests'
        # tokens and spend, and the replicas' own reads of the stream stay as few.
        while not stop.is_set():
            if not self._queue:
                self._queued.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._queued.wait(), FLUSH_S)
            await self._flush()
            await asyncio.sleep(SEND_EVERY_S)

    async def _read(self, stop: asyncio.Event) -> None:
        last_id: bytes | str = "$"
        if await self.client.exists(self.stream):
            last_id = (await self.client.xinfo_stream(self.stream))["last-generated-id"]
        while not stop.is_set():
            replies = await self.client.xread({self.stream: last_id}, block=READ_BLOCK_MS)
            for _, entries in replies or ():
                for entry_id, fields in entries:
                    last_id = entry_id
                    event = json.loads(fields[b"e"])
                    if event["r"] != self.replica:
                        self.budgets.spend(event["k"], event["t"], event["ts"], event["c"])

    async def _flush(self) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        async with self.client.pipeline(transaction=False) as pipe:
            for kind, item in batch:
                if kind == "tokens":
                    name, tokens, at = item
                    # Queued while Redis was away, past the window: they would count as new.
                    if time.monotonic() - at < WINDOW_S:
                        await self._tokens(keys=[self._key(name)], args=[tokens], client=pipe)
                else:
                    pipe.xadd(self.stream, {"e": json.dumps(item)}, maxlen=STREAM_MAXLEN)
            await pipe.execute()
        for _ in batch:  # sent: only now dropped (a failed send is retried)
            self._queue.popleft()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.aclose()
