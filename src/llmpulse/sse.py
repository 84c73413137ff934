"""Incremental, bounded Server-Sent Events decoder.

Hand-written rather than taken from an SSE client library because the probe needs (a) a hard
cap on line and event size so a garbage or endless stream cannot exhaust memory, and (b) to be
fed raw chunks as they arrive so each event can be time-stamped on arrival; the libraries
(httpx-sse, aiohttp-sse-client) read through unbounded line iterators of their own.
Follows the WHATWG event-stream rules: CRLF, LF or CR line ends (even split across chunks),
``:`` comments, multi-line ``data``, dispatch on a blank line.
"""

from __future__ import annotations

import dataclasses
import re

DEFAULT_MAX_EVENT_BYTES = 1 << 20
_EOL = re.compile(rb"\r\n|\r|\n")


class SSEError(ValueError):
    """The byte stream is not a valid event stream (or exceeds the size bounds)."""


@dataclasses.dataclass(slots=True, frozen=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._buf = bytearray()
        self._skip_lf = False
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._pending_bytes = 0
        self._has_fields = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume a chunk of bytes, return the events it completed."""
        if not chunk:
            return []
        buf = self._buf
        buf += chunk
        pos = 0
        if self._skip_lf and buf[:1] == b"\n":
            pos = 1
        self._skip_lf = False
        events: list[SSEEvent] = []
        while True:
            match = _EOL.search(buf, pos)
            if match is None:
                break
            line = bytes(buf[pos : match.start()])
            pos = match.end()
            if match.group() == b"\r" and pos == len(buf):
                # A CR at the end of a chunk may be the first half of a CRLF.
                self._skip_lf = True
            event = self._line(line)
            if event is not None:
                events.append(event)
        del buf[:pos]
        if len(buf) + self._pending_bytes > self._max:
            raise SSEError(f"event exceeds {self._max} bytes without a line break or dispatch")
        return events

    def close(self) -> bool:
        """End of stream. Returns True if a partial line or undispatched event was left over."""
        leftover = bool(self._buf.strip()) or self._has_fields
        self._buf.clear()
        self._reset()
        return leftover

    def _line(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        if raw[:1] == b":":
            return None
        self._pending_bytes += len(raw)
        if self._pending_bytes > self._max:
            raise SSEError(f"event exceeds {self._max} bytes")
        line = raw.decode("utf-8", errors="replace")
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self._has_fields = True
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._reset()
            return None
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._id,
            retry=self._retry,
        )
        self._reset()
        return event

    def _reset(self) -> None:
        self._data = []
        self._event = ""
        self._retry = None
        self._pending_bytes = 0
        self._has_fields = False
