"""``marsice terrain`` end to end on a generated 1024 x 1024 product with its 4x coarser HiRISE-style DTM."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from marsice_plugin.gpkg import Field, parse_geometry_blob, write_new
from marsice_plugin.mars_crs import common_crs
from marsice_plugin.product import open_product
from marsice_plugin.synthetic.product_writer import write_sample_product
from marsice_plugin.synthetic.scene import SceneConfig
from marsice_plugin.vectors import transform_geometry


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("terrain_sample")
    return write_sample_product(out, SceneConfig(width=1024, height=1024, seed=3), dtm_factor=4)


def _candidates(sample, path: Path) -> int:
    """A results-like GeoPackage: truth ice patches and the bright-dust decoys, both at probability 0.8."""
    import shapely
    from rasterio import features

    with open_product(sample.label_path) as p:
        crs, transform = p.crs, p.transform
    con = sqlite3.connect(sample.truth_path)
    ice = [parse_geometry_blob(b) for (b,) in con.execute("SELECT geom FROM ice_truth")]
    con.close()
    dust_mask = sample.scene.dust
    dust = [
        shapely.geometry.shape(g)
        for g, v in features.shapes(dust_mask.astype(np.uint8), mask=dust_mask, transform=transform)
        if v == 1
    ]
    fields = [Field("product_id", str), Field("candidate_id", str), Field("max_probability", float)]
    rows = [
        (
            transform_geometry(g, crs),
            {"product_id": sample.product_id, "candidate_id": f"{kind}{i}", "max_probability": 0.8},
        )
        for kind, geoms in (("ice", ice), ("dust", dust))
        for i, g in enumerate(geoms)
    ]

    def build(gpkg) -> None:
        srs = gpkg.add_srs(common_crs())
        gpkg.create_layer("ice_candidates", fields, "POLYGON", srs)
        gpkg.insert("ice_candidates", fields, rows)

    write_new(path, build)
    return len(rows)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marsice_plugin", *args], capture_output=True, text=True)


def test_cli_writes_aligned_rasters_and_scores_candidates(sample, tmp_path: Path) -> None:
    gpkg = tmp_path / "results.gpkg"
    n = _candidates(sample, gpkg)
    args = ["terrain", "--dtm", str(sample.dtm_path), "--image", str(sample.label_path), "-o", str(tmp_path / "t")]
    proc = _cli(*args, "--candidates", str(gpkg))
    assert proc.returncode == 0, proc.stderr
    assert "applied" in proc.stdout and f"{n} candidates scored" in proc.stdout
    with open_product(sample.label_path) as p, rasterio.open(tmp_path / "t" / f"{sample.product_id}_slope.tif") as s:
        assert (s.width, s.height) == (p.width, p.height)
        assert s.transform == p.transform
        slope = s.read(1)
    assert np.nanmin(slope) >= 0.0 and np.nanmax(slope) < 90.0
    with rasterio.open(tmp_path / "t" / f"{sample.product_id}_height.tif") as h:
        height = h.read(1)
    valid = np.isfinite(height) & ~sample.scene.nodata
    assert np.mean(np.abs(height[valid] - sample.scene.height[valid])) < 0.2  # metres: the DTM is a 4x average

    con = sqlite3.connect(gpkg)
    rows = con.execute("SELECT candidate_id, terrain_score, terrain_rank_value, max_probability FROM ice_candidates")
    rows = rows.fetchall()
    assert len(rows) == n and all(0.0 <= r[1] <= 1.0 and r[3] == 0.8 for r in rows)
    ice = np.mean([r[1] for r in rows if r[0].startswith("ice")])
    dust = np.mean([r[1] for r in rows if r[0].startswith("dust")])
    assert ice > dust
    columns_before = [r[1] for r in con.execute("PRAGMA table_info(ice_candidates)")]
    con.close()

    proc = _cli(*args, "--candidates", str(gpkg))  # a re-run adds no column and gives the same values
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(gpkg)
    assert [r[1] for r in con.execute("PRAGMA table_info(ice_candidates)")] == columns_before
    again = con.execute("SELECT candidate_id, terrain_score, terrain_rank_value, max_probability FROM ice_candidates")
    assert again.fetchall() == rows
    con.close()
    assert not (tmp_path / "results.gpkg.lock").exists()  # the writer lock is released
