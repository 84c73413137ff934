"""Helpers shared by the protocol modules: field validation, tool arguments, SSE frames."""

from __future__ import annotations

import json
import secrets
from typing import Any

from llmpulse.gateway.ir import TranslationError
from llmpulse.providers.base import ProtocolError, loads_object

_MAX_INT = 2**31 - 1


def expect_dict(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TranslationError(f"'{field}' must be an object")
    return value


def expect_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError(f"'{field}' must be an array")
    return value


def expect_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise TranslationError(f"'{field}' must be a string")
    return value


def opt_str(value: Any, field: str) -> str | None:
    return None if value is None else expect_str(value, field)


def opt_bool(value: Any, field: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise TranslationError(f"'{field}' must be a boolean")
    return value


def opt_number(value: Any, field: str, low: float, high: float) -> float | None:
    return None if value is None else number(value, field, low, high)


def number(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TranslationError(f"'{field}' must be a number")
    if not low <= value <= high:
        raise TranslationError(f"'{field}' must be between {low:g} and {high:g}")
    return float(value)


def opt_positive_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_INT:
        raise TranslationError(f"'{field}' must be a positive integer")
    return value


def opt_int(value: Any, field: str, low: int = -_MAX_INT - 1, high: int = _MAX_INT) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TranslationError(f"'{field}' must be an integer between {low} and {high}")
    return value


def stop_list(value: Any, field: str) -> list[str]:
    """A stop value: a string, a list of strings, or null."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [expect_str(s, f"{field}[{i}]") for i, s in enumerate(expect_list(value, field))]


def tag_list(value: Any, field: str) -> list[str]:
    """LiteLLM's ``metadata.tags``: a list of strings, or null."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"'{field}' must be an array of strings")
    return [expect_str(t, f"{field}[{i}]") for i, t in enumerate(value)]


def parse_arguments(text: Any, field: str) -> dict[str, Any]:
    """OpenAI's tool-call arguments (JSON text) as the object the other protocols carry."""
    text = expect_str(text, field)
    if not text.strip():
        return {}  # some servers send "" for a tool without parameters
    try:
        value = json.loads(text)
    except ValueError:
        raise TranslationError(f"'{field}' is not valid JSON") from None
    if not isinstance(value, dict):
        raise TranslationError(f"'{field}' must be a JSON object")
    return value


def dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One Server-Sent Event; ``data`` is JSON-encoded unless already a string."""
    payload = data if isinstance(data, str) else dump_json(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def split_data_url(url: str) -> tuple[str, str] | None:
    """``data:image/png;base64,AAAA`` -> (media type, base64 data); None for other URLs."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise TranslationError("image data URLs must be 'data:<media type>;base64,<data>'")
    return media_type, data


def load_event(data: str) -> dict[str, Any]:
    """An upstream SSE event's JSON object; a malformed one is the upstream's fault (502)."""
    try:
        return loads_object(data)
    except ProtocolError as exc:
        raise TranslationError(f"malformed upstream event: {exc}", status=502) from None
