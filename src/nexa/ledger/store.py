"""The durable tier: a directory or fsspec URL where every file is written atomically with its hash.

Each single-file artifact ``key`` is stored beside a sidecar ``key.sha256``; the sidecar is written
last, so a file without one was never finished, and a read recomputes the hash and refuses a
mismatch. A directory artifact instead gets one ``_files.json`` (every file's hash), written last
with its own sidecar; its files stay exactly as the stage wrote them, with nothing added beside them.
A *blob* (``put_blob``) is named by its own hash and needs no sidecar: caches that add many small
records write them as blobs, one request each.

On an object store every request is a network round trip (tens of milliseconds), so the many-file
operations (``put_dir``, ``fetch_dir``, ``get_blobs``) go out as one concurrent batch, and a small
read is one GET (s3fs would otherwise ask for the object's size first).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from nexa.ledger.errors import ArtifactNotFoundError, CorruptArtifactError
from nexa.ledger.hashing import sha256_bytes, sha256_file
from nexa.ledger.manifests import ArtifactRef

SIDECAR = ".sha256"
_ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs"}  # object stores: a PUT is never seen half-written
LISTING = "_files.json"
BLOB_SUFFIX = ".json"
_BLOB_NAME = re.compile(r"[0-9a-f]{64}\.json")


# Bytes per write() of a large artifact. One write() of a whole 31.5 MB Parquet file took 0.12 s on this
# VM's ext4 (a write of 4 MB or more was as slow per byte), the same bytes in 1 MB writes 0.01 s
# (benchmarks/RESULTS.md, issue 20).
WRITE_CHUNK_BYTES = 1 << 20


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder (in :data:`WRITE_CHUNK_BYTES` pieces), fsync it, rename over the
    target, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            view = memoryview(data)
            for start in range(0, len(view), WRITE_CHUNK_BYTES):
                handle.write(view[start:start + WRITE_CHUNK_BYTES])
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
        self._one_get: dict = {}  # keyword arguments that make reading a small object one request
        self._fs = None
        if _plain_local_path(self.root):
            # fsspec (≈ 0.05 s of imports) only when a method needs it: a local store's reads, writes and
            # existence checks go straight to the file system. The base is what fsspec would make of this path.
            self.is_local, self._base = True, self.root.rstrip("/") or "/"
            return
        import fsspec

        self.fs, self._base = fsspec.core.url_to_fs(self.root)
        self.is_local = self.fs.protocol in ("file", "local") or "file" in _protocols(self.fs)
        if not self.is_local:
            # Another process (a node, the launcher) writes here too: a cached listing would hide its files.
            self.fs, self._base = fsspec.core.url_to_fs(self.root, use_listings_cache=False)
            if "s3" in _protocols(self.fs):
                # s3fs otherwise HEADs every object for its size before the GET (and LISTs when it is missing).
                self._one_get = {"max_concurrency": 1}

    @property
    def fs(self):
        """The fsspec file system of this store (imported on first use for a plain local path)."""
        if self._fs is None:
            import fsspec

            self._fs = fsspec.core.url_to_fs(self.root)[0]
        return self._fs

    @fs.setter
    def fs(self, value) -> None:
        self._fs = value

    def _exists(self, key: str) -> bool:
        return os.path.lexists(self._path(key)) if self.is_local else self.fs.exists(self._path(key))

    def location(self, key: str) -> str:
        """The full path or URL of ``key``, as recorded in manifests."""
        return posixpath.join(self.root, key) if not self.is_local else str(Path(self._base) / key)

    def local_path(self, key: str) -> Path:
        """A readable local path for ``key``; only meaningful for a local durable tier."""
        if not self.is_local:
            raise ValueError(f"durable store {self.root} is remote; use fetch_dir() to get a local copy")
        return Path(self._base) / key

    def local_file(self, key: str, cache_dir: str | Path) -> Path:
        """A verified local path for single-file artifact ``key``: in place when local, else a hash-checked copy.

        Readers that need a real file (Parquet memory-mapping, tokenizers) call this instead of
        :meth:`local_path`, so the same code works with scratch local and durable remote.
        """
        if self.is_local:
            self.verify(key)
            return self.local_path(key)
        dest = Path(cache_dir) / key
        expected = self.hash_of(key)
        if dest.exists() and sha256_file(dest) == expected:
            return dest
        atomic_write_bytes(dest, self.get_bytes(key))
        return dest

    def modified(self, key: str) -> float:
        """When ``key`` was last written (POSIX seconds), for picking the newest of several artifacts."""
        return self.fs.modified(self._path(key)).timestamp()

    def _path(self, key: str) -> str:
        return posixpath.join(self._base, key) if not self.is_local else str(Path(self._base) / key)

    # -- single files -------------------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, overwrite: bool = False) -> ArtifactRef:
        """Store ``data`` under ``key``; an existing, different artifact is never replaced silently."""
        digest = sha256_bytes(data)
        stored = self._stored_hash(key)
        if stored is not None:
            if stored == digest:
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
        """True only for a finished artifact (its sidecar was written after it).

        On an object store the sidecar alone answers (one request): it is written after the file
        and removed after it, so its presence means the file is there and complete.
        """
        if not self.is_local:
            return self._try_read(key + SIDECAR) is not None
        return self._exists(key) and self._exists(key + SIDECAR)

    def _stored_hash(self, key: str) -> str | None:
        """The recorded hash of a finished artifact at ``key``, or None (one request on an object store)."""
        if not self.is_local:
            sidecar = self._try_read(key + SIDECAR)
            return None if sidecar is None else sidecar.decode().strip()
        return self.hash_of(key) if self.exists(key) else None

    def hash_of(self, key: str) -> str:
        if not self.is_local:
            sidecar = self._try_read(key + SIDECAR)
            if sidecar is not None:
                return sidecar.decode().strip()
        if not self._exists(key):
            raise ArtifactNotFoundError(f"no artifact at {self.location(key)}")
        if not self._exists(key + SIDECAR):
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
        files = {file.relative_to(local_dir).as_posix(): file for file in sorted(p for p in local_dir.rglob("*") if p.is_file())}
        if self._atomic_put():  # every PUT is all-or-nothing: send them together
            listing = {rel: sha256_file(file) for rel, file in files.items()}
            if files:
                self.fs.put([str(f) for f in files.values()], [self._path(f"{prefix}/{rel}") for rel in files])
        else:
            listing = {rel: self._copy_in(file, f"{prefix}/{rel}") for rel, file in files.items()}
        data = json.dumps(listing, sort_keys=True, indent=1).encode()
        self.put_bytes(f"{prefix}/{LISTING}", data, overwrite=True)
        return self._ref(prefix, sha256_bytes(data), sum(Path(local_dir, k).stat().st_size for k in listing), kind="directory")

    def put_file(self, local: str | Path, key: str) -> ArtifactRef:
        digest = sha256_file(local)
        if self._stored_hash(key) == digest:
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
        if not self.is_local:  # the bytes have to come over anyway: fetch them in one batch and hash them here
            with tempfile.TemporaryDirectory(prefix="nexa-verify-") as tmp:
                self.fetch_dir(prefix, Path(tmp) / "copy", skip)
            return self.hash_of(f"{prefix}/{LISTING}")
        for rel, digest in self.dir_listing(prefix).items():
            if rel in skip:
                continue
            key = f"{prefix}/{rel}"
            if not self.fs.exists(self._path(key)):
                raise ArtifactNotFoundError(f"{self.location(key)} is listed in {prefix}/{LISTING} but missing")
            actual = sha256_file(self._path(key))
            if actual != digest:
                raise CorruptArtifactError(self.location(f"{prefix}/{rel}"), digest, actual, reason="differs from the directory listing")
        return self.hash_of(f"{prefix}/{LISTING}")

    def fetch_dir(self, prefix: str, dest: str | Path, skip: set[str] | frozenset[str] = frozenset()) -> Path:
        """Copy a directory artifact (but ``skip``, files deliberately deleted) to local ``dest``, checking every hash.

        Files land in a staging folder beside ``dest`` (remote ones in one concurrent batch), are
        checked against the listing there, and only then move into ``dest``, so ``dest`` never holds
        a file that did not hash right.
        """
        dest = Path(dest)
        wanted = {rel: digest for rel, digest in self.dir_listing(prefix).items() if rel not in skip}
        staging = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.fetch"
        try:
            self._download({f"{prefix}/{rel}": staging / rel for rel in wanted})
            for rel, digest in wanted.items():
                actual = sha256_file(staging / rel)
                if actual != digest:
                    raise CorruptArtifactError(self.location(f"{prefix}/{rel}"), digest, actual, reason="differs from the directory listing")
            for rel in wanted:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, dest / rel)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        dest.mkdir(parents=True, exist_ok=True)
        return dest

    def _download(self, targets: dict[str, Path]) -> None:
        """Copy ``key -> local path`` for every entry: one concurrent batch from an object store."""
        for local in targets.values():
            local.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.is_local:
                for key, local in targets.items():
                    shutil.copyfile(self._path(key), local)
            elif targets:
                self.fs.get([self._path(k) for k in targets], [str(p) for p in targets.values()])
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(f"a file listed in a directory artifact is missing from {self.root}: {exc}") from exc

    # -- content-addressed blobs ---------------------------------------------------------------
    def put_blob(self, prefix: str, data: bytes) -> str:
        """Store ``data`` as ``prefix/<its sha256>.json`` and return that key.

        The name is the hash, so the blob needs no sidecar (one request on an object store where a
        sidecar'd put costs three) and is never overwritten with anything else; writing the same
        bytes again writes the same object. Made for caches that add many small records.
        """
        key = f"{prefix}/{sha256_bytes(data)}{BLOB_SUFFIX}"
        self._write(key, data)
        return key

    def get_blobs(self, prefix: str) -> dict[str, bytes]:
        """Every blob under ``prefix`` by key: one listing, one concurrent batch of reads, each checked against its name."""
        keys = [k for k in self.list(prefix) if _BLOB_NAME.fullmatch(posixpath.basename(k))]
        blobs = self._read_many(keys)
        for key, data in blobs.items():
            expected, actual = posixpath.basename(key)[: -len(BLOB_SUFFIX)], sha256_bytes(data)
            if actual != expected:
                raise CorruptArtifactError(self.location(key), expected, actual)
        return blobs

    def _read_many(self, keys: list[str]) -> dict[str, bytes]:
        if self.is_local or not keys:
            return {key: self._read(key) for key in keys}
        paths = {self._path(key): key for key in keys}
        return {paths[path]: data for path, data in self.fs.cat(list(paths), **self._one_get).items()}

    def delete(self, key: str) -> None:
        """Remove an artifact (file or directory); used only for explicitly disposable outputs."""
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=self.fs.isdir(path))
        if self.fs.exists(path + SIDECAR):
            self.fs.rm(path + SIDECAR)

    def children(self, prefix: str) -> list[str]:
        """The keys directly under ``prefix`` (files and folders): one non-recursive listing, one request on S3.

        For looking at a folder's layout without walking everything below it (:meth:`list` is recursive).
        """
        path = self._path(prefix).rstrip("/")
        try:
            found = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        base = self._path("")
        relative = (os.path.relpath if self.is_local else posixpath.relpath)
        return sorted(relative(p.rstrip("/"), base) for p in found if p.rstrip("/") != path and not p.endswith(SIDECAR))

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
        if self._atomic_put():
            self.fs.pipe_file(self._path(key), data)  # an object PUT is all-or-nothing already
            return
        tmp = f"{self._path(key)}.{uuid.uuid4().hex}.tmp"
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        with self.fs.open(tmp, "wb") as handle:
            handle.write(data)
        self.fs.mv(tmp, self._path(key))

    def _atomic_put(self) -> bool:
        return not self.is_local and _protocols(self.fs)[0] in _ATOMIC_PUT

    def _try_read(self, key: str) -> bytes | None:
        """The bytes at ``key``, or None when there is no such object (one request on an object store)."""
        try:
            return self._read(key)
        except FileNotFoundError:
            return None

    def _read(self, key: str) -> bytes:
        if self.is_local:
            with open(self._path(key), "rb") as handle:
                return handle.read()
        return self.fs.cat_file(self._path(key), **self._one_get)

    def _ref(self, key: str, digest: str, size: int, kind: str = "file") -> ArtifactRef:
        return ArtifactRef(kind=kind, ref=key, path=self.location(key), sha256=digest, size_bytes=size)


def _plain_local_path(root: str) -> bool:
    """An absolute POSIX path with nothing fsspec would read as a protocol or a chain (``file://``, ``a::b``)."""
    return os.sep == "/" and root.startswith("/") and "::" not in root and "://" not in root


def _protocols(fs) -> tuple[str, ...]:
    proto = fs.protocol
    return proto if isinstance(proto, tuple) else (proto,)
