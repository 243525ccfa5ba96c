"""Render the demo's outputs as QGIS shows them to a geologist: docs/demo_map.png, and a check of what it shows.

Why: a style can say something the run did not. Graduated classes against the paper's 0.6 made chunks the run
flagged at its own 0.35 look "not above", and semi-opaque squares of overlapping chunks hid each other. This
draws the demo as the plugin loads it (each layer's default style: the GeoPackage's ``layer_styles`` rows and
the ``.qml`` ``marsice detect`` writes beside the probability raster, applied by
``marsice_plugin.qgisplugin.layers.apply_default_style``) with ``QgsMapRendererParallelJob``, and checks the
styles against the data: every chunk at or above the threshold of the ``products`` layer is drawn with the red
outline and every other one is not, no chunk symbol has a fill that could hide another chunk or the image, and
the probability raster's ramp starts at that threshold. It prints the check as JSON and exits 1 if it fails.

Usage (QGIS's own Python, headless; the demo first)::

    .venv/bin/marsice demo -o demo_output
    .venv/bin/marsice detect demo_output/ESP_090007_1298_RED.LBL -o demo_output/detect.gpkg \\
        --probability-raster demo_output/probability.tif
    QT_QPA_PLATFORM=offscreen /usr/bin/python3 bench/render_demo_map.py demo_output/ESP_090007_1298_RED.LBL \\
        demo_output/detect.gpkg demo_output/probability.tif -o docs/demo_map.png
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qgis.core import (
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRasterLayer,
    QgsRenderContext,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter, QPen

from marsice_plugin.styles import PROBABILITY_RAMP, RED


def load(image: Path, results: Path, raster: Path) -> dict:
    """The demo's layers, styled as the plugin styles them (top to bottom: candidates, chunks, raster, image)."""
    from marsice_plugin.qgisplugin.layers import apply_default_style

    layers = {
        "ice_candidates": QgsVectorLayer(f"{results}|layername=ice_candidates", "ice candidates", "ogr"),
        "chunks": QgsVectorLayer(f"{results}|layername=chunks", "chunks", "ogr"),
        "probability": QgsRasterLayer(str(raster), "probability", "gdal"),
        "image": QgsRasterLayer(str(image), "image", "gdal"),
    }
    for name, layer in layers.items():
        if not layer.isValid():
            raise SystemExit(f"cannot open the {name} layer from {layer.source()}")
        if name != "image":
            apply_default_style(layer)
    return layers


def _line_colour(part: object) -> QColor:
    """The colour a symbol layer draws its line in (a fill's outline, or a line layer's colour)."""
    return part.strokeColor() if hasattr(part, "brushStyle") else part.color()


def _fills(part: object) -> bool:
    return part.brushStyle() != Qt.NoBrush and part.fillColor().alpha() > 0


def check(layers: dict, results: Path) -> dict:
    """What the styles show against the data: flagged chunks drawn red, no fill, the raster's ramp start."""
    products = QgsVectorLayer(f"{results}|layername=products", "products", "ogr")
    thresholds = {round(f["threshold"], 6) for f in products.getFeatures()}
    threshold = max(thresholds)
    chunks = layers["chunks"]
    renderer = chunks.renderer().clone()
    context = QgsRenderContext()
    renderer.startRender(context, chunks.fields())
    rows, filled = [], 0
    for feature in chunks.getFeatures():
        symbols = renderer.symbolsForFeature(feature, context)
        parts = [s.symbolLayer(i) for s in symbols for i in range(s.symbolLayerCount())]
        strokes = [tuple(_line_colour(part).getRgb()[:3]) for part in parts]
        filled += sum(1 for part in parts if hasattr(part, "brushStyle") and _fills(part))
        p = feature["probability"]
        rows.append(
            {
                "chunk": [feature["chunk_row"], feature["chunk_col"]],
                "probability": None if p is None else round(p, 3),
                "flagged": p is not None and p >= threshold,
                "drawn_red": RED in strokes,
            }
        )
    renderer.stopRender(context)
    ramp = layers["probability"].renderer()
    return {
        "threshold": threshold,
        "thresholds_in_file": sorted(thresholds),
        "chunks": len(rows),
        "flagged": sum(r["flagged"] for r in rows),
        "flagged_drawn_red": sum(r["flagged"] and r["drawn_red"] for r in rows),
        "unflagged_drawn_red": sum(not r["flagged"] and r["drawn_red"] for r in rows),
        "filled_symbols": filled,
        "chunk_renderer": chunks.renderer().type(),
        "raster_renderer": ramp.type(),
        "raster_ramp_start": round(ramp.classificationMin(), 6) if hasattr(ramp, "classificationMin") else None,
        "rows": rows,
    }


