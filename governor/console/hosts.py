"""Hosts: this host's facts and its capacity against what installed
containers are guaranteed (the admission table, with nothing asked), the
hosts exported to, and an export that shows the remote's admission table
before anything is copied.

ssh options come from the console's command line (--ssh-config,
--remote-governor), never from a request; the URL is checked by Remote
(ssh://[USER@]HOST[:PORT]) and passed to ssh as one argument after its
options."""
from __future__ import annotations

from pathlib import Path

from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from .._errors import GovernorError
from ..catalogue import Remote, admit, export, facts, remote_admission
from .web import api_call, api_error, page, read_form, read_json, with_catalogue

HOST_SPEC = {"group": {"name": "", "class": "", "overcommit": 1.0, "guarantee_share": 1.0,
                       "limits": {}, "guarantees": {}}, "apps": []}


def host_view(cat) -> dict:
    return {"facts": facts(Path(cat.state_dir)), "admission": admit(cat, HOST_SPEC),
            "installed": cat.installed(), "hosts": cat.hosts(),
            "groups": [g.name for g in cat.groups() if g.apps]}


def routes(console) -> list[Route]:
    def remote(url: str) -> Remote:
        return Remote(url.strip(), ssh_config=console.ssh_config, governor=console.remote_governor)

    async def hosts_page(request, status=200, error=None, form=None, remote_table=None):
        view = await with_catalogue(host_view)
        return page(request, "hosts.html", status, nav="hosts", form=form or {}, error=error,
                    remote=remote_table, **view)

    async def check(request):
        form = await read_form(request)
        try:
            adm = await with_catalogue(
                lambda cat: remote_admission(cat, form.get("group", ""), remote(form.get("to", ""))))
        except (GovernorError, OSError) as e:
            return await hosts_page(request, 400, e, form)
        return await hosts_page(request, form=form, remote_table=adm)

    def start_export(group: str, url: str):
        target = remote(url)

        def work(cat, job):
            job.step = "checking the remote's admission, then copying what it lacks"
            return export(cat, group, target).as_dict()

        return console.jobs.start("export", f"export of {group} to {target.url}", work)

    async def do_export(request):
        form = await read_form(request)
        try:
            job = start_export(form.get("group", ""), form.get("to", ""))
        except (GovernorError, OSError) as e:
            return await hosts_page(request, 400, e, form)
        return RedirectResponse(f"/jobs/{job.id}", 303)

    # ---- JSON ----

    async def api_host(request):
        return await api_call(host_view)

    async def api_check(request):
        body = await read_json(request)
        return await api_call(lambda cat: remote_admission(cat, str(body.get("group", "")),
                                                           remote(str(body.get("to", "")))))

    async def api_export(request):
        body = await read_json(request)
        try:
            job = start_export(str(body.get("group", "")), str(body.get("to", "")))
        except (GovernorError, OSError) as e:
            return api_error(e)
        return JSONResponse(job.as_dict(), 202, headers={"Location": f"/api/jobs/{job.id}"})

    return [Route("/hosts", hosts_page), Route("/hosts/check", check, methods=["POST"]),
            Route("/hosts/export", do_export, methods=["POST"]),
            Route("/api/host", api_host), Route("/api/exports/check", api_check, methods=["POST"]),
            Route("/api/exports", api_export, methods=["POST"])]


