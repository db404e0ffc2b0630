"""Structural rules: nexus never imports nexa, no catch-all modules, every layer states its job."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ["ledger", "infra", "data", "teachers", "train", "niwt", "models", "eval", "feedback", "bundle", "serve",
          "ui", "session", "pipeline"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_nexus_never_imports_nexa():
    offenders = [str(p.relative_to(SRC)) for p in (SRC / "nexus").rglob("*.py") if "nexa" in _imports(p)]
    assert offenders == []


def test_no_catch_all_modules():
    banned = {"utils", "common", "helpers"}
    found = [str(p.relative_to(SRC)) for p in SRC.rglob("*") if p.stem in banned]
    assert found == []


def test_every_layer_has_a_one_sentence_responsibility():
    for layer in LAYERS:
        init = SRC / "nexa" / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and doc.strip().endswith(".") and doc.count(". ") == 0, f"nexa.{layer} needs a one-sentence docstring"


def test_ledger_depends_on_no_other_layer():
    for path in (SRC / "nexa" / "ledger").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nexa."):
                assert node.module.split(".")[1] == "ledger", f"{path.name} imports {node.module}"


def test_test_file_names_are_unique():
    """pytest imports test modules by basename (rootdir-relative, no packages): two equal names collide."""
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("*.py") if p.name != "conftest.py")
    assert [n for n, count in names.items() if count > 1] == []
