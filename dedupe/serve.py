"""`dedupe serve`: checking uploads against a ban list over HTTP, for web sites whatever their language.

The model is Meta's Hasher-Matcher-Actioner: banks of hashes behind a small JSON API, an in-memory index that is
loaded again when the store changes, PostgreSQL underneath when several servers share one list. Here:

- Service owns two store connections (one for requests, one for loading) and the current SearchIndex. A thread
  polls the store's change counter (PRAGMA data_version in SQLite, a trigger-kept counter in PostgreSQL) and
  swaps in a new index when it moved: requests keep using the old one meanwhile, so none waits.
- create_app builds the Starlette (ASGI) application; run serves it with uvicorn, which finishes the requests
  in flight on SIGTERM. Uploads are decoded with fingerprint's decoder allow-list and bomb limit, the body limit
  is enforced while the body is read, and every failure is a JSON {"error": "..."} with its status.
"""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import os
import socket
import sqlite3
import sys
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from dedupe import fingerprint
from dedupe.errors import DedupeError, FileSkipped
from dedupe.exchange import read_list
from dedupe.formats import hit_json
from dedupe.match import DEFAULT_THRESHOLD, MAX_THRESHOLD
from dedupe.models import ListedFingerprint
from dedupe.search import SearchIndex, check, find_similar
from dedupe.serve_openapi import openapi
from dedupe.store import Store, failure
from dedupe.store_pg import PostgresStore, is_postgres, open_any

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

INSTALL = "pip install 'photo-dedupe[serve]'"
DEFAULT_PORT = 8765
DEFAULT_MAX_BYTES = 50_000_000
# The scan's limit: Pillow refuses a picture over twice MAX_IMAGE_PIXELS as a decompression bomb.
DEFAULT_MAX_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
IMAGE_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/webp",
    "image/heic",
    "image/heif",
    "image/avif",
    "application/octet-stream",  # bytes of any of those: the content decides
)
# Image formats the scan's decoder allow-list refuses, recognised by their first bytes so that the answer can be
# "unsupported type" (415) rather than "not an image" (400). None of them reaches a decoder.
_REFUSED_FORMATS = (
    (b"8BPS", "Photoshop (PSD)"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"\x00\x00\x01\x00", "Windows icon"),
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"gimp xcf", "GIMP (XCF)"),
)
_LOOPBACK_NAMES = ("localhost",)
_OPTIONS_ENV = "DEDUPE_SERVE_OPTIONS"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    tokens: tuple[str, ...] = ()  # bearer tokens allowed to write (and to read, where reads need one)
    threshold: int = DEFAULT_THRESHOLD
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    public_reads: bool = False
    refresh: float = 1.0  # seconds between looks at the store's change counter
    workers: int = 1
    search_limit: int = 10

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_tokens(path: str) -> tuple[str, ...]:
    """Bearer tokens, one a line; blank lines and lines starting with # are passed over."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DedupeError(f"cannot read the token file {path}: {getattr(e, 'strerror', None) or e}") from None
    tokens = tuple(t for line in text.splitlines() if (t := line.strip()) and not t.startswith("#"))
    if not tokens:
        raise DedupeError(f"the token file {path} holds no token")
    # A header carries bytes that Starlette reads as Latin-1, while clients encode other characters each their own
    # way (httpx and curl as UTF-8): such a token would be refused with 403 whatever the client sent.
    if not all(t.isascii() for t in tokens):
        raise DedupeError(f"the token file {path} holds a token that is not ASCII: HTTP headers carry ASCII only")
    return tokens


class ApiError(Exception):
    """A request that cannot be answered: its HTTP status and a message for the caller."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(slots=True)
class _State:
    index: SearchIndex
    version: int
    refreshed_at: float
    refreshes: int = 0
    errors: list[str] = field(default_factory=list)


