"""Who may use the console, and from where.

- **Host header.** Without a token the console listens on loopback only,
  and answers only requests whose Host is that address (or localhost):
  a web page whose name an attacker points at 127.0.0.1 (DNS rebinding)
  is refused.
- **Token.** With --token or --token-file every request carries it: a
  cookie the login sets (HMAC of the token, HttpOnly, SameSite=Strict), or
  `Authorization: Bearer TOKEN` for API clients. `?token=` on a GET logs
  in and redirects to the same page without it.
- **Cross-origin writes.** A request that changes anything (any method but
  GET and HEAD) is refused when its Origin is not the console's own, or
  when the browser says it comes from another site (Sec-Fetch-Site). Forms
  also carry a CSRF token (checked where they are read, `csrf_ok`), and the
  JSON API takes only `application/json` bodies, which a page of another
  origin cannot send without a preflight that the console never allows.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse

COOKIE = "governor_console"
SAFE = ("GET", "HEAD")
MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def safe_next(path: str | None) -> str:
    """A local path to go back to after login; never another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


class Guard:
    """ASGI middleware in front of every route."""

    def __init__(self, app, *, token: str | None, host: str, port: int):
        self.app = app
        self.token = token
        self.session = (hmac.new(token.encode(), b"governor console session",
                                 hashlib.sha256).hexdigest() if token else None)
        self.csrf = secrets.token_urlsafe(32)
        # Names a browser may use for us when we listen on loopback.
        self.hosts = None
        if not token:
            names = {host, "localhost", "127.0.0.1", "[::1]"}
            self.hosts = {f"{n}:{port}" for n in names} | (names if port == 80 else set())

    def authenticated(self, request: Request) -> bool:
        if not self.token:
            return True
        cookie = request.cookies.get(COOKIE, "")
        if cookie and hmac.compare_digest(cookie, self.session):
            return True
        auth = request.headers.get("authorization", "")
        return auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip(), self.token)

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.strip(), self.token)

    def login_response(self, to: str):
        r = RedirectResponse(safe_next(to), status_code=303)
        r.set_cookie(COOKIE, self.session, httponly=True, samesite="strict", path="/")
        return r

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal = self.refuse(request)
        if refusal is not None:
            return await refusal(scope, receive, send)
        scope.setdefault("state", {})["guard"] = self
        return await self.app(scope, receive, send)

    def refuse(self, request: Request):
        api = request.url.path.startswith("/api/")
        host = request.headers.get("host", "")
        if self.hosts is not None and host not in self.hosts:
            return _error(api, 421, f"this console answers to {sorted(self.hosts)[0]}, "
                                    f"not to Host {host!r}")
        if request.method not in SAFE:
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{host}"
            if origin is not None and origin != own:
                return _error(api, 403, f"cross-origin request refused (Origin {origin})")
            if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
                return _error(api, 403, "cross-site request refused")
        if self.token and not self.authenticated(request):
            given = request.query_params.get("token")
            if request.method == "GET" and given is not None and self.token_ok(given):
                rest = {k: v for k, v in request.query_params.items() if k != "token"}
                return self.login_response(request.url.path
                                           + (f"?{urlencode(rest)}" if rest else ""))
            if request.url.path in ("/login", "/static/console.css"):
                return None
            if api or request.method not in SAFE:
                return _error(True, 401, "this console needs its token: "
                                         "Authorization: Bearer TOKEN, or log in")
            return RedirectResponse("/login?" + urlencode({"next": request.url.path}),
                                    status_code=303)
        return None

    def csrf_ok(self, form) -> bool:
        return hmac.compare_digest(str(form.get("csrf", "")), self.csrf)


def _error(api: bool, status: int, message: str):
    if api:
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


def read_token(token: str | None, token_file: str | None) -> str | None:
    """The token from --token or --token-file; ValueError naming the option
    for one that is too short, or a file that others can read."""
    import os
    import stat

    from ..inputfile import read_text

    if token is not None and token_file is not None:
        raise ValueError("--token and --token-file: give one of them")
    if token_file is not None:
        try:
            st = os.stat(token_file)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ValueError(f"--token-file: {token_file} can be read by others "
                                 f"(mode {stat.S_IMODE(st.st_mode):o}): chmod 600 it")
            token = read_text(token_file, f"--token-file: {token_file}").strip()
        except OSError as e:
            raise ValueError(f"--token-file: {token_file}: {e.strerror}") from None
        source = "--token-file"
    else:
        source = "--token"
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise ValueError(f"{source}: a token needs at least {MIN_TOKEN} characters "
                         "(e.g. from: openssl rand -hex 24)")
    return token.strip() if token is not None else None

