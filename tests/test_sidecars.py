"""Sidecar files (.xmp, .aae) travel with their photo in every action, and come back with it on undo."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from click.testing import CliRunner

from dedupe.cli import cli
from dedupe.sidecars import find_sidecars, sidecar_target
from tests.conftest import draw_photo, save

SMALL = (400, 300)
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>\n'


def touch(path: Path, data: bytes = XMP) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def library(tmp_path: Path) -> tuple[Path, str, Path, Path]:
    """keep/a.jpg and its exact copy in backup/a.jpg (newer, so the copy is the one acted on), scanned."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    copy = root / "backup" / "a.jpg"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(keeper.read_bytes())
    os.utime(copy, (2_000_000_000, 2_000_000_000))
    db = str(tmp_path / "store.sqlite")
    r = CliRunner().invoke(cli, ["scan", str(root), "--db", db, "-q"])
    assert r.exit_code == 0, r.output
    return root, db, keeper, copy


def test_find_sidecars_by_name_and_extension_in_any_case(tmp_path: Path) -> None:
    photo = touch(tmp_path / "IMG_1.JPG", b"jpeg")
    a = touch(tmp_path / "IMG_1.JPG.xmp")
    b = touch(tmp_path / "IMG_1.XMP")
    c = touch(tmp_path / "IMG_1.aae")
    touch(tmp_path / "IMG_10.xmp")  # another photo's
    touch(tmp_path / "img_1.xmp")  # another name: names are compared exactly
    (tmp_path / "IMG_1.jpg.xmp").mkdir()  # a folder is no sidecar
    (tmp_path / "IMG_1.JPG.aae").symlink_to(a)  # nor is a symbolic link
    assert find_sidecars(str(photo)) == tuple(sorted(str(p) for p in (a, b, c)))


def test_a_sidecar_shared_by_two_photos_of_one_name_stays(tmp_path: Path) -> None:
    jpeg = touch(tmp_path / "IMG_2.JPG", b"jpeg")
    touch(tmp_path / "IMG_2.CR2", b"raw")
    touch(tmp_path / "IMG_2.xmp")  # Lightroom's, for the RAW and the JPEG alike
    own = touch(tmp_path / "IMG_2.JPG.xmp")
    assert find_sidecars(str(jpeg)) == (str(own),)
    assert find_sidecars(str(tmp_path / "missing" / "x.jpg")) == ()


def test_a_sidecar_that_may_be_another_files_stays(tmp_path: Path) -> None:
    copy = touch(tmp_path / "a.jpg", b"jpeg")
    touch(tmp_path / "a.jpg.jpg", b"jpeg")  # its NAME.xmp is a.jpg.xmp too
    touch(tmp_path / "a.jpg.xmp")
    assert find_sidecars(str(copy)) == ()
    assert find_sidecars(str(tmp_path / "a.jpg.jpg")) == ()
    lone = touch(tmp_path / "IMG_3", b"jpeg")  # no extension, beside IMG_3.jpg: IMG_3.xmp is shared
    touch(tmp_path / "IMG_3.jpg", b"jpeg")
    touch(tmp_path / "IMG_3.xmp")
    assert find_sidecars(str(lone)) == ()


def test_sidecar_target_follows_the_new_name() -> None:
    assert sidecar_target("/a/IMG_1.jpg.xmp", "/a/IMG_1.jpg", "/m/a/IMG_1 (1).jpg") == "/m/a/IMG_1 (1).jpg.xmp"
    assert sidecar_target("/a/IMG_1.XMP", "/a/IMG_1.jpg", "/m/a/IMG_1 (1).jpg") == "/m/a/IMG_1 (1).XMP"


