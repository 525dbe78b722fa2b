"""dedupe review --web over real HTTP: a real uvicorn server in a subprocess, real photos, a real trash."""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from dedupe import (
    DedupeError,
    DuplicateGroup,
    FileRecord,
    GroupMember,
    MatchKind,
    Store,
    parse_rules,
    plan,
    scan,
    undo,
)
from dedupe.fingerprint import hash_file
from dedupe.group import stored_groups
from dedupe.models import Action, StepState
from dedupe.web.state import KEPT_BY_YOU, Decision, ReviewState
from dedupe.web.thumbs import Thumbnails
from tests.conftest import REPO, damaged_exif_photo, draw_photo, make_fingerprint, make_record, save
from tests.webserver import ReviewServer, make_library, snapshot

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[test]'")


@pytest.fixture
def library(tmp_path: Path) -> tuple[Path, Path]:
    return make_library(tmp_path)


@pytest.fixture
def server(library: tuple[Path, Path], tmp_path: Path) -> Iterator[ReviewServer]:
    root, db = library
    s = ReviewServer(root, db, tmp_path / "xdg")
    yield s
    s.stop()


def _trash(tmp_path: Path) -> list[str]:
    files = tmp_path / "xdg" / "Trash" / "files"
    return sorted(p.name for p in files.iterdir()) if files.is_dir() else []


def _find(server: ReviewServer, name: str) -> tuple[int, int, dict[str, Any]]:
    """The group and member number of the file at photos/NAME, and the group."""
    total = server.json("GET", "/api/overview")["groups"]
    for i in range(total):
        group = server.json("GET", f"/api/group/{i}")
        for m in group["members"]:
            if m["path"].endswith(f"/photos/{name}"):
                return i, m["index"], group
    raise AssertionError(f"{name} is in no group")


# --- the address and the lifecycle ---------------------------------------------------------------------------


def test_the_address_is_printed_with_a_token_and_sigterm_stops_the_server(server: ReviewServer) -> None:
    """The one line on stdout holds 127.0.0.1, the port and the token; SIGTERM ends the run cleanly."""
    assert server.url.startswith("http://127.0.0.1:")
    assert len(server.token) >= 30
    code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err


def test_the_token_in_the_url_is_traded_for_a_strict_httponly_cookie(server: ReviewServer) -> None:
    status, headers, _ = server.request("GET", f"/?token={server.token}", cookie=None)
    assert status == 303
    assert headers["location"] == "/"  # the token leaves the address bar and the history
    cookie = headers["set-cookie"]
    assert f"dedupe_token={server.token}" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    status, headers, page = server.request("GET", "/")
    assert status == 200
    assert b"/static/review.js" in page
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_without_the_web_extra_the_command_names_the_pip_command(library: tuple[Path, Path]) -> None:
    """No traceback, one line, exit 1, when Starlette cannot be imported."""
    root, db = library
    code = (
        "import sys; sys.modules['starlette'] = None; from dedupe.cli import main;"
        f" sys.argv = ['dedupe', 'review', {str(root)!r}, '--db', {str(db)!r}, '--web', '--no-browser']; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "Error: the web review needs the 'web' extra: pip install 'photo-dedupe[web]'"
    ]
    assert r.stdout == ""


