"""``ConfigError``, and how a section's validation error reads: one line naming the key path,
what is wrong and what is expected, never a value that may be a secret. (The notifiers'
section adds its type tags to ``key_path`` and ``error_message``, and never echoes a value.)"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_core import ErrorDetails

_SECRET_FIELDS = frozenset(
    {"api_key", "headers", "token", "password", "master_key", "keys", "extra_headers", "admin_key"}
)

# Tags of discriminated unions: which form of an entry was read, not a key of the file.
FORM_TAGS = frozenset({"(plain key)", "(key mapping)"})


class ConfigError(Exception):
    """Invalid configuration; the message names the key path and what is expected."""


def format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        message = error_message(err)
        # Echo only scalar values of non-secret keys: an unknown key may hold a pasted secret.
        secret = any(part in _SECRET_FIELDS for part in loc if isinstance(part, str))
        shown = not secret and err["type"] not in ("missing", "extra_forbidden")
        value = err.get("input")
        scalar = isinstance(value, str | int | float | bool)
        got = f" (got {value!r})" if shown and scalar and repr(value) not in message else ""
        lines.append(f"{key_path(loc) or '(top level)'}: {message}{got}")
    return "; ".join(lines)


def key_path(loc: Sequence[int | str], where: str = "") -> str:
    """``where`` then the keys and indexes of ``loc`` (``targets[0].api_key``)."""
    path = where
    for part in loc:
        if part in FORM_TAGS:
            continue
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # A key is the file's text: one with a line break or control character is quoted,
        # so the error stays one line.
        name = part if part.isprintable() else repr(part)
        path += f".{name}" if path else name
    return path


def error_message(err: ErrorDetails) -> str:
    """What is wrong, in the words a config error uses for an unknown or a missing key."""
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    return err["msg"].removeprefix("Value error, ")
