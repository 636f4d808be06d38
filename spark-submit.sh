#!/usr/bin/env bash
# Run the dedup job with spark-submit, on any master (local, spark://, yarn, k8s://).
#
#   ./spark-submit.sh [--ship-env] [--dry-run] [spark-submit options] --catalog PATH --out DIR
#                     [--config FILE] [--previous DIR] [--set KEY=VALUE ...]
#
# e.g.  ./spark-submit.sh --ship-env --master yarn --deploy-mode cluster --config conf/cluster.toml \
#           --catalog hdfs:///dumps/catalog.csv --out hdfs:///dedup/2026-11-22
#
# Job options (--catalog, --out, --config, --previous, --set) go to the job; everything else goes
# to spark-submit. The package is zipped into dist/dedup.zip and shipped with --py-files; the
# profile given with --config is shipped with --files too, for a driver in cluster deploy mode.
# --ship-env (or DEDUP_SHIP_ENV=1) packs .venv with venv-pack into dist/deps.tar.gz (pyspark
# left out: the cluster's Spark brings it), ships it with --archives ...#environment and runs the
# executors' Python (and a cluster-mode driver's) as ./environment/bin/python. DEDUP_ENV_ARCHIVE
# names a ready archive instead; DEDUP_ENV_EXCLUDE leaves site-packages out by glob, e.g.
# "tensorflow* keras*" (1.3 GB) where no executor runs embed.backend=vgg16. --dry-run (or DEDUP_DRY_RUN=1) prints the command, runs nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

ship_env="${DEDUP_SHIP_ENV:-0}"
dry_run="${DEDUP_DRY_RUN:-0}"
deploy_mode=client
submit_args=()
job_args=()
while (($#)); do
  case "$1" in
    --ship-env) ship_env=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --catalog|--out|--set|--previous)
      job_args+=("$1" "$2"); shift 2 ;;
    --config)
      job_args+=("$1" "$2"); submit_args+=(--files "$2"); shift 2 ;;
    --catalog=*|--out=*|--set=*|--previous=*)
      job_args+=("$1"); shift ;;
    --deploy-mode)
      deploy_mode="$2"; submit_args+=("$1" "$2"); shift 2 ;;
    --deploy-mode=*)
      deploy_mode="${1#*=}"; submit_args+=("$1"); shift ;;
    *)
      submit_args+=("$1"); shift ;;
  esac
done
if [[ ${#job_args[@]} -eq 0 ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

mkdir -p "$here/dist"
rm -f "$here/dist/dedup.zip"
# The package and the job without the dev kit (dedup/devkit/: the demo's generator, the
# fault-injecting image server, the bench set) and the commands that use it: executors never
# import them. tests/test_submit.py checks what the zip holds.
(cd "$here" && python3 - <<'EOF'
import os, zipfile
LEFT_OUT = {"dedup/devkit", "jobs/cli.py", "jobs/demo.py", "jobs/quality.py"}
with zipfile.ZipFile("dist/dedup.zip", "w", zipfile.ZIP_DEFLATED) as package:
    for top in ("dedup", "jobs"):
        for folder, subfolders, names in os.walk(top):
            subfolders[:] = sorted(d for d in subfolders if f"{folder}/{d}" not in LEFT_OUT and d != "__pycache__")
            for name in sorted(names):
                if name.endswith(".py") and f"{folder}/{name}" not in LEFT_OUT:
                    package.write(f"{folder}/{name}")
EOF
)

submit="${SPARK_SUBMIT:-}"
if [[ -z "$submit" ]]; then
  if [[ -x "$here/.venv/bin/spark-submit" ]]; then submit="$here/.venv/bin/spark-submit"
  else submit="$(command -v spark-submit)"; fi
fi
local_python="${PYSPARK_DRIVER_PYTHON:-$here/.venv/bin/python}"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$here/.venv/bin/python}"

env_args=()
if [[ "$ship_env" == 1 ]]; then
  archive="${DEDUP_ENV_ARCHIVE:-}"
  if [[ -z "$archive" ]]; then
    excludes=(--exclude 'lib/python*/site-packages/pyspark/*' --exclude '*__editable__*')
    suffix=""
    for pattern in ${DEDUP_ENV_EXCLUDE:-}; do
      excludes+=(--exclude "lib/python*/site-packages/$pattern")
      suffix="$suffix-${pattern//[^A-Za-z0-9]/}"
    done
    archive="$here/dist/deps$suffix.tar.gz"
    # packed again only when the venv changed since (make venv touches .venv/.installed)
    if [[ ! -s "$archive" || "$here/.venv/.installed" -nt "$archive" ]]; then
      "$here/.venv/bin/venv-pack" --prefix "$here/.venv" --output "$archive.tmp" --format tar.gz --force \
        --quiet "${excludes[@]}" >&2
      mv "$archive.tmp" "$archive"
    fi
  fi
  env_args+=(--archives "$archive#environment" --conf spark.pyspark.python=./environment/bin/python)
  # a client-mode driver runs here, outside the executors' unpacked archive
  [[ "$deploy_mode" == cluster ]] || env_args+=(--conf "spark.pyspark.driver.python=$local_python")
fi

cmd=("$submit" --py-files "$here/dist/dedup.zip" "${env_args[@]}" "${submit_args[@]}"
     "$here/jobs/dedup_job.py" "${job_args[@]}")
if [[ "$dry_run" == 1 ]]; then
  printf '%q ' "${cmd[@]}"; echo
  exit 0
fi
exec "${cmd[@]}"
