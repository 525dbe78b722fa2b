"""A library of fingerprinted files as numpy columns: the form the grouping reads.

The store fills one straight from SQLite (Store.library_under) and find_groups makes one from records, so a million
files never need a million FileRecord objects; those are made only for the files that end up in a group.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.models import CROP_BYTES, TRANSFORMS, FileRecord, Fingerprint

_U64 = (1 << 64) - 1
_TURNS = len(TRANSFORMS)


@dataclass(frozen=True, slots=True, eq=False)
class Library:
    """Fingerprinted files, one row each, sorted by path (str order).

    Hashes are the low 64 bits of each value; a row whose values do not fit the columns (a hash outside 64 bits,
    variants that are not all 7 turns, a crop signature of another length) is also in odd, with its fingerprint,
    and the grouping reads that row's values from there.
    """

    ids: npt.NDArray[np.int64]  # where each row came from: the store's rowid, or the index in a list of records
    paths: Sequence[str]
    size: npt.NDArray[np.int64]
    dev: npt.NDArray[np.int64]
    ino: npt.NDArray[np.int64]
    content: npt.NDArray[np.int64]  # rows with equal values hold the same bytes (any numbering)
    image: npt.NDArray[np.int64]  # rows with equal values hold the same image data (any numbering)
    width: npt.NDArray[np.int64]
    height: npt.NDArray[np.int64]
    phash: npt.NDArray[np.uint64]
    dhash: npt.NDArray[np.uint64]
    low_info: npt.NDArray[np.bool_]
    turned: npt.NDArray[np.bool_]  # all 7 variants known
    variants: npt.NDArray[np.uint64]  # (rows, 7), zeros where not turned
    camera: npt.NDArray[np.bytes_]  # UTF-8, b"" when unknown
    taken: npt.NDArray[np.bytes_]  # ISO 8601 as UTF-8, b"" when unknown
    # Crop signatures (fingerprint.crop_signature) as (rows, CROP_BYTES) bytes, zeros where has_crops is False;
    # (rows, 0) when they were not loaded.
    crops: npt.NDArray[np.uint8]
    has_crops: npt.NDArray[np.bool_]
    odd: Mapping[int, Fingerprint] = field(default_factory=dict)  # row -> its fingerprint, see above
    distinct_paths: bool = False  # known to hold no path twice (a store's): the row order alone ranks the paths

    def __len__(self) -> int:
        return len(self.paths)

    @staticmethod
    def from_records(records: Sequence[FileRecord]) -> Library:
        """Records (sorted by path, one per file: see group.find_groups) as columns; ids are their indices."""
        n = len(records)
        fps = [r.fingerprint for r in records]
        odd: dict[int, Fingerprint] = {}
        phash = _u64s([fp.phash for fp in fps], fps, odd)
        dhash = _u64s([fp.dhash for fp in fps], fps, odd)
        lengths = np.fromiter((len(fp.variants) for fp in fps), dtype=np.int64, count=n)
        turned = lengths == _TURNS
        variants = np.zeros((n, _TURNS), dtype=np.uint64)
        rows = np.flatnonzero(turned).tolist()
        chosen = fps if len(rows) == n else [fps[k] for k in rows]
        try:
            flat = np.fromiter(
                itertools.chain.from_iterable(fp.variants for fp in chosen), dtype=np.uint64, count=len(rows) * _TURNS
            )
        except OverflowError:
            flat = np.array([v & _U64 for fp in chosen for v in fp.variants], dtype=np.uint64)
            odd.update((k, fps[k]) for k in rows if any(v < 0 or v > _U64 for v in fps[k].variants))
        variants[rows] = flat.reshape(len(rows), _TURNS)
        del chosen, flat
        odd.update((k, fps[k]) for k in np.flatnonzero((lengths != 0) & ~turned).tolist())
        sizes = np.fromiter((len(fp.crops) for fp in fps), dtype=np.int64, count=n)
        has_crops = sizes == CROP_BYTES
        crops = np.zeros((n, CROP_BYTES if has_crops.any() else 0), dtype=np.uint8)
        if has_crops.any():
            at = np.flatnonzero(has_crops)
            blob = b"".join(fps[k].crops for k in at.tolist())
            crops[at] = np.frombuffer(blob, dtype=np.uint8).reshape(-1, CROP_BYTES)
        odd.update((k, fps[k]) for k in np.flatnonzero((sizes != 0) & ~has_crops).tolist())
        return Library(
            ids=np.arange(n, dtype=np.int64),
            paths=[r.path for r in records],
            size=np.fromiter((r.size for r in records), dtype=np.int64, count=n),
            dev=np.fromiter((r.dev for r in records), dtype=np.int64, count=n),
            ino=np.fromiter((r.ino for r in records), dtype=np.int64, count=n),
            content=_codes(fp.content_hash for fp in fps),
            image=_codes(fp.image_hash for fp in fps),
            width=np.fromiter((fp.width for fp in fps), dtype=np.int64, count=n),
            height=np.fromiter((fp.height for fp in fps), dtype=np.int64, count=n),
            phash=phash,
            dhash=dhash,
            low_info=np.fromiter((fp.low_info for fp in fps), dtype=bool, count=n),
            turned=turned,
            variants=variants,
            camera=_texts([fp.camera for fp in fps], fps, odd),
            taken=_texts([fp.taken for fp in fps], fps, odd),
            crops=crops,
            has_crops=has_crops,
            odd=odd,
        )

    def take(self, rows: npt.NDArray[np.int64]) -> Library:
        """These rows (in this order, each once) as a library of their own."""
        fields: dict[str, Any] = {}
        for name in Library.__slots__:
            value = getattr(self, name)
            if name == "paths":
                fields[name] = [value[k] for k in rows.tolist()]
            elif name == "odd":
                at = {row: k for k, row in enumerate(rows.tolist())} if value else {}
                fields[name] = {at[row]: fp for row, fp in value.items() if row in at}
            elif name == "distinct_paths":
                fields[name] = value
            else:
                fields[name] = value[rows]
        return Library(**fields)

    def fingerprint(self, row: int) -> Fingerprint:
        """The values of a row that matching reads, as a fingerprint (without its content and image hashes)."""
        fp = self.odd.get(row)
        if fp is not None:
            return fp
        return Fingerprint(
            content_hash="",
            image_hash="",
            format="",
            width=int(self.width[row]),
            height=int(self.height[row]),
            phash=int(self.phash[row]),
            dhash=int(self.dhash[row]),
            taken=self.taken[row].decode("utf-8", "surrogatepass") or None,
            low_info=bool(self.low_info[row]),
            variants=tuple(self.variants[row].tolist()) if self.turned[row] else (),
            camera=self.camera[row].decode("utf-8", "surrogatepass") or None,
            crops=self.crops[row].tobytes() if self.has_crops[row] else b"",
        )


def release_freed_memory() -> None:
    """Hand memory freed by numpy back to the system. The C allocator (glibc) keeps freed blocks of a few MiB for
    its own reuse, but the records made after grouping live in Python's own arenas and never reuse them: without
    this, the whole process would peak at the grouping's memory plus the records'."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


