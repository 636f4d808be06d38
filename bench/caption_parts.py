"""The caption reading of the colour change, its constants varied one at a time, on the pairs a run
refuses on the colour bound alone.

``photomatch._caption_parts`` leaves out of the colour change the changed parts that read as a
caption: a filled box (``CAPTION_FILL`` of its bounding box, after closing the changed pixels by
``CAPTION_CLOSE``), ``CAPTION_ASPECT`` times as wide as tall, at most ``CAPTION_SHARE`` of the
products' area, whose texture differs in ``CAPTION_TEXTURE`` of it, and counts what is left beside
them ``CAPTION_REST`` times (phase 24: share 0.5, fill 0.45, the rest twice, chosen by replaying
the groups with ``bench/photo_replay.py --set``). Its first constants were chosen on
the candidates of one split (both products in it) that a run made without the reading refuses on
``colour_change`` alone: the fit, the structure and the tiles pass the run's rule. This refits and
compares each of them again (``photo_replay.refit``, ``compare_pixels``) at every point (the
module's defaults, the reading off, each constant one step either way) and counts the copies (one
truth group) and the other pairs now under ``max_colour_change``. A pair's decision here is its
own: the groups, and the look-alikes that join one through a copy, are the job's to measure.

Run from the repository root, on outputs of ``bench/quality.py`` made before the reading (phase
21's ``bench-out/r57``, new set, and ``r58``, old set)::

    .venv/bin/python bench/caption_parts.py --job bench-out/r57/job/default --set bench-out/dev2/set
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from lost_copies import SCORE_COLUMNS
from photo_replay import image_bytes, refit

from dedup import photomatch
from dedup.devkit.benchset import read_truth
from dedup.devkit.calibration import load_candidates, run_verify
from dedup.devkit.metrics import copy_pairs

STEPS = {"CAPTION_CLOSE": (3, 7), "CAPTION_FILL": (0.5, 0.6), "CAPTION_ASPECT": (1.0, 2.0),
         "CAPTION_SHARE": (0.2, 0.5), "CAPTION_TEXTURE": (0.0, 0.3)}  # fmt: skip


def colour_only(candidates: pd.DataFrame, split_of: dict[str, str], split: str, rule: photomatch.PhotoRule) -> list:
    """The compared pairs of ``split`` (both products in it) that ``rule`` refuses on the colour alone."""
    pairs = []
    for row in candidates[candidates["scored"] & ~candidates["exact"] & candidates["reason"].isna()].itertuples():
        if split_of.get(row.a) != split or split_of.get(row.b) != split:
            continue
        scores = {field: None if pd.isna(getattr(row, field)) else getattr(row, field) for field in SCORE_COLUMNS}
        if rule.failing(scores) == ["colour_change"]:
            pairs.append((row.a, row.b))
    return pairs


def under_bound(job: Path, pairs: list, bound: float, points: dict[str, dict[str, float]]) -> dict[str, list[bool]]:
    """Per point (constants of ``photomatch`` set for it), whether each pair's colour change is under ``bound``."""
    data = image_bytes(job, {p for pair in pairs for p in pair})
    fits = refit(photomatch, pairs, data, photomatch.PhotoRule.of(run_verify(job)).fit_gate())
    defaults = {name: getattr(photomatch, name) for name in STEPS}
    out: dict[str, list[bool]] = {name: [] for name in points}
    for a, b in pairs:
        fit, maps = fits[(a, b)]
        pixels = photomatch.decode_for_match(data[a]), photomatch.decode_for_match(data[b])
        for name, constants in points.items():
            for constant, value in {**defaults, **constants}.items():
                setattr(photomatch, constant, value)
            change = None if maps is None else photomatch.compare_pixels(*pixels, dict(fit), maps)["colour_change"]
            out[name].append(change is not None and change <= bound)
    for constant, value in defaults.items():
        setattr(photomatch, constant, value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="a job output folder made without the caption reading")
    parser.add_argument("--set", type=Path, required=True, help="the bench set the job ran on (truth.csv)")
    parser.add_argument("--split", choices=("calibration", "holdout"), default="calibration")
    args = parser.parse_args(argv)
    truth = read_truth(args.set / "truth.csv")
    verify = run_verify(args.job)
    pairs = colour_only(load_candidates(args.job), {r["productId"]: r["split"] for r in truth}, args.split,
                        photomatch.PhotoRule.of(verify))  # fmt: skip
    copies = copy_pairs(pairs, truth)
    points: dict[str, dict[str, float]] = {"defaults": {}, "off (CAPTION_SHARE 0)": {"CAPTION_SHARE": 0.0}}
    points |= {f"{name} {value}": {name: value} for name, values in STEPS.items() for value in values}
    passed = under_bound(args.job, pairs, verify.max_colour_change, points)
    result: dict[str, Any] = {
        "command": " ".join([sys.executable, *sys.argv]),
        "pairs": {"copies": sum(copies), "not": len(copies) - sum(copies)},
        "under the bound": {
            name: {"copies": sum(p and c for p, c in zip(ok, copies, strict=True)),
                   "not": sum(p and not c for p, c in zip(ok, copies, strict=True))}
            for name, ok in passed.items()
        },
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
