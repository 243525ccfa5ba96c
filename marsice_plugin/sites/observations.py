"""Repeat coverage of a site: one row per observation, and the transitions between consecutive Ls.

An observation is listed for a site when it is a processed product with a candidate in the site, a processed
product whose footprint reaches the site, or a catalogue observation whose footprint reaches it (processed or not;
a processed product and its catalogue entry are one row, matched by observation id).

``detected`` (processed observations only): the product has a candidate in the site. ``probability``: the highest
``max_probability`` of those candidates, or, when there is none, the highest CNN probability of the product's
scored chunks that overlap the site, so a plot against Ls shows how close a non-detection came.

Transitions, within one Mars Year in Ls order, each processed observation compared with the previous *processed*
one of the same year (unprocessed ones in between are skipped over):

* ``persisted``: seen before and now; ``disappeared``: seen before, not now; ``appeared``: not before, now;
  ``still absent``: neither; ``first in Mars Year``: the first processed observation of its year;
* ``not yet processed``: a catalogue observation with no results yet (``marsice sites --pull-missing`` lists them).

An absence on a dusty or low-contrast observation carries a ``caveat``: it may be dust or haze, not melt.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..catalogue.index import rdr_urls
from ..catalogue.records import CatalogueProduct, observation_of
from .geometry import intersects_wrapped
from .grouping import Site
from .inputs import ProcessedProduct
from .seasons import dust_context, low_contrast

PERSISTED = "persisted"
DISAPPEARED = "disappeared"
APPEARED = "appeared"
STILL_ABSENT = "still absent"
FIRST = "first in Mars Year"
NOT_PROCESSED = "not yet processed"

#: HiRISE's public page of an observation.
HIRISE_WEB = "https://www.uahirise.org/{observation_id}"


@dataclass
class ProductInfo:
    """Per processed product facts that are not in the ``products`` layer: time, Mars Year, contrast."""

    start_time: dt.datetime | None = None
    local_time: float | None = None
    mars_year: int | None = None
    contrast: float | None = None


@dataclass
class Observation:
    """One row of ``site_observations``."""

    site_id: str
    product_id: str
    observation_id: str
    start_time: dt.datetime | None
    mars_year: int | None
    ls: float | None
    local_time: float | None
    incidence: float | None
    map_scale: float | None
    processed: bool
    detected: bool | None = None
    probability: float | None = None
    chunk_probability: float | None = None
    candidate_ids: list[str] = field(default_factory=list)
    transition: str = ""
    previous_product_id: str | None = None
    dusty: bool = False
    dust_note: str = ""
    contrast: float | None = None
    low_contrast: bool = False
    caveat: str = ""
    catalogue: str = ""
    footprint_approximate: bool = False
    results_file: str = ""

    @property
    def web_url(self) -> str:
        return HIRISE_WEB.format(observation_id=self.observation_id)

    @property
    def jp2_url(self) -> str | None:
        try:
            return rdr_urls(self.product_id)[0]
        except ValueError:
            return None

    def as_row(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "product_id": self.product_id,
            "observation_id": self.observation_id,
            "start_time": self.start_time.isoformat(timespec="seconds").replace("+00:00", "Z")
            if self.start_time
            else None,
            "mars_year": self.mars_year,
            "ls": self.ls,
            "local_time": self.local_time,
            "incidence": self.incidence,
            "map_scale": self.map_scale,
            "processed": self.processed,
            "detected": self.detected,
            "probability": self.probability,
            "chunk_probability": self.chunk_probability,
            "n_candidates": len(self.candidate_ids) if self.processed else None,
            "candidate_ids": ",".join(self.candidate_ids) or None,
            "transition": self.transition,
            "previous_product_id": self.previous_product_id,
            "dusty": self.dusty,
            "dust_note": self.dust_note or None,
            "contrast": self.contrast,
            "low_contrast": self.low_contrast,
            "caveat": self.caveat or None,
            "catalogue": self.catalogue or None,
            "footprint_approximate": self.footprint_approximate,
            "web_url": self.web_url,
            "jp2_url": self.jp2_url,
            "results_file": self.results_file or None,
        }


def site_observations(
    site: Site,
    processed: dict[str, ProcessedProduct],
    info: Mapping[str, ProductInfo],
    catalogue: list[CatalogueProduct],
) -> list[Observation]:
    """Every observation of a site, sorted by Mars Year and Ls, with transitions and season flags.

    ``info`` is looked up only for the processed products that cover the site (a lazy mapping may measure them
    on first use).
    """
    members: dict[str, list[Any]] = {}
    for m in site.members:
        members.setdefault(m.product_id, []).append(m)
    by_obs: dict[str, CatalogueProduct] = {}
    for record in catalogue:  # one row per observation: its RED product when the catalogue lists several
        held = by_obs.get(record.observation_id)
        if held is None or (record.product_type == "RED" and held.product_type != "RED"):
            by_obs[record.observation_id] = record
    rows: list[Observation] = []
    for pid, product in processed.items():
        if pid not in members and not intersects_wrapped(site.geometry, product.footprint):
            continue
        oid = observation_of(pid)
        record = by_obs.pop(oid, None)
        rows.append(_processed_row(site, product, info[pid], record, members.get(pid, [])))
    for oid, record in by_obs.items():
        rows.append(
            Observation(
                site_id=site.site_id,
                product_id=record.product_id,
                observation_id=oid,
                start_time=record.start_time,
                mars_year=record.mars_year,
                ls=record.ls,
                local_time=record.local_time,
                incidence=record.incidence,
                map_scale=record.map_scale,
                processed=False,
                catalogue=record.source,
                footprint_approximate=record.footprint_approximate,
            )
        )
    for row in rows:
        dust = dust_context(row.mars_year, row.ls)
        row.dusty, row.dust_note = dust.dusty, dust.note
        row.low_contrast = low_contrast(row.incidence, row.contrast)
    rows.sort(key=lambda r: (r.mars_year is None, r.mars_year or 0, r.ls is None, r.ls or 0.0, r.product_id))
    assign_transitions(rows)
    return rows


def _processed_row(
    site: Site, product: ProcessedProduct, info: ProductInfo, record: CatalogueProduct | None, members: list[Any]
) -> Observation:
    def pick(own: Any, other: Any) -> Any:
        return own if own is not None else other

    chunk_probs = [p for g, p in product.chunks if intersects_wrapped(site.geometry, g)]
    chunk_probability = max(chunk_probs) if chunk_probs else None
    cand_probs = [m.max_probability for m in members if m.max_probability is not None]
    detected = bool(members)
    probability = max(cand_probs) if cand_probs else (None if detected else chunk_probability)
    return Observation(
        site_id=site.site_id,
        product_id=product.product_id,
        observation_id=observation_of(product.product_id),
        start_time=pick(info.start_time, record.start_time if record else None),
        mars_year=pick(info.mars_year, record.mars_year if record else None),
        ls=pick(product.get("ls"), record.ls if record else None),
        local_time=pick(info.local_time, record.local_time if record else None),
        incidence=pick(product.get("incidence"), record.incidence if record else None),
        map_scale=pick(product.get("scale_m"), record.map_scale if record else None),
        processed=True,
        detected=detected,
        probability=probability,
        chunk_probability=chunk_probability,
        candidate_ids=[m.candidate_id for m in members],
        contrast=info.contrast,
        catalogue=record.source if record else "",
        footprint_approximate=False,
        results_file=product.results_file,
    )


def assign_transitions(rows: list[Observation]) -> None:
    """Fill ``transition``, ``previous_product_id`` and ``caveat`` of rows sorted by Mars Year and Ls."""
    last: dict[int | None, Observation] = {}
    for row in rows:
        if not row.processed:
            row.transition = NOT_PROCESSED
            continue
        prev = last.get(row.mars_year)
        if prev is None:
            row.transition = FIRST
        else:
            row.previous_product_id = prev.product_id
            row.transition = {
                (True, True): PERSISTED,
                (True, False): DISAPPEARED,
                (False, True): APPEARED,
                (False, False): STILL_ABSENT,
            }[(bool(prev.detected), bool(row.detected))]
        last[row.mars_year] = row
        if not row.detected:
            reasons = []
            if row.dusty:
                reasons.append("taken during a global dust storm")
            if row.low_contrast:
                reasons.append("low sun or low contrast")
            if reasons:
                why = " and ".join(reasons)
                row.caveat = f"not seen, but {why}: dust or haze may hide the patch; not proof of melt"