@contextmanager
def gc_paused() -> Iterator[None]:
    """For making many objects without cycles at once (records, group members): the cyclic garbage collector, which
    would walk every live object again and again as they pile up, waits until they are made."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _codes(values: Iterable[object]) -> npt.NDArray[np.int64]:
    """A number per value, equal for equal values: the order in which each was first met."""
    seen: dict[object, int] = {}
    return np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64)


def _texts(
    values: Sequence[str | None], fps: Sequence[Fingerprint], odd: dict[int, Fingerprint]
) -> npt.NDArray[np.bytes_]:
    """Strings as UTF-8 bytes, b"" for None (or empty). A string ending in NUL (which numpy would cut off) makes its
    row odd."""
    if not any(values):
        return np.zeros(len(values), dtype="S1")
    odd.update((k, fps[k]) for k, v in enumerate(values) if v and v.endswith("\x00"))
    return np.array([v.encode("utf-8", "surrogatepass") if v else b"" for v in values], dtype=np.bytes_)


def _u64s(values: list[int], fps: Sequence[Fingerprint], odd: dict[int, Fingerprint]) -> npt.NDArray[np.uint64]:
    try:
        return np.array(values, dtype=np.uint64)
    except OverflowError:
        for k, v in enumerate(values):
            if v < 0 or v > _U64:
                odd[k] = fps[k]
        return np.array([v & _U64 for v in values], dtype=np.uint64)
