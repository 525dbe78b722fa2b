"""Shots of one burst are similar, not duplicates: real JPEGs with EXIF camera and sub-second times."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image, ImageDraw

from dedupe.cli import cli
from dedupe.fingerprint import fingerprint_file
from tests.conftest import draw_photo, save


def _exif(camera: tuple[str, str], when: str, subsec: str) -> Image.Exif:
    exif = Image.Exif()
    exif[271], exif[272] = camera
    ifd = exif.get_ifd(0x8769)
    ifd[36867] = when
    ifd[37521] = subsec
    return exif


def _burst(root: Path) -> None:
    shot1 = draw_photo(11)
    shot2 = shot1.copy()
    ImageDraw.Draw(shot2).ellipse([500, 400, 540, 440], fill=(250, 250, 250))  # the subject moved a little
    canon = ("Canon", "EOS R6")
    save(shot1, root / "IMG_0001.jpg", quality=92, exif=_exif(canon, "2024:05:01 10:00:00", "25"))
    save(shot2, root / "IMG_0002.jpg", quality=92, exif=_exif(canon, "2024:05:01 10:00:00", "75"))
    # A copy of the first shot keeps its EXIF time: a duplicate.
    save(
        shot1.resize((600, 450)),
        root / "export" / "IMG_0001_small.jpg",
        quality=80,
        exif=_exif(canon, "2024:05:01 10:00:00", "25"),
    )


def test_camera_and_subsecond_time_are_read(tmp_path: Path) -> None:
    _burst(tmp_path)
    fp = fingerprint_file(tmp_path / "IMG_0002.jpg")
    assert fp.camera == "Canon EOS R6"
    assert fp.taken == "2024-05-01T10:00:00.750000"


def test_burst_shots_are_kept_apart_and_copies_still_found(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    _burst(root)
    db = str(tmp_path / "s.sqlite")
    result = CliRunner().invoke(cli, ["scan", str(root), "--db", db, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    groups = [sorted(Path(f["path"]).name for f in g["files"]) for g in json.loads(result.output)["groups"]]
    assert groups == [["IMG_0001.jpg", "IMG_0001_small.jpg"]]
    # Asked to, the burst shot joins them: it is that close.
    together = CliRunner().invoke(cli, ["groups", str(root), "--db", db, "--bursts-together", "--format", "json"])
    (group,) = json.loads(together.output)["groups"]
    assert len(group["files"]) == 3
