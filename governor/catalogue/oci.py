"""The local image store: an OCI image layout (image-spec v1.1) in
`$GOVERNOR_STATE_DIR/store`, readable by skopeo (`oci:DIR:NAME`), umoci
(`--image DIR:NAME`) and podman (`oci:DIR:NAME`).

    store/oci-layout            {"imageLayoutVersion": "1.0.0"}
    store/index.json            one manifest per application, named by the
                                annotation org.opencontainers.image.ref.name
    store/blobs/sha256/HEX      manifests, configs and gzip layers, by digest

Blobs are written to `$GOVERNOR_STATE_DIR/tmp` and renamed into place once
their digest is known, so a blob that exists is whole. index.json is
rewritten (temporary file, rename) under an flock. Every read checks the
digest: a store whose bytes were changed is reported, never used."""
from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .._errors import CatalogueError

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
VOLUME = "io.governor.volume"     # on a layer descriptor: it holds the volume at this path
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise CatalogueError(f"not a sha256 digest: {digest!r}")
    return digest


class _Hashing:
    """A file-like writer that hashes and counts what passes through it to
    f (or nowhere, when f is None)."""

    def __init__(self, f=None):
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, b) -> int:
        self.sha.update(b)
        self.size += len(b)
        return self.f.write(b) if self.f is not None else len(b)

    def flush(self) -> None:
        if self.f is not None:
            self.f.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


@dataclass
class Image:
    """An application's image, read and checked from the store."""

    name: str
    manifest_digest: str
    manifest: dict
    config: dict
    layers: list[dict] = field(default_factory=list)    # descriptors; VOLUME annotation on data

    @property
    def blobs(self) -> list[str]:
        """Every digest this image needs, manifest included."""
        return [self.manifest_digest, self.manifest["config"]["digest"]] + \
               [layer["digest"] for layer in self.layers]


