"""The catalog dump's 32 columns, read as strings, and the tables the job writes."""

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

STATUS_SCHEMA = T.StructType(
    [
        T.StructField("row_id", T.LongType(), False),
        T.StructField("productId", T.StringType(), True),
        T.StructField("status", T.StringType(), False),  # ok, rejected or failed
        T.StructField("reason", T.StringType(), True),
        T.StructField("stage", T.StringType(), False),
    ]
)
