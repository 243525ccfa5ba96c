"""QGIS-native inputs and where a run's outputs land, in one real headless QGIS (a subprocess): a raster layer on
the map as the product, the selected footprints of a layer as the products to fetch or scan, the workflow's safe
defaults, the terrain run reloading the candidates layer it changed, and every output in its run's group."""

from __future__ import annotations

import json

import pytest

from marsice_plugin.catalogue.footprints import write_footprints
from marsice_plugin.catalogue.index import load_bundled
from marsice_plugin.sites.build import _write as write_sites

from .conftest import REPO, run_qgis_python

pytestmark = pytest.mark.qgis

#: Three products of the bundled catalogue, written as a footprint layer.
PRODUCTS = ("ESP_011319_1305_RED", "ESP_011310_1395_RED", "PSP_007361_1800_RED")

SCRIPT = r"""
import os
sys.path.insert(0, P["repo"])
import marsice_plugin
from osgeo import gdal
from qgis.core import (
    QgsProcessingContext, QgsProcessingException, QgsProcessingFeatureSourceDefinition, QgsProcessingFeedback,
    QgsProject, QgsRasterLayer, QgsVectorLayer,
)
from marsice_plugin.qgisplugin.layers import RunGroupPostProcessor

plugin = marsice_plugin.classFactory(None)
plugin.initProcessing()
registry = QgsApplication.processingRegistry()
alg = registry.createAlgorithmById
R = {}

def attempt(call):
    try:
        return call()
    except QgsProcessingException as exc:
        return {"error": str(exc)}

project = QgsProject()
context = QgsProcessingContext()
context.setProject(project)

# a product raster on the map, and one held only in memory (no file behind it)
tif = P["tmp"] + "/ESP_011319_1305_RED.tif"
ds = gdal.GetDriverByName("GTiff").Create(tif, 4, 4, 1)
ds.SetGeoTransform((0, 1, 0, 0, 0, -1)); ds = None
gdal.Translate("/vsimem/mem.tif", tif)
image, memory = QgsRasterLayer(tif, "HiRISE image"), QgsRasterLayer("/vsimem/mem.tif", "in memory")
project.addMapLayers([image, memory])
detect = alg("marsice:detect")
R["detect_layer"] = attempt(lambda: detect.cli_args({"INPUT_LAYER": image.id(), "OUTPUT": "/out/d.gpkg"}, context))
R["detect_both"] = attempt(lambda: detect.cli_args(
    {"INPUT": "/data/P.LBL", "INPUT_LAYER": image.id(), "OUTPUT": "/out/d.gpkg"}, context))
R["detect_none"] = attempt(lambda: detect.cli_args({"OUTPUT": "/out/d.gpkg"}, context))
R["detect_memory"] = attempt(lambda: detect.cli_args({"INPUT_LAYER": memory.id(), "OUTPUT": "/out/d.gpkg"}, context))
R["tile_layer"] = attempt(lambda: alg("marsice:tile").cli_args({"INPUT_LAYER": image.id(), "OUTPUT": "/out/t"},
                                                                context)[:2])
R["terrain_layers"] = attempt(lambda: alg("marsice:terrain").cli_args(
    {"DTM_LAYER": image.id(), "INPUT": "/data/P.LBL", "OUTPUT": "/out/terrain"}, context)[:5])
R["layer_params"] = {}
for a in ("marsice:detect", "marsice:tile", "marsice:terrain", "marsice:download", "marsice:scan"):
    instance = alg(a)  # kept: its parameter definitions die with it
    R["layer_params"][a] = {d.name(): [d.type(), bool(d.flags() & d.FlagOptional)]
                            for d in instance.parameterDefinitions()
                            if d.name() in ("INPUT", "INPUT_LAYER", "DTM", "DTM_LAYER", "FOOTPRINTS_LAYER")}

# footprints on the map, two of three selected
footprints = QgsVectorLayer(P["footprints"] + "|layername=footprints", "footprints", "ogr")
project.addMapLayer(footprints)
chosen = [f.id() for f in footprints.getFeatures() if f["product_id"] in P["selected"]]
footprints.selectByIds(chosen)
selected = QgsProcessingFeatureSourceDefinition(footprints.id(), True)
everything = QgsProcessingFeatureSourceDefinition(footprints.id(), False)
download, scan = alg("marsice:download"), alg("marsice:scan")
R["download_selected"] = attempt(lambda: download.cli_args({"FOOTPRINTS_LAYER": selected, "FOLDER": "/out/dl"},
                                                           context))
R["download_all"] = attempt(lambda: download.cli_args(
    {"FOOTPRINTS_LAYER": everything, "PRODUCT_IDS": "PSP_001234_1234_RED", "FOLDER": "/out/dl"}, context))
R["scan_selected"] = attempt(lambda: scan.cli_args({"FOOTPRINTS_LAYER": selected, "OUTPUT": "/out/s.gpkg"}, context))
footprints.removeSelection()
R["download_none_selected"] = attempt(lambda: download.cli_args(
    {"FOOTPRINTS_LAYER": selected, "FOLDER": "/out/dl"}, context))

# the workflow's defaults as the dialog shows them
R["scan_defaults"] = {d.name(): d.defaultValue() for d in scan.parameterDefinitions()
                      if d.name() in ("DRY_RUN", "MAX_GB", "ALLOW_UNKNOWN_SIZE")}
R["scan_min_gb"] = scan.parameterDefinition("MAX_GB").minimum()

# terrain: its rasters queued into the run's group, the first one carrying the reload of the candidates file
gdal.VectorTranslate(P["candidates"], P["footprints"], layers=["footprints"], layerName="ice_candidates")
terrain = alg("marsice:terrain")
queue = QgsProcessingContext()
queue.setProject(project)
outputs = {k: P["tmp"] + f"/t_{k.lower()}.tif" for k in ("SLOPE", "ASPECT", "POLEWARD", "SHADOW")}
for path in outputs.values():
    gdal.Translate(path, tif)
terrain.cli_results({"DTM": "/data/D.IMG", "INPUT": "/data/P.LBL", "CANDIDATES": P["candidates"],
                     "OUTPUT": P["tmp"] + "/terrain"}, queue, {**outputs, "candidates": 2})
details = {s: queue.layerToLoadOnCompletionDetails(s) for s in queue.layersToLoadOnCompletion()}
R["terrain_queue"] = {s.rsplit("/", 1)[-1]: [d.postProcessor().group, d.postProcessor().reload]
                      for s, d in details.items()}

# the reload itself, as Processing runs the post-processor once the first raster is in the project
candidates = QgsVectorLayer(P["candidates"] + "|layername=ice_candidates", "Ice candidates", "ogr")
project.addMapLayer(candidates)
R["fields_before"] = candidates.fields().names()
from osgeo import ogr
ogr_ds = gdal.OpenEx(P["candidates"], gdal.OF_VECTOR | gdal.OF_UPDATE)  # what marsice terrain does, in place
table = ogr_ds.GetLayerByName("ice_candidates")
table.CreateField(ogr.FieldDefn("slope_deg", ogr.OFTReal))
for feature in table:
    feature.SetField("slope_deg", 12.5)
    table.SetFeature(feature)
ogr_ds = table = None
slope = QgsRasterLayer(outputs["SLOPE"], "Slope")
project.addMapLayer(slope)
reloader = next(d.postProcessor() for d in details.values() if d.postProcessor().reload)
reloader.postProcessLayer(slope, queue, QgsProcessingFeedback())
R["fields_after"] = candidates.fields().names()
R["values_after"] = [f["slope_deg"] if "slope_deg" in f.fields().names() else None for f in candidates.getFeatures()]
node = project.layerTreeRoot().findLayer(slope.id())
R["slope_group"] = node.parent().name()

# site history: the observations table lands in the run's group too
history = QgsProcessingContext()
history.setProject(project)
sites_out = P["sites"]
history.addLayerToLoadOnCompletion(sites_out, QgsProcessingContext.LayerDetails("Sites", project, "OUTPUT"))
alg("marsice:site_history").cli_results({"INPUT": [], "OUTPUT": sites_out}, history, {"sites": 1})
R["history_queue"] = {s.split("|")[-1]: history.layerToLoadOnCompletionDetails(s).postProcessor().group
                      for s in history.layersToLoadOnCompletion()}

# export: a GeoJSON or KML opens in its run's group, a CSV does not load
export = alg("marsice:export_sites")
shown = QgsProcessingContext()
shown.setProject(project)
R["export_geojson"] = export.cli_results({}, shown, {"OUTPUT": P["tmp"] + "/s.geojson", "sites": 3})
R["export_csv"] = export.cli_results({}, QgsProcessingContext(), {"OUTPUT": P["tmp"] + "/s.csv", "sites": 3})
R["export_queue"] = {s: shown.layerToLoadOnCompletionDetails(s).postProcessor().group
                     for s in shown.layersToLoadOnCompletion()}
R["export_obs_kml"] = attempt(lambda: export.cli_args({"INPUT": "/d/s.gpkg", "FORMAT": 1, "OBSERVATIONS": True},
                                                      QgsProcessingContext()))
R["about_export"] = {"url": export.helpUrl(), "tags": export.tags(), "help": export.shortHelpString()}
# the log of a site history over 80 sites, as QGIS gets it: every percent, a few texts and lines per stage
class Recorder(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.seen = {"percent": 0, "text": [], "info": [], "warning": []}
    def setProgress(self, value):
        self.seen["percent"] += 1
    def setProgressText(self, text):
        self.seen["text"].append(text)
    def pushInfo(self, text):
        self.seen["info"].append(text)
    def pushWarning(self, text):
        self.seen["warning"].append(text)

os.environ["MARSICE_PYTHON"] = P["fake_python"]
recorder = Recorder()
R["history_outputs"] = alg("marsice:site_history").run_cli(["sites", "x.gpkg"], recorder)
R["history_log"] = recorder.seen
print(json.dumps(R), flush=True)
os._exit(0)  # the layers of the local projects outlive exitQgis() and crash its teardown; everything is printed
"""


