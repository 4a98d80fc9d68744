"""`governor export GROUP --to ssh://[USER@]HOST[:PORT]`: a group, its
applications and their images, to another host, over ssh, where the
remote `governor` does the work (the same commands a person would type):

1. `governor admit --json --spec -`: the remote's admission of the group
   (with the remote's own capacity and installed containers). A refusal
   stops here, with the remote's table.
2. `governor store missing`: which blobs (manifests, configs, layers) the
   remote lacks; only those are sent.
3. `governor store receive`: the blobs, one after another, each written to
   a temporary file, checked against its digest and renamed into the store:
   a copy that breaks leaves only whole blobs, which no application names
   yet. The next try sends what is still missing.
4. `governor store import`: the group and its applications go into the
   remote catalogue and are installed there, in one step that leaves
   nothing behind if it fails.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import asdict, dataclass, field

from .._errors import AdmissionRefused, CatalogueError
from .admission import Admission
from .catalogue import Catalogue

_URL = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9_.-]+)@)?(?P<host>[A-Za-z0-9_.:-]+?|\[[0-9a-fA-F:.]+\])"
                  r"(?::(?P<port>[0-9]{1,5}))?/?$")
SSH_TIMEOUT = 10


@dataclass
class Remote:
    """How to reach another host's governor."""

    url: str
    ssh_config: str | None = None
    governor: str = "governor"     # the command there, possibly with words before it
    user: str | None = None
    host: str = ""
    port: int | None = None

    def __post_init__(self):
        m = _URL.match(self.url or "")
        if not m:
            raise CatalogueError(f"--to: {self.url!r} is not ssh://[USER@]HOST[:PORT]", key="to")
        self.user, self.host = m.group("user"), m.group("host").strip("[]")
        self.port = int(m.group("port")) if m.group("port") else None
        if self.port is not None and not 0 < self.port < 65536:
            raise CatalogueError(f"--to: {self.url!r}: bad port", key="to")

    def ssh(self, args: list[str]) -> list[str]:
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}",
               "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.ssh_config:
            cmd += ["-F", self.ssh_config]
        if self.port:
            cmd += ["-p", str(self.port)]
        cmd.append(f"{self.user}@{self.host}" if self.user else self.host)
        cmd.append("--")
        cmd.append(shlex.join(shlex.split(self.governor) + args))
        return cmd

    def run(self, args: list[str], stdin: bytes = b"", what: str = "") -> tuple[int, bytes, str]:
        """Runs governor ARGS on the remote; (status, stdout, stderr). An
        ssh failure (status 255) raises CatalogueError naming the host."""
        try:
            p = subprocess.run(self.ssh(args), input=stdin, capture_output=True,
                               timeout=600)
        except subprocess.TimeoutExpired:
            raise CatalogueError(f"{self.url}: {what or args[0]} took more than 600 s",
                                 key="to") from None
        except FileNotFoundError:
            raise CatalogueError("export needs ssh (Debian: openssh-client)") from None
        err = p.stderr.decode(errors="replace").strip()
        if p.returncode == 255:
            raise CatalogueError(f"cannot reach {self.url}: {err.splitlines()[-1] if err else 'ssh failed'}",
                                 key="to")
        if p.returncode == 127:
            raise CatalogueError(f"{self.url}: no {self.governor!r} there ({err})", key="to")
        return p.returncode, p.stdout, err


@dataclass
class ExportResult:
    host: str
    group: str
    admission: dict
    blobs: int                     # blobs the images need
    sent: int                      # blobs sent (the rest the remote had)
    bytes_sent: int
    installed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def remote_admission(catalogue: Catalogue, group: str, remote: Remote) -> Admission:
    """The remote host's admission of group (nothing is changed there)."""
    spec = catalogue.spec(group)
    status, out, err = remote.run(["admit", "--json", "--spec", "-"],
                                  json.dumps(spec).encode(), "admission")
    try:
        adm = Admission.from_dict(json.loads(out))
    except (ValueError, KeyError, TypeError):
        raise CatalogueError(f"{remote.url}: admission failed: {err or 'no answer'}",
                             key="to") from None
    adm.host = f"{remote.url} ({adm.host})"
    return adm


