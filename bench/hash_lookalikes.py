"""How far the hash path's signals separate real duplicates from look-alike products.

On the fashion-catalog photos (9,583 real product photos; the byte-identical groups listed in
``exact_duplicate_groups.csv`` are the only known duplicates, every other pair is taken as two
products), it computes the job's own features (``dedup.features.hash_features``) and counts:

* pairs of different products within dHash distance ``t`` (the smaller of direct and mirrored),
  for t = 0..6, alone and together with the thumbnail check at several thresholds;
* the share of edited copies (made here from a seeded sample of the photos: re-encode, brightness,
  contrast, saturation, text overlay, noise, resize, mirror) that the default rule keeps.

Exact all-pairs counting is fine for this analysis (9,583 photos, numpy, in blocks); the job itself
never does it. Run from the repository root::

    .venv/bin/python bench/hash_lookalikes.py [--images DIR] [--sample 300] [--out bench-out/lookalikes]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import shlex
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from dedup.config import DEFAULTS
from dedup.devkit.synth import jpeg_bytes
from dedup.features import hash_features
from dedup.imaging import THUMB_SIZE, hamming, thumb_distance

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
THUMB_THRESHOLDS = (0.01, 0.02, 0.03, 0.06, 2.0)


def _overlay(image: Image.Image) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    draw.rectangle([6, 6, 58, 20], fill=(200, 30, 30))
    draw.text((10, 8), "SALE", fill=(255, 255, 255))
    return edited


def _noise(image: Image.Image) -> Image.Image:
    array = np.asarray(image, dtype=np.float32) + np.random.default_rng(1).normal(0, 6, (*image.size[::-1], 3))
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


EDITS = {
    "reencode_q60": lambda im: jpeg_bytes(im, 60),
    "brightness_1.15": lambda im: jpeg_bytes(ImageEnhance.Brightness(im).enhance(1.15)),
    "brightness_0.85": lambda im: jpeg_bytes(ImageEnhance.Brightness(im).enhance(0.85)),
    "contrast_1.15": lambda im: jpeg_bytes(ImageEnhance.Contrast(im).enhance(1.15)),
    "saturation_1.3": lambda im: jpeg_bytes(ImageEnhance.Color(im).enhance(1.3)),
    "overlay_text": lambda im: jpeg_bytes(_overlay(im)),
    "noise_sigma6": lambda im: jpeg_bytes(_noise(im)),
    "resize_160": lambda im: jpeg_bytes(im.resize((160, 160), Image.Resampling.LANCZOS)),
    "mirror": lambda im: jpeg_bytes(ImageOps.mirror(im)),
}


def distance(a: dict, b: dict) -> int:
    return min(hamming(a["dhash"], b["dhash"]), hamming(a["dhash_flip"], b["dhash"]))


def popcount64(values: np.ndarray) -> np.ndarray:
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--sample", type=int, default=300, help="photos edited for the recall part")
    parser.add_argument("--out", type=Path, default=Path("bench-out/lookalikes"))
    args = parser.parse_args(argv)
    t_default = DEFAULTS["hash"]["max_distance"]
    thumb_default = DEFAULTS["verify"]["max_thumb_distance"]

    paths = sorted(args.images.glob("*.jpg"))
    group_of: dict[str, str] = {}
    with open(args.images.parent / "exact_duplicate_groups.csv") as handle:
        for row in csv.DictReader(handle):
            group_of[f"{row['image_id']}.jpg"] = row["group"]
    features = [hash_features(p.read_bytes(), 50_000_000) for p in paths]
    dh = np.array([f["dhash"] for f in features], dtype=np.int64).view(np.uint64)
    fl = np.array([f["dhash_flip"] for f in features], dtype=np.int64).view(np.uint64)
    groups = np.array([group_of.get(p.name, f"solo{i}") for i, p in enumerate(paths)])

    within = {t: 0 for t in range(7)}
    with_thumb = {t: dict.fromkeys(THUMB_THRESHOLDS, 0) for t in range(7)}
    for i in range(len(paths)):
        d = np.minimum(popcount64(dh[i] ^ dh[i + 1 :]), popcount64(fl[i] ^ dh[i + 1 :]))
        other = groups[i + 1 :] != groups[i]
        close = np.nonzero(other & (d <= 6))[0]
        for j in close:
            td = thumb_distance(features[i]["thumb"], features[i + 1 + j]["thumb"])
            for t in range(d[j], 7):
                within[t] += 1
                for x in THUMB_THRESHOLDS:
                    with_thumb[t][x] += td <= x

    rng = random.Random(0)
    kept = defaultdict(list)
    for path in rng.sample(paths, min(args.sample, len(paths))):
        data = path.read_bytes()
        base = hash_features(data, 50_000_000)
        photo = Image.open(io.BytesIO(data)).convert("RGB")
        for name, edit in EDITS.items():
            copy = hash_features(edit(photo), 50_000_000)
            ok = distance(copy, base) <= t_default and thumb_distance(base["thumb"], copy["thumb"]) <= thumb_default
            kept[name].append(ok)

    results = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "photos": len(paths),
        "thumb_size": THUMB_SIZE,
        "different_product_pairs_within_t": within,
        "and_thumb_within": {t: {str(x): n for x, n in v.items()} for t, v in with_thumb.items()},
        "default_rule": {"max_distance": t_default, "max_thumb_distance": thumb_default},
        "edited_copies_kept_by_default_rule": {k: sum(v) / len(v) for k, v in kept.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    header = " | ".join(f"thumb <= {x}" if x < 2 else "dHash only" for x in reversed(THUMB_THRESHOLDS))
    print(f"| dHash distance <= t | {header} |\n|---|" + "---|" * len(THUMB_THRESHOLDS))
    for t in range(7):
        print(f"| {t} | " + " | ".join(f"{with_thumb[t][x]:,}" for x in reversed(THUMB_THRESHOLDS)) + " |")
    print("\n| edit | kept by the default rule |\n|---|---|")
    for name, share in results["edited_copies_kept_by_default_rule"].items():
        print(f"| {name} | {share:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
