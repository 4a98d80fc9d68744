"""What every page shares: templates, the catalogue opened per request in
a worker thread, forms checked for their CSRF token, JSON bodies, errors
turned into pages or JSON naming the field, and event streams."""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, StreamingResponse
from starlette.templating import Jinja2Templates

from .._errors import AdmissionRefused, CatalogueError, GovernorError, PolicyError
from ..catalogue import Catalogue
from ..catalogue.show import value as shown
from .forms import UNITS, field_of, input_value

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals.update(shown=shown, input_value=input_value, units=UNITS, quote=quote)
BAD_INPUT = (CatalogueError, PolicyError)


def guard(request):
    return request.scope["state"]["guard"]


def page(request, name: str, status: int = 200, **context):
    context.setdefault("error", None)
    context.setdefault("field", field_of(context["error"]) if context["error"] else None)
    return templates.TemplateResponse(request, name, {"csrf": guard(request).csrf, **context},
                                      status_code=status)


def render(name: str, **context) -> str:
    return templates.get_template(name).render(**context)


async def with_catalogue(fn, *args):
    """fn(catalogue, *args) in a worker thread (SQLite and the store do
    blocking I/O), with a catalogue of that thread's own."""
    def call():
        with Catalogue() as cat:
            return fn(cat, *args)
    return await run_in_threadpool(call)


async def read_form(request) -> dict:
    form = await request.form()
    if not guard(request).csrf_ok(form):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def read_json(request) -> dict:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send the body as application/json")
    try:
        body = json.loads(await request.body())
    except ValueError as e:
        raise HTTPException(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def data(obj):
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, (list, tuple)):
        return [data(o) for o in obj]
    if isinstance(obj, dict):
        return {k: data(v) for k, v in obj.items()}
    return obj


def api_error(e: Exception) -> JSONResponse:
    """400 for bad input (with the field), 409 with the table when a host
    cannot hold a group, 500 when governor failed."""
    if isinstance(e, AdmissionRefused):
        return JSONResponse({"error": str(e), "admission": e.admission.as_dict()}, 409)
    if isinstance(e, BAD_INPUT):
        return JSONResponse({"error": str(e), "field": field_of(e)}, 400)
    return JSONResponse({"error": str(e)}, 500)


async def api_call(fn, *args):
    """An API endpoint's answer: fn(catalogue, *args) as JSON, or its error."""
    try:
        return JSONResponse(data(await with_catalogue(fn, *args)))
    except (GovernorError, OSError) as e:
        return api_error(e)


def stream(request, live, payload):
    """Server-sent events: payload() once a second, until the client goes
    or the payload says it is final."""
    async def events():
        seen = -1
        while not await request.is_disconnected():
            seen = await live.next(seen)
            body = payload()
            yield f"data: {json.dumps(body)}\n\n"
            if body.get("final"):
                return
    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
