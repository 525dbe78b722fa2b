"""What counts as a duplicate: MatchRule, the one statement of it, and the rule itself, for two fingerprints (match)
and for columns of a Library (explain): pHash within the threshold, turned and mirrored pHashes, the dHash second
opinion, crops, and shots of one burst kept apart. Also the order of match kinds, from strongest to weakest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.library import Library
from dedupe.models import ALPHA_VARIANTS, CROP_BYTES, CROP_WINDOWS, INVERSE, TRANSFORMS, Fingerprint, MatchKind
from dedupe.models import hamming as hamming  # the one definition, re-exported as part of the rule

DEFAULT_THRESHOLD = 4  # bits of 64 in pHash: the largest with no false pair on the benchmark, see README.md


MAX_THRESHOLD = 32


# Second opinion (measured on the benchmark, see README.md): pHash within 16 bits confirmed by dHash within 2.
CANDIDATE_PHASH = 16


CONFIRM_DHASH = 2


BURST_SECONDS = 2.0  # shots of one camera this close in time are a burst, not copies


# Cropped copies (measured on the benchmark, see docs/matching.md): a picture is a crop of another when it is within
# CROP_PHASH bits of pHash and CROP_DHASH of dHash of one of the other's windows (fingerprint.CROP_WINDOWS), of the
# same mean colour (chromaticities within CROP_CHROMA and brightness within CROP_LUMA, of 255), and that window fits
# it better than the other's whole picture does (see crop_agrees).
CROP_PHASH = 6


CROP_DHASH = 10


CROP_CHROMA = 8


CROP_LUMA = 20


# Above this many pictures the search for crops is skipped unless asked for: grouping 100,000 random fingerprints
# with their 101 windows each took 10.6 s on a loaded machine (5.4 s with 49 windows), and the lookup grows faster
# than linearly (34 windows at 1,000,000: 84 s).
CROP_SEARCH_LIMIT = 200_000


_WINDOWS = len(CROP_WINDOWS)


@dataclass(frozen=True, slots=True)
class MatchRule:
    """When two pictures count as the same (see match): pHash within threshold bits; with rotations, also turned or
    mirrored; with two_stage, also by the dHash second opinion; with crops, also a crop of the other (None: decided
    by the number of pictures, see for_count; match alone takes None as on); with bursts_apart, never two shots of
    one burst."""

    threshold: int = DEFAULT_THRESHOLD
    rotations: bool = True
    two_stage: bool = True
    bursts_apart: bool = True
    crops: bool | None = None  # None: on for up to CROP_SEARCH_LIMIT pictures

    def for_count(self, pictures: int) -> MatchRule:
        """The rule in force among this many pictures: crops decided (see searches_crops), and at threshold 0 only
        identical pictures match, so neither the second opinion nor crops apply."""
        crops = searches_crops(pictures, self.crops) and self.threshold > 0
        return replace(self, two_stage=self.two_stage and self.threshold > 0, crops=crops)


# Match kinds from strongest to weakest: the ranking every part sorts members and hits by.
KINDS = (MatchKind.EXACT, MatchKind.IMAGE, MatchKind.NEAR)
KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class Match:
    distance: int  # pHash bits to the other picture (in the matching frame, or window of a crop)
    transform: str | None  # how the first picture is turned to look like the second
    dhash: int | None  # dHash bits, when the match needed the second opinion
    # CROP: the first picture is a crop of the second; WIDER: the second is a crop of the first (the distances
    # are then to the matching window of the wider one)
    crop: str | None = None


def match(a: Fingerprint, b: Fingerprint, rule: MatchRule) -> Match | None:
    """Whether picture a matches picture b under the rule, and why; None when it does not. Symmetric.

    A picture with transparency matches a picture without by either of its readings (see readings): flattened, or
    its colour channels alone, as a copy that dropped the alpha channel shows it. Two pictures with transparency
    are compared flattened only: two logos cut by their alpha from one colour layer are different pictures."""
    if rule.bursts_apart and same_burst(a, b):
        return None
    ra, rb = readings(a), readings(b)
    if len(ra) == len(rb):
        return _match(ra[0], rb[0], rule)
    for x in ra:
        for y in rb:
            found = _match(x, y, rule)
            if found is not None:
                return found
    return None


def readings(fp: Fingerprint) -> tuple[Fingerprint, ...]:
    """The ways a picture is read: as it is; and for a picture with transparency (models.ALPHA_VARIANTS), first
    flattened, then as its colour channels alone (whose windows are not known: it matches no crop)."""
    v = fp.variants
    if len(v) != ALPHA_VARIANTS:
        return (fp,)
    turns = len(TRANSFORMS)
    return (
        replace(fp, variants=v[:turns]),
        replace(fp, phash=v[turns], dhash=v[turns + 1], variants=v[turns + 2 :], crops=b""),
    )


def _match(a: Fingerprint, b: Fingerprint, rule: MatchRule) -> Match | None:
    """match for one reading of each picture, bursts aside."""
    if rule.rotations:
        distance, transform = match_distance(a, b)
    else:
        distance, transform = hamming(a.phash, b.phash), None
    if distance <= rule.threshold:
        return Match(distance, transform, None)
    if rule.two_stage:
        upright = hamming(a.phash, b.phash)
        confirm = hamming(a.dhash, b.dhash)
        if upright <= max(CANDIDATE_PHASH, rule.threshold) and confirm <= CONFIRM_DHASH:
            return Match(upright, None, confirm)
    if rule.crops is not False and rule.threshold > 0:
        crop = crop_match(a, b)
        if crop is not None:
            return Match(crop[0], None, crop[1], crop[2])
    return None


def match_distance(a: Fingerprint, b: Fingerprint) -> tuple[int, str | None]:
    """How far picture a is from picture b, allowing a to be turned or mirrored when both know their variants.

    Returns the distance and the transform t that turns a into (something like) b, None when upright is best.
    A turned match is measured in both pictures' frames, t(a) against b and t's inverse of b against a, and
    the larger distance counts: pHash distances shift when a picture is turned, and a look-alike that is 6 bits
    away upright can come 4 bits close in one turned frame (measured on the benchmark), never in both.
    Ties go to upright, then to the order of models.TRANSFORMS. Symmetric: b to a is as far, by t's inverse.
    """
    ap, bp, av, bv = a.phash, b.phash, a.variants, b.variants
    best, how = (ap ^ bp).bit_count(), None
    if len(av) != len(TRANSFORMS) or len(bv) != len(TRANSFORMS):
        return best, how
    for k, name in enumerate(TRANSFORMS):
        d = max((av[k] ^ bp).bit_count(), (bv[_INVERSE_AT[k]] ^ ap).bit_count())
        if d < best:
            best, how = d, name
    return best, how


_INVERSE_AT = tuple(TRANSFORMS.index(INVERSE.get(name, name)) for name in TRANSFORMS)  # k -> index of its inverse


def searches_crops(pictures: int, crops: bool | None) -> bool:
    """Whether cropped copies are looked for among this many pictures: as asked, or by default (None) only up to
    CROP_SEARCH_LIMIT, beyond which the search takes minutes."""
    return crops if crops is not None else pictures <= CROP_SEARCH_LIMIT


_NO_CROP = 65 * 65


CROP = "crop"  # of two pictures, the first is a crop of the second


WIDER = "wider"  # the first shows more: the second is a crop of it


CROPS = (CROP, WIDER)  # Grouping.crop


def crop_match(a: Fingerprint, b: Fingerprint) -> tuple[int, int, str] | None:
    """Whether one picture is a crop of the other: its whole picture within CROP_PHASH bits of pHash and
    CROP_DHASH of dHash of a window of the other, with the same mean colour (see CROP_CHROMA and CROP_LUMA), the
    window fitting it better than the other's whole picture does (crop_agrees). Returns the (pHash, dHash)
    distances of the best such window and which way it goes: WIDER when b is a crop of a, CROP when a is a crop
    of b (a tie goes to WIDER); None when neither is a crop of the other."""
    wider, narrower, _ = _crop_fits(a, b)
    best = min(wider, narrower)
    if best == _NO_CROP:
        return None
    return (*divmod(best, 65), WIDER if wider <= narrower else CROP)


def shows_more(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether b looks like a crop of a: a window of a fits the whole of b strictly better (pHash bits, then dHash
    bits) than any window of b fits the whole of a. A crop of 3-10% often matches its original as a plain near
    copy too; this tells it from a resized copy, whose windows fit both ways alike. Measured on the benchmark's
    40 originals: 32, 37 and 33 of 40 crops of 3%, 5% and 8% told, the other crops fitting no window at all; 6 of
    40 copies resized to 60% taken for wider, which only keeps a file that could have gone (comparing pHash bits
    alone took 2 resized copies for wider, but let one more original go in favour of its crop).

    A resized or re-encoded copy shows the same area as its original: the two whole pictures fit each other at least
    as well as any window does, and neither is called wider. The crop rule counts only windows that fit b strictly
    better than the whole of a does (crop_agrees); cuts of 1-3% fit no window better than the whole, and are told
    from a resize by nothing."""
    wider, narrower, _ = _crop_fits(a, b)
    return wider < narrower


