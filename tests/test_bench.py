"""A small run of the benchmark script, so that it cannot rot (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, draw_photo, load_bench, save


def tiny_corpus(root: Path, *, junk: bool) -> Path:
    """Three photos with an exact, a resized and a PNG copy each, and a truth.json as bench/corpus.py writes."""
    truth: dict[str, list[object]] = {"originals": [], "copies": [], "lookalikes": [], "junk": []}
    for i in range(3):
        im = draw_photo(i * 7 + 1, (480, 360))
        orig = f"originals/p{i}.jpg"
        save(im, root / orig, quality=90)
        truth["originals"].append(orig)
        copies = {
            "exact": (f"copies/p{i}__exact.jpg", None),
            "resize50": (f"copies/p{i}__resize50.jpg", im.resize((240, 180))),
            "png": (f"copies/p{i}__png.png", im),
        }
        for edit, (rel, pic) in copies.items():
            if pic is None:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes((root / orig).read_bytes())
            else:
                save(pic, root / rel)
            truth["copies"].append({"path": rel, "original": orig, "edit": edit})
    if junk:
        (root / "junk").mkdir()
        (root / "junk" / "notes.jpg").write_text("not a photo")
        truth["junk"].append("junk/notes.jpg")
    (root / "truth.json").write_text(json.dumps(truth))
    return root


def test_bench_script_writes_a_table_with_sane_numbers(tmp_path: Path) -> None:
    mixed = tiny_corpus(tmp_path / "mixed", junk=True)
    camera = tiny_corpus(tmp_path / "camera", junk=False)
    out = tmp_path / "results.md"
    args = ["--mixed", str(mixed), "--camera", str(camera), "--no-peers", "--repeat", "1", "--out", str(out)]
    r = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    table = out.read_text()
    assert table in r.stdout
    rows = {
        (cells[1], cells[2]): cells
        for line in table.splitlines()
        if line.startswith("| ") and len(cells := [c.strip() for c in line.split("|")]) > 12
    }
    for folder, files in (("mixed", 13), ("camera", 12)):
        cells = rows[(folder, "dedupe")]
        assert int(cells[3]) == files
        assert float(cells[4]) > 0 and float(cells[5]) > 0  # wall time, files per second
        assert 10 < float(cells[6]) < 4000  # peak MiB of the process tree
        # Every copy here is an easy one: all true pairs found, nothing else, no junk grouped.
        assert (cells[7], cells[8], cells[9]) == ("1.000", "1.000", "1.000")
        assert cells[11] == "0" and cells[12] == "1.00x"
        assert float(cells[13]) > 0 and cells[14] == "1.00x"  # CPU seconds of the process tree
    assert "| resize50 | 3 | 100% |" in table
    assert "Machine: " in table


def test_scoring_counts_pairs_and_edit_kinds(tmp_path: Path) -> None:
    run = load_bench("run")
    root = tiny_corpus(tmp_path / "c", junk=True)
    truth = run.Truth.load(str(root))
    assert len(truth.true_pairs()) == 3 * 6  # four files per picture
    # One picture fully grouped, one with only its exact copy, a junk file grouped with the third.
    groups = [
        ["originals/p0.jpg", "copies/p0__exact.jpg", "copies/p0__resize50.jpg", "copies/p0__png.png"],
        [str(root / "originals/p1.jpg"), str(root / "copies/p1__exact.jpg")],
        ["originals/p2.jpg", "junk/notes.jpg"],
    ]
    s = run.score(truth, groups)
    assert s.pairs == 6 + 1 + 1
    assert s.precision == 7 / 8
    assert s.recall == 7 / 18
    assert s.junk_grouped == 1
    assert s.by_edit == {"exact": 2 / 3, "png": 1 / 3, "resize50": 1 / 3}
