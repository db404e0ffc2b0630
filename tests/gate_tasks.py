"""A tiny local lm-evaluation-harness multiple-choice task (a JSONL file and its YAML), for the gates' tests."""

from __future__ import annotations

import json
from pathlib import Path

MC_DOCS = [{"question": f"max({a},{b})=", "choices": [str(max(a, b)), str(min(a, b)), "99"], "label": 0}
           for a, b in [(4, 28), (6, 1), (0, 35), (7, 7), (2, 5)]]
MC_TASK = """task: {name}
dataset_path: json
dataset_kwargs: {{data_files: {{test: {data}}}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""


def write_mc_task(folder: Path, name: str, docs: list[dict] = MC_DOCS) -> Path:
    """``folder/<name>.yaml`` over ``folder/<name>.jsonl`` (``docs``: question, choices, label); returns the folder
    (lm-eval's include path)."""
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / f"{name}.yaml").write_text(MC_TASK.format(name=name, data=data))
    return folder
