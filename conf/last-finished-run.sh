#!/usr/bin/env bash
# Print the last finished dedup run under an output root, for --previous: the folder that sorts
# last among those named before RUN_DATE (outputs are <root>/<run date>) and holding a
# manifest.json (the job writes it last, so it marks a finished run). Prints nothing when there is
# none (the first night: a full run).
#
#   conf/last-finished-run.sh OUT_ROOT RUN_DATE      # e.g. /data/dedup 2026-11-22 -> /data/dedup/2026-11-21
#
# A local root (or file://) is listed directly; hdfs://, s3a://, gs://, abfs:// ... roots through
# `hadoop fs` (HADOOP_CLI overrides which command; `hdfs dfs` works too). Exit status 0 with or
# without a previous run; 2 on bad arguments; 1 when a remote root cannot be listed.
set -euo pipefail
if (($# != 2)) || [[ -z "$1" || -z "$2" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
root="${1%/}"
run_date="$2"

remote=0
if [[ "$root" == file://* ]]; then
  root="${root#file://}"
elif [[ "$root" =~ ^[A-Za-z][A-Za-z0-9+.-]*:// ]]; then
  remote=1
fi

names=()
if ((remote == 0)); then
  [[ -d "$root" ]] || exit 0
  while IFS= read -r -d '' path; do
    name="${path##*/}"
    [[ "$name" < "$run_date" && -f "$path/manifest.json" ]] && names+=("$name")
  done < <(find "$root" -mindepth 1 -maxdepth 1 -type d -print0)
else
  read -r -a hadoop <<<"${HADOOP_CLI:-hadoop fs}"
  if ! command -v "${hadoop[0]}" >/dev/null; then
    echo "last-finished-run: ${hadoop[0]} not found: cannot list $root (set HADOOP_CLI)" >&2
    exit 1
  fi
  listing="$("${hadoop[@]}" -ls -C "$root")" || { echo "last-finished-run: cannot list $root" >&2; exit 1; }
  while IFS= read -r path; do
    [[ -n "$path" ]] || continue
    name="${path##*/}"
    if [[ "$name" < "$run_date" ]] && "${hadoop[@]}" -test -e "$path/manifest.json" 2>/dev/null; then
      names+=("$name")
    fi
  done <<<"$listing"
fi
((${#names[@]})) || exit 0
last="$(printf '%s\n' "${names[@]}" | LC_ALL=C sort | tail -n 1)"
printf '%s\n' "${1%/}/$last"
