"""The durable tier on an S3 API: what a materialization's teacher cache and a stage's output folder cost.

A moto S3 server on localhost (the one the tests use) stands in for a bucket; every HTTP request it
serves is counted. Measured: writing N teacher answers and reading them back cold (``ResponseCache``:
one shard per answered batch, read in one concurrent batch) against the previous layout (one object
plus a hash sidecar per answer, looked up one key at a time, emulated with the same store), and a
stage-sized folder through ``put_dir`` / ``fetch_dir``. Timings on a shared machine are noisy.

    PYTHONPATH=src python benchmarks/durable_s3.py --answers 2000 --out benchmarks/results/durable_s3.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

BATCH = 32  # the local teacher's default batch size


class _Counted:
    """A WSGI wrapper that counts the requests the S3 server answers."""

    def __init__(self, app):
        self.app, self.count, self._lock = app, 0, threading.Lock()

    def __call__(self, environ, start_response):
        with self._lock:
            self.count += 1
        return self.app(environ, start_response)


def start_server() -> _Counted:
    import logging

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    counted = _Counted(DomainDispatcherApplication(create_backend_app))
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", port, counted, True, request_handler=MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"})
    return counted


def new_store():
    import boto3

    from nexa.ledger.store import DurableStore

    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return DurableStore(f"s3://{bucket}/lab")


def measure(counter: _Counted, work) -> tuple[float, int]:
    before, started = counter.count, time.perf_counter()
    work()
    return time.perf_counter() - started, counter.count - before


def answers(n: int):
    from nexa.teachers.protocol import GenerationParams, TeacherRequest, TeacherResponse

    return [(TeacherRequest.from_prompt(f"question {i}: what is {i} + {i}?", GenerationParams()),
             TeacherResponse(text=f"{2 * i}", input_tokens=12, output_tokens=3, latency_ms=1.0), 0.0) for i in range(n)]


def sharded_cache(counter: _Counted, fresh) -> dict:
    from nexa.teachers.cache import ResponseCache

    store = new_store()
    writer = ResponseCache(store, "local:golden-teacher")
    write_s, write_n = measure(counter, lambda: [writer.put_many(fresh[i : i + BATCH], "run") for i in range(0, len(fresh), BATCH)])
    keys = [writer.key(r) for r, _, _ in fresh]
    found = {}
    read_s, read_n = measure(counter, lambda: found.update(ResponseCache(store, "local:golden-teacher").lookup(keys)))
    assert len(found) == len(fresh)
    return {"layout": "one shard per batch", "write_s": write_s, "write_requests": write_n, "lookup_s": read_s, "lookup_requests": read_n}


def per_answer_objects(counter: _Counted, fresh) -> dict:
    """The previous layout: ``teacher-cache/<k[:2]>/<k>.json`` + sidecar per answer, one key at a time."""
    from nexa.ledger.manifests import dump_manifest
    from nexa.teachers.cache import CacheEntry, ResponseCache

    store = new_store()
    cache = ResponseCache(store, "local:golden-teacher")
    entries = [CacheEntry(key=cache.key(r), teacher_id=cache.teacher_id, request=r.key_material(), response=a, cost_usd=c)
               for r, a, c in fresh]
    path = lambda k: f"teacher-cache/{k[:2]}/{k}.json"  # noqa: E731
    write_s, write_n = measure(counter, lambda: [store.put_bytes(path(e.key), dump_manifest(e)) for e in entries])
    read_s, read_n = measure(counter, lambda: [store.get_bytes(path(e.key)) for e in entries if store.exists(path(e.key))])
    return {"layout": "one object per answer", "write_s": write_s, "write_requests": write_n, "lookup_s": read_s, "lookup_requests": read_n}


def folder(counter: _Counted, files: int) -> dict:
    store = new_store()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "out"
        src.mkdir()
        for i in range(files):
            (src / f"part-{i:03d}.bin").write_bytes(os.urandom(64 * 1024))
        put_s, put_n = measure(counter, lambda: store.put_dir(src, "stages/x/key"))
        get_s, get_n = measure(counter, lambda: store.fetch_dir("stages/x/key", Path(tmp) / "copy"))
    return {"files": files, "put_dir_s": put_s, "put_dir_requests": put_n, "fetch_dir_s": get_s, "fetch_dir_requests": get_n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    counter = start_server()
    fresh = answers(args.answers)
    rows = [sharded_cache(counter, fresh), per_answer_objects(counter, fresh)]
    print(f"teacher cache, {args.answers} answers (batches of {BATCH}) on moto S3")
    print(f"{'layout':<24}{'write s':>10}{'requests':>10}{'lookup s':>10}{'requests':>10}")
    for r in rows:
        print(f"{r['layout']:<24}{r['write_s']:>10.1f}{r['write_requests']:>10}{r['lookup_s']:>10.1f}{r['lookup_requests']:>10}")
    dirs = folder(counter, args.files)
    print(f"folder of {dirs['files']} x 64 KiB: put_dir {dirs['put_dir_s']:.2f} s / {dirs['put_dir_requests']} requests, "
          f"fetch_dir {dirs['fetch_dir_s']:.2f} s / {dirs['fetch_dir_requests']} requests")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"answers": args.answers, "batch": BATCH, "cache": rows, "folder": dirs,
                                        "python": sys.version.split()[0]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
