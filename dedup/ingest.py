"""Ingest: read the dump in partitions and split it into valid products and rejected rows.

Everything here is Spark SQL (no Python per row), so a 5 GB dump reads at the speed of Spark's
CSV scanner. Each input line gets a ``row_id``; a line that does not parse into the 32 columns,
holds bytes that are not UTF-8, has no usable productId or image URL, is filtered out, or repeats
a productId already seen lands in the rejects table with its raw line and a reason. Blank lines
hold no listing: the reader skips them and they are not rows.

Image URL choice: ``imageUrlStr`` holds ``;``-separated URLs of one image (original, 200x200,
400x400, 800x800). The URL whose file name carries the configured size (``-200x200-``) wins;
failing that, the next larger sizes, then the original (no size token), then smaller sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from dedup.schema import CATALOG_COLUMNS, CATALOG_READ_SCHEMA, CORRUPT_COLUMN
from dedup.settings import IngestSettings

STANDARD_SIZES = ("200x200", "400x400", "800x800")
# The CSV parser's field limit per line. Over it, Spark does not flag the line malformed: the read
# fails. Spark's default (20,480) let one line of stray separators stop a whole ingest; a million
# costs nothing measurable and takes a line of over a megabyte of bare separators to reach.
MAX_FIELDS_PER_LINE = 1_000_000
_SIZE_TOKEN = r"-[0-9]+x[0-9]+-"


@dataclass
class Ingested:
    """Valid products (one row per productId) and rejected rows (raw line and reason)."""

    products: DataFrame
    rejects: DataFrame


def size_preference(image_size: str) -> list[str]:
    """The fallback order of sizes: the requested one, larger ones, original (""), smaller ones.

    >>> size_preference("400x400")
    ['400x400', '800x800', '', '200x200']
    """
    if image_size in ("", "original"):
        return ["", *STANDARD_SIZES]
    if not re.fullmatch(r"[0-9]+x[0-9]+", image_size):
        raise ValueError(f"ingest.image_size must look like 200x200 or be 'original': {image_size!r}")
    width = int(image_size.split("x")[0])
    larger = [s for s in STANDARD_SIZES if int(s.split("x")[0]) > width]
    smaller = [s for s in STANDARD_SIZES if int(s.split("x")[0]) < width]
    return [image_size, *larger, "", *reversed(smaller)]


def pick_image_url(image_url_str: Column, image_size: str) -> Column:
    """The URL of ``image_size`` (or the best fallback) among the http(s) URLs in the column.

    The URLs are the ``;``-separated pieces, trimmed of spaces, that start with ``http://`` or
    ``https://`` and a host character. Each choice is one regular expression over the whole
    string (the first piece that qualifies), so no array is built per row.
    """
    choices = [F.nullif(F.regexp_extract(F.coalesce(image_url_str, F.lit("")), _url_regex(size), 1), F.lit(""))
               for size in [*size_preference(image_size), None]]  # fmt: skip
    return F.coalesce(*choices)


def _url_regex(size: str | None) -> str:
    """The first qualifying URL naming ``size`` (``-200x200-``), no size at all (""), or any (None)."""
    if size is None:
        body = "[^;]*?"
    elif size:
        body = f"[^;]*?-{re.escape(size)}-[^;]*?"
    else:
        body = f"(?:(?!{_SIZE_TOKEN})[^;])*?"
    return rf"(?:^|;) *((?i:https?)://(?=[^/\s?#;]){body}) *(?=;|\z)"


def read_catalog(spark: SparkSession, path: str, settings: IngestSettings) -> DataFrame:
    """The dump as 32 string columns plus ``_corrupt_record`` (the raw line where it did not parse)."""
    fmt = settings.format
    if fmt == "csv":
        return spark.read.csv(
            path,
            schema=CATALOG_READ_SCHEMA,
            header=True,
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT_COLUMN,
            multiLine=settings.multiline,
            escape='"',
            enforceSchema=True,
            maxColumns=MAX_FIELDS_PER_LINE,
        )
    if fmt == "jsonl":
        return spark.read.json(
            path, schema=CATALOG_READ_SCHEMA, mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT_COLUMN,
        )  # fmt: skip
    raise ValueError(f"ingest.format must be csv or jsonl, not {fmt!r}")


def _reject_reason(settings: IngestSettings) -> Column:
    """The first reason a parsed row is rejected for, or null for a valid row (repeats aside)."""
    pid = F.col("productId")
    # the reader turns bytes that are not UTF-8 into U+FFFD: a line damaged in transit or written
    # in another encoding, whose ids and URLs cannot be trusted either. One search over the joined
    # columns: 32 separate searches make generated code too large for the JIT to compile.
    replaced = F.concat_ws("", *CATALOG_COLUMNS).contains("\ufffd")
    rules: list[tuple[Column, str]] = [
        (F.col(CORRUPT_COLUMN).isNotNull(), "malformed_line"),
        (replaced, "invalid_utf8"),
        (pid.isNull() | (pid == ""), "missing_product_id"),
        (~pid.rlike(settings.product_id_pattern), "invalid_product_id"),
        (F.col("imageUrlStr").isNull() | (F.trim("imageUrlStr") == ""), "missing_image_url"),
        (F.col("image_url").isNull(), "no_usable_image_url"),
    ]
    if settings.category_prefix:
        prefix = settings.category_prefix
        rules.append((~F.coalesce(F.col("categories").startswith(prefix), F.lit(False)), "filtered_category"))
    if settings.title_regex:
        rules.append((~F.coalesce(F.col("title").rlike(settings.title_regex), F.lit(False)), "filtered_title"))
    reason = F.lit(None).cast("string")
    for condition, name in reversed(rules):
        reason = F.when(condition, F.lit(name)).otherwise(reason)
    return reason


def validate(raw: DataFrame, settings: IngestSettings) -> DataFrame:
    """Every line of ``raw`` (from :func:`read_catalog`) with ``row_id`` and ``reason`` (null: valid
    so far; a repeated productId is found by :func:`split`, across the whole dump).

    Valid rows also get ``image_url`` and ``family`` (productFamily as a list); rejected rows keep
    their ``raw_line`` (the line as read, or re-serialised where it parsed). One pass, no shuffle:
    each row is checked on its own.
    """
    checked = (
        raw.withColumn("row_id", F.monotonically_increasing_id())
        .withColumn("productId", F.trim("productId"))
        .withColumn("image_url", pick_image_url(F.col("imageUrlStr"), settings.image_size))
        .withColumn("reason", _reject_reason(settings))
    )
    # the comma-separated ids, trimmed of spaces, empty ones dropped (no per-element lambdas)
    family = F.array_remove(F.split(F.trim(F.coalesce("productFamily", F.lit(""))), " *, *"), "")
    return checked.select(
        "row_id",
        *CATALOG_COLUMNS,
        "image_url",
        family.alias("family"),
        "reason",
        F.when(F.col("reason").isNotNull(), F.coalesce(F.col(CORRUPT_COLUMN), _line())).alias("raw_line"),
    )


def _line() -> Column:
    """The parsed columns as a CSV line (a rejected line's raw text where it parsed)."""
    return F.to_csv(F.struct(*CATALOG_COLUMNS))


def repeated_lines(rows: DataFrame) -> DataFrame:
    """``row_id`` of each valid line (of :func:`validate`'s output) whose productId an earlier valid
    line holds: the first valid line of a productId wins. Reads and shuffles two columns only."""
    valid = rows.where(F.col("reason").isNull()).select("productId", "row_id")
    first = F.min("row_id").over(Window.partitionBy("productId"))
    return valid.withColumn("first", first).where(F.col("row_id") != F.col("first")).select("row_id")


def split(rows: DataFrame, repeated: DataFrame | None = None) -> Ingested:
    """Valid products (one per productId) and rejects from the output of :func:`validate`.

    ``repeated`` is :func:`repeated_lines` of ``rows``, computed here if not given; the job writes
    it to Parquet first, so that it is computed once and, being small, joined by broadcast.
    """
    if repeated is None:
        repeated = repeated_lines(rows)
    valid = rows.where(F.col("reason").isNull()).drop("reason", "raw_line")
    columns = ["row_id", "productId", "reason", "raw_line"]
    duplicates = rows.join(repeated, "row_id", "left_semi").select(
        "row_id", "productId", F.lit("duplicate_product_id").alias("reason"), _line().alias("raw_line")
    )
    return Ingested(
        products=valid.join(repeated, "row_id", "left_anti"),
        rejects=rows.where(F.col("reason").isNotNull()).select(*columns).unionByName(duplicates),
    )
