"""The benchmark-set builder and ``dedup eval``, on photos made here and a real job run."""

from __future__ import annotations

import csv
import doctest
import importlib.util
import io
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from dedup.config import load_config
from dedup.devkit import edits
from dedup.devkit.benchset import COMBINABLE, TRANSFORMS, build_bench_set, edit, edit_v2, read_truth
from dedup.devkit.evaluate import evaluate_output, report_table
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.metrics import edit_kind, pair_scores, score_groups
from dedup.devkit.synth import jpeg_bytes, product_image
from dedup.photomatch import FRAMED_APART
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


@pytest.mark.parametrize("kind", [*edits.EDITS, "stack", "augly"])
def test_every_v2_edit_gives_a_jpeg_its_params_and_ranges(kind):
    for seed in range(4):
        transform, data, params, labels = edit_v2(product_image(seed + 2), kind, random.Random(seed))
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and min(image.size) >= 32
        assert edit_kind(transform) == kind and labels
        assert json.loads(json.dumps(params)) == params  # recorded as drawn
        assert all(label.split("/")[0] in {kind, *edits.EDITS} for label in labels)


def test_v2_parameters_span_the_users_definition():
    """The drawn ranges reach what the issue asks for: aspect changes to ~20%, crops to ~70% of
    the area, ~100 px a side, rotations to ~10 degrees and every quarter turn."""
    image, draws = product_image(3), defaultdict(list)
    for seed in range(60):
        rng = random.Random(seed)
        for kind in ("stretch", "crop", "down_up", "rotate", "quarter_turn", "jpeg"):
            draws[kind].append(edits.EDITS[kind](image, rng)[1])
    assert max(p["aspect_change"] for p in draws["stretch"]) > 0.17
    assert min(p["area"] for p in draws["crop"]) < 0.74
    assert min(p["side"] for p in draws["down_up"]) < 100
    assert max(abs(p["angle"]) for p in draws["rotate"]) > 9
    assert {p["angle"] for p in draws["quarter_turn"]} == {90, 180, 270}
    assert min(p["quality"] for p in draws["jpeg"]) < 12


def test_v1_generator_keeps_the_first_dev_sets_columns(photos, tmp_path):
    meta = build_bench_set(photos, tmp_path / "v1", seed=3, edits="v1")
    header = (tmp_path / "v1" / "truth.csv").read_text().splitlines()[0]
    assert header == "productId,group,transform,source,split,image" and meta["edits"] == "v1"
    kinds = {edit_kind(r["transform"]) for r in read_truth(tmp_path / "v1" / "truth.csv")}
    assert kinds <= {"original", "exact_real", "combo", *TRANSFORMS}
    with pytest.raises(ValueError, match="unknown edits"):
        build_bench_set(photos, tmp_path / "v3", edits="v3")


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
    kinds = {edit_kind(r["transform"]) for r in truth}
    assert kinds <= {"original", "exact_real", "stack", "augly", *edits.EDITS} and meta["edits"] == "v2"
    for row in truth:
        copy = row["transform"] not in ("original", "exact_real")
        assert bool(row["params"]) == copy == bool(row["ranges"])


