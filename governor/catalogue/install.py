"""`governor install` and `uninstall`: a group's images unpacked into
container directories, `$GOVERNOR_STATE_DIR/containers/GROUP-APP/rootfs`
(and `volumes/N` for each data volume), and recorded with each container's
share of the group's allocation. Admission comes first; everything is
unpacked beside its place and renamed into it, then recorded in one
transaction, so a failure leaves nothing half-installed."""
from __future__ import annotations

import os
import shutil
import tempfile

from .._errors import AdmissionRefused, CatalogueError
from ..container import check_name
from .admission import admit
from .allocation import split
from .catalogue import Catalogue, Installed, now
from .db import dumps
from .oci import VOLUME, unpack_layer


def container_name(group: str, app: str) -> str:
    name = f"{group}-{app}"
    try:
        check_name(name)
    except Exception:
        raise CatalogueError(f"container name {name!r} (GROUP-APP) is longer than 63 "
                             "characters", key="group") from None
    return name


def _tree_size(top: str) -> int:
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def install(catalogue: Catalogue, group: str) -> list[Installed]:
    """Installs group name on this host; AdmissionRefused with the table if
    the host cannot hold it."""
    spec = catalogue.spec(group)
    if catalogue.installed(group):
        raise CatalogueError(f"group {group!r} is installed already", key="group")
    adm = admit(catalogue, spec)
    if not adm.fits:
        raise AdmissionRefused(adm)
    g = catalogue.group(group)
    apps = spec["apps"]
    shares = split(g.allocation, [a["proposal"] for a in apps])
    images = [catalogue.store.image(a["name"], a["manifest"], verify_layers=True) for a in apps]
    base = catalogue.state_dir / "containers"
    base.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    rows = []
    try:
        for app, image, share in zip(apps, images, shares):
            name = container_name(group, app["name"])
            final = base / name
            if final.exists():
                raise CatalogueError(f"{final} exists: a container of that name is installed "
                                     "or was left by hand", key="group")
            work = tempfile.mkdtemp(prefix=f".{name}-", dir=base)
            made.append(work)
            rootfs = os.path.join(work, "rootfs")
            os.mkdir(rootfs, 0o755)
            volumes = []
            for i, layer in enumerate(image.layers):
                inside = layer.get("annotations", {}).get(VOLUME)
                if inside is None:
                    unpack_layer(catalogue.store, layer, rootfs, f"application {app['name']!r}:")
                    continue
                vol = os.path.join(work, "volumes", str(len(volumes)))
                os.makedirs(vol)
                unpack_layer(catalogue.store, layer, vol, f"application {app['name']!r}:",
                             strip=inside.lstrip("/"))
                os.makedirs(os.path.join(rootfs, inside.lstrip("/")), exist_ok=True)
                volumes.append([str(final / "volumes" / str(len(volumes))), inside])
            size = _tree_size(work)
            rows.append((name, group, app["name"], app["manifest"], str(final / "rootfs"),
                         dumps(volumes), dumps(share.limits), dumps(share.guarantees),
                         g.overcommit, size, now(), "installed", None, None))
        for work, row in zip(made, rows):
            os.rename(work, base / row[0])
        made = [str(base / row[0]) for row in rows]
        with catalogue.db.transaction() as c:
            for row in rows:
                c.execute("INSERT INTO installed VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
    except BaseException:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return catalogue.installed(group)


def uninstall(catalogue: Catalogue, group: str) -> list[str]:
    """Removes a stopped group's containers and their files."""
    catalogue.group(group)
    rows = catalogue.installed(group)
    if not rows:
        raise CatalogueError(f"group {group!r} is not installed", key="group")
    from .runner import running
    if running(catalogue, group):
        raise CatalogueError(f"group {group!r} is running: governor stop {group} first",
                             key="group")
    with catalogue.db.transaction() as c:
        c.execute("DELETE FROM installed WHERE grp = ?", (group,))
    for r in rows:
        shutil.rmtree(os.path.dirname(r.rootfs), ignore_errors=True)
    return [r.container for r in rows]

