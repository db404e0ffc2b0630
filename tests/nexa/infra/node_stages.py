"""Three quick, deterministic pipeline stages for the local-backend tests (importable by the node process).

``NEXA_TEST_STAGE_SLEEP`` holds the middle stage long enough to kill the node inside it; it is read
from the environment, so it does not change the stage's cache key.
"""

import os
import time


def first(ctx, text: str) -> dict:
    (ctx.out / "first.txt").write_text(text)
    return {"chars": len(text)}


def middle(ctx) -> dict:
    time.sleep(float(os.environ.get("NEXA_TEST_STAGE_SLEEP", "0")))
    text = (ctx.input("first") / "first.txt").read_text()
    (ctx.out / "middle.txt").write_text(text.upper())
    return {"api_usd_hint": 0}


def last(ctx) -> dict:
    text = (ctx.input("middle") / "middle.txt").read_text()
    (ctx.out / "last.txt").write_text(text[::-1])
    # cost_usd: what the stage paid an API (added to its compute cost); the launcher's Tailscale key must not reach it
    return {"cost_usd": 0.25, "saw_tailscale_key": "TS_AUTHKEY" in os.environ}
