"""Benchmark sets: real product photos, seeded edited copies, a catalog in the dump's layout and the truth.

From a folder of original photos, :func:`build_bench_set` writes, deterministically from a seed:

* ``images/``: every listing's JPEG, flat, named ``<productid>-x-200x200-<token>.jpg`` (the name the
  catalog's 200x200 URL asks for, and a flat folder the peers can read);
* ``catalog.csv``: one row per listing in the dump's 32 columns, URLs under ``base_url`` (serve the
  folder there with :class:`dedup.devkit.imageserver.ImageServer`);
* ``truth.csv``: productId, group, transform, source, split, image, params, ranges. Listings with
  the same ``group`` are duplicates; an empty group is a singleton. ``transform`` is ``original``,
  ``exact_real`` (a byte-identical copy already in the photo folder: a real duplicate listing) or
  the copy's edit; its kind is the part before ``:``. ``split`` (calibration or holdout) is drawn
  per source photo, so a photo and its copies never straddle the two parts. ``params`` (JSON) holds
  every parameter the edit drew and ``ranges`` the ``;``-separated parameter ranges it falls in
  (:func:`dedup.devkit.edits.range_labels`), so recall can be reported per range.

Two generators (``edits``):

* ``v2`` (the default): :mod:`dedup.devkit.edits`, every parameter drawn from the seed over wide ranges:
  resize, stretch (each axis on its own), quarter turns, small rotations, perspective and shear,
  crops to 70% of the area, pads, banners (the photo in a larger frame with text), downscaling to
  ~100 px and back, heavy JPEG, blur, noise, colour edits, text, logos, emoji, borders, flips,
  stacks of 2 or 3 (``stack:a+b``) and, when augly is installed, augly's edits (``augly:fn``).
* ``v1``: the first dev set's 16 :data:`TRANSFORMS` and ``combo:a+b`` combinations, at narrow
  ranges; kept so that it rebuilds byte for byte (its truth.csv has the first six columns only).

A share of the originals get edited copies; every other photo stays a singleton, so look-alike
products (the same cut in another colour, shoes shot in the same pose) are the hard negatives.

>>> import tempfile
>>> from dedup.devkit.synth import jpeg_bytes, product_image
>>> src, out = tempfile.mkdtemp(), tempfile.mkdtemp()
>>> for i in range(6):
...     _ = (Path(src) / f"{i}.jpg").write_bytes(jpeg_bytes(product_image(i)))
>>> meta = build_bench_set(src, out, seed=1, copied_share=0.5, augly_share=0)
>>> meta["listings"] > meta["originals"] == 6, meta["edits"], (Path(out) / "truth.csv").exists()
(True, 'v2', True)
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from dedup.devkit import edits as v2
from dedup.devkit.metrics import edit_kind
from dedup.devkit.synth import image_url_str, jpeg_bytes, write_catalog_csv

Transform = Callable[[Image.Image, random.Random], Image.Image]
TRUTH_COLUMNS = ("productId", "group", "transform", "source", "split", "image", "params", "ranges")
V1_COLUMNS = TRUTH_COLUMNS[:6]
GENERATORS = ("v2", "v1")
COPIED_SHARE = {"v1": 0.3, "v2": 0.35}  # share of photos given edited copies, by generator
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    share = rng.uniform(0.80, 0.92)  # of each side
    w, h = image.size
    cw, ch = int(w * share), int(h * share)
    x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
    return image.crop((x, y, x + cw, y + ch))


def _pad(image: Image.Image, rng: random.Random) -> Image.Image:
    """Pad to a wider or taller canvas, as a marketplace does to make photos fit its frame."""
    w, h = image.size
    extra = int(max(w, h) * rng.uniform(0.15, 0.35))
    size = (w + extra, h) if rng.random() < 0.5 else (w, h + extra)
    fill = rng.choice([(255, 255, 255), (240, 240, 240), (0, 0, 0)])
    canvas = Image.new("RGB", size, fill)
    canvas.paste(image, ((size[0] - w) // 2, (size[1] - h) // 2))
    return canvas


def _hue(image: Image.Image, rng: random.Random) -> Image.Image:
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + rng.choice([-1, 1]) * rng.randrange(8, 20)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def _noise(image: Image.Image, rng: random.Random) -> Image.Image:
    sigma = rng.uniform(4, 10)
    noisy = np.asarray(image, np.float32) + np.random.default_rng(rng.randrange(2**32)).normal(
        0, sigma, (*image.size[::-1], 3)
    )
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _text(image: Image.Image, rng: random.Random) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    w, h = image.size
    x, y = rng.randrange(4, w // 3), rng.choice([rng.randrange(4, h // 6), rng.randrange(h * 4 // 5, h - 16)])
    words = rng.choice(["SALE -30%", "NEW", "Best seller", "FREE SHIPPING", "50% OFF"])
    box = draw.textbbox((x, y), words)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=rng.choice([(200, 30, 30), (20, 20, 20)]))
    draw.text((x, y), words, fill=(255, 255, 255))
    return edited


def _logo(image: Image.Image, rng: random.Random) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    w, h = image.size
    side = int(min(w, h) * rng.uniform(0.10, 0.16))
    x = rng.choice([4, w - side - 4])
    y = rng.choice([4, h - side - 4])
    colour = tuple(rng.randrange(0, 256) for _ in range(3))
    draw.ellipse((x, y, x + side, y + side), fill=colour, outline=(255, 255, 255), width=2)
    draw.text((x + side // 4, y + side // 3), rng.choice(["M", "ZK", "B"]), fill=(255, 255, 255))
    return edited


def _rotate(image: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.choice([-1, 1]) * rng.uniform(2, 8)
    return image.rotate(angle, Image.Resampling.BILINEAR, expand=False, fillcolor=(255, 255, 255))


def _resize(image: Image.Image, rng: random.Random) -> Image.Image:
    factor = rng.choice([0.5, 0.6, 0.75, 1.5, 2.0])
    return image.resize(
        (max(8, round(image.width * factor)), max(8, round(image.height * factor))), Image.Resampling.LANCZOS
    )


TRANSFORMS: dict[str, Transform] = {
    "reencode": lambda im, rng: im,  # saved at a low JPEG quality below
    "resize": _resize,
    "crop": _crop,
    "pad": _pad,
    "brightness": lambda im, rng: ImageEnhance.Brightness(im).enhance(rng.choice([0.75, 0.85, 1.15, 1.25])),
    "contrast": lambda im, rng: ImageEnhance.Contrast(im).enhance(rng.choice([0.75, 0.85, 1.2, 1.3])),
    "saturation": lambda im, rng: ImageEnhance.Color(im).enhance(rng.choice([0.6, 0.8, 1.3, 1.5])),
    "hue": _hue,
    "blur": lambda im, rng: im.filter(ImageFilter.GaussianBlur(rng.uniform(0.8, 2.0))),
    "noise": _noise,
    "text": _text,
    "logo": _logo,
    "flip": lambda im, rng: ImageOps.mirror(im),
    "rotate": _rotate,
    "greyscale": lambda im, rng: ImageOps.grayscale(im).convert("RGB"),
}
COMBINABLE = ("resize", "crop", "pad", "brightness", "contrast", "saturation", "blur", "noise", "text", "logo", "flip")


def edit(image: Image.Image, transform: str, rng: random.Random) -> bytes:
    """The JPEG bytes of ``image`` after ``transform`` (a :data:`TRANSFORMS` name or ``combo:a+b``)."""
    names = transform.removeprefix("combo:").split("+")
    for name in names:
        image = TRANSFORMS[name](image, rng)
    quality = rng.randrange(35, 60) if transform == "reencode" else rng.randrange(75, 93)
    return jpeg_bytes(image, quality)


def _photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
    if not photos:
        raise ValueError(f"no photos ({', '.join(PHOTO_SUFFIXES)}) in {folder}")
    return photos


def edit_v2(image: Image.Image, kind: str, rng: random.Random) -> tuple[str, bytes, dict[str, Any], list[str]]:
    """One v2 copy of ``image``: (transform, JPEG bytes, params, range labels) for ``kind``, an
    :data:`dedup.devkit.edits.EDITS` name, ``stack`` or ``augly``. A ``jpeg`` edit (alone or in a stack)
    sets the saved quality; every other copy is saved at 70-94."""
    if kind == "augly":
        name, image, params = v2.augly_edit(image, rng)
        transform, labels = f"augly:{name}", v2.augly_labels(name)
    elif kind == "stack":
        image, params = v2.stack(image, rng)
        transform = "stack:" + "+".join(step["edit"] for step in params["steps"])
        labels = v2.range_labels("stack", params)
    else:
        image, params = v2.EDITS[kind](image, rng)
        transform, labels = kind, v2.range_labels(kind, params)
    steps = params.get("steps", [{"edit": kind, **params}])
    qualities = [step["quality"] for step in steps if step.get("edit") == "jpeg"]
    quality = min(qualities) if qualities else rng.randrange(70, 95)
    return transform, jpeg_bytes(image.convert("RGB"), quality), params, labels


def build_bench_set(
    photos: str | Path,
    out: str | Path,
    seed: int = 0,
    copied_share: float | None = None,
    holdout_share: float = 0.5,
    base_url: str = "http://127.0.0.1:8799",
    limit: int | None = None,
    edits: str = "v2",
    augly_share: float | None = None,
) -> dict[str, Any]:
    """Write ``images/``, ``catalog.csv``, ``truth.csv`` and ``meta.json`` into ``out``; return the meta.

    ``edits`` picks the generator (``v2`` or ``v1``, see the module doc); ``copied_share``
    defaults to :data:`COPIED_SHARE` of it. With ``v2``, ``augly_share`` of the copies come from
    augly (default: about 0.16 when augly is installed, else 0; asking for more than 0 without
    it is an error)."""
    if edits not in GENERATORS:
        raise ValueError(f"unknown edits generator {edits!r} (one of {', '.join(GENERATORS)})")
    copied_share = COPIED_SHARE[edits] if copied_share is None else copied_share
    if edits == "v2":
        if augly_share is None:
            augly_share = 4 / 25 if v2.augly_available() else 0.0
        elif augly_share > 0 and not v2.augly_available():
            raise ValueError("augly is not installed: pip install augly==1.0.0 (or --augly-share 0)")
    rng = random.Random(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    sources = _photos(Path(photos))
    if limit:
        sources = sorted(random.Random(seed).sample(sources, min(limit, len(sources))))
    by_digest: dict[str, list[Path]] = defaultdict(list)
    for path in sources:
        by_digest[hashlib.sha256(path.read_bytes()).hexdigest()].append(path)

    transforms = [*TRANSFORMS, "combo"]
    deck: list[str] = []
    rows: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []
    used_ids: set[str] = set()
    next_transform = 0

    def new_id() -> str:
        while (pid := "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=16))) in used_ids:
            pass
        used_ids.add(pid)
        return pid

    def add(data: bytes, group: str, transform: str, source: str, split: str, params: str = "",
            ranges: str = "") -> None:  # fmt: skip
        pid = new_id()
        name = f"{pid.lower()}-x-{hashlib.sha256(data).hexdigest()[:10]}"
        image = f"{pid.lower()}-x-200x200-{name.rsplit('-', 1)[1]}.jpg"
        (out / "images" / image).write_bytes(data)
        rows.append(
            {
                "productId": pid,
                "title": f"Listing of photo {source}",
                "imageUrlStr": image_url_str(base_url, name + ".jpg"),
                "categories": "Apparels>Benchmark",
            }
        )
        values = (pid, group, transform, source, split, image, params, ranges)
        truth.append(dict(zip(TRUTH_COLUMNS, values, strict=True)))

    def next_kind() -> str:
        """The v2 edit kinds dealt from a seeded shuffled deck, so each gets an equal share."""
        if not deck:
            deck.extend([*v2.EDITS, "stack", "stack", "stack"])
            augly_slots = round(len(deck) * augly_share / (1 - augly_share)) if augly_share else 0
            deck.extend(["augly"] * augly_slots)
            rng.shuffle(deck)
        return deck.pop()

    for paths in by_digest.values():
        source = paths[0].stem
        split = "holdout" if rng.random() < holdout_share else "calibration"
        copied = rng.random() < copied_share
        group = source if copied or len(paths) > 1 else ""
        data = paths[0].read_bytes()
        add(data, group, "original", source, split)
        for twin in paths[1:]:  # byte-identical photos already in the folder: real duplicate listings
            add(twin.read_bytes(), group, "exact_real", source, split)
        if not copied:
            continue
        with Image.open(paths[0]) as opened:
            original = ImageOps.exif_transpose(opened).convert("RGB")
        if edits == "v1":
            for _ in range(rng.choice([1, 1, 2, 3])):
                transform = transforms[next_transform % len(transforms)]
                next_transform += 1
                if transform == "combo":
                    transform = "combo:" + "+".join(rng.sample(COMBINABLE, rng.choice([2, 3])))
                add(edit(original, transform, rng), group, transform, source, split)
            continue
        for _ in range(rng.choice([1, 2, 2, 3])):
            transform, copy, params, labels = edit_v2(original, next_kind(), rng)
            add(copy, group, transform, source, split, json.dumps(params, sort_keys=True), ";".join(labels))

    write_catalog_csv(rows, out / "catalog.csv")
    columns = V1_COLUMNS if edits == "v1" else TRUTH_COLUMNS
    with open(out / "truth.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(truth)
    meta = {
        "seed": seed,
        "edits": edits,
        "photos": str(photos),
        "base_url": base_url,
        "copied_share": copied_share,
        "originals": len(by_digest),
        "listings": len(rows),
        "groups": len({t["group"] for t in truth if t["group"]}),
        "transforms": dict(sorted(Counter(edit_kind(t["transform"]) for t in truth).items())),
        "splits": dict(sorted(Counter(t["split"] for t in truth).items())),
    }
    if edits == "v2":
        meta["augly_share"] = augly_share
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def read_truth(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``truth.csv`` (a v1 file's rows get empty ``params`` and ``ranges``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{"params": "", "ranges": "", **row} for row in csv.DictReader(handle)]
