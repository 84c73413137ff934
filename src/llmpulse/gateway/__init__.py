"""The failover gateway: OpenAI- and Anthropic-compatible endpoints in front of model groups."""
