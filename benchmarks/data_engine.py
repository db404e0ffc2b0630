"""Data engine throughput against a naive per-row jsonschema loop, on the same generated JSONL file.

    python benchmarks/data_engine.py --rows 100000 --out benchmarks/results/data_engine.json

The file holds ``--rows`` qa rows: ~5% malformed (missing or empty fields, wrong types, broken JSON,
unexpected fields, non-objects), ~10% exact duplicates (half with case/spacing changes) and ~5% near
duplicates (a word added). Timed, in one process:

* engine  — nexa.data loaders + column-wise validation + exact dedup (what ``nexa data prepare`` runs first);
* naive   — for each line: ``json.loads``, a compiled ``Draft202012Validator`` (``iter_errors``), and a
            set of SHA-256 of the normalised text (the fair version of the per-row loop: the validator
            is built once, not per row); ``speedup`` is against this loop;
* naive_validate_call — the same loop written the way the jsonschema docs show it,
            ``jsonschema.validate(row, schema)`` per row (re-checks the schema every call), on the first
            ``--sample`` rows only because it is slow; reported as ``speedup_vs_validate_call``;
* near    — MinHash LSH near-duplicate clustering over the rows left after exact dedup;
* cli     — the real command a user runs, ``nexa data prepare --filters exact --json`` on the same file in
            a fresh process and a fresh lab, wall clock (start-up imports, validation, dedup, the
            near-duplicate-aware split, writing and hashing the version, the run manifest): the headline.
            Its counts must equal the engine's. ``startup_seconds`` times everyday commands the same way.
            The checkout's sources are byte-compiled first, as an installed copy is (:func:`compile_sources`).
            ``--repeat N`` runs the engine and the command N times each, side by side (engine, command,
            engine, command...: each pair sees the same state of a noisy machine; a fresh lab each time) and
            reports the medians (``engine_seconds``, ``cli_seconds``; every run in ``*_seconds_all``).

The engine runs once on a 2,000-row file before timing, so one-time set-up (pyarrow kernels, the
schema files) is not counted as throughput. It uses the machine as ``nexa data prepare`` does:
``nexa.data.runtime.WORKERS`` threads (pyarrow, numpy and RE2 release the GIL) and the jemalloc
Arrow pool; the naive loop is one Python thread (the GIL allows no more). The run fails unless both
give the same good / quarantined / unique counts and every quarantine record names its file, line
and reason. Writes {rows, engine_rows_per_s, naive_rows_per_s, speedup, near_dup_rows_per_s,
peak_rss_mb, ...}; ``machine.minhash_kernel`` says which MinHash kernel ran (``compiled``:
``nexa.data._minhash``; ``numpy``: the install found no C compiler).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nexa.data.dedup import MINHASH_KERNEL, NearDedup  # noqa: E402
from nexa.data.filters import ExactDedup, FilterInput  # noqa: E402
from nexa.data.prepare import text_columns, validate_inputs  # noqa: E402
from nexa.data.runtime import WORKERS  # noqa: E402
from nexa.data.schema import load_schema  # noqa: E402

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec "
         "romeo sierra tango uniform victor whiskey xray yankee zulu sample beam plasma cathode anode lattice").split()
CAPABILITIES = ("reasoning", "science", "chemistry")


def _row(rng: random.Random, i: int) -> dict:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12)))
    return {"prompt": f"Q{i}: {words} at {rng.randint(1, 9999)} K?", "answer": str(rng.randint(0, 10**6)),
            "capability": rng.choice(CAPABILITIES), "domain": "bench"}


def _malformed(rng: random.Random, row: dict) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return json.dumps({k: v for k, v in row.items() if k != "capability"})
    if kind == 1:
        return json.dumps({**row, "prompt": ""})
    if kind == 2:
        return json.dumps({**row, "answer": int(row["answer"])})
    if kind == 3:
        return json.dumps(row)[: rng.randint(5, 30)]
    if kind == 4:
        return json.dumps({**row, "source": "scraped"})
    return json.dumps([row["prompt"], row["answer"]])


def write_data(path: Path, rows: int, seed: int = 42) -> dict[str, int]:
    """Stream the benchmark file to disk (never all in memory); returns how many rows of each kind."""
    rng = random.Random(seed)
    recent: list[dict] = []
    kinds = {"clean": 0, "malformed": 0, "exact_dup": 0, "near_dup": 0}
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(rows):
            roll = rng.random()
            if roll < 0.05:
                line, kind = _malformed(rng, _row(rng, i)), "malformed"
            elif roll < 0.15 and recent:
                base = rng.choice(recent)
                dup = base if rng.random() < 0.5 else {**base, "prompt": "  " + base["prompt"].upper() + " "}
                line, kind = json.dumps(dup), "exact_dup"
            elif roll < 0.20 and recent:
                base = rng.choice(recent)
                line, kind = json.dumps({**base, "prompt": base["prompt"] + " " + rng.choice(WORDS)}), "near_dup"
            else:
                row = _row(rng, i)
                recent = (recent + [row])[-1000:]
                line, kind = json.dumps(row), "clean"
            handle.write(line + "\n")
            kinds[kind] += 1
    return kinds


def run_engine(path: Path) -> dict:
    schema = load_schema("qa")
    started = time.perf_counter()
    validated = validate_inputs([(str(path), path)], schema)
    raw, norm = validated.text(schema)  # as apply_filters does: the text columns built beside validation
    keep = ExactDedup().apply(FilterInput(validated.table, raw, norm, schema.name)).keep
    seconds = time.perf_counter() - started
    kept = validated.table.filter(keep)
    located = all(r["file"] == str(path) and r["line"] and r["reason"] and "field" in r for r in validated.quarantine)
    return {"seconds": seconds, "good": validated.table.num_rows, "quarantined": len(validated.quarantine),
            "unique": int(keep.sum()), "kept": kept, "schema": schema, "located": located}


def run_naive(path: Path) -> dict:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(load_schema("qa").document)
    seen, good, bad = set(), 0, 0
    started = time.perf_counter()
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if list(validator.iter_errors(row)):
                bad += 1
                continue
            good += 1
            text = " ".join(f"{row['prompt']}\n{row['answer']}".lower().split())
            seen.add(hashlib.sha256(text.encode()).digest())
    return {"seconds": time.perf_counter() - started, "good": good, "quarantined": bad, "unique": len(seen)}


def run_validate_call(path: Path, sample: int) -> dict:
    import itertools

    import jsonschema

    schema = load_schema("qa").document
    seen, count = set(), 0
    started = time.perf_counter()
    with open(path, encoding="utf-8") as handle:
        for line in itertools.islice(handle, sample):
            count += 1
            try:
                row = json.loads(line)
                jsonschema.validate(row, schema)
            except (ValueError, jsonschema.ValidationError):
                continue
            seen.add(hashlib.sha256(" ".join(f"{row['prompt']}\n{row['answer']}".lower().split()).encode()).digest())
    return {"seconds": time.perf_counter() - started, "rows": count}


def run_near(engine: dict) -> dict:
    _, norm = text_columns(engine["kept"], engine["schema"])
    started = time.perf_counter()
    clusters = NearDedup().clusters(norm)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": len(norm), "removed": int((clusters != range(len(clusters))).sum())}


def _nexa() -> list[str]:
    """The installed ``nexa`` script beside this interpreter, else the module (both run this checkout's src)."""
    script = Path(sys.executable).with_name("nexa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexa.cli"]


def _timed(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    done = subprocess.run([*_nexa(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"nexa {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return seconds, done


def compile_sources() -> bool:
    """Byte-compile this checkout's ``src`` (``__pycache__``, git-ignored), as ``pip install`` does for a user.

    Without it, a shell with ``PYTHONDONTWRITEBYTECODE=1`` (this machine's) recompiles every ``nexa`` module
    from source in every fresh process: ≈ 0.1 s of each command's start-up that no installed copy pays.
    """
    import compileall

    return bool(compileall.compile_dir(str(ROOT / "src"), quiet=1))


def run_cli(path: Path, lab: Path) -> dict:
    """``nexa data prepare`` once, as a user runs it: a fresh process in a fresh lab (``lab`` is made anew)."""
    if lab.exists():
        shutil.rmtree(lab)
    _timed(["init", str(lab)], lab.parent)
    seconds, done = _timed(["data", "prepare", "--input", str(path), "--schema", "qa", "--dataset", "bench",
                            "--filters", "exact", "--json"], lab)
    counts = json.loads(done.stdout)["counts"]
    return {"seconds": seconds, "good": counts["read"] - counts["quarantined"], "quarantined": counts["quarantined"],
            "unique": counts["written"]}


def startup_seconds(lab: Path) -> dict[str, float]:
    """The everyday commands' start-up on a lab ``run_cli`` made (the best of three each)."""
    commands = {"help": ["--help"], "data_list": ["data", "list"], "data_show": ["data", "show", "bench@v1"],
                "runs_list": ["runs", "list"], "lineage": ["lineage", "bench@v1"]}
    return {name: round(min(_timed(args, lab)[0] for _ in range(3)), 2) for name, args in commands.items()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None, help="Write the result JSON here.")
    parser.add_argument("--sample", type=int, default=5_000, help="Rows for the jsonschema.validate() loop.")
    parser.add_argument("--repeat", type=int, default=1, help="Times to run the engine and `nexa data prepare` (a fresh lab "
                        "each); engine_seconds and cli_seconds are the medians (a busy machine's noise).")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nexa-data-bench-") as tmp:
        warm = Path(tmp) / "warm.jsonl"
        write_data(warm, 2000, seed=7)
        run_engine(warm)
        path = Path(tmp) / "bench.jsonl"
        kinds = write_data(path, args.rows)
        compiled = compile_sources()
        engine_times, cli_times = [], []
        for _ in range(args.repeat):  # side by side: each engine run beside a command run, on the same machine state
            engine = run_engine(path)  # one result kept at a time (peak RSS)
            engine_times.append(engine["seconds"])
            cli = run_cli(path, Path(tmp) / "lab")
            cli_times.append(cli["seconds"])
        engine["seconds"], cli["seconds"] = statistics.median(engine_times), statistics.median(cli_times)
        startup = startup_seconds(Path(tmp) / "lab")
        near = run_near(engine)
        naive = run_naive(path)
        call = run_validate_call(path, min(args.sample, args.rows))
    engine_rate, naive_rate = args.rows / engine["seconds"], args.rows / naive["seconds"]
    call_rate = call["rows"] / call["seconds"]
    result = {
        "rows": args.rows,
        "engine_rows_per_s": round(engine_rate),
        "naive_rows_per_s": round(naive_rate),
        "speedup": round(engine_rate / naive_rate, 1),
        "near_dup_rows_per_s": round(near["rows"] / near["seconds"]),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "naive_validate_call_rows_per_s": round(call_rate),
        "speedup_vs_validate_call": round(engine_rate / call_rate, 1),
        "cli_seconds": round(cli["seconds"], 2),
        "cli_seconds_all": [round(t, 2) for t in cli_times],
        "engine_seconds_all": [round(t, 2) for t in engine_times],
        "cli_rows_per_s": round(args.rows / cli["seconds"]),
        "cli_vs_engine": round(cli["seconds"] / engine["seconds"], 2),
        "cli_target_seconds": round(2 * engine["seconds"] + 1, 2),
        "startup_seconds": startup,
        "engine_seconds": round(engine["seconds"], 2),
        "naive_seconds": round(naive["seconds"], 2),
        "near_dup_seconds": round(near["seconds"], 2),
        "generated": kinds,
        "engine_counts": {k: engine[k] for k in ("good", "quarantined", "unique")},
        "naive_counts": {k: naive[k] for k in ("good", "quarantined", "unique")},
        "near_dup_removed": near["removed"],
        "engine_matches_naive": all(engine[k] == naive[k] for k in ("good", "quarantined", "unique")),
        "cli_matches_engine": all(engine[k] == cli[k] for k in ("good", "quarantined", "unique")),
        "quarantine_records_located": engine["located"],
        "machine": {"cpu_count": os.cpu_count(), "engine_threads": WORKERS, "arrow_pool": pa.default_memory_pool().backend_name,
                    "bytecode_compiled": compiled, "minhash_kernel": MINHASH_KERNEL,
                    "load_avg_1m_before": round(load_before[0], 2), "load_avg_1m_after": round(os.getloadavg()[0], 2)},
    }
    table = Table(title=f"data engine, {args.rows:,} rows")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("cli_seconds", "cli_target_seconds", "cli_rows_per_s", "engine_seconds", "engine_rows_per_s",
                "naive_seconds", "naive_rows_per_s", "speedup", "naive_validate_call_rows_per_s",
                "speedup_vs_validate_call", "near_dup_rows_per_s", "peak_rss_mb",
                "near_dup_removed", "engine_matches_naive", "cli_matches_engine"):
        table.add_row(key, f"{result[key]:,}" if isinstance(result[key], (int, float)) and not isinstance(result[key], bool) else str(result[key]))
    Console(stderr=True).print(table)
    for name, seconds in result["startup_seconds"].items():
        table.add_row(f"startup: nexa {name.replace('_', ' ')}", f"{seconds:.2f} s")
    if not (result["engine_matches_naive"] and result["cli_matches_engine"] and result["quarantine_records_located"]):
        raise SystemExit(f"engine and naive loop disagree or a quarantine record lacks its place: "
                         f"{result['engine_counts']} vs {result['naive_counts']}, located={result['quarantine_records_located']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
