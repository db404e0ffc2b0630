"""Export the contracts as JSON Schema files (``docs/schemas``); a test fails when they drift from the models.

Run ``python -m nexa.ledger.schemas docs/schemas`` after changing a contract, and bump its
``schema_version`` if old manifests no longer validate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nexa.ledger.manifests import all_contracts


def render_schemas() -> dict[str, str]:
    return {f"{name}.schema.json": json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"
            for name, model in sorted(all_contracts().items())}


def export_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written


if __name__ == "__main__":
    for path in export_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        print(path)
