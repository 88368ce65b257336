import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from astroclassify.config import DecodeLimits
from astroclassify.errors import ImageDecodeError
from astroclassify.imaging.decode import decode_image, sniff_format
from astroclassify.imaging.transforms import letterbox, to_tensor_layout
from tests.conftest import fits_cube_bytes, jpeg_bytes, make_sky


def test_decodes_jpeg_png_tiff_webp_to_rgb(tmp_path):
    arr = make_sky("galaxy", 80)
    for fmt in ("JPEG", "PNG", "TIFF", "WEBP"):
        path = tmp_path / f"x.{fmt.lower()}"
        Image.fromarray(arr).save(path, format=fmt)
        out = decode_image(path)
        assert out.shape == (80, 80, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - arr).mean() < 6  # lossy formats stay close


def test_format_is_judged_by_content_not_name(tmp_path):
    png_named_jpg = tmp_path / "really_png.jpg"
    Image.fromarray(make_sky("nebula")).save(png_named_jpg, format="PNG")
    assert decode_image(png_named_jpg).shape == (64, 64, 3)
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode_image(text)
    assert sniff_format(text.read_bytes()) is None


def test_truncated_jpeg_is_an_error_not_grey_padding():
    data = jpeg_bytes(make_sky("galaxy", 256))
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_empty_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(empty)
    with pytest.raises(ImageDecodeError, match="not found"):
        decode_image(tmp_path / "nope.png")
    with pytest.raises(ImageDecodeError, match="directory"):
        decode_image(tmp_path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="Mpx limit"):
        decode_image(_png_header_only(20000, 20000))


def test_oversized_file_refused(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(make_sky("galaxy", 64)).save(path)
    with pytest.raises(ImageDecodeError, match="over the"):
        decode_image(path, limits=DecodeLimits(max_bytes=100))


def test_sixteen_bit_and_alpha_images():
    grey16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 10).astype(np.uint16))
    buf = io.BytesIO()
    grey16.save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.shape == (64, 64, 3) and out.max() == 255 and out.min() == 0
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent → black sky
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    assert decode_image(buf.getvalue()).max() == 0


def test_fits_image_is_stretched_and_flipped(tmp_path):
    from astropy.io import fits

    data = np.zeros((40, 50), dtype=np.float32)
    data[0, :] = 1000.0  # FITS row 0 is the bottom of the picture
    path = tmp_path / "sky.fits"
    fits.PrimaryHDU(data).writeto(path)
    out = decode_image(path)
    assert out.shape == (40, 50, 3)
    assert out[-1].mean() > 120 and out[0].mean() < 5


def test_corrupt_fits(tmp_path):
    path = tmp_path / "bad.fits"
    path.write_bytes(b"SIMPLE  =                    T" + b"\x00" * 50)
    with pytest.raises(ImageDecodeError, match="FITS"):
        decode_image(path)


def test_letterbox_keeps_whole_image_on_black():
    wide = np.full((50, 100, 3), 255, np.uint8)
    out = letterbox(wide, 64)
    assert out.shape == (64, 64, 3)
    assert out[:10].max() == 0 and out[-10:].max() == 0  # padding is black sky
    assert out[32, :].min() == 255  # full width kept
    x = to_tensor_layout(out[None], (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (1, 3, 64, 64) and x.min() == -1.0 and x.max() == 1.0


def test_phone_mpo_photos_decode_to_their_first_frame():
    photo, depth = make_sky("galaxy", 120), np.zeros((120, 120, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="MPO", save_all=True, append_images=[Image.fromarray(depth)])
    data = buf.getvalue()
    assert sniff_format(data) == "MPO"
    out = decode_image(data)
    assert out.shape == (120, 120, 3) and np.abs(out.astype(int) - photo).mean() < 6  # the photo, not the depth map
    from astroclassify.store.images import EXTENSIONS

    assert EXTENSIONS["MPO"] == "jpg"


def _fits_bytes(*hdus) -> bytes:
    from astropy.io import fits

    buf = io.BytesIO()
    fits.HDUList(list(hdus)).writeto(buf)
    return buf.getvalue()


def test_fits_uses_the_first_image_hdu_not_a_table():
    from astropy.io import fits

    image = np.zeros((40, 60), np.float32)
    image[10:20, 20:40] = 1000.0  # raw counts (past 255): stretched
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.arange(5, dtype=np.float32))])
    data = _fits_bytes(fits.PrimaryHDU(), table, fits.ImageHDU(image))
    out = decode_image(data)
    assert out.shape == (40, 60, 3)
    assert out[::-1][15, 30].mean() > 120 and out[::-1][0, 0].mean() < 10  # the image, flipped as DS9 shows it
    only_table = _fits_bytes(fits.PrimaryHDU(), table)
    with pytest.raises(ImageDecodeError, match="no image HDU .*BinTableHDU"):
        decode_image(only_table)


