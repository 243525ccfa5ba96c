"""The latitude prior of the sun azimuth (marsice_plugin.catalogue.sun_prior): values, spread and refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from marsice_plugin.catalogue.index import BUNDLED_COLUMNS
from marsice_plugin.catalogue.sun_prior import (
    MIN_OBSERVATIONS,
    WINDOW_DEG,
    angular_difference,
    circular_mean,
    typical_sun,
)


def _catalogue(path: Path, rows: list[tuple[float, float]]) -> Path:
    """A bundled-format catalogue whose rows are (centre latitude, sun azimuth)."""
    lines = [",".join(BUNDLED_COLUMNS)]
    for k, (lat, az) in enumerate(rows):
        row = dict.fromkeys(BUNDLED_COLUMNS, "")
        row.update(product_id=f"ESP_{k:06d}_1000_COLOR", min_lat=f"{lat - 0.1}", max_lat=f"{lat + 0.1}")
        row["sun_azimuth"] = f"{az}"
        lines.append(",".join(row[c] for c in BUNDLED_COLUMNS))
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("# a test catalogue\n" + "\n".join(lines) + "\n")
    return path


def test_circular_mean_and_difference_go_the_short_way_round() -> None:
    assert float(angular_difference(circular_mean(np.array([350.0, 10.0])), 0.0)) < 1e-9
    assert circular_mean(np.array([290.0, 300.0])) == pytest.approx(295.0)
    np.testing.assert_allclose(angular_difference([350.0, 10.0, 90.0], [10.0, 350.0, 270.0]), [20.0, 20.0, 180.0])


def test_the_prior_is_the_windows_circular_mean_and_its_spread(tmp_path: Path) -> None:
    """Azimuths 350° and 10° around -50° average to north; rows beyond the window do not count; the spread is the
    90th percentile of the distance to the mean."""
    rows = [(-50.0, 350.0)] * 15 + [(-52.0, 10.0)] * 15 + [(-50.0 + WINDOW_DEG + 1, 180.0)] * 40
    prior = typical_sun(-50.0, _catalogue(tmp_path / "c.csv.gz", rows))
    assert prior is not None
    assert float(angular_difference(prior.azimuth, 0.0)) < 1e-6
    assert prior.within_deg == pytest.approx(10.0)
    assert prior.observations == 30 and prior.latitude == -50.0


def test_too_few_observations_or_no_latitude_give_no_prior(tmp_path: Path) -> None:
    path = _catalogue(tmp_path / "c.csv.gz", [(-50.0, 300.0)] * (MIN_OBSERVATIONS - 1) + [(10.0, 270.0)] * 50)
    assert typical_sun(-50.0, path) is None
    assert typical_sun(float("nan"), path) is None
    assert typical_sun(10.0, path).azimuth == pytest.approx(270.0)


@pytest.mark.parametrize(
    ("latitude", "low", "high"), [(-50.0, 295.0, 303.0), (-65.0, 295.0, 305.0), (45.0, 235.0, 255.0)]
)
def test_the_bundled_catalogue_puts_the_afternoon_sun_in_the_west(latitude: float, low: float, high: float) -> None:
    """HiRISE images at about 15:00: in the south the sun is west-north-west (the paper's 290-303°), in the north
    west-south-west; the observations spread little around it at mid-latitudes."""
    prior = typical_sun(latitude)
    assert prior is not None and low <= prior.azimuth <= high
    assert prior.within_deg < 30 and prior.observations > 1000
