"""WebP decoded at a reduced size by libwebp's own scaler, when the library can be loaded.

Pillow decodes a WebP whole: about 0.25 s for a 16-megapixel picture, of which a fingerprint needs 512 pixels
across. libwebp can scale while it decodes (an area average, on the way out of the decoder), which is more
than twice as fast and never holds the whole picture in RGB. Pillow has no option for it, so the library is
called through ctypes: Pillow's own copy when its wheel brings one (the same code Pillow would run), else the
system's. Anything unusual (no library, an animation, a file libwebp refuses) returns None and the caller lets
Pillow decode the file as before, so errors are still reported the one way.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from collections.abc import Iterator
from pathlib import Path

_ABI = 0x0209  # WEBP_DECODER_ABI_VERSION of decode.h; the library checks the major byte
_MODE_RGB, _MODE_RGBA = 0, 1  # WEBP_CSP_MODE
_OK = 0  # VP8_STATUS_OK


class _Features(ctypes.Structure):
    _fields_ = [
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("has_alpha", ctypes.c_int),
        ("has_animation", ctypes.c_int),
        ("format", ctypes.c_int),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _RGBABuffer(ctypes.Structure):
    _fields_ = [("rgba", ctypes.c_void_p), ("stride", ctypes.c_int), ("size", ctypes.c_size_t)]


class _YUVABuffer(ctypes.Structure):
    _fields_ = [
        *((name, ctypes.c_void_p) for name in ("y", "u", "v", "a")),
        *((name, ctypes.c_int) for name in ("y_stride", "u_stride", "v_stride", "a_stride")),
        *((name, ctypes.c_size_t) for name in ("y_size", "u_size", "v_size", "a_size")),
    ]


class _Buffers(ctypes.Union):
    _fields_ = [("RGBA", _RGBABuffer), ("YUVA", _YUVABuffer)]


class _DecBuffer(ctypes.Structure):
    _fields_ = [
        ("colorspace", ctypes.c_int),
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("is_external_memory", ctypes.c_int),
        ("u", _Buffers),
        ("pad", ctypes.c_uint32 * 4),
        ("private_memory", ctypes.c_void_p),
    ]


class _Options(ctypes.Structure):
    _fields_ = [
        *(
            (name, ctypes.c_int)
            for name in (
                "bypass_filtering",
                "no_fancy_upsampling",
                "use_cropping",
                "crop_left",
                "crop_top",
                "crop_width",
                "crop_height",
                "use_scaling",
                "scaled_width",
                "scaled_height",
                "use_threads",
                "dithering_strength",
                "flip",
                "alpha_dithering_strength",
            )
        ),
        ("pad", ctypes.c_uint32 * 5),
    ]


class _Config(ctypes.Structure):
    _fields_ = [("input", _Features), ("output", _DecBuffer), ("options", _Options)]


def decode_reduced(data: bytes, width: int, height: int) -> tuple[str, bytes] | None:
    """The still WebP picture in data scaled to width x height while it is decoded: its mode ("RGB", or "RGBA"
    when it has transparency) and pixels. None when that cannot be done here."""
    lib = _library()
    if lib is None or width < 1 or height < 1:
        return None
    data = bytes(data)  # ctypes takes bytes only (a no-op for bytes)
    config = _Config()
    if not lib.WebPInitDecoderConfigInternal(ctypes.byref(config), _ABI):
        return None
    if lib.WebPGetFeaturesInternal(data, len(data), ctypes.byref(config.input), _ABI) != _OK:
        return None
    if config.input.has_animation or config.input.width < width or config.input.height < height:
        return None
    alpha = bool(config.input.has_alpha)
    channels = 4 if alpha else 3
    pixels = ctypes.create_string_buffer(width * height * channels)
    config.options.use_scaling = 1
    config.options.scaled_width, config.options.scaled_height = width, height
    config.output.colorspace = _MODE_RGBA if alpha else _MODE_RGB
    config.output.is_external_memory = 1
    config.output.u.RGBA.rgba = ctypes.cast(pixels, ctypes.c_void_p)
    config.output.u.RGBA.stride = width * channels
    config.output.u.RGBA.size = len(pixels)
    try:
        status = lib.WebPDecode(data, len(data), ctypes.byref(config))
    finally:
        lib.WebPFreeDecBuffer(ctypes.byref(config.output))
    if status != _OK:
        return None
    return ("RGBA" if alpha else "RGB"), pixels.raw


@functools.cache
def _library() -> ctypes.CDLL | None:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
            lib.WebPInitDecoderConfigInternal.argtypes = [ctypes.POINTER(_Config), ctypes.c_int]
            lib.WebPInitDecoderConfigInternal.restype = ctypes.c_int
            lib.WebPGetFeaturesInternal.argtypes = [
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.POINTER(_Features),
                ctypes.c_int,
            ]
            lib.WebPGetFeaturesInternal.restype = ctypes.c_int
            lib.WebPDecode.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(_Config)]
            lib.WebPDecode.restype = ctypes.c_int
            lib.WebPFreeDecBuffer.argtypes = [ctypes.POINTER(_DecBuffer)]
            lib.WebPFreeDecBuffer.restype = None
        except (OSError, AttributeError):  # not loadable here, or not libwebp's decoder
            continue
        return lib
    return None


def _candidates() -> Iterator[str]:
    """Where libwebp may be: beside Pillow in its wheel (Linux, then macOS), then the system's."""
    spec = importlib.util.find_spec("PIL")
    if spec is not None and spec.origin:
        pil = Path(spec.origin).parent
        yield from sorted(str(p) for p in (pil.parent / "pillow.libs").glob("libwebp-*.so*"))
        yield from sorted(str(p) for p in (pil / ".dylibs").glob("libwebp.*.dylib"))
    import ctypes.util  # only here: finding a library by name can run ldconfig

    found = ctypes.util.find_library("webp")
    if found:
        yield found
