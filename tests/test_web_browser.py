"""dedupe review --web in a real Chromium (Debian's, driven by Playwright): a review from start to undo.

Nothing is downloaded: the browser is /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it), never
one from `playwright install`. The screenshot of a group it takes becomes docs/review-web.png when
DEDUPE_SCREENSHOT=docs is set (otherwise it stays in tmp_path, so that a test run leaves the checkout clean).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dedupe import Store, scan
from dedupe.cli import cli
from tests.conftest import REPO, draw_photo, save
from tests.webserver import ReviewServer, make_library, snapshot

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[test]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium'; .ci/run installs it)"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = REPO / "docs" / "review-web.png"


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _thumbnails_loaded(page: Any) -> None:
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('.member .thumb img')];"
        " return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=30_000,
    )


def _at(page: Any, index: int) -> None:
    """Wait until the page shows group index (0-based)."""
    page.wait_for_function(f"() => document.querySelector('.group')?.dataset.index === '{index}'")


def _group_of(server: ReviewServer, name: str) -> tuple[int, int]:
    for i in range(server.json("GET", "/api/overview")["groups"]):
        for m in server.json("GET", f"/api/group/{i}")["members"]:
            if m["path"].endswith(f"/photos/{name}"):
                return i, m["index"]
    raise AssertionError(name)


def test_a_review_in_chromium_from_the_first_page_to_undo(browser: Any, tmp_path: Path) -> None:
    root, db = make_library(tmp_path)
    before = snapshot(root)
    server = ReviewServer(root, db, tmp_path / "xdg")
    try:
        near, small = _group_of(server, "exports/b-small.png")
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        foreign: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(server.base + "/") else foreign.append(r.url))

        # Open: the token URL becomes a cookie, the overview counts the groups.
        page.goto(server.url)
        assert page.url == server.base + "/"
        page.wait_for_selector("#accept-exact")
        assert "4 groups" in page.inner_text(".accept-exact")
        assert "trash 4 files" in page.inner_text(".accept-exact")
        page.wait_for_selector("#group-list tbody tr")  # the list comes a page at a time, after the overview
        assert page.locator("#group-list tbody tr").count() == 5

        # One group at a time with the keys: j to the near pair, its thumbnails load, 2 (or 1) keeps the PNG.
        page.keyboard.press("j")
        _at(page, 0)
        for i in range(near):
            page.keyboard.press("j")
            _at(page, i + 1)
        _thumbnails_loaded(page)
        cards = page.locator(".member")
        assert cards.count() == 2
        assert "role-keep" in (cards.nth(1 - small).get_attribute("class") or "")
        differing = page.locator(".facts dd.differs")
        assert differing.count() >= 6  # resolution, size, format, folder of both members at least
        page.keyboard.press(str(small + 1))
        page.wait_for_function(f"() => document.querySelectorAll('.member')[{small}].classList.contains('role-keep')")
        assert "role-act" in (cards.nth(1 - small).get_attribute("class") or "")
        assert "chosen by you" in page.inner_text(".rule")
        page.keyboard.press("k")  # back one group and forward again: the decision stays
        _at(page, near - 1)
        page.keyboard.press("ArrowRight")
        _at(page, near)
        _thumbnails_loaded(page)
        page.wait_for_selector(".decision-line.decision-accepted")
        page.mouse.move(0, 0)
        shot = SCREENSHOT if os.environ.get("DEDUPE_SCREENSHOT") == "docs" else tmp_path / "review-web.png"
        page.screenshot(path=str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")

        # Full size: space opens it, right/left move between members, x swaps in place, Esc closes.
        page.keyboard.press(" ")
        page.wait_for_selector("#full:not([hidden]) img.shown")
        assert page.inner_text("#full-title").startswith("1/2")
        page.keyboard.press("ArrowRight")
        assert page.inner_text("#full-title").startswith("2/2")
        page.keyboard.press("x")
        assert page.inner_text("#full-title").startswith("1/2")
        page.wait_for_function("() => document.querySelector('#full img.shown').naturalWidth > 0")
        page.keyboard.press("Escape")
        assert page.locator("#full").is_hidden()

        # ? lists the keys.
        page.keyboard.press("?")
        assert "previous / next group" in page.inner_text("#keys")
        page.keyboard.press("Escape")

        # Back to the overview; accept every exact group, after seeing what it does.
        page.keyboard.press("Escape")
        page.wait_for_selector("#accept-exact")
        page.click(".accept-exact summary")
        page.wait_for_selector(".accept-exact .steps li")
        assert page.locator(".accept-exact .steps li").count() == 4
        page.click("#accept-exact")
        page.wait_for_function("() => document.querySelector('#accept-exact')?.disabled === true")

        # Apply: the plan is shown and asked once; then the result per file.
        page.click("#nav-apply")
        page.wait_for_selector("#confirm-apply")
        assert page.inner_text("#confirm-apply").startswith("Yes: trash 5 files")
        assert page.locator(".plan-group").count() == 5
        assert before == snapshot(root)  # nothing happened yet
        page.click("#confirm-apply")
        page.wait_for_selector("#result")
        assert "5 done" in page.inner_text("#result .summary")
        assert page.locator(".results tr.state-done").count() == 5

        after = snapshot(root)
        gone = sorted(set(before) - set(after))
        assert gone == ["b.jpg", "backup/a0.jpg", "backup/a1.jpg", "backup/a2.jpg", "backup/turned.jpg"]
        assert all(after[k] == before[k] for k in after)  # the keepers stayed, byte for byte
        trashed = sorted(p.name for p in (tmp_path / "xdg" / "Trash" / "files").iterdir())
        assert len(trashed) == 5

        # Undo from the page: the tree is back, byte for byte.
        page.click("#undo-run")
        page.wait_for_selector("text=Undone")
        assert "5 restored" in page.inner_text("#result .summary")
        assert snapshot(root) == before
        assert list((tmp_path / "xdg" / "Trash" / "files").iterdir()) == []

        # Readable at phone width: nothing wider than the window.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(server.base + f"/#/group/{near + 1}")
        _thumbnails_loaded(page)
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        assert problems == []
        assert foreign == []  # offline: nothing but the page's own server
    finally:
        server.stop()


def test_a_run_of_permanent_deletes_offers_no_undo(browser: Any, tmp_path: Path) -> None:
    """With --action delete, the result says the deletes cannot be undone and shows no Undo button, nor does the
    top bar offer one: undoing such a run is refused."""
    root, db = make_library(tmp_path)
    server = ReviewServer(root, db, tmp_path / "xdg", "--action", "delete")
    try:
        page = browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(server.url)
        page.wait_for_selector("#accept-exact")
        page.click("#accept-exact")
        page.wait_for_function("() => document.querySelector('#accept-exact')?.disabled === true")
        page.click("#nav-apply")
        page.wait_for_selector("#confirm-apply")
        page.click("#confirm-apply")
        page.wait_for_selector("#result")
        assert "4 done" in page.inner_text("#result .summary")
        assert "Permanent deletes cannot be undone." in page.inner_text("#result .summary")
        assert page.locator("#undo-run").count() == 0
        page.click("text=Overview")
        page.wait_for_selector("#accept-exact")
        assert page.locator("#nav-undo").is_hidden()
        assert problems == []
    finally:
        server.stop()


def test_odd_names_show_as_escaped_text_in_the_report_and_the_review_page(browser: Any, tmp_path: Path) -> None:
    """In Chromium, the report and the review page show names holding markup, a newline, a tab or bytes that
    are not UTF-8 as text on one line, escaped as the terminal shows them: nothing in a name runs or makes an
    element, and a newline never looks like a space."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(3, (400, 300)), root / "a.jpg", quality=90)
    names = {
        '<img src=x onerror="alert(1)">&amp;.jpg': '<img src=x onerror="alert(1)">&amp;.jpg',
        "new\nline.jpg": "new\\x0aline.jpg",
        "tab\there.jpg": "tab\\x09here.jpg",
        os.fsdecode(b"bad\xff.jpg"): "bad\\xff.jpg",
    }
    for name in names:
        (root / "odd").mkdir(exist_ok=True)
        (root / "odd" / name).write_bytes(keeper.read_bytes())
    db, report = tmp_path / "store.sqlite", tmp_path / "report.html"
    with Store.open(db) as store:
        scan([root], store)
    done = CliRunner().invoke(cli, ["report", "--html", str(report), str(root), "--db", str(db)])
    assert done.exit_code == 0, done.output
    page = browser.new_page()
    dialogs: list[str] = []

    def dismiss(dialog: Any) -> None:  # an alert() a name would run, had it become markup
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    page.goto(report.as_uri())
    shown = page.eval_on_selector_all(".member .name", "els => els.map(e => e.innerText)")
    assert sorted(shown) == sorted(["a.jpg", *names.values()])
    assert page.locator("img[onerror]").count() == 0
    server = ReviewServer(root, db, tmp_path / "xdg")
    try:
        page.goto(server.url)
        page.wait_for_selector("#group-list tbody tr")
        page.keyboard.press("j")
        _at(page, 0)
        _thumbnails_loaded(page)
        shown = page.eval_on_selector_all(".member .name", "els => els.map(e => e.innerText)")
        assert sorted(shown) == sorted(["a.jpg", *names.values()])
        assert page.locator("img[onerror]").count() == 0
    finally:
        server.stop()
    assert dialogs == []
