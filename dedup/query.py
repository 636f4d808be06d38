"""Query: which products of a job's output look like these images? (``dedup query``)

Each input, a local file or an http(s) URL (downloaded by :class:`dedup.fetch.Fetcher`, the job's
URL policy and retries included), is hashed by :func:`dedup.features.hash_features`, the job's
own code, and compared with every ok row of the output's ``features/`` table under the job's
rule (:func:`dedup.verify.apply_rule`): byte-identical (``exact``), or dHash within
``hash.max_distance`` bits (mirrored too with ``hash.match_flips``) and thumbnails within
``verify.max_thumb_distance`` (``dhash``). The rule is the one recorded in the output's
``manifest.json``, then ``--config`` and ``--set``.

The comparison is a scan in Spark: the inputs' hashes are broadcast and every index row is
tested against them with a few bit operations (a broadcast nested-loop join), so the index is
read once and never shuffled nor collected. A banding join (``dedup.candidates``) would save
nothing here: with no band index stored in the output it would have to read the whole table
too, and then shuffle it. Only the matches (at most ``limit`` per input) reach the driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.config import job_settings_of, load_config
from dedup.features import hash_features
from dedup.fetch import Fetcher
from dedup.outputs import path_exists, read_json
from dedup.verify import apply_rule, hash_signals

REFUSALS = frozenset({"blocked_scheme", "blocked_address", "invalid_url"})
QUERY_SCHEMA = T.StructType(
    [
        T.StructField("query", T.IntegerType()),
        T.StructField("sha256", T.StringType()),
        T.StructField("dhash", T.LongType()),
        T.StructField("dhash_flip", T.LongType()),
        T.StructField("thumb", T.BinaryType()),
    ]
)


class QueryError(Exception):
    """A bad input or index; the message says which and why."""


@dataclass
class QueryImage:
    """One input and its features."""

    source: str
    features: dict[str, Any]


def is_url(source: str) -> bool:
    return "://" in source


def read_source(source: str, fetch_settings: dict[str, Any]) -> bytes:
    """The bytes of a local file, or of a URL downloaded under the job's fetch policy."""
    if not is_url(source):
        path = Path(source)
        if not path.is_file():
            raise QueryError(f"{source}: no such file")
        return path.read_bytes()
    fetcher = Fetcher(fetch_settings)
    try:
        result = fetcher.fetch(source)
    finally:
        fetcher.close()
    if result.status != "ok" or result.content is None:
        if result.reason in REFUSALS:
            raise QueryError(f"{source}: refused by the fetch policy ({result.reason}; see fetch.allowed_hosts)")
        raise QueryError(f"{source}: download failed ({result.reason}, {result.attempts} attempt(s))")
    return result.content


def query_image(source: str, cfg: dict[str, Any]) -> QueryImage:
    """Read and hash one input with the job's code; QueryError when it is not a usable image."""
    features = hash_features(read_source(source, cfg["fetch"]), int(cfg["features"]["max_image_pixels"]))
    if features.get("decode_error"):
        raise QueryError(f"{source}: not an image the job can read ({features['decode_error']})")
    return QueryImage(source, features)


def recorded_config(spark: SparkSession, index_dir: str) -> dict[str, Any]:
    """The config a job output was made with (its manifest.json), or {} when it has none."""
    return (read_json(spark, f"{index_dir}/manifest.json") or {}).get("config", {})


def index_features(spark: SparkSession, index_dir: str) -> DataFrame:
    """The ok feature rows of a job output; QueryError when the folder is not one."""
    path = f"{index_dir}/features"
    if not path_exists(spark, path):
        raise QueryError(f"index not found: {path} does not exist (give a dedup run's --out folder)")
    return (
        spark.read.parquet(path)
        .where(F.col("feature_status") == "ok")
        .select("productId", "image_url", "sha256", "dhash", "dhash_flip", "thumb")
    )


