"""Photo match: is a candidate pair the same photograph (edited), or two photos of look-alikes?

Hashes and embeddings put the same cut in another colour, shot the same way on white, next to a
copy of the photo. What survives every edit a duplicate may carry (crop, pad, resize, small
rotation, flip, blur, noise, colour, greyscale, overlays) and differs between two photographs is
the geometry of local detail. :func:`match_scores` measures it:

1. Both images downscaled to at most :data:`MAX_SIDE` pixels a side (or enlarged to
   :data:`ENLARGE_TO` when smaller), in grey.
2. ORB keypoints; ratio-test matches of ``a`` against ``b`` and against ``b`` mirrored, each fitted
   with a RANSAC similarity and a RANSAC affine map (a scale per direction and shear too: a copy
   may be stretched on one axis, sheared or tilted), within :data:`MAX_ANISOTROPY`, the one with
   more inliers kept, and a RANSAC homography where it holds :data:`PERSPECTIVE_GAIN` times as
   many (a copy in perspective); the side with more inliers wins.
   ``inliers`` and ``inlier_ratio`` (inliers / ratio-test matches) measure the fit. A fit too
   weak for the gate, of two images apart in sharpness (a blurred copy: ORB finds few repeatable
   keypoints on it, and those it finds on the sharp original are mostly detail the copy lost),
   gets a second one (:func:`refit_blurred`, :data:`BLUR_REFIT`): the sharper image blurred to the
   other's sharpness, its keypoints found again, held to the plain gate; ``blur_refit`` is the sigma.
   A weak fit still, with :data:`DENSE_FROM` inliers, is fitted once more with
   :data:`DENSE_FEATURES` keypoints a side (:func:`refit_dense`: a caption or an emoji takes
   ORB's budget from the photo).
3. ``b`` warped onto ``a`` with the fit (with a homography, under it and under the affine map,
   the better-aligned kept; where the fit shrinks ``b`` below :data:`ENLARGE_BELOW`, ``a`` is
   enlarged onto ``b`` instead, so that a pair of far-apart scales, a banner's photo and its
   original, is compared in one frame whichever listing comes first); ``structure`` is the
   correlation of their band-pass (difference of Gaussians) images over the products' shared
   interior (a product: what differs from its image's ground, the colour of its border ring; an
   image framed all round by lines of one colour, a border or a narrow pad, has its frame left out
   and its photo's own ground for background, read past a blurred frame's soft edge), silhouette
   edges left out and the worst-fitting :data:`TRIM` of it too (an overlay, a noisy copy's grain;
   the misfit read both ways, so that an overlay on either image is what is left out and the
   figure does not depend on which image is first):
   the same photo keeps its print, folds and shading after a hue shift or greyscale; another
   photo of the same cut does not. ``tile_agreement``: the share of textured 32-pixel tiles
   (textured above the pair's pixel noise) where they correlate, since catalogs paste products of
   one line onto one model shot (same face, arms and jeans; another shirt), which the
   whole-interior correlation alone lets through. Where the colour reading (step 4) left caption
   parts out, the tiles are also read clear of them (grown by :data:`CAPTION_TILE_REACH`), and the
   higher share kept: the tiles under a caption or an emoji disagree with the original's.
4. ``colour_change``: the share of the two products' area (smoothed, so noise and JPEG do not
   count; the sharper image first blurred to the other's detail, judged tile by tile so that an
   overlay's own sharp edges do not pass for a sharper photo, so a blurred copy's softened edges
   do not either) whose colour one global affine colour map, fitted robustly in either
   direction (from all pixels, and from those no edit changed, the map missing fewer kept: a
   caption box over much of a small product pulls the first off the photo's colours), misses by
   more than :data:`COLOUR_LEVELS`, counted only where the local texture of
   the two agrees; the pixels whose texture differs (an overlay: text, a logo, an emoji, a
   border) count beyond the first :data:`OVERLAY_SHARE` of the area. Or, the smaller reading, an
   addition onto one image's background (a caption, an emoji or a sticker beside the product:
   pixels that are foreground in that image alone and differ) counts only beyond
   :data:`OVERLAY_IMAGE` of the image, however small the product, the rest as before. Or, the
   smaller again, the same reading with the caption parts left out: the changed pixels closed
   into parts, a part a caption where it is a filled box wider than tall (:data:`CAPTION_FILL`,
   :data:`CAPTION_ASPECT`) or a solid stamp of any shape over a few % of the image (an emoji, a
   logo: :data:`STAMP_SHARE`, :data:`STAMP_FILL`; or opaque, :data:`STAMP_LEVELS`), at most
   :data:`CAPTION_SHARE` of the products' area, whose texture differs (letters; a recoloured
   box-shaped product keeps its own texture) or whose colours are the other image's blended
   toward one colour (a translucent caption, whose letters let the texture under them through:
   :data:`BLEND_RESIDUAL`, :data:`BLEND_MAX`), and what is left beside them counted
   :data:`CAPTION_REST` times (with up to half the product read as caption, the rest must all but
   agree: a look-alike's differing garment can read as a filled box).
   Texture is judged above the pair's pixel noise (:data:`NOISE_TEXTURE`), so the grain of a
   noisy copy is no overlay. A colour edit (brightness, contrast, saturation, hue, greyscale)
   maps every pixel the same way: a small share. Catalogs recolour a product on one model shot
   (the same face, arms and folds; a pink shirt where the other is white) or shoot the same item
   in two colours: there the map fits the model or the background and misses the product, whose
   folds and print (its texture) stay.
   ``colour_residual``, the RMS residual of a plain affine map over the interior, is kept as a
   measure.
5. A second chance for the alignment: where the structure agrees (:data:`REFINE_FROM`) but the
   colours do not (:data:`REFINE_ABOVE` to :data:`REFINE_BELOW`), the keypoint fit may be a few pixels off (a copy
   in perspective or stretched, a blurred copy's few keypoints), and the misaligned edges read as
   changed colour. The map is refined on the pixels themselves (OpenCV's ECC, a homography
   started from the fit) and the pair compared again; the refined comparison is kept only where
   it leaves the colours all but equal (:data:`REFINE_COLOUR`, stricter than any calibrated
   bound: a copy, aligned to the pixel, matches almost everywhere; a look-alike shot the same
   way, aligned as well, still differs in a few percent of its area).

:class:`PhotoRule` applies the thresholds (:func:`decide`: at the defaults); :func:`photo_match_udf` scores pairs
of image bytes in Spark.

>>> from dedup.devkit.synth import product_image
>>> import numpy as np
>>> a = np.asarray(product_image(6))
>>> s = match_scores(a, a[:, ::-1])
>>> s["flipped"], decide(s), s["reason"]
(True, True, None)
>>> decide(match_scores(a, np.asarray(product_image(4))))
False
>>> match_scores(a, np.zeros((1, 1, 3), np.uint8))["reason"]
'too_small'
"""

from __future__ import annotations

import functools
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import cv2
import numpy as np
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup.content import Box, box_overlap, content_box, crop, leading_run
from dedup.imaging import DecodeError, decode_pixels, noise_level
from dedup.settings import EmbedSettings, VerifySettings, default_table

MAX_SIDE = 256  # pixels a side the pair is compared at
MIN_SIDE = 32  # smaller images are not compared
ENLARGE_TO = 192  # an image whose longer side is shorter is enlarged to this (the pixel constants below hold)
ORB_FEATURES = 500
DENSE_FEATURES = 1000  # keypoints of a weak fit's second chance (0: none; a caption or an emoji takes ORB's budget)
DENSE_FROM = 15  # ... which a weak fit with at least this many inliers gets
RATIO = 0.8  # Lowe's ratio test
RANSAC_PIXELS = 4.0  # reprojection tolerance, at MAX_SIDE scale
MAX_ANISOTROPY = 1.4  # the fit may scale one direction this much more than the other (a stretch, a shear)
MAX_PERSPECTIVE = 0.25  # a homography may change the scale across the matched points by this share (0: affine only)
PERSPECTIVE_GAIN = 1.1  # ... and is kept only with this many times the affine map's inliers
PERSPECTIVE_FROM = 0.35  # ... and is fitted only where the affine map holds this share of the matches
DOG_SIGMAS = (1.5, 4.0)  # the band the structure is compared in (pixels at MAX_SIDE scale)
TRIM = 0.3  # share of worst-fitting pixels the structure correlation leaves out (an overlay, a noisy copy's grain)
TILE = 32  # pixels a side of the tiles the structure is also checked in
TILE_ENERGY = 1.5  # band-pass standard deviation that makes a tile textured
TILE_CORRELATION = 0.5
TILE_NOISE = 3.0  # ... and a tile is textured only above this many times the pair's noise in the band (0: off)
COLOUR_SIGMA = 2.5  # pixels (at MAX_SIDE): smoothing before colours are compared
COLOUR_LEVELS = 15.0  # RGB distance from the fitted map that counts a pixel's colour as changed
COLOUR_TRIM = 0.3  # share of worst-fitting pixels each refit of the colour map leaves out
COLOUR_SAMPLES = 4096  # pixels the colour map is fitted and checked on
COLOUR_UNCHANGED = 0.1  # share of pixels unchanged from which the map is also fitted (0: only from all pixels)
BLUR_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)  # extra Gaussian sigmas tried on the sharper image (px at MAX_SIDE)
BLUR_REFIT = True  # a weak fit of images apart in sharpness is fitted again with the sharper one blurred
TEXTURE_WINDOW = 9  # pixels a side of the window local texture is compared in (0: no overlay allowance)
TEXTURE_CORRELATION = 0.5  # |correlation| of the band-pass images at which two textured windows agree
OVERLAY_SHARE = 0.1  # share of the products' area whose texture may differ (an overlay) before it counts as change
CAPTION_CLOSE = 5  # pixels (at MAX_SIDE) the changed pixels are closed by into parts (a caption's letters)
CAPTION_FILL = 0.45  # a caption part fills at least this share of its bounding box,
CAPTION_ASPECT = 1.5  # ... is at least this many times as wide as tall,
CAPTION_SHARE = 0.5  # ... covers at most this share of the products' area (0: no caption reading)
CAPTION_TEXTURE = 0.15  # ... and its texture differs in at least this share of its changed pixels
CAPTION_REST = 1.5  # the colour change left beside the caption parts counts this many times (1: as any other)
# px: the caption parts the colour reading left out are grown by this (the band-pass's reach) before
# the tiles are read clear of them (issue 14 phase 31; 0: tiles read over every caption)
CAPTION_TILE_REACH = 7
BLEND_RESIDUAL = 10.0  # levels (RMS): a part whose texture agrees is a caption too where its colours lie this close
BLEND_MAX = 0.95  # to the other image's blended toward one colour, by a median share of at most this (0: off)
BLEND_SLACK = 20.0  # levels: that colour may lie this far outside the RGB cube (a least-squares meeting point)
STAMP_SHARE = 0.05  # a part of any shape (an emoji, a logo) is a caption part too where it covers at most this
STAMP_FILL = 0.6  # share of the image (0: no such reading) and fills this share of its box (a solid mark)
STAMP_LEVELS = 60.0  # ... or, filling less (a star, touching emoji), misses the colour map by a median of this (0: off)
STAMP_OPAQUE_SHARE = 0.1  # ... and such an opaque mark may cover this share of the image
STAMP_OPAQUE_REGION = 0.33  # ... and this share of the products' area (a mark over a product leaves most of it seen)
CAPTION_OPAQUE_REGION = 0.75  # an opaque wide part (letters of another colour) is a caption up to STAMP_OPAQUE_SHARE
# of the image over this share of a small product's area, more than CAPTION_SHARE (0: no such reading)
SPLIT_OPEN = 11  # px (at MAX_SIDE): a part filling too little of its box is opened into the parts it joins (0: not)
OVERLAY_IMAGE = 0.05  # share of the image an addition onto one image's background may cover (0: no such reading)
NOISE_TEXTURE = 6.0  # a window is textured only above this many times the pair's noise in the band (0: off)
FRAME_UNIFORM = 0.9  # a frame's line: at least this share within 16 levels of the border ring's median (0: none)
FRAME_MAX = 0.25  # ... and a frame's side is at most this share of the image
FRAME_GROUND = 0.5  # ... and inside it, the photo's own ground: this share of a ring within 16 levels of one
FRAME_EDGE = 12  # pixels: the deepest ring inside a frame read for the photo's ground (a blurred frame's soft edge)
ERODE = 17  # pixels: the interior keeps clear of the silhouette edge, whose band-pass ring any look-alike shares
REFINE_FROM = 0.9  # structure from which a pair whose colours differ has its alignment refined (0: never)
REFINE_ABOVE = 0.1  # ... where its colour change is over this (the default rule's bound: under it a pair passes)
REFINE_BELOW = 0.4  # ... and not over this (a misaligned copy is rarely farther off; a look-alike often is)
REFINE_COLOUR = 0.03  # the refined alignment is kept only where it leaves at most this colour change
REFINE_SHIFT = 16.0  # pixels (at MAX_SIDE): the refinement may move the other image's corners at most this far
REFINE_STEPS = (30, 1e-3)  # ECC's iterations, and the change in correlation at which it stops
ENLARGE_BELOW = 0.7  # a fit shrinking b below this scale is compared the other way: a enlarged onto b (0: never)
SCORE_FIELDS: tuple[tuple[str, T.DataType], ...] = (
    ("reason", T.StringType()),
    ("inliers", T.IntegerType()),
    ("matches", T.IntegerType()),
    ("inlier_ratio", T.DoubleType()),
    ("flipped", T.BooleanType()),
    ("scale", T.DoubleType()),
    ("rotation", T.DoubleType()),
    ("overlap", T.DoubleType()),
    ("structure", T.DoubleType()),
    ("colour_residual", T.DoubleType()),
    ("tile_agreement", T.DoubleType()),
    ("colour_change", T.DoubleType()),
    ("sharpness_gap", T.DoubleType()),
    ("blur_refit", T.DoubleType()),  # the sigma the sharper image was blurred by for a second fit; null: none
)
REGION = "region_"
"""The prefix of the framed-photo view's scores (:func:`score_described`): where one image frames a
smaller photo (a banner, a screenshot; :mod:`dedup.content`), the pair is also compared with that
photo in its place (``region_view``: ``a``, ``b`` or ``both``), and these of its scores are kept."""
REGION_FIELDS = ("reason", "inliers", "matches", "inlier_ratio", "flipped", "structure", "tile_agreement",
                 "colour_change", "sharpness_gap", "blur_refit")  # fmt: skip
