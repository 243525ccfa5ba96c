"""Build the sites GeoPackage: layer ``sites`` (one outline per site) and table ``site_observations``.

This is the library function behind ``marsice sites`` and the QGIS "Site history" algorithm. The file is written
atomically (built under a temporary name, then renamed): a failed or cancelled run leaves any earlier file as it
was. Plots and the queue of unprocessed observations are written atomically too. The file's readers
(:func:`read_sites`, :func:`read_observations`, used by ``marsice export``) sit beside its writer.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalogue.mars_time import mars_year
from ..catalogue.records import CatalogueProduct
from ..detect_defaults import DEFAULT_THRESHOLD
from ..errors import OutputError
from ..gpkg import Field, GeoPackage, read_layer, write_new
from ..mars_crs import COMMON_CRS, common_crs
from ..outputs import write_atomically
from ..progress import Reporter
from ..styles import write_default_style
from .coverage import FootprintIndex, catalogue_index, catalogue_records, covering
from .grouping import DEFAULT_TOLERANCE_M, Site, group_candidates
from .inputs import ProcessedProduct, read_results
from .observations import HIRISE_WEB, Observation, ProductInfo, site_observations
from .seasons import product_contrast

SITES_LAYER = "sites"
OBSERVATIONS_TABLE = "site_observations"

#: Ls padding (degrees) of the request window on both sides.
REQUEST_PAD_LS = 5.0
#: Span (degrees of Ls) after the last sighting when the patch was never seen gone.
REQUEST_OPEN_SPAN_LS = 20.0

SITE_FIELDS = [
    Field("site_id", str, "stable site id from the rounded centroid, e.g. site_50.2012S_031.4056E"),
    Field("centroid_lat", float, "planetocentric latitude of the site centroid (degrees)"),
    Field("centroid_lon", float, "east longitude of the site centroid (degrees, -180..180)"),
    Field("centroid_lon_360", float, "east longitude of the site centroid (degrees, 0..360)"),
    Field("area_m2", float, "area of the union of the candidate outlines (m²)"),
    Field("n_candidates", int, "ice candidates grouped into the site"),
    Field("n_observations", int, "observations covering the site (processed or not)"),
    Field("n_processed", int, "processed observations covering the site"),
    Field("n_detected", int, "processed observations with a candidate in the site"),
    Field("n_not_processed", int, "catalogue observations covering the site with no results yet"),
    Field("products", str, "products with a candidate in the site (comma-separated)"),
    Field("detections", str, "each detection: product, Ls, Mars Year and probability (semicolon-separated)"),
    Field("max_probability", float, "highest candidate probability in the site"),
    Field("ls_min", float, "lowest Ls of the observations covering the site (degrees)"),
    Field("ls_max", float, "highest Ls of the observations covering the site (degrees)"),
    Field("detected_ls_min", float, "lowest Ls at which the patch was outlined"),
    Field("detected_ls_max", float, "highest Ls at which the patch was outlined"),
    Field("mars_year_min", int, "first Mars Year covered"),
    Field("mars_year_max", int, "last Mars Year covered"),
    Field("mars_years", str, "Mars Years covered (comma-separated)"),
    Field("transitions", str, "transition of each processed observation in Ls order (semicolon-separated)"),
    Field("n_dusty", int, "observations inside a global dust storm"),
    Field("n_low_contrast", int, "observations with low sun or low contrast"),
    Field("n_caveats", int, "non-detections that may be dust or haze rather than melt"),
    Field("request_ls_start", float, "Ls window for a new observation request: start (degrees)"),
    Field("request_ls_end", float, "Ls window for a new observation request: end (degrees; may wrap past 360)"),
    Field("web_urls", str, "HiRISE web pages of the products with detections (space-separated)"),
    Field("jp2_urls", str, "JP2 links of the products with detections (space-separated)"),
    Field("tolerance_m", float, "grouping tolerance of the run (m)"),
    Field("plot", str, "PNG of probability against Ls (absolute path), when plots were asked for"),
]

OBSERVATION_FIELDS = [
    Field("site_id", str, "site id"),
    Field("product_id", str, "HiRISE product id"),
    Field("observation_id", str, "HiRISE observation id"),
    Field("start_time", str, "UTC start of the observation (ISO 8601)"),
    Field("mars_year", int, "Mars Year (MY 1 began at Ls 0 on 1955-04-11)"),
    Field("ls", float, "solar longitude (degrees)"),
    Field("local_time", float, "local true solar time (hours)"),
    Field("incidence", float, "solar incidence angle (degrees)"),
    Field("map_scale", float, "map scale (m/pixel)"),
    Field("processed", bool, "1 when results exist for this observation"),
    Field("detected", bool, "1 when the product has a candidate in the site; NULL when not processed"),
    Field("probability", float, "candidate probability, or the highest chunk probability over the site"),
    Field("chunk_probability", float, "highest CNN probability of the product's chunks over the site"),
    Field("n_candidates", int, "the product's candidates in the site"),
    Field("candidate_ids", str, "those candidates (comma-separated)"),
    Field("transition", str, "persisted, disappeared, appeared, still absent, first in Mars Year, not yet processed"),
    Field("previous_product_id", str, "the processed observation the transition compares with"),
    Field("dusty", bool, "1 inside a global dust storm of its Mars Year"),
    Field("dust_note", str, "dusty periods the observation falls in, with sources"),
    Field("contrast", float, "relative contrast (p95 - p5) / median of the image; NULL if not measured"),
    Field("low_contrast", bool, "1 for low sun (incidence >= 80°) or contrast below 0.08"),
    Field("caveat", str, "why an absence may not mean melt"),
    Field("catalogue", str, "catalogue that listed the observation"),
    Field("footprint_approximate", bool, "1 when coverage rests on an approximate catalogue footprint"),
    Field("web_url", str, "HiRISE web page of the observation"),
    Field("jp2_url", str, "JP2 link of the product"),
    Field("results_file", str, "results GeoPackage holding the product's detections"),
]


@dataclass
class SitesResult:
    """What a run produced."""

    output: Path
    sites: list[Site]
    observations: dict[str, list[Observation]]
    catalogue_source: str
    plots: dict[str, Path] = field(default_factory=dict)
    queue: Path | None = None
    queued: list[str] = field(default_factory=list)

    def summary(self) -> str:
        n_obs = sum(len(v) for v in self.observations.values())
        missing = len({r.product_id for rows in self.observations.values() for r in rows if not r.processed})
        return (
            f"{len(self.sites)} sites from {sum(len(s.members) for s in self.sites)} candidates; {n_obs} site "
            f"observations ({self.catalogue_source} catalogue), {missing} catalogue observation(s) not processed yet"
        )


def product_info(product: ProcessedProduct, measure_contrast: bool = True) -> ProductInfo:
    """Time, local time and Mars Year from the row or the product's own label; contrast from its pixels."""
    from ..labels import read_label

    info = ProductInfo(local_time=product.get("local_time"), mars_year=product.get("mars_year"))
    start = product.get("start_time")
    if isinstance(start, str) and start:
        info.start_time = dt.datetime.fromisoformat(start.rstrip("Z")).replace(tzinfo=dt.UTC)
    source = product.get("source")
    path = Path(source) if isinstance(source, str) and source else None
    if path is not None and path.suffix.lower() == ".lbl" and path.exists() and info.start_time is None:
        try:
            label = read_label(path)
        except Exception:  # noqa: BLE001 - a moved or unreadable label only loses the time, not the run
            label = None
        if label is not None:
            info.start_time = label.start_time
            if info.local_time is None:
                info.local_time = label.local_time
    if info.start_time is not None and info.start_time.tzinfo is None:
        info.start_time = info.start_time.replace(tzinfo=dt.UTC)
    if info.mars_year is None and info.start_time is not None:
        info.mars_year = mars_year(info.start_time, product.get("ls"))
    if measure_contrast and path is not None:
        info.contrast = product_contrast(path)
    return info


