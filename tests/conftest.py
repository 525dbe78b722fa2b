"""Shared fixtures: real photos drawn with Pillow in tmp_path, and a real store."""

from __future__ import annotations

import importlib.util
import io
import os
import random
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw, ImageFilter

from dedupe.cli import cli
from dedupe.group import stored_groups
from dedupe.models import DuplicateGroup, FileRecord, Fingerprint, ScanOptions
from dedupe.scan import scan
from dedupe.store import Store

THREAD_GRACE = 5.0  # seconds a thread that is finishing (an observer being stopped) may take after its test


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every test ends the threads it started: a thread left running (daemon or not) fails the test.

    A leaked observer keeps reporting into a store that is closed, and a leaked non-daemon thread keeps pytest
    from exiting; as in watchdog's own tests, each test is checked rather than the session.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    if left:
        names = ", ".join(sorted(f"{t.name}{' (daemon)' if t.daemon else ''}" for t in left))
        pytest.fail(f"the test left {len(left)} thread(s) running: {names}")


def transparent_logo(seed: int, *, ring: bool, background: int = 90) -> Image.Image:
    """A logo on a partly transparent background: one colour layer (a drawn photo) for every seed's shape, the
    shape (a ring or a cross) in the alpha, the background as transparent as asked (0 clear, 255 opaque)."""
    im = draw_photo(seed, (800, 600)).convert("RGBA")
    alpha = Image.new("L", im.size, background)
    draw = ImageDraw.Draw(alpha)
    if ring:
        draw.ellipse((200, 100, 600, 500), fill=240)
    else:
        draw.rectangle((100, 250, 700, 350), fill=240)
        draw.rectangle((350, 50, 450, 550), fill=240)
    im.putalpha(alpha)
    return im


def draw_photo(seed: int, size: tuple[int, int] = (1200, 900)) -> Image.Image:
    """A photo-like picture: a gradient sky, shapes and texture, different for every seed."""
    rng = random.Random(seed)
    w, h = size
    base = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    tint = Image.new("RGB", (w, h), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    im = Image.blend(base, tint, 0.6)
    d = ImageDraw.Draw(im)
    for _ in range(30):
        x, y = rng.randrange(w), rng.randrange(h)
        rw, rh = rng.randrange(w // 20, w // 3), rng.randrange(h // 20, h // 3)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            d.ellipse([x, y, x + rw, y + rh], fill=colour)
        else:
            d.rectangle([x, y, x + rw, y + rh], fill=colour)
    return im.filter(ImageFilter.GaussianBlur(2))


def save(im: Image.Image, path: Path, **params: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".heic", ".heif"):
        import pillow_heif  # dedupe loads it only once it meets such a file; saving one needs it first

        pillow_heif.register_heif_opener()
    im.save(path, **params)
    return path


def damaged_exif_photo(fmt: str) -> tuple[bytes, bytes]:
    """A drawn photo in fmt (JPEG or PNG, with a JFIF resolution or pHYs) without EXIF, and the same photo with an
    EXIF block (orientation 6, a date taken) whose TIFF header is damaged, so that Pillow cannot read it. A PNG's
    eXIf chunk has its CRC made again: only its content is damaged."""
    im = draw_photo(15, (300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[36867] = "2021:02:03 04:05:06"
    plain, tagged = io.BytesIO(), io.BytesIO()
    im.save(plain, fmt, dpi=(72, 72))
    im.save(tagged, fmt, dpi=(72, 72), exif=exif)
    header = tagged.getvalue().index(b"MM\x00*")
    damaged = tagged.getvalue()[:header] + b"XX" + tagged.getvalue()[header + 2 :]
    if fmt == "PNG":
        start = damaged.index(b"eXIf") - 4
        end = start + 8 + int.from_bytes(damaged[start : start + 4], "big")
        damaged = damaged[:end] + zlib.crc32(damaged[start + 4 : end]).to_bytes(4, "big") + damaged[end + 4 :]
    return plain.getvalue(), damaged


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder with originals, an exact copy, edited copies and bad files."""
    root = tmp_path / "photos"
    for i in range(4):
        save(draw_photo(i), root / f"original{i}.jpg", quality=92)
    (root / "backup").mkdir()
    (root / "backup" / "original0.jpg").write_bytes((root / "original0.jpg").read_bytes())
    save(draw_photo(1).resize((600, 450)), root / "backup" / "small1.png")
    save(draw_photo(2), root / "backup" / "recompressed2.jpg", quality=55)
    (root / "notes.jpg").write_text("not a photo")
    return root


@pytest.fixture
def trash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The freedesktop home trash lives in $XDG_DATA_HOME/Trash: point it into tmp_path."""
    home = tmp_path / "xdg"
    home.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home / "Trash"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite") as s:
        yield s


REPO = Path(__file__).resolve().parent.parent


def run_dedupe(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m dedupe` in a real subprocess, importing this checkout's package."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dedupe", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def make_fingerprint(**fields: Any) -> Fingerprint:
    """A Fingerprint with plain defaults, so a test names only the fields it is about."""
    values: dict[str, Any] = {
        "content_hash": "c" * 32,
        "image_hash": "i" * 32,
        "format": "JPEG",
        "width": 400,
        "height": 300,
        "phash": 0,
        "dhash": 0,
        "taken": None,
        "low_info": False,
    }
    values.update(fields)
    return Fingerprint(**values)


def make_record(path: str, *, size: int = 1000, mtime_ns: int = 0, dev: int = 1, ino: int = 0, **fp: Any) -> FileRecord:
    """A FileRecord at path; any other keyword goes to make_fingerprint."""
    return FileRecord(path, size, mtime_ns, dev, ino, make_fingerprint(**fp))


def copy_file(src: Path, dst: Path, mtime: float | None = None) -> Path:
    """A byte-for-byte copy of src at dst, with the given mtime when one is given."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    if mtime is not None:
        os.utime(dst, (mtime, mtime))
    return dst


def groups_of(store: Store, *roots: Path) -> list[DuplicateGroup]:
    """Scan the roots into the store (one worker) and return their groups."""
    scan([str(r) for r in roots], store, ScanOptions(workers=1))
    groups, _, _ = stored_groups(store, [str(r) for r in roots])
    return groups


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount a small real tmpfs (another device) under tmp_path; skipped where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(name: str, size: str = "4m", readonly: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", str(where)], check=True)


def invoke(*args: object) -> tuple[int, str]:
    r = CliRunner().invoke(cli, [str(a) for a in args])
    crash = f"\n{type(r.exception).__name__}: {r.exception}" if r.exception and r.exit_code != 0 else ""
    return r.exit_code, r.output + crash


def exact_copy(keeper: Path, copy: Path) -> Path:
    """An exact copy, newer than its keeper, so the default rules keep the original and act on the copy."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(keeper.read_bytes())
    os.utime(copy, (2_000_000_000, 2_000_000_000))
    return copy


def scanned(root: Path, tmp_path: Path) -> str:
    db = str(tmp_path / "store.sqlite")
    code, out = invoke("scan", root, "--db", db, "-q")
    assert code == 0, out
    return db


def load_bench(name: str) -> ModuleType:
    """The script bench/NAME.py as a module (the bench folder is no package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module
