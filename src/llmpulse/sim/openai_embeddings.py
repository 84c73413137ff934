"""OpenAI embeddings wire format (``POST /v1/embeddings``; Azure's deployment URL too): a list of
vectors, one per input, as floats or as base64 of little-endian float32s, with the tokens billed
in ``usage.prompt_tokens``. Errors are Chat Completions' (``sim.openai``)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from llmpulse.sim import openai
from llmpulse.sim.common import Plan, dimensions, vector

headers = openai.headers
retry_headers = openai.retry_headers
error = openai.error


def max_tokens(body: dict[str, Any]) -> int | None:
    return 0  # an embedding generates no tokens


def validate(body: dict[str, Any]) -> str | None:
    given = body.get("input")
    if isinstance(given, str) and given:
        return None
    if isinstance(given, list) and given and all(isinstance(x, str) and x for x in given):
        return None
    return "'input' is a required property and must be a non-empty string or array of strings."


def _encode(values: list[float], fmt: Any) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


def completion(p: Plan) -> dict[str, Any]:
    body = p.body if isinstance(p.body, dict) else {}
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else list(given or [])
    size = dimensions(body.get("dimensions"), p.behavior.embedding_dimensions)
    fmt = body.get("encoding_format")
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector(text, size), fmt)}
        for i, text in enumerate(inputs)
    ]
    usage = {"prompt_tokens": p.input_tokens, "total_tokens": p.input_tokens}
    return {"object": "list", "data": data, "model": p.served_model, "usage": usage}
