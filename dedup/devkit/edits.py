"""Edits of a photo that keep it the same photograph, each parameter drawn from a seeded RNG over a wide range.

The users' definition of a duplicate covers a photo cropped, resized (also non-uniformly), padded,
rotated (quarter turns and small angles), slightly warped, recompressed, blurred, noisy,
recoloured and overlaid (text, logos, emoji, borders), and stacks of these. :data:`EDITS` holds
one function per kind: ``edit(image, rng) -> (edited, params)``; ``params`` records what was drawn
(JSON-ready), and :func:`range_labels` names the parameter range a copy falls in, so recall can
be reported per range. :func:`augly_edit` draws from augly (the augmentation library behind the
DISC21 copy-detection benchmark), a second, independent source of edits, when it is installed.

>>> import random
>>> from dedup.devkit.synth import product_image
>>> image, params = EDITS["stretch"](product_image(3), random.Random(1))
>>> sorted(params), 0.03 <= params["aspect_change"] <= 0.2
(['aspect_change', 'sx', 'sy'], True)
>>> range_labels("stretch", params)[0].startswith("stretch/aspect_change:")
True
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Edited = tuple[Image.Image, dict[str, Any]]
Edit = Callable[[Image.Image, random.Random], Edited]
WHITE = (255, 255, 255)
WORDS = ("SALE", "-30%", "NEW", "Best seller", "FREE SHIPPING", "50% OFF", "Only today", "$29.99", "Rs. 1,499",
         "Buy now", "Limited edition", "Summer collection", "Top rated", "In stock", "100% cotton")  # fmt: skip


def _r(value: float, digits: int = 3) -> float:
    return round(float(value), digits)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(8, size))


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _fill(rng: random.Random) -> tuple[int, int, int]:
    """A canvas colour: mostly white or light grey, as marketplaces pad; sometimes black or any colour."""
    return rng.choice([WHITE, WHITE, (245, 245, 245), (230, 230, 230), (0, 0, 0), _colour(rng)])


def _resize(image: Image.Image, width: float, height: float) -> Image.Image:
    return image.resize((max(8, round(width)), max(8, round(height))), Image.Resampling.LANCZOS)


def resize(image: Image.Image, rng: random.Random) -> Edited:
    factor = math.exp(rng.uniform(math.log(0.4), math.log(2.0)))
    return _resize(image, image.width * factor, image.height * factor), {"factor": _r(factor)}


def stretch(image: Image.Image, rng: random.Random) -> Edited:
    """Each axis scaled independently: the aspect ratio changes by 3-20%, the size by 0.6-1.6x."""
    scale = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
    change = rng.uniform(0.03, 0.20) * rng.choice([-1, 1])
    sx, sy = scale * math.sqrt(1 + change), scale / math.sqrt(1 + change)
    return _resize(image, image.width * sx, image.height * sy), {
        "sx": _r(sx), "sy": _r(sy), "aspect_change": _r(abs(change))}  # fmt: skip


def quarter_turn(image: Image.Image, rng: random.Random) -> Edited:
    angle = rng.choice([90, 180, 270])
    return image.rotate(angle, expand=True), {"angle": angle}


def rotate(image: Image.Image, rng: random.Random) -> Edited:
    angle = rng.uniform(1, 10) * rng.choice([-1, 1])
    expand = rng.random() < 0.5
    rotated = image.rotate(angle, Image.Resampling.BICUBIC, expand=expand, fillcolor=_fill(rng))
    return rotated, {"angle": _r(angle, 2), "expand": expand}


def warp(image: Image.Image, rng: random.Random) -> Edited:
    """A small perspective (corners moved by up to 10% of a side) or shear (up to 0.2)."""
    w, h = image.size
    if rng.random() < 0.5:
        amount = rng.uniform(0.02, 0.10)
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
        moved = [(x + rng.uniform(-1, 1) * amount * w, y + rng.uniform(-1, 1) * amount * h) for x, y in corners]
        coeffs = _perspective_coefficients(moved, corners)
        warped = image.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC, fillcolor=WHITE)
        return warped, {"mode": "perspective", "amount": _r(amount)}
    amount = rng.uniform(0.03, 0.20) * rng.choice([-1, 1])
    if rng.random() < 0.5:  # horizontal shear, canvas widened to keep the whole photo
        extra = abs(amount) * h
        matrix = (1, amount, -extra if amount > 0 else 0, 0, 1, 0)
        size = (round(w + extra), h)
    else:
        extra = abs(amount) * w
        matrix = (1, 0, 0, amount, 1, -extra if amount > 0 else 0)
        size = (w, round(h + extra))
    sheared = image.transform(size, Image.Transform.AFFINE, matrix, Image.Resampling.BICUBIC, fillcolor=WHITE)
    return sheared, {"mode": "shear", "amount": _r(abs(amount))}


def _perspective_coefficients(target: list[tuple[float, float]], source: list[tuple[float, float]]) -> list[float]:
    """PIL's 8 perspective coefficients mapping output points ``source`` to input points ``target``."""
    rows = []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, float), np.array(target, float).reshape(8))
    return solution.tolist()


