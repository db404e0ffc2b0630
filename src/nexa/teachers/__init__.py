"""Talking to teachers (OpenAI-compatible APIs and local HF models) with caching, retries, rate limits and cost, and materializing their outputs."""
