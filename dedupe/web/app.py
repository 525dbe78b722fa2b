"""The review page over HTTP: a Starlette app behind a guard, served by uvicorn on 127.0.0.1.

The page can delete files, so every request passes the Guard first: the Host must be the address served (a DNS
rebinding page has its own host name), the token must come with it (in the URL once, then in an HttpOnly
SameSite=Strict cookie), and a request that changes anything must be a POST carrying the token in a header from
the page's own origin (a cross-site form or fetch can send the cookie but neither the header nor the origin).
Files are served by their place in the current grouping only; no path is ever taken from a request.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import signal
import socket
import sys
import threading
import webbrowser
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlencode

import uvicorn
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dedupe import DedupeError, Store, __version__
from dedupe.models import Action
from dedupe.web.state import Decision, GroupLoader, Planner, ReviewState, StaleGrouping, StalePlan, result_view
from dedupe.web.thumbs import BROWSER_FORMATS, VIEW_SIDE, Thumbnails, read_checked, thumbnail_folder

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "dedupe_token"
TOKEN_HEADER = "x-dedupe-token"
# Only the page's own files: no inline script or style, nothing from elsewhere, never framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # the token in the first URL never leaves in a Referer
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PAGE = 100  # groups per page of the group list
PREFETCH = 3  # groups ahead whose thumbnails are made while the user looks at one


class Guard:
    """Host, token and origin checks in front of every request (see the module's docstring)."""

    def __init__(self, app: ASGIApp, token: str, hosts: set[str], any_ip_port: int | None = None) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.any_ip_port = any_ip_port  # bound to every address: any IP literal with this port is the server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if not self._host_ok(host):
            await _refuse(send, "unknown Host: open the address dedupe printed")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        from_url = query.get("token", [""])[0]
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if from_url and self._same(from_url) and scope["method"] == "GET":
            # Trade the token in the URL for a cookie, and drop it from the address bar and history.
            rest = {k: v for k, v in query.items() if k != "token"}
            target = scope["path"] + (f"?{urlencode(rest, doseq=True)}" if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, self._secure(send))
            return
        if not self._same(cookie):
            await _refuse(send, "no valid token: open the address dedupe printed, with its ?token=")
            return
        if scope["method"] not in ("GET", "HEAD"):
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site", "same-origin")
            if origin != f"http://{host}" or fetch_site != "same-origin":
                await _refuse(send, "cross-origin request refused")
                return
            if not self._same(headers.get(TOKEN_HEADER, "")):
                await _refuse(send, f"a change needs the {TOKEN_HEADER} header")
                return
        await self.app(scope, receive, self._secure(send))

    def _same(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _host_ok(self, host: str) -> bool:
        if host in self.hosts:
            return True
        if self.any_ip_port is None:
            return False
        name, _, port = host.rpartition(":")
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False  # a name: it could point anywhere (DNS rebinding)
        return port == str(self.any_ip_port)

    @staticmethod
    def _secure(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in HEADERS if k not in names]
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return wrapped


async def _refuse(send: Send, why: str) -> None:
    body = f"403 Forbidden: {why}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *HEADERS, (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _cookie(header: str, name: str) -> str:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return ""


def create_app(
    state: ReviewState, thumbs: Thumbnails, token: str, hosts: set[str], any_ip_port: int | None = None
) -> ASGIApp:
    """The review app for a state; hosts are the Host header values it answers to ("127.0.0.1:8000")."""
    templates = Environment(loader=PackageLoader("dedupe.web", "templates"), autoescape=select_autoescape())
    index_page = templates.get_template("index.html")

    async def index(request: Request) -> Response:
        return HTMLResponse(index_page.render(token=token, version=__version__, action=state.action.value))

    async def overview(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(state.overview))

    async def groups(request: Request) -> Response:
        offset = _int(request.query_params.get("offset"), 0)
        limit = min(_int(request.query_params.get("limit"), PAGE), 1000)
        return JSONResponse(await run_in_threadpool(state.summaries, offset, limit))

    async def group(request: Request) -> Response:
        (i,) = _numbers(request, "i")
        try:
            view = await run_in_threadpool(state.describe, i)
        except IndexError:  # none such, or none since an apply or undo (another tab) made the groups again
            return _not_found()
        ahead = state.groups[i + 1 : i + 1 + PREFETCH]
        thumbs.prefetch(m.file for g in ahead for m in g.members)
        return JSONResponse(view)

    async def decide(request: Request) -> Response:
        (i,) = _numbers(request, "i")
        body = await _json(request)
        if body is None:  # the group is looked up by state.decide, after the grouping the page showed
            return _bad("expected a JSON object for an existing group")
        try:
            decision = Decision(body.get("state", ""))
            keeper = body.get("keeper")
            keep_too = body.get("keep_too", [])
            generation = body.get("generation")  # the grouping the page showed
            if any(v is not None and not _is_int(v) for v in (keeper, generation)):
                raise ValueError
            if not isinstance(keep_too, list) or not all(_is_int(m) for m in keep_too):
                raise ValueError
            await run_in_threadpool(state.decide, i, decision, keeper, keep_too, generation)
        except StaleGrouping as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        except (ValueError, IndexError):
            return _bad("not a decision: state, keeper (a member number) and keep_too (member numbers)")
        except DedupeError as e:
            return _bad(str(e))
        try:
            return JSONResponse(await run_in_threadpool(state.describe, i))
        except IndexError:  # the groups were made again (another tab) since the decision
            return JSONResponse({"error": StaleGrouping.reload}, status_code=409)

    async def accept_preview(request: Request) -> Response:
        kind = request.query_params.get("kind", "")
        if kind not in ("exact", "near"):
            return _bad("kind is exact or near")
        return JSONResponse(await run_in_threadpool(state.accept_preview, kind))

    async def accept(request: Request) -> Response:
        body = await _json(request)
        kind = (body or {}).get("kind")
        if kind not in ("exact", "near"):
            return _bad("kind is exact or near")
        accepted = await run_in_threadpool(state.accept_all, kind)
        return JSONResponse({"accepted": accepted})

    async def plan(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(state.plan_view))

    async def apply(request: Request) -> Response:
        body = await _json(request)
        shown = (body or {}).get("plan")
        if not isinstance(shown, str):
            return _bad("apply needs the id of the plan shown")
        try:
            result = await run_in_threadpool(state.apply, shown)
        except StalePlan as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        except DedupeError as e:
            return _bad(str(e))
        return JSONResponse(result_view(result))

    async def progress(request: Request) -> Response:
        done, total = state.progress
        return JSONResponse({"done": done, "total": total})

    async def undo(request: Request) -> Response:
        run = (await _json(request) or {}).get("run")  # the run the page's button names, if it names one
        if run is not None and not _is_int(run):
            return _bad("run is the number of a run")
        try:
            result = await run_in_threadpool(state.undo, run)
        except DedupeError as e:
            return _bad(str(e))
        return JSONResponse(result_view(result, undoing=True))

    async def thumb(request: Request) -> Response:
        f = state.member(*_numbers(request, "gen", "i", "m"))
        if f is None:
            return _not_found()
        data = await thumbs.get(f)
        if data is None:
            return _not_found("no preview: the file changed since the scan, or cannot be decoded")
        return Response(data, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})

    async def full(request: Request) -> Response:
        f = state.member(*_numbers(request, "gen", "i", "m"))
        if f is None:
            return _not_found()
        media = BROWSER_FORMATS.get(f.fingerprint.format)
        data = await run_in_threadpool(read_checked, f) if media else await thumbs.get(f, VIEW_SIDE)
        if data is None:
            return _not_found("the file changed since the scan, or cannot be decoded")
        return Response(data, media_type=media or "image/jpeg", headers={"cache-control": "private, max-age=3600"})

    static = Path(__file__).with_name("static")
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/overview", overview),
            Route("/api/groups", groups),
            Route("/api/group/{i}", group),
            Route("/api/group/{i}/decide", decide, methods=["POST"]),
            Route("/api/accept-preview", accept_preview),
            Route("/api/accept", accept, methods=["POST"]),
            Route("/api/plan", plan),
            Route("/api/apply", apply, methods=["POST"]),
            Route("/api/progress", progress),
            Route("/api/undo", undo, methods=["POST"]),
            Route("/thumb/{gen}/{i}/{m}", thumb),
            Route("/full/{gen}/{i}/{m}", full),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ],
    )
    return Guard(app, token, hosts, any_ip_port)


