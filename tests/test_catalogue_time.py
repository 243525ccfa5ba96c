"""Mars Year and Ls: against real labels' SOLAR_LONGITUDE and the published Mars Year start dates."""

from __future__ import annotations

import datetime as dt

import pytest

from marsice_plugin.catalogue.mars_time import ls_in_range, mars_year, mars_year_start, solar_longitude
from marsice_plugin.labels import read_label

from .conftest import DATA


@pytest.mark.parametrize("name", ["ESP_013951_1955_RED.LBL", "ESP_011707_1440_COLOR.LBL", "PSP_010737_2050_COLOR.LBL"])
def test_ls_matches_real_labels(name):
    label = read_label(DATA / name)
    assert solar_longitude(label.start_time) == pytest.approx(label.solar_longitude, abs=0.01)


@pytest.mark.parametrize(
    ("year", "start"),
    # Piqueux et al. (2015), Icarus 251, table 1: Earth dates of Ls 0 for these Mars Years.
    [(1, dt.date(1955, 4, 11)), (24, dt.date(1998, 7, 14)), (28, dt.date(2006, 1, 21)), (36, dt.date(2021, 2, 7))],
)
def test_mars_year_starts_on_the_published_dates(year, start):
    begins = mars_year_start(year)
    assert begins.date() == start
    assert mars_year(begins + dt.timedelta(hours=2)) == year
    assert mars_year(begins - dt.timedelta(hours=2)) == year - 1


def test_mars_year_uses_ls_near_the_year_boundary():
    begins = mars_year_start(30)
    # One day before Ls 0 with a label Ls of 359.5 is still MY 29; a day after with Ls 0.5 is MY 30.
    assert mars_year(begins - dt.timedelta(days=1), ls=359.5) == 29
    assert mars_year(begins + dt.timedelta(days=1), ls=0.5) == 30
    assert mars_year(dt.datetime(2010, 1, 27, 17, 48)) == 30


@pytest.mark.parametrize(
    ("ls", "start", "end", "inside"),
    [
        (150, 140, 200, True),
        (140, 140, 200, True),
        (200.0, 140, 200, True),
        (139.99, 140, 200, False),
        (350, 340, 20, True),
        (5, 340, 20, True),
        (20, 340, 20, True),
        (21, 340, 20, False),
        (180, 340, 20, False),
        (359.9, 0, 360, True),
    ],
)
def test_ls_ranges_may_wrap(ls, start, end, inside):
    assert ls_in_range(ls, start, end) is inside
