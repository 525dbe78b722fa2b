#!/usr/bin/env python3
"""Check that two checkouts of dedupe behave the same on one corpus (issue 14: a refactor changes no output).

Usage:
    python bench/same_behaviour.py --before TREE_A --after TREE_B [--small | --corpus DIR] [--keep-work]

TREE_A and TREE_B are source trees, each holding a `dedupe/` package (a clone of main and your worktree, say).
Each tree's CLI runs as `PYTHONPATH=TREE python -m dedupe ...` in its own process, with its own fresh store, home,
XDG folders and TMPDIR, on a fresh copy of the corpus made at the SAME path for both trees, so that paths compare
equal. The script runs scan (json, csv), groups under several match options, review --dry-run under several
keeper rules and actions, review --script, report --html, export, import, search and check against the scanned
and the imported store, calibrate, and last a real review --yes --action move followed by undo. What legitimately
differs between two runs is normalised away: the work folder and tree paths, calibrate's temporary folder, and
timestamps and epoch seconds within two minutes of the command's run (the script's header time, undo --list).
The exit status, standard output, standard error and any file a command writes are compared; a command that
fails the same way in both trees counts as the same.

Prints a table (command line, same/DIFFERENT) and, for each difference, the first lines of a unified diff.
Exit status 0 when everything is the same, 1 when anything differs, 2 on a bad command line.

Corpus:
    (default)     the benchmark's mixed folder, built by bench/corpus.py (Debian wallpapers; 627 files) into
                  $TMPDIR/dedupe-bench/mixed, or reused from there as bench/run.py does
    --corpus DIR  any folder of pictures (a truth.json beside them, as corpus.py writes, picks the query images)
    --small       ~160 files drawn with Pillow in a few seconds: 60 photos, edited copies of them (byte copies,
                  metadata-only copies, resizes, recompressions, PNG/WebP conversions, turns, EXIF turns, mirrors,
                  crops, brightness, grey, watermark), a burst, a look-alike pair, blank pictures, a sidecar and
                  junk (a truncated JPEG, text named .jpg, an empty file)

Example:
    git clone -q /work/main /tmp/compare-base
    /work/venv/bin/python bench/same_behaviour.py --before /tmp/compare-base --after . --small
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS_SCRIPT = os.path.join(HERE, "corpus.py")
DEFAULT_CORPUS = os.path.join(tempfile.gettempdir(), "dedupe-bench", "mixed")
NOW_WINDOW = 120.0  # seconds around a command's run in which a timestamp is taken to be "now"
DIFF_LINES = 40
LINE_WIDTH = 160  # diff lines are cut here: the report embeds thumbnails as very long base64 lines

# The command lines, in order: one store per tree, so later commands see what earlier ones stored.
# {photos} is the corpus copy, {run} the run folder, {ref} a subfolder of the corpus, {images} the query images
# (pictures), {junk} files that are not readable pictures.
# A step may name files it writes (compared too) and its own store (DEDUPE_DB).
JSON = ["--format", "json"]
QUERIES = ("{images}", "{junk}")


@dataclasses.dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    files: tuple[str, ...] = ()
    db: str = "store.sqlite"


def steps(has_ref: bool, has_junk: bool) -> list[Step]:
    s: list[Step] = [
        Step(("scan", "{photos}", *JSON)),
        Step(("scan", "{photos}", "--format", "csv")),
    ]
    for extra in (
        (),
        ("--threshold", "0"),
        ("--threshold", "4"),
        ("--threshold", "8"),
        ("--no-rotations",),
        ("--no-two-stage",),
        ("--crops",),
        ("--no-crops",),
        ("--bursts-together",),
        ("--threshold", "8", "--no-rotations", "--no-two-stage", "--no-crops"),
        ("--threshold", "0", "--crops", "--bursts-together"),
    ):
        s.append(Step(("groups", "{photos}", *JSON, *extra)))
    s.append(Step(("groups", *JSON)))  # no folder: the whole store
    s.append(Step(("groups", "{photos}", "--format", "csv", "--threshold", "8")))
    review = ("review", "{photos}", "--dry-run", *JSON)
    extras: list[tuple[str, ...]] = [
        (),
        ("--include-near",),
        ("--keep", "resolution,oldest"),
        ("--keep", "size,newest", "--include-near"),
        ("--action", "move", "--to", "{run}/moved"),
        ("--action", "hardlink", "--include-near", "--threshold", "8", "--crops"),
        ("--include-near", "--no-rotations", "--no-two-stage", "--bursts-together"),
    ]
    if has_ref:
        extras += [("--reference", "{ref}"), ("--reference", "{ref}", "--include-near"), ("--keep", "path:{ref}")]
    s += [Step((*review, *extra)) for extra in extras]
    s.append(Step(("review", "{photos}", "--script", "{run}/plan.sh", "--include-near"), files=("plan.sh",)))
    s.append(
        Step(
            ("review", "{photos}", "--script", "{run}/plan-move.sh", "--action", "move", "--to", "{run}/moved"),
            files=("plan-move.sh",),
        )
    )
    s.append(Step(("report", "{photos}", "--html", "{run}/report.html"), files=("report.html",)))
    if has_ref:
        s.append(
            Step(
                (
                    "report",
                    "{photos}",
                    "--html",
                    "{run}/report-ref.html",
                    "--reference",
                    "{ref}",
                    "--keep",
                    "resolution,oldest",
                    "--threshold",
                    "8",
                ),
                files=("report-ref.html",),
            )
        )
    s += [
        Step(("export", "{photos}", "-o", "{run}/list.csv"), files=("list.csv",)),
        Step(("export",)),
        Step(("import", "{run}/list.csv"), db="imported.sqlite"),
        Step(("search", "{images}", *JSON)),
        Step(("search", "{images}", *JSON, "--threshold", "10", "--limit", "0")),
        Step(("check", "{images}", *JSON)),
        Step(("check", "{images}", *JSON, "--threshold", "0")),
        Step(("search", "{images}", *JSON), db="imported.sqlite"),
        Step(("check", "{images}", *JSON), db="imported.sqlite"),
        *([Step(("search", "{junk}", *JSON)), Step(("check", "{junk}", *JSON))] if has_junk else []),
        Step(("calibrate", "{photos}", "--seed", "1", "--sample", "10", *JSON)),
        # Last, as it changes the corpus copy: a real run and its undo.
        Step(("review", "{photos}", "--yes", "--include-near", "--action", "move", "--to", "{run}/moved", *JSON)),
        Step(("undo", "--list")),
        Step(("undo",)),
        Step(("groups", "{photos}", *JSON)),
    ]
    return s


# ----------------------------------------------------------------------------- running one tree


@dataclasses.dataclass
class Outcome:
    text: str  # normalised exit status, stdout, stderr and files, as one text to compare
    status: str  # exit status as shown in the table
    seconds: float


def display(step: Step) -> str:
    words = [a.replace("{photos}", "PHOTOS").replace("{run}", "RUN").replace("{ref}", "PHOTOS/REF") for a in step.args]
    words = [w.strip("{}").upper() if w in QUERIES else w for w in words]
    line = "dedupe " + " ".join(words)
    if step.db != "store.sqlite":
        line += f"  (store {step.db})"
    return line


def run_tree(
    tree: str,
    python: str,
    corpus: str,
    work: str,
    plan: list[Step],
    ref: str,
    queries: dict[str, list[str]],
    timeout: float,
    not_before: float,
) -> tuple[list[Outcome], float]:
    """Run every step with TREE's dedupe on a fresh copy of CORPUS at WORK/run; normalised outcomes."""
    run = os.path.join(work, "run")
    shutil.rmtree(run, ignore_errors=True)
    photos = os.path.join(run, "photos")
    shutil.copytree(corpus, photos, symlinks=True)  # copy2 keeps mtimes (the oldest/newest rules read them)
    home = os.path.join(run, "home")
    for sub in ("tmp", ".local/share", ".cache", ".config"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEDUPE_", "PYTHON", "XDG_"))}
    env.update(
        PYTHONPATH=tree,
        PYTHONHASHSEED="0",  # the same set orders in both runs
        PYTHONDONTWRITEBYTECODE="1",  # leave the trees as they are
        HOME=home,
        XDG_DATA_HOME=os.path.join(home, ".local/share"),
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        XDG_CONFIG_HOME=os.path.join(home, ".config"),
        TMPDIR=os.path.join(home, "tmp"),
        TZ="UTC",
        LC_ALL="C.UTF-8",
        COLUMNS="200",
    )
    names = {"{photos}": photos, "{run}": run, "{ref}": os.path.join(photos, ref)}
    outcomes = []
    started = time.perf_counter()
    for step in plan:
        argv: list[str] = []
        for a in step.args:
            if a in queries:
                argv += [os.path.join(photos, i) for i in queries[a]]
                continue
            for key, value in names.items():
                a = a.replace(key, value)
            argv.append(a)
        env["DEDUPE_DB"] = os.path.join(run, step.db)
        t0 = time.time()
        try:
            p = subprocess.run(
                [python, "-m", "dedupe", *argv],
                cwd=run,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
            status, out, err = str(p.returncode), p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            status, out, err = f"timeout {timeout:.0f}s", e.stdout or b"", e.stderr or b""
        t1 = time.time()
        parts = [f"exit: {status}", "--- stdout", _text(out), "--- stderr", _text(err)]
        for name in step.files:
            parts.append(f"--- file {name}")
            path = os.path.join(run, name)
            parts.append(_read(path))
        text = normalise("\n".join(parts), [(work, "<WORK>"), (tree, "<TREE>")], t0, t1, not_before)
        outcomes.append(Outcome(text, status, t1 - t0))
    return outcomes, time.perf_counter() - started


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return _text(f.read())
    except OSError as e:
        return f"<not readable: {e.strerror}>"


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


_STAMP = re.compile(r"(?<![\d-])(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?(?!\d|:\d)")
_EPOCH = re.compile(r"(?<![\d.])(1\d{9}(?:\.\d+)?)(?![\d.])")
_TEMP = re.compile(r"(dedupe-calibrate-|/tmp)[A-Za-z0-9_]{6,}")


def normalise(text: str, paths: Sequence[tuple[str, str]], t0: float, t1: float, not_before: float = 0.0) -> str:
    """TEXT with what differs between two runs of the same code replaced by placeholders.

    A timestamp is "now" when it lies within NOW_WINDOW of the command's run [T0, T1] and not before NOT_BEFORE,
    the minute after the corpus's newest file: the corpus's own mtimes are data (the copies keep them), and a
    freshly built corpus would otherwise have some of them taken for "now" in one tree's run and not the other's.
    """
    for path, placeholder in sorted(paths, key=lambda p: -len(p[0])):
        for variant in {path, os.path.realpath(path)}:
            text = text.replace(variant.rstrip("/"), placeholder)
    text = _TEMP.sub(lambda m: m.group(1) + "<TMP>", text)
    lo, hi = max(t0 - NOW_WINDOW, not_before), t1 + NOW_WINDOW

    def stamp(m: re.Match[str]) -> str:
        try:
            when = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}{m.group(3) or ''}{m.group(4) or ''}")
        except ValueError:
            return m.group(0)
        # Naive times are local, and the commands run with TZ=UTC; minute-resolution times may be 59 s early.
        t = when.timestamp() if when.tzinfo else when.replace(tzinfo=UTC).timestamp()
        return "<NOW>" if max(lo - 60, not_before) <= t <= hi else m.group(0)

    def epoch(m: re.Match[str]) -> str:
        return "<NOW>" if lo <= float(m.group(1)) <= hi else m.group(0)

    return _EPOCH.sub(epoch, _STAMP.sub(stamp, text))


# ----------------------------------------------------------------------------- comparing


def compare(plan: list[Step], before: list[Outcome], after: list[Outcome]) -> int:
    """Print the table and the diffs; the number of steps that differ."""
    rows = []
    diffs = []
    for n, (step, a, b) in enumerate(zip(plan, before, after, strict=True), start=1):
        same = a.text == b.text
        exit_ = a.status if a.status == b.status else f"{a.status} -> {b.status}"
        note = ""
        if not same:
            note = _json_note(a.text, b.text)
            diffs.append((n, step, a, b))
        rows.append(
            f"| {n} | `{display(step)}` | {exit_} | {a.seconds:.1f} / {b.seconds:.1f} | "
            f"{'same' if same else '**different**' + note} |"
        )
    print("| # | command | exit | seconds before / after | result |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    for n, step, a, b in diffs:
        print(f"\n#{n} {display(step)}: different")
        lines = list(difflib.unified_diff(a.text.splitlines(), b.text.splitlines(), "before", "after", lineterm=""))
        for line in lines[:DIFF_LINES]:
            print(line if len(line) <= LINE_WIDTH else line[:LINE_WIDTH] + " ...")
        if len(lines) > DIFF_LINES:
            print(f"... {len(lines) - DIFF_LINES} more diff lines")
    return len(diffs)


def _json_note(a: str, b: str) -> str:
    """' (same JSON data, other text)' when only the text of equal JSON stdouts differs (key order, spacing)."""
    try:
        sa, sb = (json.loads(t.split("--- stdout\n", 1)[1].split("\n--- stderr", 1)[0]) for t in (a, b))
    except (ValueError, IndexError):
        return ""
    rest = [t.split("\n--- stderr", 1)[1] for t in (a, b)]
    return " (same JSON data, other text)" if sa == sb and rest[0] == rest[1] else ""


# ----------------------------------------------------------------------------- corpora


def query_images(corpus: str) -> tuple[list[str], list[str]]:
    """A few files of CORPUS (relative paths) to search and check: pictures (originals, copies of several edits
    of several originals, a look-alike) and junk."""
    truth_path = os.path.join(corpus, "truth.json")
    if not os.path.exists(truth_path):
        files = sorted(os.path.relpath(os.path.join(d, n), corpus) for d, _, ns in os.walk(corpus) for n in ns)
        return files[:: max(1, len(files) // 6)][:6], []
    with open(truth_path) as f:
        truth = json.load(f)
    pictures = list(truth["originals"][:2])
    for k, kind in enumerate(("resize50", "rot90", "crop15", "webp", "bright20")):
        copies = [c["path"] for c in truth["copies"] if c.get("edit") == kind]
        pictures += copies[k % len(copies) : k % len(copies) + 1]
    pictures += [pair[0] for pair in truth["lookalikes"][:1]]
    junk = truth["junk"][:3]
    return _existing(corpus, pictures), _existing(corpus, junk)


def _existing(corpus: str, paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.isfile(os.path.join(corpus, p))]


def reference_folder(corpus: str) -> str:
    """The subfolder --reference and path: rules name: originals/ when there is one, else the first."""
    subs = sorted(e.name for e in os.scandir(corpus) if e.is_dir())
    return "originals" if "originals" in subs else (subs[0] if subs else "")


def first_minute_after(corpus: str) -> float:
    """The start of the minute after the newest mtime below CORPUS (mtimes in the future not counted)."""
    now = time.time()
    newest = 0.0
    for d, _, names in os.walk(corpus):
        for n in names:
            t = os.lstat(os.path.join(d, n)).st_mtime
            if newest < t <= now:
                newest = t
    return (newest // 60 + 1) * 60


def ensure_benchmark_corpus(path: str, python: str) -> None:
    if os.path.exists(os.path.join(path, "truth.json")):
        return
    print(f"building the benchmark corpus in {path} with bench/corpus.py ...", file=sys.stderr)
    subprocess.run([python, CORPUS_SCRIPT, path], check=True)


def make_small_corpus(out: str, seed: int = 1) -> None:
    """~160 files drawn with Pillow: photos, edited copies of them, a burst, look-alikes, blank pictures, junk."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

    def photo(s: int, size: tuple[int, int] = (640, 480), moved: int = 0) -> Image.Image:
        rng = random.Random(s)
        w, h = size
        base = Image.linear_gradient("L").resize((w, h)).convert("RGB")
        im = Image.blend(base, Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3))), 0.6)
        d = ImageDraw.Draw(im)
        for k in range(25):
            x, y = rng.randrange(w), rng.randrange(h)
            rw, rh = rng.randrange(w // 20, w // 3), rng.randrange(h // 20, h // 3)
            colour = tuple(rng.randrange(256) for _ in range(3))
            x += moved * (k == 0)
            (d.ellipse if rng.random() < 0.5 else d.rectangle)([x, y, x + rw, y + rh], fill=colour)
        return im.filter(ImageFilter.GaussianBlur(1.5))

    def exif(taken: str | None = None, camera: tuple[str, str] | None = None, orientation: int = 0) -> bytes:
        e = Image.Exif()
        if camera:
            e[271], e[272] = camera
        if orientation:
            e[274] = orientation
        if taken:
            e.get_ifd(0x8769)[36867] = taken
        return e.tobytes()

    def save(im: Image.Image, rel: str, **params: Any) -> str:
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        im.save(path, **params)
        return rel

    def write(rel: str, data: bytes) -> str:
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return rel

    def crop(im: Image.Image, f: tuple[float, float, float, float]) -> Image.Image:
        w, h = im.size
        return im.crop((round(f[0] * w), round(f[1] * h), round(w - f[2] * w), round(h - f[3] * h)))

    def edit(kind: str, im: Image.Image, data: bytes, stem: str) -> str:
        rel = f"copies/{stem}-{kind}"
        if kind == "exact":
            return write(rel + ".jpg", data)
        if kind == "metadata":  # a comment segment after SOI: other bytes, the same image data
            comment = f"edited copy of {stem}".encode()
            return write(
                rel + ".jpg", data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
            )
        if kind == "exif_rot90":  # pixels turned, the orientation tag turning them back
            return save(im.transpose(Image.Transpose.ROTATE_270), rel + ".jpg", quality=90, exif=exif(orientation=6))
        changed = {
            "resize50": lambda: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS),
            "jpeg_q60": lambda: im,
            "png": lambda: im,
            "webp": lambda: im,
            "rot90": lambda: im.transpose(Image.Transpose.ROTATE_90),
            "rot180": lambda: im.transpose(Image.Transpose.ROTATE_180),
            "mirror": lambda: ImageOps.mirror(im),
            "crop5": lambda: crop(im, (0.02, 0.03, 0.03, 0.02)),
            "crop15": lambda: crop(im, (0.10, 0.06, 0.05, 0.09)),
            "bright20": lambda: ImageEnhance.Brightness(im).enhance(1.2),
            "gray": lambda: ImageOps.grayscale(im).convert("RGB"),
            "watermark": lambda: _watermarked(im),
        }[kind]()
        if kind == "png":
            return save(changed, rel + ".png")
        if kind == "webp":
            return save(changed, rel + ".webp", quality=80)
        return save(changed, rel + ".jpg", quality=60 if kind == "jpeg_q60" else 88)

    def _watermarked(im: Image.Image) -> Image.Image:
        im = im.copy()
        ImageDraw.Draw(im).text((im.width - 140, im.height - 30), "(c) dedupe 2021", fill=(255, 255, 255))
        return im

    kinds = [
        "exact",
        "metadata",
        "resize50",
        "jpeg_q60",
        "png",
        "webp",
        "rot90",
        "rot180",
        "exif_rot90",
        "mirror",
        "crop5",
        "crop15",
        "bright20",
        "gray",
        "watermark",
    ]
    truth: dict[str, Any] = {"originals": [], "copies": [], "lookalikes": [], "junk": []}
    rng = random.Random(seed)
    cameras = [("Canon", "EOS 80D"), ("NIKON", "D750"), ("Apple", "iPhone 12")]
    for i in range(60):
        size = (480, 640) if i % 7 == 3 else (640, 480)
        im = photo(seed * 1000 + i, size)
        taken = f"2021:0{1 + i % 9}:{10 + i % 18:02d} {8 + i % 12:02d}:{i % 60:02d}:00" if i % 3 else None
        camera = cameras[i % 3] if i % 3 else None
        stem = f"photo{i:02d}"
        rel = save(im, f"originals/{stem}.jpg", quality=rng.choice([85, 90, 95]), exif=exif(taken, camera))
        truth["originals"].append(rel)
        with open(os.path.join(out, rel), "rb") as photo_file:
            data = photo_file.read()
        for kind in [kinds[i % len(kinds)]] + ([kinds[(i + 7) % len(kinds)]] if i < 24 else []):
            truth["copies"].append({"path": edit(kind, im, data, stem), "original": rel, "edit": kind})
        if i == 5:  # a name with a space and an accent
            truth["copies"].append({"path": write("copies/été 05 copy.jpg", data), "original": rel, "edit": "exact"})
            write("copies/été 05 copy.xmp", b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>\n')
        if i == 8:  # a truncated copy is junk
            truth["junk"].append(write("junk/truncated.jpg", data[: len(data) * 2 // 5]))
    # A burst: one camera, shots a second apart that differ a little, and a copy of the first shot.
    for k in range(3):
        im = photo(seed * 1000 + 500, moved=12 * k)
        rel = save(im, f"burst/shot{k}.jpg", quality=90, exif=exif(f"2022:07:01 10:00:0{k}", ("Canon", "EOS R6")))
        if k == 0:
            small = im.resize((320, 240), Image.Resampling.LANCZOS)
            save(small, "burst/shot0-small.jpg", quality=85, exif=exif("2022:07:01 10:00:00", ("Canon", "EOS R6")))
    # Look-alikes: one scene with a different sky and one object recoloured; must not be grouped.
    a = photo(seed * 1000 + 700)
    b = ImageEnhance.Color(a).enhance(0.4)
    ImageDraw.Draw(b).ellipse([200, 150, 330, 260], fill=(20, 20, 20))
    truth["lookalikes"].append(
        [save(a, "lookalikes/scene-a.jpg", quality=90), save(b, "lookalikes/scene-b.jpg", quality=90)]
    )
    # Pictures with little detail group only by their image data.
    grey = Image.new("RGB", (400, 300), (128, 128, 128))
    save(grey, "other/blank.png")
    save(grey, "other/blank.jpg", quality=90)
    save(Image.linear_gradient("L").resize((400, 300)).convert("RGB"), "other/gradient.jpg", quality=90)
    truth["junk"] += [write("junk/not-an-image.jpg", b"this is not a picture\n"), write("junk/empty.jpg", b"")]
    write("junk/readme.txt", b"not a picture either\n")
    truth["info"] = {"seed": seed, "made_by": "bench/same_behaviour.py --small"}
    with open(os.path.join(out, "truth.json"), "w") as truth_file:
        json.dump(truth, truth_file, indent=1, ensure_ascii=False)
    # Fixed, distinct mtimes, so the oldest/newest rules decide the same way on every build (and no corpus
    # mtime is ever taken for "now").
    all_files = sorted(os.path.join(d, n) for d, _, ns in os.walk(out) for n in ns)
    for k, path in enumerate(all_files):
        t = 1_600_000_000 + 3600 * ((k * 37) % len(all_files))
        os.utime(path, (t, t))


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--before", required=True, help="source tree holding dedupe/ (the reference)")
    ap.add_argument("--after", required=True, help="source tree holding dedupe/ (the change)")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--corpus", help="folder of pictures to use (copied, never changed)")
    group.add_argument("--small", action="store_true", help="draw a small corpus with Pillow (a few seconds)")
    ap.add_argument("--python", default=sys.executable, help="interpreter with dedupe's dependencies")
    ap.add_argument("--work", help="work folder (default: a new temporary folder, removed afterwards)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder (outputs of the last tree)")
    ap.add_argument("--outputs", help="write each command's normalised outcome here, as NN-before.txt/NN-after.txt")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds one command may take")
    a = ap.parse_args(argv)
    trees = []
    for tree in (a.before, a.after):
        tree = os.path.abspath(tree)
        if not os.path.isfile(os.path.join(tree, "dedupe", "__init__.py")):
            ap.error(f"{tree} holds no dedupe/ package")
        trees.append(tree)
    if a.corpus and not os.path.isdir(a.corpus):
        ap.error(f"{a.corpus} is not a folder")
    work = os.path.abspath(a.work) if a.work else tempfile.mkdtemp(prefix="dedupe-same-")
    os.makedirs(work, exist_ok=True)
    try:
        if a.small:
            corpus = os.path.join(work, "corpus")
            shutil.rmtree(corpus, ignore_errors=True)
            t = time.perf_counter()
            make_small_corpus(corpus)
            print(f"drew the small corpus in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        else:
            corpus = os.path.abspath(a.corpus or DEFAULT_CORPUS)
            if not a.corpus:
                ensure_benchmark_corpus(corpus, a.python)
        ref = reference_folder(corpus)
        images, junk = query_images(corpus)
        queries = {"{images}": images, "{junk}": junk}
        plan = steps(bool(ref), bool(junk))
        not_before = first_minute_after(corpus)
        if not_before > time.time():
            # A file of the corpus changed this minute: its mtime could not be told from a "now" of the first
            # commands, so they start in the next minute.
            print(f"waiting {not_before - time.time():.0f} s for the corpus's minute to pass", file=sys.stderr)
            time.sleep(max(0.0, not_before - time.time()))
        results = []
        for label, tree in zip(("before", "after"), trees, strict=True):
            print(f"running {len(plan)} commands with {label} = {tree} ...", file=sys.stderr)
            outcomes, seconds = run_tree(tree, a.python, corpus, work, plan, ref, queries, a.timeout, not_before)
            print(f"  {seconds:.1f} s", file=sys.stderr)
            results.append(outcomes)
        files = sum(len(ns) for _, _, ns in os.walk(corpus))
        print(
            f"Corpus: {corpus} ({files} files), copied to the same path for each tree; PHOTOS/REF = {ref or '-'};"
            f" IMAGES = {', '.join(images)}; JUNK = {', '.join(junk) or '-'}\n"
        )
        if a.outputs:
            os.makedirs(a.outputs, exist_ok=True)
            for label, outcomes in zip(("before", "after"), results, strict=True):
                for n, (step, outcome) in enumerate(zip(plan, outcomes, strict=True), start=1):
                    with open(os.path.join(a.outputs, f"{n:02d}-{label}.txt"), "w") as f:
                        f.write(f"{display(step)}\n{outcome.text}\n")
        different = compare(plan, results[0], results[1])
        print(
            f"\n{len(plan) - different} of {len(plan)} commands behave the same"
            + (f"; {different} DIFFERENT." if different else ".")
        )
        return 1 if different else 0
    finally:
        if a.keep_work:
            print(f"work folder kept: {work}", file=sys.stderr)
        elif not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
