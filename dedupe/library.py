"""A library of fingerprinted files as numpy columns: the form the grouping reads.

The store fills one straight from SQLite (Store.library_under) and find_groups makes one from records, so a million
files never need a million FileRecord objects; those are made only for the files that end up in a group. The store
runs the SQL; turning what it reads (columns concatenated by group_concat) into columns and records is done here.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import operator
import struct
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from dedupe.errors import StoreError
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
                fields[name] = value.take(rows) if isinstance(value, PathColumn) else [value[k] for k in rows.tolist()]
            elif name == "odd":
                at = {row: k for k, row in enumerate(rows.tolist())} if value else {}
                fields[name] = {at[row]: fp for row, fp in value.items() if row in at}
            elif name == "distinct_paths":
                fields[name] = value
            else:
                fields[name] = value[rows]
        return Library(**fields)

    def part(self, start: int, stop: int) -> Library:
        """Rows start .. stop - 1 as a library of their own: take for a range, the columns shared, not copied."""
        fields: dict[str, Any] = {}
        for name in Library.__slots__:
            value = getattr(self, name)
            if name == "paths":
                fields[name] = value.part(start, stop) if isinstance(value, PathColumn) else list(value[start:stop])
            elif name == "odd":
                fields[name] = {row - start: fp for row, fp in value.items() if start <= row < stop}
            elif name == "distinct_paths":
                fields[name] = value
            else:
                fields[name] = value[start:stop]
        return Library(**fields)

    def distinct_files(self) -> npt.NDArray[np.int64]:
        """The rows that are distinct files: of the paths reaching one inode, the first."""
        n = len(self)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        single = bool((self.dev == self.dev[0]).all())
        # Inodes in no particular order sort several times faster unstably; only when some are shared does the
        # order within one inode matter, and the sort is made again.
        order = np.argsort(self.ino) if single else np.lexsort((self.ino, self.dev))
        same = self.ino[order[1:]] == self.ino[order[:-1]]
        if not single:
            same &= self.dev[order[1:]] == self.dev[order[:-1]]
        if not same.any():
            return np.arange(n, dtype=np.int64)
        if single:
            order = np.argsort(self.ino, kind="stable")
            same = self.ino[order[1:]] == self.ino[order[:-1]]
        keep = np.ones(n, dtype=bool)
        keep[order[1:][same]] = False  # within one inode the rows are in path order: the first stays
        return np.flatnonzero(keep)

    def path_ranks(self) -> tuple[npt.NDArray[np.int64], bool]:
        """Each row's rank by path, equal paths ranked alike (rows are in path order); and whether all are
        distinct."""
        n = len(self)
        if self.distinct_paths:
            return np.arange(n), True
        paths = self.paths
        same = np.fromiter(map(operator.eq, paths[1:], paths[:-1]), dtype=bool, count=max(n - 1, 0))
        if not same.any():
            return np.arange(n, dtype=np.int64), True
        return np.cumsum(np.r_[False, ~same]).astype(np.int64), False

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


# --- columns from what the store reads (Store.library_under, Store.records_of) ---


def library_from_rows(rows: Iterable[tuple[Sequence[Any], bool]], crops: bool) -> tuple[Library, npt.NDArray[np.int64]]:
    """The library of the rows of Store.library_under's query (each a chunk of files, and whether its lengths are
    packed), image hashes numbered; and its odd rows (see Library.odd), which the store reads whole."""
    return _concat([_decode_chunk(row, packed, crops) for row, packed in rows], crops)


_FS_ENCODING = sys.getfilesystemencoding()


_FS_ERRORS = sys.getfilesystemencodeerrors()


def encode_path(path: str) -> bytes:
    return path.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode, without its per-call checks


def decode_path(raw: bytes) -> str:
    return raw.decode(_FS_ENCODING, _FS_ERRORS)  # os.fsdecode, a quarter of its cost on 100k rows


PACKED_AT = 10  # the column of packed lengths


@dataclass(frozen=True, slots=True)
class _Chunk:
    library: Library  # without image numbers and odd rows
    paths: PathColumn  # the library's
    image: npt.NDArray[np.bytes_]  # image hashes
    odd: npt.NDArray[np.int64]  # rows of variants or crop signatures of other lengths


def packed_fit(text: str, count: int) -> bool:
    """Whether no packed length of a chunk may have been cut (at 4095)."""
    lengths = parse_ints(text, count)
    return not any((((lengths >> (1 + 12 * k)) & 4095) == 4095).any() for k in range(5))


def _decode_chunk(row: Sequence[Any], packed: bool, crops: bool) -> _Chunk:
    """One row of the store's library query (store._LIBRARY_SQL: a chunk of files, each column concatenated) as
    columns."""
    count = int(row[0])
    ids, size, dev, ino, content, sides, phash, dhash = (parse_ints(t, count) for t in row[2:PACKED_AT])
    at = PACKED_AT
    if packed:
        lengths = parse_ints(row[at], count)
        low_info = (lengths & 1).astype(bool)
        taken_lengths, camera_lengths, variants_lengths, image_lengths, path_lengths = (
            (lengths >> (1 + 12 * k)) & 4095 for k in range(5)
        )
        at += 1
    else:
        path_lengths, image_lengths, variants_lengths, camera_lengths, taken_lengths = (
            parse_ints(t, count) for t in row[at : at + 5]
        )
        low_info = parse_ints(row[at + 5], count).astype(bool)
        at += 6
    paths_raw, image_raw, variants_raw, camera_raw, taken_raw = (r or b"" for r in row[at : at + 5])
    turned = variants_lengths // 8 == 7
    variants = np.zeros((count, 7), dtype=np.uint64)
    variants[turned] = _rows_of(variants_raw, variants_lengths, turned, 56).view(">u8").astype(np.uint64)
    odd = (variants_lengths // 8 != 0) & ~turned
    crop_rows = np.zeros((count, CROP_BYTES if crops else 0), dtype=np.uint8)
    has_crops = np.zeros(count, dtype=bool)
    if crops:
        crops_lengths = parse_ints(row[at + 5], count)
        has_crops = crops_lengths == CROP_BYTES
        crop_rows[has_crops] = _rows_of(row[at + 6] or b"", crops_lengths, has_crops, CROP_BYTES)
        odd |= (crops_lengths != 0) & ~has_crops
    camera, taken = _joined_texts(camera_raw, camera_lengths), _joined_texts(taken_raw, taken_lengths)
    odd |= _ends_in_nul(camera_raw, camera_lengths) | _ends_in_nul(taken_raw, taken_lengths)
    paths = PathColumn(paths_raw, np.cumsum(path_lengths))
    library = Library(
        ids=ids,
        paths=paths,
        size=size,
        dev=dev,
        ino=ino,
        content=content,
        image=np.zeros(count, dtype=np.int64),
        width=sides >> 32,
        height=sides & 0xFFFFFFFF,
        phash=phash.view(np.uint64),
        dhash=dhash.view(np.uint64),
        low_info=low_info,
        turned=turned,
        variants=variants,
        camera=camera,
        taken=taken,
        crops=crop_rows,
        has_crops=has_crops,
    )
    return _Chunk(library, paths, _joined_texts(image_raw, image_lengths, marked=True), np.flatnonzero(odd))


def _concat(parts: Sequence[_Chunk], crops: bool) -> tuple[Library, npt.NDArray[np.int64]]:
    """The chunks as one library (image hashes numbered), and its odd rows."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Library(
            ids=empty,
            paths=[],
            size=empty,
            dev=empty,
            ino=empty,
            content=empty,
            image=empty,
            width=empty,
            height=empty,
            phash=empty.view(np.uint64),
            dhash=empty.view(np.uint64),
            low_info=np.zeros(0, dtype=bool),
            turned=np.zeros(0, dtype=bool),
            variants=np.zeros((0, 7), dtype=np.uint64),
            camera=np.zeros(0, dtype="S1"),
            taken=np.zeros(0, dtype="S1"),
            crops=np.zeros((0, CROP_BYTES if crops else 0), dtype=np.uint8),
            has_crops=np.zeros(0, dtype=bool),
        ), np.zeros(0, dtype=np.int64)
    fields: dict[str, Any] = {}
    for name in Library.__slots__:
        if name == "paths":
            fields[name] = PathColumn.concat([part.paths for part in parts])
        elif name not in ("odd", "distinct_paths"):
            fields[name] = np.concatenate([getattr(part.library, name) for part in parts])
    fields["image"] = _value_ids(np.concatenate([part.image for part in parts]))
    starts = np.cumsum([0, *(len(part.library) for part in parts)])
    odd = np.concatenate([part.odd + start for part, start in zip(parts, starts.tolist(), strict=False)])
    return Library(**fields), odd


