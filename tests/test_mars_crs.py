"""Each product's CRS and transform come from its own label and agree with GDAL's PDS driver."""

from __future__ import annotations

import shutil

import numpy as np
import pyproj
import pytest
import rasterio

from marsice_plugin.errors import CRSError
from marsice_plugin.labels import read_label
from marsice_plugin.mars_crs import (
    check_mars_crs,
    common_crs,
    label_crs,
    label_transform,
    local_radius,
    wkt_without_authority,
)
from marsice_plugin.vectors import to_lonlat

from .conftest import DATA


def _gdal_view(label_path):
    with rasterio.open(label_path) as ds:
        return ds.driver, ds.transform, pyproj.CRS.from_wkt(ds.crs.to_wkt())


def test_real_label_matches_gdal_pds_driver(tmp_path):
    # GDAL's own test suite points this real label at "byte.tif"; give it such an image.
    shutil.copy(DATA / "ESP_013951_1955_RED.LBL", tmp_path)
    with rasterio.open(tmp_path / "byte.tif", "w", driver="GTiff", width=20, height=20, count=1, dtype="uint8") as d:
        d.write(np.zeros((1, 20, 20), np.uint8))
    label = read_label(tmp_path / "ESP_013951_1955_RED.LBL")
    driver, transform, crs = _gdal_view(tmp_path / "ESP_013951_1955_RED.LBL")
    assert driver == "PDS"
    assert label_transform(label) == transform
    assert label_transform(label).c == -(12278395.5 + 0.5) * 0.5
    assert label_crs(label) == crs
    assert label_crs(label).ellipsoid.semi_major_metre == pytest.approx(3394839.8133163)


def test_generated_product_matches_gdal_and_its_bounds(small_product):
    label = read_label(small_product.label_path)
    driver, transform, crs = _gdal_view(small_product.label_path)
    assert driver == "PDS"
    assert label_transform(label) == transform
    assert label_crs(label) == crs
    # the label's own latitude/longitude extent is where the transform puts the image
    t = label_transform(label)
    lon, lat = to_lonlat(label_crs(label), [t.c, t.c + t.a * label.samples], [t.f, t.f + t.e * label.lines])
    p = label.projection
    assert lat[0] == pytest.approx(p.maximum_latitude, abs=1e-7)
    assert lat[1] == pytest.approx(p.minimum_latitude, abs=1e-7)
    assert lon[0] % 360 == pytest.approx(p.westernmost_longitude, abs=1e-7)
    assert lon[1] % 360 == pytest.approx(p.easternmost_longitude, abs=1e-7)


def test_local_radius_reproduces_real_labels():
    assert local_radius(15.0) == pytest.approx(3394839.8133163, abs=1e-3)  # ESP_013951_1955_RED
    assert local_radius(-5.0) == pytest.approx(3396036.0, abs=1.0)  # DTEEC_008669_1705 (3396.036 km)


def test_common_crs_written_without_authority():
    wkt = wkt_without_authority(common_crs())
    assert "AUTHORITY" not in wkt and "IAU" not in wkt
    again = pyproj.CRS.from_wkt(wkt)
    assert again.ellipsoid.semi_major_metre == 3396190.0
    assert again.is_geographic


def test_earth_crs_is_refused():
    with pytest.raises(CRSError, match="not a Mars CRS"):
        check_mars_crs(pyproj.CRS.from_epsg(4326), "mosaic.tif")
    with pytest.raises(CRSError, match="no coordinate reference system"):
        check_mars_crs(None, "mosaic.tif")
    check_mars_crs(common_crs(), "ok")
