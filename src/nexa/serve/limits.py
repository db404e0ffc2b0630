"""The server's request limits: the defaults of both :func:`nexa.serve.app.create_app` and ``nexa serve``.

Kept apart from the app so the command can declare its options without importing FastAPI and torch.
"""

DEFAULT_MAX_TOKENS_CAP = 256
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 16
