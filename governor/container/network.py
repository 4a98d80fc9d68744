"""Container networking: `--net` values, an address pool with leases, and the
host side (a bridge, a veth pair per container) built with pyroute2.

    net = Network()                       # pool, bridge, state dir from the environment
    request = net.parse("auto")           # or "none", "10.88.0.12/16": PolicyError if bad
    lease = net.reserve("web-a", request, nat=True, ports=[parse_publish("8080:80")])
                                          # before anything starts: PolicyError if taken
    net.attach(pid, lease)                # pid's own network namespace gets eth0, and the
                                          # NAT and published ports (nat.py)
    ...
    net.release(lease)                    # idempotent, also after the namespace died

A lease records the supervisor (pid and start time) that holds it; the lease
of a supervisor that is gone (killed) is stale and removed, with its nftables
rules and a log line, at the next reservation. The kernel destroys a veth
pair when the namespace of one end dies, so a killed supervisor leaves no
interface behind.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from .. import _proc
from . import registry
from .._errors import GovernorError, PolicyError
from .nat import NatTable, Port, enable_forwarding, parse_ports

log = logging.getLogger(__name__)

DEFAULT_POOL = "10.88.0.0/16"
DEFAULT_BRIDGE = "gov0"
ENV_POOL, ENV_BRIDGE = "GOVERNOR_NET_POOL", "GOVERNOR_BRIDGE"
CONTAINER_IFNAME = "eth0"
IFNAMSIZ = 15  # the kernel's limit on interface names, without the NUL
CLONE_NEWNET = 0x40000000
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_NETNS_TIMEOUT = 10.0

_libc = ctypes.CDLL(None, use_errno=True)


def _pyroute2():
    """(IPRoute, NetlinkError). pyroute2 takes about 0.2 s to import: only
    containers with an address need it, so it is imported at their first use."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    return IPRoute, NetlinkError


