"""The ``dedup`` command: ``dedup run``, ``demo``, ``bench-set``, ``eval``, ``query``, ``serve`` and ``report``."""

from __future__ import annotations

import argparse
import sys

from jobs import dedup_job, demo, operate, quality


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="dedup", description="Find duplicate product listings by their images.")
    parser.add_argument(
        "command",
        choices=["run", "demo", "bench-set", "eval", "query", "serve", "report"],
        help="run: the job in local mode; demo: a self-made catalog; bench-set: a benchmark set from photos; "
        "eval: score an output against a bench set's truth; query: look images up in an output; "
        "serve: dedup query over HTTP; "
        "report: an HTML report of an output's groups",
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        return dedup_job.main(rest)
    if command == "demo":
        return demo.main(rest)
    if command == "bench-set":
        return quality.bench_set_main(rest)
    if command == "eval":
        return quality.eval_main(rest)
    if command == "query":
        return operate.query_main(rest)
    if command == "serve":
        return operate.serve_main(rest)
    if command == "report":
        return operate.report_main(rest)
    parser.error(f"unknown command {command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
