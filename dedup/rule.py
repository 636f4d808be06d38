"""The duplicate rule, in one place: which candidates a run generates, which thresholds decide a
pair, and whether the photo check runs, built once from the settings (:meth:`Rule.of`).

The job's candidates and verify stages (``jobs/stages.py``), ``dedup query`` (:mod:`dedup.query`),
``dedup eval``'s sweep (:mod:`dedup.devkit.evaluate`) and the calibration scripts in ``bench/``
all decide through it. The rule, as :func:`dedup.verify.score_pairs` applies it to a pair's
signals (``method`` names the signal that decided):

1. **Byte-identical** images are duplicates (``exact``).
2. **With the photo check** (embeddings, ``verify.photo_match`` on: the default), a pair whose
   dHash distance is at most ``verify.photo_max_distance`` or whose cosine reaches the candidate
   floor (or any cosine, as one of a product's ``cosine.nearest`` nearest neighbours) is
   compared by :mod:`dedup.photomatch` and is a duplicate when its scores pass
   :class:`dedup.photomatch.PhotoRule` (``photo``); no other pair is.
3. **Without it** (``embed.backend=none`` or ``verify.photo_match=false``): dHash distance at most
   ``hash.max_distance`` with thumbnails within ``verify.max_thumb_distance`` (``dhash``), or, with
   embeddings, a cosine at or above the deciding cosine (``cosine``).
4. **Framed photos must agree.** Where both images frame a smaller photo (each has a content
   region, :mod:`dedup.content`: a screenshot, a banner), a pair that 2 or 3 would keep is not a
   duplicate when the two regions' embeddings are under ``verify.min_region_cosine``
   (``region_cosine``): two products pasted into the same template fit and compare as one
   photograph on the frame.

Candidates: byte-identical pairs, dHash pairs within :attr:`Rule.near_distance` (with the photo
check, ``verify.photo_max_distance`` when that is smaller than ``hash.max_distance``: farther dHash
pairs could only be decided by the cosine), and with embeddings, cosine pairs at or above
:attr:`Rule.floor` (the kNN's nearest :attr:`Rule.nearest` at any cosine). The floor is
``cosine.min_cosine`` and the deciding cosine ``verify.min_cosine``; 0 means the backend's
calibrated value (:func:`cosine_thresholds`).

>>> from dedup.config import load_config
>>> from dedup.settings import typed
>>> rule = Rule.of(typed(load_config()), dim=512)
>>> rule.photo is not None, rule.near_distance, rule.floor
(True, 0, 0.5)
>>> hashes = Rule.of(typed(load_config(overrides=["embed.backend=none"])), dim=0)
>>> hashes.photo is None, hashes.near_distance, hashes.floor
(True, 3, None)
"""

from __future__ import annotations

import dataclasses

from pyspark.sql import Column
from pyspark.sql import functions as F

from dedup import content, embed, knn
from dedup.photomatch import FRAMED_APART, FitGate, PhotoRule
from dedup.settings import CosineSettings, EmbedSettings, HashSettings, Settings, VerifySettings


def cosine_thresholds(
    embed_settings: EmbedSettings, cosine_settings: CosineSettings, verify_settings: VerifySettings
) -> tuple[float, float]:
    """(candidate floor, deciding cosine): ``cosine.min_cosine`` and ``verify.min_cosine`` where
    set (above 0), else the backend's calibrated values (:data:`dedup.embed.CANDIDATE_COSINE`,
    :data:`dedup.embed.CALIBRATED_MIN_COSINE`); ValueError for a backend without one."""
    backend = embed_settings.backend
    chosen = []
    for key, settings, table in (
        ("cosine", cosine_settings, embed.CANDIDATE_COSINE),
        ("verify", verify_settings, embed.CALIBRATED_MIN_COSINE),
    ):
        value = settings.min_cosine
        if value <= 0 and backend not in table:
            raise ValueError(f"embed.backend={backend} has no calibrated threshold: set {key}.min_cosine")
        chosen.append(value if value > 0 else table[backend])
    return chosen[0], chosen[1]


def check_settings(settings: Settings) -> None:
    """Fail before Spark starts on settings the rule cannot work with (ValueError with the
    reason): a missing threshold of a known embedder, then the embedder's
    (:func:`dedup.embed.check_settings`: an unknown backend, a missing model), then the kNN's."""
    if settings.embed.backend in embed.BACKENDS and settings.embed.backend != "none":
        cosine_thresholds(settings.embed, settings.cosine, settings.verify)
    embed.check_settings(settings.embed)
    knn.check_settings(settings.cosine)


