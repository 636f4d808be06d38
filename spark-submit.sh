#!/usr/bin/env bash
# Run the dedup job with spark-submit, on any master.
#
#   ./spark-submit.sh [spark-submit options] --catalog PATH --out DIR [--config FILE] [--set KEY=VALUE ...]
#
# e.g.  ./spark-submit.sh --master yarn --deploy-mode client --config conf/cluster.toml \
#           --catalog hdfs:///dumps/catalog.csv --out hdfs:///dedup/2026-11-22
#
# Job options (--catalog, --out, --config, --set) go to the job; everything else goes to
# spark-submit. The package is zipped into dist/dedup.zip and shipped with --py-files; the
# profile given with --config is shipped with --files too, for a driver in cluster deploy mode.
# Executors need the Python dependencies of requirements.txt (installed on the nodes, or a
# packed environment passed with --archives).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

submit_args=()
job_args=()
while (($#)); do
  case "$1" in
    --catalog|--out|--set)
      job_args+=("$1" "$2"); shift 2 ;;
    --config)
      job_args+=("$1" "$2"); submit_args+=(--files "$2"); shift 2 ;;
    --catalog=*|--out=*|--set=*)
      job_args+=("$1"); shift ;;
    *)
      submit_args+=("$1"); shift ;;
  esac
done
if [[ ${#job_args[@]} -eq 0 ]]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

mkdir -p "$here/dist"
rm -f "$here/dist/dedup.zip"
(cd "$here" && python3 -m zipfile -c dist/dedup.zip dedup jobs >/dev/null)

submit="${SPARK_SUBMIT:-}"
if [[ -z "$submit" ]]; then
  if [[ -x "$here/.venv/bin/spark-submit" ]]; then submit="$here/.venv/bin/spark-submit"
  else submit="$(command -v spark-submit)"; fi
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$here/.venv/bin/python}"
exec "$submit" --py-files "$here/dist/dedup.zip" "${submit_args[@]}" "$here/jobs/dedup_job.py" "${job_args[@]}"
