"""What a probe costs: the one estimate of a probe's spend, for the daemon to print at start,
``llmpulse check-config`` to list and the probe budget (``probe.budget``) to weigh (catalogue
prices, or the target's own ``prices``); a probe's real cost is what its result reports.

A run is priced at its prompt's estimated size and its whole output budget: an upper bound for
the answer, exact for the long_context prompt (built to its size). A models list costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmpulse import catalog
from llmpulse.presets import RESPONSES_MIN_OUTPUT_TOKENS
from llmpulse.probe.prompts import (
    EMBEDDINGS_TEXT,
    INFERENCE_PROMPT,
    LONG_CONTEXT_MAX_TOKENS,
    STREAM_PROMPT,
    estimate_tokens,
    text_of,
)
from llmpulse.result import CheckKind, Usage
from llmpulse.target import LONG_CONTEXT_TOKENS, Probe, Target

SECONDS_PER_DAY = 86_400
# Where each protocol's request parameters set the output budget (Gemini's, in
# ``generationConfig``, is read apart).
_BUDGET_PARAMS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def expected_usage(target: Target, probe: CheckKind | Probe) -> Usage:
    """The tokens one run of ``probe`` is expected to bill (none for a models list)."""
    p = probe if isinstance(probe, Probe) else Probe(name=str(probe), kind=probe)
    given = text_of(p.messages)
    match p.kind:
        case CheckKind.MODELS:
            return Usage(input_tokens=0, output_tokens=0, estimated=True)
        case CheckKind.INFERENCE:
            # The built-in check asks for one token; a custom probe, an answer to judge.
            custom = isinstance(probe, Probe)
            prompt, output = given or INFERENCE_PROMPT, target.max_tokens if custom else 1
        case CheckKind.STREAM:
            prompt, output = given or STREAM_PROMPT, target.max_tokens
        case CheckKind.RESPONSES:
            # The request asks the least the API takes when the target's budget is under it.
            prompt = given or STREAM_PROMPT
            output = max(target.max_tokens, RESPONSES_MIN_OUTPUT_TOKENS)
        case CheckKind.EMBEDDINGS:
            prompt, output = given or EMBEDDINGS_TEXT, 0
        case CheckKind.LONG_CONTEXT:
            size = p.input_tokens or LONG_CONTEXT_TOKENS
            return Usage(
                input_tokens=size,
                output_tokens=_budget(p.params, LONG_CONTEXT_MAX_TOKENS),
                estimated=True,
            )
    return Usage(
        input_tokens=estimate_tokens(prompt),
        output_tokens=_budget(p.params, output),
        estimated=True,
    )


def probe_cost_per_run(target: Target, probe: CheckKind | Probe) -> float | None:
    """USD for one run of ``probe`` on ``target``; None when no price is known for its model."""
    usage = expected_usage(target, probe)
    if not usage.input_tokens and not usage.output_tokens:
        return 0.0
    cost, _ = catalog.cost_usd(target, usage)
    return cost


def probe_cost_per_day(target: Target, probe: CheckKind | Probe) -> float | None:
    """USD a day for ``probe`` run at its interval (the target's when it has none)."""
    per_run = probe_cost_per_run(target, probe)
    if per_run is None:
        return None
    interval = probe.interval if isinstance(probe, Probe) and probe.interval else target.interval
    return per_run * SECONDS_PER_DAY / interval


# Where Gemini's and Bedrock Converse's bodies hold the output budget.
_NESTED_BUDGETS = (("generationConfig", "maxOutputTokens"), ("inferenceConfig", "maxTokens"))


def _budget(params: Mapping[str, Any], default: int) -> int:
    nested = [
        config.get(key)
        for section, key in _NESTED_BUDGETS
        if isinstance(config := params.get(section), Mapping)
    ]
    for value in (*(params.get(key) for key in _BUDGET_PARAMS), *nested):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return default
