"""Search filters on hand-made records: the latitude rules, wrapping ranges and unknown values."""

from __future__ import annotations

import datetime as dt

import pytest

from marsice_plugin.catalogue.records import CatalogueProduct, box_footprint
from marsice_plugin.catalogue.search import SearchQuery, parse_since
from marsice_plugin.errors import CatalogueError


def product(**kw) -> CatalogueProduct:
    base = dict(
        product_id="ESP_011319_1305_RED", observation_id="ESP_011319_1305", product_type="RED", source="test",
        start_time=dt.datetime(2009, 1, 1, tzinfo=dt.UTC), mars_year=29, ls=170.0, incidence=70.0,
        min_lat=-49.2, max_lat=-48.8, min_lon=298.9, max_lon=299.0, map_scale=0.25,
    )  # fmt: skip
    base.update(kw)
    return CatalogueProduct(**base)


BAND = SearchQuery(lat=(-60, -40), ls=(140, 200))


def test_centre_rule_uses_the_middle_of_the_latitude_range():
    straddling = product(min_lat=-40.6, max_lat=-39.2)  # centre -39.9: outside; range reaches in
    assert not BAND.matches(straddling)
    assert SearchQuery(lat=(-60, -40), ls=(140, 200), lat_rule="intersect").matches(straddling)
    assert BAND.matches(product(min_lat=-40.2, max_lat=-39.8))  # centre exactly -40: inclusive


def test_each_filter_excludes():
    p = product()
    assert BAND.matches(p)
    assert not BAND.matches(product(ls=139.0))
    assert not BAND.matches(product(product_type="COLOR"))
    assert not SearchQuery(lat=(-60, -40), incidence=(0, 60)).matches(p)
    assert SearchQuery(lat=(-60, -40), scales=(0.25, 1.0)).matches(p)
    assert not SearchQuery(lat=(-60, -40), scales=(0.5,)).matches(p)
    assert SearchQuery(lat=(-60, -40), mars_years=(29, 30)).matches(p)
    assert not SearchQuery(lat=(-60, -40), mars_years=(30,)).matches(p)
    assert SearchQuery(lat=(-60, -40), since=parse_since("2008-12-31")).matches(p)
    assert not SearchQuery(lat=(-60, -40), since=parse_since("2009-01-02")).matches(p)


def test_unknown_values_fail_filters_that_ask_for_them():
    assert not SearchQuery(lat=(-60, -40), ls=(140, 200)).matches(product(ls=None))
    assert not SearchQuery(lat=(-60, -40), scales=(0.25,)).matches(product(map_scale=None))
    assert SearchQuery(lat=(-60, -40)).matches(product(ls=None, map_scale=None))  # not asked: kept


def test_mars_year_is_computed_when_the_record_lacks_it():
    p = product(mars_year=None, start_time=dt.datetime(2010, 1, 27, tzinfo=dt.UTC), ls=43.7)
    assert SearchQuery(lat=(-60, -40), mars_years=(30,)).matches(p)


def test_wrapping_ls_and_longitude():
    q = SearchQuery(lat=(-60, -40), ls=(340, 20), lon=(350, 10))
    assert q.matches(product(ls=355.0, min_lon=358.0, max_lon=358.1))
    assert q.matches(product(ls=10.0, min_lon=-2.0, max_lon=-1.9))  # -180..180 record longitudes too
    assert not q.matches(product(ls=30.0, min_lon=358.0, max_lon=358.1))
    assert not q.matches(product(ls=355.0, min_lon=20.0, max_lon=20.1))
    # intersect rule: a product crossing the box's western edge
    qi = SearchQuery(lat=(-60, -40), lon=(0, 10), lat_rule="intersect")
    assert qi.matches(product(min_lon=359.9, max_lon=360.1))
    assert not SearchQuery(lat=(-60, -40), lon=(0, 10)).matches(product(min_lon=359.7, max_lon=359.9))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"lat": (-40, -60)}, "MIN MAX"),
        ({"lat": (-60, -40), "ls": (140, 400)}, "0-360"),
        ({"lat": (-60, -40), "lat_rule": "center-ish"}, "rule"),
        ({"lat": (-60, -40), "product_type": "EDR"}, "product type"),
        ({"lat": (-60, -40), "incidence": (80, 40)}, "MIN is larger"),
    ],
)
def test_bad_queries_say_what_to_do(kw, message):
    with pytest.raises(CatalogueError, match=message):
        SearchQuery(**kw)
    with pytest.raises(CatalogueError, match="YYYY-MM-DD"):
        parse_since("last tuesday")


def test_box_footprint_splits_at_the_antimeridian():
    geom = box_footprint(179.9, -50.0, 180.2, -49.0)
    assert len(geom.geoms) == 2
    assert geom.bounds == pytest.approx((-180.0, -50.0, 180.0, -49.0))
    assert geom.area == pytest.approx(0.3)
    single = box_footprint(298.9, -49.2, 299.0, -48.8)
    assert single.bounds == pytest.approx((-61.1, -49.2, -61.0, -48.8))
