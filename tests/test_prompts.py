"""The synthetic long_context prompt: its size, its determinism, its bounds."""

from __future__ import annotations

import time

import pytest

from llmpulse.probe.prompts import (
    MAX_SYNTHETIC_TOKENS,
    estimate_tokens,
    synthetic_prompt,
    text_of,
)


@pytest.mark.parametrize("tokens", [1, 50, 1000, 10_000, 100_000])
def test_the_prompt_is_the_size_asked(tokens):
    prompt = synthetic_prompt(tokens)
    # The instruction alone is ~25 tokens: smaller asks get just that.
    assert estimate_tokens(prompt) == max(tokens, estimate_tokens(synthetic_prompt(1)))
    # Words of three letters, one space each: what tokenizers make one token of.
    words = prompt.split("\n", 1)[1].split(" ")[1:]
    assert all(len(w) == 3 for w in words)


def test_the_prompt_is_the_same_every_time_but_for_its_nonce():
    a, b = synthetic_prompt(5000, nonce="aaaa1111"), synthetic_prompt(5000, nonce="bbbb2222")
    assert a.startswith("aaaa1111 ") and b.startswith("bbbb2222 ")
    assert a[8:] == b[8:] and estimate_tokens(a) == 5000
    assert synthetic_prompt(5000) == synthetic_prompt(5000)


def test_the_largest_prompt_is_cheap_and_bounded():
    started = time.perf_counter()
    prompt = synthetic_prompt(MAX_SYNTHETIC_TOKENS)
    assert time.perf_counter() - started < 5
    assert estimate_tokens(prompt) == MAX_SYNTHETIC_TOKENS  # ~8 MB, no more
    for bad in (0, -1, MAX_SYNTHETIC_TOKENS + 1):
        with pytest.raises(ValueError, match=r"input_tokens must be 1\.\.2000000"):
            synthetic_prompt(bad)


def test_text_of_messages():
    messages = (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}]},
    )
    assert text_of(messages) == "Be brief.\nHi"
    assert text_of(()) == ""
