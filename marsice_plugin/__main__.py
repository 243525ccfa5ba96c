"""``python -m marsice_plugin`` runs the ``marsice`` CLI (how the QGIS algorithms start it)."""

import sys

from .cli import main

sys.exit(main())
