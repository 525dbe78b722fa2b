#!/usr/bin/env python3
"""Build a benchmark folder for dedupe from real photographs (Debian wallpapers).

Usage:
    python bench/corpus.py OUT_DIR [--originals N] [--seed S] [--camera]

Sources are the Debian packages mate-backgrounds, gnome-backgrounds and
plasma-workspace-wallpapers.  When they are missing and we run as root they are
installed with apt-get; otherwise the script says what to install and exits.

Layout of OUT_DIR (normal mode):
    originals/   one file per distinct picture, a byte copy of the wallpaper
    copies/      edited copies of the originals (one file per edit kind)
    lookalikes/  different pictures that look alike (light/dark variants,
                 series of similar designs, two crops of one photo, dark photos,
                 two transparent logos cut from one colour layer)
    junk/        files a tool must survive (truncated, not an image, empty, ...)
    truth.json   {"originals": [path, ...],
                  "copies": [{"path", "original", "edit", ...}, ...],
                  "lookalikes": [[a, b], ...],   # must NOT be grouped
                  "junk": [path, ...],
                  "info": {...}}                 # seed, sources, kinds
All paths in truth.json are relative to OUT_DIR, with "/" separators.

Ground truth: a correct tool groups every copy with its original (and with the
other copies of that original), and nothing else.  Look-alike files and junk
files belong to no group; a look-alike member may itself be an original (then
its copies are in its group, but the other member of the pair is not).

--camera writes a camera-like folder instead: only 4000x3000 JPEGs (q=92, EXIF
DateTimeOriginal) derived from the originals, plus for each an exact byte copy,
a recompressed copy (q=75) and a resized copy (50%); no look-alikes, no junk.

Output is deterministic for a given seed (same Pillow/libjpeg/libwebp build).
Only stdlib + Pillow + numpy are used.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import multiprocessing
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

PACKAGES = ["mate-backgrounds", "gnome-backgrounds", "plasma-workspace-wallpapers"]
SOURCE_ROOTS = ["/usr/share/backgrounds", "/usr/share/wallpapers"]
RASTER_EXT = {".jpg", ".jpeg", ".png", ".webp"}
GREY = (128, 128, 128)  # background used to flatten transparency (as dedupe does)
LOW_INFO_STD = 4.0  # grey-level std of a 64x64 thumbnail below which a picture is "blank"

# Series of different-but-similar designs shipped together (look-alike families).
SERIES = [re.compile(r"^mate/desktop/Ubuntu-Mate-.*-no-logo$")]
EDITS = [
    "exact",
    "metadata",
    "resize50",
    "jpeg_q60",
    "png",
    "webp",
    "crop5",
    "crop15",
    "crop5_uneven",
    "crop12_uneven",
    "crop22_uneven",
    "bright20",
    "alpha",
    "watermark",
    "gray",
    "exif_rot90",
    "rot90",
    "mirror",
]
# Crop boxes as fractions removed from (left, top, right, bottom); asymmetric like a
# person's crop.  "crop5" removes 5% of the width and 5% of the height in total.
CROPS = {"crop5": (0.02, 0.03, 0.03, 0.02), "crop15": (0.10, 0.06, 0.05, 0.09)}
# Cuts split at random between opposite borders (4% + 1%, 5% + 0%, ...): the fraction of the width and of the
# height removed in total is drawn from the range, each split at random, per original and seed.
UNEVEN = {"crop5_uneven": (0.05, 0.05), "crop12_uneven": (0.10, 0.15), "crop22_uneven": (0.20, 0.25)}


def uneven_cut(name: str, seed: int, edit: str) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) fractions of an UNEVEN cut, the same for one original, seed and edit."""
    low, high = UNEVEN[edit]
    rng = random.Random(f"{seed}:{name}:{edit}")
    across, down = rng.uniform(low, high), rng.uniform(low, high)
    left, top = across * rng.random(), down * rng.random()
    return (round(left, 4), round(top, 4), round(across - left, 4), round(down - top, 4))


