"""Export a product's chunks for labelling in QGIS: georeferenced GeoTIFFs and a GeoPackage tile index.

``marsice tile`` writes what the chunk reader (:mod:`marsice_plugin.chunk_reader`) makes, exactly as detection
would score it (same grid, same repair, same reduced read), so chunks labelled by hand can train a model
(``marsice train`` reads the GeoTIFFs and their tags back). Skipped chunks are recorded in the index, never
dropped; outputs appear whole or not at all.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .chunk_reader import Chunk, ChunkReader
from .styles import write_default_style


def _index_fields() -> list:
    from .gpkg import Field

    return [
        Field("product_id", str, "product id"),
        Field("chunk_row", int, "chunk row in the grid (0 = north)"),
        Field("chunk_col", int, "chunk column (0 = west)"),
        Field("row_off", int, "first full-resolution image line of the chunk (0-based)"),
        Field("col_off", int, "first full-resolution image sample of the chunk (0-based)"),
        Field("width", int, "chunk width in full-resolution pixels"),
        Field("height", int, "chunk height in full-resolution pixels"),
        Field("out_width", int, "width of the chunk's pixel array (after --scale or resampling)"),
        Field("out_height", int, "height of the chunk's pixel array"),
        Field("scale_m", float, "ground scale of the chunk's pixel array (m/pixel)"),
        Field("method", str, "how the pixels were made: full, jpeg2000-level, wavelet-lowpass, resample"),
        Field("skipped", bool, "mostly no-data: not exported, not scored"),
        Field("skip_reason", str, "why the chunk was skipped"),
        Field("nodata_fraction", float, "fraction of no-data pixels"),
        Field("center_nodata_fraction", float, "fraction of no-data pixels in the central half"),
        Field("special_pixels", int, "pixels with label special values (masked; repaired when repair is on)"),
        Field("outlier_pixels", int, "isolated bright outliers repaired (0 for skipped chunks: not searched)"),
        Field("repaired", bool, "special pixels and outliers were replaced in the exported pixels"),
        Field("file", str, "GeoTIFF of the chunk, relative to the index (NULL when not exported)"),
        Field("label", int, "for labelling in QGIS: 1 ice patch, 0 none; NULL until labelled"),
    ]


@dataclass
class TileExport:
    """What :func:`export_tiles` wrote."""

    product_id: str
    index: Path
    folder: Path | None
    chunks: int = 0
    skipped: int = 0
    images: int = 0
    overlap: int = 0
    method: str = "full"
    scale_m: float = 0.0

    def summary(self) -> str:
        where = f" and {self.images} GeoTIFFs" if self.folder else ""
        return (
            f"{self.product_id}: {self.chunks} chunks ({self.skipped} skipped, recorded) in the tile index{where}; "
            f"overlap {self.overlap} px, {self.scale_m:.3g} m/px ({self.method})"
        )


def _write_geotiff(path: Path, chunk: Chunk, valid_max: float | None = None, sun_azimuth: float | None = None) -> None:
    """One chunk as a float32 GeoTIFF in the product's own CRS; no-data pixels are NaN (the nodata value).

    ``VALID_MAX`` (the value that maps to 1.0: 1023, as chunk pixels are 10-bit DN equivalents whatever the
    product's container, :mod:`marsice_plugin.normalisation`) and ``SUN_AZIMUTH`` (the sun's direction in the chunk,
    clockwise from up: the azimuth from north on north-up grids, turned by the grid's north on polar ones)
    travel in the tags so that ``marsice train`` normalises and augments the chunk as detection would see it.
    """
    import rasterio
    from rasterio.crs import CRS

    data = np.array(chunk.data, dtype=np.float32, copy=True)
    if chunk.nodata is not None:
        data[chunk.nodata] = np.nan
    h, w = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=1,
        dtype="float32",
        crs=CRS.from_wkt(chunk.crs.to_wkt()),
        transform=chunk.transform,
        nodata=float("nan"),
        compress="deflate",
        predictor=3,
        tiled=True,
        blockxsize=256,
        blockysize=256,
    ) as ds:
        ds.write(data, 1)
        ds.update_tags(
            CHUNK_ROW=chunk.chunk_row,
            CHUNK_COL=chunk.chunk_col,
            SCALE_M=f"{chunk.scale_m:.6f}",
            REPAIRED=str(chunk.repaired),
            SPECIAL_PIXELS=chunk.special_pixels,
            OUTLIER_PIXELS=chunk.outlier_pixels,
            **({"VALID_MAX": f"{valid_max:g}"} if valid_max else {}),
            **({"SUN_AZIMUTH": f"{sun_azimuth:.3f}"} if sun_azimuth is not None else {}),
        )


def export_tiles(
    product_path: str | Path,
    out_dir: str | Path,
    *,
    size: int = 1024,
    overlap: int | None = None,
    scale: float = 1.0,
    chunk_m: float | None = None,
    model_scale_m: float | None = None,
    max_center_nodata: float = 0.01,
    max_nodata: float = 0.5,
    repair: bool = True,
    images: bool = True,
    overwrite: bool = False,
    reporter: Any = None,
) -> TileExport:
    """Cut a product into chunks and write ``ID_tiles.gpkg`` (+ ``ID_tiles/rRRR_cCCC.tif`` GeoTIFFs).

    The index (layer ``tiles``) holds one footprint per chunk, skipped ones included, in the common
    Mars CRS (IAU_2015:49900); the GeoTIFFs are in the product's own CRS with the chunk's exact
    transform. Outputs are written atomically: GeoTIFFs go to a hidden temporary folder that is
    renamed into place when complete, and the index is written with :func:`marsice_plugin.gpkg.write_new`;
    a failed or cancelled run leaves neither.
    """
    import os
    import shutil
    import tempfile

    from .errors import OutputError
    from .gpkg import write_new
    from .mars_crs import COMMON_CRS, common_crs
    from .product import open_product

    out_dir = Path(out_dir)
    fields = _index_fields()
    with open_product(product_path) as product:
        pid = product.product_id
        index = out_dir / f"{pid}_tiles.gpkg"
        folder = out_dir / f"{pid}_tiles" if images else None
        for target in (index, folder):
            if target is not None and target.exists() and not overwrite:
                raise OutputError(f"{target} already exists; remove it, choose another -o folder, or use --overwrite")
        reader = ChunkReader(
            product,
            size,
            overlap,
            max_center_nodata,
            max_nodata,
            scale=scale,
            chunk_m=chunk_m,
            model_scale_m=model_scale_m,
            repair=repair,
        )
        plan = reader.plan
        result = TileExport(pid, index, folder, overlap=plan.overlap, method=plan.method, scale_m=plan.chunk_scale_m)
        created = not out_dir.exists()  # removed again, when still empty, if the run fails or is cancelled
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            tmp_folder = Path(tempfile.mkdtemp(prefix=f".{pid}_tiles.", suffix=".partial", dir=out_dir))
        except OSError as exc:
            raise OutputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from exc
        rows = []
        total = len(reader)
        try:
            for done, chunk in enumerate(reader, start=1):
                name = None
                if images and not chunk.skipped:
                    name = f"r{chunk.chunk_row:03d}_c{chunk.chunk_col:03d}.tif"
                    _write_geotiff(tmp_folder / name, chunk, product.valid_max, product.image_sun_azimuth)
                    result.images += 1
                w = chunk.window
                oh, ow = chunk.data.shape
                rows.append(
                    (
                        chunk.footprint(to_common=True),
                        {
                            "product_id": pid,
                            "chunk_row": chunk.chunk_row,
                            "chunk_col": chunk.chunk_col,
                            "row_off": w.row_off,
                            "col_off": w.col_off,
                            "width": w.width,
                            "height": w.height,
                            "out_width": ow,
                            "out_height": oh,
                            "scale_m": chunk.scale_m,
                            "method": plan.method,
                            "skipped": chunk.skipped,
                            "skip_reason": chunk.skip_reason,
                            "nodata_fraction": chunk.nodata_fraction,
                            "center_nodata_fraction": chunk.center_nodata_fraction,
                            "special_pixels": chunk.special_pixels,
                            "outlier_pixels": chunk.outlier_pixels,
                            "repaired": chunk.repaired,
                            "file": f"{folder.name}/{name}" if (name and folder) else None,
                            "label": None,
                        },
                    )
                )
                result.chunks += 1
                result.skipped += int(chunk.skipped)
                if reporter is not None:
                    reporter.progress(95 * done / total, f"chunk {done}/{total}")
            # An overwritten tile folder is set aside until the new index is in place, and put back if
            # writing the index fails or is cancelled: the index and its GeoTIFFs always belong together.
            previous = None
            if folder is not None:
                if folder.exists():
                    previous = folder.with_name(f".{folder.name}.old")
                    shutil.rmtree(previous, ignore_errors=True)
                    os.replace(folder, previous)
                os.replace(tmp_folder, folder)

            def build(gpkg: Any) -> None:
                srs = gpkg.add_srs(common_crs(), name=f"Mars 2015 sphere, planetocentric ({COMMON_CRS})")
                gpkg.create_layer("tiles", fields, "POLYGON", srs, f"chunks of {pid} (skipped ones recorded)")
                write_default_style(gpkg.conn, "tiles")  # opens in QGIS coloured by label
                gpkg.insert("tiles", fields, rows)

            try:
                write_new(index, build)
            except BaseException:
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
                    if previous is not None:
                        os.replace(previous, folder)
                raise
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
        except OSError as exc:
            raise OutputError(f"cannot write tiles into {out_dir}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(tmp_folder, ignore_errors=True)
            if created and not index.exists():
                with contextlib.suppress(OSError):
                    out_dir.rmdir()
    return result
