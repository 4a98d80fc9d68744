"""Groups: class, allocation (limits and guarantees), applications and
containers; create a group, assign and remove applications, edit the
allocation, check admission, install, start, stop. Every change goes
through the catalogue's own functions, which validate as the CLI does."""
from __future__ import annotations

from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse
from starlette.routing import Route

from .._errors import CatalogueError, GovernorError
from ..catalogue import admit, install, list_classes, start, stop, uninstall
from ..catalogue.runner import running
from .forms import GUARANTEE_KEYS, LIMIT_KEYS, allocation_fields, input_value
from .web import api_call, page, read_form, read_json, with_catalogue

# Actions on a group that take no input but its name.
ACTIONS = {"install": install, "uninstall": uninstall, "start": start, "stop": stop,
           "remove": lambda cat, name: cat.remove_group(name) or []}


# What the forms of a group's page do: (catalogue, group, form) -> ...
CHANGES = {
    "allocation": lambda cat, name, form: cat.set_allocation(name, *allocation_fields(form),
                                                             replace=True),
    "assign": lambda cat, name, form: cat.assign(name, form.get("app", "")),
    "unassign": lambda cat, name, form: cat.unassign(name, form.get("app", "")),
    **{what: (lambda act: lambda cat, name, form: act(cat, name))(act)
       for what, act in ACTIONS.items()},
}


def group_view(cat, name: str) -> dict:
    g = cat.group(name)
    return {"group": g, "installed": cat.installed(name), "running": running(cat, name),
            "apps": [a.name for a in cat.apps() if a.name not in g.apps],
            "set_values": {**{f"limit.{k}": input_value(k, v) for k, v in g.limits.items()},
                           **{f"guarantee.{k}": input_value(k, v)
                              for k, v in g.guarantees.items()}}}


def _json_allocation(body: dict) -> tuple[dict, dict]:
    limits, guarantees = body.get("limits") or {}, body.get("guarantees") or {}
    if not isinstance(limits, dict) or not isinstance(guarantees, dict):
        raise CatalogueError("limits and guarantees are objects: {\"memory\": \"256MiB\"}",
                             key="limits")
    return limits, guarantees


def routes(console) -> list[Route]:
    async def groups_page(request, status=200, error=None, form=None):
        groups, classes = await with_catalogue(lambda cat: (cat.groups(), list_classes()))
        return page(request, "groups.html", status, nav="groups", groups=groups,
                    classes=classes, limit_keys=LIMIT_KEYS, guarantee_keys=GUARANTEE_KEYS,
                    form=form or {"class": "gold"}, error=error)

    async def group_page(request, status=200, error=None, form=None, admission=None):
        name = request.path_params["name"]
        try:
            view = await with_catalogue(group_view, name)
        except CatalogueError as e:
            raise HTTPException(404, str(e)) from None
        return page(request, "group.html", status, nav="groups", limit_keys=LIMIT_KEYS,
                    guarantee_keys=GUARANTEE_KEYS, form=form, admission=admission,
                    error=error, **view)

    async def create(request):
        form = await read_form(request)
        limits, guarantees = allocation_fields(form)
        try:
            g = await with_catalogue(lambda cat: cat.create_group(
                form.get("name", "").strip(), form.get("class", ""), limits, guarantees))
        except (GovernorError, OSError) as e:
            return await groups_page(request, 400, e, form)
        return RedirectResponse(f"/groups/{quote(g.name)}", 303)

    async def change(request):
        """The forms of a group's page: allocation, assign, unassign, actions."""
        form = await read_form(request)
        name, what = request.path_params["name"], request.path_params["what"]
        if what not in CHANGES:
            raise HTTPException(404, f"no action {what!r}")
        try:
            await with_catalogue(CHANGES[what], name, form)
        except (GovernorError, OSError) as e:
            admission = getattr(e, "admission", None)
            return await group_page(request, 400, e, form if what == "allocation" else None,
                                    admission)
        return RedirectResponse("/groups" if what == "remove" else f"/groups/{quote(name)}", 303)

    async def admission_page(request):
        name = request.path_params["name"]
        try:
            adm = await with_catalogue(lambda cat: admit(cat, cat.spec(name)))
        except (GovernorError, OSError) as e:
            return await group_page(request, 400, e)
        return await group_page(request, admission=adm)

    # ---- JSON ----

    async def api_groups(request):
        if request.method == "GET":
            return await api_call(lambda cat: cat.groups())
        body = await read_json(request)
        return await api_call(lambda cat: cat.create_group(
            str(body.get("name", "")), str(body.get("class", "gold")), *_json_allocation(body)))

    async def api_group(request):
        name = request.path_params["name"]
        if request.method == "DELETE":
            return await api_call(lambda cat: ACTIONS["remove"](cat, name) or {"removed": name})
        return await api_call(lambda cat: {k: v for k, v in group_view(cat, name).items()
                                           if k != "set_values"})

    async def api_allocation(request):
        body = await read_json(request)
        name = request.path_params["name"]
        return await api_call(lambda cat: cat.set_allocation(name, *_json_allocation(body),
                                                             replace=True))

    async def api_assign(request):
        name = request.path_params["name"]
        if request.method == "DELETE":
            app = request.path_params["app"]
            return await api_call(lambda cat: cat.unassign(name, app))
        body = await read_json(request)
        return await api_call(lambda cat: cat.assign(name, str(body.get("app", ""))))

    async def api_action(request):
        name, what = request.path_params["name"], request.path_params["what"]
        if what not in ACTIONS or what == "remove":
            raise HTTPException(404, f"no action {what!r}")
        return await api_call(lambda cat: ACTIONS[what](cat, name))

    async def api_admission(request):
        name = request.path_params["name"]
        return await api_call(lambda cat: admit(cat, cat.spec(name)))

    async def api_classes(request):
        return await api_call(lambda cat: list_classes())

    return [Route("/groups", groups_page), Route("/groups", create, methods=["POST"]),
            Route("/groups/{name}", group_page),
            Route("/groups/{name}/admission", admission_page),
            Route("/groups/{name}/{what}", change, methods=["POST"]),
            Route("/api/groups", api_groups, methods=["GET", "POST"]),
            Route("/api/groups/{name}", api_group, methods=["GET", "DELETE"]),
            Route("/api/groups/{name}/allocation", api_allocation, methods=["PUT"]),
            Route("/api/groups/{name}/apps", api_assign, methods=["POST"]),
            Route("/api/groups/{name}/apps/{app}", api_assign, methods=["DELETE"]),
            Route("/api/groups/{name}/admission", api_admission),
            Route("/api/groups/{name}/{what}", api_action, methods=["POST"]),
            Route("/api/classes", api_classes)]
