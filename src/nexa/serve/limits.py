"""The server's request limits: the defaults of both :func:`nexa.serve.app.create_app` and ``nexa serve``.

Kept apart from the app so the command can declare its options without importing FastAPI and torch.
"""

import ipaddress

DEFAULT_MAX_TOKENS_CAP = 256
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, token: str | None) -> str | None:
    """The warning ``nexa serve`` prints when anyone who can reach ``host`` may use the server (no token)."""
    if token or is_loopback(host):
        return None
    return (f"serving on {host} without a token: anyone who can reach it can use it; pass --token or set "
            "NEXA_SERVE_TOKEN")
