"""Cropped copies: real pictures drawn with Pillow, cropped, saved and scanned into a real store."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dedupe import fingerprint, windows
from dedupe.cli import cli
from dedupe.crop_search import colour_marks, colour_masks, crop_pairs
from dedupe.group import find_groups, stored_groups
from dedupe.match import (
    CROP,
    CROP_CHROMA,
    CROP_LUMA,
    CROP_PHASH,
    CROP_SEARCH_LIMIT,
    WIDER,
    MatchRule,
    crop_agrees,
    crop_match,
    match,
    searches_crops,
    shows_more,
    unpack_crops,
)
from dedupe.models import CROP_BYTES, CROP_WINDOWS, FileRecord, Fingerprint, MatchKind, ScanOptions
from dedupe.plan import keepers_first, plan
from dedupe.scan import scan
from dedupe.store import Store
from tests.conftest import draw_photo, save

SIZE = (1200, 900)
# 10% off the left, 6% off the top, 5% off the right, 9% off the bottom: 15% of each side in all, unevenly.
CROP15 = (0.10, 0.06, 0.95, 0.91)
Cells = tuple[int, int, int]  # across, down, channels


def crop(im: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = im.size
    return im.crop((round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)))


def fp(im: Image.Image) -> Fingerprint:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))


def test_crop_signature_has_every_window() -> None:
    work = fingerprint.working_image(draw_photo(1, SIZE))
    sig = fingerprint.crop_signature(work)
    assert len(sig) == fingerprint.CROP_BYTES == 19 * len(fingerprint.CROP_WINDOWS)
    assert fingerprint.crop_signature(work) == sig  # deterministic
    assert fp(draw_photo(1, SIZE)).crops != b""
    blank = fp(Image.new("RGB", SIZE, (40, 40, 40)))
    assert blank.low_info and blank.crops == b""  # blanks are only grouped by their pixels


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.integers(0, 2**32 - 1),
    st.integers(1, 5),
    st.integers(1, 5),
)
def test_window_cells_are_exact_area_means(width: int, height: int, seed: int, across: int, down: int) -> None:
    values = np.random.default_rng(seed).uniform(0, 255, (height, width, 2))
    means = windows.cell_means(values, across, down)
    assert means.shape == (len(fingerprint.CROP_WINDOWS), down, across, 2)

    def cover(lo: float, hi: float, n: int) -> npt.NDArray[np.float64]:  # how much of each pixel lies in [lo, hi]
        covered: npt.NDArray[np.float64] = np.clip(
            np.minimum(np.arange(n) + 1, hi) - np.maximum(np.arange(n), lo), 0, None
        )
        return covered

    for k in random.Random(seed).sample(range(len(fingerprint.CROP_WINDOWS)), 4):
        x0, y0, dx, dy = fingerprint.CROP_WINDOWS[k]
        for r in range(down):
            for c in range(across):
                xs = ((x0 + dx * c / across) * width, (x0 + dx * (c + 1) / across) * width)
                ys = ((y0 + dy * r / down) * height, (y0 + dy * (r + 1) / down) * height)
                weight = np.outer(cover(*ys, height), cover(*xs, width))
                direct = (values * weight[..., None]).sum(axis=(0, 1)) / weight.sum()
                assert np.allclose(means[k, r, c], direct), (k, r, c)


def _cell_means_by_two_indexes(values: npt.NDArray[np.float64], across: int, down: int) -> npt.NDArray[np.float64]:
    """cell_means as fingerprint version 10 first computed it: every stored crop signature came from these
    roundings."""
    x_ranges, x_of = np.unique(np.array(fingerprint.CROP_WINDOWS)[:, 0::2], axis=0, return_inverse=True)
    y_ranges, y_of = np.unique(np.array(fingerprint.CROP_WINDOWS)[:, 1::2], axis=0, return_inverse=True)
    x_of, y_of = x_of.reshape(-1), y_of.reshape(-1)
    h, w, channels = values.shape
    xs = np.clip((x_ranges[:, :1] + x_ranges[:, 1:] * np.arange(across + 1) / across) * w, 0, w)
    ys = np.clip((y_ranges[:, :1] + y_ranges[:, 1:] * np.arange(down + 1) / down) * h, 0, h)
    run = np.concatenate([np.zeros((h, 1, channels)), np.cumsum(values, axis=1)], axis=1)
    i = np.minimum(xs.astype(np.intp), w - 1)
    at = run[:, i] + (xs - i)[None, :, :, None] * values[:, i]
    rows = np.diff(at, axis=2)
    run_y = np.concatenate([np.zeros((1, *rows.shape[1:])), np.cumsum(rows, axis=0)], axis=0)
    j = np.minimum(ys.astype(np.intp), h - 1)
    jj, frac, k = j[y_of], (ys - j)[y_of], x_of[:, None]
    at_y = run_y[jj, k] + frac[:, :, None, None] * rows[jj, k]
    sums = np.diff(at_y, axis=1)
    area = np.diff(ys, axis=1)[y_of][:, :, None] * np.diff(xs, axis=1)[x_of][:, None, :]
    means: npt.NDArray[np.float64] = sums / np.maximum(area, 1e-12)[..., None]
    return means


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 140),
    st.integers(1, 140),
    st.integers(0, 2**32 - 1),
    st.sampled_from([(32, 32, 1), (9, 8, 1), (1, 1, 3), (3, 2, 2)]),
)
def test_window_cells_round_as_stored_signatures_did(width: int, height: int, seed: int, cells: Cells) -> None:
    """The window cells are, bit for bit, what the stored crop signatures were made from: a faster
    cell_means must not move a hash."""
    across, down, channels = cells
    rng = np.random.default_rng(seed)
    values = np.rint(rng.uniform(0, 255, (height, width, channels))) * (0.299 if channels == 1 else 1.0)
    for _ in range(2):  # the second call of a size reuses its cell edges
        means = windows.cell_means(values, across, down)
        assert np.array_equal(means, _cell_means_by_two_indexes(values, across, down))


def test_a_cropped_copy_matches_its_original_and_not_another_photo() -> None:
    for seed in (1, 3):
        im = draw_photo(seed, SIZE)
        original, cropped = fp(im), fp(crop(im, CROP15))
        assert fingerprint.hamming(original.phash, cropped.phash) > 8  # too far for the whole-picture hashes
        m = match(original, cropped, MatchRule())
        assert m is not None and m.crop == WIDER and m.distance <= 6  # the original shows more
        back = match(cropped, original, MatchRule())
        assert back is not None and back.crop == CROP and back.distance == m.distance
        there, back_again = crop_match(original, cropped), crop_match(cropped, original)
        assert there is not None and back_again is not None and there[:2] == back_again[:2]  # symmetric
        assert match(original, cropped, MatchRule(crops=False)) is None
        assert crop_match(original, fp(draw_photo(seed + 100, SIZE))) is None


def test_a_copy_cut_to_another_shape_or_from_a_corner_matches() -> None:
    for seed in (2, 5):
        im = draw_photo(seed, SIZE)
        original = fp(im)
        for box in ((0, 0.125, 1, 0.875), (0.125, 0, 0.875, 1), (0.2, 0, 1, 0.8)):  # 16:9, square, a corner
            found = crop_match(original, fp(crop(im, box)))
            assert found is not None and found[0] <= 6, (seed, box)


def test_the_same_drawing_in_other_colours_is_no_crop_of_it() -> None:
    im = draw_photo(1, SIZE)
    r, g, b = im.split()
    recoloured = Image.merge("RGB", (b, r, g))
    assert crop_match(fp(im), fp(crop(recoloured, CROP15))) is None
    darker = im.point(lambda v: v // 2)
    assert crop_match(fp(im), fp(crop(darker, CROP15))) is None


def test_scan_groups_a_cropped_copy_and_says_why(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    im = draw_photo(3, SIZE)
    save(im, root / "original.jpg", quality=92)
    save(crop(im, CROP15).resize((850, 638)), root / "shared" / "cropped.png")  # cropped, rescaled, converted
    save(draw_photo(4, SIZE), root / "other.jpg", quality=92)
    db = tmp_path / "store.sqlite"
    with Store.open(db) as store:
        scan([str(root)], store, ScanOptions(workers=1))
        groups, _, _ = stored_groups(store, [str(root)])
        assert len(groups) == 1
        (group,) = groups
        paths = sorted(Path(m.file.path).name for m in group.members)
        assert paths == ["cropped.png", "original.jpg"]
        member = group.members[1]
        assert member.match is MatchKind.NEAR and member.crop == CROP and member.why.endswith("a crop of the reference")
        assert stored_groups(store, [str(root)], MatchRule(crops=False))[0] == []

    out = CliRunner().invoke(cli, ["groups", str(root), "--db", str(db), "--format", "json"])
    assert out.exit_code == 0, out.output
    (g,) = json.loads(out.output)["groups"]
    assert [m["cropped"] for m in g["files"]] == [False, True]
    off = CliRunner().invoke(cli, ["groups", str(root), "--db", str(db), "--format", "json", "--no-crops"])
    assert off.exit_code == 0 and json.loads(off.output)["groups"] == []


def _record(path: str, f: Fingerprint, ino: int) -> FileRecord:
    return FileRecord(path, 1000 + ino, 0, 1, ino, f)


_PICTURES = [fp(draw_photo(1, (600, 450))), fp(crop(draw_photo(1, (600, 450)), CROP15)), fp(draw_photo(2, (600, 450)))]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(range(3)), min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_crop_groups_do_not_depend_on_input_order(picks: list[int], rnd: random.Random) -> None:
    records = [_record(f"/p/{n:02}.jpg", _PICTURES[k], n + 1) for n, k in enumerate(picks)]
    shuffled = records[:]
    rnd.shuffle(shuffled)
    groups = find_groups(records)
    assert groups == find_groups(shuffled)
    seen = [m.file.path for g in groups for m in g.members]
    assert len(seen) == len(set(seen))  # no path in two groups
    if 0 in picks and 1 in picks:  # the original and its crop always end up together
        together = [g for g in groups if {m.file.fingerprint for m in g.members} >= {_PICTURES[0], _PICTURES[1]}]
        assert len(together) == 1


def test_the_crop_search_is_skipped_by_default_only_for_very_large_sets() -> None:
    assert searches_crops(CROP_SEARCH_LIMIT, None) and not searches_crops(CROP_SEARCH_LIMIT + 1, None)
    assert searches_crops(CROP_SEARCH_LIMIT + 1, True) and not searches_crops(10, False)


def _planned(tmp_path: Path, pictures: dict[str, Image.Image]) -> tuple[str, set[str], dict[str, str]]:
    """Scan the pictures, plan the default review of every group with near copies included: (keeper, the
    files planned for removal, the reasons of those left), by file name."""
    root = tmp_path / "photos"
    for name, im in pictures.items():
        save(im, root / name, quality=92)
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([str(root)], store, ScanOptions(workers=1))
        groups, _, _ = stored_groups(store, [str(root)])
    assert len(groups) == 1, groups
    (g,) = plan(groups, include_near=True).groups
    return (
        Path(g.choice.keeper.path).name,
        {Path(s.file.path).name for s in g.steps},
        {Path(s.path).name: s.reason for s in g.left},
    )


def test_the_whole_picture_is_never_removed_in_favour_of_a_crop_of_it(tmp_path: Path) -> None:
    im = draw_photo(3, (2000, 1500))
    pictures = {"full.jpg": im.resize((800, 600)), "crop.jpg": crop(im, CROP15).resize((1700, 1275))}
    keeper, removed, left = _planned(tmp_path, pictures)
    assert keeper == "crop.jpg"  # the most pixels
    assert removed == set() and "shows more than its keeper" in left["full.jpg"]


def test_a_crop_goes_in_favour_of_the_whole_picture(tmp_path: Path) -> None:
    im = draw_photo(3, SIZE)
    keeper, removed, _ = _planned(tmp_path, {"full.jpg": im, "crop.jpg": crop(im, CROP15).resize((850, 638))})
    assert keeper == "full.jpg" and removed == {"crop.jpg"}


def test_two_crops_of_other_parts_never_replace_each_other(tmp_path: Path) -> None:
    im = draw_photo(2, (2000, 1500))
    pictures = {
        "full.jpg": im.resize((1000, 750)),
        "left.jpg": crop(im, (0.0, 0.0, 0.8, 0.8)),  # 1600x1200: more pixels than the whole
        "right.jpg": crop(im, (0.2, 0.2, 1.0, 1.0)),
    }
    keeper, removed, left = _planned(tmp_path, pictures)
    assert keeper in ("left.jpg", "right.jpg")
    other = ({"left.jpg", "right.jpg"} - {keeper}).pop()
    assert removed == set()
    assert "shows more" in left["full.jpg"] and "neither a crop nor a copy" in left[other]


def test_a_group_shown_from_its_keeper_plans_the_same(tmp_path: Path) -> None:
    """The interactive and web review plan groups listed from their keeper (keepers_first); the crop links of the
    grouping go with them, so two crops of one picture still never replace each other."""
    im = draw_photo(2, (2000, 1500))
    root = tmp_path / "photos"
    save(im.resize((1000, 750)), root / "full.jpg", quality=92)
    save(crop(im, (0.0, 0.0, 0.8, 0.8)), root / "left.jpg", quality=92)
    save(crop(im, (0.2, 0.2, 1.0, 1.0)), root / "right.jpg", quality=92)
    with Store.open(tmp_path / "store.sqlite") as store:
        scan([str(root)], store, ScanOptions(workers=1))
        groups, _, _ = stored_groups(store, [str(root)])
    shown = keepers_first(groups)
    assert shown[0].reference.file.path != groups[0].reference.file.path  # a crop (most pixels) is the keeper
    as_found, as_shown = plan(groups, include_near=True), plan(shown, include_near=True)
    assert as_shown.steps == as_found.steps == ()
    assert [s.reason for s in as_shown.groups[0].left] == [s.reason for s in as_found.groups[0].left]


def test_an_original_stays_when_a_small_crop_of_it_matched_as_a_plain_copy(tmp_path: Path) -> None:
    """A window of the original fits a 5% crop better than the two whole pictures fit each other, so the original
    shows more and stays. (Cuts of 1-3% fit no window better than the whole: they are told from a resize by
    nothing, and a resize is never taken for a crop.)"""
    im = draw_photo(1000, (1000, 750))
    small_crop = crop(im, (0.0, 0.0, 0.95, 0.95)).resize((1300, 975))  # 5% cut off, upscaled
    keeper, removed, left = _planned(tmp_path, {"a_orig.jpg": im, "b_crop.jpg": small_crop})
    assert keeper == "b_crop.jpg" and removed == set()
    assert "shows more than its keeper" in left["a_orig.jpg"]


def test_a_resized_copy_is_never_taken_for_a_wider_picture() -> None:
    """A plain resize shows the same area as its original: neither is wider than the other."""
    wider = [
        seed
        for seed in range(3000, 3020)
        if shows_more(fp(im := draw_photo(seed, (1000, 750))), fp(im.resize((600, 450))))
        or shows_more(fp(im.resize((600, 450))), fp(im))
    ]
    assert wider == []


# Cuts split unevenly between opposite borders: 5% of each side all off one border, 12% and 22-23% split unevenly.
UNEVEN_CUTS = [(0.05, 0.0, 1.0, 0.95), (0.12, 0.02, 1.0, 0.90), (0.20, 0.03, 0.98, 0.81)]


def test_cuts_split_unevenly_between_borders_are_found() -> None:
    """A copy cut by 5%, 12% or 22-23% of each side, split unevenly between the opposite borders (all off one, or
    most of it) and saved again as JPEG, matches its original: a window fits it on both axes."""
    for seed in (2, 3, 4):
        im = draw_photo(seed, SIZE)
        original = fp(im)
        for box in UNEVEN_CUTS:
            assert match(fp(crop(im, box)), original, MatchRule()) is not None, (seed, box)


# Colours at the crop rule's bounds and around the colour cells' cuts (crop_search._CELL_EDGES), and anywhere.
_EDGE_VALUES = [
    0,
    1,
    62,
    63,
    70,
    71,
    72,
    77,
    78,
    79,
    84,
    85,
    86,
    91,
    92,
    93,
    99,
    100,
    101,
    108,
    110,
    111,
    131,
    254,
    255,
]
_COLOUR = st.one_of(st.sampled_from(_EDGE_VALUES), st.integers(0, 255))
_CHROMA_STEP = st.sampled_from([0, -7, 7, -8, 8, -9, 9, -16, 16])  # within CROP_CHROMA (8), at it, just past it
_LUMA_STEP = st.sampled_from([0, -19, 19, -20, 20, -21, 21, -40, 40])  # the same for CROP_LUMA (20)


@st.composite
def crop_signatures(draw: st.DrawFn) -> npt.NDArray[np.uint8]:
    """Crop signatures of a few pictures, random but for windows made close to another picture's whole: pHash and
    dHash a few bits off (at the bounds of the crop rule and past them), colour the other's whole moved by steps at
    the colour bounds, just within and just past them; whole colours often at the colour cells' cuts."""
    n = draw(st.integers(2, 14))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    w = len(CROP_WINDOWS)
    raw = rng.integers(0, 256, size=(n, CROP_BYTES), dtype=np.uint8)
    ph = raw[:, : 8 * w].copy().view(">u8").astype(np.uint64)
    dh = raw[:, 8 * w : 16 * w].copy().view(">u8").astype(np.uint64)
    colour = raw[:, 16 * w :].reshape(n, w, 3)
    colour[:, 0] = np.array(draw(st.lists(st.tuples(_COLOUR, _COLOUR, _COLOUR), min_size=n, max_size=n)))
    for _ in range(draw(st.integers(0, 3 * n))):
        outer, inner, window = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)), draw(st.integers(1, w - 1))
        bits = draw(st.lists(st.integers(0, 63), max_size=CROP_PHASH + 2))
        ph[outer, window] = ph[inner, 0] ^ np.uint64(sum(1 << b for b in set(bits)))
        dh[outer, window] = dh[inner, 0] ^ np.uint64(
            sum(1 << b for b in draw(st.sets(st.integers(0, 63), max_size=12)))
        )
        steps = np.array([draw(_CHROMA_STEP), draw(_CHROMA_STEP), draw(_LUMA_STEP)])
        colour[outer, window] = np.clip(colour[inner, 0].astype(np.int64) + steps, 0, 255)
    raw[:, : 8 * w] = ph.astype(">u8").view(np.uint8).reshape(n, -1)
    raw[:, 8 * w : 16 * w] = dh.astype(">u8").view(np.uint8).reshape(n, -1)
    raw[:, 16 * w :] = colour.reshape(n, -1)
    return raw