def _crop_fits(a: Fingerprint, b: Fingerprint) -> tuple[int, int, int]:
    """How well b fits a window of a, and a a window of b: the best pHash * 65 + dHash of a window that passes the
    crop rule (crop_agrees), _NO_CROP where none does; and how well the two whole pictures fit each other."""
    if len(a.crops) != CROP_BYTES or len(b.crops) != CROP_BYTES:
        return _NO_CROP, _NO_CROP, _NO_CROP
    p, d, c = unpack_crops(np.frombuffer(a.crops + b.crops, dtype=np.uint8).reshape(2, CROP_BYTES))
    whole = int(np.bitwise_count(p[0, 0] ^ p[1, 0])) * 65 + int(np.bitwise_count(d[0, 0] ^ d[1, 0]))
    windows = np.arange(1, _WINDOWS)
    bests = []
    for outer, inner in ((0, 1), (1, 0)):
        dp = np.bitwise_count(p[outer, 1:] ^ p[inner, 0]).astype(np.int64)
        dd = np.bitwise_count(d[outer, 1:] ^ d[inner, 0]).astype(np.int64)
        ok = crop_agrees(p, d, c, outer, windows, inner)
        bests.append(int((dp * 65 + dd)[ok].min()) if ok.any() else _NO_CROP)
    return bests[0], bests[1], whole