SCORE_FIELDS += (("region_view", T.StringType()), ("framed_placement", T.DoubleType()),
                 *((REGION + name, kind) for name, kind in SCORE_FIELDS if name in REGION_FIELDS))  # fmt: skip
SCORES_SCHEMA = T.StructType([T.StructField(name, kind) for name, kind in SCORE_FIELDS])
_SCORE_NAMES = [name for name, _ in SCORE_FIELDS]

_ORBS: dict[int, Any] = {}


def _orb(features: int = 0) -> Any:
    """The ORB detector finding ``features`` keypoints (0: :data:`ORB_FEATURES`), made once."""
    features = features or ORB_FEATURES
    if features not in _ORBS:
        cv2.setNumThreads(1)
        _ORBS[features] = cv2.ORB_create(nfeatures=features, edgeThreshold=15, patchSize=15, fastThreshold=10)
    return _ORBS[features]


def _empty(reason: str | None) -> dict[str, Any]:
    scores: dict[str, Any] = dict.fromkeys(name for name, _ in SCORE_FIELDS)
    scores.update(reason=reason, inliers=0, matches=0)
    return scores


def prepare(pixels: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """RGB uint8 (h, w, 3) shrunk (area filter) so its longer side is at most ``max_side``, or
    enlarged (bicubic) so that it is at least :data:`ENLARGE_TO`: a copy shrunk to a third has
    too few pixels for ORB's patches to find its keypoints again, and the comparison's sizes
    (its blurs, bands, tiles, all in pixels at ``MAX_SIDE``) would span most of it."""
    h, w = pixels.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    if max(h, w) >= ENLARGE_TO:
        return np.ascontiguousarray(pixels)
    scale = ENLARGE_TO / max(h, w)
    return cv2.resize(pixels, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


class Picture:
    """One image at :data:`MAX_SIDE` for the comparison step: RGB and grey; no keypoints."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = np.ascontiguousarray(rgb)
        self.grey = _grey(self.rgb)

    def mirror(self) -> Picture:
        """The left-right mirror image."""
        return Picture(self.rgb[:, ::-1])

    @cached_property
    def sharpness(self) -> float:
        """:func:`sharpness` of the grey image (computed on first use)."""
        return sharpness(self.grey)

    @cached_property
    def ground(self) -> tuple[np.ndarray, np.ndarray]:
        """:func:`_ground` of the grey image: (foreground, inside its frame), computed on first use
        and shared by every map the pair is compared under."""
        return _ground(self.grey)


class Features(Picture):
    """One image ready for matching: RGB at :data:`MAX_SIDE`, grey, ORB points and descriptors;
    the mirrored image's are computed on first use (:meth:`mirrored`). ``features``: how many
    keypoints ORB finds (0: :data:`ORB_FEATURES`)."""

    def __init__(self, rgb: np.ndarray, mirrored_of: Features | None = None, features: int = 0) -> None:
        super().__init__(rgb)
        keypoints, self.descriptors = _orb(features).detectAndCompute(self.grey, None)
        self.points = np.float32([k.pt for k in keypoints]).reshape(-1, 2)
        self._mirrored = mirrored_of
        self.features = features

    @classmethod
    def of(cls, pixels: np.ndarray) -> Features:
        """Features of an RGB uint8 array of any size (shrunk by :func:`prepare`)."""
        return cls(prepare(pixels))

    def mirrored(self) -> Features:
        """The features of the left-right mirror image (cached)."""
        if self._mirrored is None:
            self._mirrored = Features(self.rgb[:, ::-1], mirrored_of=self, features=self.features)
        return self._mirrored


@dataclass(frozen=True)
class Keypoints:
    """ORB points (float32, n x 2) and descriptors (uint8, n x 32; None without keypoints) of one image."""

    points: np.ndarray
    descriptors: np.ndarray | None


_HEADER = struct.Struct("<BHHHBf")  # version, height, width, keypoints, descriptor bytes, sharpness
DESCRIPTION_VERSION = 5  # 3: small images enlarged (ENLARGE_TO) before their keypoints; 4: sharpness stored;
# 5: a framed photo described too (Description.region)


def _side_bytes(shape: tuple[int, int], sharpness_of: float, side: Keypoints) -> bytes:
    width = 32 if side.descriptors is None else side.descriptors.shape[1]
    parts = [_HEADER.pack(DESCRIPTION_VERSION, *shape, len(side.points), width, sharpness_of),
             np.ascontiguousarray(side.points, dtype="<f4").tobytes()]  # fmt: skip
    if side.descriptors is not None:
        parts.append(np.ascontiguousarray(side.descriptors, dtype=np.uint8).tobytes())
    return b"".join(parts)


def _side_from_bytes(blob: bytes) -> tuple[tuple[int, int], float, Keypoints]:
    version = blob[0] if blob else None
    if version != DESCRIPTION_VERSION:
        raise ValueError(f"photo description version {version}, expected {DESCRIPTION_VERSION}")
    version, height, width, n, size, sharpness_of = _HEADER.unpack_from(blob)
    points = np.frombuffer(blob, "<f4", 2 * n, _HEADER.size).reshape(n, 2)
    descriptors = np.frombuffer(blob, np.uint8, n * size, _HEADER.size + 8 * n).reshape(n, size) if n else None
    return (height, width), sharpness_of, Keypoints(points, descriptors)


@dataclass(frozen=True)
class Description:
    """The per-image part of the photo check (:func:`describe`): the grey image's shape at
    :data:`MAX_SIDE`, its :func:`sharpness` (NaN: too little detail to tell) and the keypoints of
    the image and of its mirror image. :meth:`to_parts`
    stores each side in about 40 bytes a keypoint (~19 KB for 480), exact: a pair matched from
    two stored descriptions scores as :func:`match_scores` does (tested). The sides are stored
    apart because a pair's fit uses the mirror of one side only (:func:`fit_descriptions`: ``b``'s),
    so ``a``'s side travels without it (``mirror`` None)."""

    shape: tuple[int, int]
    sharpness: float
    direct: Keypoints
    mirror: Keypoints | None
    region: Description | None = None  # the framed photo's own description, where the image frames one
    box: Box | None = None  # ... and where it sits in the decoded pixels (:func:`decode_for_match`)

    def to_parts(self) -> tuple[bytes, bytes]:
        """(direct, mirror) blobs; :meth:`from_parts` reads them back."""
        if self.mirror is None:
            raise ValueError("a description without its mirror side cannot be stored whole")
        return tuple(_side_bytes(self.shape, self.sharpness, side) for side in (self.direct, self.mirror))

    @classmethod
    def from_parts(
        cls, direct: bytes, mirror: bytes | None = None, region: Description | None = None, box: Box | None = None
    ) -> Description:
        shape, sharpness_of, keys = _side_from_bytes(direct)
        mirrored = None if mirror is None else _side_from_bytes(mirror)[2]
        return cls(shape, sharpness_of, keys, mirrored, region, None if box is None else tuple(int(v) for v in box))


def describe(pixels: np.ndarray, find_box: Callable[[np.ndarray], Box | None] | None = None) -> Description | str:
    """The :class:`Description` of an RGB uint8 array of any size, or ``too_small``. With
    ``find_box`` (:func:`dedup.content.content_box` at the run's settings), an image that frames a
    smaller photo carries that photo's description too (:attr:`Description.region`)."""
    side = prepare_side(pixels)
    if isinstance(side, str):
        return side
    mirrored = side.mirrored()
    box = find_box(pixels) if find_box is not None else None
    region = describe(crop(pixels, box)) if box is not None else None
    if not isinstance(region, Description):  # none framed, or the framed photo too small to describe
        region, box = None, None
    return Description(side.grey.shape, side.sharpness, Keypoints(side.points, side.descriptors),
                       Keypoints(mirrored.points, mirrored.descriptors), region, box)  # fmt: skip


_FAISS = None


def _faiss() -> Any:
    global _FAISS
    if _FAISS is None:
        import faiss

        faiss.omp_set_num_threads(1)  # one thread inside each Spark task, as dedup/knn.py does
        _FAISS = faiss
    return _FAISS


def ratio_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices into ``a``, indices into ``b``) of the descriptors of ``a`` whose nearest descriptor
    in ``b`` (Hamming) passes Lowe's ratio test (:data:`RATIO`), in ``a``'s order: what
    ``cv2.BFMatcher(NORM_HAMMING).knnMatch(a, b, k=2)`` and the test keep (ties cannot differ: a
    tie for the nearest fails the test, and the second distance is the same whichever ties),
    from faiss's exact Hamming search, without a Python object per descriptor.

    >>> a = np.array([[0] * 32, [255] * 32], np.uint8)
    >>> b = np.array([[255] * 31 + [0], [0] * 32, [0] * 31 + [255]], np.uint8)
    >>> ratio_matches(a, b)  # a[0] is b[1] exactly; a[1] is 8 bits from b[0] and 8 from no other
    (array([0, 1]), array([1, 0]))
    """
    distances, labels = _faiss().knn_hamming(np.ascontiguousarray(a), np.ascontiguousarray(b), 2)
    good = (labels[:, 1] >= 0) & (distances[:, 0] < RATIO * distances[:, 1])
    query = np.flatnonzero(good)
    return query, labels[query, 0]


def _fit(a: Keypoints | Features, b: Keypoints | Features, at_least: int = 0) -> tuple[int, int, Maps | None]:
    """(inliers, ratio-test matches, :data:`Maps` taking b to a) of two images' keypoints.

    An affine map, not a similarity: a copy stretched on one axis (a marketplace's resize to its
    frame), sheared or slightly tilted in perspective keeps its keypoints on one affine map, which
    a similarity (one scale) cannot follow. It must keep orientation (mirror images are matched
    on their own) and scale no direction more than :data:`MAX_ANISOTROPY` times another. Both a
    RANSAC similarity and a RANSAC affine map are fitted to the same matches and the one with
    more inliers is kept (the similarity on ties): with three more degrees of freedom the affine
    RANSAC sometimes settles on a worse model of a plainly similar copy.

    A copy in perspective (the photo of a tilted screen or print, a keystone correction) is off any
    affine map at its corners: where the affine map leaves matches out, a RANSAC homography is
    fitted too (:func:`_perspective`), where the affine map holds :data:`PERSPECTIVE_FROM` of the
    matches already (a copy in perspective is still a fair affine fit; a look-alike's matches are
    mostly noise, on which a homography's RANSAC would run its full iterations for nothing). When
    it holds :data:`PERSPECTIVE_GAIN` times the inliers, both maps are returned, the homography
    first, and the comparison keeps the one that aligns the two images better (:func:`_compare`):
    more inliers alone do not make a better map (a homography fitted to a stretched copy's
    matches can bend the parts where it has none).

    A fit that cannot have more than ``at_least`` inliers (its matches are no more) is not run:
    ``(0, matches, None)``; nor is the affine map when the similarity already holds every match."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < 2 or len(b.points) < 2:
        return 0, 0, None
    query, train = ratio_matches(a.descriptors, b.descriptors)
    if len(query) < 3 or len(query) <= at_least:
        return 0, len(query), None
    src = b.points[train]
    dst = a.points[query]
    best: tuple[int, np.ndarray | None] = (0, None)
    for estimate in (cv2.estimateAffinePartial2D, cv2.estimateAffine2D):  # similarity first: it wins ties
        if best[0] == len(query):
            break  # every match is an inlier already: no map can have more
        matrix, mask = estimate(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PIXELS, maxIters=500, confidence=0.99
        )
        if matrix is not None and mask is not None and _plausible(matrix) and int(mask.sum()) > best[0]:
            best = (int(mask.sum()), matrix)
    inliers, affine = best
    if affine is None:
        return 0, len(query), None
    if (MAX_PERSPECTIVE and len(query) >= 4  # a homography needs 4 matches
            and PERSPECTIVE_FROM * len(query) <= inliers and len(query) >= PERSPECTIVE_GAIN * inliers):  # fmt: skip
        homography = _perspective(src, dst, inliers)
        if homography is not None:
            return homography[0], len(query), (homography[1], affine)
    return inliers, len(query), (affine,)


Maps = tuple[np.ndarray, ...]
"""A fit's maps taking one image onto the other, the one with the most inliers first: a 2x3 affine
map, or a 3x3 homography and the affine map it was preferred to (:func:`_fit`)."""


def _perspective(src: np.ndarray, dst: np.ndarray, inliers: int) -> tuple[int, np.ndarray] | None:
    """(inliers, 3x3 map) of a RANSAC homography of the matches ``src`` -> ``dst`` when it holds
    :data:`PERSPECTIVE_GAIN` times the affine map's ``inliers`` and its perspective is small
    (:func:`_plausible_homography`); else None."""
    matrix, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_PIXELS, maxIters=500, confidence=0.99)
    if matrix is None or mask is None or mask.sum() < PERSPECTIVE_GAIN * inliers:
        return None
    return (int(mask.sum()), matrix / matrix[2, 2]) if _plausible_homography(matrix, src) else None


def _plausible(matrix: np.ndarray) -> bool:
    """An affine map a copy's edit can make: finite, orientation kept, anisotropy within :data:`MAX_ANISOTROPY`."""
    linear = matrix[:, :2]
    if not np.isfinite(linear).all():  # a degenerate RANSAC estimate (its SVD would not converge)
        return False
    singular = np.linalg.svd(linear, compute_uv=False)
    return bool(np.linalg.det(linear) > 0 and singular[0] <= MAX_ANISOTROPY * singular[1])


def _plausible_homography(matrix: np.ndarray, points: np.ndarray) -> bool:
    """A homography a copy's edit can make: its scale changes by at most :data:`MAX_PERSPECTIVE`
    across ``points`` (the matched points of the image it maps), and its linear part there is
    :func:`_plausible`."""
    if abs(matrix[2, 2]) < 1e-9:
        return False
    matrix = matrix / matrix[2, 2]
    depth = points @ matrix[2, :2] + 1.0  # the homogeneous coordinate each point maps to
    if depth.min() <= 0 or depth.max() > (1 + MAX_PERSPECTIVE) * depth.min():
        return False
    return _plausible(matrix[:2] / float(np.median(depth)))


