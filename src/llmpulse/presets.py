"""Provider presets: which protocol a provider speaks, where, and how it wants to be asked.

One row per provider a user can name in ``provider:``. ``price_provider`` is the provider id in
the genai-prices catalogue; ``env`` lists the standard key variables in order of preference.
"""

from __future__ import annotations

import dataclasses
import re

from llmpulse.result import CheckKind

# The checks every wire protocol offers; the others by protocol, below. Here, beneath the config,
# so that it refuses a check a provider cannot answer; ``Protocol.supports`` reads it too.
CHAT_KINDS = frozenset(
    {CheckKind.MODELS, CheckKind.INFERENCE, CheckKind.STREAM, CheckKind.LONG_CONTEXT}
)
_EXTRA_KINDS: dict[str, frozenset[CheckKind]] = {
    "openai": frozenset({CheckKind.RESPONSES, CheckKind.EMBEDDINGS}),
    "xai": frozenset({CheckKind.RESPONSES, CheckKind.EMBEDDINGS}),
    "azure": frozenset({CheckKind.EMBEDDINGS}),  # no Responses API at the deployment URLs
    "gemini": frozenset({CheckKind.EMBEDDINGS}),  # embedContent; Anthropic has no embeddings
}


# OpenAI's Responses API refuses a ``max_output_tokens`` under this (the request, the config and
# the cost estimate all hold to it).
RESPONSES_MIN_OUTPUT_TOKENS = 16


def supports(protocol: str, kind: CheckKind) -> bool:
    """Whether the wire protocol ``protocol`` offers checks of ``kind``."""
    return kind in CHAT_KINDS or kind in _EXTRA_KINDS.get(protocol, frozenset())


@dataclasses.dataclass(frozen=True, slots=True)
class Preset:
    name: str
    protocol: str
    base_url: str | None
    env: tuple[str, ...] = ()
    default_model: str | None = None
    # OpenAI-compatible APIs differ in the name of the output budget and in stream_options support.
    max_tokens_field: str = "max_tokens"
    stream_include_usage: bool = True
    price_provider: str | None = None
    needs_key: bool = True
    # The tokens/s below which ``tps_low`` fires unless a target sets its own ``tps_floor``.
    tps_floor: float | None = None


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "openai",
            "openai",
            "https://api.openai.com/v1",
            ("OPENAI_API_KEY",),
            "gpt-4o-mini",
            max_tokens_field="max_completion_tokens",
            price_provider="openai",
        ),
        Preset(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            ("ANTHROPIC_API_KEY",),
            "claude-haiku-4-5",
            price_provider="anthropic",
        ),
        Preset(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            "gemini-2.5-flash-lite",
            price_provider="google",
        ),
        Preset(
            "groq",
            "openai",
            "https://api.groq.com/openai/v1",
            ("GROQ_API_KEY",),
            "llama-3.1-8b-instant",
            max_tokens_field="max_completion_tokens",
            price_provider="groq",
            # The guide: "if TPS drops below 100 t/s for small models, investigate immediately".
            tps_floor=100,
        ),
        # Mistral's API rejects unknown fields such as stream_options; it sends usage anyway.
        Preset(
            "mistral",
            "openai",
            "https://api.mistral.ai/v1",
            ("MISTRAL_API_KEY",),
            "mistral-small-latest",
            stream_include_usage=False,
            price_provider="mistral",
        ),
        Preset(
            "deepseek",
            "openai",
            "https://api.deepseek.com",
            ("DEEPSEEK_API_KEY",),
            "deepseek-chat",
            price_provider="deepseek",
        ),
        Preset(
            "together",
            "openai",
            "https://api.together.xyz/v1",
            ("TOGETHER_API_KEY",),
            "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
            price_provider="together",
        ),
        Preset(
            "fireworks",
            "openai",
            "https://api.fireworks.ai/inference/v1",
            ("FIREWORKS_API_KEY",),
            "accounts/fireworks/models/llama-v3p1-8b-instruct",
            price_provider="fireworks",
        ),
        Preset(
            "openrouter",
            "openai",
            "https://openrouter.ai/api/v1",
            ("OPENROUTER_API_KEY",),
            "openai/gpt-4o-mini",
            price_provider="openrouter",
        ),
        Preset(
            "xai",
            "openai",
            "https://api.x.ai/v1",
            ("XAI_API_KEY",),
            "grok-3-mini",
            max_tokens_field="max_completion_tokens",
            price_provider="x-ai",
        ),
        Preset(
            "azure",
            "azure",
            None,
            ("AZURE_OPENAI_API_KEY",),
            max_tokens_field="max_completion_tokens",
            price_provider="azure",
        ),
        # Google Cloud's Vertex AI: Gemini, and Claude (``protocol_for``), with OAuth2 tokens
        # from a service-account file or application default credentials, not a key.
        Preset(
            "vertex",
            "vertex",
            None,
            default_model="gemini-2.5-flash-lite",
            price_provider="google",
            needs_key=False,
        ),
        # Signed with SigV4 from the AWS credential chain, not a key; base_url is made from the
        # region (``bedrock_url``).
        Preset(
            "bedrock",
            "bedrock",
            None,
            default_model="amazon.nova-micro-v1:0",
            price_provider="aws",
            needs_key=False,
        ),
        Preset("ollama", "openai", "http://localhost:11434/v1", needs_key=False),
        Preset("vllm", "openai", "http://localhost:8000/v1", needs_key=False),
        Preset("openai-compatible", "openai", None, needs_key=False),
    )
}


