"""uvicorn as llmpulse's HTTP servers (the gateway, the dashboard) run it, with the bounds it
lacks.

- A request's line and headers must arrive within a time limit. uvicorn bounds the wait between
  requests on a kept-alive connection (``timeout_keep_alive``) but not how long headers take: a
  client sending a byte now and then (slowloris) held its connection forever, and enough of
  them exhaust the process's descriptors. ``header_timeout_protocol`` closes such a connection;
  the others are served meanwhile. The clock starts when the connection opens, and for each
  later request on it at the request's first byte.
- ``Server`` stops on SIGINT or SIGTERM and returns, so the caller's cleanup (flushing recorded
  results) runs: uvicorn's own handling raises the signal again once served, and SIGTERM's
  default action ends the process on the spot. ``SideServer`` serves beside a ``Server`` (the
  gateway's metrics) and leaves the signals to it: the caller stops it once the main one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 30.0


def header_timeout_protocol(timeout: float = HEADER_TIMEOUT_S) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools, what ``http="auto"`` picks) with a ``timeout`` on
    each request's line and headers; pass it as ``uvicorn.Config(http=...)``."""
    return type("HeaderTimeoutProtocol", (_HeaderTimeout,), {"header_timeout": timeout})


class _HeaderTimeout(HttpToolsProtocol):
    header_timeout = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = False

    # uvicorn's own override takes a Transport, narrower than asyncio's BaseTransport.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A later request on the connection whose headers did not all come with this data:
        # timed from here. Those that did (nearly all) never cost a timer.
        if self._in_headers and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info("%s sent no complete request headers within %gs", client, self.header_timeout)
            self.transport.close()


class Server(uvicorn.Server):
    """A uvicorn server that SIGINT or SIGTERM stops (a second SIGINT: without waiting), and
    whose ``serve`` then returns normally; serve it in the main thread."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


class SideServer(uvicorn.Server):
    """A uvicorn server that installs no signal handlers (they would replace the main
    ``Server``'s): set ``should_exit`` to stop it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
