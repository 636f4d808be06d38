"""Content-region candidates (issue 14, phase 3): candidate recall per edit kind with and without
the second embedding of an image's content region, candidates per product, the features' extra
CPU, and a replay of verification on the pairs the regions add.

Reads a finished job output run at the defaults without regions (``features/`` with the
embeddings, ``candidates/``, ``pairs/``) and its bench set (``truth.csv``, ``images/``):

1. regions: every listing's image decoded as the features stage decodes it (``embed`` input size),
   :func:`dedup.content.content_box` at the defaults, and the crop embedded by the job's embedder
   (cached in ``--out``/regions.parquet); CPU per image of the search and of the extra embedding,
   next to the whole features record (decode, hashes, the first embedding) of a seeded sample;
2. candidates in Spark (``local[2]``): :func:`dedup.knn.knn_pairs` at the defaults over the whole
   catalog, without and with the region vectors (same seed), each joined with the job's exact and
   dHash-0 candidates; candidate recall of copy-to-original pairs per edit kind and per parameter
   range on each split, candidates per product, pairs added and lost;
3. ``--replay``: the photo check (:func:`dedup.photomatch.score_bytes`, :func:`decide` at the
   verify defaults) on the added pairs only; groups = connected components of the job's landed
   pairs that are still candidates plus the added pairs accepted (a replay: no ``groups.max_size``
   re-split), scored as ``bench/quality.py`` scores a job.

``--photos DIR`` instead measures, on a folder of photos (the shared catalog's), the share that
gets a region and the CPU per image.

    .venv/bin/python bench/region_candidates.py --job ../wt14/bench-out/dev2-final/job/default \\
        --set ../wt14/bench-out/dev2/set --out bench-out/region --replay
    .venv/bin/python bench/region_candidates.py --photos ../shared/data/fashion-catalog/images \\
        --out bench-out/region-photos
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dedup import content, features, photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.metrics import components as linked_components
from dedup.devkit.metrics import edit_kind, score_groups
from dedup.embed import cached_embedder, embedder_input
from dedup.settings import default_table
from dedup.vectors import to_bytes

EMBED = default_table("embed")


def regions(paths: list[Path], batch: int = 32) -> tuple[list[bytes | None], dict[str, float]]:
    """Each image's region embedding (None: no region) and CPU seconds: decode, search, embed."""
    embedder = cached_embedder(EMBED)
    out: list[bytes | None] = [None] * len(paths)
    cpu = {"decode": 0.0, "search": 0.0, "embed": 0.0, "images": len(paths), "regions": 0}
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        t0 = time.process_time()
        inputs = [embedder_input(c, embedder.input_size, EMBED.denoise_from) for _, c in pending]
        vectors = embedder.embed(np.stack(inputs))
        cpu["embed"] += time.process_time() - t0
        for (i, _), v in zip(pending, vectors, strict=True):
            out[i] = to_bytes(v, EMBED.dtype)
        pending.clear()

    for i, path in enumerate(paths):
        t0 = time.process_time()
        _, pixels = features.decoded_features(path.read_bytes(), 50_000_000, embedder.input_size)
        t1 = time.process_time()
        box = content.content_box(pixels, EMBED) if pixels is not None else None
        cpu["search"] += time.process_time() - t1
        cpu["decode"] += t1 - t0
        if box is not None:
            cpu["regions"] += 1
            pending.append((i, content.square_region(pixels, box)))
            if len(pending) == batch:
                flush()
    if pending:
        flush()
    return out, cpu


def features_cpu(paths: list[Path], n: int = 300, seed: int = 0) -> float:
    """CPU seconds per image of the features record as the stage makes it without regions:
    decode, hashes, thumbnail and the first embedding (batches of 32)."""
    sample = random.Random(seed).sample(paths, min(n, len(paths)))
    settings = dataclasses.replace(EMBED, region=False)
    t0 = time.process_time()
    for start in range(0, len(sample), 32):
        decoded = [features.decoded_features(p.read_bytes(), 50_000_000, 224) for p in sample[start : start + 32]]
        features._embed_records([r for r, _ in decoded], [px for _, px in decoded], settings)
    return (time.process_time() - t0) / len(sample)


def cpu_summary(cpu: dict[str, float], base: float) -> dict[str, float]:
    n = cpu["images"]
    extra = (cpu["search"] + cpu["embed"]) / n
    return {"images": n, "regions": cpu["regions"], "share_with_region": cpu["regions"] / n,
            "search_ms_per_image": 1000 * cpu["search"] / n,
            "embed_ms_per_region": 1000 * cpu["embed"] / max(1, cpu["regions"]),
            "extra_ms_per_image": 1000 * extra, "features_ms_per_image_without": 1000 * base,
            "extra_share_of_features": extra / base}  # fmt: skip