def crop_agrees(
    p: npt.NDArray[np.uint64],
    d: npt.NDArray[np.uint64],
    c: npt.NDArray[np.uint8],
    outer: npt.NDArray[np.signedinteger[Any]] | int,
    window: npt.NDArray[np.signedinteger[Any]] | int,
    inner: npt.NDArray[np.signedinteger[Any]] | int,
) -> npt.NDArray[np.bool_]:
    """Whether window `window` (1 or more) of picture `outer` confirms picture `inner` as a crop of it: rows of
    unpack_crops's arrays p, d and c, the three indices broadcast together. The window's pHash is within CROP_PHASH
    of the inner picture's whole, its dHash within CROP_DHASH, its chromaticities within CROP_CHROMA and its
    brightness within CROP_LUMA; and it fits the inner picture strictly better (pHash bits, then dHash bits) than
    the outer picture's whole does.

    The last condition is what makes it a crop: a crop shows less than its original, so a window fits it better
    than the whole (on the benchmark, all but one of the 511 cuts of 5-25% that only the crop rule finds). A
    look-alike of the same design (a series in other colours) shows the same area, and its whole often fits at
    least as well as any window: the +20% white copies of Ubuntu MATE Cold and Radioactive, whose colours the
    white brings within the bounds, matched as a crop without this condition (docs/matching.md)."""
    dp = np.bitwise_count(p[outer, window] ^ p[inner, 0]).astype(np.int64)
    dd = np.bitwise_count(d[outer, window] ^ d[inner, 0]).astype(np.int64)
    whole = np.bitwise_count(p[outer, 0] ^ p[inner, 0]).astype(np.int64) * 65
    whole += np.bitwise_count(d[outer, 0] ^ d[inner, 0])
    diff = np.abs(c[outer, window].astype(np.int16) - c[inner, 0].astype(np.int16))
    ok: npt.NDArray[np.bool_] = (dp <= CROP_PHASH) & (dd <= CROP_DHASH) & (dp * 65 + dd < whole)
    ok &= (diff[..., :2].max(axis=-1) <= CROP_CHROMA) & (diff[..., 2] <= CROP_LUMA)
    return ok