def test_fits_cubes_are_rgb_or_say_which_plane(recwarn):
    from astropy.io import fits

    from astroclassify.errors import AstroClassifyWarning

    rgb = np.zeros((3, 30, 30), np.float32)
    rgb[0, :, :10], rgb[1, :, 10:20], rgb[2, :, 20:] = 1.0, 1.0, 1.0
    out = decode_image(_fits_bytes(fits.PrimaryHDU(rgb)))
    assert out[0, 5, 0] > 200 and out[0, 15, 1] > 200 and out[0, 25, 2] > 200  # planes become R, G, B
    cube = np.random.default_rng(0).normal(size=(7, 30, 30)).astype(np.float32)
    with pytest.warns(AstroClassifyWarning, match="cube of 7 planes .*using plane 0"):
        out = decode_image(_fits_bytes(fits.PrimaryHDU(cube)))
    assert out.shape == (30, 30, 3)


def test_pixel_limit_counts_the_pixels_actually_decoded():
    """A big JPEG decoded at 1/8 scale is cheap; a PNG of the same size is not."""
    big = Image.fromarray(make_sky("galaxy", 64)).resize((3000, 2000))
    jpeg, png = io.BytesIO(), io.BytesIO()
    big.save(jpeg, format="JPEG")
    big.save(png, format="PNG")
    out = decode_image(jpeg.getvalue(), limits=DecodeLimits(max_pixels=1_000_000), draft_size=224)
    assert min(out.shape[:2]) >= 224
    with pytest.raises(ImageDecodeError, match="3000x2000 = 6 Mpx is over the 1 Mpx limit"):
        decode_image(png.getvalue(), limits=DecodeLimits(max_pixels=1_000_000), draft_size=224)


