"""dedup: find duplicate product listings in a catalog dump by their images, on Spark."""

__version__ = "0.1.0"
