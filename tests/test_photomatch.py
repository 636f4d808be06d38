"""The photo-match verifier: edited copies of a photo match, look-alike products do not."""

from __future__ import annotations

import random
from collections.abc import Callable

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dedup import photomatch
from dedup.devkit import edits
from dedup.devkit.benchset import edit
from dedup.devkit.synth import VARIANTS, jpeg_bytes, product_image
from dedup.imaging import decode_pixels, noise_level
from dedup.photomatch import (
    AT_LEAST,
    AT_MOST,
    BLUR_STEPS,
    BLURRED,
    BLURRED_COLOUR,
    DEFAULT_RULE,
    FRAMED_APART,
    FRAMED_EVIDENCE,
    REGION,
    REGION_FIELDS,
    SCORE_FIELDS,
    SCORES_SCHEMA,
    UNTILED,
    FeatureCache,
    PhotoRule,
    _band,
    _blur_to_match,
    _caption_parts,
    _change_reading,
    _colour_change,
    _correlation,
    _grey,
    _plausible,
    _plausible_homography,
    _texture_agrees,
    _tile_agreement,
    decide,
    match_scores,
    photo_match_udf,
    score_bytes,
)
from dedup.settings import default_table

SEEDS = (1, 12, 13)  # a dress, a bag and a shoe with enough print for keypoints
# Synthetic products have 5-10x fewer keypoints than real photos: a looser inlier count than the
# defaults calibrated on real photos, and a looser structure (their flat colours shift luma more under a hue edit).
VERIFY = default_table("verify", min_inliers=20, min_inlier_ratio=0.3, min_structure=0.8, min_tile_agreement=0.8)
RULE = PhotoRule.of(VERIFY)
GATE = (VERIFY.min_inliers, VERIFY.min_inlier_ratio)  # the keypoint fit a pair must reach to be compared further


