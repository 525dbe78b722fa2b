"""`dedupe report --html`: one self-contained page, checked as text and as rendered by headless Chromium."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dedupe.cli import cli
from dedupe.fingerprint import thumbnail_jpeg
from dedupe.group import stored_groups
from dedupe.report import render_html
from dedupe.scan import scan
from dedupe.store import Store
from tests.conftest import draw_photo, save

SMALL = (400, 300)
KEEPER_GREEN = (0x1B, 0x8A, 0x2E)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def make_report(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    """One group: photos/a.jpg (the group's reference) and photos/backup/a.jpg, which the rules keep."""
    root = tmp_path / "photos"
    a = save(draw_photo(1, SMALL), root / "a.jpg", quality=90)
    (root / "backup").mkdir()
    (root / "backup" / "a.jpg").write_bytes(a.read_bytes())
    db = str(tmp_path / "s.sqlite")
    assert CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"]).exit_code == 0
    page = tmp_path / "report.html"
    r = CliRunner().invoke(
        cli, ["report", "--html", str(page), str(root), "--db", db, "--keep", f"path:{root / 'backup'}", *extra]
    )
    assert r.exit_code == 0, r.output
    assert "Wrote" in r.output and "1 group(s), 2 files" in r.output
    return page, root


def test_thumbnails_are_small_upright_jpegs(tmp_path: Path) -> None:
    im = draw_photo(2, (800, 400))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown upright as 400 wide, 800 high
    path = save(im, tmp_path / "r.jpg", exif=exif.tobytes())
    thumb = Image.open(io.BytesIO(thumbnail_jpeg(path, 240)))
    assert thumb.format == "JPEG" and thumb.size == (120, 240)


def test_the_page_is_self_contained_and_states_the_facts(tmp_path: Path) -> None:
    page, root = make_report(tmp_path)
    text = page.read_text()
    assert not re.search(r"(src|href)=\"(?!data:|#)", text), "only data: URIs may load (and links within the page)"
    assert "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text
    images = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', text)
    assert len(images) == 2
    for data in images:
        thumb = Image.open(io.BytesIO(base64.b64decode(data)))
        assert thumb.format == "JPEG" and max(thumb.size) == 240
    keeper = re.findall(r'<figure class="member keeper" data-path="([^"]+)"', text)
    assert keeper == [str(root / "backup" / "a.jpg")]
    for fact in ("400x300", "JPEG", "same bytes", "reference", "Taken", "Modified", f"in preferred folder {root}"):
        assert fact in text


def test_byte_copies_share_a_letter_on_the_page(tmp_path: Path) -> None:
    """The page marks files with the same bytes with one letter, as the terminal's Copies column does."""
    page, root = make_report(tmp_path)
    copies = re.findall(r"<dd class=.copies.>([^<]*)</dd>", page.read_text())
    assert copies == ["byte copy A", "byte copy A"]
    with Store.open(tmp_path / "s.sqlite", readonly=True) as store:
        groups, _, _ = stored_groups(store, [str(root)])
    plain, _ = render_html(groups)  # the page without the web extra
    assert re.findall(r"<dd class=.copies.>([^<]*)</dd>", plain) == ["byte copy A", "byte copy A"]


def test_a_file_that_cannot_be_previewed_is_said_so(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    a = save(draw_photo(3, SMALL), root / "a.jpg")
    (root / "b.jpg").write_bytes(a.read_bytes())
    db = str(tmp_path / "s.sqlite")
    CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"])
    (root / "b.jpg").unlink()
    page = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", "--html", str(page), str(root), "--db", db])
    assert r.exit_code == 0 and "1 file(s) could not be previewed" in r.output
    assert "no preview: vanished" in page.read_text()
    bad = CliRunner().invoke(cli, ["report", "--html", str(tmp_path / "no" / "such" / "r.html"), "--db", db])
    assert bad.exit_code == 1 and "cannot write" in bad.output and "Traceback" not in bad.output


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-breakpad",
            "--no-first-run",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        timeout=90,
        check=False,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package 'chromium'; CI installs it)")
def test_chromium_shows_the_group_side_by_side_with_the_keeper_framed(tmp_path: Path) -> None:
    page, root = make_report(tmp_path)
    dom = _chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout.decode()
    assert html.count('class="member keeper"') == 1 and html.count('class="member"') == 1
    assert "KEEP" in html and str(root / "backup" / "a.jpg") in html

    shot = tmp_path / "shot.png"
    r = _chromium(tmp_path, "--window-size=1000,900", f"--screenshot={shot}", page.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB")).astype(np.int64)
    # The photos were drawn and decoded: a page of text alone has far fewer colours.
    colours = np.unique(px[..., 0] * 65536 + px[..., 1] * 256 + px[..., 2])
    assert len(colours) > 2000
    # The green frame is drawn around the first card only (a group lists its keeper first): both cards sit side by
    # side on one row.
    ys, xs = np.nonzero(np.all(px == KEEPER_GREEN, axis=-1))
    assert len(xs) > 0, "no keeper frame visible"
    assert xs.max() < 400 and xs.max() - xs.min() < 300
    assert ys.max() - ys.min() > 240  # taller than the thumbnail: a frame, not a stray pixel


def test_the_page_without_the_web_extra_shows_odd_names_escaped_on_one_line(tmp_path: Path) -> None:
    """The plain page (no web extra) shows a newline, a tab and a backslash in a name as the terminal does, and
    markup in a name as text."""
    root = tmp_path / "photos"
    a = save(draw_photo(4, SMALL), root / "a.jpg", quality=90)
    for name in ("new\nline.jpg", "tab\there.jpg", "lit\\x0a.jpg", "<b>&amp;.jpg"):
        (root / name).write_bytes(a.read_bytes())
    with Store.open(tmp_path / "s.sqlite") as store:
        scan([str(root)], store)
        groups, _, _ = stored_groups(store, [str(root)])
    page, _ = render_html(groups)
    paths = re.findall(r"<dd class='path'>([^<]*)</dd>", page)
    assert sorted(p.removeprefix(f"{root}/") for p in paths) == sorted(
        ["a.jpg", "new\\x0aline.jpg", "tab\\x09here.jpg", "lit\\\\x0a.jpg", "&lt;b&gt;&amp;amp;.jpg"]
    )
