"""Changes to the photo check that were measured and not kept, each a patch on a copy of photomatch.

``bench/photo_replay.py --variant NAME`` replays a finished job's compared pairs with one of them,
so a figure of docs/BENCHMARKS.md that came from one can be made again (issue 14, phase 27):

- ``colour_squares``: the colour map fitted with each channel's square as well as the channel
  (a gamma, a contrast with clipping, which an affine map misses);
- ``frame_swap``: the pair compared in the frame of the image the other covers more of (by at
  least :data:`SWAP_MARGIN`), so a crop's or a pad's warp edge falls outside the compared area;
- ``frame_swap_tiles``: as ``frame_swap``, for the structure and the tiles only; the colour is read
  in the first image's frame as before;
- ``chroma_smoothed`` (issue 14, phase 28): the colours compared with their chroma (each pixel's
  RGB less its luma) smoothed to :data:`CHROMA_SIGMA` px, the luma as before (a JPEG's chroma is
  coarser than its luma; a resized copy's more so);
- ``opened_misses`` (phase 28): a pixel the colour map misses counts only inside a missed area
  :data:`MISS_OPEN` px across (a morphological opening of the misses, at full size), so a thin fringe
  along an edge (two images' colours smoothed or sampled differently) is no change.

- ``reversed`` (phase 36): every compared pair compared the other way round, the first image
  warped onto the second by the fit's inverse (the job orders a pair by its listings' row ids,
  so which image is warped is an accident of the catalog's order);
- ``both_ways`` (phase 36): compared both ways, each of the structure, the tiles and the colour
  change the mean of the two readings (a reading that does not depend on the pair's order);
- ``both_ways_colour`` (phase 36): as ``both_ways`` for the colour change only.

- ``seam_clear`` (phase 37): where little product is shared, the whole overlap compared clear of
  its edge by :data:`SEAM_CLEAR` px, the image's border counted as an edge (the band-pass of a
  warp's seam, a frame's or a pad's edge reaches past the module's 3 px into the tiles by it);
- ``edge_slack`` (phase 37): a pixel the colour map misses counts only by more than
  ``COLOUR_LEVELS`` plus :data:`SHIFT_PX` times the larger of the two smoothed images' colour
  gradient there (levels a pixel), so a miss a shift of that much would explain (a blurred or
  misaligned silhouette) is no change.

- ``map_by_colour`` (phase 39): of the fit's two maps (a homography and the affine map), the one
  whose colour change is lower wherever its structure is within :data:`STRUCTURE_TIE` of the better
  one's (the module keeps the better structure: a quarter-turned copy with emoji read 0.144 under
  it and 0.045 under the other map);
- ``coarse_smoothing`` (phase 39): the colours smoothed by ``COLOUR_SIGMA`` times the coarser
  image's scale in the compared frame (its native pixels' size there: :func:`photomatch.prepare`'s
  enlargement times the fit's scale), where that is :data:`COARSE_FROM` or more, up to
  :data:`COARSE_MAX` (a small copy enlarged onto its original keeps its JPEG blocks and smeared
  chroma at that scale).

The phase-36 three read the module's comparison one way (``_compare_one_way`` where it has one: a
module with ``ENLARGE_BELOW`` would turn a shrinking pair back to its larger image's frame).

``CHROMA_SIGMA``, ``MISS_OPEN``, ``SEAM_CLEAR``, ``SHIFT_PX``, ``STRUCTURE_TIE``, ``COARSE_FROM`` and
``COARSE_MAX`` are set on the patched module, so ``--set`` reaches them.

Each takes a fresh copy of ``dedup/photomatch.py`` (the job's module is not touched):

>>> pm = patched("frame_swap")
>>> pm is not photomatch and pm._compare is not photomatch._compare
True
>>> matrix = np.array([[2.0, 0.0, 4.0], [0.0, 2.0, -6.0]])
>>> np.allclose(_inverse(matrix) @ np.append(matrix @ [3.0, 5.0, 1.0], 1.0), [3.0, 5.0])
True
>>> pm = patched("both_ways")
>>> rng = np.random.default_rng(0)
>>> a = pm.Picture(cv2.GaussianBlur(rng.integers(0, 255, (96, 96, 3), np.uint8), (0, 0), 2))
>>> b = pm.Picture(cv2.resize(a.rgb, (80, 80)))
>>> maps = (np.array([[1.2, 0.0, 0.0], [0.0, 1.2, 0.0]]),)  # b onto a
>>> [round(pm._compare(a, b, maps)[f] - pm._compare(b, a, [_inverse(maps[0])])[f], 9) for f in BOTH_WAYS]
[0.0, 0.0, 0.0]
>>> pm = patched("chroma_smoothed")
>>> grey_step = np.repeat(np.r_[np.zeros(8), np.full(8, 200.0)], 3).reshape(1, 16, 3).repeat(16, 0)
>>> np.allclose(pm._smoothed(grey_step, 0.0), photomatch._smoothed(grey_step, 0.0), atol=1e-3)  # no chroma
True
>>> pm = patched("seam_clear")
>>> inside = np.ones((64, 64), np.uint8)
>>> int(photomatch._overlap_interior(inside).sum()), int(pm._overlap_interior(inside).sum())  # 64 * 64, 48 * 48
(4096, 2304)
>>> pm = patched("edge_slack")
>>> edge = np.zeros((64, 64, 3), np.float32)
>>> edge[:, 32:] = 200.0
>>> blurred = cv2.GaussianBlur(edge, (0, 0), 2.0)  # a blurred copy's silhouette
>>> [round(module._colour_change(edge, blurred, np.ones((64, 64), bool)).change, 2) for module in (photomatch, pm)]
[0.09, 0.0]
>>> pm = patched("coarse_smoothing")
>>> photo = rng.integers(0, 255, (224, 224, 3), np.uint8)
>>> half = np.ascontiguousarray(photo[::2, ::2])  # enlarged to photomatch.ENLARGE_TO (192) to be compared
>>> pm._picture(photo).coarse, round(pm._picture(half).coarse, 2)
(1.0, 1.71)
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
CHROMA_SIGMA = 6.0  # px (at photomatch.MAX_SIDE): the chroma's smoothing in ``chroma_smoothed``
MISS_OPEN = 5  # px: the side of the square the misses are opened by in ``opened_misses``
SEAM_CLEAR = 17  # px: the side of the square the overlap is eroded by in ``seam_clear``
SHIFT_PX = 0.5  # px: the shift whose colour change ``edge_slack`` forgives at each pixel
STRUCTURE_TIE = 0.01  # ``map_by_colour``: structures this close are a tie, broken by the lower colour change
COARSE_FROM = 1.6  # ``coarse_smoothing``: the coarser image's scale from which the colours are smoothed more
COARSE_MAX = 3.0  # ... and the most times ``COLOUR_SIGMA`` they are smoothed by
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601


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


_inverse = photomatch.inverse_map


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


BOTH_WAYS = ("structure", "tile_agreement", "colour_change")  # the scores ``both_ways`` reads both ways


def _reversed(pm: ModuleType) -> None:
    """``_compare`` with the first image warped onto the second (the fit's inverse)."""
    compare = getattr(pm, "_compare_one_way", pm._compare)
    pm._compare = lambda a, b, maps: compare(b, a, [_inverse(matrix) for matrix in maps])


def _both_ways(pm: ModuleType, fields: tuple[str, ...] = BOTH_WAYS) -> None:
    """``_compare`` both ways, ``fields`` the mean of the two readings (the others: as compared)."""
    compare = getattr(pm, "_compare_one_way", pm._compare)

    def both(a: Any, b: Any, maps: Any) -> dict[str, float]:
        one, other = compare(a, b, maps), compare(b, a, [_inverse(matrix) for matrix in maps])
        return {**one, **{field: (one[field] + other[field]) / 2 for field in fields}}

    pm._compare = both


def _chroma_smoothed(pm: ModuleType) -> None:
    """``_smoothed`` with each pixel's chroma (RGB less its luma) smoothed to ``pm.CHROMA_SIGMA``."""
    pm.CHROMA_SIGMA = CHROMA_SIGMA
    smoothed = pm._smoothed

    def chroma_smoothed(rgb: np.ndarray, extra: float) -> np.ndarray:
        image = smoothed(rgb, extra).reshape(rgb.shape)
        luma = image @ LUMA
        sigma = float(np.hypot(pm.COLOUR_SIGMA, extra))
        further = float(np.sqrt(max(pm.CHROMA_SIGMA**2 - sigma**2, 0.01)))
        chroma = cv2.GaussianBlur(image - luma[..., None], (0, 0), further)
        return (luma[..., None] + chroma).reshape(-1, 3)

    pm._smoothed = chroma_smoothed


Reading = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (smooth_a, smooth_b, region, sampled pixels)


def _per_map(pm: ModuleType, adjust: Callable[[np.ndarray, Reading, int], np.ndarray]) -> None:
    """``_robust_map_misses``' distances passed through ``adjust(distance, reading, side)`` while
    ``_change_reading`` runs, which calls it for ``b`` onto ``a`` (side 0) then ``a`` onto ``b`` (1)
    on the sampled pixels; its calls from elsewhere are left as they are."""
    reading, robust = pm._change_reading, pm._robust_map_misses
    current: list[Reading] = []  # the reading running, if any
    adjusted_maps = [0]  # how many of its two maps were adjusted so far

    def change_reading(smooth_a: np.ndarray, smooth_b: np.ndarray, region: np.ndarray, *rest: Any) -> Any:
        pixels = np.flatnonzero(region)
        current[:] = [(smooth_a, smooth_b, region, pixels[:: max(1, len(pixels) // pm.COLOUR_SAMPLES)])]
        adjusted_maps[0] = 0
        try:
            return reading(smooth_a, smooth_b, region, *rest)
        finally:
            current.clear()

    def adjusted(source: np.ndarray, target: np.ndarray, rounds: int = 3) -> np.ndarray:
        distance = robust(source, target, rounds)
        side = adjusted_maps[0]
        if not current or side >= 2:
            return distance
        adjusted_maps[0] += 1
        return adjust(distance, current[0], side)

    pm._change_reading, pm._robust_map_misses = change_reading, adjusted


def _opened_misses(pm: ModuleType) -> None:
    """``_change_reading``'s misses kept only inside a missed area ``pm.MISS_OPEN`` px across: each
    map's misses (``_robust_map_misses``, called for ``b`` onto ``a`` then ``a`` onto ``b`` on the
    sampled pixels) found at every pixel of the region as the caption reading finds them
    (``_missed_everywhere``), and opened; a sampled miss outside the opened area is set to the
    bound (no miss)."""
    pm.MISS_OPEN = MISS_OPEN

    def opened(distance: np.ndarray, reading: Reading, side: int) -> np.ndarray:
        smooth_a, smooth_b, region, sampled = reading
        full_source, full_target = (smooth_b, smooth_a) if side == 0 else (smooth_a, smooth_b)
        missed = distance > pm.COLOUR_LEVELS
        refitted = pm._missed_everywhere(full_source, full_target, sampled, missed, region) if missed.any() else None
        if refitted is None:
            return distance
        kernel = np.ones((pm.MISS_OPEN, pm.MISS_OPEN), np.uint8)
        opened = cv2.morphologyEx(
            (refitted[1] > pm.COLOUR_LEVELS**2).reshape(region.shape).astype(np.uint8), cv2.MORPH_OPEN, kernel
        )
        inside = opened.reshape(-1)[sampled] > 0
        return np.where(inside, distance, np.minimum(distance, pm.COLOUR_LEVELS))

    _per_map(pm, opened)


def _seam_clear(pm: ModuleType) -> None:
    """``_overlap_interior`` eroded by ``pm.SEAM_CLEAR`` px, the image's border an edge too."""
    pm.SEAM_CLEAR = SEAM_CLEAR

    def clear_of_edge(inside: np.ndarray) -> np.ndarray:
        kernel = np.ones((pm.SEAM_CLEAR, pm.SEAM_CLEAR), np.uint8)
        return cv2.erode(inside, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)

    pm._overlap_interior = clear_of_edge


def _edge_slack(pm: ModuleType) -> None:
    """``_change_reading``'s misses less ``pm.SHIFT_PX`` times the colour gradient at each sampled
    pixel (the larger of the two smoothed images'): each map's distances less that slack."""
    pm.SHIFT_PX = SHIFT_PX

    def gradient(rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        image = rows.reshape((*shape, 3)).astype(np.float32)
        dx, dy = (cv2.Sobel(image, cv2.CV_32F, *order, ksize=3) / 8.0 for order in ((1, 0), (0, 1)))
        return np.sqrt((dx * dx + dy * dy).sum(axis=2)).reshape(-1)

    steepest: list[np.ndarray] = []  # the running reading's gradient, made for its first map, read by both

    def forgiving(distance: np.ndarray, reading: Reading, side: int) -> np.ndarray:
        smooth_a, smooth_b, region, sampled = reading
        if side == 0:
            steepest[:] = [np.maximum(gradient(smooth_a, region.shape), gradient(smooth_b, region.shape))]
        return np.maximum(distance - pm.SHIFT_PX * steepest[0][sampled], 0.0)

    _per_map(pm, forgiving)


def _map_by_colour(pm: ModuleType) -> None:
    """``_compare_one_way`` keeping, among the maps whose structure is within ``pm.STRUCTURE_TIE`` of
    the best, the one whose colour change is lowest (then the better structure): the module's own
    ``_compare_one_way`` given that map alone (so it is refined as the module refines it), its
    reading under the map taken from the readings already made."""
    pm.STRUCTURE_TIE = STRUCTURE_TIE
    one_way, compare_under = pm._compare_one_way, pm._compare_under

    def by_colour(a: Any, b: Any, maps: Any) -> dict[str, float]:
        compared = [compare_under(a, b, matrix) for matrix in maps]
        top = max(reading["structure"] for reading in compared)
        tied = [i for i, reading in enumerate(compared) if reading["structure"] >= top - pm.STRUCTURE_TIE]
        best = min(tied, key=lambda i: (compared[i]["colour_change"], -compared[i]["structure"]))

        def read_once(a_: Any, b_: Any, matrix: np.ndarray) -> dict[str, float]:
            return compared[best] if matrix is maps[best] else compare_under(a_, b_, matrix)

        pm._compare_under = read_once
        try:
            return one_way(a, b, (maps[best],))
        finally:
            pm._compare_under = compare_under

    pm._compare_one_way = by_colour


def _coarse_smoothing(pm: ModuleType) -> None:
    """Pictures that know their enlargement (``coarse``: :func:`photomatch.prepare`'s, the prepared
    image's height over the decoded one's), and ``_compare_under`` with ``COLOUR_SIGMA`` times the
    coarser side's scale in ``a``'s frame where that is ``pm.COARSE_FROM`` or more (at most
    ``pm.COARSE_MAX``)."""
    pm.COARSE_FROM, pm.COARSE_MAX = COARSE_FROM, COARSE_MAX
    compare_under, base_sigma = pm._compare_under, pm.COLOUR_SIGMA

    def picture(pixels: np.ndarray) -> Any:
        prepared = pm.prepare(pixels)
        side = pm.Picture(prepared)
        side.coarse = prepared.shape[0] / pixels.shape[0]
        return side

    def mirror(self: Any) -> Any:
        side = pm.Picture(self.rgb[:, ::-1])
        side.coarse = getattr(self, "coarse", 1.0)
        return side

    def compare_pixels(pixels_a: np.ndarray, pixels_b: np.ndarray, scores: dict, maps: Any) -> dict[str, Any]:
        try:
            side_b = picture(pixels_b)
            side_b = side_b.mirror() if scores["flipped"] else side_b
            return {**scores, **pm._compare(picture(pixels_a), side_b, maps)}
        except pm.MATCH_ERRORS as exc:
            return pm._empty(f"error:{type(exc).__name__}")

    def coarse_under(a: Any, b: Any, matrix: np.ndarray) -> dict[str, float]:
        coarse = max(1.0, getattr(a, "coarse", 1.0), getattr(b, "coarse", 1.0) * pm._scale(matrix))
        pm.COLOUR_SIGMA = base_sigma * (1.0 if coarse < pm.COARSE_FROM else min(coarse, pm.COARSE_MAX))
        try:
            return compare_under(a, b, matrix)
        finally:
            pm.COLOUR_SIGMA = base_sigma

    pm._picture, pm.Picture.mirror, pm.compare_pixels, pm._compare_under = picture, mirror, compare_pixels, coarse_under


VARIANTS: dict[str, Callable[[ModuleType], None]] = {
    "colour_squares": _colour_squares,
    "frame_swap": _frame_swap,
    "frame_swap_tiles": lambda pm: _frame_swap(pm, colour_too=False),
    "chroma_smoothed": _chroma_smoothed,
    "opened_misses": _opened_misses,
    "reversed": _reversed,
    "both_ways": _both_ways,
    "both_ways_colour": lambda pm: _both_ways(pm, ("colour_change",)),
    "seam_clear": _seam_clear,
    "edge_slack": _edge_slack,
    "map_by_colour": _map_by_colour,
    "coarse_smoothing": _coarse_smoothing,
}


def patched(name: str, path: Path | None = None) -> ModuleType:
    """A fresh copy of photomatch (``path``: another version's file) with variant ``name`` applied."""
    pm = load_module(path or Path(photomatch.__file__))
    VARIANTS[name](pm)
    return pm
