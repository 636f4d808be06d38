"""Embedding vectors as Parquet binary values: L2-normalised float32 or float16, little-endian.

A vector of dimension ``d`` is stored as ``4 d`` bytes (float32) or ``2 d`` bytes (float16); the
length tells which, so readers need only ``d``. float16 halves the storage and moves a cosine
by less than 1e-3, far inside any duplicate threshold.

>>> import numpy as np
>>> v = normalise(np.array([[3.0, 4.0]], dtype=np.float32))
>>> blob = to_bytes(v[0], "float16")
>>> len(blob), [round(float(x), 3) for x in from_bytes(blob, 2)]
(4, [0.6, 0.8])
>>> stack([to_bytes(v[0], "float32"), blob], 2).shape
(2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def normalise(batch: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 (an all-zero row stays zero)."""
    batch = np.asarray(batch, dtype=np.float32)
    norms = np.linalg.norm(batch, axis=1, keepdims=True)
    return batch / np.maximum(norms, 1e-12)


def to_bytes(vector: np.ndarray, dtype: str = "float32") -> bytes:
    """One vector as little-endian ``dtype`` bytes (``float32`` or ``float16``)."""
    if dtype not in DTYPES:
        raise ValueError(f"embedding dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return np.asarray(vector, dtype=DTYPES[dtype]).tobytes()


def from_bytes(blob: bytes, dim: int) -> np.ndarray:
    """One stored vector back as float32; its length must be ``2 dim`` or ``4 dim`` bytes."""
    if len(blob) == 4 * dim:
        return np.frombuffer(blob, dtype=DTYPES["float32"]).astype(np.float32)
    if len(blob) == 2 * dim:
        return np.frombuffer(blob, dtype=DTYPES["float16"]).astype(np.float32)
    raise ValueError(f"an embedding of dimension {dim} has {2 * dim} or {4 * dim} bytes, not {len(blob)}")


def stack(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """Many stored vectors as one float32 matrix (n, dim)."""
    if not len(blobs):
        return np.zeros((0, dim), dtype=np.float32)
    return np.stack([from_bytes(blob, dim) for blob in blobs])