def photos_mode(folder: Path, out: Path) -> dict[str, Any]:
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    base = features_cpu(paths)
    _, cpu = regions(paths)
    return cpu_summary(cpu, base)


def knn_candidates(spark: Any, ids: list[str], table: dict[str, list], with_regions: bool) -> set[frozenset]:
    from dedup import knn

    columns = "id long, embedding binary" + (", region_embedding binary" if with_regions else "")
    rows = [
        (i, e, r) if with_regions else (i, e)
        for i, (e, r) in enumerate(zip(table["embedding"], table["region"], strict=True))
    ]
    items = spark.createDataFrame(rows, columns).repartition(8)
    found = knn.knn_pairs(items, default_table("cosine"), 512, len(rows), 0.5)
    pairs = {frozenset((ids[r["id_a"]], ids[r["id_b"]])) for r in found.pairs.collect()}
    found.release()
    return pairs


def candidate_recall(pairs: set[frozenset], truth: list[dict[str, str]], split: str) -> dict[str, dict[str, Any]]:
    original_of = {t["group"]: t["productId"] for t in truth if t["group"] and t["transform"] == "original"}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in truth:
        if t["split"] == split and t["group"] and t["transform"] != "original":
            hit = frozenset((t["productId"], original_of[t["group"]])) in pairs
            labels = [edit_kind(t["transform"]), *[x for x in (t.get("ranges") or "").split(";") if x]]
            if t["transform"].startswith("augly:"):
                labels += [f"augly:{fn}" for fn in t["transform"][6:].split("+")]
            for key in labels:
                counts[key][0] += 1
                counts[key][1] += hit
    return {k: {"copies": n, "candidate": c / n} for k, (n, c) in sorted(counts.items())}


