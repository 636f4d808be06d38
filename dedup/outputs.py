"""Outputs: the status of every input row, ``duplicates.json``, ``keep.json`` and the manifest.

Files the driver writes (``duplicates.json``, ``manifest.json``) go through Hadoop's FileSystem,
so ``--out`` may be a local folder, HDFS or an object store, and they appear atomically (written
to a temporary name, then renamed). ``duplicates.json`` is streamed one partition at a time: the
driver never holds all groups.

What a reader can rely on: each Parquet table comes from Spark's file committer (task files are
staged under ``_temporary/`` and moved in when the job commits, ``_SUCCESS`` last; readers skip
``_``-prefixed paths), so a table never holds a half-written file. ``manifest.json`` is removed
when a run starts and written after everything else, so it marks a folder whose outputs are
complete and belong to one run. On object stores a rename is a copy: use the store's committer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

_CHUNK_BYTES = 1 << 20


def row_status(rejects: DataFrame, products: DataFrame, fetched: DataFrame, features: DataFrame) -> DataFrame:
    """One row per input row: row_id, productId, status (ok, rejected, failed), reason, stage."""
    rejected = rejects.select(
        "row_id", "productId", F.lit("rejected").alias("status"), "reason", F.lit("ingest").alias("stage")
    )
    joined = (
        products.select("row_id", "productId", "image_url")
        .join(
            fetched.select("productId", "image_url", "fetch_status", "fetch_reason"), ["productId", "image_url"], "left"
        )
        .join(
            features.select("productId", "image_url", "feature_status", "feature_reason"),
            ["productId", "image_url"],
            "left",
        )
    )
    fetch_failed = F.col("fetch_status").isNull() | (F.col("fetch_status") != "ok")
    feature_failed = F.col("feature_status").isNull() | (F.col("feature_status") != "ok")
    judged = joined.select(
        "row_id",
        "productId",
        F.when(fetch_failed | feature_failed, "failed").otherwise("ok").alias("status"),
        F.when(F.col("fetch_status").isNull(), "not_fetched")
        .when(fetch_failed, F.col("fetch_reason"))
        .when(feature_failed, F.coalesce("feature_reason", F.lit("no_features")))
        .alias("reason"),
        F.when(fetch_failed, "fetch").when(feature_failed, "features").otherwise("done").alias("stage"),
    )
    return rejected.unionByName(judged)


def _hadoop_path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    fs.setWriteChecksum(False)
    return fs, hpath


def write_text(spark: SparkSession, path: str, pieces: Iterable[str]) -> None:
    """Write ``pieces`` to ``path`` atomically through Hadoop's FileSystem."""
    fs, target = _hadoop_path(spark, path)
    temporary = spark.sparkContext._jvm.org.apache.hadoop.fs.Path(path + ".inprogress")
    stream = fs.create(temporary, True)
    try:
        buffer: list[bytes] = []
        size = 0
        for piece in pieces:
            data = piece.encode("utf-8")
            buffer.append(data)
            size += len(data)
            if size >= _CHUNK_BYTES:
                stream.write(bytearray(b"".join(buffer)))
                buffer, size = [], 0
        stream.write(bytearray(b"".join(buffer)))
    finally:
        stream.close()
    if fs.exists(target):
        fs.delete(target, False)
    if not fs.rename(temporary, target):
        raise OSError(f"could not move {temporary} to {path}")


def path_exists(spark: SparkSession, path: str) -> bool:
    fs, target = _hadoop_path(spark, path)
    return bool(fs.exists(target))


def read_json(spark: SparkSession, path: str) -> Any:
    """The JSON document in the one file at ``path`` (e.g. ``manifest.json``), or None when there is none."""
    if not path_exists(spark, path):
        return None
    return json.loads(spark.read.text(path, wholetext=True).first()[0])


def remove_tree(spark: SparkSession, path: str) -> None:
    """Delete ``path`` and everything under it, if it exists."""
    fs, target = _hadoop_path(spark, path)
    if fs.exists(target):
        fs.delete(target, True)


def duplicates_json_pieces(members: DataFrame) -> Iterator[str]:
    """``{"productId": [other members, sorted], ...}`` over groups not flagged oversized, in
    productId order, as text pieces pulled one partition at a time."""
    groups = (
        members.where(~F.col("oversized"))
        .groupBy("group_id")
        .agg(F.sort_array(F.collect_list("productId")).alias("members"))
    )
    entries = groups.select(
        F.explode("members").alias("productId"), "members"
    ).select(
        "productId", F.filter("members", lambda m: m != F.col("productId")).alias("others")
    ).orderBy("productId")  # fmt: skip
    yield "{"
    first = True
    for row in entries.toLocalIterator():
        prefix = "\n  " if first else ",\n  "
        first = False
        yield f"{prefix}{json.dumps(row['productId'])}: {json.dumps(list(row['others']))}"
    yield "\n}\n"


def keep_json_pieces(members: DataFrame) -> Iterator[str]:
    """``{"group_id": {"keep": productId, "drop": [the others, by rank]}, ...}`` over groups not
    flagged oversized (``groups/`` with ``rank``), in group_id order, pulled one partition at a time."""
    ranked = (
        members.where(~F.col("oversized"))
        .groupBy("group_id")
        .agg(F.array_sort(F.collect_list(F.struct("rank", "productId"))).alias("ranked"))
        .select("group_id", F.col("ranked.productId").alias("ids"))
        .orderBy("group_id")
    )
    yield "{"
    first = True
    for row in ranked.toLocalIterator():
        prefix = "\n  " if first else ",\n  "
        first = False
        ids = list(row["ids"])
        yield f"{prefix}{json.dumps(row['group_id'])}: {json.dumps({'keep': ids[0], 'drop': ids[1:]})}"
    yield "\n}\n"


def size_histogram(members: DataFrame) -> dict[str, int]:
    """How many groups have 2, 3-5, 6-10, 11-50, 51-100 and more than 100 members."""
    bins = [(2, 2, "2"), (3, 5, "3-5"), (6, 10, "6-10"), (11, 50, "11-50"), (51, 100, "51-100")]
    label = F.lit(">100")
    for low, high, name in reversed(bins):
        label = F.when(F.col("group_size").between(low, high), name).otherwise(label)
    counts = dict(members.select("group_id", "group_size").distinct().groupBy(label.alias("bin")).count().collect())
    return {name: int(counts.get(name, 0)) for *_, name in [*bins, (0, 0, ">100")]}


def materialise(frame: DataFrame, path: str) -> DataFrame:
    """Write ``frame`` to Parquet at ``path`` and return the table read back: later stages read
    what was written, so the plan that made it runs once."""
    frame.write.mode("overwrite").parquet(path)
    return frame.sparkSession.read.parquet(path)


def counts_by(frame: DataFrame, column: str) -> dict[str, int]:
    """Row counts per value of ``column``: a small aggregate, collected."""
    return {str(key): int(n) for key, n in frame.groupBy(column).count().collect()}


def manifest_json(manifest: dict[str, Any]) -> str:
    return json.dumps(manifest, indent=2, sort_keys=False, default=str) + "\n"
