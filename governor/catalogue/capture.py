"""`governor capture`: run a command under the file tracer and the engine,
turn what it touched into an OCI image, measure what it used, propose an
allocation, record its hardware needs.

The run is an ordinary governed group (seccomp backend) whose four rate
limits are set so high that they never bind: the engine then charges every
byte the command moves, exactly as it will be charged under its
allocation, and the group's sampler counts its tasks and memory. CPU time
and the memory of processes that exited between two samples are read by
the tracer at each exit (/proc/PID/status VmHWM, VmData, VmStk)."""
from __future__ import annotations

import datetime
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field

import psutil

from .._errors import CatalogueError, PolicyError, SpawnError
from ..container import DEFAULT_PATH, check_name
from ..limits import DEADLINE_SHARE, RATE_KEYS, Limits
from .dpkg import Dpkg
from .elf import MACHINES, Resolver, read_elf
from .fileset import PSEUDO, FileSet, add_loader_needs, add_packages
from .host import KERNEL_MIN, KERNEL_SPEED, version_tuple
from .oci import MT_CONFIG, MT_MANIFEST, VOLUME, write_layer

log = logging.getLogger(__name__)
NEVER_BINDS = 2**40                 # bytes/s: a rate limit that only counts
WINDOW = 1.0                        # seconds over which a peak rate is taken
SAMPLE_EVERY = 0.25
DEFAULT_HEADROOM = 0.5              # proposal = peak x (1 + headroom)
MiB = 1 << 20
# The least a proposal asks, whatever was measured: an idle run still
# needs to start again, and a rate of 0 would hold every call.
FLOORS = {"cpu": 0.05, "memory": 16 * MiB, "memory_resident": 16 * MiB, "processes": 4,
          "net_send": MiB, "net_recv": MiB, "disk_read": MiB, "disk_write": MiB,
          "disk_space": 64 * MiB}
ANNOTATION = "io.governor."


@dataclass
class Measured:
    """Peaks of a capture run: CPUs (over 1-s windows), bytes of committed
    and resident memory, tasks, bytes/s per rate (over 1-s windows), and
    totals moved."""

    seconds: float = 0.0
    exit_status: int | None = None
    cpu: float = 0.0
    memory: int = 0
    memory_resident: int = 0
    processes: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    disk_space: int = 0        # the footprint: image files and volumes


@dataclass
class CaptureResult:
    name: str
    manifest: str                        # digest
    entrypoint: list[str]
    files: int
    size: int                            # bytes of file contents in the image
    layer_size: int                      # bytes of the compressed layers
    volumes: list[dict]
    needs: dict
    measured: dict | None
    proposal: dict
    headroom: float
    packages: dict                       # owners, closure, closure_size
    missing_libraries: list[str]

    def as_dict(self) -> dict:
        return asdict(self)


def _cpu_seconds(group, tracer) -> float:
    """CPU time of the group so far: every task that exited (the tracer
    read it at its exit) and every live one, each counted once."""
    total, exited = tracer.cpu_snapshot()
    for pid in group.pids():
        try:
            for t in psutil.Process(pid).threads():
                if t.id not in exited:
                    total += t.user_time + t.system_time
        except psutil.Error:
            pass
    return total


def _peak(samples: list[tuple[float, float]]) -> float:
    """The most moved in any window of WINDOW seconds, per second (the whole
    run's rate when it was shorter)."""
    best, j = 0.0, 0
    for i, (t, v) in enumerate(samples):
        while j + 1 < i and t - samples[j + 1][0] >= WINDOW:
            j += 1
        if i > j and t > samples[j][0]:
            best = max(best, (v - samples[j][1]) / (t - samples[j][0]))
    return best