@dataclasses.dataclass(frozen=True)
class Rule:
    """The duplicate rule of a run whose embeddings have ``dim`` dimensions (0: hashes only)."""

    dim: int  # embedding dimension (0: no embeddings, no cosine)
    photo: PhotoRule | None  # the photo check's thresholds when it decides, else None
    near_distance: int  # dHash candidates within this distance
    max_distance: int  # the hash rule: dHash distance at most this (hash.max_distance)
    match_flips: bool  # the mirrored image's dHash counts too (hash.match_flips)
    max_thumb_distance: float  # the hash rule: thumbnails this close (verify.max_thumb_distance)
    photo_max_distance: int  # photo-checked: dHash pairs this close (verify.photo_max_distance)
    floor: float | None  # cosine candidates at or above this (None: no embeddings)
    min_cosine: float | None  # the cosine rule: duplicates at or above this (None: no embeddings)
    exclude_same_family: bool  # same-family pairs set apart (verify.exclude_same_family)
    min_region_cosine: float  # framed photos: regions under this cosine refuse (verify.min_region_cosine)
    framed: EmbedSettings | None = None  # the photo check compares framed photos too, found at these settings
    nearest: int = 0  # kNN: each product's nearest this many are candidates under the floor too (cosine.nearest)

    @classmethod
    def of(cls, settings: Settings, dim: int) -> Rule:
        """The rule of ``settings`` over features with ``dim``-dimensional embeddings."""
        return cls.from_tables(settings.hash, settings.embed, settings.cosine, settings.verify, dim)

    @classmethod
    def from_tables(
        cls,
        hash_settings: HashSettings,
        embed_settings: EmbedSettings,
        cosine_settings: CosineSettings,
        verify_settings: VerifySettings,
        dim: int,
    ) -> Rule:
        """:meth:`of` from the four tables the rule reads."""
        photo = PhotoRule.of(verify_settings) if dim and verify_settings.photo_match else None
        floor, min_cosine = cosine_thresholds(embed_settings, cosine_settings, verify_settings) if dim else (None, None)
        max_distance = hash_settings.max_distance
        near = min(max_distance, verify_settings.photo_max_distance) if photo else max_distance
        return cls(
            dim=int(dim), photo=photo, near_distance=near, max_distance=max_distance,
            match_flips=hash_settings.match_flips, max_thumb_distance=verify_settings.max_thumb_distance,
            photo_max_distance=verify_settings.photo_max_distance, floor=floor, min_cosine=min_cosine,
            exclude_same_family=verify_settings.exclude_same_family,
            min_region_cosine=verify_settings.min_region_cosine,
            framed=embed_settings if photo and content.region_on(embed_settings) else None,
            nearest=cosine_settings.nearest if dim and cosine_settings.method == "knn" else 0,
        )  # fmt: skip

    @property
    def photo_checked(self) -> bool:
        """Whether candidates are decided by the photo check."""
        return self.photo is not None

    def photo_gate(self) -> Column:
        """Which scored pairs the photo check compares: dHash within ``photo_max_distance``, or a
        cosine at or above the floor, or with :attr:`nearest` any cosine (a product's nearest
        neighbours under the floor are candidates; the kNN bounds them); byte-identical pairs are
        decided before."""
        near = F.col("distance") <= self.photo_max_distance
        if self.nearest:
            return near | F.col("cosine").isNotNull()
        return near | F.coalesce(F.col("cosine") >= self.floor, F.lit(False))

    def fit_gate(self) -> FitGate:
        """The keypoint fit a pair must reach to be compared further (``weak_fit`` otherwise)."""
        return self.photo.fit_gate()

    def regions_agree(self) -> Column:
        """False where both products frame a photo and the two framed photos' cosine
        (``region_cosine``; null unless both have a region) is under ``min_region_cosine``, unless
        the images' fit puts the two framed photos apart (different parts of one photograph: the
        ``photo`` score ``framed_placement`` under :data:`dedup.photomatch.FRAMED_APART`), or the
        photo check scored the pair and did not find a framed photo in both images (``photo``'s
        ``region_view`` not ``both``: one region is a photo on a pad, which the photo check does not
        frame, or was found on the embedder's decode only; issue 14 phase 32)."""
        photo = F.col("photo")
        apart = F.coalesce(photo["framed_placement"] < FRAMED_APART, F.lit(False))
        unframed = photo.isNotNull() & ~F.coalesce(photo["region_view"] == "both", F.lit(False))
        return F.coalesce(F.col("region_cosine") >= self.min_region_cosine, F.lit(True)) | apart | unframed

    def decision(self) -> Column:
        """The ``method`` that decides a scored pair (``exact``, ``photo``, ``dhash``, ``cosine``;
        null: not a duplicate), over its ``method`` (exact or dhash), ``distance``,
        ``thumb_distance``, ``cosine``, ``region_cosine`` and ``photo`` columns."""
        exact = F.col("method") == "exact"
        decided = F.when(exact, "exact").when(~self.regions_agree(), F.lit(None).cast("string"))
        if self.photo is not None:
            return decided.when(self.photo.column(F.col("photo")), "photo")
        by_hash = (F.col("distance") <= self.max_distance) & (F.col("thumb_distance") <= self.max_thumb_distance)
        decided = decided.when(by_hash, "dhash")
        if self.dim:
            decided = decided.when(F.coalesce(F.col("cosine") >= self.min_cosine, F.lit(False)), "cosine")
        return decided
