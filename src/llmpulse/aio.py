"""Running coroutines on the fastest event loop available.

uvloop (installed with uvicorn[standard] where the platform supports it) roughly halves the
event loop's per-event cost, which directly shrinks measurement error under load.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


def quiet_gc() -> None:
    """Keep cyclic-GC pauses out of measurements in a long-running, latency-sensitive loop.

    Measured with ``bench scale``: at 5,000 targets, full collections over the daemon's and the
    simulator's live objects paused the loops for 40-120 ms, which is the whole TTFT error tail.
    Objects built at start-up are frozen out of collections, and collections run less often
    (nearly everything here is freed by reference counting; cycles are rare).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
