"""The photo check's calibration over a finished run's candidates, shared by ``bench/calibrate_photo.py``,
``bench/photo_replay.py``, ``bench/photo_cost.py`` and ``bench/second_fit.py``: load a run's candidates
with their photo scores, replay a rule over them (:meth:`dedup.photomatch.PhotoRule.frame`), count the
pairs a replay decides otherwise, sweep a grid of thresholds on one split and choose the rule with the
highest recall at a target precision.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from dedup.config import job_settings_of
from dedup.devkit.metrics import copy_pairs, edge_components, score_groups
from dedup.photomatch import AT_LEAST, AT_MOST, BLURRED, FRAMED_APART, REGION, PhotoRule
from dedup.settings import GroupsSettings, VerifySettings, default_table, typed

GRID: dict[str, tuple[float, ...]] = {
    "min_inliers": (20, 30, 40, 60),
    "min_inlier_ratio": (0.4, 0.5, 0.6, 0.7),
    "min_structure": (0.7, 0.8, 0.9),
    "min_tile_agreement": (0.3, 0.5, 0.7, 0.9),
    "max_colour_change": (0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 1.0),
}
DEFAULT_GROUPS = default_table("groups")  # the bridge guard the job's groups get at its defaults
RULE_FIELDS = tuple(dict.fromkeys([*AT_LEAST, *AT_MOST, *BLURRED]))
"""The score fields a :class:`PhotoRule` reads (a run's, replayed over its candidates)."""
VIEW_FIELDS = (*(REGION + field for field in (*RULE_FIELDS, "matches")), "framed_placement")
"""... and those of the framed-photo view (the ratio-test matches: where both frame a photo; and
where the images' fit puts the two framed photos, :func:`dedup.photomatch.framed_placement`)."""


def load_candidates(job: Path) -> pd.DataFrame:
    """Candidate pairs (a, b, exact), their photo scores, one column per score (the framed-photo
    view's too, and the ``reason``, ``region_view`` and ``region_reason`` strings; None where a run
    did not record them), whether the photo check scored them (``scored``), and their
    ``region_cosine`` (NaN unless both images frame a photo, or for a run that did not record it)."""
    recorded = ds.dataset(job / "candidates").schema.names
    columns = ["a", "b", "method", "photo", *(["region_cosine"] if "region_cosine" in recorded else [])]
    frame = pd.read_parquet(job / "candidates", columns=columns)
    scores = pd.DataFrame([p if p is not None else {} for p in frame["photo"]], index=frame.index)
    out = pd.DataFrame({"a": frame["a"], "b": frame["b"], "exact": frame["method"] == "exact"})
    out["scored"] = frame["photo"].notna()
    for field in (*RULE_FIELDS, *VIEW_FIELDS):
        out[field] = scores[field].astype(float) if field in scores else np.nan
    for field in ("reason", "region_view", REGION + "reason"):
        out[field] = scores.get(field)
    out["checked"] = scores["reason"].isna() & frame["photo"].notna() if "reason" in scores else False
    out["weak_fit"] = scores["reason"].eq("weak_fit") if "reason" in scores else False
    out["region_cosine"] = frame["region_cosine"].astype(float) if "region_cosine" in frame else np.nan
    return out


def components(pairs: pd.DataFrame, groups: GroupsSettings = DEFAULT_GROUPS) -> list[list[str]]:
    """The groups (two or more members) the job makes of the ``a``-``b`` edges at ``groups``: their
    connected components, split by its bridge guard (``exact``: byte-identical edges, never cut)."""
    exact = pairs.get("exact")
    return edge_components(pairs["a"], pairs["b"], exact, groups.bridge_min_side, groups.max_size)


def regions_agree(
    region_cosine: pd.Series,
    min_region_cosine: float,
    placement: pd.Series | None = None,
    unframed: pd.Series | None = None,
) -> pd.Series:
    """:meth:`dedup.rule.Rule.regions_agree` over pandas columns: the framed photos' cosine reaches
    ``min_region_cosine``, or one image frames none (NaN), or the images' fit puts the two framed
    photos apart (``placement``, the ``framed_placement`` score, under :data:`FRAMED_APART`), or
    the photo check scored the pair without a framed photo in both images (``unframed``)."""
    apart = False if placement is None else placement.lt(FRAMED_APART)
    agree = region_cosine.isna() | (region_cosine >= min_region_cosine) | apart
    return agree if unframed is None else agree | unframed


def kept(candidates: pd.DataFrame, rule: PhotoRule, min_region_cosine: float) -> pd.Series:
    """Byte-identical pairs, and scored pairs whose scores pass ``rule`` (the job's photo check
    over columns, :meth:`dedup.photomatch.PhotoRule.frame`: a missing score fails an at-least
    bound and passes no at-most bound) and whose framed photos, where both images have one, reach
    ``min_region_cosine`` (the job's ``verify.min_region_cosine``,
    :meth:`dedup.rule.Rule.regions_agree`; -1: every pair)."""
    unframed = candidates["scored"] & candidates["region_view"].ne("both")
    agree = regions_agree(candidates["region_cosine"], min_region_cosine, candidates.get("framed_placement"), unframed)
    return candidates["exact"] | (candidates["scored"] & rule.frame(candidates) & agree)


def decisions_changed(
    before: pd.Series, after: pd.Series, candidates: pd.DataFrame, truth: list[dict[str, str]]
) -> dict[str, dict[str, int]]:
    """Per split (of each pair's first product), the ``candidates`` kept by ``after`` and not by
    ``before`` (gained) and the other way round (lost), copies of one photo and pairs of two
    products apart: what the selection rule reads before any grouping (issue 14, phases 25-28).

    >>> truth = [{"productId": "a", "group": "g", "split": "calibration"},
    ...          {"productId": "b", "group": "g", "split": "calibration"},
    ...          {"productId": "c", "group": "", "split": "calibration"}]
    >>> pairs = pd.DataFrame({"a": ["a", "a"], "b": ["b", "c"]})
    >>> decisions_changed(pd.Series([False, True]), pd.Series([True, False]), pairs, truth)["calibration"]
    {'copies_gained': 1, 'copies_lost': 0, 'others_gained': 0, 'others_lost': 1}
    """
    split_of = {row["productId"]: row["split"] for row in truth}
    out = {split: dict.fromkeys(("copies_gained", "copies_lost", "others_gained", "others_lost"), 0)
           for split in ("calibration", "holdout")}  # fmt: skip
    for verb, moved in (("gained", after & ~before), ("lost", before & ~after)):
        pairs = list(zip(candidates.loc[moved, "a"], candidates.loc[moved, "b"], strict=True))
        for (a, _), copy in zip(pairs, copy_pairs(pairs, truth), strict=True):
            if split_of.get(a) in out:
                out[split_of[a]][f"{'copies' if copy else 'others'}_{verb}"] += 1
    return out


def run_verify(job: Path) -> VerifySettings:
    """The ``verify`` table the run at ``job`` decided with (its manifest's, over the defaults)."""
    return typed(job_settings_of(json.loads((job / "manifest.json").read_text())["config"])).verify


def rule_of(verify: VerifySettings, point: Mapping[str, float]) -> PhotoRule:
    """The photo check of ``verify`` with a grid point's thresholds (``verify`` keys) laid over it."""
    return PhotoRule.of(verify).with_thresholds(point)


def grid_for(job: Path, grid: dict[str, tuple[float, ...]] = GRID) -> dict[str, tuple[float, ...]]:
    """``grid`` without the fit thresholds below those the run at ``job`` compared pairs at."""
    verify = run_verify(job)
    floor = {key: float(getattr(verify, key)) for key in ("min_inliers", "min_inlier_ratio", *BLURRED.values())}
    return {key: tuple(v for v in values if v >= floor.get(key, v)) for key, values in grid.items()}


def sweep(
    candidates: pd.DataFrame,
    truth: list[dict[str, str]],
    split: str,
    verify: VerifySettings,
    grid: dict[str, tuple[float, ...]] = GRID,
) -> list[dict[str, Any]]:
    """Group-level scores on ``split`` of every rule of ``grid`` (over the run's ``verify`` table)."""
    local = within(candidates, truth, split)
    points = []
    for values in itertools.product(*grid.values()):
        rule = dict(zip(grid, values, strict=True))
        pairs = local[kept(local, rule_of(verify, rule), verify.min_region_cosine)]
        scores = score_groups(components(pairs), truth, split)  # score_split's, the split's pairs chosen once
        points.append({"rule": rule, **{k: scores[k] for k in ("precision", "recall", "f1")}})
    return points


def within(pairs: pd.DataFrame, truth: list[dict[str, str]], split: str) -> pd.DataFrame:
    """The ``pairs`` both of whose listings are in ``split``."""
    ids = {t["productId"] for t in truth if t["split"] == split}
    return pairs[pairs["a"].isin(ids) & pairs["b"].isin(ids)]


def score_split(kept_pairs: pd.DataFrame, truth: list[dict[str, str]], split: str) -> dict[str, Any]:
    """:func:`dedup.devkit.metrics.score_groups` on ``split`` of the groups ``kept_pairs`` make among
    that split's own listings (a sweep's scores: pairs across the splits left out)."""
    return score_groups(components(within(kept_pairs, truth, split)), truth, split)


def choose(points: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """Highest recall at ``target`` precision (stricter settings first on ties); else most precise."""
    eligible = [p for p in points if p["precision"] >= target]
    if not eligible:
        return max(points, key=lambda p: (p["precision"], p["recall"]))

    def strictness(p: dict[str, Any]) -> tuple[float, ...]:
        return tuple(-v if k.startswith("min_") else v for k, v in p["rule"].items())

    return min(eligible, key=lambda p: (-p["recall"], strictness(p)))


def load_module(path: Path) -> ModuleType:
    """``dedup/photomatch.py`` of another commit (``git show COMMIT:dedup/photomatch.py > FILE``) as a module."""
    spec = importlib.util.spec_from_file_location("photomatch_against", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
