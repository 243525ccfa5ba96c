"""The ODE client against a local ODE stand-in that replays real response shapes (127.0.0.1 only)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import shapely

from marsice_plugin.catalogue.ode import ODEClient, ode_base_url, product_from_ode, query_parameters
from marsice_plugin.catalogue.search import SearchQuery
from marsice_plugin.errors import ODEError

from .catalogue_http import LocalServer, load_ode, real_products, southern_product


@pytest.fixture
def server():
    with LocalServer() as s:
        yield s


def client(server: LocalServer, scenario: str, **kw) -> ODEClient:
    sleeps: list[float] = []
    c = ODEClient(f"{server.base}/{scenario}/live2/", sleep=sleeps.append, backoff_s=0.5, **kw)
    c.sleeps = sleeps  # type: ignore[attr-defined]
    return c


def band_products(server: LocalServer) -> list[dict]:
    """Twelve products: the six real ones near the equator, six built in the southern band."""
    template = real_products()[1]
    built = [
        southern_product(template, 11310, -40.13, 182.06, 179.45, server.base),  # in (centre -40.13)
        southern_product(template, 11319, -49.0, 298.95, 150.0, server.base),  # in
        southern_product(template, 11400, -59.9, 10.0, 141.0, server.base),  # in
        southern_product(template, 11500, -50.0, 20.0, 230.0, server.base),  # Ls out
        southern_product(template, 11600, -39.8, 30.0, 160.0, server.base),  # centre out, intersects
        southern_product(template, 11700, -61.0, 40.0, 150.0, server.base),  # out
    ]
    return real_products() + built


def test_one_hit_dict_shape_is_read_with_all_fields(server):
    c = client(server, "one")
    [p] = c.search(SearchQuery(lat=(28, 30), product_type="COLOR"))
    assert p.product_id == "ESP_016430_2095_COLOR"
    assert p.observation_id == "ESP_016430_2095"
    assert p.ls == pytest.approx(43.690602)  # the index row in ODE_notes rounds it to 43.691
    assert p.incidence == pytest.approx(40.281507)
    assert p.map_scale == 0.5
    assert p.jp2_url.endswith("ESP_016430_2095_COLOR.JP2") and p.lbl_url.endswith("ESP_016430_2095_COLOR.LBL")
    assert p.jp2_kbytes == 251882 and p.lbl_kbytes == 8
    assert p.mars_year == 30  # 2010-01-27; MY 30 began 2009-10-26
    assert shapely.from_wkt(p.footprint_wkt).equals(p.footprint())
    assert not p.footprint_approximate
    browse = [f.name for f in p.files if f.kind == "Browse"]
    assert "ESP_016430_2095_COLOR.BROWSE.JPG" in browse


def test_many_hits_are_paged_and_filtered_locally(server):
    server.products = band_products(server)
    c = client(server, "many", page_size=5)
    found = c.search(SearchQuery(lat=(-60, -40), ls=(140, 200)))
    built = [p["pdsid"] for p in server.products[6:]]
    assert [p.product_id for p in found] == built[:3]
    offsets = [int(params["offset"]) for path, params, _ in server.requests]
    assert offsets == [0, 5, 10]  # 12 products in pages of 5: the last page is short
    assert {params["limit"] for _, params, _ in server.requests} == {"5"}
    assert server.rejected == []
    # the same products under the intersect rule: the one whose range reaches into the band joins
    server.requests.clear()
    found = c.search(SearchQuery(lat=(-60, -40), ls=(140, 200), lat_rule="intersect"))
    assert [p.product_id for p in found] == built[:3] + [built[4]]


def test_query_parameters_follow_the_manual_and_wrap(server):
    server.products = band_products(server)
    c = client(server, "many")
    q = SearchQuery(lat=(-60, -40), ls=(340, 20), lon=(350, 10), incidence=(40, 80), mars_years=(30,))
    c.search(q)
    sent = [params for _, params, _ in server.requests]
    assert server.rejected == []
    assert len(sent) == 4  # two longitude arcs x two Ls arcs
    assert {(p["westernlon"], p["easternlon"]) for p in sent} == {("350.0", "360.0"), ("0.0", "10.0")}
    assert {(p["minsollon"], p["maxsollon"]) for p in sent} == {("340.0", "360.0"), ("0.0", "20.0")}
    for p in sent:
        assert (p["target"], p["ihid"], p["iid"], p["pt"]) == ("mars", "MRO", "HIRISE", "RDRV11")
        assert (p["minlat"], p["maxlat"], p["mininangle"], p["maxinangle"]) == ("-60.0", "-40.0", "40.0", "80.0")
        assert p["results"] == "opmf" and p["output"] == "JSON"
        assert p["minobtime"].startswith("2009-10-2") and p["maxobtime"].startswith("2011-09-1")


def test_the_stand_in_rejects_parameters_not_in_the_manual(server):
    url = f"{server.base}/many/live2/?query=product&output=JSON&loc=f&minsolarlon=3"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=5)
    assert err.value.code == 400
    assert server.rejected == ["loc,minsolarlon"]


def test_no_products_found_is_an_empty_result(server):
    assert client(server, "none").search(SearchQuery(lat=(-60, -40))) == []


def test_error_status_is_reported_with_odes_message(server):
    with pytest.raises(ODEError, match="requires either a combination of IHID, IID, and PT"):
        client(server, "error").search(SearchQuery(lat=(-60, -40)))


def test_server_error_is_retried_with_backoff_then_reported(server):
    c = client(server, "fail500", retries=2)
    with pytest.raises(ODEError, match=r"failed after 3 tries: HTTP 500.*--source bundled"):
        c.search(SearchQuery(lat=(-60, -40)))
    assert len(server.requests) == 3
    assert c.sleeps == [0.5, 1.0]


def test_transient_server_errors_recover(server):
    server.products = band_products(server)
    c = client(server, "flaky", retries=3)
    found = c.search(SearchQuery(lat=(-60, -40), ls=(140, 200)))
    assert len(found) == 3
    assert c.sleeps == [0.5, 1.0]


def test_malformed_body_is_a_clear_error(server):
    with pytest.raises(ODEError, match="malformed answer"):
        client(server, "malformed", retries=0).search(SearchQuery(lat=(-60, -40)))


def test_slow_answer_times_out_and_is_retried(server):
    server.slow_s = 2.0
    c = client(server, "slow", timeout_s=0.3, retries=1)
    with pytest.raises(ODEError, match=r"failed after 2 tries: no answer within 0.3 s"):
        c.search(SearchQuery(lat=(-60, -40)))
    assert len(server.requests) == 2


def test_redirect_to_another_host_is_refused_and_within_the_host_followed(server):
    """As for downloads: the answer decides what is downloaded next, so it must come from the --ode-url host."""
    server.products = band_products(server)
    query = SearchQuery(lat=(-60, -40), ls=(140, 200))
    with pytest.raises(ODEError, match=r"redirected the query from 127.0.0.1 to http://localhost; refusing it"):
        client(server, "redirect", retries=2).search(query)
    # localhost is this same server: had the redirect been followed, it would have seen a request for /many/
    assert [path for path, _, _ in server.requests] == ["/redirect/live2/"]  # and not retried
    assert len(client(server, "redirect_here").search(query)) == 3
    assert [path for path, _, _ in server.requests][1:] == ["/redirect_here/live2/", "/many/live2/"]


def test_product_by_id(server):
    server.products = band_products(server)
    p = client(server, "byid").product("esp_011319_1390_red")
    assert p.product_id == "ESP_011319_1390_RED" and p.jp2_kbytes == 150_000 // 1024
    with pytest.raises(ODEError, match="does not know product"):
        client(server, "byid").product("ESP_000000_0000_RED")


def test_meridian_crossing_product_keeps_a_continuous_range():
    raw = real_products()[1]  # PSP_007361_1800_RED: west 359.935, east 0.08
    p = product_from_ode(raw)
    assert (p.min_lon, p.max_lon) == pytest.approx((359.935, 360.08))
    assert p.centre_lon == pytest.approx(0.0075)
    assert SearchQuery(lat=(-1, 1), lon=(0, 5), lat_rule="intersect", product_type="RED").matches(p)
    assert not SearchQuery(lat=(-1, 1), lon=(1, 5), lat_rule="intersect", product_type="RED").matches(p)


def test_base_url_from_environment(monkeypatch):
    monkeypatch.setenv("MARSICE_ODE_URL", "http://127.0.0.1:9/live2/")
    assert ode_base_url() == "http://127.0.0.1:9/live2/"
    assert ode_base_url("http://127.0.0.1:8/x/") == "http://127.0.0.1:8/x/"
    with pytest.raises(ODEError, match="must start with http"):
        ode_base_url("ftp://example")


def test_real_error_fixture_shape():
    assert load_ode("ode_rest_error_missing_params.json")["ODEResults"]["Status"] == "ERROR"
    assert len(query_parameters(SearchQuery(lat=(-60, -40), ls=(140, 200)))) == 1
