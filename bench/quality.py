"""Detection quality on real product photos: the dedup job calibrated on one part, scored on another,
next to imagededup and Immaculate on the same images in the same run.

Steps (all in one run, one machine):

1. ``dedup.devkit.benchset.build_bench_set`` over the photo folder (default: the fashion-catalog photos):
   seeded edited copies of 35% of the photos (``--edits v2``, the default: every parameter drawn
   over wide ranges, stacks, augly; ``--edits v1``: the first dev set, 30%), every other photo a
   singleton; each photo and its copies fall in the calibration or the holdout split.
2. The images are served on loopback and the real job (``jobs.dedup_job.run_job``, Spark local[2])
   runs over the whole catalog twice: with the defaults (the embedder, cosine LSH and the
   same-photograph check, whose thresholds ``bench/calibrate_photo.py`` chose on the calibration
   split), and hashes only (``embed.backend=none``); the second run reuses the first's downloads.
3. With ``--calibrate-hash``, the hash-only rule is also calibrated on the calibration split:
   ``dedup.devkit.evaluate.threshold_sweep`` over (dHash distance, thumbnail distance), re-running the
   job's later stages until the groups reach the target precision there.
4. The holdout split is scored for each run: group-level (every pair implied by the groups)
   precision, recall and F1, recall per edit kind and per parameter range (with the copies behind
   each), and false pairs among look-alike originals
   (two photos of different products); ``dedup eval`` reports (cosine sweep included) go in
   results.json.
5. Peers over the same image folder, each with its defaults: imagededup PHash, DHash, WHash,
   AHash (and CNN, which needs weights it downloads: reported as failed offline) and Immaculate
   pdq, phash, sscd_distilled and sscd. Their groups are scored on the holdout split the same way.

Run from the repository root (peers: ``make bench-venv`` and ``make immaculate-venv``)::

    SPARK_LOCAL_IP=127.0.0.1 PYSPARK_PYTHON=$PWD/.venv/bin/python .venv/bin/python bench/quality.py \\
        [--photos DIR] [--out bench-out/quality] [--seed 0] [--edits v2|v1] [--peers imagededup:phash,...] \\
        [--runs default,hashes_only] [--no-eval] [--previous JOB_OUTPUT]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from dedup.config import load_config
from dedup.devkit.benchset import build_bench_set, read_truth
from dedup.devkit.evaluate import best_at_precision, evaluate_output, group_pair_scores, load_truth
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.metrics import components, edit_kind, range_labels, score_groups
from dedup.session import build_session
from jobs.dedup_job import run_job

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "fashion-catalog" / "images"
PEER_SCRIPT = Path(__file__).resolve().parent / "_quality_peer.py"
PEER_PYTHONS = {"imagededup": REPO / ".venv-bench" / "bin" / "python",
                "immaculate": REPO / ".venv-immaculate" / "bin" / "python"}  # fmt: skip
DEFAULT_PEERS = ("imagededup:phash,imagededup:dhash,imagededup:whash,imagededup:ahash,imagededup:cnn,"
                 "immaculate:pdq,immaculate:phash,immaculate:sscd_distilled,immaculate:sscd")  # fmt: skip
JOB_OVERRIDES = ["fetch.allowed_hosts=127.0.0.1", "spark.master=local[2]", "spark.ui.enabled=false"]


def candidate_recall(job: Path, truth: list[dict[str, str]], split: str) -> dict[str, dict[str, Any]]:
    """Per edit kind and parameter range of ``split``: the share of copies whose pair with their
    original is in the job's ``candidates/`` (a candidate at all) and photo-checked."""
    frame = pq.read_table(job / "candidates", columns=["a", "b", "photo"]).to_pandas()
    pairs = {frozenset(p) for p in zip(frame["a"], frame["b"], strict=True)}
    checked = {frozenset(p) for p, s in zip(zip(frame["a"], frame["b"], strict=True), frame["photo"], strict=True)
               if s is not None}  # fmt: skip
    original_of = {t["group"]: t["productId"] for t in truth if t["group"] and t["transform"] == "original"}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for t in truth:
        if t["split"] == split and t["group"] and t["transform"] != "original":
            pair = frozenset((t["productId"], original_of[t["group"]]))
            for key in [edit_kind(t["transform"]), *range_labels(t)]:
                counts[key][0] += 1
                counts[key][1] += pair in pairs
                counts[key][2] += pair in checked
    return {k: {"copies": n, "candidate": c / n, "checked": k_ / n} for k, (n, c, k_) in sorted(counts.items())}


