"""The whole job on real parts: a catalog with duplicates and dirty lines, images on loopback."""

import json
import subprocess
from pathlib import Path

import pytest

from dedup.config import load_config
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.metrics import pair_scores
from dedup.devkit.synth import dump_line, make_catalog, write_catalog_csv
from jobs.dedup_job import run_job
from jobs.demo import dirty_lines

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def served_catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalog")
    with ImageServer({}) as server:
        catalog = make_catalog(60, duplicate_share=0.4, family_share=0.1, seed=11, base_url=server.base_url)
        server.images.update(catalog.images)
        path = folder / "catalog.csv"
        extra = [
            *dirty_lines(server.base_url, catalog.rows[0]),
            dump_line(
                "TRUNC00000000001", "truncated", "d", f"{server.base_url}/fault/truncated/{_name(catalog.rows[1])}"
            ),
            dump_line("FLAKY00000000001", "flaky", "d", f"{server.base_url}/fault/flaky/1/{_name(catalog.rows[2])}"),
        ]
        write_catalog_csv(catalog.rows, path, extra)
        yield catalog, str(path), server


def _name(row):
    return row["imageUrlStr"].split(";")[1].split("/img/")[1]


def job_config(*extra):
    return load_config(
        None,
        # the hash rule on drawn products (the embedder and photo check: tests/test_embed_job.py)
        [
            "fetch.allowed_hosts=127.0.0.1",
            "fetch.max_attempts=3",
            "fetch.backoff_base_s=0.01",
            "embed.backend=none",
            *extra,
        ],
    )


def test_end_to_end_outputs_and_resume(spark, served_catalog, tmp_path):
    catalog, path, server = served_catalog
    out = str(tmp_path / "out")
    manifest = run_job(spark, job_config(), path, out, echo=False)

    # every input row accounted for, once
    n_lines = len(catalog.rows) + 10
    status = spark.read.parquet(f"{out}/status")
    assert status.count() == n_lines == manifest["rows_read"]
    assert status.select("row_id").distinct().count() == n_lines
    assert manifest["reconciles"]
    assert manifest["rows_ok"] + manifest["rows_rejected"] + manifest["rows_failed"] == n_lines
    assert manifest["rows_rejected"] == 5
    assert manifest["failures_by_reason"] == {
        "http_404": 1,
        "not_an_image": 1,
        "http_500": 1,
        "undecodable_image:OSError": 1,
    }
    by_id = {r["productId"]: r for r in status.collect()}
    assert by_id["FLAKY00000000001"]["status"] == "ok"  # recovered by a retry
    assert by_id["TRUNC00000000001"]["stage"] == "features"
    assert spark.read.parquet(f"{out}/rejects").count() == 5

    # groups against the planted truth
    members = spark.read.parquet(f"{out}/groups").collect()
    predicted = {r["productId"]: r["group_id"] for r in members}
    truth = {pid: i for i, group in enumerate(catalog.truth_groups) for pid in group}
    scores = pair_scores(predicted, truth)
    assert scores["recall"] >= 0.8 and scores["precision"] >= 0.8, scores
    assert all(r["group_id"] == min(p for p, g in predicted.items() if g == r["group_id"]) for r in members)

    # duplicates.json: each member -> the others in its group, sorted
    duplicates = json.loads(Path(out, "duplicates.json").read_text())
    assert set(duplicates) == set(predicted)
    for pid, others in duplicates.items():
        assert others == sorted(p for p, g in predicted.items() if g == predicted[pid] and p != pid)

    pairs = spark.read.parquet(f"{out}/pairs")
    assert set(pairs.columns) >= {"a", "b", "method", "distance", "flipped", "thumb_distance"}
    assert manifest["pairs"] == pairs.count() > 0
    assert not Path(out, "_work").exists()

    # a second run into the same output downloads nothing that was fetched ok
    image_hits = sum(n for p, n in server.hits.items() if p.startswith("/img/"))
    again = run_job(spark, job_config(), path, out, echo=False)
    assert sum(n for p, n in server.hits.items() if p.startswith("/img/")) == image_hits
    # only the three failed downloads are tried again (the truncated image was fetched fine)
    assert again["images_downloaded"] == 3
    assert again["images_reused"] == manifest["rows_ok"] + 1
    regrouped = {r["productId"]: r["group_id"] for r in spark.read.parquet(f"{out}/groups").collect()}
    assert regrouped == predicted


def test_family_rule_can_be_turned_off(spark, served_catalog, tmp_path):
    _, path, _ = served_catalog
    on = run_job(spark, job_config(), path, str(tmp_path / "on"), echo=False)
    off = run_job(spark, job_config("verify.exclude_same_family=false"), path, str(tmp_path / "off"), echo=False)
    assert on["pairs_excluded_same_family"] > 0
    assert off["pairs"] == on["pairs"] + on["pairs_excluded_same_family"]


def test_cli_refuses_bad_input_clearly(run_cli, tmp_path):
    missing = run_cli("run", "--catalog", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "catalog not found" in missing.stderr
    bad = run_cli("run", "--catalog", "x", "--out", "y", "--set", "hash.nope=1")
    assert bad.returncode == 2 and "unknown setting: hash.nope" in bad.stderr
    assert run_cli().returncode == 2
    assert run_cli("--help").returncode == 0


@pytest.mark.slow
def test_spark_submit_script_runs_the_job(served_catalog, tmp_path):
    _, path, _ = served_catalog
    out = tmp_path / "submitted"
    result = subprocess.run(
        [str(ROOT / "spark-submit.sh"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--config", str(ROOT / "conf/local.toml"), "--catalog", path, "--out", str(out),
         "--set", "fetch.allowed_hosts=127.0.0.1", "--set", "spark.sql.shuffle.partitions=4"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reconciles"] and manifest["groups"] > 0
    assert "[dedup] done:" in result.stdout + result.stderr  # spark-submit sends Python's stderr to stdout
