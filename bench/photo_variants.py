"""Changes to the photo check that were measured and not kept, each a patch on a copy of photomatch.

``bench/photo_replay.py --variant NAME`` replays a finished job's compared pairs with one of them,
so a figure of docs/BENCHMARKS.md that came from one can be made again (issue 14, phase 27):

- ``colour_squares``: the colour map fitted with each channel's square as well as the channel
  (a gamma, a contrast with clipping, which an affine map misses);
- ``frame_swap``: the pair compared in the frame of the image the other covers more of (by at
  least :data:`SWAP_MARGIN`), so a crop's or a pad's warp edge falls outside the compared area;
- ``frame_swap_tiles``: as ``frame_swap``, for the structure and the tiles only; the colour is read
  in the first image's frame as before.

Each takes a fresh copy of ``dedup/photomatch.py`` (the job's module is not touched):

>>> pm = patched("frame_swap")
>>> pm is not photomatch and pm._compare is not photomatch._compare
True
>>> matrix = np.array([[2.0, 0.0, 4.0], [0.0, 2.0, -6.0]])
>>> np.allclose(_inverse(matrix) @ np.append(matrix @ [3.0, 5.0, 1.0], 1.0), [3.0, 5.0])
True
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from dedup import photomatch
from dedup.devkit.calibration import load_module

SWAP_MARGIN = 0.05  # share of a frame the other image must cover more of, in the swapped direction


def _colour_squares(pm: ModuleType) -> None:
    """The colour map's inputs are each channel and its square (the structure's residual stays affine)."""

    def with_squares(rgb_rows: np.ndarray) -> np.ndarray:
        x = rgb_rows.astype(np.float64)
        return np.concatenate([x, x * x / 255.0, np.ones((len(x), 1))], 1)

    def affine_residual(source: np.ndarray, target: np.ndarray) -> float:
        x = np.concatenate([source.astype(np.float64), np.ones((len(source), 1))], 1)
        y = target.astype(np.float64)
        return float(np.sqrt(((x @ pm._affine_map(x, y) - y) ** 2).mean()))

    pm._with_ones, pm._colour_residual = with_squares, affine_residual


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """A fit's map (2x3 affine or 3x3) the other way round, in the same form."""
    if matrix.shape == (3, 3):
        inverse = np.linalg.inv(matrix)
        return inverse / inverse[2, 2]
    return cv2.invertAffineTransform(matrix)


def _coverage(pm: ModuleType, onto: Any, moved: Any, matrix: np.ndarray) -> float:
    """Share of ``onto``'s frame that ``moved``, mapped by ``matrix``, covers."""
    h, w = onto.grey.shape
    return float(pm._warp(np.ones(moved.grey.shape, np.uint8), matrix, (w, h), cv2.INTER_NEAREST).mean())


def _frame_swap(pm: ModuleType, colour_too: bool = True) -> None:
    """``_compare`` in the frame the other image covers more of (all scores, or structure and tiles)."""
    compare = pm._compare

    def swapped(a: Any, b: Any, maps: Any) -> dict[str, float]:
        inverse = [_inverse(matrix) for matrix in maps]
        if _coverage(pm, b, a, inverse[0]) <= _coverage(pm, a, b, maps[0]) + SWAP_MARGIN:
            return compare(a, b, maps)
        other = compare(b, a, inverse)
        if colour_too:
            return other
        return {**compare(a, b, maps), "structure": other["structure"], "tile_agreement": other["tile_agreement"]}

    pm._compare = swapped


VARIANTS: dict[str, Callable[[ModuleType], None]] = {
    "colour_squares": _colour_squares,
    "frame_swap": _frame_swap,
    "frame_swap_tiles": lambda pm: _frame_swap(pm, colour_too=False),
}


def patched(name: str, path: Path | None = None) -> ModuleType:
    """A fresh copy of photomatch (``path``: another version's file) with variant ``name`` applied."""
    pm = load_module(path or Path(photomatch.__file__))
    VARIANTS[name](pm)
    return pm
