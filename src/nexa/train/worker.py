"""The per-process entry point torchrun starts: ``python -m nexa.train.worker SPEC.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from nexa.train.engine import WorkerSpec, run_worker

    if len(argv) != 1:
        print("usage: python -m nexa.train.worker WORKER_SPEC.json", file=sys.stderr)
        return 2
    spec = WorkerSpec(**json.loads(Path(argv[0]).read_text()))
    run_worker(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