def score_job(job: Path, truth: list[dict[str, str]]) -> dict[str, Any]:
    """Group-level scores of a finished job output on both splits, with candidate recall per edit."""
    groups = job_groups(job)
    return {split: {**score_groups(groups, truth, split), "candidate_recall": candidate_recall(job, truth, split)}
            for split in ("calibration", "holdout")}  # fmt: skip


def n_pairs(n: int) -> int:
    return max(1, n * (n - 1) // 2)


def job_groups(out: Path) -> list[list[str]]:
    table = pq.read_table(out / "groups", columns=["productId", "group_id", "oversized"]).to_pylist()
    groups: dict[str, list[str]] = defaultdict(list)
    for row in table:
        if not row["oversized"]:
            groups[row["group_id"]].append(row["productId"])
    return list(groups.values())


def run_peer(tool: str, method: str, images: Path, names: dict[str, str]) -> dict[str, Any]:
    python = PEER_PYTHONS[tool]
    if not python.exists():
        return {"tool": tool, "method": method, "status": "skipped", "reason": f"no interpreter at {python}"}
    command = [str(python), str(PEER_SCRIPT), "--tool", tool, "--method", method, "--images", str(images)]
    print(f"quality: peer {shlex.join(command)}", file=sys.stderr)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode or not lines:
        return {"tool": tool, "method": method, "status": "failed", "reason": done.stderr.strip()[-1500:]}
    record = json.loads(lines[-1])
    if record.get("status") == "ok":
        record["groups"] = [[names[n] for n in g if n in names] for g in components(record.pop("links"))]
    record["command"] = shlex.join(command)
    return record


def calibrate(spark: Any, cfg: dict[str, Any], catalog: str, out: Path, truth_path: str,
              target: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    """The rule with the highest calibration recall whose groups reach ``target`` precision there."""
    report = evaluate_output(spark, str(out), truth_path, cfg, "calibration", min_precision=target)
    calibration = load_truth(spark, truth_path, "calibration")
    curve = report["sweep"]["points"]
    tried = []
    eligible = sorted((p for p in curve if p["precision"] >= target and p["predicted_pairs"]),
                      key=lambda p: (-p["recall"], p["max_distance"], p["max_thumb_distance"]))  # fmt: skip
    for point in eligible[:6]:
        rule = {"hash.max_distance": point["max_distance"], "verify.max_thumb_distance": point["max_thumb_distance"]}
        run_cfg = load_config(None, JOB_OVERRIDES + [f"{k}={v}" for k, v in rule.items()])
        run_job(spark, run_cfg, catalog, str(out), echo=False)
        scored = group_pair_scores(spark.read.parquet(f"{out}/groups"), calibration)  # no sweep needed here
        tried.append({**rule, "pairwise": point, "groups": scored})
        print(f"quality: calibration {rule}: group precision {scored['precision']:.4f} recall "
              f"{scored['recall']:.4f}", file=sys.stderr)  # fmt: skip
        if scored["precision"] >= target:
            return rule, tried
    fallback = best_at_precision(curve, 1.0) or {"max_distance": 0, "max_thumb_distance": 0.01}
    return {"hash.max_distance": fallback["max_distance"],
            "verify.max_thumb_distance": fallback["max_thumb_distance"]}, tried  # fmt: skip


def served_catalog(set_dir: Path, written: str, served: str, out: Path) -> str:
    """A copy of the set's catalog.csv whose image URLs point at ``served`` (the loopback server on
    an ephemeral port) instead of ``written``; a run's downloads are reused by later runs only at
    the same address."""
    path = out / "catalog-served.csv"
    path.write_text((set_dir / "catalog.csv").read_text(encoding="utf-8").replace(written, served), encoding="utf-8")
    return str(path)


def previous_run(job_out: Path) -> str | None:
    """An earlier run under ``job_out`` whose downloads (and, with the same settings, features) are reused."""
    finished = sorted(job_out.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    return str(finished[-1].parent) if finished else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS))
    parser.add_argument("--out", default=str(REPO / "bench-out" / "quality"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--edits", default="v2", choices=["v2", "v1"],
                        help="the bench set's generator (v1: the first dev set, rebuilt byte for byte)")  # fmt: skip
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--peers", default=DEFAULT_PEERS, help="comma-separated tool:method, or empty")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="job setting for every run (e.g. embed.backend=sscd)")  # fmt: skip
    parser.add_argument("--previous", help="an earlier job output on the same set whose images and features to reuse")
    parser.add_argument("--runs", default="default,hashes_only",
                        help="job runs: default, hashes_only (embed.backend=none); empty: peers only")  # fmt: skip
    parser.add_argument("--no-eval", action="store_true",
                        help="skip each run's `dedup eval` report (its cosine sweep re-runs stages)")  # fmt: skip
    parser.add_argument("--calibrate-hash", action="store_true",
                        help="also sweep and re-run the hash-only rule (several job runs)")  # fmt: skip
    parser.add_argument("--score-job", type=Path,
                        help="only score this finished job output against the set's truth (no Spark), into "
                             "--out/score-<name>.json")  # fmt: skip
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.score_job:
        scores = score_job(args.score_job, read_truth(out / "set" / "truth.csv"))
        (out / f"score-{args.score_job.name}.json").write_text(json.dumps(scores, indent=2))
        print(json.dumps({s: {k: v[k] for k in ("precision", "recall", "f1", "lookalike_false_pairs")}
                          for s, v in scores.items()}, indent=2))  # fmt: skip
        return 0
    set_dir, job_out = out / "set", out / "job"
    base_url = "http://127.0.0.1:8799"  # written into catalog.csv; each run serves on its own port (see served_catalog)
    built = json.loads((set_dir / "meta.json").read_text()) if (set_dir / "meta.json").exists() else {}
    if (built.get("seed"), built.get("edits", "v1")) != (args.seed, args.edits):
        print(f"quality: building the bench set ({args.edits}) in {set_dir}", file=sys.stderr)
        build_bench_set(args.photos, set_dir, seed=args.seed, base_url=base_url, edits=args.edits)
    meta = json.loads((set_dir / "meta.json").read_text())
    truth = read_truth(set_dir / "truth.csv")
    truth_path = str((set_dir / "truth.csv").resolve())
    results: dict[str, Any] = {"command": shlex.join([sys.executable, *sys.argv]), "set": meta, "job": {}}

    cfg = load_config(None, JOB_OVERRIDES + args.overrides)
    spark = build_session(cfg["spark"])
    try:
        with ImageServer(set_dir / "images") as server:
            catalog = served_catalog(set_dir, meta["base_url"], server.base_url, out)
            runs = {"default": [], "hashes_only": ["embed.backend=none"]}
            for name in filter(None, args.runs.split(",")):
                extra = runs[name]
                run_cfg = load_config(None, JOB_OVERRIDES + args.overrides + extra)
                folder = job_out / name
                started = time.perf_counter()
                previous = previous_run(job_out) or args.previous
                manifest = run_job(spark, run_cfg, catalog, str(folder), echo=True, previous=previous)
                seconds = time.perf_counter() - started
                results["job"][name] = {
                    "seconds": seconds,
                    "embed": run_cfg["embed"]["backend"],
                    "rule": {"verify": run_cfg["verify"], "hash.max_distance": run_cfg["hash"]["max_distance"]},
                    "pairs_by_method": manifest["pairs_by_method"],
                    "stage_seconds": manifest["stage_seconds"],
                    "candidates": manifest["candidates"],
                    "candidate_share_of_all_pairs": manifest["candidates"] / n_pairs(manifest["products_hashed"]),
                    "holdout": score_groups(job_groups(folder), truth, "holdout"),
                    "calibration": score_groups(job_groups(folder), truth, "calibration"),
                    "rows_ok": manifest["rows_ok"],
                }
                if not args.no_eval:
                    results["job"][f"eval_holdout_{name}"] = evaluate_output(
                        spark, str(folder), truth_path, run_cfg, "holdout"
                    )
            if args.calibrate_hash:
                rule, tried = calibrate(spark, cfg, catalog, job_out / "hash_calibrated", truth_path,
                                        args.target_precision)  # fmt: skip
                run_cfg = load_config(
                    None, JOB_OVERRIDES + ["embed.backend=none"] + [f"{k}={v}" for k, v in rule.items()]
                )
                run_job(spark, run_cfg, catalog, str(job_out / "hash_calibrated"), echo=False)
                results["job"]["calibrated"] = {
                    "rule": rule,
                    "tried": tried,
                    "holdout": score_groups(job_groups(job_out / "hash_calibrated"), truth, "holdout"),
                    "calibration": score_groups(job_groups(job_out / "hash_calibrated"), truth, "calibration"),
                }
    finally:
        spark.stop()

    names = {t["image"]: t["productId"] for t in truth}
    results["peers"] = []
    for spec in filter(None, args.peers.split(",")):
        tool, method = spec.split(":")
        record = run_peer(tool, method, set_dir / "images", names)
        if record.get("status") == "ok":
            record["holdout"] = score_groups(record.pop("groups"), truth, "holdout")
        results["peers"].append(record)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per method on the holdout split, then recall per transform."""
    job = results["job"]
    titles = {"default": f"dedup job, default ({job.get('default', {}).get('embed')} + photo check)",
              "hashes_only": "dedup job, hashes only (embed.backend=none)"}  # fmt: skip
    rows = [(title, job[name]["seconds"], job[name]["holdout"]) for name, title in titles.items() if name in job]
    if "calibrated" in job:
        rows.append(
            (f"dedup job, hashes only, calibrated {job['calibrated']['rule']}", None, job["calibrated"]["holdout"])
        )
    failed = []
    for peer in results["peers"]:
        if peer.get("status") == "ok":
            rows.append((f"{peer['tool']} {peer['method']}", peer["seconds"], peer["holdout"]))
        else:
            failed.append(f"- {peer['tool']} {peer['method']}: {peer.get('status')}: {peer.get('reason', '')[-300:]}")
    lines = ["| method | seconds (all listings) | precision | recall | F1 | look-alike false pairs |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, seconds, s in rows:
        time_text = f"{seconds:.1f}" if seconds else "-"
        lines.append(f"| {name} | {time_text} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | "
                     f"{s['lookalike_false_pairs']:,} |")  # fmt: skip
    for name in ("default", "hashes_only"):
        if "candidates" in job.get(name, {}):
            lines.append(f"\ndedup job {name}: {job[name]['candidates']:,} candidate pairs, "
                         f"{100 * job[name]['candidate_share_of_all_pairs']:.3f}% of all pairs")  # fmt: skip
    for key, title in (("recall_by_transform", "edit kind"), ("recall_by_range", "edit / parameter range")):
        lines += ["", *recall_columns([(name, s) for name, _, s in rows], key, title)]
    return "\n".join(lines + (["", *failed] if failed else [])) + "\n"


def recall_columns(methods: list[tuple[str, dict[str, Any]]], key: str, title: str) -> list[str]:
    """Markdown: group recall per edit kind (or parameter range) of each method, with the copies behind it."""
    names = sorted({k for _, s in methods for k in s.get(key, {})})
    if not names:
        return []
    lines = [f"| {title} | copies | " + " | ".join(name for name, _ in methods) + " |",
             "|---|---:|" + "---:|" * len(methods)]  # fmt: skip
    for name in names:
        copies = max(s[key][name]["copies"] for _, s in methods if name in s.get(key, {}))
        cells = " | ".join(f"{s[key][name]['recall']:.2f}" if name in s.get(key, {}) else "-" for _, s in methods)
        lines.append(f"| {name} | {copies} | {cells} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
