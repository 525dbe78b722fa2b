"""Sidecar files (.xmp, .aae) travel with their photo in every action, and come back with it on undo."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from dedupe.cli import cli
from dedupe.sidecars import find_sidecars, sidecar_target
from tests.conftest import draw_photo, exact_copy, invoke, save, scanned

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


# --- sidecars in review runs ------------------------------------------------------------------------------------


def test_keepers_darktable_sidecar_is_not_trashed_with_a_copy_named_like_it(tmp_path: Path, trash_home: Path) -> None:
    """The keeper a.jpg's own a.jpg.xmp stays when its copy a.jpg.jpg goes, though for that copy it is
    NAME.xmp."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "a.jpg", quality=90)
    copy = exact_copy(keeper, root / "a.jpg.jpg")
    keeper_xmp = root / "a.jpg.xmp"
    keeper_xmp.write_bytes(b"the keeper's darktable edits")
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert not copy.exists() and keeper.exists()
    assert keeper_xmp.exists(), "the keeper's own sidecar went to the trash with the copy"


def test_keepers_lightroom_sidecar_is_not_trashed_with_an_extensionless_copy(tmp_path: Path, trash_home: Path) -> None:
    """IMG_1.xmp beside the keeper IMG_1.jpg and its extensionless copy IMG_1 is shared by both: the plan
    lists no sidecar for the copy, and it stays."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(2, SMALL), root / "IMG_1.jpg", quality=90)
    copy = exact_copy(keeper, root / "IMG_1")
    keeper_xmp = root / "IMG_1.xmp"
    keeper_xmp.write_bytes(b"the keeper's Lightroom edits")
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--dry-run", "--format", "json")
    assert code == 0, out
    (step,) = json.loads(out)["groups"][0]["steps"]
    assert step["path"] == str(copy)
    assert step["sidecars"] == [], "the plan sends the keeper's IMG_1.xmp away with the copy"

    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert not copy.exists()
    assert keeper_xmp.exists(), "the keeper's own sidecar went to the trash with the copy"


def test_a_shared_sidecar_is_not_carried_off_when_the_plan_said_it_stays(tmp_path: Path, trash_home: Path) -> None:
    """A sidecar shared by two copies stays where it is, also after the first of them went: apply does no
    more than the plan said."""
    root = tmp_path / "photos"
    k1 = save(draw_photo(1, SMALL), root / "keep" / "k1.png")
    k2 = save(draw_photo(2, SMALL), root / "keep" / "k2.jpg", quality=90)
    exact_copy(k1, root / "b" / "a.png")
    exact_copy(k2, root / "b" / "a.jpg")
    shared = root / "b" / "a.xmp"
    shared.write_bytes(b"edits of both a.jpg and a.png")
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--dry-run", "--format", "json")
    assert code == 0, out
    steps = [s for g in json.loads(out)["groups"] for s in g["steps"]]
    assert sorted(Path(s["path"]).name for s in steps) == ["a.jpg", "a.png"]
    assert all(s["sidecars"] == [] for s in steps)  # the plan: a.xmp stays

    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert not (root / "b" / "a.jpg").exists() and not (root / "b" / "a.png").exists()
    assert shared.exists(), f"the shared sidecar the plan left alone was trashed:\n{out}"


def test_a_moved_sidecar_keeps_its_photos_name_when_only_the_sidecar_name_is_taken(tmp_path: Path) -> None:
    """A moved photo and its sidecar keep one name: where only the sidecar's name is taken at the
    destination, both take the next free name ('a (1).jpg' and 'a (1).xmp')."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    copy = exact_copy(keeper, root / "backup" / "a.jpg")
    (root / "backup" / "a.xmp").write_bytes(b"the copy's edits")
    dest = tmp_path / "moved"
    there = dest / "photos" / "backup"
    there.mkdir(parents=True)
    (there / "a.xmp").write_bytes(b"an unrelated sidecar")
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--yes", "--action", "move", "--to", dest)
    assert code == 0, out
    assert not copy.exists()
    assert (there / "a.xmp").read_bytes() == b"an unrelated sidecar"
    photos = [p for p in there.iterdir() if p.suffix == ".jpg"]
    assert len(photos) == 1
    moved = photos[0]
    edits = [p for p in there.iterdir() if p.suffix == ".xmp" and p.read_bytes() == b"the copy's edits"]
    assert len(edits) == 1
    assert edits[0].stem == moved.stem, f"photo moved to {moved.name} but its sidecar to {edits[0].name}"


def test_a_non_utf8_named_copy_goes_to_the_trash_with_its_sidecar(tmp_path: Path, trash_home: Path) -> None:
    """A copy whose name is not UTF-8 goes to the trash with its sidecar, and the run goes on."""
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes, not UTF-8
    copy = exact_copy(keeper, root / "backup" / f"{name}.jpg")
    sidecar = root / "backup" / f"{name}.xmp"
    sidecar.write_bytes(b"edits")
    k2 = save(draw_photo(2, SMALL), root / "keep" / "z.jpg", quality=90)
    later = exact_copy(k2, root / "backup" / "z.jpg")  # a step after the non-UTF-8 one
    db = scanned(root, tmp_path)

    code, out = invoke("review", root, "--db", db, "--yes")
    assert code == 0, out
    assert "internal error" not in out
    assert not copy.exists() and not sidecar.exists() and not later.exists()


def test_a_sidecar_that_stayed_is_named_without_raw_control_characters(tmp_path: Path, trash_home: Path) -> None:
    """A sidecar that cannot follow its photo (immutable, even for root) is named with control characters
    escaped."""
    if shutil.which("chattr") is None:
        pytest.skip("no chattr here")
    root = tmp_path / "photos"
    keeper = save(draw_photo(1, SMALL), root / "keep" / "a.jpg", quality=90)
    copy = exact_copy(keeper, root / "backup" / "esc\x1b[2Jclear.jpg")
    sidecar = root / "backup" / "esc\x1b[2Jclear.xmp"
    sidecar.write_bytes(b"edits")
    db = scanned(root, tmp_path)
    if subprocess.run(["chattr", "+i", str(sidecar)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot make a file immutable here")
    try:
        code, out = invoke("review", root, "--db", db, "--yes")
    finally:
        subprocess.run(["chattr", "-i", str(sidecar)], capture_output=True, check=False)
    assert code == 0, out
    assert not copy.exists() and sidecar.exists()
    assert "stayed" in out
    assert "\x1b" not in out, repr(out)
