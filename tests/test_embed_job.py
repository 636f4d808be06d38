"""The job with an embedder: crops and pads that dHash misses are found by cosine, through LSH."""

from __future__ import annotations

import pytest
from PIL import ImageOps

from dedup.config import load_config
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_names, image_url_str, jpeg_bytes, product_image, write_catalog_csv
from jobs.dedup_job import run_job


@pytest.fixture(scope="module")
def geometry_catalog(tmp_path_factory):
    """Three products, each with a cropped and a padded copy (geometry dHash cannot follow), and
    three unrelated products."""
    folder = tmp_path_factory.mktemp("geometry")
    images, rows, truth = {}, [], []

    def add(pid: str, image) -> None:
        name = f"{pid.lower()}-img"
        for served in image_names(name):
            images[served] = jpeg_bytes(image.convert("RGB"))
        rows.append({"productId": pid, "title": pid, "imageUrlStr": image_url_str(server.base_url, name)})

    with ImageServer({}) as server:
        for seed in (5, 6, 7):
            photo = product_image(seed).resize((224, 224))
            add(f"ORIG{seed}", photo)
            add(f"CROP{seed}", photo.crop((18, 18, 206, 206)))
            add(f"PAD{seed}", ImageOps.expand(photo.resize((180, 180)), 22, fill=(255, 255, 255)))
            add(f"OTHER{seed}", product_image(seed + 200).resize((224, 224)))
            truth.append({f"ORIG{seed}", f"CROP{seed}", f"PAD{seed}"})
        server.images.update(images)
        write_catalog_csv(rows, folder / "catalog.csv")
        yield str(folder / "catalog.csv"), truth


def _groups(spark, out: str) -> list[set[str]]:
    by_group: dict[str, set[str]] = {}
    for row in spark.read.parquet(f"{out}/groups").collect():
        by_group.setdefault(row["group_id"], set()).add(row["productId"])
    return sorted(by_group.values(), key=min)


def test_cosine_finds_what_dhash_misses(spark, geometry_catalog, tmp_path):
    path, truth = geometry_catalog
    base = ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=2"]
    hashes_only = run_job(spark, load_config(None, [*base, "embed.backend=none"]), path, str(tmp_path / "hash"),
                          echo=False)  # fmt: skip
    assert hashes_only["pairs"] == 0 and hashes_only["embedding"]["dim"] == 0

    cfg = load_config(None, [*base, "embed.backend=sscd_distilled", "cosine.min_cosine=0.5", "verify.min_cosine=0.7",
                             "verify.photo_match=false"])  # fmt: skip
    out = str(tmp_path / "embed")
    manifest = run_job(spark, cfg, path, out, echo=False)
    assert manifest["reconciles"] and manifest["rows_ok"] == 12
    assert manifest["embedding"]["dim"] == 512 and manifest["embedding"]["min_cosine"] == 0.7
    assert sorted(_groups(spark, out), key=min) == sorted(truth, key=min)
    pairs = spark.read.parquet(f"{out}/pairs").collect()
    assert {p["method"] for p in pairs} == {"cosine"} and all(p["cosine"] >= 0.7 for p in pairs)
    # candidates/ keeps every signal of every candidate, kept or not: at the floor, or a product's
    # nearest under it (cosine.nearest), which the cosine rule never keeps
    scored = spark.read.parquet(f"{out}/candidates")
    assert {"distance", "thumb_distance", "cosine", "duplicate"} <= set(scored.columns)
    assert scored.where("duplicate").count() == len(pairs)
    assert scored.where("cosine < 0.5 and duplicate").count() == 0
    features = spark.read.parquet(f"{out}/features")
    assert features.where("embedding is null and feature_status = 'ok'").count() == 0


def test_cli_refuses_an_embedder_it_cannot_run(run_cli, tmp_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text("productId\n")
    onnx = run_cli("run", "--catalog", str(catalog), "--out", str(tmp_path / "o"), "--set", "embed.backend=onnx")
    assert onnx.returncode == 2 and "set cosine.min_cosine" in onnx.stderr
    missing = run_cli("run", "--catalog", str(catalog), "--out", str(tmp_path / "o"), "--set", "embed.backend=onnx",
                      "--set", "cosine.min_cosine=0.5", "--set", "verify.min_cosine=0.8",
                      "--set", f"embed.model_path={tmp_path / 'none.onnx'}")  # fmt: skip
    assert missing.returncode == 2 and "embed.model_path not found" in missing.stderr
    unknown = run_cli("run", "--catalog", str(catalog), "--out", str(tmp_path / "o"), "--set", "embed.backend=clip")
    assert unknown.returncode == 2 and "embed.backend must be one of" in unknown.stderr


def test_photo_match_decides_the_embedding_candidates(spark, geometry_catalog, tmp_path):
    """With the verifier on (the default with an embedder), every candidate that is not
    byte-identical is decided by dedup.photomatch; its scores land in pairs/ and candidates/.
    Drawn products have far fewer keypoints than photos: the thresholds are the photomatch tests'."""
    path, truth = geometry_catalog
    loose = ["verify.min_inliers=20", "verify.min_inlier_ratio=0.3", "verify.min_structure=0.8",
             "verify.min_tile_agreement=0.8"]  # fmt: skip
    cfg = load_config(None, ["fetch.allowed_hosts=127.0.0.1", "embed.backend=sscd_distilled", "cosine.min_cosine=0.3",
                             *loose])  # fmt: skip
    out = str(tmp_path / "photo")
    manifest = run_job(spark, cfg, path, out, echo=False)
    assert manifest["pairs_by_method"].keys() == {"photo"}
    assert sorted(_groups(spark, out), key=min) == sorted(truth, key=min)
    scored = spark.read.parquet(f"{out}/candidates")
    rejected = scored.where("not duplicate").collect()
    assert rejected, "the low cosine floor lets unrelated products in as candidates"
    assert all(r["photo"] is not None for r in scored.collect())  # no exact pairs here: all were checked
    assert all(r["photo"]["reason"] is not None or r["photo"]["inliers"] < 20 or r["photo"]["tile_agreement"] < 0.8
               or r["photo"]["structure"] < 0.8 or r["photo"]["inlier_ratio"] < 0.3 for r in rejected)  # fmt: skip