def crop(image: Image.Image, rng: random.Random) -> Edited:
    """Down to 70-95% of the area, the crop's aspect drawn too, anywhere in the photo."""
    area = rng.uniform(0.70, 0.95)
    ratio = rng.uniform(0.85, 1.15)
    fw, fh = min(1.0, math.sqrt(area) * ratio), min(1.0, math.sqrt(area) / ratio)
    w, h = image.size
    cw, ch = max(8, int(w * fw)), max(8, int(h * fh))
    x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
    return image.crop((x, y, x + cw, y + ch)), {"area": _r(cw * ch / (w * h))}


def pad(image: Image.Image, rng: random.Random) -> Edited:
    """Onto a larger canvas (10-80% more on one or both axes), placed anywhere on it."""
    w, h = image.size
    axes = rng.choice(["x", "y", "xy"])
    cw = round(w * (1 + rng.uniform(0.1, 0.8))) if "x" in axes else w
    ch = round(h * (1 + rng.uniform(0.1, 0.8))) if "y" in axes else h
    canvas = Image.new("RGB", (cw, ch), _fill(rng))
    canvas.paste(image, (rng.randrange(cw - w + 1), rng.randrange(ch - h + 1)))
    return canvas, {"canvas_area": _r(cw * ch / (w * h))}


def banner(image: Image.Image, rng: random.Random) -> Edited:
    """The photo pasted into a larger frame with text around it, as a screenshot or a web banner."""
    layout = rng.choice(["wide", "banner", "square", "mobile"])
    aspect = {"wide": 16 / 9, "banner": 3.0, "square": 1.0, "mobile": 9 / 16}[layout]
    share = rng.uniform(0.25, 0.7)  # of the frame's area the photo covers
    scale = rng.uniform(0.7, 1.3)
    pw, ph = max(16, round(image.width * scale)), max(16, round(image.height * scale))
    frame_area = pw * ph / share
    fw, fh = math.sqrt(frame_area * aspect), math.sqrt(frame_area / aspect)
    fw, fh = max(fw, pw + 4), max(fh, ph + 4)
    fw, fh = round(fw), round(fh)
    photo = image.resize((pw, ph), Image.Resampling.LANCZOS)
    top, bottom = _fill(rng), _fill(rng)
    ramp = np.linspace(0, 1, fh)[:, None, None]
    frame = Image.fromarray((np.array(top) * (1 - ramp) + np.array(bottom) * ramp).astype(np.uint8).repeat(fw, 1))
    x, y = rng.randrange(fw - pw + 1), rng.randrange(fh - ph + 1)
    frame.paste(photo, (x, y))
    draw = ImageDraw.Draw(frame)
    ink = (20, 20, 20) if sum(top) > 380 else WHITE
    for _ in range(rng.randrange(2, 6)):  # title, price, buttons: in the space the photo leaves
        size = max(9, round(fh * rng.uniform(0.04, 0.1)))
        words = rng.choice(WORDS)
        for _attempt in range(8):
            tx, ty = rng.randrange(max(1, fw - size * 4)), rng.randrange(max(1, fh - size))
            box = draw.textbbox((tx, ty), words, font=_font(size))
            if box[2] < x or box[0] > x + pw or box[3] < y or box[1] > y + ph:
                if rng.random() < 0.4:
                    draw.rounded_rectangle((box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3), 4, fill=_colour(rng))
                draw.text((tx, ty), words, fill=ink, font=_font(size))
                break
    return frame, {"layout": layout, "photo_share": _r(pw * ph / (fw * fh))}


def down_up(image: Image.Image, rng: random.Random) -> Edited:
    """Downscaled to 90-160 px on its shorter side, then upscaled to 0.8-1.5x the original size."""
    side = rng.uniform(90, 160)
    factor = side / min(image.size)
    small = _resize(image, image.width * factor, image.height * factor)
    up = rng.uniform(0.8, 1.5)
    resample = rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST])
    big = small.resize((round(image.width * up), round(image.height * up)), resample)
    return big, {"side": round(side), "upscale": _r(up)}


