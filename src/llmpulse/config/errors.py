"""``ConfigError``, and how a section's validation error reads: one line naming the key path,
what is wrong and what is expected, never a value that may be a secret. (The notifiers'
section renders its own: its entries are tagged by type, and it never echoes a value.)"""

from __future__ import annotations

from pydantic import ValidationError

_SECRET_FIELDS = frozenset(
    {"api_key", "headers", "token", "password", "master_key", "keys", "extra_headers"}
)


class ConfigError(Exception):
    """Invalid configuration; the message names the key path and what is expected."""


def format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = err["loc"]
        path = ""
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
                continue
            # A key is the file's text: one with a line break or control character is quoted,
            # so the error stays one line.
            name = part if part.isprintable() else repr(part)
            path += f".{name}" if path else name
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        # Echo only scalar values of non-secret keys: an unknown key may hold a pasted secret.
        secret = any(part in _SECRET_FIELDS for part in loc if isinstance(part, str))
        shown = not secret and err["type"] not in ("missing", "extra_forbidden")
        value = err.get("input")
        scalar = isinstance(value, str | int | float | bool)
        got = f" (got {value!r})" if shown and scalar and repr(value) not in message else ""
        lines.append(f"{path or '(top level)'}: {message}{got}")
    return "; ".join(lines)
