"""Result layers of a scan: those of ``marsice detect`` with the terrain fields already in ``ice_candidates``.

Why declared up front: a scan adds terrain attributes to the candidates of products that have a DTM
while it streams products into the file; declaring the columns when the file is created (and adding
them once to a file an older run made) keeps every product's commit a plain row replacement through
the single results writer, with no schema change in the middle of a scan.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GeoPackageError, OutputError
from ..gpkg import add_columns, layer_names
from ..result_layers import CANDIDATE_FIELDS, CANDIDATES_LAYER, CHUNKS_LAYER, PRODUCTS_LAYER
from ..results import LayerSpec
from ..terrain.candidates import TERRAIN_FIELDS

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
    try:
        if CANDIDATES_LAYER.name not in layer_names(gpkg):
            return []
        return add_columns(gpkg, CANDIDATES_LAYER.name, TERRAIN_FIELDS)
    except (GeoPackageError, OutputError) as exc:
        raise OutputError(f"cannot prepare {gpkg} for a scan ({exc}); write the scan to a new file") from exc
