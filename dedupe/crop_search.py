"""The search for cropped copies among many pictures: every window of every picture looked up among the whole
pictures (pairs.join), confirmed by the crop rule (match.crop_agrees).

The rule wants the window's mean colour close to the other picture's whole (chromaticities within CROP_CHROMA,
brightness within CROP_LUMA), and most windows that a key of the search meets are of another colour: so the search
is told coarse colour cells as marks (pairs.join's marks), and passes over a key whose pictures lie in no cell
within the bounds of the window's colour without reading them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.match import CROP_CHROMA, CROP_LUMA, CROP_PHASH, crop_agrees, unpack_crops
from dedupe.models import CROP_WINDOWS
from dedupe.pairs import join


def crop_pairs(
    crops: npt.NDArray[np.uint8], rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The pairs (a < b, positions in rows, each once or more) of pictures one of which is a crop of the other by
    the crop rule (match.crop_match): a window of one within CROP_PHASH bits of pHash of the other's whole picture,
    confirmed by match.crop_agrees. Every window of each picture is looked up among the whole pictures in a colour
    cell near its own (see colour_masks); the windows' pHashes and colours are read out of the signatures
    (crops[rows]) a slab at a time, and only the signatures of the pictures found are unpacked whole (unpacking
    every signature took 2 GB at a million pictures)."""
    n, windows = len(rows), len(CROP_WINDOWS) - 1
    wholes = _hashes_at(crops, rows, np.zeros(n, dtype=np.int64))
    colour = 16 * len(CROP_WINDOWS)  # where the colours start in a signature
    marks = colour_marks(crops[rows[:, None], colour + np.arange(3)])
    # A window of every picture after another (window-major: numpy's search took a quarter longer picture by picture).
    queries = np.empty((windows, n), dtype=np.uint64)
    masks = np.empty((windows, n), dtype=_MASKS.dtype)
    for start in range(0, n, _CROP_SLAB):
        at = rows[start : start + _CROP_SLAB]
        part = crops[at, 8 : 8 * (windows + 1)]
        queries[:, start : start + len(part)] = np.ascontiguousarray(part).view(">u8").T
        colours = crops[at, colour + 3 :].reshape(len(part), windows, 3)
        masks[:, start : start + len(part)] = colour_masks(colours).T
    qi, inner = join(queries.reshape(-1), wholes, CROP_PHASH, same=False, marks=(masks.reshape(-1), marks))
    del queries, masks
    window, outer = np.divmod(qi, n)
    window += 1
    apart = outer != inner  # a picture's windows near its own whole
    outer, window, inner = outer[apart], window[apart], inner[apart]
    # Only the pictures met are unpacked for the confirmation (match.crop_agrees), which also weighs the outer
    # picture's whole.
    met, at = np.unique(np.concatenate([outer, inner]), return_inverse=True)
    p, d, c = unpack_crops(crops[rows[met]])
    ok = crop_agrees(p, d, c, at[: len(outer)], window, at[len(outer) :])
    return np.minimum(outer, inner)[ok], np.maximum(outer, inner)[ok]


_CROP_SLAB = 65_536  # signatures whose window hashes are read out at once (127 MB of signatures)


def _hashes_at(
    crops: npt.NDArray[np.uint8], rows: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    """The 64-bit big-endian hash at each offset of each row of the signatures."""
    raw = crops[rows[:, None], offsets[:, None] + np.arange(8)]
    out: npt.NDArray[np.uint64] = np.ascontiguousarray(raw).view(">u8").reshape(-1).astype(np.uint64)
    return out


# Colour cells: the first chromaticity (red) cut at these values and the brightness at these, one bit a cell (the
# cells of the first dimension vary slowest): 8 cells, so that the table every lookup reads stays one byte a key
# (two bytes made each lookup twice as slow). Cut where real photos' colours crowd (around grey: red 85 of 255), for
# the fewest random pairs of a window and another whole picture whose cells are within the bounds: on 80 real photos
# 28% of them (3.9% have colours within the bounds); the second chromaticity is crowded more closely still, and
# cutting it did less.
_CELL_EDGES: tuple[tuple[int, tuple[int, ...], int], ...] = (
    (0, (71, 85, 100), CROP_CHROMA),
    (2, (111,), CROP_LUMA),
)


def _cell_tables(
    cuts: tuple[tuple[int, tuple[int, ...], int], ...],
) -> tuple[npt.NDArray[np.unsignedinteger[Any]], npt.NDArray[np.unsignedinteger[Any]]]:
    """For each dimension of _CELL_EDGES and each value 0-255: the bits of the cells holding the value (marks),
    and the bits of the cells holding any value within the bound of it (masks); a colour's mark or mask is the AND
    of its dimensions'."""
    counts = [len(edges) + 1 for _, edges, _ in cuts]
    stride = int(np.prod(counts))
    kind = np.uint8 if stride <= 8 else np.uint16
    assert stride <= 16
    cells = np.arange(stride)
    marks = np.zeros((len(cuts), 256), dtype=kind)
    masks = np.zeros((len(cuts), 256), dtype=kind)
    values = np.arange(256)
    for d, (_, edges, bound) in enumerate(cuts):
        stride //= counts[d]
        of_cell = (cells // stride) % counts[d]  # each cell's position along this dimension
        bits = (1 << cells).astype(kind)
        at = np.searchsorted(np.array(edges), values, side="right")
        lo = np.searchsorted(np.array(edges), values - bound, side="right")
        hi = np.searchsorted(np.array(edges), values + bound, side="right")
        marks[d] = np.bitwise_or.reduce(np.where(of_cell[None, :] == at[:, None], bits, 0), axis=1)
        inside = (of_cell[None, :] >= lo[:, None]) & (of_cell[None, :] <= hi[:, None])
        masks[d] = np.bitwise_or.reduce(np.where(inside, bits, 0), axis=1)
    return marks, masks


_MARKS, _MASKS = _cell_tables(_CELL_EDGES)


def colour_marks(colours: npt.NDArray[np.uint8]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The bit of each colour's (..., 3) cell."""
    return _of_cells(_MARKS, colours)


def colour_masks(colours: npt.NDArray[np.uint8]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The bits of the cells within the crop rule's colour bounds of each colour (..., 3): a whole picture whose
    colour is within the bounds of a window's is in one of them."""
    return _of_cells(_MASKS, colours)


def _of_cells(
    tables: npt.NDArray[np.unsignedinteger[Any]], colours: npt.NDArray[np.uint8]
) -> npt.NDArray[np.unsignedinteger[Any]]:
    out = np.full(colours.shape[:-1], np.iinfo(tables.dtype).max, dtype=tables.dtype)
    for d, (dim, _, _) in enumerate(_CELL_EDGES):
        out &= tables[d][colours[..., dim]]
    return out
