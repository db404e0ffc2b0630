"""The durable tier on a real S3 API (moto's server, reached by s3fs over HTTP)."""

import boto3
import pytest

from nexa.ledger.errors import CorruptArtifactError
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