class Service:
    """The store connections and the current index of a running server; thread-safe."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.store: Store | PostgresStore = open_any(options.db)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            self._loader: Store | PostgresStore = open_any(options.db, readonly=not is_postgres(options.db))
        except BaseException:
            self.store.close()
            raise
        try:
            version = self._loader.data_version()
            self._state = _State(SearchIndex.load(self.store, source=self._loader), version, time.time())
        except BaseException:
            self.close()
            raise

    @property
    def index(self) -> SearchIndex:
        return self._state.index

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="dedupe-serve-refresh", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.store.close()
        self._loader.close()

    def refresh(self, *, force: bool = False) -> bool:
        """Load a new index when the store changed (or when forced); True when one was loaded."""
        with self._lock:
            version = self._loader.data_version()
            if not force and version == self._state.version:
                return False
            index = SearchIndex.load(self.store, source=self._loader)
            self._state = _State(index, version, time.time(), self._state.refreshes + 1)
            return True

    def _follow(self) -> None:
        while not self._stop.wait(self.options.refresh):
            try:
                self.refresh()
            except DedupeError as e:  # a store briefly unreachable: keep the index in use and try again
                print(f"dedupe serve: cannot refresh the index: {e}", file=sys.stderr, flush=True)

    def status(self) -> dict[str, Any]:
        state = self._state
        return {
            "fingerprints": len(state.index) - len(state.index.pdq),
            "pdq_hashes": len(state.index.pdq),
            "algorithm": fingerprint.VERSION,
            "store": "postgresql" if is_postgres(self.options.db) else "sqlite",
            "refreshed_at": datetime.fromtimestamp(state.refreshed_at, UTC).isoformat(timespec="milliseconds"),
            "refreshes": state.refreshes,
            "threshold": self.options.threshold,
            "process": os.getpid(),  # which worker answered (--workers): each holds its own index
        }


# --- requests -------------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it passes the limit (never buffered whole first)."""
    # Connection: close, or the server would go on reading (and throwing away) whatever the client sends.
    close = {"Connection": "close"}
    # As a query's numbers: "²" passes isdigit and not int(). uvicorn refuses such a header, another ASGI server
    # may not; a length past 18 digits is left to the count below.
    declared = whole_number(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise ApiError(413, f"the body is {declared:,} bytes; the limit is {limit:,}", close)
    from starlette.requests import ClientDisconnect

    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over the limit of {limit:,} bytes", close)
            chunks.append(chunk)
    except ClientDisconnect:
        # A truncated upload: the answer reaches nobody, but it keeps the log free of an "internal error".
        raise ApiError(400, f"the upload was cut off after {size:,} bytes: the client closed the connection") from None
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def multipart_field(body: bytes, content_type: str, name: str) -> bytes:
    """The value of one field of a multipart/form-data body."""
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, given = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = given.strip('"')
    if not boundary:
        raise ApiError(400, "a multipart body needs a boundary in its Content-Type")
    delimiter = b"--" + boundary.encode("latin-1")
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        disposition = next(
            (line for line in head.decode("latin-1").split("\r\n") if line.lower().startswith("content-disposition:")),
            "",
        )
        names = [p.strip() for p in disposition.split(";")[1:]]
        if f'name="{name}"' in names or f"name={name}" in names:
            return value.removesuffix(b"\r\n")
    raise ApiError(400, f"the multipart body has no field named {name!r}")


async def image_of(request: Request, limit: int) -> bytes:
    """The uploaded image: the raw body with an image type, or the multipart field "image"."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        body = await read_body(request, limit)
        return multipart_field(body, request.headers.get("content-type", ""), "image")
    if kind in IMAGE_TYPES:
        return await read_body(request, limit)
    shown = kind or "none given"
    raise ApiError(
        415,
        f"unsupported content type ({shown}): send the image's bytes as one of {', '.join(IMAGE_TYPES[:-1])}"
        " or application/octet-stream, or a multipart/form-data field named 'image'",
    )


def vet_image(data: bytes, max_pixels: int) -> None:
    """Refuse what is not a photo before any decoding: not an image (400), or too many pixels (422)."""
    if not data:
        raise ApiError(400, "the body is empty: send an image")
    if fingerprint.sniff_format(data[:64]) is None:
        for signature, name in _REFUSED_FORMATS:
            if data.lstrip()[: len(signature)].lower() == signature.lower():
                raise ApiError(415, f"unsupported image type ({name}): send a JPEG, PNG, GIF, BMP, TIFF, WebP or HEIF")
        raise ApiError(400, "not an image (unrecognised content): send a JPEG, PNG, GIF, BMP, TIFF, WebP or HEIF")
    try:
        im = fingerprint.open_image(data)  # the header only
        width, height = im.size
    except Image.DecompressionBombError as e:
        raise ApiError(422, f"refused as a decompression bomb: {str(e).splitlines()[0]}") from None
    except Exception:
        return  # fingerprinting words what is wrong with it
    if width * height > max_pixels:
        raise ApiError(422, f"{width}x{height} is over the pixel limit of {max_pixels:,}")


def skipped_error(e: FileSkipped) -> ApiError:
    reason = e.reason
    if "decompression bomb" in reason or "too large to decode" in reason:
        return ApiError(422, reason)
    return ApiError(400, reason)


def whole_number(raw: str) -> int | None:
    """raw as a whole number that SQLite can hold, or None: ASCII digits only (superscripts and Arabic-Indic
    digits pass str.isdigit), and few enough that int() never refuses them (it does past 4,300 digits)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def query_int(request: Request, name: str, default: int, low: int, high: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = whole_number(raw)
    if value is None or value < low or (high is not None and value > high):
        top = "" if high is None else f" and {high}"
        shown = raw if len(raw) <= 40 else f"{raw[:40]}..."
        raise ApiError(400, f"{name} should be a whole number between {low}{top}, not {shown!r}")
    return value


def text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:  # PostgreSQL cannot store or compare one: its error would be a 503
        raise ApiError(400, f"{name} cannot hold a NUL character")
    return value


def create_app(options: ServeOptions, service: Service | None = None) -> Starlette:
    """The ASGI application. Without a service, one is opened when the application starts and closed at its end."""
    try:
        from starlette.applications import Starlette
        from starlette.concurrency import run_in_threadpool
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route
    except ImportError:
        raise DedupeError(f"dedupe serve needs Starlette and uvicorn: {INSTALL}") from None

    holder: dict[str, Service] = {}
    if service is not None:
        holder["service"] = service

    def svc() -> Service:
        return holder["service"]

    def authorize(request: Request, *, write: bool) -> None:
        if not write and (options.loopback or options.public_reads):
            return
        if write and not options.tokens:
            raise ApiError(403, "writes are turned off: start dedupe serve with --token-file")
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "this needs 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"})
        given = token.strip().encode()
        if not any(hmac.compare_digest(given, t.encode()) for t in options.tokens):
            raise ApiError(403, "the token is not one of --token-file's")

    async def fingerprint_upload(request: Request) -> bytes:
        data = await image_of(request, options.max_bytes)
        await run_in_threadpool(vet_image, data, options.max_pixels)
        return data

    async def check_endpoint(request: Request) -> Response:
        authorize(request, write=False)
        threshold = query_int(request, "threshold", options.threshold, 0, MAX_THRESHOLD)
        data = await fingerprint_upload(request)
        try:
            result = await run_in_threadpool(check, data, svc().index, threshold=threshold)
        except FileSkipped as e:
            raise skipped_error(e) from None
        hit = result.hit
        return JSONResponse(
            {
                "match": result.matched,
                "distance": result.distance,
                "hash": None if hit is None else hit.hash,
                "reason": "no match" if hit is None else hit.reason,
                "closest": None if hit is None else hit_json(hit),
            }
        )

    async def search_endpoint(request: Request) -> Response:
        authorize(request, write=False)
        threshold = query_int(request, "threshold", options.threshold, 0, MAX_THRESHOLD)
        limit = query_int(request, "limit", options.search_limit, 1, 1000)
        data = await fingerprint_upload(request)
        try:
            result = await run_in_threadpool(find_similar, data, svc().index, threshold=threshold, limit=limit)
        except FileSkipped as e:
            raise skipped_error(e) from None
        return JSONResponse({"matches": [hit_json(h) for h in result.hits]})

    async def add_endpoint(request: Request) -> Response:
        authorize(request, write=True)
        if media_type(request) == "text/csv":
            body = await read_body(request, options.max_bytes)
            return await run_in_threadpool(add_list, body)
        label = text_param(request, "label") or ""
        data = await fingerprint_upload(request)
        return await run_in_threadpool(add_image, data, label)

    def add_list(body: bytes) -> Response:
        try:
            items = read_list(io.StringIO(body.decode("utf-8-sig")), "the list sent")
        except UnicodeDecodeError:
            raise ApiError(400, "the list sent is not UTF-8 text") from None
        except DedupeError as e:
            raise ApiError(400, str(e)) from None
        with svc().store.transaction():
            added = svc().store.add_imported(items, fingerprint.VERSION, "api")
        svc().refresh(force=True)
        return JSONResponse({"listed": len(items), "added": added}, status_code=201)

    def add_image(data: bytes, label: str) -> Response:
        try:
            fp = fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))
        except FileSkipped as e:
            raise skipped_error(e) from None
        item = ListedFingerprint(
            content_hash=fp.content_hash,
            image_hash=fp.image_hash,
            phash=fp.phash,
            dhash=fp.dhash,
            width=fp.width,
            height=fp.height,
            low_info=fp.low_info,
            label=label or fp.content_hash,
        )
        ident, added = svc().store.add_one_imported(item, fingerprint.VERSION, "api")
        if added:
            svc().refresh(force=True)
        body = {"id": ident, "added": added, "label": item.label, "content_hash": item.content_hash}
        return JSONResponse(body, status_code=201 if added else 200)

    async def delete_endpoint(request: Request) -> Response:
        authorize(request, write=True)
        raw = request.path_params["ident"]
        ident = whole_number(raw)
        if ident is None:
            raise ApiError(404, f"no fingerprint {raw[:40]!r}")

        def delete() -> int:
            gone = svc().store.forget_imported_ids([ident])
            if gone:
                svc().refresh(force=True)
            return gone

        if not await run_in_threadpool(delete):
            raise ApiError(404, f"no fingerprint {ident}")
        return Response(status_code=204)

    async def list_endpoint(request: Request) -> Response:
        authorize(request, write=False)
        label = text_param(request, "label")
        limit = query_int(request, "limit", 1000, 1, None)
        offset = query_int(request, "offset", 0, 0, None)
        entries = await run_in_threadpool(svc().store.imported_entries, None, label)
        return JSONResponse(
            {
                "count": len(entries),
                "fingerprints": [
                    {
                        "id": ident,
                        "label": item.label,
                        "content_hash": item.content_hash,
                        "image_hash": item.image_hash,
                        "phash": f"{item.phash:016x}",
                        "dhash": f"{item.dhash:016x}",
                        "width": item.width,
                        "height": item.height,
                        "source": source,
                        "imported_at": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
                    }
                    for ident, item, source, at in entries[offset : offset + limit]
                ],
            }
        )

    async def status_endpoint(request: Request) -> Response:
        authorize(request, write=False)
        return JSONResponse(svc().status())

    async def health_endpoint(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def openapi_endpoint(request: Request) -> Response:
        return JSONResponse(openapi(options.threshold, options.max_bytes, IMAGE_TYPES))

    def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def store_error(request: Request, exc: Exception) -> Response:
        return error_response(503, str(exc))

    async def sqlite_error(request: Request, exc: Exception) -> Response:
        # Raised by a write outside the store's own wrapping (a list too big for the disk): said as the CLI says it.
        return error_response(503, str(failure(exc, svc().store.path)))

    async def internal_error(request: Request, exc: Exception) -> Response:
        print(f"dedupe serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return error_response(500, "internal error")

    def lifespan(app: Starlette) -> Any:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def span(app: Starlette) -> Any:
            own = "service" not in holder
            if own:
                holder["service"] = await run_in_threadpool(Service, options)
                holder["service"].start()
            try:
                yield
            finally:
                if own:
                    await run_in_threadpool(holder.pop("service").close)

        return span(app)

    routes = [
        Route("/v1/check", check_endpoint, methods=["POST"]),
        Route("/v1/search", search_endpoint, methods=["POST"]),
        Route("/v1/fingerprints", add_endpoint, methods=["POST"]),
        Route("/v1/fingerprints", list_endpoint, methods=["GET"]),
        Route("/v1/fingerprints/{ident}", delete_endpoint, methods=["DELETE"]),
        Route("/v1/status", status_endpoint, methods=["GET"]),
        Route("/healthz", health_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error,
        HTTPException: http_error,
        DedupeError: store_error,
        sqlite3.Error: sqlite_error,
        Exception: internal_error,
    }
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)


# --- serving --------------------------------------------------------------------------------------------------


def _uvicorn() -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError:
        raise DedupeError(f"dedupe serve needs Starlette and uvicorn: {INSTALL}") from None
    return uvicorn


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the workers start (port 0: a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DedupeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def app_from_environment() -> Starlette:
    """The application of a worker process (uvicorn --workers), its options passed in the environment."""
    raw = json.loads(os.environ[_OPTIONS_ENV])
    raw["tokens"] = tuple(raw["tokens"])
    return create_app(ServeOptions(**raw))


def run(options: ServeOptions, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM, finishing the requests in flight; on_ready(url) once it answers."""
    uvicorn = _uvicorn()
    # Opened here, so that a store that cannot be opened is said in one line before anything listens. With one
    # worker the index is loaded here too: loaded by uvicorn's lifespan, a damaged table ended in a traceback.
    service: Service | None = None
    if options.workers > 1:
        probe = open_any(options.db)
        probe.close()
    else:
        service = Service(options)
    try:
        sock = bind(options.host, options.port)
        url = url_of(options.host, sock.getsockname()[1])
        if on_ready is not None:
            threading.Thread(target=_announce, args=(url, on_ready), daemon=True).start()
        common: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
        if service is None:
            from uvicorn.supervisors import Multiprocess

            os.environ[_OPTIONS_ENV] = json.dumps(asdict(options))
            config = uvicorn.Config(
                "dedupe.serve:app_from_environment", factory=True, workers=options.workers, **common
            )
            Multiprocess(config, sockets=[sock]).run()
        else:
            service.start()
            config = uvicorn.Config(create_app(options, service), **common)
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        if service is not None:
            service.close()


def _announce(url: str, on_ready: Callable[[str], None], timeout: float = 600) -> None:
    """Call on_ready once /healthz answers: the index is loaded and requests are taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                if response.status == 200:
                    on_ready(url)
                    return
        except OSError:
            pass
        time.sleep(0.05)


__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_PORT",
    "ApiError",
    "ServeOptions",
    "Service",
    "create_app",
    "is_loopback",
    "read_tokens",
    "run",
]
