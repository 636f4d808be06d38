"""Which photo-check changes carry their weight: variants scored pair by pair on one split's candidates.

The pairs are those the photo check decides on a bench set's **calibration** split (never the
holdout), from the job's stored embeddings and hashes (``features/``), exact search within the
split: those at the 0.7 cosine floor or dHash 0 (what the job photo-checks today), and, since
issue 12 replaces the floor with the k nearest neighbours, each product's ``--k`` nearest
neighbours. Each pair is
a true copy (same truth group; its edit kind when one side is the original) or a look-alike.

Every variant of :data:`VARIANTS` scores every pair from per-image descriptions computed once
per image (as issue 12's split of ``dedup/photomatch.py`` stores them), then its best rule of a
small grid is chosen as bench/calibrate_photo.py would: the highest recall of true pairs whose
look-alike false pairs stay at or under the current check's at its defaults on the same pairs.
Reported per variant: that rule, recall per edit kind and per parameter range (with the pairs
behind each), false pairs, and the CPU milliseconds of the per-pair part (the per-image part
apart).

Run from the repository root, on the output of ``bench/quality.py``::

    .venv/bin/python bench/photo_study.py --job bench-out/dev2/job/default --set bench-out/dev2/set \\
        --out bench-out/dev2/photo-study.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from dedup import photomatch as pm
from dedup.devkit.benchset import read_truth
from dedup.devkit.metrics import edit_kind
from dedup.imaging import decode_pixels
from dedup.vectors import stack

FLOOR = 0.7


@dataclass(frozen=True)
class Variant:
    """One photo-check design: ``fit`` (similarity, affine, homography, or best: the similarity or
    the affine map with more inliers, as dedup/photomatch.py fits), keypoint ``scales``
    (the longer side each description is computed at), ``quarter`` (a second chance with b turned
    by 90, 180, 270 degrees), ``band`` (fixed: DoG 1.5-4 px; adaptive: a coarser band when either
    image lacks fine detail), ``fast`` (ORB's FAST threshold)."""

    fit: str = "similarity"
    scales: tuple[int, ...] = (256,)
    quarter: bool = False
    band: str = "fixed"
    fast: int = 10

    @property
    def name(self) -> str:
        parts = [self.fit, "+".join(map(str, self.scales))]
        parts += ["quarter"] if self.quarter else []
        parts += ["adaptive"] if self.band == "adaptive" else []
        parts += [f"fast{self.fast}"] if self.fast != 10 else []
        return " ".join(parts)


VARIANTS = (
    Variant(),  # today's check
    Variant(fit="affine"),
    Variant(fit="homography"),
    Variant(scales=(256, 128)),
    Variant(fit="affine", scales=(256, 128)),
    Variant(fit="affine", scales=(256, 128), band="adaptive"),
    Variant(fit="affine", scales=(256, 128), quarter=True),
    Variant(fit="affine", fast=5),
    Variant(fit="best"),  # what dedup/photomatch.py does now
)


@dataclass
class Description:
    """Per-image part: the shape at <= 256 px and ORB points and descriptors at each (scale, FAST
    threshold), points in the 256-px frame; ``pixels()`` decodes the image again (for the
    comparison only, as issue 12's split does), ``mirrored`` tells which side this is."""

    shape: tuple[int, int]
    pixels: Any
    mirrored: bool = False
    keys: dict[tuple[int, int], tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)

    def rgb(self) -> np.ndarray:
        rgb = np.ascontiguousarray(pm.prepare(self.pixels()))
        return np.ascontiguousarray(rgb[:, ::-1]) if self.mirrored else rgb


_ORBS: dict[int, Any] = {}


def orb(fast: int) -> Any:
    if fast not in _ORBS:
        cv2.setNumThreads(1)
        _ORBS[fast] = cv2.ORB_create(nfeatures=pm.ORB_FEATURES, edgeThreshold=15, patchSize=15, fastThreshold=fast)
    return _ORBS[fast]


def keypoints(grey: np.ndarray, side: int, fast: int) -> tuple[np.ndarray, np.ndarray | None]:
    """ORB points (in ``grey``'s frame) and descriptors of ``grey`` shrunk to ``side`` a side."""
    scale = min(1.0, side / max(grey.shape))
    small = grey if scale >= 1 else cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    found, descriptors = orb(fast).detectAndCompute(small, None)
    points = np.float32([k.pt for k in found]).reshape(-1, 2) / scale
    return points, descriptors


def describe(pixels: Any, configs: list[tuple[int, int]]) -> tuple[Description, Description]:
    """The descriptions of an image (``pixels()`` decodes it) and of its mirror, at every config."""
    rgb = np.ascontiguousarray(pm.prepare(pixels()))
    grey = pm._grey(rgb)
    direct, mirror = Description(grey.shape, pixels), Description(grey.shape, pixels, mirrored=True)
    flipped = np.ascontiguousarray(grey[:, ::-1])
    for side, fast in configs:
        direct.keys[(side, fast)] = keypoints(grey, side, fast)
        mirror.keys[(side, fast)] = keypoints(flipped, side, fast)
    return direct, mirror


def turned(d: Description, turns: int, fast: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray | None]]:
    """RGB and 256-px keypoints of ``d``'s image turned by ``turns`` quarter turns."""
    rgb = np.ascontiguousarray(np.rot90(d.rgb(), turns))
    return rgb, keypoints(pm._grey(rgb), 256, fast)


