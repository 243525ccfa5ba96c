"""Loading MarsIce outputs into the project: every layer of a result GeoPackage and every raster, styled, one
group per run.

Processing loads result layers without their default style and, in QGIS 3.22, has no way to put the
layers of one run into a group of their own (``LayerDetails.groupName`` only exists from QGIS 3.32).
A layer post-processor does both on every version: Processing calls it once the layer is in the project,
it applies the style stored in the GeoPackage's ``layer_styles`` table and moves the layer into the
run's group.

Rasters are styled the same way: the ``.qml`` MarsIce wrote beside them (the probability raster's ramp starts at
its run's threshold) is their default style; a terrain raster without one gets its style from
:func:`marsice_plugin.styles.terrain_raster_qml`, chosen by its name (``ID_slope.tif``, ...).

Post-processors only run where results are loaded into a project (the Processing dialog,
``processing.runAndLoadResults``); ``processing.run`` and ``qgis_process`` load nothing, so queuing
layers there costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from qgis.core import (
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtXml import QDomDocument

from ..errors import MarsIceError
from ..gpkg import layer_names
from ..styles import probability_raster_qml, terrain_kind, terrain_raster_qml

#: Names shown in the layers panel for the layers MarsIce writes.
LAYER_TITLES = {
    "ice_candidates": "Ice candidates",
    "chunks": "Chunk ice probability",
    "products": "Product footprints",
    "footprints": "HiRISE footprints",
    "tiles": "Tile index",
    "sites": "Ice sites",
}

#: Top-to-bottom order inside a run's group: small outlines above the larger ones; rasters go below them all.
LAYER_ORDER = ("ice_candidates", "sites", "tiles", "footprints", "chunks", "products")

#: Names shown for the rasters MarsIce writes (terrain rasters by kind).
RASTER_TITLES = {
    "probability": "Ice probability (from the run's threshold)",
    "slope": "Slope (0-40°)",
    "aspect": "Aspect",
    "shadow": "Shadow",
    "poleward": "Poleward-facing",
    "height": "DTM height (hillshade)",
}

#: Layer-tree property holding a layer's place in LAYER_ORDER, so that layers arriving in any order sort.
RANK_PROPERTY = "marsice/rank"


def geopackage_layers(path: str | Path) -> list[str]:
    """The feature tables of a GeoPackage in LAYER_ORDER (unknown ones last, by name); [] if unreadable.

    Read with :func:`marsice_plugin.gpkg.layer_names` (SQLite, standard library only) rather than OGR: it is
    instant and needs no provider in a background thread.
    """
    path = Path(path)
    if not path.is_file():
        return []
    try:
        names = layer_names(path, data_type="features")
    except MarsIceError:
        return []
    rank = {name: i for i, name in enumerate(LAYER_ORDER)}
    return sorted(names, key=lambda name: (rank.get(name, len(LAYER_ORDER)), name))


class RunGroupPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a layer's stored default style and moves it into its run's group."""

    #: Processing keeps only a C++ pointer to a post-processor: Python must keep the object alive
    #: until the layers are loaded (after processAlgorithm returned), so every instance is kept here.
    _alive: ClassVar[list[RunGroupPostProcessor]] = []

    def __init__(self, group: str, rank: int, fallback_qml: str = "", reload: str = "") -> None:
        super().__init__()
        self.group = group
        self.rank = rank
        self.fallback_qml = fallback_qml
        self.reload = reload

    @classmethod
    def create(cls, group: str, rank: int, fallback_qml: str = "", reload: str = "") -> RunGroupPostProcessor:
        """A post-processor that stays alive for the rest of the QGIS session (a few bytes per layer).

        ``reload``: a file the run changed in place whose open layers are reloaded when this layer loads (in the
        main thread, after the run: the algorithm itself runs in a background thread and must not touch them).
        """
        instance = cls(group, rank, fallback_qml, reload)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        # Processing opened the layer with loadDefaultStyle off; the GeoPackage or the .qml holds the MarsIce style.
        apply_default_style(layer, self.fallback_qml)
        project = getattr(layer, "project", lambda: None)() or context.project() or QgsProject.instance()
        move_into_group(project, layer, self.group, self.rank)
        if self.reload:
            reload_layers(project, self.reload)


def apply_qml(layer: QgsMapLayer, qml: str) -> bool:
    """Apply a QML style given as text (what :mod:`marsice_plugin.styles` makes); True if QGIS took it."""
    doc = QDomDocument()
    if not doc.setContent(qml)[0]:
        return False
    return bool(layer.importNamedStyle(doc)[0])


def apply_default_style(layer: QgsMapLayer, fallback_qml: str = "") -> bool:
    """Apply the style MarsIce wrote for ``layer`` (its GeoPackage ``layer_styles`` row or the ``.qml`` beside a
    raster); without one, ``fallback_qml``, else for a terrain raster its kind's style. True if one was applied."""
    applied = bool(layer.loadDefaultStyle()[1])
    if not applied and isinstance(layer, QgsRasterLayer):
        kind = terrain_kind(layer.source())
        qml = fallback_qml or (terrain_raster_qml(kind) if kind else "")
        applied = bool(qml) and apply_qml(layer, qml)
    layer.triggerRepaint()
    return applied


