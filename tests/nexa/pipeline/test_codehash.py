"""The stage cache key covers every module a stage can run, and nothing it cannot."""

import shutil

import pytest

from nexa.pipeline.codehash import SOURCE_ROOT, code_hash, module_closure


@pytest.fixture
def source(tmp_path):
    """A private copy of ``src/nexa`` and ``src/nexus`` to edit without touching the checkout."""
    for package in ("nexa", "nexus"):
        shutil.copytree(SOURCE_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(root, relative):
    file = root / relative
    file.write_text(file.read_text() + "\n# edited\n")


@pytest.mark.parametrize("stage, dependency", [
    ("nexa.niwt.stages:profile", "nexa/eval/generate.py"),
    ("nexa.niwt.stages:student_niwt", "nexa/eval/generate.py"),
    ("nexa.feedback.stages:targeted_data", "nexa/data/generators.py"),
    ("nexa.eval.stages:exact_eval", "nexus/model.py"),
    ("nexa.data.stages:capability_datasets", "nexa/ledger/hashing.py"),
])
def test_editing_a_dependency_in_another_layer_changes_the_key(source, stage, dependency):
    before = code_hash(stage, source)
    _edit(source, dependency)
    assert code_hash(stage, source) != before


@pytest.mark.parametrize("stage, unrelated", [
    ("nexa.niwt.stages:profile", "nexa/serve/app.py"),
    ("nexa.feedback.stages:targeted_data", "nexa/train/trainer.py"),
    ("nexa.data.stages:capability_datasets", "nexa/niwt/profile.py"),
])
def test_editing_an_unrelated_layer_keeps_the_key(source, stage, unrelated):
    assert (source / unrelated).is_file()
    before = code_hash(stage, source)
    _edit(source, unrelated)
    assert code_hash(stage, source) == before


def test_closure_follows_imports_inside_functions_and_relative_imports():
    closure = module_closure("nexa.niwt.stages")
    assert "nexa.niwt.profile" in closure  # imported inside profile()
    assert "nexa.eval.generate" in closure  # reached through nexa.niwt.profile
    assert {"nexa", "nexa.niwt"} <= set(closure)  # package __init__ files run on import
    assert not any(name.startswith("nexa.serve") for name in closure)