@settings(max_examples=200, deadline=None)
@given(crop_signatures())
def test_the_crop_search_finds_every_pair_the_crop_rule_confirms(crops: npt.NDArray[np.uint8]) -> None:
    """crop_pairs gives the pairs of a plain check of every window of every picture against every other whole
    picture by the crop rule (match.crop_agrees), colours exactly at the bounds and at the colour cells' cuts
    included: passing keys over by their colour cells loses no pair."""
    n, w = len(crops), len(CROP_WINDOWS)
    p, d, c = unpack_crops(crops)
    outer, window, inner = np.meshgrid(np.arange(n), np.arange(1, w), np.arange(n), indexing="ij")
    ok = crop_agrees(p, d, c, outer, window, inner) & (outer != inner)
    plain = {(min(a, b), max(a, b)) for a, b in zip(outer[ok].tolist(), inner[ok].tolist(), strict=True)}
    x, y = crop_pairs(crops, np.arange(n, dtype=np.int64))
    assert set(zip(x.tolist(), y.tolist(), strict=True)) == plain


def test_colour_cells_hold_every_colour_within_the_crop_rule_bounds() -> None:
    """A whole picture's colour cell is among the cells a window's colour allows whenever the two colours are
    within CROP_CHROMA and CROP_LUMA of each other, and some cells are left out when they are far apart."""
    values = np.arange(256)
    for dim, bound in ((0, CROP_CHROMA), (1, CROP_CHROMA), (2, CROP_LUMA)):
        window = np.full((256, 256, 3), 85, dtype=np.uint8)
        whole = window.copy()
        window[..., dim], whole[..., dim] = values[:, None], values[None, :]
        near = np.abs(values[:, None] - values[None, :]) <= bound
        meets = (colour_masks(window) & colour_marks(whole)) != 0
        assert bool(meets[near].all())
        if dim != 1:  # (the second chromaticity is not cut)
            assert not bool(meets.all())
    assert bool((np.bitwise_count(colour_marks(np.zeros((1, 3), dtype=np.uint8))) == 1).all())
