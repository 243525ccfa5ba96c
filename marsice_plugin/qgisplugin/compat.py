"""Enum values that QGIS 3.36 moved into ``Qgis`` and QGIS 4 (Qt 6) removed from their old classes.

Every algorithm takes its parameter enums from here, so the QGIS 3.22 fallback lives in one place and
the plugin runs unchanged on QGIS 3.22 (Debian 12) and on QGIS 4.
"""

from __future__ import annotations

from typing import TypeVar

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

try:  # QGIS >= 3.36 and QGIS 4, where the unscoped enums are gone
    from qgis.core import Qgis

    FILE = Qgis.ProcessingFileParameterBehavior.File
    FOLDER = Qgis.ProcessingFileParameterBehavior.Folder
    DOUBLE = Qgis.ProcessingNumberParameterType.Double
    INTEGER = Qgis.ProcessingNumberParameterType.Integer
    POLYGONS = Qgis.ProcessingSourceType.VectorPolygon
except AttributeError:  # QGIS 3.22 - 3.34
    FILE = QgsProcessingParameterFile.File
    FOLDER = QgsProcessingParameterFile.Folder
    DOUBLE = QgsProcessingParameterNumber.Double
    INTEGER = QgsProcessingParameterNumber.Integer
    POLYGONS = QgsProcessing.TypeVectorPolygon

try:  # QGIS >= 3.36 and QGIS 4
    ADVANCED = Qgis.ProcessingParameterFlag.Advanced
except AttributeError:  # QGIS 3.22 - 3.34
    ADVANCED = QgsProcessingParameterDefinition.FlagAdvanced

Parameter = TypeVar("Parameter", bound=QgsProcessingParameterDefinition)


def mark_advanced(parameter: Parameter) -> Parameter:
    """Show ``parameter`` under the dialog's "Advanced parameters" (options most users never change)."""
    parameter.setFlags(parameter.flags() | ADVANCED)
    return parameter
