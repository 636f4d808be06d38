"""Airflow 3 DAG: the dedup job every night, through ``spark-submit.sh``.

Copy (or link) this file into the DAGs folder. Every path comes from, in order: the run's params
(``airflow dags trigger dedup_nightly --conf '{"catalog": "..."}'`` or the trigger form), the
Airflow Variables below, then the defaults here:

==================  =====================================  ===============================
param               Variable                               default
==================  =====================================  ===============================
``repo``            ``dedup_repo``                         ``/opt/dedup``
``master``          ``dedup_master``                       ``yarn``
``config``          ``dedup_config``                       ``<repo>/conf/cluster.toml``
``catalog``         ``dedup_catalog``                      ``/data/dumps/catalog.csv``
``out_root``        ``dedup_out_root``                     ``/data/dedup``
``run_date``        (none)                                 the run's ``{{ ds }}``
``previous``        (none)                                 the last finished run; ``none``: a full run
``sets``            (none)                                 ``[]`` (``--set key=value`` each)
==================  =====================================  ===============================

Each run writes to ``<out_root>/<run date>`` and is incremental: ``conf/last-finished-run.sh``
finds the last finished run before it (the latest ``<out_root>/<date>`` holding a
``manifest.json``) and the command passes it as ``--previous``, so only new and changed listings
are downloaded and embedded, and group ids carry over (``changes/`` says what changed). The first
night finds none and runs in full. A retry runs into the same folder with the same previous run,
so the images the failed attempt downloaded are reused too (the fetch stage skips what is already
fetched ok). ``conf/airflow/check_dag.py`` loads this file in a DagBag and renders the command.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

COMMAND = """\
{%- set repo = params.repo or var.value.get('dedup_repo', '/opt/dedup') -%}
{%- set master = params.master or var.value.get('dedup_master', 'yarn') -%}
{%- set config = params.config or var.value.get('dedup_config', repo ~ '/conf/cluster.toml') -%}
{%- set catalog = params.catalog or var.value.get('dedup_catalog', '/data/dumps/catalog.csv') -%}
{%- set out_root = params.out_root or var.value.get('dedup_out_root', '/data/dedup') -%}
{%- set run_date = params.run_date or ds -%}
cd {{ repo | sh }} && \
{%- if params.previous and params.previous != 'none' %} previous={{ params.previous | sh }} &&
{%- elif params.previous == 'none' %} previous= &&
{%- else %} previous="$(conf/last-finished-run.sh {{ out_root | sh }} {{ run_date | sh }})" &&
{%- endif %} echo "dedup_nightly: previous run: ${previous:-none (a full run)}" && \
./spark-submit.sh --master {{ master | sh }} --config {{ config | sh }} \
--catalog {{ catalog | sh }} --out {{ (out_root ~ '/' ~ run_date) | sh }} ${previous:+--previous "$previous"}
{%- for assignment in params.sets %} --set {{ assignment | sh }}{% endfor %}
"""


def _optional(description: str) -> Param:
    return Param(None, type=["null", "string"], description=description)


with DAG(
    dag_id="dedup_nightly",
    description="Duplicate product listings by image: the nightly dedup run on Spark",
    schedule="30 2 * * *",  # 02:30 UTC, after the catalog dump lands
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # two runs must not write one output tree at once
    default_args={
        "owner": "dedup",
        "retries": 2,
        "retry_delay": timedelta(minutes=20),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=2),
        "execution_timeout": timedelta(hours=8),
    },
    params={
        "repo": _optional("checkout of the dedup repository on the worker"),
        "master": _optional("spark-submit --master (yarn, spark://host:7077, k8s://..., local[4])"),
        "config": _optional("TOML profile"),
        "catalog": _optional("the catalog dump to read"),
        "out_root": _optional("outputs go to <out_root>/<run date>"),
        "run_date": _optional("the output folder's date (default: the run's ds)"),
        "previous": _optional("--previous: a run's folder, or none for a full run (default: the last finished run)"),
        "sets": Param([], type="array", items={"type": "string"}, description="--set key=value overrides"),
    },
    user_defined_filters={"sh": lambda value: shlex.quote(str(value))},
    tags=["dedup", "spark"],
) as dag:
    BashOperator(
        task_id="dedup_run",
        bash_command=COMMAND,
        skip_on_exit_code=None,  # every non-zero exit is a failure (and retried), never a skip
    )
