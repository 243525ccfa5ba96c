"""Generated products: real format (lossless 10-bit JP2 + PDS3 label), physics and truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from marsice_plugin.gpkg import GeoPackage, parse_geometry_blob
from marsice_plugin.labels import read_label
from marsice_plugin.mars_crs import label_transform
from marsice_plugin.synthetic import illumination
from marsice_plugin.synthetic.product_writer import product_id_for, projection_center_latitude

from .conftest import QUIET_SCENE


def test_jp2_is_lossless_10bit(sample_product):
    with rasterio.open(sample_product.image_path) as ds:
        assert ds.driver == "JP2OpenJPEG"
        assert ds.dtypes[0] == "uint16"
        assert ds.tags(1, "IMAGE_STRUCTURE").get("NBITS") == "10"
        data = ds.read(1)
    assert np.array_equal(data, sample_product.scene.dn)
    assert data.max() <= 1023


def test_label_keywords(sample_product):
    label = read_label(sample_product.label_path)
    assert label.product_id == sample_product.product_id == product_id_for(90007, -50.2)
    assert label.image_file == sample_product.image_path.name
    assert label.projection.center_latitude == projection_center_latitude(-50.2) == -50.0
    assert label.sun_azimuth_from_north == pytest.approx(297.0)
    assert label.solar_longitude == pytest.approx(172.0)
    assert label.special_values["CORE_HIGH_REPR_SATURATION"] == 1023
    assert (label.samples, label.lines) == (3072, 2048)


def test_special_values_only_where_planted(sample_product):
    scene = sample_product.scene
    special = np.isin(scene.dn, (1, 2, 1022, 1023))
    assert special.any()
    assert not (special & ~scene.hot).any()
    assert np.array_equal(scene.dn == 0, scene.nodata)


def test_truth_polygons_cover_bright_patches(sample_product):
    scene = sample_product.scene
    gpkg = GeoPackage.open(sample_product.truth_path)
    blobs = [b for (b,) in gpkg.conn.execute("SELECT geom FROM ice_truth")]
    gpkg.close()
    assert len(blobs) >= 3
    transform = label_transform(read_label(sample_product.label_path))
    total_area = sum(parse_geometry_blob(b).area for b in blobs)
    assert total_area == pytest.approx(scene.ice.sum() * transform.a**2, rel=1e-6)
    # planted ice is brighter than the ground around it (its contrast is drawn above zero)
    from scipy import ndimage

    ring = ndimage.binary_dilation(scene.ice, iterations=6) & ~scene.ice & ~scene.nodata & ~scene.hot
    assert scene.dn[scene.ice].mean() > scene.dn[ring].mean()


def test_cast_shadow_length_of_a_block():
    # a 4 m tall, 2 m wide wall on flat ground; sun from the west at 30° elevation
    scale = 0.25
    height = np.zeros((40, 200), np.float32)
    height[:, 40:48] = 4.0
    shadow = illumination.cast_shadows(height, scale, azimuth_deg=270.0, incidence_deg=60.0)
    expected_m = 4.0 / math.tan(math.radians(30.0))
    length_px = shadow[20, 48:].sum()
    assert abs(length_px * scale - expected_m) <= scale
    assert not shadow[20, :40].any()  # nothing on the sunward side


def test_dtm_written_as_real_hirise_dtm(tmp_path):
    from marsice_plugin.synthetic.dtm_writer import MISSING_CONSTANT
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    sp = write_sample_product(tmp_path, SceneConfig(width=800, height=600, seed=4, n_boulders=50), dtm_factor=4)
    assert sp.dtm_path.name == "DTEEC_090004_1300_090005_1300_A01.IMG"
    label = read_label(sp.dtm_path)
    assert label.sample_bits == 32 and label.projection.map_scale_m == 2.0
    with rasterio.open(sp.dtm_path) as dtm, rasterio.open(sp.label_path) as image:
        assert dtm.driver == "PDS" and dtm.dtypes[0] == "float32"
        assert dtm.nodata == pytest.approx(MISSING_CONSTANT)
        # same upper-left corner and CRS as the image, four times coarser
        assert (dtm.transform.c, dtm.transform.f) == (image.transform.c, image.transform.f)
        assert dtm.transform.a == 4 * image.transform.a
        assert dtm.crs == image.crs
        heights = dtm.read(1)
    expected = sp.scene.height.reshape(150, 4, 200, 4).mean(axis=(1, 3))
    valid = heights != dtm.nodata
    np.testing.assert_allclose(heights[valid], expected[valid], atol=1e-4)
    # blocks that are entirely black margin carry the real DTMs' missing constant
    assert (~valid).sum() == sp.scene.nodata.reshape(150, 4, 200, 4).all(axis=(1, 3)).sum() > 0


def test_chunk_truth_table(sample_product):
    gpkg = GeoPackage.open(sample_product.truth_path)
    rows = gpkg.conn.execute(
        "SELECT chunk_row, chunk_col, ice_pixels, label, hot_pixels, geom FROM chunk_truth "
        "ORDER BY chunk_row, chunk_col"
    ).fetchall()
    gpkg.close()
    scene = sample_product.scene
    assert len(rows) == 6
    assert sum(r[2] for r in rows) == int(scene.ice.sum())
    assert sum(r[4] for r in rows) == int(scene.hot.sum())
    transform = label_transform(read_label(sample_product.label_path))
    for _, chunk_col, ice, label, _, blob in rows:
        box = parse_geometry_blob(blob)
        assert box.area == pytest.approx(1024 * 1024 * transform.a**2)
        assert box.bounds[0] == pytest.approx(transform.c + chunk_col * 1024 * transform.a)
        assert label == int(ice >= 16)


def test_shadows_fall_away_from_the_labels_sun():
    """A lone boulder under the paper's mid-afternoon sun (azimuth 297°) shades the ground to its ESE."""
    from marsice_plugin.synthetic.terrain import Boulder, add_boulders

    scale = 0.5
    height = np.zeros((200, 200), np.float32)
    add_boulders(height, [Boulder(100.0, 100.0, 2.0, 2.0)], scale)
    shadow = illumination.cast_shadows(height, scale, azimuth_deg=297.0, incidence_deg=70.0) & (height == 0)
    rows, cols = np.nonzero(shadow)
    east, north = cols - 100.0, -(rows - 100.0)
    sun = (math.sin(math.radians(297.0)), math.cos(math.radians(297.0)))
    assert len(rows) > 20
    assert np.all(east * sun[0] + north * sun[1] < 0)  # every shaded pixel lies on the side away from the sun
    centre_bearing = math.degrees(math.atan2(east.mean(), north.mean())) % 360
    assert centre_bearing == pytest.approx(117.0, abs=5.0)  # the anti-sun azimuth, 297° - 180°
    length_m = np.hypot(rows - 100.0, cols - 100.0).max() * scale
    # the shadow tip is cast by the boulder's top (2 m, at its centre): height / tan(elevation) from the centre
    assert length_m == pytest.approx(2.0 / math.tan(math.radians(20.0)), abs=scale)


