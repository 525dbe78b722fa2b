"""The content hash: what makes two files byte copies of each other.

Apart from fingerprint.py so that the parts that only re-check a file's bytes before acting on it (files, trash,
sidecars, a re-scan) do not load Pillow and numpy for it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def hash_bytes(data: bytes) -> str:
    """A file's content hash from its bytes: 128 bits of BLAKE2b, in hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def hash_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The content hash of a file, read in chunks: the same value as hash_bytes of its bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
