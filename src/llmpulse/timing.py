"""One stopwatch for a streamed answer: probes, the gateway and instrumented SDK clients time a
stream by the same rules, so the same stream gives the same numbers whoever read it.

- TTFT runs from the request leaving (``sent``: the HTTP client's hook as the headers go out,
  once connected) to the first output; without that hook, from ``start``. Connecting and
  queueing count in latency (``elapsed_s``, from ``start``), not in TTFT.
- Output is what the answer is made of: text, a refusal, a tool call's name and arguments. Not
  reasoning: its tokens are left out of the count below, so its time is left out of the span.
- Inter-token latency: the gaps between chunks that carried output. Events of one network chunk
  arrive together and count once (a gap of 0 is not a gap). The median is of the first
  ``MAX_GAPS`` gaps (bounded memory on a runaway stream); the maximum is of all of them.
- Tokens/s: the output tokens the provider reported, minus its reasoning tokens, over the span
  from the first to the last output. Reasoning comes before the first output (hidden, or as
  deltas that are not output), so counting it over that span would overstate the rate. A
  provider that reports no usage gets an estimate from the output's characters
  (``CHARS_PER_TOKEN``) rather than no figure, so it can still be compared. Only for a stream
  that ended properly: a cut one has no usage, or usage that does not match its span.

Times are ``time.perf_counter()`` seconds; every method takes the moment it records, so a
stream's chunks can be timed as they arrive and read later (``instrument``'s recorder thread).
"""

from __future__ import annotations

import statistics
import time
from array import array

from llmpulse.result import CheckResult, Usage

CHARS_PER_TOKEN = 4  # the usual rough estimate, used only when the provider reports no usage
MAX_GAPS = 8192  # 64 KiB of doubles at most per stream; longer answers are rare


class Stopwatch:
    """The timing of one HTTP attempt; created as the attempt starts."""

    __slots__ = ("chars", "first", "gaps", "last", "max_gap", "sent_at", "start")

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.sent_at: float | None = None
        self.first: float | None = None
        self.last = 0.0
        self.chars = 0
        self.gaps = array("d")  # raw doubles: appending allocates nothing per chunk
        self.max_gap = 0.0

    def sent(self, now: float | None = None) -> None:
        """The request starts to go out (connected): TTFT's origin. The first call counts."""
        if self.sent_at is None:
            self.sent_at = time.perf_counter() if now is None else now

    def content(self, now: float, chars: int) -> None:
        """Output of ``chars`` characters arrived at ``now``; an event of none is not output."""
        if chars <= 0:
            return
        if self.first is None:
            self.first = now
        else:
            gap = now - self.last
            if gap > 0:
                if gap > self.max_gap:
                    self.max_gap = gap
                if len(self.gaps) < MAX_GAPS:
                    self.gaps.append(gap)
        self.last = now
        self.chars += chars

    def elapsed_s(self, now: float | None = None) -> float:
        """Seconds since ``start`` (until ``now``): the attempt's latency once it ended."""
        return (time.perf_counter() if now is None else now) - self.start

    @property
    def ttft_s(self) -> float | None:
        if self.first is None:
            return None
        return self.first - (self.start if self.sent_at is None else self.sent_at)

    def tokens_per_s(self, usage: Usage | None) -> float | None:
        """Output tokens a second over the output's span (see the module's rule)."""
        if self.first is None or self.last <= self.first:
            return None
        if usage is not None and usage.output_tokens is not None:
            tokens: float = max(0, usage.output_tokens - (usage.reasoning_tokens or 0))
        else:
            tokens = self.chars / CHARS_PER_TOKEN
        return tokens / (self.last - self.first) if tokens else None

    def apply(self, result: CheckResult, usage: Usage | None, *, whole: bool) -> None:
        """Fill ``result``'s TTFT and inter-token latency, and its tokens/s when the stream was
        ``whole`` (it ended properly); ``usage`` is what the provider reported, if anything."""
        ttft = self.ttft_s
        if ttft is not None:
            result.ttft_ms = ttft * 1000
        if self.gaps:
            result.itl_p50_ms = statistics.median(self.gaps) * 1000
            result.itl_max_ms = self.max_gap * 1000
        if whole:
            result.tokens_per_s = self.tokens_per_s(usage)