def semi_transparent(im: Image.Image) -> Image.Image:
    """The picture flattened, then given an alpha channel that leaves every pixel partly transparent, its colours
    unchanged, as some wallpapers and overlays are made: the brighter a pixel, the more opaque (9% to 86%)."""
    rgba = flatten(im).convert("RGBA")
    rgba.putalpha(rgba.convert("L").point(lambda v: 24 + v * 196 // 255))
    return rgba


def transparent_logo(im: Image.Image, ring: bool) -> Image.Image:
    """A logo cut by its alpha from the picture as a colour layer: the background 35% opaque, the shape (a ring
    or a cross) 94%. Two logos from one layer differ only in their alpha."""
    rgba = flatten(im).convert("RGBA")
    w, h = rgba.size
    alpha = Image.new("L", rgba.size, 90)
    draw = ImageDraw.Draw(alpha)
    if ring:
        draw.ellipse((w // 4, h // 6, 3 * w // 4, 5 * h // 6), fill=240)
        draw.ellipse((3 * w // 8, h // 3, 5 * w // 8, 2 * h // 3), fill=90)
    else:
        draw.rectangle((w // 8, 2 * h // 5, 7 * w // 8, 3 * h // 5), fill=240)
        draw.rectangle((2 * w // 5, h // 8, 3 * w // 5, 7 * h // 8), fill=240)
    rgba.putalpha(alpha)
    return rgba


# ----------------------------------------------------------------------------- sources


def ensure_packages() -> None:
    missing = []
    for pkg in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(pkg)
    if not missing:
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit(f"apt-get install failed; install manually: {' '.join(missing)}")
    else:
        sys.exit(f"missing wallpaper packages; as root run:\n  apt-get install -y {' '.join(missing)}")


@dataclass
class Picture:
    key: str  # e.g. "plasma/Kay", "plasma/Kay#dark", "gnome/adwaita-l"
    path: str  # largest file for this picture
    area: int
    fmt: str
    family: str | None = None  # look-alike family (light/dark, series) or None
    photo: bool = False  # JPEG-encoded source (most are photographs)
    sha: str = ""
    members: list = field(default_factory=list)


def _picture_key(path: str) -> tuple[str, str | None] | None:
    """Map a wallpaper file to (picture key, family); None to skip it."""
    rel = None
    for root in SOURCE_ROOTS:
        if path.startswith(root + "/"):
            rel = path[len(root) + 1 :]
            break
    if rel is None:
        return None
    stem, _ = os.path.splitext(rel)
    parts = rel.split("/")
    if "contents" in parts:  # plasma package: NAME/contents/images[_dark]/WxH.ext
        i = parts.index("contents")
        name = "/".join(parts[:i])
        if i + 1 >= len(parts) or not parts[i + 1].startswith("images"):
            return None  # screenshot.* and the like
        variant = parts[i + 1][len("images") :].lstrip("_")
        key = "plasma/" + name + (f"#{variant}" if variant else "")
        return key, None  # family decided later (only if a variant exists)
    stem = re.sub(r"_\d+x\d+$", "", stem)  # mate: Elephants_3840x2160 -> Elephants
    family = None
    m = re.match(r"^(.*?)[-_](l|d|light|dark)$", stem, re.IGNORECASE)
    if m:
        family = m.group(1)
    for pat in SERIES:
        if pat.match(stem):
            family = pat.pattern
    return stem, family


def _analyse(path: str) -> tuple[str, float, list]:
    """sha256 of the file, grey std of a flattened thumbnail, and a 16x16 signature."""
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    im = Image.open(path)
    if im.format == "JPEG":
        im.draft("RGB", (128, 128))
    im = ImageOps.exif_transpose(im)
    im = flatten(im).convert("L")
    im.thumbnail((64, 64), Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.float64)
    sig = np.asarray(im.resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float64)
    return sha, float(a.std()), sig.ravel().tolist()


def discover() -> list[Picture]:
    files = set()
    for root in SOURCE_ROOTS:
        for dp, _dn, fn in os.walk(root):
            for n in fn:
                if os.path.splitext(n)[1].lower() in RASTER_EXT and not n.startswith("screenshot"):
                    files.add(os.path.join(dp, n))
    pics: dict[str, Picture] = {}
    for path in sorted(files):
        km = _picture_key(path)
        if km is None:
            continue
        key, family = km
        real = os.path.realpath(path)  # plasma WxH names are often symlinks to one file
        try:
            with Image.open(real) as im:
                w, h = im.size
                fmt = im.format or ""
        except Exception:
            continue
        p = pics.get(key)
        if p is None:
            pics[key] = p = Picture(key, real, w * h, fmt, family, fmt == "JPEG")
        elif w * h > p.area or (w * h == p.area and real < p.path):
            p.path, p.area, p.fmt, p.photo = real, w * h, fmt, fmt == "JPEG"
        p.members.append(path)
    # plasma light/dark: a picture with a "#dark" variant forms a family with it
    for key in list(pics):
        if key.startswith("plasma/") and "#" in key:
            base = key.split("#")[0]
            pics[key].family = base
            if base in pics:
                pics[base].family = base
    # analyse (parallel): content hash, information, signature
    order = sorted(pics)
    with multiprocessing.Pool(min(4, os.cpu_count() or 1)) as pool:
        res = pool.map(_analyse, [pics[k].path for k in order])
    out: list[Picture] = []
    seen_sha: dict[str, str] = {}
    sigs: list[tuple[Picture, np.ndarray]] = []
    for k, (sha, std, sig) in zip(order, res, strict=False):
        p = pics[k]
        p.sha = sha
        if sha in seen_sha:  # same file shipped twice (two packages / two names)
            continue
        seen_sha[sha] = k
        if std < LOW_INFO_STD:  # flat colour: not a usable picture
            continue
        s = np.asarray(sig)
        # same picture at another resolution / re-encoded under another name?
        dup = next((q for q, t in sigs if np.abs(s - t).mean() < 1.5 and not (p.family and p.family == q.family)), None)
        if dup is not None:
            if p.area > dup.area:  # keep the largest
                out.remove(dup)
                sigs = [(q, t) for q, t in sigs if q is not dup]
            else:
                continue
        out.append(p)
        sigs.append((p, s))
    # families with a single surviving member are no families
    counts: dict[str, int] = {}
    for p in out:
        if p.family:
            counts[p.family] = counts.get(p.family, 0) + 1
    for p in out:
        if p.family and counts[p.family] < 2:
            p.family = None
    return out


# ----------------------------------------------------------------------------- helpers


def flatten(im: Image.Image) -> Image.Image:
    """Composite transparency onto mid-grey; return RGB or L."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (*GREY, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode not in ("RGB", "L"):
        return im.convert("RGB")
    return im


def load_display(path: str) -> Image.Image:
    im = Image.open(path)
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "transparency" in im.info or im.mode in ("PA",) else "RGB")
    return im


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA")


EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    if fmt == "JPEG":
        im = flatten(im)
        im.save(b, "JPEG", quality=kw.pop("quality", 90), **kw)
    elif fmt == "PNG":
        im.save(b, "PNG", compress_level=3, **kw)
    elif fmt == "WEBP":
        im.save(b, "WEBP", quality=kw.pop("quality", 85), method=2, **kw)
    else:
        raise ValueError(fmt)
    return b.getvalue()


def write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_exif(
    date: str, orientation: int | None = None, base: Image.Exif | None = None, desc: str | None = None
) -> bytes:
    ex = Image.Exif()
    if base is not None:
        for k, v in base.items():
            if k not in (0x8769, 0x8825, 0xA005, 0x927C):
                ex[k] = v
    ex[0x0131] = "dedupe bench/corpus.py"  # Software
    ex[0x0132] = date.replace("-", ":")  # DateTime
    if orientation is not None:
        ex[0x0112] = orientation
    if desc:
        ex[0x010E] = desc
    ifd = ex.get_ifd(0x8769)
    ifd[0x9003] = date  # DateTimeOriginal
    ifd[0x9004] = date  # DateTimeDigitized
    return ex.tobytes()


def xmp_packet(text: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
        f"<xmp:Rating>4</xmp:Rating><dc:description>{text}</dc:description>"
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


# ------------------------------------------------------------- metadata-only re-mux


def remux_jpeg(data: bytes, exif: bytes, xmp: bytes) -> bytes:
    """Replace APP1 (EXIF/XMP) segments; the entropy-coded scan is copied unchanged."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    pos, keep_head = 2, []
    while True:
        if data[pos] != 0xFF:
            raise ValueError("bad JPEG marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            seg = data[pos : pos + 2 + length]
            body = seg[4:]
            if not (marker == 0xE1 and (body.startswith(b"Exif\x00") or body.startswith(b"http://ns.adobe.com/xap/"))):
                keep_head.append(seg)
            pos += 2 + length
            continue
        break  # DQT/SOF/DHT/...: copy the rest verbatim
    app0 = [s for s in keep_head if s[1] == 0xE0]
    other = [s for s in keep_head if s[1] != 0xE0]

    def seg(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    new = [seg(0xE1, exif), seg(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp)]
    return b"\xff\xd8" + b"".join(app0 + new + other) + data[pos:]


def remux_png(data: bytes, exif: bytes, xmp: bytes) -> bytes:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"

    def chunk(typ: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + typ + payload + struct.pack(">I", zlib.crc32(typ + payload) & 0xFFFFFFFF)
        )

    out, pos, done = [data[:8]], 8, False
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        typ = data[pos + 4 : pos + 8]
        whole = data[pos : pos + 12 + length]
        pos += 12 + length
        if typ in (b"eXIf",) or (typ == b"iTXt" and whole[8 : 8 + 17] == b"XML:com.adobe.xmp"):
            continue
        if typ == b"IDAT" and not done:
            out.append(chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif") else exif))
            out.append(chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
            out.append(chunk(b"tEXt", b"Comment\x00edited metadata only"))
            done = True
        out.append(whole)
    return b"".join(out)


def remux_webp(data: bytes, exif: bytes, xmp: bytes, size: tuple[int, int], alpha: bool) -> bytes:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        typ = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        chunks.append((typ, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length + (length & 1)
    flags = 0
    body = []
    for typ, payload in chunks:
        if typ == b"VP8X":
            flags = payload[0]
        elif typ not in (b"EXIF", b"XMP "):
            body.append((typ, payload))
    flags |= 0x08 | 0x04 | (0x10 if alpha else 0)
    w, h = size
    vp8x = bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    tiff = exif[6:] if exif.startswith(b"Exif") else exif
    allc = [(b"VP8X", vp8x), *body, (b"EXIF", tiff), (b"XMP ", xmp)]
    out = b"".join(t + struct.pack("<I", len(p)) + p + (b"\x00" if len(p) & 1 else b"") for t, p in allc)
    return b"RIFF" + struct.pack("<I", len(out) + 4) + b"WEBP" + out


# ----------------------------------------------------------------------------- edits


def watermark(im: Image.Image, text: str) -> Image.Image:
    im = im.copy()
    w, h = im.size
    bw, bh = max(40, w // 5), max(14, h // 16)
    x0, y0 = w - bw - w // 40, h - bh - h // 40
    over = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    d.rectangle([x0, y0, x0 + bw, y0 + bh], fill=(255, 255, 255, 150))
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(10, bh * 6 // 10))
    except Exception:  # very old Pillow
        font = None
    d.text((x0 + bh // 4, y0 + bh // 6), text, fill=(20, 20, 20, 230), font=font)
    mode = im.mode
    return Image.alpha_composite(im.convert("RGBA"), over).convert(
        mode if mode in ("RGBA", "LA") else ("RGB" if mode != "L" else "L")
    )


def crop_box(size: tuple[int, int], fr: tuple[float, float, float, float]):
    w, h = size
    left, top, right, bottom = fr
    return (round(w * left), round(h * top), w - round(w * right), h - round(h * bottom))


def make_copies(job: dict) -> list[dict]:
    """Make all edited copies of one original; returns the copy records."""
    out_dir, orig_rel, src = job["out"], job["orig"], job["src"]
    name, idx = job["name"], job["index"]
    with open(src, "rb") as f:
        raw = f.read()
    im = load_display(src)
    fmt = Image.open(io.BytesIO(raw)).format
    fmt_out = fmt if fmt in EXT else "PNG"
    alpha = has_alpha(im)
    date = f"2021:{1 + idx % 12:02d}:{1 + idx % 27:02d} {8 + idx % 12:02d}:{idx % 60:02d}:00"
    recs = []

    def add(edit: str, data: bytes, ext: str, **extra) -> None:
        rel = f"copies/{name}__{edit}{ext}"
        write(os.path.join(out_dir, rel), data)
        recs.append({"path": rel, "original": orig_rel, "edit": edit, **extra})

    ext = EXT[fmt_out]
    for edit in EDITS:
        if edit == "exact":
            add(edit, raw, os.path.splitext(src)[1].lower())
        elif edit == "metadata":
            ex = make_exif("2019:06:15 12:34:56", desc=f"metadata-only copy of {name}")
            xmp = xmp_packet(f"metadata-only copy of {name}")
            if fmt == "JPEG":
                add(edit, remux_jpeg(raw, ex, xmp), ".jpg")
            elif fmt == "PNG":
                add(edit, remux_png(raw, ex, xmp), ".png")
            elif fmt == "WEBP":
                add(edit, remux_webp(raw, ex, xmp, Image.open(io.BytesIO(raw)).size, alpha), ".webp")
        elif edit == "resize50":
            small = im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS)
            add(edit, encode(small, fmt_out), ext, scale=0.5)
        elif edit == "jpeg_q60":
            add(edit, encode(im, "JPEG", quality=60), ".jpg", quality=60)
        elif edit == "png":
            add(edit, encode(im, "PNG"), ".png")
        elif edit == "webp":
            add(edit, encode(im, "WEBP", quality=80), ".webp", quality=80)
        elif edit in CROPS:
            fr = CROPS[edit]
            add(
                edit,
                encode(im.crop(crop_box(im.size, fr)), fmt_out),
                ext,
                crop={
                    "left": fr[0],
                    "top": fr[1],
                    "right": fr[2],
                    "bottom": fr[3],
                    "width_removed": round(fr[0] + fr[2], 4),
                    "height_removed": round(fr[1] + fr[3], 4),
                },
            )
        elif edit in UNEVEN:
            fr = uneven_cut(name, job["seed"], edit)
            add(
                edit,
                encode(im.crop(crop_box(im.size, fr)), fmt_out),
                ext,
                crop={
                    "left": fr[0],
                    "top": fr[1],
                    "right": fr[2],
                    "bottom": fr[3],
                    "width_removed": round(fr[0] + fr[2], 4),
                    "height_removed": round(fr[1] + fr[3], 4),
                },
            )
        elif edit == "alpha":
            add(edit, encode(semi_transparent(im), "PNG"), ".png")
        elif edit == "bright20":
            base = flatten(im) if alpha else im
            add(edit, encode(ImageEnhance.Brightness(base).enhance(1.2), fmt_out), ext, factor=1.2)
        elif edit == "watermark":
            add(edit, encode(watermark(im, "(c) dedupe bench"), fmt_out), ext)
        elif edit == "gray":
            add(edit, encode(ImageOps.grayscale(flatten(im)), fmt_out), ext)
        elif edit == "exif_rot90":
            # phone-style: pixels stored rotated 90 deg CCW, Orientation=6 tells a
            # viewer to rotate 90 deg CW, so the file DISPLAYS upright.
            stored = flatten(im).transpose(Image.Transpose.ROTATE_90)
            add(edit, encode(stored, "JPEG", quality=92, exif=make_exif(date, 6)), ".jpg", orientation=6)
        elif edit == "rot90":
            add(edit, encode(im.transpose(Image.Transpose.ROTATE_270), fmt_out), ext, degrees_cw=90)
        elif edit == "mirror":
            add(edit, encode(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), fmt_out), ext)
    return recs


def to_camera(im: Image.Image) -> Image.Image:
    im = flatten(im).convert("RGB")
    return ImageOps.fit(im, (4000, 3000), Image.Resampling.BICUBIC)


def make_camera(job: dict) -> list[dict]:
    out_dir, name, idx = job["out"], job["name"], job["index"]
    im = to_camera(load_display(job["src"]))
    date = f"2022:{1 + idx % 12:02d}:{1 + idx % 27:02d} {8 + idx % 12:02d}:{idx % 60:02d}:{idx % 60:02d}"
    ex = Image.Exif()
    ex[0x010F] = "Bench"
    ex[0x0110] = "corpus.py camera"
    ex[0x0132] = date
    ifd = ex.get_ifd(0x8769)
    ifd[0x9003] = date
    ifd[0x9004] = date
    exb = ex.tobytes()
    data = encode(im, "JPEG", quality=92, exif=exb)
    orig = f"originals/{name}.jpg"
    write(os.path.join(out_dir, orig), data)
    recs = [{"path": orig, "original": None, "edit": "original"}]

    def add(edit: str, blob: bytes, **extra) -> None:
        rel = f"copies/{name}__{edit}.jpg"
        write(os.path.join(out_dir, rel), blob)
        recs.append({"path": rel, "original": orig, "edit": edit, **extra})

    add("exact", data)
    add("jpeg_q75", encode(im, "JPEG", quality=75, exif=exb), quality=75)
    add("resize50", encode(im.resize((2000, 1500), Image.Resampling.LANCZOS), "JPEG", quality=90, exif=exb), scale=0.5)
    return recs


# ------------------------------------------------------------------ look-alikes, junk


def make_synthetic_lookalikes(out_dir: str, crop_srcs: list[Picture], dark_srcs: list[Picture]) -> list[dict]:
    pairs = []
    for p in crop_srcs:
        im = flatten(load_display(p.path))
        w, h = im.size
        n = safe_name(p.key)
        a = f"lookalikes/{n}__left45.jpg"
        b = f"lookalikes/{n}__right45.jpg"
        write(os.path.join(out_dir, a), encode(im.crop((0, 0, round(w * 0.45), h)), "JPEG"))
        write(os.path.join(out_dir, b), encode(im.crop((w - round(w * 0.45), 0, w, h)), "JPEG"))
        pairs.append({"a": a, "b": b, "kind": "crops_of_one_photo", "source": p.path})
        a, b = f"lookalikes/{n}__logo_ring.png", f"lookalikes/{n}__logo_cross.png"
        write(os.path.join(out_dir, a), encode(transparent_logo(im, True), "PNG"))
        write(os.path.join(out_dir, b), encode(transparent_logo(im, False), "PNG"))
        pairs.append({"a": a, "b": b, "kind": "transparent_logos_one_layer", "source": p.path})
    for p, q in zip(dark_srcs[0::2], dark_srcs[1::2], strict=False):
        rels = []
        for s in (p, q):
            im = flatten(load_display(s.path))
            im = ImageEnhance.Brightness(im).enhance(0.08)
            rel = f"lookalikes/{safe_name(s.key)}__dark.jpg"
            write(os.path.join(out_dir, rel), encode(im, "JPEG"))
            rels.append(rel)
        pairs.append({"a": rels[0], "b": rels[1], "kind": "two_dark_photos", "source": [p.path, q.path]})
    return pairs


def make_junk(out_dir: str, seed: int, src: Picture | None) -> list[dict]:
    rng = random.Random(seed * 7919 + 17)
    items = []

    def add(rel: str, data: bytes, kind: str) -> None:
        write(os.path.join(out_dir, rel), data)
        items.append({"path": rel, "kind": kind})

    if src is not None:
        im = flatten(load_display(src.path))
        im.thumbnail((1600, 1600))
    else:
        im = Image.effect_noise((800, 600), 60).convert("RGB")
    full = encode(im, "JPEG", quality=90)
    add("junk/truncated.jpg", full[: len(full) * 3 // 10], "truncated_jpeg")
    add("junk/notes.jpg", b"This is a text file, not a photograph.\n" * 20, "text_named_jpg")
    add("junk/empty.png", b"", "zero_bytes")
    add("junk/random.webp", bytes(rng.getrandbits(8) for _ in range(4096)), "random_bytes")
    add("junk/blank_16x16.png", encode(Image.new("RGB", (16, 16), (250, 250, 250)), "PNG"), "blank_small")
    add("junk/blank_120x90.png", encode(Image.new("RGB", (120, 90), (250, 250, 250)), "PNG"), "blank_other_size")
    return items


def safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", key.replace("#", "-")).strip("-")


# ----------------------------------------------------------------------------- main


def select(pics: list[Picture], n: int, seed: int, n_crop: int, n_dark: int):
    rng = random.Random(seed)
    fams: dict[str, list[Picture]] = {}
    singles: list[Picture] = []
    for p in sorted(pics, key=lambda p: p.key):
        (fams.setdefault(p.family, []) if p.family else singles).append(p)
    fam_names = sorted(fams)
    rng.shuffle(fam_names)
    n_fam = min(len(fam_names), max(1, round(n * 0.3)) if n >= 3 else 0)
    chosen_fams = sorted(fam_names[:n_fam])
    # singles: JPEG (photo) first, shuffled within each tier
    photos = [p for p in singles if p.photo]
    others = [p for p in singles if not p.photo]
    rng.shuffle(photos)
    rng.shuffle(others)
    reserve_n = min(n_crop + n_dark, max(0, len(photos) + len(others) - (n - n_fam)))
    pool = photos + others
    reserved = pool[:reserve_n]  # sources of synthetic look-alikes, never originals
    rest = pool[reserve_n:]
    originals: list[Picture] = []
    lookalike_members: dict[str, list[Picture]] = {}
    for f in chosen_fams:
        members = fams[f]
        rep = members[rng.randrange(len(members))]
        originals.append(rep)
        lookalike_members[f] = members
    originals += rest[: max(0, n - len(originals))]
    crop_srcs = reserved[:n_crop]
    dark_srcs = reserved[n_crop : n_crop + n_dark]
    if len(dark_srcs) % 2:
        dark_srcs = dark_srcs[:-1]
    junk_src = rest[n - n_fam] if len(rest) > n - n_fam else None
    return originals, lookalike_members, crop_srcs, dark_srcs, junk_src


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--originals", type=int, default=40, help="number of originals (default 40; capped by the sources)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--camera", action="store_true", help="camera-like folder: 4000x3000 JPEGs and their copies only")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args(argv)
    t0 = time.time()
    ensure_packages()
    pics = discover()
    if not pics:
        sys.exit("no wallpapers found under " + ", ".join(SOURCE_ROOTS))
    originals, fam_members, crop_srcs, dark_srcs, junk_src = select(pics, a.originals, a.seed, n_crop=2, n_dark=4)
    if len(originals) < a.originals:
        print(f"note: only {len(originals)} distinct pictures available", file=sys.stderr)
    out = os.path.abspath(a.out_dir)
    if os.path.exists(out) and os.listdir(out):
        if not os.path.exists(os.path.join(out, "truth.json")):
            sys.exit(f"{out} is not empty and has no truth.json; refusing to overwrite")
        for sub in ("originals", "copies", "lookalikes", "junk"):
            shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)

    names: dict[str, str] = {}
    jobs = []
    for i, p in enumerate(originals):
        name = safe_name(p.key)
        names[p.key] = name
        jobs.append(
            {
                "out": out,
                "src": p.path,
                "name": name,
                "index": i,
                "seed": a.seed,
                "orig": f"originals/{name}{os.path.splitext(p.path)[1].lower()}",
            }
        )
    truth = {"originals": [], "copies": [], "lookalikes": [], "junk": [], "info": {}}
    sources = {}
    with multiprocessing.Pool(max(1, a.jobs)) as pool:
        if a.camera:
            for recs in pool.imap(make_camera, jobs):
                for r in recs:
                    if r["edit"] == "original":
                        truth["originals"].append(r["path"])
                    else:
                        truth["copies"].append(r)
            for j in jobs:
                sources[f"originals/{j['name']}.jpg"] = j["src"]
        else:
            os.makedirs(os.path.join(out, "originals"), exist_ok=True)
            for j in jobs:
                shutil.copyfile(j["src"], os.path.join(out, j["orig"]))
                truth["originals"].append(j["orig"])
                sources[j["orig"]] = j["src"]
            async_copies = pool.map_async(make_copies, jobs)
            # look-alikes: natural families (light/dark, series)
            pairs = []
            orig_of = {j["src"]: j["orig"] for j in jobs}
            for fam, members in sorted(fam_members.items()):
                rels = []
                for m in members:
                    if m.path in orig_of:
                        rels.append(orig_of[m.path])
                    else:
                        rel = f"lookalikes/{safe_name(m.key)}{os.path.splitext(m.path)[1].lower()}"
                        with open(m.path, "rb") as src:
                            write(os.path.join(out, rel), src.read())
                        sources[rel] = m.path
                        rels.append(rel)
                for x in range(len(rels)):
                    for y in range(x + 1, len(rels)):
                        pairs.append(
                            {
                                "a": rels[x],
                                "b": rels[y],
                                "kind": "light_dark_variants" if len(rels) == 2 else "design_series",
                                "family": fam,
                            }
                        )
            pairs += make_synthetic_lookalikes(out, crop_srcs, dark_srcs)
            truth["junk"] = make_junk(out, a.seed, junk_src)
            for recs in async_copies.get():
                truth["copies"].extend(recs)
            truth["lookalikes"] = [[p["a"], p["b"]] for p in pairs]
            truth["info"]["lookalike_pairs"] = pairs
            truth["info"]["junk_kinds"] = {j["path"]: j["kind"] for j in truth["junk"]}
            truth["junk"] = [j["path"] for j in truth["junk"]]
    truth["info"].update(
        {
            "seed": a.seed,
            "mode": "camera" if a.camera else "normal",
            "originals_requested": a.originals,
            "sources": sources,
            "generator": "bench/corpus.py",
            "pillow": Image.__version__,
            "flatten_background": list(GREY),
        }
    )
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")

    # summary
    nbytes = sum(os.path.getsize(os.path.join(dp, n)) for dp, _d, fn in os.walk(out) for n in fn)
    nfiles = sum(len(fn) for _dp, _d, fn in os.walk(out)) - 1
    kinds: dict[str, int] = {}
    for c in truth["copies"]:
        kinds[c["edit"]] = kinds.get(c["edit"], 0) + 1
    print(
        f"{out}: {nfiles} files, {nbytes / 1e6:.0f} MB, {time.time() - t0:.0f}s "
        f"(seed {a.seed}, {'camera' if a.camera else 'normal'} mode)"
    )
    print(f"  originals  {len(truth['originals'])} ({sum(1 for p in originals if p.photo)} from JPEG photos)")
    print(f"  copies     {len(truth['copies'])}: " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
    print(f"  lookalikes {len(truth['lookalikes'])} pairs (must not be grouped)")
    print(f"  junk       {len(truth['junk'])}")
    print(f"  truth      {os.path.join(out, 'truth.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