def test_eval_scores_a_real_job_run_and_matches_the_reference(spark, photos, tmp_path, capsys):
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
    exact = report["recall_by_transform"]["exact_real"]
    assert exact["group_recall"] == exact["candidate_recall"] == 1.0  # byte-identical: always found
    # every parameter-range label counted once per copy that carries it, with the reference's figures
    labels = Counter(label for t in truth if t["ranges"] for label in t["ranges"].split(";"))
    assert {k: r["copies"] for k, r in report["recall_by_range"].items()} == dict(labels)
    reference_scores = score_groups([list(g) for g in _groups(members)], truth, "calibration")
    calibration = evaluate_output(spark, str(tmp_path / "out"), str(set_dir / "truth.csv"), cfg, "calibration", 0)
    for label, r in calibration["recall_by_range"].items():
        assert r["group_recall"] == pytest.approx(reference_scores["recall_by_range"][label]["recall"]), label
        assert r["pair_recall"] <= r["candidate_recall"] + 1e-9  # an emitted pair was a candidate first
    assert "| edit / parameter range |" in report_table(report)

    points = report["sweep"]["points"]
    recall = {(p["max_distance"], p["max_thumb_distance"]): p["recall"] for p in points}
    assert recall[(6, 2.0)] >= recall[(3, 0.03)] >= recall[(0, 0.01)] > 0  # looser rules find more
    assert "| pairs implied by groups |" in report_table(report)

    # bench/calibrate_photo.py replays rules over candidates/: at the job's own rule, the job's groups
    calibrate = _bench_module("calibrate_photo")
    candidates = calibrate.load_candidates(tmp_path / "out")
    verify = calibrate.run_verify(tmp_path / "out")
    rule = calibrate.rule_of(verify, {})
    replayed = calibrate.components(candidates[calibrate.kept(candidates, rule, verify.min_region_cosine)])
    assert {frozenset(g) for g in replayed} == _groups(members)
    looser_rule = calibrate.rule_of(verify, {"max_colour_change": 1.0, "min_structure": 0.0})
    looser = calibrate.kept(candidates, looser_rule, verify.min_region_cosine)
    assert looser.sum() >= calibrate.kept(candidates, rule, verify.min_region_cosine).sum() > 0

    # bench/rule_bands.py lays each band's points over the run's rule: at the run's own, nothing changes
    bands = _bench_module("rule_bands")
    for band, grid in bands.BANDS.items():
        points = bands.sweep(tmp_path / "out", set_dir, band)
        own = [p for p in points if p["rule"] == {key: getattr(verify, key) for key in grid}]
        assert len(own) == 1 and not any(count for split in own[0]["changed"].values() for count in split.values())
        assert own[0]["calibration"]["recall"] == pytest.approx(reference_scores["recall"])

    # bench/photo_replay.py refits and compares again the pairs the job compared: the job's scores
    replay = _bench_module("photo_replay")
    out = tmp_path / "replay.json"
    assert replay.main(["--job", str(tmp_path / "out"), "--truth", str(set_dir / "truth.csv"), "--check",
                        "--out", str(out)]) == 0  # fmt: skip
    replayed = json.loads(out.read_text())
    assert replayed["replayed"] == replayed["compared_by_job"] > 0
    assert replayed["replayed_with_other_scores"] == 0
    assert not any(count for split in replayed["decisions_changed"].values() for count in split.values())
    assert replayed["calibration"]["recall"] == pytest.approx(reference_scores["recall"])
    # --colour-over screens: only pairs over the bound are replayed, the others keep their stored scores
    for over, replays_any in ((-1.0, True), (1.0, False)):
        assert replay.main(["--job", str(tmp_path / "out"), "--truth", str(set_dir / "truth.csv"),
                            "--colour-over", str(over), "--out", str(out)]) == 0  # fmt: skip
        screened = json.loads(out.read_text())
        assert (0 < screened["replayed"] <= replayed["replayed"]) if replays_any else screened["replayed"] == 0
        assert screened["calibration"]["recall"] == pytest.approx(reference_scores["recall"])
    # --variant: a change measured and not kept (bench/photo_variants.py) replays the same pairs
    variants = _bench_module("photo_variants")
    assert doctest.testmod(variants).failed == 0
    for variant in sorted(variants.VARIANTS):
        assert replay.main(["--job", str(tmp_path / "out"), "--truth", str(set_dir / "truth.csv"),
                            "--variant", variant, "--out", str(out)]) == 0  # fmt: skip
        assert json.loads(out.read_text())["replayed"] == replayed["replayed"]

    # bench/lost_copies.py: every copy not grouped with its original, counted once by what stopped it
    lost_copies = _bench_module("lost_copies")
    capsys.readouterr()
    assert lost_copies.main(["--job", str(tmp_path / "out"), "--set", str(set_dir), "--split", "calibration",
                             "--list"]) == 0  # fmt: skip
    lost = json.loads(capsys.readouterr().out)
    kinds = reference_scores["recall_by_transform"].values()
    missed = sum(round(kind["copies"] * (1 - kind["recall"])) for kind in kinds)
    assert len(lost["copies"]) == sum(cause["copies"] for cause in lost["lost"].values()) == missed > 0
    assert {copy["cause"] for copy in lost["copies"]} == set(lost["lost"])
    assert all(copy["structure"] is not None for copy in lost["copies"] if copy["cause"] == "colour_change")

    # bench/second_fit.py: a run against itself, at any floor, scores as the job and gains no pair
    second_fit = _bench_module("second_fit")
    assert second_fit.main(["--base", str(tmp_path / "out"), "--refit", str(tmp_path / "out"), "--set", str(set_dir),
                            "--floor", "0,15"]) == 0  # fmt: skip
    points = json.loads(capsys.readouterr().out)["points"]
    assert [p["floor"] for p in points] == [0.0, 15.0] and points[0]["fitted_again"] >= points[1]["fitted_again"]
    for point in points:
        assert point["calibration"]["recall"] == pytest.approx(reference_scores["recall"])
        assert point["calibration"]["other_pairs_gained"] == point["holdout"]["other_pairs_gained"] == 0

    # bench/spread_refit.py: weak fits fitted again with spread keypoints; a pair can only be gained
    spread_refit = _bench_module("spread_refit")
    assert doctest.testmod(spread_refit).failed == 0
    assert spread_refit.main(["--job", str(tmp_path / "out"), "--set", str(set_dir), "--floor", "0",
                              "--workers", "1"]) == 0  # fmt: skip
    spread = json.loads(capsys.readouterr().out)
    assert spread["fitted_again"] >= spread["reached_the_gate"] >= 0 and spread["floor"] == 0
    assert spread["calibration"]["recall"] >= reference_scores["recall"]

    # bench/nearest_candidates.py: the nearest under the floor added (none that the job, at its
    # cosine.nearest, did not already hold at 3), replayed; the empty point scores as the job
    nearest = _bench_module("nearest_candidates")
    assert nearest.main(["--job", str(tmp_path / "out"), "--set", str(set_dir), "--grid", "0:0.5,3:0,5:0",
                         "--workers", "1"]) == 0  # fmt: skip
    none, three, five = json.loads(capsys.readouterr().out)["points"]
    assert none["added"] == three["added"] == 0 <= five["added"] and five["kept"] <= five["added"]
    assert none["calibration"]["recall"] == pytest.approx(reference_scores["recall"])
    assert five["calibration"]["recall"] >= none["calibration"]["recall"]
    assert nearest.main(["--job", str(tmp_path / "out"), "--set", str(set_dir), "--originals",
                         "--grid", "1:0,5:0"]) == 0  # fmt: skip
    originals = json.loads(capsys.readouterr().out)["originals"]
    assert originals["pairs_at_floor"] > 0 and 0 <= originals["added"]["1:0.0"] <= originals["added"]["5:0.0"]

    # bench/region_edges.py --job: each banner copy that is no candidate of its original, ranked
    region_edges = _bench_module("region_edges")
    assert region_edges.main(["--set", str(set_dir), "--job", str(tmp_path / "out"),
                              "--out", str(tmp_path / "edges.json")]) == 0  # fmt: skip
    edges = json.loads((tmp_path / "edges.json").read_text())
    banner_copies = sum(split["copies"] for split in edges["banners"].values())
    assert len(edges["no_candidate_banners"]) <= banner_copies == sum(t["transform"] == "banner" for t in truth)
    assert all(r["rank"] >= 1 and -1 <= r["cosine"] <= 1 for r in edges["no_candidate_banners"])

    # bench/framed_placement.py: pairs whose framed photos refuse the images' pass, placed again
    framed = _bench_module("framed_placement")
    assert framed.main(["--set", str(set_dir), "--job", str(tmp_path / "out"), "--out", str(tmp_path / "fp.json")]) == 0
    placed = json.loads((tmp_path / "fp.json").read_text())
    assert placed["apart_under"] == FRAMED_APART and len(placed["pairs"]) == sum(
        n for key, n in placed["counts"].items() if key.endswith("/refused")
    )
    assert all(p["kept"] == (p["placement"] is not None and p["placement"] < FRAMED_APART) for p in placed["pairs"])

    # bench/kept_diff.py: a run against itself gains and loses nothing
    capsys.readouterr()
    assert _bench_module("kept_diff").main(["--before", str(tmp_path / "out"), "--after", str(tmp_path / "out"),
                                            "--set", str(set_dir)]) == 0  # fmt: skip
    diff = json.loads(capsys.readouterr().out)
    assert diff["kept"][0] == diff["kept"][1] > 0 and diff["counts"] == {} and diff["two_products"] == []


