"""Pick the catalogue source for a search: live ODE, the bundled catalogue, or an RDRCUMINDEX.TAB.

``auto`` asks ODE and falls back to the bundled catalogue when ODE cannot be reached or fails, with
a warning that says so: the bundled catalogue is older and coarser (see :mod:`.index`), and a user
must know which one answered.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import CatalogueError, ODEError
from .index import load_bundled, read_cumindex
from .ode import ODEClient, ode_base_url
from .records import CatalogueProduct, flag_unreadable_footprints
from .search import SearchQuery

SOURCES = ("auto", "ode", "bundled", "index")


def find_products(
    query: SearchQuery,
    source: str = "auto",
    *,
    ode_url: str | None = None,
    index_path: Path | None = None,
    timeout_s: float = 60.0,
    retries: int = 3,
    warn: Callable[[str], None] = lambda message: None,
) -> tuple[list[CatalogueProduct], str]:
    """Products matching ``query`` and the name of the source that answered."""
    if source not in SOURCES:
        raise CatalogueError(f"unknown source {source!r}; use one of {', '.join(SOURCES)}")
    if source == "index":
        if index_path is None:
            raise CatalogueError("--source index needs --index RDRCUMINDEX.TAB (with its .LBL beside it)")
        return sorted(query.filter(read_cumindex(index_path)), key=lambda p: p.product_id), "index"
    if source in ("ode", "auto"):
        client = ODEClient(ode_base_url(ode_url), timeout_s=timeout_s, retries=retries if source == "ode" else 1)
        try:
            found = client.search(query)
        except ODEError as exc:
            if source == "ode" or query.product_type == "DTM":
                raise
            warn(f"{exc}; using the bundled offline catalogue instead (COLOR-derived, sizes estimated)")
        else:
            unreadable = flag_unreadable_footprints(found)
            if unreadable:
                warn(
                    f"{unreadable} of {len(found)} ODE footprints could not be read; they are kept as latitude/"
                    "longitude boxes marked footprint_approximate = 1 (see footprint_note)"
                )
            return found, "ode"
    return sorted(query.filter(load_bundled(query.product_type)), key=lambda p: p.product_id), "bundled"
