"""Applications: the captured ones (catalogue) and the Debian packages
installed on the host; a capture of a package's program, followed on a
job page until its proposed allocation shows.

A capture runs a command as root, so the command is never text from the
request: it is one of the programs that an installed package put in a bin
directory (the list this page shows), and its arguments are passed as a
list, without a shell. The name, working directory and headroom are
checked by the catalogue's capture(), as for `governor capture`."""
from __future__ import annotations

import shlex

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route

from .._errors import CatalogueError, GovernorError
from ..catalogue import capture
from ..catalogue.capture import check_app_name
from ..catalogue.admission import Admission
from .web import BAD_INPUT, api_call, api_error, data, guard, page, read_form, read_json, \
    render, stream, with_catalogue

MAX_DURATION = 3600.0
DEFAULT_DURATION = 10.0


def capture_request(cat, packages, form: dict) -> dict:
    """The capture a form or JSON body asks for, checked: {name, argv,
    packages, workdir, headroom, duration}. CatalogueError names the field."""
    pkg = packages.get(str(form.get("package", "")).strip())
    program = str(form.get("program", "")).strip()
    whole = str(form.get("whole", "")).lower() in ("1", "on", "true", "yes")
    if program and program not in pkg.binaries:
        raise CatalogueError(f"{program!r} is not a program of package {pkg.name} "
                             f"(its programs: {', '.join(pkg.binaries) or 'none'})",
                             key="program")
    if not program and not whole:
        raise CatalogueError("choose a program to run, or take the package whole",
                             key="program")
    try:
        args = shlex.split(str(form.get("args", "")))
    except ValueError as e:
        raise CatalogueError(f"arguments: {e}", key="args") from None
    if args and not program:
        raise CatalogueError("arguments need a program to run", key="args")
    duration = _number(form, "duration", DEFAULT_DURATION)
    headroom = _number(form, "headroom", 50) / 100
    if not 1 <= duration <= MAX_DURATION:
        raise CatalogueError(f"duration: {duration:g} s is not between 1 and "
                             f"{MAX_DURATION:.0f} s", key="duration")
    name = str(form.get("name", "")).strip()
    check_app_name(name)
    if cat.app_exists(name):
        raise CatalogueError(f"application {name!r} exists already", key="name")
    return {"name": name, "argv": [program] + args if program else None,
            "packages": [pkg.name] if whole else [], "workdir":
            str(form.get("workdir") or "/").strip(), "headroom": headroom, "duration": duration}


def _number(form: dict, key: str, default: float) -> float:
    try:
        return float(form.get(key) or default)
    except (TypeError, ValueError):
        raise CatalogueError(f"{key}: {form.get(key)!r} is not a number", key=key) from None


def start_capture(jobs, req: dict):
    def work(catalogue, job):
        logs = catalogue.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"capture-{req['name']}.log", "ab") as out:
            result = capture(catalogue, req["name"], req["argv"], packages=req["packages"],
                             workdir=req["workdir"], headroom=req["headroom"],
                             duration=req["duration"] if req["argv"] else None, stop=job.stop,
                             stdout=out.fileno(), stderr=out.fileno(),
                             progress=lambda step: setattr(job, "step", step))
        return result.as_dict()

    what = " ".join(req["argv"]) if req["argv"] else f"package {req['packages'][0]}"
    return jobs.start("capture", f"capture of {req['name']} ({what})", work,
                      req["duration"] if req["argv"] else None)


