"""Turned and mirrored copies, drawn as real image files."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from dedupe.cli import cli
from dedupe.fingerprint import VERSION, fingerprint_file
from dedupe.match import hamming, match_distance
from dedupe.models import TRANSFORMS
from dedupe.store import _MIGRATIONS, Store
from tests.conftest import draw_photo, run_dedupe, save

_PIL = dict(
    zip(
        TRANSFORMS,
        (
            Image.Transpose.ROTATE_90,
            Image.Transpose.ROTATE_180,
            Image.Transpose.ROTATE_270,
            Image.Transpose.FLIP_LEFT_RIGHT,
            Image.Transpose.FLIP_TOP_BOTTOM,
            Image.Transpose.TRANSPOSE,
            Image.Transpose.TRANSVERSE,
        ),
        strict=True,
    )
)


def test_turned_hash_pixels_are_pillows_transposes() -> None:
    import numpy as np

    from dedupe import fingerprint

    pixels = np.random.default_rng(7).integers(0, 256, (32, 32)).astype(np.uint8)
    for transpose, turn in zip(fingerprint._DIHEDRAL, fingerprint._ARRAY_DIHEDRAL, strict=True):
        assert (turn(pixels.astype(np.float64)) == np.asarray(Image.fromarray(pixels).transpose(transpose))).all(), (
            transpose
        )


def test_variants_are_the_hashes_of_the_turned_pictures(tmp_path: Path) -> None:
    im = draw_photo(3)
    fp = fingerprint_file(save(im, tmp_path / "a.png"))
    assert len(fp.variants) == 7
    for k, name in enumerate(TRANSFORMS):
        turned = fingerprint_file(save(im.transpose(_PIL[name]), tmp_path / f"{name}.png"))
        assert hamming(turned.phash, fp.variants[k]) <= 2, name
        distance, how = match_distance(turned, fp)
        assert distance <= 2
        # turned by `name`, the copy needs the inverse to look like the original (self-inverse but for 90/270)
        assert how == {"rot90": "rot270", "rot270": "rot90"}.get(name, name)
        assert hamming(turned.phash, fp.phash) > 8  # upright, it is far: only the variants find it


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    im = draw_photo(5)
    save(im, root / "original.jpg", quality=92)
    save(im.transpose(Image.Transpose.ROTATE_90), root / "turned.jpg", quality=85)
    save(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((600, 450)), root / "mirrored.png")
    for seed in (6, 7):
        save(draw_photo(seed), root / f"other{seed}.jpg", quality=90)
        save(draw_photo(seed).transpose(Image.Transpose.ROTATE_180), root / f"other{seed}_upside_down.jpg")
    return root


def test_scan_groups_turned_and_mirrored_copies_and_says_how(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    db = str(tmp_path / "s.sqlite")
    result = CliRunner().invoke(cli, ["scan", str(root), "--db", db, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    groups = json.loads(result.output)["groups"]
    names = sorted(sorted(Path(f["path"]).name for f in g["files"]) for g in groups)
    assert names == [
        ["mirrored.png", "original.jpg", "turned.jpg"],
        ["other6.jpg", "other6_upside_down.jpg"],
        ["other7.jpg", "other7_upside_down.jpg"],
    ]
    main = next(g for g in groups if len(g["files"]) == 3)
    # The best copy is the reference; each member says how it is turned, within the threshold.
    assert Path(main["files"][0]["path"]).name == "original.jpg"
    how = {Path(f["path"]).name: (f["transform"], f["distance"]) for f in main["files"][1:]}
    assert how["turned.jpg"][0] == "rot270" and how["mirrored.png"][0] == "mirror"
    assert all(d <= 4 for _, d in how.values())
    upside = [f for g in groups for f in g["files"][1:] if "other" in f["path"]]
    assert [f["transform"] for f in upside] == ["rot180", "rot180"]
    # The table says it too; without rotations, none of these copies is found.
    table = CliRunner().invoke(cli, ["groups", str(root), "--db", db], catch_exceptions=False)
    assert "rot180" in table.output and "rot270" in table.output and "mirror" in table.output
    plain = CliRunner().invoke(cli, ["groups", str(root), "--db", db, "--no-rotations", "--format", "json"])
    assert json.loads(plain.output)["groups"] == []


def test_rotations_in_a_real_process(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    proc = run_dedupe("scan", str(root), "--db", str(tmp_path / "s.sqlite"), "--format", "csv", "-j", "1")
    assert proc.returncode == 0, proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert "transform" in header.split(",")
    assert sum(",rot180," in r for r in rows) == 2


def test_a_schema_1_store_is_upgraded_and_refingerprinted(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    db = tmp_path / "old.sqlite"
    # A store written before turned hashes existed: only the first migration, an old fingerprint version.
    conn = sqlite3.connect(db)
    for statement in _MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("INSERT INTO images VALUES ('x', '1;old', 'i', 'JPEG', 1, 1, 0, 0, NULL, 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    result = CliRunner().invoke(cli, ["scan", str(root), "--db", str(db), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["groups"]) == 3
    with Store.open(db, readonly=True) as store:
        records = store.records_under([str(root)], VERSION)
        assert len(records) == 7 and all(len(r.fingerprint.variants) == 7 for r in records)


def test_variants_and_camera_round_trip_through_the_store(tmp_path: Path) -> None:
    fp = fingerprint_file(save(draw_photo(9), tmp_path / "a.jpg"))
    fp = replace(fp, variants=(2**64 - 1, 0, 1, 2**63, 5, 6, 7), camera="Canon EOS R6")
    with Store.open(tmp_path / "s.sqlite") as store:
        with store.transaction():
            store.put_fingerprint(fp, "v")
        assert store.get_fingerprint(fp.content_hash, "v") == fp
