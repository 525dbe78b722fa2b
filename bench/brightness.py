"""Can the windows' mean colours tell a brightened copy from a light/dark look-alike? Prints markdown tables.

Usage:
    python bench/brightness.py [--corpus DIR] [--phash 12] [--dhash 5] [--out FILE]

Takes every picture of the Debian wallpaper packages (as bench/corpus.py finds them), brightens each two ways and
saves it as a JPEG of quality 90 in memory: 20% of white added (+51 of 255, clipped) and multiplied by 1.2
(ImageEnhance.Brightness). It asks `match.match` (the default rule) whether each copy matches its picture, and
for the copies it misses within the window (pHash and dHash within --phash and --dhash bits) measures what a
confirmation could use without fingerprinting again, from the crop signature's 101 window means:

- luma r: Pearson correlation of the windows' brightness, blind to any change of brightness and contrast;
- colour r: Pearson correlation of the windows' red, green and blue means taken together (303 values), which
  stays near 1 only when one affine map y = a * x + b serves all three channels, as a brightness change does;
- shift: the whole picture's brightness difference (0-255);
- windows: how many of the crop signature's windows (the whole picture and CROP_WINDOWS) agree with the other
  picture's window in the same place, pHash within WINDOW_PHASH bits and dHash within WINDOW_DHASH: a change of
  brightness keeps the order of the cells each hash compares, except where it clips.

The same is measured for every pair of different pictures in the window: the pictures and their brightened copies
among themselves, and with --corpus a bench/corpus.py folder's pairs of files of different pictures (look-alikes
included). A confirmation can take the missed copies only if some bound on these passes every miss and fails
every such pair. It also lists every pair of different pictures among the wallpapers and their copies that the
default rule matches (there must be none). Runs on all cores.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from dedupe.errors import FileSkipped
from dedupe.fingerprint import fingerprint_bytes, fingerprint_file
from dedupe.match import CROP_PHASH, Match, MatchRule, hamming, match, unpack_crops
from dedupe.models import CROP_BYTES, Fingerprint

EDITS = ("+20% white", "x1.2")
WINDOW_PHASH = CROP_PHASH
WINDOW_DHASH = 4


def brighten(im: Image.Image, edit: str) -> bytes:
    """A brightened copy as JPEG quality 90 bytes."""
    out = im.point(lambda v: min(255, v + 51)) if edit == "+20% white" else ImageEnhance.Brightness(im).enhance(1.2)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def wallpaper(path: str) -> list[Fingerprint]:
    """The picture's fingerprint, then its brightened copies' in the order of EDITS."""
    data = Path(path).read_bytes()
    im = corpus.flatten(ImageOps.exif_transpose(Image.open(io.BytesIO(data)))).convert("RGB")
    return [fingerprint_bytes(data, "original")] + [fingerprint_bytes(brighten(im, e), e) for e in EDITS]


def corpus_file(path: str) -> Fingerprint | None:
    try:
        return fingerprint_file(path)
    except FileSkipped:
        return None


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    phash: int
    dhash: int
    matched: bool
    luma_r: float
    colour_r: float
    shift: float
    windows: int


def window_means(fp: Fingerprint) -> tuple[np.ndarray, np.ndarray] | None:
    """The windows' brightness and their (red, green, blue) means, from the crop signature's colours (two
    chromaticities and the brightness); None without a crop signature."""
    if len(fp.crops) != CROP_BYTES:
        return None
    _, _, c = unpack_crops(np.frombuffer(fp.crops, dtype=np.uint8).reshape(1, CROP_BYTES))
    colour = c[0].astype(np.float64)
    total = 3 * colour[:, 2]
    red, green = colour[:, 0] / 255 * total, colour[:, 1] / 255 * total
    return colour[:, 2], np.concatenate([red, green, total - red - green])


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum()) / den if den > 0 else float("nan")


def agreeing_windows(fa: Fingerprint, fb: Fingerprint) -> int:
    """How many windows of a agree with b's window in the same place (see WINDOW_PHASH); -1 without signatures."""
    if len(fa.crops) != CROP_BYTES or len(fb.crops) != CROP_BYTES:
        return -1
    p, d, _ = unpack_crops(np.frombuffer(fa.crops + fb.crops, dtype=np.uint8).reshape(2, CROP_BYTES))
    close = (np.bitwise_count(p[0] ^ p[1]) <= WINDOW_PHASH) & (np.bitwise_count(d[0] ^ d[1]) <= WINDOW_DHASH)
    return int(close.sum())


