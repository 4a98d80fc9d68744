"""Prometheus metrics of a supervisor's groups (prometheus-client, imported
only when metrics are served).

Read at scrape time from the engine's counters and the psutil samples:
nothing here touches the hot path.
"""
from __future__ import annotations

from .._errors import GovernorError, PolicyError
from ..limits import RATE_KEYS


class GroupCollector:
    def __init__(self, supervisor):
        self.supervisor = supervisor

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["group", "resource"]
        moved = CounterMetricFamily("governor_bytes", "Bytes moved, per rate-limited resource",
                                    labels=labels)
        held = CounterMetricFamily("governor_held_calls", "Calls held until they fit",
                                   labels=labels)
        held_s = CounterMetricFamily("governor_held_seconds", "Seconds calls spent held",
                                     labels=labels)
        denied = CounterMetricFamily("governor_denied_calls", "Calls denied with an errno",
                                     labels=labels)
        limit = GaugeMetricFamily("governor_limit", "The limit: bytes/s, tasks, bytes or inodes",
                                  labels=labels)
        tasks = GaugeMetricFamily("governor_tasks", "Live tasks (processes and threads)",
                                  labels=["group"])
        committed = GaugeMetricFamily("governor_memory_committed_bytes",
                                      "Committed private memory (VmData + VmStk)",
                                      labels=["group"])
        resident = GaugeMetricFamily("governor_memory_resident_bytes", "Resident memory (RSS)",
                                     labels=["group"])
        pss = GaugeMetricFamily("governor_memory_pss_bytes",
                                "Proportional set size: shared pages split among sharers",
                                labels=["group"])
        notifs = CounterMetricFamily("governor_notifications", "System calls the engine saw",
                                     labels=["group"])
        cpu = CounterMetricFamily("governor_cpu_seconds",
                                  "CPU time of the group's live processes (sampled)",
                                  labels=["group"])
        for g in self.supervisor.groups:
            try:
                u = g.usage()
            except GovernorError:
                continue  # closed meanwhile
            for key, r in u.resources.items():
                if key in RATE_KEYS:
                    moved.add_metric([g.name, key], r.used)
                held.add_metric([g.name, key], r.held_calls)
                held_s.add_metric([g.name, key], r.held_seconds)
                denied.add_metric([g.name, key], r.denied_calls)
            for key, value in g.limits.items():
                limit.add_metric([g.name, key], value)
            tasks.add_metric([g.name], u.tasks)
            committed.add_metric([g.name], u.memory)
            resident.add_metric([g.name], u.resident)
            pss.add_metric([g.name], u.pss)
            notifs.add_metric([g.name], u.notifications)
            cpu.add_metric([g.name], u.cpu_seconds)
        yield from (moved, held, held_s, denied, limit, tasks, committed, resident, pss, notifs,
                    cpu)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise PolicyError("--metrics", None, f"expected ADDRESS:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve_metrics(supervisor, address: str):
    """Serves /metrics on address ("127.0.0.1:9464"); returns the server
    (call .shutdown() and .server_close() to stop it)."""
    from prometheus_client import start_http_server
    from prometheus_client.registry import CollectorRegistry

    host, port = parse_address(address)
    registry = CollectorRegistry()
    registry.register(GroupCollector(supervisor))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise GovernorError(f"--metrics {address}: {e.strerror or e}") from None
    return server
