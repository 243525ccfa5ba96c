"""Default QGIS styles of everything MarsIce writes: vector layers in the GeoPackage ``layer_styles`` table,
rasters as a ``.qml`` file beside the GeoTIFF.

QGIS applies a GeoPackage layer's default style from ``layer_styles`` and a raster's from the ``.qml`` of the
same name when it opens them, so outputs open styled without a project file. The styles are written to tell
the truth about a run:

* ``chunks`` are outlines only (no fill hides the image or a chunk under an overlapping one), red where the
  row's own ``above_threshold`` says the run flagged it (the products layer's threshold, whatever it was), faint
  elsewhere; the outline grows with the probability and each chunk is labelled with it at its north-west corner,
  where chunks that overlap (auto overlap shifts them by a few percent) do not share a label position;
* the stitched probability raster carries the colour, a semi-transparent ramp that starts at the run's
  threshold (lower values are not drawn);
* footprints are outlined by season (Ls), sites by persistence (detected in every, several or one observation),
  and the terrain rasters get slope 0-40°, a circular aspect ramp, shadow and poleward masks and a hillshade.

The QML is the plain QGIS 3 style format (``renderer-v2``/``pipe`` with ``prop`` symbol properties and
``Option`` maps, read by QGIS 3.22 to 4). Pure Python: the core never imports ``qgis``.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable, Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

from .errors import OutputError

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
#: First comment of every QML MarsIce writes: a ``.qml`` beside a raster without it is the user's and is kept.
MARKER = "<!-- MarsIce default style"
_FOOTER = "<blendMode>0</blendMode><featureBlendMode>0</featureBlendMode><layerOpacity>1</layerOpacity></qgis>"

RED = (215, 25, 28)


def _qgis_open(what: str, labels: bool = False) -> str:
    enabled = ' labelsEnabled="1"' if labels else ""
    return f'{_HEADER}{MARKER}: {what} -->\n<qgis version="3.22.16" styleCategories="AllStyleCategories"{enabled}>'


def _rgba(rgb: tuple[int, int, int], alpha: int = 255) -> str:
    return f"{rgb[0]},{rgb[1]},{rgb[2]},{alpha}"


def _dd(expressions: Mapping[str, str], tag: str = "data_defined_properties") -> str:
    """A QGIS property collection of expression-based properties (e.g. ``outlineWidth``, ``PositionX``)."""
    props = "".join(
        f'<Option name={quoteattr(key)} type="Map"><Option name="active" type="bool" value="true"/>'
        f'<Option name="expression" type="QString" value={quoteattr(expr)}/>'
        '<Option name="type" type="int" value="3"/></Option>'
        for key, expr in expressions.items()
    )
    return (
        f'<{tag}><Option type="Map"><Option name="name" type="QString" value=""/>'
        f'<Option name="properties" type="Map">{props}</Option>'
        f'<Option name="type" type="QString" value="collection"/></Option></{tag}>'
    )


def _outline_symbol(
    name: str, rgb: tuple[int, int, int], width_mm: float, alpha: int = 255, dash: str = "solid", width_expr: str = ""
) -> str:
    """A fill symbol with no fill (``style="no"``, alpha 0): only its outline is drawn."""
    props = {
        "color": _rgba(rgb, 0),
        "style": "no",
        "outline_color": _rgba(rgb, alpha),
        "outline_style": dash,
        "outline_width": str(width_mm),
        "outline_width_unit": "MM",
        "joinstyle": "miter",
    }
    body = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in props.items())
    dd = _dd({"outlineWidth": width_expr}) if width_expr else ""
    return (
        f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">{body}{dd}</layer></symbol>'
    )


def _inset_line_symbol(
    name: str, rgb: tuple[int, int, int], width_mm: float, alpha: int, dash: str, inset_mm: float, width_expr: str = ""
) -> str:
    """A fill symbol drawn as its outline only, moved ``inset_mm`` inside the polygon (a ``SimpleLine`` layer with a
    positive offset): an edge shared with an overlapping polygon's outline is drawn beside it, never under it."""
    props = {
        "line_color": _rgba(rgb, alpha),
        "line_style": dash,
        "line_width": str(width_mm),
        "line_width_unit": "MM",
        "offset": str(inset_mm),
        "offset_unit": "MM",
        "joinstyle": "miter",
        "capstyle": "flat",
    }
    body = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in props.items())
    dd = _dd({"outlineWidth": width_expr}) if width_expr else ""
    return (
        f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="SimpleLine" enabled="1" locked="0" pass="0">{body}{dd}</layer></symbol>'
    )