def test_web_with_yes_is_a_usage_error(library: tuple[Path, Path]) -> None:
    root, db = library
    r = subprocess.run(
        [sys.executable, "-m", "dedupe", "review", str(root), "--db", str(db), "--web", "--yes"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "--web reviews in the browser" in r.stderr


def test_another_host_prints_a_warning_and_answers_to_ip_addresses_only(
    library: tuple[Path, Path], tmp_path: Path
) -> None:
    """--host 0.0.0.0 warns; requests naming the server by IP work, a DNS name (rebinding) is refused."""
    root, db = library
    s = ReviewServer(root, db, tmp_path / "xdg", "--host", "0.0.0.0")
    try:
        assert s.request("GET", "/api/overview")[0] == 200
        assert s.request("GET", "/api/overview", host=f"evil.example:{s.port}")[0] == 403
    finally:
        _, err = s.stop()
    assert "warning: serving on 0.0.0.0" in err


# --- refusals: each leaves the disk as it was ---------------------------------------------------------------


def test_requests_without_the_token_are_refused(
    server: ReviewServer, library: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = library
    before = snapshot(root)
    for path in ("/", "/api/overview", "/api/group/0", "/thumb/1/0/0", "/full/1/0/0", "/static/review.js"):
        status, _, body = server.request("GET", path, cookie=None)
        assert status == 403, path
        assert b"token" in body
    assert server.request("POST", "/api/accept", {"kind": "exact"}, cookie=None)[0] == 403
    assert server.request("POST", "/api/undo", cookie=None)[0] == 403
    assert snapshot(root) == before
    assert server.json("GET", "/api/overview")["decided"]["accepted"] == 0


def test_a_wrong_token_is_refused_in_the_url_the_cookie_and_the_header(
    server: ReviewServer, library: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = library
    before = snapshot(root)
    wrong = ("y" if server.token.startswith("x") else "x") + server.token[1:]  # one character off, never equal
    status, headers, _ = server.request("GET", f"/?token={wrong}", cookie=None)
    assert status == 403
    assert "set-cookie" not in headers
    assert server.request("GET", "/api/overview", cookie=wrong)[0] == 403
    assert server.request("POST", "/api/accept", {"kind": "exact"}, token_header=wrong)[0] == 403
    assert server.request("POST", "/api/accept", {"kind": "exact"}, token_header=None)[0] == 403
    assert server.json("GET", "/api/overview")["decided"]["accepted"] == 0
    assert snapshot(root) == before


def test_a_foreign_host_header_is_refused(server: ReviewServer, library: tuple[Path, Path]) -> None:
    """A page on evil.example whose name was rebound to 127.0.0.1 sends its own Host: refused, even with the cookie."""
    root, _ = library
    before = snapshot(root)
    for host in (f"evil.example:{server.port}", "127.0.0.1:1", "", f"127.0.0.1.nip.io:{server.port}"):
        assert server.request("GET", "/api/overview", host=host)[0] == 403, host
        assert server.request("POST", "/api/accept", {"kind": "exact"}, host=host, origin=f"http://{host}")[0] == 403
    assert server.request("GET", "/api/overview", host=f"localhost:{server.port}")[0] == 200
    assert server.json("GET", "/api/overview")["decided"]["accepted"] == 0
    assert snapshot(root) == before


def test_cross_origin_posts_are_refused(server: ReviewServer, library: tuple[Path, Path], tmp_path: Path) -> None:
    """With the cookie and even the token, a POST from another origin or without one changes nothing."""
    root, _ = library
    before = snapshot(root)
    server.json("POST", "/api/accept", {"kind": "exact"})  # the page's own request works
    plan = server.json("GET", "/api/plan")
    assert plan["files"] == 4
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}", None):
        status, _, _ = server.request("POST", "/api/apply", {"plan": plan["id"]}, origin=origin)
        assert status == 403, origin
        assert server.request("POST", "/api/undo", origin=origin)[0] == 403
    assert server.request("GET", "/api/apply")[0] == 405  # a link or an <img> cannot apply
    assert snapshot(root) == before
    assert _trash(tmp_path) == []


def test_paths_and_foreign_ids_get_404(server: ReviewServer, library: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = library
    before = snapshot(root)
    secret = tmp_path / "secret.jpg"
    save(draw_photo(42), secret)  # a photo outside the groups
    gen = server.json("GET", "/api/overview")["generation"]
    groups = server.json("GET", "/api/overview")["groups"]
    for path in (
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/app.py",
        "/static/..%2f..%2fapp.py",
        f"/thumb/{gen}/0/../../../{secret}",
        f"/full/{gen}/0/%2e%2e%2f%2e%2e{secret}",
        f"/full/{secret}",
        f"/full/{gen}/{secret}",
        f"/thumb/{gen}/{groups}/0",  # no such group
        f"/thumb/{gen}/0/9",  # no such member
        f"/full/{gen}/-1/0",
        f"/full/{gen + 1}/0/0",  # another grouping's ids
        f"/thumb/{gen - 1}/0/0",
        "/api/group/99999",
    ):
        status, _, body = server.request("GET", path)
        assert status == 404, path
        assert not body.startswith(b"\xff\xd8"), path  # never an image
    status, _, _ = server.request("POST", "/api/group/0/decide", {"state": "accepted", "keeper": 7})
    assert status == 400
    status, _, _ = server.request("POST", "/api/group/0/decide", {"state": "accepted", "keeper": str(secret)})
    assert status == 400
    assert snapshot(root) == before


def test_huge_path_numbers_and_deeply_nested_json_are_refused(server: ReviewServer) -> None:
    """Numbers of thousands of digits in a page URL get 404, JSON nested thousands deep or a JSON true as a
    member number get 400; no request is an internal error, and none reaches the log as a traceback."""
    gen = server.json("GET", "/api/overview")["generation"]
    huge = "9" * 5000
    for path in (f"/api/group/{huge}", f"/thumb/{gen}/0/{huge}", f"/full/{huge}/0/0", f"/thumb/{gen}/{huge}/0"):
        status, _, _ = server.request("GET", path)
        assert status == 404, path[:30]
    for path, body in (
        (f"/api/group/{huge}/decide", {"state": "accepted"}),
        ("/api/group/0/decide", {"state": "accepted", "keeper": True}),
        ("/api/group/0/decide", {"state": "accepted", "keep_too": [True]}),
    ):
        status, _, _ = server.request("POST", path, body)
        assert status == 400, (path[:30], body)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    payload = b"[" * 100_000 + b"]" * 100_000
    conn.request(
        "POST",
        "/api/group/0/decide",
        body=payload,
        headers={
            "Host": server.host,
            "Cookie": f"dedupe_token={server.token}",
            "Origin": server.base,
            "X-Dedupe-Token": server.token,
            "Content-Type": "application/json",
        },
    )
    assert conn.getresponse().status == 400
    conn.close()
    assert server.json("GET", "/api/group/0")["decision"] == "undecided"
    code, err = server.stop()
    assert code == 0
    assert "Traceback" not in err


def test_a_symlink_swapped_in_after_the_scan_is_not_served(
    server: ReviewServer, library: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = library
    secret = tmp_path / "secret.jpg"
    save(draw_photo(42), secret)
    i, m, group = _find(server, "backup/a1.jpg")
    gen = group["generation"]
    copy = root / "backup" / "a1.jpg"
    copy.unlink()
    copy.symlink_to(secret)
    for kind in ("thumb", "full"):
        status, _, body = server.request("GET", f"/{kind}/{gen}/{i}/{m}")
        assert status == 404, kind
        assert secret.read_bytes() != body
    # Applying now leaves the swapped file alone: apply re-checks it.
    server.json("POST", f"/api/group/{i}/decide", {"state": "accepted"})
    plan = server.json("GET", "/api/plan")
    result = server.json("POST", "/api/apply", {"plan": plan["id"]})
    assert [r["state"] for r in result["results"]] == ["skipped"]
    assert copy.is_symlink()
    assert secret.exists()
    assert _trash(tmp_path) == []


# --- what the page is told, and acting through it ------------------------------------------------------------


def test_the_overview_counts_groups_per_kind_and_what_the_suggestions_free(server: ReviewServer) -> None:
    o = server.json("GET", "/api/overview")
    assert o["groups"] == 5
    assert o["kinds"]["exact"]["groups"] == 4
    assert o["kinds"]["near"]["groups"] == 1
    assert o["accept"]["exact"]["steps"] == 4
    assert o["accept"]["near"]["steps"] == 1
    preview = server.json("GET", "/api/accept-preview?kind=exact")
    assert len(preview["items"]) == 4
    assert all("/backup/" in s["path"] or "/backup/" in s["keeper"] for s in preview["items"])
    assert o["last_run"] is None
    page = server.json("GET", "/api/groups?offset=3&limit=2")
    assert [g["index"] for g in page["groups"]] == [3, 4]
    assert page["total"] == 5


def test_a_group_shows_the_plan_the_differences_and_why_each_matched(server: ReviewServer) -> None:
    _, _, group = _find(server, "exports/b-small.png")
    assert group["kind"] == "near"
    roles = {m["name"]: m["role"] for m in group["members"]}
    assert roles == {"b.jpg": "keep", "b-small.png": "act"}
    assert set(group["differs"]) >= {"resolution", "size", "format", "folder"}
    assert "taken" not in group["differs"]
    small = next(m for m in group["members"] if m["name"] == "b-small.png")
    assert small["why"].startswith("similar (phash")
    assert small["note"] == "trash"
    assert group["reason"]  # the rule that chose the keeper


def test_choosing_a_keeper_and_keeping_too_change_the_plan(server: ReviewServer) -> None:
    i, m, _ = _find(server, "exports/b-small.png")
    g = server.json("POST", f"/api/group/{i}/decide", {"state": "accepted", "keeper": m})
    roles = {x["name"]: x["role"] for x in g["members"]}
    assert roles == {"b.jpg": "act", "b-small.png": "keep"}
    assert g["reason"] == "chosen by you"
    g = server.json("POST", f"/api/group/{i}/decide", {"state": "accepted", "keeper": m, "keep_too": [1 - m]})
    assert {x["name"]: x["role"] for x in g["members"]} == {"b.jpg": "keep-too", "b-small.png": "keep"}
    plan = server.json("GET", "/api/plan")
    assert plan["files"] == 0
    assert plan["groups"][0]["left"][0]["reason"].startswith("kept: you marked it")


def test_thumbnails_are_upright_jpegs_cached_beside_the_store(server: ReviewServer, library: tuple[Path, Path]) -> None:
    _, db = library
    i, m, group = _find(server, "turned.jpg")
    status, headers, data = server.request("GET", f"/thumb/{group['generation']}/{i}/{m}")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as im:
        assert im.height > im.width  # turned by its EXIF orientation, as any viewer shows it
        assert max(im.size) <= 480
    cached = [p.read_bytes() for p in Path(f"{db}-thumbs").rglob("*.jpg")]
    assert data in cached
    status, _, full = server.request("GET", f"/full/{group['generation']}/{i}/{m}")
    assert status == 200
    assert full == (db.parent / "photos" / "turned.jpg").read_bytes()  # the original, for the browser to turn


def test_an_apply_of_a_plan_not_shown_is_refused(
    server: ReviewServer, library: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = library
    before = snapshot(root)
    server.json("POST", "/api/accept", {"kind": "exact"})
    old = server.json("GET", "/api/plan")["id"]
    server.json("POST", "/api/accept", {"kind": "near"})  # the plan changes after it was shown
    status, _, body = server.request("POST", "/api/apply", {"plan": old})
    assert status == 409
    assert b"look at it again" in body
    assert snapshot(root) == before


def test_apply_trashes_the_copies_and_undo_restores_the_tree(
    server: ReviewServer, library: tuple[Path, Path], tmp_path: Path
) -> None:
    root, _ = library
    before = snapshot(root)
    server.json("POST", "/api/accept", {"kind": "exact"})
    i, _, _ = _find(server, "b.jpg")
    server.json("POST", f"/api/group/{i}/decide", {"state": "not_duplicates"})
    plan = server.json("GET", "/api/plan")
    assert plan["files"] == 4
    assert plan["not_duplicates"] == [i]
    result = server.json("POST", "/api/apply", {"plan": plan["id"]})
    assert result["counts"] == {"done": 4, "skipped": 0, "failed": 0}
    after = snapshot(root)
    gone = sorted(set(before) - set(after))
    assert len(gone) == 4
    assert all(before[k] == after[k] for k in after)  # keepers untouched
    assert len(_trash(tmp_path)) == 4
    o = server.json("GET", "/api/overview")
    assert o["groups"] == 0  # the exact groups are gone, the near pair is remembered as not duplicates
    assert o["last_run"]["id"] == result["run"]
    undone = server.json("POST", "/api/undo")
    assert undone["complete"] is True
    assert snapshot(root) == before
    assert _trash(tmp_path) == []
    o = server.json("GET", "/api/overview")
    assert o["groups"] == 4
    assert o["last_run"] is None
    status, _, body = server.request("POST", "/api/undo")
    assert status == 400
    assert json.loads(body)["error"] == "nothing to undo"


# Names a file system allows, and how the page shows each: on one line, told apart from one another.
ODD_NAMES = {
    "new\nline.jpg": "new\\x0aline.jpg",
    "new line.jpg": "new line.jpg",
    "tab\there.jpg": "tab\\x09here.jpg",
    "lit\\x0a.jpg": "lit\\\\x0a.jpg",
    os.fsdecode(b"bad\xff.jpg"): "bad\\xff.jpg",
    '<img src=x onerror="alert(1)">&amp;.jpg': '<img src=x onerror="alert(1)">&amp;.jpg',
    "%s{}{0}.jpg": "%s{}{0}.jpg",
}


def test_odd_names_are_shown_apart_previewed_trashed_and_restored_at_the_same_bytes(tmp_path: Path) -> None:
    """Copies whose names hold a newline, a tab, a backslash, bytes that are not UTF-8, markup or format fields:
    the API shows each name escaped as the terminal does (a newline never looks like a space), every thumbnail
    is served, and apply then undo put each file back at exactly the same bytes path."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(3, (400, 300)), root / "a.jpg", quality=90)
    for name in ODD_NAMES:
        (root / "odd").mkdir(exist_ok=True)
        (root / "odd" / name).write_bytes(keeper.read_bytes())
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([root], store)
    before = {os.fsencode(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    server = ReviewServer(root, db, tmp_path / "xdg")
    try:
        group = server.json("GET", "/api/group/0")
        shown = {m["name"] for m in group["members"]}
        assert shown == {"a.jpg", *ODD_NAMES.values()}
        for m in group["members"]:
            status, headers, body = server.request("GET", f"/thumb/{group['generation']}/0/{m['index']}")
            assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8", m["name"]
        server.json("POST", "/api/accept", {"kind": "exact"})
        plan = server.json("GET", "/api/plan")
        result = server.json("POST", "/api/apply", {"plan": plan["id"]})
        assert result["counts"] == {"done": len(ODD_NAMES), "skipped": 0, "failed": 0}
        assert [p.name for p in root.rglob("*") if p.is_file()] == ["a.jpg"]
        assert server.json("POST", "/api/undo")["complete"] is True
    finally:
        server.stop()
    assert {os.fsencode(p): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_decision_from_a_page_of_an_earlier_grouping_is_refused(server: ReviewServer) -> None:
    """A decision sent with the generation of groups made again since (an apply in another tab) gets 409 and
    lands on no group, though its number names a group of the new grouping."""
    stale = server.json("GET", "/api/group/0")
    server.json("POST", "/api/group/0/decide", {"state": "accepted", "generation": stale["generation"]})
    plan = server.json("GET", "/api/plan")
    server.json("POST", "/api/apply", {"plan": plan["id"]})  # the groups are made again
    fresh = server.json("GET", "/api/group/0")
    assert fresh["generation"] != stale["generation"]
    status, _, body = server.request(
        "POST", "/api/group/0/decide", {"state": "accepted", "keeper": 1, "generation": stale["generation"]}
    )
    assert status == 409
    assert "reload the page" in json.loads(body)["error"]
    assert server.json("GET", "/api/group/0")["decision"] == "undecided"


def test_a_decision_for_a_group_gone_since_the_page_showed_it_is_stale(server: ReviewServer) -> None:
    """A page of an earlier grouping deciding on a group number the new grouping no longer has gets the same 409
    'reload the page' as for a group it still has; a number outside the current grouping is a 400."""
    shown = server.json("GET", "/api/overview")
    last = server.json("GET", f"/api/group/{shown['groups'] - 1}")
    server.json("POST", "/api/accept", {"kind": "exact"})
    server.json("POST", "/api/apply", {"plan": server.json("GET", "/api/plan")["id"]})
    assert server.json("GET", "/api/overview")["groups"] <= last["index"]  # that number names no group now
    decision = {"state": "accepted", "generation": last["generation"]}
    status, _, body = server.request("POST", f"/api/group/{last['index']}/decide", decision)
    assert (status, json.loads(body)["error"]) == (
        409,
        "the groups were made again since this page showed them: reload the page",
    )
    status, _, body = server.request("POST", f"/api/group/{last['index']}/decide", {"state": "accepted"})
    assert (status, json.loads(body)["error"]) == (400, "no such group in the current grouping")


def test_undo_reverses_the_run_its_button_names_not_a_newer_one(server: ReviewServer, tmp_path: Path) -> None:
    """An Undo button naming run A, pressed after run B was applied elsewhere, undoes A and leaves B; pressed
    again, it is refused as already undone."""
    server.json("POST", "/api/accept", {"kind": "near"})
    first = server.json("POST", "/api/apply", {"plan": server.json("GET", "/api/plan")["id"]})
    server.json("POST", "/api/accept", {"kind": "exact"})
    second = server.json("POST", "/api/apply", {"plan": server.json("GET", "/api/plan")["id"]})
    assert first["counts"]["done"] == 1 and second["counts"]["done"] == 4
    undone = server.json("POST", "/api/undo", {"run": first["run"]})
    assert undone["run"] == first["run"]
    assert [r["path"] for r in undone["results"]] == [r["path"] for r in first["results"]]
    assert all(Path(r["path"]).exists() for r in first["results"])
    assert not any(Path(r["path"]).exists() for r in second["results"])
    assert len(_trash(tmp_path)) == 4
    status, _, body = server.request("POST", "/api/undo", {"run": first["run"]})
    assert status == 400
    assert "already undone" in json.loads(body)["error"]


# --- ReviewState, without HTTP ---------------------------------------------------------------------------------


def _state(store: Store, groups: list[DuplicateGroup]) -> ReviewState:
    return _state_of(store, lambda: groups)


def _state_of(store: Store, load: Callable[[], list[DuplicateGroup]]) -> ReviewState:
    return ReviewState(store, load, lambda gs, keepers: plan(gs, keepers=keepers, include_near=True))


def _pair(name: str, *, tie: bool = False, near: bool = False) -> DuplicateGroup:
    """Two members: a keeper the rules prefer (bigger) and a copy; with tie, the rules cannot choose."""
    a = make_record(f"/x/{name}/a.jpg", size=2000, ino=1, content_hash=f"{name}-a", image_hash=f"{name}-i")
    b = make_record(
        f"/x/{name}/b.jpg",
        size=2000 if tie else 1000,
        ino=2,
        content_hash=f"{name}-a" if not near else f"{name}-b",
        image_hash=f"{name}-i" if not near else f"{name}-j",
    )
    kind = MatchKind.NEAR if near else MatchKind.EXACT
    return DuplicateGroup(kind, (GroupMember(a, MatchKind.EXACT, 0), GroupMember(b, kind, 2 if near else 0)))


def test_accepting_a_kind_leaves_decided_groups_and_other_kinds_alone(store: Store) -> None:
    state = _state(store, [_pair("p"), _pair("q"), _pair("d"), _pair("n", near=True)])
    state.decide(2, Decision.SKIPPED)
    assert state.accept_all("exact") == 2
    assert [state.decisions[i].state for i in (0, 1, 2)] == [Decision.ACCEPTED, Decision.ACCEPTED, Decision.SKIPPED]
    assert 3 not in state.decisions  # near groups are accepted separately
    the_plan, accepted, _ = state.plan()
    assert accepted == [0, 1]
    assert [s.file.path for s in the_plan.steps] == ["/x/p/b.jpg", "/x/q/b.jpg"]


def test_a_tie_shows_the_tied_members_until_a_keeper_is_chosen(store: Store) -> None:
    """With rules that cannot choose (resolution alone, two files alike), the page says so; a pick decides."""
    rules = parse_rules("resolution")
    group = _pair("t", tie=True, near=True)
    state = ReviewState(store, lambda: [group], lambda gs, keepers: plan(gs, rules, keepers=keepers))
    assert [m["role"] for m in state.describe(0)["members"]] == ["tie", "tie"]
    state.decide(0, Decision.ACCEPTED, keeper=1)
    view = state.describe(0)
    assert [m["role"] for m in view["members"]] == ["act", "keep"]
    assert view["reason"] == "chosen by you"
    the_plan, _, _ = state.plan()
    assert [s.file.path for s in the_plan.steps] == ["/x/t/a.jpg"]


def test_members_kept_too_leave_the_plan_with_the_reason(store: Store) -> None:
    state = _state(store, [_pair("p")])
    state.decide(0, Decision.ACCEPTED, keep_too=[1])
    the_plan, _, _ = state.plan()
    assert the_plan.steps == ()
    assert [(s.path, s.reason) for s in the_plan.groups[0].left] == [("/x/p/b.jpg", KEPT_BY_YOU)]


def test_the_plan_id_changes_with_the_decisions(store: Store) -> None:
    state = _state(store, [_pair("p"), _pair("q")])
    state.decide(0, Decision.ACCEPTED)
    first = state.plan_view()["id"]
    assert state.plan_view()["id"] == first
    state.decide(1, Decision.NOT_DUPLICATES)
    assert state.plan_view()["id"] != first
    with pytest.raises(DedupeError, match="look at it again"):
        state.apply(first)


def test_the_undo_button_never_names_a_run_of_permanent_deletes(tmp_path: Path, trash_home: Path) -> None:
    """The run the page offers to undo is the one 'dedupe undo' would reverse: after a trash run and then a run
    of permanent deletes, the trash run (a delete has nothing to reverse, and undoing it is refused)."""
    root, db = make_library(tmp_path)
    with Store.open(db) as store:

        def review(action: Action) -> ReviewState:
            def load() -> list[DuplicateGroup]:
                return stored_groups(store, [str(root)])[0]

            return ReviewState(store, load, lambda gs, keepers: plan(gs, action=action, keepers=keepers), action)

        trashing = review(Action.TRASH)
        trashing.decide(0, Decision.ACCEPTED)
        trashed = trashing.apply(trashing.plan_view()["id"])
        deleting = review(Action.DELETE)
        deleting.decide(0, Decision.ACCEPTED)
        deleted = deleting.apply(deleting.plan_view()["id"])
        assert [r.state for r in (*trashed.results, *deleted.results)] == [StepState.DONE, StepState.DONE]
        assert deleting.overview()["last_run"] == {"id": trashed.run_id, "action": "trash", "done": 1}
        assert undo(store).run_id == trashed.run_id  # what 'dedupe undo' reverses
        assert deleting.overview()["last_run"] is None


class _WatchedLock:
    """The state's lock, telling when a thread other than the one making the groups again asks for it."""

    def __init__(self, owner: threading.Thread) -> None:
        self._lock = threading.RLock()
        self.owner = owner
        self.asked = threading.Event()

    def __enter__(self) -> None:
        if threading.current_thread() is not self.owner:
            self.asked.set()
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_group_asked_for_while_the_groups_are_made_again_is_not_found(store: Store, tmp_path: Path) -> None:
    """A page asking for group 4 while an apply or undo in another tab makes the groups again (the state's lock
    held) gets 404 when the new grouping has no group 4, not an internal error."""
    import asyncio

    import httpx

    from dedupe.web.app import COOKIE, create_app

    made: list[list[DuplicateGroup]] = [[_pair(name) for name in "pqrst"]]
    loading, release = threading.Event(), threading.Event()

    def load() -> list[DuplicateGroup]:
        if len(made) > 1:  # making the groups again: slow, as a reload after an apply is
            loading.set()
            assert release.wait(60)
        return made[-1]

    state = _state_of(store, load)
    made.append([_pair("p")])
    regrouping = threading.Thread(target=state.reload)
    state._lock = _WatchedLock(regrouping)  # type: ignore[assignment]
    thumbs = Thumbnails(tmp_path / "cache", workers=1)
    app = create_app(state, thumbs, "t" * 32, {"testserver"})

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/api/group/4", headers={"Cookie": f"{COOKIE}={'t' * 32}"})

    answers: list[httpx.Response] = []
    asking = threading.Thread(target=lambda: answers.append(asyncio.run(ask())))
    try:
        regrouping.start()
        assert loading.wait(60)
        asking.start()
        assert state._lock.asked.wait(60)  # type: ignore[attr-defined]
        release.set()
        regrouping.join(60)
        asking.join(60)
    finally:
        release.set()
        thumbs.close()
    assert len(state.groups) == 1
    assert answers[0].status_code == 404


def test_the_browser_is_opened_at_the_printed_address(library: tuple[Path, Path], tmp_path: Path) -> None:
    """Without --no-browser, the address goes to the browser ($BROWSER here: a script writing it down)."""
    root, db = library
    opened = tmp_path / "opened.txt"
    script = tmp_path / "browser.py"
    script.write_text(f"import sys, pathlib; pathlib.Path({str(opened)!r}).write_text(sys.argv[1])\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROWSER": f"{sys.executable} {script} %s"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dedupe", "review", str(root), "--db", str(db), "--web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.removeprefix("Review at ").strip()
        for _ in range(600):  # the browser starts on a thread of its own: wait for it, up to a minute
            if opened.exists() and opened.read_text():
                break
            assert process.poll() is None, "the server stopped"
            time.sleep(0.1)
        assert opened.read_text() == url
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert process.returncode == 0


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_photo_whose_exif_block_is_damaged_has_a_thumbnail_as_without_exif(fmt: str) -> None:
    """A photo whose EXIF block cannot be read (a damaged TIFF header), which a scan reads as one without EXIF and
    so may put in a group, has a thumbnail on the review page: the one of the photo without EXIF (upright as
    stored); damaged image data still has none."""
    from dedupe.errors import FileSkipped
    from dedupe.web.thumbs import render

    plain, damaged = damaged_exif_photo(fmt)
    assert render(damaged, f"x.{fmt.lower()}", 200) == render(plain, f"x.{fmt.lower()}", 200)
    cut = damaged[: len(damaged) // 2]
    with pytest.raises(FileSkipped):
        render(cut, f"x.{fmt.lower()}", 200)


def test_the_thumbnail_cache_stays_under_its_limit(tmp_path: Path) -> None:
    """Least recently used thumbnails go first once the cache passes its size limit."""
    records = []
    for i in range(6):
        path = save(draw_photo(i, (600, 450)), tmp_path / "p" / f"{i}.jpg")
        st = path.stat()
        fp = make_fingerprint(content_hash=hash_file(path))
        records.append(FileRecord(str(path), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, fp))
    cache = tmp_path / "cache"
    thumbs = Thumbnails(cache, limit=60_000, workers=1)
    try:
        sizes = [len(thumbs.submit(r).result()) for r in records]
    finally:
        thumbs.close()
    assert sum(sizes) > 60_000  # more was made than the cache may hold
    kept = sum(p.stat().st_size for p in cache.rglob("*.jpg"))
    assert 0 < kept <= 60_000
    assert (cache / records[-1].content_hash[:2] / f"{records[-1].content_hash}-480.jpg").exists()  # the newest stays
