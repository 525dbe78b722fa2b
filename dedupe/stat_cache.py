"""What a re-scan compares of the stored files below some folders (Store.stats_under), as packed keys, and a copy of
them kept beside the store (STORE.stats): loaded in about 30 ms where reading the rows through SQLite takes about
200 ms at 100,000 files, the largest part of a no-change re-scan after the walk itself.

The copy is used only when it is current: it names the store's two tokens (Store.stat_token: triggers replace one or
the other on every change to the files but their scan time, and to the fingerprints, whichever program writes; see
store migrations 8 and 9), the roots and the fingerprint version, and its bytes must match the checksum it carries.
Anything else, or any doubt (a damaged or foreign file), and the rows are read from the store. The copy is only ever
a cache: deleting it is always safe, and failing to write it (a read-only folder) changes nothing but the time.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dedupe.library import decode_path, encode_path
from dedupe.store import StatKey, Store

# (st_size, st_mtime_ns, st_dev, st_ino, st_ctime_ns) packed: one bytes object per file is compared in a few
# nanoseconds, where a tuple of five numbers costs a pointer to follow for each (scan's walk does it 100k times).
KEY = struct.Struct("<qqQQq")


_INT64 = range(-(1 << 63), 1 << 63)  # what an SQLite INTEGER holds
OUT_OF_RANGE = "cannot be stored: its time stamps or inode number are beyond the store's 64-bit range"


def storable(st: os.stat_result) -> bool:
    """Whether the store can hold this stat: a time after the year 2262 (a damaged clock or file system) or an
    inode number of 2**63 or more (some overlay and network file systems) cannot be written as SQLite's integers."""
    return all(v in _INT64 for v in (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino))


def stat_key(st: os.stat_result) -> bytes:
    """The key of a fresh stat, as StoredStats.current holds it; b"" when it cannot be packed (an inode number or
    a time out of SQLite's range: never stored, so never unchanged)."""
    try:
        return KEY.pack(st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns)
    except struct.error:
        return b""


@dataclass(frozen=True, slots=True)
class StoredStats:
    """What a scan compares of the stored files below its roots, and the state of the store it is of."""

    # By path: the stat_key a file found with it needs nothing (the same size, times and inode as stored, with a
    # fingerprint of this version and no error), or b"" when it needs a look whatever its stat.
    current: dict[str, bytes]
    images: int  # how many of the files have a fingerprint of this version
    state: dict[str, Any]  # for unchanged_since and save
    cached: bool  # read from the copy beside the store


def of_keys(keys: Mapping[str, StatKey]) -> tuple[dict[str, bytes], int]:
    """StoredStats.current and .images of what Store.stats_under gives."""
    current: dict[str, bytes] = {}
    images = 0
    for path, (size, mtime_ns, dev, ino, ctime_ns, fingerprinted, failed) in keys.items():
        images += fingerprinted
        try:
            needs_nothing = fingerprinted and not failed and ctime_ns is not None
            current[path] = KEY.pack(size, mtime_ns, dev, ino, ctime_ns) if needs_nothing else b""
        except struct.error:  # a number no stat gives (written by another program): never unchanged
            current[path] = b""
    return current, images


_MAGIC = b"DEDUPE-STATS\n"


_FORMAT = 2


_HEAD = struct.Struct("<Q")  # the length of the JSON header after the magic


def cache_path(store: Store) -> Path:
    return Path(f"{store.path}.stats")


def stats_under(store: Store, roots: Sequence[str], version: str) -> StoredStats:
    """What store.stats_under(roots, version) tells, from the copy beside the store when it is current."""
    with store.reading():  # the tokens and the rows from one view of the store
        state = {"format": _FORMAT, "token": list(store.stat_token()), "roots": list(roots), "version": version}
        found = _load(cache_path(store), state)
        if found is not None:
            return StoredStats(*found, state, True)
        return StoredStats(*of_keys(store.stats_under(roots, version)), state, False)


def unchanged_since(store: Store, stats: StoredStats) -> bool:
    """Whether nothing that stats_under reads has changed since it read these stats, whoever wrote."""
    return bool(list(store.stat_token()) == stats.state["token"])


def save(store: Store, stats: StoredStats) -> None:
    """Keep stats read from the store beside it, for the next scan. They stay labelled with the state they were read
    in, so a store changed since is never mistaken for it."""
    with contextlib.suppress(OSError):
        _save(cache_path(store), stats, store.path.stat().st_mode & 0o666)


def _save(path: Path, stats: StoredStats, mode: int) -> None:
    current = stats.current
    empty = bytes(KEY.size)
    payload = b"".join(
        (
            struct.pack("<Q", stats.images),
            bytes(bool(k) for k in current.values()),
            b"".join(k or empty for k in current.values()),
            encode_path("\0".join(current)),
        )
    )
    header = json.dumps({**stats.state, "rows": len(current), "crc32": zlib.crc32(payload)}).encode()
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            temp.chmod(mode)  # as readable as the store it copies (mkstemp makes it the owner's alone)
            f.write(_MAGIC + _HEAD.pack(len(header)) + header + payload)
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def _load(path: Path, state: Mapping[str, Any]) -> tuple[dict[str, bytes], int] | None:
    """StoredStats.current and .images in the copy at path when it was made in this state and is whole, else None."""
    try:
        data = path.read_bytes()
        if not data.startswith(_MAGIC):
            return None
        (length,) = _HEAD.unpack_from(data, len(_MAGIC))
        start = len(_MAGIC) + _HEAD.size + length
        header = json.loads(data[len(_MAGIC) + _HEAD.size : start])
        if not isinstance(header, dict) or any(header.get(k) != v for k, v in state.items()):
            return None
        payload = memoryview(data)[start:]
        n = int(header["rows"])
        at = 8 + n * (1 + KEY.size)  # where the paths start
        if n < 0 or len(payload) < at or zlib.crc32(payload) != header["crc32"]:
            return None
        (images,) = struct.unpack_from("<Q", payload)
        valid = np.frombuffer(payload, dtype=np.uint8, count=n, offset=8)
        keys: list[bytes] = np.frombuffer(payload, dtype=f"V{KEY.size}", count=n, offset=8 + n).tolist()
        if not valid.all():
            keys = [k if v else b"" for k, v in zip(keys, valid.tolist(), strict=True)]
        paths = decode_path(bytes(payload[at:])).split("\0") if n else []
        current = dict(zip(paths, keys, strict=True))
        return (current, int(images)) if len(current) == n else None
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
