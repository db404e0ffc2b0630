import multiprocessing

import pytest

from nexa.ledger import ArtifactNotFoundError
from nexa.ledger.registry import DatasetRegistry


def _register(args):
    registry_dir, i = args
    DatasetRegistry(registry_dir).register("shared", path=f"p{i}", hash=f"h{i}", rows=i, manifest=f"m{i}")


def test_eight_concurrent_writers_lose_no_entry(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        pool.map(_register, [(str(tmp_path), i) for i in range(8)])
    versions = DatasetRegistry(tmp_path).all()["shared"]
    assert sorted(v.hash for v in versions) == sorted(f"h{i}" for i in range(8))
    assert sorted(v.version for v in versions) == list(range(1, 9))


def test_same_content_registers_once(tmp_path):
    registry = DatasetRegistry(tmp_path)
    first = registry.register("d", path="p", hash="same", rows=1, manifest="m")
    again = registry.register("d", path="p2", hash="same", rows=1, manifest="m2")
    assert first.version == again.version == 1
    assert len(registry.all()["d"]) == 1


def test_resolve_latest_and_exact_and_explains_misses(tmp_path):
    registry = DatasetRegistry(tmp_path)
    for i in range(3):
        registry.register("d", path=f"p{i}", hash=f"h{i}", rows=i, manifest="m")
    assert registry.resolve("d")[1].version == 3
    assert registry.resolve("d@v2")[1].hash == "h1"
    with pytest.raises(ArtifactNotFoundError, match=r"versions \[1, 2, 3\]"):
        registry.resolve("d@v9")
    with pytest.raises(ArtifactNotFoundError, match="known datasets: d"):
        registry.resolve("nope")
