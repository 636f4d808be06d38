#!/usr/bin/env bash
# The nightly dedup run, for cron: one run at a time, a log file per run, non-zero exit on failure.
#
#   conf/cron/dedup-nightly.sh            # run for today's date (UTC)
#   DEDUP_RUN_DATE=2026-11-21 conf/cron/dedup-nightly.sh
#
# Settings come from the environment, or from the file named by DEDUP_ENV_FILE (default
# /etc/default/dedup, read when it exists), with these defaults:
#   DEDUP_HOME      the repository (default: two folders up from this script)
#   DEDUP_MASTER    spark-submit --master (default: yarn)
#   DEDUP_CONFIG    TOML profile (default: $DEDUP_HOME/conf/cluster.toml)
#   DEDUP_CATALOG   the dump to read (default: /data/dumps/catalog.csv)
#   DEDUP_OUT_ROOT  outputs go to $DEDUP_OUT_ROOT/$DEDUP_RUN_DATE (default: /data/dedup)
#   DEDUP_PREVIOUS  the run passed as --previous (default: the last finished run under
#                   DEDUP_OUT_ROOT before this date, found by conf/last-finished-run.sh; none:
#                   a full run)
#   DEDUP_LOG_DIR   one log file per run (default: /var/log/dedup); logs older than
#                   DEDUP_LOG_KEEP_DAYS (default: 30) are removed
#   DEDUP_LOCK      the flock lock file (default: /var/lock/dedup-nightly.lock)
#   DEDUP_JOB_COMMAND  a shell command run instead of spark-submit (tests, dry runs)
#
# Exit status: the job's own status (0 when it succeeded); 75 when an earlier run still holds
# the lock, in which case nothing is started.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
env_file="${DEDUP_ENV_FILE:-/etc/default/dedup}"
# shellcheck disable=SC1090
[[ -r "$env_file" ]] && source "$env_file"

DEDUP_HOME="${DEDUP_HOME:-$(cd "$here/../.." && pwd)}"
DEDUP_MASTER="${DEDUP_MASTER:-yarn}"
DEDUP_CONFIG="${DEDUP_CONFIG:-$DEDUP_HOME/conf/cluster.toml}"
DEDUP_CATALOG="${DEDUP_CATALOG:-/data/dumps/catalog.csv}"
DEDUP_OUT_ROOT="${DEDUP_OUT_ROOT:-/data/dedup}"
DEDUP_LOG_DIR="${DEDUP_LOG_DIR:-/var/log/dedup}"
DEDUP_LOG_KEEP_DAYS="${DEDUP_LOG_KEEP_DAYS:-30}"
DEDUP_LOCK="${DEDUP_LOCK:-/var/lock/dedup-nightly.lock}"
DEDUP_RUN_DATE="${DEDUP_RUN_DATE:-$(date -u +%F)}"

mkdir -p "$DEDUP_LOG_DIR" "$(dirname "$DEDUP_LOCK")" || exit 1
exec 9>>"$DEDUP_LOCK" || { echo "dedup-nightly: cannot open lock file $DEDUP_LOCK" >&2; exit 1; }
if ! flock --nonblock 9; then
  echo "dedup-nightly: $(date -u +%FT%TZ) an earlier run still holds $DEDUP_LOCK; not starting" >&2
  exit 75
fi

log="$DEDUP_LOG_DIR/dedup-$DEDUP_RUN_DATE-$(date -u +%Y%m%dT%H%M%SZ)-$$.log"
find "$DEDUP_LOG_DIR" -maxdepth 1 -name 'dedup-*.log' -mtime "+$DEDUP_LOG_KEEP_DAYS" -delete 2>/dev/null

# incremental: the last finished run is the --previous of this one (none on the first night)
previous="${DEDUP_PREVIOUS:-}"
if [[ -z "$previous" ]]; then
  previous="$("$DEDUP_HOME/conf/last-finished-run.sh" "$DEDUP_OUT_ROOT" "$DEDUP_RUN_DATE" 2>>"$log")" || previous=""
elif [[ "$previous" == none ]]; then
  previous=""
fi
export DEDUP_PREVIOUS_RUN="$previous"  # for DEDUP_JOB_COMMAND

if [[ -n "${DEDUP_JOB_COMMAND:-}" ]]; then
  job=(bash -c "$DEDUP_JOB_COMMAND")
else
  job=("$DEDUP_HOME/spark-submit.sh" --master "$DEDUP_MASTER" --config "$DEDUP_CONFIG"
       --catalog "$DEDUP_CATALOG" --out "$DEDUP_OUT_ROOT/$DEDUP_RUN_DATE" ${previous:+--previous "$previous"})
fi

{
  echo "dedup-nightly: started $(date -u +%FT%TZ) pid $$ run date $DEDUP_RUN_DATE"
  echo "dedup-nightly: previous run: ${previous:-none (a full run)}"
  echo "dedup-nightly: command: ${job[*]}"
} >>"$log"
started=$SECONDS
# the lock stays held (fd 9) for the job and its children; the lock file itself is never removed
"${job[@]}" >>"$log" 2>&1 9>&-
rc=$?
echo "dedup-nightly: finished $(date -u +%FT%TZ) exit $rc after $((SECONDS - started)) s" >>"$log"
if ((rc != 0)); then
  echo "dedup-nightly: run $DEDUP_RUN_DATE failed with exit $rc; log: $log" >&2
fi
exit "$rc"
