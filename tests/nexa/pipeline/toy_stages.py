"""Tiny stage functions for runner tests; each call is recorded so tests can count real executions."""

import json
import os
from pathlib import Path

CALLS = Path(os.environ.get("TOY_CALLS_FILE", "/tmp/toy-calls.jsonl"))


def _record(name):
    with open(CALLS, "a") as handle:
        handle.write(json.dumps({"stage": name}) + "\n")


def numbers(ctx, n: int = 5):
    _record(ctx.name)
    (ctx.out / "numbers.json").write_text(json.dumps(list(range(n))))
    return {"n": n}


def total(ctx, source: str = "numbers"):
    _record(ctx.name)
    values = json.loads((ctx.input(source) / "numbers.json").read_text())
    (ctx.out / "total.json").write_text(json.dumps(sum(values)))
    return {"total": sum(values)}


def weights(ctx):
    _record(ctx.name)
    (ctx.out / "model").mkdir()
    (ctx.out / "model" / "weights.bin").write_bytes(b"teacher" * 10)
    return {}


def prune_then_use(ctx, source: str = "weights"):
    _record(ctx.name)
    ctx.prune_input(source, ["model/weights.bin"])
    (ctx.out / "done.txt").write_text("ok")
    return {}


def needs_weights(ctx, source: str = "weights"):
    _record(ctx.name)
    (ctx.out / "size.txt").write_text(str(len((ctx.input(source) / "model" / "weights.bin").read_bytes())))
    return {}


def explode(ctx):
    _record(ctx.name)
    (ctx.out / "partial.txt").write_text("half")
    raise RuntimeError("boom in the middle of a stage")
