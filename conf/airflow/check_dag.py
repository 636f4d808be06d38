"""Load a DAG file (or folder) in an Airflow DagBag and print what a scheduler would see, as JSON.

Run it with the Airflow venv's interpreter (``make airflow-venv``):

    .venv-airflow/bin/python conf/airflow/check_dag.py conf/airflow/dedup_nightly.py [--ds 2026-11-22] [--conf '{...}']

It prints the import errors, each DAG's schedule and tasks (with retries), and the command of
each bash task rendered for the date ``--ds`` with the run conf ``--conf`` (Variables are read
the way a worker reads them, e.g. from ``AIRFLOW_VAR_<NAME>`` environment variables). Exit
status 1 when a file does not import.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a DAG file or a DAGs folder")
    parser.add_argument("--ds", default="2026-11-22")
    parser.add_argument("--conf", default="{}", help="run conf (params) as JSON")
    args = parser.parse_args(argv)
    # stdout carries the JSON alone: Airflow's log lines go to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.execution_time.context import VariableAccessor

    bag = DagBag(dag_folder=args.path, safe_mode=False)
    report: dict = {"import_errors": dict(bag.import_errors), "dags": {}}
    for dag_id, dag in sorted(bag.dags.items()):
        params = {**dag.params.dump(), **json.loads(args.conf)}
        context = {
            "ds": args.ds,
            "params": params,
            "var": {"value": VariableAccessor(deserialize_json=False), "json": VariableAccessor(deserialize_json=True)},
        }
        tasks = {}
        for task in dag.tasks:
            entry = {
                "operator": type(task).__name__,
                "retries": task.retries,
                "retry_delay_s": task.retry_delay.total_seconds(),
                "retry_exponential_backoff": bool(task.retry_exponential_backoff),
                "execution_timeout_s": task.execution_timeout.total_seconds() if task.execution_timeout else None,
            }
            if hasattr(task, "bash_command"):
                entry["bash_command"] = task.render_template(task.bash_command, context, dag.get_template_env())
            tasks[task.task_id] = entry
        report["dags"][dag_id] = {
            "schedule": str(dag.schedule),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "params": sorted(dag.params),
            "tasks": tasks,
        }
    out.write(json.dumps(report, indent=2, default=str) + "\n")
    out.flush()
    return 1 if bag.import_errors else 0


if __name__ == "__main__":
    sys.exit(main())
