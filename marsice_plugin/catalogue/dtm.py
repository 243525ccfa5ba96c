"""Pair images with HiRISE DTMs: by source observations first, then by footprint overlap.

Why two rules: a DTM is made from (usually two) stereo observations, which its label lists in
SOURCE_PRODUCT_ID and its id encodes (``DTEEC_008669_1705_009025_1705_A01`` is built from
observations 008669_1705 and 009025_1705). Those images share the DTM's geometry exactly. Other
images of the same place can still use the DTM for slopes and shadows, so footprint overlap is the
second rule; each pair says which rule made it.

Orthoimages come with a DTM: ODE lists them among the DTM's files (``*_ORTHO.JP2``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LabelError
from .index import load_pds3_label
from .records import CatalogueProduct, ProductFile, east_180, observation_of

_DTM_SOURCES = re.compile(r"^DT[A-Z]{3}_(\d{6}_\d{4})_(\d{6}_\d{4})_[A-Z0-9]{3}$")
_OBS_CORE = re.compile(r"^[A-Z]{3}_(\d{6}_\d{4})")


@dataclass(frozen=True)
class DtmPair:
    """One image-DTM pair and the rule that made it ("source" or "overlap")."""

    image_id: str
    dtm_id: str
    rule: str
    orthoimages: tuple[str, ...] = ()


def source_cores(dtm: CatalogueProduct) -> set[str]:
    """Orbit_target cores (``008669_1705``) of a DTM's source observations: label list and id."""
    cores = set()
    for sid in dtm.source_product_ids:
        m = _OBS_CORE.match(sid.upper())
        if m:
            cores.add(m.group(1))
    m = _DTM_SOURCES.match(dtm.product_id)
    if m:
        cores.update(m.groups())
    return cores


def orthoimages(dtm: CatalogueProduct) -> tuple[str, ...]:
    """URLs of the orthoimages ODE lists with a DTM."""
    return tuple(f.url for f in dtm.files if "ORTHO" in f.name.upper() and f.name.upper().endswith(".JP2"))


def pair_dtms(images: Iterable[CatalogueProduct], dtms: Sequence[CatalogueProduct]) -> list[DtmPair]:
    """All (image, DTM) pairs: source-observation matches, then footprint overlaps not already paired."""
    prepared = [(d, source_cores(d), d.footprint()) for d in dtms]
    pairs = []
    for image in images:
        m = _OBS_CORE.match(observation_of(image.product_id))
        core = m.group(1) if m else None
        footprint = image.footprint()
        for dtm, cores, dtm_footprint in prepared:
            if core and core in cores:
                pairs.append(DtmPair(image.product_id, dtm.product_id, "source", orthoimages(dtm)))
            elif not footprint.is_empty and not dtm_footprint.is_empty and footprint.intersects(dtm_footprint):
                pairs.append(DtmPair(image.product_id, dtm.product_id, "overlap", orthoimages(dtm)))
    return pairs


def dtm_from_label(path: str | Path, url: str | None = None) -> CatalogueProduct:
    """A DTM catalogue record from its PDS3 label: id, SOURCE_PRODUCT_ID and the lat/lon box."""
    path = Path(path)
    label = load_pds3_label(path, LabelError, f"{path}: not a readable PDS3 label")
    pid = str(label.get("PRODUCT_ID", "")).strip().upper()
    if not pid:
        raise LabelError(f"{path}: DTM label has no PRODUCT_ID")
    sources = label.get("SOURCE_PRODUCT_ID", ())
    if isinstance(sources, str):
        sources = (sources,)
    mp = label.get("IMAGE_MAP_PROJECTION", {})

    def number(key: str) -> float | None:
        value = mp.get(key)
        value = getattr(value, "value", value)
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    west, east = number("WESTERNMOST_LONGITUDE"), number("EASTERNMOST_LONGITUDE")
    if west is not None and east is not None and east < west:
        east += 360.0
    return CatalogueProduct(
        product_id=pid,
        observation_id=pid,
        product_type="DTM",
        source="label",
        min_lat=number("MINIMUM_LATITUDE"),
        max_lat=number("MAXIMUM_LATITUDE"),
        min_lon=east_180(west) if west is not None else None,
        max_lon=east_180(west) + (east - west) if west is not None and east is not None else None,
        footprint_approximate=True,
        footprint_note="lat/lon box from the DTM label",
        lbl_url=url,
        files=[ProductFile(path.name, url or path.as_uri(), "Product")],
        source_product_ids=tuple(str(s).upper() for s in sources),
    )
