"""`make zip` builds a plugin zip that QGIS's plugin repository accepts."""

from __future__ import annotations

import configparser
import subprocess
import zipfile
import zlib

from marsice_plugin import __version__
from marsice_plugin.model_registry import DEFAULT_MODEL_NAME, FAST_MODEL_NAME
from marsice_plugin.patches.model import PATCH_MODEL_NAME

from .conftest import REPO

REQUIRED = ("name", "version", "qgisMinimumVersion", "description", "about", "author", "repository", "tracker")


def test_make_zip_builds_an_installable_plugin():
    proc = subprocess.run(["make", "-s", "zip"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    path = REPO / "dist" / "marsice_plugin.zip"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        metadata = archive.read("marsice_plugin/metadata.txt").decode()
        init = archive.read("marsice_plugin/__init__.py").decode()
    assert all(name.startswith("marsice_plugin/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert "marsice_plugin/qgisplugin/provider.py" in names and "marsice_plugin/icons/marsice.svg" in names
    assert "def classFactory(iface)" in init
    parser = configparser.ConfigParser()
    parser.read_string(metadata)
    general = parser["general"]
    for key in REQUIRED:
        assert general.get(key, "").strip(), key
    assert general["version"] == __version__
    assert general["hasProcessingProvider"] == "yes"
    assert general["icon"] in {n.removeprefix("marsice_plugin/") for n in names}
    assert general["qgisMinimumVersion"] == "3.22"  # Debian 12's QGIS
    assert general["qgisMaximumVersion"].startswith("4.")  # written for QGIS 4 / Qt 6 too
    assert general["supportsQt6"] == "True"
    # no public address exists: no placeholder either; the links name documents of the checkout
    assert "example." not in metadata
    for key in ("homepage", "repository", "tracker"):
        assert (REPO / general[key].partition("#")[0]).is_file(), key
    assert len(general["about"]) > len(general["description"])
    for icon in ("marsice", "detection", "catalogue", "model", "workflow"):  # the toolbox groups' icons
        assert f"marsice_plugin/icons/{icon}.svg" in names
    assert not any("/tests/" in name for name in names)
    # the default and the fast model, and the candidates' second stage, travel with the plugin as package data, byte
    # for byte, with their cards
    shipped = {f"marsice_plugin/models/{n}" for n in (DEFAULT_MODEL_NAME, FAST_MODEL_NAME, PATCH_MODEL_NAME)}
    assert {name for name in names if name.endswith(".keras")} == shipped
    with zipfile.ZipFile(path) as archive:
        for name in shipped:
            stem = name.removesuffix(".keras").rsplit("/", 1)[1]
            assert zlib.crc32((REPO / "models" / f"{stem}.keras").read_bytes()) == archive.getinfo(name).CRC
            assert {f"marsice_plugin/models/{stem}.card.json", f"marsice_plugin/models/{stem}.md"} <= set(names)
    assert path.stat().st_size < 40_000_000  # three models, not every model of models/ (about 34 MB)
