"""PNG decoded by libspng (through pyspng) when it gives the pixels Pillow's decoder would.

libspng's filters, in SIMD, decode an 8-bit PNG about a fifth sooner than Pillow. But it reads some files
otherwise: it ignores chunk CRCs and zlib's Adler-32, passes over chunks after the image data that Pillow reads
(a tRNS there makes a colour transparent, a malformed one fails Pillow's decode), and has no grey-with-alpha
output. Such files, and every PNG when pyspng is not installed, are left to Pillow (decoded returns None), so
errors are still reported the one way.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, PngImagePlugin

from dedupe.content_hash import png_chunks

try:
    import pyspng
except ImportError:  # a platform without its wheel: Pillow decodes every PNG then, a fifth slower
    pyspng = None


# PNG colour types (of 8 bits a sample) whose pixels libspng gives as Pillow does, and Pillow's mode for each.
# Grey with alpha is not among them: libspng has no such output format and refuses it.
_SPNG_MODES = {0: "L", 2: "RGB", 6: "RGBA"}
# The chunks Pillow's PNG reader interprets. It reads those after the image data when it finishes decoding: there a
# malformed one fails the decode, a tRNS makes a colour transparent and an fcTL is a frame's size, where libspng
# passes over them or reads them otherwise.
PILLOW_READS = frozenset(name[6:].encode() for name in vars(PngImagePlugin.PngStream) if name.startswith("chunk_"))
# The chunks from which Pillow's getexif reads (EXIF, and XMP or ImageMagick's raw EXIF profile in text).
EXIF_CHUNKS = frozenset((b"eXIf", b"tEXt", b"zTXt", b"iTXt"))
_APNG_CHUNKS = frozenset((b"acTL", b"fcTL", b"fdAT"))  # the first frame's size is its fcTL's to Pillow


def decoded(data: bytes, im: Image.Image) -> Image.Image | None:
    """A still PNG of 8-bit grey, colour or colour and alpha samples, without a transparent colour, decoded by
    libspng (pyspng): the same pixels as Pillow's decoder, which its filters, in SIMD, reach about a fifth
    sooner. None when pyspng is not installed, the picture is of another kind (palette, 16-bit, grey with alpha,
    a tRNS colour), libspng might read it otherwise than Pillow (_spng_reads_as_pillow) or refuses it: Pillow
    then decodes it, and words any error as before."""
    if pyspng is None or len(data) < 29 or data[12:16] != b"IHDR" or "transparency" in im.info:
        return None
    if not (isinstance(im, ImageFile.ImageFile) and im.tile):
        return None  # decoded already (Pillow's getexif decodes a PNG with metadata after its image data)
    mode = _SPNG_MODES.get(data[25]) if data[24] == 8 else None
    if mode is None or mode != im.mode or not _spng_reads_as_pillow(data):
        return None
    try:
        pixels = pyspng.load(data, mode)
    except Exception:  # libspng's errors (a damaged or truncated file) are reported by Pillow's decoder
        return None
    width, height = im.size
    if pixels.dtype != np.uint8 or pixels.shape[:2] != (height, width):
        return None
    # Grey and RGBA pixels are shared as they are; RGB ones are copied into Pillow's 4 bytes a pixel.
    return image_of(mode, im.size, pixels) if mode == "RGB" else Image.fromarray(pixels)


def _spng_reads_as_pillow(data: bytes) -> bool:
    """Whether libspng decodes this PNG to what Pillow's decoder gives: the chunks run whole up to IEND, every
    IDAT chunk's CRC matches its bytes, no chunk is APNG's, and after the image data come only IDAT chunks and
    chunks that Pillow does not read (PILLOW_READS).

    pyspng has libspng ignore CRCs, and libspng does not check zlib's Adler-32 either, so image data that rotted
    on disk would decode to other pixels without an error; Pillow's decoder reports it (the Adler-32 fails).
    Pillow also fails a file cut inside a chunk after its image data, or with a malformed chunk there that it
    reads, and makes a colour transparent by a tRNS chunk there; libspng decodes such files as if whole and
    opaque. Any such file is left to Pillow."""
    view = memoryview(data)
    for kind, start, end in png_chunks(view):
        if end > len(view) or kind in _APNG_CHUNKS:
            return False
        if kind == b"IEND":
            return not after_image_data(data, PILLOW_READS)
        if kind == b"IDAT" and zlib.crc32(view[start + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
            return False
    return False


def after_image_data(data: bytes, kinds: frozenset[bytes]) -> bool:
    """Whether a chunk of these kinds (PILLOW_READS, EXIF_CHUNKS) follows the image data, before IEND."""
    image_data = False
    for kind, _, _ in png_chunks(memoryview(data)):  # slices of a view are not copies
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            image_data = True
        elif image_data and kind in kinds:
            return True
    return False


def image_of(mode: str, size: tuple[int, int], pixels: bytes | npt.NDArray[np.uint8]) -> Image.Image:
    """Image.frombytes, without first filling the new picture with zeros (Pillow's frombytes does: about 3 ms
    for every 16 megapixels), which decoding then overwrites entirely."""
    im = Image.new(mode, size, None)
    im.frombytes(pixels)
    return im
