"""What the built-in checks send, and the synthetic prompt of a ``long_context`` check.

The synthetic prompt is filler made of common three-letter English words, each with its leading
space: every mainstream tokenizer (OpenAI's, Anthropic's, Gemini's) makes one token of each, and
at four characters a word it is also what the usual four-characters-a-token estimate counts. So
a prompt built for N tokens is about N tokens wherever it is sent, and the 20 % mismatch warning
means the provider counted differently, not that the prompt was mis-sized.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from llmpulse.timing import CHARS_PER_TOKEN

INFERENCE_PROMPT = "ping"
STREAM_PROMPT = "Count from 1 to 50, separated by spaces. Reply with the numbers only."
EMBEDDINGS_TEXT = "A short sentence for llmpulse to embed: the quick brown fox jumps over the dog."
LONG_CONTEXT_MAX_TOKENS = 16  # output budget: TTFT needs one token, not an essay
MAX_SYNTHETIC_TOKENS = 2_000_000  # past the largest context windows; ~8 MB of text

_INSTRUCTION = (
    "The words after this sentence are filler for a latency test; ignore them and reply with "
    "only the word OK.\n"
)
# Each is a single token with its leading space in the tokenizers above, and CHARS_PER_TOKEN
# characters long with it.
_WORDS = (
    "the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "had", "her", "was",
    "one", "our", "out", "day", "get", "has", "him", "his", "how", "man", "new", "now", "old",
    "see", "two", "way", "who", "boy", "did", "its", "let", "put", "say", "she", "too", "use",
    "big", "end", "far", "few", "got", "own", "run", "set", "sun", "top", "try", "yes", "yet",
    "red", "sea", "art", "car", "cat", "dog", "eye", "key", "map", "box", "job", "law",
)  # fmt: skip
_SEED = 16  # any fixed seed: the filler is the same on every run and every machine


def estimate_tokens(text: str) -> int:
    """The four-characters-a-token estimate, for a prompt whose usage the provider omitted."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


def synthetic_prompt(tokens: int, nonce: str = "") -> str:
    """A prompt of about ``tokens`` tokens (at least the instruction's). ``nonce`` starts it:
    a prefix that differs per run keeps providers' prompt caches from serving a repeated prompt,
    which would measure a cache hit instead of the prefill of a long prompt."""
    if not 1 <= tokens <= MAX_SYNTHETIC_TOKENS:
        raise ValueError(f"input_tokens must be 1..{MAX_SYNTHETIC_TOKENS}, got {tokens}")
    head = f"{nonce} {_INSTRUCTION}" if nonce else _INSTRUCTION
    return head + _filler(max(0, tokens - estimate_tokens(head)))


@functools.lru_cache(maxsize=8)
def _filler(words: int) -> str:
    """``words`` filler words (cached: a probe sends the same size every interval)."""
    rng = random.Random(_SEED)
    return "".join(" " + w for w in rng.choices(_WORDS, k=words))


def text_of(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of chat-shaped messages: string contents, or their parts' text."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [
                p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            ]
    return "\n".join(texts)
