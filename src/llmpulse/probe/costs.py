"""What one run of a probe costs, estimated before it runs: its tokens priced by the catalogue
(``llmpulse.catalog``, the target's price overrides first). What the probe budget
(``probe.budget``) and ``llmpulse check-config`` reckon with; a probe's real cost is what its
result reports."""

from __future__ import annotations

import json

from llmpulse import catalog
from llmpulse.probe.runner import INFERENCE_PROMPT, STREAM_PROMPT
from llmpulse.result import CheckKind, Usage
from llmpulse.target import Probe, Target
from llmpulse.timing import CHARS_PER_TOKEN

# Tokens of framing each message adds (role markers), as providers count them about.
_MESSAGE_OVERHEAD = 4


def probe_cost_per_run(target: Target, probe: CheckKind | Probe) -> float | None:
    """USD one run of ``probe`` on ``target`` is expected to cost; 0 for a models list (no
    tokens), None when no price is known (the catalogue lacks the model, no override)."""
    kind = probe if isinstance(probe, CheckKind) else probe.kind
    if kind is CheckKind.MODELS:
        return 0.0
    input_tokens, output_tokens = _tokens(target, probe)
    cost, _ = catalog.cost_usd(
        target, Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    )
    return cost


def _tokens(target: Target, probe: CheckKind | Probe) -> tuple[int, int]:
    """The run's (input, output) tokens at most: the prompt at about 4 characters a token and
    the whole output budget, so an estimate errs high."""
    if isinstance(probe, CheckKind):
        if probe is CheckKind.INFERENCE:
            return _prompt_tokens(INFERENCE_PROMPT), 1
        if probe is CheckKind.EMBEDDINGS:
            return _prompt_tokens(INFERENCE_PROMPT), 0
        return _prompt_tokens(STREAM_PROMPT), target.max_tokens
    if probe.kind is CheckKind.LONG_CONTEXT and probe.input_tokens is not None:
        prompt = probe.input_tokens
    elif probe.messages:
        chars = sum(len(json.dumps(m.get("content", ""))) for m in probe.messages)
        prompt = round(chars / CHARS_PER_TOKEN) + _MESSAGE_OVERHEAD * len(probe.messages)
    else:
        prompt = _prompt_tokens(STREAM_PROMPT if probe.kind.streams else INFERENCE_PROMPT)
    if probe.kind is CheckKind.EMBEDDINGS:
        return prompt, 0
    budget = _max_tokens(probe)
    return prompt, budget if budget is not None else target.max_tokens


def _prompt_tokens(prompt: str) -> int:
    return max(1, round(len(prompt) / CHARS_PER_TOKEN)) + _MESSAGE_OVERHEAD


def _max_tokens(probe: Probe) -> int | None:
    """The output budget the probe's params set, under any of the protocols' names for it."""
    for key in ("max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens"):
        value = probe.params.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None
