"""The LLM decision-maker: prompt, brief, answer schema, client, cache, policy."""
