"""NAT and published ports of containers: per bridge, an nftables table of
governor's own (`ip governor-BRIDGE`) with one rule per container and per
published port, each carrying the container's host-side interface name as
its comment, written through libnftables' JSON API (pip-nftables, the
python3-nftables module on PyPI; Debian's libnftables1 underneath).

    table ip governor-gov0
      chain prerouting  (nat, dstnat): fib daddr type local tcp dport 8080 dnat to 10.88.0.2:80
      chain output      (nat, dstnat): the same, for connections from the host itself
      chain postrouting (nat, srcnat): ip saddr 10.88.0.2 oifname != gov0 masquerade

Callers (network.py) hold the bridge's lease lock, so two supervisors never
change one table at once; the table goes when its last rule does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .._errors import GovernorError, PolicyError

_PUBLISH = re.compile(r"^(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?$")
FORWARD_SYSCTL = "/proc/sys/net/ipv4/ip_forward"


@dataclass(frozen=True)
class Port:
    """A published port: the host's port, the container's, the protocol."""

    host: int
    container: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host}:{self.container}/{self.proto}"


def parse_publish(spec: str) -> Port:
    """HOSTPORT:CONTAINERPORT[/tcp|udp], as podman run -p; PolicyError."""
    m = _PUBLISH.match(spec.strip()) if isinstance(spec, str) else None
    if not m:
        raise PolicyError("--publish", None, f"{spec!r}: expected HOSTPORT:CONTAINERPORT"
                                             "[/tcp|udp], e.g. 8080:80")
    host, container = int(m.group(1)), int(m.group(2))
    for port in (host, container):
        if not 1 <= port <= 65535:
            raise PolicyError("--publish", None, f"{spec!r}: port {port} is not 1-65535")
    return Port(host, container, m.group(3) or "tcp")


def parse_ports(text: str) -> list[Port]:
    """A lease's ports, as stored: "8080:80/tcp,53:53/udp"."""
    return [parse_publish(p) for p in text.split(",") if p]


def _nftables():
    """A libnftables context with JSON output; imported at first use."""
    try:
        import nftables
    except ImportError as e:  # the module, or libnftables.so.1
        raise GovernorError(f"NAT and published ports need libnftables: {e}") from None
    nft = nftables.Nftables()
    nft.set_json_output(True)
    nft.set_handle_output(True)
    return nft


class NatTable:
    """The table of one bridge."""

    def __init__(self, bridge: str):
        self.bridge = bridge
        self.name = f"governor-{bridge}"

    def _run(self, commands: list[dict]) -> dict:
        rc, out, err = _nftables().json_cmd({"nftables": commands})
        if rc != 0:
            raise GovernorError(f"nftables table {self.name}: {str(err).strip()}")
        return out or {}

    def _rules(self) -> list[dict] | None:
        """The table's rules (each with chain, handle, comment); None if
        there is no table."""
        rc, out, _ = _nftables().json_cmd(
            {"nftables": [{"list": {"table": {"family": "ip", "name": self.name}}}]})
        if rc != 0:
            return None
        return [item["rule"] for item in (out or {}).get("nftables", []) if "rule" in item]

    def _chains(self) -> list[dict]:
        table = {"family": "ip", "table": self.name}
        return [{"add": {"table": {"family": "ip", "name": self.name}}}] + [
            {"add": {"chain": {**table, "name": name, "type": "nat", "hook": hook,
                               "prio": prio, "policy": "accept"}}}
            for name, hook, prio in (("prerouting", "prerouting", -100),
                                     ("output", "output", -100),
                                     ("postrouting", "postrouting", 100))]

    def add(self, ifname: str, address: str, nat: bool, ports: list[Port]) -> None:
        """The rules of one container; undone if any fails. Turns on IPv4
        forwarding if it is off, as podman does (logged by the caller)."""
        if not nat and not ports:
            return
        table = {"family": "ip", "table": self.name, "comment": ifname}
        rules = []
        if nat:
            rules.append({**table, "chain": "postrouting", "expr": [
                _match("==", {"payload": {"protocol": "ip", "field": "saddr"}}, address),
                _match("!=", {"meta": {"key": "oifname"}}, self.bridge),
                {"masquerade": None}]})
        for port in ports:
            for chain in ("prerouting", "output"):
                rules.append({**table, "chain": chain, "expr": [
                    _match("==", {"fib": {"result": "type", "flags": ["daddr"]}}, "local"),
                    _match("==", {"payload": {"protocol": port.proto, "field": "dport"}},
                           port.host),
                    {"dnat": {"addr": address, "port": port.container}}]})
        self._run(self._chains() + [{"add": {"rule": r}} for r in rules])

    def remove(self, ifnames: set[str]) -> int:
        """Deletes the rules of these containers, and the table once no rule
        is left; the number of rules deleted."""
        rules = self._rules()
        if rules is None:
            return 0
        gone = [r for r in rules if r.get("comment") in ifnames]
        commands = [{"delete": {"rule": {"family": "ip", "table": self.name, "chain": r["chain"],
                                         "handle": r["handle"]}}} for r in gone]
        if len(gone) == len(rules):
            commands = [{"delete": {"table": {"family": "ip", "name": self.name}}}]
        if commands:
            self._run(commands)
        return len(gone)

    def owners(self) -> set[str]:
        """The interface names that rules of the table name."""
        return {r.get("comment") for r in self._rules() or ()}


def _match(op: str, left: dict, right) -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def enable_forwarding() -> bool:
    """Turns IPv4 forwarding on; True if it was off."""
    with open(FORWARD_SYSCTL, "r+") as f:
        if f.read().strip() == "1":
            return False
        f.seek(0)
        f.write("1\n")
    return True

