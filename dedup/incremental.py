"""Incremental runs (``dedup run --previous DIR``): reuse an earlier run's downloads and features.

A product is unchanged when its (productId, image_url) was fetched ok in the previous run: its
``images/`` row is copied into the new output, so the fetch stage (which skips keys already ok
there) downloads only new, changed and previously failed products, and the new output stands on
its own as the next run's ``--previous``. Its ``features/`` row is reused whole (whatever feature
columns the table holds) when the previous run used the same feature settings, wrote the same
columns in the same format (:data:`FEATURE_FORMAT`, recorded in its manifest); everything else is
computed. Candidates, verification and groups then run over all
current items, so the groups are exactly those of a full run, without a download or a decode for
what did not change. Products no longer in the catalog drop out with the join on current keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from dedup import content, fetchstore, outputs, photomatch
from dedup.settings import EmbedSettings, FeaturesSettings

KEYS = ["productId", "image_url"]
FEATURE_SETTINGS = ("features", "embed")  # the settings tables that decide what features/ holds
FEATURE_FORMAT = {"photo_description": photomatch.DESCRIPTION_VERSION, "region_input": content.REGION_INPUT_VERSION}
"""What this version writes into features/ beyond its settings' say (a run's manifest records it):
a previous run's features in another format are computed again."""


def feature_settings(features: FeaturesSettings, embed: EmbedSettings) -> dict[str, Any]:
    """The settings that decide the features' values, as a manifest records them.

    >>> from dedup.settings import default_table
    >>> feature_settings(default_table("features", max_image_pixels=9), default_table("embed"))["features"]
    {'max_image_pixels': 9}
    """
    return {"features": features.as_dict(), "embed": embed.as_dict()}


def recorded_feature_settings(recorded: dict[str, Any]) -> dict[str, Any]:
    """:func:`feature_settings` of a run's recorded config (its ``manifest.json``); a table an
    older run did not record is None (its features are not reused).

    >>> recorded_feature_settings({"features": {"max_image_pixels": 9}, "hash": {"max_distance": 3}})
    {'features': {'max_image_pixels': 9}, 'embed': None}
    """
    return {section: recorded.get(section) for section in FEATURE_SETTINGS}


def check_previous(spark: SparkSession, previous: str, out: str) -> str | None:
    """Why ``previous`` cannot serve ``out`` (None when it can): it must be another folder
    holding a finished run (a ``manifest.json``)."""
    if os.path.normpath(previous.rstrip("/")) == os.path.normpath(out.rstrip("/")):
        return "--previous must be an earlier run's folder, not --out (a re-run into --out reuses its images anyway)"
    if not outputs.path_exists(spark, f"{previous}/manifest.json"):
        return f"no finished run in {previous} (no manifest.json)"
    return None


def seed_images(products: DataFrame, previous: str, images_path: str) -> int:
    """Append to ``images_path`` the previous run's ok rows for current (productId, image_url)
    keys not already ok there; return how many."""
    spark = products.sparkSession
    rows = fetchstore.read_images(spark, f"{previous}/images").where(F.col("fetch_status") == "ok")
    rows = rows.join(products.select(*KEYS), KEYS, "left_semi")
    current = fetchstore.read_images(spark, images_path)
    if current is not None:
        done = current.where(F.col("fetch_status") == "ok").select(*KEYS)
        rows = rows.join(done, KEYS, "left_anti")
    n_rows = rows.count()  # before the append, which would make them "already there"
    if n_rows:
        rows.write.mode("append").parquet(images_path)  # ok rows are unique per key in any images/
    return n_rows


@dataclass
class Features:
    """The features of every ok image, and how many rows were reused from the previous run."""

    table: DataFrame
    reused: int
    settings_match: bool


def reuse_features(
    ok_images: DataFrame,
    compute: Callable[[DataFrame], DataFrame],
    settings: dict[str, Any],
    previous: str | None,
) -> Features:
    """``compute(ok_images)``, except for keys whose features the previous run already made with
    the same feature settings (``settings``: :func:`feature_settings` of this run's tables),
    columns and :data:`FEATURE_FORMAT`: those rows are taken from ``previous/features`` whole."""
    spark = ok_images.sparkSession
    if previous is None:
        return Features(compute(ok_images), 0, False)
    manifest = outputs.read_json(spark, f"{previous}/manifest.json")
    old = spark.read.parquet(f"{previous}/features")
    wanted = compute(ok_images.limit(0)).schema  # the columns this version writes (planned, not run)
    same = (
        recorded_feature_settings(manifest.get("config", {})) == settings
        and manifest.get("feature_format") == FEATURE_FORMAT
        and _columns(old.schema) == _columns(wanted)
    )
    if not same:
        return Features(compute(ok_images), 0, False)
    reused = old.join(ok_images.select(*KEYS), KEYS, "left_semi").select(*wanted.fieldNames())
    fresh = compute(ok_images.join(reused.select(*KEYS), KEYS, "left_anti"))
    return Features(reused.unionByName(fresh), reused.count(), True)


def _columns(schema) -> list[tuple[str, str]]:
    return sorted((field.name, field.dataType.simpleString()) for field in schema.fields)
