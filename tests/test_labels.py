"""PDS3 labels: real HiRISE labels parse into the right typed values; defects raise LabelError."""

from __future__ import annotations

import math

import pytest

from marsice_plugin.errors import LabelError, MarsIceError
from marsice_plugin.labels import parse_label_text, read_label

from .conftest import DATA


def test_real_red_label_values():
    label = read_label(DATA / "ESP_013951_1955_RED.LBL")
    assert label.product_id == "ESP_013951_1955_RED"
    assert label.observation_id == "ESP_013951_1955"
    assert (label.samples, label.lines) == (19243, 67395)
    assert label.valid_bits == 10
    assert label.special_values == {
        "CORE_NULL": 0,
        "CORE_LOW_REPR_SATURATION": 1,
        "CORE_LOW_INSTR_SATURATION": 2,
        "CORE_HIGH_REPR_SATURATION": 1023,
        "CORE_HIGH_INSTR_SATURATION": 1022,
    }
    p = label.projection
    assert p.projection_type == "EQUIRECTANGULAR"
    assert p.a_radius_m == pytest.approx(3394839.8133163)
    assert p.center_latitude == 15.0 and p.center_longitude == 180.0
    assert p.sample_projection_offset == 12278395.5
    assert label.solar_longitude == pytest.approx(305.594678)
    assert label.incidence_angle == pytest.approx(49.990076)
    # (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360 = (135.482409 - 270) mod 360
    assert label.sun_azimuth_from_north == pytest.approx(225.482409)
    assert label.max_binning == 2
    assert label.start_time.year == 2009 and label.start_time.tzinfo is not None
    assert label.image_file == "byte.tif"
    assert label.center_latitude_image == pytest.approx((15.228493633562 + 15.797211542227) / 2)


@pytest.mark.parametrize("name", ["ESP_011707_1440_COLOR.LBL", "PSP_010737_2050_COLOR.LBL"])
def test_real_color_labels_parse(name):
    label = read_label(DATA / name)
    assert label.product_id.endswith("_COLOR")
    assert label.bands == 3
    assert 0 <= label.sun_azimuth_from_north < 360
    assert math.isfinite(label.projection.map_scale_m) and label.projection.map_scale_m > 0


def test_dtm_label_projection():
    label = read_label(DATA / "DTEEC_008669_1705_009025_1705_A01.partial.lbl")
    assert label.projection.a_radius_m == pytest.approx(3396036.0)
    assert label.projection.center_latitude == -5.0
    assert label.sample_bits == 8


def test_label_without_map_projection_is_refused():
    text = (
        'PDS_VERSION_ID = PDS3\nPRODUCT_ID = "PSP_001331_2260_IR10_1"\n'
        "OBJECT = IMAGE\nLINES = 2\nEND_OBJECT = IMAGE\nEND\n"
    )
    with pytest.raises(LabelError, match="not a map-projected product"):
        parse_label_text(text)


def test_garbage_label_raises_project_error(tmp_path):
    bad = tmp_path / "bad.LBL"
    bad.write_text("PDS_VERSION_ID = PDS3\nOBJECT = IMAGE_MAP_PROJECTION\n  MAP_SCALE = (\nEND\n")
    with pytest.raises(MarsIceError):
        read_label(bad)
    not_pds = tmp_path / "x.LBL"
    not_pds.write_text("hello")
    with pytest.raises(LabelError, match="not a PDS3 label"):
        read_label(not_pds)


def test_non_numeric_keyword_is_reported(tmp_path):
    text = (
        (DATA / "ESP_013951_1955_RED.LBL")
        .read_text()
        .replace("MAP_SCALE                    = 0.5", 'MAP_SCALE = "half"')
    )
    with pytest.raises(LabelError, match="MAP_SCALE"):
        parse_label_text(text)
