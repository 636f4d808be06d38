"""dedup query: images looked up in a job's output with the job's own features and decision."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from pyspark.sql import functions as F

from dedup.devkit.synth import jpeg_bytes, product_image
from dedup.query import QueryError, run_query


def image_of(catalog, product_id):
    """The URL the job fetched for a product, and its bytes."""
    row = next(r for r in catalog.rows if r["productId"] == product_id)
    url = row["imageUrlStr"].split(";")[1]
    return url, catalog.images[url.split("/img/")[1]]


def job_pairs_of(spark, out, product_id):
    """The job's pairs of one product: partner -> pair row."""
    rows = spark.read.parquet(f"{out}/pairs").where((F.col("a") == product_id) | (F.col("b") == product_id)).collect()
    return {r["b"] if r["a"] == product_id else r["a"]: r for r in rows}


def test_query_answers_as_the_job_paired(spark, served_job, tmp_path):
    catalog, out, _ = served_job
    mirror = next(pid for pid, kind in catalog.transforms.items() if kind == "mirror")
    group = next(g for g in catalog.truth_groups if mirror in g)
    original = next(pid for pid in group if catalog.transforms[pid] == "original")
    path = tmp_path / "original.jpg"
    path.write_bytes(image_of(catalog, original)[1])
    mirror_url = image_of(catalog, mirror)[0]

    answer = run_query(spark, out, [str(path), mirror_url])
    assert [r["input"] for r in answer["results"]] == [str(path), mirror_url]
    rule = answer["rule"]
    assert rule == {"decision": "hash", "embedder": "none", "dhash_candidates_within": 3, "max_distance": 3,
                    "match_flips": True, "max_thumb_distance": 0.03}  # the run's rule  # fmt: skip
    for result, product_id in zip(answer["results"], [original, mirror], strict=True):
        found = {m["productId"]: m for m in result["matches"]}
        assert found[product_id]["method"] == "exact" and found[product_id]["distance"] == 0
        assert result["matches"][0]["method"] == "exact"  # exact matches come first
        # every pair the job kept for this product is found again, with the same signals and group
        partners = job_pairs_of(spark, out, product_id)
        assert partners
        for partner, pair in partners.items():
            assert (found[partner]["method"], found[partner]["distance"], found[partner]["flipped"]) == (
                pair["method"], pair["distance"], pair["flipped"],
            )  # fmt: skip
            assert found[partner]["thumb_distance"] == pytest.approx(pair["thumb_distance"], abs=1e-4)
            assert found[partner]["group_id"] == found[product_id]["group_id"] is not None
        for match in result["matches"]:
            assert match["method"] == "exact" or (
                match["distance"] <= rule["max_distance"] and match["thumb_distance"] <= rule["max_thumb_distance"]
            )
    mirrored = {m["productId"]: m for m in answer["results"][1]["matches"]}
    assert mirrored[original]["flipped"]  # the mirror image finds its original through the mirrored hash


def test_query_of_an_unknown_image_matches_nothing(spark, served_job, tmp_path):
    _, out, _ = served_job
    path = tmp_path / "new.jpg"
    path.write_bytes(jpeg_bytes(product_image(987_654)))
    (result,) = run_query(spark, out, [str(path)])["results"]
    assert result["matches"] == [] and len(result["sha256"]) == 64


def test_query_refuses_bad_input_clearly(spark, served_job, tmp_path):
    catalog, out, server = served_job
    good = tmp_path / "good.jpg"
    good.write_bytes(image_of(catalog, catalog.rows[0]["productId"])[1])
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    truncated = server.url("fault/truncated/" + image_of(catalog, catalog.rows[0]["productId"])[0].split("/img/")[1])
    cases = {
        str(tmp_path / "missing.jpg"): "missing.jpg: no such file",
        str(text): "notes.jpg: not an image the job can read (undecodable_image",
        server.url("fault/status/404/x.jpeg"): "download failed (http_404",
        "http://169.254.169.254/latest/meta-data": "refused by the fetch policy (blocked_address",
        truncated: "not an image the job can read (undecodable_image",
    }
    for source, message in cases.items():
        with pytest.raises(QueryError, match=message.replace("(", r"\(")):
            run_query(spark, out, [str(good), source])
    with pytest.raises(QueryError, match="index not found"):
        run_query(spark, str(tmp_path / "no-output"), [str(good)])


def test_query_command_prints_json_and_exits_non_zero_on_bad_input(run_cli, served_job, tmp_path):
    catalog, out, server = served_job
    product_id = catalog.rows[0]["productId"]
    path = tmp_path / "a.jpg"
    path.write_bytes(image_of(catalog, product_id)[1])

    result = run_cli("query", "--index", out, str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout)
    assert product_id in {m["productId"] for m in answer["results"][0]["matches"]}

    missing = run_cli("query", "--index", out, str(path), str(tmp_path / "nope.jpg"))
    assert missing.returncode == 2 and "nope.jpg: no such file" in missing.stderr and not missing.stdout
    no_index = run_cli("query", "--index", str(tmp_path / "nowhere"), str(path))
    assert no_index.returncode == 2 and "index not found" in no_index.stderr
    refused = run_cli("query", "--index", out, server.url("fault/status/404/x.jpeg"))
    assert refused.returncode == 2 and "download failed (http_404" in refused.stderr


