"""The layering contract of ``nexa`` (DESIGN.md), enforced on every import, top level or inside a function.

Equivalent to an import-linter "layers" contract: each layer lists the layers it may import; the map
must stay acyclic, and a layer's ``commands.py`` (the CLI side) may also use ``nexa.pipeline`` to run its
stage functions standalone. Adding an edge is a design decision: change ``MAY_IMPORT`` and say why.
"""

import ast
from graphlib import TopologicalSorter
from pathlib import Path

NEXA = Path(__file__).resolve().parents[1] / "src" / "nexa"

MAY_IMPORT: dict[str, set[str]] = {
    "ledger": set(),
    "infra": {"ledger"},
    "session": {"ledger"},
    "data": {"ledger"},
    "models": {"ledger"},
    "teachers": {"ledger", "infra", "train"},  # train: model sources, the model's tokenizer and chat template
    "train": {"ledger", "infra", "models", "session"},  # launched jobs (torchrun workers, Nexa Auto's children) get session tokens
    "eval": {"ledger", "infra", "data", "teachers", "serve", "models"},  # API teachers through nexa.teachers; lm-eval runs a bundle behind nexa serve
    "bundle": {"ledger", "train", "models", "eval"},  # the tokenizer folder (train), nexa.models students' backbone configs, the gate's registry metrics (eval)
    "niwt": {"ledger", "eval", "bundle", "models", "train"},
    "feedback": {"ledger", "infra", "data", "eval", "teachers"},  # infra: the prices a teacher's answers are costed at
    "serve": {"ledger"},
    "ui": {"ledger", "feedback", "serve"},  # the review queue records decisions through nexa.feedback.review; the dashboard runs on serve's loopback runner
    "pipeline": {"ledger", "infra"},
}
# What a layer's commands may use beyond its own layer's edges (the command composes, the layer does not).
COMMANDS_MAY_ALSO: dict[str, set[str]] = {"data": {"teachers"}}


def _nexa_imports(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        layers |= {n.split(".")[1] for n in names if n.startswith("nexa.") and len(n.split(".")) > 1}
    return layers


def test_the_layer_map_is_acyclic_and_names_every_layer():
    tuple(TopologicalSorter(MAY_IMPORT).static_order())  # raises CycleError on a cycle
    packages = {p.name for p in NEXA.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(MAY_IMPORT), f"layers without a row in MAY_IMPORT: {packages ^ set(MAY_IMPORT)}"


def test_every_layer_imports_only_what_the_map_allows():
    offences = []
    for layer, allowed in MAY_IMPORT.items():
        for path in sorted((NEXA / layer).rglob("*.py")):
            extra = {"pipeline"} | COMMANDS_MAY_ALSO.get(layer, set()) if path.name == "commands.py" else set()
            bad = _nexa_imports(path) - allowed - extra - {layer}
            offences += [f"{path.relative_to(NEXA.parent)} imports nexa.{b}" for b in sorted(bad)]
    assert offences == []