def _warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], flags: int, border: Any = 0) -> np.ndarray:
    """``image`` mapped by a fit's ``matrix`` (2x3 affine or 3x3, :func:`_fit`) onto a ``size`` canvas."""
    if matrix.shape == (3, 3):
        return cv2.warpPerspective(image, matrix, size, flags=flags, borderValue=border)
    return cv2.warpAffine(image, matrix, size, flags=flags, borderValue=border)


def _band(grey: np.ndarray) -> np.ndarray:
    grey = grey.astype(np.float32)
    low, high = DOG_SIGMAS
    return cv2.GaussianBlur(grey, (0, 0), low) - cv2.GaussianBlur(grey, (0, 0), high)


def _foreground(grey: np.ndarray) -> np.ndarray:
    """Pixels that differ from the background by > 16 levels, a frame left out (:func:`_ground`)."""
    return _ground(grey)[0]


def _ground(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(foreground, inside): pixels that differ from the background by > 16 levels, and the pixels
    inside the image's frame (1), as uint8. The background is the median of the border ring. An
    image framed all round by lines of one colour (a border drawn over the photo, a pad; each side
    at most :data:`FRAME_MAX` of the image), around a photo whose own ground is another, plain
    colour (:data:`FRAME_GROUND`; not white margins around a product that fills the photo), has
    its frame left out, and its background is the photo's ground (the median of the ring just inside
    the frame): otherwise the whole photo, its white included, is foreground next to its original's
    product alone, and the structure is compared on the original's faint shading (a white shirt)."""
    g = grey.astype(np.int16)
    height, width = g.shape
    level = int(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    inside = np.ones((height, width), np.uint8)
    if FRAME_UNIFORM:
        near = np.abs(g - level) <= 16
        rows, columns = near.mean(axis=1) >= FRAME_UNIFORM, near.mean(axis=0) >= FRAME_UNIFORM
        top, bottom = leading_run(rows), height - leading_run(rows[::-1])
        left, right = leading_run(columns), width - leading_run(columns[::-1])
        thick = max(top, height - bottom) <= FRAME_MAX * height and max(left, width - right) <= FRAME_MAX * width
        if min(top, height - bottom, left, width - right) >= 1 and thick and bottom - top > 8 and right - left > 8:
            edge, ring, ground = _frame_ground_ring(g, top, bottom, left, right)
            plain = (np.abs(ring - ground) <= 16).mean() >= FRAME_GROUND  # not a product filling the photo
            if abs(ground - level) > 16 and plain:
                level = ground
                inside[:] = 0
                inside[top + edge : bottom - edge, left + edge : right - edge] = 1
    return ((np.abs(g - level) > 16) & inside.astype(bool)).astype(np.uint8), inside


def _frame_ground_ring(g: np.ndarray, top: int, bottom: int, left: int, right: int) -> tuple[int, np.ndarray, int]:
    """(how far the frame's mixed edge reaches in past the first 2 pixels, the ring of ``g`` read
    for the framed photo's ground, its median: the ground): the ring 2 pixels inside the frame
    (``top``, ``bottom``, ``left``, ``right``), or one 2 pixels deeper while the next ring's
    median differs by more than 16 levels, down to :data:`FRAME_EDGE`: a blurred or rescaled
    frame's edge fades into the photo over a few pixels, and a ring on it reads neither the
    frame's colour nor the photo's ground."""

    def ring_at(depth: int) -> np.ndarray:
        t, b, lo, hi = top + depth, bottom - 1 - depth, left + depth, right - 1 - depth
        if b - t < 4 or hi - lo < 4:
            return np.empty(0, g.dtype)
        return np.concatenate([g[t, lo:hi], g[b, lo:hi], g[t:b, lo], g[t:b, hi]])

    depth, ring = 2, ring_at(2)
    median = float(np.median(ring))
    while depth + 2 <= FRAME_EDGE:
        deeper = ring_at(depth + 2)
        if not deeper.size:
            break
        deeper_median = float(np.median(deeper))
        if abs(deeper_median - median) <= 16:
            break
        depth, ring, median = depth + 2, deeper, deeper_median
    return depth - 2, ring, int(median)


def _correlation(x: np.ndarray, y: np.ndarray, trim: float | None = None) -> float:
    """Pearson correlation of ``x`` and ``y`` without the ``trim`` share (default :data:`TRIM`, read
    at each call) of pixels that fit worst (an overlay's strong edges would otherwise outweigh the
    whole photo). The fit is a line through the pixels, fitted with ``x`` on ``y`` and with ``y`` on
    ``x``; the better correlation of the two is kept, so the figure does not depend on which image
    is first. An overlay's edges, on one side only, pull the fit toward that side's own scale: the
    fit of the side without the overlay on the side with it then finds the photo's detail the
    misfit, and trims it."""
    trim = TRIM if trim is None else trim
    x = x - x.mean()
    y = y - y.mean()
    if trim <= 0 or len(x) <= 20:
        return _pearson(x, y)
    at = int(len(x) * (1 - trim))
    best = -1.0
    for one, other in ((x, y), (y, x)):
        slope = float((one * other).sum() / ((other * other).sum() + 1e-6))
        residual = np.abs(one - slope * other)
        keep = residual <= np.partition(residual, at)[at]
        best = max(best, _pearson(x[keep] - x[keep].mean(), y[keep] - y[keep].mean()))
    return best


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Correlation of two centred arrays (0 where either is flat)."""
    denominator = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / denominator) if denominator > 1e-6 else 0.0


def _tile_agreement(x: np.ndarray, y: np.ndarray, mask: np.ndarray, noise: float = 0.0) -> float | None:
    """Share of textured :data:`TILE`-pixel tiles of the interior ``mask`` where the band-pass images
    ``x`` and ``y`` correlate (>= :data:`TILE_CORRELATION`); None with fewer than 4 such tiles.
    ``noise``: the pair's pixel noise; a tile is textured only above :data:`TILE_NOISE` times what
    it leaves in the band, so a noisy copy's grain on a flat tile, uncorrelated with the clean
    original's, does not count as a tile that disagrees.

    A copy agrees everywhere but under an overlay; a look-alike composited onto the same model
    shot agrees on the face, arms and background and not on the product."""
    h, w = (x.shape[0] // TILE) * TILE, (x.shape[1] // TILE) * TILE
    shape = (h // TILE, TILE, w // TILE, TILE)
    m = mask[:h, :w].reshape(shape).astype(np.float64)
    x = x[:h, :w].reshape(shape) * m
    y = y[:h, :w].reshape(shape) * m

    def total(v: np.ndarray) -> np.ndarray:
        return v.sum(axis=(1, 3))

    n = np.maximum(total(m), 1.0)
    sx, sy = total(x), total(y)
    vx, vy = total(x * x) - sx * sx / n, total(y * y) - sy * sy / n
    cov = total(x * y) - sx * sy / n
    energy = max(TILE_ENERGY, TILE_NOISE * _BAND_NOISE * noise)
    textured = (n >= 0.5 * TILE * TILE) & (np.sqrt(np.maximum(vx, vy) / n) >= energy)
    if textured.sum() < 4:
        return None
    corr = cov / np.sqrt(np.maximum(vx * vy, 1e-9))
    return float((corr[textured] >= TILE_CORRELATION).mean())


def _with_ones(rgb_rows: np.ndarray) -> np.ndarray:
    """RGB rows with a column of ones (float64): the input of an affine colour map."""
    return np.concatenate([rgb_rows.astype(np.float64), np.ones((len(rgb_rows), 1))], 1)


def _affine_map(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """The least-squares affine colour map (4 x 3: a row per column of ``x``) of ``x``
    (:func:`_with_ones` rows) onto ``target``'s RGB rows, fitted to the rows ``weight`` keeps (all
    where None)."""
    weighted = x if weight is None else x * weight[:, None]
    return np.linalg.solve(weighted.T @ x + 1e-3 * np.eye(x.shape[1]), weighted.T @ target)


def _colour_residual(source: np.ndarray, target: np.ndarray) -> float:
    """RMS residual (levels) of the least-squares affine map of ``source`` RGB rows onto ``target``'s."""
    x, y = _with_ones(source), target.astype(np.float64)
    return float(np.sqrt(((x @ _affine_map(x, y) - y) ** 2).mean()))


