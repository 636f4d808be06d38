"""Two nights through the Airflow DAG's own command: the second downloads only the new listings,
keeps the group ids and says in changes/ what changed."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_names, image_url_str, jpeg_bytes, product_image, write_catalog_csv
from tests.test_schedule import check_dag

ROOT = Path(__file__).resolve().parent.parent


def listing(server: ImageServer, product_id: str, data: bytes, **fields: str) -> dict[str, str]:
    """A catalog row whose image (``data``) is served under a name of its own."""
    name = f"{product_id.lower()}-img-{len(server.images)}"
    for served in image_names(name):
        server.images[served] = data
    url = image_url_str(server.base_url, name)
    return {"productId": product_id, "title": f"Listing {product_id}", "imageUrlStr": url,
            "sellerName": f"seller-{product_id}", "sellingPrice": "499", **fields}  # fmt: skip


def night(tmp_path: Path, catalog: Path, run_date: str) -> tuple[str, subprocess.CompletedProcess]:
    """Render the DAG's command for ``run_date`` (Airflow's DagBag, its template) and run it as the task would."""
    conf = {"repo": str(ROOT), "master": "local[2]", "config": str(ROOT / "conf" / "local.toml"),
            "catalog": str(catalog), "out_root": str(tmp_path / "out"),
            "sets": ["fetch.allowed_hosts=127.0.0.1", "spark.ui.enabled=false", "spark.driver.memory=1g"]}  # fmt: skip
    report = check_dag(tmp_path, "--ds", run_date, "--conf", json.dumps(conf))
    command = report["dags"]["dedup_nightly"]["tasks"]["dedup_run"]["bash_command"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return command, done


def served_paths(rows: list[dict[str, str]], base_url: str) -> set[str]:
    return {next(u for u in r["imageUrlStr"].split(";") if "-200x200-" in u).removeprefix(base_url) for r in rows}


@pytest.mark.slow
def test_two_nights_through_the_dag_fetch_only_new_listings_and_track_the_groups(spark, tmp_path):
    photo = {name: jpeg_bytes(product_image(seed)) for seed, name in enumerate("ABCN", start=1)}
    with ImageServer({}) as server:
        # night 1: groups of byte-identical re-listings A (M200, M201), B (B1, B2), C (C1-C3); singles S1-S4
        rows1 = [
            listing(server, "M200", photo["A"], inStock="false"),
            listing(server, "M201", photo["A"], inStock="true"),
            *(listing(server, pid, photo["B"]) for pid in ("B1", "B2")),
            *(listing(server, pid, photo["C"]) for pid in ("C1", "C2", "C3")),
            *(listing(server, f"S{n}", jpeg_bytes(product_image(10 + n))) for n in range(1, 5)),
        ]
        # night 2: A gains M001 (now A's smallest id), B2 and C3 are delisted, N1 and N2 (copies of
        # each other) and S5 are new
        new = [
            listing(server, "M001", photo["A"], inStock="false"),
            *(listing(server, pid, photo["N"]) for pid in ("N1", "N2")),
            listing(server, "S5", jpeg_bytes(product_image(30))),
        ]
        rows2 = [r for r in rows1 if r["productId"] not in ("B2", "C3")] + new
        dump = tmp_path / "dumps" / "catalog.csv"  # where each night's dump lands
        dump.parent.mkdir()
        write_catalog_csv(rows1, dump)
        command1, first = night(tmp_path, dump, "2026-11-21")
        assert "previous run: none (a full run)" in first.stdout
        write_catalog_csv(rows2, dump)
        before = Counter(server.hits)
        command2, second = night(tmp_path, dump, "2026-11-22")
        downloaded = {path for path, n in (server.hits - before).items() if n}
    assert command1.replace("2026-11-21", "DATE") == command2.replace("2026-11-22", "DATE")  # one command, nightly
    assert f"previous run: {tmp_path}/out/2026-11-21" in second.stdout
    assert downloaded == served_paths(new, server.base_url)  # only the new listings' images

    out2 = tmp_path / "out" / "2026-11-22"
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["previous"] == str(tmp_path / "out" / "2026-11-21")
    assert manifest["images_downloaded"] == len(new) and manifest["features_reused"] == len(rows2) - len(new)
    groups = {r["productId"]: r for r in spark.read.parquet(str(out2 / "groups")).collect()}
    assert {pid: g["group_id"] for pid, g in groups.items()} == {
        "M001": "M200", "M200": "M200", "M201": "M200", "C1": "C1", "C2": "C1", "N1": "N1", "N2": "N1",
    }  # fmt: skip
    changes = {r["group_id"]: r for r in spark.read.parquet(str(out2 / "changes")).collect()}
    assert {gid: r["change"] for gid, r in changes.items()} == {
        "M200": "grew", "B1": "dissolved", "C1": "shrank", "N1": "new",
    }  # fmt: skip
    assert changes["M200"]["added"] == ["M001"] and changes["C1"]["removed"] == ["C3"]
    assert changes["B1"]["removed"] == ["B1", "B2"] and changes["N1"]["added"] == ["N1", "N2"]
    assert manifest["group_changes"] == {"new": 1, "grew": 1, "shrank": 1, "changed": 0, "dissolved": 1,
                                         "unchanged": 0}  # fmt: skip
    # the decision: in stock first; then (the same image, both nights on one day here) the smallest productId
    assert [pid for pid in ("M001", "M200", "M201") if groups[pid]["keep"]] == ["M201"]
    keep = json.loads((out2 / "keep.json").read_text())
    assert keep["M200"] == {"keep": "M201", "drop": ["M001", "M200"]}
    duplicates = json.loads((out2 / "duplicates.json").read_text())
    assert duplicates["M001"] == ["M200", "M201"]  # its shape is unchanged
