"""Serving a bundle over HTTP (OpenAI-compatible) with auth, health and Prometheus metrics."""