def test_a_large_transparent_png_costs_one_copy_to_decode(tmp_path):
    """49 Mpx RGBA: decoding for the network held four full-size copies (1.1 GB); now about two."""
    import subprocess
    import sys

    path = tmp_path / "big.png"
    Image.new("RGBA", (7000, 7000), (0, 0, 0, 0)).save(path)
    code = f"""
import resource
from astroclassify.imaging.decode import decode_pil
data = open({str(path)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
img = decode_pil(data, draft_size=224)
print(img.size[0], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""
    width, extra_mb = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert 224 <= int(width) < 500
    assert float(extra_mb) < 450  # one RGBA buffer is 196 MB; Pillow's reduce premultiplies into a second


def test_fits_blank_and_nan_pixels_show_as_sky_in_compressed_and_big_endian_files():
    from astropy.io import fits

    rng = np.random.default_rng(1)
    counts = rng.integers(100, 110, size=(64, 64)).astype(np.int16)
    counts[20:30, 20:30] = 3000  # a star
    counts[:, :8] = -32768  # a blank stripe (off the detector)
    hdu = fits.ImageHDU(counts)
    hdu.header["BLANK"] = -32768
    compressed = fits.CompImageHDU(counts, compression_type="RICE_1")
    compressed.header["BLANK"] = -32768
    for data in (_fits_bytes(fits.PrimaryHDU(), hdu), _fits_bytes(fits.PrimaryHDU(), compressed)):
        out = decode_image(data)[::-1]  # back to FITS row order
        assert out[25, 25].mean() > 120  # the star is bright (raw data: its top at mid-grey or above)
        assert out[40:, 40:].mean() < 30  # the sky is dark: blanks did not widen the interval
        assert out[:, :8].max() <= out[40:, 40:].mean() + 1  # blanks are sky, not a bright band
    flux = rng.normal(10, 1, size=(48, 48)).astype(">f4")  # big-endian floats, as on disk
    flux[10, 10] = np.nan
    flux[30:34, 30:34] = 500
    out = decode_image(_fits_bytes(fits.PrimaryHDU(flux)))[::-1]
    assert out[31, 31].mean() > 120 and out[10, 10].mean() < 100


def test_fits_display_is_chosen_per_model_and_8_bit_data_show_as_they_are():
    from astropy.io import fits

    from astroclassify.imaging.decode import decode_pil
    from astroclassify.imaging.stretch import FitsDisplay

    rgb = make_sky("galaxy", 64)  # 8-bit display values, as a JPEG written to FITS holds
    cube = fits_cube_bytes(rgb)
    out = decode_image(cube)
    assert np.array_equal(out, rgb)  # shown as they are, not stretched again
    stretched = np.asarray(decode_pil(cube, fits_display=FitsDisplay("asinh", "percentile")))
    assert not np.array_equal(stretched, rgb)
    flux = np.abs(np.random.default_rng(2).normal(0, 1, (32, 32))) ** 3
    views = {
        s: decode_image(_fits_bytes(fits.PrimaryHDU(flux)), fits_display=FitsDisplay(s, i)).mean()
        for s in ("asinh", "log", "sqrt", "linear")
        for i in ("percentile", "zscale")
    }
    assert len({round(v, 3) for v in views.values()}) == len(views)  # every choice is its own view
    with pytest.raises(ValueError, match="stretch 'gamma'"):
        FitsDisplay("gamma")


def test_filters_keep_pixels_finite_in_any_order_and_leave_the_padding_alone(shared_data):
    from astroclassify.imaging.decode import decode_pil
    from astroclassify.imaging.filters import FILTERS, check_filters, letterbox_filtered

    # TV denoising left this one a hair below 0, which CLAHE turned into NaN (then into garbage).
    img = decode_pil(next(shared_data.glob("hubble-dso/*/potw1926a.jpg")), draft_size=224)
    plain = letterbox_filtered(img, 224)
    assert plain[:40].max() == 0  # a wide image: padding above and below
    for chain in (FILTERS, FILTERS[::-1], ("denoise", "clahe")):
        out = letterbox_filtered(img, 224, chain)
        assert out.dtype == np.uint8 and out.shape == (224, 224, 3)
        assert not np.array_equal(out, plain)
        assert out[:40].max() == 0 and out[-40:].max() == 0  # black padding stays black
    with pytest.raises(ValueError, match="unknown image filter"):
        check_filters(["sharpen"])


def _cube_bytes(planes: int, side: int, tile_planes: int = 1) -> bytes:
    """A tile-compressed int16 cube, mostly zeros: a few hundred KB that describe many pixels."""
    from astropy.io import fits

    cube = np.zeros((planes, side, side), dtype=np.int16)
    cube[0, side // 4 : side // 2, side // 4 : side // 2] = 1000  # plane 0: a bright square
    cube[1:, : side // 8] = 3000  # other planes: a bright band plane 0 does not have
    hdu = fits.CompImageHDU(cube, compression_type="RICE_1", tile_shape=(tile_planes, side, side))
    return _fits_bytes(fits.PrimaryHDU(), hdu)


def test_fits_cube_counts_every_axis_before_reading_a_pixel():
    """50 x 4000 x 4000 in under 1 MB used to be decompressed whole as float64 (7.6 GB, 28 s)."""
    import time

    from astropy.io import fits

    header = fits.Header({"SIMPLE": True, "BITPIX": 16, "NAXIS": 3, "NAXIS1": 4000, "NAXIS2": 4000, "NAXIS3": 50})
    for data in (header.tostring().encode(), _cube_bytes(50, 400)):
        start = time.perf_counter()
        with pytest.raises(ImageDecodeError, match="every axis counts"):
            decode_image(data, limits=DecodeLimits(max_pixels=4_000_000 if len(data) > 2880 else 40_000_000))
        assert time.perf_counter() - start < 1


def test_fits_cube_reads_only_the_plane_it_shows(tmp_path):
    """A 20-plane cube (80 Mpx in all) under a generous limit costs one plane's memory."""
    import subprocess
    import sys

    path = tmp_path / "cube.fits"
    path.write_bytes(_cube_bytes(20, 2000))
    code = f"""
import resource, warnings
from astroclassify.config import DecodeLimits
from astroclassify.imaging.decode import decode_image
data = open({str(path)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = decode_image(data, limits=DecodeLimits(max_pixels=100_000_000))
print(out.shape[0], out[-200:].max(), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, len(caught))
"""
    side, band, extra_mb, warned = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(side) == 2000 and int(warned) == 1
    assert int(band) == 0  # plane 0 shown: the other planes have a bright band there
    assert float(extra_mb) < 250  # the whole cube as float64 is 640 MB; one plane as float32 is 16 MB


def test_fits_display_values_of_any_type_show_as_they_are():
    """A float32 cube of a JPEG's pixels was stretched again: 21 of 100 spirals became ellipticals."""
    from astropy.io import fits

    rgb = make_sky("galaxy", 64)
    planes = np.ascontiguousarray(np.moveaxis(rgb, -1, 0)[:, ::-1])
    for data in (planes.astype(np.float32), planes.astype(np.int16), planes.astype(">f8") / 255.0):
        assert np.array_equal(decode_image(_fits_bytes(fits.PrimaryHDU(data))), rgb), data.dtype
    # Raw data are stretched: sky noise below zero, fluxes past 255, or a sliver of 0-1.
    for raw in (planes / 255.0 * 3000 - 5, planes / 255.0 * 0.1):
        shown = decode_image(_fits_bytes(fits.PrimaryHDU(raw.astype(np.float32))))
        assert not np.array_equal(shown, rgb) and shown.max() >= 120
