#!/usr/bin/env python3
"""Measure perceptual hashes and thresholds on a bench/corpus.py folder.

Usage:
    python bench/hashstudy.py CORPUS_DIR [CORPUS_DIR ...] [--out REPORT.md] [--max-t 16]

For every file the dedupe working image is built (JPEG draft to ~256 px,
EXIF transpose, transparency flattened on mid-grey, RGB, thumbnail 256 px
bilinear) -- from dedupe.fingerprint when that module provides it, else with
the local copy below -- and hashed with ImageHash (hash_size=8).

Reported per hash: distance of each copy to its original by edit kind, the
distances of look-alike pairs and of unrelated original pairs, and for each
threshold T the recall per edit kind and the number of false pairs (look-alike
pairs + unrelated original pairs with distance <= T).  A stricter count over
all cross-identity file pairs (copies of A vs copies of B, look-alike files,
blank junk) is reported too.  Several corpora (e.g. different seeds) can be
pooled; pairs are only formed within one corpus.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import sys
import time
from collections import defaultdict

import imagehash
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

GREY = (128, 128, 128)
SIZE = 256
_WORKAROUND: list = []
LOW_INFO_STD = 3.0  # as dedupe.fingerprint.LOW_INFO_STDDEV


def _local_working_image(path: str, draft: bool = True) -> Image.Image:
    im = Image.open(path)
    if draft and im.format == "JPEG":
        im.draft("RGB", (SIZE, SIZE))
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (*GREY, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    if im.width > SIZE or im.height > SIZE:
        im.thumbnail((SIZE, SIZE), Image.Resampling.BILINEAR)
    return im


def _find_pipeline(which: str = "auto"):
    """Use dedupe.fingerprint's working-image function when there is one."""
    if which == "local":
        return _local_working_image, "local copy of the brief's pipeline (mid-grey background)"
    try:
        import dedupe.fingerprint as fp  # type: ignore
    except Exception as e:
        if which == "dedupe":
            raise
        return _local_working_image, f"local copy (dedupe.fingerprint not importable: {e})"
    if callable(getattr(fp, "working_image", None)) and callable(getattr(fp, "open_image", None)):

        def dedupe_working_image(path: str, draft: bool = True) -> Image.Image:
            with open(path, "rb") as f:
                data = f.read()
            try:
                im = fp.open_image(data)
            except KeyError:
                # dedupe's open_image lists a format Pillow has no opener for ("MPO" is
                # opened by the JPEG plugin): every non-JPEG file fails.  Work around it
                # here so that the rest of dedupe's pipeline can be measured.
                Image.init()
                im = Image.open(io.BytesIO(data), formats=[f for f in fp.PHOTO_FORMATS if f in Image.OPEN])
                _WORKAROUND.append(path)
            orientation = im.getexif().get(0x0112, 1)
            if not isinstance(orientation, int) or orientation not in range(1, 9):
                orientation = 1
            if draft and im.format in ("JPEG", "MPO"):
                im.draft("RGB", (fp.WORK_SIZE, fp.WORK_SIZE))
            im.load()
            return fp.working_image(im, orientation)

        bg = getattr(fp, "BACKGROUND", "?")
        return dedupe_working_image, f"dedupe.fingerprint.working_image (background {bg})"
    if which == "dedupe":
        raise SystemExit("dedupe.fingerprint has no working_image/open_image")
    return _local_working_image, "local copy (no working_image in dedupe.fingerprint)"


HASHES = {
    "phash": lambda im: imagehash.phash(im, hash_size=8),
    "dhash": lambda im: imagehash.dhash(im, hash_size=8),
    "ahash": lambda im: imagehash.average_hash(im, hash_size=8),
    "whash": lambda im: imagehash.whash(im, hash_size=8),
    "colorhash": lambda im: imagehash.colorhash(im, binbits=3),
}
DIHEDRAL = [
    None,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
]


def bits(h) -> np.ndarray:
    return np.asarray(h.hash, dtype=bool).ravel()