def run_traced(argv: list[str], env: dict, cwd: str, duration: float | None,
               stop: threading.Event, stdout=None, stderr=None):
    """Runs argv traced and measured until it exits, `duration` passes or
    `stop` is set (then SIGTERM, and SIGKILL 10 s later). Returns (Trace,
    Measured)."""
    from ..supervisor import Supervisor, governed_calls
    from .trace import FileTracer

    limits = Limits(**{k: NEVER_BINDS for k in RATE_KEYS}, burst={k: NEVER_BINDS for k in RATE_KEYS})
    m = Measured()
    with Supervisor(publish_state=False) as sup:
        group = sup.group("capture", limits)
        tracer = FileTracer(skip=set(governed_calls(limits)))
        started = time.monotonic()
        try:
            proc = group.spawn(argv, env=env, cwd=cwd, tracer=tracer, stdout=stdout,
                               stderr=stderr)
        except BaseException:
            tracer.stop()
            raise
        series = {k: [(0.0, 0.0)] for k in RATE_KEYS + ("cpu",)}
        cpu_total, term_at = 0.0, None
        while True:
            done = proc.poll() is not None
            now = time.monotonic() - started
            usage = group.usage()
            cpu_total = max(cpu_total, _cpu_seconds(group, tracer))
            for k in RATE_KEYS:
                series[k].append((now, float(usage.resources[k].used)))
            series["cpu"].append((now, cpu_total))
            if done:
                break
            if term_at is None and (stop.is_set() or (duration is not None and now >= duration)):
                proc.send_signal(signal.SIGTERM)
                term_at = now
            if term_at is not None and now - term_at > 10:
                proc.kill()
            if stop.is_set():
                time.sleep(SAMPLE_EVERY)
            else:
                stop.wait(SAMPLE_EVERY)
        tracer.done.wait(10)
        m.seconds = round(time.monotonic() - started, 3)
        m.exit_status = proc.returncode
        m.cpu = round(_peak(series["cpu"]), 3)
        m.memory = max(usage.peak_memory, tracer.trace.peak_committed)
        m.memory_resident = max(usage.peak_resident, tracer.trace.peak_resident)
        m.processes = max(usage.peak_tasks, 1)
        m.rates = {k: round(_peak(series[k]), 1) for k in RATE_KEYS}
        m.totals = {k: usage.resources[k].used for k in RATE_KEYS}
    if tracer.error:
        raise CatalogueError(f"capture: the tracer failed: {tracer.error}")
    return tracer.trace, m


def propose(m: Measured | None, footprint: int, headroom: float) -> dict:
    """An allocation from the peaks: each peak x (1 + headroom), at least
    FLOORS; disk_space from the footprint."""
    h = 1 + headroom
    out: dict[str, float] = {}
    if m is not None:
        most_cpu = (os.cpu_count() or 1) * DEADLINE_SHARE
        out["cpu"] = min(most_cpu, max(FLOORS["cpu"], math.ceil(m.cpu * h * 100) / 100))
        out["memory"] = max(FLOORS["memory"], math.ceil(m.memory * h / MiB) * MiB)
        out["memory_resident"] = max(FLOORS["memory_resident"],
                                     math.ceil(m.memory_resident * h / MiB) * MiB)
        out["processes"] = max(FLOORS["processes"], math.ceil(m.processes * h), m.processes + 2)
        for k in RATE_KEYS:
            out[k] = max(FLOORS[k], math.ceil(m.rates.get(k, 0) * h / 1024) * 1024)
    out["disk_space"] = max(math.ceil(footprint * h / MiB) * MiB, footprint + FLOORS["disk_space"])
    return out