def search(queries: DataFrame, index: DataFrame, cfg: dict[str, Any], limit: int) -> DataFrame:
    """Index rows that are duplicates of each query row under the job's rule, best ``limit`` per query."""
    hash_settings = cfg["hash"]
    t, flips = int(hash_settings["max_distance"]), bool(hash_settings["match_flips"])
    q, i = F.broadcast(queries).alias("q"), index.alias("i")

    def within(left: str, right: str) -> Any:
        return F.bit_count(F.col(left).bitwiseXOR(F.col(right))) <= t

    close = (F.col("q.sha256") == F.col("i.sha256")) | within("q.dhash", "i.dhash")
    if flips:
        close = close | within("q.dhash_flip", "i.dhash") | within("q.dhash", "i.dhash_flip")
    scored = i.join(q, close).select(
        "q.query", "i.productId", "i.image_url",
        *hash_signals("q", "i", flips),
        F.col("q.thumb").alias("thumb_a"), F.col("i.thumb").alias("thumb_b"),
    )  # fmt: skip
    ranked = Window.partitionBy("query").orderBy(
        F.col("method") != "exact", "distance", "thumb_distance", "productId", "image_url"
    )
    matches = apply_rule(scored, hash_settings, cfg["verify"])
    return matches.withColumn("rank", F.row_number().over(ranked)).where(F.col("rank") <= limit)


def _lookup(spark: SparkSession, path: str, product_ids: list[str], frame_filter: Any, column: str) -> dict:
    """productId -> ``column`` from the table at ``path`` for these ids (a filtered scan)."""
    if not product_ids or not path_exists(spark, path):
        return {}
    rows = spark.read.parquet(path).where(F.col("productId").isin(product_ids) & frame_filter)
    return {row["productId"]: row[column] for row in rows.select("productId", column).collect()}


def run_query(
    spark: SparkSession,
    index_dir: str,
    sources: list[str],
    config_path: str | None = None,
    overrides: list[str] | None = None,
    limit: int = 50,
) -> dict[str, Any]:
    """Look the ``sources`` up in the job output ``index_dir``; the JSON-ready answer."""
    index = index_features(spark, index_dir)
    try:
        cfg = load_config(config_path, overrides, base=job_settings_of(recorded_config(spark, index_dir)))
    except (OSError, KeyError, ValueError) as exc:
        raise QueryError(f"bad configuration: {exc}") from exc
    images = [query_image(source, cfg) for source in sources]
    queries = spark.createDataFrame(
        [(n, im.features["sha256"], im.features["dhash"], im.features["dhash_flip"], im.features["thumb"])
         for n, im in enumerate(images)],
        QUERY_SCHEMA,
    )  # fmt: skip
    found = search(queries, index, cfg, limit).collect()

    # features/ also holds images of products a later run no longer listed: keep the ones whose
    # status is ok, and name the group each match is in
    ids = sorted({row["productId"] for row in found})
    live = _lookup(spark, f"{index_dir}/status", ids, F.col("status") == "ok", "status")
    groups = _lookup(spark, f"{index_dir}/groups", ids, F.lit(True), "group_id")
    status_known = path_exists(spark, f"{index_dir}/status")
    results = []
    for n, image in enumerate(images):
        rows = sorted((r for r in found if r["query"] == n), key=lambda r: r["rank"])
        matches = [
            {
                "productId": r["productId"],
                "image_url": r["image_url"],
                "method": r["method"],
                "distance": int(r["distance"]),
                "flipped": bool(r["flipped"]),
                "thumb_distance": round(float(r["thumb_distance"]), 5),
                "group_id": groups.get(r["productId"]),
            }
            for r in rows
            if r["productId"] in live or not status_known
        ]
        results.append(
            {
                "input": image.source,
                "sha256": image.features["sha256"],
                "dhash": f"{image.features['dhash'] & 0xFFFFFFFFFFFFFFFF:016x}",
                "matches": matches,
            }
        )
    rule = {
        "max_distance": int(cfg["hash"]["max_distance"]),
        "match_flips": bool(cfg["hash"]["match_flips"]),
        "max_thumb_distance": float(cfg["verify"]["max_thumb_distance"]),
    }
    return {"index": index_dir, "rule": rule, "limit": limit, "results": results}
