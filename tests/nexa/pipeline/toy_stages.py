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


def span(ctx, seconds: float = 1.0, source: str | None = None):
    """Sleeps; writes when it started and ended (parallel-runner tests compare the spans)."""
    import time

    _record(ctx.name)
    started = time.time()
    if source is not None:
        ctx.input(source)
    time.sleep(seconds)
    (ctx.out / "span.json").write_text(json.dumps({"pid": os.getpid(), "start": started, "end": time.time()}))
    return {"pid": os.getpid()}


def needs_weights_slowly(ctx, source: str = "weights", seconds: float = 1.5):
    """Reads the weights at its end, after a pause in which a parallel stage asks to prune them."""
    import time

    _record(ctx.name)
    time.sleep(seconds)
    (ctx.out / "size.txt").write_text(str(len((ctx.input(source) / "model" / "weights.bin").read_bytes())))
    (ctx.out / "end.json").write_text(json.dumps(time.time()))
    return {}


def prune_when_asked(ctx, source: str = "weights"):
    """Prunes, then notes when the runner let it (after every other reader of the input ended)."""
    import time

    _record(ctx.name)
    ctx.prune_input(source, ["model/weights.bin"])
    (ctx.out / "pruned_at.json").write_text(json.dumps(time.time()))
    return {}


def pid_then_sleep(ctx, pid_file: str, seconds: float = 120.0):
    """Writes its process id where a test can find it, then sleeps (the test kills the runner meanwhile)."""
    import time

    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return {}


def die(ctx):
    """The worker's process ends under the stage, as an out-of-memory kill would end it."""
    os._exit(9)


def threaded_weights(ctx):
    """Weights whose bytes depend on the torch thread count, as float sums do: a rebuild must use as many threads."""
    import torch

    _record(ctx.name)
    (ctx.out / "model").mkdir()
    (ctx.out / "model" / "weights.bin").write_bytes(b"t" * 10 * torch.get_num_threads())
    return {}
