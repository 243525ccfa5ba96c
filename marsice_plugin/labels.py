"""HiRISE RDR PDS3 labels parsed into a typed product record.

Labels are parsed with ``pvl`` (a maintained PDS3/ODL parser): real labels carry units (``<KM>``),
namespaced keys (``MRO:BINNING``), based integers (``2#0000001111111111#``) and comments, none of
which a hand-written ``KEY = VALUE`` splitter gets right.

Only keywords that real HiRISE RDR labels carry are read; their meaning follows the HiRISE RDR
SIS and the label's own comments:

* ``CENTER_LATITUDE``/``CENTER_LONGITUDE`` are the *projection* centre (standard parallel and
  central meridian), not the image centre.
* The three radii are equal in equirectangular RDRs: they hold the local radius of the Mars
  ellipsoid at ``CENTER_LATITUDE``, so scale is true there.
* ``SUB_SOLAR_AZIMUTH`` and ``NORTH_AZIMUTH`` are both measured clockwise from the line from the
  image centre to its right edge, so the sun's azimuth from north is their difference mod 360.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CancelledError, LabelError

#: Labels are read up to their END statement or this many bytes (real RDR labels are ~10 KB).
MAX_LABEL_BYTES = 4 * 1024 * 1024

#: PRODUCT_ID of a HiRISE DTM: DTEEC_/DTEPC_/... followed by the stereo pair's observations.
DTM_PRODUCT_ID = re.compile(r"^DTE[A-Z]{2}_")

#: UNIT values (upper case) that make real-valued samples elevations.
LENGTH_UNITS = frozenset({"M", "METER", "METERS", "METRE", "METRES", "KM", "KILOMETER", "KILOMETERS"})

#: Keywords of the IMAGE object that mark special (non-surface) pixels in HiRISE RDRs.
SPECIAL_PIXEL_KEYS = (
    "CORE_NULL",
    "CORE_LOW_REPR_SATURATION",
    "CORE_LOW_INSTR_SATURATION",
    "CORE_HIGH_REPR_SATURATION",
    "CORE_HIGH_INSTR_SATURATION",
)


def sun_azimuth_from_north(sub_solar: float | None, north: float | None) -> float | None:
    """The sun's azimuth clockwise from north: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360, both measured clockwise
    from the image's right-edge axis in HiRISE's labels and indexes; None unless both are given. One formula for
    labels, GeoTIFF metadata (:mod:`marsice_plugin.product`) and the catalogue."""
    if sub_solar is None or north is None:
        return None
    return (float(sub_solar) - float(north)) % 360.0


def check_sun_azimuth(sun_azimuth: float | None, error: type[Exception] = ValueError) -> None:
    """Refuse a given sun azimuth (``--sun-azimuth`` of detect and terrain) outside 0..360 degrees clockwise from
    north, raising ``error``: one check and one message for both commands."""
    if sun_azimuth is not None and not (math.isfinite(sun_azimuth) and 0.0 <= sun_azimuth <= 360.0):
        raise error(f"--sun-azimuth {sun_azimuth:g} is out of range: give degrees clockwise from north, 0 to 360")


@dataclass(frozen=True)
class MapProjection:
    """The label's IMAGE_MAP_PROJECTION object, in SI units (metres, degrees)."""

    projection_type: str  # "EQUIRECTANGULAR" or "POLAR STEREOGRAPHIC"
    center_latitude: float
    center_longitude: float
    a_radius_m: float
    c_radius_m: float
    map_scale_m: float
    line_projection_offset: float
    sample_projection_offset: float
    minimum_latitude: float | None = None
    maximum_latitude: float | None = None
    westernmost_longitude: float | None = None
    easternmost_longitude: float | None = None
    latitude_type: str = "PLANETOCENTRIC"
    rotation_deg: float = 0.0


