"""``marsice tile``: cut a product into georeferenced chunks; write GeoTIFFs and a tile index for QGIS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tile",
        help="export georeferenced chunks (GeoTIFF) and a tile index (GeoPackage) for labelling in QGIS",
        description="Cut a product into chunks streamed strip by strip (full coverage, the last row/column "
        "shifted in, mostly no-data chunks recorded as skipped) and write OUTPUT/ID_tiles.gpkg (layer 'tiles', "
        "footprints in IAU_2015:49900) and OUTPUT/ID_tiles/rRRR_cCCC.tif (float32, product CRS).",
    )
    p.add_argument("product", type=Path, help="HiRISE PDS3 label (.LBL beside its .JP2) or a GDAL raster in a Mars CRS")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=1024, help="chunk size in full-resolution pixels (paper: 1024)")
    p.add_argument(
        "--overlap",
        default="auto",
        help="overlap in full-resolution pixels, 0 to size/2, or 'auto' (default): ceil(32 m / ground scale), at "
        "most size/2, so a patch up to 32 m cut by one chunk edge lies whole inside a neighbour",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="read at this fraction of full resolution (0.25 reads each 1024 chunk as 256 px, from the "
        "JPEG2000 resolution levels for powers of two)",
    )
    p.add_argument("--chunk-m", type=float, default=None, help="chunk side in metres instead of --size pixels")
    p.add_argument(
        "--model-scale",
        type=float,
        default=None,
        help="resample every chunk to this ground scale (m/px), e.g. 0.3 as in the paper; chunks are then "
        "--chunk-m metres, or --size pixels at this scale",
    )
    p.add_argument(
        "--max-center-nodata", type=float, default=0.01, help="skip above this no-data fraction in the centre"
    )
    p.add_argument("--max-nodata", type=float, default=0.5, help="skip above this no-data fraction in the chunk")
    p.add_argument("--no-repair", action="store_true", help="export pixels as read (special values and outliers kept)")
    p.add_argument("--index-only", action="store_true", help="write the tile index only, no GeoTIFFs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index and tile folder")


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..outputs import GEOPACKAGE, Output, check_outputs, product_id_of
    from ..tile_export import export_tiles
    from .arguments import overlap_arg

    # with --chunk-m/--model-scale the chunk's pixel size depends on the product: the reader checks it there
    overlap = overlap_arg(args.overlap, None if (args.chunk_m or args.model_scale) else args.size)
    pid = product_id_of(args.product)  # the index is OUTPUT/ID_tiles.gpkg, the GeoTIFFs OUTPUT/ID_tiles/
    check_outputs(
        [args.product],
        [
            Output(args.output, folder=True),
            Output(args.output / f"{pid}_tiles.gpkg", GEOPACKAGE),
            Output(args.output / f"{pid}_tiles", folder=True, replaced=args.overwrite),
        ],
    )
    reporter.progress(0, f"tiling {args.product.name}")
    result = export_tiles(
        args.product,
        args.output,
        size=args.size,
        overlap=overlap,
        scale=args.scale,
        chunk_m=args.chunk_m,
        model_scale_m=args.model_scale,
        max_center_nodata=args.max_center_nodata,
        max_nodata=args.max_nodata,
        repair=not args.no_repair,
        images=not args.index_only,
        overwrite=args.overwrite,
        reporter=reporter,
    )
    reporter.progress(100, "done")
    outputs: dict[str, Any] = {"INDEX": str(result.index), "chunks": result.chunks, "skipped": result.skipped}
    if result.folder is not None:
        outputs["TILES"] = str(result.folder)
    reporter.result(outputs, result.summary())