def jpeg(image: Image.Image, rng: random.Random) -> Edited:
    return image, {"quality": rng.randrange(8, 36)}  # the quality is applied when the copy is saved


def blur(image: Image.Image, rng: random.Random) -> Edited:
    sigma = rng.uniform(1.0, 3.5) * min(image.size) / 224  # at the photo's own scale
    return image.filter(ImageFilter.GaussianBlur(sigma)), {"sigma": _r(sigma * 224 / min(image.size), 2)}


def noise(image: Image.Image, rng: random.Random) -> Edited:
    sigma = rng.uniform(6, 25)
    generator = np.random.default_rng(rng.randrange(2**32))
    pixels = np.asarray(image, np.float32)
    if rng.random() < 0.5:  # grain: one value per pixel, as a sensor's luma noise
        grain = generator.normal(0, sigma, pixels.shape[:2])[..., None]
    else:
        grain = generator.normal(0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8)), {"sigma": _r(sigma, 1)}


def colour(image: Image.Image, rng: random.Random) -> Edited:
    """One colour edit: brightness, contrast, saturation (greyscale included), hue, gamma or a tint."""
    op = rng.choice(["brightness", "contrast", "saturation", "hue", "gamma", "tint", "greyscale"])
    if op in ("brightness", "contrast"):
        amount = rng.uniform(0.55, 1.5)
        enhancer = ImageEnhance.Brightness if op == "brightness" else ImageEnhance.Contrast
        return enhancer(image).enhance(amount), {"op": op, "amount": _r(amount)}
    if op == "saturation":
        amount = rng.uniform(0.2, 1.8)
        return ImageEnhance.Color(image).enhance(amount), {"op": op, "amount": _r(amount)}
    if op == "greyscale":
        return ImageOps.grayscale(image).convert("RGB"), {"op": op}
    pixels = np.asarray(image, np.float32)
    if op == "hue":
        shift = rng.randrange(5, 31) * rng.choice([-1, 1])
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
        return Image.fromarray(hsv, "HSV").convert("RGB"), {"op": op, "amount": shift}
    if op == "gamma":
        gamma = math.exp(rng.uniform(math.log(0.55), math.log(1.8)))
        out = 255 * (pixels / 255) ** gamma
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), {"op": op, "amount": _r(gamma)}
    gains = [rng.uniform(0.8, 1.2) for _ in range(3)]
    out = pixels * np.array(gains, np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), {"op": op, "amount": [_r(g) for g in gains]}


def text(image: Image.Image, rng: random.Random) -> Edited:
    """1-3 captions, 5-15% of the height tall, anywhere, on a box or bare."""
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    w, h = image.size
    covered = np.zeros((h, w), bool)
    lines = rng.randrange(1, 4)
    for _ in range(lines):
        font = _font(round(h * rng.uniform(0.05, 0.15)))
        words = rng.choice(WORDS)
        box = draw.textbbox((0, 0), words, font=font)
        x = rng.randrange(max(1, w - (box[2] - box[0])))
        y = rng.randrange(max(1, h - (box[3] - box[1])))
        box = draw.textbbox((x, y), words, font=font)
        if rng.random() < 0.5:
            draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=_colour(rng))
        draw.text((x, y), words, fill=_colour(rng), font=font)
        covered[max(0, box[1]) : box[3], max(0, box[0]) : box[2]] = True
    return edited, {"lines": lines, "covered": _r(covered.mean())}


def _stamp(image: Image.Image, mark: Image.Image, rng: random.Random, opacity: float) -> Image.Image:
    """``mark`` (RGBA) pasted anywhere on ``image`` at ``opacity``."""
    alpha = mark.getchannel("A").point(lambda v: round(v * opacity))
    x = rng.randrange(max(1, image.width - mark.width))
    y = rng.randrange(max(1, image.height - mark.height))
    image.paste(mark.convert("RGB"), (x, y), alpha)
    return image