class _LazyInfo(dict):
    """Product facts measured on first use (opening a large product to measure its contrast takes seconds)."""

    def __init__(self, products: dict[str, ProcessedProduct], measure_contrast: bool):
        super().__init__()
        self.products = products
        self.measure_contrast = measure_contrast

    def __missing__(self, pid: str) -> ProductInfo:
        info = product_info(self.products[pid], self.measure_contrast)
        self[pid] = info
        return info


def request_window(rows: list[Observation]) -> tuple[float | None, float | None]:
    """Ls window for a new observation: it brackets the disappearance.

    From :data:`REQUEST_PAD_LS` before the first Ls at which the patch was outlined (any year) to the first Ls
    after the last sighting at which a processed observation without caveat saw it gone, plus the pad; when it was
    never seen gone, :data:`REQUEST_OPEN_SPAN_LS` after the last sighting. The end may exceed 360 when the window
    wraps through Ls 0; both are None for a site never outlined.
    """
    seen = [r.ls for r in rows if r.processed and r.detected and r.ls is not None]
    if not seen:
        return None, None
    first, last = min(seen), max(seen)
    gone = [r.ls for r in rows if r.processed and not r.detected and not r.caveat and r.ls is not None and r.ls > last]
    end = (min(gone) if gone else last + REQUEST_OPEN_SPAN_LS) + REQUEST_PAD_LS
    start = (first - REQUEST_PAD_LS) % 360.0
    end = end if end > start else end + 360.0
    return round(start, 2), round(end, 2)


