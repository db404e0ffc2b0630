"""The lab's record of the clusters it launched: one JSON file each under ``runs/clusters``.

A record is written before a node starts and updated as it runs and when it is torn down, so a
launcher that dies leaves a record ``status`` can match against what is really still up (orphans).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nexa.ledger import Lab
from nexa.ledger.manifests import load_manifest
from nexa.ledger.store import atomic_write_bytes

CLUSTER_RECORD_VERSION = 1
ClusterStatus = Literal["launching", "running", "succeeded", "failed", "stopped", "down"]


class ClusterRecord(BaseModel):
    """One launched cluster (a local process tree or a SkyPilot cluster) and where its results go."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = CLUSTER_RECORD_VERSION
    cluster: str
    backend: Literal["local", "skypilot"]
    target: str = Field(description="The pipeline or training config file the node runs.")
    target_kind: Literal["pipeline", "config"]
    status: ClusterStatus = "launching"
    durable: str
    provider: str = "local"
    gpus: str = "cpu"
    spot: bool = False
    usd_per_hour: float = 0.0
    budget_usd: float | None = None
    pid: int | None = Field(None, description="Local backend: the node's process (group leader).")
    launcher_pid: int | None = Field(None, description="The `nexa infra launch` process that tears it down.")
    scratch: str | None = Field(None, description="Local backend: the node's own scratch folder.")
    log: str | None = None
    run_id: str | None = None
    cost_usd: float = 0.0
    teardown: bool = False
    launched_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    ended_at: datetime | None = None
    error: str | None = None

    def log_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the node's log ('' before it has one), each ending in a newline."""
        text = Path(self.log).read_text(errors="replace") if self.log and Path(self.log).exists() else ""
        return "\n".join(text.splitlines()[-lines:]) + ("\n" if text else "")


class UnknownClusterError(LookupError):
    """No record of that cluster in this lab; the message lists the known ones."""


def clusters_dir(lab: Lab) -> Path:
    return lab.root / "runs" / "clusters"


def save_record(lab: Lab, record: ClusterRecord) -> None:
    atomic_write_bytes(clusters_dir(lab) / f"{record.cluster}.json", record.model_dump_json(indent=2).encode())


def load_record(lab: Lab, cluster: str) -> ClusterRecord:
    path = clusters_dir(lab) / f"{cluster}.json"
    if not path.exists():
        known = [r.cluster for r in list_records(lab)]
        raise UnknownClusterError(f"no cluster {cluster!r} in {clusters_dir(lab)}; known clusters: {', '.join(known) or 'none'}")
    return load_manifest(ClusterRecord, path.read_bytes(), str(path))


def find_record(lab: Lab, cluster: str) -> ClusterRecord | None:
    path = clusters_dir(lab) / f"{cluster}.json"
    return load_manifest(ClusterRecord, path.read_bytes(), str(path)) if path.exists() else None


def list_records(lab: Lab) -> list[ClusterRecord]:
    return [load_manifest(ClusterRecord, p.read_bytes(), str(p)) for p in sorted(clusters_dir(lab).glob("*.json"))]


def process_alive(pid: int | None) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def is_orphaned(record: ClusterRecord) -> bool:
    """A local cluster said to be up whose launcher is gone: nobody will sync or tear it down any more."""
    return record.backend == "local" and record.status in ("launching", "running") and not process_alive(record.launcher_pid)
