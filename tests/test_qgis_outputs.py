"""The outputs load in a real headless QGIS 3.22 with a valid Mars CRS, styled (QGIS runs in a subprocess)."""

from __future__ import annotations

import numpy as np
import pytest

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.cli import main
from marsice_plugin.sites.build import _write as write_sites
from marsice_plugin.styles import TERRAIN_KINDS, write_terrain_styles

from .conftest import DEMO_MODEL, REPO, run_qgis_python

pytestmark = pytest.mark.qgis

#: The run's threshold: neither the demo model card's nor the paper's 0.6 (a chunk at 0.65 must not look flagged).
THRESHOLD = 0.7


def _terrain_rasters(folder) -> dict:
    """Tiny stand-ins of the five ``marsice terrain`` rasters, named as it names them."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir()
    paths = {}
    for kind in TERRAIN_KINDS:
        dtype = "uint8" if kind in ("shadow", "poleward") else "float32"
        paths[kind] = folder / f"ESP_090007_1298_RED_{kind}.tif"
        values = (np.arange(64).reshape(8, 8) % (2 if dtype == "uint8" else 45)).astype(dtype)
        profile = {"driver": "GTiff", "width": 8, "height": 8, "count": 1, "dtype": dtype}
        with rasterio.open(paths[kind], "w", transform=from_origin(0, 80, 10, 10), **profile) as ds:
            ds.write(values, 1)
    return paths


def _strings(paths: dict) -> dict[str, str]:
    return {kind: str(path) for kind, path in paths.items()}


def test_outputs_open_styled_in_qgis(sample_product, tmp_path):
    gpkg, raster = tmp_path / "chunks.gpkg", tmp_path / "probability.tif"
    args = ["--progress", "quiet", "detect", sample_product.label_path, "-o", gpkg, "--model", DEMO_MODEL]
    args += ["--overlap", "0", "--threshold", str(THRESHOLD), "--probability-raster", raster]
    assert main([str(a) for a in args]) == 0
    assert (tmp_path / "probability.qml").is_file()  # detect wrote the raster's style beside it
    footprints = write_footprints(tmp_path / "footprints.gpkg", [])
    sites = tmp_path / "sites.gpkg"
    write_sites(sites, [], {}, 10.0, {})
    styled = _terrain_rasters(tmp_path / "terrain")
    assert len(write_terrain_styles(styled)) == len(TERRAIN_KINDS)
    bare = _terrain_rasters(tmp_path / "bare")  # no .qml: the plugin's loader styles them by name
    unstyled = tmp_path / "bare" / "probability.tif"  # a probability raster without its .qml
    unstyled.write_bytes(raster.read_bytes())
    code = f"""
sys.path.insert(0, {str(REPO)!r})
from qgis.core import (QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsRenderContext,
                       QgsUnitTypes, QgsVectorLayer)
from qgis.PyQt.QtCore import Qt
from marsice_plugin.qgisplugin.layers import apply_default_style, queue_raster

def chunk_symbols(layer):
    # per chunk: its probability, whether a symbol draws it red, whether any symbol layer fills it
    rend, ctx, out = layer.renderer().clone(), QgsRenderContext(), []
    rend.startRender(ctx, layer.fields())
    for f in layer.getFeatures():
        parts = [s.symbolLayer(i) for s in rend.symbolsForFeature(f, ctx) for i in range(s.symbolLayerCount())]
        lines = [p.strokeColor() if hasattr(p, "brushStyle") else p.color() for p in parts]
        fills = [p for p in parts if hasattr(p, "brushStyle")]
        out.append({{"probability": f["probability"], "red": any(c.getRgb()[:3] == (215, 25, 28) for c in lines),
                    "filled": any(p.brushStyle() != Qt.NoBrush and p.fillColor().alpha() > 0 for p in fills)}})
    rend.stopRender(ctx)
    return out

def ramp(layer):
    r = layer.renderer()
    info = {{"type": r.type()}}
    if r.type() == "singlebandpseudocolor":
        shader = r.shader().rasterShaderFunction()
        info.update(min=shader.minimumValue(), max=shader.maximumValue(), clip=shader.clip())
    return info

def renderer(source):
    layer = QgsVectorLayer(source, "v", "ogr")  # kept while its renderer is read
    r = layer.renderer()
    return [r.type(), r.classAttribute() if hasattr(r, "classAttribute") else ""]

def bare_layer(path, name):
    layer = QgsRasterLayer(path, name, "gdal")
    apply_default_style(layer)
    return layer

def loaded_by_processing(path, threshold):
    # as Processing loads a queued output: no default style, then the post-processor
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    source = queue_raster(context, path, "run 1", threshold)
    details = context.layerToLoadOnCompletionDetails(source)
    options = QgsRasterLayer.LayerOptions()
    options.loadDefaultStyle = False
    layer = QgsRasterLayer(source, details.name, "gdal", options)
    QgsProject.instance().addMapLayer(layer)
    details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
    group = QgsProject.instance().layerTreeRoot().findLayer(layer.id()).parent().name()
    return dict(ramp(layer), group=group, name=details.name)

