"""Field types several sections share: a listen address, a secret reference."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

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