def render(layers: dict, width: int) -> QImage:
    """The map at ``width`` pixels across the image, in the image's own CRS."""
    settings = QgsMapSettings()
    settings.setLayers(list(layers.values()))
    settings.setDestinationCrs(layers["image"].crs())
    extent = layers["image"].extent()
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, round(width * extent.height() / extent.width())))
    settings.setBackgroundColor(QColor(0, 0, 0))
    settings.setOutputDpi(96)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def draw_legend(image: QImage, threshold: float) -> None:
    """A small key in the lower left corner: what each colour says."""
    entries = [
        ("line", QColor(*RED), 3, Qt.SolidLine, f"chunk flagged: probability ≥ {threshold:g} (the run's threshold)"),
        ("line", QColor(225, 225, 225), 1, Qt.DashLine, "chunk below the threshold (label: probability)"),
        ("line", QColor(255, 0, 255), 2, Qt.SolidLine, "ice candidate outline"),
        ("ramp", None, 0, None, f"stitched probability from {threshold:g} (cyan) to 1 (blue)"),
    ]
    painter = QPainter(image)
    painter.setRenderHint(QPainter.Antialiasing)
    font = QFont("DejaVu Sans")
    font.setPixelSize(13)
    painter.setFont(font)
    row_h, pad = 20, 8
    box = QRectF(10, image.height() - 10 - pad * 2 - row_h * len(entries), 430, pad * 2 + row_h * len(entries))
    painter.fillRect(box, QColor(0, 0, 0, 170))
    for i, (kind, colour, width, style, text) in enumerate(entries):
        y = box.top() + pad + row_h * i + row_h / 2
        x = box.left() + pad
        if kind == "line":
            painter.setPen(QPen(colour, width, style))
            painter.drawLine(int(x), int(y), int(x + 30), int(y))
        else:
            (c0, _), (c1, _), (c2, _) = PROBABILITY_RAMP
            for k in range(30):
                t = 2 * k / 29
                a, b, u = (c0, c1, t) if t <= 1 else (c1, c2, t - 1)
                mixed = (round(p + (q - p) * u) for p, q in zip(a, b, strict=True))
                painter.fillRect(QRectF(x + k, y - 5, 1, 10), QColor(*mixed))
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(int(x + 40), int(y + 5), text)
    painter.end()


def save_png(image: QImage, path: Path, colours: int) -> int:
    """Save as a palette PNG of ``colours`` colours (128 keeps the demo map under 500 kB for docs/ with no
    visible banding; the image's texture is what costs bytes)."""
    from PIL import Image

    data = QByteArray()  # kept referenced: the buffer writes into it
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    picture = Image.open(io.BytesIO(bytes(data))).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", type=Path, help="the product (.LBL) the demo generated")
    parser.add_argument("results", type=Path, help="results GeoPackage of `marsice detect` on it")
    parser.add_argument("raster", type=Path, help="its probability raster (with the .qml detect wrote)")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/demo_map.png"))
    parser.add_argument("--width", type=int, default=1100, help="width of the PNG in pixels")
    parser.add_argument("--colours", type=int, default=128, help="colours of the PNG's palette (at most 256)")
    args = parser.parse_args(argv)

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    layers = load(args.image, args.results, args.raster)
    report = check(layers, args.results)
    image = render(layers, args.width)
    draw_legend(image, report["threshold"])
    report["png_bytes"] = save_png(image, args.output, args.colours)
    report["png"] = str(args.output)
    ok = (
        report["flagged_drawn_red"] == report["flagged"]
        and report["unflagged_drawn_red"] == 0
        and report["filled_symbols"] == 0
        and report["raster_ramp_start"] is not None
        and abs(report["raster_ramp_start"] - report["threshold"]) < 1e-6
    )
    report["ok"] = ok
    print(json.dumps(report, indent=1))
    layers.clear()  # layers must go before QGIS does (exitQgis with live layers crashes)
    app.exitQgis()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
