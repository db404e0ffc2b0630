"""The code part of a stage's cache key: every ``nexa``/``nexus`` module the stage's function can run.

A stage runs its own module plus whatever that module imports, at top level or inside a function,
transitively. Hashing only the stage's layer missed edits to code it borrows from another layer (NIWT's
profile generating through ``nexa.eval``, feedback data made by ``nexa.data.generators``), so a changed
dependency silently reused a stale output. The closure is read from the source with :mod:`ast`, without
importing anything, so hashing stays cheap and never runs heavy imports. Imports written as strings
(``importlib.import_module(name)``) are not followed; the modules that do that resolve plug-ins named in
the stage's parameters, which are already part of the key.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from nexa.ledger.hashing import sha256_file, sha256_json

SOURCE_ROOT = Path(__file__).resolve().parents[2]
TRACKED_PACKAGES = ("nexa", "nexus")


def module_file(module: str, root: Path = SOURCE_ROOT) -> Path | None:
    """The source file of a ``nexa``/``nexus`` module under ``root`` (``None`` if it is not a module there)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _packages_of(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``: importing a module runs every enclosing package's ``__init__``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement anywhere in the tree may load (``from x import y`` gives x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in TRACKED_PACKAGES}


def module_closure(module: str, root: Path = SOURCE_ROOT) -> dict[str, Path]:
    """Module name -> source file for ``module`` and everything in ``nexa``/``nexus`` it can import."""
    start = module_file(module, root) if module.split(".")[0] in TRACKED_PACKAGES else _outside_file(module)
    found: dict[str, Path] = {module: start}
    pending = [module]
    while pending:
        current = pending.pop()
        file = found[current]
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        candidates = _imported_names(tree, current, file.name == "__init__.py")
        for name in sorted(candidates | set(_packages_of(current))):
            if name in found or name.split(".")[0] not in TRACKED_PACKAGES:
                continue
            path = module_file(name, root)
            if path is not None:
                found[name] = path
                pending.append(name)
    return found


def _outside_file(module: str) -> Path:
    """A stage module outside ``nexa`` (a user's or a test's) is found on ``sys.path`` like any import."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"cannot find the source of {module!r} to hash it for the stage cache")
    return Path(spec.origin)


def code_hash(uses: str, root: Path = SOURCE_ROOT) -> str:
    """SHA-256 over the sources of every module the stage ``module:function`` can run."""
    module = uses.split(":")[0]
    closure = module_closure(module, root)
    return sha256_json({name: sha256_file(path) for name, path in sorted(closure.items())})
