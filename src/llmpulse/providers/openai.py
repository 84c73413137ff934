"""OpenAI Chat Completions, spoken by OpenAI and every OpenAI-compatible preset; Azure OpenAI.

Reference: openai-python (``_streaming.py``: data-only SSE, ``[DONE]``, ``{"error": ...}`` events
after a 200) and the Chat Completions API reference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from llmpulse.errors import classify
from llmpulse.presets import RESPONSES_MIN_OUTPUT_TOKENS
from llmpulse.providers import openai_responses
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

_FILTER_FINISH = "content_filter"
# Context-window fields of OpenAI-compatible model lists: vLLM, OpenRouter/Together, Groq,
# Mistral. OpenAI's own list has none.
_WINDOW_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length")
# Mistral and OpenRouter end a stream that failed midway with this finish reason.
_ERROR_FINISH = "error"
# The token budget's parameters: a probe that sets one replaces the target's.
_BUDGET_PARAMS = frozenset({"max_tokens", "max_completion_tokens"})


class OpenAIProtocol(Protocol):
    name = "openai"
    # xAI counts reasoning tokens outside completion_tokens; OpenAI and the others inside.
    reasoning_outside_completion = False
    terminal_event = "data: [DONE]"
    request_id_headers: tuple[str, ...] = ("x-request-id",)

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json", **target.headers}
        if target.api_key:
            headers["authorization"] = f"Bearer {target.api_key}"
        return headers

    def chat_url(self, target: Target) -> str:
        return f"{target.base_url}/chat/completions"

    def models_url(self, target: Target) -> str:
        return f"{target.base_url}/models"

    def models_request(self, target: Target) -> RequestSpec:
        return RequestSpec("GET", self.models_url(target), self.headers(target))

    def completion_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        body: dict[str, Any] = {"model": target.model, "messages": [dict(m) for m in messages]}
        if not _BUDGET_PARAMS & params.keys():
            body[target.max_tokens_field] = max_tokens
        if stream:
            body["stream"] = True
            if target.stream_include_usage:
                body["stream_options"] = {"include_usage": True}
        body = merge_params(body, params)
        return RequestSpec("POST", self.chat_url(target), self.headers(target), body)

    def parse_models(self, body: Any, model: str) -> ModelsInfo:
        # Together answers with a bare array instead of OpenAI's {"object": "list", "data": [...]}.
        data = (
            body if isinstance(body, list) else body.get("data") if isinstance(body, dict) else None
        )
        if not isinstance(data, list):
            raise ProtocolError("models response has no 'data' list")
        for entry in data:
            if isinstance(entry, dict) and entry.get("id") == model:
                window = next((w for key in _WINDOW_FIELDS if (w := get_int(entry, key))), None)
                return ModelsInfo(listed=True, context_window=window, count=len(data))
        return ModelsInfo(listed=False, count=len(data))

    def parse_completion(self, body: Any) -> Completion:
        if not isinstance(body, dict):
            raise ProtocolError("completion is not a JSON object")
        choices = body.get("choices")
        if not isinstance(choices, list):
            raise ProtocolError("completion has no 'choices' list")
        completion = Completion(
            response_model=get_str(body, "model"),
            system_fingerprint=get_str(body, "system_fingerprint"),
            response_id=get_str(body, "id"),
            usage=parse_usage(body.get("usage"), self.reasoning_outside_completion),
        )
        if choices:
            choice = choices[0] if isinstance(choices[0], dict) else {}
            refusal = get_str(choice, "message", "refusal") or ""
            completion.add_text(get_str(choice, "message", "content") or refusal)
            completion.refused = bool(refusal)
            message = choice.get("message")
            calls = message.get("tool_calls") if isinstance(message, dict) else None
            for call in calls if isinstance(calls, list) else []:
                completion.add_tool_call(get_str(call, "function", "name"))
            completion.finish_reason = get_str(choice, "finish_reason")
            completion.filtered = completion.finish_reason == _FILTER_FINISH
            if completion.finish_reason == _ERROR_FINISH:
                completion.error = _finish_error()
        return completion

    def stream_parser(self) -> StreamParser:
        return OpenAIStreamParser(self.reasoning_outside_completion)

    def error_from_object(self, obj: dict[str, Any], status: int | None) -> ProviderError:
        return error_from_object(obj, status)

    def responses_request(
        self,
        target: Target,
        *,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        max_tokens: int,
        stream: bool,
    ) -> RequestSpec:
        # Chat-shaped messages ({role, content}) are valid Responses input items as they are.
        body: dict[str, Any] = {
            "model": target.model,
            "input": [dict(m) for m in messages],
            "max_output_tokens": max(max_tokens, RESPONSES_MIN_OUTPUT_TOKENS),
            **params,
            "stream": stream,
        }
        return RequestSpec("POST", f"{target.base_url}/responses", self.headers(target), body)

    def responses_stream_parser(self) -> StreamParser:
        return openai_responses.ResponsesStreamParser()

    def parse_responses(self, body: Any) -> Completion:
        return openai_responses.parse_response(body)

    def embeddings_url(self, target: Target) -> str:
        return f"{target.base_url}/embeddings"

    def embeddings_request(
        self, target: Target, *, text: str, params: Mapping[str, Any]
    ) -> RequestSpec:
        # Floats, not the SDK's default base64: the answer is read as JSON either way.
        body = {"model": target.model, "input": text, "encoding_format": "float", **params}
        return RequestSpec("POST", self.embeddings_url(target), self.headers(target), body)

    def parse_embeddings(self, body: Any) -> EmbeddingsInfo:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise ProtocolError("embeddings response has no 'data' list of embeddings")
        usage = body.get("usage")
        prompt = get_int(usage, "prompt_tokens")
        return EmbeddingsInfo(
            dimensions=vector_length(data[0].get("embedding")),
            usage=None if prompt is None else Usage(input_tokens=prompt, output_tokens=0),
            response_model=get_str(body, "model"),
        )


class AzureProtocol(OpenAIProtocol):
    """Azure OpenAI: deployment URLs, ``api-key`` header, ``api-version`` query parameter."""

    name = "azure"
    request_id_headers = ("x-request-id", "apim-request-id")

    def headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json", **target.headers}
        if target.api_key:
            headers["api-key"] = target.api_key
        return headers

    def chat_url(self, target: Target) -> str:
        deployment = quote(target.deployment or target.model, safe="")
        return (
            f"{target.base_url}/openai/deployments/{deployment}/chat/completions"
            f"?api-version={target.api_version}"
        )

    def models_url(self, target: Target) -> str:
        return f"{target.base_url}/openai/models?api-version={target.api_version}"

    def embeddings_url(self, target: Target) -> str:
        deployment = quote(target.deployment or target.model, safe="")
        return (
            f"{target.base_url}/openai/deployments/{deployment}/embeddings"
            f"?api-version={target.api_version}"
        )


class XAIProtocol(OpenAIProtocol):
    name = "xai"
    reasoning_outside_completion = True


class OpenAIStreamParser(StreamParser):
    def __init__(self, reasoning_outside_completion: bool = False) -> None:
        super().__init__()
        self._reasoning_outside = reasoning_outside_completion

    def feed(self, event: SSEEvent) -> StreamUpdate:
        data = event.data
        if data.startswith("[DONE]"):
            self.done = True
            return StreamUpdate(done=True)
        chunk = loads_object(data)
        if chunk.get("error") is not None:
            err = error_from_object(chunk, None)
            return StreamUpdate(error=err)
        c = self.completion
        c.response_model = get_str(chunk, "model") or c.response_model
        c.system_fingerprint = get_str(chunk, "system_fingerprint") or c.system_fingerprint
        c.response_id = c.response_id or get_str(chunk, "id")
        x_groq = g if isinstance(g := chunk.get("x_groq"), dict) else {}
        usage = parse_usage(chunk.get("usage"), self._reasoning_outside) or parse_usage(
            x_groq.get("usage")
        )
        if usage is not None:
            c.usage = usage
        # Groq reports why a stream stopped early in x_groq.error, possibly still sending [DONE].
        groq_error = x_groq.get("error")
        if isinstance(groq_error, str) and groq_error:
            return StreamUpdate(error=error_from_object({"error": {"message": groq_error}}, None))
        text = ""
        tool_chars = 0
        choices = chunk.get("choices")
        # Azure's first chunk may carry only prompt filter results, with an empty choices list.
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            text = get_str(choice, "delta", "content") or ""
            tool_chars = _tool_calls(c, choice)
            # A refusal streams in its own field; it is the answer, so it counts as text too.
            refusal = get_str(choice, "delta", "refusal") or ""
            if refusal:
                c.refused = True
                text += refusal
            finish = get_str(choice, "finish_reason")
            if finish:
                c.finish_reason = finish
                c.filtered = finish == _FILTER_FINISH
            if finish == _ERROR_FINISH:
                return StreamUpdate(error=_finish_error())
        if text:
            c.add_text(text)
        return StreamUpdate(text=text, tool_chars=tool_chars)


def _tool_calls(c: Completion, choice: dict[str, Any]) -> int:
    """Note the tools called in one chunk (a call's name comes in its first fragment); return
    the characters streamed: names and argument fragments."""
    delta = choice.get("delta")
    calls = delta.get("tool_calls") if isinstance(delta, dict) else None
    if not isinstance(calls, list):
        return 0
    chars = 0
    for call in calls:
        name = get_str(call, "function", "name") or ""
        c.add_tool_call(name)
        chars += len(name) + len(get_str(call, "function", "arguments") or "")
    return chars


def parse_usage(raw: Any, reasoning_outside_completion: bool = False) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt = get_int(raw, "prompt_tokens")
    completion = get_int(raw, "completion_tokens")
    if prompt is None and completion is None:
        return None
    # DeepSeek reports cache hits as prompt_cache_hit_tokens instead of prompt_tokens_details.
    cached = get_int(raw, "prompt_tokens_details", "cached_tokens")
    if cached is None:
        cached = get_int(raw, "prompt_cache_hit_tokens")
    reasoning = get_int(raw, "completion_tokens_details", "reasoning_tokens")
    if reasoning_outside_completion and completion is not None and reasoning:
        completion += reasoning  # our output_tokens always include reasoning
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
    )


def _finish_error() -> ProviderError:
    return ProviderError(classify(None), "the provider ended generation with finish_reason 'error'")


def error_from_object(obj: dict[str, Any], status: int | None) -> ProviderError:
    """Read ``{"error": {...}}``, ``{"error": "text"}`` or vLLM/Mistral's flat error objects."""
    err = obj.get("error")
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        err = obj
    message = (get_str(err, "message") or get_str(obj, "detail") or str(err))[:PRE_CLIP_CHARS]
    err_type = get_str(err, "type")
    code_raw = err.get("code")
    code = str(code_raw) if code_raw is not None else None
    # OpenRouter and some servers put the HTTP status in error.code of an in-stream error.
    if status is None and isinstance(code_raw, int) and 400 <= code_raw < 600:
        status = code_raw
    label = ", ".join(x for x in (err_type, code) if x)
    text = f"{message} ({label})" if label else message
    if status is not None:
        text = f"HTTP {status}: {text}"
    return ProviderError(classify(status, err_type, code, message), text)