def export(catalogue: Catalogue, group: str, remote: Remote) -> ExportResult:
    """Exports group to remote (see the module's text). AdmissionRefused with
    the remote's table; CatalogueError for an unknown group, a corrupt local
    store, an unreachable host or a failed copy."""
    spec = catalogue.spec(group)
    images = [catalogue.store.image(a["name"], a["manifest"], verify_layers=True)
              for a in spec["apps"]]
    adm = remote_admission(catalogue, group, remote)
    if not adm.fits:
        raise AdmissionRefused(adm)
    # Small blobs first: a copy that breaks in a layer has the rest whole.
    needed = list(dict.fromkeys(d for img in images for d in img.blobs))
    needed.sort(key=lambda d: catalogue.store.blob_path(d).stat().st_size)
    status, out, err = remote.run(["store", "missing"], json.dumps(needed).encode(), "store missing")
    if status != 0:
        raise CatalogueError(f"{remote.url}: store missing: {err}", key="to")
    missing = json.loads(out)
    if not set(missing) <= set(needed):
        raise CatalogueError(f"{remote.url}: store missing answered blobs it was not asked about")
    sent = _send(catalogue, remote, missing)
    manifests = {img.manifest_digest: catalogue.store.blob_path(img.manifest_digest).stat().st_size
                 for img in images}
    status, out, err = remote.run(["store", "import", "--json"],
                                  json.dumps({**spec, "manifest_sizes": manifests}).encode(),
                                  "import")
    if status == 1:
        try:
            raise AdmissionRefused(Admission.from_dict(json.loads(out)))
        except (ValueError, KeyError, TypeError):
            pass
    if status != 0:
        raise CatalogueError(f"{remote.url}: import failed: {err}", key="to")
    result = ExportResult(remote.url, group, adm.as_dict(), len(needed), len(missing), sent,
                          json.loads(out))
    catalogue.record_host(remote.host, remote.url, {"group": group, "sent": len(missing),
                                                    "bytes": sent})
    return result


def _send(catalogue: Catalogue, remote: Remote, digests: list[str]) -> int:
    """Streams blobs to `governor store receive`: per blob a line
    "sha256:HEX SIZE" and its bytes; then "END"."""
    if not digests:
        return 0
    proc = subprocess.Popen(remote.ssh(["store", "receive"]), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    total = 0
    try:
        for digest in digests:
            path = catalogue.store.blob_path(digest)
            size = path.stat().st_size
            proc.stdin.write(f"{digest} {size}\n".encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    proc.stdin.write(chunk)
            total += size
        proc.stdin.write(b"END\n")
    except (BrokenPipeError, ConnectionResetError):
        pass     # the other end is gone: its status and words say why
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    err = proc.stderr.read()       # both small: a JSON list, a line or two
    proc.stdout.read()
    proc.wait()
    if proc.returncode != 0:
        msg = err.decode(errors="replace").strip().splitlines()
        raise CatalogueError(f"copy to {remote.url} failed: {msg[-1] if msg else 'ssh ended'} "
                             "(blobs that arrived whole are kept; try again to send the rest)",
                             key="to")
    return total


def receive(catalogue: Catalogue, stream) -> list[str]:
    """The remote side of _send: blobs from stream into the store."""
    catalogue.store.ensure()
    got = []
    while True:
        line = stream.readline(200)
        if line == b"END\n":
            return got
        parts = line.decode(errors="replace").split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise CatalogueError("store receive: the stream broke "
                                 f"(after {len(got)} whole blobs)")
        catalogue.store.receive(stream, parts[0], int(parts[1]))
        got.append(parts[0])


def missing(catalogue: Catalogue, digests: list[str]) -> list[str]:
    return [d for d in digests if not catalogue.store.has(d)]


def import_group(catalogue: Catalogue, spec: dict) -> list:
    """The remote side of export: checks that every blob is here and whole,
    records the applications and the group, and installs it. If anything
    fails, what this call recorded is taken back."""
    from .install import install

    added_apps, group_added = [], False
    for app in spec["apps"]:
        catalogue.store.image(app["name"], app["manifest"], verify_layers=True)
    try:
        for app in spec["apps"]:
            size = spec.get("manifest_sizes", {}).get(app["manifest"], 0)
            if catalogue.import_app(app, size):
                added_apps.append(app["name"])
        catalogue.import_group(spec["group"], [a["name"] for a in spec["apps"]])
        group_added = True
        return install(catalogue, spec["group"]["name"])
    except BaseException:
        if group_added:
            catalogue.remove_group(spec["group"]["name"])
        for name in added_apps:
            catalogue.remove_app(name)
        raise
