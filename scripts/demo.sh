#!/usr/bin/env bash
# Sets up .venv, then materialises every asset for every partition on the built-in sample data
# (or on NEWS_AI_MIND_DIR when set). Run history goes to .dagster_home, so `dagster dev` shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
if [ -z "${DAGSTER_HOME:-}" ]; then
  export DAGSTER_HOME="$PWD/.dagster_home"
  mkdir -p "$DAGSTER_HOME"
  cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
fi
first="${NEWS_AI_START_DATE:-2019-11-09}"
last="${NEWS_AI_END_DATE:-2019-11-22}"
.venv/bin/dagster asset materialize -m news_ai_assets.definitions --select '*' --partition-range "$first...$last"
.venv/bin/python -m news_ai_assets.summary
