"""Routing state shared between gateway replicas through Redis.

Replicas share what they saw, not a central state: every attempt's outcome is appended to a
Redis stream and every replica applies the others' outcomes to its own ``Selector``, so failure
counts, retry-after cool-downs, minute usage (rpm/tpm) and latency averages converge on every
replica. Breaker decisions travel too: when a breaker opens or a cool-down starts, its deadline
goes on the stream and into a hash, and when a breaker closes (its probe succeeded) the close
does, so a deployment that fails on one replica is avoided by all within one flush and read
(about 100 ms), and traffic returns to it everywhere together.

Redis is never on the request path: outcomes are queued in memory and sent in pipelined
batches between blocking reads (at most ``READ_BLOCK_MS`` apart). While Redis is unreachable,
routing goes on with local state (queued outcomes are dropped beyond a bound: they age out of
breaker windows anyway). When it returns,
a replica re-reads the hash of deadlines (open breakers, cool-downs) and republishes its own, so
what matters is resynchronised at once rather than relearnt from new failures.

Deadlines travel as wall-clock times and are turned into the breakers' monotonic clock on
arrival; replicas' clocks are assumed NTP-close (a second of skew shifts a deadline by as much).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import time
import uuid
from collections import deque
from typing import Any

import redis.asyncio as redis
from redis import Redis
from redis.exceptions import RedisError

from llmpulse.errors import ErrorClass
from llmpulse.gateway.breaker import BreakerState
from llmpulse.gateway.selector import Outcome, Selector
from llmpulse.result import RateLimit

log = logging.getLogger(__name__)

READ_BLOCK_MS = 100
RECONNECT_MAX_S = 5.0
MAX_QUEUED = 10_000  # outcomes kept while Redis is away
STREAM_MAXLEN = 10_000  # about the last few seconds at full load: enough for a reader


def holds_key(prefix: str) -> str:
    """The hash of breaker decisions in force: deployment id -> its deadlines."""
    return f"{prefix}:holds"


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """A deployment's breaker decision as the replicas share it: wall-clock deadlines (0: none)
    and what set the cool-down."""

    open_until: float
    cool_until: float
    reason: str | None


def read_holds(url: str, prefix: str = "llmpulse:gateway") -> dict[str, Hold]:
    """The decisions in force, by deployment id, for a reader outside the gateway (readiness);
    a closed breaker has none. Raises ``RedisError``/``OSError`` when Redis cannot say."""
    client = Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        raw = client.hgetall(holds_key(prefix))
    finally:
        client.close()
    out = {}
    for deployment, value in raw.items():  # type: ignore[union-attr]
        hold = json.loads(value)
        name = deployment.decode() if isinstance(deployment, bytes) else str(deployment)
        out[name] = Hold(hold.get("open") or 0.0, hold.get("cool") or 0.0, hold.get("why"))
    return out


class SharedState:
    """Publishes this replica's outcomes and breaker decisions; applies the other replicas'."""

    def __init__(self, url: str, selector: Selector, prefix: str = "llmpulse:gateway") -> None:
        self.url = url
        self.selector = selector
        self.stream = f"{prefix}:events"
        self.holds_key = holds_key(prefix)
        self.replica = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.connected = asyncio.Event()
        self._queue: deque[dict[str, Any]] = deque(maxlen=MAX_QUEUED)
        self._holds: dict[str, tuple[float, float]] = {}  # deployment -> published deadlines
        self._last_id: bytes | str = "0-0"  # the last stream entry read
        selector.listener = self._local

    # --- this replica -----------------------------------------------------------------------

    def _local(self, deployment_id: str, o: Outcome) -> None:
        """Selector callback after each local outcome (attempt or probe)."""
        rl = o.ratelimit
        fields = {
            "e": None if o.error_class is None else o.error_class.value,
            "ttft": o.ttft_s,
            "lat": o.latency_s,
            "tok": o.tokens,
            "util": rl.utilization if rl else None,
            "reset": rl.reset_s if rl else None,
            "ra": o.retry_after_s,
        }
        # Short keys, Nones left out: one of these goes out per request.
        event = {k: v for k, v in fields.items() if v is not None}
        self._queue.append({"k": "outcome", "d": deployment_id, **event})
        self._publish_hold(deployment_id)

    def _publish_hold(self, deployment_id: str) -> None:
        snap = self.selector.breaker(deployment_id).snapshot()
        mono, wall = self.selector.clock(), time.time()
        open_until = snap.open_until - mono + wall if snap.open_until else 0.0
        cool_until = snap.cooldown_until - mono + wall if snap.cooldown_until else 0.0
        previous = self._holds.get(deployment_id, (0.0, 0.0))
        if snap.state is BreakerState.CLOSED and previous != (0.0, 0.0) and not cool_until:
            self._holds.pop(deployment_id, None)
            self._queue.append({"k": "close", "d": deployment_id})
        # Deadlines move by microseconds between snapshots: publish real changes only.
        elif (open_until or cool_until) and (
            abs(open_until - previous[0]) > 0.5 or abs(cool_until - previous[1]) > 0.5
        ):
            self._holds[deployment_id] = (open_until, cool_until)
            reason = str(snap.cooldown_reason) if snap.cooldown_reason else None
            self._queue.append(
                {"k": "hold", "d": deployment_id, "open": open_until, "cool": cool_until,
                 "why": reason}
            )  # fmt: skip

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send and receive until ``stop``; reconnect with backoff whenever Redis goes away."""
        backoff = 0.1
        warn = True  # once when Redis is first found away, and after each time it answered
        while not stop.is_set():
            client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
            try:
                await self._resync(client)
                self.connected.set()
                backoff, warn = 0.1, True
                await self._exchange(client, stop)
            except (RedisError, OSError) as exc:
                if warn:
                    log.warning(
                        "shared routing state: Redis unreachable (%s); routing locally", exc
                    )
                    warn = False
                self.connected.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(RECONNECT_MAX_S, backoff * 2)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
        self.connected.clear()

    async def _resync(self, client: redis.Redis) -> None:
        """Adopt the deadlines the others hold, then republish ours."""
        # Read from the stream's current end: older outcomes are history, the hash has the rest.
        if await client.exists(self.stream):
            self._last_id = (await client.xinfo_stream(self.stream))["last-generated-id"]
        # redis-py types its asyncio client's hgetall as sync-or-async.
        for deployment, raw in (await client.hgetall(self.holds_key)).items():  # type: ignore[misc]
            hold = json.loads(raw)
            if hold.get("r") != self.replica:
                self._apply({"k": "hold", "d": deployment.decode(), **hold})
        for deployment_id, (open_until, cool_until) in self._holds.items():
            self._queue.append({"k": "hold", "d": deployment_id, "open": open_until,
                                "cool": cool_until, "why": None})  # fmt: skip

    async def _exchange(self, client: redis.Redis, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._flush(client)
            replies = await client.xread({self.stream: self._last_id}, block=READ_BLOCK_MS)
            for _, entries in replies or ():
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    event = json.loads(fields[b"e"])
                    if event.get("r") != self.replica:
                        self._apply(event)

    async def _flush(self, client: redis.Redis) -> None:
        if not self._queue:
            return
        batch = list(self._queue)
        async with client.pipeline(transaction=False) as pipe:
            for event in batch:
                event["r"] = self.replica
                pipe.xadd(self.stream, {"e": json.dumps(event)}, maxlen=STREAM_MAXLEN)
                if event["k"] == "hold":
                    hold = {k: event[k] for k in ("open", "cool", "why", "r")}
                    pipe.hset(self.holds_key, event["d"], json.dumps(hold))
                elif event["k"] == "close":
                    pipe.hdel(self.holds_key, event["d"])
            await pipe.execute()
        for _ in batch:  # sent: only now drop them (a failed send is retried after reconnect)
            self._queue.popleft()

    # --- the others -------------------------------------------------------------------------

    def _apply(self, event: dict[str, Any]) -> None:
        deployment_id = event["d"]
        match event["k"]:
            case "outcome":
                error = event.get("e")
                ratelimit = (
                    RateLimit(utilization=event["util"], reset_s=event.get("reset"))
                    if event.get("util") is not None
                    else None
                )
                outcome = Outcome(
                    error_class=ErrorClass(error) if error else None,
                    ttft_s=event.get("ttft"),
                    latency_s=event.get("lat"),
                    tokens=event.get("tok"),
                    ratelimit=ratelimit,
                    retry_after_s=event.get("ra"),
                )
                self.selector.apply_remote(deployment_id, outcome)
            case "hold":
                wall = time.time()
                open_for = (event.get("open") or 0.0) - wall
                cool_for = (event.get("cool") or 0.0) - wall
                why = event.get("why")
                self.selector.breaker(deployment_id).hold(
                    open_for_s=open_for if open_for > 0 else None,
                    cooldown_for_s=cool_for if cool_for > 0 else None,
                    reason=ErrorClass(why) if why else None,
                )
            case "close":
                self.selector.breaker(deployment_id).force_close()
