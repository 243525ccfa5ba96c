"""The object QGIS gets from ``classFactory``: registers and removes the Processing provider."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication

from .provider import MarsIceProvider


class MarsIcePlugin:
    """Plugin wrapper around :class:`MarsIceProvider`.

    ``initProcessing`` is what ``qgis_process`` (no GUI, ``iface`` is None) calls; the desktop calls
    ``initGui``. Both may be called, so registration is idempotent.
    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: MarsIceProvider | None = None

    def initProcessing(self) -> None:
        """Register the provider with the Processing registry (once)."""
        if self.provider is None:
            self.provider = MarsIceProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        """Desktop start-up: the plugin has no menu or toolbar, only Processing algorithms."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider, so that reloading or disabling the plugin leaves nothing behind."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
