"""Path or image in, fingerprint out: the only user of Pillow and ImageHash.

About 850 lines, over the house's 700: it is one pipeline from bytes to a fingerprint (sniffing, decoding at reduced
size, RAW previews, the perceptual, turned and window hashes), and keeping every Pillow call in one module is what
lets the engine below it run without Pillow. What needs no Pillow lives beside it: the content and image-data hashes
(content_hash.py) and the crop windows' cell means (windows.py).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageStat, UnidentifiedImageError

from dedupe import png, webp
from dedupe.content_hash import hash_bytes, hash_file, image_data_hash, jpeg_segments, libjpeg_jfif
from dedupe.errors import FileSkipped
from dedupe.models import (
    CROP_BYTES,
    CROP_SIDE,
    CROP_WINDOWS,
    HASH_SIZE,
    RAW_PREFIX,
    TRANSFORMS,
    VERSION,
    WORK_SIZE,
    Fingerprint,
    SamePixels,
    hamming,
)
from dedupe.windows import cell_means

# The plugins of the photo formats, so that the formats= allow-list below can name them; not all of Pillow's (they
# take 20 ms of a one-image `dedupe check`): Image.open loads the others itself when it is asked for them.
for _plugin in ("Jpeg", "Png", "Gif", "Bmp", "Tiff", "WebP", "Avif"):
    try:
        __import__(f"PIL.{_plugin}ImagePlugin")
    except ImportError:  # no AVIF plugin before Pillow 11.3: as Image.init() would, go without
        continue

# Only photo formats reach a decoder: a PSD, EPS or PDF renamed .jpg is refused before any parser sees it.
# (Camera MPO files open through the JPEG decoder.)
# Those whose decoder is missing (HEIF without pillow-heif) are left out.
# HEIF is added once a file announces it (_heif_support): pillow-heif takes 5 ms of every start to load.
PHOTO_FORMATS = tuple(f for f in ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF") if f in Image.OPEN)
IMAGE_EXTENSIONS = frozenset(
    (".jpg .jpeg .jpe .jfif .png .apng .gif .bmp .dib .tif .tiff .webp .heic .heif .hif .avif").split()  # noqa: SIM905
)
# Camera RAW files: recognised by name AND content, fingerprinted from their largest embedded JPEG preview.
RAW_EXTENSIONS = frozenset(
    (".cr2 .cr3 .nef .nrw .arw .srf .sr2 .dng .raf .orf .rw2 .pef .srw .x3f .3fr .iiq .erf .kdc .mrw").split()  # noqa: SIM905
)
NO_PREVIEW = "RAW file without an embedded preview"
_REDUCING_GAP = 2.0  # working_image first reduces by a whole factor to at least twice WORK_SIZE (Image.resize)
LOW_INFO_STDDEV = 3.0  # a grey-level spread below this is a blank or nearly uniform picture
BACKGROUND = (128, 128, 128)  # transparent pixels are flattened onto mid-grey: white or black art stays visible

# Stored beside every fingerprint: a change to any part of the pipeline re-fingerprints cleanly.
# No photo this large decodes within Pillow's pixel limit; reading it whole would only exhaust memory.
MAX_FILE_BYTES = 1 << 30

_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
_ORIENTATION_TAG = 0x0112
_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 36867
_DATETIME = 306
_SUBSEC_ORIGINAL = 37521
_MAKE = 271
_MODEL = 272
# Pillow's transposes, in the order of models.TRANSFORMS.
_DIHEDRAL = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_270,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
assert len(_DIHEDRAL) == len(TRANSFORMS)
# What EXIF orientation values mean, as Pillow transposes (see ImageOps.exif_transpose).
_TRANSPOSE = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def sniff_format(head: bytes) -> str | None:
    """The photo format that a file's first bytes announce, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 26:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and (head[8:12] in _HEIF_BRANDS or any(b in head[16:64] for b in _HEIF_BRANDS)):
        return "HEIF"
    return None


def raw_signature(head: bytes) -> bool:
    """Whether a file's first bytes are those of a camera RAW container (TIFF-based or one of its own)."""
    return (
        head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FOVb", b"\x00MRM", b"IIII")
        or head[4:12] == b"ftypcrx "
        or head.startswith(b"FUJIFILMCCD-RAW")
    )


def raw_extension(path: str | os.PathLike[str] | None, head: bytes) -> str | None:
    """The RAW extension ("nef") of a file named like a RAW whose content is one too, else None."""
    if path is None:
        return None
    suffix = Path(path).suffix.lower()
    return suffix[1:] if suffix in RAW_EXTENSIONS and raw_signature(head) else None