def outline_qml(rgb: tuple[int, int, int], width_mm: float, what: str = "outlines") -> str:
    """A single-symbol style: no fill, coloured outline (candidates over the image stay visible)."""
    return (
        _qgis_open(what) + '<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<symbols>{_outline_symbol('0', rgb, width_mm)}</symbols></renderer-v2>" + _FOOTER
    )


def _rule_based(
    what: str, rules: list[tuple[str, str, str]], order_by: str = "", labeling: str = "", labels: bool = False
) -> str:
    """A rule-based renderer from (filter, legend label, symbol XML); ``ELSE`` catches the rest."""
    rule_xml = "".join(
        f"<rule filter={quoteattr(f)} label={quoteattr(label)} symbol={quoteattr(str(i))}/>"
        for i, (f, label, _) in enumerate(rules)
    )
    symbols = "".join(symbol for _, _, symbol in rules)
    order = f'<orderby><orderByClause asc="1" nullsFirst="1">{order_by}</orderByClause></orderby>' if order_by else ""
    return (
        _qgis_open(what, labels)
        + f'<renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="{int(bool(order_by))}" '
        f'forceraster="0"><rules>{rule_xml}</rules><symbols>{symbols}</symbols>{order}</renderer-v2>'
        + labeling
        + _FOOTER
    )


#: Outline width of a chunk: thin to thick with its probability (mm).
CHUNK_WIDTH = '0.25 + 1.0 * coalesce("probability", 0)'
FAINT_WIDTH = '0.2 + 0.4 * coalesce("probability", 0)'
#: A chunk's label sits inside its north-west corner (of its first part: a chunk split at 180° has two).
_NW_X = "x_min(geometry_n($geometry, 1)) + 0.02 * (x_max(geometry_n($geometry, 1)) - x_min(geometry_n($geometry, 1)))"
_NW_Y = "y_max(geometry_n($geometry, 1)) - 0.02 * (y_max(geometry_n($geometry, 1)) - y_min(geometry_n($geometry, 1)))"


def _probability_labels() -> str:
    """Each chunk labelled with its probability (two decimals), white on a red halo where flagged, on a dark one
    elsewhere; higher probabilities are placed first where labels would collide."""
    text = (
        '<text-style fontFamily="DejaVu Sans" fontSize="9" fontSizeUnit="Point" fontWeight="75" '
        'textColor="255,255,255,255" textOpacity="1" isExpression="1" '
        'fieldName="format_number(&quot;probability&quot;, 2)">'
        '<text-buffer bufferDraw="1" bufferSize="0.6" bufferSizeUnits="MM" bufferColor="0,0,0,255" '
        'bufferOpacity="0.85" bufferNoFill="1" bufferJoinStyle="128"/></text-style>'
    )
    placement = '<placement placement="1" quadOffset="8" dist="0" priority="5" offsetType="0"/>'
    rendering = '<rendering obstacle="0" displayAll="0" drawLabels="1" scaleVisibility="0" zIndex="1"/>'
    dd = _dd(
        {
            "PositionX": _NW_X,
            "PositionY": _NW_Y,
            "Hali": "'Left'",
            "Vali": "'Top'",
            "Priority": 'round(10 * coalesce("probability", 0))',
            "BufferColor": "if(\"above_threshold\", '215,25,28,255', '40,40,40,255')",
        },
        tag="dd_properties",
    )
    settings = f"{text}{placement}{rendering}{dd}"
    return f'<labeling type="simple"><settings calloutType="simple">{settings}</settings></labeling>'


def chunks_qml() -> str:
    """Chunks as outlines: flagged red (the row's ``above_threshold``, i.e. the run's own threshold), the rest
    faint and drawn a little inside their square (an edge they share with a flagged chunk stays visible),
    skipped ones dotted; width and label by probability; flagged ones drawn last, on top."""
    rules = [
        ('"skipped"', "skipped (not scored: mostly no data)", _outline_symbol("0", (160, 160, 160), 0.2, 160, "dot")),
        (
            '"above_threshold"',
            "flagged: at or above the run's threshold (products.threshold); wider = more probable",
            _outline_symbol("1", RED, 0.6, width_expr=CHUNK_WIDTH),
        ),
        (
            "ELSE",
            "below the run's threshold",
            _inset_line_symbol("2", (230, 230, 230), 0.3, 190, "dash", 0.9, width_expr=FAINT_WIDTH),
        ),
    ]
    return _rule_based("chunks", rules, order_by='"probability"', labeling=_probability_labels(), labels=True)


