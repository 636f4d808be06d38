"""dedup query: images looked up in a job's output with the job's own features and rule."""

import json

import pytest
from pyspark.sql import functions as F

from dedup.query import QueryError, run_query
from dedup.synth import jpeg_bytes, product_image


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
    assert rule == {"max_distance": 3, "match_flips": True, "max_thumb_distance": 0.03}  # the run's rule
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
