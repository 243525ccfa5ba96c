#!/usr/bin/env bash
# "Find ice patches (workflow)" (marsice:scan) as a dry run: which products the paper's selection would pull
# and how many GB, from the catalogue bundled with MarsIce (no network needed). Drop DRY_RUN, set MAX_GB and
# SOURCE=1 (ODE) for a real run.
# Usage: processing/find_ice_dry_run.sh [LIMIT]   (after `make setup`, from the repository root)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
limit="${1:-10}"
export QGIS_PLUGINPATH="$repo" QT_QPA_PLATFORM=offscreen
/usr/bin/qgis_process.bin plugins enable marsice_plugin >/dev/null 2>&1 || true  # fails when already enabled
# SOURCE: 0 auto, 1 ode, 2 bundled (enum index, as qgis_process takes it)
/usr/bin/qgis_process.bin run marsice:scan -- \
  LAT_MIN=-60 LAT_MAX=-40 LS_FROM=140 LS_TO=200 SOURCE=2 LIMIT="$limit" DRY_RUN=true \
  OUTPUT="$repo/demo_output/scan/results.gpkg"