#: Seasons of the footprints layer: (lower Ls, upper Ls, outline colour, legend label).
SEASONS = (
    (0.0, 90.0, (26, 152, 80), "Ls 0–90° (northern spring, southern autumn)"),
    (90.0, 180.0, (230, 171, 2), "Ls 90–180° (northern summer, southern winter)"),
    (180.0, 270.0, (215, 48, 39), "Ls 180–270° (northern autumn, southern spring)"),
    (270.0, 360.0, (69, 117, 180), "Ls 270–360° (northern winter, southern summer)"),
)


def footprints_qml() -> str:
    """Footprint outlines coloured by season (``ls``): the remnant ice of the paper is a spring phenomenon."""
    ranges = "".join(
        f'<range lower="{lo}" upper="{hi}" symbol="{i}" label={quoteattr(label)} render="true"/>'
        for i, (lo, hi, _, label) in enumerate(SEASONS)
    )
    symbols = "".join(_outline_symbol(str(i), rgb, 0.4) for i, (_, _, rgb, _) in enumerate(SEASONS))
    return (
        _qgis_open("footprints by season")
        + '<renderer-v2 type="graduatedSymbol" attr="ls" graduatedMethod="GraduatedColor" symbollevels="0" '
        f'enableorderby="0" forceraster="0"><ranges>{ranges}</ranges><symbols>{symbols}</symbols>'
        '<mode name="fixed"/></renderer-v2>' + _FOOTER
    )


def sites_qml() -> str:
    """Sites by persistence: detected in every processed observation, in several, or once."""
    rules = [
        (
            '"n_detected" >= 2 AND "n_detected" = "n_processed"',
            "detected in every processed observation (2 or more)",
            _outline_symbol("0", (165, 0, 38), 1.2),
        ),
        ('"n_detected" >= 2', "detected in several observations, not all", _outline_symbol("1", (244, 109, 67), 0.9)),
        ("ELSE", "detected once", _outline_symbol("2", (254, 224, 144), 0.6)),
    ]
    return _rule_based("sites by persistence", rules)


def tiles_qml() -> str:
    """The tile index for labelling: labelled ice, labelled no ice, not yet labelled, skipped."""
    rules = [
        ('"skipped"', "skipped (not exported)", _outline_symbol("0", (160, 160, 160), 0.2, 160, "dot")),
        ('"label" = 1', "labelled: ice patch", _outline_symbol("1", (0, 200, 255), 0.8)),
        ('"label" = 0', "labelled: none", _outline_symbol("2", (120, 120, 120), 0.4)),
        ("ELSE", "not labelled yet", _outline_symbol("3", (255, 221, 0), 0.4, 220, "dash")),
    ]
    return _rule_based("tiles", rules)


def candidates_qml() -> str:
    """Candidates by the second stage's ``probability``: magenta, wider and more opaque the more probable; rows from
    --all-candidates under 0.5 faint and dashed; rows without one (older files) thin grey."""
    width = '0.3 + 1.0 * coalesce("probability", 0)'
    rules = [
        (
            '"probability" IS NULL',
            "no second-stage probability (older run)",
            _outline_symbol("0", (160, 160, 160), 0.3),
        ),
        (
            '"probability" >= 0.5',
            "ice probability 0.5 or more (wider: more probable)",
            _outline_symbol("1", (255, 0, 255), 0.6, width_expr=width),
        ),
        ("ELSE", "ice probability under 0.5", _outline_symbol("2", (255, 150, 255), 0.3, 160, "dash")),
    ]
    return _rule_based("ice candidates by probability", rules, order_by='"probability"')


#: Default style per layer name: (style name, QML maker).
DEFAULT_STYLES: dict[str, tuple[str, Callable[[], str]]] = {
    "chunks": ("flagged chunks outlined", chunks_qml),
    "ice_candidates": ("candidates by probability", candidates_qml),
    "products": ("footprints", lambda: outline_qml((30, 144, 255), 0.3, "product footprints")),
    "footprints": ("footprints by season", footprints_qml),
    "sites": ("sites by persistence", sites_qml),
    "tiles": ("tiles by label", tiles_qml),
}

LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
  f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
  useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
  update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))
