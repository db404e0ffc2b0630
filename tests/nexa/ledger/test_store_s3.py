"""The durable tier on a real S3 API (moto's server, reached by s3fs over HTTP)."""

import boto3
import pytest

from nexa.ledger.errors import ArtifactNotFoundError, CorruptArtifactError
from nexa.ledger.store import DurableStore
from s3_server import new_bucket, s3  # noqa: F401 - s3 is a fixture


def test_files_and_directories_round_trip_hash_checked(s3, tmp_path):
    store = DurableStore(new_bucket() + "/durable")
    ref = store.put_bytes("a/b.txt", b"hello")
    assert ref.path.startswith("s3://") and store.exists("a/b.txt") and store.get_bytes("a/b.txt") == b"hello"
    with pytest.raises(FileExistsError):
        store.put_bytes("a/b.txt", b"other")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "w.bin").write_bytes(b"\x00" * 1000)
    (tmp_path / "d" / "keep.txt").write_text("keep")
    listing = store.put_dir(tmp_path / "d", "out")
    assert store.verify_dir("out") == listing.sha256
    copy = store.fetch_dir("out", tmp_path / "copy", skip={"sub/w.bin"})
    assert (copy / "keep.txt").read_text() == "keep" and not (copy / "sub" / "w.bin").exists()
    local = store.local_file("a/b.txt", tmp_path / "cache")
    assert local.read_bytes() == b"hello" and local.is_relative_to(tmp_path / "cache")
    assert store.list("a") == ["a/b.txt"] and store.modified("a/b.txt") > 0


def test_an_object_changed_behind_the_stores_back_is_refused(s3, tmp_path):
    url = new_bucket() + "/durable"
    store = DurableStore(url)
    store.put_bytes("m.json", b'{"x": 1}')
    bucket, prefix = url[len("s3://"):].split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/m.json", Body=b'{"x": 2}')
    with pytest.raises(CorruptArtifactError):
        store.get_bytes("m.json")
    with pytest.raises(CorruptArtifactError):
        store.local_file("m.json", tmp_path / "cache")


def test_blobs_are_named_by_their_hash_read_in_one_batch_and_checked(s3, tmp_path):
    url = new_bucket() + "/durable"
    store = DurableStore(url)
    keys = [store.put_blob("cache/t", f'{{"n": {i}}}'.encode()) for i in range(40)]
    assert store.put_blob("cache/t", b'{"n": 0}') == keys[0]  # same bytes, same object
    assert len(store.list("cache/t")) == 40 and not store.fs.exists(store._path(keys[0] + ".sha256"))  # no sidecars
    blobs = DurableStore(url).get_blobs("cache")
    assert sorted(blobs) == sorted(keys) and blobs[keys[7]] == b'{"n": 7}'
    bucket, prefix = url[len("s3://"):].split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/{keys[3]}", Body=b'{"n": 99}')
    with pytest.raises(CorruptArtifactError):
        store.get_blobs("cache/t")


def test_a_directory_is_fetched_whole_or_not_at_all(s3, tmp_path):
    url = new_bucket() + "/durable"
    store = DurableStore(url)
    (tmp_path / "d").mkdir()
    for i in range(30):
        (tmp_path / "d" / f"f{i}.txt").write_text(f"file {i}")
    store.put_dir(tmp_path / "d", "out")
    copy = store.fetch_dir("out", tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir()) == sorted(f"f{i}.txt" for i in range(30))
    assert (copy / "f29.txt").read_text() == "file 29"
    bucket, prefix = url[len("s3://"):].split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/out/f5.txt", Body=b"tampered")
    with pytest.raises(CorruptArtifactError):
        store.fetch_dir("out", tmp_path / "second")
    assert not (tmp_path / "second").exists() and not list(tmp_path.glob(".second.*"))  # nothing half-fetched
    boto3.client("s3").delete_object(Bucket=bucket, Key=f"{prefix}/out/f5.txt")
    with pytest.raises(ArtifactNotFoundError):
        store.verify_dir("out")


def test_children_lists_one_level_in_one_request_and_a_missing_prefix_is_empty(s3):
    store = DurableStore(new_bucket() + "/durable")
    for key in ("c/t1/x.json", "c/t1/y.json", "c/t2/z.json", "c/top.json"):
        store.put_bytes(key, b"{}")
    assert store.children("c") == ["c/t1", "c/t2", "c/top.json"]  # no sidecars, nothing below t1/t2
    assert store.children("missing") == []