def test_ccd_offsets_step_at_ccd_boundaries():
    from marsice_plugin.synthetic.scene import SceneConfig, ccd_width_px, render

    base = dict(width=1536, height=256, seed=2, n_boulders=0, **QUIET_SCENE)
    plain = render(SceneConfig(**base)).dn.astype(float)
    stepped = render(SceneConfig(**base, ccd_offsets=True)).dn.astype(float)
    width = ccd_width_px(0.5)
    assert width == 1024

    def residual(cols):
        a, b = np.polyfit(plain[:, cols].ravel(), stepped[:, cols].ravel(), 1)
        return float(np.std(stepped[:, cols] - (a * plain[:, cols] + b)))

    inside = [residual(slice(10, width - 10)), residual(slice(width + 10, None))]
    across = residual(slice(10, None))
    # one gain and offset per CCD: affine within each CCD up to rounding, not across the boundary
    assert max(inside) < 0.5 < across


def test_geometry_drawn_from_real_band_observations():
    from marsice_plugin.synthetic.geometry import SUN_AZIMUTH_BAND, band_observations, sample_geometry

    rows = band_observations()
    assert len(rows) == 1409  # bundled observations with image centre in -60..-40 and Ls 140..200
    rng = np.random.default_rng(3)
    draws = [sample_geometry(rng) for _ in range(300)]
    for g in draws:
        assert -60 <= g.latitude <= -40 and 140 <= g.solar_longitude <= 200
        assert SUN_AZIMUTH_BAND[0] <= g.sun_azimuth <= SUN_AZIMUTH_BAND[2]
    incidences = np.array([g.incidence for g in draws])
    assert 65 < np.median(incidences) < 77  # the band's real median incidence is 71°: high, mid-afternoon sun
    assert 14.5 < np.median([g.local_time for g in draws]) < 16.5


def test_patch_outside_the_image_is_left_out_not_an_error():
    """A crater-wall patch of a crater near the edge can fall outside the chunk (seed 30932 did): no ice, no crash."""
    from marsice_plugin.synthetic.scene import SceneConfig, render

    inside = (40.0, 40.0, 3.0, 1.0)
    config = SceneConfig(width=96, height=96, scale_m=0.5, seed=5, n_boulders=0, n_craters=0, n_ice_boulder=0)
    outside_only = render(SceneConfig(**{**config.__dict__, "ice_at": ((-400.0, 50.0, 2.0, 1.0),)}))
    assert outside_only.ice.sum() == 0
    both = render(SceneConfig(**{**config.__dict__, "ice_at": ((-400.0, 50.0, 2.0, 1.0), inside)}))
    rows, cols = np.nonzero(both.ice)
    assert len(rows) > 50  # the patch inside is drawn, and only it: every ice pixel within reach of it
    assert np.hypot(rows - 40.0, cols - 40.0).max() < 2 * 3.0 / 0.5 + 4


def test_placed_patch_can_bring_its_boulder_on_the_equatorward_side():
    """A fifth value in ``ice_at`` puts a boulder of that radius north of a southern patch (poleward = south)."""
    from marsice_plugin.synthetic.scene import SceneConfig, render

    base = SceneConfig(width=128, height=128, scale_m=0.5, seed=9, n_boulders=0, n_craters=0, n_ice_boulder=0)
    bare = render(SceneConfig(**{**base.__dict__, "ice_at": ((64.0, 64.0, 3.0, 1.0),)}))
    with_boulder = render(SceneConfig(**{**base.__dict__, "ice_at": ((64.0, 64.0, 3.0, 1.0, 1.5),)}))
    bump = with_boulder.height - bare.height
    rows, cols = np.nonzero(bump > 0.1)
    assert len(rows) > 0 and bare.ice.any()
    # centre (1.5 + 0.5 * 3) m = 6 px north of the patch, as high as its radius
    assert rows.mean() == pytest.approx(64.0 - 6.0, abs=1.0) and cols.mean() == pytest.approx(64.0, abs=1.0)
    assert bump.max() == pytest.approx(1.5, rel=0.2)
    ice_rows, _ = np.nonzero(with_boulder.ice)
    assert ice_rows.mean() > rows.mean()  # the ice lies poleward (south) of its boulder
