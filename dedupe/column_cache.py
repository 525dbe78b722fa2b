"""A copy of the stored files' columns kept beside the store (STORE.columns), loaded in milliseconds where reading
them through SQLite takes seconds at a million files.

The copy is used only when it is current: it names the store's change token (which triggers replace on every
change to the files and fingerprints, whichever program writes: see store migration 8), the rows and largest
rowids of both tables (a VACUUM may number rows anew without a trigger firing), the roots, the fingerprint version
and whether it holds crop signatures. Anything else, or any doubt (a damaged or foreign file), and the columns are
read from the store as before and the copy written again. The copy is only ever a cache: deleting it is always
safe, and failing to write it (a read-only folder) changes nothing but the time.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dedupe.library import Library, PathColumn, encode_path
from dedupe.models import CROP_BYTES
from dedupe.store_library import LibraryReads

_MAGIC = b"DEDUPE-COLUMNS\n"


_FORMAT = 1


_ALIGN = 64


_HEAD = struct.Struct("<Q")  # the length of the JSON header after the magic


# The Library columns kept as they are; paths and crop signatures are kept in a form of their own.
_COLUMNS = (
    "ids",
    "size",
    "dev",
    "ino",
    "content",
    "image",
    "width",
    "height",
    "phash",
    "dhash",
    "low_info",
    "turned",
    "variants",
    "camera",
    "taken",
    "has_crops",
)


def cache_path(store: LibraryReads) -> Path:
    return Path(f"{store.path}.columns")


def library_under(store: LibraryReads, roots: Sequence[str], version: str, *, crops: bool = False) -> Library:
    """store.library_under(roots, version, crops=crops), from the copy beside the store when it is current; else
    read from the store, and the copy written for next time. Call it inside store.reading(): the store's state is
    read once, for both the check and what is read after (Store.records_of)."""
    with store.reading():
        state = _state(store, roots, version, crops)
        path = cache_path(store)
        found = _load(path, state)
        if found is not None:
            return found
        library = store.library_under(roots, version, crops=crops)
    if not library.odd:  # rows the columns cannot hold are read whole each time: rare, and left to the store
        with contextlib.suppress(OSError):
            _save(path, state, library, store.path.stat().st_mode & 0o666)
    return library


def _state(store: LibraryReads, roots: Sequence[str], version: str, crops: bool) -> dict[str, Any]:
    """What the copy must have been made from to be used now."""
    return {
        "format": _FORMAT,
        "token": store.change_token(),
        "tables": store.table_marks(),
        "roots": list(roots),
        "version": version,
        "crops": crops,
    }


def _save(path: Path, state: dict[str, Any], library: Library, mode: int) -> None:
    paths = library.paths
    if isinstance(paths, PathColumn):
        raw, ends = paths.raw, paths.ends
    else:
        encoded = [encode_path(p) for p in paths]
        raw = b"".join(encoded)
        ends = np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
    arrays: dict[str, npt.NDArray[Any]] = {name: getattr(library, name) for name in _COLUMNS}
    arrays["path_ends"] = np.asarray(ends, dtype=np.int64)
    arrays["path_raw"] = np.frombuffer(raw, dtype=np.uint8)
    arrays["crop_rows"] = library.crops[library.has_crops] if library.crops.shape[1] else library.crops
    listing = []
    offset = 0
    for name, array in arrays.items():
        listing.append([name, array.dtype.str, list(array.shape), offset])
        offset += -(-array.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({**state, "rows": len(library), "crops_width": library.crops.shape[1], "arrays": listing})
    head = _MAGIC + _HEAD.pack(len(header)) + header.encode()
    start = -(-len(head) // _ALIGN) * _ALIGN
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            temp.chmod(mode)  # as readable as the store it copies (mkstemp makes it the owner's alone)
            f.write(head.ljust(start, b"\0"))
            for array in arrays.values():
                data = np.ascontiguousarray(array).tobytes()
                f.write(data.ljust(-(-len(data) // _ALIGN) * _ALIGN, b"\0"))
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _load(path: Path, state: dict[str, Any]) -> Library | None:
    """The library in the copy at path when it was made from this state, else None."""
    try:
        with path.open("rb") as f:
            if f.read(len(_MAGIC)) != _MAGIC:
                return None
            (length,) = _HEAD.unpack(f.read(_HEAD.size))
            if length > 1 << 24:
                return None
            header = json.loads(f.read(length))
            if not isinstance(header, dict) or any(header.get(k) != v for k, v in state.items()):
                return None
            start = -(-(len(_MAGIC) + _HEAD.size + length) // _ALIGN) * _ALIGN
            size = os.fstat(f.fileno()).st_size
            # A private mapping: the arrays are writable as numpy's own, and the pages are read as they are used.
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
        if mapped is None:
            return None
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name, dtype, shape, offset in header["arrays"]:
            kind = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            if start + offset + count * kind.itemsize > size:
                return None
            arrays[name] = np.frombuffer(mapped, dtype=kind, count=count, offset=start + offset).reshape(shape)
        n = int(header["rows"])
        width = int(header["crops_width"])
        if width not in (0, CROP_BYTES) or any(len(arrays[name]) != n for name in _COLUMNS):
            return None
        has_crops = arrays["has_crops"]
        crops = np.zeros((n, width), dtype=np.uint8)
        if width:
            crops[has_crops] = arrays["crop_rows"]
        ends = arrays["path_ends"]
        raw = arrays["path_raw"].tobytes()
        if len(ends) != n or (n and int(ends[-1]) != len(raw)):
            return None
        columns: dict[str, Any] = {name: arrays[name] for name in _COLUMNS}
        return Library(paths=PathColumn(raw, ends), crops=crops, distinct_paths=True, **columns)
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