layer = QgsVectorLayer("{gpkg}|layername=chunks", "chunks", "ogr")
cands = QgsVectorLayer("{gpkg}|layername=ice_candidates", "cands", "ogr")
prods = QgsVectorLayer("{gpkg}|layername=products", "products", "ogr")
truth = QgsVectorLayer("{sample_product.truth_path}|layername=ice_truth", "truth", "ogr")
raster = QgsRasterLayer("{sample_product.label_path}", "product", "gdal")
crs = layer.crs()
ext = layer.extent()
probs = [f["probability"] for f in layer.getFeatures()]
print(json.dumps({{
    "valid": layer.isValid(), "crs_valid": crs.isValid(),
    "units": QgsUnitTypes.toString(crs.mapUnits()), "proj": crs.toProj(),
    "ellipsoid": crs.ellipsoidAcronym(), "count": layer.featureCount(), "probs": probs,
    "extent": [ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()],
    "truth_valid": truth.isValid() and truth.crs().isValid(), "truth_count": truth.featureCount(),
    "cand_valid": cands.isValid() and cands.crs().isValid(), "cand_renderer": cands.renderer().type(),
    "cand_fields": [f.name() for f in cands.fields()],
    "prod_count": prods.featureCount(), "prod_category": [f["category"] for f in prods.getFeatures()],
    "renderer": layer.renderer().type(),
    "raster_valid": raster.isValid() and raster.crs().isValid(), "raster_proj": raster.crs().toProj(),
    "labels": layer.labelsEnabled(), "chunks": chunk_symbols(layer),
    "threshold": [f["threshold"] for f in prods.getFeatures()],
    "probability": ramp(QgsRasterLayer("{raster}", "p", "gdal")),
    "footprints": renderer("{footprints}|layername=footprints"), "sites": renderer("{sites}|layername=sites"),
    "terrain": {{k: ramp(QgsRasterLayer(p, k, "gdal")) for k, p in {_strings(styled)!r}.items()}},
    "bare": {{k: ramp(bare_layer(p, k)) for k, p in {_strings(bare)!r}.items()}},
    "queued": [loaded_by_processing({str(bare["slope"])!r}, None), loaded_by_processing({str(unstyled)!r}, 0.55)],
}}))
"""
    info = run_qgis_python(code, tmp_path / "home")
    assert info["valid"] and info["crs_valid"]
    # the IAU_2015:49900 sphere in degrees (QGIS 3.22's isGeographic() is False for CRSs without authority)
    assert info["units"] == "degrees" and info["proj"].startswith("+proj=longlat +R=3396190 ")
    assert info["count"] == 6
    assert all(0.0 <= p <= 1.0 for p in info["probs"])
    # the default styles stored in the GeoPackages are applied when QGIS opens the layers
    assert info["renderer"] == "RuleRenderer" and info["labels"]
    assert info["threshold"] == [THRESHOLD]
    flagged = [c for c in info["chunks"] if c["probability"] >= THRESHOLD]
    assert 0 < len(flagged) < len(info["chunks"])
    for chunk in info["chunks"]:  # red outline exactly where the run's threshold flags, and nothing filled
        assert chunk["red"] == (chunk["probability"] >= THRESHOLD), chunk
        assert not chunk["filled"], chunk
    assert info["probability"]["type"] == "singlebandpseudocolor"
    assert abs(info["probability"]["min"] - THRESHOLD) < 1e-6 and info["probability"]["clip"]
    assert info["footprints"] == ["graduatedSymbol", "ls"] and info["sites"] == ["RuleRenderer", ""]
    for styles in (info["terrain"], info["bare"]):  # from the .qml beside them, or by name without one
        slope, aspect = styles["slope"], styles["aspect"]
        assert slope["type"] == aspect["type"] == "singlebandpseudocolor"
        assert (slope["min"], slope["max"], aspect["min"], aspect["max"]) == (0, 40, 0, 360)
        assert styles["shadow"]["type"] == styles["poleward"]["type"] == "paletted"
        assert styles["height"]["type"] == "hillshade"
    # the plugin's loader: into the run's group, named, styled by kind or from the threshold it is given
    slope, probability = info["queued"]
    assert slope["group"] == probability["group"] == "run 1" and slope["name"].startswith("Slope")
    assert (slope["type"], slope["min"], slope["max"]) == ("singlebandpseudocolor", 0, 40)
    assert probability["type"] == "singlebandpseudocolor" and abs(probability["min"] - 0.55) < 1e-6
    assert info["cand_valid"] and info["cand_renderer"] == "RuleRenderer"  # by the second stage's probability
    assert {"area_m2", "max_probability", "centroid_lat", "centroid_lon", "description"} <= set(info["cand_fields"])
    assert {"probability", "chunk_probability", "rank"} <= set(info["cand_fields"])
    assert info["prod_count"] == 1 and info["prod_category"][0] in ("none", "one", "several")
    xmin, ymin, xmax, ymax = info["extent"]
    assert 31.3 < xmin < xmax < 31.5 and -50.3 < ymin < ymax < -50.1
    assert info["truth_valid"] and info["truth_count"] >= 3
    # QGIS's own GDAL reads the label as GDAL's PDS driver does: the product's own sphere and parallel
    assert info["raster_valid"] and "+lat_ts=-50" in info["raster_proj"] and "+R=3384416" in info["raster_proj"]
