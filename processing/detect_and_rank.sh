#!/usr/bin/env bash
# Run the graphical model detect_and_rank.model3 (Detect ice patches, then Terrain attributes with the DTM)
# headless on a generated product with its DTM.
# Usage: processing/detect_and_rank.sh [OUTPUT_DIR]   (after `make setup`, from the repository root)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/demo_output/model}"
mkdir -p "$out"
export QGIS_PLUGINPATH="$repo" QT_QPA_PLATFORM=offscreen
listing="$("$repo/.venv/bin/marsice" --progress quiet sample -o "$out" --seed 7 --width 2048 --height 2048 --dtm)"
label="$(sed -n 's/^  LABEL: //p' <<<"$listing")"
dtm="$(sed -n 's/^  DTM: //p' <<<"$listing")"
/usr/bin/qgis_process.bin plugins enable marsice_plugin >/dev/null 2>&1 || true  # fails when already enabled
# Model parameters: inputs by name, outputs as CHILD_ID:OUTPUT_NAME (threshold=0.6 for the paper's; left out:
# the model card's).
/usr/bin/qgis_process.bin run "$repo/processing/detect_and_rank.model3" -- \
  product="$label" dtm="$dtm" \
  "detect:results=$out/results.gpkg" "terrain:terrain=$out/terrain"
