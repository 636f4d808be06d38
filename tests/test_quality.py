"""The benchmark-set builder and ``dedup eval``, on photos made here and a real job run."""

from __future__ import annotations

import importlib
import io
import random
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from dedup.config import load_config
from dedup.devkit.benchset import COMBINABLE, TRANSFORMS, build_bench_set, edit, read_truth
from dedup.devkit.evaluate import evaluate_output, pair_scores, report_table
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import jpeg_bytes, product_image
from jobs.cli import main as cli
from jobs.dedup_job import run_job


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(14):
        (folder / f"{100 + i}.jpg").write_bytes(jpeg_bytes(product_image(i)))
    (folder / "200.jpg").write_bytes((folder / "100.jpg").read_bytes())  # a real byte-identical re-listing
    return folder


@pytest.mark.parametrize("transform", [*TRANSFORMS, "combo:" + "+".join(COMBINABLE[:3])])
def test_every_transform_gives_a_decodable_jpeg(transform):
    data = edit(product_image(5), transform, random.Random(0))
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.width >= 8


def test_bench_set_is_deterministic_and_consistent(photos, tmp_path):
    meta = build_bench_set(photos, tmp_path / "a", seed=3, copied_share=0.5)
    build_bench_set(photos, tmp_path / "b", seed=3, copied_share=0.5)
    assert (tmp_path / "a" / "truth.csv").read_bytes() == (tmp_path / "b" / "truth.csv").read_bytes()
    assert (tmp_path / "a" / "catalog.csv").read_bytes() == (tmp_path / "b" / "catalog.csv").read_bytes()
    truth = read_truth(tmp_path / "a" / "truth.csv")
    assert meta["originals"] == 14 and meta["listings"] == len(truth) > 15
    by_group = defaultdict(list)
    for row in truth:
        assert (tmp_path / "a" / "images" / row["image"]).is_file()
        if row["group"]:
            by_group[row["group"]].append(row)
    twin = [r for r in truth if r["transform"] == "exact_real"]
    assert len(twin) == 1 and twin[0]["group"] == "100"  # twins of a photo are a group even without edits
    for rows in by_group.values():  # a photo and its copies: one original, one split
        assert [r["transform"] for r in rows].count("original") == 1
        assert len({r["split"] for r in rows}) == 1
    kinds = {r["transform"].split(":")[0] for r in truth}
    assert kinds <= {"original", "exact_real", "combo", *TRANSFORMS}


def test_eval_scores_a_real_job_run_and_matches_the_reference(spark, photos, tmp_path):
    set_dir = tmp_path / "set"
    (set_dir / "images").mkdir(parents=True)
    with ImageServer(set_dir / "images") as server:
        build_bench_set(photos, set_dir, seed=1, copied_share=0.6, base_url=server.base_url)
        cfg = load_config(None, ["fetch.allowed_hosts=127.0.0.1"])
        run_job(spark, cfg, str(set_dir / "catalog.csv"), str(tmp_path / "out"), echo=False)
    report = evaluate_output(spark, str(tmp_path / "out"), str(set_dir / "truth.csv"), cfg, sweep_max=6)

    truth = read_truth(set_dir / "truth.csv")
    members = pq.read_table(tmp_path / "out" / "groups").to_pylist()
    reference = pair_scores(
        {m["productId"]: m["group_id"] for m in members if not m["oversized"]},
        {t["productId"]: t["group"] for t in truth if t["group"]},
    )
    for key in ("true_positive_pairs", "predicted_pairs", "true_pairs"):
        assert report["group_pairs"][key] == reference[key], key
    assert report["group_pairs"]["true_pairs"] > 0
    copies = sum(r["copies"] for r in report["recall_by_transform"].values())
    assert copies == sum(1 for t in truth if t["group"] and t["transform"] != "original")
    assert report["recall_by_transform"]["exact_real"]["group_recall"] == 1.0  # byte-identical: always found

    points = report["sweep"]["points"]
    recall = {(p["max_distance"], p["max_thumb_distance"]): p["recall"] for p in points}
    assert recall[(6, 2.0)] >= recall[(3, 0.03)] >= recall[(0, 0.01)] > 0  # looser rules find more
    assert "| pairs implied by groups |" in report_table(report)

    # bench/calibrate_photo.py replays rules over candidates/: at the job's own rule, the job's groups
    calibrate = _bench_module("calibrate_photo")
    candidates = calibrate.load_candidates(tmp_path / "out")
    rule = {key: cfg["verify"][key] for key in calibrate.SCORE_OF}
    replayed = calibrate.components(candidates[calibrate.kept(candidates, rule)])
    groups = defaultdict(set)
    for m in members:
        groups[m["group_id"]].add(m["productId"])
    assert {frozenset(g) for g in replayed} == {frozenset(g) for g in groups.values() if len(g) > 1}
    looser = calibrate.kept(candidates, {**rule, "max_colour_change": 1.0, "min_structure": 0.0})
    assert looser.sum() >= calibrate.kept(candidates, rule).sum() > 0


def _bench_module(name: str):
    """A module of bench/ (not a package), imported by path."""
    bench = str(Path(__file__).resolve().parent.parent / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module(name)


def test_eval_command_refuses_missing_inputs(tmp_path, capsys):
    assert cli(["eval", "--truth", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli(["bench-set", "--photos", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
