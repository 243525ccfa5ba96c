"""Processing algorithm ``marsice:terrain``: DTM slope, aspect and shadow on the image grid; candidate ranking."""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..compat import DOUBLE, FILE
from .base import MarsIceAlgorithm

_IMAGE_FILTER = "HiRISE PDS3 labels and rasters (*.LBL *.lbl *.tif *.tiff *.cub *.vrt);;All files (*.*)"
_DTM_FILTER = "DTMs (*.IMG *.img *.tif *.tiff *.cub *.vrt);;All files (*.*)"

_HELP = """\
<p>Puts the <b>topography</b> beside the ice candidates. The paper's ice patch lies on the <b>poleward side of a \
shadowing landform</b> (a boulder, a crater wall, a trough) and casts no shadow itself; its false alarms were bright \
dust on sunlit slopes. This tool measures exactly that.</p>
<p>The DTM (HiRISE DTEEC/DTEPC <tt>.IMG</tt>, or any DEM in a Mars map projection) is resampled bilinearly onto the \
image's own pixel grid, then lined up with the image by correlating the image with the DTM's hillshade for the \
image's sun. The offset is applied only when the match is clear; otherwise a warning says the DTM was used as \
georeferenced.</p>
<p>Outputs, one GeoTIFF each on the image grid (they overlay the image exactly): <b>slope</b> (degrees), \
<b>aspect</b> (degrees clockwise from true north, corrected on polar stereographic maps), <b>poleward</b> \
(1 = slope faces the nearer pole), <b>shadow</b> (1 = in cast or self shadow for the image's sun) and the \
resampled <b>height</b>.</p>
<p>With a detection GeoPackage, every <tt>ice_candidates</tt> polygon gains <tt>terrain_*</tt> fields: mean and \
maximum slope, mean aspect, poleward-facing fraction, shadow fraction, shade on its sunward side in the DTM and dark \
shadow pixels there in the image (DTMs at 1–2 m do not resolve boulders), elevation, a terrain score (0–1) and \
<tt>terrain_rank_value</tt> = CNN probability × (0.2 + 0.8 × score): sort by it, descending. The CNN probability \
itself is not changed.</p>
<h3>Parameters</h3>
<dl>
<dt>DTM</dt><dd>A HiRISE DTM (<tt>DTEEC_…IMG</tt>) or any DEM in a Mars map projection that overlaps the image, on the \
same Mars radius.</dd>
<dt>HiRISE product</dt><dd>The image the candidates were found in (its label gives the sun's direction and \
height).</dd>
<dt>Detection results to rank</dt><dd>Optional: the GeoPackage written by <i>Detect ice patches</i> for this image; \
its <tt>ice_candidates</tt> layer gains the <tt>terrain_*</tt> fields in place.</dd>
<dt>Width of the sunward band</dt><dd>How far (metres) beyond each patch's sunward edge to look for a shadowing \
landform. 5 m covers the boulders of the paper's examples.</dd>
<dt>Terrain rasters folder</dt><dd>Where the slope, aspect, poleward, shadow and height GeoTIFFs are written.</dd>
</dl>
"""


class TerrainAttributesAlgorithm(MarsIceAlgorithm):
    """``marsice terrain`` as a Processing algorithm; parameters map one-to-one onto CLI options."""

    DTM = "DTM"
    INPUT = "INPUT"
    CANDIDATES = "CANDIDATES"
    RING_M = "RING_M"
    OUTPUT = "OUTPUT"

    NAME = "terrain"
    DISPLAY_NAME = "Terrain attributes"
    GROUP = "Detection"
    GROUP_ID = "detection"
    HELP = _HELP
    ICON = "detection.svg"

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(
            QgsProcessingParameterFile(self.DTM, "DTM (HiRISE .IMG or Mars DEM)", FILE, fileFilter=_DTM_FILTER)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.INPUT, "HiRISE product (PDS3 .LBL or a Mars raster)", FILE, fileFilter=_IMAGE_FILTER
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CANDIDATES,
                "Detection results to rank (GeoPackage with ice_candidates; updated in place)",
                FILE,
                extension="gpkg",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.RING_M, "Width of the sunward band searched for shade (m)", DOUBLE, defaultValue=5.0, minValue=0.1
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, "Terrain rasters folder"))
        for name, label in (("SLOPE", "Slope"), ("ASPECT", "Aspect"), ("POLEWARD", "Poleward"), ("SHADOW", "Shadow")):
            self.addOutput(QgsProcessingOutputRasterLayer(name, label))
        self.addOutput(QgsProcessingOutputNumber("PEAK_RATIO", "Co-registration peak ratio"))
        self.addOutput(QgsProcessingOutputNumber("CANDIDATES_SCORED", "Candidates scored"))

    def processAlgorithm(
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        dtm = self.parameterAsFile(parameters, self.DTM, context)
        product = self.parameterAsFile(parameters, self.INPUT, context)
        candidates = self.parameterAsFile(parameters, self.CANDIDATES, context)
        ring = self.parameterAsDouble(parameters, self.RING_M, context)
        folder = self.parameterAsString(parameters, self.OUTPUT, context)

        args = ["terrain", "--dtm", dtm, "--image", product, "-o", folder, "--ring-m", str(ring)]
        args += ["--candidates", candidates] if candidates else []
        out = self.run_cli(args, feedback)
        return {
            self.OUTPUT: folder,
            "SLOPE": out.get("SLOPE"),
            "ASPECT": out.get("ASPECT"),
            "POLEWARD": out.get("POLEWARD"),
            "SHADOW": out.get("SHADOW"),
            "PEAK_RATIO": out.get("peak_ratio"),
            "CANDIDATES_SCORED": out.get("candidates"),
        }
