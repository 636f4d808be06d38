"""Replay the photo check's comparison over a finished job's candidates and score the groups.

The job stores every candidate with its photo scores (``candidates/``) and every image's bytes
(``images/``). A change to the comparison (``dedup/photomatch.py``'s ``_compare``: structure,
tiles, colour after the fitted warp) changes the scores only of the pairs the job compared
(``reason`` null: their fit reached the run's gate); the others (``weak_fit``, ``no_fit``,
unreadable, byte-identical) keep theirs. So this script re-fits each compared pair from the two
images (``describe_bytes`` + ``fit_descriptions``, and a weak fit's second fits from the pixels,
``refit_weak``: the same keypoints and the same RANSAC, hence the same fit as the job's, checked
by ``--check``) and compares it again, both with the working
tree's check (or ``--module FILE``, another version's photomatch.py: its fit and its comparison;
a change to the fit that would lift a ``weak_fit`` pair over the gate is seen only in a job
run), and scores the groups the way
``bench/calibrate_photo.py`` replays a rule: duplicates are the byte-identical pairs and the pairs
whose scores pass the rule, groups their connected components (the job's oversized-group
re-split is not replayed), scored pairwise per split by ``dedup.devkit.metrics.score_groups``
(precision, recall, F1, look-alike false pairs, recall per edit kind and parameter range).
Only the whole images are compared again: the framed-photo view's scores (``region_*``, where an
image frames a smaller photo) are the job's as stored, so a change that moves them shows only in
a job run (issue 14 phase 23: a replay added no look-alike where the run added one through a
framed photo).

The rule is the defaults (``dedup/config.py``'s ``verify``), or with ``--grid KEY=V1,V2`` the
rule ``bench/calibrate_photo.py`` would choose on the **calibration** split (highest recall at
``--target-precision``); the holdout is scored for that rule only.

    .venv/bin/python bench/photo_replay.py --job bench-out/dev2-final/job/default \\
        --truth bench-out/dev2/set/truth.csv --out bench-out/dev2-final/replay.json
    git show main:dedup/photomatch.py > /tmp/photomatch-main.py
    .venv/bin/python bench/photo_replay.py ... --module /tmp/photomatch-main.py --check   # same scores?

``--fits FILE`` keeps the fits (a pickle) so later replays skip the keypoints and RANSAC;
``--colour-over X`` replays only the pairs whose stored colour change is over ``X`` and whose
structure reaches the rule's, the others keeping their stored scores: a screen, about a third of
the pairs, for a change to the colour reading whose effect falls mostly on the pairs that failed
on it (a pair under ``X`` whose reading would rise is not seen: the job run is the check);
``--scores FILE`` keeps the replayed scores; ``decisions_changed`` in the output counts, per
split, the copy pairs and the pairs of two products the replay keeps that the job did not, and
the other way round (the selection rule's reading, before any grouping:
``dedup.devkit.calibration.decisions_changed``); ``--set NAME=VALUE`` replays with one of the
module's constants changed (``OVERLAY_SHARE=0.15``); ``--variant NAME`` replays with one of the
changes measured and not kept (``bench/photo_variants.py``); ``--weak-from N`` replays the weak
fits with at least ``N`` inliers too (their second fits from the pixels, through the module's
per-image caches): a change to the second fits, which lifts weak fits to a comparison, is then
seen without a job run (the framed photos' views still are not).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pickle
import sys
import time
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import (
    GRID,
    RULE_FIELDS,
    choose,
    components,
    decisions_changed,
    kept,
    load_candidates,
    load_module,
    rule_of,
    sweep,
)
from dedup.devkit.metrics import score_groups
from dedup.settings import default_table

Fit = tuple[dict[str, Any], photomatch.Maps | None]


def _load_variants() -> ModuleType:
    """``bench/photo_variants.py``, loaded from its file (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("photo_variants", Path(__file__).with_name("photo_variants.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


variants = _load_variants()
CACHED_IMAGES = 2048  # images whose pixels (and second keypoints) the refit keeps: a side's run of pairs and more
KEYS = ("precision", "recall", "f1", "lookalike_false_pairs", "recall_by_transform", "recall_by_range")


def _replayed(photo: dict[str, Any] | None, weak_from: int | None) -> bool:
    """Whether a candidate's stored photo scores make it one to replay: the job compared it (no
    ``reason``), or, with ``weak_from``, it is a weak fit with at least that many inliers."""
    if photo is None:
        return False
    if photo["reason"] is None:
        return True
    return weak_from is not None and photo["reason"] == "weak_fit" and (photo["inliers"] or 0) >= weak_from


def compared_pairs(job: Path, weak_from: int | None = None) -> list[tuple[str, str]]:
    """The candidates the job compared, and with ``weak_from`` the weak fits with at least that
    many inliers too (a change to the second fits lifts some): :func:`_replayed`."""
    rows = pq.read_table(job / "candidates", columns=["a", "b", "photo"]).to_pylist()
    return [(r["a"], r["b"]) for r in rows if _replayed(r["photo"], weak_from)]


def image_bytes(job: Path, ids: set[str]) -> dict[str, bytes]:
    table = pq.read_table(job / "images", columns=["productId", "image_bytes", "fetch_status"]).to_pylist()
    return {r["productId"]: r["image_bytes"] for r in table if r["fetch_status"] == "ok" and r["productId"] in ids}


def refit(pm: ModuleType, pairs: list[tuple[str, str]], data: dict[str, bytes], gate: tuple | None) -> dict[tuple, Fit]:
    """Each pair's fit (scores so far, maps) from the two images' descriptions, as ``pm`` fits it,
    a weak fit fitted again from the pixels where ``pm`` has ``refit_weak`` (another version's fit
    may differ, and its maps are its comparison's to read)."""
    described = {p: pm.describe_bytes(data.get(p)) for p in {p for pair in pairs for p in pair}}
    pixels_of = pm.PixelCache(size=CACHED_IMAGES) if hasattr(pm, "PixelCache") else None
    dense = pm.dense_cache(pixels_of, size=CACHED_IMAGES) if pixels_of and hasattr(pm, "dense_cache") else None
    fits = {}
    for a, b in sorted(pairs):  # one side in order: the caches hold it
        scores, maps = pm.fit_descriptions(described[a], described[b], gate)
        if maps is None and hasattr(pm, "refit_weak") and pm._refits(scores, gate):  # as match_descriptions
            pixels = (pixels_of.get(data[a]), pixels_of.get(data[b])) if pixels_of else (
                pm.decode_for_match(data[a]), pm.decode_for_match(data[b]))  # fmt: skip
            if not any(isinstance(side, str) for side in pixels):
                cached = [] if dense is None else [(partial(dense.get, data[a]), partial(dense.get, data[b]))]
                scores, maps = pm.refit_weak(described[a], described[b], pixels, scores, gate, *cached)
        fits[(a, b)] = (scores, maps)
    return fits


def recompare(pm: ModuleType, fits: dict[tuple, Fit], data: dict[str, bytes]) -> tuple[dict[tuple, dict], float]:
    """Each fitted pair's scores with ``pm``'s comparison, and the CPU seconds it took. The pixels
    come through the module's per-image cache where it has one (the pairs run in ``refit``'s
    order, one side's pairs together), so an image is decoded about once, not once a pair."""
    started = time.process_time()
    decode = pm.PixelCache(size=CACHED_IMAGES).get if hasattr(pm, "PixelCache") else pm.decode_for_match
    out = {}
    for (a, b), (scores, maps) in fits.items():
        if maps is None:  # the job compared it, the refit did not: keep the stored scores (counted by --check)
            continue
        out[(a, b)] = pm.compare_pixels(decode(data[a]), decode(data[b]), scores, maps)
    return out, time.process_time() - started


def replaced(candidates: pd.DataFrame, scores: dict[tuple, dict]) -> pd.DataFrame:
    """``candidates`` (:func:`calibrate_photo.load_candidates`) with the replayed pairs' scores, and
    their ``reason`` (none where compared)."""
    out = candidates.copy()
    index = {pair: i for i, pair in enumerate(zip(out["a"], out["b"], strict=True))}
    rows = [index[pair] for pair in scores]
    for field in RULE_FIELDS:
        values = [s.get(field) for s in scores.values()]
        out.loc[out.index[rows], field] = pd.array([np.nan if v is None else float(v) for v in values], dtype=float)
    out.loc[out.index[rows], "reason"] = [s.get("reason") for s in scores.values()]
    out.loc[out.index[rows], "checked"] = [s.get("reason") is None for s in scores.values()]
    return out


def changed_scores(candidates: pd.DataFrame, scores: dict[tuple, dict]) -> int:
    """How many replayed pairs' rule scores differ from the stored ones (beyond float noise)."""
    stored = candidates.set_index(["a", "b"])
    differ = 0
    for pair, s in scores.items():
        row = stored.loc[pair]
        for field in RULE_FIELDS:
            x, y = row[field], s.get(field)
            if (y is None) != bool(np.isnan(x)) or (y is not None and abs(float(y) - float(x)) > 1e-6):
                differ += 1
                break
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument(
        "--module", type=Path, help="another photomatch.py to compare with (default: the working tree's)"
    )
    parser.add_argument(
        "--variant",
        choices=sorted(variants.VARIANTS),
        help="a change measured and not kept (bench/photo_variants.py), on the module",
    )
    parser.add_argument("--fits", type=Path, help="cache of the fits (pickle): read when there, else written")
    parser.add_argument(
        "--check", action="store_true", help="count the replayed pairs whose scores differ from the job's"
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="choose the rule on the calibration split over these values (others at the defaults)",
    )
    parser.add_argument("--scores", type=Path, help="write the replayed pairs' scores here (a pickle)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a numeric constant of photomatch for this replay, e.g. OVERLAY_SHARE=0.15")  # fmt: skip
    parser.add_argument("--colour-over", type=float, metavar="X",
                        help="replay only the compared pairs whose stored colour change is over X and structure "
                             "reaches the rule's (a screen; the others keep their stored scores)")  # fmt: skip
    parser.add_argument(
        "--weak-from",
        type=int,
        metavar="N",
        help="replay the weak fits with at least N inliers too (a change to the second fits)",
    )
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.variant:
        pm = variants.patched(args.variant, args.module)
    else:
        pm = load_module(args.module) if args.module else photomatch
    for item in args.set:
        name, value = item.split("=", 1)
        if not isinstance(getattr(pm, name, None), int | float):
            parser.error(f"--set {name}: not a numeric constant of {pm.__name__}")
        setattr(pm, name, type(getattr(pm, name))(value))
    verify = default_table("verify")
    gate = photomatch.PhotoRule.of(verify).fit_gate()  # the run's own gate, its blurred band too
    pairs = compared_pairs(args.job, args.weak_from)
    data = image_bytes(args.job, {p for pair in pairs for p in pair})
    if args.fits and args.fits.exists():
        fits = pickle.loads(args.fits.read_bytes())
    else:
        fits = refit(pm, pairs, data, gate)
        if args.fits:
            args.fits.write_bytes(pickle.dumps(fits))
    candidates = load_candidates(args.job)
    if args.colour_over is not None:
        screen = candidates[(candidates["colour_change"] > args.colour_over)
                            & (candidates["structure"] >= verify.min_structure)]  # fmt: skip
        fits = {pair: fits[pair] for pair in zip(screen["a"], screen["b"], strict=True) if pair in fits}
    scores, seconds = recompare(pm, fits, data)
    if args.scores:
        args.scores.write_bytes(pickle.dumps(scores))
    replay = replaced(candidates, scores)
    truth = read_truth(args.truth)
    rule = {key: float(getattr(verify, key)) for key in GRID}
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]), "module": str(args.module or "working tree"), "set": args.set,
        "compared_by_job": len(pairs), "replayed": len(scores), "refit_without_fit": len(fits) - len(scores),
        "compare_ms_per_pair": 1000 * seconds / max(1, len(scores)),
    }  # fmt: skip
    if args.check:
        result["replayed_with_other_scores"] = changed_scores(candidates, scores)
    if args.grid:
        grid = {key: (value,) for key, value in rule.items()}
        for item in args.grid:
            key, values = item.split("=", 1)
            grid[key] = tuple(float(v) for v in values.split(","))
        points = sweep(replay, truth, "calibration", verify, grid)
        result["grid"] = points  # every rule's calibration scores, the chosen one's among them
        rule = choose(points, args.target_precision)["rule"]
    result["rule"] = rule
    photo_rule = rule_of(verify, rule)
    keeps = kept(replay, photo_rule, verify.min_region_cosine)
    groups = components(replay[keeps])
    result["decisions_changed"] = decisions_changed(
        kept(candidates, photo_rule, verify.min_region_cosine), keeps, candidates, truth
    )
    for split in ("calibration", "holdout"):
        split_scores = score_groups(groups, truth, split)
        result[split] = {key: split_scores[key] for key in KEYS}
    brief = {split: {k: result[split][k] for k in KEYS[:4]} for split in ("calibration", "holdout")}
    print(json.dumps({**{k: v for k, v in result.items() if k not in ("calibration", "holdout")}, **brief}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
