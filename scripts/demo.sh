#!/usr/bin/env bash
# Sets up .venv, then materialises every asset for every partition on the built-in sample data
# (or on NEWS_AI_MIND_DIR when set). Run history goes to .dagster_home, so ./scripts/dev.sh shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
first="${NEWS_AI_START_DATE:-2019-11-09}"
last="${NEWS_AI_END_DATE:-2019-11-22}"
# One run of every asset over the range; the loggers print a line per step (news_ai_assets/run_console.py).
.venv/bin/dg launch -m news_ai_assets.definitions --job all_assets_job --partition-range "$first...$last" \
  --config-json '{"loggers": {"console": {}, "event_log_file": {}}}'
.venv/bin/python -m news_ai_assets.summary
