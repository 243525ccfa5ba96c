"""Loading MarsIce outputs into the project: every layer of a result GeoPackage, styled, one group per run.

Processing loads result layers without their default style and, in QGIS 3.22, has no way to put the
layers of one run into a group of their own (``LayerDetails.groupName`` only exists from QGIS 3.32).
A layer post-processor does both on every version: Processing calls it once the layer is in the project,
it applies the style stored in the GeoPackage's ``layer_styles`` table and moves the layer into the
run's group.

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
)

from ..errors import MarsIceError
from ..gpkg import layer_names

#: Names shown in the layers panel for the layers MarsIce writes.
LAYER_TITLES = {
    "ice_candidates": "Ice candidates",
    "chunks": "Chunk ice probability",
    "products": "Product footprints",
    "footprints": "HiRISE footprints",
    "tiles": "Tile index",
}

#: Top-to-bottom order inside a run's group: small outlines above the filled chunks and footprints.
LAYER_ORDER = ("ice_candidates", "tiles", "footprints", "chunks", "products")

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

    def __init__(self, group: str, rank: int) -> None:
        super().__init__()
        self.group = group
        self.rank = rank

    @classmethod
    def create(cls, group: str, rank: int) -> RunGroupPostProcessor:
        """A post-processor that stays alive for the rest of the QGIS session (a few bytes per layer)."""
        instance = cls(group, rank)
        cls._alive.append(instance)
        return instance

    def postProcessLayer(
        self, layer: QgsMapLayer, context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> None:
        # Processing opened the layer with loadDefaultStyle off; the GeoPackage holds the MarsIce style.
        layer.loadDefaultStyle()
        layer.triggerRepaint()
        project = getattr(layer, "project", lambda: None)() or context.project() or QgsProject.instance()
        move_into_group(project, layer, self.group, self.rank)


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


def drop_pending(context: QgsProcessingContext, path: str) -> None:
    """Forget a layer Processing queued for an output that was not written (a dry run)."""
    if context.willLoadLayerOnCompletion(path):
        pending = dict(context.layersToLoadOnCompletion())
        pending.pop(path, None)
        context.setLayersToLoadOnCompletion(pending)