def protocol_for(provider: str, model: str) -> str:
    """The protocol a provider's ``model`` is asked in: Vertex AI serves Anthropic's models in
    Anthropic's Messages format (``rawPredict``), Google's in Gemini's."""
    protocol = PRESETS[provider].protocol
    if protocol == "vertex" and model.startswith("claude-"):
        return "vertex-anthropic"
    return protocol


# Google Cloud project ids (6 to 30 characters; older ones may be longer or domain-scoped)
# and locations, as Vertex AI's URLs take them (unescaped: nothing else may pass).
VERTEX_PROJECT = re.compile(r"(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{4,61}[a-z0-9]")
VERTEX_LOCATION = re.compile(r"[a-z][a-z0-9-]{1,40}")


def vertex_serves(model: str) -> bool:
    """Whether llmpulse speaks Vertex AI's API for ``model``: Google's Gemini and Anthropic's
    Claude publisher models. Others (Llama, Mistral, tuned models' endpoints...) take other
    URLs and formats; asked as Gemini they could only fail."""
    return model.startswith(("gemini-", "claude-"))


def vertex_base_url(location: str) -> str:
    """Vertex AI's v1 endpoint for a location: regional hosts, and one host for ``global``."""
    if location == "global":
        return "https://aiplatform.googleapis.com/v1"
    return f"https://{location}-aiplatform.googleapis.com/v1"


def bedrock_url(region: str) -> str:
    """Bedrock's runtime endpoint in ``region`` (the Converse API)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


_AWS_REGION = re.compile(r"^[a-z0-9-]{1,32}$")


def arn_region(model: str) -> str | None:
    """The region a Bedrock model ARN (an inference profile's, a provisioned model's) is in, as
    LiteLLM reads it: an ARN's resource lives there, and is not found elsewhere."""
    parts = model.split(":")
    if not model.startswith("arn:aws") or len(parts) < 4:
        return None
    return parts[3] if _AWS_REGION.match(parts[3]) else None


# Providers checked by ``llmpulse check`` without a config, in this order, when a key is set.
DISCOVERABLE = (
    "openai",
    "anthropic",
    "groq",
    "gemini",
    "mistral",
    "deepseek",
    "together",
    "openrouter",
    "xai",
)
