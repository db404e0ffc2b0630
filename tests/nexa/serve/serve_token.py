"""The bearer token the serving tests configure (a plain module: test files import it by name)."""

TOKEN = "serve-test-token-3b9f"