def _site_attributes(site: Site, rows: list[Observation], tolerance_m: float, plot: Path | None) -> dict[str, Any]:
    processed = [r for r in rows if r.processed]
    detected = [r for r in processed if r.detected]
    ls_all = [r.ls for r in rows if r.ls is not None]
    years = sorted({r.mars_year for r in rows if r.mars_year is not None})
    probs = [m.max_probability for m in site.members if m.max_probability is not None]
    start, end = request_window(rows)
    return {
        "site_id": site.site_id,
        "centroid_lat": site.centroid_lat,
        "centroid_lon": site.centroid_lon,
        "centroid_lon_360": site.centroid_lon_360,
        "area_m2": site.area_m2,
        "n_candidates": len(site.members),
        "n_observations": len(rows),
        "n_processed": len(processed),
        "n_detected": len(detected),
        "n_not_processed": len(rows) - len(processed),
        "products": ",".join(site.products),
        "detections": "; ".join(
            f"{r.product_id} Ls {_fmt(r.ls)} MY {r.mars_year if r.mars_year is not None else '?'} "
            f"p {_fmt(r.probability, 2)}"
            for r in detected
        ),
        "max_probability": max(probs) if probs else None,
        "ls_min": min(ls_all) if ls_all else None,
        "ls_max": max(ls_all) if ls_all else None,
        "detected_ls_min": min((r.ls for r in detected if r.ls is not None), default=None),
        "detected_ls_max": max((r.ls for r in detected if r.ls is not None), default=None),
        "mars_year_min": years[0] if years else None,
        "mars_year_max": years[-1] if years else None,
        "mars_years": ",".join(str(y) for y in years),
        "transitions": "; ".join(f"{r.product_id}: {r.transition}" for r in processed),
        "n_dusty": sum(r.dusty for r in rows),
        "n_low_contrast": sum(r.low_contrast for r in rows),
        "n_caveats": sum(bool(r.caveat) for r in rows),
        "request_ls_start": start,
        "request_ls_end": end,
        "web_urls": " ".join(dict.fromkeys(HIRISE_WEB.format(observation_id=r.observation_id) for r in detected)),
        "jp2_urls": " ".join(u for u in dict.fromkeys(r.jp2_url for r in detected) if u),
        "tolerance_m": tolerance_m,
        "plot": str(plot.resolve()) if plot else None,
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def build_sites(
    results: list[Path],
    output: Path,
    *,
    tolerance_m: float = DEFAULT_TOLERANCE_M,
    catalogue: str = "auto",
    footprints: Path | None = None,
    index_path: Path | None = None,
    ode_url: str | None = None,
    plots_dir: Path | None = None,
    pull_missing: Path | None = None,
    measure_contrast: bool = True,
    reporter: Reporter | None = None,
) -> SitesResult:
    """Group candidates into sites, list each site's observations, write the GeoPackage (and plots, queue)."""
    reporter = reporter or Reporter("quiet")
    output = Path(output)
    if output.suffix.lower() != ".gpkg":
        raise OutputError(f"{output}: sites are written as a GeoPackage; give an output name ending in .gpkg")
    if not math.isfinite(tolerance_m) or tolerance_m < 0:
        raise ValueError(f"--tolerance-m must be a distance >= 0 in metres, got {tolerance_m}")
    reporter.progress(2, "reading results")
    data = read_results([Path(p) for p in results])
    reporter.log(f"{len(data.candidates)} candidates in {len(data.products)} processed products")
    sites = group_candidates(data.candidates, tolerance_m)
    reporter.progress(20, f"{len(sites)} sites; searching the catalogue")
    records, used = catalogue_records(
        sites,
        catalogue,
        footprints=footprints,
        index_path=index_path,
        ode_url=ode_url,
        warn=lambda m: reporter.log(m, "warning"),
    )
    infos = _LazyInfo(data.products, measure_contrast)  # products covering no site are never opened
    in_catalogue = catalogue_index(records)
    processed = FootprintIndex(list(data.products), [p.footprint for p in data.products.values()])
    observations: dict[str, list[Observation]] = {}
    for k, site in enumerate(sites, start=1):
        near = {pid: data.products[pid] for pid in [*processed.reaching(site.geometry), *site.products]}
        observations[site.site_id] = site_observations(site, near, infos, covering(site, in_catalogue))
        reporter.progress(40 + 30 * k / max(1, len(sites)), f"site {k}/{len(sites)}")
    result = SitesResult(output, sites, observations, used)
    if plots_dir is not None:
        from .plots import plot_site

        # the runs' own threshold (a model card's, or --threshold); the highest when the runs differ
        thresholds = {p.get("threshold") for p in data.products.values()} - {None}
        line = max(thresholds) if thresholds else DEFAULT_THRESHOLD
        for k, site in enumerate(sites, start=1):
            result.plots[site.site_id] = plot_site(
                site.site_id, observations[site.site_id], Path(plots_dir) / f"{site.site_id}.png", float(line)
            )
            reporter.progress(70 + 20 * k / max(1, len(sites)), f"plot {k}/{len(sites)}")
    reporter.progress(92, "writing GeoPackage")
    _write(output, sites, observations, tolerance_m, result.plots)
    if pull_missing is not None:
        result.queue, result.queued = write_queue(Path(pull_missing), observations, records)
    reporter.progress(100, "done")
    return result


def _write(
    path: Path,
    sites: list[Site],
    observations: dict[str, list[Observation]],
    tolerance_m: float,
    plots: dict[str, Path],
) -> None:
    def build(gpkg: GeoPackage) -> None:
        srs = gpkg.add_srs(common_crs(), name=f"Mars 2015 sphere, planetocentric ({COMMON_CRS})")
        gpkg.create_layer(
            SITES_LAYER,
            SITE_FIELDS,
            "MULTIPOLYGON",
            srs,
            "candidate sites: candidates of several products within a tolerance, with their observation history",
        )
        write_default_style(gpkg.conn, SITES_LAYER)  # outlined by persistence when QGIS opens it
        gpkg.insert(
            SITES_LAYER,
            SITE_FIELDS,
            [
                (s.geometry, _site_attributes(s, observations[s.site_id], tolerance_m, plots.get(s.site_id)))
                for s in sites
            ],
        )
        create_attribute_table(
            gpkg,
            OBSERVATIONS_TABLE,
            OBSERVATION_FIELDS,
            "every observation covering each site, with transitions between consecutive Ls",
            [row.as_row() for s in sites for row in observations[s.site_id]],
        )

    write_new(path, build)


#: What to give instead of a file the sites readers cannot use.
SITES_HINT = "give a sites file written by `marsice sites`"


def read_sites(path: str | Path) -> list[tuple[Any, dict[str, Any]]]:
    """(geometry, attributes) of every site in a sites GeoPackage written by :func:`_write`, in site id order."""
    return read_layer(path, SITES_LAYER, order_by="site_id", hint=SITES_HINT)


def read_observations(path: str | Path) -> list[dict[str, Any]]:
    """Rows of the ``site_observations`` table written by :func:`_write`, in the order written."""
    return [attrs for _, attrs in read_layer(path, OBSERVATIONS_TABLE, geometry=False, hint=SITES_HINT)]


def create_attribute_table(
    gpkg: GeoPackage, name: str, fields: list[Field], description: str, rows: list[dict[str, Any]]
) -> None:
    """A GeoPackage attributes table (no geometry; ``data_type`` 'attributes'), as QGIS and GDAL read it."""
    columns = ", ".join(f'"{f.name}" {f.sql_type}' for f in fields)
    gpkg.conn.execute(f'CREATE TABLE "{name}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, {columns})')
    gpkg.conn.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES (?, 'attributes', ?, ?)",
        (name, name, description),
    )
    names = ", ".join(f'"{f.name}"' for f in fields)
    gpkg.conn.executemany(
        f'INSERT INTO "{name}" ({names}) VALUES ({", ".join("?" * len(fields))})',
        [tuple(_cast(row.get(f.name), f.type) for f in fields) for row in rows],
    )


def _cast(value: Any, kind: type) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind is bool:
        return int(bool(value))
    return kind(value)


def write_queue(
    path: Path, observations: dict[str, list[Observation]], records: list[CatalogueProduct]
) -> tuple[Path, list[str]]:
    """The unprocessed observations of every site, for ``marsice download``.

    A ``.gpkg`` path gets a footprint layer (``marsice download --from QUEUE.gpkg``); any other name a text file
    with one product id a line (``xargs marsice download < QUEUE.txt``).
    """
    wanted = sorted({r.product_id for rows in observations.values() for r in rows if not r.processed})
    if path.suffix.lower() == ".gpkg":
        from ..catalogue.footprints import write_footprints

        by_id = {r.product_id: r for r in records}
        write_footprints(path, [by_id[pid] for pid in wanted if pid in by_id])
        return path, wanted
    write_atomically(path, lambda tmp: tmp.write_text("".join(pid + "\n" for pid in wanted), encoding="utf-8"))
    return path, wanted