def load_corpus(d: str, working, hashes):
    with open(os.path.join(d, "truth.json")) as f:
        t = json.load(f)
    files = {}
    ident = {}
    for o in t["originals"]:
        ident[o] = o
    for c in t["copies"]:
        ident[c["path"]] = c["original"]
    for a, b in t["lookalikes"]:
        ident.setdefault(a, a)
        ident.setdefault(b, b)
    for j in t["junk"]:
        ident.setdefault(j, j)
    failed = []
    low_info = []
    for rel in sorted(ident):
        try:
            im = working(os.path.join(d, rel))
            if not isinstance(im, Image.Image):
                raise TypeError("working image function did not return an Image")
            im.load()
        except Exception as e:  # junk
            failed.append((rel, type(e).__name__))
            continue
        grey_std = float(np.asarray(im.convert("L"), dtype=np.float64).std())
        if grey_std < LOW_INFO_STD:  # dedupe never pairs low-information pictures
            low_info.append(rel)
            continue
        rec = {n: bits(f(im)) for n, f in hashes.items()}
        if rel in t["originals"]:
            for k, tr in enumerate(DIHEDRAL[1:], 1):
                im2 = im.transpose(tr)
                for n in ("phash", "dhash"):
                    rec[f"{n}@{k}"] = bits(hashes[n](im2))
        files[rel] = rec
    return t, files, ident, failed, low_info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpora", nargs="+")
    ap.add_argument("--out", default=None)
    ap.add_argument("--max-t", type=int, default=16)
    ap.add_argument(
        "--pipeline",
        choices=["auto", "dedupe", "local"],
        default="auto",
        help="working image from dedupe.fingerprint (auto/dedupe) or the local copy",
    )
    a = ap.parse_args(argv)
    working, source = _find_pipeline(a.pipeline)
    hnames = ["phash", "dhash", "ahash", "whash"]
    t0 = time.time()

    copies = []  # (corpus, copy rec, {hash: dist})
    la_pairs = []  # (corpus, a, b, kind, {hash: dist})
    unrel = defaultdict(list)  # hash -> distances of unrelated original pairs
    allcross = defaultdict(list)  # hash -> distances of all cross-identity file pairs
    unrel_pairs = []  # (corpus, a, b, {hash: dist}) for the closest ones
    draft_full = []
    failed_all = []
    low_all = []
    for d in a.corpora:
        t, files, ident, failed, low = load_corpus(d, working, HASHES)
        failed_all += [(d, *f) for f in failed]
        low_all += [(d, r) for r in low]
        kinds = {
            tuple(p): k
            for p, k in zip(
                t["lookalikes"],
                [x.get("kind", "?") for x in t.get("info", {}).get("lookalike_pairs", [{}] * len(t["lookalikes"]))],
                strict=False,
            )
        }

        def dist(x, y, h, files=files):
            return int(np.count_nonzero(files[x][h] != files[y][h]))

        def dmin(x, y, h, files=files):  # y is an original: min over its 8 orientations
            best = dist(x, y, h)
            for k in range(1, 8):
                key = f"{h}@{k}"
                if key in files[y]:
                    best = min(best, int(np.count_nonzero(files[x][h] != files[y][key])))
            return best

        for c in t["copies"]:
            if c["path"] not in files or c["original"] not in files:
                copies.append((d, c, {h: 64 for h in [*hnames, "colorhash", "phash_dihedral", "dhash_dihedral"]}))
                continue
            dd = {h: dist(c["path"], c["original"], h) for h in [*hnames, "colorhash"]}
            for h in ("phash", "dhash"):
                dd[h + "_dihedral"] = dmin(c["path"], c["original"], h)
            copies.append((d, c, dd))
        for x, y in t["lookalikes"]:
            if x in files and y in files:
                dd = {h: dist(x, y, h) for h in [*hnames, "colorhash"]}
                for h in ("phash", "dhash"):
                    dd[h + "_dihedral"] = min(
                        dmin(x, y, h) if y in t["originals"] else 99,
                        dmin(y, x, h) if x in t["originals"] else 99,
                        dd[h],
                    )
                la_pairs.append((d, x, y, kinds.get((x, y), "?"), dd))
        origs = [o for o in t["originals"] if o in files]
        for x, y in itertools.combinations(origs, 2):
            dd = {h: dist(x, y, h) for h in [*hnames, "colorhash"]}
            for h in ("phash", "dhash"):
                dd[h + "_dihedral"] = min(dmin(x, y, h), dmin(y, x, h))
            for h, v in dd.items():
                unrel[h].append(v)
            unrel_pairs.append((d, x, y, dd))
        # all cross-identity pairs (vectorised)
        rels = sorted(files)
        ids = np.array([ident[r] for r in rels])
        same = ids[:, None] == ids[None, :]
        iu = np.triu_indices(len(rels), 1)
        mask = ~same[iu]
        for h in [*hnames, "colorhash"]:
            M = np.stack([files[r][h] for r in rels]).astype(np.uint8)
            D = (M[:, None, :] != M[None, :, :]).sum(-1)
            allcross[h].append(D[iu][mask])
        if "dhash" in HASHES:
            Mp = np.stack([files[r]["phash"] for r in rels]).astype(np.uint8)
            Md = np.stack([files[r]["dhash"] for r in rels]).astype(np.uint8)
            Dp = (Mp[:, None, :] != Mp[None, :, :]).sum(-1)[iu][mask]
            Dd = (Md[:, None, :] != Md[None, :, :]).sum(-1)[iu][mask]
            allcross["dhash+phash"].append(np.maximum(Dp, Dd))
            allcross.setdefault("_cross_p", []).append(Dp)
            allcross.setdefault("_cross_d", []).append(Dd)
            # keep the closest cross pairs for the report
            order = np.argsort(np.maximum(Dp, Dd))[:8]
            cross_idx = [(iu[0][mask][i], iu[1][mask][i]) for i in order]
            allcross.setdefault("_closest", []).extend(
                (d, rels[i], rels[j], int(Dp[k]), int(Dd[k])) for (i, j), k in zip(cross_idx, order, strict=False)
            )
        # draft vs full decode for JPEG originals
        for o in origs:
            with Image.open(os.path.join(d, o)) as im0:
                if im0.format != "JPEG":
                    continue
            full = working(os.path.join(d, o), draft=False)
            dd = {h: int(np.count_nonzero(bits(HASHES[h](full)) != files[o][h])) for h in hnames}
            draft_full.append((d, o, dd))

    for h in list(allcross):
        if h != "_closest" and len(allcross[h]):
            allcross[h] = np.concatenate(allcross[h]) if allcross[h] else np.array([])
    for _d, _c, dd in copies:
        dd["dhash+phash"] = max(dd["dhash"], dd["phash"])
    for _d, _x, _y, _k, dd in la_pairs:
        dd["dhash+phash"] = max(dd["dhash"], dd["phash"])
    for _d, _x, _y, dd in unrel_pairs:
        dd["dhash+phash"] = max(dd["dhash"], dd["phash"])
        unrel["dhash+phash"].append(dd["dhash+phash"])

    L = []
    p = L.append
    p("# Perceptual hash study\n")
    p(f"Corpora: {', '.join(a.corpora)}  ")
    p(
        f"Working image: {source}; ImageHash {imagehash.__version__}, Pillow {Image.__version__}, "
        f"hash_size=8 (64 bits; colorhash binbits=3 = 42 bits).  "
    )
    p(
        f"{len(copies)} copy->original pairs, {len(la_pairs)} look-alike pairs, "
        f"{len(unrel_pairs)} unrelated original pairs, "
        f"{len(allcross['phash'])} cross-identity file pairs. Runtime {time.time() - t0:.0f}s.\n"
    )
    if _WORKAROUND:
        p(
            f"NOTE: dedupe.fingerprint.open_image raised KeyError('MPO') for {len(set(_WORKAROUND))} "
            "non-JPEG files; they were opened without 'MPO' in formats (workaround).\n"
        )
    if low_all:
        p(
            f"Low-information working images (grey std < {LOW_INFO_STD}; excluded from all pairs, "
            "their copies count as misses): " + ", ".join(f"`{r}`" for _d, r in low_all) + "\n"
        )
    if failed_all:
        p("Files that did not open (expected: junk): " + ", ".join(f"`{r}` ({e})" for _d, r, e in failed_all) + "\n")

    edits = []
    for _d, c, _dd in copies:
        if c["edit"] not in edits:
            edits.append(c["edit"])
    allh = [*hnames, "dhash+phash", "colorhash"]

    p("## Copy -> original distance by edit kind (median / max)\n")
    p("| edit | n | " + " | ".join(allh) + " | phash dihedral | dhash dihedral |")
    p("|---|---|" + "---|" * (len(allh) + 2))
    for e in edits:
        rows = [dd for _d, c, dd in copies if c["edit"] == e]
        cells = []
        for h in [*allh, "phash_dihedral", "dhash_dihedral"]:
            v = np.array([r[h] for r in rows])
            cells.append(f"{int(np.median(v))} / {v.max()}")
        p(f"| {e} | {len(rows)} | " + " | ".join(cells) + " |")
    p("")

    p("## Look-alike pairs (must NOT match)\n")
    p("| kind | a | b | " + " | ".join(allh) + " | phash dih. | dhash dih. |")
    p("|---|---|---|" + "---|" * (len(allh) + 2))
    for _d, x, y, k, dd in sorted(la_pairs, key=lambda r: r[4]["phash"]):
        p(
            f"| {k} | {os.path.basename(x)} | {os.path.basename(y)} | "
            + " | ".join(str(dd[h]) for h in [*allh, "phash_dihedral", "dhash_dihedral"])
            + " |"
        )
    p("")

    p("## Unrelated pairs\n")
    p(
        "| hash | unrelated originals: min | p0.5 | p1 | p5 | median"
        " | all cross-identity files: min | #<=8 | #<=10 | #<=12 |"
    )
    p("|---|---|---|---|---|---|---|---|---|---|")
    for h in [*allh, "phash_dihedral", "dhash_dihedral"]:
        v = np.array(unrel[h])
        ac = allcross.get(h)
        if ac is not None and len(ac):
            tail = f"{ac.min()} | {(ac <= 8).sum()} | {(ac <= 10).sum()} | {(ac <= 12).sum()}"
        else:
            tail = "- | - | - | -"
        p(
            f"| {h} | {v.min()} | {np.percentile(v, 0.5):.0f} | {np.percentile(v, 1):.0f} | "
            f"{np.percentile(v, 5):.0f} | {np.median(v):.0f} | {tail} |"
        )
    p("")
    p("Closest unrelated original pairs (by max(dhash, phash)):\n")
    for _d, x, y, dd in sorted(unrel_pairs, key=lambda r: (r[3]["dhash+phash"], r[3]["phash"]))[:8]:
        p(f"- {os.path.basename(x)} vs {os.path.basename(y)}: " + ", ".join(f"{h} {dd[h]}" for h in allh))
    p("")
    p("Closest cross-identity file pairs (any files, by max(dhash, phash)):\n")
    for _d, x, y, dp, dd_ in sorted(allcross.get("_closest", []), key=lambda r: max(r[3], r[4]))[:10]:
        p(f"- {x} vs {y}: phash {dp}, dhash {dd_}")
    p("")

    # threshold tables
    main_edits = [e for e in edits if e not in ("rot90", "mirror")]
    summary = {}
    for h in [*allh, "phash_dihedral", "dhash_dihedral"]:
        p(f"## Threshold table: {h}\n")
        p(
            "recall = share of copies with distance <= T (overall excludes rot90/mirror, "
            "which only a rotation-aware match can find; 'all' includes them). "
            "false = look-alike pairs + unrelated original pairs <= T; "
            "cross = all cross-identity file pairs <= T.\n"
        )
        p("| T | " + " | ".join(edits) + " | overall | all | false (la+unrel) | cross |")
        p("|---|" + "---|" * (len(edits) + 4))
        for T in range(0, a.max_t + 1):
            cells = []
            for e in edits:
                v = [dd[h] for _d, c, dd in copies if c["edit"] == e]
                cells.append(f"{100 * np.mean(np.array(v) <= T):.0f}")
            ov = np.mean([dd[h] <= T for _d, c, dd in copies if c["edit"] in main_edits])
            al = np.mean([dd[h] <= T for _d, c, dd in copies])
            fl = sum(dd[h] <= T for *_r, dd in la_pairs) + sum(np.array(unrel[h]) <= T)
            ac = allcross.get(h)
            cr = int((ac <= T).sum()) if ac is not None and len(ac) else "-"
            p(f"| {T} | " + " | ".join(cells) + f" | {100 * ov:.1f} | {100 * al:.1f} | {fl} | {cr} |")
            summary.setdefault(h, []).append((T, ov, al, int(fl), cr))
        p("")

    p("## Best zero-false-pair threshold per hash\n")
    p(
        "| hash | largest T with 0 false (la+unrel) | recall (excl. rot/mirror) | recall all | "
        "cross pairs at T | first false at |"
    )
    p("|---|---|---|---|---|---|")
    for h, rows in summary.items():
        ok = [r for r in rows if r[3] == 0]
        if not ok:
            p(f"| {h} | none | | | | 0 |")
            continue
        T, ov, al, fl, cr = ok[-1]
        first = next((r[0] for r in rows if r[3] > 0), f">{a.max_t}")
        p(f"| {h} | {T} | {100 * ov:.1f} | {100 * al:.1f} | {cr} | {first} |")
    p("")

    # two-threshold rule: phash <= Tp AND dhash <= Td
    p("## Two thresholds: phash <= Tp AND dhash <= Td\n")
    p(
        "cell = recall % (excl. rot90/mirror) / false pairs (look-alike + unrelated originals)"
        " / cross-identity file pairs\n"
    )
    tds = list(range(2, 13, 1))
    p("| Tp \\ Td | " + " | ".join(str(x) for x in tds) + " |")
    p("|---|" + "---|" * len(tds))
    main_c = [dd for _d, c, dd in copies if c["edit"] in main_edits]
    neg = [dd for *_r, dd in la_pairs] + [dd for *_r, dd in unrel_pairs]
    crossp, crossd = allcross.get("_cross_p"), allcross.get("_cross_d")
    for tp in range(4, 17, 1):
        cells = []
        for td in tds:
            rec = np.mean([dd["phash"] <= tp and dd["dhash"] <= td for dd in main_c])
            fl = sum(dd["phash"] <= tp and dd["dhash"] <= td for dd in neg)
            cr = int(((crossp <= tp) & (crossd <= td)).sum()) if crossp is not None else "-"
            cells.append(f"{100 * rec:.1f}/{fl}/{cr}")
        p(f"| {tp} | " + " | ".join(cells) + " |")
    p("")

    if draft_full:
        p("## Draft decode vs full decode (JPEG originals)\n")
        p("| file | " + " | ".join(hnames) + " |")
        p("|---|" + "---|" * len(hnames))
        for _d, o, dd in draft_full:
            p(f"| {os.path.basename(o)} | " + " | ".join(str(dd[h]) for h in hnames) + " |")
        mx = {h: max(dd[h] for *_r, dd in draft_full) for h in hnames}
        p("\nmax: " + ", ".join(f"{h} {v}" for h, v in mx.items()) + "\n")

    text = "\n".join(L) + "\n"
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
