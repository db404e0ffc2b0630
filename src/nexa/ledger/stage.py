"""The contract between a stage function and whoever runs it: the pipeline runner or a standalone command.

Every layer's ``stages.py`` functions take a :class:`StageContext` first, so the same function runs in a
pipeline (:class:`nexa.pipeline.runner.StageContext`) and from the CLI
(:class:`nexa.pipeline.standalone.FolderContext`); this protocol is what both promise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from nexa.ledger.lab import Lab
    from nexa.ledger.runs import RunContext


@runtime_checkable
class StageContext(Protocol):
    """Where a stage writes (``out``), what it reads (``input``), its run, lab and seed."""

    lab: "Lab"
    run: "RunContext"
    out: Path
    seed: int
    pipeline: str

    def input(self, name: str) -> Path:
        """The output folder of the needed stage (or command) ``name``."""
        ...

    def summary_of(self, name: str) -> dict[str, Any]:
        """The summary that stage returned."""
        ...