@dataclass(frozen=True)
class NetConfig:
    """Where containers get their addresses: the pool (the bridge takes its
    first host address), the bridge's name, and the state directory that
    holds the leases."""

    pool: ipaddress.IPv4Network
    bridge: str
    state_dir: Path

    @classmethod
    def from_env(cls, pool: str | None = None, bridge: str | None = None,
                 state_dir: str | os.PathLike | None = None) -> "NetConfig":
        """Arguments override $GOVERNOR_NET_POOL, $GOVERNOR_BRIDGE and
        $GOVERNOR_STATE_DIR, which override the defaults."""
        pool_source = "pool" if pool is not None else ENV_POOL
        bridge_source = "bridge" if bridge is not None else ENV_BRIDGE
        pool = pool if pool is not None else os.environ.get(ENV_POOL, DEFAULT_POOL)
        bridge = bridge if bridge is not None else os.environ.get(ENV_BRIDGE, DEFAULT_BRIDGE)
        state = state_dir if state_dir is not None else registry.state_dir()
        try:
            net = ipaddress.IPv4Network(pool, strict=True)
        except ValueError as e:
            raise PolicyError(pool_source, None, f"not an IPv4 network: {pool!r} ({e})") from None
        if net.prefixlen > 30:
            raise PolicyError(pool_source, None, f"{pool} is too small: it needs room for the "
                                                 "bridge and a container (at most /30)")
        if not _IFNAME.fullmatch(bridge):
            raise PolicyError(bridge_source, None, f"bad interface name {bridge!r} (1 to 15 of "
                                                   "A-Z a-z 0-9 _ . -)")
        return cls(net, bridge, Path(state))

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's address: the pool's first host."""
        return self.pool.network_address + 1

    @property
    def leases_path(self) -> Path:
        return self.state_dir / "network" / f"{self.bridge}.json"


@dataclass(frozen=True)
class NetRequest:
    """A parsed `--net` value: mode "none", "auto" or "static" (address set)."""

    mode: str
    address: ipaddress.IPv4Address | None = None


@dataclass(frozen=True)
class Lease:
    """An address given to a container, and who holds it."""

    address: str
    prefixlen: int
    name: str
    ifname: str              # the host side of the veth pair
    supervisor_pid: int
    supervisor_start: int    # field 22 of /proc/PID/stat: tells a reused pid apart
    nat: bool = False        # masqueraded to the world
    ports: str = ""          # published: "8080:80/tcp,53:53/udp"


def parse_net(value: str, config: NetConfig) -> NetRequest:
    """`none`, `auto` or `ADDRESS/PREFIX` (an address of the pool, with the
    pool's prefix). PolicyError naming --net otherwise."""
    def bad(reason: str) -> PolicyError:
        return PolicyError("--net", None, f"{value!r}: {reason}")

    text = value.strip()
    if text in ("none", "auto"):
        return NetRequest(text)
    if "/" not in text:
        raise bad("expected none, auto or ADDRESS/PREFIX (e.g. 10.88.0.12/16)")
    addr_text, prefix_text = text.split("/", 1)
    try:
        address = ipaddress.IPv4Address(addr_text)
    except ValueError:
        raise bad(f"{addr_text!r} is not an IPv4 address") from None
    if not prefix_text.isdigit() or int(prefix_text) > 32:
        raise bad(f"bad prefix /{prefix_text} (a whole number from 0 to 32)")
    pool = config.pool
    if int(prefix_text) != pool.prefixlen:
        raise bad(f"bad prefix /{prefix_text}: the pool {pool} has /{pool.prefixlen}")
    if address not in pool:
        raise bad(f"{address} is outside the pool {pool}")
    if address == pool.network_address:
        raise bad(f"{address} is the pool's network address")
    if address == pool.broadcast_address:
        raise bad(f"{address} is the pool's broadcast address")
    if address == config.gateway:
        raise bad(f"{address} is the bridge's address")
    return NetRequest("static", address)


def _alive(lease: Lease) -> bool:
    return _proc.alive(lease.supervisor_pid, lease.supervisor_start)


def _host_ifname(offset: int, name: str) -> str:
    """gv<offset in hex>-<name>, cut to 15 characters: the offset of the
    address in the pool makes it unique among live leases of a pool."""
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return f"gv{offset:x}-{clean}"[:IFNAMSIZ]


class Network:
    """The pool, its leases and the host side of one bridge."""

    def __init__(self, config: NetConfig | None = None):
        self.config = config or NetConfig.from_env()
        self.nat = NatTable(self.config.bridge)

    def parse(self, value: str) -> NetRequest:
        return parse_net(value, self.config)

    # ---- leases ----

    @contextmanager
    def _leases(self) -> Iterator[list[Lease]]:
        """The lease list under an exclusive flock, written back on exit."""
        path = self.config.leases_path
        try:
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            lock = open(path.with_suffix(".lock"), "a")
        except OSError as e:
            raise GovernorError(f"{path.parent}: cannot keep leases there: {e.strerror}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                doc = json.loads(path.read_text()) if path.exists() else {"leases": []}
                leases = [Lease(**item) for item in doc["leases"]]
            except (OSError, ValueError, TypeError, KeyError) as e:
                raise GovernorError(f"{path}: unreadable lease file: {e}") from None
            before = list(leases)
            try:
                yield leases
            finally:  # stale leases removed before a refusal stay removed
                if leases != before:
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"leases": [asdict(x) for x in leases]}, indent=1))
                    os.replace(tmp, path)

    def leases(self) -> list[Lease]:
        """The leases of live supervisors."""
        with self._leases() as leases:
            return [x for x in leases if _alive(x)]

    def reserve(self, name: str, request: NetRequest, nat: bool = False,
                ports: list[Port] = ()) -> Lease | None:
        """Takes an address for container `name` (None for `none`), to be
        masqueraded (nat) and with host ports published to it. Stale leases
        and their rules are removed first; PolicyError if the address or a
        host port is taken or the pool is full."""
        if request.mode == "none":
            if ports:
                raise PolicyError("--publish", None, "needs --net auto or ADDRESS/PREFIX")
            return None
        pool = self.config.pool
        with self._leases() as leases:
            for stale in [x for x in leases if not _alive(x)]:
                log.warning("removing stale lease of %s for %s (supervisor %d is gone)",
                            stale.address, stale.name, stale.supervisor_pid)
                leases.remove(stale)
            # Rules of stale leases, or of leases gone from the file.
            stale_rules = self.nat.owners() - {x.ifname for x in leases}
            if stale_rules and self.nat.remove(stale_rules):
                log.warning("removed stale nftables rules of %s", ", ".join(sorted(stale_rules)))
            self._check_ports(leases, ports)
            taken = {x.address: x for x in leases}
            if request.mode == "static":
                address = request.address
                if str(address) in taken:
                    owner = taken[str(address)]
                    raise PolicyError("--net", None, f"{address} is taken by container "
                                                     f"{owner.name!r} (supervisor pid "
                                                     f"{owner.supervisor_pid})")
            else:
                free = (a for a in pool.hosts() if a != self.config.gateway and str(a) not in taken)
                address = next(free, None)
                if address is None:
                    raise PolicyError("--net", None, f"auto: no free address left in {pool}")
            offset = int(address) - int(pool.network_address)
            me = _proc.identity()
            lease = Lease(str(address), pool.prefixlen, name, _host_ifname(offset, name), me.pid,
                          me.start, nat, ",".join(str(p) for p in ports))
            leases.append(lease)
        log.info("leased %s to %s", lease.address, name)
        return lease

    @staticmethod
    def _check_ports(leases: list[Lease], ports: list[Port]) -> None:
        mine = [(p.host, p.proto) for p in ports]
        if len(set(mine)) != len(mine):
            raise PolicyError("--publish", None, "a host port is published twice")
        for other in leases:
            for p in parse_ports(other.ports):
                if (p.host, p.proto) in mine:
                    raise PolicyError("--publish", None, f"host port {p.host}/{p.proto} is "
                                      f"published by container {other.name!r} (supervisor pid "
                                      f"{other.supervisor_pid})")

    def _forget(self, lease: Lease) -> None:
        with self._leases() as leases:
            if lease in leases:
                leases.remove(lease)
            self.nat.remove({lease.ifname})

    # ---- the host side and the namespace ----

    def attach(self, pid: int, lease: Lease | None) -> None:
        """Sets up the network namespace of `pid` (which must not be ours):
        loopback up, and with a lease a veth pair from the bridge, whose peer
        is eth0 there with the leased address and a default route via the
        bridge. Undoes what it did if it fails."""
        try:
            nsfd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise GovernorError(f"network namespace of pid {pid}: {e.strerror}") from None
        try:
            if os.fstat(nsfd).st_ino == os.stat("/proc/self/ns/net").st_ino:
                raise GovernorError(f"pid {pid} shares this process's network namespace")
            if lease is not None:
                self._add_veth(lease, nsfd)
            try:
                _in_netns(nsfd, lambda ipr: _configure_inside(ipr, lease, self.config.gateway))
                if lease is not None:
                    self._add_rules(lease)
            except BaseException:
                if lease is not None:
                    self._delete_link(lease.ifname)
                raise
        finally:
            os.close(nsfd)

    def _add_rules(self, lease: Lease) -> None:
        """Masquerading and published ports, under the lease lock."""
        ports = parse_ports(lease.ports)
        if not lease.nat and not ports:
            return
        with self._leases():
            if enable_forwarding():
                log.warning("turned on IPv4 forwarding (%s) for container %s",
                            "net.ipv4.ip_forward", lease.name)
            self.nat.add(lease.ifname, lease.address, lease.nat, ports)

    def setup(self, name: str, request: NetRequest, pid: int) -> Lease | None:
        """reserve() then attach(); on failure nothing stays allocated."""
        lease = self.reserve(name, request)
        try:
            self.attach(pid, lease)
        except BaseException:
            if lease is not None:
                self._forget(lease)
            raise
        return lease

    def release(self, lease: Lease | None) -> None:
        """Deletes the host side of the veth pair if it still exists (the
        kernel deletes the pair itself when the namespace dies) and gives
        the address back. Idempotent."""
        if lease is None:
            return
        self._delete_link(lease.ifname)
        self._forget(lease)
        log.info("released %s of %s", lease.address, lease.name)

    def ensure_bridge(self, ipr: IPRoute) -> int:
        """The bridge, up, with the pool's first host address; its index."""
        _, NetlinkError = _pyroute2()
        name = self.config.bridge
        found = ipr.link_lookup(ifname=name)
        if not found:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # another supervisor was quicker
                    raise _netlink_error(f"creating bridge {name}", e) from None
            found = ipr.link_lookup(ifname=name)
        index = found[0]
        kind = ipr.get_links(index)[0].get(("linkinfo", "kind"))
        if kind != "bridge":
            raise GovernorError(f"{name} exists and is not a bridge (kind {kind!r})")
        try:
            ipr.addr("add", index=index, address=str(self.config.gateway),
                     prefixlen=self.config.pool.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _netlink_error(f"adding {self.config.gateway} to {name}", e) from None
        ipr.link("set", index=index, state="up")
        return index

    def _add_veth(self, lease: Lease, nsfd: int) -> None:
        IPRoute, NetlinkError = _pyroute2()
        with IPRoute() as ipr:
            bridge = self.ensure_bridge(ipr)
            found = ipr.link_lookup(ifname=lease.ifname)
            for link in ipr.get_links(*found) if found else []:  # no args: every link
                # On our bridge it can only be left over: its lease was stale.
                if link.get("master") != bridge:
                    raise GovernorError(f"interface {lease.ifname} exists and is not on "
                                        f"{self.config.bridge}: another pool uses that name")
                log.warning("removing stale interface %s", lease.ifname)
                ipr.link("del", index=link["index"])
            try:
                ipr.link("add", ifname=lease.ifname, kind="veth",
                         peer={"ifname": CONTAINER_IFNAME, "net_ns_fd": nsfd})
            except NetlinkError as e:
                raise _netlink_error(f"creating veth {lease.ifname}", e) from None
            index = ipr.link_lookup(ifname=lease.ifname)[0]
            try:
                ipr.link("set", index=index, master=bridge, state="up")
            except NetlinkError as e:
                ipr.link("del", index=index)
                raise _netlink_error(f"attaching {lease.ifname} to {self.config.bridge}",
                                     e) from None

    def _delete_link(self, ifname: str) -> None:
        """Deletes ifname if it is on our bridge (a name of another pool's
        container may be the same)."""
        IPRoute, NetlinkError = _pyroute2()
        with IPRoute() as ipr:
            bridge = ipr.link_lookup(ifname=self.config.bridge)
            found = ipr.link_lookup(ifname=ifname)
            try:
                for link in ipr.get_links(*found) if found and bridge else []:
                    if link.get("master") == bridge[0]:
                        ipr.link("del", index=link["index"])
            except NetlinkError as e:
                if e.code != errno.ENODEV:  # gone meanwhile with its namespace
                    raise _netlink_error(f"deleting {ifname}", e) from None


def _netlink_error(what: str, e) -> GovernorError:
    return GovernorError(f"{what}: {os.strerror(e.code)}")


def _configure_inside(ipr: IPRoute, lease: Lease | None, gateway) -> None:
    ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    if lease is None:
        return
    index = ipr.link_lookup(ifname=CONTAINER_IFNAME)[0]
    ipr.link("set", index=index, state="up")
    ipr.addr("add", index=index, address=lease.address, prefixlen=lease.prefixlen)
    ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway))


def _in_netns(nsfd: int, work: Callable[[IPRoute], None]) -> None:
    """Runs work(ipr) with a netlink socket of the namespace nsfd. setns()
    moves only the calling thread, so a short-lived thread enters the
    namespace, opens the socket there, works and ends: no other thread of
    this process ever changes namespace."""
    IPRoute, NetlinkError = _pyroute2()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if _libc.setns(nsfd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise GovernorError(f"setns into the container's network namespace: "
                                    f"{os.strerror(err)}")
            with IPRoute() as ipr:
                work(ipr)
        except NetlinkError as e:
            failure.append(_netlink_error("configuring the container's network", e))
        except BaseException as e:  # handed to the caller
            failure.append(e)

    thread = threading.Thread(target=run, name="governor-netns", daemon=True)
    thread.start()
    thread.join(_NETNS_TIMEOUT)
    if thread.is_alive():
        raise GovernorError(f"configuring the container's network took more than "
                            f"{_NETNS_TIMEOUT}s")
    if failure:
        raise failure[0]
