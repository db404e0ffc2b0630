import pytest

from nexa.ledger import CorruptArtifactError
from nexa.ledger.store import DurableStore


@pytest.fixture(params=["local", "memory"])
def store(request, tmp_path):
    if request.param == "local":
        return DurableStore(tmp_path / "durable")
    import uuid

    return DurableStore(f"memory://nexa-test-{uuid.uuid4().hex}")


def test_round_trip_records_hash(store):
    ref = store.put_bytes("a/b.json", b'{"x": 1}')
    assert store.get_bytes("a/b.json") == b'{"x": 1}'
    assert ref.sha256 == store.hash_of("a/b.json")
    assert store.exists("a/b.json")


def test_corrupted_artifact_is_reported_by_name_not_loaded(store):
    store.put_bytes("ckpt/model.bin", b"0123456789" * 100)
    with store.fs.open(store._path("ckpt/model.bin"), "wb") as handle:
        handle.write(b"0123456789" * 99 + b"X123456789")
    with pytest.raises(CorruptArtifactError, match="ckpt/model.bin"):
        store.get_bytes("ckpt/model.bin")


def test_truncated_artifact_is_reported(store):
    store.put_bytes("data.parquet", b"x" * 4096)
    with store.fs.open(store._path("data.parquet"), "wb") as handle:
        handle.write(b"x" * 100)
    with pytest.raises(CorruptArtifactError, match="data.parquet"):
        store.verify("data.parquet")


def test_unfinished_write_without_sidecar_is_not_an_artifact(store):
    store.fs.makedirs(store._path(""), exist_ok=True)
    with store.fs.open(store._path("half.bin"), "wb") as handle:
        handle.write(b"partial")
    assert not store.exists("half.bin")
    with pytest.raises(CorruptArtifactError, match="sidecar"):
        store.get_bytes("half.bin")


def test_durable_artifacts_are_never_silently_overwritten(store):
    store.put_bytes("k", b"one")
    store.put_bytes("k", b"one")  # same content: idempotent
    with pytest.raises(FileExistsError, match="immutable"):
        store.put_bytes("k", b"two")
    assert store.get_bytes("k") == b"one"


def test_directory_artifact_verifies_every_file(store, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    ref = store.put_dir(src, "stage/out")
    assert store.verify_dir("stage/out") == ref.sha256
    copy = store.fetch_dir("stage/out", tmp_path / "copy")
    assert (copy / "sub" / "b.txt").read_text() == "b"
    with store.fs.open(store._path("stage/out/sub/b.txt"), "wb") as handle:
        handle.write(b"B")
    with pytest.raises(CorruptArtifactError, match="b.txt"):
        store.verify_dir("stage/out")


@pytest.mark.parametrize("size", [0, 1, 7, 100, 105])
def test_a_large_artifact_is_written_in_pieces_and_reads_back_whole(tmp_path, monkeypatch, size):
    from nexa.ledger import store as store_module

    monkeypatch.setattr(store_module, "WRITE_CHUNK_BYTES", 7)  # many pieces, the last one short (or none)
    data = bytes(range(size))
    target = tmp_path / "deep" / "artifact.bin"
    store_module.atomic_write_bytes(target, data)
    assert target.read_bytes() == data and [p.name for p in target.parent.iterdir()] == ["artifact.bin"]  # no temp file left
