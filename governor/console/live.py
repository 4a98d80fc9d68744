"""The Live view's data: every second the console reads the state files
that supervisors publish (monitor/state.py, what `governor ps` reads), keeps
the last minutes of each group's figures, and wakes the pages' event
streams. Everything here runs on the event loop's thread."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import anyio

from ..limits import RATE_KEYS
from ..monitor.state import read_states
from ..monitor.view import COLUMNS, row, size, sort_states
from .plots import WINDOW, plot

log = logging.getLogger(__name__)
TICK = 1.0
KEEP = int(WINDOW / TICK) + 5


def _rate(v: float) -> str:
    return size(v) + "/s"


def _tasks(v: float) -> str:
    return f"{v:.0f} task" + ("" if round(v) == 1 else "s")


def _percent(v: float) -> str:
    return f"{v:.0f}%"


def _calls(v: float) -> str:
    return f"{v:.0f} calls/s"


# series -> (label, its value in a state document, its limit, format with unit)
SERIES = {
    "cpu": ("CPU", lambda st: st.get("cpu_percent", 0.0),
            lambda lim: lim["cpu"] * 100 if "cpu" in lim else None, _percent),
    "processes": ("tasks", lambda st: st["usage"]["tasks"],
                  lambda lim: lim.get("processes"), _tasks),
    "memory": ("committed memory", lambda st: st["usage"]["memory"],
               lambda lim: lim.get("memory"), size),
    "memory_resident": ("resident memory", lambda st: st["usage"]["resident"],
                        lambda lim: lim.get("memory_resident"), size),
    **{k: (k, (lambda key: lambda st: st["rates"][key])(k),
           (lambda key: lambda lim: lim.get(key))(k), _rate) for k in RATE_KEYS},
    "disk_space": ("disk space", lambda st: st["usage"]["resources"]["disk_space"]["used"],
                   lambda lim: lim.get("disk_space"), size),
    "held": ("calls held", lambda st: st["held_calls_per_second"], lambda lim: None, _calls),
}
OVERVIEW = ("disk_write", "disk_read", "net_send", "net_recv", "held")
EVENT_WORDS = {"held": "calls held", "denied": "calls denied",
               "stalled": "held calls failed: no task could free the cap",
               "resident_killed": "processes killed: resident memory over the limit",
               "compat_denied": "i386/x32 calls refused"}


# `governor ps` columns as the console names them; every number with its unit.
HEADERS = {"GROUP": "group", "PID": "supervisor pid", "CPU%": "CPU", "TASKS": "tasks",
           "COMMITTED": "committed memory", "RESIDENT": "resident memory",
           "NET_SEND": "net send", "NET_RECV": "net receive", "DISK_WRITE": "disk write",
           "DISK_READ": "disk read", "DISK_SPACE": "disk space", "HELD/S": "calls held",
           "HELD_S/S": "time held", "UPTIME": "uptime"}
_UNITS = {"CPU%": lambda t: " of ".join(f"{p}%" for p in t.split(" of ")),
          "TASKS": lambda t: t + (" task" if t == "1" else " tasks"), "HELD/S": lambda t: f"{t} calls/s",
          "HELD_S/S": lambda t: f"{t} s/s", "UPTIME": lambda t: t.replace("s", " s")}


def with_units(column: str, text: str) -> str:
    """A `governor ps` cell with its unit: "4 of 24" CPU -> "4% of 24%"."""
    return _UNITS[column](text) if column in _UNITS and text != "-" else text


def slug(key: str) -> str:
    """An HTML id for a group key (any characters in, [a-z0-9] out)."""
    return "g" + hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass
class Track:
    """One group: its latest state document and its recent samples."""

    key: str
    state: dict
    samples: deque = field(default_factory=lambda: deque(maxlen=KEEP))

    @property
    def slug(self) -> str:
        return slug(self.key)

    def add(self, st: dict) -> None:
        if self.samples and st["updated"] <= self.samples[-1][0]:
            return        # the same publish, read again
        self.state = st
        self.samples.append((st["updated"], {k: float(s[1](st)) for k, s in SERIES.items()}))

    def plot(self, series: str, now: float, small: bool = False) -> str:
        label, _value, limit, fmt = SERIES[series]
        points = [(t, values[series]) for t, values in self.samples]
        kw = {"width": 240, "height": 80} if small else {}
        return plot(points, now, label=label, limit=limit(self.state["limits"]), fmt=fmt,
                    series=series, **kw)

    def series(self) -> list[str]:
        """What the group's own page plots: disk_space only where it is set."""
        return [k for k in SERIES if k != "disk_space" or "disk_space" in self.state["limits"]]

    def cells(self, now: float) -> dict[str, str]:
        return {c: with_units(c, text) for c, text in zip(COLUMNS, row(self.state, now))}

    def events(self) -> list[dict]:
        out = []
        for e in reversed(self.state.get("events", [])):
            words = EVENT_WORDS.get(e["kind"], e["kind"])
            what = f"{e['count']} {words}"
            if e["kind"] == "held":
                what += f" ({e['seconds']:.2f} s held in all)"
            out.append({"time": time.strftime("%H:%M:%S", time.localtime(e["time"])),
                        "kind": e["kind"], "resource": e.get("resource") or "-", "what": what})
        return out