def unpack_crops(
    raw: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.uint8]]:
    """Crop signatures (fingerprint.crop_signature, one CROP_BYTES row each) as arrays: the pHashes and dHashes of
    every window, (signatures, windows), and their colours, (signatures, windows, 3)."""
    hashes = 16 * _WINDOWS
    phashes = raw[:, : 8 * _WINDOWS].copy().view(">u8").astype(np.uint64)
    dhashes = raw[:, 8 * _WINDOWS : hashes].copy().view(">u8").astype(np.uint64)
    return phashes, dhashes, raw[:, hashes:].reshape(len(raw), _WINDOWS, 3).copy()


def same_burst(a: Fingerprint, b: Fingerprint) -> bool:
    """Two different shots of one burst: one camera, taken a moment apart (EXIF time with sub-seconds)."""
    if not (a.camera and a.camera == b.camera and a.taken and b.taken) or a.taken == b.taken:
        return False
    try:
        dt = abs((datetime.fromisoformat(a.taken) - datetime.fromisoformat(b.taken)).total_seconds())
    except ValueError:
        return False
    return 0 < dt <= BURST_SECONDS


@dataclass(frozen=True, slots=True)
class Explained:
    """match on arrays, for pairs of rows: whether each pair matches, and why."""

    ok: npt.NDArray[np.bool_]
    distance: npt.NDArray[np.int64]
    transform: npt.NDArray[np.int64]  # by TRANSFORMS, -1 for upright
    dhash: npt.NDArray[np.int64]  # -1 when not needed
    crop: npt.NDArray[np.int64]  # 0 CROP, 1 WIDER, -1 when not a crop


