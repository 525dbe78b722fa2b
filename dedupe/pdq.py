"""PDQ, the 256-bit perceptual hash that industry hash-sharing programmes exchange, beside dedupe's own hashes.

A PDQ list is text: one 64-hex-digit hash a line, optionally followed by `,label`, or `,quality,label` as
`dedupe export --format pdq` and Meta's pdq-photo-hasher write it; blank lines and lines starting with # are
passed over. A query matches a listed hash at a PDQ (Hamming) distance of at most PDQ_THRESHOLD, 31 of 256 bits,
the published default.

Hashes come from the `pdqhash` package (Python bindings of Meta's reference C++ implementation, as used by
ThreatExchange and Hasher-Matcher-Actioner): it is only imported when a PDQ hash is taken, so that scanning a
photo library never pays for it. Images are opened through fingerprint.open_image: the same decoder allow-list
and decompression-bomb limit as a scan.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import numpy.typing as npt

from dedupe import fingerprint
from dedupe.errors import DedupeError, FileSkipped
from dedupe.exchange import bounded_lines, printable, read_source, write_file
from dedupe.models import HitSource, MatchKind, PdqEntry, SearchHit

if TYPE_CHECKING:
    from PIL import Image

    from dedupe.store import Store
    from dedupe.store_pg import PostgresStore

PDQ_THRESHOLD = 31
PDQ_BITS = 256
INSTALL = "pip install 'photo-dedupe[pdq]'"
# PDQ reduces a picture to 64x64 with a tent filter; a copy this size (long side) hashes the same to within a bit
# or two, and decodes several times faster than a 12-megapixel original.
_HASH_SIDE = 512
_HEX = re.compile(r"[0-9a-f]{64}")


def _pdqhash() -> Any:
    try:
        import pdqhash
    except ImportError:
        raise DedupeError(f"PDQ hashes need the pdqhash package: {INSTALL}") from None
    return pdqhash


def hash_image(image: Image.Image) -> tuple[str, int]:
    """The PDQ hash (64 hex digits) of a picture and PDQ's quality score (0-100; below 50 says little)."""
    bits, quality = _pdqhash().compute(np.asarray(image.convert("RGB")))
    value = int("".join("1" if b else "0" for b in bits), 2)
    return f"{value:064x}", int(quality)


def hash_bytes(data: bytes) -> tuple[str, int]:
    """The PDQ hash and quality of an image held in memory; FileSkipped (with the reason) when not a photo."""
    _pdqhash()  # said before any decoding: a missing package is not a bad image
    try:
        im = fingerprint.open_image(data)
        if im.format in ("JPEG", "MPO"):
            im.draft("RGB", (_HASH_SIDE, _HASH_SIDE))
        im.load()
        if max(im.size) > _HASH_SIDE:
            im.thumbnail((_HASH_SIDE, _HASH_SIDE))
        return hash_image(im)
    except (FileSkipped, DedupeError):
        raise
    except Exception:
        # fingerprint_bytes words every decoding failure (bomb, truncated, corrupt) as a scan does.
        fingerprint.fingerprint_bytes(data, fingerprint.hash_bytes(data))
        raise FileSkipped("not a readable photo") from None


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    return hash_bytes(fingerprint.read_image_bytes(path))


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


# --- lists ----------------------------------------------------------------------------------------------------