def keys_of(d: Description, side: int, fast: int) -> tuple[np.ndarray, np.ndarray | None]:
    return d.keys[(side, fast)]


def fit(a: tuple, b: tuple, model: str) -> tuple[int, int, np.ndarray | None]:
    """(inliers, matches, 3x3 matrix taking b to a) of two (points, descriptors)."""
    (pa, da), (pb, db) = a, b
    if da is None or db is None or len(pa) < 2 or len(pb) < 2:
        return 0, 0, None
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(da, db, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < pm.RATIO * m[1].distance]
    if len(good) < 4:
        return 0, len(good), None
    src, dst = pb[[m.trainIdx for m in good]], pa[[m.queryIdx for m in good]]
    kw = {"method": cv2.RANSAC, "ransacReprojThreshold": pm.RANSAC_PIXELS}
    if model == "homography":
        matrix, mask = cv2.findHomography(src, dst, maxIters=500, confidence=0.99, **kw)
        if matrix is not None and (abs(matrix[2, 0]) > 2e-3 or abs(matrix[2, 1]) > 2e-3):
            return 0, len(good), None  # more perspective than a small warp: not a copy's
    elif model == "best":  # photomatch's fit, compared under its first map only (a homography where it kept one)
        inliers, maps = pm._fit(pm.Keypoints(pa, da), pm.Keypoints(pb, db))[0::2]
        if maps is None:
            return 0, len(good), None
        return inliers, len(good), maps[0] if maps[0].shape == (3, 3) else np.vstack([maps[0], [0, 0, 1]])
    else:
        estimate = cv2.estimateAffine2D if model == "affine" else cv2.estimateAffinePartial2D
        matrix, mask = estimate(src, dst, maxIters=500, confidence=0.99, **kw)
        if matrix is not None:
            matrix = np.vstack([matrix, [0, 0, 1]])
    if matrix is None or mask is None:
        return 0, len(good), None
    linear = matrix[:2, :2]
    singular = np.linalg.svd(linear, compute_uv=False)
    if np.linalg.det(linear) <= 0 or singular[0] > 1.4 * singular[1]:  # a stretch beyond ~40%, or a mirror
        return 0, len(good), None
    return int(mask.sum()), len(good), matrix


def band(grey: np.ndarray, sigmas: tuple[float, float]) -> np.ndarray:
    grey = grey.astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), sigmas[0]) - cv2.GaussianBlur(grey, (0, 0), sigmas[1])


def fine_energy(grey: np.ndarray, mask: np.ndarray) -> float:
    """How much fine detail (DoG 0.7-1.5 px) an image has over ``mask``, relative to its mid band."""
    fine, mid = band(grey, (0.7, 1.5))[mask], band(grey, (1.5, 4.0))[mask]
    return float(fine.std() / (mid.std() + 1e-6))


