"""Google Gemini API (generativelanguage.googleapis.com, v1beta).

Reference: googleapis/python-genai and the REST reference: ``generateContent``,
``streamGenerateContent?alt=sse`` (each event a whole GenerateContentResponse, the last one with
``finishReason``), ``usageMetadata``, and google.rpc.Status errors with RetryInfo/QuotaFailure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmpulse.durations import DurationError, parse_duration
from llmpulse.errors import classify
from llmpulse.providers.base import (
    Completion,
    EmbeddingsInfo,
    ModelsInfo,
    Protocol,
    ProtocolError,
    ProviderError,
    RequestSpec,
    StreamParser,
    StreamUpdate,
    get_int,
    get_str,
    loads_object,
    merge_params,
    vector_length,
)
from llmpulse.result import Usage
from llmpulse.secrets import PRE_CLIP_CHARS
from llmpulse.sse import SSEEvent

if TYPE_CHECKING:
    from llmpulse.target import Target

# Finish reasons that mean the output was blocked by a safety or policy filter.
_FILTER_FINISH = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


class GeminiProtocol(Protocol):
    name = "gemini"
    terminal_event = "a chunk with finishReason"
    request_id_headers = ("x-request-id",)

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json", **target.headers}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return headers

    def models_request(self, target: Target) -> RequestSpec:
        return RequestSpec("GET", f"{target.base_url}/models?pageSize=1000", self.headers(target))

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        model = quote(target.model.removeprefix("models/"), safe="-._")
        body = merge_params(
            {**chat_contents(messages), "generationConfig": {"maxOutputTokens": max_tokens}},
            params,
        )
        url = f"{target.base_url}/models/{model}:{method}"
        return RequestSpec("POST", url, self.headers(target), body)

    def parse_models(self, body: Any, model: str) -> ModelsInfo:
        models = body.get("models") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise ProtocolError("models response has no 'models' list")
        wanted = "models/" + model.removeprefix("models/")
        for entry in models:
            if isinstance(entry, dict) and entry.get("name") == wanted:
                return ModelsInfo(True, get_int(entry, "inputTokenLimit"), len(models))
        return ModelsInfo(listed=False, count=len(models))

    def parse_completion(self, body: Any) -> Completion:
        if not isinstance(body, dict):
            raise ProtocolError("response is not a JSON object")
        completion = Completion()
        _merge_chunk(completion, body)
        return completion

    def stream_parser(self) -> StreamParser:
        return GeminiStreamParser()

    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        return error_from_object(obj, status)

    def embeddings_request(
        self, target: Target, *, text: str, params: Mapping[str, Any]
    ) -> RequestSpec:
        model = _model_path(target)
        body = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}, **params}
        url = f"{target.base_url}/models/{model}:embedContent"
        return RequestSpec("POST", url, self.headers(target), body)

    def parse_embeddings(self, body: Any) -> EmbeddingsInfo:
        # EmbedContentResponse is {"embedding": {"values": [...]}}: no usage to report.
        embedding = body.get("embedding") if isinstance(body, dict) else None
        if not isinstance(embedding, dict):
            raise ProtocolError("embedContent response has no 'embedding' object")
        return EmbeddingsInfo(dimensions=vector_length(embedding.get("values")))


def _model_path(target: Target) -> str:
    return quote(target.model.removeprefix("models/"), safe="-._")


def chat_contents(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Chat messages as Gemini's ``contents`` (the assistant is the "model") and, for system
    messages, ``systemInstruction``."""
    system = [{"text": str(m["content"])} for m in messages if m["role"] == "system"]
    out: dict[str, Any] = {
        "contents": [
            {
                "role": "model" if m["role"] == "assistant" else "user",
                "parts": [{"text": str(m["content"])}],
            }
            for m in messages
            if m["role"] != "system"
        ]
    }
    if system:
        out["systemInstruction"] = {"parts": system}
    return out