class PathColumn(Sequence[str]):
    """Paths as stored (bytes, one after another) and where each ends: a string is made only when one is read."""

    def __init__(self, raw: bytes, ends: npt.NDArray[np.int64]) -> None:
        self.raw = raw
        self.ends = ends
        self.utf8 = raw.isascii() or _is_utf8(raw)  # then bytes sort as the strings do
        self._bounds: tuple[list[int], list[int]] | None = None
        self._text: str | None = None

    @staticmethod
    def concat(parts: Sequence[PathColumn]) -> PathColumn:
        starts = np.cumsum([0, *(len(p.raw) for p in parts[:-1])])
        ends = [p.ends + start for p, start in zip(parts, starts.tolist(), strict=True)]
        return PathColumn(b"".join(p.raw for p in parts), np.concatenate(ends) if ends else np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ends)

    def part(self, start: int, stop: int) -> PathColumn:
        """Paths start .. stop - 1 as a column of their own."""
        first = int(self.ends[start - 1]) if start > 0 else 0
        ends = self.ends[start:stop]
        last = int(ends[-1]) if len(ends) else first
        return PathColumn(self.raw[first:last], ends - first)

    def take(self, rows: npt.NDArray[np.int64]) -> PathColumn:
        """These paths (in this order), as a column of their own: their bytes are copied, no string is made."""
        ends = self.ends[rows]
        starts = np.where(rows > 0, self.ends[np.maximum(rows - 1, 0)], 0)
        raw = self.raw
        joined = b"".join([raw[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)])
        return PathColumn(joined, np.cumsum(ends - starts))

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> list[str]: ...
    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            start, stop, step = k.indices(len(self))
            if step == 1 and stop > start:
                # ASCII paths are decoded at once and cut there: a string made per path otherwise (utf-8 with
                # escapes cannot be cut as bytes and decoded as one).
                ends = self.ends[start:stop].tolist()
                first = int(self.ends[start - 1]) if start else 0
                raw = self.raw[first : ends[-1]]
                if raw.isascii():
                    text = raw.decode("ascii")
                    return [text[a - first : b - first] for a, b in zip([first, *ends[:-1]], ends, strict=True)]
            return [self[i] for i in range(start, stop, step)]
        if self._bounds is None:
            ends = self.ends.tolist()
            self._bounds = ([0, *ends[:-1]], ends)
            self._text = self.raw.decode("ascii") if self.raw.isascii() else None  # then sliced as it is
        starts, ends = self._bounds
        if self._text is not None:
            return self._text[starts[k] : ends[k]]
        return decode_path(self.raw[starts[k] : ends[k]])

    def __iter__(self) -> Iterator[str]:
        ends = self.ends.tolist()
        raw = self.raw
        if raw.isascii():
            text = raw.decode("ascii")
            return (text[a:b] for a, b in zip([0, *ends][: len(ends)], ends, strict=True))
        return (decode_path(raw[a:b]) for a, b in zip([0, *ends][: len(ends)], ends, strict=True))


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _rows_of(
    raw: bytes, lengths: npt.NDArray[np.int64], chosen: npt.NDArray[np.bool_], width: int
) -> npt.NDArray[np.uint8]:
    """The first width bytes of the chosen ones of blobs given one after another (lengths in bytes)."""
    data = np.frombuffer(raw, dtype=np.uint8)
    if len(raw) != int(lengths.sum()):
        raise StoreError("the store returned a damaged column of fingerprints")
    if len(data) == width * int(chosen.sum()):  # the usual case: only rows of exactly width bytes and empty ones
        return data.reshape(-1, width)
    starts = np.cumsum(lengths) - lengths
    rows: npt.NDArray[np.uint8] = data[starts[chosen][:, None] + np.arange(width)]
    return rows


