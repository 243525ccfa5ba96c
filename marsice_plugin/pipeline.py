"""``marsice detect`` as a library call: open a product, detect it, write the GeoPackage and side outputs.

The detect flow itself is :func:`marsice_plugin.detection.detect_product`; this module adds what a run on
disk needs: output checks before any work, the model load, and the writing. The product's rows go through
the single results writer (:mod:`marsice_plugin.results`): a new file appears only when complete, an
existing file gains or replaces this product's rows in one transaction, so a cancelled or failed run leaves
the output as it was. The quick-look and the probability raster appear only once the GeoPackage is in.

The probability raster has a default name beside the GeoPackage (:func:`probability_raster_path`), which
``marsice detect`` writes unless told otherwise: named after the GeoPackage *and* the product, so that several
products detected into one GeoPackage each keep their own raster, and a rerun replaces its own.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .detection import DetectOptions, detect_product, resolve_sun_azimuth
from .errors import OutputError
from .model_registry import default_model_path, model_threshold
from .product import Product, open_product
from .progress import Reporter
from .result_layers import RESULT_LAYERS, Detections, DetectResult
from .results import ResultsWriter
from .stitching import write_geotiff

#: ``probability_raster`` value (and the CLI's default) that names the raster after the GeoPackage and the product.
BESIDE_OUTPUT = "beside-output"


def probability_raster_path(output: str | Path, product_id: str) -> Path:
    """The default probability raster of ``product_id`` detected into ``output``: in the GeoPackage's folder,
    ``<stem>_<PRODUCT_ID>_probability.tif`` (``results.gpkg`` → ``results_ESP_011319_1305_RED_probability.tif``).

    Why both names: the GeoPackage alone would make a second product overwrite the first's raster; the product
    alone would make two GeoPackages of one product (say, two models) share one.
    """
    output = Path(output)
    return output.with_name(f"{output.stem}_{product_id}_probability.tif")


def write_results(path: Path, product: Product, found: Detections, wait_s: float = 0.0) -> Path:
    """Write (or replace) this product's rows in the results GeoPackage through the single writer."""
    with ResultsWriter(path, RESULT_LAYERS, wait_s=wait_s) as writer:
        writer.write_product(product.product_id, found.rows)
    return path


def detect(
    product_path: str | Path,
    output: str | Path,
    options: DetectOptions | None = None,
    reporter: Reporter | None = None,
    quicklook: str | Path | None = None,
    probability_raster: str | Path | None = None,
) -> DetectResult:
    """Score every chunk of a product and write the result layers (and optionally a quick-look and raster).

    ``probability_raster``: a GeoTIFF path, :data:`BESIDE_OUTPUT` for :func:`probability_raster_path` (named from
    the product id the label gives, :func:`~marsice_plugin.outputs.product_id_of`, so it is checked before the
    product is opened too), or None for none. Every output is checked before the product is opened
    (:func:`~marsice_plugin.outputs.check_outputs`: none may be an input, each has its format's extension, every
    folder is writable). The quick-look and the
    probability raster are written under temporary names first and put in place only after the GeoPackage has
    been committed, so a failure anywhere leaves no side output beside an unchanged GeoPackage.
    """
    from .cnn.model import load_model, with_precision
    from .outputs import GEOPACKAGE, GEOTIFF, PNG, Output, SideOutputs, check_outputs, product_id_of

    options = options or DetectOptions()
    reporter = reporter or Reporter("quiet")
    output = Path(output)
    model_path = Path(options.model_path) if options.model_path else default_model_path()
    raster_option = "--probability-raster"
    if probability_raster == BESIDE_OUTPUT:
        probability_raster = probability_raster_path(output, product_id_of(product_path))
        raster_option = "the probability raster (default name; --probability-raster PATH names another)"
    check_outputs(
        [product_path, model_path],
        [
            Output(output, GEOPACKAGE, "-o", in_place=True),
            Output(quicklook, PNG, "--quicklook"),
            Output(probability_raster, GEOTIFF, raster_option),
        ],
    )
    options = replace(options, model_path=model_path, threshold=model_threshold(options.threshold, model_path))
    reporter.progress(0, f"opening {Path(product_path).name}")
    side = SideOutputs()
    existed = output.exists()
    try:
        with open_product(product_path) as product:
            resolve_sun_azimuth(product, options.sun_azimuth, reporter)
            reporter.log(
                f"{product.product_id}: {product.width}x{product.height} px at {product.scale_m:.2f} m/px, "
                f"Ls {_fmt(product.viewing.solar_longitude)}, incidence {_fmt(product.viewing.incidence_angle)}, "
                f"sun azimuth {_fmt(product.viewing.sun_azimuth_from_north)} from north"
                + (" (assumed: typical at its latitude)" if product.viewing.sun_source == "latitude" else "")
            )
            reporter.progress(2, f"loading model {model_path.name}")
            model = with_precision(load_model(model_path), options.precision)
            found = detect_product(product, model, options, reporter, model_path.name)
            if found.domain is not None and not found.domain.inside:
                reporter.log(found.domain.warning(product.product_id), level="warning")
            result = DetectResult(**vars(found), output=output)
            raster = found.raster
            try:
                if probability_raster:
                    side.make_folder(Path(probability_raster).parent)
                    write_geotiff(raster, product.crs.to_wkt(), Path(probability_raster), finish=side.defer)
                if quicklook:
                    from .quicklook import render_quicklook

                    reporter.progress(92, "drawing quick-look")
                    side.make_folder(Path(quicklook).parent)
                    render_quicklook(product, result, Path(quicklook), finish=side.defer)
                reporter.progress(94, "writing GeoPackage")
                side.make_folder(output.parent)
                write_results(output, product, result)
            except OutputError as exc:
                side.discard()
                extras = [str(p) for p in (quicklook, probability_raster) if p]
                if not extras:  # the GeoPackage's own message says it all
                    raise
                kept = f"{output} is as it was" if existed else f"{output} was not created"
                raise OutputError(f"{exc}; nothing was written: {kept}, {' and '.join(extras)} not written") from exc
        side.commit([output])  # the GeoPackage is in: now the side outputs (a failure says what exists)
    except BaseException:
        side.discard()
        raise
    result.probability_raster = Path(probability_raster) if probability_raster else None
    result.quicklook = Path(quicklook) if quicklook else None
    reporter.progress(100, "done")
    return result


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}°"
