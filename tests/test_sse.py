"""The SSE decoder, property-tested with arbitrary chunk boundaries and garbage."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmpulse.sse import SSEDecoder, SSEError, SSEEvent

_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=40
)
_event = st.builds(
    SSEEvent,
    data=st.lists(_text, min_size=1, max_size=3).map("\n".join),
    event=st.sampled_from(["message", "ping", "content_block_delta", "error"]),
)


def encode(events: list[SSEEvent], eol: str) -> bytes:
    out = []
    for e in events:
        if e.event != "message":
            out.append(f"event: {e.event}{eol}")
        out.append(": a comment line" + eol)
        out.extend(f"data: {line}{eol}" for line in e.data.split("\n"))
        out.append(eol)
    return "".join(out).encode()


def feed_split(data: bytes, cuts: list[int], decoder: SSEDecoder | None = None) -> list[SSEEvent]:
    decoder = decoder or SSEDecoder()
    events = []
    positions = sorted({c % (len(data) + 1) for c in cuts})
    last = 0
    for pos in [*positions, len(data)]:
        events += decoder.feed(data[last:pos])
        last = pos
    return events


@given(
    st.lists(_event, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.lists(st.integers(0, 10_000), max_size=20),
)
def test_any_chunking_yields_the_same_events(events, eol, cuts):
    data = encode(events, eol)
    got = feed_split(data, cuts)
    assert [(e.event, e.data) for e in got] == [(e.event, e.data) for e in events]


@given(st.binary(max_size=2000), st.lists(st.integers(0, 5000), max_size=10))
@settings(max_examples=300)
def test_garbage_never_crashes(data, cuts):
    decoder = SSEDecoder(max_event_bytes=512)
    try:
        feed_split(data, cuts, decoder)
    except SSEError:
        return
    decoder.close()


def test_oversized_line_without_newline_is_an_error_with_bounded_buffer():
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(SSEError):
        for _ in range(100):
            decoder.feed(b"x" * 100)
    assert len(decoder._buf) < 2048


def test_oversized_event_across_many_lines_is_an_error():
    decoder = SSEDecoder(max_event_bytes=1024)
    with pytest.raises(SSEError):
        for _ in range(100):
            decoder.feed(b"data: " + b"y" * 50 + b"\n")


def test_crlf_split_across_chunks_is_one_line_end():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent(data="a")]
    assert decoder.feed(b"\ndata: b\n\n") == [SSEEvent(data="b")]


def test_field_without_space_and_unknown_fields():
    decoder = SSEDecoder()
    got = decoder.feed(b"data:x\nfoo: bar\nid: 7\nretry: 10\n\n")
    assert got == [SSEEvent(data="x", id="7", retry=10)]


def test_close_reports_partial_event():
    decoder = SSEDecoder()
    decoder.feed(b'data: {"half": ')
    assert decoder.close() is True
    decoder = SSEDecoder()
    decoder.feed(b"data: done\n\n")
    assert decoder.close() is False
