"""Runs: a manifest opened when work starts and closed, succeeded or failed, when it ends.

The manifest is written to the durable tier and copied to the ledger (``runs/manifests``) at start
and at the end, so a killed run is visible as ``running`` and a failed one carries its error. Every
log line is a JSON object carrying the run id.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nexa.ledger.errors import ArtifactNotFoundError
from nexa.ledger.hashing import sha256_json
from nexa.ledger.ids import new_run_id
from nexa.ledger.lab import Lab
from nexa.ledger.manifests import (
    ArtifactRef,
    CostBreakdown,
    Environment,
    RunManifest,
    dump_manifest,
    load_manifest,
)
from nexa.ledger.store import atomic_write_bytes


def code_version() -> str:
    """The git commit of the source tree when there is one, else the installed package version."""
    from nexa import __version__

    src = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return f"nexacompute {__version__}"
    commit = out.stdout.strip()
    return f"git:{commit}" if out.returncode == 0 and commit else f"nexacompute {__version__}"


def current_environment() -> Environment:
    """Where a run ran. torch's version comes from its installed metadata: importing torch (seconds) only to
    record it would make every data command slow; the device is read only when the run has torch loaded."""
    from importlib import metadata

    from nexa import __version__

    torch_version, device = None, "cpu"
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch_version = torch.__version__
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    elif _torch_importable():
        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = None
    return Environment(
        python=platform.python_version(),
        torch=torch_version,
        device=device,
        platform=platform.platform(),
        hostname=socket.gethostname(),
        nexa_version=__version__,
    )


def detect_gpu_type() -> str:
    """``cpu``, or the accelerator model and count in the spec's form (``H100x1``, ``A100x4``).

    Read from torch when the run has loaded it, else from ``nvidia-smi`` (a data or eval command should not
    pay seconds of torch import to learn the machine has no GPU).
    """
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if not torch.cuda.is_available():
            return "cpu"
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        names = _nvidia_smi_names()
    if not names:
        return "cpu"
    model = next((w for w in names[0].replace("-", " ").split() if any(c.isdigit() for c in w)), names[0].split()[-1])
    return f"{model}x{len(names)}"


def _nvidia_smi_names() -> list[str]:
    import shutil

    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def _torch_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


class RunContext:
    """The open manifest of one run plus its structured log; use as a context manager."""

    def __init__(self, lab: Lab, manifest: RunManifest):
        self.lab = lab
        self.manifest = manifest
        self.log_path = lab.logs_dir / f"{manifest.run_id}.jsonl"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def log(self, event: str, **fields: Any) -> None:
        """Append one JSON line; the run id and a UTC timestamp are always present."""
        line = {"ts": datetime.now(timezone.utc).isoformat(), "run_id": self.run_id, "event": event, **fields}
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, default=str) + "\n")

    def add_input(self, ref: ArtifactRef) -> None:
        self.manifest.inputs = [*self.manifest.inputs, ref]

    def add_output(self, ref: ArtifactRef) -> None:
        self.manifest.outputs = [*self.manifest.outputs, ref]

    def update(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self.manifest, name, value)

    def save(self) -> None:
        save_manifest(self.lab, self.manifest)

    def finish(self, cost: CostBreakdown | None = None) -> RunManifest:
        if cost is not None:
            self.manifest.cost = cost
            self.manifest.cost_estimate_usd_total = cost.total_usd
        self.manifest.status = "succeeded"
        self.manifest.ended_at = datetime.now(timezone.utc)
        self.save()
        self.log("run_finished", status="succeeded")
        return self.manifest

    def fail(self, exc: BaseException) -> RunManifest:
        self.manifest.status = "failed"
        self.manifest.ended_at = datetime.now(timezone.utc)
        self.manifest.error = f"{type(exc).__name__}: {exc}"
        self.save()
        self.log("run_failed", error=self.manifest.error, traceback=traceback.format_exc())
        return self.manifest

    def __enter__(self) -> "RunContext":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            self.fail(exc)
        elif self.manifest.status == "running":
            self.finish()
        return False


def start_run(
    lab: Lab,
    run_type: str,
    *,
    config: dict[str, Any] | None = None,
    seed: int | None = None,
    parent_run_id: str | None = None,
    **fields: Any,
) -> RunContext:
    """Open a run: pick its id (``NEXA_RUN_ID`` wins when set), write a ``running`` manifest.

    On a launched node the bootstrap exports ``NEXA_PROVIDER`` (what the hour is billed at) and
    ``NEXA_TAILSCALE_IP`` (the node's tailnet address), so every run there records both.
    """
    env = current_environment()
    config = config or {}
    manifest = RunManifest(
        run_id=fields.pop("run_id", None) or os.environ.get("NEXA_RUN_ID") or new_run_id(),
        run_type=run_type,
        seed=seed,
        config=config,
        config_hash=sha256_json(config),
        code_version=code_version(),
        environment=env,
        hostname=env.hostname,
        gpu_type=fields.pop("gpu_type", None) or detect_gpu_type(),
        provider=fields.pop("provider", None) or os.environ.get("NEXA_PROVIDER") or lab.config.provider,
        tailscale_ip=fields.pop("tailscale_ip", None) or os.environ.get("NEXA_TAILSCALE_IP") or None,
        parent_run_id=parent_run_id,
        **fields,
    )
    context = RunContext(lab, manifest)
    context.save()
    context.log("run_started", run_type=run_type, config_hash=manifest.config_hash)
    return context


def save_manifest(lab: Lab, manifest: RunManifest) -> None:
    """Write to durable storage first (the record of truth), then the ledger copy."""
    data = dump_manifest(manifest)
    lab.durable().put_bytes(f"manifests/{manifest.run_id}.json", data, overwrite=True)
    atomic_write_bytes(lab.manifests_dir / f"{manifest.run_id}.json", data)


def load_run(lab: Lab, run_id: str) -> RunManifest:
    path = lab.manifests_dir / f"{run_id}.json"
    if not path.exists():
        known = [p.stem for p in sorted(lab.manifests_dir.glob("*.json"))][-5:]
        raise ArtifactNotFoundError(f"no run {run_id!r} in {lab.manifests_dir}; latest runs: {known or 'none'}")
    return load_manifest(RunManifest, path.read_bytes(), str(path))


def list_runs(lab: Lab) -> list[RunManifest]:
    return [load_manifest(RunManifest, p.read_bytes(), str(p)) for p in sorted(lab.manifests_dir.glob("*.json"))]
