"""Peer timing for ``bench/hash_path.py``: imagededup's hashing on a folder of images, as JSON on stdout.

Runs under the peer's interpreter (imagededup installed there), not the project's venv:

    /tmp/venvbench/bin/python bench/_imagededup_peer.py --method phash --images DIR --repeats 3

Times ``encode_images(image_dir=DIR)`` and ``find_duplicates(encoding_map=..., max_distance_threshold=10)``
separately, each repeat with a fresh hasher, with imagededup's defaults (multiprocessing over every
core); only ``verbose=False`` is set, to keep the progress bars off stderr. Imports are not timed.

If ``import imagededup.methods`` fails on torchvision (hashing never uses it; the CNN method does),
the module that pulls torchvision in (``imagededup.utils.models``) is replaced by a stub and the
import retried; the JSON says so under ``import_shim``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import types
from typing import Any


def import_methods() -> tuple[Any, str | None]:
    """``imagededup.methods`` and, where a shim was needed, why."""
    try:
        import imagededup.methods as methods

        return methods, None
    except (ImportError, RuntimeError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    for name in [m for m in sys.modules if m == "imagededup" or m.startswith(("imagededup.", "torchvision"))]:
        del sys.modules[name]
    stub = types.ModuleType("imagededup.utils.models")
    stub.DEFAULT_MODEL_NAME = "default_model"  # type: ignore[attr-defined]
    stub.CustomModel = type("CustomModel", (), {})  # type: ignore[attr-defined]
    stub.MobilenetV3 = type("MobilenetV3", (), {})  # type: ignore[attr-defined]
    sys.modules["imagededup.utils.models"] = stub
    import imagededup.methods as methods

    return methods, f"imagededup.utils.models stubbed (CNN unusable) after: {reason}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["phash", "dhash"], required=True)
    parser.add_argument("--images", required=True, help="flat folder of images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-distance", type=int, default=10)
    parser.add_argument("--find-repeats", type=int, help="repeats of find_duplicates (default: --repeats)")
    args = parser.parse_args(argv)

    methods, shim = import_methods()
    import imagededup

    hasher_class = {"phash": methods.PHash, "dhash": methods.DHash}[args.method]
    runs: list[dict[str, Any]] = []
    find_repeats = args.repeats if args.find_repeats is None else args.find_repeats
    for repeat in range(args.repeats):
        hasher = hasher_class(verbose=False)
        started = time.perf_counter()
        encodings = hasher.encode_images(image_dir=args.images)
        encoded = time.perf_counter()
        run: dict[str, Any] = {
            "encode_seconds": encoded - started,
            "images_encoded": sum(1 for value in encodings.values() if value),
        }
        if repeat < find_repeats:  # find_duplicates is O(N^2): minutes at 20k, so fewer repeats may do
            duplicates = hasher.find_duplicates(encoding_map=encodings, max_distance_threshold=args.max_distance)
            run["find_seconds"] = time.perf_counter() - encoded
            run["images_with_duplicates"] = sum(1 for value in duplicates.values() if value)
            run["duplicate_links"] = sum(len(value) for value in duplicates.values())
        runs.append(run)
    print()  # the JSON goes on a line of its own
    json.dump(
        {
            "method": args.method,
            "images": args.images,
            "max_distance_threshold": args.max_distance,
            "runs": runs,
            "import_shim": shim,
            "python": platform.python_version(),
            "imagededup": getattr(imagededup, "__version__", "unknown"),
            "cpu_count": os.cpu_count(),
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