def logo(image: Image.Image, rng: random.Random) -> Edited:
    """A brand mark (a disc or rounded square with letters), 8-22% of the shorter side, 60-100% opaque."""
    side = max(12, round(min(image.size) * rng.uniform(0.08, 0.22)))
    mark = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(mark)
    fill = (*_colour(rng), 255)
    if rng.random() < 0.5:
        draw.ellipse((0, 0, side - 1, side - 1), fill=fill, outline=(255, 255, 255, 255), width=2)
    else:
        draw.rounded_rectangle((0, 0, side - 1, side - 1), side // 5, fill=fill)
    letters = rng.choice(["M", "ZK", "B", "&Co", "24"])
    draw.text((side // 2, side // 2), letters, fill=(255, 255, 255, 255), font=_font(side // 3), anchor="mm")
    opacity = rng.uniform(0.6, 1.0)
    return _stamp(image.copy(), mark, rng, opacity), {"side": _r(side / min(image.size)), "opacity": _r(opacity)}


def _emoji(side: int, rng: random.Random) -> Image.Image:
    """A drawn emoji (a smiley, a heart or a star), RGBA."""
    mark = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(mark)
    shape = rng.choice(["smiley", "heart", "star"])
    if shape == "smiley":
        draw.ellipse((0, 0, side - 1, side - 1), fill=(255, 204, 51, 255), outline=(200, 140, 0, 255))
        eye = max(1, side // 10)
        for cx in (side * 0.33, side * 0.67):
            draw.ellipse((cx - eye, side * 0.35 - eye, cx + eye, side * 0.35 + eye), fill=(60, 40, 20, 255))
        draw.arc((side * 0.25, side * 0.3, side * 0.75, side * 0.78), 20, 160, fill=(60, 40, 20, 255),
                 width=max(1, side // 14))  # fmt: skip
    elif shape == "heart":
        r = side / 4
        draw.ellipse((0, 0, 2 * r, 2 * r), fill=(230, 30, 70, 255))
        draw.ellipse((2 * r, 0, 4 * r - 1, 2 * r), fill=(230, 30, 70, 255))
        draw.polygon([(0, r * 1.2), (side - 1, r * 1.2), (side / 2, side - 1)], fill=(230, 30, 70, 255))
    else:
        radii = [side / 2 * (1 if k % 2 == 0 else 0.45) for k in range(10)]
        points = [(side / 2 + r * math.sin(k * math.pi / 5), side / 2 - r * math.cos(k * math.pi / 5))
                  for k, r in enumerate(radii)]  # fmt: skip
        draw.polygon(points, fill=(255, 190, 0, 255), outline=(220, 120, 0, 255))
    return mark


def emoji(image: Image.Image, rng: random.Random) -> Edited:
    """1-4 emoji, each 8-22% of the shorter side, anywhere."""
    edited = image.copy()
    count = rng.randrange(1, 5)
    size = rng.uniform(0.08, 0.22)
    for _ in range(count):
        _stamp(edited, _emoji(max(10, round(min(image.size) * size)), rng), rng, 1.0)
    return edited, {"count": count, "size": _r(size)}


def border(image: Image.Image, rng: random.Random) -> Edited:
    """A frame 2-12% of the shorter side wide: added around the photo, or painted over its edge."""
    width = max(2, round(min(image.size) * rng.uniform(0.02, 0.12)))
    mode = rng.choice(["around", "over"])
    fill = _colour(rng) if rng.random() < 0.6 else rng.choice([(0, 0, 0), (200, 160, 60)])
    if mode == "around":
        framed = ImageOps.expand(image, border=width, fill=fill)
    else:
        framed = image.copy()
        ImageDraw.Draw(framed).rectangle((0, 0, image.width - 1, image.height - 1), outline=fill, width=width)
    if rng.random() < 0.3:  # a thin inner line, as picture frames have
        ImageDraw.Draw(framed).rectangle((width, width, framed.width - width - 1, framed.height - width - 1),
                                         outline=WHITE, width=max(1, width // 4))  # fmt: skip
    return framed, {"mode": mode, "width": _r(width / min(image.size))}


def flip(image: Image.Image, rng: random.Random) -> Edited:
    return ImageOps.mirror(image), {}


EDITS: dict[str, Edit] = {
    "resize": resize,
    "stretch": stretch,
    "quarter_turn": quarter_turn,
    "rotate": rotate,
    "warp": warp,
    "crop": crop,
    "pad": pad,
    "banner": banner,
    "down_up": down_up,
    "jpeg": jpeg,
    "blur": blur,
    "noise": noise,
    "colour": colour,
    "text": text,
    "logo": logo,
    "emoji": emoji,
    "border": border,
    "flip": flip,
}
"""Every kind of edit: name -> ``edit(image, rng) -> (edited image, drawn parameters)``."""

RANGES: dict[str, tuple[str, tuple[float, ...]]] = {
    "resize": ("factor", (0.4, 0.6, 0.9, 1.1, 1.5, 2.0)),
    "stretch": ("aspect_change", (0.03, 0.08, 0.14, 0.2)),
    "quarter_turn": ("angle", ()),
    "rotate": ("angle", (1, 4, 7, 10)),
    "warp": ("amount", (0.02, 0.05, 0.1, 0.2)),
    "crop": ("area", (0.7, 0.8, 0.9, 0.95)),
    "pad": ("canvas_area", (1.1, 1.4, 2.0, 3.3)),
    "banner": ("photo_share", (0.1, 0.3, 0.45, 0.7)),
    "down_up": ("side", (90, 110, 130, 160)),
    "jpeg": ("quality", (8, 15, 25, 36)),
    "blur": ("sigma", (1.0, 2.0, 3.0, 3.5)),
    "noise": ("sigma", (6, 12, 18, 25)),
    "colour": ("op", ()),
    "text": ("covered", (0.0, 0.05, 0.1, 0.2, 1.0)),
    "logo": ("side", (0.08, 0.14, 0.22)),
    "emoji": ("count", ()),
    "border": ("width", (0.02, 0.05, 0.08, 0.12)),
    "stack": ("steps", ()),
    "augly": ("fn", ()),
}
"""Edit -> (the parameter its recall is reported by, the edges of its ranges; empty: by value)."""


def range_labels(kind: str, params: dict[str, Any]) -> list[str]:
    """``kind/param:range`` labels of one edit (a stack: its own and each step's).

    >>> range_labels("rotate", {"angle": -5.2, "expand": True})
    ['rotate/angle:4-7']
    >>> range_labels("stack", {"steps": [{"edit": "flip"}, {"edit": "jpeg", "quality": 9}]})
    ['stack/steps:2', 'flip', 'jpeg/quality:8-15']
    """
    if kind == "stack":
        labels = [f"stack/steps:{len(params['steps'])}"]
        for step in params["steps"]:
            labels += range_labels(step["edit"], step)
        return labels
    if kind not in RANGES:
        return [kind]
    name, edges = RANGES[kind]
    value = params.get(name)
    if kind == "warp":
        name = f"{params['mode']}_amount"
    if not edges or value is None:
        return [f"{kind}/{name}:{value}"]
    value = abs(float(value))
    for low, high in itertools.pairwise(edges):
        if value < high:
            return [f"{kind}/{name}:{low:g}-{high:g}"]
    return [f"{kind}/{name}:{edges[-2]:g}-{edges[-1]:g}"]


STACKABLE = tuple(name for name in EDITS if name != "banner")  # a banner is the last step a stack would take


def stack(image: Image.Image, rng: random.Random) -> Edited:
    """2 or 3 different edits, one after another (at most one that changes the canvas a lot)."""
    names = rng.sample(STACKABLE, rng.choice([2, 3]))
    steps = []
    for name in names:
        image, params = EDITS[name](image, rng)
        steps.append({"edit": name, **params})
    return image, {"steps": steps}


# --- augly: a second, independent source of edits (optional dependency) ---

AUGLY_EDITS = ("screenshot", "emoji", "text", "skew", "aspect_ratio", "scale", "pixelization", "noise",
               "colour_jitter", "encoding_quality", "blur", "sharpen", "rotate", "crop", "pad", "pad_square",
               "saturation", "grayscale", "hflip")  # fmt: skip
"""augly 1.0's image functions that keep a copy within the users' definition and run with today's
Pillow and numpy (``meme_format`` and ``perspective_transform`` do not)."""
AUGLY_FONTS = ("Raleway-Bold.ttf", "OpenSans-Regular.ttf", "Montserrat-Black.ttf")


def augly_available() -> bool:
    try:
        import augly.image  # noqa: F401
    except ImportError:
        return False
    return True


def _augly_call(name: str, rng: random.Random) -> tuple[Callable[..., Image.Image], dict[str, Any]]:
    """The augly function behind ``name`` and keyword arguments drawn for it."""
    import augly.image as imaugs
    from augly.utils import EMOJI_DIR, FONTS_DIR, SCREENSHOT_TEMPLATES_DIR

    def emoji_file() -> str:
        import os

        folder = os.path.join(EMOJI_DIR, rng.choice(["smileys", "people", "objects", "symbols", "food_and_drink"]))
        return os.path.join(folder, rng.choice(sorted(os.listdir(folder))))

    u = rng.uniform
    draws: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "screenshot": ("overlay_onto_screenshot", lambda: {
            "template_filepath": f"{SCREENSHOT_TEMPLATES_DIR}/{rng.choice(['web.png', 'mobile.png'])}",
            "crop_src_to_fit": rng.random() < 0.5}),
        "emoji": ("overlay_emoji", lambda: {"emoji_path": emoji_file(), "emoji_size": _r(u(0.1, 0.3)),
                                            "opacity": _r(u(0.7, 1.0)), "x_pos": _r(u(0, 0.75)),
                                            "y_pos": _r(u(0, 0.75))}),
        "text": ("overlay_text", lambda: {"text": [rng.randrange(30, 120) for _ in range(rng.randrange(3, 10))],
                                          "font_file": f"{FONTS_DIR}/{rng.choice(AUGLY_FONTS)}",
                                          "font_size": _r(u(0.05, 0.2)), "color": _colour(rng),
                                          "x_pos": _r(u(0, 0.5)), "y_pos": _r(u(0, 0.8))}),
        "skew": ("skew", lambda: {"skew_factor": _r(u(0.05, 0.3) * rng.choice([-1, 1])), "axis": rng.choice([0, 1])}),
        "aspect_ratio": ("change_aspect_ratio", lambda: {"ratio": _r(math.exp(u(math.log(0.8), math.log(1.25))))}),
        "scale": ("scale", lambda: {"factor": _r(u(0.3, 0.8))}),
        "pixelization": ("pixelization", lambda: {"ratio": _r(u(0.35, 0.7))}),
        "noise": ("random_noise", lambda: {"var": _r(u(0.002, 0.02), 4), "seed": rng.randrange(2**31)}),
        "colour_jitter": ("color_jitter", lambda: {"brightness_factor": _r(u(0.7, 1.3)),
                                                   "contrast_factor": _r(u(0.7, 1.3)),
                                                   "saturation_factor": _r(u(0.4, 1.6))}),
        "encoding_quality": ("encoding_quality", lambda: {"quality": rng.randrange(10, 40)}),
        "blur": ("blur", lambda: {"radius": _r(u(1.0, 3.0))}),
        "sharpen": ("sharpen", lambda: {"factor": _r(u(1.5, 4.0))}),
        "rotate": ("rotate", lambda: {"degrees": _r(u(1, 10) * rng.choice([-1, 1]), 2)}),
        "crop": ("crop", lambda: _augly_crop(rng)),
        "pad": ("pad", lambda: {"w_factor": _r(u(0.05, 0.4)), "h_factor": _r(u(0.05, 0.4)), "color": _fill(rng)}),
        "pad_square": ("pad_square", lambda: {"color": _fill(rng)}),
        "saturation": ("saturation", lambda: {"factor": _r(u(0.2, 1.8))}),
        "grayscale": ("grayscale", dict),
        "hflip": ("hflip", dict),
    }  # fmt: skip
    function, kwargs = draws[name]
    return getattr(imaugs, function), kwargs()


def _augly_crop(rng: random.Random) -> dict[str, float]:
    area = rng.uniform(0.7, 0.95)
    fw = min(1.0, math.sqrt(area) * rng.uniform(0.9, 1.1))
    fh = min(1.0, area / fw)
    x, y = rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh)
    return {"x1": _r(x), "y1": _r(y), "x2": _r(x + fw), "y2": _r(y + fh)}


def augly_edit(image: Image.Image, rng: random.Random) -> tuple[str, Image.Image, dict[str, Any]]:
    """One augly edit (a third of the time, two in a row): (name, edited image, parameters)."""
    names = rng.sample(AUGLY_EDITS, 2 if rng.random() < 1 / 3 else 1)
    calls = []
    for name in names:
        function, kwargs = _augly_call(name, rng)
        image = function(image.convert("RGB"), **kwargs).convert("RGB")
        recorded = {k: v.rsplit("/", 1)[-1] if isinstance(v, str) else list(v) if isinstance(v, tuple) else v
                    for k, v in kwargs.items()}  # fmt: skip
        calls.append({"fn": name, **recorded})
    return "+".join(names), image, {"calls": calls}


def augly_labels(name: str) -> list[str]:
    """Range labels of an augly copy: one per function it applied.

    >>> augly_labels("blur+rotate")
    ['augly/fn:blur', 'augly/fn:rotate']
    """
    return [f"augly/fn:{fn}" for fn in name.split("+")]
