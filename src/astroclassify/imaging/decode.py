"""Safe image decoding: JPEG/PNG/TIFF/WebP through Pillow, FITS through astropy.

Untrusted files reach this module (uploads, scraped images), so the pixel count is checked
from the header *before* any pixel is decoded (decompression bombs), truncated files are
errors rather than grey padding, and the format is judged by content, never by file name.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from astroclassify.config import DEFAULT_LIMITS, DEFAULT_MAX_FILE_BYTES, DecodeLimits
from astroclassify.errors import AstroClassifyWarning, FileTooLargeError, ImageDecodeError
from astroclassify.files.sizes import format_bytes
from astroclassify.imaging.stretch import FitsDisplay, stretch_to_uint8

if TYPE_CHECKING:
    from astroclassify.imaging.framing import Framing

__all__ = ["ALLOWED_FORMATS", "decode_image", "decode_pil", "has_image_signature", "read_image_bytes", "sniff_format"]

log = logging.getLogger(__name__)

# MPO is the multi-picture JPEG of phone cameras (stereo, depth): its first frame is the photo.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP", "GIF", "FITS"})
DRAFTABLE = frozenset({"JPEG", "MPO"})

# Never decode a truncated file silently; we check pixel counts ourselves, so Pillow's own
# bomb guard (a warning, then an error at twice the limit) is disabled in favour of ours.
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = None

_FITS_MAGIC = b"SIMPLE  ="
HIGH_DEPTH_DISPLAY = FitsDisplay(interval="percentile")
# Signatures of formats we accept: a file that starts like one but does not open is damaged,
# which deserves a different message from "not an image at all".
_SIGNATURES = {
    b"\xff\xd8\xff": "JPEG",
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF8": "GIF",
    b"BM": "BMP",
}


def has_image_signature(head: bytes) -> bool:
    """True when the first bytes are those of an accepted format (a cheap test before decoding)."""
    return (
        head.startswith(_FITS_MAGIC)
        or any(head.startswith(sig) for sig in _SIGNATURES)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    )


def sniff_format(data: bytes) -> str | None:
    """Return the image format found in the bytes' header, or None if not an image."""
    if data.startswith(_FITS_MAGIC):
        return "FITS"
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def read_image_bytes(source: str | Path | bytes, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Read a file (or pass bytes through), refusing empty and oversized input."""
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        name = "<bytes>"
    else:
        path = Path(source)
        name = str(path)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageDecodeError(f"{name}: file not found") from None
        except OSError as exc:
            raise ImageDecodeError(f"{name}: cannot read ({exc.strerror})") from None
        if path.is_dir():
            raise ImageDecodeError(f"{name}: is a directory, expected an image file")
        if size > max_bytes:
            raise FileTooLargeError(f"{name}: file is {format_bytes(size)}, over the {format_bytes(max_bytes)} limit")
        data = path.read_bytes()
    if not data:
        raise ImageDecodeError(f"{name}: file is empty")
    if len(data) > max_bytes:
        raise FileTooLargeError(f"{name}: {format_bytes(len(data))} is over the {format_bytes(max_bytes)} limit")
    return data


def decode_image(
    source: str | Path | bytes,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    draft_size: int | None = None,
    fits_display: FitsDisplay | None = None,
) -> np.ndarray:
    """Decode an image file into an RGB ``uint8`` array of shape (H, W, 3); see ``decode_pil``."""
    img = decode_pil(source, limits=limits, draft_size=draft_size, fits_display=fits_display)
    return np.asarray(img, dtype=np.uint8)


def decode_pil(
    source: str | Path | bytes,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    draft_size: int | None = None,
    draft_shape: str = "letterbox",
    fits_display: FitsDisplay | None = None,
) -> Image.Image:
    """Decode an image file into an RGB Pillow image (kept in Pillow for fast resizing).

    Parameters
    ----------
    source : path or bytes
        The image. Its format is detected from its content.
    limits : DecodeLimits, default 50 Mpx and 64 MiB
        Larger files are refused before reading, and images with more pixels before decoding
        (decompression bombs).
    draft_size : int, optional
        If given, the image may be decoded at a reduced scale whose longer side is still at
        least this many pixels, enough for a letterbox of that size (JPEG: DCT scaling, 2-4x
        faster for large photos; others: a whole-factor reduce).
    draft_shape : {"letterbox", "square"}
        ``square`` keeps the shorter side at least ``draft_size`` instead, as models trained
        before 0.3 saw their images (their ``model.json`` has no ``decode`` entry).
    fits_display : FitsDisplay, optional
        Interval and stretch for FITS data (a model's own: ``OnnxPredictor`` passes it);
        default ``FitsDisplay()``: 8-bit data as they are, others asinh over 0.5-99.7 %.

    Raises
    ------
    ImageDecodeError
        Empty, truncated, corrupt, non-image, too large or unsupported input.
    """
    name = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)
    data = read_image_bytes(source, max_bytes=limits.max_bytes)
    max_pixels = limits.max_pixels
    if data.startswith(_FITS_MAGIC):
        return Image.fromarray(_decode_fits(data, name, max_pixels, fits_display or FitsDisplay()))
    try:
        img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        claimed = next((fmt for sig, fmt in _SIGNATURES.items() if data.startswith(sig)), None)
        if claimed is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            claimed = "WebP"
        if claimed:
            raise ImageDecodeError(f"{name}: {claimed} data is truncated or corrupt") from None
        raise ImageDecodeError(f"{name}: not a recognised image (expected JPEG, PNG, TIFF, WebP or FITS)") from None
    with img:
        if img.format not in ALLOWED_FORMATS:
            raise ImageDecodeError(f"{name}: image format {img.format} is not supported")
        width, height = img.size
        if width <= 0 or height <= 0:
            raise ImageDecodeError(f"{name}: image has no pixels ({width}x{height})")
        if draft_size and img.format in DRAFTABLE:
            # DCT scaling: fewer pixels are ever decoded. The target is the letterbox the image
            # will be fitted into (longer side ``draft_size``), not a square: a 500 x 345 JPEG
            # for a 224 letterbox may decode at 250 x 173, where a square target forced 500 x 345.
            target = _fit_within(width, height, draft_size) if draft_shape == "letterbox" else (draft_size, draft_size)
            img.draft("RGB", target)
        # The limit is on what gets decoded: a 50 Mpx phone JPEG decoded at 1/8 scale is cheap,
        # a 50 Mpx PNG is not. Checked from the header, before any pixel is decoded.
        decoded = img.size[0] * img.size[1]
        if decoded > max_pixels:
            raise ImageDecodeError(
                f"{name}: {width}x{height} = {_mpx(width * height)} is over the "
                f"{_mpx(max_pixels)} limit (possible decompression bomb)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about odd EXIF/ICC chunks
                img.load()
                small = _reduce(img, draft_size, draft_shape)
                ImageOps.exif_transpose(small, in_place=True)  # no copy when there is nothing to turn
                rgb = _to_rgb(small)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = "truncated" if "truncated" in str(exc) else f"corrupt ({exc})"
            raise ImageDecodeError(f"{name}: image data is {reason}") from None
    return rgb


def _fit_within(width: int, height: int, size: int) -> tuple[int, int]:
    """The size an image is letterboxed to in a ``size`` square: longer side ``size``, aspect kept."""
    longer = max(width, height)
    return max(1, math.ceil(size * width / longer)), max(1, math.ceil(size * height / longer))


def _reduce(img: Image.Image, draft_size: int | None, draft_shape: str = "letterbox") -> Image.Image:
    """Shrink by a whole factor while the longer side stays >= ``draft_size`` (as ``draft`` does for JPEG).

    Done before any conversion, so a large PNG costs one full-size buffer (its decode), not
    four (an EXIF-transposed copy, an RGBA copy, a black canvas and the composite).
    """
    side = max(img.size) if draft_shape == "letterbox" else min(img.size)
    factor = side // draft_size if draft_size else 1
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # a mode reduce() does not support (P, 1): convert after all
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on black sky."""
    if img.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        # 16-bit and float scientific TIFF/PNG: the asinh view FITS gets.
        try:
            return Image.fromarray(stretch_to_uint8(np.asarray(img, dtype=np.float64), HIGH_DEPTH_DISPLAY))
        except ValueError as exc:
            raise ImageDecodeError(str(exc)) from None
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size)  # black sky; alpha-weighted paste = compositing on black
        canvas.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return canvas
    return img if img.mode == "RGB" else img.convert("RGB")


def _decode_fits(data: bytes, name: str, max_pixels: int, display: FitsDisplay) -> np.ndarray:
    """Render a FITS file's first image HDU (primary, extension or tile-compressed).

    Tables (``BinTableHDU``, ``TableHDU``) are skipped, whatever their position. A cube of 3
    (or 4) planes is read as RGB; any other cube shows its first plane, with a warning saying so.
    Blank pixels (NaN, or integers equal to ``BLANK``: astropy reads those as NaN) show as
    sky. astropy returns native floats whatever the file's byte order (FITS is big-endian on disk).

    Cost is bounded before any pixel is read: every axis of the HDU counts against
    ``max_pixels`` (a 14 MB tile-compressed cube can describe 14 Gpx), and only the planes used
    are read, through ``hdu.section`` (tiles decompressed lazily), as float32.
    """
    from astropy.io import fits  # imported lazily: only FITS users pay for astropy

    image_hdus = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(io.BytesIO(data), memmap=False) as hdul:
                found = next(
                    ((i, h) for i, h in enumerate(hdul) if isinstance(h, image_hdus) and len(h.shape or ()) >= 2),
                    None,
                )
                if found is None:
                    kinds = ", ".join(type(h).__name__ for h in hdul)
                    raise ImageDecodeError(f"{name}: FITS file has no image HDU with 2 or more axes ({kinds})")
                index, hdu = found
                shape = tuple(int(n) for n in hdu.shape)
                if math.prod(shape) > max_pixels:
                    raise ImageDecodeError(
                        f"{name}: FITS image shape {shape} holds {_mpx(math.prod(shape))}, over the "
                        f"{_mpx(max_pixels)} limit (every axis counts)"
                    )
                colour = len(shape) == 3 and shape[0] in (3, 4)  # (C, H, W) colour cube
                planes = (slice(0, 3),) if colour else (0,) * (len(shape) - 2)
                raw = np.asarray(hdu.section[(*planes, slice(None), slice(None))])  # BLANK already NaN
    except ImageDecodeError:
        raise
    except Exception as exc:  # astropy raises many types for malformed headers
        raise ImageDecodeError(f"{name}: corrupt FITS file ({exc})") from None
    if not colour and len(shape) > 2:
        warnings.warn(
            f"{name}: HDU {index} is a cube of {math.prod(shape[:-2])} planes {shape}; using plane 0 "
            "(3-plane cubes are read as RGB)",
            AstroClassifyWarning,
            stacklevel=4,
        )
    eight_bit = raw.dtype == np.uint8  # BITPIX 8: display values already
    arr = raw.astype(np.float32, copy=False)
    if colour:
        arr = np.moveaxis(arr, 0, -1)
    try:
        # FITS rows run bottom-up; flip so the image looks as in a viewer such as DS9.
        return stretch_to_uint8(np.ascontiguousarray(arr[::-1]), display, eight_bit=eight_bit)
    except ValueError as exc:
        raise ImageDecodeError(f"{name}: {exc}") from None


def _mpx(pixels: int) -> str:
    """Megapixels to three figures: small limits (0.15 Mpx) must not print as "0 Mpx"."""
    return f"{pixels / 1e6:.3g} Mpx"


def preview_jpeg(
    source: str | Path | bytes,
    *,
    size: int = 320,
    fits_display: FitsDisplay | None = None,
    limits: DecodeLimits = DEFAULT_LIMITS,
    framing: Framing | None = None,
    crop: float = 1.0,
) -> bytes:
    """A JPEG of the image at most ``size`` px a side, as a model would see it (FITS stretched
    with ``fits_display``): what a browser shows for files it cannot display itself.

    A model that crops or frames (``crop``, ``framing``) gets the box it would see outlined.
    """
    from astroclassify.imaging.framing import NO_FRAMING, framed, outline_box, scale_box

    framing = framing or NO_FRAMING
    img = decode_pil(source, limits=limits, draft_size=size, fits_display=fits_display)
    full = img.size
    box = framed(img, framing, crop)[1].box if crop < 1.0 or framing.method != "none" else None
    img.thumbnail((size, size))
    region = scale_box(box, full, img.size) if box is not None else None
    if region is not None:
        img = img.convert("RGB")
        outline_box(img, region)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
