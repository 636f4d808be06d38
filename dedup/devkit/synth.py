"""Synthetic catalogs: product-like pictures, near-duplicate variants and dump-shaped CSV rows.

Used by ``dedup demo``, the tests and the benchmarks, so none of them downloads anything. A
"product" is a garment, shoe or bag silhouette with its own colour and print on a white
background; a duplicate listing is the same photo after an edit of the kinds users count as
duplicates and that the hash path is meant to catch: re-encoding, resizing, brightness or
contrast shifts, a small text overlay, light noise, a mirror image.

>>> catalog = make_catalog(n_products=6, duplicate_share=0.5, seed=1)
>>> len(catalog.rows) >= 6, all(len(g) >= 2 for g in catalog.truth_groups)
(True, True)
"""

from __future__ import annotations

import csv
import io
import random
import string
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dedup.schema import CATALOG_COLUMNS

SIZE = 224
SIZES = ("200x200", "400x400", "800x800")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(20, 236) for _ in range(3))  # type: ignore[return-value]


def _silhouette(
    draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], fill: int, rng: random.Random
) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0

    def polygon(points: list[tuple[float, float]]) -> None:  # every cut a little different
        draw.polygon(
            [(x + rng.uniform(-0.12, 0.12) * w, y + rng.uniform(-0.12, 0.12) * h) for x, y in points], fill=fill
        )

    if kind == "tshirt":
        polygon(
            [(x0 + w * 0.3, y0), (x0 + w * 0.7, y0), (x1, y0 + h * 0.25), (x0 + w * 0.85, y0 + h * 0.4),
             (x0 + w * 0.8, y1), (x0 + w * 0.2, y1), (x0 + w * 0.15, y0 + h * 0.4), (x0, y0 + h * 0.25)],
        )  # fmt: skip
    elif kind == "dress":
        polygon([(x0 + w * 0.35, y0), (x0 + w * 0.65, y0), (x0 + w * 0.8, y0 + h * 0.5), (x1, y1), (x0, y1),
                 (x0 + w * 0.2, y0 + h * 0.5)])  # fmt: skip
    elif kind == "shoe":
        draw.ellipse([x0, y0 + h * 0.45, x1, y1], fill=fill)
        draw.rectangle([x0 + w * 0.05, y0 + h * 0.2, x0 + w * 0.45, y0 + h * 0.75], fill=fill)
    else:  # bag
        draw.rectangle([x0, y0 + h * 0.3, x1, y1], fill=fill)
        draw.arc([x0 + w * 0.25, y0, x1 - w * 0.25, y0 + h * 0.6], 180, 360, fill=fill, width=max(3, w // 20))


def product_image(seed: int, colour: tuple[int, int, int] | None = None) -> Image.Image:
    """A product-like picture: a silhouette with a colour, a print and shading, on white.

    The same ``seed`` with another ``colour`` gives a colour variant of the same product.
    """
    rng = random.Random(seed)
    kind = rng.choice(["tshirt", "dress", "shoe", "bag"])
    base = _colour(rng)
    second = _colour(rng)
    half_w, half_h = rng.randrange(50, 105), rng.randrange(50, 105)
    cx, cy = rng.randrange(half_w + 4, SIZE - half_w - 4), rng.randrange(half_h + 4, SIZE - half_h - 4)
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    mask = Image.new("L", (SIZE, SIZE), 0)
    _silhouette(ImageDraw.Draw(mask), kind, box, 255, rng)

    pattern = Image.new("RGB", (SIZE, SIZE), colour or base)
    draw = ImageDraw.Draw(pattern)
    style = rng.choice(["stripes", "checks", "dots", "blocks", "plain"])
    period = rng.randrange(10, 40)
    if style == "stripes":
        for x in range(-SIZE, 2 * SIZE, period):
            draw.line([(x, 0), (x + rng.randrange(-SIZE, SIZE), SIZE)], fill=second, width=period // 3 + 1)
    elif style == "checks":
        for x in range(0, SIZE, period):
            for y in range(0, SIZE, period):
                if (x // period + y // period) % 2:
                    draw.rectangle([x, y, x + period, y + period], fill=second)
    elif style == "dots":
        for _ in range(rng.randrange(10, 60)):
            cx, cy, r = rng.randrange(SIZE), rng.randrange(SIZE), rng.randrange(3, 14)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=second)
    elif style == "blocks":
        for _ in range(rng.randrange(2, 6)):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            draw.rectangle([x, y, x + rng.randrange(20, 120), y + rng.randrange(20, 120)], fill=_colour(rng))
    # Folds and studio light: a smooth random brightness field, different for every product.
    field = np.random.default_rng(seed).uniform(0.55, 1.35, (5, 5)).astype(np.float32)
    shade = np.asarray(Image.fromarray(field, "F").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
    shaded = np.clip(np.asarray(pattern, dtype=np.float32) * shade[..., None], 0, 255).astype(np.uint8)
    canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    canvas.paste(Image.fromarray(shaded, "RGB"), mask=mask)
    return canvas


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    """The image saved in ``fmt`` (a Pillow format name) with Pillow's save ``params``."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    """The image as JPEG bytes (RGB)."""
    return encoded(image.convert("RGB"), "JPEG", quality=quality)


def odd_images(image: Image.Image) -> dict[str, bytes]:
    """The picture in the odd but valid encodings real catalogs hold, by name: CMYK JPEG, palette
    PNG (with and without a transparent colour), 16-bit PNG, alpha PNG, animated GIF, WebP and a
    JPEG stored sideways with an EXIF orientation.

    >>> sorted(odd_images(Image.new("RGB", (8, 8))))[:3]
    ['alpha_png', 'animated_gif', 'cmyk_jpeg']
    """
    alpha = image.convert("RGBA")
    alpha.putalpha(128)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: "rotate 270 to view"
    palette = image.convert("P")
    return {
        "cmyk_jpeg": encoded(image.convert("CMYK"), "JPEG"),
        "palette_png": encoded(palette, "PNG"),
        "palette_transparent_png": encoded(palette, "PNG", transparency=0),
        "grey16_png": encoded(Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257), "PNG"),
        "alpha_png": encoded(alpha, "PNG"),
        "animated_gif": encoded(palette, "GIF", save_all=True, append_images=[ImageOps.mirror(image).convert("P")]),
        "webp": encoded(image, "WEBP"),
        "exif_rotated_jpeg": encoded(image.rotate(90, expand=True), "JPEG", exif=exif.tobytes(), quality=95),
    }


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A decompression bomb: a PNG of a few hundred bytes whose header declares ``width`` x ``height``.

    >>> data = bomb_png()
    >>> len(data) < 2000, struct.unpack(">II", data[16:24])  # IHDR: width, height
    (True, (100000, 100000))
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    rows = zlib.compress(b"\x00" * (width + 1) * 2, 9)  # the first rows; enough to look real
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _noise(image: Image.Image, rng: random.Random) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    noisy = array + np.random.default_rng(rng.randrange(1 << 30)).normal(0, 6, array.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


def _overlay(image: Image.Image, rng: random.Random) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    x, y = rng.choice([(6, 6), (SIZE - 60, 6), (6, SIZE - 20), (SIZE - 60, SIZE - 20)])
    draw.rectangle([x, y, x + 52, y + 14], fill=(200, 30, 30))
    draw.text((x + 4, y + 2), rng.choice(["SALE", "NEW", "-20%", "HOT"]), fill=(255, 255, 255))
    return edited


VARIANTS: dict[str, Callable[[Image.Image, random.Random], bytes]] = {
    "reencode": lambda im, rng: jpeg_bytes(im, rng.randrange(55, 80)),
    "resize": lambda im, rng: jpeg_bytes(im.resize((rng.choice([160, 180, 300, 400]),) * 2, Image.Resampling.LANCZOS)),
    "brightness": lambda im, rng: jpeg_bytes(ImageEnhance.Brightness(im).enhance(rng.choice([0.85, 0.9, 1.1, 1.15]))),
    "contrast": lambda im, rng: jpeg_bytes(ImageEnhance.Contrast(im).enhance(rng.choice([0.85, 1.15]))),
    "overlay": lambda im, rng: jpeg_bytes(_overlay(im, rng)),
    "noise": lambda im, rng: jpeg_bytes(_noise(im, rng)),
    "mirror": lambda im, rng: jpeg_bytes(ImageOps.mirror(im)),
    "exact": lambda im, rng: b"",  # placeholder: the original bytes, re-listed
}


@dataclass
class SyntheticCatalog:
    """Rows in the dump's layout, the image bytes they point to, and the truth."""

    rows: list[dict[str, str]] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)
    truth_groups: list[list[str]] = field(default_factory=list)
    transforms: dict[str, str] = field(default_factory=dict)  # productId -> variant name


def _product_id(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_uppercase + string.digits, k=16))


def image_url_str(base_url: str, name: str) -> str:
    """The four ``;``-separated URLs of one image: original, 200x200, 400x400, 800x800."""
    stem, token = name.rsplit("-", 1)
    return ";".join([f"{base_url}/img/{stem}-{token}"] + [f"{base_url}/img/{stem}-{size}-{token}" for size in SIZES])


def image_names(name: str) -> list[str]:
    """The served names behind :func:`image_url_str` (all sizes serve the same bytes here)."""
    stem, token = name.rsplit("-", 1)
    return [f"{stem}-{token}"] + [f"{stem}-{size}-{token}" for size in SIZES]


def make_catalog(
    n_products: int,
    duplicate_share: float = 0.2,
    family_share: float = 0.05,
    seed: int = 0,
    base_url: str = "http://127.0.0.1:0",
) -> SyntheticCatalog:
    """``n_products`` originals; a ``duplicate_share`` of them re-listed as 1-2 edited copies,
    a ``family_share`` given a colour variant in the same productFamily (not a duplicate)."""
    rng = random.Random(seed)
    catalog = SyntheticCatalog()
    categories = ["Apparels>Women>Western Wear>Tops", "Apparels>Men>T-Shirts", "Footwear>Women>Heels",
                  "Bags>Handbags", "Apparels>Women>Dresses"]  # fmt: skip

    def add(pid: str, data: bytes, family: list[str], transform: str) -> None:
        name = f"{pid.lower()}-{rng.choice(['cloe', 'ruby', 'zara', 'mio'])}-{pid[-6:].lower()}"
        for served in image_names(name):
            catalog.images[served] = data
        catalog.rows.append(
            {
                "productId": pid,
                "title": f"Product {pid[:6]} {transform}",
                "imageUrlStr": image_url_str(base_url, name),
                "categories": rng.choice(categories),
                "productFamily": ",".join(family),
                "productBrand": rng.choice(["Acme", "Zed", "Mio"]),
                "sellingPrice": str(rng.randrange(199, 4999)),
                "sellerName": rng.choice(["SellerA", "SellerB", "SellerC"]),
            }
        )
        catalog.transforms[pid] = transform

    for index in range(n_products):
        image_seed = seed * 1_000_003 + index
        original = product_image(image_seed)
        original_bytes = jpeg_bytes(original)
        pid = _product_id(rng)
        group = [pid]
        family = []
        if rng.random() < family_share:
            family = [pid, _product_id(rng)]
            add(family[1], jpeg_bytes(product_image(image_seed, colour=_colour(rng))), family, "family_variant")
        add(pid, original_bytes, family, "original")
        if rng.random() < duplicate_share:
            for _ in range(rng.choice([1, 1, 2])):
                variant = rng.choice(list(VARIANTS))
                data = original_bytes if variant == "exact" else VARIANTS[variant](original, rng)
                copy_id = _product_id(rng)
                add(copy_id, data, [], variant)
                group.append(copy_id)
        if len(group) > 1:
            catalog.truth_groups.append(sorted(group))
    return catalog


def delayed(rows: Iterable[dict[str, str]], delay_ms: int) -> list[dict[str, str]]:
    """The rows with their images served ``delay_ms`` late (the image server's ``/fault/delay/``),
    for tests that act while the fetch stage runs.

    >>> delayed([{"imageUrlStr": "http://h/img/a.jpg;http://h/img/b.jpg"}], 300)[0]["imageUrlStr"]
    'http://h/fault/delay/300/a.jpg;http://h/fault/delay/300/b.jpg'
    """
    return [dict(row, imageUrlStr=row["imageUrlStr"].replace("/img/", f"/fault/delay/{delay_ms}/")) for row in rows]


def dump_line(*fields: str) -> str:
    """A raw dump line: ``fields`` (already CSV-quoted where needed) padded with empty fields to the
    dump's 32 columns.

    >>> dump_line("P1", "a title", "desc", "").count(",")
    31
    """
    return ",".join([*fields, *[""] * (len(CATALOG_COLUMNS) - len(fields))])


def catalog_lines(rows: Iterable[dict[str, str]]) -> list[str]:
    """The dump's header and ``rows`` in its 32-column layout (missing columns empty), one line each."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CATALOG_COLUMNS), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().split("\n")[:-1]


def write_catalog_csv(rows: Iterable[dict[str, str]], path: str | Path, extra_lines: Iterable[str] = ()) -> None:
    """Write rows in the dump's 32-column layout (missing columns empty), then ``extra_lines``
    verbatim (dirty lines for tests and demos)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        for line in [*catalog_lines(rows), *extra_lines]:
            handle.write(line.rstrip("\n") + "\n")


def write_dump_bytes(lines: Iterable[bytes], path: str | Path, newline: bytes = b"\r\n") -> None:
    """Write raw dump lines (bytes, any encoding damage kept) ending each with ``newline``."""
    Path(path).write_bytes(b"".join(line + newline for line in lines))


def dirty_dump_lines(base_url: str, repeated_id: str) -> list[tuple[bytes, str | None]]:
    """Raw lines a real dump holds, each with the reason ingest rejects it for; None for blank
    lines, which the CSV reader skips (they hold no listing and are not rows).

    ``repeated_id`` is a productId of a good line that comes earlier in the dump.

    >>> reasons = [reason for _, reason in dirty_dump_lines("http://h", "P1")]
    >>> reasons.count("malformed_line"), reasons.count(None)
    (7, 2)
    """
    url = f"{base_url}/img/dirty-200x200-x.jpeg"

    def line(*fields: str) -> bytes:
        return dump_line(*fields).encode()

    def stray(pid: str, n_fields: int) -> bytes:  # a title or description with unquoted commas
        return ",".join([pid, "a title", "desc", url, *["x"] * (n_fields - 4)]).encode()

    return [
        (stray("STRAY34000000001", 34), "malformed_line"),
        (stray("STRAY57000000001", 57), "malformed_line"),
        (stray("STRAY84000000001", 84), "malformed_line"),
        (stray("SHORT31000000001", 31), "malformed_line"),
        (line("QUOTE00000000001", '"an unclosed, quoted title', "desc", url), "malformed_line"),
        (line('"Great product, buy now"', "a title", "desc", url), "invalid_product_id"),
        (line("two words", "a title", "desc", url), "invalid_product_id"),
        (line(repeated_id, "listed again", "desc", url), "duplicate_product_id"),
        (line("NOURL00000000001", "a title", "desc", ""), "missing_image_url"),
        (line("BLANKURL00000001", "a title", "desc", '"   "'), "missing_image_url"),
        (line("FTPURL0000000001", "a title", "desc", "ftp://h.example/a-200x200-x.jpeg"), "no_usable_image_url"),
        (line("NOTAURL000000001", "a title", "desc", "not a url"), "no_usable_image_url"),
        (line("NOSCHEME00000001", "a title", "desc", "http//h.example/a-200x200-x.jpeg"), "no_usable_image_url"),
        (line("NOHOST0000000001", "a title", "desc", "http:///a-200x200-x.jpeg"), "no_usable_image_url"),
        (b"", None),
        (b"   ", None),
        (line("LATIN10000000001", "caf\xe9 au lait", "desc", url).replace(b"\xc3\xa9", b"\xe9"), "invalid_utf8"),
        (line("BADBYTE\xff0000001", "a title", "desc", url).replace(b"\xc3\xbf", b"\xff"), "invalid_utf8"),
        (b"x" * 1_000_000, "malformed_line"),  # a megabyte with no separator
        (b"LONGJUNK00000001" + b",junk" * 100_000, "malformed_line"),
    ]