def move_into_group(project: QgsProject, layer: QgsMapLayer, group_name: str, rank: int) -> QgsLayerTreeGroup | None:
    """Move ``layer``'s node into the group ``group_name`` beside it (created on first use), sorted by rank.

    The group is made under the layer's current parent, so Processing's own results group (an option in
    Processing ▸ Options) keeps holding MarsIce runs.
    """
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return None
    parent = node.parent() or root
    if _is_group(parent, group_name):  # QGIS >= 3.32 already put it there (LayerDetails.groupName)
        group = parent
    else:
        group = next((child for child in parent.children() if _is_group(child, group_name)), None)
        if group is None:
            group = parent.insertGroup(0, group_name)
    clone = node.clone()
    clone.setCustomProperty(RANK_PROPERTY, rank)
    node.parent().removeChildNode(node)
    position = sum(1 for child in group.children() if int(child.customProperty(RANK_PROPERTY, 0)) <= rank)
    group.insertChildNode(position, clone)
    return group


def _is_group(node: Any, name: str) -> bool:
    return isinstance(node, QgsLayerTreeGroup) and node.name() == name


def queue_geopackage(
    context: QgsProcessingContext, path: str | Path, group: str, replace: str | None = None
) -> list[str]:
    """Queue every feature layer of the GeoPackage ``path`` to be loaded, styled, into the group ``group``.

    ``replace`` is the output path Processing itself queued for a destination parameter (it would load
    only the first layer, unstyled): when given, MarsIce's layers load only if that one was going to
    (the user ticked "Open output file"), in the same project, and it is dropped. Without it the layers
    load into the context's project. Returns the layer sources queued.
    """
    project = context.project()
    if replace is not None:
        if not context.willLoadLayerOnCompletion(replace):
            return []
        project = context.layerToLoadOnCompletionDetails(replace).project
        pending = dict(context.layersToLoadOnCompletion())
        pending.pop(replace, None)
        context.setLayersToLoadOnCompletion(pending)
    if project is None:
        return []
    sources = []
    for rank, name in enumerate(geopackage_layers(path)):
        details = QgsProcessingContext.LayerDetails(LAYER_TITLES.get(name, name), project, "")
        details.forceName = True
        if hasattr(details, "groupName"):  # QGIS >= 3.32 groups natively; the post-processor then only sorts
            details.groupName = group
        order = LAYER_ORDER.index(name) if name in LAYER_ORDER else len(LAYER_ORDER) + rank
        details.setPostProcessor(RunGroupPostProcessor.create(group, order))
        source = f"{path}|layername={name}"
        context.addLayerToLoadOnCompletion(source, details)
        sources.append(source)
    return sources


def queue_layer(
    context: QgsProcessingContext, source: str, title: str, group: str, project: QgsProject | None = None
) -> str | None:
    """Queue one more layer of a run (a table, an exported file) to load into the run's group ``group``, below
    the run's GeoPackage layers. Returns the source queued, None when there is no project to load into."""
    project = project or context.project()
    if project is None:
        return None
    details = QgsProcessingContext.LayerDetails(title, project, "")
    details.forceName = True
    if hasattr(details, "groupName"):
        details.groupName = group
    details.setPostProcessor(RunGroupPostProcessor.create(group, len(LAYER_ORDER)))
    context.addLayerToLoadOnCompletion(source, details)
    return source


def reload_layers(project: QgsProject, path: str | Path) -> list[str]:
    """Reload every vector layer of ``project`` read from the file ``path`` (ids returned).

    A command that adds fields to a GeoPackage in place (``marsice terrain`` on the candidates) leaves an open
    layer showing the old fields until it is reloaded; ``QgsVectorLayer.reload`` re-reads the schema and the
    features (measured on QGIS 3.22).
    """
    target = Path(path).resolve()
    reloaded = []
    for layer in project.mapLayers().values():
        if not isinstance(layer, QgsVectorLayer) or layer.providerType() != "ogr":
            continue
        if Path(layer.source().split("|", 1)[0]).resolve() == target:
            layer.reload()
            layer.triggerRepaint()
            reloaded.append(layer.id())
    return reloaded


def drop_pending(context: QgsProcessingContext, path: str) -> None:
    """Forget a layer Processing queued for an output that was not written (a dry run)."""
    if context.willLoadLayerOnCompletion(path):
        pending = dict(context.layersToLoadOnCompletion())
        pending.pop(path, None)
        context.setLayersToLoadOnCompletion(pending)


def queue_raster(
    context: QgsProcessingContext, path: str | Path, group: str, threshold: float | None = None, reload: str = ""
) -> str | None:
    """Queue the raster ``path`` to be loaded, styled, into the group ``group``, below the run's vector layers.

    Its ``.qml`` is its style (``marsice detect`` writes one for the probability raster); without it, a terrain
    raster gets its kind's style and, given ``threshold``, a probability raster the ramp from that threshold.
    Returns the source queued, None when there is no file or no project to load into. ``reload``: see
    :meth:`RunGroupPostProcessor.create`.
    """
    project = context.project()
    if project is None or not Path(path).is_file():
        return None
    kind = terrain_kind(path)
    title = RASTER_TITLES[kind] if kind else RASTER_TITLES["probability"]
    fallback = probability_raster_qml(threshold) if kind is None and threshold is not None else ""
    details = QgsProcessingContext.LayerDetails(f"{title}: {Path(path).stem}", project, "")
    details.forceName = True
    if hasattr(details, "groupName"):
        details.groupName = group
    rank = len(LAYER_ORDER) + 1 + (list(RASTER_TITLES).index(kind) if kind else 0)
    details.setPostProcessor(RunGroupPostProcessor.create(group, rank, fallback, reload))
    context.addLayerToLoadOnCompletion(str(path), details)
    return str(path)