def hardware_needs(fs: FileSet, executed: set[str]) -> dict:
    """Architecture (of the executed programs, else of most ELF files),
    x86-64 ISA level (the highest GNU property note), kernel (governor's
    own needs, or higher if an ELF ABI tag says so), devices opened."""
    arches: dict[str, int] = {}
    isa, kernel = None, version_tuple(KERNEL_MIN)
    run_arch = None
    for path in fs.files():
        info = read_elf(path)
        if info is None:
            continue
        arches[info.arch] = arches.get(info.arch, 0) + 1
        if path in executed and run_arch is None:
            run_arch = info.arch
        if info.isa_level:
            isa = max(isa or 0, info.isa_level)
        if info.abi_kernel and info.abi_kernel > kernel:
            kernel = info.abi_kernel
    arch = run_arch or (max(arches, key=arches.get) if arches else os.uname().machine)
    return {"arch": arch, "isa_level": isa,
            "kernel": {"min": ".".join(map(str, kernel)), "speed": KERNEL_SPEED,
                       "features": ["user_notif"]},
            "devices": sorted(fs.devices)}


def _parse_data(spec: str) -> tuple[str, str]:
    host, _, inside = spec.partition(":")
    inside = inside or host
    real = os.path.realpath(host)
    if not os.path.isdir(real):
        raise CatalogueError(f"--data: {host}: no such directory", key="data")
    if not inside.startswith("/") or os.path.normpath(inside) != inside or inside == "/":
        raise CatalogueError(f"--data: {spec!r}: the path inside must be absolute and "
                             "normalised, not /", key="data")
    return real, inside


def _data_entries(top: str) -> list[tuple[str, str]]:
    entries = [(top, "dir")]
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(dirnames):
            p = os.path.join(dirpath, name)
            entries.append((p, "symlink" if os.path.islink(p) else "dir"))
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            if os.path.islink(p) or os.path.isfile(p):
                entries.append((p, "symlink" if os.path.islink(p) else "file"))
    return entries


