"""Teacher-free verification: hashes, no teacher weight inside, and the retention gate, in a fresh process.

The benchmark runs in ``python -I`` through ``verify_child.py`` with ``HF_HUB_OFFLINE=1``, no ``NEXA_*``
variables, a scratch working folder and ``nexa``/``transformers`` unimportable, so a passing report
proves the bundle works with nothing but the ``nexus`` runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetensors import safe_open

from nexa.ledger.hashing import sha256_file
from nexa.ledger.retention import DEFAULT_TEACHER_FLOOR, gate_failures, retention, retention_intervals

CI_LEVEL = 0.95
CI_KATZ = "katz-log-ratio"  # proportions (exact match, lm-eval accuracy): nexa.ledger.retention
CI_DELTA = "delta-log-ratio-of-means"  # continuous [0, 1] scores (a judge's): per-item variances, teacher's bounded

CHILD = Path(__file__).with_name("verify_child.py")
REPORT_VERSION = 1


class GateFailedError(RuntimeError):
    """A capability kept less than ``retain_fraction`` of the teacher's score."""


def check_hashes(bundle: Path) -> list[str]:
    """Files whose bytes differ from manifest.json, or that the manifest does not list."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    problems = [f"{rel}: sha256 mismatch" for rel, digest in manifest["files"].items()
                if not (bundle / rel).exists() or sha256_file(bundle / rel) != digest]
    listed = set(manifest["files"]) | {"manifest.json", "verify_report.json"}
    problems += [f"{p.relative_to(bundle).as_posix()}: not in manifest" for p in bundle.rglob("*")
                 if p.is_file() and p.relative_to(bundle).as_posix() not in listed]
    return problems


def teacher_tensors_inside(bundle: Path, teacher_weight_files: list[Path]) -> list[str]:
    """Bundle tensors identical to a teacher tensor (a copied teacher layer would show up here)."""
    teacher: dict[tuple, list[str]] = {}
    for file in teacher_weight_files:
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                teacher.setdefault((tuple(tensor.shape), sha_tensor(tensor)), []).append(f"{file.name}:{name}")
    found = []
    for file in sorted(bundle.rglob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():
                tensor = handle.get_tensor(name)
                if tensor.numel() >= 64 and (tuple(tensor.shape), sha_tensor(tensor)) in teacher:
                    found.append(f"{file.relative_to(bundle)}:{name}")
    return found


def sha_tensor(tensor) -> str:
    from nexa.ledger.hashing import sha256_bytes

    return sha256_bytes(tensor.contiguous().view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())


def run_isolated_benchmark(bundle: Path, items: list[dict[str, Any]], forbidden: list[str],
                           threads: int | None = None) -> dict[str, Any]:
    """Benchmark the bundle in a fresh ``python -I`` process; its stderr is returned on failure.

    ``threads`` pins the child's torch/OpenMP thread count (the verdict must not depend on it).
    """
    with tempfile.TemporaryDirectory(prefix="nexa-verify-") as work:
        items_file, result_file = Path(work) / "items.json", Path(work) / "result.json"
        items_file.write_text(json.dumps(items))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEXA_", "HF_", "TRANSFORMERS_"))}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", NO_PROXY="*")
        if threads is not None:
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        proc = subprocess.run([sys.executable, "-I", str(CHILD), str(bundle), str(items_file), str(result_file), *forbidden],
                              cwd=work, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"isolated verification process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        return json.loads(result_file.read_text())


def gate(teacher_scores: dict[str, float], student_scores: dict[str, float], retain_fraction: float,
         teacher_floor: float = DEFAULT_TEACHER_FLOOR) -> dict[str, Any]:
    """Passes only if every capability's retention (the ledger's rule) is ≥ retain_fraction and every teacher
    scores at least ``teacher_floor``."""
    kept = retention(student_scores, teacher_scores)
    reasons = gate_failures(kept, retain_fraction, teacher_scores, teacher_floor)
    return {"retention": kept, "failing": sorted(reasons), "reasons": reasons, "passed": not reasons}


def benchmark_metrics(bundle: Path) -> dict[str, dict[str, Any]]:
    """Per capability the registry's ``metric`` and ``benchmark`` (and the teacher's per-item score variance where
    known), from ``benchmark/metrics.json``; a bundle without one is scored by exact match."""
    path = bundle / "benchmark" / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def student_item_scores(bundle: Path, items: list[dict], child: dict, contracts: dict[str, dict], scoring,
                        forbidden: list[str], threads: int | None) -> dict[str, list[float]]:
    """Per capability the per-item values of its registry metric: per-item rules and judge scores on the isolated
    run's outputs, lm-eval tasks with every request answered by the bundle in another isolated run."""
    from nexa.eval.gate_metrics import capability_items

    def isolated(kind: str, requests: list) -> list:
        answered = run_isolated_benchmark(bundle, {kind: requests}, forbidden, threads)
        if answered["nexa_imported"] or answered["transformers_imported"]:
            raise RuntimeError("the isolated lm-eval run imported nexa or transformers; verification refused")
        return answered[kind]

    def answerers():
        return (lambda pairs: [tuple(r) for r in isolated("loglikelihood", [list(p) for p in pairs])],
                lambda asked: isolated("generate_until", [list(a) for a in asked]))

    return capability_items(items, child["outputs"], contracts, scoring, answerers)


