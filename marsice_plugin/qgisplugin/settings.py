"""The plugin's one setting: which Python environment runs ``marsice`` (read by the provider and the algorithms).

A module of its own so the algorithms' base class can read it without importing the provider, which imports
every algorithm.
"""

from __future__ import annotations

from qgis.core import QgsSettings

#: Name of the provider setting (Processing ▸ Options ▸ Providers ▸ MarsIce ▸ Python environment).
PYTHON_SETTING = "MARSICE_PYTHON"
#: Where Processing stores that setting in the QGIS profile.
PYTHON_SETTING_KEY = "Processing/Configuration/" + PYTHON_SETTING
#: Plain settings key read as a fallback, for set-ups that script the profile without Processing's UI.
PYTHON_FALLBACK_KEY = "marsice/python"


def python_setting() -> str:
    """The user's choice of MarsIce Python environment, or '' to let child_process look it up.

    Read from QgsSettings rather than ProcessingConfig so that it also works when the Processing
    plugin's Python module is unavailable (it is a separate plugin that may be disabled).
    """
    settings = QgsSettings()
    for key in (PYTHON_SETTING_KEY, PYTHON_FALLBACK_KEY):
        value = settings.value(key, "")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