def lookalike(image: Image.Image, seed: int) -> Image.Image:
    """Another photo of the same cut: ``image``'s silhouette (its non-white pixels) in another
    colour and print, with its own folds and light."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image)
    product = (pixels < 250).any(axis=2)
    size = pixels.shape[0]
    fill = rng.integers(30, 220, 3).astype(np.float32)
    stripes = ((np.arange(size)[:, None] + np.arange(size)[None, :]) // rng.integers(8, 20)) % 2 == 0
    texture = np.where(stripes[..., None], fill, fill * 0.6)
    field = Image.fromarray(rng.uniform(0.55, 1.35, (5, 5)).astype(np.float32), "F")
    shade = np.asarray(field.resize((size, size), Image.Resampling.BICUBIC))[..., None]
    other = np.clip(texture * shade, 0, 255).astype(np.uint8)
    return Image.fromarray(np.where(product[..., None], other, 255).astype(np.uint8))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("transform", ["crop", "hue", "text", "flip", "rotate", "greyscale", "combo:pad+blur"])
def test_edited_copy_is_the_same_photograph(transform: str, seed: int) -> None:
    original = product_image(seed)
    copy = decode_pixels(edit(original, transform, random.Random(seed)))
    scores = match_scores(np.asarray(original), copy)
    assert scores["reason"] is None
    assert decide(scores, RULE), scores
    assert scores["flipped"] == (transform == "flip")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("aspect", [0.82, 1.18])
def test_a_copy_stretched_on_one_axis_is_the_same_photograph(aspect: float, seed: int) -> None:
    """A marketplace's resize to its frame scales one axis more than the other: the affine fit
    follows it (a similarity, one scale for both axes, finds no fit with enough inliers)."""
    original = product_image(seed)
    stretched = original.resize((round(original.width * aspect), original.height), Image.Resampling.LANCZOS)
    scores = match_scores(np.asarray(original), decode_pixels(jpeg_bytes(stretched)))
    assert decide(scores, RULE), scores
    sheared = match_scores(
        np.asarray(original),
        decode_pixels(
            jpeg_bytes(
                original.transform(
                    original.size, Image.Transform.AFFINE, (1, 0.15, 0, 0, 1, 0), fillcolor=(255, 255, 255)
                )
            )
        ),
    )
    assert decide(sheared, RULE), sheared  # fmt: skip


def _keystone(image: Image.Image, amount: float) -> Image.Image:
    """``image`` as photographed tilted: its top edge narrowed by ``amount`` of the width a side
    and lowered by ``amount`` of the height at the left (a perspective no affine map follows)."""
    w, h = image.size
    corners = np.float32([(0, 0), (w, 0), (w, h), (0, h)])
    moved = np.float32([(amount * w, amount * h), (w - amount * w, 0), (w, h), (0, h - amount * h)])
    matrix = cv2.getPerspectiveTransform(corners, moved)
    tilted = cv2.warpPerspective(np.asarray(image), matrix, (w, h), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255))
    return Image.fromarray(tilted)


@pytest.mark.parametrize("seed", (12, 13))
def test_a_copy_in_perspective_is_fitted_by_a_homography(seed: int, monkeypatch) -> None:
    """Corners moved by 8% of a side: the affine map fits the middle and leaves the corners
    misaligned, which the colour comparison reads as changed colour (0.18 and 0.49 for these
    seeds: refused); the homography holds more matches and aligns the whole photo."""
    original = product_image(seed)
    copy = decode_pixels(jpeg_bytes(_keystone(original, 0.08)))
    scores = match_scores(np.asarray(original), copy)
    assert scores["colour_change"] <= 0.05 and decide(scores), scores
    monkeypatch.setattr(photomatch, "MAX_PERSPECTIVE", 0.0)  # the affine map alone
    monkeypatch.setattr(photomatch, "REFINE_FROM", 0.0)  # ... not refined on the pixels
    affine = match_scores(np.asarray(original), copy)
    assert affine["inliers"] < scores["inliers"] and not decide(affine), affine


def test_a_misaligned_fit_is_refined_on_the_pixels(monkeypatch) -> None:
    """Without the RANSAC homography, the affine map leaves a copy in perspective (corners moved
    by 4% of a side) misaligned at its corners, which reads as changed colour (0.20: refused);
    refining that map on the pixels (ECC) aligns it again and the colours agree. A look-alike shot
    the same way gets no such second chance: aligned to the pixel, its recoloured item still differs."""
    original = product_image(13)
    copy = decode_pixels(jpeg_bytes(_keystone(original, 0.04)))
    monkeypatch.setattr(photomatch, "PERSPECTIVE_GAIN", float("inf"))  # no RANSAC homography is kept
    refined = match_scores(np.asarray(original), copy)
    assert refined["colour_change"] <= photomatch.REFINE_COLOUR and decide(refined), refined
    calls = []
    refine = photomatch._refined
    monkeypatch.setattr(photomatch, "_refined", lambda *args: calls.append(refine(*args)) or calls[-1])
    for seed in (1, 12):  # the left item in another colour (its channels turned), its folds kept
        scene = two_products(seed)
        other = left_item_recoloured(scene, lambda pixels: pixels[:, [2, 0, 1]])
        tilted = match_scores(scene, decode_pixels(jpeg_bytes(_keystone(Image.fromarray(other), 0.02))))
        assert tilted["structure"] >= photomatch.REFINE_FROM and calls and calls[-1] is not None, tilted
        assert tilted["colour_change"] > 0.1 and not decide(tilted), tilted
        calls.clear()
    monkeypatch.setattr(photomatch, "REFINE_FROM", 0.0)  # the fit's map as it is
    unrefined = match_scores(np.asarray(original), copy)
    assert unrefined["colour_change"] > 0.1 and not decide(unrefined), unrefined


@pytest.mark.parametrize("seed", (1, 2, 13, 14))
def test_a_copy_shrunk_to_a_third_is_the_same_photograph(seed: int, monkeypatch) -> None:
    """At 67 px a side ORB finds few of the original's keypoints again (9-37 inliers at a ratio
    of 0.18-0.45: a weak fit) and the comparison's blurs span most of the image; enlarged to
    ENLARGE_TO first, the copy fits and compares as the photo it is."""
    original = product_image(seed)
    shrunk = original.resize((round(original.width * 0.3), round(original.height * 0.3)), Image.Resampling.LANCZOS)
    copy = decode_pixels(jpeg_bytes(shrunk))
    assert decide(match_scores(np.asarray(original), copy))
    monkeypatch.setattr(photomatch, "ENLARGE_TO", 0)  # compared at its own size
    assert not decide(match_scores(np.asarray(original), copy))


def test_a_pair_of_far_apart_scales_reads_the_same_whichever_image_comes_first(monkeypatch) -> None:
    """The job warps a pair's second listing onto the first (by row id). Where that shrinks it
    below ENLARGE_BELOW (an original onto its copy pasted at half size), the comparison is made the
    other way round, so both orders give the same scores under one fit; without the rule they differ."""
    original = np.asarray(product_image(1).convert("RGB").resize((256, 256)))
    pasted = np.full_like(original, 255)
    pasted[64:192, 64:192] = np.asarray(Image.fromarray(original).resize((128, 128), Image.Resampling.LANCZOS))
    big, small = photomatch.Picture(original), photomatch.Picture(pasted)
    shrinking = (np.array([[0.5, 0.0, 64.0], [0.0, 0.5, 64.0]]),)  # the original onto its pasted copy
    enlarging = tuple(photomatch.inverse_map(matrix) for matrix in shrinking)
    fields = ("structure", "tile_agreement", "colour_change")
    one, other = photomatch._compare(small, big, shrinking), photomatch._compare(big, small, enlarging)
    assert [one[f] for f in fields] == pytest.approx([other[f] for f in fields], abs=1e-6)
    assert one["structure"] > 0.95
    monkeypatch.setattr(photomatch, "ENLARGE_BELOW", 0.0)
    one = photomatch._compare(small, big, shrinking)
    assert [one[f] for f in fields] != pytest.approx([other[f] for f in fields], abs=1e-3)


def test_a_homography_is_plausible_only_with_a_little_perspective() -> None:
    points = np.float32([(0, 0), (255, 0), (255, 255), (0, 255)])
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [4e-4, 0.0, 1.0]])  # 10% more scale at one side
    assert _plausible_homography(tilt, points)
    steep = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.6e-3, 0.0, 1.0]])
    assert not _plausible_homography(steep, points)  # 40%: a different view, not an edit
    assert not _plausible_homography(np.diag([-1.0, 1.0, 1.0]), points)  # a mirror, as for the affine map


def test_a_fit_of_three_matches_tries_no_homography_and_a_degenerate_map_is_implausible() -> None:
    """Three matches, two on a similarity and the third off any plausible affine map, are a fit
    of 2 inliers, not an OpenCV error (a homography needs 4: phase 6 raised on 3 pairs of the dev
    set); a RANSAC estimate that is not finite is no plausible map (it raised LinAlgError)."""
    from dedup.photomatch import Keypoints, _fit

    descriptors = np.random.default_rng(0).integers(0, 256, (3, 32), dtype=np.uint8)
    a = Keypoints(np.float32([[10, 10], [100, 10], [10, 100]]), descriptors)
    b = Keypoints(np.float32([[10, 10], [100, 10], [10, 300]]), descriptors)  # the third: stretched 3x
    inliers, matches, maps = _fit(a, b)
    assert (inliers, matches) == (2, 3) and maps[0].shape == (2, 3)
    assert not _plausible(np.array([[np.nan, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_the_fit_keeps_orientation_and_bounds_the_stretch() -> None:
    assert _plausible(np.array([[1.2, 0.0, 3.0], [0.0, 0.95, -2.0]]))  # 26% more on one axis
    assert not _plausible(np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))  # a mirror: matched on its own
    assert not _plausible(np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))  # one axis doubled: no edit of a copy
    assert not _plausible(np.array([[1.0, 0.9, 0.0], [0.0, 1.0, 0.0]]))  # a shear a copy is not given


@pytest.mark.parametrize("seed", SEEDS)
def test_same_cut_in_another_colour_and_print_is_not(seed: int) -> None:
    original = product_image(seed)
    other = lookalike(original, seed + 100)
    assert (np.asarray(other) == 255).all(axis=2).sum() == (np.asarray(original) >= 250).all(axis=2).sum()
    scores = match_scores(np.asarray(original), decode_pixels(jpeg_bytes(other)))
    assert not decide(scores, RULE), scores
    assert (scores["structure"] or 0.0) < 0.5


def two_products(seed: int) -> np.ndarray:
    """A catalog shot with two items side by side (a model and the product, say)."""
    return np.concatenate([np.asarray(product_image(seed)), np.asarray(product_image(seed + 1))], axis=1)


def left_item_recoloured(
    scene: np.ndarray, recolour: Callable[[np.ndarray], np.ndarray] = lambda pixels: 255 - pixels
) -> np.ndarray:
    """``scene`` with its left item's pixels ``recolour``-ed (by default the inverse colour): the
    same cut, pasted on the same shot."""
    recoloured = scene.copy()
    left = recoloured[:, : scene.shape[1] // 2]
    product = (left < 250).any(axis=2)
    left[product] = recolour(left[product])
    return recoloured


@pytest.mark.parametrize("seed", (1, 13))
def test_one_item_recoloured_on_the_same_shot_is_not(seed: int) -> None:
    scene = two_products(seed)
    scores = match_scores(scene, decode_pixels(jpeg_bytes(Image.fromarray(left_item_recoloured(scene)))))
    assert scores["colour_change"] > 0.3 and not decide(scores, RULE), scores
    for transform in ("hue", "greyscale", "saturation", "combo:pad+blur", "logo"):  # one map explains these
        copy = match_scores(scene, decode_pixels(edit(Image.fromarray(scene), transform, random.Random(seed))))
        assert copy["colour_change"] <= 0.1 and decide(copy, RULE), (transform, copy)


def test_fit_gate_skips_the_comparison_without_changing_a_decision() -> None:
    gate = GATE
    cache = FeatureCache()
    for seed in SEEDS:
        original = jpeg_bytes(product_image(seed))
        others = [edit(product_image(seed), "combo:crop+hue", random.Random(seed)),
                  jpeg_bytes(lookalike(product_image(seed), seed)), jpeg_bytes(product_image(seed + 40))]  # fmt: skip
        for other in others:
            full, gated = score_bytes(original, other), score_bytes(original, other, gate, cache)
            assert decide(full, RULE) == decide(gated, RULE)
            assert gated["inliers"] == full["inliers"]
            if gated["reason"] == "weak_fit":
                assert gated["structure"] is None and full["reason"] is None
    assert decide(score_bytes(original, others[0], gate, cache), RULE)


def test_feature_cache_decodes_an_image_once_while_it_stays() -> None:
    cache = FeatureCache(size=2)
    first, second, third = (jpeg_bytes(product_image(i)) for i in (1, 2, 3))
    kept = cache.get(first)
    assert cache.get(bytes(first)) is kept
    cache.get(second), cache.get(third)
    assert cache.get(first) is not kept  # evicted, made again
    assert cache.get(None) == "missing_image" and cache.get(b"junk").startswith("undecodable_image")


def test_job_defaults_are_the_calibrated_rule() -> None:
    from dedup.config import DEFAULTS

    bounds = dict(DEFAULT_RULE.at_least + DEFAULT_RULE.at_most)  # score field -> its threshold
    assert bounds == {field: DEFAULTS["verify"][key] for field, key in {**AT_LEAST, **AT_MOST}.items()}
    assert DEFAULT_RULE.blurred == tuple(DEFAULTS["verify"][key] for key in BLURRED.values())
    assert DEFAULT_RULE.blurred_colour == tuple(DEFAULTS["verify"][key] for key in BLURRED_COLOUR.values())
    assert DEFAULT_RULE.untiled == tuple(DEFAULTS["verify"][key] for key in UNTILED.values())
    assert DEFAULT_RULE.fit_gate() == (20, 0.6, 0.4, 0.2, 18)


def blurred_copy(seed: int = 1, sigma: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """A product photo and its copy blurred by ``sigma``, as the job decodes it."""
    original = np.asarray(product_image(seed))
    return original, decode_pixels(jpeg_bytes(Image.fromarray(original).filter(ImageFilter.GaussianBlur(sigma))))


def test_a_blurred_copy_under_the_ratio_is_compared_where_its_sharpness_differs(monkeypatch) -> None:
    """ORB finds fewer repeatable keypoints on a blurred copy: product 1 blurred by 3 px fits at a
    ratio under ``min_inlier_ratio`` (0.6). Its sharpness gap lets the defaults' gate compare it and
    their rule keep it; without the blurred bound (and without a second fit) it is a weak fit, not kept."""
    monkeypatch.setattr(photomatch, "BLUR_REFIT", False)
    original, blurred = blurred_copy()
    scores = match_scores(original, blurred, DEFAULT_RULE.fit_gate())
    assert 0.4 <= scores["inlier_ratio"] < 0.6 and scores["sharpness_gap"] >= 0.2, scores
    assert scores["reason"] is None and decide(scores), scores
    without = DEFAULT_RULE.with_thresholds({"min_blurred_inlier_ratio": 1.0})
    weak = match_scores(original, blurred, without.fit_gate())
    assert weak["reason"] == "weak_fit" and weak["inliers"] == scores["inliers"] and not decide(weak, without)
    as_sharp = DEFAULT_RULE.with_thresholds({"min_sharpness_gap": scores["sharpness_gap"] + 0.01})
    assert not decide(scores, as_sharp)  # the same fit, the images closer in sharpness than the gap: no


def test_a_blurred_copy_with_fewer_inliers_is_compared_where_its_sharpness_differs(monkeypatch) -> None:
    """A blurred copy also fits with fewer inliers: product 32 blurred by 3 px fits with 18 (under
    ``min_inliers``, 20) at a ratio of 0.41. The blurred band's ``min_blurred_inliers`` (18) lets the
    defaults compare and keep it (issue 14 phase 20); at 20 (without a second fit) it is a weak fit."""
    monkeypatch.setattr(photomatch, "BLUR_REFIT", False)
    original, blurred = blurred_copy(32, 3.0)
    scores = match_scores(original, blurred, DEFAULT_RULE.fit_gate())
    assert 18 <= scores["inliers"] < 20 and scores["inlier_ratio"] < 0.6 and scores["sharpness_gap"] >= 0.2, scores
    assert scores["reason"] is None and decide(scores), scores
    without = DEFAULT_RULE.with_thresholds({"min_blurred_inliers": 20})
    weak = match_scores(original, blurred, without.fit_gate())
    assert weak["reason"] == "weak_fit" and not decide(weak, without) and not decide(scores, without)


@pytest.mark.parametrize("seed", (2, 7, 8))
def test_a_blurred_copy_too_weak_to_fit_is_fitted_again_with_the_original_blurred_alike(seed: int, monkeypatch) -> None:
    """ORB finds few repeatable keypoints on a blurred copy, and most of those on the sharp original
    are detail the copy lost: these products blurred by 3 px fit too weakly even for the blurred
    band. The second fit blurs the original to the copy's sharpness and finds its keypoints again
    (``blur_refit``: the sigma); held to the plain gate, it fits, and the rule keeps the copy. The
    stored descriptions' path (the job's) scores it alike."""
    from dedup.photomatch import describe, match_descriptions

    original, blurred = blurred_copy(seed, 3.0)
    scores = match_scores(original, blurred, DEFAULT_RULE.fit_gate())
    assert scores["reason"] is None and scores["blur_refit"] in BLUR_STEPS and decide(scores), scores
    assert scores["inliers"] >= VERIFY.min_inliers and scores["inlier_ratio"] >= VERIFY.min_inlier_ratio, scores
    stored = match_descriptions(describe(original), describe(blurred), lambda: original, lambda: blurred,
                                DEFAULT_RULE.fit_gate())  # fmt: skip
    assert stored == scores
    assert match_scores(original, blurred, GATE)["reason"] == "weak_fit"  # no blurred band: no second fit
    monkeypatch.setattr(photomatch, "BLUR_REFIT", False)
    weak = match_scores(original, blurred, DEFAULT_RULE.fit_gate())
    assert weak["reason"] == "weak_fit" and weak["blur_refit"] is None and not decide(weak), weak


@pytest.mark.parametrize(("kind", "seed"), [("text", 26), ("banner", 17)])
def test_a_copy_whose_text_takes_the_keypoints_is_fitted_again_with_more(kind: str, seed: int, monkeypatch) -> None:
    """A caption's letters (or a banner's) take much of ORB's budget from the photo: these copies
    fit too weakly for the gate at :data:`~dedup.photomatch.ORB_FEATURES` keypoints a side. The
    second fit with ``DENSE_FEATURES`` reaches it, and the rule keeps the copy; the stored
    descriptions' path (the job's, with its per-batch cache) scores it alike (issue 14 phase 26)."""
    from dedup.photomatch import PixelCache, dense_cache, describe, describe_bytes, match_descriptions, score_described

    original = product_image(seed)
    copy, _ = getattr(edits, kind)(original, random.Random(seed))
    data = jpeg_bytes(original), jpeg_bytes(copy)
    a, b = (decode_pixels(side) for side in data)
    scores = match_scores(a, b, DEFAULT_RULE.fit_gate())
    assert scores["reason"] is None and decide(scores), scores
    assert match_descriptions(describe(a), describe(b), lambda: a, lambda: b, DEFAULT_RULE.fit_gate()) == scores
    pixels = PixelCache()  # the job's path: each image's second keypoints found once a batch
    described = [describe_bytes(side) for side in data]
    assert score_described(*described, *data, DEFAULT_RULE.fit_gate(), pixels, dense_cache(pixels)) == scores
    monkeypatch.setattr(photomatch, "DENSE_FEATURES", 0)
    weak = match_scores(a, b, DEFAULT_RULE.fit_gate())
    assert weak["reason"] == "weak_fit" and weak["inliers"] >= photomatch.DENSE_FROM and not decide(weak), weak


def test_a_look_alike_fitted_again_with_more_keypoints_is_still_refused(monkeypatch) -> None:
    """The second fit gives look-alikes no pass: the other colour and print of these cuts, under a
    caption, are refused, some of them after a weak fit that the second fit tried again."""
    pairs = []
    for seed in range(1, 40):
        other, _ = edits.text(lookalike(product_image(seed), seed + 100), random.Random(seed))
        pairs.append((decode_pixels(jpeg_bytes(product_image(seed))), decode_pixels(jpeg_bytes(other))))
    for a, b in pairs:
        assert not decide(match_scores(a, b, DEFAULT_RULE.fit_gate()))
    monkeypatch.setattr(photomatch, "DENSE_FEATURES", 0)
    first = [match_scores(a, b, DEFAULT_RULE.fit_gate()) for a, b in pairs]
    tried = [s for s in first if s["reason"] == "weak_fit" and s["inliers"] >= photomatch.DENSE_FROM]
    assert len(tried) >= 2, first


def test_a_blurred_look_alike_fitted_again_is_still_refused() -> None:
    """The second fit gives look-alikes no pass: blurred, the other colour and print of these cuts
    fit weakly, and where the second fit reaches the gate (product 12) the structure refuses it."""
    refitted = 0
    for seed in range(1, 16):
        other = decode_pixels(
            jpeg_bytes(lookalike(product_image(seed), seed + 100).filter(ImageFilter.GaussianBlur(3)))
        )
        scores = match_scores(np.asarray(product_image(seed)), other, DEFAULT_RULE.fit_gate())
        refitted += scores["blur_refit"] is not None
        assert not decide(scores), (seed, scores)
    assert refitted >= 1


def assert_three_forms_agree(spark, rows: list[dict], decided: list[bool]) -> None:
    """:meth:`PhotoRule.frame` and :meth:`~PhotoRule.column` decide ``rows`` (scores) as
    :meth:`~PhotoRule.decide` did (``decided``), at the defaults."""
    frame = pd.DataFrame(rows, columns=[name for name, _ in SCORE_FIELDS]).astype({"sharpness_gap": float})
    assert list(DEFAULT_RULE.frame(frame)) == decided
    structs = spark.createDataFrame([(i, row) for i, row in enumerate(rows)],
                                    T.StructType([T.StructField("i", T.IntegerType()),
                                                  T.StructField("s", SCORES_SCHEMA)]))  # fmt: skip
    column = structs.select("i", DEFAULT_RULE.column(F.col("s")).alias("same")).orderBy("i").collect()
    assert [r["same"] for r in column] == decided


def test_the_blurred_bound_reads_alike_in_the_rules_three_forms(spark) -> None:
    """:meth:`PhotoRule.decide`, :meth:`~PhotoRule.frame` and :meth:`~PhotoRule.column` agree on
    the blurred band: a ratio or an inlier count under its bound passes only with a sharpness gap
    at least the gap's bound, at the band's own ratio and inlier bounds, and a missing gap (an
    image with too little detail) is no gap."""
    good = {"reason": None, "matches": 60, "structure": 0.9, "tile_agreement": 0.9, "colour_change": 0.0}
    rows = [{**good, "inliers": inliers, "inlier_ratio": ratio, "sharpness_gap": gap}
            for inliers in (10, 18, 40) for ratio in (0.3, 0.45, 0.7) for gap in (None, 0.1, 0.2, 0.5)]  # fmt: skip
    decided = [DEFAULT_RULE.decide(row) for row in rows]
    no_band, band = [False, False, False, False], [False, False, True, True]
    assert decided == [False] * 12 + [*no_band, *band, *band] + [*no_band, *band, True, True, True, True]
    assert_three_forms_agree(spark, rows, decided)


def test_the_blurred_colour_bound_reads_alike_in_the_rules_three_forms(spark) -> None:
    """The defaults let a pair whose images' sharpness differs by the blurred band's gap (0.2) and
    whose fit has ``min_blurred_colour_inliers`` (100) reach ``max_blurred_colour_change`` (0.2):
    a blurred or recompressed copy's colours read a little apart along the edges the blur leaves
    (issue 14 phase 37). A weaker fit, a smaller gap or a missing one holds to ``max_colour_change``
    (0.1); so does the framed photo's view, with its own gap and inliers. The three forms agree."""
    good = {"reason": None, "matches": 300, "inlier_ratio": 0.8, "structure": 0.9, "tile_agreement": 0.9}
    rows = [{**good, "inliers": inliers, "sharpness_gap": gap, "colour_change": colour}
            for inliers in (60, 100) for gap in (None, 0.1, 0.3) for colour in (0.08, 0.15, 0.25)]  # fmt: skip
    framed = {**good, "inliers": 40, "sharpness_gap": 0.0, "colour_change": 0.5, "region_view": "b",
              **{REGION + k: v for k, v in good.items()}}  # fmt: skip
    rows += [{**framed, "region_inliers": inliers, "region_sharpness_gap": 0.3, "region_colour_change": 0.15}
             for inliers in (60, 100)]  # fmt: skip
    decided = [DEFAULT_RULE.decide(row) for row in rows]
    held = [True, False, False] * 3  # colour 0.08 passes, 0.15 and 0.25 do not
    assert decided == [*held, *held[:6], True, True, False, False, True]
    assert not DEFAULT_RULE.with_thresholds({"max_blurred_colour_change": 0.0}).decide(rows[-4])  # as before
    assert_three_forms_agree(spark, rows, decided)


