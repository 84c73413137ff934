"""What several sections share: a listen address, a secret reference and reading one, a cron
expression and its time zone, and a share written as a percentage or a fraction."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator

from llmpulse.config.errors import ConfigError
from llmpulse.schedule import parse_cron, parse_timezone
from llmpulse.secrets import env_var


def check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return value


Address = Annotated[str, AfterValidator(check_address)]
# A cron expression and an IANA time zone, checked by ``llmpulse.schedule`` (one definition).
Cron = Annotated[str, AfterValidator(parse_cron)]
TimeZone = Annotated[str, AfterValidator(parse_timezone)]


def _secret_reference(value: str | None) -> str | None:
    if value is not None and env_var(value) is None:
        raise ValueError("must reference an environment variable: os.environ/NAME or ${NAME}")
    return value


SecretReference = Annotated[str | None, AfterValidator(_secret_reference)]


def read_reference(value: str, env: Mapping[str, str], path: str) -> str:
    """``value``, or the environment variable it references (``os.environ/NAME``, ``${NAME}``);
    ConfigError naming ``path`` (never a value) when that variable is unset or empty."""
    var = env_var(value)
    if var is None:
        return value
    if not env.get(var):
        raise ConfigError(f"{path}: environment variable {var} is not set")
    return env[var]


def read_share(value: Any, example: tuple[str, str]) -> float:
    """A share written as a percentage (``99.5%``) or a fraction (``0.995``), not yet bounded:
    each caller says what range it takes. ValueError, showing ``example``, for anything else."""
    expected = f"expected a percentage such as '{example[0]}' or a fraction such as {example[1]}"
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{expected}, got {text!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(expected)
    try:
        return float(value)
    except OverflowError:  # an integer past any float: past every bound too
        return math.inf
