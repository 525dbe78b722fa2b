from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from dedupe.calibrate import MARGIN, MAX_RECOMMENDED, calibrate
from dedupe.cli import cli
from tests.conftest import draw_photo, save


def _photos(root: Path, n: int = 4) -> Path:
    for i in range(n):
        save(draw_photo(20 + i, (800, 600)), root / f"p{i}.jpg", quality=90)
    (root / "notes.txt").write_text("not a photo")
    return root


def test_calibrate_measures_copies_against_different_photos(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos")
    before = sorted(p.name for p in root.iterdir())
    result = calibrate([root], sample=4)
    assert (result.photos, result.copies, result.unrelated, result.library) == (4, 28, 6, 4)
    assert set(result.by_edit) == {"resize50", "jpeg_q60", "png", "bright20", "crop5", "rot90", "mirror"}
    assert result.by_edit["rot90"][1] <= 4 and result.by_edit["png"][0] <= 2  # turned copies found, lossless close
    nearest = result.nearest_unrelated[0][0]
    assert 0 <= result.recommended <= min(MAX_RECOMMENDED, nearest - MARGIN)
    row = result.table[result.recommended]
    assert row.unrelated_pairs == 0 and result.recall == row.copies_found / result.copies > 0.5
    assert sorted(p.name for p in root.iterdir()) == before  # nothing below the folder is touched


def test_calibrate_command_table_json_and_bad_input(tmp_path: Path) -> None:
    root = _photos(tmp_path / "photos", 3)
    out = CliRunner().invoke(cli, ["calibrate", str(root), "--sample", "3"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "Recommended: --threshold" in out.output and "rot90" in out.output
    js = CliRunner().invoke(cli, ["calibrate", str(root), "--sample", "3", "--format", "json"])
    assert json.loads(js.output)["photos"] == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.jpg").write_text("not a photo")
    bad = CliRunner().invoke(cli, ["calibrate", str(empty)])
    assert bad.exit_code == 1 and "need at least 2" in bad.output and "Traceback" not in bad.output
    usage = CliRunner().invoke(cli, ["calibrate", str(root), "--sample", "1"])
    assert usage.exit_code == 2


def test_a_real_duplicate_pair_is_set_aside_not_counted_as_different_photos(tmp_path: Path) -> None:
    """An original and its 2x upscale are one photo: they are set aside, named, and do not pull the threshold
    down to 0."""
    root = _photos(tmp_path / "photos", 4)
    save(draw_photo(20, (800, 600)).resize((1600, 1200)), root / "p0_upscaled.jpg", quality=90)
    result = calibrate([root], sample=5)
    assert [sorted(pair[1:]) for pair in result.set_aside] == [[str(root / "p0.jpg"), str(root / "p0_upscaled.jpg")]]
    assert result.unrelated == 9 and result.nearest_unrelated[0][0] > MARGIN
    assert result.recommended > 0
    shown = CliRunner().invoke(cli, ["calibrate", str(root), "--sample", "5"])
    assert shown.exit_code == 0, shown.output
    aside = shown.output.split("Set aside: these look like real duplicates")[1]
    line = aside.splitlines()[1]
    assert str(root / "p0.jpg  =") in line or str(root / "p0.jpg") == line.rsplit("  =  ", 1)[1]
    assert str(root / "p0_upscaled.jpg") in line
    js = json.loads(CliRunner().invoke(cli, ["calibrate", str(root), "--sample", "5", "--format", "json"]).output)
    assert [sorted(p["paths"]) for p in js["set_aside"]] == [[str(root / "p0.jpg"), str(root / "p0_upscaled.jpg")]]