@dataclass(frozen=True)
class ProductLabel:
    """What MarsIce needs from a HiRISE RDR label (and nothing it would have to guess)."""

    path: Path
    product_id: str
    observation_id: str
    lines: int
    samples: int
    bands: int
    sample_bits: int
    valid_bits: int
    projection: MapProjection
    image_file: str | None
    special_values: dict[str, int] = field(default_factory=dict)
    scaling_factor: float | None = None
    offset: float | None = None
    filter_name: str | None = None
    incidence_angle: float | None = None
    emission_angle: float | None = None
    phase_angle: float | None = None
    local_time: float | None = None
    solar_longitude: float | None = None
    sub_solar_azimuth: float | None = None
    north_azimuth: float | None = None
    start_time: dt.datetime | None = None
    binning: tuple[int, ...] = ()
    sample_type: str | None = None  # IMAGE SAMPLE_TYPE, e.g. MSB_UNSIGNED_INTEGER, PC_REAL
    unit: str | None = None  # IMAGE UNIT (DTMs: METER)
    product_type: str | None = None

    def dtm_evidence(self) -> str | None:
        """Why this label describes a DTM (elevations) rather than an image, or None when it does not.

        The rule, from what HiRISE DTM labels carry and image labels never do:

        * a ``PRODUCT_ID`` of the DTM family, ``DTE..._`` (DTEEC, DTEPC: the stereo pair's two observations);
        * a ``PRODUCT_TYPE`` that says DTM / digital terrain model;
        * real-valued samples (``SAMPLE_TYPE`` PC_REAL, IEEE_REAL, ...) whose ``UNIT`` is a length (METER, M, KM).

        ``DATA_SET_ID`` alone is not enough: the HiRISE DTM data set (``MRO-M-HIRISE-5-DTM-V1.0``) also holds the
        orthoimages, which are images. Real-valued samples alone are not enough either: an ISIS cube of I/F
        reflectance is a float image (its UNIT, when present, is not a length).
        """
        if DTM_PRODUCT_ID.match(self.product_id.upper()):
            return f"its PRODUCT_ID {self.product_id} is a HiRISE DTM id"
        if re.search(r"\bDTM\b|DIGITAL TERRAIN", (self.product_type or "").upper().replace("_", " ")):
            return f"its PRODUCT_TYPE is {self.product_type}"
        sample_type = (self.sample_type or "").upper()
        if "REAL" in sample_type and (self.unit or "").upper() in LENGTH_UNITS:
            return f"its samples are {self.sample_type} in {self.unit}"
        return None

    @property
    def sun_azimuth_from_north(self) -> float | None:
        """Azimuth of the sun, degrees clockwise from north: (SUB_SOLAR_AZIMUTH - NORTH_AZIMUTH) mod 360."""
        return sun_azimuth_from_north(self.sub_solar_azimuth, self.north_azimuth)

    @property
    def sun_elevation(self) -> float | None:
        """Sun elevation above the (flat) horizon in degrees: 90 - incidence."""
        return None if self.incidence_angle is None else 90.0 - self.incidence_angle

    @property
    def center_latitude_image(self) -> float | None:
        """Latitude of the image centre, from the label's min/max latitude (not CENTER_LATITUDE)."""
        p = self.projection
        if p.minimum_latitude is None or p.maximum_latitude is None:
            return None
        return 0.5 * (p.minimum_latitude + p.maximum_latitude)

    @property
    def max_binning(self) -> int | None:
        """Largest binning over the CCDs that were on (-9998 marks CCDs not used)."""
        used = [b for b in self.binning if b > 0]
        return max(used) if used else None


def _value(obj: Any) -> Any:
    """Strip pvl Quantity wrappers, returning the bare value."""
    return getattr(obj, "value", obj)


def _units(obj: Any) -> str:
    return str(getattr(obj, "units", "") or "").upper()


def _float(group: Any, key: str, *, required: bool = True, where: str = "") -> float | None:
    if key not in group:
        if required:
            raise LabelError(f"label has no {where}{key}; MarsIce needs it (is this a map-projected RDR?)")
        return None
    raw = _value(group[key])
    try:
        value = float(raw)
    except (TypeError, ValueError) as exc:
        raise LabelError(f"label keyword {where}{key} = {raw!r} is not a number") from exc
    if not math.isfinite(value):
        raise LabelError(f"label keyword {where}{key} = {raw!r} is not finite")
    return value


def _int(group: Any, key: str, *, required: bool = True, where: str = "") -> int | None:
    value = _float(group, key, required=required, where=where)
    if value is None:
        return None
    if value != int(value):
        raise LabelError(f"label keyword {where}{key} = {value} should be an integer")
    return int(value)


def _metres(group: Any, key: str, where: str) -> float:
    """A length in metres; labels give radii in KM (with or without the unit)."""
    value = _float(group, key, where=where)
    assert value is not None
    units = _units(group[key])
    if units in ("KM", "KILOMETERS", "KILOMETRES") or (not units and value < 100_000):
        return value * 1000.0
    return value