def read_list(text: TextIO, source: str) -> list[PdqEntry]:
    """Parse a PDQ list; an error names the line. A hash without a label is labelled with itself."""
    entries: list[PdqEntry] = []
    try:
        for line_number, line in enumerate(bounded_lines(text, source), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            fields = next(csv.reader([stripped]))
            value = fields[0].strip().lower()
            if not _HEX.fullmatch(value):
                shown = value if len(value) <= 80 else f"{value[:80]}..."  # a damaged line can be megabytes long
                raise DedupeError(f"{source}, line {line_number}: a PDQ hash should be 64 hex digits, not {shown!r}")
            quality: int | None = None
            rest = [f.strip() for f in fields[1:]]
            if len(rest) >= 2 and rest[0].isdigit() and rest[0].isascii():
                # PDQ's quality is 0 to 100; a longer number would not fit SQLite's integers, or even int().
                if len(rest[0]) > 3 or int(rest[0]) > 100:
                    raise DedupeError(
                        f"{source}, line {line_number}: a PDQ quality should be 0 to 100, not {rest[0][:20]}"
                    )
                quality = int(rest[0])
                rest = rest[1:]
            label = ",".join(rest) or value
            if "\x00" in label:  # no path holds one, and PostgreSQL cannot store one
                raise DedupeError(f"{source}, line {line_number}: a label cannot hold a NUL character")
            entries.append(PdqEntry(value, label, quality))
    except UnicodeDecodeError:
        raise DedupeError(f"{source} is not UTF-8 text, not a list of PDQ hashes") from None
    except csv.Error as e:
        raise DedupeError(f"{source} is not a valid list of PDQ hashes: {e}") from None
    if not entries:
        raise DedupeError(f"{source} holds no PDQ hash")
    return entries


def write_list(entries: Iterable[PdqEntry], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    for e in entries:
        label = printable(e.label)  # one line, as exchange.write_list writes it
        writer.writerow((e.hash, "" if e.quality is None else e.quality, label))


def import_list(
    store: Store | PostgresStore, source: str | os.PathLike[str], *, replace: bool = False
) -> tuple[int, int, int]:
    """Add a PDQ list to the store ("-" reads standard input), all or none: (listed, added, replaced)."""
    name, entries = read_source(source, read_list)
    with store.transaction():
        replaced = store.forget_pdq() if replace else 0
        added = store.add_pdq(entries, name)
    return len(entries), added, replaced


def export_list(
    store: Store | PostgresStore,
    out: str | os.PathLike[str] | TextIO,
    roots: Sequence[str | os.PathLike[str]] = (),
    *,
    on_skip: Any = None,
) -> int:
    """Write PDQ hashes of the store's own images below the roots (read again from their files, each image once,
    labelled with its first path) and, with no roots, the PDQ hashes imported; returns how many.

    A file that cannot be read any more is passed to on_skip(path, reason) and left out.
    """
    real_roots = [os.path.realpath(os.fspath(r)) for r in roots]
    entries: list[PdqEntry] = []
    for listed in store.listed_under(real_roots, fingerprint.VERSION):
        try:
            value, quality = hash_file(listed.label)
        except FileSkipped as e:
            if on_skip is not None:
                on_skip(listed.label, e.reason)
            continue
        entries.append(PdqEntry(value, listed.label, quality))
    if not roots:
        entries += [entry for _, entry in store.pdq_entries()]
    if isinstance(out, str | os.PathLike):
        write_file(out, lambda f: write_list(entries, f))
    else:
        write_list(entries, out)
    return len(entries)


# --- matching -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PdqIndex:
    """An immutable in-memory snapshot of a store's PDQ hashes (32 bytes and a label each), for any thread."""

    ids: npt.NDArray[np.int64]
    words: npt.NDArray[np.uint64]  # shape (n, 4): the 256 bits as four 64-bit words
    labels: tuple[str, ...]

    @classmethod
    def load(cls, store: Store | PostgresStore) -> PdqIndex:
        return cls.of(store.pdq_entries())

    @classmethod
    def of(cls, entries: Sequence[tuple[int, PdqEntry]]) -> PdqIndex:
        raw = b"".join(bytes.fromhex(e.hash) for _, e in entries)
        words = np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 4)
        return cls(np.array([i for i, _ in entries], dtype=np.int64), words, tuple(e.label for _, e in entries))

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, value: str, threshold: int = PDQ_THRESHOLD, limit: int | None = None) -> list[SearchHit]:
        """Listed hashes within the threshold of value, closest first (then in the order imported)."""
        if not len(self):
            return []
        query = np.frombuffer(bytes.fromhex(value), dtype=">u8").astype(np.uint64)
        dist = np.bitwise_count(self.words ^ query).sum(axis=1, dtype=np.int64)
        idx = np.flatnonzero(dist <= threshold)
        order = idx[np.lexsort((self.ids[idx], dist[idx]))]
        if limit is not None:
            order = order[:limit]
        return [
            SearchHit(
                name=self.labels[i],
                source=HitSource.IMPORTED,
                match=MatchKind.NEAR,
                distance=int(dist[i]),
                dhash_distance=0,
                content_hash="",
                width=0,
                height=0,
                hash="pdq",
            )
            for i in order.tolist()
        ]


__all__ = [
    "INSTALL",
    "PDQ_BITS",
    "PDQ_THRESHOLD",
    "PdqIndex",
    "distance",
    "export_list",
    "hash_bytes",
    "hash_file",
    "hash_image",
    "import_list",
    "read_list",
    "write_list",
]
