"""What several sections share: a listen address, a secret reference, and reading one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import AfterValidator

from llmpulse.config.errors import ConfigError
from llmpulse.secrets import env_var


def check_address(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT such as 127.0.0.1:8080, got {value!r}")
    return value


Address = Annotated[str, AfterValidator(check_address)]


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
