"""The outputs load in a real headless QGIS 3.22 with a valid Mars CRS (QGIS runs in a subprocess)."""

from __future__ import annotations

import pytest

from marsice_plugin.detection import DetectOptions
from marsice_plugin.pipeline import detect

from .conftest import DEMO_MODEL, run_qgis_python

pytestmark = pytest.mark.qgis


def test_chunks_layer_valid_in_qgis(sample_product, tmp_path):
    gpkg = tmp_path / "chunks.gpkg"
    detect(sample_product.label_path, gpkg, DetectOptions(model_path=DEMO_MODEL, overlap=0))
    code = f"""
from qgis.core import QgsRasterLayer, QgsUnitTypes, QgsVectorLayer
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
    "renderer": layer.renderer().type(), "classes": len(layer.renderer().ranges()),
    "raster_valid": raster.isValid() and raster.crs().isValid(), "raster_proj": raster.crs().toProj(),
}}))
"""
    info = run_qgis_python(code, tmp_path / "home")
    assert info["valid"] and info["crs_valid"]
    # the IAU_2015:49900 sphere in degrees (QGIS 3.22's isGeographic() is False for CRSs without authority)
    assert info["units"] == "degrees" and info["proj"].startswith("+proj=longlat +R=3396190 ")
    assert info["count"] == 6
    assert all(0.0 <= p <= 1.0 for p in info["probs"])
    # the default style stored in the GeoPackage is applied when QGIS opens the layer
    assert info["renderer"] == "graduatedSymbol" and info["classes"] == 5
    assert info["cand_valid"] and info["cand_renderer"] == "singleSymbol"
    assert {"area_m2", "max_probability", "centroid_lat", "centroid_lon", "description"} <= set(info["cand_fields"])
    assert info["prod_count"] == 1 and info["prod_category"][0] in ("none", "one", "several")
    xmin, ymin, xmax, ymax = info["extent"]
    assert 31.3 < xmin < xmax < 31.5 and -50.3 < ymin < ymax < -50.1
    assert info["truth_valid"] and info["truth_count"] >= 3
    # QGIS's own GDAL reads the label as GDAL's PDS driver does: the product's own sphere and parallel
    assert info["raster_valid"] and "+lat_ts=-50" in info["raster_proj"] and "+R=3384416" in info["raster_proj"]
