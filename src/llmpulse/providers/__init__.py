"""Wire protocols, one module each behind one interface (``base.Protocol``), by name.

Which provider speaks which protocol is ``llmpulse.presets``."""

from llmpulse.providers.anthropic import AnthropicProtocol
from llmpulse.providers.base import Protocol, ProtocolError, ProviderError
from llmpulse.providers.bedrock import BedrockProtocol
from llmpulse.providers.gemini import GeminiProtocol
from llmpulse.providers.openai import AzureProtocol, OpenAIProtocol, XAIProtocol
from llmpulse.providers.vertex import VertexAnthropicProtocol, VertexGeminiProtocol

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        OpenAIProtocol(),
        XAIProtocol(),
        AzureProtocol(),
        AnthropicProtocol(),
        GeminiProtocol(),
        VertexGeminiProtocol(),
        VertexAnthropicProtocol(),
        BedrockProtocol(),
    )
}

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "ProtocolError",
    "ProviderError",
]