def routes(console) -> list[Route]:
    packages, jobs = console.packages, console.jobs

    async def apps_page(request):
        q = request.query_params.get("q", "")
        apps = await with_catalogue(lambda cat: cat.apps())
        words = q.lower().split()
        shown = [a for a in apps if all(w in a.name.lower() or w in " ".join(a.entrypoint).lower()
                                        for w in words)]
        found, total = packages.search(q)
        return page(request, "apps.html", nav="apps", q=q, apps=shown, packages=found,
                    total=total)

    async def app_page(request):
        name = request.path_params["name"]
        try:
            app = await with_catalogue(lambda cat: cat.app(name))
        except CatalogueError as e:
            raise HTTPException(404, str(e)) from None
        return page(request, "app.html", nav="apps", app=app)

    async def app_remove(request):
        await read_form(request)
        name = request.path_params["name"]
        try:
            await with_catalogue(lambda cat: cat.remove_app(name))
        except BAD_INPUT as e:
            app = await with_catalogue(lambda cat: cat.app(name))
            return page(request, "app.html", 400, nav="apps", app=app, error=e)
        return RedirectResponse("/apps", 303)

    def capture_form(request, form: dict, status=200, error=None):
        pkg = None
        try:
            pkg = packages.get(form.get("package", ""))
        except CatalogueError as e:
            error = error or e
        return page(request, "capture.html", status, nav="apps", pkg=pkg, form=form, error=error,
                    max_duration=MAX_DURATION)

    async def capture_page(request):
        name = request.query_params.get("package", "")
        default = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:63]
        return capture_form(request, {"package": name, "name": default,
                                      "duration": f"{DEFAULT_DURATION:g}", "headroom": "50",
                                      "workdir": "/"})

    async def capture_post(request):
        form = await read_form(request)
        try:
            job = await with_catalogue(
                lambda cat: start_capture(jobs, capture_request(cat, packages, form)))
        except BAD_INPUT as e:
            return capture_form(request, form, 400, e)
        return RedirectResponse(f"/jobs/{job.id}", 303)

    def job_of(request):
        job = jobs.get(request.path_params["id"])
        if job is None:
            raise HTTPException(404, "no such job (the console keeps the last 50)")
        return job

    def job_context(job) -> dict:
        d = job.as_dict()
        return {"job": d, "admission": Admission.from_dict(d["admission"]) if d["admission"]
                else None}

    def job_payload(job, csrf: str) -> dict:
        context = job_context(job)
        return {"layout": job.state, "tick": 0, "final": job.state != "running",
                "body": render("job_body.html", csrf=csrf, **context),
                "parts": {"job-progress": render("job_progress.html", **context)},
                "html": ["job-progress"]}

    async def job_page(request):
        job = job_of(request)
        return page(request, "job.html", nav="apps" if job.kind == "capture" else "hosts",
                    **job_context(job))

    async def job_events(request):
        job = job_of(request)
        csrf = guard(request).csrf
        return stream(request, console.live, lambda: job_payload(job, csrf))

    async def job_stop(request):
        await read_form(request)
        job = job_of(request)
        job.stop.set()
        return RedirectResponse(f"/jobs/{job.id}", 303)

    # ---- JSON ----

    async def api_apps(request):
        return await api_call(lambda cat: cat.apps())

    async def api_app(request):
        name = request.path_params["name"]
        if request.method == "DELETE":
            return await api_call(lambda cat: cat.remove_app(name) or {"removed": name})
        return await api_call(lambda cat: cat.app(name))

    async def api_packages(request):
        limit = request.query_params.get("limit", "50")
        if not limit.isdigit():
            raise HTTPException(400, f"limit: {limit!r} is not a whole number")
        found, total = packages.search(request.query_params.get("q", ""), int(limit))
        return JSONResponse({"total": total, "packages": data(found)})

    async def api_capture(request):
        body = await read_json(request)
        try:
            job = await with_catalogue(
                lambda cat: start_capture(jobs, capture_request(cat, packages, body)))
        except (GovernorError, OSError) as e:
            return api_error(e)
        return JSONResponse(job.as_dict(), 202, headers={"Location": f"/api/jobs/{job.id}"})

    async def api_job(request):
        job = job_of(request)
        if request.method == "POST":
            job.stop.set()
        return JSONResponse(job.as_dict())

    return [Route("/apps", apps_page), Route("/apps/{name}", app_page),
            Route("/apps/{name}/remove", app_remove, methods=["POST"]),
            Route("/capture", capture_page), Route("/capture", capture_post, methods=["POST"]),
            Route("/jobs/{id}", job_page), Route("/jobs/{id}/events", job_events),
            Route("/jobs/{id}/stop", job_stop, methods=["POST"]),
            Route("/api/apps", api_apps), Route("/api/apps/{name}", api_app,
                                                methods=["GET", "DELETE"]),
            Route("/api/packages", api_packages),
            Route("/api/captures", api_capture, methods=["POST"]),
            Route("/api/jobs/{id}", api_job), Route("/api/jobs/{id}/stop", api_job,
                                                    methods=["POST"])]