def build_report(bundle: Path, teacher_scores, child: dict, retain_fraction: float, checks: dict, attempts: list,
                 teacher_floor: float = DEFAULT_TEACHER_FLOOR,
                 prompts: dict[str, int] | None = None, contracts: dict[str, dict] | None = None,
                 variances: dict[str, tuple] | None = None) -> dict:
    result = gate(teacher_scores, child["student_scores"], retain_fraction, teacher_floor)
    prompts, contracts, variances = prompts or {}, contracts or {}, variances or {}
    passed = result["passed"] and all(v in (True, []) for v in checks.values())
    return {
        "schema_version": REPORT_VERSION,
        "bundle": bundle.name,
        "verified_at": datetime.now(timezone.utc).isoformat(),
        "retain_fraction": retain_fraction,
        "teacher_scores": teacher_scores,
        "student_scores": child["student_scores"],
        "retention": result["retention"],
        "retention_ci": retention_intervals(child["student_scores"], teacher_scores, prompts, CI_LEVEL,
                                            variances) if prompts else {},
        "retention_ci_level": CI_LEVEL,
        "retention_ci_method": {c: CI_DELTA if c in variances else CI_KATZ for c in sorted(teacher_scores)},
        "metrics": {c: contracts.get(c, {}).get("metric", "exact_match") for c in sorted(teacher_scores)},
        "benchmarks": {c: contracts[c]["benchmark"] for c in sorted(teacher_scores) if "benchmark" in contracts.get(c, {})},
        "eval_prompts": prompts,
        "failing": result["failing"],
        "failure_reasons": result["reasons"],
        "passed": passed,
        "router_accuracy": child["router_accuracy"],
        "checks": checks,
        "process": {"isolated": True, "nexa_imported": child["nexa_imported"],
                    "transformers_imported": child["transformers_imported"], "hf_hub_offline": child["hf_hub_offline"],
                    "network_blocked": child["network_blocked"]},
        "attempts": attempts,
    }


def verify_bundle(bundle: Path, retain_fraction: float, teacher_weight_files: list[Path] = (),
                  forbidden: list[str] = (), attempts: list[dict] | None = None,
                  threads: int | None = None, teacher_floor: float = DEFAULT_TEACHER_FLOOR,
                  scoring=None) -> dict[str, Any]:
    """Every check and the gate on a bundle folder; writes verify_report.json and the manifest's retention.

    Each capability is scored by the registry's metric the bundle carries (``benchmark/metrics.json``):
    ``scoring`` (a :class:`nexa.eval.gate_metrics.GateScoring`) brings the judge and lm-eval's task folder."""
    from nexa.eval.gate_metrics import check_scoring, metric_kind, summarize

    contracts = benchmark_metrics(bundle)
    check_scoring({c: k["metric"] for c, k in contracts.items()}, scoring)
    from nexa.bundle.build import write_manifest

    checks = {"hash_mismatches": check_hashes(bundle),
              "teacher_tensors_inside": teacher_tensors_inside(bundle, list(teacher_weight_files)),
              "teacher_paths_absent": not any(Path(p).exists() for p in forbidden)}
    items = json.loads((bundle / "benchmark" / "items.json").read_text())
    teacher_scores = json.loads((bundle / "benchmark" / "teacher_scores.json").read_text())
    child = run_isolated_benchmark(bundle, items, list(forbidden), threads)
    values = student_item_scores(bundle, items, child, contracts, scoring, list(forbidden), threads)
    child["student_scores"], prompts, item_variance = summarize(values)
    variances = {c: (item_variance[c], contracts[c].get("teacher_item_variance")) for c in prompts
                 if metric_kind(contracts.get(c, {}).get("metric", "exact_match")) == "judge"}
    report = build_report(bundle, teacher_scores, child, retain_fraction, checks, attempts=list(attempts or []),
                          teacher_floor=teacher_floor, prompts=prompts, contracts=contracts, variances=variances)
    if scoring is not None:
        report["judge_spend_usd"] = round(scoring.judge_spent_usd, 6)
    report["attempts"].append({"attempt": len(report["attempts"]) + 1, "stage": "bundle_verify",
                               "retention": report["retention"], "passed": report["passed"]})
    (bundle / "verify_report.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    write_manifest(bundle, retention=report["retention"], verified=report["passed"])
    return report
