"""Provider presets: which protocol a provider speaks, where, and how it wants to be asked.

One row per provider a user can name in ``provider:``. ``price_provider`` is the provider id in
the genai-prices catalogue; ``env`` lists the standard key variables in order of preference.
"""

from __future__ import annotations

import dataclasses


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


def bedrock_url(region: str) -> str:
    """Bedrock's runtime endpoint in ``region`` (the Converse API)."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"


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
