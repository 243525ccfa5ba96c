"""The default styles tell the truth about a run: what they draw, which files carry them (no QGIS needed).

Loading them in a real QGIS is tests/test_qgis_outputs.py's part.
"""

from __future__ import annotations

import sqlite3
import struct
import xml.etree.ElementTree as ET

import pytest

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.errors import OutputError
from marsice_plugin.result_layers import RESULT_LAYERS
from marsice_plugin.results import ResultsWriter
from marsice_plugin.sites.build import _write as write_sites
from marsice_plugin.styles import (
    MARKER,
    RED,
    chunks_qml,
    footprints_qml,
    probability_raster_qml,
    sidecar_path,
    sites_qml,
    terrain_kind,
    terrain_raster_qml,
    write_raster_style,
    write_terrain_styles,
)


def _xml(qml: str) -> ET.Element:
    return ET.fromstring(qml.split("-->", 1)[1])


def _props(layer: ET.Element) -> dict[str, str]:
    return {p.get("k"): p.get("v") for p in layer.findall("prop")}


def _alpha(rgba: str) -> int:
    return int(rgba.split(",")[3])


def _default_styles(path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        features = {n for (n,) in conn.execute("SELECT table_name FROM gpkg_contents WHERE data_type='features'")}
        styles = dict(conn.execute("SELECT f_table_name, styleQML FROM layer_styles WHERE useAsDefault=1"))
    assert features, path
    return {name: styles.get(name, "") for name in features}


def test_every_layer_marsice_writes_opens_styled(tmp_path):
    """detect/scan results, search footprints and sites: each feature layer has a default ``layer_styles`` row."""
    results = tmp_path / "results.gpkg"
    with ResultsWriter(results, RESULT_LAYERS) as writer:
        writer.write_product("ESP_000000_0000_RED", {})
    footprints = write_footprints(tmp_path / "footprints.gpkg", [])
    sites = tmp_path / "sites.gpkg"
    write_sites(sites, [], {}, 10.0, {})
    found = {}
    for path in (results, footprints, sites):
        found.update(_default_styles(path))
    assert set(found) == {"chunks", "ice_candidates", "products", "footprints", "sites"}
    for name, qml in found.items():
        assert qml.startswith("<!DOCTYPE qgis") and MARKER in qml, name
        assert _xml(qml).find("renderer-v2") is not None, name
    assert _xml(found["chunks"]).find("renderer-v2").get("type") == "RuleRenderer"
    assert _xml(found["footprints"]).find("renderer-v2").get("attr") == "ls"


def test_chunks_are_outlines_flagged_by_the_runs_own_flag():
    root = _xml(chunks_qml())
    renderer = root.find("renderer-v2")
    rules = {r.get("filter"): r.get("symbol") for r in renderer.iter("rule")}
    # the run's threshold is in each row's above_threshold: no threshold figure is written into the style
    assert list(rules) == ['"skipped"', '"above_threshold"', "ELSE"]
    assert not any(ch.isdigit() for f in rules for ch in f)
    symbols = {s.get("name"): s for s in renderer.find("symbols")}
    layers = [layer for s in symbols.values() for layer in s.findall("layer")]
    assert {layer.get("class") for layer in layers} <= {"SimpleFill", "SimpleLine"}
    for layer in layers:  # nothing is filled: no chunk hides the image or another chunk
        props = _props(layer)
        if layer.get("class") == "SimpleFill":
            assert props["style"] == "no" and _alpha(props["color"]) == 0
    flagged = _props(symbols[rules['"above_threshold"']].find("layer"))
    assert flagged["outline_color"] == "{},{},{},255".format(*RED)
    below = _props(symbols[rules["ELSE"]].find("layer"))
    assert below["line_color"] != flagged["outline_color"] and _alpha(below["line_color"]) < 255
    assert float(below["offset"]) > 0  # drawn inside its square: an edge shared with a flagged chunk stays visible
    assert renderer.get("enableorderby") == "1" and "probability" in renderer.find("orderby").findtext("orderByClause")
    # the probability as a label (and the outline width) of every chunk
    assert root.get("labelsEnabled") == "1"
    assert "probability" in root.find("labeling/settings/text-style").get("fieldName")
    widths = [o.get("value") for o in root.iter("Option") if o.get("name") == "expression"]
    assert any('"probability"' in w and "0.25" in w for w in widths)


@pytest.mark.parametrize("threshold", [0.35, 0.6, 0.5, 0.123])
def test_probability_raster_ramp_starts_at_the_threshold(threshold):
    shader = _xml(probability_raster_qml(threshold)).find(".//colorrampshader")
    items = shader.findall("item")
    start = float(shader.get("minimumValue"))
    stored = struct.unpack("f", struct.pack("f", threshold))[0]  # the raster's float32 value of the threshold
    assert start <= stored and start <= threshold and threshold - start < 1e-6
    assert float(items[0].get("value")) == start and float(items[-1].get("value")) == 1.0
    assert f"{threshold:g}" in items[0].get("label")
    assert shader.get("clip") == "1"  # below the threshold: not drawn
    assert all(0 < int(i.get("alpha")) < 255 for i in items)  # the image shows through the colour


def test_probability_raster_refuses_a_threshold_outside_0_1():
    with pytest.raises(ValueError, match="within 0..1"):
        probability_raster_qml(1.5)


def test_terrain_raster_styles():
    slope = _xml(terrain_raster_qml("slope")).find(".//colorrampshader")
    assert (float(slope.get("minimumValue")), float(slope.get("maximumValue"))) == (0.0, 40.0)
    assert slope.get("clip") == "0"  # steeper than 40°: the last colour, not a hole
    aspect = _xml(terrain_raster_qml("aspect")).findall(".//colorrampshader/item")
    assert [float(i.get("value")) for i in (aspect[0], aspect[-1])] == [0.0, 360.0]
    assert aspect[0].get("color") == aspect[-1].get("color")  # circular: north is one colour
    assert len({i.get("color") for i in aspect}) == 4
    for kind in ("shadow", "poleward"):
        renderer = _xml(terrain_raster_qml(kind)).find(".//rasterrenderer")
        entries = renderer.findall("colorPalette/paletteEntry")
        assert renderer.get("type") == "paletted" and [e.get("value") for e in entries] == ["1"]
        assert int(entries[0].get("alpha")) < 255  # a mask over the image: 0 and no data are not drawn
    assert _xml(terrain_raster_qml("height")).find(".//rasterrenderer").get("type") == "hillshade"
    assert terrain_kind("/x/ESP_011577_1315_RED_slope.tif") == "slope"
    assert terrain_kind("/x/probability.tif") is None
    with pytest.raises(ValueError, match="no terrain style"):
        terrain_raster_qml("curvature")


def test_footprints_by_season_and_sites_by_persistence():
    ranges = _xml(footprints_qml()).findall(".//range")
    assert [(float(r.get("lower")), float(r.get("upper"))) for r in ranges] == [
        (0.0, 90.0),
        (90.0, 180.0),
        (180.0, 270.0),
        (270.0, 360.0),
    ]
    filters = [r.get("filter") for r in _xml(sites_qml()).iter("rule")]
    assert filters[0] == '"n_detected" >= 2 AND "n_detected" = "n_processed"' and filters[-1] == "ELSE"


def test_raster_styles_written_beside_rasters_keep_a_users_own(tmp_path):
    raster = tmp_path / "probability.tif"
    written = write_raster_style(raster, 0.35)
    assert written == sidecar_path(raster) == tmp_path / "probability.qml"
    assert 'minimumValue="0.3499999940395355"' in written.read_text()
    # a rerun at another threshold replaces MarsIce's own style
    write_raster_style(raster, 0.5)
    assert 'minimumValue="0.5"' in written.read_text()
    # a style the user saved as default there is theirs: kept byte for byte
    user = b"<!DOCTYPE qgis><qgis><pipe/></qgis>\n"
    written.write_bytes(user)
    assert write_raster_style(raster, 0.35) is None and written.read_bytes() == user
    rasters = {kind: tmp_path / f"ESP_1_{kind}.tif" for kind in ("slope", "aspect", "shadow", "poleward", "height")}
    assert write_terrain_styles(rasters) == [sidecar_path(p) for p in rasters.values()]
    assert not list(tmp_path.glob(".*partial"))


def test_raster_style_that_cannot_be_written_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match=r"cannot write the QGIS style .*probability\.qml") as info:
        write_raster_style(tmp_path / "gone" / "probability.tif", 0.35)
    assert info.value.exit_code == 4
