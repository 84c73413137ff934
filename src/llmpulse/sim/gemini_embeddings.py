"""Gemini ``models/{model}:embedContent``: ``{"embedding": {"values": [...]}}``, no usage (the
Gemini API reports none for embeddings). Errors are google.rpc.Status (``sim.gemini``)."""

from __future__ import annotations

from typing import Any

from llmpulse.sim import gemini
from llmpulse.sim.common import Plan, dimensions, vector

headers = gemini.headers
retry_headers = gemini.retry_headers
error = gemini.error


def max_tokens(body: dict[str, Any]) -> int | None:
    return 0  # an embedding generates no tokens


def _text(body: dict[str, Any]) -> str:
    content = body.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = [p.get("text") for p in parts or [] if isinstance(p, dict)]
    return "".join(t for t in texts if isinstance(t, str))


def validate(body: dict[str, Any]) -> str | None:
    if not _text(body):
        return "* EmbedContentRequest.content: contents is not specified"
    return None


def completion(p: Plan) -> dict[str, Any]:
    body = p.body if isinstance(p.body, dict) else {}
    size = dimensions(body.get("outputDimensionality"), p.behavior.embedding_dimensions)
    return {"embedding": {"values": vector(_text(body), size)}}