def parse_label_text(text: str, path: Path | str = "<string>") -> ProductLabel:
    """Parse PDS3 label text into a :class:`ProductLabel`; raise :class:`LabelError` on any defect."""
    import pvl

    try:
        label = pvl.loads(text, parser=_safe_parser())
    except CancelledError:  # a cancel that lands while parsing is a cancel, not a bad label
        raise
    except Exception as exc:
        raise LabelError(f"{path}: not a readable PDS3 label ({type(exc).__name__}: {exc})") from exc
    return _record_from_pvl(label, Path(path))


def _safe_parser() -> Any:
    """pvl's lenient OmniParser without its endless loop on a stray '='.

    The fuzz test found that ``A = 1 = 2`` (or a line holding only ``=``) makes pvl 1.3.2's
    ``OmniParser.parse_module_post_hook`` push the '=' back and ask to keep parsing forever when the
    previous value is not a keyword. This subclass gives up there instead, so pvl raises its usual
    parse error; every other label parses exactly as with the default parser.
    """
    from pvl.parser import OmniParser
    from pvl.token import Token

    class SafeOmniParser(OmniParser):
        def parse_module_post_hook(self, module: Any, tokens: Any) -> Any:
            try:
                t = next(tokens)
            except StopIteration:
                return module, False
            tokens.send(t)
            if t == "=" and len(module) != 0:
                last = Token(module[-1][1], grammar=self.grammar, decoder=self.decoder)
                if not last.is_parameter_name():
                    raise ValueError("stray '=' after a value")  # parse_module() then reports its own error
            return super().parse_module_post_hook(module, tokens)

    return SafeOmniParser()