def test_trash_takes_the_sidecars_and_undo_brings_them_back(tmp_path: Path, trash_home: Path) -> None:
    root, db, keeper, copy = library(tmp_path)
    xmp = touch(copy.with_suffix(".xmp"), XMP + b"<!-- rating 5 -->")
    aae = touch(root / "backup" / "a.jpg.aae", b"<plist/>")
    keeper_xmp = touch(keeper.with_suffix(".xmp"))

    dry = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--dry-run", "--format", "json"])
    assert dry.exit_code == 0, dry.output
    (step,) = json.loads(dry.output)["groups"][0]["steps"]
    assert step["path"] == str(copy) and step["sidecars"] == [str(aae), str(xmp)]
    assert xmp.exists() and aae.exists()

    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--yes"])
    assert r.exit_code == 0, r.output
    assert "(with a.jpg.aae, a.xmp)" in " ".join(r.output.split())
    assert not copy.exists() and not xmp.exists() and not aae.exists()
    assert keeper.exists() and keeper_xmp.read_bytes() == XMP  # the keeper's own sidecar is not touched
    trashed = sorted(p.name for p in (trash_home / "files").iterdir())
    assert trashed == ["a.jpg", "a.jpg.aae", "a.xmp"]

    u = CliRunner().invoke(cli, ["undo", "--db", db])
    assert u.exit_code == 0, u.output
    assert xmp.read_bytes() == XMP + b"<!-- rating 5 -->" and aae.read_bytes() == b"<plist/>" and copy.exists()
    assert list((trash_home / "files").iterdir()) == []
    with closing(sqlite3.connect(db)) as conn:  # the sidecars never became records of the store
        rows = conn.execute("SELECT count(*) FROM files").fetchone()[0]
        journal = conn.execute("SELECT count(*) FROM journal WHERE sidecar_of IS NOT NULL").fetchone()[0]
    assert rows == 2 and journal == 2


def test_move_takes_the_sidecar_under_the_photos_new_name(tmp_path: Path) -> None:
    root, db, _keeper, copy = library(tmp_path)
    xmp = touch(copy.with_suffix(".xmp"))
    dest = tmp_path / "moved"
    taken = save(draw_photo(9, SMALL), dest / "photos" / "backup" / "a.jpg")  # the name is taken there
    taken_xmp = touch(dest / "photos" / "backup" / "a.xmp", b"somebody else's")

    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--yes", "--action", "move", "--to", str(dest)])
    assert r.exit_code == 0, r.output
    new = dest / "photos" / "backup"
    assert (new / "a (1).jpg").exists() and (new / "a (1).xmp").read_bytes() == XMP
    assert taken.exists() and taken_xmp.read_bytes() == b"somebody else's"
    assert not copy.exists() and not xmp.exists()

    u = CliRunner().invoke(cli, ["undo", "--db", db])
    assert u.exit_code == 0, u.output
    assert copy.exists() and xmp.read_bytes() == XMP
    assert not (new / "a (1).jpg").exists() and not (new / "a (1).xmp").exists()


def test_links_leave_the_sidecar_beside_the_link(tmp_path: Path) -> None:
    root, db, keeper, copy = library(tmp_path)
    xmp = touch(copy.with_suffix(".xmp"))
    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--yes", "--action", "symlink"])
    assert r.exit_code == 0, r.output
    assert copy.is_symlink() and copy.readlink() == keeper and xmp.read_bytes() == XMP


def test_a_shared_sidecar_stays_when_one_of_its_photos_goes(tmp_path: Path, trash_home: Path) -> None:
    root, db, _keeper, copy = library(tmp_path)
    save(draw_photo(5, SMALL), copy.with_suffix(".png"))  # backup/a.png: another photo called a
    shared = touch(copy.with_suffix(".xmp"))
    r = CliRunner().invoke(cli, ["review", str(root), "--db", db, "--yes"])
    assert r.exit_code == 0, r.output
    assert not copy.exists() and shared.read_bytes() == XMP


def test_the_script_carries_the_sidecar(tmp_path: Path) -> None:
    root, db, _keeper, copy = library(tmp_path)
    xmp = touch(copy.with_suffix(".xmp"))
    dest = tmp_path / "moved"
    script = tmp_path / "plan.sh"
    args = ["review", str(root), "--db", db, "--action", "move", "--to", str(dest), "--script", str(script)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    done = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert not copy.exists() and not xmp.exists()
    assert (dest / "photos" / "backup" / "a.jpg").exists()
    assert (dest / "photos" / "backup" / "a.xmp").read_bytes() == XMP
