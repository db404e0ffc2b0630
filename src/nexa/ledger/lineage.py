"""Lineage: from any run, dataset version or stage output back to the raw data it came from.

The graph is read from what every writer already records: a run's input artifacts, a dataset's
parents and creating run, a stage output's producing run. Nothing is inferred from file names.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rich.tree import Tree

from nexa.ledger.datasets import read_dataset_manifest
from nexa.ledger.ids import RUN_ID_PATTERN
from nexa.ledger.lab import Lab
from nexa.ledger.registry import REF_PATTERN
from nexa.ledger.runs import load_run

_STAGE_REF = re.compile(r"^(?P<name>[a-z][a-z0-9_]*):(?P<key>[0-9a-f]{8,64})$")


def trace(lab: Lab, ref: str) -> dict[str, Any]:
    """A tree of nodes ``{ref, kind, detail, parents}``; a node seen before is not expanded again."""
    return _Tracer(lab).node(ref)


class _Tracer:
    def __init__(self, lab: Lab):
        self.lab, self.seen = lab, set()

    def node(self, ref: str) -> dict[str, Any]:
        if ref in self.seen:
            return {"ref": ref, "kind": "seen", "detail": "(expanded above)", "parents": []}
        self.seen.add(ref)
        if RUN_ID_PATTERN.match(ref):
            return self._run(ref)
        if _STAGE_REF.match(ref):
            return self._stage(ref)
        if REF_PATTERN.match(ref):
            return self._dataset(ref)
        raise ValueError(f"{ref!r} is not a run id, a dataset ID@vN or a stage output NAME:KEY")

    def _run(self, run_id: str) -> dict[str, Any]:
        run = load_run(self.lab, run_id)
        parents = [self.node(a.ref) for a in run.inputs if a.kind in ("dataset", "stage_output")]
        detail = f"{run.run_type} · {run.status} · code {run.code_version} · config {(run.config_hash or '')[:12]}"
        return {"ref": run_id, "kind": "run", "detail": detail, "parents": parents}

    def _stage(self, ref: str) -> dict[str, Any]:
        match = _STAGE_REF.match(ref)
        store = self.lab.durable()
        key = f"stages/{match['name']}/{match['key'][:24]}/stage.json"
        record = json.loads(store.get_bytes(key))
        return {"ref": ref, "kind": "stage_output", "detail": f"outputs {record['outputs_sha256'][:12]}",
                "parents": [self.node(record["run_id"])]}

    def _dataset(self, ref: str) -> dict[str, Any]:
        manifest = read_dataset_manifest(self.lab, ref)
        parents = [self.node(p) for p in manifest.parents]
        if manifest.created_by and not parents:
            parents.append({"ref": manifest.created_by, "kind": "run", "detail": "created it (raw data)", "parents": []})
        elif manifest.created_by:
            parents.append(self.node(manifest.created_by))
        detail = f"{manifest.rows} rows · schema {manifest.row_schema} · sha {manifest.content_hash[:12]}"
        return {"ref": manifest.ref, "kind": "dataset", "detail": detail, "parents": parents}


def render_tree(node: dict[str, Any], tree: Tree | None = None) -> Tree:
    label = f"[bold]{node['ref']}[/bold] [dim]{node['kind']}[/dim] {node['detail']}"
    branch = Tree(label) if tree is None else tree.add(label)
    for parent in node["parents"]:
        render_tree(parent, branch)
    return branch


def roots(node: dict[str, Any]) -> list[str]:
    """The leaves of the tree: where the data came from."""
    if not node["parents"]:
        return [node["ref"]]
    return [r for p in node["parents"] for r in roots(p)]