def _int(value: str | None, default: int) -> int:
    try:
        return max(0, int(value)) if value is not None else default
    except ValueError:
        return default


def _numbers(request: Request, *names: str) -> list[int]:
    """The numbers in a page URL's path, -1 for one that is no number of at most 18 ASCII digits: outside every
    grouping, so a 404. (Starlette's int convertor would hand int() thousands of digits, which it refuses.)"""
    values = (request.path_params[name] for name in names)
    return [int(v) if v.isascii() and v.isdigit() and len(v) <= 18 else -1 for v in values]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no member number


async def _json(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None
    return body if isinstance(body, dict) else None


def _bad(why: str) -> Response:
    return JSONResponse({"error": why}, status_code=400)


def _not_found(why: str = "not in the current grouping") -> Response:
    return PlainTextResponse(f"404 Not Found: {why}\n", status_code=404)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_review(
    store: Store,
    load: GroupLoader,
    planner: Planner,
    *,
    action: Action = Action.TRASH,
    host: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = True,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """Serve the review page until Ctrl-C or SIGTERM, printing its address (with the token) on out.

    load gives the groups (again after every apply and undo); planner makes the Plan for groups and the keepers
    chosen on the page (the same plan the command line applies). port 0: a free port.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle off only on sockets that say they are TCP (40 ms per keep-alive answer)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DedupeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    hosts = {f"{shown_host}:{port}".lower()}
    if _is_loopback(host):
        hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
    else:
        print(
            f"warning: serving on {host}, not only this computer: anyone who can reach it and gets the link can"
            " delete files",
            file=err,
            flush=True,
        )
    wildcard = host in ("0.0.0.0", "::")
    token = secrets.token_urlsafe(24)
    thumbs = Thumbnails(thumbnail_folder(store.path))
    try:
        state = ReviewState(store, load, planner, action)
        app = create_app(state, thumbs, token, hosts, port if wildcard else None)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        # Ctrl-C or SIGTERM from the moment the address is out: a stop, not a traceback or a kill. uvicorn puts
        # its own handlers in while it runs, and raises what it caught again with ours back in place.
        previous = {s: signal.signal(s, lambda *_: setattr(server, "should_exit", True)) for s in _STOP_SIGNALS}
        try:
            url_host = "127.0.0.1" if wildcard else shown_host
            url = f"http://{url_host}:{port}/?token={token}"
            print(f"Review at {url}", file=out, flush=True)
            if open_browser:
                threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
            server.run(sockets=[sock])
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        thumbs.close()
        sock.close()
