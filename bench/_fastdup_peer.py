"""fastdup on a folder of images, run in its own venv (.venv-fastdup): its defaults (its own CPU
model), ``run`` then ``connected_components``; prints one JSON line with the seconds and groups."""

from __future__ import annotations

import argparse
import json
import shutil
import time

import fastdup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    fd = fastdup.create(work_dir=args.work, input_dir=args.images)
    fd.run(overwrite=True, num_threads=args.threads)
    run_s = time.perf_counter() - started
    components, _ = fd.connected_components()
    seconds = time.perf_counter() - started
    sizes = components.groupby("component_id").size() if len(components) else []
    print(json.dumps({"status": "ok", "seconds": seconds, "run_s": run_s, "version": fastdup.__version__,
                      "components_over_1": int((sizes > 1).sum()) if len(components) else 0}))  # fmt: skip


if __name__ == "__main__":
    main()