def measure(a: str, fa: Fingerprint, b: str, fb: Fingerprint) -> Pair:
    ma, mb = window_means(fa), window_means(fb)
    luma_r = colour_r = shift = float("nan")
    if ma is not None and mb is not None:
        luma_r, colour_r, shift = pearson(ma[0], mb[0]), pearson(ma[1], mb[1]), float(mb[0][0] - ma[0][0])
    found = match(fa, fb, MatchRule()) is not None
    return Pair(
        a,
        b,
        hamming(fa.phash, fb.phash),
        hamming(fa.dhash, fb.dhash),
        found,
        luma_r,
        colour_r,
        shift,
        agreeing_windows(fa, fb),
    )


def different_pairs(
    files: dict[str, Fingerprint], identity: dict[str, str], max_phash: int, max_dhash: int
) -> list[Pair]:
    """Every pair of files of different pictures within the window."""
    out = []
    for (a, fa), (b, fb) in itertools.combinations(sorted(files.items()), 2):
        if identity[a] == identity[b] or fa.low_info or fb.low_info:
            continue
        if hamming(fa.phash, fb.phash) <= max_phash and hamming(fa.dhash, fb.dhash) <= max_dhash:
            out.append(measure(a, fa, b, fb))
    return out


def false_matches(files: dict[str, Fingerprint], identity: dict[str, str]) -> list[tuple[str, str, Match]]:
    """Every pair of files of different pictures that the default rule matches, and how."""
    out = []
    for (a, fa), (b, fb) in itertools.combinations(sorted(files.items()), 2):
        if identity[a] != identity[b]:
            found = match(fa, fb, MatchRule())
            if found is not None:
                out.append((a, b, found))
    return out


def windows_of(p: Pair) -> float:
    return float(p.windows) if p.windows >= 0 else float("nan")


def row(p: Pair, *names: str) -> str:
    cells = f"{p.phash} | {p.dhash} | {p.luma_r:.4f} | {p.colour_r:.4f} | {abs(p.shift):.0f} | {p.windows}"
    return f"| {' | '.join(names)} | {cells} |"


def separation(misses: list[Pair], different: list[Pair]) -> Iterable[str]:
    """For each measure, the range over the misses and over the different pairs, and whether a bound lies between."""
    yield "| measure | missed copies | different pictures | a bound separates them |"
    yield "|---|---|---|---|"
    for name, get, high_is_copy in (
        ("luma r", lambda p: p.luma_r, True),
        ("colour r", lambda p: p.colour_r, True),
        ("shift", lambda p: abs(p.shift), False),
        ("windows", windows_of, True),
    ):
        m = [get(p) for p in misses if not np.isnan(get(p))]
        d = [get(p) for p in different if not np.isnan(get(p))]
        if not m or not d:
            continue
        fmt = "{:.0f}" if name in ("shift", "windows") else "{:.4f}"
        ok = min(m) > max(d) if high_is_copy else max(m) < min(d)
        yield (
            f"| {name} | {fmt.format(min(m))} - {fmt.format(max(m))} | {fmt.format(min(d))} - {fmt.format(max(d))} "
            f"| {'yes' if ok else 'no'} |"
        )


