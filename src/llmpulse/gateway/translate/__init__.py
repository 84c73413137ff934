"""Translation between the OpenAI, Anthropic and Gemini wire protocols, through ``gateway.ir``.

Each module speaks one protocol, in both roles: as the client's protocol (``parse_request``,
``render_response``, a stream encoder, errors) and as the upstream's (``render_request``,
``parse_response``, a stream decoder).
"""