def _map_misses(x: np.ndarray, coef: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Squared RGB distance of each ``target`` row from the affine map ``coef`` of ``x``
    (:func:`_with_ones` rows), its output clipped to 0-255, as an edit's highlights and shadows are."""
    miss = np.clip(x @ coef, 0.0, 255.0) - target
    return np.einsum("ij,ij->i", miss, miss)


def _affine_misses(x: np.ndarray, target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """:func:`_map_misses` of the map fitted to the rows ``weight`` keeps (:func:`_affine_map`)."""
    return _map_misses(x, _affine_map(x, target, weight), target)


def _robust_map_misses(source: np.ndarray, target: np.ndarray, rounds: int = 3) -> np.ndarray:
    """RGB distance of each ``target`` row from ``source``'s under the affine colour map that misses
    fewer rows by more than :data:`COLOUR_LEVELS`, of two robust fits, each refitted ``rounds`` times:
    - from all rows, to the best-fitting (1 - :data:`COLOUR_TRIM`) share;
    - from the rows no edit changed (within :data:`COLOUR_LEVELS` as they are), to the rows the map
      explains (within it), where at least :data:`COLOUR_UNCHANGED` of them are unchanged.
    A caption box or an emoji over more than :data:`COLOUR_TRIM` of the rows pulls the first fit
    off the photo's colours; the second holds to the pixels the edit left as they were."""
    x = _with_ones(source)
    cut = int(len(x) * (1 - COLOUR_TRIM))
    weight = np.ones(len(x))
    for _ in range(rounds):
        squared = _affine_misses(x, target, weight)
        weight = (squared <= np.partition(squared, cut)[cut]).astype(np.float64)
    explained = COLOUR_LEVELS**2
    kept = (np.einsum("ij,ij->i", source - target, source - target) <= explained).astype(np.float64)
    if not COLOUR_UNCHANGED or kept.sum() < COLOUR_UNCHANGED * len(x):
        return np.sqrt(squared)
    for _ in range(rounds):
        unchanged_start = _affine_misses(x, target, kept)
        kept = (unchanged_start <= explained).astype(np.float64)
        if kept.sum() < 8:
            break
    if (unchanged_start > explained).sum() < (squared > explained).sum():
        squared = unchanged_start
    return np.sqrt(squared)


SHARPNESS_SIGMAS = (1.0, 2.0, 4.0)  # :func:`_fine_to_coarse`'s bands: detail at 1-2 px over detail at 2-4 px
BLUR_SAME = 0.1  # log ratio of two images' fine-to-coarse detail below which neither is blurred
SHARPNESS_TILE = 16  # pixels a side of the tiles sharpness is compared in (an overlay moves only a few)
SHARPNESS_MIN_DETAIL = 0.5  # coarse band-pass standard deviation a tile needs for its sharpness to count
SHARPNESS_MIN_TILES = 3  # tiles with detail in both images needed to blur either


def _gaussians(grey: np.ndarray, sigmas: tuple[float, ...]) -> dict[float, np.ndarray]:
    """``grey`` blurred at each of ``sigmas``, each computed once (the band and the sharpness share one)."""
    return {sigma: cv2.GaussianBlur(grey, (0, 0), sigma) for sigma in sorted(set(sigmas))}


def _fine_to_coarse(
    grey: np.ndarray, region: np.ndarray, extra: float = 0.0, blurred: dict[float, np.ndarray] | None = None
) -> np.ndarray:
    """Per :data:`SHARPNESS_TILE`-pixel tile of ``region``: the log of detail at 1-2 px over detail
    at 2-4 px (band-pass standard deviations) of ``grey`` blurred by ``extra`` (the blurs composed
    into one; ``blurred``: those of ``grey`` already made); NaN where a tile holds too little of the
    region or no coarse detail. It falls as an image is blurred, and a colour, brightness or
    contrast edit (a linear map of the grey levels) leaves it as it is. Per tile, so that the sharp
    edges of an overlay move a few tiles, not the whole image's figure."""
    known = blurred if blurred is not None and not extra else {}
    g1, g2, g4 = (known[s] if s in known else cv2.GaussianBlur(grey, (0, 0), float(np.hypot(s, extra)))
                  for s in SHARPNESS_SIGMAS)  # fmt: skip
    size = SHARPNESS_TILE
    h, w = (grey.shape[0] // size) * size, (grey.shape[1] // size) * size
    tiles = (w // size, h // size)

    def tile_mean(values: np.ndarray) -> np.ndarray:  # an area resize is the mean of each tile
        return cv2.resize(values[:h, :w], tiles, interpolation=cv2.INTER_AREA)

    weight = region.astype(np.float32)
    share = np.maximum(tile_mean(weight), 1e-6)

    def tile_std(band: np.ndarray) -> np.ndarray:
        mean = tile_mean(band * weight) / share
        return np.sqrt(np.maximum(tile_mean(band * band * weight) / share - mean * mean, 0.0))

    fine, coarse = tile_std(g1 - g2), tile_std(g2 - g4)
    usable = (share >= 0.5) & (coarse >= SHARPNESS_MIN_DETAIL)
    return np.where(usable, np.log(fine + 1e-3) - np.log(coarse + 1e-3), np.nan)


def sharpness(grey: np.ndarray) -> float:
    """How sharp a photo is: the median over its tiles of :func:`_fine_to_coarse` (the whole image
    at :data:`MAX_SIDE`), as float32 (as a :class:`Description` stores it); NaN with fewer than
    :data:`SHARPNESS_MIN_TILES` tiles with detail. A blurred copy has less fine detail than its
    original; a colour edit does not change it (an overlay moves a few tiles).

    >>> from dedup.devkit.synth import product_image
    >>> grey = _grey(np.asarray(product_image(6))).astype(np.float32)
    >>> bool(sharpness(grey) - sharpness(cv2.GaussianBlur(grey, (0, 0), 2.0)) > 0.3)
    True
    >>> bool(abs(sharpness(grey * 0.5 + 40) - sharpness(grey)) < 0.01)
    True
    """
    tiles = _fine_to_coarse(grey.astype(np.float32), np.ones(grey.shape, bool))
    usable = np.isfinite(tiles)
    return float(np.float32(np.median(tiles[usable]))) if usable.sum() >= SHARPNESS_MIN_TILES else float("nan")


def sharpness_gap(a: float, b: float) -> float | None:
    """How much two images' :func:`sharpness` differ; None where either is unknown (NaN)."""
    gap = abs(a - b)
    return None if np.isnan(gap) else float(gap)


def _sharpness_gap(tiles: np.ndarray, target: np.ndarray) -> float | None:
    """Median over the tiles usable in both of how much sharper ``tiles`` are than ``target``
    (log ratio); None with fewer than :data:`SHARPNESS_MIN_TILES` such tiles."""
    both = ~np.isnan(tiles) & ~np.isnan(target)
    return float(np.median(tiles[both] - target[both])) if both.sum() >= SHARPNESS_MIN_TILES else None


def _blur_to_match(
    grey_a: np.ndarray,
    grey_b: np.ndarray,
    region: np.ndarray,
    blurred: tuple[dict[float, np.ndarray], dict[float, np.ndarray]] = ({}, {}),
) -> tuple[float, float]:
    """(extra sigma for ``a``, extra sigma for ``b``): the Gaussian blur of :data:`BLUR_STEPS` (or
    none) that brings the sharper image's :func:`_fine_to_coarse` closest to the other's (the
    median over their tiles), so a blurred copy is compared with its original blurred alike (the
    colour map otherwise misses every edge the blur softened). None when the two are within
    :data:`BLUR_SAME` or share too few tiles with detail; else steps are tried in order until the
    sharper one is no sharper."""
    tiles_a = _fine_to_coarse(grey_a, region, 0.0, blurred[0])
    tiles_b = _fine_to_coarse(grey_b, region, 0.0, blurred[1])
    gap = _sharpness_gap(tiles_a, tiles_b)
    if gap is None or abs(gap) < BLUR_SAME:
        return 0.0, 0.0
    sharper, target = (grey_a, tiles_b) if gap > 0 else (grey_b, tiles_a)
    best, best_gap = 0.0, abs(gap)
    for sigma in BLUR_STEPS:
        step_gap = _sharpness_gap(_fine_to_coarse(sharper, region, sigma), target)
        if step_gap is None:
            break
        if abs(step_gap) < best_gap:
            best, best_gap = sigma, abs(step_gap)
        if step_gap <= 0:
            break
    return (best, 0.0) if gap > 0 else (0.0, best)


def _band_blurred(grey: np.ndarray, extra: float) -> np.ndarray:
    """:func:`_band` of ``grey`` blurred by ``extra`` (composed into the band's two blurs)."""
    low, high = (float(np.hypot(s, extra)) for s in DOG_SIGMAS)
    return cv2.GaussianBlur(grey, (0, 0), low) - cv2.GaussianBlur(grey, (0, 0), high)


_BAND_NOISE = 0.15  # standard deviation of :func:`_band` of unit Gaussian pixel noise


def _texture_agrees(band_a: np.ndarray, band_b: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """Pixels whose local texture (band-pass images in a :data:`TEXTURE_WINDOW` window) is the same
    in both: flat in both, or textured (standard deviation >= :data:`TILE_ENERGY`) in both and
    correlated (|r| >= :data:`TEXTURE_CORRELATION`; a recolour may turn an edge's sign). An overlay
    adds edges where the photo had none or others; a recolour keeps the folds and the print.
    ``noise``: the pair's pixel noise (:func:`dedup.imaging.noise_level`, the noisier side's); a window is
    textured only above :data:`NOISE_TEXTURE` times what that noise leaves in the band, in both
    images alike, so the grain a noisy copy adds to the flat parts is not taken for an overlay."""
    window = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    energy = max(TILE_ENERGY, NOISE_TEXTURE * _BAND_NOISE * noise)
    mean_a, mean_b = cv2.blur(band_a, window), cv2.blur(band_b, window)
    var_a = np.maximum(cv2.blur(band_a * band_a, window) - mean_a * mean_a, 0)
    var_b = np.maximum(cv2.blur(band_b * band_b, window) - mean_b * mean_b, 0)
    cov = cv2.blur(band_a * band_b, window) - mean_a * mean_b
    textured_a, textured_b = var_a >= energy**2, var_b >= energy**2
    correlated = np.abs(cov) >= TEXTURE_CORRELATION * np.sqrt(var_a * var_b + 1e-6)
    return (~textured_a & ~textured_b) | (textured_a & textured_b & correlated)


class ColourReading(NamedTuple):
    """:func:`_colour_change`'s reading, and the caption parts it left out where leaving them out
    lowered it (None where it did not: the tiles are read clear of them, :func:`_compare_under`)."""

    change: float
    captions: np.ndarray | None = None


def _colour_change(
    rgb_a: np.ndarray,
    rgb_b: np.ndarray,
    region: np.ndarray,
    blur: tuple[float, float] = (0.0, 0.0),
    same_texture: np.ndarray | None = None,
    one_sided: tuple[np.ndarray, np.ndarray] | None = None,
    background_share: float = 0.0,
) -> ColourReading:
    """Share of ``region`` whose smoothed colour the best global colour map (``b`` onto ``a`` or
    ``a`` onto ``b``, whichever fits better) misses by more than :data:`COLOUR_LEVELS`; measured
    on at most :data:`COLOUR_SAMPLES` evenly spread pixels. ``blur``: extra Gaussian sigmas for
    each side (:func:`_blur_to_match`). With ``same_texture`` (:func:`_texture_agrees`), a missed
    pixel counts only where the texture agrees, and the pixels whose texture differs count beyond
    the first :data:`OVERLAY_SHARE` of the region (an overlay may cover that much, whatever its
    colour; a pasted photo or another product in the same frame covers more). With ``one_sided``
    too (the pixels that are foreground in ``a`` only, in ``b`` only), the smaller of that and a
    second reading: the differing pixels (missed, or of another texture) that are foreground in
    one image alone, on the side that has more of them, are an addition onto its background (a
    caption, an emoji beside the product), counted beyond ``background_share`` of the region; the
    rest is counted as above. With ``same_texture``, where :data:`CAPTION_SHARE` is set, the
    smaller of that and the same reading with the caption parts (:func:`_caption_parts`) left out,
    counted :data:`CAPTION_REST` times (:class:`ColourReading`: with those parts where it is smaller)."""
    if np.count_nonzero(region) < 64:
        return ColourReading(0.0)
    smoothed = [_smoothed(rgb, extra) for rgb, extra in ((rgb_a, blur[0]), (rgb_b, blur[1]))]
    best, fit = _change_reading(*smoothed, region, same_texture, one_sided, background_share)
    captions = None
    if CAPTION_SHARE and same_texture is not None and best > 0.0:
        parts = _caption_parts(*smoothed, region, same_texture, fit)
        if parts.any() and np.count_nonzero(region & ~parts) >= 64:
            left = _change_reading(*smoothed, region & ~parts, same_texture, one_sided, background_share)[0]
            if CAPTION_REST * left < best:
                best, captions = CAPTION_REST * left, parts
    return ColourReading(float(best), captions)


def _smoothed(rgb: np.ndarray, extra: float) -> np.ndarray:
    """``rgb`` smoothed by :data:`COLOUR_SIGMA` composed with ``extra``, as float rows (one per pixel)."""
    sigma = float(np.hypot(COLOUR_SIGMA, extra))
    return cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma).reshape(-1, 3)


def _change_reading(
    smooth_a: np.ndarray,
    smooth_b: np.ndarray,
    region: np.ndarray,
    same_texture: np.ndarray | None,
    one_sided: tuple[np.ndarray, np.ndarray] | None,
    background_share: float,
) -> tuple[float, tuple[int, np.ndarray, np.ndarray]]:
    """:func:`_colour_change`'s reading over ``region`` of the two smoothed images, and the better
    map's fit: (0 for ``b`` onto ``a``, 1 for ``a`` onto ``b``; the sampled pixels; those it misses)."""
    pixels = np.flatnonzero(region)
    pixels = pixels[:: max(1, len(pixels) // COLOUR_SAMPLES)]
    pa, pb = smooth_a[pixels].astype(np.float64), smooth_b[pixels].astype(np.float64)
    agrees = np.ones(len(pixels), bool) if same_texture is None else same_texture.reshape(-1)[pixels]
    missed = [_robust_map_misses(pb, pa) > COLOUR_LEVELS, _robust_map_misses(pa, pb) > COLOUR_LEVELS]
    better = int(missed[1].mean() < missed[0].mean())
    fit = (better, pixels, missed[better])
    best = min((misses & agrees).mean() for misses in missed) + max(0.0, (~agrees).mean() - OVERLAY_SHARE)
    if one_sided is None or same_texture is None:
        return float(best), fit
    sides = [side.reshape(-1)[pixels] for side in one_sided]
    for misses in missed:
        differs = misses | ~agrees
        added = max(sides, key=lambda side: int((side & differs).sum()))  # the image the addition is on
        rest = (misses & agrees & ~added).mean() + max(0.0, (~agrees & ~added).mean() - OVERLAY_SHARE)
        best = min(best, rest + max(0.0, (added & differs).mean() - background_share))
    return float(best), fit


def _missed_everywhere(
    source: np.ndarray, target: np.ndarray, sampled: np.ndarray, misses: np.ndarray, region: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(the map, how far it misses each pixel of ``region``): the colour map of ``source`` onto
    ``target`` (smoothed images as rows, one per pixel) refitted on the ``sampled`` pixels it
    explained (``~misses``), and the squared RGB distance (flat, ``region.size``; 0 outside
    ``region``) by which it misses each pixel when applied to every pixel (over
    :data:`COLOUR_LEVELS` squared: missed); None where it explained fewer than 8."""
    if np.count_nonzero(~misses) < 8:
        return None
    coef = _affine_map(_with_ones(source[sampled]), target[sampled].astype(np.float64), (~misses).astype(np.float64))
    pixels = np.flatnonzero(region)
    distance = np.zeros(region.size)
    distance[pixels] = _map_misses(_with_ones(source[pixels]), coef, target[pixels])
    return coef, distance


def _caption_parts(
    smooth_a: np.ndarray,
    smooth_b: np.ndarray,
    region: np.ndarray,
    same_texture: np.ndarray,
    fit: tuple[int, np.ndarray, np.ndarray],
) -> np.ndarray:
    """The parts of ``region`` laid over one image as a caption or a label is: its changed pixels
    (missed by the better map ``fit``, refitted on the pixels it explains and applied to every
    pixel, or of another texture) closed by :data:`CAPTION_CLOSE` pixels into parts; a part is a
    caption where it fills :data:`CAPTION_FILL` of its bounding box, is :data:`CAPTION_ASPECT`
    times as wide as tall, covers at most :data:`CAPTION_SHARE` of ``region`` and its texture
    differs in :data:`CAPTION_TEXTURE` of its changed pixels (a caption's letters; a recoloured
    box-shaped product keeps its own texture) or its colours are a blend (:func:`_translucent`:
    letters over a texture that shows through them). A part of any shape is one too where it is a
    stamp: at most :data:`STAMP_SHARE` of the image and filling :data:`STAMP_FILL` of its box (an emoji, a
    sticker or a logo over the product is a solid mark of a few % of the image; a look-alike's
    differing part, a lens or a strap in another colour, fills its box less or is larger), or,
    filling less or larger (a star, touching emoji closed into one part; up to
    :data:`STAMP_OPAQUE_SHARE` of the image and :data:`STAMP_OPAQUE_REGION` of ``region``: where
    two screenshots of one template hold different photos, each photo is half of ``region``),
    opaque: the map misses its colours by a median of :data:`STAMP_LEVELS` (a mark of another
    colour outright; where two photos of a shoot differ, by shading, a few tens of levels). A wide
    part over more than :data:`CAPTION_SHARE` of ``region`` (a caption over much of a small
    product) is a caption too where it is opaque, up to :data:`STAMP_OPAQUE_SHARE` of the image and
    :data:`CAPTION_OPAQUE_REGION` of ``region``. A part filling too little of its box (two captions
    joined by a few changed pixels) is opened into the parts it joins, each a caption where it is
    wide, fills its box, is of another texture and opaque (:func:`_opened_captions`)."""
    onto_b, sampled, misses = fit
    source, target = (smooth_a, smooth_b) if onto_b else (smooth_b, smooth_a)
    refitted = _missed_everywhere(source, target, sampled, misses, region)
    if refitted is None:
        return np.zeros(region.shape, bool)
    coef, distance = refitted
    differs = ~same_texture & region
    changed = ((distance > COLOUR_LEVELS**2).reshape(region.shape) | differs) & region
    closing = np.ones((CAPTION_CLOSE, CAPTION_CLOSE), np.uint8)
    closed = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_CLOSE, closing)
    parts = _Parts.of(closed, changed, differs)
    area, wide, boxed = parts.area, parts.wide(), parts.boxed()
    products = np.count_nonzero(region)
    sized = (area >= 30) & (area <= CAPTION_SHARE * products)
    sized[0] = False  # the unchanged pixels
    filled = sized & boxed
    stamp = (area <= STAMP_SHARE * region.size) & (area >= STAMP_FILL * parts.width * parts.height)  # solid, small
    if STAMP_LEVELS:  # ... or an opaque one: another colour outright, not the photo's shading
        opaque_bound = np.minimum(STAMP_OPAQUE_SHARE * region.size, STAMP_OPAQUE_REGION * products)
        for part in np.flatnonzero(filled & ~wide & ~stamp & (area <= opaque_bound)):
            stamp[part] = parts.opaque(part, distance)
        wide_bound = np.minimum(STAMP_OPAQUE_SHARE * region.size, CAPTION_OPAQUE_REGION * products)
        larger = (area > CAPTION_SHARE * products) & (area <= wide_bound) & boxed
        larger[0] = False
        for part in np.flatnonzero(wide & larger):  # a caption over much of a small product
            filled[part] = parts.opaque(part, distance)
    shaped = filled & (wide | stamp)
    caption = shaped & (parts.textured >= CAPTION_TEXTURE)
    if BLEND_MAX:
        for part in np.flatnonzero(shaped & ~caption):
            in_part = parts.pixels(part)
            mapped = np.clip(_with_ones(source[in_part]) @ coef, 0.0, 255.0)
            caption[part] = _translucent(mapped, target[in_part]) or _translucent(target[in_part], mapped)
    loose = sized & ~boxed
    if SPLIT_OPEN and STAMP_LEVELS and loose.any():
        return caption[parts.labels] | _opened_captions(closed & loose[parts.labels], changed, differs, distance)
    return caption[parts.labels]


class _Parts(NamedTuple):
    """The connected parts of a mask (label 0: outside them) with their boxes and areas, and the
    changed pixels each holds: the parts the caption reading reads."""

    labels: np.ndarray
    width: np.ndarray
    height: np.ndarray
    area: np.ndarray
    inside: np.ndarray  # the part of each changed pixel, in the order of ``changed_pixels``
    changed_pixels: np.ndarray  # flat
    textured: np.ndarray  # the share of each part's changed pixels whose texture differs

    @classmethod
    def of(cls, mask: np.ndarray, changed: np.ndarray, differs: np.ndarray) -> _Parts:
        """The parts of ``mask`` (8-connected), the ``changed`` pixels they hold and the share of
        those that ``differs`` (of another texture)."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        width, height, area = (stats[:, k].astype(np.float64) for k in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT,
                                                                         cv2.CC_STAT_AREA))  # fmt: skip
        inside = labels[changed]
        held = np.maximum(np.bincount(inside, minlength=count), 1)
        return cls(labels, width, height, area, inside, np.flatnonzero(changed),
                   np.bincount(inside, differs[changed], count) / held)  # fmt: skip

    def wide(self) -> np.ndarray:
        """Whether each part's box is :data:`CAPTION_ASPECT` times as wide as tall."""
        return self.width >= CAPTION_ASPECT * self.height

    def boxed(self) -> np.ndarray:
        """Whether each part fills :data:`CAPTION_FILL` of its box."""
        return self.area >= CAPTION_FILL * self.width * self.height

    def pixels(self, part: int) -> np.ndarray:
        """The changed pixels (flat) of ``part``."""
        return self.changed_pixels[self.inside == part]

    def opaque(self, part: int, distance: np.ndarray) -> bool:
        """Whether the colour map misses ``part``'s changed pixels by a median of :data:`STAMP_LEVELS`
        (``distance``: squared, flat): another colour outright, not the photo's shading."""
        held = distance[self.pixels(part)]
        return bool(held.size and np.median(held) >= STAMP_LEVELS**2)


def _opened_captions(loose: np.ndarray, changed: np.ndarray, differs: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The captions among the ``loose`` parts (closed parts filling too little of their box: two
    captions, or a caption and the product's changed edge, joined by a few pixels) once opened by
    :data:`SPLIT_OPEN` pixels into the parts they join: a part at least :data:`CAPTION_ASPECT` times
    as wide as tall that fills :data:`CAPTION_FILL` of its box, whose texture differs in
    :data:`CAPTION_TEXTURE` of its ``changed`` pixels and which is opaque (the colour map misses
    them by a median of :data:`STAMP_LEVELS`: ``distance``, squared, flat). A mask."""
    opening = np.ones((SPLIT_OPEN, SPLIT_OPEN), np.uint8)
    parts = _Parts.of(cv2.morphologyEx(loose.astype(np.uint8), cv2.MORPH_OPEN, opening), changed, differs)
    shaped = (parts.area >= 30) & parts.wide() & parts.boxed() & (parts.textured >= CAPTION_TEXTURE)
    shaped[0] = False
    caption = np.zeros(parts.area.size, bool)
    for part in np.flatnonzero(shaped):
        caption[part] = parts.opaque(part, distance)
    return caption[parts.labels]


def _translucent(under: np.ndarray, over: np.ndarray) -> bool:
    """Whether the colour rows ``over`` are ``under``'s blended toward one colour inside the RGB
    cube (within :data:`BLEND_SLACK` levels of it), each row by its own share (a caption's
    letters, smoothed, cover each pixel in part): within :data:`BLEND_RESIDUAL` levels RMS, by a
    median share of at most :data:`BLEND_MAX`.
    The colour is where the lines from each row of ``under`` through its row of ``over`` meet
    (least squares). A look-alike's part in another colour keeps its shading, which does not
    converge on one colour, unless it is the same part only lighter or darker.

    >>> rng = np.random.default_rng(0)
    >>> under = rng.uniform(0, 255, (200, 3))
    >>> share = rng.uniform(0.2, 0.6, (200, 1))
    >>> _translucent(under, (1 - share) * under + share * np.array([40.0, 200.0, 90.0]))
    True
    >>> _translucent(under, under[:, ::-1])  # the channels swapped: another colour, no blend
    False
    >>> _translucent(under, np.full((200, 3), 128.0))  # covered outright: an opaque box, not translucent
    False
    """
    under, over = under.astype(np.float64), over.astype(np.float64)
    step = over - under
    length = np.linalg.norm(step, axis=1)
    moved = length > 1e-6
    if moved.sum() < 30:
        return False
    under, step = under[moved], step[moved]
    direction = step / length[moved, None]
    across = np.eye(3)[None] - direction[:, :, None] * direction[:, None, :]  # projects off each line
    towards = np.linalg.lstsq(across.sum(0), np.einsum("nij,nj->i", across, under), rcond=None)[0]
    if (towards < -BLEND_SLACK).any() or (towards > 255.0 + BLEND_SLACK).any():
        return False
    to_colour = towards - under
    share = np.clip(np.einsum("ij,ij->i", step, to_colour) / np.maximum(np.einsum("ij,ij->i", to_colour, to_colour),
                                                                         1e-9), 0.0, 1.0)  # fmt: skip
    miss = np.linalg.norm(step - share[:, None] * to_colour, axis=1)
    return bool(np.sqrt((miss**2).mean()) <= BLEND_RESIDUAL and np.median(share) <= BLEND_MAX)


def _scale(matrix: np.ndarray) -> float:
    """The scale of a fit's map (the square root of its linear part's determinant)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))


def inverse_map(matrix: np.ndarray) -> np.ndarray:
    """A fit's map (2x3 affine or 3x3) the other way round, in the same form.

    >>> matrix = np.array([[2.0, 0.0, 4.0], [0.0, 2.0, -6.0]])
    >>> bool(np.allclose(inverse_map(matrix) @ np.append(matrix @ [3.0, 5.0, 1.0], 1.0), [3.0, 5.0]))
    True
    """
    if matrix.shape == (3, 3):
        inverse = np.linalg.inv(matrix)
        return inverse / inverse[2, 2]
    return cv2.invertAffineTransform(matrix)


def _compare(a: Picture, b: Picture, maps: Maps) -> dict[str, float]:
    """:func:`_compare_one_way`, in the larger image's frame where the fit shrinks ``b`` below
    :data:`ENLARGE_BELOW` (``a`` enlarged onto ``b`` by the maps' inverses): the smaller image's
    detail is all there is to compare, and a map that shrinks samples the larger one without
    smoothing it first. On the new dev set's calibration split: 3 more copy pairs kept, no
    pair of two products (issue 14, phase 36)."""
    if ENLARGE_BELOW and _scale(maps[0]) < ENLARGE_BELOW:
        return _compare_one_way(b, a, tuple(inverse_map(matrix) for matrix in maps))
    return _compare_one_way(a, b, maps)


def _compare_one_way(a: Picture, b: Picture, maps: Maps) -> dict[str, float]:
    """:func:`_compare_under` the fit's first map, or where it has two (a homography and the
    affine map) the one whose structure correlates better (the first on ties); where that leaves
    the structure agreeing and the colours not, compared again under the map refined on the
    pixels (:func:`_refined`), kept where it leaves the colours all but equal (module doc, step 5)."""
    compared = [_compare_under(a, b, matrix) for matrix in maps]
    best = max(range(len(maps)), key=lambda i: compared[i]["structure"])
    scores = compared[best]
    refine = REFINE_ABOVE < scores["colour_change"] <= REFINE_BELOW
    if REFINE_FROM and scores["structure"] >= REFINE_FROM and refine:
        refined = _refined(a, b, maps[best])
        if refined is not None:
            again = _compare_under(a, b, refined)
            if again["structure"] >= scores["structure"] and again["colour_change"] <= REFINE_COLOUR:
                return again
    return scores


def _refined(a: Picture, b: Picture, matrix: np.ndarray) -> np.ndarray | None:
    """The fit's ``matrix`` (b onto a) refined by OpenCV's ECC on the grey images, as a 3x3
    homography; None where ECC does not converge, moves a corner of ``b`` more than
    :data:`REFINE_SHIFT` pixels or leaves a map no copy's edit makes (:func:`_plausible_homography`)."""
    forward = matrix if matrix.shape == (3, 3) else np.vstack([matrix, [0.0, 0.0, 1.0]])
    iterations, epsilon = REFINE_STEPS
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, epsilon)
    try:  # ECC's map takes a's pixels to b's: the inverse of the fit's
        start = np.linalg.inv(forward).astype(np.float32)
        _, found = cv2.findTransformECC(a.grey.astype(np.float32), b.grey.astype(np.float32), start,
                                        cv2.MOTION_HOMOGRAPHY, criteria, None, 5)  # fmt: skip
        refined = np.linalg.inv(found.astype(np.float64))
    except (cv2.error, np.linalg.LinAlgError):
        return None
    if not np.isfinite(refined).all() or abs(refined[2, 2]) < 1e-9:
        return None
    refined = refined / refined[2, 2]
    h, w = b.grey.shape
    corners = np.array([[[0.0, 0.0], [w, 0.0], [0.0, h], [w, h]]])
    moved = [cv2.perspectiveTransform(corners, m)[0] for m in (refined, forward)]
    if np.abs(moved[0] - moved[1]).max() > REFINE_SHIFT or not _plausible_homography(refined, corners[0]):
        return None
    return refined


def _compare_under(a: Picture, b: Picture, matrix: np.ndarray) -> dict[str, float]:
    """Structure and colour of ``b`` warped onto ``a`` by ``matrix``, over their shared interior.
    The colour is compared with the sharper image blurred to the other's detail and overlays
    (pixels whose texture differs, up to :data:`OVERLAY_SHARE`) left out."""
    h, w = a.grey.shape
    warped = _warp(b.rgb, matrix, (w, h), cv2.INTER_LINEAR, (0, 0, 0))
    inside = _warp(np.ones(b.grey.shape, np.uint8), matrix, (w, h), cv2.INTER_NEAREST)
    overlap = float(inside.mean())
    fore_a, framed_a = a.ground
    fore_b, framed_b = b.ground
    fore_b = _warp(fore_b, matrix, (w, h), cv2.INTER_NEAREST)
    inside = inside & framed_a  # frames left out; b's warped only where it has one (most images: none)
    if not framed_b.all():
        inside &= _warp(framed_b, matrix, (w, h), cv2.INTER_NEAREST)
    products = cv2.erode((fore_a | fore_b) & inside, np.ones((5, 5), np.uint8)).astype(bool)
    grey_a, grey_b = a.grey.astype(np.float32), _grey(warped).astype(np.float32)
    blurred = (_gaussians(grey_a, DOG_SIGMAS + SHARPNESS_SIGMAS), _gaussians(grey_b, DOG_SIGMAS + SHARPNESS_SIGMAS))
    band_a, band_b = (g[DOG_SIGMAS[0]] - g[DOG_SIGMAS[1]] for g in blurred)  # _band's, each blur made once
    noise = 0.0
    if NOISE_TEXTURE or TILE_NOISE:  # the noisier side's grain, over the overlap clear of the warp's edge
        clear = cv2.erode(inside, np.ones((3, 3), np.uint8)).astype(bool)
        noise = max(noise_level(grey_a, clear), noise_level(grey_b, clear))
    colour_change, captions = 0.0, None
    if products.sum() >= 64:
        blur = _blur_to_match(grey_a, grey_b, products, blurred)
        matched = [_band_blurred(g, s) if s else band for g, band, s in
                   ((grey_a, band_a, blur[0]), (grey_b, band_b, blur[1]))]  # fmt: skip
        same_texture = _texture_agrees(*matched, noise) if TEXTURE_WINDOW else None  # 0: every missed pixel counts
        one_sided = None
        if OVERLAY_IMAGE:  # foreground in one image only: where an addition onto its background would be
            one_sided = ((fore_a & ~fore_b & inside).astype(bool), (fore_b & ~fore_a & inside).astype(bool))
        background_share = OVERLAY_IMAGE * float(inside.sum()) / float(products.sum())
        colour_change, captions = _colour_change(a.rgb, warped, products, blur, same_texture, one_sided,
                                                 background_share)  # fmt: skip
    shared = fore_a & fore_b & inside
    interior = cv2.erode(shared, np.ones((ERODE, ERODE), np.uint8)).astype(bool)
    if interior.sum() < 0.02 * h * w:  # little product in common: compare the whole overlap
        interior = _overlap_interior(inside)
    if interior.sum() < 64:
        return {"overlap": overlap, "structure": 0.0, "colour_residual": 255.0, "tile_agreement": 0.0,
                "colour_change": colour_change}  # fmt: skip
    structure = _correlation(band_a[interior], band_b[interior])
    residual = _colour_residual(warped[interior][::4], a.rgb[interior][::4])
    tiles = _tile_agreement(band_a, band_b, interior, noise)
    if captions is not None and tiles is not None and CAPTION_TILE_REACH:
        reach = np.ones((CAPTION_TILE_REACH, CAPTION_TILE_REACH), np.uint8)
        clear = _tile_agreement(band_a, band_b, interior & ~cv2.dilate(captions.astype(np.uint8), reach).astype(bool),
                                noise)  # fmt: skip
        tiles = tiles if clear is None else max(tiles, clear)
    return {"overlap": overlap, "structure": structure, "colour_residual": residual,
            "tile_agreement": structure if tiles is None else tiles, "colour_change": colour_change}  # fmt: skip


def _overlap_interior(inside: np.ndarray) -> np.ndarray:
    """The overlap ``inside`` less its 3-pixel edge: what is compared where the two products share
    little (the band-pass of a warp's seam or a frame's edge just past it reaches a few pixels more;
    clearing it lets in look-alikes that only it refused: issue 14, phase 37)."""
    return cv2.erode(inside, np.ones((7, 7), np.uint8)).astype(bool)


class FitGate(NamedTuple):
    """The keypoint fit a pair must reach to be compared further (reason ``weak_fit`` otherwise):
    ``min_inliers`` inliers at a ratio of ``min_inlier_ratio``, or, where the two images'
    sharpness differs by ``min_sharpness_gap`` or more, ``min_blurred_inliers`` (None: as many as
    ``min_inliers``) at a ratio of ``min_blurred_inlier_ratio`` (ORB finds fewer repeatable
    keypoints on a blurred copy, fewer of them match; a look-alike shot alike is about as sharp)."""

    min_inliers: int
    min_inlier_ratio: float
    min_blurred_inlier_ratio: float = 1.0
    min_sharpness_gap: float = float("inf")
    min_blurred_inliers: int | None = None

    def passes(self, inliers: int, ratio: float, gap: float | None) -> bool:
        """Whether a fit of ``inliers`` at ``ratio`` reaches the gate, for images whose
        :func:`sharpness_gap` is ``gap``.

        >>> gate = FitGate(20, 0.6, 0.4, 0.2, 14)
        >>> gate.passes(30, 0.7, None), gate.passes(30, 0.5, 0.3), gate.passes(30, 0.5, 0.1), gate.passes(30, 0.5, None)
        (True, True, False, False)
        >>> gate.passes(15, 0.5, 0.3), gate.passes(15, 0.7, 0.1), gate.passes(12, 0.5, 0.3)
        (True, False, False)
        """
        least = self.min_inliers if self.min_blurred_inliers is None else self.min_blurred_inliers
        blurred = (inliers >= least and ratio >= self.min_blurred_inlier_ratio and gap is not None
                   and gap >= self.min_sharpness_gap)  # fmt: skip
        return (inliers >= self.min_inliers and ratio >= self.min_inlier_ratio) or blurred


def _fit_sides(
    a: Keypoints | Features,
    b: Keypoints | Features,
    b_mirrored: Callable[[], Keypoints | Features],
    gap: Callable[[], float | None],
    strong: int,
    gate: FitGate | None,
    only: bool | None = None,
) -> tuple[dict[str, Any], Maps | None]:
    """The fit half of :func:`match_features` on keypoints alone: the scores so far and the maps
    the comparison is to use (None when there is nothing left to compare: ``no_fit``, ``weak_fit``).
    ``gap()``: the two images' :func:`sharpness_gap`, recorded for every fitted pair. ``only``:
    ``b`` alone (False) or its mirror image alone (True); None: the better of the two."""
    if only:
        (inliers, matches, maps), flipped = _fit(a, b_mirrored()), True
    else:
        (inliers, matches, maps), flipped = _fit(a, b), False
    if only is None and not (inliers >= strong and inliers >= 0.8 * matches):
        mirrored = _fit(a, b_mirrored(), at_least=inliers)  # it must beat the direct fit to count
        if mirrored[0] > inliers:
            (inliers, matches, maps), flipped = mirrored, True
    if maps is None:
        scores = _empty("no_fit")
        scores["matches"] = matches
        return scores, None
    matrix = maps[0]
    scores = {
        "reason": None,
        "inliers": inliers,
        "matches": matches,
        "inlier_ratio": inliers / matches if matches else 0.0,
        "flipped": flipped,
        "scale": _scale(matrix),
        "rotation": float(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0]))),
        "sharpness_gap": gap(),
        "blur_refit": None,
    }
    if gate is not None and not FitGate(*gate).passes(inliers, scores["inlier_ratio"], scores["sharpness_gap"]):
        return {**_empty("weak_fit"), **scores, "reason": "weak_fit"}, None
    return scores, maps


