"""A custom probe's expectations, judged against what its answer said and how fast.

The first expectation that fails is the result's ``assertion`` error: a 200 that answered, but
not what was expected (``ErrorClass.ASSERTION``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import jsonschema

from llmpulse.durations import format_duration
from llmpulse.target import Expectation


def failed_expectation(
    expect: Expectation,
    answer: str,
    tool_calls: Sequence[str],
    ttft_s: float | None,
    tokens_per_s: float | None,
) -> str | None:
    """None when every expectation set holds; otherwise what the first failing one expected."""
    if expect.contains is not None and expect.contains not in answer:
        return f"expected the answer to contain {expect.contains!r}"
    if expect.regex is not None and re.search(expect.regex, answer) is None:
        return f"expected the answer to match the regex {expect.regex!r}"
    if expect.equals is not None and answer.strip() != expect.equals.strip():
        return f"expected the answer to equal {expect.equals!r}"
    if expect.json_schema is not None:
        problem = _schema_problem(expect.json_schema, answer)
        if problem is not None:
            return f"expected the answer to be JSON matching the schema: {problem}"
    if expect.tool_call is not None and expect.tool_call not in tool_calls:
        called = ", ".join(repr(name) for name in dict.fromkeys(tool_calls)) or "none"
        return f"expected a call of the tool {expect.tool_call!r} (tools called: {called})"
    if expect.max_ttft_s is not None:
        limit = format_duration(expect.max_ttft_s)
        if ttft_s is None:
            return f"expected a first token within {limit}, and none came"
        if ttft_s > expect.max_ttft_s:
            return f"expected a first token within {limit}, took {format_duration(ttft_s)}"
    if expect.min_tokens_per_s is not None and (
        tokens_per_s is None or tokens_per_s < expect.min_tokens_per_s
    ):
        measured = "none measured" if tokens_per_s is None else f"measured {tokens_per_s:.1f}"
        return f"expected at least {expect.min_tokens_per_s:g} tokens/s, {measured}"
    return None


def _schema_problem(schema: object, answer: str) -> str | None:
    try:
        instance = json.loads(answer)
    except ValueError as exc:
        return f"not JSON ({exc})"
    # The schema was checked when the config was loaded (``check_schema``).
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} at /{where}" if where else error.message