def capture(catalogue, name: str, argv: list[str] | None = None, *,
            packages: list[str] = (), data: list[str] = (), env: dict | None = None,
            workdir: str = "/", entrypoint: list[str] | None = None,
            headroom: float = DEFAULT_HEADROOM, duration: float | None = None,
            stop: threading.Event | None = None, stdout=None, stderr=None,
            progress=None) -> CaptureResult:
    """Captures application `name` into the catalogue's store and records
    it. argv: the command to trace (None: packages only); packages: Debian
    packages taken whole with their dependency closure; data: HOSTDIR[:PATH]
    directories kept apart as volumes. Every argument is checked before
    anything runs; nothing is recorded if the capture fails. progress, if
    given, is called with each step's name as it begins (a console shows it)."""
    progress = progress or (lambda step: None)
    check_app_name(name)
    if catalogue.app_exists(name):
        raise CatalogueError(f"application {name!r} exists already "
                             "(governor apps remove it first)", key="name")
    if not argv and not packages:
        raise CatalogueError("capture: give a command (-- CMD ARGS...) or --package PKG",
                             key="command")
    if not 0 <= headroom <= 10:
        raise CatalogueError(f"--headroom: {headroom:g} is not a share between 0 and 10",
                             key="headroom")
    if not os.path.isdir(workdir) or not workdir.startswith("/"):
        raise CatalogueError(f"--workdir: {workdir}: no such directory", key="workdir")
    if any(workdir == p or workdir.startswith(p + "/") for p in PSEUDO):
        raise CatalogueError(f"--workdir: {workdir} is under {', '.join(PSEUDO)}, which a "
                             "container gets fresh or not at all: its files cannot be kept",
                             key="workdir")
    volumes = [_parse_data(d) for d in data]
    dpkg = Dpkg()
    for pkg in packages:
        dpkg.package(pkg)
    run_env = {"PATH": DEFAULT_PATH, "HOME": "/", **(env or {})}
    entry = list(entrypoint if entrypoint is not None else argv or [])
    if argv:
        from ..supervisor import _find_command
        try:
            _find_command(argv[0], run_env)
        except SpawnError:
            raise CatalogueError(f"capture: {argv[0]}: command not found", key="command") from None

    fs = FileSet(exclude=FileSet().exclude + tuple(v[0] for v in volumes)
                 + (str(catalogue.state_dir),))
    measured, executed = None, set()
    if argv:
        progress("running the command")
        trace, measured = run_traced(argv, run_env, workdir, duration, stop or threading.Event(),
                                     stdout, stderr)
        if measured.exit_status == 127 and not trace.paths:
            raise CatalogueError(f"capture: {argv[0]} could not be run", key="command")
        for path, how in trace.paths.items():
            real = fs.add(path)
            if "exec" in how and real:
                executed.add(real)
    progress("resolving files and packages")
    fs.add(workdir)
    closure = add_packages(fs, dpkg, list(packages)) if packages else []
    missing = add_loader_needs(fs, Resolver(), executed)
    if not fs.files():
        raise CatalogueError("capture: the run touched no file that can be kept", key="command")

    owners = sorted({o for p in fs.files() if (o := dpkg.owner(p))})
    full = dpkg.closure(owners) if owners else []
    pkg_info = {"owners": owners, "closure": full, "closure_size": dpkg.installed_size(full),
                "taken_whole": closure}
    progress("writing the image")
    store = catalogue.store
    store.ensure()
    layer, diff_id, size = write_layer(store, fs.ordered())
    layers, diff_ids, vol_info = [layer], [diff_id], []
    for host, inside in volumes:
        vlayer, vdiff, vsize = write_layer(store, _data_entries(host), root=inside, strip=host)
        vlayer["annotations"] = {VOLUME: inside}
        layers.append(vlayer)
        diff_ids.append(vdiff)
        vol_info.append({"path": inside, "size": vsize})
    if measured is not None:
        measured.disk_space = size + sum(v["size"] for v in vol_info)
    needs = hardware_needs(fs, executed)
    proposal = propose(measured, size + sum(v["size"] for v in vol_info), headroom)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    env_list = [f"{k}={v}" for k, v in run_env.items()]
    config = {
        "created": now, "architecture": _oci_arch(needs["arch"]), "os": "linux",
        "config": {"Entrypoint": entry, "Env": env_list, "WorkingDir": workdir, "User": "0:0",
                   "Volumes": {v["path"]: {} for v in vol_info},
                   "Labels": {"io.governor.app": name}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": now, "created_by": "governor capture " + " ".join(
            (["--package " + p for p in packages]) + (["-- " + " ".join(argv)] if argv else []))}],
    }
    cdigest, csize = store.put_bytes(json.dumps(config, indent=1).encode())
    measured_d = asdict(measured) if measured else None
    manifest = {
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cdigest, "size": csize},
        "layers": layers,
        "annotations": {
            "org.opencontainers.image.created": now,
            "org.opencontainers.image.title": name,
            ANNOTATION + "command": json.dumps(argv or []),
            ANNOTATION + "files": str(len(fs.files())),
            ANNOTATION + "needs": json.dumps(needs, sort_keys=True),
            ANNOTATION + "measured": json.dumps(measured_d, sort_keys=True),
            ANNOTATION + "proposal": json.dumps(proposal, sort_keys=True),
            ANNOTATION + "packages": json.dumps({"owners": owners, "closure_size":
                                                 pkg_info["closure_size"]}),
        },
    }
    mdigest, msize = store.put_bytes(json.dumps(manifest, indent=1).encode())
    result = CaptureResult(name, mdigest, entry, len(fs.files()), size,
                           sum(x["size"] for x in layers), vol_info, needs, measured_d, proposal,
                           headroom, pkg_info, missing)
    catalogue.add_app(result, store_size=msize)
    return result


def _oci_arch(arch: str) -> str:
    for uname, goarch in MACHINES.values():
        if uname == arch:
            return goarch
    return arch


def check_app_name(name: str) -> None:
    try:
        check_name(name)
    except PolicyError:
        raise CatalogueError(f"{name!r}: an application name is 1-63 letters, digits, '.', "
                             "'_' or '-', starting with a letter or digit", key="name") from None
