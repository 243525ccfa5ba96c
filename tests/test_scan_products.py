"""``marsice scan --products``: only the products chosen (the footprints a user selected in QGIS) are scanned."""

from __future__ import annotations

import io
import json

from marsice_plugin.progress import Reporter
from marsice_plugin.scan.plan import ScanOptions, plan_scan

from .conftest import DEMO_MODEL


def test_scan_keeps_only_the_products_asked_for_and_names_those_outside_the_search(tmp_path):
    options = ScanOptions(
        lat=(-60, -40), ls=(140, 200), output=tmp_path / "scan.gpkg", cache=tmp_path / "cache", source="bundled",
        model=DEMO_MODEL, terrain=False,
        products=("esp_011319_1305_red", "ESP_011310_1395_RED", "PSP_007361_1800_RED"),  # the last: at the equator
    )  # fmt: skip
    stream = io.StringIO()
    plan = plan_scan(options, Reporter("json", stdout=stream))
    assert [j.product_id for j in plan.jobs] == ["ESP_011310_1395_RED", "ESP_011319_1305_RED"]
    warnings = [e["message"] for e in map(json.loads, stream.getvalue().splitlines()) if e.get("level") == "warning"]
    assert warnings == [
        "1 of the products asked for are not in this band and season (PSP_007361_1800_RED, for one); "
        "widen --lat/--ls to scan them"
    ]
    assert plan.pull.unknown == 0 and len(plan.pull.estimated) == 4  # bundled sizes: estimated, and counted
    assert not (tmp_path / "scan.gpkg").exists()