def test_the_tiles_are_waived_where_structure_and_colours_agree_in_the_rules_three_forms(spark) -> None:
    """The defaults need no tile agreement where the structure reaches ``min_untiled_structure``
    (0.97) and the colour change is at most ``max_untiled_colour_change`` (0.02): a small product's
    tiles read what lies past its edge (a border's, a pad's or the warp's seam; issue 14 phase 37).
    Under either bound, and for the framed photo's view on its own scores, the tiles hold to
    ``min_tile_agreement`` (0.5). The three forms agree."""
    good = {"reason": None, "matches": 200, "inliers": 150, "inlier_ratio": 0.9, "sharpness_gap": 0.0}
    rows = [{**good, "structure": structure, "colour_change": colour, "tile_agreement": tiles}
            for structure in (0.9, 0.97) for colour in (0.0, 0.02, 0.05) for tiles in (0.1, 0.6)]  # fmt: skip
    framed = {**good, "structure": 0.5, "colour_change": 0.0, "tile_agreement": 0.1, "region_view": "b",
              **{REGION + k: v for k, v in good.items()}, REGION + "colour_change": 0.0,
              REGION + "tile_agreement": 0.1}  # fmt: skip
    rows += [{**framed, "region_structure": structure} for structure in (0.9, 0.99)]
    decided = [DEFAULT_RULE.decide(row) for row in rows]
    held = [False, True] * 3  # the tiles at 0.1 fail, at 0.6 pass
    assert decided == [*held, True, True, True, True, False, True, False, True]
    assert not DEFAULT_RULE.with_thresholds({"max_untiled_colour_change": -1.0}).decide(rows[6])  # as before
    assert_three_forms_agree(spark, rows, decided)


