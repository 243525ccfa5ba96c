"""The MarsIce Processing provider: its id, name, icon, algorithms and one setting."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.detect_ice import DetectIceAlgorithm
from .algorithms.download_products import DownloadProductsAlgorithm
from .algorithms.evaluate_model import EvaluateModelAlgorithm
from .algorithms.export_sites import ExportSitesAlgorithm
from .algorithms.find_ice_workflow import FindIcePatchesAlgorithm
from .algorithms.search_products import SearchProductsAlgorithm
from .algorithms.site_history import SiteHistoryAlgorithm
from .algorithms.terrain_attributes import TerrainAttributesAlgorithm
from .algorithms.tile_product import TileProductAlgorithm
from .algorithms.train_model import TrainModelAlgorithm
from .settings import PYTHON_SETTING

ICON_PATH = Path(__file__).resolve().parents[1] / "icons" / "marsice.svg"


class MarsIceProvider(QgsProcessingProvider):
    """Provider ``marsice``; algorithm ids are ``marsice:<name>``."""

    def id(self) -> str:
        return "marsice"

    def name(self) -> str:
        return "MarsIce"

    def longName(self) -> str:
        return "MarsIce: remnant water-ice patches in HiRISE images"

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def svgIconPath(self) -> str:
        return str(ICON_PATH)

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        """The CLI writes GeoPackage only; this keeps the output widget from offering Shapefile."""
        return ["gpkg"]

    def supportsNonFileBasedOutput(self) -> bool:
        """Outputs are written by another process, so they cannot be memory layers."""
        return False

    def load(self) -> bool:
        """Add the Python-environment option to the Processing options dialog, when available."""
        try:
            from processing.core.ProcessingConfig import ProcessingConfig, Setting
        except ImportError:  # Processing's Python plugin missing: python_setting() still works
            pass
        else:
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(
                Setting(
                    self.name(),
                    PYTHON_SETTING,
                    "Python environment (MarsIce venv folder or its python executable; "
                    "empty = a checkout's .venv, else the one the plugin makes on first use)",
                    "",
                    valuetype=Setting.FOLDER,
                )
            )
            ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
        except ImportError:
            return
        if PYTHON_SETTING in ProcessingConfig.settings:
            ProcessingConfig.removeSetting(PYTHON_SETTING)

    def loadAlgorithms(self) -> None:
        for algorithm in (
            DetectIceAlgorithm(),
            SearchProductsAlgorithm(),
            DownloadProductsAlgorithm(),
            TerrainAttributesAlgorithm(),
            TileProductAlgorithm(),
            TrainModelAlgorithm(),
            EvaluateModelAlgorithm(),
            FindIcePatchesAlgorithm(),
            SiteHistoryAlgorithm(),
            ExportSitesAlgorithm(),
        ):
            self.addAlgorithm(algorithm)
