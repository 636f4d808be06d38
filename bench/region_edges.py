"""Content regions found by one step of :mod:`dedup.content`: a pasted photo's straight edges
(issue 14, phase 30: :func:`dedup.content._edge_rectangle`, on the bench set's banner copies), a
photo on a pad (phase 32: :func:`dedup.content._padded_photo`, on its pad copies) or on a ramp
(phase 38: the pad's ``ramp`` reading in :func:`dedup.content._trimmed_pad`, on its banner and pad
copies) or a photo turned in its canvas (phase 39: :func:`dedup.content._turned_photo`, on its
rotate copies): how often the region is the pasted photo, with and without the step (a turned
copy has no pasted photo: how often it gets a region); on a folder of ordinary photos, how many
more get a region, and the search's CPU per image.

Where the generator pasted the photo is found again by template matching: the original, resized
to the copy's share of it (a banner's ``photo_share``, a pad's ``1 / canvas_area``; at 11 scales,
0.9-1.1) and matched on the copy as the features stage decodes it. A region is the photo where its
box overlaps that placement by an intersection over union of 0.7 or more. "Without" skips the step (``--step``).

``--job``: for each banner copy that is no candidate of its original in that job's output (run on
the set), the photo at its true placement embedded as the features stage embeds a region, its
cosine to the original's stored embedding and the original's rank among all stored whole-image
embeddings: whether a region search that found the photo would have made the pair a candidate.

    .venv/bin/python bench/region_edges.py --set bench-out/dev2/set --job bench-out/r91/job/default \\
        --photos ../shared/data/fashion-catalog/images --out bench-out/region-edges.json
    .venv/bin/python bench/region_edges.py --step pad --set bench-out/dev2/set \\
        --photos ../shared/data/fashion-catalog/images --out bench-out/region-pads.json
    .venv/bin/python bench/region_edges.py --step ramp --set bench-out/dev2/set \\
        --photos ../shared/data/fashion-catalog/images --out bench-out/region-ramps.json
    .venv/bin/python bench/region_edges.py --step turn --set bench-out/dev2/set \\
        --photos ../shared/data/fashion-catalog/images --out bench-out/region-turns.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from dedup import content, features
from dedup.devkit.benchset import read_truth
from dedup.embed import cached_embedder, embedder_input
from dedup.settings import default_table
from dedup.vectors import normalise, stack

EMBED = default_table("embed")
NEAR = 0.7  # intersection over union with the pasted photo's placement


def decoded(path: Path) -> np.ndarray | None:
    """The image as the features stage decodes it for the embedder (its bomb limit, the model's
    input size as the draft size)."""
    limit = default_table("features").max_image_pixels
    return features.decoded_features(path.read_bytes(), limit, cached_embedder(EMBED).input_size)[1]


def placement(pixels: np.ndarray, original: np.ndarray, share: float) -> tuple[int, int, int, int]:
    """The box where ``original`` was pasted into ``pixels`` covering ``share`` of it."""
    height, width = pixels.shape[:2]
    pw = np.sqrt(share * width * height * original.shape[1] / original.shape[0])
    ph = pw * original.shape[0] / original.shape[1]
    best: tuple[float, tuple[int, int, int, int]] | None = None
    for factor in np.linspace(0.9, 1.1, 11):
        tw, th = round(pw * factor), round(ph * factor)
        if not (8 <= tw < width and 8 <= th < height):
            continue
        template = cv2.resize(original, (tw, th), interpolation=cv2.INTER_AREA)
        miss, _, at, _ = cv2.minMaxLoc(cv2.matchTemplate(pixels, template, cv2.TM_SQDIFF_NORMED))
        if best is None or miss < best[0]:
            best = (miss, (at[0], at[1], at[0] + tw, at[1] + th))
    assert best is not None
    return best[1]


def overlap(a: tuple[int, ...] | None, b: tuple[int, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 where ``a`` is None)."""
    return 0.0 if a is None else content.box_overlap(a, b) or 0.0


STEPS = {  # the step's function, the copies it is for
    "edges": ("_edge_rectangle", ("banner",)),
    "pad": ("_padded_photo", ("pad",)),
    "ramp": ("_trimmed_pad", ("banner", "pad")),
    "turn": ("_turned_photo", ("rotate",)),
}


def _without(name: str, found: Any) -> Any:
    """``found`` (the step's function) with the step left out: a ramp's reading alone, or all of it."""
    if name == "_trimmed_pad":
        return lambda colours, ramp: None if ramp else found(colours, ramp)
    return lambda *args: None


def boxes(pixels: np.ndarray, step: str = "edges") -> dict[str, Any]:
    """The region with and without ``step`` (:data:`STEPS`), and the CPU seconds of each search."""
    name = STEPS[step][0]
    found = getattr(content, name)
    try:
        setattr(content, name, _without(name, found))
        t0 = time.process_time()
        without = content.content_box(pixels, EMBED)
        t1 = time.process_time()
    finally:
        setattr(content, name, found)
    with_step = content.content_box(pixels, EMBED)
    t2 = time.process_time()
    return {"without": without, "with": with_step, "s_without": t1 - t0, "s_with": t2 - t1}


