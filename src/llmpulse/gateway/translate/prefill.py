"""Continuing an answer that was cut mid-stream on another deployment (assistant prefill).

A protocol supports prefill when a request ending with an assistant turn makes the model
continue that turn instead of answering it:

- Anthropic Messages (on Anthropic's API and on Vertex AI): yes, documented ("prefill Claude's
  response"); the final assistant content must not end with whitespace, so trailing
  whitespace is trimmed and reported.
- Gemini generateContent: no documented continuation semantics for a trailing ``model`` turn.
- OpenAI Chat Completions: no; a trailing assistant message is answered, not continued
  (some OpenAI-compatible servers, e.g. DeepSeek's beta ``prefix`` flag, differ, but not as a
  part of the protocol).

Without prefill the gateway must restart from the beginning or end the stream with an error.
"""

from __future__ import annotations

import copy
import dataclasses

from llmpulse.gateway.ir import ChatRequest, TextPart, append_message

PREFILL_PROTOCOLS = frozenset({"anthropic", "vertex-anthropic"})  # Claude on Vertex AI too


@dataclasses.dataclass(slots=True)
class Continuation:
    request: ChatRequest
    trimmed: str  # whitespace cut from the end of the delivered text: drop it from the
    # start of the continuation's first text, since the client already has it


def continuation_request(
    protocol: str, request: ChatRequest, delivered: str, spent_tokens: int = 0
) -> Continuation | None:
    """The request that continues ``delivered`` on a ``protocol`` deployment, or None.

    None when the protocol cannot continue a turn or there is no text to continue (a stream
    cut inside a tool call is restarted instead: partial arguments cannot be prefilled).
    ``spent_tokens`` (output tokens already delivered) comes off the output budget. A client's
    own prefill stays in front of the delivered text.
    """
    if protocol not in PREFILL_PROTOCOLS:
        return None
    kept = delivered.rstrip()
    if not kept:
        return None
    continued = copy.deepcopy(request)
    append_message(continued.messages, "assistant", [TextPart(kept)])
    if continued.max_tokens is not None:
        continued.max_tokens = max(continued.max_tokens - spent_tokens, 1)
    return Continuation(continued, delivered[len(kept) :])
