"""Default QGIS styles for the result layers, stored in the GeoPackage ``layer_styles`` table.

QGIS reads a layer's default style from that table when it opens a GeoPackage layer, so results open
styled without any project file: chunks in graduated colours by probability, ice candidates outlined,
product footprints as thin outlines. The QML is the plain QGIS 3 style format (``renderer-v2`` with
``prop`` symbol properties, which every QGIS 3.x and 4 reads).
"""

from __future__ import annotations

import sqlite3
from xml.sax.saxutils import quoteattr

#: Probability classes of the chunks layer (lower, upper, RGBA fill, label).
PROBABILITY_CLASSES = (
    (0.0, 0.2, (43, 131, 186), "0.0 – 0.2"),
    (0.2, 0.4, (171, 221, 164), "0.2 – 0.4"),
    (0.4, 0.6, (255, 255, 191), "0.4 – 0.6"),
    (0.6, 0.8, (253, 174, 97), "0.6 – 0.8 (above the paper's threshold)"),
    (0.8, 1.0, (215, 25, 28), "0.8 – 1.0"),
)

_HEADER = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def _fill_symbol(name: str, fill: str, outline: str, width_mm: float, style: str = "solid") -> str:
    props = {
        "color": fill,
        "style": style,
        "outline_color": outline,
        "outline_style": "solid",
        "outline_width": str(width_mm),
        "outline_width_unit": "MM",
        "joinstyle": "miter",
    }
    body = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in props.items())
    return (
        f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" force_rhr="0">'
        f'<layer class="SimpleFill" enabled="1" locked="0" pass="0">{body}</layer></symbol>'
    )


def graduated_probability_qml(attribute: str = "probability") -> str:
    """Graduated colours by probability, semi-transparent fills with solid outlines."""
    ranges = "".join(
        f'<range lower="{lo}" upper="{hi}" symbol="{i}" label={quoteattr(label)} render="true"/>'
        for i, (lo, hi, _, label) in enumerate(PROBABILITY_CLASSES)
    )
    symbols = "".join(
        _fill_symbol(str(i), f"{r},{g},{b},110", f"{r},{g},{b},255", 0.4)
        for i, (_, _, (r, g, b), _) in enumerate(PROBABILITY_CLASSES)
    )
    return (
        _HEADER + '<qgis version="3.22.16" styleCategories="Symbology">'
        f'<renderer-v2 type="graduatedSymbol" attr={quoteattr(attribute)} graduatedMethod="GraduatedColor" '
        'symbollevels="0" enableorderby="0" forceraster="0">'
        f"<ranges>{ranges}</ranges><symbols>{symbols}</symbols>"
        '<mode name="fixed"/></renderer-v2><blendMode>0</blendMode><featureBlendMode>0</featureBlendMode>'
        "<layerOpacity>1</layerOpacity></qgis>"
    )


def outline_qml(rgb: tuple[int, int, int], width_mm: float) -> str:
    """A single-symbol style: no fill, coloured outline (candidates over the image stay visible)."""
    r, g, b = rgb
    symbol = _fill_symbol("0", f"{r},{g},{b},0", f"{r},{g},{b},255", width_mm, style="no")
    return (
        _HEADER + '<qgis version="3.22.16" styleCategories="Symbology">'
        '<renderer-v2 type="singleSymbol" symbollevels="0" enableorderby="0" forceraster="0">'
        f"<symbols>{symbol}</symbols></renderer-v2><blendMode>0</blendMode>"
        "<featureBlendMode>0</featureBlendMode><layerOpacity>1</layerOpacity></qgis>"
    )


#: Default style per layer name.
DEFAULT_STYLES = {
    "chunks": ("probability", graduated_probability_qml),
    "ice_candidates": ("candidates outlined", lambda: outline_qml((255, 0, 255), 0.6)),
    "products": ("footprints", lambda: outline_qml((30, 144, 255), 0.3)),
}

LAYER_STYLES_DDL = """
CREATE TABLE IF NOT EXISTS layer_styles (
  id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
  f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT, styleSLD TEXT,
  useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
  update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))
"""


def write_default_style(conn: sqlite3.Connection, layer: str) -> None:
    """Store ``layer``'s default style (replacing an older default of the same layer)."""
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
