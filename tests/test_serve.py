"""dedupe serve: the HTTP check service, driven over real HTTP in a real subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe import Store, exchange, fingerprint
from dedupe.cli import cli
from dedupe.serve import ServeOptions, Service, create_app
from tests.conftest import REPO, draw_photo, run_dedupe, save
from tests.serving import TOKEN, Server, serving, token_file, wait_for

pytest.importorskip("starlette", reason="dedupe serve needs the serve extra: pip install -e '.[test]'")

BANNED = range(5)
UNRELATED = range(100, 105)
MAX_BYTES = 1_500_000
MAX_PIXELS = 3_000_000


def jpeg(im: Image.Image, **params: object) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", **{"quality": 90, **params})
    return out.getvalue()


def encoded(im: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt)
    return out.getvalue()


def edits(seed: int) -> dict[str, tuple[bytes, str]]:
    """Edited copies of a photo: the body and its content type."""
    im = draw_photo(seed)
    return {
        "resized": (jpeg(im.resize((600, 450), Image.Resampling.LANCZOS)), "image/jpeg"),
        "recompressed": (jpeg(im, quality=55), "image/jpeg"),
        "png": (encoded(im, "PNG"), "image/png"),
        "webp": (encoded(im, "WEBP"), "image/webp"),
    }


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    body = zlib.compress(b"\x00" * (width // 8 + 1))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    with serving(
        folder / "bans.sqlite",
        "--max-bytes",
        str(MAX_BYTES),
        "--max-pixels",
        str(MAX_PIXELS),
        tokens=token_file(folder),
    ) as running:
        with running.client(TOKEN) as moderator:
            for seed in BANNED:
                response = moderator.post(
                    "/v1/fingerprints",
                    params={"label": f"banned {seed}"},
                    content=jpeg(draw_photo(seed)),
                    headers={"Content-Type": "image/jpeg"},
                )
                assert response.status_code == 201, response.text
        yield running


def check(server: Server, body: bytes, content_type: str = "image/jpeg", **params: str | int) -> httpx.Response:
    with server.client() as client:
        return client.post("/v1/check", content=body, headers={"Content-Type": content_type}, params=params)


def test_edited_copies_of_banned_photos_match_and_unrelated_photos_do_not(server: Server) -> None:
    for seed in BANNED:
        for edit, (body, content_type) in edits(seed).items():
            answer = check(server, body, content_type).json()
            assert answer["match"] is True, (seed, edit, answer)
            assert answer["closest"]["name"] == f"banned {seed}"
            assert answer["hash"] == "phash"
            assert answer["distance"] == answer["closest"]["distance"] <= 4
    for seed in UNRELATED:
        answer = check(server, jpeg(draw_photo(seed))).json()
        assert answer == {"match": False, "distance": None, "hash": None, "reason": "no match", "closest": None}


def test_a_multipart_upload_is_checked_like_raw_bytes(server: Server) -> None:
    body, _ = edits(2)["resized"]
    with server.client() as client:
        response = client.post("/v1/check", files={"image": ("upload.jpg", body, "image/jpeg")})
        missing = client.post("/v1/check", files={"picture": ("upload.jpg", body, "image/jpeg")})
    assert response.status_code == 200
    assert response.json()["closest"]["name"] == "banned 2"
    assert missing.status_code == 400
    assert "image" in missing.json()["error"]


def test_the_closest_match_has_the_fields_of_check_json(server: Server, tmp_path: Path) -> None:
    photo = save(draw_photo(3), tmp_path / "three.jpg", quality=90)
    db = tmp_path / "local.sqlite"
    with server.client() as client:
        listed = client.get("/v1/fingerprints").json()["fingerprints"]
    assert [f["label"] for f in listed] == [f"banned {s}" for s in BANNED]
    # The same ban in a local store, through the command line, to compare the two answers' shapes.
    listing = tmp_path / "list.csv"
    store_list = "# dedupe fingerprints; algorithm=" + server_algorithm(server) + "\n"
    store_list += "content_hash,image_hash,phash,dhash,width,height,label\n"
    store_list += "".join(
        f"{f['content_hash']},{f['image_hash']},{f['phash']},{f['dhash']},{f['width']},{f['height']},{f['label']}\n"
        for f in listed
    )
    listing.write_text(store_list)
    assert CliRunner().invoke(cli, ["import", str(listing), "--db", str(db)]).exit_code == 0
    local = CliRunner().invoke(cli, ["check", str(photo), "--db", str(db), "--format", "json"])
    served = check(server, photo.read_bytes()).json()
    assert local.exit_code == 1, local.output
    assert json.loads(local.output)[0]["closest"] == served["closest"]


def server_algorithm(server: Server) -> str:
    with server.client() as client:
        return str(client.get("/v1/status").json()["algorithm"])


def test_search_lists_the_closest_matches(server: Server) -> None:
    body, _ = edits(1)["recompressed"]
    with server.client() as client:
        found = client.post("/v1/search", content=body, headers={"Content-Type": "image/jpeg"}).json()
        wide = client.post(
            "/v1/search", content=body, headers={"Content-Type": "image/jpeg"}, params={"threshold": 32, "limit": 2}
        ).json()
    assert [m["name"] for m in found["matches"]] == ["banned 1"]
    assert wide["matches"][0]["name"] == "banned 1"
    assert len(wide["matches"]) <= 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b"this is plain text, not a picture", "image/jpeg", 400, "not an image"),
        (b"", "image/jpeg", 400, "empty"),
        (jpeg(draw_photo(7))[:20000], "image/jpeg", 400, "truncated"),
        (bomb_png(30000, 30000), "image/png", 422, "decompression bomb"),
        (encoded(Image.new("RGB", (2000, 2000), (200, 10, 10)), "PNG"), "image/png", 422, "pixel limit"),
        (jpeg(draw_photo(7)), "text/plain", 415, "unsupported content type"),
        (b"8BPS\x00\x01" + b"\x00" * 100, "image/vnd.adobe.photoshop", 415, "unsupported content type"),
        (jpeg(draw_photo(7)), "", 415, "none given"),
        (b"8BPS\x00\x01" + b"\x00" * 100, "application/octet-stream", 415, "unsupported image type (Photoshop"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/png", 415, "unsupported image type (SVG"),
        (os.urandom(MAX_BYTES + 1), "image/jpeg", 413, "limit"),
    ],
    ids=["text", "empty", "truncated", "bomb", "pixels", "text-type", "psd-type", "no-type", "psd", "svg", "too-large"],
)
def test_bad_uploads_get_their_status_and_a_json_error(
    server: Server, body: bytes, content_type: str, status: int, words: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with server.client() as client:
        response = client.post("/v1/check", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in response.json()["error"]
    assert "Traceback" not in response.text


def test_a_streamed_body_over_the_limit_is_refused_while_reading(server: Server) -> None:
    sent = 0
    chunk = os.urandom(1 << 16)
    total = 1024 * len(chunk)  # 64 MiB, more than socket buffers hold: the server must stop reading early

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(total // len(chunk)):  # no Content-Length: the server must count
            sent += len(chunk)
            yield chunk

    # The server answers 413 and closes the connection once past the limit, long before the client is done.
    with server.client() as client:
        try:
            response = client.post("/v1/check", content=chunks(), headers={"Content-Type": "image/jpeg"})
        except httpx.TransportError:
            response = None  # closed under the client before it could read the answer
    assert sent < total
    if response is not None:
        assert response.status_code == 413
        assert "limit" in response.json()["error"]


def post_check_over_asgi(
    options: ServeOptions, incoming: list[MutableMapping[str, Any]], content_length: bytes
) -> list[MutableMapping[str, Any]]:
    """What the app sends for a POST /v1/check whose body arrives as the incoming ASGI events: for what a real
    server over HTTP would not let through (a disconnect half way, a Content-Length it refuses)."""
    service = Service(options)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/check",
        "raw_path": b"/v1/check",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"image/jpeg"), (b"content-length", content_length)],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8765),
    }
    try:
        asyncio.run(create_app(options, service)(scope, receive, send))
    finally:
        service.close()
    return sent


def test_an_upload_cut_off_by_the_client_is_a_bad_request_not_an_internal_error(tmp_path: Path) -> None:
    """A client that closes the connection half way through its upload gets a 400 (which reaches nobody), and no
    internal error is raised or logged. Driven through the ASGI interface, where the disconnect is an event."""
    incoming: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": jpeg(draw_photo(1))[:1000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = post_check_over_asgi(ServeOptions(db=str(tmp_path / "bans.sqlite")), incoming, b"100000")
    assert sent[0]["status"] == 400
    assert "cut off after 1,000 bytes" in json.loads(sent[1]["body"])["error"]


@pytest.mark.parametrize("declared", ["\u00b2", "\u00b9\u00b2", "9" * 5000])
def test_a_content_length_that_is_no_ascii_number_is_counted_not_believed(tmp_path: Path, declared: str) -> None:
    """A Content-Length in superscript digits (which a header read as Latin-1 can hold) or of thousands of digits,
    which uvicorn refuses but another ASGI server may pass on, is no internal error: the body is counted instead."""
    options = ServeOptions(db=str(tmp_path / "bans.sqlite"), max_bytes=1000)
    incoming: list[MutableMapping[str, Any]] = [{"type": "http.request", "body": b"x" * 2000, "more_body": False}]
    sent = post_check_over_asgi(options, incoming, declared.encode("latin-1"))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "the body is over the limit of 1,000 bytes"


def test_bad_parameters_and_unknown_paths_are_json_errors(server: Server) -> None:
    body, _ = edits(0)["resized"]
    for threshold in ("-1", "33", "four"):
        response = check(server, body, threshold=threshold)
        assert response.status_code == 400
        assert "threshold" in response.json()["error"]
    with server.client() as client:
        assert client.get("/nowhere").json() == {"error": "Not Found"}
        assert client.get("/v1/check").status_code == 405
        assert client.delete("/v1/fingerprints/abc", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404


def test_numbers_too_long_or_not_in_ascii_digits_are_bad_parameters(server: Server) -> None:
    """A number past int()'s 4,300 digits, past SQLite's 64 bits, or in digits other than ASCII ("²", Arabic-Indic) is a
    400 (a 404 for an id), never an internal error, and deletes nothing."""
    body, _ = edits(0)["resized"]
    huge = "9" * 5000
    for name, value in (("threshold", huge), ("threshold", "²"), ("limit", huge)):
        with server.client() as client:
            response = client.post(
                "/v1/search", content=body, headers={"Content-Type": "image/jpeg"}, params={name: value}
            )
        assert response.status_code == 400, (name, value[:10], response.text)
        assert name in response.json()["error"]
        assert len(response.json()["error"]) < 200
    with server.client(TOKEN) as moderator:
        listed = moderator.get("/v1/fingerprints").json()["count"]
        assert moderator.get("/v1/fingerprints", params={"limit": huge}).status_code == 400
        assert moderator.get("/v1/fingerprints", params={"offset": "9" * 18}).json()["fingerprints"] == []
        for ident in (huge, "9" * 30, "%C2%B2", "%D9%A1"):  # %D9%A1 is the Arabic-Indic digit one
            assert moderator.delete(f"/v1/fingerprints/{ident}").status_code == 404, ident
        assert moderator.get("/v1/fingerprints").json()["count"] == listed
    assert not [line for line in server.output if "internal error" in line or "Traceback" in line]


def test_a_label_with_a_nul_character_is_a_bad_parameter(server: Server) -> None:
    """A label holding a NUL character is refused with 400 before the store sees it (PostgreSQL cannot store one,
    and its error would be a 503, as if the store had failed)."""
    with server.client(TOKEN) as moderator:
        added = moderator.post(
            "/v1/fingerprints",
            params={"label": "spam\x00"},
            content=jpeg(draw_photo(80)),
            headers={"Content-Type": "image/jpeg"},
        )
        listed = moderator.get("/v1/fingerprints", params={"label": "spam\x00"})
    for response in (added, listed):
        assert response.status_code == 400
        assert response.json() == {"error": "label cannot hold a NUL character"}
    assert check(server, jpeg(draw_photo(80))).json()["match"] is False


def test_writes_need_the_right_token(server: Server) -> None:
    body = jpeg(draw_photo(42))
    headers = {"Content-Type": "image/jpeg"}
    with server.client() as anonymous:
        refused = anonymous.post("/v1/fingerprints", content=body, headers=headers)
        delete = anonymous.delete("/v1/fingerprints/1")
    with server.client("not-the-token") as stranger:
        wrong = stranger.post("/v1/fingerprints", content=body, headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert delete.status_code == 401
    assert wrong.status_code == 403
    assert "token" in wrong.json()["error"]
    assert check(server, body).json()["match"] is False


def test_a_ban_can_be_added_listed_and_removed(server: Server) -> None:
    body = jpeg(draw_photo(50))
    headers = {"Content-Type": "image/jpeg"}
    with server.client(TOKEN) as moderator:
        added = moderator.post("/v1/fingerprints", params={"label": "spam 50"}, content=body, headers=headers)
        again = moderator.post("/v1/fingerprints", params={"label": "spam 50"}, content=body, headers=headers)
        ident = added.json()["id"]
        assert check(server, jpeg(draw_photo(50).resize((500, 375)))).json()["match"] is True
        labelled = moderator.get("/v1/fingerprints", params={"label": "spam 50"}).json()
        gone = moderator.delete(f"/v1/fingerprints/{ident}")
        gone_again = moderator.delete(f"/v1/fingerprints/{ident}")
    assert added.status_code == 201
    assert (again.status_code, again.json()["id"], again.json()["added"]) == (200, ident, False)
    assert [f["id"] for f in labelled["fingerprints"]] == [ident]
    assert gone.status_code == 204
    assert gone_again.status_code == 404
    assert check(server, body).json()["match"] is False


def test_a_list_posted_as_csv_is_imported(server: Server, tmp_path: Path) -> None:
    photo = save(draw_photo(60), tmp_path / "photos" / "sixty.jpg", quality=90)
    db = tmp_path / "other.sqlite"
    assert run_dedupe("scan", str(photo.parent), "--db", str(db), "-q").returncode == 0
    listing = run_dedupe("export", "--db", str(db)).stdout
    with server.client(TOKEN) as moderator:
        response = moderator.post("/v1/fingerprints", content=listing, headers={"Content-Type": "text/csv"})
        damaged = moderator.post("/v1/fingerprints", content="not a list\n", headers={"Content-Type": "text/csv"})
    assert response.status_code == 201
    assert response.json() == {"listed": 1, "added": 1}
    assert damaged.status_code == 400
    assert "not a list of dedupe fingerprints" in damaged.json()["error"]
    assert check(server, jpeg(draw_photo(60), quality=60)).json()["closest"]["name"] == str(photo)


def test_status_health_and_openapi(server: Server) -> None:
    with server.client() as client:
        status = client.get("/v1/status").json()
        health = client.get("/healthz")
        api = client.get("/openapi.json").json()
    assert status["fingerprints"] >= len(BANNED)
    assert status["store"] == "sqlite"
    assert status["algorithm"] == fingerprint.VERSION
    assert health.json() == {"ok": True}
    assert set(api["paths"]) >= {"/v1/check", "/v1/search", "/v1/fingerprints", "/v1/fingerprints/{id}"}
    check_api = api["paths"]["/v1/check"]["post"]
    assert str(MAX_BYTES // 1000) in check_api["responses"]["413"]["description"].replace(",", "")
    assert check_api["parameters"][0]["schema"]["default"] == status["threshold"] == 4


def test_an_import_by_another_process_is_seen_by_the_running_server(tmp_path: Path) -> None:
    db = tmp_path / "bans.sqlite"
    photo = save(draw_photo(70), tmp_path / "photos" / "seventy.jpg", quality=90)
    other = tmp_path / "scanned.sqlite"
    assert run_dedupe("scan", str(photo.parent), "--db", str(other), "-q").returncode == 0
    listing = tmp_path / "list.csv"
    assert run_dedupe("export", "--db", str(other), "-o", str(listing)).returncode == 0
    with serving(db) as server:
        edited = jpeg(draw_photo(70).resize((800, 600)))
        assert check(server, edited).json()["match"] is False
        with server.client() as client:
            before = client.get("/v1/status").json()
            imported = run_dedupe("import", str(listing), "--db", str(db))
            assert imported.returncode == 0, imported.stderr
            wait_for(lambda: client.get("/v1/status").json()["fingerprints"] == 1, what="the server seeing the import")
            after = client.get("/v1/status").json()
        assert before["fingerprints"] == 0
        assert after["refreshed_at"] > before["refreshed_at"]
        assert check(server, edited).json()["closest"]["name"] == str(photo)


def test_a_list_too_big_for_the_disk_is_a_503_and_the_server_goes_on(
    tmp_path: Path, mount_tmpfs: Callable[..., Path]
) -> None:
    """A write that fills the store's disk is refused with 503 and the store's one-line reason; nothing of the
    list is kept, and the server goes on answering."""
    disk = mount_tmpfs("disk", size="1m")
    lines = [f"{exchange.HEADER}{fingerprint.VERSION}", ",".join(exchange.COLUMNS)]
    for i in range(20_000):  # about 2.5 MB of fingerprints: more than the disk holds
        lines.append(f"{i:032x},{i:032x},{i:016x},{i:016x},100,100,0,label {i} {'x' * 40}")
    with serving(disk / "bans.sqlite", tokens=token_file(tmp_path)) as server, server.client(TOKEN) as moderator:
        response = moderator.post("/v1/fingerprints", content="\n".join(lines), headers={"Content-Type": "text/csv"})
        status = moderator.get("/v1/status")
    assert response.status_code == 503, response.text
    assert "the disk is full" in response.json()["error"]
    assert status.json()["fingerprints"] == 0
    assert not [line for line in server.output if "Traceback" in line or "internal error" in line]


def test_without_a_token_file_writes_are_refused(tmp_path: Path) -> None:
    with serving(tmp_path / "bans.sqlite") as server, server.client(TOKEN) as client:
        response = client.post("/v1/fingerprints", content=jpeg(draw_photo(1)), headers={"Content-Type": "image/jpeg"})
        status = client.get("/v1/status")
    assert response.status_code == 403
    assert "--token-file" in response.json()["error"]
    assert status.status_code == 200


def test_a_store_that_does_not_exist_is_served_new_and_empty_with_a_note(tmp_path: Path) -> None:
    """A --db naming no file serves a new, empty store and says so on stderr, so that a mistyped store is not a
    silent service that blocks nothing; an existing store is served without the note."""
    db = tmp_path / "bans.sqlite"
    for note in (True, False):
        with serving(db) as server, server.client() as client:
            assert client.get("/v1/status").json()["fingerprints"] == 0
        said = "".join(server.output)
        assert (f"note: no store at {db}: serving a new, empty one" in said) is note, said
        assert db.exists()


def test_off_loopback_reads_need_a_token_unless_public(tmp_path: Path) -> None:
    tokens = token_file(tmp_path)
    with serving(tmp_path / "bans.sqlite", "--host", "0.0.0.0", tokens=tokens) as server:
        local = server.url.replace("0.0.0.0", "127.0.0.1")
        with (
            httpx.Client(base_url=local) as anonymous,
            httpx.Client(base_url=local, headers={"Authorization": f"Bearer {TOKEN}"}) as reader,
        ):
            assert anonymous.get("/v1/status").status_code == 401
            assert anonymous.get("/healthz").status_code == 200
            assert reader.get("/v1/status").status_code == 200
    with (
        serving(tmp_path / "bans.sqlite", "--host", "0.0.0.0", "--public-reads") as server,
        httpx.Client(base_url=server.url.replace("0.0.0.0", "127.0.0.1")) as anonymous,
    ):
        assert anonymous.get("/v1/status").status_code == 200
    refused = run_dedupe("serve", "--db", str(tmp_path / "bans.sqlite"), "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert "--token-file" in refused.stderr


def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    body = jpeg(draw_photo(80))
    with serving(tmp_path / "bans.sqlite") as server:

        def slow_upload() -> Iterator[bytes]:
            yield body[: len(body) // 2]
            server.process.send_signal(signal.SIGTERM)  # the server is told to stop mid-request
            wait_for(lambda: refuses_connections(server.url), what="the server to stop listening")
            yield body[len(body) // 2 :]

        with server.client() as client:
            response = client.post("/v1/check", content=slow_upload(), headers={"Content-Type": "image/jpeg"})
        assert response.status_code == 200
        assert response.json()["match"] is False
        # uvicorn ends by the signal it was sent, as a process stopped by SIGTERM should.
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)


def refuses_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return True
    return False


def test_serve_without_its_extra_names_the_install_command(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None;"
        "from dedupe.cli import main; sys.argv = ['dedupe', 'serve', '--db', sys.argv[1]]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", blocked, str(tmp_path / "s.sqlite")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: dedupe serve needs Starlette and uvicorn: pip install 'photo-dedupe[serve]'"
    ]
    assert "Traceback" not in result.stderr


def test_several_workers_all_see_a_ban_added_through_one(tmp_path: Path) -> None:
    body = jpeg(draw_photo(90))
    seen: dict[int, int] = {}

    def every_worker_has_it() -> bool:
        # Each new connection goes to whichever worker accepts it: ask until both have answered with the ban.
        with workers.client() as client:
            status = client.get("/v1/status").json()
        seen[status["process"]] = status["fingerprints"]
        return len(seen) == 2 and all(n == 1 for n in seen.values())

    with serving(tmp_path / "bans.sqlite", "--workers", "2", tokens=token_file(tmp_path)) as workers:
        with workers.client(TOKEN) as moderator:
            added = moderator.post("/v1/fingerprints", content=body, headers={"Content-Type": "image/jpeg"})
        assert added.status_code == 201
        wait_for(every_worker_has_it, what="both workers holding the ban")
        assert check(workers, jpeg(draw_photo(90).resize((700, 525)), quality=70)).json()["match"] is True


def test_a_store_whose_fingerprints_cannot_be_read_is_one_line_before_listening(tmp_path: Path) -> None:
    """A store that opens but whose index cannot be loaded (a table gone: damage, or another program) stops
    dedupe serve with the store's one-line reason and exit status 1, not a traceback from the server's start."""
    db = tmp_path / "bans.sqlite"
    Store.open(db).close()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("ALTER TABLE imported RENAME TO something_else")
    result = run_dedupe("serve", "--db", str(db), "--port", "0")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: cannot use the store at {db}: no such table: imported"]


def test_a_port_in_use_or_a_bad_token_file_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = run_dedupe("serve", "--db", str(tmp_path / "s.sqlite"), "--port", port)
    empty = tmp_path / "empty-tokens.txt"
    empty.write_text("# nobody yet\n")
    no_tokens = run_dedupe("serve", "--db", str(tmp_path / "s.sqlite"), "--token-file", str(empty))
    accented = token_file(tmp_path, "s\u00e9same")
    not_ascii = run_dedupe("serve", "--db", str(tmp_path / "s.sqlite"), "--token-file", str(accented))
    for result, words in (
        (busy, f"cannot listen on 127.0.0.1:{port}"),
        (no_tokens, "holds no token"),
        (not_ascii, "a token that is not ASCII"),  # it could never be matched: refused at the start
    ):
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1
        assert words in result.stderr
