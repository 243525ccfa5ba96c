"""``marsice terrain``: DTM slope/aspect/shadow rasters aligned to an image, terrain attributes of ice candidates."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "terrain",
        help="DTM slope/aspect/shadow aligned to an image; terrain-aware ranking of ice candidates",
        description="Co-register a DTM (HiRISE DTEEC/DTEPC .IMG or a GDAL DEM in a Mars CRS) to the image by "
        "phase correlation against its hillshade for the image's sun (applied only when the correlation peak is "
        "clear), and write OUTPUT/ID_{slope,aspect,poleward,shadow,height}.tif on the DTM's own grid (its posts "
        "under the image, no resampling; the geotransform moved by the offset) in the image's CRS. "
        "With --candidates, add terrain_* fields (slope, aspect, "
        "poleward and shade fractions, score, rank value = max_probability x (0.2 + 0.8 x score)) to the "
        "ice_candidates layer of that GeoPackage; max_probability is left unchanged.",
    )
    p.add_argument("--dtm", type=Path, required=True, help="DTM: HiRISE PDS3 .IMG or GDAL DEM in a Mars CRS")
    p.add_argument("--image", type=Path, required=True, help="the product: HiRISE .LBL (beside its .JP2) or raster")
    p.add_argument("--candidates", type=Path, default=None, help="results GeoPackage of 'marsice detect' to update")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder for the GeoTIFFs")
    p.add_argument(
        "--ring-m", type=float, default=5.0, help="width (m) of the sunward ring searched for shadowing relief"
    )
    p.add_argument(
        "--sun-azimuth",
        type=float,
        default=None,
        metavar="DEG",
        help="sun azimuth in degrees clockwise from north (0-360), as the chunks layer's sun_azimuth. Default: the "
        "PDS3 label's, or for a raster without label its GeoTIFF metadata item SUN_AZIMUTH_FROM_NORTH (default "
        "domain, e.g. gdal_edit -mo SUN_AZIMUTH_FROM_NORTH=297); given, it overrides them (logged)",
    )
    p.add_argument(
        "--incidence",
        type=float,
        default=None,
        metavar="DEG",
        help="solar incidence angle in degrees from the vertical (0 up to 90, exclusive). Default: the PDS3 "
        "label's, or the GeoTIFF metadata item INCIDENCE_ANGLE; given, it overrides them (logged)",
    )


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..outputs import GEOPACKAGE, GEOTIFF, Output, check_outputs, product_id_of
    from ..terrain.analysis import RASTERS, run_terrain

    # the rasters are OUTPUT/ID_NAME.tif: none may be the image, the DTM or the candidates (updated in place)
    pid = product_id_of(args.image)
    check_outputs(
        [args.dtm, args.image, args.candidates],
        [
            Output(args.output, folder=True),
            *(Output(args.output / f"{pid}_{name}.tif", GEOTIFF) for name in RASTERS),
        ],
    )
    # the candidates are updated in place (intended): it only has to be a writable GeoPackage
    check_outputs([args.dtm, args.image], [Output(args.candidates, GEOPACKAGE, "--candidates", in_place=True)])
    reporter.progress(0, f"terrain of {args.image.name} from {args.dtm.name}")
    result = run_terrain(
        args.dtm,
        args.image,
        args.output,
        candidates=args.candidates,
        ring_m=args.ring_m,
        progress=reporter.progress,
        sun_azimuth=args.sun_azimuth,
        incidence=args.incidence,
        log=reporter.log,
    )
    if not result.coregistration.aligned:
        reporter.log("co-registration failed (weak correlation peak): DTM used as georeferenced", "warning")
    from ..styles import write_terrain_styles

    write_terrain_styles(result.rasters)  # a .qml beside each raster: slope 0-40°, circular aspect, masks
    reporter.progress(100, "done")
    c = result.coregistration
    outputs: dict[str, Any] = {name.upper(): str(path) for name, path in result.rasters.items()}
    outputs.update(
        offset_rows=c.d_row,
        offset_cols=c.d_col,
        peak_ratio=c.peak_ratio,
        aligned=c.aligned,
        candidates=result.candidates_updated,
    )
    if args.candidates is not None:
        outputs["OUTPUT"] = str(args.candidates)
    reporter.result(outputs, result.summary())