def spread(copies: list[Pair], different: list[Pair]) -> Iterable[str]:
    """How the correlations of all brightened copies, found or not, compare with the different pictures': a bound
    that holds only for the copies that happen to be missed today does not make a rule."""
    yield "| measure | all brightened copies: lowest five | median | at or below the highest of different pictures |"
    yield "|---|---|---|---|"
    for name, get in (
        ("luma r", lambda p: p.luma_r),
        ("colour r", lambda p: p.colour_r),
        ("windows", windows_of),
    ):
        values = sorted(v for v in map(get, copies) if not np.isnan(v))
        worst = max((v for v in map(get, different) if not np.isnan(v)), default=float("nan"))
        fmt = "{:.0f}" if name == "windows" else "{:.4f}"
        low = ", ".join(fmt.format(v) for v in values[:5])
        below = sum(v <= worst for v in values)
        median, high = fmt.format(float(np.median(values))), fmt.format(worst)
        yield f"| {name} | {low} | {median} | {below} of {len(values)} (highest {high}) |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", help="a bench/corpus.py folder whose pairs of different pictures are measured too")
    ap.add_argument("--phash", type=int, default=12)
    ap.add_argument("--dhash", type=int, default=5)
    ap.add_argument("--out", help="also write the tables to this file")
    args = ap.parse_args()
    pictures = corpus.discover()
    with ProcessPoolExecutor() as pool:
        prints = list(pool.map(wallpaper, [p.path for p in pictures], chunksize=1))
    lines = [f"{len(pictures)} wallpapers; window: pHash <= {args.phash}, dHash <= {args.dhash}.", ""]
    lines += ["| edit | found by the default rule | missed within the window |", "|---|---|---|"]
    misses: list[Pair] = []
    copies: list[Pair] = []
    for k, edit in enumerate(EDITS, start=1):
        pairs = [measure(p.key, fps[0], f"{p.key} {edit}", fps[k]) for p, fps in zip(pictures, prints, strict=True)]
        missed = [p for p in pairs if not p.matched and p.phash <= args.phash and p.dhash <= args.dhash]
        misses += missed
        copies += pairs
        lines.append(f"| {edit} | {sum(p.matched for p in pairs)} of {len(pairs)} | {len(missed)} |")
    lines += ["", "Missed copies:", "", "| copy | pHash | dHash | luma r | colour r | shift | windows |"]
    lines += ["|" + "---|" * 7]
    lines += [row(p, p.b) for p in misses]
    files, identity = {}, {}
    for p, fps in zip(pictures, prints, strict=True):
        for name, fp in zip(("original", *EDITS), fps, strict=True):
            files[f"{p.key} {name}"], identity[f"{p.key} {name}"] = fp, p.key
    wrong = false_matches(files, identity)
    lines += ["", f"Pairs of different pictures among them that the default rule matches: {len(wrong)}"]
    if wrong:
        lines += ["", "| file | file | pHash | dHash | as |", "|---|---|---|---|---|"]
        lines += [f"| {a} | {b} | {m.distance} | {m.dhash} | {m.crop or 'near'} |" for a, b, m in wrong]
    different = different_pairs(files, identity, args.phash, args.dhash)
    if args.corpus:
        root = Path(args.corpus)
        truth = json.loads((root / "truth.json").read_text())
        ids = {o: o for o in truth["originals"]} | {c["path"]: c["original"] for c in truth["copies"]}
        for a, b in truth["lookalikes"]:
            ids.setdefault(a, a)
            ids.setdefault(b, b)
        with ProcessPoolExecutor() as pool:
            read = dict(zip(ids, pool.map(corpus_file, [str(root / p) for p in ids], chunksize=4), strict=True))
        different += different_pairs({p: fp for p, fp in read.items() if fp is not None}, ids, args.phash, args.dhash)
    lines += ["", f"Pairs of different pictures within the window: {len(different)}", ""]
    lines += ["| file | file | pHash | dHash | luma r | colour r | shift | windows |", "|" + "---|" * 8]
    lines += [row(p, p.a, p.b) for p in sorted(different, key=lambda p: (p.phash, p.dhash, p.a, p.b))]
    lines += ["", *separation(misses, different), "", *spread(copies, different)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