#: A stand-in for MarsIce's Python: replays the JSON lines ``marsice sites`` writes for 80 sites, with a catalogue
#: warning repeated for 10 of them.
FAKE_SITES = """#!/usr/bin/python3
import json
def emit(**event):
    print(json.dumps(event), flush=True)
emit(type="progress", percent=2, message="reading results")
emit(type="log", level="info", message="412 candidates in 37 processed products")
emit(type="progress", percent=20, message="80 sites; searching the catalogue")
for k in range(10):
    emit(type="log", level="warning", message=f"ESP_0{k}0000_1300_RED: footprint unreadable, lat/lon box used")
for stage, start in (("site", 40), ("plot", 70)):
    for k in range(1, 81):
        emit(type="progress", percent=start + 30 * k / 80, message=f"{stage} {k}/80")
emit(type="progress", percent=92, message="writing GeoPackage")
emit(type="progress", percent=100, message="done")
emit(type="result", outputs={"sites": 80}, summary="80 sites written")
"""


@pytest.fixture(scope="module")
def qgis(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("inputs")
    red = {p.product_id: p for p in load_bundled("RED")}
    footprints = write_footprints(tmp / "fp.gpkg", [red[pid] for pid in PRODUCTS])
    sites = tmp / "sites.gpkg"
    write_sites(sites, [], {}, 10.0, {})  # an empty sites file: its layers are what gets queued
    fake = tmp / "fake-venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(FAKE_SITES)
    fake.chmod(0o755)
    params = {
        "fake_python": str(fake),
        "repo": str(REPO), "tmp": str(tmp), "footprints": str(footprints), "candidates": str(tmp / "cand.gpkg"),
        "sites": str(sites), "selected": [PRODUCTS[2], PRODUCTS[0]],
    }  # fmt: skip
    code = f"P = json.loads({json.dumps(json.dumps(params))})\n" + SCRIPT
    result = run_qgis_python(code, tmp / "home", timeout=300)
    result["tmp"] = tmp
    return result


def test_a_raster_layer_on_the_map_is_the_product_it_was_read_from(qgis: dict) -> None:
    tif = str(qgis["tmp"] / "ESP_011319_1305_RED.tif")
    assert qgis["detect_layer"] == ["detect", tif, "-o", "/out/d.gpkg"]
    assert qgis["tile_layer"] == ["tile", tif]
    assert qgis["terrain_layers"] == ["terrain", "--dtm", tif, "--image", "/data/P.LBL"]
    assert "give either a file or a raster layer, not both" in qgis["detect_both"]["error"]
    assert "give a file or choose a raster layer on the map" in qgis["detect_none"]["error"]
    assert qgis["detect_memory"]["error"].startswith("The layer 'in memory' is not read from a file (/vsimem/mem.tif)")
    params = qgis["layer_params"]
    for alg_id, names in (("marsice:detect", ("INPUT",)), ("marsice:tile", ("INPUT",)),
                          ("marsice:terrain", ("INPUT", "DTM"))):  # fmt: skip
        for name in names:
            assert params[alg_id][name] == ["file", True] and params[alg_id][f"{name}_LAYER"] == ["raster", True]
    for alg_id in ("marsice:download", "marsice:scan"):
        assert params[alg_id]["FOOTPRINTS_LAYER"] == ["source", True]


def test_selected_footprints_become_the_products_of_download_and_scan(qgis: dict) -> None:
    in_layer = [PRODUCTS[0], PRODUCTS[2]]  # the layer's order, only the selected ones
    assert qgis["download_selected"] == ["download", *in_layer, "--to", "/out/dl", "--cache-gb", "50.0"]
    assert qgis["download_all"] == ["download", "PSP_001234_1234_RED", *PRODUCTS, "--to", "/out/dl",
                                    "--cache-gb", "50.0"]  # fmt: skip
    argv = qgis["scan_selected"]
    at = argv.index("--products")
    assert argv[at + 1 : at + 4] == [*in_layer, "--workers"]
    assert "select some on the map" in qgis["download_none_selected"]["error"]


def test_the_workflow_starts_as_a_dry_run_under_a_20_gb_cap(qgis: dict) -> None:
    assert qgis["scan_defaults"] == {"DRY_RUN": True, "MAX_GB": 20.0, "ALLOW_UNKNOWN_SIZE": False}
    assert 0 < qgis["scan_min_gb"] < 0.01  # no "0 = no cap": a bigger run is a cap raised on purpose


def test_terrain_reloads_the_candidates_layer_and_its_rasters_land_in_the_run_group(qgis: dict) -> None:
    queue = qgis["terrain_queue"]
    assert sorted(queue) == ["t_aspect.tif", "t_poleward.tif", "t_shadow.tif", "t_slope.tif"]
    (group,) = {group for group, _ in queue.values()}
    assert group.startswith("terrain (Terrain attributes, ")
    assert sorted(reload for _, reload in queue.values()) == ["", "", "", str(qgis["tmp"] / "cand.gpkg")]  # once
    assert "slope_deg" not in qgis["fields_before"]
    assert "slope_deg" in qgis["fields_after"] and set(qgis["values_after"]) == {12.5}
    assert qgis["slope_group"] == group


def test_site_observations_and_exported_maps_land_in_their_run_group(qgis: dict) -> None:
    history = qgis["history_queue"]
    assert set(history) == {"layername=sites", "layername=site_observations"}
    assert len(set(history.values())) == 1 and history["layername=site_observations"].startswith("sites (Site history")
    geojson = str(qgis["tmp"] / "s.geojson")
    assert qgis["export_geojson"] == {"OUTPUT": geojson, "SITES": 3}
    assert list(qgis["export_queue"]) == [geojson] and qgis["export_queue"][geojson].startswith("s (Export sites")
    assert qgis["export_csv"] == {"OUTPUT": str(qgis["tmp"] / "s.csv"), "SITES": 3}
    assert "CSV only" in qgis["export_obs_kml"]["error"]
    about = qgis["about_export"]
    assert about["url"].endswith("docs/sites.md#exports") and {"export", "geojson", "marsice"} <= set(about["tags"])
    assert "RFC 7946" in about["help"]


def test_a_site_history_of_80_sites_logs_a_few_lines_per_stage_and_moves_the_bar_at_every_step(qgis: dict) -> None:
    log = qgis["history_log"]
    assert qgis["history_outputs"] == {"sites": 80}
    assert log["percent"] == 164  # every progress event still moves the bar
    assert log["text"] == [
        "reading results", "80 sites; searching the catalogue",
        "site 1/80", "site 27/80", "site 54/80", "site 80/80",
        "plot 1/80", "plot 27/80", "plot 54/80", "plot 80/80",
        "writing GeoPackage", "done",
    ]  # fmt: skip
    assert len(log["warning"]) == 5 and log["warning"][-1] == (
        "(6 more warning lines like 'ESP_#_#_RED: footprint unreadable, lat/lon box used' not shown)"
    )
    assert log["info"] == ["412 candidates in 37 processed products", "80 sites written"]
    assert len(log["text"]) + len(log["warning"]) + len(log["info"]) == 19  # was one line per event: 176