def test_the_framed_view_reads_alike_in_the_rules_three_forms(spark) -> None:
    """A framed photo's view (``region_*``) keeps a pair the images' own scores do not; where both
    images frame a photo, the framed photos decide only if the images do not fit as one, and
    their fit refuses the images' pass when it has :data:`FRAMED_EVIDENCE` matches or more at a
    ratio short of the bound (the blurred band's, where their sharpness differs; its count is no
    part of that). :meth:`~PhotoRule.decide`,
    :meth:`~PhotoRule.frame`, :meth:`~PhotoRule.column` and :meth:`~PhotoRule.deciding` agree."""
    fit = {"reason": None, "inliers": 40, "matches": 50, "inlier_ratio": 0.8, "structure": 0.95,
           "tile_agreement": 0.9, "colour_change": 0.02, "sharpness_gap": 0.0}  # fmt: skip
    weak = {**fit, "reason": "weak_fit", "inliers": 6, "inlier_ratio": 0.2, "structure": None,
            "tile_agreement": None, "colour_change": None}  # fmt: skip
    few = {**weak, "matches": FRAMED_EVIDENCE - 1, "inliers": 2}  # too few matches to say anything
    # two blurred framed photos: a ratio in the blurred band, a count under its bound; the ratio
    # does not contradict the frames' pass (issue 14 phase 20)
    blurred_frames = {**weak, "matches": 17, "inliers": 8, "inlier_ratio": 0.47, "sharpness_gap": 0.8}
    region = lambda view, scores: {"region_view": view, **{REGION + k: scores.get(k) for k in REGION_FIELDS}}  # noqa: E731
    cases = [  # (the pair's scores, kept, the view that keeps it)
        (fit, True, "images"),
        (weak, False, None),
        ({**weak, **region("b", fit)}, True, "b"),  # a banner: its framed photo fits the original
        ({**fit, **region("a", weak)}, True, "images"),  # one framed side: the images' pass stands
        ({**fit, **region("both", weak)}, False, None),  # one template, two products: their photos refuse
        ({**fit, **region("both", few)}, True, "images"),
        ({**weak, **region("both", fit)}, True, "both"),  # two templates: the framed photos decide
        ({**fit, "colour_change": 0.5, **region("both", fit)}, False, None),  # one template, its own picture framed
        ({**fit, "colour_change": 0.5, **region("a", {**fit, "colour_change": 0.5})}, False, None),
        ({**fit, **region("both", blurred_frames)}, True, "images"),
        # the images' fit puts the two framed photos in different places: no contradiction (phase 31)
        ({**fit, **region("both", weak), "framed_placement": FRAMED_APART - 0.05}, True, "images"),
        ({**fit, **region("both", weak), "framed_placement": FRAMED_APART + 0.05}, False, None),
    ]
    rows = [scores for scores, _, _ in cases]
    decided = [DEFAULT_RULE.decide(row) for row in rows]
    assert decided == [kept for _, kept, _ in cases]
    frame = pd.DataFrame(rows, columns=[name for name, _ in SCORE_FIELDS])
    assert list(DEFAULT_RULE.frame(frame)) == decided
    structs = spark.createDataFrame([(i, row) for i, row in enumerate(rows)],
                                    T.StructType([T.StructField("i", T.IntegerType()),
                                                  T.StructField("s", SCORES_SCHEMA)]))  # fmt: skip
    view, shown = DEFAULT_RULE.deciding(F.col("s"))
    column = structs.select("i", DEFAULT_RULE.column(F.col("s")).alias("same"), view.alias("view"),
                            shown["inliers"].alias("inliers")).orderBy("i").collect()  # fmt: skip
    assert [r["same"] for r in column] == decided
    assert [r["view"] for r in column] == [view for _, _, view in cases]
    assert column[2]["inliers"] == fit["inliers"] and column[1]["inliers"] == weak["inliers"]


def banner_of(original: np.ndarray) -> np.ndarray:
    """``original`` shrunk and pasted into a wide grey frame with two dark text bars beside it."""
    frame = np.full((300, 600, 3), 240, np.uint8)
    frame[60:240, 40:220] = np.asarray(Image.fromarray(original).resize((180, 180)))
    frame[100:130, 300:560] = 30
    frame[160:180, 300:500] = 60
    return frame


def test_a_banner_is_matched_through_the_photo_it_frames() -> None:
    """With the content-region finder, a banner's description carries its framed photo's, which
    survives storage; the banner and its original fit too weakly as whole images, and the framed
    photo in the banner's place fits and compares as the same photograph."""
    from dedup.photomatch import DESCRIBED_SCHEMA, _described_row, _loaded, box_finder, describe_bytes, score_described

    find = box_finder(default_table("embed"))
    original = np.asarray(product_image(6))
    data = [jpeg_bytes(Image.fromarray(image)) for image in (original, banner_of(original))]
    plain, framed = (describe_bytes(d, find) for d in data)
    assert plain.region is None and framed.region is not None and describe_bytes(data[1]).region is None
    stored = _described_row(framed)
    again = _loaded(*(stored[name] for name in DESCRIBED_SCHEMA.names))
    assert again.box == framed.box and again.region.shape == framed.region.shape
    scores = score_described(plain, again, *data, DEFAULT_RULE.fit_gate())
    assert scores == score_described(plain, framed, *data, DEFAULT_RULE.fit_gate())
    assert scores["reason"] == "weak_fit" and scores["region_view"] == "b", scores
    assert scores[REGION + "reason"] is None and not DEFAULT_RULE.failing(scores, REGION) and decide(scores), scores
    alone = score_described(plain, describe_bytes(data[1]), *data, DEFAULT_RULE.fit_gate())
    assert alone["region_view"] is None and not decide(alone)


def test_framed_placement_carries_one_framed_photo_onto_the_other(monkeypatch) -> None:
    """:func:`framed_placement`: the intersection over union of ``a``'s framed photo and ``b``'s
    carried onto ``a`` by the images' fit, through a resize (boxes in decoded pixels, keypoints at
    :data:`MAX_SIDE`) and a mirror image: about 1 where the two frame the same part of the photo
    (one template), about 0 where each was found on another part (a crop's region, a panel); None
    where one frames nothing or the fit is too weak to place them."""
    from dedup.content import Box
    from dedup.photomatch import FRAMED_PLACING_INLIERS, _matched, describe, framed_placement

    original = np.asarray(product_image(6).resize((600, 600)))
    half = cv2.resize(original, (300, 300), interpolation=cv2.INTER_AREA)
    boxed = lambda box: lambda pixels: box  # noqa: E731  a region finder that always finds ``box``

    def placed(a: np.ndarray, b: np.ndarray, box_a: Box, box_b: Box) -> tuple[float | None, dict]:
        da, db = describe(a, boxed(box_a)), describe(b, boxed(box_b))
        compared = _matched(da, db, lambda: a, lambda: b, DEFAULT_RULE.fit_gate(), None)
        return framed_placement(da, db, compared), compared[0]

    def placement(a: np.ndarray, b: np.ndarray, box_a: Box, box_b: Box) -> float | None:
        placed_at, scores = placed(a, b, box_a, box_b)
        assert scores["reason"] is None and scores["inliers"] >= FRAMED_PLACING_INLIERS, scores
        return placed_at

    assert placement(original, half, (100, 120, 400, 500), (50, 60, 200, 250)) > 0.9  # the same part, halved
    assert placement(original, half, (100, 120, 400, 500), (210, 10, 290, 50)) < 0.05  # another part
    mirrored = np.ascontiguousarray(half[:, ::-1])
    assert placement(original, mirrored, (100, 120, 400, 500), (100, 60, 250, 250)) > 0.9  # x mirrored: 300 - x
    assert placement(original, mirrored, (100, 120, 400, 500), (50, 60, 200, 250)) < 0.5
    framed, plain = describe(original, boxed((100, 120, 400, 500))), describe(half)
    assert framed_placement(framed, plain, _matched(framed, plain, lambda: original, lambda: half, None, None)) is None
    monkeypatch.setattr(photomatch, "FRAMED_PLACING_INLIERS", 10_000)  # no fit places them
    assert placed(original, half, (100, 120, 400, 500), (50, 60, 200, 250))[0] is None


def test_a_description_keeps_its_sharpness_and_refuses_another_version() -> None:
    from dedup.photomatch import DESCRIPTION_VERSION, Description, describe, prepare, sharpness

    original, blurred = blurred_copy()
    described = describe(original)
    direct, mirror = described.to_parts()
    again = Description.from_parts(direct, mirror)
    assert again.sharpness == described.sharpness == sharpness(_grey(prepare(original)))
    assert described.sharpness - describe(blurred).sharpness >= 0.2
    older = bytes([DESCRIPTION_VERSION - 1]) + direct[1:]
    with pytest.raises(ValueError, match=f"version {DESCRIPTION_VERSION - 1}, expected {DESCRIPTION_VERSION}"):
        Description.from_parts(older)