def match_features(a: Features, b: Features, strong: int = 60, gate: FitGate | None = None) -> dict[str, Any]:
    """:func:`match_scores` of two images' :class:`Features`. The mirrored match is skipped when
    the direct one already has ``strong`` inliers at a ratio of at least 0.8 (a symmetric product
    matches its mirror image too, at a lower ratio). With ``gate``, a pair whose fit falls short
    of it keeps its fit scores and reason ``weak_fit``, and skips the comparison (most
    candidates; the comparison is about a third of a pair's cost): no rule at that gate could keep it."""
    if min(a.grey.shape) < MIN_SIDE or min(b.grey.shape) < MIN_SIDE:
        return _empty("too_small")
    scores, maps = _fit_sides(a, b, b.mirrored, lambda: sharpness_gap(a.sharpness, b.sharpness), strong, gate)
    second = _second_fit(scores, gate)
    if second is not None:
        refitted, maps = refit_blurred(a, b, b.mirrored, (a.sharpness, b.sharpness), (lambda: a.rgb, lambda: b.rgb),
                                       second, strong)  # fmt: skip
        scores = refitted if maps is not None else scores
    if maps is None and _dense_fit(scores, gate):
        dense = [Features(side.rgb, features=DENSE_FEATURES) for side in (a, b)]
        refitted, maps = refit_dense(*dense, scores, gate, strong)
        scores = refitted if maps is not None else scores
    if maps is not None:
        scores.update(_compare(a, b.mirrored() if scores["flipped"] else b, maps))
    return scores