class Live:
    def __init__(self, render):
        """render(template, **context) -> HTML, for the streamed parts."""
        self.render = render
        self.tracks: dict[str, Track] = {}
        self.tick = 0
        self._changed = asyncio.Event()
        self._cache: dict[tuple, dict] = {}

    async def run(self) -> None:
        while True:
            try:
                self.update(await anyio.to_thread.run_sync(read_states))
            except (OSError, KeyError, TypeError, ValueError):
                # A state file of another shape (another governor's version):
                # the next second is another try; the pages keep the last.
                log.exception("cannot read the state files")
            await asyncio.sleep(TICK)

    def update(self, states: list[dict]) -> None:
        seen = set()
        for st in sort_states(states, "g"):
            key = f"{st['supervisor_pid']}/{st['group']}"
            seen.add(key)
            track = self.tracks.get(key)
            if track is None:
                track = self.tracks[key] = Track(key, st)
            track.add(st)
        for key in set(self.tracks) - seen:
            del self.tracks[key]
        self.tick += 1
        self._cache.clear()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next(self, seen: int) -> int:
        """Waits for a tick after `seen`; returns its number."""
        while self.tick <= seen:
            await self._changed.wait()
        return self.tick

    def ordered(self) -> list[Track]:
        return sorted(self.tracks.values(), key=lambda t: (t.state["group"], t.key))

    def find(self, pid: int, group: str) -> Track | None:
        return self.tracks.get(f"{pid}/{group}")

    # ---- what the pages show and the streams send ----

    def overview(self) -> dict:
        """The Live page's region: its HTML, and the parts that change each
        second by id (cells, plots), so that a page whose groups did not
        change patches them in place and keeps the keyboard focus."""
        if "overview" not in self._cache:
            now = time.time()
            tracks = self.ordered()
            view = [{"track": t, "cells": t.cells(now),
                     "plots": {s: t.plot(s, now, small=True) for s in OVERVIEW}} for t in tracks]
            parts = {}
            for v in view:
                for col, text in v["cells"].items():
                    parts[f"{v['track'].slug}-{col}"] = text
                for s, svg in v["plots"].items():
                    parts[f"{v['track'].slug}-plot-{s}"] = svg
            self._cache["overview"] = {
                "layout": ",".join(t.key for t in tracks), "tick": self.tick,
                "body": self.render("live_body.html", view=view, columns=COLUMNS,
                                    headers=HEADERS, series=OVERVIEW),
                "parts": parts, "html": [k for k in parts if "-plot-" in k]}
        return self._cache["overview"]

    def group_view(self, track: Track) -> dict:
        key = ("group", track.key)
        if key not in self._cache:
            now = time.time()
            plots = {s: track.plot(s, now) for s in track.series()}
            cells = track.cells(now)
            events = track.events()
            parts = {f"{track.slug}-{c}": text for c, text in cells.items()}
            parts.update({f"{track.slug}-plot-{s}": svg for s, svg in plots.items()})
            parts[f"{track.slug}-events"] = self.render("live_events.html", events=events)
            self._cache[key] = {
                "layout": track.key, "tick": self.tick,
                "body": self.render("live_group_body.html", track=track, cells=cells,
                                    columns=COLUMNS, headers=HEADERS, plots=plots,
                                    events=events),
                "parts": parts,
                "html": [k for k in parts if "-plot-" in k or k.endswith("-events")]}
        return self._cache[key]


def routes(console):
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .web import page, stream

    live = console.live

    def track_of(request) -> Track | None:
        return live.find(request.path_params["pid"], request.path_params["group"])

    async def live_page(request):
        return page(request, "live.html", nav="live", live=live.overview())

    async def live_events(request):
        return stream(request, live, live.overview)

    async def group_page(request):
        track = track_of(request)
        if track is None:        # it may have published since the last tick
            live.update(await anyio.to_thread.run_sync(read_states))
            track = track_of(request)
        if track is None:
            raise HTTPException(404, f"no group {request.path_params['group']!r} of supervisor "
                                     f"{request.path_params['pid']} runs now")
        return page(request, "live_group.html", nav="live", track=track,
                    live=live.group_view(track))

    async def group_events(request):
        pid, group = request.path_params["pid"], request.path_params["group"]

        def payload():
            track = live.find(pid, group)
            if track is None:
                return {"layout": "", "final": True, "tick": live.tick,
                        "body": "<p>This group has ended.</p>", "parts": {}, "html": []}
            return live.group_view(track)
        return stream(request, live, payload)

    async def api_live(request):
        return JSONResponse([t.state for t in live.ordered()])

    async def api_group(request):
        track = track_of(request)
        if track is None:
            return JSONResponse({"error": "no such group runs now"}, 404)
        return JSONResponse({"state": track.state,
                             "samples": [{"time": t, **v} for t, v in track.samples]})

    return [Route("/live", live_page), Route("/live/events", live_events),
            Route("/live/{pid:int}/{group}", group_page),
            Route("/live/{pid:int}/{group}/events", group_events),
            Route("/api/live", api_live), Route("/api/live/{pid:int}/{group}", api_group)]
