"""End to end: three generated products of the same ground, detect on each, then sites.

The same seed renders the same terrain, boulders, noise and decoys; the ice is bright at Ls 150 and 165 and has
zero contrast at Ls 185 (the patch is gone, every other pixel is the same). One placed 8 m patch makes sure the
demo model flags the chunk.
"""

from __future__ import annotations

from pathlib import Path

import shapely

from marsice_plugin.detection import DetectOptions
from marsice_plugin.pipeline import detect
from marsice_plugin.product import open_product
from marsice_plugin.sites.build import build_sites
from marsice_plugin.sites.seasons import LOW_CONTRAST
from marsice_plugin.synthetic.product_writer import ProductGeometry, write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.vectors import to_lonlat
from tests.conftest import DEMO_MODEL
from tests.test_sites import time_at

PATCH_ROW, PATCH_COL = 500.0, 520.0


def test_detect_then_sites_on_the_same_ground_at_three_ls(tmp_path: Path) -> None:
    results = tmp_path / "results.gpkg"
    ids = []
    for orbit, ls, contrast in ((30001, 150.0, 1.2), (30101, 165.0, 1.2), (30301, 185.0, 0.0)):
        config = SceneConfig(
            width=1024,
            height=1024,
            seed=11,
            incidence=65.0,
            n_ice_boulder=2,
            ice_contrast=(contrast, contrast),
            ice_at=((PATCH_ROW, PATCH_COL, 8.0, contrast),),
        )
        geometry = ProductGeometry(
            center_latitude=-50.2, center_longitude=31.4, solar_longitude=ls, start_time=time_at(33, ls)
        )
        sp = write_sample_product(tmp_path / str(orbit), config, geometry, orbit=orbit)
        detect(sp.label_path, results, DetectOptions(model_path=DEMO_MODEL))
        ids.append(sp.product_id)
    with open_product(sp.label_path) as product:
        x, y = product.transform @ (PATCH_COL, PATCH_ROW)
        lon, lat = to_lonlat(product.crs, [x], [y])
    patch = shapely.Point(float(lon[0]), float(lat[0]))

    result = build_sites([results], tmp_path / "sites.gpkg", catalogue="none", plots_dir=tmp_path / "plots")
    (site,) = [s for s in result.sites if s.geometry.buffer(1e-5).contains(patch)]
    assert sorted({m.product_id for m in site.members}) == ids[:2]
    rows = result.observations[site.site_id]
    assert [(r.product_id, r.mars_year, r.ls, r.detected, r.transition) for r in rows] == [
        (ids[0], 33, 150.0, True, "first in Mars Year"),
        (ids[1], 33, 165.0, True, "persisted"),
        (ids[2], 33, 185.0, False, "disappeared"),
    ]
    assert rows[0].probability >= 0.6 > rows[2].probability == rows[2].chunk_probability
    assert all(r.contrast is not None and r.contrast > LOW_CONTRAST and not r.low_contrast for r in rows)
    assert rows[0].start_time.date() == time_at(33, 150.0).date() and rows[0].local_time == 15.0
    assert result.plots[site.site_id].is_file()
