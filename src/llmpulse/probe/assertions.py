"""A custom probe's expectations, judged against what its answer said and how fast.

The first expectation that fails is the result's ``assertion`` error: a 200 that answered, but
not what was expected (``ErrorClass.ASSERTION``).
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jsonschema
import referencing.exceptions
import regex

from llmpulse.durations import format_duration
from llmpulse.target import Expectation

# How long a probe's regex may search its answer (up to 64 KiB). The ``regex`` module, not
# ``re``: a pattern that backtracks without end (``(x+x+)+y``) would hold the event loop, and
# with it every probe's timing, for hours; ``regex`` stops at this timeout.
REGEX_TIMEOUT_S = 0.25


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
    if expect.regex is not None:
        problem = _regex_problem(expect.regex, answer)
        if problem is not None:
            return f"expected the answer to match the regex {expect.regex!r}{problem}"
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


def _regex_problem(pattern: str, answer: str) -> str | None:
    """None on a match; "" when there is none; what stopped the search when it ran too long."""
    try:
        found = regex.search(pattern, answer, timeout=REGEX_TIMEOUT_S)
    except TimeoutError:
        return f": it ran over {REGEX_TIMEOUT_S:g}s on the answer's {len(answer)} characters"
    return None if found is not None else ""


def _unfenced(answer: str) -> str:
    """JSON as models often write it: in one Markdown code fence (```json ... ```), alone."""
    text = answer.strip()
    if len(text) < 6 or not (text.startswith("```") and text.endswith("```")):
        return answer
    inner = text[3:-3]
    if inner.count("```"):
        return answer  # several fences, or prose between: not one JSON answer
    # The opening line's rest is the fence's info string (json, JSON, ...), not its content;
    # a fence on one line has its info string as a leading word.
    opening, newline, rest = inner.partition("\n")
    return rest if newline else opening.lstrip(string.ascii_letters)


def _schema_problem(schema: object, answer: str) -> str | None:
    try:
        instance = json.loads(_unfenced(answer))
    except ValueError as exc:
        return f"not JSON ({exc})"
    except RecursionError:  # a 64 KiB answer of "[[[[..." is deeper than json's C scanner goes
        return "not JSON (nested too deeply)"
    # The schema was checked when the config was loaded (``check_schema``).
    validator = _bounded_validator(schema)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    except _OutOfTime as exc:
        return f"the schema's pattern {exc.pattern!r} ran over {REGEX_TIMEOUT_S:g}s on the answer"
    except referencing.exceptions.Unresolvable as exc:
        # check_schema does not follow references; an answer that reaches a missing one (or a
        # remote one: nothing is fetched) finds it here.
        return f"the schema's reference {exc.ref!r} does not resolve (only ones within it do)"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message} at /{where}" if where else error.message


class _OutOfTime(Exception):
    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self.pattern = pattern


def _bounded_validator(schema: Any) -> Any:
    """The schema's validator with its ``pattern`` keyword run by ``regex`` within the time
    a regex expectation has, all of the answer's strings together (``re`` has no timeout)."""
    deadline = time.monotonic() + REGEX_TIMEOUT_S

    def pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
        if not validator.is_type(instance, "string"):
            return
        try:
            found = regex.search(pattern, instance, timeout=max(deadline - time.monotonic(), 0))
        except TimeoutError:
            raise _OutOfTime(pattern) from None
        if found is None:
            yield jsonschema.exceptions.ValidationError(f"{instance!r} does not match {pattern!r}")

    cls = jsonschema.validators.validator_for(schema)
    return jsonschema.validators.extend(cls, {"pattern": pattern})(schema)