Prepared = Features | str
"""One side of a pair ready to match: its :class:`Features`, or the reason it cannot be compared."""
MATCH_ERRORS = (cv2.error, ValueError, np.linalg.LinAlgError)


def prepare_side(pixels: np.ndarray) -> Prepared:
    """:class:`Features` of an RGB uint8 array, or ``too_small``."""
    return "too_small" if min(pixels.shape[:2]) < MIN_SIDE else Features.of(pixels)


def _match_sides(a: Callable[[], Prepared], b: Callable[[], Prepared], gate: FitGate | None) -> dict[str, Any]:
    """:func:`match_features` of two sides prepared by ``a()`` and ``b()``; never raises. A side
    that cannot be read gives ``a:<why>``/``b:<why>``; else one too small gives ``too_small``."""
    try:
        side_a, side_b = a(), b()
        reasons = [(name, side) for name, side in (("a", side_a), ("b", side_b)) if isinstance(side, str)]
        for name, side in reasons:  # an image that cannot be read outranks one that is too small
            if side != "too_small":
                return _empty(f"{name}:{side}")
        if reasons:
            return _empty("too_small")
        return match_features(side_a, side_b, gate=gate)
    except MATCH_ERRORS as exc:
        return _empty(f"error:{type(exc).__name__}")


def match_scores(pixels_a: np.ndarray, pixels_b: np.ndarray, gate: FitGate | None = None) -> dict[str, Any]:
    """The photo-match scores of two RGB uint8 arrays (see the module doc); never raises.

    ``reason`` is None when the pair was compared, else why not (``too_small``, ``no_fit``,
    ``weak_fit`` under ``gate``, ...).
    """
    return _match_sides(lambda: prepare_side(pixels_a), lambda: prepare_side(pixels_b), gate)


AT_LEAST = {"inliers": "min_inliers", "inlier_ratio": "min_inlier_ratio", "structure": "min_structure",
            "tile_agreement": "min_tile_agreement"}  # fmt: skip
"""Score field -> the setting it must reach, for the same photograph."""
AT_MOST = {"colour_change": "max_colour_change"}
"""Score field -> the setting it must not exceed, for the same photograph."""
BLURRED = {"inlier_ratio": "min_blurred_inlier_ratio", "sharpness_gap": "min_sharpness_gap",
           "inliers": "min_blurred_inliers"}  # fmt: skip
"""Score field -> the setting of the lower fit bounds of a pair whose sharpness differs (:class:`FitGate`)."""
NO_BLURRED_BOUND = (1.0, float("inf"), float("inf"))  # (ratio, gap, inliers): no pair reaches it
BLURRED_COLOUR = {"colour_change": "max_blurred_colour_change", "inliers": "min_blurred_colour_inliers"}
"""Score field -> the setting of the colour bound of a pair whose sharpness differs by the blurred
band's gap and whose fit is strong: the colour change it may reach, the inliers it needs."""
NO_BLURRED_COLOUR = (0.0, float("inf"))  # (colour change, inliers): no pair reaches it
UNTILED = {"structure": "min_untiled_structure", "colour_change": "max_untiled_colour_change"}
"""Score field -> the setting of the bounds under which a pair needs no tile agreement: the same
structure and all but the same colours are one photograph, whatever the tiles along its edge read."""
NO_UNTILED = (float("inf"), -1.0)  # (structure, colour change): no pair reaches it
FRAMED_EVIDENCE = 10  # ratio-test matches of two framed photos at which their fit can contradict their frames'
# two framed photos' intersection over union, one carried onto the other image by the images' fit,
# under which they are different parts of one photograph (:func:`framed_placement`): theirs is no
# contradiction. Calibration (issue 14 phase 31): pairs of two products in one template 0.49-1.0.
FRAMED_APART = 0.4
# inliers the images' fit needs for it to place their framed photos (:func:`framed_placement`): a
# fit at the rule's least, of two look-alikes, must not overrule their framed photos (phase 31)
FRAMED_PLACING_INLIERS = 40


def column_reader(scores: Column) -> Callable[[str, float], Column]:
    """How :class:`PhotoRule` reads a score of a :data:`SCORES_SCHEMA` struct column: as a double,
    ``missing`` where it is null."""
    return lambda field, missing: F.coalesce(scores[field].cast("double"), F.lit(missing))


@dataclass(frozen=True)
class PhotoRule:
    """The same-photograph thresholds (``verify``'s settings named in :data:`AT_LEAST` and
    :data:`AT_MOST`; calibrated on the dev set by bench/calibrate_photo.py, docs/BENCHMARKS.md):
    enough RANSAC inliers at a high enough ratio (or at the lower ``blurred`` ratio, where the
    two images' sharpness differs by its gap: :data:`BLURRED`, :class:`FitGate`), correlated
    structure that agrees over most tiles, and colours one global map explains (or, for two images
    apart in sharpness with a strong fit, nearly: :data:`BLURRED_COLOUR`; the tiles are not read
    where the structure and the colours agree all but exactly: :data:`UNTILED`). One definition,
    three forms: :meth:`decide` over one pair's scores, :meth:`column` over a Spark
    :data:`SCORES_SCHEMA` column, :meth:`frame` over a pandas frame of score columns. A pair with
    a ``reason`` (not compared) is no match; a missing score fails an at-least bound and passes no
    at-most bound. Where an image frames a smaller photo, the pair also passes with that photo in
    its image's place (the :data:`REGION` scores); where both do, the framed photos decide only
    when the images do not fit as one photograph, and their fit may refuse the images' pass
    (:meth:`decide`)."""

    at_least: tuple[tuple[str, float], ...]  # (score field, the least it may be)
    at_most: tuple[tuple[str, float], ...]  # (score field, the most it may be)
    # the blurred band, in :data:`BLURRED`'s order: (least inlier_ratio, least sharpness_gap, least inliers)
    blurred: tuple[float, float, float] = NO_BLURRED_BOUND
    # the colour bound of two images apart by the band's gap, in :data:`BLURRED_COLOUR`'s order:
    # (most colour_change, least inliers)
    blurred_colour: tuple[float, float] = NO_BLURRED_COLOUR
    # the bounds that waive the tiles, in :data:`UNTILED`'s order: (least structure, most colour_change)
    untiled: tuple[float, float] = NO_UNTILED

    @classmethod
    def of(cls, verify_settings: VerifySettings) -> PhotoRule:
        """The thresholds of a ``verify`` table."""
        return cls(
            tuple((field, float(getattr(verify_settings, key))) for field, key in AT_LEAST.items()),
            tuple((field, float(getattr(verify_settings, key))) for field, key in AT_MOST.items()),
            tuple(float(getattr(verify_settings, key)) for key in BLURRED.values()),
            tuple(float(getattr(verify_settings, key)) for key in BLURRED_COLOUR.values()),
            tuple(float(getattr(verify_settings, key)) for key in UNTILED.values()),
        )

    def fit_gate(self) -> FitGate:
        """The fit bounds alone: a pair short of them cannot pass the rule."""
        least = dict(self.at_least)
        ratio, gap, inliers = self.blurred
        blurred_inliers = None if inliers == float("inf") else int(inliers)
        return FitGate(int(least["inliers"]), least["inlier_ratio"], ratio, gap, blurred_inliers)

    def with_thresholds(self, thresholds: Mapping[str, float]) -> PhotoRule:
        """This rule with some bounds changed, each named by its ``verify`` setting (a calibration
        grid's point: ``{"min_inliers": 30, "max_colour_change": 0.1}``); ValueError for another name."""
        known = {*AT_LEAST.values(), *AT_MOST.values(), *BLURRED.values(), *BLURRED_COLOUR.values(), *UNTILED.values()}
        unknown = sorted(set(thresholds) - known)
        if unknown:
            raise ValueError(f"not a photo check threshold: {unknown[0]}")

        def band(keys: Iterable[str], bounds: tuple[float, ...]) -> Any:
            return tuple(float(thresholds.get(key, bound)) for key, bound in zip(keys, bounds, strict=True))

        return PhotoRule(
            tuple((field, float(thresholds.get(AT_LEAST[field], least))) for field, least in self.at_least),
            tuple((field, float(thresholds.get(AT_MOST[field], most))) for field, most in self.at_most),
            band(BLURRED.values(), self.blurred),
            band(BLURRED_COLOUR.values(), self.blurred_colour),
            band(UNTILED.values(), self.untiled),
        )

    def _bounds(self, value: Callable[[str, float], Any], prefix: str = "") -> list[tuple[str, Any]]:
        """(score field, its bound's test on ``value(prefix + field, missing)``: the score,
        ``missing`` where it has none) of each bound, in order. The ratio's test takes the blurred
        band's ratio (images apart in sharpness, at its lower ratio), and the inliers' test the band
        with its lower count too, so that a pair passes with the sharp bounds or with all of the
        band's, and the ratio alone reads as before (a framed fit short of it contradicts its
        frames' pass, :meth:`decide`). The colour's test takes the blurred colour bound where the
        images are the band's gap apart and the fit has its inliers (:data:`BLURRED_COLOUR`); the
        tiles' test passes where the structure and the colour reach :data:`UNTILED`'s bounds.
        ``prefix``: :data:`REGION` for the framed-photo view's scores."""
        ratio, gap, inliers = self.blurred
        ratio_band = (value(prefix + "inlier_ratio", 0.0) >= ratio) & (value(prefix + "sharpness_gap", -1.0) >= gap)
        colour = self.blurred_colour[0]
        band = {"inlier_ratio": ratio_band, "inliers": ratio_band & (value(prefix + "inliers", 0.0) >= inliers),
                "colour_change": self.colour_band(value, prefix) & (value(prefix + "colour_change", 1.0) <= colour),
                "tile_agreement": self.tiles_waived(value, prefix)}  # fmt: skip
        tests = [(field, value(prefix + field, 0.0) >= least) for field, least in self.at_least]
        tests += [(field, value(prefix + field, 1.0) <= most) for field, most in self.at_most]
        return [(field, test | band[field] if field in band else test) for field, test in tests]

    def colour_band(self, value: Callable[[str, float], Any], prefix: str = "") -> Any:
        """Where the colour is held to the blurred colour bound (:data:`BLURRED_COLOUR`): images the
        blurred band's gap apart, with the bound's inliers; ``value`` and ``prefix`` as
        :meth:`_bounds` reads them (a missing score: no)."""
        gap, strong = self.blurred[1], self.blurred_colour[1]
        return (value(prefix + "sharpness_gap", -1.0) >= gap) & (value(prefix + "inliers", 0.0) >= strong)

    def tiles_waived(self, value: Callable[[str, float], Any], prefix: str = "") -> Any:
        """Where no tile agreement is needed (:data:`UNTILED`): the structure and the colours agree
        all but exactly; ``value`` and ``prefix`` as :meth:`_bounds` reads them (a missing score: no)."""
        structure, same_colours = self.untiled
        return (value(prefix + "structure", 0.0) >= structure) & (value(prefix + "colour_change", 1.0) <= same_colours)

    def failing(self, scores: Mapping[str, Any], prefix: str = "") -> list[str]:
        """The score fields whose bounds one compared pair's scores fail, in the rule's order
        (``inlier_ratio`` with its blurred band); a missing field is a missing score. ``prefix``:
        :data:`REGION` for the framed-photo view's."""

        def value(field: str, missing: float) -> Any:
            return missing if scores.get(field) is None else scores[field]

        return [field for field, test in self._bounds(value, prefix) if not test]

    def decide(self, scores: Mapping[str, Any]) -> bool:
        """Same photograph, from one pair's scores (:func:`match_scores`, :func:`score_described`):
        the images pass the bounds, or with a framed photo in its image's place (``region_view``)
        they do. Where both frame a photo, the images decide when they fit as one photograph (one
        template: its own pictures match whatever is pasted into it), and their pass does not
        count when the two framed photos' fit contradicts it (:data:`FRAMED_EVIDENCE` matches or
        more, short of the ratio) unless the images' fit puts the two apart (:func:`framed_apart`:
        a region found on another part of one photograph); the framed photos decide when the
        images do not fit."""

        def passes(prefix: str) -> bool:
            return scores.get(prefix + "reason") is None and not self.failing(scores, prefix)

        view = scores.get("region_view")
        if view is None:
            return passes("")
        if view != "both":
            return passes("") or passes(REGION)
        if scores.get("reason") is not None:  # two frames that do not fit as one photograph: their photos decide
            return passes(REGION)
        evidence = (scores.get(REGION + "matches") or 0) >= FRAMED_EVIDENCE
        contradicted = evidence and "inlier_ratio" in self.failing(scores, REGION) and not framed_apart(scores)
        return passes("") and not contradicted

    def _views(self, value: Callable[[str, float], Any], is_null: Callable[[str], Any], both: Any) -> tuple[Any, Any]:
        """(the images pass, the framed photo's view passes): :meth:`decide` over columns, with
        ``value`` as :meth:`_bounds` reads it, ``is_null(field)``, and ``both``, whether
        ``region_view`` is ``both``."""

        def passes(prefix: str) -> Any:
            same = is_null(prefix + "reason")
            for _, test in self._bounds(value, prefix):
                same = same & test
            return same

        ratio_holds = dict(self._bounds(value, REGION))["inlier_ratio"]
        apart = value("framed_placement", 1.0) < FRAMED_APART
        contradicted = both & ~apart & (value(REGION + "matches", 0.0) >= FRAMED_EVIDENCE) & ~ratio_holds
        return passes("") & ~contradicted, ~is_null("region_view") & passes(REGION) & (~both | ~is_null("reason"))

    def _column_views(self, scores: Column) -> tuple[Column, Column]:
        return self._views(
            column_reader(scores),
            lambda field: scores[field].isNull(),
            F.coalesce(scores["region_view"] == "both", F.lit(False)),
        )

    def column(self, scores: Column) -> Column:
        """:meth:`decide` as a Spark expression over a :data:`SCORES_SCHEMA` struct column."""
        images, framed = self._column_views(scores)
        return F.coalesce(images | framed, F.lit(False))

    def deciding(self, scores: Column) -> tuple[Column, Column]:
        """(view, its scores) of a :data:`SCORES_SCHEMA` column: ``images`` and the scores as they
        are where the images pass; the ``region_view`` and the framed photo's scores under the
        plain names where only that view passes; null and the scores as they are where neither does."""
        images, framed = self._column_views(scores)
        framed = ~F.coalesce(images, F.lit(False)) & F.coalesce(framed, F.lit(False))
        view = F.when(F.coalesce(images, F.lit(False)), F.lit("images")).when(framed, scores["region_view"])
        region = scores
        for name in REGION_FIELDS:
            region = region.withField(name, scores[REGION + name])
        return view, F.when(framed, region).otherwise(scores)

    def frame(self, scores: pd.DataFrame) -> pd.Series:
        """:meth:`decide` over a frame of score columns (a row per pair, NaN or None for a missing
        score; a score column left out is missing on every row)."""

        def value(field: str, missing: float) -> pd.Series:
            if field not in scores:
                return pd.Series(missing, index=scores.index)
            return scores[field].astype(float).fillna(missing)

        def is_null(field: str) -> pd.Series:
            return scores[field].isna() if field in scores else pd.Series(True, index=scores.index)

        both = scores["region_view"].eq("both") if "region_view" in scores else pd.Series(False, index=scores.index)
        images, framed = self._views(value, is_null, both)
        return images | framed


