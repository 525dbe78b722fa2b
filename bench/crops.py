"""How far can a copy be cropped and still be found? Prints a table and writes it to a file.

Usage:
    python bench/crops.py [--mixed DIR] [--out FILE]

Takes the originals of the benchmark's mixed folder (built by `python bench/run.py`, by default under
/tmp/dedupe-bench/mixed), cuts each in several ways, saves every cut as a JPEG in memory, and asks `match.match`
(the default rule) whether it matches its original. Every cut is also matched against every other original and
every look-alike, which must never match. Runs on all cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from dedupe import fingerprint
from dedupe.match import MatchRule, match
from dedupe.models import Fingerprint

# Fractions cut off the left, top, right and bottom.
CUTS = {
    "10%, uneven (6/4/4/6)": (0.06, 0.04, 0.04, 0.06),
    "15%, uneven (10/6/5/9)": (0.10, 0.06, 0.05, 0.09),
    "20%, uneven (12/8/8/12)": (0.12, 0.08, 0.08, 0.12),
    "20% off left and bottom": (0.20, 0.0, 0.0, 0.20),
    "4:3 to 16:9 (12.5% top and bottom)": (0.0, 0.125, 0.0, 0.125),
    "25%, uneven (15/10/10/15)": (0.15, 0.10, 0.10, 0.15),
}


def _jpeg(im: Image.Image) -> Fingerprint:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))


def _cuts(path: str) -> tuple[str, Fingerprint, dict[str, Fingerprint]]:
    original = fingerprint.fingerprint_file(path)
    with Image.open(path) as im:
        # Full size, transparency flattened as dedupe flattens it (onto its grey), so the cut shows the same.
        rgb = fingerprint._flat_upright(fingerprint._normalise_mode(im), 1)
    w, h = rgb.size
    cut = {
        name: _jpeg(rgb.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h))))
        for name, (left, top, right, bottom) in CUTS.items()
    }
    return path, original, cut


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mixed", default=os.path.join(tempfile.gettempdir(), "dedupe-bench", "mixed"))
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "dedupe-crops.md"))
    a = ap.parse_args()
    truth_file = Path(a.mixed) / "truth.json"
    if not truth_file.exists():
        print(f"no {truth_file}: run 'python bench/run.py' first, or give --mixed DIR", file=sys.stderr)
        return 2
    truth = json.loads(truth_file.read_text())
    originals = [str(Path(a.mixed) / p) for p in truth["originals"]]
    lookalikes = sorted({str(Path(a.mixed) / p) for pair in truth["lookalikes"] for p in pair})
    with ProcessPoolExecutor() as pool:
        results = list(pool.map(_cuts, originals))
        others = list(pool.map(fingerprint.fingerprint_file, lookalikes))
    rule = MatchRule()
    everyone = [(p, fp) for p, fp, _ in results] + list(zip(lookalikes, others, strict=True))
    lines = [
        f"Originals: {len(results)}; each cut saved as JPEG quality 90 and matched with the default rule.",
        "",
        "| cut | found | of | cropped matches | false matches (other originals, look-alikes) |",
        "|---|---|---|---|---|",
    ]
    for name in CUTS:
        found = cropped = false = 0
        for path, original, cut in results:
            m = match(cut[name], original, rule)
            found += m is not None
            cropped += m is not None and m.crop is not None
            false += sum(match(cut[name], fp, rule) is not None for p, fp in everyone if p != path)
        lines.append(f"| {name} | {found} | {len(results)} | {cropped} | {false} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
