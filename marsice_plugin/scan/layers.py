"""Result layers of a scan: those of ``marsice detect`` with the terrain fields already in ``ice_candidates``.

Why declared up front: a scan adds terrain attributes to the candidates of products that have a DTM
while it streams products into the file; declaring the columns when the file is created (and adding
them once to a file an older run made) keeps every product's commit a plain row replacement through
the single results writer, with no schema change in the middle of a scan.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import OutputError
from ..gpkg import Field
from ..result_layers import CANDIDATE_FIELDS, CANDIDATES_LAYER, CHUNKS_LAYER, PRODUCTS_LAYER
from ..results import LayerSpec
from ..terrain.analysis import TERRAIN_COLUMNS

_PY_TYPES = {"REAL": float, "INTEGER": int, "TEXT": str}

#: The terrain columns of ``ice_candidates`` as layer fields (NULL for products without a DTM).
TERRAIN_FIELDS = [Field(name, _PY_TYPES[kind], description) for name, kind, description in TERRAIN_COLUMNS]

SCAN_CANDIDATES_LAYER = LayerSpec(
    CANDIDATES_LAYER.name,
    CANDIDATES_LAYER.geometry_type,
    [*CANDIDATE_FIELDS, *TERRAIN_FIELDS],
    CANDIDATES_LAYER.description,
)

#: The layers a scan writes, in the order ``marsice detect`` writes them.
SCAN_LAYERS = (CHUNKS_LAYER, SCAN_CANDIDATES_LAYER, PRODUCTS_LAYER)


def add_terrain_columns(gpkg: Path) -> list[str]:
    """Add the terrain columns to the ``ice_candidates`` of an existing file that lacks them (caller holds the lock)."""
    if not gpkg.exists():
        return []
    con = sqlite3.connect(gpkg, isolation_level=None)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")}
        if CANDIDATES_LAYER.name not in tables:
            return []
        existing = {r[1] for r in con.execute(f'PRAGMA table_info("{CANDIDATES_LAYER.name}")')}
        added = [f for f in TERRAIN_FIELDS if f.name not in existing]
        if added:
            con.execute("BEGIN IMMEDIATE")
            for f in added:
                con.execute(f'ALTER TABLE "{CANDIDATES_LAYER.name}" ADD COLUMN "{f.name}" {f.sql_type}')
            con.execute("COMMIT")
        return [f.name for f in added]
    except sqlite3.Error as exc:
        raise OutputError(f"cannot prepare {gpkg} for a scan ({exc}); write the scan to a new file") from exc
    finally:
        con.close()