def compare(a_rgb: np.ndarray, b_rgb: np.ndarray, matrix: np.ndarray, adaptive: bool) -> dict[str, float]:
    """photomatch's comparison of ``b`` warped onto ``a`` by a 3x3 ``matrix`` (perspective allowed)."""
    a_grey = pm._grey(a_rgb)
    h, w = a_grey.shape
    b_grey = pm._grey(b_rgb)
    warped = cv2.warpPerspective(b_rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    inside = cv2.warpPerspective(np.ones(b_grey.shape, np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST)
    overlap = float(inside.mean())
    fore_a = pm._foreground(a_grey)
    fore_b = cv2.warpPerspective(pm._foreground(b_grey), matrix, (w, h), flags=cv2.INTER_NEAREST)
    products = cv2.erode((fore_a | fore_b) & inside, np.ones((5, 5), np.uint8)).astype(bool)
    colour_change = pm._colour_change(a_rgb, warped, products).change
    shared = fore_a & fore_b & inside
    interior = cv2.erode(shared, np.ones((pm.ERODE, pm.ERODE), np.uint8)).astype(bool)
    if interior.sum() < 0.02 * h * w:
        interior = cv2.erode(inside, np.ones((7, 7), np.uint8)).astype(bool)
    if interior.sum() < 64:
        return {"overlap": overlap, "structure": 0.0, "tile_agreement": 0.0, "colour_change": colour_change}
    warped_grey = pm._grey(warped)
    sigmas = pm.DOG_SIGMAS
    if adaptive and min(fine_energy(a_grey, interior), fine_energy(warped_grey, interior)) < 0.35:
        sigmas = (3.0, 8.0)
    band_a, band_b = band(a_grey, sigmas), band(warped_grey, sigmas)
    structure = pm._correlation(band_a[interior], band_b[interior])
    tiles = pm._tile_agreement(band_a, band_b, interior)
    return {"overlap": overlap, "structure": structure, "colour_change": colour_change,
            "tile_agreement": structure if tiles is None else tiles}  # fmt: skip


GATE = (12, 0.3)  # looser than any rule of the grid: pairs below are not compared


def match(v: Variant, a: Description, b: Description, mirror_b: Description) -> dict[str, Any]:
    """The variant's scores of (a, b): the best fit over scales, mirror and (with ``quarter``) turns."""
    if min(a.shape) < pm.MIN_SIDE or min(b.shape) < pm.MIN_SIDE:
        return {"inliers": 0, "inlier_ratio": 0.0}
    best: tuple[int, float, np.ndarray | None, Any] = (0, 0.0, None, None)
    for side in v.scales:
        for other in (b, mirror_b):
            inliers, matches, matrix = fit(keys_of(a, side, v.fast), keys_of(other, side, v.fast), v.fit)
            ratio = inliers / matches if matches else 0.0
            if matrix is not None and (inliers, ratio) > best[:2]:
                best = (inliers, ratio, matrix, other.rgb)
        if best[0] >= 30 and best[1] >= 0.5:
            break  # a strong fit: no coarser scale needed
    if v.quarter and not (best[0] >= GATE[0] and best[1] >= 0.5):
        for turns in (1, 2, 3):
            rgb, keys = turned(b, turns, v.fast)
            inliers, matches, matrix = fit(keys_of(a, 256, v.fast), keys, v.fit)
            ratio = inliers / matches if matches else 0.0
            if matrix is not None and (inliers, ratio) > best[:2]:
                best = (inliers, ratio, matrix, lambda rgb=rgb: rgb)
    inliers, ratio, matrix, rgb = best
    scores: dict[str, Any] = {"inliers": inliers, "inlier_ratio": ratio}
    if matrix is not None and inliers >= GATE[0] and ratio >= GATE[1]:
        scores.update(compare(a.rgb(), rgb(), matrix, v.band == "adaptive"))
    return scores


GRID = {
    "min_inliers": (12, 15, 20, 25, 30),
    "min_inlier_ratio": (0.3, 0.4, 0.5, 0.6),
    "min_structure": (0.6, 0.7, 0.8),
    "min_tile_agreement": (0.3, 0.4, 0.5, 0.7),
    "max_colour_change": (0.08, 0.12, 0.16, 0.2),
}
TODAY = {"min_inliers": 20, "min_inlier_ratio": 0.6, "min_structure": 0.8, "min_tile_agreement": 0.5,
         "max_colour_change": 0.12}  # fmt: skip


def passes(scores: pd.DataFrame, rule: dict[str, float]) -> np.ndarray:
    keep = np.ones(len(scores), bool)
    for column, key in pm.AT_LEAST.items():
        keep &= scores[column].fillna(0).to_numpy() >= rule[key]
    for column, key in pm.AT_MOST.items():
        keep &= scores[column].fillna(1).to_numpy() <= rule[key]
    return keep


def study_pairs(job: Path, truth: list[dict[str, str]], split: str, k: int) -> pd.DataFrame:
    """The split's pairs the photo check decides, labelled: exact cosine at the candidate floor
    (what the job's cosine LSH finds, at its 0.998 recall) or dHash 0 (``floor``), and each
    product's ``k`` nearest neighbours by cosine (``knn``), both from the job's ``features/``."""
    ids = {t["productId"] for t in truth if t["split"] == split}
    features = pd.read_parquet(job / "features", columns=["productId", "embedding", "dhash", "feature_status"])
    features = features[features["productId"].isin(ids) & (features["feature_status"] == "ok")]
    features = features.sort_values("productId").reset_index(drop=True)
    names = features["productId"].to_numpy()
    vectors = stack(list(features["embedding"]), len(features["embedding"].iloc[0]) // 2)
    found: dict[tuple[int, int], list[Any]] = {}
    for start in range(0, len(names), 1024):
        sims = vectors[start : start + 1024] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -2
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        for r, c in zip(*np.nonzero(sims >= FLOOR), strict=True):
            found.setdefault((min(start + r, c), max(start + r, c)), [float(sims[r, c]), True, False])[1] = True
        for r, cols in enumerate(top):
            for c in cols:
                found.setdefault((min(start + r, c), max(start + r, c)), [float(sims[r, c]), False, False])[2] = True
    for _, same_hash in features.groupby("dhash").groups.items():
        for i, j in itertools.combinations(sorted(same_hash), 2):
            found.setdefault((i, j), [float(vectors[i] @ vectors[j]), True, False])[1] = True
    keys = np.array(list(found), dtype=np.int64).reshape(-1, 2)
    values = list(found.values())
    pairs = pd.DataFrame({"a": names[keys[:, 0]], "b": names[keys[:, 1]], "cosine": [v[0] for v in values],
                          "floor": [v[1] for v in values], "knn": [v[2] for v in values]})  # fmt: skip
    by_id = {t["productId"]: t for t in truth}
    kinds, ranges, same = [], [], []
    for a, b in zip(pairs["a"], pairs["b"], strict=True):
        ta, tb = by_id[a], by_id[b]
        dup = bool(ta["group"]) and ta["group"] == tb["group"]
        same.append(dup)
        copy = tb if ta["transform"] == "original" else ta if tb["transform"] == "original" else None
        kinds.append(("copy+copy" if copy is None else edit_kind(copy["transform"])) if dup else "lookalike")
        ranges.append(copy["ranges"] if dup and copy is not None else "")
    pairs["same"], pairs["kind"], pairs["ranges"] = same, kinds, ranges
    return pairs


def recall_table(pairs: pd.DataFrame, keep: np.ndarray, column: str) -> dict[str, dict[str, float]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    dup = pairs["same"].to_numpy()
    for index in np.nonzero(dup)[0]:
        labels = [pairs["kind"].iat[index]] if column == "kind" else pairs["ranges"].iat[index].split(";")
        for label in filter(None, labels):
            out[label][0] += 1
            out[label][1] += int(keep[index])
    return {k: {"pairs": n, "recall": round(f / n, 4)} for k, (n, f) in sorted(out.items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--set", type=Path, required=True)
    parser.add_argument("--split", default="calibration")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--variants", default="", help="comma-separated indexes of VARIANTS (default: all)")
    parser.add_argument("--limit", type=int, default=0, help="a seeded sample of this many pairs (0: all)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--candidates-only", type=float, metavar="FLOOR",
                        help="only print candidate recall per edit kind (copy-to-original pairs): at the 0.7 "
                             "floor, among the k nearest at cosine >= FLOOR, among the k nearest")  # fmt: skip
    args = parser.parse_args(argv)
    truth = read_truth(args.set / "truth.csv")
    image_of = {t["productId"]: args.set / "images" / t["image"] for t in truth}
    pairs = study_pairs(args.job, truth, args.split, args.k)
    if args.candidates_only is not None:  # over every copy of the split, found or not
        by_pair = {frozenset(p): k for k, p in enumerate(zip(pairs["a"], pairs["b"], strict=True))}
        original_of = {t["group"]: t["productId"] for t in truth if t["group"] and t["transform"] == "original"}
        copies = [t for t in truth if t["split"] == args.split and t["group"] and t["transform"] != "original"]
        index = [by_pair.get(frozenset((t["productId"], original_of[t["group"]])), -1) for t in copies]
        table = pd.DataFrame({"same": True, "kind": [edit_kind(t["transform"]) for t in copies],
                              "ranges": [t["ranges"] for t in copies]})  # fmt: skip
        known = np.array(index) >= 0
        cosine = np.where(known, pairs["cosine"].to_numpy()[np.maximum(index, 0)], -1.0)
        floor = known & pairs["floor"].to_numpy()[np.maximum(index, 0)]
        knn = known & pairs["knn"].to_numpy()[np.maximum(index, 0)]
        above = knn & (cosine >= args.candidates_only)
        found = {"floor 0.7": floor, f"k={args.k}, cosine >= {args.candidates_only}": above, f"k={args.k}": knn}
        print(json.dumps({name: recall_table(table, keep, "kind") for name, keep in found.items()}))
        return 0
    if args.limit and len(pairs) > args.limit:  # every true pair, and a seeded sample of the others
        others = pairs[~pairs["same"]].sample(max(0, args.limit - int(pairs["same"].sum())), random_state=0)
        pairs = pd.concat([pairs[pairs["same"]], others]).reset_index(drop=True)
    print(f"{len(pairs)} pairs ({int(pairs['same'].sum())} true, {int(pairs['floor'].sum())} at the floor, "
          f"{int(pairs['knn'].sum())} kNN)", file=sys.stderr)  # fmt: skip
    chosen = [VARIANTS[int(i)] for i in args.variants.split(",")] if args.variants else list(VARIANTS)
    configs = sorted({(side, v.fast) for v in chosen for side in v.scales})
    descriptions: dict[str, tuple[Description, Description]] = {}
    started = time.process_time()
    for pid in sorted(set(pairs["a"]) | set(pairs["b"])):
        path = image_of[pid]
        descriptions[pid] = describe(
            lambda path=path: decode_pixels(path.read_bytes(), draft_size=pm.MAX_SIDE), configs
        )
    decode_ms = 1000 * (time.process_time() - started) / max(1, len(descriptions))
    print(f"described {len(descriptions)} images at {configs}: {decode_ms:.1f} ms each", file=sys.stderr)
    results: dict[str, Any] = {"command": " ".join([sys.executable, *sys.argv]), "pairs": len(pairs),
                               "true_pairs": int(pairs["same"].sum()), "describe_ms_per_image": decode_ms,
                               "variants": {}}  # fmt: skip
    baseline_false: int | None = None
    for variant in chosen:
        started = time.process_time()
        for pid in list(descriptions)[:200]:  # the per-image part of this variant, timed on 200 images
            pixels = descriptions[pid][0].pixels
            describe(pixels, sorted({(side, variant.fast) for side in variant.scales}))
        image_ms = 1000 * (time.process_time() - started) / 200
        started = time.process_time()
        rows = [
            match(variant, descriptions[a][0], *descriptions[b]) for a, b in zip(pairs["a"], pairs["b"], strict=True)
        ]
        pair_ms = 1000 * (time.process_time() - started) / max(1, len(pairs))
        scores = pd.DataFrame(rows)
        for column in ("structure", "tile_agreement", "colour_change"):
            scores[column] = scores.get(column, np.nan)
        dup = pairs["same"].to_numpy()
        today = passes(scores, TODAY)
        if baseline_false is None:
            baseline_false = int((today & ~dup).sum())
        best = None
        for values in itertools.product(*GRID.values()):
            rule = dict(zip(GRID, values, strict=True))
            keep = passes(scores, rule)
            false, found = int((keep & ~dup).sum()), int((keep & dup).sum())
            if false <= baseline_false and (best is None or found > best[1]):
                best = (rule, found, false, keep)
        rule, found, false, keep = best or (TODAY, int((today & dup).sum()), int((today & ~dup).sum()), today)
        results["variants"][variant.name] = {
            "per_image_ms": round(image_ms, 2), "per_pair_ms": round(pair_ms, 3), "rule": rule,
            "recall": round(found / max(1, dup.sum()), 4), "false_pairs": false,
            "at_todays_rule": {"recall": round(float((today & dup).sum() / max(1, dup.sum())), 4),
                               "false_pairs": int((today & ~dup).sum())},
            "recall_by_kind": recall_table(pairs, keep, "kind"),
            "recall_by_range": recall_table(pairs, keep, "ranges"),
            "recall_by_kind_floor_only": recall_table(pairs[pairs["floor"]], keep[pairs["floor"].to_numpy()], "kind"),
        }  # fmt: skip
        print(f"{variant.name}: recall {found / max(1, dup.sum()):.4f} false {false} rule {rule} "
              f"pair {pair_ms:.2f} ms image {image_ms:.2f} ms", file=sys.stderr)  # fmt: skip
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    results["candidates"] = {
        "at_the_floor": recall_table(pairs, pairs["floor"].to_numpy(), "kind"),
        "knn": recall_table(pairs, pairs["knn"].to_numpy(), "kind"),
        "either": recall_table(pairs, np.ones(len(pairs), bool), "kind"),
    }
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "variants"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
