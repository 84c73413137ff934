"""Which request parameters a deployment can honour, and dropping the ones it cannot.

A parameter is named by its ``ChatRequest`` field (``extra:<key>`` for a field of the client's
own protocol carried in ``extra``). ``unsupported`` lists those a deployment's protocol or model
cannot carry; the gateway skips such a deployment (or, with ``drop_params``, sends the request
``without`` them). The per-model limits are the providers' documented ones:

- OpenAI reasoning models (o1, o3, o4-mini, gpt-5; not gpt-5-chat) take only the default
  temperature/top_p (1), no penalties, logprobs or logit_bias; OpenAI takes at most 4 stop
  sequences. n > 1 (Gemini candidateCount) is served whole, not streamed: a stream is one answer
  here; Anthropic has no n.
- Anthropic: temperature 0..1; Claude Sonnet/Haiku 4.5, Opus 4.1 and newer reject temperature
  with top_p; extended thinking needs the default temperature, no top_k, top_p of 0.95..1, no
  forced tool use, and a budget under max_tokens.
- Gemini 2.5 Pro cannot turn thinking off (a thinking budget of 0).
- Bedrock's Converse API takes max tokens, temperature, top_p and stop sequences only (the
  rest would go in ``additionalModelRequestFields``, model by model), one answer (no n), and no
  "none" tool choice; Claude on Bedrock takes temperature 0..1, and (4.5 and Opus 4.1 on)
  temperature or top_p, as on Anthropic's API.
- Azure api versions before 2024-09-01-preview take ``max_tokens``, later ones
  ``max_completion_tokens`` (``max_tokens_field``).
- A deployment whose LiteLLM ``model_info`` sets a capability flag false (``CAPABILITIES``)
  cannot take what the flag names: tools (``supports_function_calling``), images
  (``supports_vision``), a JSON schema response format (``supports_response_schema``) or
  reasoning (``supports_reasoning``). ``drop_params`` drops all but images, the request's own
  content (``KEPT``).

``example`` builds a request needing one feature (a name ``features`` gives), so readiness asks
``unsupported`` the same question routing does.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection

from llmpulse.gateway.ir import (
    ChatRequest,
    ImagePart,
    Message,
    Reasoning,
    ResponseFormat,
    TextPart,
    Tool,
    ToolChoice,
)

OPENAI_PROTOCOLS = frozenset({"openai", "azure", "xai"})
OPENAI_MAX_STOP = 4
ANTHROPIC_MIN_BUDGET = 1024
ANTHROPIC_THINKING_MIN_TOP_P = 0.95
# LiteLLM's reasoning_effort -> thinking budget (litellm/constants.py
# DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET); "none" turns thinking off.
EFFORT_BUDGETS = {"none": 0, "minimal": 128, "low": 1024, "medium": 2048, "high": 4096}
# OpenAI service tiers with an Anthropic equivalent ("auto" | "standard_only").
ANTHROPIC_TIERS = {"auto": "auto", "default": "standard_only", "standard_only": "standard_only"}
_AZURE_COMPLETION_TOKENS_SINCE = "2024-09-01-preview"

# Parameters each protocol family can carry (translated where the names differ).
CARRIED: dict[str, frozenset[str]] = {
    "openai": frozenset(
        {
            "response_format",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "reasoning",
            "service_tier",
            "user",
        }
    ),
    "anthropic": frozenset({"top_k", "reasoning", "service_tier", "user"}),
    "bedrock": frozenset(),
    "gemini": frozenset(
        {
            "response_format",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            "logprobs",
            "top_logprobs",
            "top_k",
            "reasoning",
        }
    ),
}
# Fields checked against CARRIED: None when the client did not send them, or they were dropped.
OPTIONAL = (
    "response_format",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "top_k",
    "reasoning",
    "service_tier",
    "user",
)
_OPENAI_REASONING = re.compile(r"^(o\d|gpt-5)(?!-chat)")
_OPENAI_NON_REASONING = re.compile(r"^(gpt-4|gpt-3\.5|chatgpt-|gpt-5-chat)")
_CLAUDE = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d))?(?!\d)")
# A client's name for a parameter, where it is not the IR field's.
_CLIENT_NAMES = {
    ("openai", "reasoning"): "reasoning_effort",
    ("anthropic", "reasoning"): "thinking",
    ("anthropic", "user"): "metadata.user_id",
    ("anthropic", "stop"): "stop_sequences",
}


# LiteLLM's model_info capability flags (config.gateway.CAPABILITY_FLAGS) and the features a
# request cannot have where one is set false.
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "supports_function_calling": ("tools", "tool_choice"),
    "supports_vision": ("images",),
    "supports_response_schema": ("response_format",),
    "supports_reasoning": ("reasoning",),
}
# What drop_params cannot drop: the request's own content.
KEPT = frozenset({"images"})
# A value of each feature ``features`` names, for ``example``: one a model that can take the
# feature at all takes (non-default penalties and sampling, which reasoning models refuse).
_EXAMPLES: dict[str, dict[str, object]] = {
    "response_format": {"response_format": ResponseFormat("json_schema", schema={})},
    "seed": {"seed": 1},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "presence_penalty": {"presence_penalty": 0.5},
    "logprobs": {"logprobs": True},
    "top_logprobs": {"logprobs": True, "top_logprobs": 1},
    "logit_bias": {"logit_bias": {"1": 1.0}},
    "top_k": {"top_k": 1},
    "reasoning": {"reasoning": Reasoning(effort="medium")},
    "service_tier": {"service_tier": "auto"},
    "tool_choice": {"tools": [Tool("f")], "tool_choice": ToolChoice("auto")},
    "n": {"n": 2},
}


# Vertex AI asks Google's models in Gemini's format and Anthropic's in Anthropic's.
_FAMILIES = {"vertex": "gemini", "vertex-anthropic": "anthropic"}


def family(protocol: str) -> str:
    return "openai" if protocol in OPENAI_PROTOCOLS else _FAMILIES.get(protocol, protocol)


def client_name(req: ChatRequest, param: str) -> str:
    """``param`` as the client called it."""
    if param.startswith("extra:"):
        return param[len("extra:") :]
    return _CLIENT_NAMES.get((req.origin, param), param)


def is_openai_reasoning_model(model: str) -> bool:
    return bool(_OPENAI_REASONING.match(model.rsplit("/", 1)[-1]))


def max_tokens_field(protocol: str, model: str, preset_field: str, api_version: str | None) -> str:
    """The output budget's name: OpenAI reasoning models take only ``max_completion_tokens``
    (whatever server fronts them), Azure's older api versions only ``max_tokens`` (the dates
    compare as text)."""
    if protocol == "azure" and api_version and api_version < _AZURE_COMPLETION_TOKENS_SINCE:
        return "max_tokens"
    if is_openai_reasoning_model(model):
        return "max_completion_tokens"
    return preset_field


def thinking_budget(reasoning: Reasoning) -> int | None:
    if reasoning.budget_tokens is not None:
        return reasoning.budget_tokens
    return EFFORT_BUDGETS.get(reasoning.effort or "")


def effort(reasoning: Reasoning) -> str | None:
    """An OpenAI effort for ``reasoning``: a budget reads as the smallest tier holding it;
    thinking turned off (budget 0) is None, a model that does not reason."""
    if reasoning.effort is not None:
        return reasoning.effort
    budget = reasoning.budget_tokens or 0
    for name, tier in EFFORT_BUDGETS.items():
        if 0 < budget <= tier:
            return name
    return "high" if budget else None


def features(req: ChatRequest) -> list[str]:
    """What of ``req`` a fallback must be able to take beyond plain chat, by the names
    ``unsupported`` uses (``tools`` and ``images`` besides): recorded with each request, so
    readiness can tell whether a fallback could take the traffic its primary serves."""
    out = ["tools"] if req.tools else []
    if any(isinstance(p, ImagePart) for m in req.messages for p in m.parts):
        out.append("images")
    out += [f for f in OPTIONAL if getattr(req, f) is not None and f != "user"]
    if req.response_format is not None and req.response_format.type == "text":
        out.remove("response_format")  # plain text is every default
    if req.tool_choice is not None:
        out.append("tool_choice")
    if req.n is not None and req.n != 1:
        out.append("n")
    return out


def example(feature: str, origin: str = "openai") -> ChatRequest:
    """A plain request from an ``origin`` client needing ``feature`` (a ``features`` name)."""
    parts: list[TextPart | ImagePart] = [TextPart("hi")]
    if feature == "images":
        parts.append(ImagePart(url="https://example.com/a.png"))
    fields = {"tools": [Tool("f")]} if feature == "tools" else _EXAMPLES.get(feature, {})
    req = ChatRequest("example", [Message("user", list(parts))], origin=origin)
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def unsupported(
    req: ChatRequest, protocol: str, model: str, lacks: Collection[str] = ()
) -> list[str]:
    """The parameters of ``req`` a ``protocol`` deployment of ``model`` cannot honour; ``lacks``:
    the capability flags (``CAPABILITIES``) its ``model_info`` sets false."""
    fam = family(protocol)
    carried = CARRIED[fam]
    out = [f for f in OPTIONAL if getattr(req, f) is not None and f not in carried]
    if req.origin != fam:
        out += [f"extra:{key}" for key in req.extra]
    if req.n is not None and req.n != 1 and (fam in ("anthropic", "bedrock") or req.stream):
        out.append("n")
    if fam == "openai":
        out += _openai_limits(req, protocol, model)
    elif fam == "anthropic":
        out += _anthropic_limits(req, model)
    elif fam == "bedrock":
        out += _bedrock_limits(req, model)
    elif req.reasoning is not None and thinking_budget(req.reasoning) == 0 and "2.5-pro" in model:
        out.append("reasoning")
    if req.response_format is not None and req.response_format.type == "text":
        out = [f for f in out if f != "response_format"]  # plain text is every default
    if lacks:
        out += _declared(req, lacks)
    return list(dict.fromkeys(out))


def _declared(req: ChatRequest, lacks: Collection[str]) -> list[str]:
    """What of ``req`` the capability flags set false rule out."""
    needs = features(req)
    out = [f for flag in lacks for f in CAPABILITIES.get(flag, ()) if f in needs]
    rf = req.response_format
    if rf is not None and rf.type != "json_schema" and "response_format" in out:
        out.remove("response_format")  # JSON mode is no response schema
    if req.reasoning is not None and thinking_budget(req.reasoning) == 0 and "reasoning" in out:
        out.remove("reasoning")  # thinking turned off: any model honours that
    return out


def _openai_limits(req: ChatRequest, protocol: str, model: str) -> list[str]:
    out = []
    if protocol in ("openai", "azure") and len(req.stop) > OPENAI_MAX_STOP:
        out.append("stop")
    name = model.rsplit("/", 1)[-1]
    if req.reasoning is not None:
        # OpenAI's chat models take no reasoning_effort; its reasoning models cannot be told
        # not to think (thinking turned off is honoured by not reasoning at all).
        off = effort(req.reasoning) is None
        if (off and is_openai_reasoning_model(name)) or (
            not off and _OPENAI_NON_REASONING.match(name)
        ):
            out.append("reasoning")
    if is_openai_reasoning_model(model):
        for name, default in (("temperature", 1), ("top_p", 1)):
            if getattr(req, name) not in (None, default):
                out.append(name)
        for name in ("frequency_penalty", "presence_penalty"):
            if getattr(req, name) not in (None, 0):
                out.append(name)
        if req.logprobs:
            out.append("logprobs")
        out += [n for n in ("top_logprobs", "logit_bias") if getattr(req, n) is not None]
    return out


def _anthropic_limits(req: ChatRequest, model: str) -> list[str]:
    out = []
    if req.temperature is not None and req.temperature > 1:
        out.append("temperature")
    if req.temperature is not None and req.top_p is not None and _rejects_both(model):
        out.append("top_p")
    if req.service_tier is not None and req.service_tier not in ANTHROPIC_TIERS:
        out.append("service_tier")
    budget = thinking_budget(req.reasoning) if req.reasoning else None
    if budget:
        if req.temperature not in (None, 1):
            out.append("temperature")
        if req.top_k is not None:
            out.append("top_k")
        if req.top_p is not None and req.top_p < ANTHROPIC_THINKING_MIN_TOP_P:
            out.append("top_p")
        if req.tool_choice is not None and req.tool_choice.mode in ("required", "tool"):
            out.append("tool_choice")
        if req.max_tokens is not None and req.max_tokens <= max(budget, ANTHROPIC_MIN_BUDGET):
            out.append("reasoning")  # Anthropic wants max_tokens above the budget
    elif req.reasoning is not None and budget is None:
        out.append("reasoning")  # an effort Anthropic has no budget for
    return out


def _bedrock_limits(req: ChatRequest, model: str) -> list[str]:
    out = []
    if req.tool_choice is not None and req.tool_choice.mode == "none":
        out.append("tool_choice")
    if "anthropic.claude" in model and req.temperature is not None:
        if req.temperature > 1:
            out.append("temperature")
        if req.top_p is not None and _rejects_both(model):
            out.append("top_p")
    return out


def _rejects_both(model: str) -> bool:
    """Claude Sonnet/Haiku 4.5, Opus 4.1 and newer take temperature or top_p, not both."""
    match = _CLAUDE.search(model)
    if match is None:
        return False
    kind, major, minor = match.group(1), int(match.group(2)), int(match.group(3) or 0)
    return (major, minor) >= ((4, 1) if kind == "opus" else (4, 5))


def without(req: ChatRequest, params: list[str]) -> ChatRequest:
    """``req`` with ``params`` dropped (each back to its default)."""
    out = copy.copy(req)
    out.extra = {k: v for k, v in req.extra.items() if f"extra:{k}" not in params}
    for param in params:
        if param == "stop":
            out.stop = []
        elif param == "tools":
            out.tools, out.parallel_tool_calls = [], None
        elif param == "n":
            out.n = None
        elif not param.startswith("extra:"):
            setattr(out, param, None)
    return out
