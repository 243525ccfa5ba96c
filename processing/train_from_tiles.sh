#!/usr/bin/env bash
# Tile product -> label the tile index -> Train model -> Evaluate model, headless.
# The labels here are the generated product's truth (chunks holding planted ice), standing in for the labels a
# geologist types into the tile index's `label` column in QGIS.
# Usage: processing/train_from_tiles.sh [OUTPUT_DIR]   (after `make setup`, from the repository root)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$repo/demo_output/training}"
py="$repo/.venv/bin/python"
mkdir -p "$out"
export QGIS_PLUGINPATH="$repo" QT_QPA_PLATFORM=offscreen
label="$("$repo/.venv/bin/marsice" --progress quiet sample -o "$out" --seed 11 | sed -n 's/^  LABEL: //p')"
/usr/bin/qgis_process.bin plugins enable marsice_plugin >/dev/null 2>&1 || true  # fails when already enabled
/usr/bin/qgis_process.bin run marsice:tile -- INPUT="$label" SIZE=1024 OVERLAP=0 OUTPUT="$out/tiles"
index="$(ls "$out"/tiles/*_tiles.gpkg)"
# label each chunk from the generated product's chunk truth (same 1024 px grid without overlap)
"$py" - "$index" "${label%.LBL}_truth.gpkg" <<'PY'
import sqlite3, sys
with sqlite3.connect(sys.argv[2]) as truth:
    labels = {(r, c): label for r, c, label in truth.execute("SELECT chunk_row, chunk_col, label FROM chunk_truth")}
with sqlite3.connect(sys.argv[1]) as index:
    for (row, col), label in labels.items():
        index.execute("UPDATE tiles SET label = ? WHERE chunk_row = ? AND chunk_col = ?", (int(label), row, col))
    print(sum(labels.values()), "of", len(labels), "chunks labelled ice")
PY
/usr/bin/qgis_process.bin run marsice:train -- TILE_INDEX="$index" LABEL_FIELD=label INPUT_SIZE=256 EPOCHS=5 \
  OUTPUT="$out/model.keras"
/usr/bin/qgis_process.bin run marsice:evaluate -- MODEL="$out/model.keras" LIMIT=2 \
  OUTPUT="$out/report.json" PR_CURVE="$out/pr.png"
