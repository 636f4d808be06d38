"""``manifest.json``: what one run read, found and wrote, assembled from the stages' results.

The manifest is written last (``outputs.write_text``), so its presence marks a finished run;
``reconciles`` says every input row ended as ok, rejected or failed.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

import PIL
import pyarrow
import pyspark

import dedup
from dedup import incremental
from jobs.stages import (
    CandidatesResult,
    FeaturesResult,
    FetchResult,
    GroupsResult,
    IngestResult,
    OutputsResult,
    VerifyResult,
)


@dataclass
class Run:
    """One run's inputs and the results of its stages, in the order they ran."""

    catalog: str
    out: str
    previous: str | None
    cfg: dict[str, Any]
    started: float  # time.time() when the run began
    ingested: IngestResult
    fetched: FetchResult
    made: FeaturesResult
    found: CandidatesResult
    verified: VerifyResult
    grouped: GroupsResult
    statuses: OutputsResult


def build_manifest(run: Run, stage_seconds: dict[str, float], spark_version: str) -> dict[str, Any]:
    """The manifest's fields, in the order ``manifest.json`` lists them."""
    ingested, fetched, made, found = run.ingested, run.fetched, run.made, run.found
    verified, grouped, by_status = run.verified, run.grouped, run.statuses.by_status
    manifest = {
        "catalog": run.catalog,
        "out": run.out,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows_read": ingested.n_rows,
        "rows_ok": by_status.get("ok", 0),
        "rows_rejected": by_status.get("rejected", 0),
        "rows_failed": by_status.get("failed", 0),
        "rejected_by_reason": ingested.rejected_by_reason,
        "failures_by_reason": run.statuses.failures_by_reason,
        "images_downloaded": fetched.n_downloaded,
        "images_reused": fetched.n_reused,
        "previous": run.previous,
        "images_from_previous": fetched.n_carried,
        "features_reused": made.made.reused,
        "features_computed": made.n_rows - made.made.reused,
        "feature_settings_match": made.made.settings_match,
        "feature_format": incremental.FEATURE_FORMAT,
        "products_hashed": found.n_items,
        "candidates": found.n_candidates,
        "pairs": verified.n_pairs,
        "pairs_by_method": verified.pairs_by_method,
        "pairs_excluded_same_family": verified.n_family_excluded,
        "lsh": {"band_widths": list(found.near_plan.widths), "probe_radius": found.near_plan.radius,
                "skipped_buckets": found.skipped_buckets, "rows_in_skipped_buckets": found.rows_in_skipped_buckets},
        "embedding": {"backend": run.cfg["embed"]["backend"], "dim": made.dim, "candidate_cosine": found.rule.floor,
                      "min_cosine": found.rule.min_cosine, "cosine_lsh": found.cosine_lsh},
        "groups": sum(grouped.histogram.values()),
        "products_in_groups": grouped.n_members,
        "group_sizes": grouped.histogram,
        "largest_group": grouped.largest,
        "groups_resplit": grouped.resplit_components,
        "groups_bridges_cut": grouped.bridges_cut,  # links the bridge guard cut (dedup/bridges.py)
        "groups_oversized": grouped.n_oversized,
        "group_changes": grouped.changes_by_kind,  # since --previous (without one, every group is new); changes/
        "stage_seconds": stage_seconds,
        "config": run.cfg,
        "versions": {
            "dedup": dedup.__version__, "python": platform.python_version(), "spark": spark_version,
            "pyspark": pyspark.__version__, "pyarrow": pyarrow.__version__, "pillow": PIL.__version__,
        },
    }  # fmt: skip
    manifest["reconciles"] = (
        manifest["rows_read"] == manifest["rows_ok"] + manifest["rows_rejected"] + manifest["rows_failed"]
    )
    return manifest
