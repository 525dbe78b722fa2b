"""The cells of the crop windows: the mean of a picture's values over equal cells of every window in
models.CROP_WINDOWS, from running sums (no resize per window). numpy only; fingerprint.crop_signature makes each
window's pHash, dHash and colour from them.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from dedupe.models import CROP_WINDOWS

# The windows' distinct column ranges and row ranges, as (start, length) fractions, and which each window has.
_X_RANGES, _X_OF = np.unique(np.array(CROP_WINDOWS)[:, 0::2], axis=0, return_inverse=True)
_Y_RANGES, _Y_OF = np.unique(np.array(CROP_WINDOWS)[:, 1::2], axis=0, return_inverse=True)
_X_OF, _Y_OF = _X_OF.reshape(-1), _Y_OF.reshape(-1)


def cell_means(values: npt.NDArray[np.float64], across: int, down: int) -> npt.NDArray[np.float64]:
    """The mean of values (height, width, channels) over each of across x down equal cells of every window in
    CROP_WINDOWS, partial pixels weighed by the part inside: (windows, down, across, channels).

    A running sum is linear inside a pixel, so the sum up to a fractional position is exact. Rows are summed
    once per distinct column range (windows share them), then each window sums its own rows. The stored crop
    hashes depend on every rounding here: the operations on the pixels and their order must stay as they are
    (tests/test_fingerprint.py holds known signatures); only how values are gathered may change. Rows of cells
    are gathered with take on a flat (row, column range) axis: indexing with two arrays took three times as long.
    """
    h, w, channels = values.shape
    columns, x_frac, window_rows, y_frac, area = _cell_edges(h, w, across, down)
    ranges = len(_X_RANGES)
    run = np.empty((h, w + 1, channels))
    run[:, 0] = 0
    np.cumsum(values, axis=1, out=run[:, 1:])
    shape = (h, ranges, across + 1, channels)
    at = run.take(columns, axis=1).reshape(shape) + x_frac * values.take(columns, axis=1).reshape(shape)
    rows = at[:, :, 1:] - at[:, :, :-1]  # each pixel row's sum over each cell's columns
    run_y = np.empty((h + 1, ranges, across, channels))
    run_y[0] = 0
    _cumsum_down(rows, run_y[1:])
    below = run_y.reshape(-1, across, channels).take(window_rows, axis=0)
    inside = rows.reshape(-1, across, channels).take(window_rows, axis=0)
    at_y = below + y_frac * inside  # (windows, down + 1, across, channels)
    means: npt.NDArray[np.float64] = (at_y[:, 1:] - at_y[:, :-1]) / area
    return means


def _cumsum_down(values: npt.NDArray[np.float64], out: npt.NDArray[np.float64]) -> None:
    """np.cumsum(values, axis=0, out=out), the same sums in the same order. numpy accumulates down a column at a
    time, so a wide row (the 32 x 32 cells of 23 column ranges) is added a whole row at a time instead: four times
    faster there. Narrow rows stay with cumsum, whose fixed cost per row is lower."""
    if values[0].size < 256:
        np.cumsum(values, axis=0, out=out)
        return
    out[0] = values[0]
    for i in range(1, len(values)):
        np.add(out[i - 1], values[i], out=out[i])


_Ints = npt.NDArray[np.intp]
_Floats = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=64)
def _cell_edges(h: int, w: int, across: int, down: int) -> tuple[_Ints, _Floats, _Ints, _Floats, _Floats]:
    """Where cell_means' cells lie in a picture of h x w pixels: the pixel column at each cell edge of each
    distinct column range (flattened) and the fraction past it, the flat (row, column range) index at each cell
    edge of each window and the fraction past that row, and each cell's area (never zero). Most pictures of a
    scan share a few sizes, so these are made once per size (read-only: every call of that size shares them)."""
    xs = np.clip((_X_RANGES[:, :1] + _X_RANGES[:, 1:] * np.arange(across + 1) / across) * w, 0, w)
    ys = np.clip((_Y_RANGES[:, :1] + _Y_RANGES[:, 1:] * np.arange(down + 1) / down) * h, 0, h)
    i = np.minimum(xs.astype(np.intp), w - 1)
    j = np.minimum(ys.astype(np.intp), h - 1)
    area = np.diff(ys, axis=1)[_Y_OF][:, :, None] * np.diff(xs, axis=1)[_X_OF][:, None, :]
    edges = (
        i.reshape(-1),
        (xs - i)[None, :, :, None],
        j[_Y_OF] * len(_X_RANGES) + _X_OF[:, None],
        (ys - j)[_Y_OF][:, :, None, None],
        np.maximum(area, 1e-12)[..., None],
    )
    for a in edges:
        a.flags.writeable = False
    return edges