def test_bad_input_gives_a_reason_not_an_exception(sample_jpeg: bytes) -> None:
    assert score_bytes(b"not an image", sample_jpeg)["reason"].startswith("a:undecodable_image")
    assert score_bytes(sample_jpeg, None)["reason"] == "b:missing_image"
    assert score_bytes(sample_jpeg, sample_jpeg[: len(sample_jpeg) // 3])["reason"].startswith("b:")
    tiny_jpeg = jpeg_bytes(Image.new("RGB", (8, 8), (200, 30, 30)))
    assert score_bytes(tiny_jpeg, b"junk")["reason"].startswith("b:undecodable_image")
    assert score_bytes(tiny_jpeg, sample_jpeg)["reason"] == "too_small"
    tiny = match_scores(np.zeros((4, 4, 3), np.uint8), decode_pixels(sample_jpeg))
    assert tiny["reason"] == "too_small" and not decide(tiny, RULE)
    flat = match_scores(np.full((64, 64, 3), 255, np.uint8), np.full((64, 64, 3), 255, np.uint8))
    assert flat["reason"] == "no_fit" and not decide(flat, RULE)


def test_udf_scores_pairs_inside_spark(spark) -> None:
    original = product_image(7)
    rows = [
        ("copy", jpeg_bytes(original), edit(original, "combo:crop+hue", random.Random(1))),
        ("lookalike", jpeg_bytes(original), jpeg_bytes(lookalike(original, 5))),
        ("garbage", b"\x00\x01garbage", jpeg_bytes(original)),
        ("missing", jpeg_bytes(original), None),
    ]
    frame = spark.createDataFrame(rows, "name string, a binary, b binary")
    udf = photo_match_udf()
    scored = {r["name"]: r["s"].asDict() for r in frame.select("name", udf("a", "b").alias("s")).collect()}
    assert scored["copy"]["reason"] is None and decide(scored["copy"], RULE)
    assert not decide(scored["lookalike"], RULE)
    assert scored["garbage"]["reason"].startswith("a:undecodable_image")
    assert scored["missing"]["reason"] == "b:missing_image" and scored["missing"]["inliers"] == 0


def split_pairs() -> list[tuple[bytes | None, bytes | None]]:
    """Image-bytes pairs of every kind the check meets: copies (flips included), look-alikes,
    strangers, an image too small, one that does not decode, one missing."""
    pairs: list[tuple[bytes | None, bytes | None]] = []
    for seed in SEEDS:
        original = product_image(seed)
        data = jpeg_bytes(original)
        for transform in ("flip", "combo:crop+hue", "rotate", "text"):
            pairs.append((data, edit(original, transform, random.Random(seed))))
        pairs += [(data, jpeg_bytes(lookalike(original, seed))), (data, jpeg_bytes(product_image(seed + 40)))]
    tiny = jpeg_bytes(Image.new("RGB", (8, 8), (200, 30, 30)))
    sample = pairs[0][0]
    pairs += [(tiny, sample), (b"junk", sample), (sample, None), (tiny, b"junk"), (None, tiny)]
    return pairs


@pytest.mark.parametrize("gate", [None, GATE])
def test_stored_descriptions_score_as_match_scores(gate) -> None:
    from dedup.photomatch import Description, decode_for_match, describe_bytes, match_descriptions

    for data_a, data_b in split_pairs():
        described = []
        for data, whole in ((data_a, False), (data_b, True)):
            side = describe_bytes(data)
            if isinstance(side, Description):  # through its stored form, as the job keeps it: a without its mirror
                direct, mirror = side.to_parts()
                side = Description.from_parts(direct, mirror if whole else None)
            described.append(side)
        pixels = [lambda data=data: decode_for_match(data) for data in (data_a, data_b)]
        split = match_descriptions(*described, *pixels, gate)
        assert split == score_bytes(data_a, data_b, gate), (split, score_bytes(data_a, data_b, gate))


def test_pair_udf_scores_as_photo_match_udf(spark) -> None:
    from pyspark.sql import functions as F

    from dedup.photomatch import describe_udf, pair_udf

    gate = GATE
    rows = [(i, a, b) for i, (a, b) in enumerate(split_pairs())]
    frame = spark.createDataFrame(rows, "i int, a binary, b binary")
    described = frame.select("i", "a", "b", describe_udf()("a").alias("da"), describe_udf()("b").alias("db"))
    side_a = F.struct(
        F.col("da.direct").alias("direct"), F.col("da.reason").alias("reason"), F.col("a").alias("image_bytes")
    )
    side_b = F.struct(
        F.col("db.direct").alias("direct"), F.col("db.mirror").alias("mirror"), F.col("db.reason").alias("reason"),
        F.col("b").alias("image_bytes"),
    )  # fmt: skip
    scored = {
        r["i"]: r["s"].asDict() for r in described.select("i", pair_udf(gate)(side_a, side_b).alias("s")).collect()
    }
    reference = frame.select("i", photo_match_udf(gate)("a", "b").alias("s")).collect()
    reference = {r["i"]: r["s"].asDict() for r in reference}
    assert any(r["reason"] is None for r in reference.values())  # some pairs were compared
    assert any(r["reason"] == "weak_fit" for r in reference.values())
    assert scored == reference


def test_ratio_matches_keep_what_the_opencv_matcher_keeps() -> None:
    """faiss's exact Hamming search with the ratio test keeps the same matches, in the same
    order, as cv2's brute-force knnMatch: on real keypoints and on descriptors full of ties."""
    import cv2

    from dedup.photomatch import RATIO, Features, ratio_matches

    def reference(a: np.ndarray, b: np.ndarray) -> tuple[list[int], list[int]]:
        knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a, b, k=2)
        good = [m[0] for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
        return [m.queryIdx for m in good], [m.trainIdx for m in good]

    rng = np.random.default_rng(0)
    cases = []
    for seed in SEEDS:
        original = product_image(seed)
        a = Features.of(np.asarray(original))
        b = Features.of(decode_pixels(edit(original, "combo:crop+hue", random.Random(seed))))
        cases += [(a.descriptors, b.descriptors), (a.descriptors, a.mirrored().descriptors)]
    base = rng.integers(0, 256, (40, 32), dtype=np.uint8)
    for _ in range(20):  # few distinct bit patterns: many equal distances, nearest and second
        a = base[rng.integers(0, 40, 200)] ^ (rng.random((200, 32)) < 0.02).astype(np.uint8)
        b = base[rng.integers(0, 40, 150)]
        cases.append((a, b))
    cases.append((base[:5], base[:2]))
    for a, b in cases:
        query, train = ratio_matches(a, b)
        assert (query.tolist(), train.tolist()) == reference(a, b)
    assert sum(len(ratio_matches(a, b)[0]) for a, b in cases) > 500


def _overlaid(scene: np.ndarray) -> Image.Image:
    """``scene`` with a red and a black caption over the product and the background (~4% of it)."""
    image = Image.fromarray(scene)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((20, 60), "SALE -50%", fill=(220, 30, 30), font=font)
    draw.text((240, 160), "shop now", fill=(0, 0, 0), font=font)
    return image


@pytest.mark.parametrize("seed", (12, 13))
def test_blurred_and_captioned_copies_are_the_same_photograph_at_the_defaults(seed: int) -> None:
    """The colour comparison blurs the sharper image to the other's detail (a blurred copy's
    softened edges are no colour change) and leaves out a caption's pixels, whose texture differs
    (an overlay of a few % of the photo is no colour change either); the landed check counted
    both as changed colour (seed 12's blurred copy 0.10, the captions 0.14 and 0.18 > 0.12)."""
    scene = two_products(seed)
    blurred = match_scores(scene, decode_pixels(jpeg_bytes(Image.fromarray(scene).filter(ImageFilter.GaussianBlur(3)))))
    assert blurred["colour_change"] <= 0.03 and decide(blurred), blurred
    captioned = match_scores(scene, decode_pixels(jpeg_bytes(_overlaid(scene))))
    assert captioned["colour_change"] <= 0.1 and decide(captioned), captioned


@pytest.mark.parametrize("seed", (1, 13))
def test_a_recoloured_item_is_still_a_colour_change_at_the_defaults(seed: int) -> None:
    """A recolour keeps the item's texture, so the overlay allowance does not excuse it."""
    scene = two_products(seed)
    scores = match_scores(scene, decode_pixels(jpeg_bytes(Image.fromarray(left_item_recoloured(scene)))))
    assert scores["colour_change"] > 0.3 and not decide(scores), scores
    original = product_image(seed)
    other = match_scores(np.asarray(original), decode_pixels(jpeg_bytes(lookalike(original, seed + 100))))
    assert not decide(other), other  # another photo of the same cut in another colour and print


def test_blur_is_matched_on_the_sharper_side_only() -> None:
    grey = np.asarray(product_image(12).convert("L"), np.float32)
    region = np.ones(grey.shape, bool)
    blurred = cv2.GaussianBlur(grey, (0, 0), 3.0)
    extra_a, extra_b = _blur_to_match(grey, blurred, region)
    assert extra_b == 0.0 and 2.0 <= extra_a <= 4.0
    assert _blur_to_match(blurred, grey, region) == (0.0, extra_a)
    assert _blur_to_match(grey, grey * 0.5 + 40, region) == (0.0, 0.0)  # contrast and brightness are no blur


@pytest.mark.parametrize("seed", (12, 20, 31))
def test_a_sticker_on_a_flat_product_photo_is_no_blur_and_no_colour_change(seed: int) -> None:
    """The demo's overlay (a red "SALE" sticker in a corner): its sharp edges are no sign that the
    whole copy is the sharper photo. Judged over the whole image, the sticker's detail made the check
    blur the copy, whose softened outline then read as changed colour (0.17, 0.16, 0.24 > 0.12 for
    these seeds); judged tile by tile (the median) neither side is blurred, and the sticker alone
    stays under the rule's 0.10 (0.12 before issue 14 phase 5)."""
    original = product_image(seed)
    copy = decode_pixels(VARIANTS["overlay"](original, random.Random(seed)))
    grey_a, grey_b = (_grey(np.asarray(im)).astype(np.float32) for im in (original, copy))
    assert _blur_to_match(grey_a, grey_b, np.ones(grey_a.shape, bool)) == (0.0, 0.0)
    scores = match_scores(np.asarray(original), copy)
    assert scores["colour_change"] <= 0.1 and decide(scores), scores


def test_texture_agrees_under_a_recolour_and_not_under_a_caption() -> None:
    scene = two_products(13)
    grey = _grey(scene).astype(np.float32)
    inverted = _grey(255 - scene).astype(np.float32)  # every edge keeps its place, its sign turned
    assert _texture_agrees(_band(grey), _band(inverted)).mean() > 0.95
    caption = _grey(np.asarray(_overlaid(scene))).astype(np.float32)
    differs = ~_texture_agrees(_band(grey), _band(caption))
    changed = np.abs(caption - grey) > 30
    assert differs[changed].mean() > 0.8 and differs[~cv2.dilate(changed.astype(np.uint8), np.ones((15, 15)))
                                                     .astype(bool)].mean() < 0.02  # fmt: skip


def _grained(pixels: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``pixels`` with sensor-like grain (one Gaussian value per pixel, as the dev set's noise edit)."""
    grain = np.random.default_rng(seed).normal(0, sigma, pixels.shape[:2])[..., None]
    return np.clip(pixels + grain, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("sigma", (12, 18, 25))
def test_a_noisy_copy_is_the_same_photograph_at_the_defaults(sigma: float) -> None:
    """Grain makes the flat parts of a copy textured where the original is flat; without the noise
    floor the texture test takes 19-69% of this dress's image for an overlay (the check before it
    scored colour_change 0.31-0.51, a refusal); with it the threshold sits above the pair's grain.
    (Tile-by-tile blur matching now also blurs the grainy side, so the whole check passes either
    way on this image; the dev set's noise copies need both.)"""
    original = np.asarray(product_image(1))
    noisy = _grained(original, sigma, seed=1)
    grey_a, grey_b = (_grey(pixels).astype(np.float32) for pixels in (original, noisy))
    noise = noise_level(grey_b, np.ones(original.shape[:2], bool))
    assert abs(noise - sigma) < 0.35 * sigma
    assert (~_texture_agrees(_band(grey_a), _band(grey_b))).mean() > 0.15  # no noise floor
    assert (~_texture_agrees(_band(grey_a), _band(grey_b), noise)).mean() < 0.02
    scores = match_scores(original, noisy)
    assert scores["colour_change"] <= 0.05 and decide(scores), scores


def test_grain_does_not_excuse_a_recoloured_item() -> None:
    scene = two_products(13)
    scores = match_scores(scene, _grained(left_item_recoloured(scene), 18, seed=2))
    assert scores["colour_change"] > 0.3 and not decide(scores), scores


def _small_product(seed: int) -> Image.Image:
    """A product photo pasted small onto a large plain canvas (a shoe, a watch, a bag as catalogs shoot them)."""
    photo = product_image(seed)
    canvas = Image.new("RGB", (512, 512), photo.getpixel((0, 0)))
    canvas.paste(photo.resize((280, 280)), (116, 30))
    return canvas


def _emoji_in_the_corners(image: Image.Image) -> Image.Image:
    """``image`` with an emoji in each corner of its background (6% of the image)."""
    image = image.copy()
    for k, place in enumerate([(20, 20), (420, 20), (30, 400), (420, 400)]):
        mark = edits._emoji(64, random.Random(k))
        image.paste(mark.convert("RGB"), place, mark.getchannel("A"))
    return image


@pytest.mark.parametrize("seed", (1, 13, 14))
def test_emoji_beside_a_small_product_are_an_addition_not_a_colour_change(seed: int, monkeypatch) -> None:
    """Four emoji on the background cover 6% of the image, about a fifth of a small product's area:
    more than the overlay allowance (10% of the products' area), so the landed check read them as
    changed colour (0.14, 0.22, 0.25 for these seeds: refused). Foreground in the copy alone, they
    are read as an addition onto its background, allowed up to 5% of the image, and what is left
    is under the rule's 0.10. Each a solid mark of 1.6% of the image, they are stamps too
    (``STAMP_SHARE``, ``STAMP_LEVELS``): either reading alone leaves them out."""
    photo = np.asarray(_small_product(seed))
    copy = decode_pixels(jpeg_bytes(_emoji_in_the_corners(_small_product(seed))))
    scores = match_scores(photo, copy)
    assert scores["colour_change"] <= 0.08 and decide(scores), scores
    monkeypatch.setattr(photomatch, "OVERLAY_IMAGE", 0.0)
    assert match_scores(photo, copy)["colour_change"] <= 0.08
    monkeypatch.setattr(photomatch, "STAMP_SHARE", 0.0)  # without both readings the emoji count again
    monkeypatch.setattr(photomatch, "STAMP_LEVELS", 0.0)  # (nor read as opaque stamps)
    assert match_scores(photo, copy)["colour_change"] > 0.12
    monkeypatch.setattr(photomatch, "OVERLAY_IMAGE", 0.05)
    assert match_scores(photo, copy)["colour_change"] <= 0.08


def _caption_box(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """``image`` with a green caption box (white words in it) drawn over ``box``."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    draw.rectangle(box, fill=(40, 140, 60))
    draw.text((box[0] + 8, box[1] + 4), "Summer sale", fill=(255, 255, 255), font=ImageFont.load_default(size=44))
    return image


def test_a_caption_box_over_much_of_a_small_product_does_not_pull_the_colour_map(monkeypatch) -> None:
    """The caption box covers more of this small product's pixels than the colour map's trim
    leaves out, so the map fitted from all pixels settles between the box and the photo and misses
    the product too (0.41-0.51). The map fitted from the pixels left as they were misses the box
    alone. (The caption reading is off here: it would leave this box out under either map.)"""
    monkeypatch.setattr(photomatch, "CAPTION_SHARE", 0.0)
    photo = _small_product(2)
    for box in [(20, 330, 500, 400), (0, 0, 511, 70), (20, 440, 500, 505)]:
        copy = decode_pixels(jpeg_bytes(_caption_box(photo, box)))
        held = match_scores(np.asarray(photo), copy)["colour_change"]
        with monkeypatch.context() as patched:
            patched.setattr(photomatch, "COLOUR_UNCHANGED", 0.0)
            pulled = match_scores(np.asarray(photo), copy)["colour_change"]
        assert held < 0.25 and pulled > 0.4, (box, held, pulled)


@pytest.mark.parametrize("box", [(150, 200, 360, 270), (100, 60, 420, 130)])
def test_a_caption_over_up_to_half_of_a_small_product_is_left_out(box: tuple[int, int, int, int], monkeypatch) -> None:
    """A caption box over a small product covers a third or more of the product's area though a
    tenth of the image or less. Read as a caption part up to half the products' area
    (``CAPTION_SHARE``), it is left out and the pair is the same photograph; held to 0.3 of the
    area (phase 23's bound, and no opaque caption past it), it is counted (0.20, 0.26: refused)."""
    photo = _small_product(2)
    copy = decode_pixels(jpeg_bytes(_caption_box(photo, box)))
    scores = match_scores(np.asarray(photo), copy)
    assert scores["colour_change"] <= 0.02 and decide(scores), scores
    monkeypatch.setattr(photomatch, "CAPTION_SHARE", 0.3)
    monkeypatch.setattr(photomatch, "CAPTION_OPAQUE_REGION", 0.0)
    counted = match_scores(np.asarray(photo), copy)
    assert counted["colour_change"] > 0.15 and not decide(counted), counted


@pytest.mark.parametrize(("seed", "draw"), [(1, 0), (1, 1), (1, 2), (2, 1), (12, 0), (29, 0), (29, 1)])
def test_the_dev_sets_captions_over_a_product_are_left_out_as_caption_parts(seed: int, draw: int, monkeypatch) -> None:
    """Captions of the dev set's text edit over the product (4-13% of the image): their texture
    differs over more than the overlay allowance, so the reading counted them (0.10-0.16, refused).
    Closed into parts, each is a box wider than tall whose texture differs: a caption, left out."""
    _left_out_by_the_reading("text", seed, draw, "CAPTION_SHARE", monkeypatch)


def test_the_tiles_under_the_caption_parts_left_out_do_not_count(monkeypatch) -> None:
    """A caption of the dev set's text edit over the product (seed 10): the tiles under it disagree
    with the original's (0.42, under the bound, refused). The colour reading leaves it out as a
    caption part, and the tiles read clear of that part all agree (phase 31); with
    ``CAPTION_TILE_REACH`` 0 they are read over it, as before."""
    original = product_image(10).resize((224, 224))
    edited, _ = edits.EDITS["text"](original, random.Random(101))
    copy = decode_pixels(jpeg_bytes(edited, 90))
    scores = match_scores(np.asarray(original), copy)
    assert scores["tile_agreement"] == 1.0 and decide(scores), scores
    monkeypatch.setattr(photomatch, "CAPTION_TILE_REACH", 0)
    counted = match_scores(np.asarray(original), copy)
    assert counted["tile_agreement"] < 0.5 and not decide(counted), counted


def _left_out_by_the_reading(kind: str, seed: int, draw: int, reading: str, monkeypatch, *also: str) -> None:
    """The dev set's ``kind`` edit over a synthetic product passes at the defaults (the rest beside
    the parts left out counted twice: at most 0.05), and is refused with ``reading`` (and ``also``)
    set to 0."""
    original = product_image(seed).resize((224, 224))
    edited, _ = edits.EDITS[kind](original, random.Random(seed * 10 + draw))
    copy = decode_pixels(jpeg_bytes(edited, 90))
    scores = match_scores(np.asarray(original), copy)
    assert scores["colour_change"] <= 0.05 and decide(scores), scores
    for name in (reading, *also):
        monkeypatch.setattr(photomatch, name, 0.0)
    counted = match_scores(np.asarray(original), copy)
    assert counted["colour_change"] > 0.1 and not decide(counted), counted


def _smooth_photo(low: float, high: float) -> np.ndarray:
    """A 128x256 float RGB "photo": smoothed noise stretched to ``low``-``high``, textured everywhere."""
    rng = np.random.default_rng(3)
    photo = cv2.GaussianBlur(rng.uniform(0, 255, (128, 256, 3)).astype(np.float32), (0, 0), 3.0)
    return (photo - photo.min()) * ((high - low) / (photo.max() - photo.min())) + low


def test_a_caption_part_is_a_wide_box_whose_texture_differs_not_one_recoloured() -> None:
    """A wide box of one flat colour over a photo is a caption where its texture differs from the
    photo's under it; where the texture agrees it is a box-shaped product in another colour."""
    photo, box = _smooth_photo(10, 245), np.zeros((128, 256), bool)
    box[50:74, 60:180] = True
    for same_texture, caption in ((~box, True), (np.ones(box.shape, bool), False)):
        parts = _parts_of_a_mark(photo, box, (40, 140, 60), same_texture)
        assert parts[box].all() == caption and not parts[~box].any()


def test_an_opaque_caption_over_much_of_a_small_product_is_a_caption_part(monkeypatch) -> None:
    """A wide box of letters in two flat colours (stripes) covering 62% of a small product's area
    (over ``CAPTION_SHARE``) is a caption where it is opaque, another colour outright
    (``STAMP_LEVELS``; the map misses them by a median of 148 levels), up to
    ``CAPTION_OPAQUE_REGION`` (75%) of the products' area; not where opaque means 200 levels, nor
    the box over 83% of the products' area, nor with that reading off."""
    photo, box = _smooth_photo(10, 245), np.zeros((128, 256), bool)
    box[50:74, 60:180] = True
    stripe = np.arange(256)[None, :] // 3 % 2 == 0
    marked = photo.copy()
    marked[box & stripe], marked[box & ~stripe] = (40, 140, 60), (230, 220, 30)

    def caption(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> bool:
        products = np.zeros(box.shape, bool)
        products[top:bottom, left:right] = True
        parts = _parts_of(photo, image, ~box, products)
        assert parts[box].all() == parts[box].any() and not parts[~box].any()
        return bool(parts[box].all())

    small, smaller = (44, 80, 56, 184), (48, 76, 58, 182)
    assert photomatch.CAPTION_SHARE < box.sum() / 4608 < photomatch.CAPTION_OPAQUE_REGION < box.sum() / 3472
    assert caption(marked, *small) and not caption(marked, *smaller)
    with monkeypatch.context() as patched:
        patched.setattr(photomatch, "STAMP_LEVELS", 200.0)
        assert not caption(marked, *small)
    monkeypatch.setattr(photomatch, "CAPTION_OPAQUE_REGION", 0.0)
    assert not caption(marked, *small)


def test_two_captions_joined_by_a_few_pixels_are_opened_into_two_caption_parts(monkeypatch) -> None:
    """Two wide boxes of letters (stripes in two flat colours) joined by a line 2 px wide close
    into one part filling 32% of its box, no caption; opened by ``SPLIT_OPEN`` px, each box is a
    caption part (wide, filling its box, of another texture and opaque) and the line is not; nor
    are they with the opening off, or where opaque means 200 levels (the map misses them by 148)."""
    photo, mark = _smooth_photo(10, 245), np.zeros((128, 256), bool)
    first, second, line = (np.zeros(mark.shape, bool) for _ in range(3))
    first[20:36, 40:200], second[80:96, 100:180], line[36:80, 120:122] = True, True, True
    mark = first | second | line
    stripe = np.arange(256)[None, :] // 3 % 2 == 0
    marked = photo.copy()
    marked[mark & stripe], marked[mark & ~stripe] = (40, 140, 60), (230, 220, 30)
    parts = _parts_of(photo, marked, ~mark)
    assert parts[first].all() and parts[second].all() and not parts[line].any() and not parts[~mark].any()
    for name, value in (("SPLIT_OPEN", 0), ("STAMP_LEVELS", 200.0)):
        with monkeypatch.context() as patched:
            patched.setattr(photomatch, name, value)
            assert not _parts_of(photo, marked, ~mark).any(), name


def test_a_translucent_caption_is_a_caption_part_where_its_texture_agrees(monkeypatch) -> None:
    """Thin letters, smoothed, cover each pixel in part, so the texture under them shows through
    and agrees; their colours are the photo's blended toward the letters' colour (40% here): a
    caption part (``BLEND_MAX``). The same box with the photo's channels swapped (a part in
    another colour, its shading kept) is not, nor the blend with that reading off."""
    photo, box = _smooth_photo(10, 245), np.zeros((128, 256), bool)
    box[50:74, 60:180] = True
    blended, swapped = photo.copy(), photo.copy()
    blended[box] = 0.6 * photo[box] + 0.4 * np.array([40.0, 200.0, 90.0])
    swapped[box] = photo[box][:, ::-1]
    agrees = np.ones(box.shape, bool)
    assert _parts_of(photo, blended, agrees)[box].all()
    assert not _parts_of(photo, swapped, agrees).any()
    monkeypatch.setattr(photomatch, "BLEND_MAX", 0.0)
    assert not _parts_of(photo, blended, agrees).any()


def test_the_dev_sets_caption_over_a_textured_product_is_left_out_as_translucent(monkeypatch) -> None:
    """A caption of the dev set's text edit over the product's texture: smoothed, its thin letters
    let the texture through, so it was no caption part (0.24, refused); its colours are the
    product's blended toward the letters': a caption part, left out (``BLEND_MAX``)."""
    _left_out_by_the_reading("text", 36, 2, "BLEND_MAX", monkeypatch)


def _parts_of_a_mark(photo: np.ndarray, mark: np.ndarray, colour: tuple, same_texture: np.ndarray) -> np.ndarray:
    """:func:`_caption_parts` of ``photo`` against itself with ``mark`` painted ``colour``, over
    the whole image, where the texture agrees as ``same_texture`` says."""
    marked = photo.copy()
    marked[mark] = colour
    return _parts_of(photo, marked, same_texture)


def _parts_of(photo: np.ndarray, marked: np.ndarray, same_texture: np.ndarray,
              region: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """:func:`_caption_parts` of ``photo`` against ``marked``, over ``region`` (the whole image)."""
    smooth_a, smooth_b = photo.reshape(-1, 3), marked.reshape(-1, 3)
    region = np.ones(same_texture.shape, bool) if region is None else region
    fit = _change_reading(smooth_a, smooth_b, region, same_texture, None, 0.0)[1]
    return _caption_parts(smooth_a, smooth_b, region, same_texture, fit)


def test_a_stamp_is_a_small_solid_mark_of_any_shape(monkeypatch) -> None:
    """A disc of one flat colour whose texture differs from the photo's under it (an emoji, a logo)
    is a caption part where it covers up to 5% of the image (``STAMP_SHARE``; this one 3%) and
    fills 60% of its box (``STAMP_FILL``; a disc fills 79%); a disc of 12% is not (over
    ``STAMP_OPAQUE_SHARE`` too). A triangle filling half its box is one where it is opaque, another
    colour outright (``STAMP_LEVELS``: a star, touching emoji), not where it is the photo's own part
    shaded some 40 levels off (a look-alike's lens or strap in another colour), nor with that
    reading off."""
    photo = _smooth_photo(10, 245)
    rows, cols = np.mgrid[:128, :256]
    small, large = ((rows - 64) ** 2 + (cols - 128) ** 2 <= r * r for r in (17, 35))
    triangle = (rows >= 39) & (rows <= 89) & (abs(cols - 128) <= (rows - 39) / 2)
    assert small.mean() < photomatch.STAMP_SHARE and large.mean() > photomatch.STAMP_OPAQUE_SHARE
    assert triangle.mean() < photomatch.STAMP_SHARE
    for mark, stamp in ((small, True), (large, False), (triangle, True)):
        parts = _parts_of_a_mark(photo, mark, (230, 200, 40), ~mark)
        assert parts[mark].all() == stamp and not parts[~mark].any(), mark.mean()
    shaded = photo.copy()
    shaded[triangle] += (-25, 20, 25)
    parts = _parts_of(photo, shaded, ~triangle)
    assert not parts.any()
    monkeypatch.setattr(photomatch, "STAMP_LEVELS", 0.0)
    assert not _parts_of_a_mark(photo, triangle, (230, 200, 40), ~triangle).any()


def test_an_opaque_mark_is_a_stamp_where_it_leaves_most_of_the_product_seen(monkeypatch) -> None:
    """A flat triangle of 7.5% of the image (touching emoji closed into one part; over the 5% of a
    solid stamp, under ``STAMP_OPAQUE_SHARE``) is a stamp over a product that it covers a fifth of;
    not where it is over a third of the products' area (``STAMP_OPAQUE_REGION``: a photo pasted
    into a template, different as a whole from another's, is half of it), as it is with that bound off."""
    photo = _smooth_photo(10, 245)
    rows, cols = np.mgrid[:128, :256]
    triangle = (rows >= 30) & (rows <= 100) & (abs(cols - 128) <= (rows - 30) / 2)
    assert photomatch.STAMP_SHARE < triangle.mean() < photomatch.STAMP_OPAQUE_SHARE
    marked = photo.copy()
    marked[triangle] = (230, 200, 40)
    for top, bottom, left, right, stamp in ((16, 112, 60, 196, True), (26, 104, 88, 168, False)):
        products = np.zeros(triangle.shape, bool)
        products[top:bottom, left:right] = True
        share = triangle.sum() / products.sum()
        assert (share < photomatch.STAMP_OPAQUE_REGION) == stamp, share
        parts = _parts_of(photo, marked, ~triangle, products)
        assert parts[triangle].all() == stamp and not parts[~triangle].any(), share
    monkeypatch.setattr(photomatch, "STAMP_OPAQUE_REGION", 1.0)
    assert _parts_of(photo, marked, ~triangle, products)[triangle].all()


@pytest.mark.parametrize(
    ("kind", "seed", "draw"), [("emoji", 36, 1), ("logo", 15, 1), ("logo", 28, 2), ("logo", 35, 1)]
)
def test_the_dev_sets_emoji_and_logos_over_a_product_are_left_out_as_stamps(kind: str, seed: int, draw: int,
                                                                            monkeypatch) -> None:  # fmt: skip
    """Emoji and logos of the dev set's edits over the product: no wider than tall, they were not
    read as captions, and their flat colour over the product's counted (0.11-0.14, refused). Each a
    solid mark of a few % of the image, they are left out as stamps (``STAMP_SHARE``)."""
    _left_out_by_the_reading(kind, seed, draw, "STAMP_SHARE", monkeypatch, "STAMP_LEVELS")


def test_beside_a_caption_part_the_rest_counts_more(monkeypatch) -> None:
    """A caption box over 22% of the area and, beside it, a patch of the photo recoloured (its
    texture kept) over 5%: the caption is left out, and what is left (0.09 of the rest) counts
    ``CAPTION_REST`` times (1.5: 0.13), over the 0.10 bound, where once it passed. Up to half a
    product may read as caption, so the rest must all but agree: a look-alike's differing garment
    can read as a filled box, and the little that is left differs too."""
    photo, box = _smooth_photo(20, 220), np.zeros((128, 256), bool)
    box[50:90, 40:220] = True
    edited = photo.copy()
    edited[box] = (40, 140, 60)
    edited[105:125, 0:90] += (50, -15, 0)
    region = np.ones(box.shape, bool)
    rest, more = photomatch.CAPTION_REST, _colour_change(photo, edited, region, same_texture=~box).change
    monkeypatch.setattr(photomatch, "CAPTION_REST", 1.0)
    once = _colour_change(photo, edited, region, same_texture=~box).change
    monkeypatch.setattr(photomatch, "CAPTION_SHARE", 0.0)
    counted = _colour_change(photo, edited, region, same_texture=~box).change
    assert 0.072 < once < 0.09 and more == pytest.approx(rest * once), (once, more)
    assert more > default_table("verify").max_colour_change and counted > 0.15, (more, counted)


@pytest.mark.parametrize(("seed", "name", "draw"), [(9, "noise", 0), (12, "noise", 2), (12, "text", 2)])
def test_grain_and_captions_are_trimmed_from_the_structure(seed: int, name: str, draw: int, monkeypatch) -> None:
    """The structure correlation leaves out the worst-fitting 30% of the interior (``TRIM``): a
    noisy copy's grain and a caption over the product fit badly wherever they are, and with
    nothing left out they pull these copies under ``min_structure`` (issue 14 phase 12; with 10%
    left out they did too until phase 20 read the misfit both ways)."""
    original = product_image(seed).resize((224, 224))
    edited, _ = edits.EDITS[name](original, random.Random(seed * 10 + draw))
    copy = decode_pixels(jpeg_bytes(edited, 90))
    scores = match_scores(np.asarray(original), copy)
    assert decide(scores), scores
    monkeypatch.setattr(photomatch, "TRIM", 0.0)
    narrow = match_scores(np.asarray(original), copy)
    assert narrow["structure"] < scores["structure"] and not decide(narrow), narrow


def pale(image: Image.Image) -> Image.Image:
    """``image``'s product as a pale garment on white: faint shading tells it from the ground."""
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    return Image.fromarray((255 - (255 - pixels) * 0.3).astype(np.uint8))


@pytest.mark.parametrize("seed", (1, 12, 13))
def test_a_frame_drawn_over_a_pale_product_photo_is_left_out(seed: int, monkeypatch) -> None:
    """A border copy (a frame of one colour painted over the photo's edge, here about a tenth of its
    side) of a pale garment on white. Measured against its ring (the frame's colour) all of the
    copy's photo is foreground, next to its original's product alone: the frame itself counted as
    changed colour, and on the set's white shirts the structure was compared on faint shading alone
    (issue 14 phase 19). With the frame left out and the photo's own ground for background, the copy
    has no colour change and is the same photograph; a look-alike in the same frame is still refused."""
    original = pale(product_image(seed))

    def framed(image: Image.Image) -> np.ndarray:
        copy = image.copy()
        ImageDraw.Draw(copy).rectangle((0, 0, copy.width - 1, copy.height - 1), outline=(40, 70, 140), width=24)
        return decode_pixels(jpeg_bytes(copy))

    scores = match_scores(np.asarray(original), framed(original))
    assert scores["colour_change"] <= 0.02 and decide(scores), scores
    other = match_scores(np.asarray(original), framed(pale(lookalike(product_image(seed), seed + 100))))
    assert not decide(other), other
    monkeypatch.setattr("dedup.photomatch.FRAME_UNIFORM", 0.0)  # frames not looked for: as before phase 19
    assert match_scores(np.asarray(original), framed(original))["colour_change"] >= 0.07


@pytest.mark.parametrize("seed", (6, 12, 13))
def test_a_blurred_frames_soft_edge_is_not_read_for_the_photos_ground(seed: int, monkeypatch) -> None:
    """A border copy blurred afterwards (a stacked edit: border, then blur or a rescale): the frame's
    inner edge fades into the photo over a few pixels, and the ring 2 pixels inside it read that
    fade, not the photo's white, for its ground. The whole photo was then foreground next to its
    original's product alone (0.85 of the image against 0.22-0.49), and the frame's edge counted as
    changed colour (issue 14 phase 23). Read from the first ring past the fade, the copy's product
    is its original's and the pair is the same photograph."""
    original = product_image(seed).resize((224, 224))
    copy = original.copy()
    ImageDraw.Draw(copy).rectangle((0, 0, 223, 223), outline=(20, 20, 20), width=10)
    soft = decode_pixels(jpeg_bytes(copy.filter(ImageFilter.GaussianBlur(2.5))))
    own = photomatch._ground(photomatch.Picture(np.asarray(original)).grey)[0].mean()
    assert abs(photomatch._ground(photomatch.Picture(soft).grey)[0].mean() - own) < 0.06
    scores = match_scores(np.asarray(original), soft)
    assert scores["colour_change"] <= 0.09 and decide(scores), scores
    monkeypatch.setattr(photomatch, "FRAME_EDGE", 2)  # the ring 2 pixels in alone: as before
    assert photomatch._ground(photomatch.Picture(soft).grey)[0].mean() > 0.8


@pytest.mark.parametrize("seed", (1, 12, 16, 18))
def test_the_structure_reads_alike_with_the_overlay_on_either_side(seed: int) -> None:
    """A copy with emoji over a pale product: the structure is the same whichever image is first.
    Fitted only one way, the overlay's strong edges on the second side set the slope, so the photo's
    own faint detail was trimmed as the misfit (0.45-0.71 against 0.95-1.0 the other way, under the
    rule's 0.8: issue 14 phase 20)."""
    original = pale(product_image(seed).resize((224, 224)))
    edited, _ = edits.EDITS["emoji"](original, random.Random(seed))
    copy = decode_pixels(jpeg_bytes(edited, 90))
    forward, backward = match_scores(np.asarray(original), copy), match_scores(copy, np.asarray(original))
    assert abs(forward["structure"] - backward["structure"]) < 0.02, (forward, backward)
    assert decide(forward) and decide(backward), (forward, backward)


def test_a_trimmed_correlation_leaves_out_an_overlay_on_either_side() -> None:
    """Faint detail, and strong edges added on one side over a tenth of it: the trimmed correlation
    finds the detail whichever side the edges are on; a look-alike's unrelated detail stays low."""
    rng = np.random.default_rng(0)
    detail = rng.normal(0, 1, 5000)
    overlaid = detail.copy()
    overlaid[:500] += rng.normal(0, 30, 500)
    assert _correlation(detail, overlaid) > 0.95 and _correlation(overlaid, detail) > 0.95
    assert abs(_correlation(detail, rng.normal(0, 1, 5000))) < 0.3


def test_a_noisy_copys_grain_on_flat_tiles_is_not_a_tile_that_disagrees() -> None:
    """Detail on one half, flat on the other, and the copy with grain of sigma 24 all over (issue
    14 phase 20: noisy copies were refused at tile agreement 0.33-0.46 with structure up to 0.99).
    Read without the pair's noise, the grain makes every flat tile textured, and uncorrelated;
    with it, those tiles are flat and the textured ones agree."""
    rng = np.random.default_rng(1)
    detail = _band(rng.normal(128, 100, (128, 128)).astype(np.float32))
    detail[:, 64:] = 0.0  # a flat ground
    grainy = detail + _band(rng.normal(0, 24, detail.shape).astype(np.float32))
    everywhere = np.ones(detail.shape, bool)
    assert _tile_agreement(detail, grainy, everywhere) == pytest.approx(0.5)
    assert _tile_agreement(detail, grainy, everywhere, noise=24.0) == 1.0
