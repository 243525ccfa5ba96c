"""Help of the MarsIce algorithms: one HTML file per algorithm beside them, links into the repository's docs.

The dialog's help panel has room for what a tool does and one line per parameter; figures measured on a
model (how many ice images it found, its threshold) live in the model cards and the README and are linked,
not copied, so the help never contradicts a card after a model is retrained.

There is no MarsIce website, so links point at the documentation in the checkout the plugin runs from: the
plugin's default Python environment is ``.venv`` in that same folder, so the README, ``docs/`` and
``models/`` cards are there beside it. A link whose file is missing (a plugin installed from the zip,
which holds the package only) is shown as its plain repository path, which still names the document.

Pure Python (no ``qgis`` import), so the help files and their links are tested without QGIS.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..child_process import PACKAGE_PARENT

#: The help files, ``<algorithm name>.html``.
HELP_DIR = Path(__file__).resolve().parent / "algorithms" / "help"

#: ``<a href="README.md#terrain">...</a>`` with a repository-relative target (no ``scheme:``).
_RELATIVE_LINK = re.compile(r'<a href="(?![a-z][a-z0-9+.-]*:)([^"#]+)(#[^"]*)?">(.*?)</a>', re.DOTALL)


def doc_url(doc: str, root: Path = PACKAGE_PARENT) -> str:
    """``file://`` URL of a repository document (``"README.md#terrain"``), or '' when it is not on disk."""
    path, _, fragment = doc.partition("#")
    target = root / path
    if not target.is_file():
        return ""
    return target.resolve().as_uri() + (f"#{fragment}" if fragment else "")


def help_html(name: str, root: Path = PACKAGE_PARENT) -> str:
    """The help of algorithm ``name`` with repository-relative links made absolute (or plain text if absent)."""

    def link(match: re.Match[str]) -> str:
        url = doc_url(match.group(1) + (match.group(2) or ""), root)
        return f'<a href="{url}">{match.group(3)}</a>' if url else match.group(3)

    return _RELATIVE_LINK.sub(link, (HELP_DIR / f"{name}.html").read_text(encoding="utf-8"))