def is_raw(fp: Fingerprint) -> bool:
    return fp.format.startswith(RAW_PREFIX)


def fingerprint_file(path: str | os.PathLike[str]) -> Fingerprint:
    """Fingerprint one file; a file that cannot be read or decoded raises FileSkipped with the reason."""
    data = read_image_bytes(path)
    return fingerprint_bytes(data, hash_bytes(data), name=path)


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a file that looks like an image, refusing anything else before reading it all."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(64)
            if not head:
                raise FileSkipped("empty file", ignorable=not _image_name(path))
            if sniff_format(head) is None and raw_extension(path, head) is None:
                raise FileSkipped("not an image file (unrecognised content)", ignorable=not _image_name(path))
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise FileSkipped(f"too large for a photo ({size / (1 << 30):.1f} GiB; the limit is 1 GiB)")
            f.seek(0)
            # One read of the size stat gave: read() to the end reads a little, then doubles its buffer and reads
            # again, and shrinks it once more at the end; what grew since the stat (or all of a file whose file
            # system tells no size) is read on after it, by read() in one piece: appending piece by piece would
            # copy all read so far each time.
            data = f.read(size)
            if more := f.read(1 << 20):
                data = b"".join((data, more, f.read()))
            return data
    except FileNotFoundError:
        raise FileSkipped("vanished during the scan", transient=True) from None
    except PermissionError:
        raise FileSkipped("permission denied", transient=True) from None
    except IsADirectoryError:
        raise FileSkipped("is a folder", transient=True) from None
    except OSError as e:
        raise FileSkipped(f"cannot read: {e.strerror or e}", transient=True) from None


def _image_name(path: str | os.PathLike[str]) -> bool:
    suffix = Path(path).suffix.lower()
    return suffix in IMAGE_EXTENSIONS or suffix in RAW_EXTENSIONS


def fingerprint_bytes(data: bytes, content_hash: str, *, name: str | os.PathLike[str] | None = None) -> Fingerprint:
    """Fingerprint an image held in memory; raises FileSkipped when it is not a readable photo.

    name: the file's name, when known; a RAW file is recognised by its name and its content together.
    """
    result = fingerprint_unless_claimed(data, content_hash, name=name)
    assert isinstance(result, Fingerprint)  # nothing claimed: always decoded
    return result