"""


def write_default_style(conn: sqlite3.Connection, layer: str) -> None:
    """Store ``layer``'s default style (replacing an older default of the same layer); a layer without one is
    left alone. Called when the layer is created, so a style the user saved as default later is never replaced."""
    if layer not in DEFAULT_STYLES:
        return
    conn.execute(LAYER_STYLES_DDL)
    exists = conn.execute("SELECT 1 FROM gpkg_contents WHERE table_name='layer_styles'").fetchone()
    if not exists:
        conn.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES (?,?,?,?)",
            ("layer_styles", "attributes", "layer_styles", "QGIS default styles of the MarsIce layers"),
        )
    name, qml = DEFAULT_STYLES[layer]
    conn.execute("DELETE FROM layer_styles WHERE f_table_name=? AND useAsDefault=1", (layer,))
    conn.execute(
        "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, f_geometry_column, styleName, "
        "styleQML, styleSLD, useAsDefault, description, owner, ui) VALUES ('', '', ?, 'geom', ?, ?, '', 1, ?, '', '')",
        (layer, name, qml(), f"MarsIce default style of {layer}"),
    )


# -- rasters ---------------------------------------------------------------------------------------


def _raster_qml(what: str, renderer: str, opacity: float = 1.0) -> str:
    minmax = (
        "<minMaxOrigin><limits>None</limits><extent>WholeRaster</extent><statAccuracy>Estimated</statAccuracy>"
        "<cumulativeCutLower>0.02</cumulativeCutLower><cumulativeCutUpper>0.98</cumulativeCutUpper>"
        "<stdDevFactor>2</stdDevFactor></minMaxOrigin>"
    )
    renderer = renderer.replace("{opacity}", f"{opacity:g}").replace("{minmax}", minmax)
    return (
        _qgis_open(what) + f"<pipe>{renderer}"
        '<brightnesscontrast brightness="0" contrast="0" gamma="1"/>'
        '<huesaturation saturation="0" grayscaleMode="0" colorizeOn="0"/>'
        '<rasterresampler maxOversampling="2"/></pipe><blendMode>0</blendMode></qgis>'
    )


def _ramp(
    what: str, items: list[tuple[float, tuple[int, int, int], int, str]], clip: bool, opacity: float = 1.0
) -> str:
    """A single-band pseudo-colour raster style; ``clip`` leaves values outside the ramp undrawn."""
    lo, hi = items[0][0], items[-1][0]
    entries = "".join(
        f'<item value="{v!r}" color="#{r:02x}{g:02x}{b:02x}" alpha="{a}" label={quoteattr(label)}/>'
        for v, (r, g, b), a, label in items
    )
    renderer = (
        f'<rasterrenderer type="singlebandpseudocolor" band="1" opacity="{{opacity}}" alphaBand="-1" '
        f'classificationMin="{lo!r}" classificationMax="{hi!r}" nodataColor="">{{minmax}}<rastershader>'
        f'<colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="{int(clip)}" '
        f'minimumValue="{lo!r}" maximumValue="{hi!r}" labelPrecision="2">{entries}</colorrampshader>'
        "</rastershader></rasterrenderer>"
    )
    return _raster_qml(what, renderer, opacity)


def _float32_floor(value: float) -> float:
    """The largest float32 not above ``value``: the raster stores float32, and a pixel whose probability is
    the threshold must not fall just below the ramp's start."""
    f32 = struct.unpack("f", struct.pack("f", value))[0]
    if f32 <= value:
        return f32
    (bits,) = struct.unpack("<I", struct.pack("<f", f32))  # a positive float32 rounded up: one step down
    return struct.unpack("<f", struct.pack("<I", bits - 1))[0]


#: The probability raster's ramp: (colour, alpha) at the threshold, half-way to 1 and at 1. Cyan to blue (ice),
#: apart from the red of flagged chunk outlines; translucent enough for the image to show through.
PROBABILITY_RAMP = (((0, 229, 255), 80), ((30, 144, 255), 110), ((35, 45, 210), 135))