def job_candidates_of(spark, out, product_id):
    """The run's scored candidates of one product (candidates/): partner -> row."""
    rows = spark.read.parquet(f"{out}/candidates").where((F.col("a") == product_id) | (F.col("b") == product_id))
    return {r["b"] if r["a"] == product_id else r["a"]: r for r in rows.collect()}


def test_a_listing_of_the_run_gets_the_answer_the_run_gave_it(spark, photo_job, tmp_path):
    catalog, out, _ = photo_job
    groups = {r["productId"]: r for r in spark.read.parquet(f"{out}/groups").collect()}
    in_groups = [pid for pid in (r["productId"] for r in catalog.rows) if pid in groups]
    assert len(in_groups) >= 10
    sources = []
    for product_id in in_groups:
        path = tmp_path / f"{product_id}.jpg"
        path.write_bytes(image_of(catalog, product_id)[1])
        sources.append(str(path))
    answer = run_query(spark, out, sources, with_candidates=True)  # all of them in one call
    assert answer["rule"]["decision"] == "photo" and answer["rule"]["embedder"] == "sscd_distilled"
    photo_pairs = 0
    for product_id, result in zip(in_groups, answer["results"], strict=True):
        found = {m["productId"]: m for m in result["matches"]}
        assert found[product_id]["method"] == "exact"
        # the same duplicates, by the same signal, with the same evidence, as the run's pairs/
        partners = job_pairs_of(spark, out, product_id)
        twins = {pid for pid, m in found.items() if m["method"] == "exact"} - {product_id}
        assert set(found) - {product_id} == set(partners), product_id
        for partner, pair in partners.items():
            match = found[partner]
            assert match["method"] == pair["method"] and match["group_id"] == groups[partner]["group_id"]
            assert match["keep"] == groups[partner]["keep"]
            if pair["method"] == "photo":
                photo_pairs += 1
                assert match["photo"]["inliers"] == pair["photo"]["inliers"]
                assert match["photo"]["structure"] == pytest.approx(pair["photo"]["structure"], abs=1e-4)
                assert match["cosine"] == pytest.approx(pair["cosine"], abs=1e-3)
        # and every candidate the run rejected is rejected again
        rejected = {m["productId"] for m in result["not_duplicates"]}
        for partner, row in job_candidates_of(spark, out, product_id).items():
            if not row["duplicate"] and partner not in twins:
                assert partner in rejected, (product_id, partner)
    assert photo_pairs >= 5  # the photo check decided, not only byte identity


def test_an_edited_copy_not_in_the_run_finds_its_original(spark, photo_job, tmp_path):
    catalog, out, _ = photo_job
    original = next(pid for pid, kind in catalog.transforms.items() if kind == "original")
    photo = Image.open(io.BytesIO(image_of(catalog, original)[1])).convert("RGB")
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(jpeg_bytes(photo.crop((14, 14, 210, 210)).resize((224, 224))))
    pad = tmp_path / "pad.jpg"
    pad.write_bytes(jpeg_bytes(ImageOps.expand(photo.resize((180, 180)), 22, fill=(255, 255, 255))))
    new = tmp_path / "new.jpg"
    new.write_bytes(jpeg_bytes(product_image(424_242)))
    answer = run_query(spark, out, [str(crop), str(pad), str(new)])
    for result in answer["results"][:2]:
        match = {m["productId"]: m for m in result["matches"]}[original]
        assert match["method"] == "photo" and match["photo"]["inliers"] >= 20 and match["cosine"] >= 0.7
    assert answer["results"][2]["matches"] == []
    blocks = tmp_path / "blocks.png"  # no product at all: every listing is far under the floor
    cells = np.random.default_rng(5).integers(0, 256, (7, 7, 3), dtype=np.uint8)
    Image.fromarray(cells).resize((224, 224), Image.NEAREST).save(blocks)
    (far,) = run_query(spark, out, [str(blocks)], with_candidates=True)["results"]
    cosines = sorted(m["cosine"] for m in far["not_duplicates"])
    assert far["matches"] == [] and len(cosines) == answer["rule"]["nearest"] == 3  # its nearest, refused ...
    assert all(m["photo"] is not None for m in far["not_duplicates"])  # ... by the photo check
    assert max(cosines) < answer["rule"]["candidate_cosine"]
    (floor_only,) = run_query(spark, out, [str(blocks)], overrides=["cosine.nearest=0"])["results"]
    assert floor_only["candidates"] == 0
