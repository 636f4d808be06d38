"""Image helpers with no Spark in them: format sniffing, safe decoding and dHash.

>>> import io
>>> from PIL import Image
>>> buf = io.BytesIO()
>>> Image.linear_gradient("L").rotate(90).convert("RGB").save(buf, "PNG")
>>> sniff_format(buf.getvalue())
'png'
>>> h, h_flip = dhash_pair(decode_image(buf.getvalue()))
>>> hamming(h, h), hamming(h, h_flip) > 0
(0, True)
>>> t = thumbnail(decode_image(buf.getvalue()))
>>> len(t), thumb_distance(t, t) < 1e-6
(432, True)
"""

from __future__ import annotations

import functools
import io
import warnings

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps

HASH_SIZE = 8  # 8 x 8 = 64-bit hashes
THUMB_SIZE = 12  # 12 x 12 RGB thumbnails for the colour check
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)


class DecodeError(ValueError):
    """The bytes are not an image this job can read; the message is the reason."""


def sniff_format(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None: the name and headers are not trusted."""
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if name == "webp" and data[:4] != b"RIFF":
                continue
            return name
    return None


def decode_image(data: bytes, max_pixels: int = 50_000_000, draft_size: int | None = None) -> Image.Image:
    """Decode to an RGB image, EXIF orientation applied, refusing decompression bombs.

    ``draft_size`` lets JPEG decode at a reduced scale (DCT scaling) when only a small picture
    is needed, which is several times faster than a full decode. Plain JPEGs (no EXIF block)
    take :func:`_decode_plain_jpeg`; everything else, and any JPEG it declines, goes through Pillow.
    """
    fast = _decode_plain_jpeg(data, max_pixels, draft_size)
    if fast is not None:
        return Image.fromarray(fast, "RGB")
    return _decode_with_pillow(data, max_pixels, draft_size)


def decode_pixels(data: bytes, max_pixels: int = 50_000_000, draft_size: int | None = None) -> np.ndarray:
    """:func:`decode_image` as an RGB array (height, width, 3), without a Pillow image on the fast path."""
    fast = _decode_plain_jpeg(data, max_pixels, draft_size)
    if fast is not None:
        return fast
    return np.asarray(_decode_with_pillow(data, max_pixels, draft_size))


def _decode_with_pillow(data: bytes, max_pixels: int, draft_size: int | None) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise DecodeError("decompression_bomb")
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            image = ImageOps.exif_transpose(image) or image
            if image.mode != "RGB":
                image = _to_rgb(image)
            return image
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError("decompression_bomb") from exc
    except Exception as exc:  # Pillow raises many types on bad input; all mean "undecodable"
        raise DecodeError(f"undecodable_image:{type(exc).__name__}") from exc


def _decode_plain_jpeg(data: bytes, max_pixels: int, draft_size: int | None) -> np.ndarray | None:
    """libjpeg-turbo straight to an RGB array through simplejpeg, or None to let Pillow decide.

    The same library and DCT scaling as Pillow's ``draft``, so the pixels (and hashes) are the
    same, with a fraction of Pillow's per-image Python work. Declined: non-JPEG bytes, JPEGs with
    an EXIF block (orientation is Pillow's job), colour spaces it cannot turn into RGB (CMYK),
    oversize headers and any decode warning (truncated data), so errors read the same either way.
    """
    if data[:3] != b"\xff\xd8\xff" or data.find(b"Exif\x00\x00", 0, 65536) >= 0:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        if width * height > max_pixels or colorspace not in ("Gray", "YCbCr", "RGB"):
            return None
        side = draft_size or max(width, height)
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side, strict=True)
    except (ValueError, RuntimeError):
        return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to RGB; transparent pixels become white, as on a product page."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


@functools.lru_cache(maxsize=256)
def _box_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) area-averaging weights: each output pixel is the mean of the input span
    it covers (Pillow's BOX filter), so shrinking is one matrix product per axis."""
    edges = np.arange(size_out + 1) * (size_in / size_out)
    left, right = edges[:-1, None], edges[1:, None]
    pixel = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(right, pixel + 1) - np.maximum(left, pixel), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _shrink(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-filter ``pixels`` (h, w) or (h, w, c) to (height, width[, c]), rounded to 0-255 levels."""
    h, w = pixels.shape[:2]
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    tall = _box_weights(h, height) @ pixels.reshape(h, w * channels).astype(np.float32)  # (height, w*c)
    wide = tall.reshape(height, w, channels).transpose(0, 2, 1) @ _box_weights(w, width).T  # (height, c, width)
    small = np.rint(wide.transpose(0, 2, 1))
    return small.reshape(height, width, channels) if pixels.ndim == 3 else small.reshape(height, width)


def dhash_pair(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """64-bit dHash of the image and of its mirror image, as signed 64-bit integers.

    The picture is shrunk to 9x8 grey pixels; each bit says whether a pixel is brighter than its
    right neighbour. Mirroring commutes with the resize, so the mirrored hash costs no decode.
    Takes a Pillow RGB image or an RGB array.
    """
    grey = np.asarray(image).astype(np.float32) @ _LUMA  # ITU-R 601-2, as Pillow's "L"
    small = _shrink(grey, HASH_SIZE, HASH_SIZE + 1)
    mirrored = small[:, ::-1]
    packed = np.packbits(np.stack([small[:, 1:] > small[:, :-1], mirrored[:, 1:] > mirrored[:, :-1]])).tobytes()
    return int.from_bytes(packed[:8], "big", signed=True), int.from_bytes(packed[8:], "big", signed=True)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def thumbnail(image: Image.Image | np.ndarray) -> bytes:
    """A 12x12 RGB thumbnail (432 bytes): the colour layout a pair is checked against."""
    rgb = np.asarray(image)
    return _shrink(rgb, THUMB_SIZE, THUMB_SIZE).astype(np.uint8).tobytes()


def thumb_distances(a: list[bytes], b: list[bytes]) -> np.ndarray:
    """:func:`thumb_distance` for many pairs at once (vectorised: one matrix per side)."""
    n = len(a)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    shape = (n, THUMB_SIZE, THUMB_SIZE, 3)
    left = np.frombuffer(b"".join(a), dtype=np.uint8).reshape(shape).astype(np.float32)
    right = np.frombuffer(b"".join(b), dtype=np.uint8).reshape(shape).astype(np.float32)

    def centred(batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(n, -1)
        flat = flat - flat.mean(axis=1, keepdims=True)
        return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6)

    ca = centred(left)
    direct = (ca * centred(right)).sum(axis=1)
    mirrored = (ca * centred(right[:, :, ::-1, :])).sum(axis=1)
    return (1.0 - np.maximum(direct, mirrored)).astype(np.float64)


def thumb_distance(a: bytes, b: bytes) -> float:
    """1 - correlation of two thumbnails, the smaller of direct and mirrored (0: same layout).

    Centring makes it blind to uniform brightness shifts; the colours themselves still count,
    so the same cut in another colourway stays apart.
    """
    return float(thumb_distances([a], [b])[0])


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)  # Immerkaer's: blind to ramps
_NOISE_MEDIAN = 0.6745 * 6.0  # median |kernel response| of unit Gaussian noise (the kernel's norm is 6)


def noise_level(grey: np.ndarray, where: np.ndarray | None = None) -> float:
    """Standard deviation (grey levels) of the pixel noise of ``grey`` (float32) over ``where``
    (all of it by default): the median absolute response of Immerkaer's Laplacian difference (flat
    parts and ramps give 0, so on a product photo the median is the noise; about 0-1 for a clean
    photo, its sigma for a noisy copy), on every fourth pixel of every fourth row.

    >>> flat, everywhere = np.full((64, 64), 128.0, np.float32), np.ones((64, 64), bool)
    >>> grain = np.random.default_rng(0).normal(0, 10, flat.shape).astype(np.float32)
    >>> noise_level(flat, everywhere), round(noise_level(flat + grain))
    (0.0, 10)
    """
    response = np.abs(cv2.filter2D(grey, cv2.CV_32F, _NOISE_KERNEL)[::4, ::4])  # 1 pixel in 16
    if where is not None:
        response = response[where[::4, ::4]]
    return float(np.median(response)) / _NOISE_MEDIAN if response.size else 0.0