def placed_ranks(bench_set: Path, job: Path) -> list[dict[str, Any]]:
    """Each banner copy of ``bench_set`` that is no candidate of its original in ``job``: the
    pasted photo's embedding (at its true placement), its cosine to the original's and the
    original's rank among all whole-image embeddings (1: the nearest)."""
    truth = read_truth(bench_set / "truth.csv")
    originals = {r["source"]: r for r in truth if r["transform"] == "original"}
    candidates = pq.read_table(job / "candidates", columns=["a", "b"]).to_pylist()
    paired = {frozenset((c["a"], c["b"])) for c in candidates}
    rows = pq.read_table(job / "features", columns=["productId", "embedding"]).to_pylist()
    rows = [r for r in rows if r["embedding"] is not None]
    dim = len(rows[0]["embedding"]) // (2 if EMBED.dtype == "float16" else 4)
    whole = normalise(stack([r["embedding"] for r in rows], dim))
    at = {r["productId"]: i for i, r in enumerate(rows)}
    embedder = cached_embedder(EMBED)
    out = []
    for row in truth:
        original = originals[row["source"]]
        if row["transform"] != "banner" or frozenset((row["productId"], original["productId"])) in paired:
            continue
        pixels = decoded(bench_set / "images" / row["image"])
        photo = np.asarray(Image.open(bench_set / "images" / original["image"]).convert("RGB"))
        box = placement(pixels, photo, json.loads(row["params"])["photo_share"])
        region = embedder_input(content.square_region(pixels, box), embedder.input_size, EMBED.denoise_from)
        vector = normalise(embedder.embed(region[None]).astype(np.float32))[0]
        similar = whole @ vector
        similar[at[row["productId"]]] = -2.0  # the copy's own whole image
        cosine = float(similar[at[original["productId"]]])
        rank = int((similar > cosine).sum()) + 1
        found = content.content_box(pixels, EMBED)
        out.append({"copy": row["productId"], "split": row["split"], "cosine": round(cosine, 3), "rank": rank,
                    "found": found})  # fmt: skip
    return out


def copies(bench_set: Path, step: str = "edges") -> dict[str, Any]:
    """Per split: the step's copies (:data:`STEPS`) whose region is the pasted photo, something
    else or none, with and without it (a copy with no pasted photo, a turned one: a region or none)."""
    truth = read_truth(bench_set / "truth.csv")
    originals = {r["source"]: r for r in truth if r["transform"] == "original"}
    counts: dict[str, Counter] = {}
    for row in truth:
        if row["transform"] not in STEPS[step][1]:
            continue
        pixels = decoded(bench_set / "images" / row["image"])
        original = np.asarray(Image.open(bench_set / "images" / originals[row["source"]]["image"]).convert("RGB"))
        params = json.loads(row["params"])
        share = params.get("photo_share", 1 / params["canvas_area"] if "canvas_area" in params else None)
        photo = None if share is None else placement(pixels, original, share)
        found = boxes(pixels, step)
        tally = counts.setdefault(row["split"], Counter())
        tally["copies"] += 1
        kinds = {mode: _kind(found[mode], photo) for mode in ("without", "with")}
        for mode, kind in kinds.items():
            tally[f"{mode}: {kind}"] += 1
        near = {mode: kind in ("photo", "region") for mode, kind in kinds.items()}
        tally["gained"] += near["with"] and not near["without"]
        tally["lost"] += near["without"] and not near["with"]
    return {split: dict(sorted(c.items())) for split, c in sorted(counts.items())}


def _kind(box: tuple[int, ...] | None, photo: tuple[int, int, int, int] | None) -> str:
    """``none``; ``region`` where the copy has no pasted photo; else ``photo`` or ``other``."""
    if box is None:
        return "none"
    return "region" if photo is None else "photo" if overlap(box, photo) >= NEAR else "other"


def photos(folder: Path, step: str = "edges") -> dict[str, Any]:
    """Ordinary photos with a region, with and without ``step``, and the search's ms per image."""
    tally: Counter = Counter()
    seconds = {"without": 0.0, "with": 0.0}
    for path in sorted(folder.glob("*.jpg")):
        pixels = decoded(path)
        if pixels is None:
            continue
        found = boxes(pixels, step)
        tally["images"] += 1
        tally["without"] += found["without"] is not None
        tally["with"] += found["with"] is not None
        seconds["without"] += found["s_without"]
        seconds["with"] += found["s_with"]
    n = max(1, tally["images"])
    return {**tally, **{f"search_ms_{mode}": round(1000 * s / n, 2) for mode, s in seconds.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", choices=sorted(STEPS), default="edges", help="the step measured (default: edges)")
    parser.add_argument("--set", type=Path, help="a bench set (truth.csv, images/) with banner or pad copies")
    parser.add_argument("--job", type=Path, help="a job output on --set: its banners with no candidate, ranked")
    parser.add_argument("--photos", type=Path, help="a folder of ordinary photos (*.jpg)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report: dict[str, Any] = {}
    if args.set:
        report["banners" if args.step == "edges" else "pads"] = copies(args.set, args.step)
    if args.set and args.job and args.step == "edges":
        report["no_candidate_banners"] = placed_ranks(args.set, args.job)
    if args.photos:
        report["photos"] = photos(args.photos, args.step)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
