"""Offline catalogues: the bundled one shipped in ``marsice_plugin/data/``, and RDRCUMINDEX.TAB.

Why both: the bundled catalogue (a few MB, derived once by :mod:`.build_bundled`) answers searches
with no network at all; the official HiRISE cumulative RDR index (RDRCUMINDEX.TAB, ~100,000 rows of
fixed-width text) is what a user downloads to refresh it. The TAB is read through the column
definitions of its own PDS3 label (RDRCUMINDEX.LBL: NAME, START_BYTE, BYTES, DATA_TYPE), never
through offsets copied into this code, so a new index release with moved columns still reads right.

Known limits of the bundled file (see ``marsice_plugin/data/README.md``): it lists COLOR products
only, so RED products are derived from their observation's COLOR entry and their footprints are
marked approximate (a COLOR strip is about a fifth of the RED width); footprints are latitude /
longitude boxes; map scales and JP2 sizes are derived from the index (:mod:`.size_estimate`), the sizes
marked estimated (the index lists no compressed sizes).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CancelledError, CatalogueError, MarsIceError
from ..labels import sun_azimuth_from_north
from .records import CatalogueProduct, ProductFile, east_180, observation_of, product_type_of
from .size_estimate import LABEL_BYTES

#: The bundled catalogue (one COLOR record per observation).
BUNDLED_PATH = Path(__file__).resolve().parents[1] / "data" / "hirise_color_observations.csv.gz"

#: Where HiRISE serves the PDS archive (the host of the index's URLs).
PDS_BASE_URL = "https://hirise-pds.lpl.arizona.edu/PDS/"

#: Columns of the bundled CSV, in order (see data/README.md for units).
BUNDLED_COLUMNS = (
    "product_id",
    "start_time",
    "mars_year",
    "ls",
    "local_time",
    "incidence",
    "emission",
    "phase",
    "min_lat",
    "max_lat",
    "min_lon",
    "max_lon",
    "map_scale",
    "uncompressed_bytes",
    "corners",
    "est_jp2_mb",
    "est_red_jp2_mb",
    "sun_azimuth",
)

APPROX_RED_NOTE = "footprint of the observation's COLOR product (the RED product is about 5x wider)"
APPROX_BOX_NOTE = "lat/lon box of the product"


def rdr_path(product_id: str) -> str:
    """Archive path of an RDR's JP2, e.g. RDR/ESP/ORB_016400_016499/ESP_016430_2095/ESP_016430_2095_COLOR.JP2."""
    obs = observation_of(product_id)
    phase, orbit, _ = obs.split("_")
    first = int(orbit) // 100 * 100
    return f"RDR/{phase}/ORB_{first:06d}_{first + 99:06d}/{obs}/{product_id}.JP2"


def rdr_urls(product_id: str, base: str = PDS_BASE_URL) -> tuple[str, str]:
    """(JP2 URL, LBL URL) of an RDR product id, following the archive's fixed layout."""
    jp2 = base + rdr_path(product_id)
    return jp2, jp2[: -len("JP2")] + "LBL"


def _float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _time(text: str) -> dt.datetime | None:
    text = text.strip().strip('"').rstrip("Z")
    if not text:
        return None
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _corners_wkt(corners: str) -> str | None:
    """'lon lat;lon lat;...' (4 corners) to a WKT polygon in lon -180..180, unwrapped around corner 1."""
    if not corners.strip():
        return None
    points = [tuple(float(v) for v in pair.split()) for pair in corners.split(";")]
    first = east_180(points[0][0])
    ring = []
    for lon, lat in points:
        lon = first + ((east_180(lon) - first + 180.0) % 360.0 - 180.0)
        ring.append((lon, lat))
    ring.append(ring[0])
    return "POLYGON ((" + ", ".join(f"{x:.5f} {y:.5f}" for x, y in ring) + "))"


def catalogue_sun(product_id: str, path: Path | None = None) -> tuple[float | None, float | None]:
    """(sun azimuth from north, incidence) of ``product_id``'s observation in the bundled catalogue; None where
    it is not there.

    One observation's products share their time and lighting, so a RED product takes its COLOR row's values. Why:
    a GeoTIFF export of an RDR (``gdal_translate``) keeps neither label nor sun, but keeps its product id as its
    file name; the second stage needs the sun to turn its crops (:mod:`marsice_plugin.patches.crops`) and terrain
    needs it for shadows.
    """
    observation = observation_of(product_id)
    if not observation or observation == product_id:
        return None, None
    wanted = {f"{observation}_{kind}" for kind in ("COLOR", "RED", "IRB")}
    for row in read_bundled_rows(path):
        if row["product_id"] in wanted:
            return _float(row["sun_azimuth"]), _float(row["incidence"])
    return None, None


def catalogue_sun_azimuth(product_id: str, path: Path | None = None) -> float | None:
    """The sun azimuth of ``product_id``'s observation in the bundled catalogue (:func:`catalogue_sun`)."""
    return catalogue_sun(product_id, path)[0]


