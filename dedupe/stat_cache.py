"""What the store holds of the stat of the files below some folders (Store.stats_under), kept beside the store
(STORE.stats): loaded in about 40 ms where reading the rows through SQLite takes about 200 ms at 100,000 files, the
largest part of a no-change re-scan after the walk itself.

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
from pathlib import Path
from typing import Any

import numpy as np

from dedupe.library import decode_path, encode_path
from dedupe.store import StatKey, Store

_MAGIC = b"DEDUPE-STATS\n"


_FORMAT = 1


_HEAD = struct.Struct("<Q")  # the length of the JSON header after the magic


# The columns kept, one int64 each: a StatKey's, with a NULL ctime kept as 0 beside a flag saying so.
_COLUMNS = 8


def cache_path(store: Store) -> Path:
    return Path(f"{store.path}.stats")


def stats_under(store: Store, roots: Sequence[str], version: str) -> tuple[dict[str, StatKey], dict[str, Any], bool]:
    """store.stats_under(roots, version), from the copy beside the store when it is current; the state of the store
    they are of (for unchanged_since and save), and whether they came from the copy."""
    with store.reading():  # the tokens and the rows from one view of the store
        state = {"format": _FORMAT, "token": list(store.stat_token()), "roots": list(roots), "version": version}
        found = _load(cache_path(store), state)
        if found is not None:
            return found, state, True
        return store.stats_under(roots, version), state, False


def unchanged_since(store: Store, state: Mapping[str, Any]) -> bool:
    """Whether nothing that stats_under reads has changed since it read in this state, whoever wrote."""
    return bool(list(store.stat_token()) == state["token"])


def save(store: Store, state: Mapping[str, Any], keys: Mapping[str, StatKey]) -> None:
    """Keep the keys stats_under read from the store in this state beside it, for the next scan. They stay labelled
    with the state they were read in, so a store changed since is never mistaken for it."""
    with contextlib.suppress(OSError):
        _save(cache_path(store), state, keys, store.path.stat().st_mode & 0o666)


def _save(path: Path, state: Mapping[str, Any], keys: Mapping[str, StatKey], mode: int) -> None:
    columns: list[Sequence[int | None]] = list(zip(*keys.values(), strict=True)) if keys else [()] * 7
    ctime_ns = columns[4]
    columns[4:5] = [[0 if c is None else c for c in ctime_ns], [c is not None for c in ctime_ns]]
    values = np.array(columns, dtype="<i8").reshape(_COLUMNS, len(keys))
    payload = values.tobytes() + encode_path("\0".join(keys))
    header = json.dumps({**state, "rows": len(keys), "crc32": zlib.crc32(payload)}).encode()
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


def _load(path: Path, state: Mapping[str, Any]) -> dict[str, StatKey] | None:
    """The keys in the copy at path when it was made in this state and is whole, else None."""
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
        if n < 0 or len(payload) < n * _COLUMNS * 8 or zlib.crc32(payload) != header["crc32"]:
            return None
        values = np.frombuffer(payload, dtype="<i8", count=n * _COLUMNS).reshape(_COLUMNS, n)
        paths = decode_path(bytes(payload[n * _COLUMNS * 8 :])).split("\0") if n else []
        size, mtime_ns, dev, ino, ctime_ns, has_ctime, fingerprinted, failed = (c.tolist() for c in values)
        if not all(has_ctime):
            ctime_ns = [c if known else None for c, known in zip(ctime_ns, has_ctime, strict=True)]
        keys: dict[str, StatKey] = dict(
            zip(paths, zip(size, mtime_ns, dev, ino, ctime_ns, fingerprinted, failed, strict=True), strict=True)
        )
        return keys if len(keys) == n else None
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return None
