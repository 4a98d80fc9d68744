"""The console's ASGI application: the pages and the JSON API beneath them
(/api/...), behind the Guard (security.py), with the Live sampler running
for as long as the application does."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import apps, groups, hosts
from .live import Live, routes as live_routes
from .jobs import Jobs
from .packages import HostPackages
from .security import Guard, safe_next
from .web import HERE, page, read_form, render


@dataclass
class Console:
    """What the routes share."""

    token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8470
    ssh_config: str | None = None
    remote_governor: str = "governor"
    packages: HostPackages = field(default_factory=HostPackages)
    jobs: Jobs = field(default_factory=Jobs)
    live: Live = field(default_factory=lambda: Live(render))


def create_app(console: Console) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(_app):
        sampler = asyncio.create_task(console.live.run())
        try:
            yield
        finally:
            sampler.cancel()

    async def login_page(request):
        return page(request, "login.html", next=safe_next(request.query_params.get("next")))

    async def login(request):
        guard = request.scope["state"]["guard"]
        form = await read_form(request)
        if not guard.token_ok(form.get("token", "")):
            return page(request, "login.html", 401, next=safe_next(form.get("next")),
                        error=ValueError("that is not the console's token"))
        return guard.login_response(form.get("next", "/"))

    async def home(request):
        return RedirectResponse("/live", 303)

    async def http_error(request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": exc.detail}, exc.status_code)
        if "guard" not in request.scope.get("state", {}):
            return PlainTextResponse(exc.detail, exc.status_code)
        return page(request, "error.html", exc.status_code, message=exc.detail)

    routes = [Route("/", home), Route("/login", login_page), Route("/login", login, methods=["POST"]),
              *apps.routes(console), *groups.routes(console), *hosts.routes(console),
              *live_routes(console),
              Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error},
                     middleware=[Middleware(Guard, token=console.token, host=console.host,
                                            port=console.port)])
