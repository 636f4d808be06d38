"""``dedup query``, ``dedup serve`` and ``dedup report``: look images up in a job's output (once, or
over HTTP), and browse its groups."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from typing import Any

from dedup.session import run_with_session


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML profile (Spark settings; job settings override the run's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting (repeatable)")  # fmt: skip


def _local_folder_missing(path: str) -> bool:
    """True for a local path (no scheme) that is not a folder: said before Spark starts."""
    return "://" not in path and not os.path.isdir(path)


def query_main(argv: list[str] | None = None) -> int:
    from dedup.query import QueryError, is_url, run_query

    parser = argparse.ArgumentParser(
        prog="dedup query", description="Find the products of a job's output that duplicate these images (JSON)."
    )
    parser.add_argument("--index", required=True, help="a dedup run's output folder")
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_URL", help="image files or http(s) URLs")
    parser.add_argument("--limit", type=int, default=50, help="matches listed per input, best first (default 50)")
    parser.add_argument("--candidates", action="store_true",
                        help="also list the candidates that were not duplicates, with their evidence")  # fmt: skip
    _add_settings(parser)
    args = parser.parse_args(argv)
    problems = [f"{path}: no such file" for path in args.inputs if not is_url(path) and not os.path.isfile(path)]
    if _local_folder_missing(args.index):
        problems.insert(0, f"index not found: {args.index} is not a folder (give a dedup run's --out folder)")
    if problems:
        print("\n".join(f"dedup query: {problem}" for problem in problems), file=sys.stderr)
        return 2

    def work(spark: Any, _cfg: dict) -> int:
        try:
            answer = run_query(spark, args.index, args.inputs, args.config, args.overrides, args.limit, args.candidates)
        except QueryError as exc:
            print(f"dedup query: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(answer, indent=2))
        return 0

    return run_with_session(args.config, args.overrides, work)


def serve_main(argv: list[str] | None = None) -> int:
    from dedup.query import Index, QueryError
    from dedup.serve import QueryServer

    parser = argparse.ArgumentParser(
        prog="dedup serve", description="Answer dedup query over HTTP: POST /query (image bytes), GET /query?url="
    )
    parser.add_argument("--index", required=True, help="a dedup run's output folder")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    _add_settings(parser)
    args = parser.parse_args(argv)
    if _local_folder_missing(args.index):
        print(f"dedup serve: index not found: {args.index} is not a folder", file=sys.stderr)
        return 2

    def work(spark: Any, _cfg: dict) -> int:
        try:
            index = Index(spark, args.index, args.config, args.overrides, cache=True)
        except QueryError as exc:
            print(f"dedup serve: {exc}", file=sys.stderr)
            return 2
        server = QueryServer(index, args.host, args.port)
        print(f"dedup serve: listening on {server.url} (POST /query, GET /query?url=, GET /health)", flush=True)

        def stop(_signum: int, _frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)  # a plain kill stops it as Ctrl-C does, the session with it
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
        server.stop()
        return 0

    return run_with_session(args.config, args.overrides, work)


def report_main(argv: list[str] | None = None) -> int:
    from dedup.report import CERTAINTIES, SIGNALS, ReportError, write_report

    parser = argparse.ArgumentParser(
        prog="dedup report", description="Write a static HTML report of a job output's duplicate groups."
    )
    parser.add_argument("--out", required=True, help="a dedup run's output folder")
    parser.add_argument("--dest", help="local folder for the report (default: OUT/report); replaced if it exists")
    parser.add_argument("--per-page", type=int, default=50, help="groups per page (default 50)")
    parser.add_argument(
        "--signal",
        action="append",
        choices=SIGNALS,
        metavar="SIGNAL",
        help=f"only groups with a pair decided by this signal ({', '.join(SIGNALS)}; repeatable)",
    )
    parser.add_argument("--certainty", action="append", choices=CERTAINTIES, metavar="CERTAINTY",
                        help=f"only groups of this certainty ({', '.join(CERTAINTIES)}; repeatable)")  # fmt: skip
    _add_settings(parser)
    args = parser.parse_args(argv)
    if _local_folder_missing(args.out):
        print(f"dedup report: output not found: {args.out} is not a folder", file=sys.stderr)
        return 2
    if args.per_page < 1:
        print("dedup report: --per-page must be at least 1", file=sys.stderr)
        return 2
    dest = args.dest or os.path.join(args.out, "report")

    def work(spark: Any, _cfg: dict) -> int:
        try:
            summary = write_report(spark, args.out, dest, per_page=args.per_page, signals=args.signal,
                                   certainties=args.certainty)  # fmt: skip
        except ReportError as exc:
            print(f"dedup report: {exc}", file=sys.stderr)
            return 2
        print(f"dedup report: {summary['groups']} groups on {summary['pages']} pages -> {dest}/index.html")
        return 0

    return run_with_session(args.config, args.overrides, work)
