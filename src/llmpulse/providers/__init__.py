"""Wire protocols (one module each) and the provider presets that use them."""

from llmpulse.presets import DISCOVERABLE, PRESETS, Preset
from llmpulse.providers.anthropic import AnthropicProtocol
from llmpulse.providers.base import Protocol, ProtocolError, ProviderError
from llmpulse.providers.gemini import GeminiProtocol
from llmpulse.providers.openai import AzureProtocol, OpenAIProtocol, XAIProtocol

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        OpenAIProtocol(),
        XAIProtocol(),
        AzureProtocol(),
        AnthropicProtocol(),
        GeminiProtocol(),
    )
}

__all__ = [
    "DISCOVERABLE",
    "PRESETS",
    "PROTOCOLS",
    "Preset",
    "Protocol",
    "ProtocolError",
    "ProviderError",
]
