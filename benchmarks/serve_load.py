"""Load-test ``nexa serve``: latency percentiles, throughput, exact-match sanity, and the status of malformed requests.

    python benchmarks/serve_load.py --url http://127.0.0.1:8000 [--token T] --requests 200 --concurrency 8 --out FILE
    python benchmarks/serve_load.py --bundle PATH --out FILE      # starts `nexa serve` itself on a free port

Prompts come from nexa.data.generators for every capability the server lists (seed 42, routed through the
bundle-level model name, so the router is exercised too), and answers are scored by exact match as a check
that the server really serves the trained student. Prints a Rich table and writes JSON
{requests, errors, p50_ms, p95_ms, rps, malformed: {case: status}, ...}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
from rich.console import Console
from rich.table import Table

from nexa.data.generators import CAPABILITIES, generate

console = Console(stderr=True)
EXPECTED = {"bad_json": 400, "wrong_types": 400, "huge_max_tokens": 400, "missing_auth": 401}


# ------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def served(bundle: Path, token: str, extra: list[str] = (), timeout_s: float = 120.0) -> Iterator[str]:
    """``nexa serve BUNDLE`` in a subprocess on a free loopback port; yields its base URL once /healthz answers."""
    port = free_port()
    env = {**os.environ, "NEXA_SERVE_TOKEN": token}
    command = [sys.executable, "-m", "nexa.cli", "serve", str(bundle), "--port", str(port), "--host", "127.0.0.1",
               *extra]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"nexa serve exited with {proc.returncode} before it was healthy:\n{proc.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet; poll again
        time.sleep(0.2)
    raise SystemExit(f"nexa serve did not answer {url}/healthz within {timeout_s:.0f}s")


# -------------------------------------------------------------------------------------------- load
def workload(models: list[str], n: int, seed: int) -> tuple[str, list[dict]]:
    """The routed model id and ``n`` rows {prompt, answer} spread over the served capabilities that have generators."""
    bundle = min(models, key=len)
    capabilities = [m.split(":", 1)[1] for m in models if ":" in m]
    known = [c for c in capabilities if c in CAPABILITIES]
    if not known:
        raise SystemExit(f"the server's capabilities {capabilities} have no generator in nexa.data.generators "
                         f"({sorted(CAPABILITIES)}); cannot make prompts")
    per = -(-n // len(known))
    pools = [generate(c, per, seed) for c in known]
    return bundle, [pools[i % len(known)][i // len(known)] for i in range(n)]  # capabilities interleaved


async def one(client: httpx.AsyncClient, model: str, row: dict, latencies: list, outcomes: list) -> None:
    began = time.perf_counter()
    try:
        reply = await client.post("/v1/completions", json={"model": model, "prompt": row["prompt"]})
        body = reply.json() if reply.status_code == 200 else None
        text = body["choices"][0]["text"] if body else None
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
        outcomes.append(("error", f"{type(exc).__name__}: {exc}"))
        return
    latencies.append((time.perf_counter() - began) * 1000)
    if reply.status_code != 200:
        outcomes.append(("error", f"{reply.status_code}: {reply.text[:200]}"))
    else:
        outcomes.append(("ok", text.strip() == str(row["answer"]).strip()))


async def run_load(url: str, token: str | None, model: str, rows: list[dict], concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    outcomes: list[tuple[str, object]] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        await one(client, model, rows[0], [], [])  # warm-up, not counted
        gate = asyncio.Semaphore(concurrency)

        async def bounded(row: dict) -> None:
            async with gate:
                await one(client, model, row, latencies, outcomes)

        began = time.perf_counter()
        await asyncio.gather(*(bounded(r) for r in rows))
        wall = time.perf_counter() - began
    errors = [detail for kind, detail in outcomes if kind == "error"]
    correct = [detail for kind, detail in outcomes if kind == "ok"]
    ordered = sorted(latencies)
    return {"requests": len(rows), "errors": len(errors), "error_samples": errors[:5],
            "p50_ms": round(percentile(ordered, 50), 2), "p95_ms": round(percentile(ordered, 95), 2),
            "p99_ms": round(percentile(ordered, 99), 2), "max_ms": round(ordered[-1], 2) if ordered else None,
            "rps": round(len(rows) / wall, 2), "wall_s": round(wall, 3), "concurrency": concurrency,
            "exact_match": round(sum(correct) / len(correct), 4) if correct else None}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


# --------------------------------------------------------------------------------------- malformed
def malformed(url: str, token: str | None, model: str) -> dict[str, int | None]:
    """The status each malformed request gets; missing_auth is None when the server has no token to miss."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    cases = {
        "bad_json": dict(content=b'{"model": "x", "prompt": ', headers={**auth, "content-type": "application/json"}),
        "wrong_types": dict(json={"model": model, "prompt": 42, "max_tokens": "ten"}, headers=auth),
        "huge_max_tokens": dict(json={"model": model, "prompt": "1+1", "max_tokens": 10 ** 9}, headers=auth),
    }
    statuses: dict[str, int | None] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for case, request in cases.items():
            statuses[case] = client.post("/v1/completions", **request).status_code
        statuses["missing_auth"] = client.post("/v1/completions", json={"model": model, "prompt": "1+1"}).status_code \
            if token else None
    return statuses


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# -------------------------------------------------------------------------------------------- main
def measure(url: str, token: str | None, n: int, concurrency: int, seed: int) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    models = [m["id"] for m in httpx.get(f"{url}/v1/models", headers=headers, timeout=30).raise_for_status().json()["data"]]
    model, rows = workload(models, n, seed)
    result = asyncio.run(run_load(url, token, model, rows, concurrency))
    status = httpx.get(f"{url}/api/status", headers=headers, timeout=30).raise_for_status().json()
    result["malformed"] = malformed(url, token, model)
    result["malformed_expected"] = EXPECTED
    result["malformed_ok"] = all(s is None or s == EXPECTED[c] for c, s in result["malformed"].items())
    result.update(model=model, bundle=status["bundle"], capabilities=status["capabilities"],
                  server_requests_served=status["requests_served"], url=url,
                  machine={"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()})
    return result


def show(result: dict) -> None:
    summary = Table(title=f"nexa serve load test: {result['bundle']} ({result['requests']} requests, "
                          f"concurrency {result['concurrency']})")
    for column in ("errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "exact match"):
        summary.add_column(column)
    summary.add_row(str(result["errors"]), f"{result['p50_ms']:.1f}", f"{result['p95_ms']:.1f}", f"{result['p99_ms']:.1f}",
                    f"{result['rps']:.1f}", "" if result["exact_match"] is None else f"{result['exact_match']:.3f}")
    console.print(summary)
    bad = Table(title="malformed requests")
    for column in ("case", "status", "expected"):
        bad.add_column(column)
    for case, status in result["malformed"].items():
        bad.add_row(case, "skipped (no token)" if status is None else str(status), str(EXPECTED[case]))
    console.print(bad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="Server root, e.g. http://127.0.0.1:8000 (a trailing /v1 is accepted).")
    where.add_argument("--bundle", type=Path, help="Bundle to serve with `nexa serve` on a free loopback port.")
    parser.add_argument("--token", default=os.environ.get("NEXA_SERVE_TOKEN"), help="Bearer token (default: $NEXA_SERVE_TOKEN).")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-batch", type=int, default=None,
                        help="With --bundle: passed to `nexa serve --max-batch` (1 turns dynamic batching off).")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    if args.bundle is not None:
        token = args.token or secrets.token_urlsafe(16)
        extra = [] if args.max_batch is None else ["--max-batch", str(args.max_batch)]
        with served(args.bundle, token, extra) as url:
            result = measure(url, token, args.requests, args.concurrency, args.seed)
        result["server_args"] = extra
        result["url"] = "spawned nexa serve on 127.0.0.1"
        result["bundle_bytes"] = folder_bytes(args.bundle)
        int8 = args.bundle.parent / f"{args.bundle.name}-int8"
        if (int8 / "manifest.json").is_file():
            result["int8_bundle_bytes"] = folder_bytes(int8)
    else:
        url = args.url.rstrip("/").removesuffix("/v1")
        result = measure(url, args.token, args.requests, args.concurrency, args.seed)
    show(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    if result["errors"] or not result["malformed_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
