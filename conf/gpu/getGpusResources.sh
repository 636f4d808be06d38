#!/usr/bin/env bash
# Spark GPU discovery script (spark.executor.resource.gpu.discoveryScript): prints the executor's
# GPUs as Spark's ResourceInformation JSON, e.g. {"name": "gpu", "addresses": ["0", "1"]}.
# Same contract as examples/src/main/scripts/getGpusResources.sh in the Spark distribution.
set -euo pipefail
addresses=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | sed -e ':a' -e 'N' -e '$!ba' -e 's/\n/","/g' || true)
echo "{\"name\": \"gpu\", \"addresses\": [${addresses:+\"$addresses\"}]}"
