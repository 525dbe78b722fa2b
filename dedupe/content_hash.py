"""The content hash, what makes two files byte copies of each other; and the image-data hash, what makes two
files one picture with other metadata (read from the file's structure, without decoding it).

Apart from fingerprint.py so that the parts that only re-check a file's bytes before acting on it (files, trash,
sidecars, a re-scan) do not load Pillow and numpy for it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
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


def image_data_hash(data: bytes, fmt: str, orientation: int) -> str | None:
    """A hash of the image data without its metadata, so that edited EXIF, XMP or ICC leave it unchanged.

    JPEG: every segment but APP0-APP13, APP15 and comments (APP14, Adobe, holds the colour transform), then the
    scan data, and a mark when a JFIF segment has libjpeg read an RGB picture as YCbCr. PNG: every chunk but
    text, EXIF, time and physical size. WebP: every chunk but EXIF, XMP, ICC and the VP8X header that announces
    them. The displayed orientation is part of the hash. None when the structure cannot be followed or the format
    has none of its own (the caller hashes the decoded pixels instead).
    """
    digest = hashlib.blake2b(f"{fmt}:{orientation}:".encode(), digest_size=16)
    view = memoryview(data)  # slices of a view are not copies: a large file is hashed in place
    ok = False
    if fmt in ("JPEG", "MPO"):
        ok = _jpeg_essence(view, digest)
    elif fmt == "PNG":
        ok = _png_essence(view, digest)
    elif fmt == "WEBP":
        ok = _webp_essence(view, digest)
    return digest.hexdigest() if ok else None


def jpeg_segments(data: memoryview) -> Iterator[tuple[int, int, int]]:
    """The marker segments of a JPEG up to its image data, as (marker, start, end) with start at the segment's
    0xFF: the start of scan comes last and runs to the end of the data. Fill bytes and the markers that have no
    length are passed over; the walk stops where the structure breaks (no start of scan then)."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the rest is image data
            yield marker, i, n
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, i, end
        i = end


def libjpeg_jfif(data: memoryview, start: int, end: int) -> bool:
    """Whether the APP0 segment from start to end is a JFIF segment as libjpeg reads it: at least 14 bytes
    starting "JFIF" and a NUL. (Pillow calls any APP0 starting "JFIF" one.)"""
    return end - start >= 18 and end <= len(data) and bytes(data[start + 4 : start + 9]) == b"JFIF\x00"


_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def _jpeg_essence(data: memoryview, digest: hashlib.blake2b) -> bool:
    jfif, adobe_transform, channel_ids = False, -1, b""
    for marker, start, end in jpeg_segments(data):
        if marker == 0xDA:
            digest.update(data[start:])
            # libjpeg decodes three channels as YCbCr behind a JFIF segment; without one, as the Adobe transform
            # says, or else as the channels' ids say. An RGB picture behind a JFIF segment (a tool added one) thus
            # decodes to other colours than without it: the two are not one picture. Others hash as they did.
            rgb = adobe_transform == 0 if adobe_transform >= 0 else channel_ids == b"RGB"
            if jfif and len(channel_ids) == 3 and rgb:
                digest.update(b":YCbCr by JFIF")
            return True
        whole = end <= len(data)
        if marker == 0xE0:
            jfif = jfif or libjpeg_jfif(data, start, end)
        elif marker == 0xEE and whole and end - start >= 16 and bytes(data[start + 4 : start + 9]) == b"Adobe":
            adobe_transform = data[start + 15]
        elif marker in _JPEG_FRAMES and whole and end - start >= 10:
            channel_ids = bytes(data[start + 10 : end : 3])[: data[start + 9]]
        if not (0xE0 <= marker <= 0xED or marker in (0xEF, 0xFE)):
            digest.update(data[start:end])
    return False


_PNG_METADATA = frozenset((b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"tIME", b"pHYs"))


def _png_essence(data: memoryview, digest: hashlib.blake2b) -> bool:
    for kind, start, end in png_chunks(data):
        if end > len(data):
            return False
        if kind not in _PNG_METADATA:
            digest.update(data[start + 4 : end - 4])  # type and data; the CRC adds nothing
        if kind == b"IEND":
            return True
    return False


def png_chunks(data: memoryview) -> Iterator[tuple[bytes, int, int]]:
    """The chunks of a PNG after its signature, as (type, start, end) with start at the chunk's length field and
    end past its CRC; the last one may run past the end of a cut file (end beyond len(data)). Callers stop at
    IEND themselves."""
    i, n = 8, len(data)
    while i + 12 <= n:
        end = i + 12 + int.from_bytes(data[i : i + 4], "big")
        yield bytes(data[i + 4 : i + 8]), i, end
        i = end


def _webp_essence(data: memoryview, digest: hashlib.blake2b) -> bool:
    i, n = 12, len(data)
    found = False
    while i + 8 <= n:
        kind = bytes(data[i : i + 4])
        length = int.from_bytes(data[i + 4 : i + 8], "little")
        end = i + 8 + length
        if end > n:
            return False
        # VP8X only says which other chunks exist and repeats the frame size; a plain file has none.
        if kind not in (b"VP8X", b"EXIF", b"XMP ", b"ICCP"):
            digest.update(data[i:end])
            found = found or kind in (b"VP8 ", b"VP8L", b"ANMF")
        i = end + (length & 1)
    return found