def _bundled_record(row: dict[str, str], product_id: str, derived: bool) -> CatalogueProduct:
    """One record; ``derived``: a RED product standing on its observation's COLOR row."""
    jp2, lbl = rdr_urls(product_id)
    corners = _corners_wkt(row.get("corners", ""))
    note = APPROX_RED_NOTE if derived else ("" if corners else APPROX_BOX_NOTE)
    size_mb = row["est_red_jp2_mb" if product_type_of(product_id) == "RED" else "est_jp2_mb"]
    return CatalogueProduct(
        product_id=product_id,
        observation_id=observation_of(product_id),
        product_type=product_type_of(product_id),
        source="bundled",
        start_time=_time(row["start_time"]),
        mars_year=int(row["mars_year"]) if row["mars_year"] else None,
        ls=_float(row["ls"]),
        local_time=_float(row["local_time"]),
        incidence=_float(row["incidence"]),
        emission=_float(row["emission"]),
        phase=_float(row["phase"]),
        min_lat=_float(row["min_lat"]),
        max_lat=_float(row["max_lat"]),
        min_lon=_float(row["min_lon"]),
        max_lon=_float(row["max_lon"]),
        map_scale=_float(row["map_scale"]),
        footprint_wkt=corners,
        footprint_approximate=bool(note),
        footprint_note=note,
        jp2_url=jp2,
        lbl_url=lbl,
        files=[ProductFile(jp2.rsplit("/", 1)[1], jp2, "Product"), ProductFile(lbl.rsplit("/", 1)[1], lbl, "Product")],
        uncompressed_bytes=int(row["uncompressed_bytes"]) if row["uncompressed_bytes"] and not derived else None,
        estimated_bytes=round(float(size_mb) * 1e6) + LABEL_BYTES if size_mb else None,  # no download is checked on it
        sun_azimuth=_float(row["sun_azimuth"]),
    )


def read_bundled_rows(path: Path | None = None) -> list[dict[str, str]]:
    """The raw rows of the bundled catalogue (comment lines starting with '#' skipped)."""
    path = path or BUNDLED_PATH
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            lines = [line for line in fh if not line.startswith("#")]
    except OSError as exc:
        raise CatalogueError(
            f"cannot read the bundled catalogue {path}: {exc}; reinstall MarsIce or rebuild it with "
            "`python -m marsice_plugin.catalogue.build_bundled`"
        ) from exc
    reader = csv.DictReader(io.StringIO("".join(lines)))
    if tuple(reader.fieldnames or ()) != BUNDLED_COLUMNS:
        raise CatalogueError(f"{path} does not have the bundled catalogue's columns; rebuild it with build_bundled")
    return list(reader)


def load_bundled(product_type: str = "RED", path: Path | None = None) -> list[CatalogueProduct]:
    """Records of one product type from the bundled catalogue.

    RED records missing from the file are derived from their observation's COLOR record (same
    observation, same time and lighting; the footprint is the COLOR one, marked approximate).
    DTMs are not in the bundled catalogue: ask ODE.
    """
    if product_type == "DTM":
        raise CatalogueError("the bundled catalogue holds no DTMs; search ODE for them (--source ode)")
    rows = read_bundled_rows(path)
    have = {row["product_id"] for row in rows}
    out: list[CatalogueProduct] = []
    for row in rows:
        pid = row["product_id"]
        kind = product_type_of(pid)
        if kind == product_type:
            out.append(_bundled_record(row, pid, derived=False))
        elif product_type == "RED" and kind == "COLOR":
            red = observation_of(pid) + "_RED"
            if red not in have:
                out.append(_bundled_record(row, red, derived=True))
    return out


# -- RDRCUMINDEX.TAB through its label ---------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One COLUMN object of a PDS3 TABLE: 0-based start byte, width and data type."""

    name: str
    start: int
    size: int
    data_type: str


@dataclass(frozen=True)
class TableLayout:
    """The TABLE object of an index label: record length, columns and the table file it points to."""

    row_bytes: int
    rows: int | None
    columns: tuple[Column, ...]
    table_file: str | None


def load_pds3_label(path: Path, error: type[MarsIceError], message: str) -> Any:
    """The PDS3 label at ``path`` parsed by pvl; a file pvl cannot parse raises ``error``.

    pvl raises many exception types (its own parse errors, UnicodeDecodeError, OSError...), so any of them
    becomes ``error`` with ``message`` and the cause in parentheses, which is what the caller's user can act
    on; a cancel that lands while parsing stays a cancel.
    """
    import pvl

    try:
        return pvl.load(str(path))
    except CancelledError:
        raise
    except Exception as exc:
        raise error(f"{message} ({type(exc).__name__}: {exc})") from exc