class GeminiStreamParser(StreamParser):
    def feed(self, event: SSEEvent) -> StreamUpdate:
        chunk = loads_object(event.data)
        if isinstance(chunk.get("error"), dict):
            return StreamUpdate(error=error_from_object(chunk, None))
        text, tool_chars = _merge_chunk(self.completion, chunk)
        if self.completion.finish_reason:
            self.done = True
        return StreamUpdate(text=text, done=self.done, tool_chars=tool_chars)


def _merge_chunk(c: Completion, chunk: dict[str, Any]) -> tuple[str, int]:
    """Fold one GenerateContentResponse into ``c``; return its visible text and the characters
    of its function calls (name and arguments as compact JSON, as the gateway relays them)."""
    c.response_model = get_str(chunk, "modelVersion") or c.response_model
    c.response_id = get_str(chunk, "responseId") or c.response_id
    usage = parse_usage(chunk.get("usageMetadata"))
    if usage is not None:
        c.usage = usage  # every chunk carries the running totals; the last one wins
    if get_str(chunk, "promptFeedback", "blockReason"):
        c.filtered = True
        c.finish_reason = get_str(chunk, "promptFeedback", "blockReason")
    text = ""
    tool_chars = 0
    candidates = chunk.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        cand = candidates[0]
        parts = (
            cand.get("content", {}).get("parts") if isinstance(cand.get("content"), dict) else None
        )
        if isinstance(parts, list):
            # Thought summaries are flagged ``thought: true``; they are not the answer.
            text = "".join(
                p["text"]
                for p in parts
                if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
            )
            for p in parts:
                call = p.get("functionCall") if isinstance(p, dict) else None
                if isinstance(call, dict):
                    c.add_tool_call(get_str(call, "name"))
                    args = call.get("args") if isinstance(call.get("args"), dict) else {}
                    tool_chars += len(get_str(call, "name") or "") + len(
                        json.dumps(args, ensure_ascii=False, separators=(",", ":"))
                    )
        finish = get_str(cand, "finishReason")
        if finish:
            c.finish_reason = finish
            c.filtered = c.filtered or finish in _FILTER_FINISH
    c.add_text(text)
    return text, tool_chars


def parse_usage(raw: Any) -> Usage | None:
    """promptTokenCount includes cached content; output is candidates plus thoughts."""
    if not isinstance(raw, dict):
        return None
    prompt = get_int(raw, "promptTokenCount")
    candidates = get_int(raw, "candidatesTokenCount")
    thoughts = get_int(raw, "thoughtsTokenCount")
    if prompt is None and candidates is None and thoughts is None:
        return None
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        cached_tokens=get_int(raw, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def error_from_object(obj: dict[str, Any], status: int | None) -> ProviderError:
    err = obj.get("error")
    if not isinstance(err, dict):
        err = obj
    message = (get_str(err, "message") or str(err))[:PRE_CLIP_CHARS]
    rpc_status = get_str(err, "status")
    if status is None:
        status = get_int(err, "code")
    retry_after = None
    markers: list[str] = []
    details = err.get("details")
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        kind = str(detail.get("@type", ""))
        if kind.endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            try:
                retry_after = parse_duration(delay) if isinstance(delay, str) else None
            except DurationError:
                retry_after = None
        elif kind.endswith("google.rpc.QuotaFailure"):
            for violation in detail.get("violations") or []:
                if isinstance(violation, dict) and isinstance(violation.get("quotaId"), str):
                    markers.append(violation["quotaId"])
        elif kind.endswith("google.rpc.ErrorInfo") and isinstance(detail.get("reason"), str):
            markers.append(detail["reason"])
    code = " ".join(markers) or None
    text = f"{message} ({rpc_status})" if rpc_status else message
    if status is not None:
        text = f"HTTP {status}: {text}"
    return ProviderError(classify(status, rpc_status, code, message), text, retry_after)