def explain(
    lib: Library,
    a: npt.NDArray[np.int64],
    b: npt.NDArray[np.int64],
    rule: MatchRule,
    *,
    crops: bool = True,
    bursts: bool = True,
) -> Explained:
    """match(a, b) for rows a and b, on arrays (odd rows aside: see Library.odd); without crops or bursts, that
    part of the rule is left out."""
    pa, pb = lib.phash[a], lib.phash[b]
    upright = np.bitwise_count(pa ^ pb).astype(np.int64)
    best, how = upright, np.full(len(a), -1, dtype=np.int64)
    if rule.rotations:
        both = np.flatnonzero(lib.turned[a] & lib.turned[b])
        if len(both):
            va, vb = lib.variants[a[both]], lib.variants[b[both]]
            pa2, pb2 = pa[both], pb[both]
            sub, subhow = upright[both], how[both]
            for k, back in enumerate(_INVERSE_AT):
                turned = np.maximum(np.bitwise_count(va[:, k] ^ pb2), np.bitwise_count(vb[:, back] ^ pa2))
                better = turned < sub
                sub = np.where(better, turned, sub)
                subhow = np.where(better, k, subhow)
            best = best.copy()
            best[both], how[both] = sub, subhow
    near = best <= rule.threshold
    confirm = np.bitwise_count(lib.dhash[a] ^ lib.dhash[b]).astype(np.int64)
    second = ~near & (upright <= max(CANDIDATE_PHASH, rule.threshold)) & (confirm <= CONFIRM_DHASH)
    if not rule.two_stage:
        second[:] = False
    ok = near | second
    distance = np.where(near, best, upright)
    dhash = np.where(second, confirm, -1)
    crop = np.full(len(a), -1, dtype=np.int64)
    if crops and rule.crops and lib.crops.shape[1]:
        pick = np.flatnonzero(~ok & lib.has_crops[a] & lib.has_crops[b])
        if len(pick):
            crop_d, crop_h, a_wider = _crop_distances(lib.crops[a[pick]], lib.crops[b[pick]])
            found = crop_d >= 0
            at = pick[found]
            ok[at] = True
            distance[at], dhash[at] = crop_d[found], crop_h[found]
            crop[at] = np.where(a_wider[found], 1, 0)
    if bursts and rule.bursts_apart:
        ok &= ~same_bursts(lib, a, b)
    return Explained(ok, distance, np.where(near, how, -1), dhash, crop)


def _crop_distances(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """crop_match on arrays of crop signatures: (pHash, dHash) distances, -1 where there is no crop match, and
    whether a is the wider picture (b a crop of it)."""
    n = len(a)
    p, d, c = unpack_crops(np.concatenate([a, b]))
    rows = np.arange(n)[:, None]
    windows = np.arange(1, _WINDOWS)[None, :]
    bests = []
    for outer, inner in ((rows, rows + n), (rows + n, rows)):
        dp = np.bitwise_count(p[outer, windows] ^ p[inner, 0]).astype(np.int64)
        dd = np.bitwise_count(d[outer, windows] ^ d[inner, 0]).astype(np.int64)
        ok = crop_agrees(p, d, c, outer, windows, inner)
        bests.append(np.where(ok, dp * 65 + dd, _NO_CROP).min(axis=1, initial=_NO_CROP))
    a_wider = bests[0] <= bests[1]  # as crop_match: a tie goes to a being the wider
    best = np.minimum(bests[0], bests[1])
    found = best < _NO_CROP
    dist, dh = np.divmod(best, 65)
    return np.where(found, dist, -1), np.where(found, dh, -1), a_wider & found


def same_bursts(lib: Library, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """same_burst for pairs of rows."""
    ca, ta, tb = lib.camera[a], lib.taken[a], lib.taken[b]
    maybe = np.flatnonzero((ca != b"") & (ca == lib.camera[b]) & (ta != b"") & (tb != b"") & (ta != tb))
    out = np.zeros(len(a), dtype=bool)
    if len(maybe):
        times = Times()
        out[maybe] = [times.apart(x, y) for x, y in zip(ta[maybe].tolist(), tb[maybe].tolist(), strict=True)]
    return out


class Times:
    """EXIF times (UTF-8) read once each, for telling shots of one burst apart as same_burst does."""

    def __init__(self) -> None:
        self._read: dict[bytes, datetime | None] = {}

    def apart(self, x: bytes, y: bytes) -> bool:
        """Whether two different times are 0 < dt <= BURST_SECONDS apart."""
        a, b = self._get(x), self._get(y)
        if a is None or b is None:
            return False
        return 0 < abs((a - b).total_seconds()) <= BURST_SECONDS

    def _get(self, raw: bytes) -> datetime | None:
        if raw not in self._read:
            try:
                self._read[raw] = datetime.fromisoformat(raw.decode("utf-8", "surrogatepass"))
            except ValueError:
                self._read[raw] = None
        return self._read[raw]
