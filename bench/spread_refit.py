"""Simulate a weak fit's second chance with keypoints spread over the image (issue 14, phase 28).

ORB keeps the keypoints that respond most, and a caption's letters or an emoji's outline take
most of them: a text copy's fit holds 6-30 inliers at a ratio of 0.13-0.48, short of the gate,
and phase 26's second fit with 1,000 keypoints (``photomatch.refit_dense``) finds more letters.
Here each image's keypoints are the strongest ``--per-cell`` of each cell of a ``--grid`` x
``--grid`` grid, from ORB's 5,000 strongest, so the photo around the letters keeps its share. A
weak fit of the job (``reason`` weak_fit, ``--floor`` inliers or more) is fitted again with them
(the better of ``b`` and its mirror image), held to the run's gate and compared where it reaches
it (``photomatch.compare_pixels``); the groups are scored as ``bench/second_fit.py`` scores them,
with the pairs of two products the second chance adds.

    .venv/bin/python bench/spread_refit.py --job bench-out/r83/job/default --set bench-out/dev2/set \\
        --floor 6 --grid 4 --per-cell 40
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from photo_replay import image_bytes, replaced
from second_fit import simulate, sorted_candidates

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import run_verify

POOL = 5000  # ORB's keypoints the cells are filled from
_WORK: dict[str, Any] = {}  # the worker processes' inputs (set before the pool forks)


def spread_keypoints(grey: np.ndarray, grid: int, per_cell: int) -> photomatch.Keypoints:
    """ORB's keypoints of ``grey``, the strongest ``per_cell`` in each cell of a ``grid`` x ``grid`` grid.

    >>> import cv2
    >>> rng = np.random.default_rng(0)
    >>> busy = np.zeros((256, 256), np.uint8)
    >>> busy[:64, :64] = rng.integers(0, 255, (64, 64))  # one corner full of corners, the rest flat
    >>> busy[128:, 128:] = cv2.resize(rng.integers(0, 255, (16, 16)).astype(np.uint8), (128, 128))
    >>> points = spread_keypoints(busy, 2, 40).points
    >>> bool((points[:, 0] >= 128).sum() >= 20 and len(points) <= 4 * 40)  # the other textured cell keeps its share
    True
    """
    orb = photomatch._orb(POOL)  # the job's detector settings, made once per process
    height, width = grey.shape
    cells: dict[tuple[int, int], list[Any]] = {}
    for point in sorted(orb.detect(grey, None), key=lambda k: -k.response):
        cell = cells.setdefault((int(point.pt[1] * grid / height), int(point.pt[0] * grid / width)), [])
        if len(cell) < per_cell:
            cell.append(point)
    keypoints, descriptors = orb.compute(grey, [point for cell in cells.values() for point in cell])
    return photomatch.Keypoints(np.float32([k.pt for k in keypoints]).reshape(-1, 2), descriptors)


def _sides(product: str) -> tuple[str, tuple[photomatch.Keypoints, photomatch.Keypoints] | None]:
    """The spread keypoints of one image and of its mirror image (None: unreadable)."""
    pixels = photomatch.decode_for_match(_WORK["data"].get(product))
    if isinstance(pixels, str):
        return product, None
    grey = photomatch._grey(photomatch.prepare(pixels))
    grid, per_cell = _WORK["grid"], _WORK["per_cell"]
    return product, (spread_keypoints(grey, grid, per_cell),
                     spread_keypoints(np.ascontiguousarray(grey[:, ::-1]), grid, per_cell))  # fmt: skip


def _refit(pair: tuple[str, str]) -> tuple[tuple[str, str], dict[str, Any] | None]:
    """A weak pair fitted again with the spread keypoints, compared where it reaches the gate."""
    a, b = pair
    sides, gap = _WORK["sides"], _WORK["gaps"][pair]
    if sides.get(a) is None or sides.get(b) is None:
        return pair, None
    gap = None if gap != gap else float(gap)  # NaN: none recorded
    scores, maps = photomatch._fit_sides(sides[a][0], sides[b][0], lambda: sides[b][1], lambda: gap, 60,
                                         _WORK["gate"])  # fmt: skip
    if maps is None:
        return pair, None
    data = _WORK["data"]
    return pair, photomatch.compare_pixels(photomatch.decode_for_match(data[a]), photomatch.decode_for_match(data[b]),
                                           scores, maps)  # fmt: skip


def mapped(function: Any, items: list[Any], workers: int) -> list[Any]:
    """``function`` over ``items``, in ``workers`` forked processes (1: in this one)."""
    if workers <= 1:
        return [function(item) for item in items]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(function, items, chunksize=64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--floor", type=int, default=6, help="a weak fit's inliers from which it is fitted again")
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--per-cell", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    verify = run_verify(args.job)
    rule = photomatch.PhotoRule.of(verify)
    base = sorted_candidates(args.job)
    weak = base[(base["reason"] == "weak_fit") & (base["inliers"].fillna(0) >= args.floor)]
    pairs = list(zip(weak["a"], weak["b"], strict=True))
    _WORK.update(grid=args.grid, per_cell=args.per_cell, gate=rule.fit_gate(),
                 gaps=dict(zip(pairs, weak["sharpness_gap"], strict=True)),
                 data=image_bytes(args.job, {p for pair in pairs for p in pair}))  # fmt: skip
    _WORK["sides"] = dict(mapped(_sides, sorted(_WORK["data"]), args.workers))
    scores = {pair: s for pair, s in mapped(_refit, pairs, args.workers) if s is not None}
    truth = read_truth(args.set / "truth.csv")
    result = simulate(base, replaced(base, scores), args.floor, rule, verify.min_region_cosine, truth)
    result |= {"grid": args.grid, "per_cell": args.per_cell, "reached_the_gate": len(scores)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
