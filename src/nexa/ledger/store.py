"""The durable tier: a directory or fsspec URL where every file is written atomically with its hash.

Each single-file artifact ``key`` is stored beside a sidecar ``key.sha256``; the sidecar is written
last, so a file without one was never finished, and a read recomputes the hash and refuses a
mismatch. A directory artifact instead gets one ``_files.json`` (every file's hash), written last
with its own sidecar; its files stay exactly as the stage wrote them, with nothing added beside them.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
import uuid
from pathlib import Path

from nexa.ledger.errors import ArtifactNotFoundError, CorruptArtifactError
from nexa.ledger.hashing import sha256_bytes, sha256_file
from nexa.ledger.manifests import ArtifactRef

SIDECAR = ".sha256"
LISTING = "_files.json"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync it, rename over the target, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableStore:
    """Hashed, atomic, never-overwriting storage at a local path or any fsspec URL (``memory://``, ``s3://``)."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        import fsspec  # imported here: fsspec costs a quarter second at every command's start

        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self.is_local = self.fs.protocol in ("file", "local") or "file" in _protocols(self.fs)

    def location(self, key: str) -> str:
        """The full path or URL of ``key``, as recorded in manifests."""
        return posixpath.join(self.root, key) if not self.is_local else str(Path(self._base) / key)

    def local_path(self, key: str) -> Path:
        """A readable local path for ``key``; only meaningful for a local durable tier."""
        if not self.is_local:
            raise ValueError(f"durable store {self.root} is remote; use fetch_dir() to get a local copy")
        return Path(self._base) / key

    def _path(self, key: str) -> str:
        return posixpath.join(self._base, key) if not self.is_local else str(Path(self._base) / key)

    # -- single files -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactRef:
        """Store ``data`` under ``key``; an existing, different artifact is never replaced silently."""
        digest = sha256_bytes(data)
        if self.exists(key):
            if self.hash_of(key) == digest:
                return self._ref(key, digest, len(data))
            if not overwrite:
                raise FileExistsError(
                    f"{self.location(key)} already holds different content; durable artifacts are immutable, "
                    "write a new version instead"
                )
        self._write(key, data)
        self._write(key + SIDECAR, digest.encode())
        return self._ref(key, digest, len(data))

    def get_bytes(self, key: str) -> bytes:
        """Read ``key`` and check its hash; a mismatch or a missing sidecar raises, naming the file."""
        expected = self.hash_of(key)
        data = self._read(key)
        actual = sha256_bytes(data)
        if actual != expected:
            raise CorruptArtifactError(self.location(key), expected, actual)
        return data

    def exists(self, key: str) -> bool:
        """True only for a finished artifact (its sidecar was written after it)."""
        return self.fs.exists(self._path(key)) and self.fs.exists(self._path(key + SIDECAR))

    def hash_of(self, key: str) -> str:
        if not self.fs.exists(self._path(key)):
            raise ArtifactNotFoundError(f"no artifact at {self.location(key)}")
        if not self.fs.exists(self._path(key + SIDECAR)):
            raise CorruptArtifactError(self.location(key), "<sidecar>", "<missing>", reason="its hash sidecar is missing (unfinished write)")
        return self._read(key + SIDECAR).decode().strip()

    def verify(self, key: str) -> str:
        """Recompute ``key``'s hash without loading it into memory; returns it or raises."""
        expected = self.hash_of(key)
        actual = sha256_file(self._path(key)) if self.is_local else sha256_bytes(self._read(key))
        if actual != expected:
            raise CorruptArtifactError(self.location(key), expected, actual)
        return actual

    # -- directories --------------------------------------------------------------------------
    def put_dir(self, local_dir: str | Path, prefix: str) -> ArtifactRef:
        """Upload every file under ``local_dir``; the listing goes last and names the whole artifact."""
        local_dir = Path(local_dir)
        listing = {}
        for file in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            rel = file.relative_to(local_dir).as_posix()
            listing[rel] = self._copy_in(file, f"{prefix}/{rel}")
        data = json.dumps(listing, sort_keys=True, indent=1).encode()
        self.put_bytes(f"{prefix}/{LISTING}", data, overwrite=True)
        return self._ref(prefix, sha256_bytes(data), sum(Path(local_dir, k).stat().st_size for k in listing), kind="directory")

    def put_file(self, local: str | Path, key: str) -> ArtifactRef:
        digest = sha256_file(local)
        if self.exists(key) and self.hash_of(key) == digest:
            return self._ref(key, digest, Path(local).stat().st_size)
        self._copy_in(local, key)
        self._write(key + SIDECAR, digest.encode())
        return self._ref(key, digest, Path(local).stat().st_size)

    def _copy_in(self, local: str | Path, key: str) -> str:
        """Atomically place a local file at ``key``; returns its SHA-256."""
        digest = sha256_file(local)
        if self.is_local:
            target = Path(self._path(key))
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
            shutil.copyfile(local, tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        else:
            self._write(key, Path(local).read_bytes())
        return digest

    def dir_listing(self, prefix: str) -> dict[str, str]:
        return json.loads(self.get_bytes(f"{prefix}/{LISTING}"))

    def verify_dir(self, prefix: str, skip: set[str] | frozenset[str] = frozenset()) -> str:
        """Check every file of a directory artifact (but ``skip``) against its listing; returns the listing's hash."""
        for rel, digest in self.dir_listing(prefix).items():
            if rel in skip:
                continue
            key = f"{prefix}/{rel}"
            if not self.fs.exists(self._path(key)):
                raise ArtifactNotFoundError(f"{self.location(key)} is listed in {prefix}/{LISTING} but missing")
            actual = sha256_file(self._path(key)) if self.is_local else sha256_bytes(self._read(key))
            if actual != digest:
                raise CorruptArtifactError(self.location(f"{prefix}/{rel}"), digest, actual, reason="differs from the directory listing")
        return self.hash_of(f"{prefix}/{LISTING}")

    def fetch_dir(self, prefix: str, dest: str | Path) -> Path:
        """Copy a directory artifact to local ``dest``, checking every hash on the way."""
        dest = Path(dest)
        for rel, digest in self.dir_listing(prefix).items():
            key = f"{prefix}/{rel}"
            data = self._read(key)
            if sha256_bytes(data) != digest:
                raise CorruptArtifactError(self.location(key), digest, sha256_bytes(data), reason="differs from the directory listing")
            atomic_write_bytes(dest / rel, data)
        return dest

    def delete(self, key: str) -> None:
        """Remove an artifact (file or directory); used only for explicitly disposable outputs."""
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=self.fs.isdir(path))
        if self.fs.exists(path + SIDECAR):
            self.fs.rm(path + SIDECAR)

    def list(self, prefix: str) -> list[str]:
        path = self._path(prefix)
        if not self.fs.exists(path):
            return []
        base = self._path("")
        return sorted(
            posixpath.relpath(p, base) if not self.is_local else os.path.relpath(p, base)
            for p in self.fs.find(path)
            if not p.endswith(SIDECAR)
        )

    # -- internals ----------------------------------------------------------------------------
    def _write(self, key: str, data: bytes) -> None:
        if self.is_local:
            atomic_write_bytes(self._path(key), data)
            return
        tmp = f"{self._path(key)}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self.fs.mv(tmp, self._path(key))

    def _read(self, key: str) -> bytes:
        with self.fs.open(self._path(key), "rb") as handle:
            return handle.read()

    def _ref(self, key: str, digest: str, size: int, kind: str = "file") -> ArtifactRef:
        return ArtifactRef(kind=kind, ref=key, path=self.location(key), sha256=digest, size_bytes=size)


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return proto if isinstance(proto, tuple) else (proto,)