def _groups(members: list[dict]) -> set[frozenset[str]]:
    """The job's groups (two or more members) from its groups/ rows."""
    groups = defaultdict(set)
    for m in members:
        groups[m["group_id"]].add(m["productId"])
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def _bench_module(name: str):
    """A script of bench/ (not a package), loaded from its file."""
    path = Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_eval_command_refuses_missing_inputs(tmp_path, capsys):
    assert cli(["eval", "--truth", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli(["bench-set", "--photos", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def _copies_set(folder: Path, edit: str, seeds: tuple[int, ...], split: str) -> Path:
    """A bench set of synthetic originals, each with one copy by ``edits.<edit>`` at its seed."""
    set_dir = folder / "set"
    (set_dir / "images").mkdir(parents=True)
    rows = []
    for seed in seeds:
        original = product_image(seed).resize((224, 224)).convert("RGB")
        copy, params = getattr(edits, edit)(original, random.Random(seed))
        (set_dir / "images" / f"o{seed}.jpg").write_bytes(jpeg_bytes(original))
        (set_dir / "images" / f"c{seed}.jpg").write_bytes(jpeg_bytes(copy))
        rows += [[f"O{seed}", seed, "original", seed, split, f"o{seed}.jpg", "", ""],
                 [f"C{seed}", seed, edit, seed, split, f"c{seed}.jpg", json.dumps(params), ""]]  # fmt: skip
    with open(set_dir / "truth.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["productId", "group", "transform", "source", "split", "image", "params", "ranges"])
        writer.writerows(rows)
    return set_dir


def _region_step(folder: Path, step: str, edit: str, seeds: tuple[int, ...], split: str) -> tuple[dict, dict]:
    """bench/region_edges.py --step ``step`` on a set of ``edit`` copies at ``seeds``, with its
    images as the ordinary photos: (the report, the split's tally of copies)."""
    set_dir = _copies_set(folder, edit, seeds, split)
    region_edges = _bench_module("region_edges")
    assert region_edges.main(["--step", step, "--set", str(set_dir), "--photos", str(set_dir / "images"),
                              "--out", str(folder / f"{step}.json")]) == 0  # fmt: skip
    report = json.loads((folder / f"{step}.json").read_text())
    return report, report["banners" if step == "edges" else "pads"][split]


def test_region_edges_bench_finds_where_the_photo_was_pasted(tmp_path):
    """bench/region_edges.py: banner copies whose photo merges with the banner (the generator's
    seeds 5, 41 and 55) get a region only by the photo's straight edges, and it is the photo."""
    report, banners = _region_step(tmp_path, "edges", "banner", (5, 41, 55), "holdout")
    assert banners["copies"] == 3 and banners["without: none"] == 3
    assert banners["with: photo"] == banners["gained"] >= 2 and banners["lost"] == 0
    assert report["photos"]["images"] == 6 and report["photos"]["with"] >= report["photos"]["without"]


def test_region_edges_bench_measures_the_pad_step(tmp_path):
    """bench/region_edges.py --step pad: pad copies whose photo spans the canvas one way (the
    generator's seeds 1, 3 and 7) get a region only as a photo on a pad, and it is the photo."""
    report, pads = _region_step(tmp_path, "pad", "pad", (1, 3, 7), "calibration")
    assert pads["copies"] == 3 and pads["without: none"] == 3
    assert pads["with: photo"] == pads["gained"] == 3 and pads["lost"] == 0
    assert report["photos"] == {**report["photos"], "images": 6, "without": 0, "with": 3}


def test_region_edges_bench_measures_the_ramp_step(tmp_path):
    """bench/region_edges.py --step ramp: a banner copy whose words found no room (the generator's
    seed 296) is a photo on a ramp; only the pad's ramp reading finds its region, and it is the photo."""
    report, banners = _region_step(tmp_path, "ramp", "banner", (296, 5), "holdout")
    assert banners["copies"] == 2 and banners["gained"] == 1 and banners["lost"] == 0, banners
    assert report["photos"]["images"] == 4 and report["photos"]["with"] == report["photos"]["without"] + 1


def test_region_edges_bench_measures_the_turn_step(tmp_path):
    """bench/region_edges.py --step turn: rotate copies turned on a grown canvas with a coloured
    fill (the generator's seeds 0 and 9) get a region only by the turned reading; one on white
    (seed 2) gets none; no original gets one."""
    report, turned = _region_step(tmp_path, "turn", "rotate", (0, 9, 2), "holdout")
    assert turned["copies"] == 3 and turned["gained"] == 2 and turned["lost"] == 0, turned
    assert turned["with: region"] == 2 and turned["without: none"] == 3, turned
    assert report["photos"]["images"] == 6 and report["photos"]["with"] == report["photos"]["without"] + 2
