"""How far can a copy be cropped and still be found? Prints a table and writes it to a file.

Usage:
    python bench/crops.py [--mixed DIR] [--out FILE]

Takes the originals of the benchmark's mixed folder (built by `python bench/run.py`, by default under
/tmp/dedupe-bench/mixed), cuts each in several ways, saves every cut as a JPEG in memory, and asks `match.match`
(the default rule) whether it matches its original. Besides the fixed cuts of CUTS, each original is cut
RANDOM_CUTS times for each range of RANDOM, the cut split at random between opposite borders. Every cut is also
matched against every other original and every look-alike, which must never match; those that do are named on
stderr. Runs on all cores.

A second table draws SERIES designs, each coloured two ways (two blurred layers of discs mixed in other
proportions of red, green and blue, as a wallpaper series in other colours is), as they are and with 20% of white
added, and counts the pairs the default rule matches: as plain near copies (their brightness patterns agree, as a
recoloured copy's do) and as crops, which they are not (those are named on stderr).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

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

# Random uneven cuts: this fraction (a range) of the width and of the height removed in all, each split at random
# between the opposite borders (4% + 1%, 5% + 0%, ...), RANDOM_CUTS of each per original, the same for every run.
RANDOM = {
    "5%, split at random": (0.05, 0.05),
    "10-15%, split at random": (0.10, 0.15),
    "20-25%, split at random": (0.20, 0.25),
}
RANDOM_CUTS = 3

SERIES = 400  # drawn designs, each a pair of colourings
SERIES_SIZE = (480, 320)


def random_cuts(seed: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """RANDOM_CUTS (left, top, right, bottom) fractions for each of RANDOM, drawn from a seed (the file's name)."""
    rng = random.Random(seed)
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, (low, high) in RANDOM.items():
        boxes = []
        for _ in range(RANDOM_CUTS):
            across, down = rng.uniform(low, high), rng.uniform(low, high)
            left, top = across * rng.random(), down * rng.random()
            boxes.append((left, top, across - left, down - top))
        out[name] = boxes
    return out


def _jpeg(im: Image.Image) -> Fingerprint:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))


def _cuts(path: str) -> tuple[str, Fingerprint, dict[str, list[Fingerprint]]]:
    original = fingerprint.fingerprint_file(path)
    with Image.open(path) as im:
        # Full size, transparency flattened as dedupe flattens it (onto its grey), so the cut shows the same.
        rgb = fingerprint._flat_upright(fingerprint._normalise_mode(im), 1)
    w, h = rgb.size
    boxes = {name: [box] for name, box in CUTS.items()} | random_cuts(Path(path).name)
    cut = {
        name: [
            _jpeg(rgb.crop((round(left * w), round(top * h), round(w - right * w), round(h - bottom * h))))
            for left, top, right, bottom in each
        ]
        for name, each in boxes.items()
    }
    return path, original, cut


def _series(seed: int) -> list[tuple[str, Fingerprint, Fingerprint]]:
    """One drawn design in two colourings, as they are and with 20% of white added (+51 of 255), as JPEGs."""
    pair = two_colourings(seed)
    whitened = [im.point(lambda x: min(255, x + 51)) for im in pair]
    return [(f"series {seed}", *map(_jpeg, pair)), (f"series {seed} +20% white", *map(_jpeg, whitened))]


def two_colourings(seed: int) -> list[Image.Image]:
    """One drawn design (two blurred layers of discs) coloured two ways, as a wallpaper series is."""
    rng = random.Random(seed)
    w, h = SERIES_SIZE

    def layer() -> np.ndarray:
        im = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(w // 6, w // 2)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=rng.randrange(80, 256))
        return np.asarray(im.filter(ImageFilter.GaussianBlur(w // 30)), dtype=np.float64)[..., None] / 255

    one, two = layer(), layer()
    spans = ((40, 120), (0, 140), (0, 140))
    base, u, v = (np.array([rng.randrange(*span) for _ in range(3)], dtype=np.float64) for span in spans)
    pair = [
        Image.fromarray(np.clip(base + one * first + two * second, 0, 255).astype(np.uint8))
        for first, second in ((u, v), (v[[2, 0, 1]], u[[1, 2, 0]]))
    ]
    return pair


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
        series = [pair for pairs in pool.map(_series, range(SERIES), chunksize=4) for pair in pairs]
    rule = MatchRule()
    everyone = [(p, fp) for p, fp, _ in results] + list(zip(lookalikes, others, strict=True))
    lines = [
        f"Originals: {len(results)}; each cut saved as JPEG quality 90 and matched with the default rule.",
        "",
        "| cut | found | of | cropped matches | false matches (other originals, look-alikes) |",
        "|---|---|---|---|---|",
    ]
    for name in [*CUTS, *RANDOM]:
        found = cropped = false = count = 0
        for path, original, cut in results:
            for each in cut[name]:
                m = match(each, original, rule)
                count += 1
                found += m is not None
                cropped += m is not None and m.crop is not None
                wrong = [p for p, fp in everyone if p != path and match(each, fp, rule) is not None]
                false += len(wrong)
                for p in wrong:
                    print(f"false match: {name}, a cut of {Path(path).name} with {Path(p).name}", file=sys.stderr)
        lines.append(f"| {name} | {found} | {count} | {cropped} | {false} |")
    lines += ["", f"Drawn designs in two colourings: {SERIES}, as they are and with 20% of white added.", ""]
    lines += ["| pairs | matched as near copies | matched as crops (false) |", "|---|---|---|"]
    near = crops = 0
    for name, first, second in series:
        m = match(first, second, rule)
        near += m is not None and m.crop is None
        crops += m is not None and m.crop is not None
        if m is not None and m.crop is not None:
            print(f"false crop: {name} ({m.distance}, {m.dhash})", file=sys.stderr)
    lines.append(f"| {len(series)} | {near} | {crops} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