def read_table_label(label_path: str | Path) -> TableLayout:
    """Column layout of an index table from its PDS3 label (RDRCUMINDEX.LBL)."""
    label_path = Path(label_path)
    label = load_pds3_label(label_path, CatalogueError, f"cannot read index label {label_path}")
    tables = [k for k, v in label.items() if k.endswith("TABLE") and not k.startswith("^") and hasattr(v, "keys")]
    if not tables:
        raise CatalogueError(f"{label_path} has no TABLE object; give the RDRCUMINDEX.LBL of the index")
    table = label[tables[0]]
    pointer = label.get("^" + tables[0])
    table_file = str(pointer[0] if isinstance(pointer, list | tuple) else pointer) if pointer else None
    columns = []
    for key, col in table.items():
        if key != "COLUMN":
            continue
        try:
            columns.append(
                Column(str(col["NAME"]), int(col["START_BYTE"]) - 1, int(col["BYTES"]), str(col["DATA_TYPE"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogueError(f"{label_path}: a COLUMN lacks NAME/START_BYTE/BYTES/DATA_TYPE ({exc})") from exc
    row_bytes = int(table.get("ROW_BYTES", label.get("RECORD_BYTES", 0)))
    if row_bytes <= 0 or not columns:
        raise CatalogueError(f"{label_path}: no ROW_BYTES or no COLUMN objects in the table")
    rows = table.get("ROWS")
    return TableLayout(row_bytes, int(rows) if rows is not None else None, tuple(columns), table_file)


def _convert(raw: str, data_type: str) -> Any:
    text = raw.strip().strip('"').strip()
    if not text:
        return None
    if data_type == "ASCII_INTEGER":
        return int(text)
    if data_type == "ASCII_REAL":
        return float(text)
    return text


def iter_table(table_path: str | Path, layout: TableLayout) -> Iterator[dict[str, Any]]:
    """Rows of a fixed-width PDS3 ASCII table as dicts keyed by column NAME, typed by DATA_TYPE."""
    table_path = Path(table_path)
    try:
        fh = table_path.open("rb")
    except OSError as exc:
        raise CatalogueError(f"cannot read index table {table_path}: {exc.strerror or exc}") from exc
    with fh:
        number = 0
        while record := fh.read(layout.row_bytes):
            number += 1
            if not record.strip():
                continue
            text = record.decode("latin-1")
            try:
                yield {c.name: _convert(text[c.start : c.start + c.size], c.data_type) for c in layout.columns}
            except ValueError as exc:
                raise CatalogueError(
                    f"{table_path} row {number}: {exc}; is this table described by the label given "
                    f"(ROW_BYTES {layout.row_bytes})?"
                ) from exc


def read_cumindex(table_path: str | Path, label_path: str | Path | None = None) -> list[CatalogueProduct]:
    """Products of an official HiRISE RDRCUMINDEX.TAB (label: the .LBL beside it unless given)."""
    table_path = Path(table_path)
    if label_path is None:
        label_path = table_path.with_suffix(".LBL")
        if not label_path.exists():
            label_path = table_path.with_suffix(".lbl")
    layout = read_table_label(label_path)
    needed = {"PRODUCT_ID", "FILE_NAME_SPECIFICATION", "MINIMUM_LATITUDE", "MAXIMUM_LATITUDE", "SOLAR_LONGITUDE"}
    missing = needed - {c.name for c in layout.columns}
    if missing:
        raise CatalogueError(f"{label_path} lacks columns {sorted(missing)}; is it the HiRISE RDR index label?")
    return [_index_record(row) for row in iter_table(table_path, layout)]


def _index_record(row: dict[str, Any]) -> CatalogueProduct:
    pid = str(row["PRODUCT_ID"])
    path = str(row["FILE_NAME_SPECIFICATION"])
    jp2 = PDS_BASE_URL + path
    lbl = jp2.rsplit(".", 1)[0] + ".LBL"
    corners = []
    for i in range(1, 5):
        lat, lon = row.get(f"CORNER{i}_LATITUDE"), row.get(f"CORNER{i}_LONGITUDE")
        if lat is not None and lon is not None:
            corners.append(f"{lon} {lat}")
    start = row.get("START_TIME")
    return CatalogueProduct(
        product_id=pid,
        observation_id=str(row.get("OBSERVATION_ID") or observation_of(pid)),
        product_type=product_type_of(pid),
        source="index",
        start_time=_time(start) if isinstance(start, str) else None,
        ls=row.get("SOLAR_LONGITUDE"),
        local_time=row.get("LOCAL_TIME"),
        incidence=row.get("INCIDENCE_ANGLE"),
        emission=row.get("EMISSION_ANGLE"),
        phase=row.get("PHASE_ANGLE"),
        min_lat=row.get("MINIMUM_LATITUDE"),
        max_lat=row.get("MAXIMUM_LATITUDE"),
        min_lon=row.get("MINIMUM_LONGITUDE"),
        max_lon=row.get("MAXIMUM_LONGITUDE"),
        map_scale=row.get("MAP_SCALE"),
        sun_azimuth=sun_azimuth_from_north(row.get("SUB_SOLAR_AZIMUTH"), row.get("NORTH_AZIMUTH")),
        footprint_wkt=_corners_wkt(";".join(corners)) if len(corners) == 4 else None,
        footprint_approximate=len(corners) != 4,
        footprint_note="" if len(corners) == 4 else APPROX_BOX_NOTE,
        jp2_url=jp2,
        lbl_url=lbl,
        files=[ProductFile(jp2.rsplit("/", 1)[1], jp2, "Product"), ProductFile(lbl.rsplit("/", 1)[1], lbl, "Product")],
    )
