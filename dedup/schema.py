"""The catalog dump's 32 columns, read as strings, and the schema of ``images/`` (the fetch
stage's table, written by tasks through pyarrow). The other tables' columns are set where their
stage makes them (``status/``: :func:`dedup.outputs.row_status`; ``pairs/``: :mod:`dedup.verify`)."""

from __future__ import annotations

from pyspark.sql import types as T

CATALOG_COLUMNS: tuple[str, ...] = (
    "productId", "title", "description", "imageUrlStr", "mrp", "sellingPrice", "specialPrice",
    "productUrl", "categories", "productBrand", "productFamily", "inStock", "codAvailable",
    "offers", "discount", "shippingCharges", "deliveryTime", "size", "color", "sizeUnit",
    "storage", "displaySize", "keySpecsStr", "detailedSpecsStr", "specificationList",
    "sellerName", "sellerAverageRating", "sellerNoOfRatings", "sellerNoOfReviews", "sleeve",
    "neck", "idealFor",
)  # fmt: skip

CORRUPT_COLUMN = "_corrupt_record"

CATALOG_SCHEMA = T.StructType([T.StructField(name, T.StringType()) for name in CATALOG_COLUMNS])
CATALOG_READ_SCHEMA = T.StructType([*CATALOG_SCHEMA.fields, T.StructField(CORRUPT_COLUMN, T.StringType())])

FETCH_SCHEMA = T.StructType(
    [
        T.StructField("productId", T.StringType(), False),
        T.StructField("image_url", T.StringType(), False),
        T.StructField("fetch_status", T.StringType(), False),  # ok or failed
        T.StructField("fetch_reason", T.StringType(), True),
        T.StructField("http_status", T.IntegerType(), True),
        T.StructField("attempts", T.IntegerType(), False),
        T.StructField("image_format", T.StringType(), True),
        T.StructField("n_bytes", T.LongType(), False),
        T.StructField("elapsed_ms", T.LongType(), False),
        T.StructField("image_bytes", T.BinaryType(), True),
        T.StructField("fetched_at", T.LongType(), False),  # ms since the epoch
    ]
)
