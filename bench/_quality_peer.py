"""Peer runs for ``bench/quality.py``: one method of imagededup or Immaculate on a folder, groups as JSON.

Runs under the peer's own interpreter (imagededup lives in ``.venv-bench``, Python 3.11; Immaculate in
``.venv-immaculate``, Python 3.12), each with its defaults:

    .venv-bench/bin/python bench/_quality_peer.py --tool imagededup --method phash --images DIR
    .venv-immaculate/bin/python bench/_quality_peer.py --tool immaculate --method sscd --images DIR

Prints one JSON line: ``links`` (file name -> the file names the peer calls its duplicates: for
imagededup, its duplicate map; for Immaculate, each set's first file -> the others), whose connected
components ``bench/quality.py`` scores as the peer's groups (:func:`dedup.devkit.metrics.components`:
this script runs without dedup installed), ``seconds`` (the whole call, hashing and search) and,
where the method cannot run, ``status: failed`` with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def run_imagededup(method: str, folder: str) -> dict[str, Any]:
    if method == "cnn":
        from imagededup.methods import CNN

        hasher = CNN(verbose=False)  # loads MobileNetV3 weights: a download torchvision makes at first use
        started = time.perf_counter()
        links = hasher.find_duplicates(image_dir=folder)
    else:
        from _imagededup_peer import import_methods

        methods, _ = import_methods()
        hasher = {"phash": methods.PHash, "dhash": methods.DHash, "whash": methods.WHash, "ahash": methods.AHash}[
            method
        ](verbose=False)
        started = time.perf_counter()
        links = hasher.find_duplicates(image_dir=folder)  # default max_distance_threshold=10
    seconds = time.perf_counter() - started
    import imagededup

    return {"links": links, "seconds": seconds, "version": imagededup.__version__}


def run_immaculate(method: str, folder: str) -> dict[str, Any]:
    import immaculate

    started = time.perf_counter()
    result = immaculate.find_duplicates(folder, method=method)
    seconds = time.perf_counter() - started
    groups = [sorted(Path(p).name for p in group) for group in [*result.exact, *result.near]]
    return {"links": _links(groups), "seconds": seconds, "version": immaculate.__version__,
            "skipped": len(result.skipped)}  # fmt: skip


def _links(groups: list[list[str]]) -> dict[str, list[str]]:
    """Each set's first file -> the others (exact and near sets may share files: their components merge them)."""
    links: dict[str, list[str]] = {}
    for group in groups:
        for name in group[1:]:
            links.setdefault(group[0], []).append(name)
    return links


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tool", choices=["imagededup", "immaculate"], required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--images", required=True)
    args = parser.parse_args(argv)
    record: dict[str, Any] = {"tool": args.tool, "method": args.method, "python": platform.python_version(),
                              "cpu_count": os.cpu_count()}  # fmt: skip
    try:
        runner = run_imagededup if args.tool == "imagededup" else run_immaculate
        record.update(runner(args.method, args.images), status="ok")
    except Exception as exc:  # a peer that cannot run is reported, not fatal
        record.update(status="failed", reason=f"{type(exc).__name__}: {str(exc)[:500]}")
    print()
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
