"""A real HTTP simulator of the OpenAI, Anthropic and Gemini APIs for tests and benchmarks:
its behaviour (``scenario``) and its server (``server.SimServer``)."""