def _ends_in_nul(raw: bytes, lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which of byte strings given one after another end in NUL: numpy would cut it off (Library.odd)."""
    if b"\x00" not in raw:
        return np.zeros(len(lengths), dtype=bool)
    ends = np.cumsum(lengths) - 1
    last = np.frombuffer(raw, dtype=np.uint8)[np.maximum(ends, 0)] if len(raw) else np.zeros(len(lengths))
    found: npt.NDArray[np.bool_] = (lengths > 0) & (last == 0)
    return found


def _strings(raw: bytes, lengths: npt.NDArray[np.int64]) -> list[str | None]:
    """Strings given as UTF-8 one after another (lengths in bytes, -1 for None)."""
    # The offsets are made one at a time, never as lists: a list of 330,000 of them is 330,000 int objects, which
    # are freed among the strings kept and leave the records' peak some 15 MiB a column higher.
    sizes = np.maximum(lengths, 0).tolist()  # small, mostly Python's shared small ints
    ends = itertools.accumulate(sizes)
    if raw.isascii():
        text = raw.decode("ascii")
        found: list[str | None] = [text[end - size : end] for size, end in zip(sizes, ends)]  # noqa: B905
    else:
        found = [raw[end - size : end].decode() for size, end in zip(sizes, ends)]  # noqa: B905
    for k in np.flatnonzero(lengths < 0).tolist():
        found[k] = None
    return found


def _joined_texts(raw: bytes, lengths: npt.NDArray[np.int64], *, marked: bool = False) -> npt.NDArray[np.bytes_]:
    """Byte strings given one after another (lengths in bytes) as one array; b"" where empty. marked: each followed
    by 0x01, for values that are only compared (image hashes): numpy cuts trailing NULs off its byte strings, which
    would make b"a" and b"a\x00" one value (two pictures taken for the same image data)."""
    n = len(lengths)
    widest = int(lengths.max()) if n else 0
    if len(raw) != int(lengths.sum()):
        raise StoreError("the store returned a damaged column of fingerprints")
    if widest == 0 and not marked:
        return np.zeros(n, dtype="S1")
    data = np.frombuffer(raw, dtype=np.uint8)
    uniform = len(data) == widest * n  # all of one length (hex hashes): no index arrays
    if uniform and not marked:
        return data.view(f"S{widest}").copy()
    out = np.zeros((n, widest + marked), dtype=np.uint8)
    if uniform:
        out[:, :widest] = data.reshape(n, widest)
    else:
        starts = np.cumsum(lengths) - lengths
        widths = np.flatnonzero(np.bincount(lengths))  # the lengths there are, ascending (np.unique imports numpy.ma)
        for width in widths[widths > 0].tolist():
            rows = np.flatnonzero(lengths == width)
            out[rows, :width] = data[starts[rows][:, None] + np.arange(width)]
    if marked:
        out[np.arange(n), lengths] = 1
    return out.view(f"S{widest + marked}").ravel()


def _value_ids(values: npt.NDArray[np.bytes_]) -> npt.NDArray[np.int64]:
    """A number per value, equal for equal values (of one width, so that no two differ only in trailing zeros)."""
    n = len(values)
    width = values.dtype.itemsize
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if width % 8:
        padded = np.zeros((n, width + 8 - width % 8), dtype=np.uint8)
        padded[:, :width] = values.view(np.uint8).reshape(n, width)
        words = padded.view(np.uint64)
    else:
        words = np.ascontiguousarray(values).view(np.uint64).reshape(n, width // 8)
    # Sorted by a 64-bit mix of the words; values that mix alike are compared whole.
    mixed = words[:, 0].copy()
    for k in range(1, words.shape[1]):
        mixed *= np.uint64(0x9E3779B97F4A7C15)
        mixed ^= mixed >> np.uint64(29)
        mixed ^= words[:, k]
    order = np.argsort(mixed, kind="stable")
    sorted_mixed = mixed[order]
    heads = np.r_[True, sorted_mixed[1:] != sorted_mixed[:-1]]
    ids = np.cumsum(heads) - 1
    alike = np.flatnonzero(~heads)
    firsts = order[np.flatnonzero(heads)[ids[alike]]]
    if not (words[order[alike]] == words[firsts]).all():
        _, inverse = np.unique(values, return_inverse=True)
        return inverse.astype(np.int64)
    out = np.empty(n, dtype=np.int64)
    out[order] = ids
    return out


def parse_ints(text: str, count: int) -> npt.NDArray[np.int64]:
    try:
        values = np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError:  # a REAL or a text where dedupe writes integers: a damaged or foreign store
        raise StoreError("the store returned a damaged column of fingerprints") from None
    if len(values) != count:
        raise StoreError("the store returned a damaged column of fingerprints")
    return values


SEVEN = struct.Struct(">7Q")  # the usual variants: all 7 turns


def records_from_rows(
    library: Library,
    files: list[tuple[Any, ...]],
    images: list[tuple[Any, ...]],
    contents: npt.NDArray[np.int64],
    of_content: npt.NDArray[np.intp],
) -> list[FileRecord]:
    """The records of a library's files, in row order (see Store.records_of): what the library holds is taken from
    it, the rest from the rows the store read by rowid (files: count, rowids, times; images: count, rowids, and each
    text as UTF-8 one after another with its lengths). contents are the library's image rowids, each once, sorted;
    of_content is each row's place among them. The lists of rows are emptied as they are read: at 330,000 files
    they hold some 40 MiB, which would otherwise stay beside the records at the peak of stored_groups."""
    ids = library.ids
    n = len(ids)
    # The rows come in the store's order: put them in the library's.
    file_rowids = np.concatenate([parse_ints(p[1], p[0]) for p in files if p[0]] or [np.zeros(0, np.int64)])
    mtimes = np.concatenate([parse_ints(p[2], p[0]) for p in files if p[0]] or [np.zeros(0, np.int64)])
    files.clear()
    place = np.empty(n, dtype=np.int64)
    place[np.argsort(ids)] = np.argsort(file_rowids)
    mtimes = mtimes[place]
    texts: list[list[Any]] = [[], [], [], [], []]  # content and image hashes, format, time, camera (or None)
    image_rowids: list[npt.NDArray[np.int64]] = []
    while images:  # (from the last: any order will do, as long as rowids and texts keep one)
        count, *columns = images.pop()
        if count:
            image_rowids.append(parse_ints(columns[0], count))
            for k, strings in enumerate(texts):
                strings.extend(_strings(columns[1 + 2 * k] or b"", parse_ints(columns[2 + 2 * k], count)))
    found = np.concatenate(image_rowids) if image_rowids else np.zeros(0, dtype=np.int64)
    at = np.empty(len(contents), dtype=np.int64)
    at[np.argsort(contents)] = np.argsort(found)  # contents are sorted: the fetched rows in their order
    order = at[of_content]  # each row's place among the fetched images
    # The texts are moved as objects (an object array copies no string).
    # Formats and cameras repeat from file to file: equal ones share one string (some 50 bytes a record).
    for k in (2, 4):
        texts[k] = _shared(texts[k])
    strings = [np.array(column, dtype=object) for column in texts]
    del texts
    records: list[FileRecord] = []
    # A slice of rows at a time: the lists of values taken out of the columns for one slice are freed before the
    # next is made, where lists for all rows at once (a dozen of 330,000 values each) left about 150 MiB of freed
    # memory under the records at the peak of stored_groups.
    with gc_paused():
        for lo in range(0, n, _RECORDS_AT_ONCE):
            part = slice(lo, min(n, lo + _RECORDS_AT_ONCE))
            records.extend(_records_part(library, part, mtimes[part], [s[order[part]] for s in strings]))
    return records


_RECORDS_AT_ONCE = 1 << 15


def _shared(values: list[Any]) -> list[Any]:
    """The values, equal ones as one object (for columns of few values, made into many records)."""
    seen: dict[Any, Any] = {}
    return [seen.setdefault(v, v) for v in values]


def _records_part(
    library: Library, part: slice, mtimes: npt.NDArray[np.int64], texts: list[npt.NDArray[Any]]
) -> list[FileRecord]:
    """records_from_rows for the rows of one slice, given their times and texts."""
    content, image, fmt, taken, camera = (column.tolist() for column in texts)
    start = part.start
    crops = [b""] * (part.stop - start)
    for k in np.flatnonzero(library.has_crops[part]).tolist():
        crops[k] = library.crops[start + k].tobytes()
    turns = SEVEN.iter_unpack(library.variants[part].astype(">u8").tobytes())
    variants = [v if t else () for v, t in zip(turns, library.turned[part].tolist(), strict=True)]
    odd = library.odd
    records: list[FileRecord] = []
    for k, (path, size, mtime, dev, ino, width, height, phash, dhash, low_info, sig) in enumerate(
        zip(
            library.paths[part],
            library.size[part].tolist(),
            mtimes.tolist(),
            library.dev[part].tolist(),
            library.ino[part].tolist(),
            _shared(library.width[part].tolist()),  # (ints above 256 are an object each, 28 bytes)
            _shared(library.height[part].tolist()),
            library.phash[part].tolist(),
            library.dhash[part].tolist(),
            library.low_info[part].tolist(),
            crops,
            strict=True,
        )
    ):
        fp = (odd.get(start + k) if odd else None) or Fingerprint(
            content[k],
            image[k],
            fmt[k],
            width,
            height,
            phash,
            dhash,
            taken[k],
            low_info,
            variants[k],
            camera[k],
            sig,
        )
        records.append(FileRecord(path, size, mtime, dev, ino, fp))
    return records