def fingerprint_unless_claimed(
    data: bytes,
    content_hash: str,
    *,
    name: str | os.PathLike[str] | None = None,
    claim: Callable[[str], bool] | None = None,
) -> Fingerprint | SamePixels:
    """fingerprint_bytes, but a picture is decoded only if claim(key) says that no other file with the same
    image data is decoded for it (key names what decides the pixels); else its SamePixels is returned.

    Decoding is most of a fingerprint's cost, and an edit of a photo's metadata (dates, tags, a rating) leaves
    its image data as it was. Without claim, every picture is decoded.
    """
    try:
        ext = raw_extension(name, data[:64])
        if ext is not None:
            return _fingerprint_raw(data, content_hash, ext)
        return _fingerprint(data, content_hash, claim)
    except FileSkipped:
        raise
    except Image.DecompressionBombError as e:
        raise FileSkipped(f"refused as a decompression bomb: {_first_line(e)}") from None
    except MemoryError:
        raise FileSkipped("too large to decode in memory", transient=True) from None
    except UnidentifiedImageError:
        if sniff_format(data[:64]) == "HEIF" and not _heif_support():
            raise FileSkipped("unsupported format: HEIC/HEIF needs pillow-heif (pip install pillow-heif)") from None
        raise FileSkipped("not a readable photo (format not recognised)") from None
    except OSError as e:
        text = _first_line(e)
        if "truncated" in text.lower():  # Pillow says "image file is truncated" or "Truncated File Read"
            raise FileSkipped(f"truncated image: {text}") from None
        raise FileSkipped(f"corrupt image: {text}") from None
    except Exception as e:  # Pillow's parsers raise many types on hostile input
        raise FileSkipped(f"corrupt image: {type(e).__name__}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def open_image(data: bytes) -> Image.Image:
    """Open photo bytes with only the photo decoders, keeping Pillow's decompression-bomb limit."""
    formats: tuple[str, ...] = PHOTO_FORMATS
    if sniff_format(data[:64]) == "HEIF" and _heif_support():
        formats += ("HEIF",)
    with warnings.catch_warnings():
        # Between Pillow's warning and error limits lie real 100-megapixel photos: allow them quietly.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=formats)


@functools.cache
def _heif_support() -> bool:
    """Whether HEIC/HEIF files can be decoded: pillow-heif loaded and its opener registered, on the first such
    file. Without it (a broken install) those files are skipped with the reason; everything else works."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _fingerprint(
    data: bytes, content_hash: str, claim: Callable[[str], bool] | None = None
) -> Fingerprint | SamePixels:
    im = open_image(data)
    fmt = im.format or "?"
    exif = _exif(data, im)
    orientation = exif.get(_ORIENTATION_TAG, 1)
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        orientation = 1
    width, height = im.size
    if orientation >= 5:
        width, height = height, width
    taken = _date_taken(exif)
    single = getattr(im, "n_frames", 1) == 1
    data_hash = image_data_hash(data, fmt, orientation) if single else None
    key = None if claim is None or data_hash is None else _pixels_key(data, im, data_hash)
    if key is not None and claim is not None and not claim(key):
        return SamePixels(key, content_hash, taken, _camera(exif))
    if fmt in ("JPEG", "MPO"):
        # A reduced-scale decode is several times faster and gives the same perceptual hashes.
        im.draft("RGB", (WORK_SIZE, WORK_SIZE))
    reduced = _webp_reduced(data, im) if fmt == "WEBP" else None
    if fmt == "PNG" and single:
        im = png.decoded(data, im) or im  # what follows reads only its pixels, mode and size
    if reduced is None:
        im.load()
    perceptual = _perceptual(working_image(reduced or im, orientation))
    colour = colour_image(reduced or im, orientation)
    if colour is not None:
        perceptual = _with_colour_reading(colour, perceptual)
    phash, dhash, low_info, variants, crops = perceptual
    # A blank picture is only ever grouped by its image hash, so for it that hash is the decoded pixels
    # (the same blank in PNG and BMP is the same picture); for others it is the cheaper data hash.
    if not single:
        # The perceptual hashes see the first frame only: files with several frames (animations, multi-page TIFFs)
        # are the same image only when they have the same bytes, so that no frame is lost with a copy.
        image_hash = hash_bytes(f"frames:{content_hash}".encode())
    else:
        data_hash = None if low_info and fmt not in ("JPEG", "MPO") else data_hash
        image_hash = data_hash or _pixel_hash(im, orientation)
    return Fingerprint(
        content_hash=content_hash,
        image_hash=image_hash,
        format=fmt,
        width=width,
        height=height,
        phash=phash,
        dhash=dhash,
        taken=taken,
        low_info=low_info,
        variants=variants,
        camera=_camera(exif),
        crops=crops,
    )


def _exif(data: bytes, im: Image.Image) -> Image.Exif:
    """im.getexif(), without decoding a still PNG whose EXIF and text chunks all come before its image data, and
    empty when the EXIF block cannot be read (_exif_or_empty).

    Pillow's getexif decodes a whole PNG that has no eXIf chunk before its image data, to read any after it:
    when none of the chunks it reads lies there, what Pillow read when opening the file is all there is.
    """
    if im.format != "PNG":
        return _exif_or_empty(im.getexif)
    animated = getattr(im, "n_frames", 1) != 1
    if "exif" not in im.info and (animated or png.after_image_data(data, png.EXIF_CHUNKS)):
        im.load()  # what Pillow's getexif does first: a damaged picture fails here, as one
    return _exif_or_empty(lambda: Image.Image.getexif(im))


def _exif_or_empty(read: Callable[[], Image.Exif]) -> Image.Exif:
    """read(), or no EXIF when the block is damaged (a TIFF header that is not one, a cut directory). Pillow
    ignores such a block when it reads a JPEG's resolution from it, and then reads it as empty, but raises when
    asked for it first (a JPEG with a JFIF resolution, a PNG): a damaged block costs the metadata, not the photo."""
    try:
        return read()
    except MemoryError:
        raise  # not the block's fault: the file is skipped as transient and read again by the next scan
    except Exception:  # Pillow's TIFF reader raises many types on hostile input
        return Image.Exif()


def _pixels_key(data: bytes, im: Image.Image, data_hash: str) -> str | None:
    """What decides the pixels that a single-frame picture decodes to: its image data (data_hash, which holds the
    format and orientation), and what Pillow read of it that the data hash leaves out: the mode and size (a
    WebP's VP8X chunk announces them), and for a JPEG whether it has a JFIF segment (by which libjpeg tells
    YCbCr from RGB). None when that is not all: a WebP whose RIFF size is not its length (libwebp reads to it),
    a PNG still to decode that has chunks Pillow reads after its image data (its decoding reads them then, and a
    malformed pHYs, which the data hash leaves out, fails it)."""
    if im.format == "WEBP" and int.from_bytes(data[4:8], "little") + 8 != len(data):
        return None
    still_to_decode = isinstance(im, ImageFile.ImageFile) and bool(im.tile)
    if im.format == "PNG" and still_to_decode and png.after_image_data(data, png.PILLOW_READS):
        return None
    jfif = im.format in ("JPEG", "MPO") and _libjpeg_jfif(memoryview(data))
    return hash_bytes(f"{data_hash}:{im.mode}:{im.size}:{jfif}".encode())


def _libjpeg_jfif(data: memoryview) -> bool:
    """Whether libjpeg sees a JFIF segment before the scan: an APP0 of at least 14 bytes starting "JFIF" and a NUL.
    Pillow's info["jfif"] is set for any APP0 starting "JFIF", so it cannot tell the two apart, and libjpeg reads
    a three-channel picture as YCbCr or RGB by it."""
    return any(marker == 0xE0 and libjpeg_jfif(data, start, end) for marker, start, end in jpeg_segments(data))


def _webp_reduced(data: bytes, im: Image.Image) -> Image.Image | None:
    """A still WebP decoded straight to the size that working_image first reduces a picture to (Image.reduce by
    a whole factor, as resize's reducing_gap chooses it), by libwebp's scaler; None when that cannot be done
    here, and Pillow decodes it whole."""
    if getattr(im, "n_frames", 1) > 1:
        return None
    width, height = im.size
    target_width, target_height = _fitted(im.size, WORK_SIZE)
    fx = int(width / target_width / _REDUCING_GAP) or 1
    fy = int(height / target_height / _REDUCING_GAP) or 1
    if fx == fy == 1:
        return None
    size = (-(-width // fx), -(-height // fy))
    decoded = webp.decode_reduced(data, *size)
    return None if decoded is None else png.image_of(decoded[0], size, decoded[1])


# A marker after entropy-coded data: 0xFF followed by anything but a stuffed zero, a restart or a fill byte.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_MAX_SOI = 4096  # start-of-image candidates looked at in one file (random sensor data holds a few by chance)
_MAX_DECODES = 8  # previews tried, largest first


def _jpeg_end(data: bytes, start: int) -> int | None:
    """The end of the JPEG stream starting at start (just after its EOI), by following its segments; None if
    the bytes there are not a complete JPEG. Entropy-coded data is skipped by looking for the next marker, so an
    EXIF thumbnail inside the preview's APP1 segment does not end the preview early."""
    i, n = start + 2, len(data)
    while i + 2 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0xD9:
            return i + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            i += 2
            continue
        if marker in (0x00, 0xD8) or i + 4 > n:
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        end = i + 2 + length
        if length < 2 or end > n:
            return None
        if marker == 0xDA:
            found = _JPEG_MARKER.search(data, end)
            if found is None:
                return None
            i = found.start()
        else:
            i = end
    return None


def jpeg_streams(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every complete JPEG stream inside a file's bytes, largest first.

    Every RAW format keeps its previews as plain JPEG streams (the spans that TIFF's JPEGInterchangeFormat and
    DNG's preview strips point to are among them), so one search covers them all without a parser per format.
    """
    found: set[tuple[int, int]] = set()
    pos = 0
    for _ in range(_MAX_SOI):
        start = data.find(b"\xff\xd8\xff", pos)
        if start < 0:
            break
        end = _jpeg_end(data, start)
        if end is not None:
            found.add((start, end))
        pos = start + 3
    return sorted(found, key=lambda span: (span[0] - span[1], span[0]))


def raw_preview(data: bytes) -> Image.Image | None:
    """The largest embedded JPEG preview of a RAW file that decodes (loaded at most WORK_SIZE-ish), or None.

    Its size is the preview's full size: a reduced decode keeps the size it had before, in im.info.
    """
    for start, end in jpeg_streams(data)[:_MAX_DECODES]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data[start:end]), formats=("JPEG",))
                size = im.size
                im.draft("RGB", (WORK_SIZE, WORK_SIZE))
                im.load()
        except Image.DecompressionBombError:
            raise
        except Exception:  # lossless sensor data (SOF3) and damaged streams do not decode: try the next
            continue
        im.info["dedupe_full_size"] = size
        return im
    return None


def _container_exif(data: bytes) -> Image.Exif:
    """The TIFF tags of a TIFF-based RAW (orientation, date, camera); empty for other containers."""
    exif = Image.Exif()
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        try:
            exif.load(data)
        except Exception:  # a damaged directory only costs the metadata
            return Image.Exif()
    return exif


def _fingerprint_raw(data: bytes, content_hash: str, ext: str) -> Fingerprint:
    im = raw_preview(data)
    if im is None:
        raise FileSkipped(NO_PREVIEW)
    exif = _container_exif(data)
    preview_exif = _exif_or_empty(im.getexif)
    orientation = exif.get(_ORIENTATION_TAG) or preview_exif.get(_ORIENTATION_TAG, 1)
    if not isinstance(orientation, int) or orientation not in range(1, 9):
        orientation = 1
    width, height = im.info["dedupe_full_size"]
    if orientation >= 5:
        width, height = height, width
    phash, dhash, low_info, variants, crops = _perceptual(working_image(im, orientation))
    return Fingerprint(
        content_hash=content_hash,
        # Only the same bytes are the same RAW: two files with one preview may hold different sensor data.
        image_hash=hash_bytes(f"raw:{content_hash}".encode()),
        format=f"{RAW_PREFIX}{ext}",
        width=width,
        height=height,
        phash=phash,
        dhash=dhash,
        taken=_date_taken(exif) or _date_taken(preview_exif),
        low_info=low_info,
        variants=variants,
        camera=_camera(exif) or _camera(preview_exif),
        crops=crops,
    )


# pHash, dHash, low-information, turned pHashes, crop signature
Perceptual = tuple[int, int, bool, tuple[int, ...], bytes]


def _perceptual(work: Image.Image) -> Perceptual:
    """The perceptual part of a fingerprint, from the working image: pHash, dHash, whether it is low-information
    (blank, nearly uniform or a degenerate pHash), the turned and mirrored pHashes, and the crop signature (none
    for a low-information picture, which only groups by its image data)."""
    phash, *variants = _dihedral_phashes(_phash_pixels(work))
    dhash = _dhash(work)
    low_info = is_low_info(work) or degenerate(phash)
    return phash, dhash, low_info, tuple(variants), b"" if low_info else crop_signature(work)


def colour_image(im: Image.Image, orientation: int = 1) -> Image.Image | None:
    """The working image of a picture's colour channels alone, when it has transparent pixels (else None): what a
    copy shows when a tool drops the alpha channel (Pillow's convert("RGB"), most converters)."""
    im = _normalise_mode(im)
    if im.mode != "RGBA" or im.getchannel("A").getextrema()[0] == 255:
        return None
    return working_image(im.convert("RGB"), orientation)


def _with_colour_reading(colour: Image.Image, flattened: Perceptual) -> Perceptual:
    """The perceptual part of a picture with transparency, from its flattened one (see _perceptual) and the
    working image of its colours alone: the colour reading's pHash, dHash and turned pHashes follow the 7 turns
    (models.ALPHA_VARIANTS). A reading that says nothing is left out: a blank colour layer (the picture is in its
    alpha) leaves the flattened reading alone, and a flattened picture that says nothing (nearly transparent
    everywhere) is read by its colours alone."""
    phash, dhash, low_info, variants, crops = flattened
    colour_phash, *turns = _dihedral_phashes(_phash_pixels(colour))
    if is_low_info(colour) or degenerate(colour_phash):
        return phash, dhash, low_info, variants, crops
    if low_info:
        return _perceptual(colour)
    return phash, dhash, low_info, (*variants, colour_phash, _dhash(colour), *turns), crops


def working_image(im: Image.Image, orientation: int = 1) -> Image.Image:
    """A small upright RGB copy with transparency flattened: what perceptual hashes are taken from."""
    im = _normalise_mode(im)
    if max(im.size) > WORK_SIZE:
        im = im.resize(_fitted(im.size, WORK_SIZE), Image.Resampling.BILINEAR, reducing_gap=_REDUCING_GAP)
    return _flat_upright(im, orientation)


def _fitted(size: tuple[int, int], side: int) -> tuple[int, int]:
    """A picture's size scaled so that its long side is side pixels (each side at least 1)."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _flat_upright(im: Image.Image, orientation: int) -> Image.Image:
    """RGB, transparency flattened onto the fixed background, turned as its EXIF orientation says."""
    if im.mode == "RGBA":
        flat = Image.new("RGBA", im.size, (*BACKGROUND, 255))
        flat.alpha_composite(im)
        im = flat
    im = im.convert("RGB")
    for method in _TRANSPOSE.get(orientation, ()):
        im = im.transpose(method)
    return im


def _normalise_mode(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        im = im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif im.mode == "F":
        im = im.convert("L")
    transparent = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if transparent:
        # convert() to its own mode copies the whole decoded picture (twice per fingerprint); no caller changes it.
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode in ("RGB", "L"):
        return im
    return im.convert("RGB")


def perceptual_hashes(work: Image.Image) -> tuple[int, int]:
    """64-bit pHash and dHash of a working image, as unsigned integers."""
    return phash(work), _dhash(work)


def _dhash(work: Image.Image) -> int:
    """ImageHash's dhash (hash_size 8), the same bits, as an unsigned integer: whether each of a 9 x 8 grey copy's
    pixels is brighter than the one to its left, row by row, the first the highest bit. Made here so that a scan
    need not import ImageHash (about 9 ms of every start; a test checks the bits against it)."""
    grey = np.asarray(work.convert("L").resize((HASH_SIZE + 1, HASH_SIZE), Image.Resampling.LANCZOS))
    bits = (grey[:, 1:] > grey[:, :-1]).reshape(HASH_SIZE * HASH_SIZE)
    return int((bits.astype(np.uint64) * _BIT_WEIGHTS).sum(dtype=np.uint64))


def dihedral_hashes(work: Image.Image) -> tuple[int, ...]:
    """pHash of the working image turned and mirrored by each of models.TRANSFORMS.

    Turning commutes with the pHash's resize to 32 x 32 (up to the rounding of its two passes), so the eight
    hashes come from one resize: its pixels are turned as arrays, and all eight DCTs are one product."""
    return _dihedral_phashes(_phash_pixels(work))[1:]


# Pillow's transposes of _DIHEDRAL on a [y, x] array.
_ARRAY_DIHEDRAL: tuple[Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]], ...] = (
    lambda a: np.rot90(a, 1),
    lambda a: np.rot90(a, 2),
    lambda a: np.rot90(a, 3),
    lambda a: a[:, ::-1],
    lambda a: a[::-1],
    lambda a: a.T,
    lambda a: np.rot90(a, 2).T,
)
assert len(_ARRAY_DIHEDRAL) == len(_DIHEDRAL)


def _dihedral_phashes(pixels: npt.NDArray[np.float64]) -> tuple[int, ...]:
    """The pHash of the pHash pixels upright, then turned by each of _DIHEDRAL."""
    stack = np.stack([pixels, *(turn(pixels) for turn in _ARRAY_DIHEDRAL)])
    return tuple(int(h) for h in _phash_bits(stack))


_BIT_WEIGHTS = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)


def crop_signature(work: Image.Image) -> bytes:
    """For each of CROP_WINDOWS: a 64-bit pHash and dHash of the window and its mean colour (two chromaticities
    and the brightness, 0-255), packed as all pHashes, then all dHashes (8 bytes each, big-endian), then the
    colours (3 bytes each). Taken from a small copy (about 1 ms), so these hashes are comparable with each
    other, not with the pHash and dHash of perceptual_hashes.

    Every window is cut into cells (32 x 32 for the pHash, 9 x 8 for the dHash, one for the colour) whose
    means, partial pixels at their edges included, come from running sums: no resize per window. numpy only
    multiplies small matrices: a large product would start OpenBLAS threads in every scan worker, which doubled
    the time of a scan on 2 cores.
    """
    small = work
    if max(small.size) > CROP_SIDE:
        small = small.resize(_fitted(small.size, CROP_SIDE), Image.Resampling.BOX)
    rgb = np.asarray(small.convert("RGB"), dtype=np.float64)
    # ITU-R 601-2 luma, as Pillow's convert("L") weighs it.
    grey = (rgb @ np.array([0.299, 0.587, 0.114]))[:, :, None]
    count = len(CROP_WINDOWS)
    tiles = np.rint(cell_means(grey, _PHASH_SIDE, _PHASH_SIDE))[..., 0]
    pk = _phash_bits(tiles)
    grid = np.rint(cell_means(grey, HASH_SIZE + 1, HASH_SIZE))[..., 0]
    dbits = (grid[:, :, 1:] > grid[:, :, :-1]).reshape(count, HASH_SIZE * HASH_SIZE)
    dk = (dbits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)
    mean = cell_means(rgb, 1, 1).reshape(count, 3)
    total = mean.sum(axis=1, keepdims=True)
    colour = np.concatenate([255 * mean[:, :2] / np.maximum(total, 1e-9), total / 3], axis=1)
    signature: bytes = pk.astype(">u8").tobytes() + dk.astype(">u8").tobytes()
    return signature + np.clip(np.round(colour), 0, 255).astype(np.uint8).tobytes()


_PHASH_SIDE = HASH_SIZE * 4
# The first HASH_SIZE rows of the unnormalised DCT-II matrix of size _PHASH_SIDE, as scipy.fftpack.dct uses it.
_DCT_ROWS = 2 * np.cos(np.pi * np.outer(np.arange(HASH_SIZE), 2 * np.arange(_PHASH_SIDE) + 1) / (2 * _PHASH_SIDE))


def phash(image: Image.Image) -> int:
    """ImageHash's phash (hash_size 8, highfreq_factor 4), the same bits, as an unsigned integer.

    The difference is how the low-frequency DCT block is computed: as two small matrix products instead of
    scipy.fftpack.dct (importing SciPy takes about 0.3 s, which a one-image `dedupe check` cannot afford), and
    rounded. A test checks that the bits equal imagehash.phash's on photographs; on synthetic flat or gradient
    pictures, whose bits ImageHash draws from float noise, ours are deterministic instead.
    """
    return int(_phash_bits(_phash_pixels(image)))


def _phash_pixels(image: Image.Image) -> npt.NDArray[np.float64]:
    return np.asarray(image.convert("L").resize((_PHASH_SIDE, _PHASH_SIDE), Image.Resampling.LANCZOS), np.float64)


def _phash_bits(tiles: npt.NDArray[np.float64]) -> npt.NDArray[np.uint64]:
    """The pHash bits of _PHASH_SIDE-square grey tiles (any leading axes), as unsigned integers."""
    # Rounded so that coefficients which are zero in exact arithmetic (flat or gradient pictures) compare as
    # zero, not by the float noise of one DCT implementation or another; photographs are far from such ties.
    low = np.round(_DCT_ROWS @ tiles @ _DCT_ROWS.T, 6).reshape(*tiles.shape[:-2], HASH_SIZE * HASH_SIZE)
    # np.median's value, the mean of the two middle values, without its check for NaN (DCT coefficients of pixels
    # are never NaN), which imports numpy.ma: 10 ms of a one-image `dedupe check`.
    half = low.shape[-1] // 2
    middle = np.partition(low, (half - 1, half), axis=-1)[..., half - 1 : half + 1]
    bits = low > middle.mean(axis=-1, keepdims=True)
    packed: npt.NDArray[np.uint64] = (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=-1, dtype=np.uint64)
    return packed


def is_low_info(work: Image.Image) -> bool:
    """Blank, single-colour or nearly uniform pictures all hash alike and must not pair up."""
    return float(ImageStat.Stat(work.convert("L")).stddev[0]) < LOW_INFO_STDDEV


def degenerate(phash: int) -> bool:
    """A pHash that says little: its bits are the 64 low frequencies above their median, so a photograph has 32
    of them set (measured: all 581 photos and edited copies of the benchmark), but a smooth gradient, whose
    frequencies are mostly exactly zero, has a handful (any two gradients would match). Such pictures, like
    blank ones, only group by their image data."""
    return phash.bit_count() < 24


def _date_taken(exif: Image.Exif) -> str | None:
    """EXIF DateTimeOriginal as ISO 8601, with SubSecTimeOriginal's fraction when there is one."""
    ifd = exif.get_ifd(_EXIF_IFD)
    original = ifd.get(_DATETIME_ORIGINAL)
    raw = original or exif.get(_DATETIME)
    if not isinstance(raw, str):
        return None
    try:
        taken = _exif_datetime(raw.strip("\x00 ").strip())
    except ValueError:
        return None
    subsec = ifd.get(_SUBSEC_ORIGINAL) if original else None
    if isinstance(subsec, str):
        digits = subsec.strip("\x00 ").strip()
        if digits.isdecimal():  # not isdigit: Pillow reads byte 0xB2 as "²", a digit int() refuses
            taken = taken.replace(microsecond=int(digits[:6].ljust(6, "0")))
    return taken.isoformat()


# The usual shape of an EXIF date, in ASCII digits: for it, strptime's answer without strptime.
_EXIF_DATETIME = re.compile(r"([0-9]{4}):([0-9]{2}):([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")


def _exif_datetime(text: str) -> datetime:
    """datetime.strptime(text, "%Y:%m:%d %H:%M:%S"), ValueError included. strptime takes 0.2 ms a photo (and
    loads its locale tables in every worker); the usual shape is read directly, where an impossible date (month
    13, 30 February, second 60) raises ValueError as strptime does. Anything else (other spaces, one-digit
    fields, other digits) is left to strptime."""
    found = _EXIF_DATETIME.fullmatch(text)
    if found is None:
        return datetime.strptime(text, "%Y:%m:%d %H:%M:%S")
    year, month, day, hour, minute, second = map(int, found.groups())
    return datetime(year, month, day, hour, minute, second)


def _camera(exif: Image.Exif) -> str | None:
    parts = [v.strip("\x00 ").strip() for v in (exif.get(_MAKE), exif.get(_MODEL)) if isinstance(v, str)]
    name = " ".join(p for p in parts if p)
    return name or None


def _pixel_hash(im: Image.Image, orientation: int) -> str:
    """A hash of the decoded pixels, in bands of rows so that a large image is never copied whole."""
    digest = hashlib.blake2b(f"px:{im.mode}:{im.size}:{orientation}:".encode(), digest_size=16)
    rows = max(1, (8 << 20) // max(1, im.width * len(im.getbands())))
    for top in range(0, im.height, rows):
        digest.update(im.crop((0, top, im.width, min(im.height, top + rows))).tobytes())
    return digest.hexdigest()


# The edits `dedupe calibrate` makes of a user's photo: name -> what a true copy may have been through.
CALIBRATION_EDITS = ("resize50", "jpeg_q60", "png", "bright20", "crop5", "rot90", "mirror")


def edited_copies(data: bytes) -> dict[str, tuple[str, bytes]]:
    """Edited copies of a photo, as calibrate uses them: edit name -> (file suffix, encoded bytes).

    The photo is first made upright and small enough (1600 px) for the edits to be quick.
    """
    im = open_image(data)
    orientation = _exif(data, im).get(_ORIENTATION_TAG, 1)
    im.draft("RGB", (1600, 1600))
    im = _normalise_mode(im)
    if im.mode == "RGBA":
        flat = Image.new("RGBA", im.size, (*BACKGROUND, 255))
        flat.alpha_composite(im)
        im = flat
    im = im.convert("RGB")
    for method in _TRANSPOSE.get(orientation if isinstance(orientation, int) else 1, ()):
        im = im.transpose(method)
    im.thumbnail((1600, 1600))
    w, h = im.size
    dx, dy = round(w * 0.05 / 2), round(h * 0.05 / 2)
    edits = {
        "resize50": (".jpg", im.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), {"quality": 90}),
        "jpeg_q60": (".jpg", im, {"quality": 60}),
        "png": (".png", im, {}),
        "bright20": (".jpg", im.point(lambda v: min(255, round(v * 1.2))), {"quality": 90}),
        "crop5": (".jpg", im.crop((dx, dy, w - dx, h - dy)), {"quality": 90}),
        "rot90": (".jpg", im.transpose(Image.Transpose.ROTATE_270), {"quality": 90}),
        "mirror": (".jpg", im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), {"quality": 90}),
    }
    out: dict[str, tuple[str, bytes]] = {}
    for name in CALIBRATION_EDITS:
        suffix, edited, params = edits[name]
        buf = io.BytesIO()
        edited.save(buf, format="PNG" if suffix == ".png" else "JPEG", **params)
        out[name] = (suffix, buf.getvalue())
    return out


def thumbnail_jpeg(path: str | os.PathLike[str], size: int = 256, quality: int = 80) -> bytes:
    """A small upright JPEG of a photo, for the HTML report; raises FileSkipped when it cannot be read."""
    data = read_image_bytes(path)
    try:
        preview = raw_preview(data) if raw_extension(path, data[:64]) else None
        im = preview or open_image(data)
        orientation = _container_exif(data).get(_ORIENTATION_TAG) or _exif(data, im).get(_ORIENTATION_TAG, 1)
        if not isinstance(orientation, int) or orientation not in range(1, 9):
            orientation = 1
        if preview is None and im.format in ("JPEG", "MPO"):
            im.draft("RGB", (size, size))
        im.load()
        im = _normalise_mode(im)
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        im = _flat_upright(im, orientation)
        out = io.BytesIO()
        im.save(out, "JPEG", quality=quality, optimize=True)
        return out.getvalue()
    except FileSkipped:
        raise
    except Exception as e:  # Pillow's parsers raise many types on hostile input
        raise FileSkipped(f"cannot make a thumbnail: {_first_line(e)}") from None


__all__ = [
    "CALIBRATION_EDITS",
    "CROP_BYTES",
    "CROP_WINDOWS",
    "HASH_SIZE",
    "IMAGE_EXTENSIONS",
    "NO_PREVIEW",
    "PHOTO_FORMATS",
    "RAW_EXTENSIONS",
    "VERSION",
    "WORK_SIZE",
    "colour_image",
    "dihedral_hashes",
    "edited_copies",
    "fingerprint_bytes",
    "fingerprint_file",
    "fingerprint_unless_claimed",
    "hamming",
    "hash_bytes",
    "hash_file",
    "is_raw",
    "jpeg_streams",
    "open_image",
    "perceptual_hashes",
    "raw_extension",
    "raw_preview",
    "raw_signature",
    "read_image_bytes",
    "sniff_format",
    "thumbnail_jpeg",
    "working_image",
]
