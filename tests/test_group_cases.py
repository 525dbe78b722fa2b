"""Grouping cases to fold into test_group.py: pictures that must not be grouped, and pairs marked as not
duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from dedupe.store import Store
from tests.conftest import copy_file, draw_photo, groups_of, invoke, save

SMALL = (400, 300)


def photo(path: Path, seed: int, size: tuple[int, int] = SMALL, **params: object) -> Path:
    return save(draw_photo(seed, size), path, **params)


def _gradient(c0: tuple[int, int, int], c1: tuple[int, int, int], vertical: bool, size: tuple[int, int]) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, h if vertical else w)
    line = np.array(c0, float)[None, :] * (1 - t[:, None]) + np.array(c1, float)[None, :] * t[:, None]
    a = np.repeat(line[:, None, :], w, axis=1) if vertical else np.repeat(line[None, :, :], h, axis=0)
    return Image.fromarray(a.astype(np.uint8))


def _groups(root: Path, tmp_path: Path, *extra: str) -> list[list[str]]:
    db = str(tmp_path / "store.sqlite")
    code, out = invoke("scan", root, "--db", db, "-q", "--format", "json", *extra)
    assert code == 0, out
    return [sorted(Path(f["path"]).name for f in g["files"]) for g in json.loads(out)["groups"]]


def test_two_different_gradients_are_not_grouped(tmp_path: Path) -> None:
    """A black-to-white vertical gradient and a blue-to-yellow horizontal one are not grouped, with
    --no-rotations --no-two-stage --no-crops neither: the pHash of any smooth gradient is
    0x8000000000000000 (its rounded DCT is zero outside one row or column, so the median is 0 and one bit is
    set), so such pictures count as saying nothing to a perceptual hash. (Their dHashes are 0 and all ones.)"""
    root = tmp_path / "photos"
    save(_gradient((0, 0, 0), (255, 255, 255), True, (640, 480)), root / "grey_vertical.png")
    save(_gradient((0, 0, 120), (255, 230, 0), False, (640, 480)), root / "blue_yellow_horizontal.png")
    assert _groups(root, tmp_path) == []
    assert _groups(root, tmp_path, "--no-rotations", "--no-two-stage", "--no-crops") == []


def test_not_duplicates_are_remembered_by_content_and_survive_renames(tmp_path: Path, store: Store) -> None:
    root = tmp_path / "p"
    a = photo(root / "a.jpg", 21, quality=95)
    photo(root / "b.jpg", 21, quality=60)
    a2 = copy_file(a, root / "c.jpg")
    (g,) = groups_of(store, root)
    hashes = {m.file.path: m.file.content_hash for m in g.members}
    store.add_not_duplicates([(hashes[str(a)], hashes[str(root / "b.jpg")])])
    (g,) = groups_of(store, root)  # a and its exact copy still group; b is apart now
    assert {m.file.path for m in g.members} == {str(a), str(a2)}
    (root / "b.jpg").rename(root / "renamed.jpg")
    a2.unlink()
    assert groups_of(store, root) == []