def read_label(path: str | Path) -> ProductLabel:
    """Read a detached PDS3 label (``.LBL``) from disk."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:  # attached labels (DTM .IMG) precede megabytes of pixels
            raw = handle.read(MAX_LABEL_BYTES)
    except OSError as exc:
        raise LabelError(f"cannot read label {path}: {exc.strerror or exc}") from exc
    end = re.search(rb"(?m)^\s*END\s*$", raw)
    if end:
        raw = raw[: end.end()]
    if b"PDS_VERSION_ID" not in raw[:4096]:
        raise LabelError(f"{path} is not a PDS3 label (no PDS_VERSION_ID in its first 4 KiB)")
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise LabelError(f"{path}: undecodable label") from exc
    return parse_label_text(text, path)


def _record_from_pvl(label: Any, path: Path) -> ProductLabel:
    try:
        return _build_record(label, path)
    except LabelError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise LabelError(f"{path}: label is missing or has malformed keywords ({exc})") from exc


def _build_record(label: Any, path: Path) -> ProductLabel:
    if not hasattr(label, "keys"):
        raise LabelError(f"{path}: label did not parse into keyword groups")
    if "IMAGE_MAP_PROJECTION" not in label:
        raise LabelError(
            f"{path}: no IMAGE_MAP_PROJECTION object: this is not a map-projected product "
            "(EDRs and other raw products must be map-projected, e.g. with ISIS cam2map, first)"
        )
    mp = label["IMAGE_MAP_PROJECTION"]
    w = "IMAGE_MAP_PROJECTION."
    ptype = str(_value(mp.get("MAP_PROJECTION_TYPE", ""))).upper().replace("_", " ").strip()
    projection = MapProjection(
        projection_type=ptype,
        center_latitude=_float(mp, "CENTER_LATITUDE", where=w),
        center_longitude=_float(mp, "CENTER_LONGITUDE", where=w),
        a_radius_m=_metres(mp, "A_AXIS_RADIUS", w),
        c_radius_m=_metres(mp, "C_AXIS_RADIUS", w) if "C_AXIS_RADIUS" in mp else _metres(mp, "A_AXIS_RADIUS", w),
        map_scale_m=_float(mp, "MAP_SCALE", where=w),
        line_projection_offset=_float(mp, "LINE_PROJECTION_OFFSET", where=w),
        sample_projection_offset=_float(mp, "SAMPLE_PROJECTION_OFFSET", where=w),
        minimum_latitude=_float(mp, "MINIMUM_LATITUDE", required=False, where=w),
        maximum_latitude=_float(mp, "MAXIMUM_LATITUDE", required=False, where=w),
        westernmost_longitude=_float(mp, "WESTERNMOST_LONGITUDE", required=False, where=w),
        easternmost_longitude=_float(mp, "EASTERNMOST_LONGITUDE", required=False, where=w),
        latitude_type=str(_value(mp.get("PROJECTION_LATITUDE_TYPE", "PLANETOCENTRIC"))).upper(),
        rotation_deg=_float(mp, "MAP_PROJECTION_ROTATION", required=False, where=w) or 0.0,
    )
    if projection.map_scale_m <= 0:
        raise LabelError(f"{path}: MAP_SCALE must be positive, got {projection.map_scale_m}")
    if projection.a_radius_m <= 0 or projection.c_radius_m <= 0:
        raise LabelError(f"{path}: body radii must be positive")

    image, image_where = _image_object(label, path)
    lines = _int(image, "LINES", where=image_where)
    samples = _int(image, "LINE_SAMPLES", where=image_where)
    bands = _int(image, "BANDS", required=False, where=image_where) or 1
    sample_bits = _int(image, "SAMPLE_BITS", where=image_where)
    if lines <= 0 or samples <= 0:
        raise LabelError(f"{path}: image size {samples}x{lines} is empty")
    mask = image.get("SAMPLE_BIT_MASK")
    valid_bits = int(_value(mask)).bit_length() if mask is not None else sample_bits
    special = {k: int(_value(image[k])) for k in SPECIAL_PIXEL_KEYS if k in image}

    viewing = label.get("VIEWING_PARAMETERS", {})
    times = label.get("TIME_PARAMETERS", {})
    settings = label.get("INSTRUMENT_SETTING_PARAMETERS", {})
    start = _value(times.get("START_TIME")) if times else None
    if isinstance(start, str):
        try:
            start = dt.datetime.fromisoformat(start.rstrip("Z"))
        except ValueError:
            start = None
    if isinstance(start, dt.datetime) and start.tzinfo is None:
        start = start.replace(tzinfo=dt.UTC)
    image_file = None
    if "COMPRESSED_FILE" in label:
        image_file = str(_value(label["COMPRESSED_FILE"].get("FILE_NAME", ""))) or None
    elif "^IMAGE" in label:
        pointer = _value(label["^IMAGE"])
        image_file = str(pointer[0] if isinstance(pointer, list | tuple) else pointer)
    binning = settings.get("MRO:BINNING", []) if settings else []
    if not isinstance(binning, list | tuple):
        binning = [binning]

    product_id = str(_value(label.get("PRODUCT_ID", ""))).strip()
    if not product_id:
        raise LabelError(f"{path}: label has no PRODUCT_ID")
    return ProductLabel(
        path=path,
        product_id=product_id,
        observation_id=str(_value(label.get("OBSERVATION_ID", product_id.rsplit("_", 1)[0]))),
        lines=lines,
        samples=samples,
        bands=bands,
        sample_bits=sample_bits,
        valid_bits=valid_bits,
        projection=projection,
        image_file=image_file,
        special_values=special,
        scaling_factor=_float(image, "SCALING_FACTOR", required=False, where=image_where),
        offset=_float(image, "OFFSET", required=False, where=image_where),
        filter_name=str(_value(image.get("FILTER_NAME"))) if "FILTER_NAME" in image else None,
        incidence_angle=_float(viewing, "INCIDENCE_ANGLE", required=False),
        emission_angle=_float(viewing, "EMISSION_ANGLE", required=False),
        phase_angle=_float(viewing, "PHASE_ANGLE", required=False),
        local_time=_float(viewing, "LOCAL_TIME", required=False),
        solar_longitude=_float(viewing, "SOLAR_LONGITUDE", required=False),
        sub_solar_azimuth=_float(viewing, "SUB_SOLAR_AZIMUTH", required=False),
        north_azimuth=_float(viewing, "NORTH_AZIMUTH", required=False),
        start_time=start if isinstance(start, dt.datetime) else None,
        binning=tuple(int(_value(b)) for b in binning),
        sample_type=_text(image.get("SAMPLE_TYPE")),
        unit=_text(image.get("UNIT")),
        product_type=_text(label.get("PRODUCT_TYPE")),
    )


def _text(raw: Any) -> str | None:
    """A keyword's value as stripped text, None when absent or empty."""
    if raw is None:
        return None
    text = str(_value(raw)).strip().strip('"').strip()
    return text or None


def _image_object(label: Any, path: Path) -> tuple[Any, str]:
    """The IMAGE object: inside UNCOMPRESSED_FILE for JP2 RDRs, at top level for plain .IMG products."""
    if "UNCOMPRESSED_FILE" in label and "IMAGE" in label["UNCOMPRESSED_FILE"]:
        return label["UNCOMPRESSED_FILE"]["IMAGE"], "UNCOMPRESSED_FILE.IMAGE."
    if "IMAGE" in label:
        return label["IMAGE"], "IMAGE."
    raise LabelError(f"{path}: label has no IMAGE object describing the image size and sample type")
