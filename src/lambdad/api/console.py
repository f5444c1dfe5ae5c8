"""The web console (docs/console.md): static pages under ``/console/`` on a port of its own,
talking to the same API routes as the main port.

In SigV4 mode a request speaks for the caller its session cookie names: ``POST /console/login``
takes an access key id and secret (of ``lambdad keys``), checks them against the key file and
sets an HttpOnly, SameSite=Strict cookie holding a random token; the server keeps the token's
caller in memory (a restart logs everyone out). A page asked for without a session gets the
login page; an API request gets ``MissingAuthenticationTokenException`` (403), never a 500.
In open mode there is no login, as the API asks for none. Requests that change something
carry ``X-Lambdad-Console`` (a header a cross-site form cannot set).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import importlib.resources
import secrets
import time
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from lambdad import errors
from lambdad.api.auth import CALLER
from lambdad.api.lambda_api import FUNCTIONS, scope_of
from lambdad.api.platform import LOGS
from lambdad.api.sigv4 import SigV4Verifier, Verified

COOKIE = "lambdad_console"
#: Header every console request that changes something carries (CSRF guard).
CSRF_HEADER = "X-Lambdad-Console"
#: How long a session lasts from its login (AWS console sessions: 12 hours).
SESSION_SECONDS = 12 * 3600
_ASSETS = Path(str(importlib.resources.files("lambdad.api") / "console_assets"))
#: Paths answered without a session: the login page, its assets.
_OPEN_PREFIXES = ("/console/login", "/console/assets/")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_LAMBDA_PREFIX = "/aws/lambda/"
#: Functions one summary request may ask about (a page of the list is 50).
MAX_SUMMARY = 100


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    caller: Verified
    expires: float


class Sessions:
    """The console's sessions: token -> caller, in memory."""

    def __init__(self) -> None:
        self._by_token: dict[str, Session] = {}

    def open(self, caller: Verified, now: float) -> str:
        self._sweep(now)
        token = secrets.token_urlsafe(32)
        self._by_token[token] = Session(caller, now + SESSION_SECONDS)
        return token

    def caller(self, token: str | None, now: float) -> Verified | None:
        found = self._by_token.get(token) if token else None
        if found is None or found.expires <= now:
            return None
        return found.caller

    def end(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def _sweep(self, now: float) -> None:
        for token in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[token]


@dataclasses.dataclass(frozen=True, slots=True)
class Login:
    """How the console logs in: ``verifier`` None means open mode (no login)."""

    verifier: SigV4Verifier | None
    default_region: str


SESSIONS = web.AppKey("console_sessions", Sessions)
LOGIN = web.AppKey("console_login", Login)

routes = web.RouteTableDef()


def session_middleware(sessions: Sessions) -> Middleware:
    """Attach the session's caller (SigV4 mode); a request without one gets the login page
    (pages) or AWS's missing-token error (API)."""

    @web.middleware
    async def attach(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if (
            request.method not in _SAFE_METHODS
            and path != "/console/login"
            and request.headers.get(CSRF_HEADER) != "1"
        ):
            raise errors.MissingAuthenticationTokenException(
                f"Console requests that change something must carry {CSRF_HEADER}: 1"
            )
        login = request.app[LOGIN]
        if login.verifier is None or path.startswith(_OPEN_PREFIXES):
            return await handler(request)
        caller = sessions.caller(request.cookies.get(COOKIE), time.time())
        if caller is not None and login.verifier.holds(caller.identity.access_key_id):
            request[CALLER] = caller
            return await handler(request)
        if path == "/" or path.startswith("/console"):
            raise web.HTTPSeeOther("/console/login")
        raise errors.MissingAuthenticationTokenException("Log in at /console/login")

    return attach


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/")


@routes.get("/console")
async def console_bare(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console/")


@routes.get("/console/")
async def index(request: web.Request) -> web.FileResponse:
    return _asset("index.html")


@routes.get("/console/assets/{name}")
async def asset(request: web.Request) -> web.FileResponse:
    return _asset(request.match_info["name"])


def _asset(name: str) -> web.FileResponse:
    if "/" in name or name.startswith(".") or not (_ASSETS / name).is_file():
        raise web.HTTPNotFound(text="not found")
    return web.FileResponse(_ASSETS / name, headers={"Cache-Control": "no-cache"})


@routes.get("/console/login")
async def login_page(request: web.Request) -> web.Response:
    login = request.app[LOGIN]
    if login.verifier is None:  # open mode: nothing to log in to
        raise web.HTTPSeeOther("/console/")
    return _login_page(login.default_region, "")


@routes.post("/console/login")
async def login_post(request: web.Request) -> web.Response:
    """Check the key pair; on success a session cookie and the console, else the login page
    saying why (401)."""
    login = request.app[LOGIN]
    if login.verifier is None:
        raise web.HTTPSeeOther("/console/")
    form = await request.post()
    key_id = str(form.get("access_key_id", "")).strip()
    secret = str(form.get("secret_access_key", ""))
    region = str(form.get("region", "")).strip() or login.default_region
    identity = login.verifier.identity_of(key_id, secret) if key_id and secret else None
    if identity is None or not _region_ok(region):
        page = _login_page(
            region if _region_ok(region) else login.default_region, key_id, failed=True
        )
        page.set_status(401)
        return page
    token = request.app[SESSIONS].open(Verified(identity, region), time.time())
    response = web.HTTPSeeOther("/console/")
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        path="/",
    )
    raise response


@routes.post("/console/logout")
async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].end(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(COOKIE, path="/")
    raise response


@routes.get("/_lambdad/console/whoami")
async def whoami(request: web.Request) -> web.Response:
    """The console's caller: account, region, user (None in open mode), whether to show a
    logout button."""
    scope = scope_of(request)
    caller = request.get(CALLER)
    return web.json_response(
        {
            "account": scope.account_id,
            "region": scope.region,
            "user": caller.identity.name if caller is not None else None,
            "session": caller is not None,
        }
    )


@routes.get("/_lambdad/console/summary")
async def summary(request: web.Request) -> web.Response:
    """What the function list shows beyond ``ListFunctions`` (which, as on AWS, carries no
    ``State``), for each ``name`` asked (at most ``MAX_SUMMARY``): its ``$LATEST`` state and
    the time (ms) of the last event in its ``/aws/lambda/<name>`` log group, when it last ran
    as far as its logs tell. A name with no function is left out."""
    asked = request.query.getall("name", [])[:MAX_SUMMARY]
    names = [n for n in asked if 0 < len(n) <= 64 and n.replace("-", "").replace("_", "").isalnum()]
    scope = scope_of(request)
    logs = request.app[LOGS]
    functions = request.app[FUNCTIONS]
    found: dict[str, dict[str, object]] = {}
    configs = await functions.latest_of(scope, names)
    for name, config in configs.items():
        key = (scope.account_id, scope.region, _LAMBDA_PREFIX + name)
        last = None
        with contextlib.suppress(errors.ResourceNotFoundException):
            streams = logs.group(key).streams.values()
            last = max((s.last_ms for s in streams if s.last_ms), default=None)
        found[name] = {"state": str(config.state), "lastInvocation": last}
    return web.json_response({"functions": found})


def _region_ok(region: str) -> bool:
    return 0 < len(region) <= 32 and all(c.isalnum() or c == "-" for c in region)


@functools.cache
def _login_template() -> str:
    return (_ASSETS / "login.html").read_text()


def _login_page(region: str, key_id: str, failed: bool = False) -> web.Response:
    text = _login_template()
    text = text.replace("{{region}}", html.escape(region, quote=True))
    text = text.replace("{{key_id}}", html.escape(key_id, quote=True))
    message = "The access key id or secret is not valid." if failed else ""
    text = text.replace("{{error}}", message)
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})