def framed_apart(scores: Mapping[str, Any]) -> bool:
    """Whether a pair's two framed photos are different parts of one photograph
    (``framed_placement`` under :data:`FRAMED_APART`): neither their fit nor their cosine then
    contradicts the images'."""
    placement = scores.get("framed_placement")
    return placement is not None and placement < FRAMED_APART  # NaN (a frame's missing score): False


DEFAULT_RULE = PhotoRule.of(default_table("verify"))  # the job's thresholds at the defaults (dedup/config.py)


def decide(scores: Mapping[str, Any], rule: PhotoRule = DEFAULT_RULE) -> bool:
    """:meth:`PhotoRule.decide` by ``rule`` (the defaults' thresholds unless given)."""
    return rule.decide(scores)


def decode_for_match(data: bytes | None) -> np.ndarray | str:
    """Pixels of image bytes at about :data:`MAX_SIDE` a side, or the reason they cannot be compared."""
    if data is None:
        return "missing_image"
    try:
        return decode_pixels(bytes(data), draft_size=MAX_SIDE)
    except DecodeError as exc:
        return str(exc)


class BytesCache:
    """The last ``size`` results of ``load`` (an image's bytes to what the check needs of it, or
    why it cannot be compared), by those bytes: a partition's pairs arrive sorted or grouped by
    one side, so one image meets several others in a row. ``None`` is a missing image."""

    def __init__(self, load: Callable[[bytes], Any], size: int = 32) -> None:
        self.size = size
        self._load = load
        self._entries: OrderedDict[bytes, Any] = OrderedDict()

    def get(self, data: bytes | None) -> Any:
        if data is None:
            return "missing_image"
        data = bytes(data)
        if data in self._entries:
            self._entries.move_to_end(data)
            return self._entries[data]
        entry = self._entries[data] = self._load(data)
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry


def _prepared(data: bytes) -> Prepared:
    pixels = decode_for_match(data)
    return pixels if isinstance(pixels, str) else prepare_side(pixels)


