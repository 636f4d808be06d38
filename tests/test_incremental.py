"""Incremental runs: ``--previous DIR`` downloads and featurises only new or changed products and
gives the groups of a full run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dedup.config import load_config
from dedup.devkit.imageserver import ImageServer
from dedup.devkit.synth import image_names, image_url_str, make_catalog, write_catalog_csv
from dedup.incremental import FEATURE_FORMAT, check_previous
from jobs.dedup_job import run_job

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["fetch.allowed_hosts=127.0.0.1", "fetch.max_attempts=1", "embed.backend=none"]  # hash path: quick


def chosen_path(row: dict[str, str], base_url: str) -> str:
    """The served path of the URL ingest picks (``-200x200-``) for a catalog row."""
    url = next(u for u in row["imageUrlStr"].split(";") if "-200x200-" in u)
    return url.removeprefix(base_url)


@pytest.mark.slow
def test_incremental_run_fetches_only_what_changed_and_groups_like_a_full_run(spark, group_sets, tmp_path):
    with ImageServer({}) as server:
        catalog = make_catalog(12, duplicate_share=0.6, family_share=0.0, seed=42, base_url=server.base_url)
        server.images.update(catalog.images)
        rows = {r["productId"]: r for r in catalog.rows}
        in_groups = {pid for group in catalog.truth_groups for pid in group}
        singles = [pid for pid in rows if pid not in in_groups]
        originals = [next(p for p in group if catalog.transforms[p] == "original") for group in catalog.truth_groups]
        # duplicates of old products, listed later: the copies of the first groups
        new_copies = [
            [p for p in group if p != original]
            for group, original in zip(catalog.truth_groups[3:5], originals[3:5], strict=True)
        ]
        new = [pid for copies in new_copies for pid in copies] + singles[:1]
        removed, changed, failed_once, changed_to = singles[1], singles[2], singles[3], originals[0]

        v1 = [r for pid, r in rows.items() if pid not in new]
        name = f"{changed.lower()}-v2-{changed[-6:].lower()}"  # a new image: an exact copy of changed_to's
        for served in image_names(name):
            server.images[served] = server.images[chosen_path(rows[changed_to], server.base_url).removeprefix("/img/")]
        v2 = [dict(r, imageUrlStr=image_url_str(server.base_url, name)) if pid == changed else r
              for pid, r in rows.items() if pid != removed]  # fmt: skip
        write_catalog_csv(v1, tmp_path / "v1.csv")
        write_catalog_csv(v2, tmp_path / "v2.csv")
        cfg = load_config(None, SETTINGS)

        withheld = chosen_path(rows[failed_once], server.base_url).removeprefix("/img/")
        withheld_bytes = server.images.pop(withheld)  # 404 in run 1: tried again in run 2
        first = run_job(spark, cfg, str(tmp_path / "v1.csv"), str(tmp_path / "run1"), echo=False)
        assert first["failures_by_reason"] == {"http_404": 1}
        server.images[withheld] = withheld_bytes

        before = Counter(server.hits)
        second = run_job(spark, cfg, str(tmp_path / "v2.csv"), str(tmp_path / "run2"), echo=False,
                         previous=str(tmp_path / "run1"))  # fmt: skip
        downloaded = {path for path, n in (server.hits - before).items() if n}
        expected = {chosen_path(r, server.base_url) for r in v2 if r["productId"] in [*new, changed, failed_once]}
        assert downloaded == expected
        assert second["images_downloaded"] == len(expected)
        unchanged = len(v2) - len(expected)
        assert second["images_from_previous"] == second["features_reused"] == unchanged
        assert second["features_computed"] == len(expected) and second["feature_settings_match"]
        assert second["reconciles"] and second["rows_ok"] == len(v2)

        full = run_job(spark, cfg, str(tmp_path / "v2.csv"), str(tmp_path / "full"), echo=False)
        assert group_sets(tmp_path / "run2") == group_sets(tmp_path / "full")
        groups = group_sets(tmp_path / "run2")
        assert any({changed, changed_to} <= set(g) for g in groups)  # the changed image met the stored index
        assert all(any(set(copies) < set(g) for g in groups) for copies in new_copies)  # new copies found old ones
        assert removed not in {pid for g in groups for pid in g}
        assert spark.read.parquet(str(tmp_path / "run2/features")).where(f"productId = '{removed}'").count() == 0
        assert full["images_downloaded"] == len(v2)

        # other feature settings: every feature is computed again, the images are still reused
        before = Counter(server.hits)
        recomputed = run_job(spark, load_config(None, [*SETTINGS, "features.max_image_pixels=40000000"]),
                             str(tmp_path / "v2.csv"), str(tmp_path / "run3"), echo=False,
                             previous=str(tmp_path / "run2"))  # fmt: skip
        assert not +(server.hits - before)
        assert recomputed["images_downloaded"] == 0 and recomputed["images_from_previous"] == len(v2)
        assert recomputed["features_reused"] == 0 and not recomputed["feature_settings_match"]
        assert recomputed["features_computed"] == len(v2)
        assert group_sets(tmp_path / "run3") == groups
        assert json.loads((tmp_path / "run3/manifest.json").read_text())["previous"] == str(tmp_path / "run2")

        # features an older version stored in another format (its photo descriptions): computed again
        manifest = json.loads((tmp_path / "run3/manifest.json").read_text())
        assert manifest["feature_format"] == FEATURE_FORMAT
        older = {**manifest, "feature_format": {"photo_description": FEATURE_FORMAT["photo_description"] - 1}}
        (tmp_path / "run3/manifest.json").write_text(json.dumps(older))
        upgraded = run_job(spark, load_config(None, [*SETTINGS, "features.max_image_pixels=40000000"]),
                           str(tmp_path / "v2.csv"), str(tmp_path / "run4"), echo=False,
                           previous=str(tmp_path / "run3"))  # fmt: skip
        assert upgraded["features_reused"] == 0 and not upgraded["feature_settings_match"]
        assert upgraded["images_from_previous"] == len(v2) and group_sets(tmp_path / "run4") == groups


def test_previous_must_be_another_finished_run(spark, served_job, tmp_path):
    _, out, _ = served_job
    assert check_previous(spark, out, str(tmp_path / "next")) is None
    assert "not --out" in check_previous(spark, out, out + "/")
    assert "no finished run" in check_previous(spark, str(tmp_path), str(tmp_path / "next"))


def test_cli_refuses_a_previous_folder_without_a_finished_run(tmp_path):
    (tmp_path / "c.csv").write_text("productId\n")
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "run", "--catalog", str(tmp_path / "c.csv"), "--out", str(tmp_path / "o"),
         "--previous", str(tmp_path / "nothing-here")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "no finished run in" in result.stderr