def components(edges: set[frozenset]) -> list[list[str]]:
    """Connected components of pairs of productIds."""
    links: dict[str, list[str]] = defaultdict(list)
    for a, b in (tuple(e) for e in edges):
        links[a].append(b)
    return linked_components(links)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path)
    parser.add_argument("--set", type=Path)
    parser.add_argument("--photos", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--replay", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.photos:
        result = photos_mode(args.photos, args.out)
        (args.out / "photos.json").write_text(json.dumps(result, indent=1))
        print(json.dumps(result, indent=1))
        return 0
    truth = read_truth(args.set / "truth.csv")
    image_of = {t["productId"]: t["image"] for t in truth}
    feats = pq.read_table(args.job / "features", columns=["productId", "embedding", "feature_status"]).to_pylist()
    feats = [f for f in feats if f["feature_status"] == "ok" and f["embedding"]]
    ids = [f["productId"] for f in feats]
    cache = args.out / "regions.parquet"
    if cache.exists():
        cached = dict(zip(*pq.read_table(cache).to_pydict().values(), strict=True))
        region = [cached.get(p) for p in ids]
        cpu = json.loads((args.out / "regions-cpu.json").read_text())
    else:
        paths = [args.set / "images" / image_of[p] for p in ids]
        region, raw = regions(paths)
        cpu = cpu_summary(raw, features_cpu(paths))
        pq.write_table(pa.table({"productId": ids, "region_embedding": pa.array(region, pa.binary())}), cache)
        (args.out / "regions-cpu.json").write_text(json.dumps(cpu, indent=1))
    table = {"embedding": [f["embedding"] for f in feats], "region": region}
    kinds = {t["productId"]: t["transform"] for t in truth}
    with_region = [p for p, r in zip(ids, region, strict=True) if r is not None]
    by_kind: dict[str, int] = defaultdict(int)
    for p in with_region:
        by_kind[edit_kind(kinds[p]) if not kinds[p].startswith("augly:") else kinds[p]] += 1
    cpu["regions_by_kind"] = dict(sorted(by_kind.items()))

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").config("spark.driver.memory", "3g")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "8")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())  # fmt: skip
    landed_candidates = pq.read_table(args.job / "candidates", columns=["a", "b", "distance", "method"]).to_pylist()
    sha = dict(zip(*pq.read_table(args.job / "features", columns=["productId", "sha256"]).to_pydict().values(),
                   strict=True))  # fmt: skip
    other = {frozenset((c["a"], c["b"])) for c in landed_candidates
             if (c["distance"] is not None and c["distance"] <= 0) or sha.get(c["a"]) == sha.get(c["b"])}  # fmt: skip
    before = knn_candidates(spark, ids, table, False) | other
    after = knn_candidates(spark, ids, table, True) | other
    spark.stop()
    for name, pairs in (("before", before), ("after", after)):
        rows = sorted(tuple(sorted(p)) for p in pairs)
        pq.write_table(pa.table({"a": [a for a, _ in rows], "b": [b for _, b in rows]}), args.out / f"{name}.parquet")
    job_pairs = {frozenset((c["a"], c["b"])) for c in landed_candidates}
    n = len(ids)
    result: dict[str, Any] = {
        "listings": n, "regions": cpu,
        "candidates": {"job": len(job_pairs), "before": len(before), "after": len(after),
                       "added": len(after - before), "lost": len(before - after),
                       "per_product_job": 2 * len(job_pairs) / n, "per_product_before": 2 * len(before) / n,
                       "per_product_after": 2 * len(after) / n},
    }  # fmt: skip
    for split in ("calibration", "holdout"):
        result[split] = {"job": candidate_recall(job_pairs, truth, split),
                         "before": candidate_recall(before, truth, split),
                         "after": candidate_recall(after, truth, split)}  # fmt: skip
    if args.replay:
        result["replay"] = replay(args, truth, image_of, before, after)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(report(result))
    return 0


def replay(args: argparse.Namespace, truth: list[dict[str, str]], image_of: dict[str, str],
           before: set[frozenset], after: set[frozenset]) -> dict[str, Any]:  # fmt: skip
    """The photo check on the added pairs only; groups from the landed pairs still candidates
    plus the accepted ones, next to the landed pairs' groups (module doc, step 3)."""
    verify = default_table("verify")
    gate = photomatch.PhotoRule.of(verify).fit_gate()  # the run's own gate, its blurred band too
    landed = {frozenset((p["a"], p["b"])) for p in pq.read_table(args.job / "pairs", columns=["a", "b"]).to_pylist()}
    added = sorted(tuple(sorted(p)) for p in after - before)
    cache = photomatch.FeatureCache(size=256)
    accepted: set[frozenset] = set()
    decided = []
    t0 = time.process_time()
    for a, b in added:
        scores = photomatch.score_bytes((args.set / "images" / image_of[a]).read_bytes(),
                                        (args.set / "images" / image_of[b]).read_bytes(), gate, cache)  # fmt: skip
        decided.append(photomatch.decide(scores))
        if decided[-1]:
            accepted.add(frozenset((a, b)))
    cpu = time.process_time() - t0
    columns = {"a": [a for a, _ in added], "b": [b for _, b in added], "accepted": decided}
    pq.write_table(pa.table(columns), args.out / "added.parquet")
    # landed pairs the regions did not push out of the candidates (the replay's kNN without regions
    # may differ from the job's a little: its pairs that neither replay holds are kept)
    kept = {p for p in landed if p in after or p not in before}
    out: dict[str, Any] = {"added_pairs": len(added), "accepted": len(accepted), "photo_cpu_s": cpu,
                           "landed_pairs": len(landed), "landed_still_candidates": len(kept)}  # fmt: skip
    for name, edges in (("landed", landed), ("replay", kept | accepted)):
        groups = components(edges)
        out[name] = {split: score_groups(groups, truth, split) for split in ("calibration", "holdout")}
    return out


def report(result: dict[str, Any]) -> str:
    lines = [f"listings {result['listings']}, regions {result['regions']}", f"candidates {result['candidates']}"]
    for split in ("calibration", "holdout"):
        lines.append(f"\n{split}: candidate recall job / before / after (copies)")
        for kind, row in result[split]["after"].items():
            if "/" in kind and not kind.startswith(("banner", "pad")):
                continue
            job, before = result[split]["job"][kind], result[split]["before"][kind]
            lines.append(f"  {kind:40s} {job['candidate']:.3f} {before['candidate']:.3f} {row['candidate']:.3f} "
                         f"({row['copies']})")  # fmt: skip
    if "replay" in result:
        r = result["replay"]
        lines.append(
            f"\nreplay: added {r['added_pairs']}, accepted {r['accepted']}, photo CPU {r['photo_cpu_s']:.1f} s"
        )
        for name in ("landed", "replay"):
            for split in ("calibration", "holdout"):
                s = r[name][split]
                lines.append(f"  {name:7s} {split:12s} P {s['precision']:.4f} R {s['recall']:.4f} F1 {s['f1']:.4f} "
                             f"look-alike {s['lookalike_false_pairs']}")  # fmt: skip
        for kind in ("banner", "pad", "augly", "stack", "noise"):
            landed, replayed = (
                r[name]["holdout"]["recall_by_transform"][kind]["recall"] for name in ("landed", "replay")
            )
            lines.append(f"  holdout group recall {kind}: landed {landed:.3f} replay {replayed:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
