"""`dedupe report --html` with the web extra: review's overview, wording and thumbnail cache in one page."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe import Store, plan, stored_groups
from dedupe.cli import cli
from dedupe.web.report import render_review_report
from dedupe.web.thumbs import Thumbnails
from tests.conftest import REPO
from tests.webserver import make_library

pytest.importorskip("jinja2", reason="the web extra is not installed: pip install -e '.[test]'")


def _report(tmp_path: Path) -> tuple[str, Path, Path]:
    root, db = make_library(tmp_path)
    page = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", "--html", str(page), str(root), "--db", str(db)])
    assert r.exit_code == 0, r.output
    assert "5 group(s), 10 files" in r.output
    return page.read_text(), root, db


def test_the_report_opens_with_a_summary_and_an_index_of_groups(tmp_path: Path) -> None:
    text, _, _ = _report(tmp_path)
    summary = text[text.index('<section class="summary">') : text.index('<section class="group"')]
    assert "trash 5\n  files, freeing" in summary
    assert re.search(r"<td>same bytes</td><td>4</td><td>8</td><td>4 files</td>", summary)
    assert re.search(r"<td>similar</td><td>1</td><td>2</td><td>1 file</td>", summary)
    links = re.findall(r'href="#(group-\d+)"', summary)
    assert links == [f"group-{n}" for n in range(1, 6)]
    assert all(f'id="{link}"' in text for link in links)


def test_each_member_says_what_review_would_do_and_why(tmp_path: Path) -> None:
    text, root, _ = _report(tmp_path)
    roles = dict(re.findall(r'data-path="([^"]+)" data-role="([^"]+)"', text))
    assert roles[str(root / "a0.jpg")] == "keep"
    assert roles[str(root / "backup" / "a0.jpg")] == "act"
    assert roles[str(root / "exports" / "b-small.png")] == "act"  # what accepting the suggestion in review does
    assert text.count('<span class="badge act">TRASH</span>') == 5
    assert text.count('<span class="badge keep">KEEP</span>') == 5
    assert "chosen by the rules: largest resolution (1200x900)" in text  # the plan's own reason, as review says it
    assert '<dd class="resolution differs">600x450</dd>' in text  # what differs is marked, as on the page


def test_the_report_shares_the_review_pages_thumbnail_cache(tmp_path: Path) -> None:
    text, _, db = _report(tmp_path)
    cached = sorted(Path(f"{db}-thumbs").rglob("*-240.jpg"))
    assert len(cached) == 6  # 10 files, 6 contents: a byte copy shares its original's thumbnail
    assert text.count('src="data:image/jpeg;base64,') == 10


def test_the_report_makes_its_thumbnails_from_the_pages(tmp_path: Path) -> None:
    """A report after a review page was opened reads the page's thumbnails, not the photos."""
    root, db = make_library(tmp_path)
    store = Store.open(db, readonly=True)
    try:
        groups, _, _ = stored_groups(store, [root])
        thumbs = Thumbnails(Path(f"{db}-thumbs"))
        try:
            for m in groups[0].members:
                thumbs.submit(m.file).result()  # what the page made
        finally:
            thumbs.close()
        page_thumb = next(Path(f"{db}-thumbs").rglob("*-480.jpg"))
        page_thumb.write_bytes(_solid_jpeg((480, 360)))  # so that a thumbnail made from it can be told apart
        page, _ = render_review_report(store, groups[:1], lambda gs, k: plan(gs, keepers=k, include_near=True))
    finally:
        store.close()
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    with Image.open(io.BytesIO(base64.b64decode(images[0]))) as im:
        assert im.size == (240, 180)
        assert im.getpixel((120, 90)) == pytest.approx((250, 0, 250), abs=8)  # the page's thumbnail, made smaller


def _solid_jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (250, 0, 250)).save(out, "JPEG", quality=95)
    return out.getvalue()


def test_without_the_web_extra_the_plain_report_is_written(tmp_path: Path) -> None:
    root, db = make_library(tmp_path)
    page = tmp_path / "plain.html"
    code = (
        "import sys; sys.modules['jinja2'] = None; from dedupe.cli import main;"
        f" sys.argv = ['dedupe', 'report', '--html', {str(page)!r}, {str(root)!r}, '--db', {str(db)!r}]; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert "Keeper rules:" in page.read_text()  # the report of dedupe.report