def probability_raster_qml(threshold: float) -> str:
    """The stitched probability raster: a translucent cyan-to-blue ramp from ``threshold`` to 1; values below
    the threshold are not drawn, so the image shows through everywhere the run flagged nothing."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within 0..1, not {threshold}")
    stops = (_float32_floor(threshold), threshold + (1.0 - threshold) / 2, 1.0)
    labels = (f"{threshold:g} (the run's threshold)", f"{stops[1]:.2f}", "1.0")
    items = [(v, rgb, a, label) for v, (rgb, a), label in zip(stops, PROBABILITY_RAMP, labels, strict=True)]
    return _ramp(f"probability from the run's threshold {threshold:g}", items, clip=True)


def _palette(what: str, value: int, rgb: tuple[int, int, int], alpha: int, label: str) -> str:
    """A mask: pixels of ``value`` drawn translucent, every other value (0, no data 255) transparent."""
    r, g, b = rgb
    renderer = (
        '<rasterrenderer type="paletted" band="1" opacity="{opacity}" alphaBand="-1" nodataColor="">{minmax}'
        f'<colorPalette><paletteEntry value="{value}" color="#{r:02x}{g:02x}{b:02x}" alpha="{alpha}" '
        f"label={quoteattr(label)}/></colorPalette></rasterrenderer>"
    )
    return _raster_qml(what, renderer)


def terrain_raster_qml(kind: str) -> str:
    """Style of a ``marsice terrain`` raster (``slope``, ``aspect``, ``shadow``, ``poleward`` or ``height``)."""
    if kind == "slope":  # 0-40°: steeper than 40° keeps the last colour (clip off)
        stops = [(0.0, (255, 255, 178)), (10.0, (254, 204, 92)), (20.0, (253, 141, 60)), (30.0, (240, 59, 32))]
        items = [(v, rgb, 255, f"{v:g}°") for v, rgb in stops] + [(40.0, (189, 0, 38), 255, "40° and steeper")]
        return _ramp("slope 0-40 degrees", items, clip=False)
    if kind == "aspect":  # circular: 0° and 360° (north) have the same colour
        compass = [(0.0, "N"), (90.0, "E"), (180.0, "S"), (270.0, "W"), (360.0, "N")]
        colours = [(215, 48, 39), (254, 224, 139), (69, 117, 180), (145, 207, 96), (215, 48, 39)]
        items = [(v, rgb, 255, f"{v:g}° {name}") for (v, name), rgb in zip(compass, colours, strict=True)]
        return _ramp("aspect, circular", items, clip=True)
    if kind == "shadow":
        return _palette("shadow mask", 1, (20, 20, 110), 150, "in cast or self shadow for the image's sun")
    if kind == "poleward":
        return _palette("poleward mask", 1, (0, 170, 255), 110, "poleward-facing slope")
    if kind == "height":
        renderer = (
            '<rasterrenderer type="hillshade" band="1" opacity="{opacity}" alphaBand="-1" nodataColor="" '
            'azimuth="315" angle="45" zfactor="1" multidirection="0">{minmax}</rasterrenderer>'
        )
        return _raster_qml("height as hillshade", renderer)
    raise ValueError(f"no terrain style for {kind!r}: one of {', '.join(TERRAIN_KINDS)}")


TERRAIN_KINDS = ("slope", "aspect", "shadow", "poleward", "height")


def terrain_kind(path: str | Path) -> str | None:
    """The terrain raster kind of ``ID_<kind>.tif`` (as ``marsice terrain`` names them), else None."""
    stem = Path(path).stem.lower()
    return next((kind for kind in TERRAIN_KINDS if stem.endswith(f"_{kind}")), None)


def sidecar_path(raster: str | Path) -> Path:
    """The ``.qml`` QGIS reads as a raster's default style: same folder and name, ``.qml`` suffix."""
    return Path(raster).with_suffix(".qml")


def write_sidecar(raster: str | Path, qml: str) -> Path | None:
    """Write ``qml`` as the default style of ``raster`` (atomically); returns its path.

    A ``.qml`` already there that MarsIce did not write (no :data:`MARKER`: the user saved their own style as
    default) is kept, and None returned: an output style never costs a user's file.
    """
    path = sidecar_path(raster)
    if path.exists() or path.is_symlink():
        try:
            if not path.is_file() or MARKER not in path.read_text(encoding="utf-8", errors="replace")[:400]:
                return None
        except OSError:
            return None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        tmp.write_text(qml, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(
            f"cannot write the QGIS style {path} ({exc.strerror or exc}); {raster} itself is written and opens "
            "unstyled: free space there, or style it in QGIS"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_raster_style(raster: str | Path, threshold: float) -> Path | None:
    """The probability raster's ``.qml``: its ramp starts at the run's ``threshold``."""
    return write_sidecar(raster, probability_raster_qml(threshold))


def write_terrain_styles(rasters: Mapping[str, str | Path]) -> list[Path]:
    """The ``.qml`` of each terrain raster (``{kind: path}`` as ``marsice terrain`` returns them)."""
    written = (write_sidecar(path, terrain_raster_qml(kind)) for kind, path in rasters.items() if kind in TERRAIN_KINDS)
    return [path for path in written if path is not None]
