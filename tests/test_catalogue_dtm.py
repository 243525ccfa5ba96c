"""DTM pairing: by the source observations a DTM lists, then by footprint overlap."""

from __future__ import annotations

import pytest

from marsice_plugin.catalogue.dtm import dtm_from_label, pair_dtms, source_cores
from marsice_plugin.catalogue.ode import product_from_ode
from marsice_plugin.catalogue.records import CatalogueProduct, ProductFile

from .catalogue_http import real_products
from .conftest import DATA


def image(pid: str, lat: tuple[float, float], lon: tuple[float, float]) -> CatalogueProduct:
    obs = pid.rsplit("_", 1)[0]
    return CatalogueProduct(pid, obs, "RED", "test", min_lat=lat[0], max_lat=lat[1], min_lon=lon[0], max_lon=lon[1])


def test_real_dtm_label_gives_its_sources_and_box():
    dtm = dtm_from_label(DATA / "DTEEC_008669_1705_009025_1705_A01.partial.lbl")
    assert dtm.product_id == "DTEEC_008669_1705_009025_1705_A01" and dtm.product_type == "DTM"
    assert dtm.source_product_ids == ("PSP_008669_1705", "PSP_009025_1705")
    assert (dtm.min_lat, dtm.max_lat) == pytest.approx((-9.7237459567128, -9.2737184447053))
    assert dtm.centre_lon == pytest.approx((283.2343445 + 283.3744507) / 2 - 360)
    assert source_cores(dtm) == {"008669_1705", "009025_1705"}


def test_pairing_rules():
    dtm = dtm_from_label(DATA / "DTEEC_008669_1705_009025_1705_A01.partial.lbl")
    dtm.files.append(
        ProductFile("PSP_008669_1705_RED_A_01_ORTHO.JP2", "https://x/PSP_008669_1705_RED_A_01_ORTHO.JP2", "Product")
    )
    source = image("PSP_008669_1705_RED", (-9.72, -9.27), (283.2, 283.4))
    overlapping = image("ESP_020000_1705_RED", (-9.5, -9.0), (283.3, 283.35))
    elsewhere = image("ESP_020001_1705_RED", (-9.5, -9.0), (284.0, 284.1))
    pairs = pair_dtms([source, overlapping, elsewhere], [dtm])
    assert [(p.image_id, p.rule) for p in pairs] == [
        ("PSP_008669_1705_RED", "source"),
        ("ESP_020000_1705_RED", "overlap"),
    ]
    assert pairs[0].orthoimages == ("https://x/PSP_008669_1705_RED_A_01_ORTHO.JP2",)


def test_pairing_by_id_alone_when_the_label_is_not_at_hand():
    """The id encodes the stereo pair; a far-away footprint does not stop a source match."""
    dtm = CatalogueProduct("DTEEC_007361_1800_023817_1800_A01", "DTEEC_007361_1800_023817_1800_A01", "DTM", "test",
                           min_lat=50, max_lat=51, min_lon=10, max_lon=11)  # fmt: skip
    images = [product_from_ode(p) for p in real_products()]
    pairs = pair_dtms(images, [dtm])
    assert sorted(p.image_id for p in pairs) == [
        "ESP_023817_1800_COLOR", "ESP_023817_1800_RED", "PSP_007361_1800_COLOR", "PSP_007361_1800_RED",
    ]  # fmt: skip
    assert {p.rule for p in pairs} == {"source"}
