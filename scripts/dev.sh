#!/usr/bin/env bash
# Starts the Dagster UI and daemon (`dg dev`, http://127.0.0.1:3000) on the run history in .dagster_home
# (or $DAGSTER_HOME); run ./scripts/demo.sh first. Extra arguments go to `dg dev`.
# It runs from inside DAGSTER_HOME, next to the instance's dagster.yaml: started from the repository
# root, `dg dev` would warn that ./dagster.yaml is not the file in use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[ -x .venv/bin/dagster ] || { echo "no .venv yet: run ./scripts/setup.sh (or ./scripts/demo.sh) first" >&2; exit 1; }
export DAGSTER_HOME="${DAGSTER_HOME:-$root/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# Relative paths keep meaning what they mean here, in the repository root.
export NEWS_AI_DUCKDB_PATH="$(realpath -m "${NEWS_AI_DUCKDB_PATH:-data/news_ai.duckdb}")"
if [ -n "${NEWS_AI_MIND_DIR:-}" ]; then export NEWS_AI_MIND_DIR="$(realpath -m "$NEWS_AI_MIND_DIR")"; fi
cd "$DAGSTER_HOME"
exec "$root/.venv/bin/dg" dev -w "$root/workspace.yaml" "$@"
