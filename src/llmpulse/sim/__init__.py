"""A real HTTP simulator of the OpenAI, Anthropic, Gemini and Bedrock APIs for tests and
benchmarks:
its behaviour (``scenario``) and its server (``server.SimServer``)."""