class Store:
    def __init__(self, state_dir: Path | str):
        self.state = Path(state_dir)
        self.root = self.state / "store"
        self.blob_dir = self.root / "blobs" / "sha256"
        self.tmp = self.state / "tmp"

    def ensure(self) -> None:
        """Creates an empty layout (idempotent)."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_atomic(layout, json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        if not (self.root / "index.json").exists():
            self._write_atomic(self.root / "index.json", self._index_bytes([]))

    @staticmethod
    def _index_bytes(manifests: list[dict]) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests},
                          indent=1).encode() + b"\n"

    def _write_atomic(self, path: Path, data: bytes) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="write-")
        fcntl.flock(fd, fcntl.LOCK_EX)     # see _sweep
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # ---- blobs ----

    def blob_path(self, digest: str) -> Path:
        return self.blob_dir / check_digest(digest).split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._write_atomic(self.blob_path(digest), data)
        return digest, len(data)

    @contextmanager
    def writer(self) -> Iterator["_BlobWriter"]:
        """A blob written as a stream: `w.file` to write; its digest and size
        on `w` after the block, when it is in place."""
        self.ensure()
        self._sweep()
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        fcntl.flock(fd, fcntl.LOCK_EX)     # ours while we write: not stale
        w = _BlobWriter(open(fd, "wb"))
        try:
            yield w
            w.raw.flush()
            os.fsync(w.raw.fileno())
            w.raw.close()
            w.digest, w.size = w.file.digest, w.file.size
            os.replace(tmp, self.blob_path(w.digest))
        finally:
            w.raw.close()
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _sweep(self) -> None:
        """Removes partial blobs whose writer is gone (killed mid-copy):
        those no one holds locked."""
        for entry in os.listdir(self.tmp):
            path = self.tmp / entry
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(path)
            except OSError:
                pass      # a writer holds it
            finally:
                os.close(fd)

    def receive(self, stream, digest: str, size: int) -> None:
        """Reads exactly size bytes of blob digest from stream into the store;
        CatalogueError (nothing kept) if the stream ends early or the bytes
        do not match."""
        check_digest(digest)
        with self.writer() as w:
            left = size
            while left:
                chunk = stream.read(min(_CHUNK, left))
                if not chunk:
                    raise CatalogueError(f"copy of blob {digest} broke after "
                                         f"{size - left} of {size} bytes")
                w.file.write(chunk)
                left -= len(chunk)
            if w.file.digest != digest:
                raise CatalogueError(f"blob {digest} arrived with other contents")

    def read_blob(self, digest: str, what: str) -> bytes:
        """A small blob (manifest, config), its digest checked."""
        try:
            data = self.blob_path(digest).read_bytes()
        except OSError as e:
            raise CatalogueError(f"corrupt store {self.root}: {what} blob {digest} is "
                                 f"missing ({e.strerror})") from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise CatalogueError(f"corrupt store {self.root}: {what} blob {digest} does not "
                                 "match its digest")
        return data

    def verify_blob(self, desc: dict, what: str) -> None:
        """A blob of any size against its descriptor (digest and size)."""
        path = self.blob_path(desc["digest"])
        sha, size = hashlib.sha256(), 0
        try:
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sha.update(chunk)
                    size += len(chunk)
        except OSError as e:
            raise CatalogueError(f"corrupt store {self.root}: {what} blob {desc['digest']} is "
                                 f"missing ({e.strerror})") from None
        if "sha256:" + sha.hexdigest() != desc["digest"] or size != desc["size"]:
            raise CatalogueError(f"corrupt store {self.root}: {what} blob {desc['digest']} "
                                 "does not match its digest")

    # ---- index ----

    @contextmanager
    def _locked_index(self) -> Iterator[list[dict]]:
        self.ensure()
        lock = os.open(self.state / "store.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            manifests = self._read_index()
            before = json.dumps(manifests)
            yield manifests
            if json.dumps(manifests) != before:
                self._write_atomic(self.root / "index.json", self._index_bytes(manifests))
        finally:
            os.close(lock)

    def _read_index(self) -> list[dict]:
        path = self.root / "index.json"
        try:
            doc = json.loads(path.read_text())
            manifests = doc["manifests"]
            assert isinstance(manifests, list)
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as e:
            raise CatalogueError(f"corrupt store {self.root}: index.json is unreadable "
                                 f"({e})") from None
        return manifests

    def tag(self, name: str, digest: str, size: int) -> None:
        """index.json names manifest digest `name` (replacing an older one)."""
        with self._locked_index() as manifests:
            manifests[:] = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) != name]
            manifests.append({"mediaType": MT_MANIFEST, "digest": digest, "size": size,
                              "annotations": {REF_NAME: name}})

    def untag(self, name: str) -> None:
        with self._locked_index() as manifests:
            manifests[:] = [m for m in manifests if m.get("annotations", {}).get(REF_NAME) != name]

    def names(self) -> dict[str, str]:
        return {m["annotations"][REF_NAME]: m["digest"] for m in self._read_index()
                if REF_NAME in m.get("annotations", {})}

    # ---- images ----

    def image(self, name: str, digest: str, verify_layers: bool = False) -> Image:
        """The image of app name at manifest digest, checked (the layers
        too, byte for byte, when verify_layers)."""
        what = f"application {name!r}:"
        try:
            manifest = json.loads(self.read_blob(digest, f"{what} manifest"))
            config_desc = manifest["config"]
            config = json.loads(self.read_blob(config_desc["digest"], f"{what} config"))
            layers = list(manifest["layers"])
            for layer in layers:
                check_digest(layer["digest"])
        except (ValueError, KeyError, TypeError) as e:
            raise CatalogueError(f"corrupt store {self.root}: {what} manifest {digest} is not "
                                 f"a valid image manifest ({e})") from None
        if verify_layers:
            for layer in layers:
                self.verify_blob(layer, f"{what} layer")
        return Image(name, digest, manifest, config, layers)

    def referenced(self) -> set[str]:
        """Every blob some tagged image needs."""
        out = set()
        for name, digest in self.names().items():
            try:
                out.update(self.image(name, digest).blobs)
            except CatalogueError:
                out.add(digest)
        return out

    def gc(self) -> list[str]:
        """Removes blobs that no tagged image needs (a copy that broke leaves
        whole but unused blobs); returns their digests."""
        with self._locked_index():
            keep = self.referenced()
            gone = []
            for entry in os.listdir(self.blob_dir):
                digest = "sha256:" + entry
                if digest not in keep:
                    os.unlink(self.blob_dir / entry)
                    gone.append(digest)
        if self.tmp.exists():
            self._sweep()
        return gone


class _BlobWriter:
    def __init__(self, raw):
        self.raw = raw
        self.file = _Hashing(raw)
        self.digest: str | None = None
        self.size = 0


def write_layer(store: Store, entries: list[tuple[str, str]], root: str = "/",
                strip: str = "") -> tuple[dict, str, int]:
    """A gzip tar layer of entries ((host path, kind) in order, parents
    first), named as inside the image (strip removes a host prefix, root is
    where they go). Returns (descriptor, diff_id, bytes of file contents)."""
    content = 0
    with store.writer() as w:
        with gzip.GzipFile(fileobj=w.file, mode="wb", mtime=0, compresslevel=6) as gz:
            raw = _Hashing(gz)    # the uncompressed stream's digest: the diff_id
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path, _kind in entries:
                    inside = path[len(strip):] if strip else path
                    name = os.path.join(root, inside.lstrip("/")).lstrip("/")
                    if not name:
                        continue
                    info = tar.gettarinfo(path, arcname=name)
                    info.uname = info.gname = ""
                    if info.isreg():
                        content += info.size
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    elif info.isdir() or info.issym() or info.islnk():
                        tar.addfile(info)
    desc = {"mediaType": MT_LAYER, "digest": w.digest, "size": w.size}
    return desc, raw.digest, content


def _safe_member(member: tarfile.TarInfo, dest: str) -> None:
    """Refuses what could write outside dest: absolute or '..' names, hard
    links out of the layer, device nodes, and a path through a symlink."""
    name = member.name
    parts = name.split("/")
    if name.startswith("/") or ".." in parts:
        raise CatalogueError(f"layer entry {name!r} leaves the root")
    if member.islnk() and (member.linkname.startswith("/") or ".." in member.linkname.split("/")):
        raise CatalogueError(f"layer entry {name!r} links outside the layer")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise CatalogueError(f"layer entry {name!r} is not a file, directory or link")
    here = dest
    for part in parts[:-1]:
        here = os.path.join(here, part)
        try:
            if stat.S_ISLNK(os.lstat(here).st_mode):
                raise CatalogueError(f"layer entry {name!r} goes through a symlink")
        except FileNotFoundError:
            break


def _stripped(member: tarfile.TarInfo, strip: str) -> bool:
    """member renamed below strip (a volume's layer holds its path inside);
    False for the directories above it."""
    for attr in ("name", "linkname") if member.islnk() else ("name",):
        name = getattr(member, attr)
        if name == strip:
            setattr(member, attr, ".")
        elif name.startswith(strip + "/"):
            setattr(member, attr, name[len(strip) + 1:])
        elif attr == "name" and strip.startswith(name + "/") and member.isdir():
            return False
        else:
            raise CatalogueError(f"layer entry {name!r} is outside its volume {strip!r}")
    return True


def unpack_layer(store: Store, desc: dict, dest: str, what: str, strip: str = "") -> None:
    """Extracts a layer into dest with owners, modes and times, checking each
    entry; the blob's digest is checked as it is read. strip: a directory
    whose contents go to dest (and nothing else)."""
    sha = hashlib.sha256()
    path = store.blob_path(desc["digest"])

    class Checked(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = self.f.readinto(b)
            sha.update(memoryview(b)[:n])
            return n

    try:
        with open(path, "rb") as f:
            checked = io.BufferedReader(Checked(f), _CHUNK)
            with tarfile.open(fileobj=checked, mode="r|gz") as tar:
                for member in tar:
                    if strip and not _stripped(member, strip):
                        continue
                    _safe_member(member, dest)
                    tar.extract(member, dest, numeric_owner=True)
            while checked.read(_CHUNK):
                pass
    except (OSError, tarfile.TarError, EOFError, gzip.BadGzipFile) as e:
        raise CatalogueError(f"corrupt store {store.root}: {what} layer {desc['digest']}: "
                             f"{e}") from None
    if "sha256:" + sha.hexdigest() != desc["digest"]:
        raise CatalogueError(f"corrupt store {store.root}: {what} layer {desc['digest']} "
                             "does not match its digest")