class FeatureCache(BytesCache):
    """:class:`BytesCache` of each image's :class:`Features` (:func:`prepare_side`)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__(_prepared, size)


def score_bytes(
    data_a: bytes | None, data_b: bytes | None, gate: FitGate | None = None, cache: FeatureCache | None = None
) -> dict[str, Any]:
    """:func:`match_scores` of two images' bytes (through ``cache``, if given); never raises. An
    undecodable side gives ``reason`` ``a:<why>``/``b:<why>``."""
    cache = cache or FeatureCache(size=2)
    return _match_sides(lambda: cache.get(data_a), lambda: cache.get(data_b), gate)


def photo_match_udf(gate: FitGate | None = None) -> Any:
    """A pandas UDF of :func:`score_bytes` over an Arrow batch of image-bytes pairs (a struct of
    the scores), with ``gate``; images are decoded once per batch while they stay in a
    :class:`FeatureCache`."""

    @F.pandas_udf(SCORES_SCHEMA)
    def scores(a: pd.Series, b: pd.Series) -> pd.DataFrame:
        cache = FeatureCache()
        return _score_frame([score_bytes(x, y, gate, cache) for x, y in zip(a, b, strict=True)], a.index)

    return scores


def _score_frame(rows: list[dict[str, Any]], index: pd.Index) -> pd.DataFrame:
    """Pairs' scores as a :data:`SCORES_SCHEMA` frame; a field a row lacks is null (not NaN, which
    Arrow cannot read as a string)."""
    empty = dict.fromkeys(_SCORE_NAMES)
    return pd.DataFrame([empty | row for row in rows], columns=_SCORE_NAMES, index=index)


Described = Description | str
"""One image's :class:`Description`, or why it cannot be compared (``too_small``, a decode
reason, ``missing_image``, or ``error:<type>`` when describing it raised)."""


def describe_bytes(data: bytes | None, find_box: Callable[[np.ndarray], Box | None] | None = None) -> Described:
    """:func:`describe` of image bytes (with ``find_box``), decoded as :func:`score_bytes` decodes
    them; never raises."""
    if data is None:
        return "missing_image"
    pixels = decode_for_match(data)
    if isinstance(pixels, str):
        return pixels
    try:
        return describe(pixels, find_box)
    except MATCH_ERRORS as exc:
        return f"error:{type(exc).__name__}"


def _unreadable(a: Described, b: Described) -> dict[str, Any] | None:
    """The scores of a pair one of whose sides has no description, ranked as :func:`_match_sides`
    ranks them (a failure to describe, then an unreadable image, then one too small); else None."""
    for side in (a, b):
        if isinstance(side, str) and side.startswith("error:"):
            return _empty(side)
    reasons = [(name, side) for name, side in (("a", a), ("b", b)) if isinstance(side, str)]
    for name, side in reasons:
        if side != "too_small":
            return _empty(f"{name}:{side}")
    return _empty("too_small") if reasons else None


def fit_descriptions(
    a: Described, b: Described, gate: FitGate | None = None, strong: int = 60
) -> tuple[dict[str, Any], Maps | None]:
    """The fit of two described images (no pixels): the scores so far and the :data:`Maps` the
    comparison (:func:`compare_pixels`) is still to run with, or None when the scores are final."""
    unreadable = _unreadable(a, b)
    if unreadable is not None:
        return unreadable, None
    if min(a.shape) < MIN_SIDE or min(b.shape) < MIN_SIDE:
        return _empty("too_small"), None
    try:
        return _fit_sides(a.direct, b.direct, lambda: b.mirror, lambda: sharpness_gap(a.sharpness, b.sharpness),
                          strong, gate)  # fmt: skip
    except MATCH_ERRORS as exc:
        return _empty(f"error:{type(exc).__name__}"), None


def compare_pixels(pixels_a: np.ndarray, pixels_b: np.ndarray, scores: dict[str, Any], maps: Maps) -> dict[str, Any]:
    """``scores`` of a fitted pair (from :func:`fit_descriptions`) completed by the comparison of
    its pixels (decoded as for :func:`describe`) under its ``maps``; never raises."""
    try:
        picture_b = Picture(prepare(pixels_b))
        side = picture_b.mirror() if scores["flipped"] else picture_b
        return {**scores, **_compare(Picture(prepare(pixels_a)), side, maps)}
    except MATCH_ERRORS as exc:
        return _empty(f"error:{type(exc).__name__}")


def _blurred_alike(rgb: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    """(sigma, ``rgb`` blurred by it): the :data:`BLUR_STEPS` sigma whose blur brings the image's
    :func:`sharpness` closest to ``target`` (steps tried in order until it is no sharper)."""
    grey = _grey(rgb)
    best = (float("inf"), BLUR_STEPS[0])
    for sigma in BLUR_STEPS:
        gap = sharpness(cv2.GaussianBlur(grey, (0, 0), sigma)) - target
        if abs(gap) < best[0]:
            best = (abs(gap), sigma)
        if not gap > 0:  # reached (or NaN: too little detail left to tell)
            break
    return best[1], cv2.GaussianBlur(rgb, (0, 0), best[1])


def refit_blurred(
    a: Keypoints | Features,
    b: Keypoints | Features,
    b_mirrored: Callable[[], Keypoints | Features],
    sharpness_of: tuple[float, float],
    rgb: tuple[Callable[[], np.ndarray], Callable[[], np.ndarray]],
    gate: FitGate,
    strong: int = 60,
) -> tuple[dict[str, Any], Maps | None]:
    """A second fit for two images apart in sharpness (a blurred copy): the sharper one (its
    ``rgb`` at :data:`MAX_SIDE`, :func:`prepare`'s) blurred to the other's :func:`sharpness`
    (:func:`_blurred_alike`) and its keypoints found again, so that both sides' corners come from
    detail of one scale, then fitted as :func:`_fit_sides` fits ``a`` and ``b`` (their keypoints,
    ``b``'s mirror image's) with ``gate``; ``blur_refit``: the sigma. The maps hold for the images
    as they are (a blur moves no pixel). ORB finds few repeatable keypoints on a blurred copy, and
    those it finds on the sharp original are mostly detail the copy has lost."""
    gap = sharpness_gap(*sharpness_of)
    if sharpness_of[0] > sharpness_of[1]:
        sigma, blurred = _blurred_alike(rgb[0](), sharpness_of[1])
        scores, maps = _fit_sides(Features(blurred), b, b_mirrored, lambda: gap, strong, gate)
    else:
        sigma, blurred = _blurred_alike(rgb[1](), sharpness_of[0])
        side = Features(blurred)
        scores, maps = _fit_sides(a, side, side.mirrored, lambda: gap, strong, gate)
    return {**scores, "blur_refit": sigma}, maps


def refit_described(
    a: Description, b: Description, pixels_a: np.ndarray, pixels_b: np.ndarray, gate: FitGate
) -> tuple[dict[str, Any], Maps | None]:
    """:func:`refit_blurred` of two described images (their stored keypoints, ``b``'s mirror
    image's, their sharpness) from their decoded pixels, as the job runs it."""
    rgb = (lambda: prepare(pixels_a), lambda: prepare(pixels_b))
    return refit_blurred(a.direct, b.direct, lambda: b.mirror, (a.sharpness, b.sharpness), rgb, gate)


def _second_fit(scores: dict[str, Any], gate: FitGate | None) -> FitGate | None:
    """The gate a :func:`refit_blurred` of a pair is held to (the plain one: the blur is matched,
    so the blurred band does not apply again), or None where the pair gets none: its fit reached
    ``gate``, or its images are not apart in sharpness by the band's ``min_sharpness_gap``."""
    if gate is None or not BLUR_REFIT or scores["reason"] != "weak_fit":
        return None
    gate = FitGate(*gate)
    blurred = (scores["sharpness_gap"] or 0.0) >= gate.min_sharpness_gap
    return FitGate(gate.min_inliers, gate.min_inlier_ratio) if blurred else None


def _dense_fit(scores: dict[str, Any], gate: FitGate | None) -> bool:
    """Whether a pair's weak fit gets a second one with :data:`DENSE_FEATURES` keypoints
    (:func:`refit_dense`): it has :data:`DENSE_FROM` inliers or more."""
    return bool(gate is not None and DENSE_FEATURES and scores["reason"] == "weak_fit"
                and (scores["inliers"] or 0) >= DENSE_FROM)  # fmt: skip


def dense_side(pixels: np.ndarray) -> Features:
    """The :class:`Features` of an RGB array (decoded, any size) with :data:`DENSE_FEATURES` keypoints."""
    return Features(prepare(pixels), features=DENSE_FEATURES)


def refit_dense(
    a: Features, b: Features, weak: dict[str, Any], gate: FitGate, strong: int = 60
) -> tuple[dict[str, Any], Maps | None]:
    """A weak fit's second chance: both images' :func:`dense_side` (:data:`DENSE_FEATURES`
    keypoints), fitted as :func:`_fit_sides` fits them on the side the ``weak`` fit took (``b`` or
    its mirror image: the second fit keeps it in nearly every pair it lifts, at half the cost),
    held to ``gate``. ORB keeps the corners that respond most: a caption's letters, an emoji's
    outline or a banner's text take much of :data:`ORB_FEATURES` from the photo, whose own
    corners then match too few to reach the gate. Fitting every pair with more keypoints moves
    pairs near every bound of the rule both ways; only the weak fits are fitted again (issue 14
    phase 26)."""
    return _fit_sides(a, b, b.mirrored, lambda: weak["sharpness_gap"], strong, gate, bool(weak["flipped"]))


def _refits(scores: dict[str, Any], gate: FitGate | None) -> bool:
    """Whether a pair's fit gets a second one (:func:`refit_weak`)."""
    return _second_fit(scores, gate) is not None or _dense_fit(scores, gate)


def refit_weak(
    a: Description,
    b: Description,
    pixels: tuple[np.ndarray, np.ndarray],
    weak: dict[str, Any],
    gate: FitGate | None,
    dense: tuple[Callable[[], Features], Callable[[], Features]] | None = None,
) -> tuple[dict[str, Any], Maps | None]:
    """The second fits of two described images whose fit was ``weak``, from their decoded
    ``pixels``, in order: :func:`refit_described` (images apart in sharpness), then
    :func:`refit_dense` of their :func:`dense_side` (or ``dense``'s, e.g. from a cache). The first
    to reach ``gate`` gives the scores and maps; else ``(weak, None)``."""
    second = _second_fit(weak, gate)
    if second is not None:
        refitted, maps = refit_described(a, b, *pixels, second)
        if maps is not None:
            return refitted, maps
    if gate is not None and _dense_fit(weak, gate):
        sides = (dense[0](), dense[1]()) if dense else (dense_side(pixels[0]), dense_side(pixels[1]))
        refitted, maps = refit_dense(*sides, weak, gate)
        if maps is not None:
            return refitted, maps
    return weak, None


def match_descriptions(
    a: Described,
    b: Described,
    pixels_a: Callable[[], np.ndarray | str],
    pixels_b: Callable[[], np.ndarray | str],
    gate: FitGate | None = None,
    dense: tuple[Callable[[], Features], Callable[[], Features]] | None = None,
) -> dict[str, Any]:
    """:func:`match_scores` from two stored descriptions; the pixels (``pixels_a()``,
    ``pixels_b()``: RGB arrays, or why an image cannot be read) are decoded only for a pair whose
    fit leaves a comparison to run, or whose weak fit gets a second one (:func:`refit_weak`;
    ``dense``: its second keypoints, e.g. from a cache)."""
    return _matched(a, b, pixels_a, pixels_b, gate, dense)[0]


Compared = tuple[dict[str, Any], Maps | None, tuple[np.ndarray, np.ndarray] | None]
"""A pair's scores, and where the two images were compared, the fit's maps and the decoded pixels."""


def _matched(
    a: Described,
    b: Described,
    pixels_a: Callable[[], np.ndarray | str],
    pixels_b: Callable[[], np.ndarray | str],
    gate: FitGate | None,
    dense: tuple[Callable[[], Features], Callable[[], Features]] | None,
) -> Compared:
    """:func:`match_descriptions`, with the maps and pixels of a compared pair."""
    scores, maps = fit_descriptions(a, b, gate)
    if maps is None and not _refits(scores, gate):
        return scores, None, None
    pixels = (pixels_a(), pixels_b())
    bad = next((f"{n}:{p}" for n, p in zip("ab", pixels, strict=True) if isinstance(p, str)), None)
    if maps is None:  # a weak fit stands unless a second fit reaches the gate
        if bad is None:
            scores, maps = refit_weak(a, b, pixels, scores, gate, dense)
        if maps is None:
            return scores, None, None
    if bad:
        return _empty(bad), None, None
    return compare_pixels(*pixels, scores, maps), maps, pixels


def _described_box(described: Description, decoded: tuple[int, ...]) -> tuple[float, ...]:
    """``described.box`` (in the ``decoded`` pixels) where its keypoints are (at :attr:`Description.shape`)."""
    sx, sy = described.shape[1] / decoded[1], described.shape[0] / decoded[0]
    x0, y0, x1, y1 = described.box
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def framed_placement(a: Description, b: Description, compared: Compared) -> float | None:
    """Where both images frame a photo and were compared: the intersection over union of ``a``'s
    framed photo and ``b``'s carried onto ``a`` by the images' fit (the bounding rectangle of its
    corners). Two products pasted into one template frame their photos in one place (near 1); a
    crop or a border copy of an ordinary photo may have a region found on another part of it (a
    panel, the garment without its model), whose photos then differ though the images are one
    photograph. None where either frames none, the pair was not compared, or its fit holds fewer
    than :data:`FRAMED_PLACING_INLIERS` inliers."""
    scores, maps, pixels = compared
    if maps is None or pixels is None or scores.get("reason") is not None or a.box is None or b.box is None:
        return None
    if scores["inliers"] < FRAMED_PLACING_INLIERS:
        return None
    x0, y0, x1, y1 = _described_box(b, pixels[1].shape)
    if scores["flipped"]:  # the fit takes b's mirror image onto a
        x0, x1 = b.shape[1] - x1, b.shape[1] - x0
    corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x0, y1, 1.0], [x1, y1, 1.0]]) @ maps[0].T
    if corners.shape[1] == 3:  # a homography
        corners = corners[:, :2] / corners[:, 2:]
    placed = box_overlap(_described_box(a, pixels[0].shape), (*corners.min(0), *corners.max(0)))
    return None if placed is None else float(placed)


DESCRIBED_SCHEMA = T.StructType(
    [T.StructField("direct", T.BinaryType()), T.StructField("mirror", T.BinaryType()),
     T.StructField("reason", T.StringType()), T.StructField("region_direct", T.BinaryType()),
     T.StructField("region_mirror", T.BinaryType()), T.StructField("region_box", T.ArrayType(T.IntegerType()))]
)  # fmt: skip
"""One image's stored :class:`Description` (:meth:`Description.to_parts`; null where there is
none) and why not; ``region_*``: its framed photo's, and where that sits (null: none)."""


def _described_row(row: Described) -> dict[str, Any]:
    """A :data:`DESCRIBED_SCHEMA` row of one image's :func:`describe_bytes`."""
    if isinstance(row, str):
        return dict.fromkeys(DESCRIBED_SCHEMA.names) | {"reason": row}
    direct, mirror = row.to_parts()
    region_direct, region_mirror = row.region.to_parts() if row.region is not None else (None, None)
    return {"direct": direct, "mirror": mirror, "reason": None, "region_direct": region_direct,
            "region_mirror": region_mirror, "region_box": None if row.box is None else list(row.box)}  # fmt: skip


def box_finder(embed_settings: EmbedSettings | None) -> Callable[[np.ndarray], Box | None] | None:
    """:func:`dedup.content.content_box` at ``embed_settings`` (None: no framed photos looked for),
    a photo on a pad left out: its margins are uniform and lie outside the images' fit, so the
    whole images already compare that photo, and a second view of it would only give a pair near
    a bound a second reading (issue 14 phase 32: two products of the hard negatives passed so)."""
    return None if embed_settings is None else functools.partial(content_box, settings=embed_settings, padded=False)


def describe_udf(framed: EmbedSettings | None = None) -> Any:
    """A pandas UDF: image bytes in, :data:`DESCRIBED_SCHEMA` out (:func:`describe_bytes`; with
    ``framed``, the content-region settings, an image's framed photo described too)."""
    find_box = box_finder(framed)

    @F.pandas_udf(DESCRIBED_SCHEMA)
    def described(images: pd.Series) -> pd.DataFrame:
        rows = [_described_row(describe_bytes(None if data is None else bytes(data), find_box)) for data in images]
        return pd.DataFrame(rows, columns=DESCRIBED_SCHEMA.names, index=images.index)

    return described


def _loaded(
    direct: bytes | None,
    mirror: bytes | None,
    reason: str | None,
    region_direct: bytes | None = None,
    region_mirror: bytes | None = None,
    region_box: Any = None,
) -> Described:
    if direct is None:
        return reason or "missing_image"
    region = None
    if region_direct is not None:
        region = Description.from_parts(bytes(region_direct), None if region_mirror is None else bytes(region_mirror))
    box = None if region is None else region_box  # from_parts makes it a tuple of ints
    return Description.from_parts(bytes(direct), None if mirror is None else bytes(mirror), region, box)


def dense_cache(pixels: BytesCache, size: int = 32) -> BytesCache:
    """A :class:`BytesCache` of each image's :func:`dense_side`, from its pixels in ``pixels``."""
    return BytesCache(lambda data: dense_side(pixels.get(data)), size)


class PixelCache(BytesCache):
    """:class:`BytesCache` of each image's pixels (:func:`decode_for_match`)."""

    def __init__(self, size: int = 32) -> None:
        super().__init__(decode_for_match, size)


def region_view(a: Described, b: Described) -> str | None:
    """Which side's framed photo stands in for its image in a pair's second comparison: ``a``,
    ``b``, ``both``, or None where neither image frames one (:attr:`Description.region`)."""
    framed = tuple(isinstance(side, Description) and side.region is not None for side in (a, b))
    return {(True, False): "a", (False, True): "b", (True, True): "both"}.get(framed)


def score_described(
    a: Described,
    b: Described,
    bytes_a: bytes | None,
    bytes_b: bytes | None,
    gate: FitGate | None,
    cache: PixelCache | None = None,
    dense: BytesCache | None = None,
) -> dict[str, Any]:
    """:func:`match_scores` of two described images: the fit from their descriptions, and for a
    pair whose fit leaves a comparison to run, the comparison of their pixels decoded from
    ``bytes_a`` and ``bytes_b`` (through ``cache``; a weak fit's second keypoints through ``dense``,
    a :func:`dense_cache` of it); never raises.

    Where a side frames a smaller photo (:func:`region_view`), the pair is scored a second time
    with that photo in its image's place (both framed photos, where both frame one), under the
    :data:`REGION` prefix: a banner or a screenshot meets its original through the photo it
    frames, and two products pasted into one template are told apart by theirs."""
    cache = cache or PixelCache(size=2)
    sides = None if dense is None else (lambda: dense.get(bytes_a), lambda: dense.get(bytes_b))
    compared = _matched(a, b, lambda: cache.get(bytes_a), lambda: cache.get(bytes_b), gate, sides)
    scores, view = compared[0], region_view(a, b)
    if view is None:
        return scores

    def side(described: Described, data: bytes | None, framed: bool) -> tuple[Described, Callable[[], Any]]:
        if not framed:
            return described, lambda: cache.get(data)
        return described.region, lambda: _cropped(cache.get(data), described.box)

    (region_a, pixels_a), (region_b, pixels_b) = side(a, bytes_a, view != "b"), side(b, bytes_b, view != "a")
    region = match_descriptions(region_a, region_b, pixels_a, pixels_b, gate)
    placement = framed_placement(a, b, compared) if view == "both" else None
    return {**scores, "region_view": view, "framed_placement": placement,
            **{REGION + name: region[name] for name in REGION_FIELDS}}  # fmt: skip


def _cropped(pixels: np.ndarray | str, box: Box) -> np.ndarray | str:
    return pixels if isinstance(pixels, str) else crop(pixels, box)


def pair_udf(gate: FitGate | None = None) -> Any:
    """A pandas UDF over two sides of pairs, each a struct of the image's stored description
    (``direct``, ``mirror``, ``region_*``: :data:`DESCRIBED_SCHEMA`; ``a``'s mirrors may be left
    out, the fit does not use them), ``reason`` and ``image_bytes``: :func:`score_described` as
    :data:`SCORES_SCHEMA`, with ``gate``. A null side is a missing image. One pass per pair: the
    fit, and the decode and comparison only where the fit reaches ``gate``."""

    @F.pandas_udf(SCORES_SCHEMA)
    def scores(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        cache = PixelCache()
        dense = dense_cache(cache)

        def sides(frame: pd.DataFrame) -> list[tuple[Described, Any]]:
            parts = [frame[name] if name in frame else [None] * len(frame) for name in DESCRIBED_SCHEMA.names]
            return [(_loaded(*row), data) for *row, data in zip(*parts, frame["image_bytes"], strict=True)]

        rows = [score_described(da, db, xa, xb, gate, cache, dense) for (da, xa), (db, xb) in zip(sides(a), sides(b),
                                                                                           strict=True)]  # fmt: skip
        return _score_frame(rows, a.index)

    return scores
