"""Output paths checked before any work, side outputs put in place only after the main output, normal file modes.

Why one module for every command: the same three mistakes cost users their files whatever the command.

* An output that *is* an input (``--quicklook`` at the label, ``--probability-raster`` at the JP2,
  ``export sites.gpkg -o sites.gpkg``, ``train --init m.keras -o m.keras``) would replace the input.
  :func:`check_outputs` refuses it before anything is read, comparing files by identity (device and inode,
  so symlinks, ``..`` and hard links are all caught) and, for outputs that do not exist yet, by resolved path.
  A label's image file (the ``.JP2`` beside a ``.LBL``) and a model's card count as inputs too.
* An output folder that cannot be written used to be found after all the scoring. :func:`check_outputs`
  creates and removes a probe file in the folder (or in its nearest existing ancestor, when the folder would be
  created): ``os.access`` answers "yes" for root even where nothing can be created (``/proc``, a read-only
  mount), and the tests run as root.
* Temporary files made with ``tempfile.mkstemp`` are mode 0600, and renaming keeps that mode: exported files
  were unreadable to the user's group. :func:`publish` gives the finished file the mode ``open()`` would have
  given it (0666 minus the umask, or the mode of the file it replaces) before renaming it into place.

Every refusal is an :class:`~marsice_plugin.errors.OutputError` (exit 4, the output class), raised before any
input is read or any output created: a wrong output name is an output problem, like a full disk.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError

GEOPACKAGE = (".gpkg",)
PNG = (".png",)
GEOTIFF = (".tif", ".tiff")
KERAS = (".keras",)
CSV = (".csv",)
KML = (".kml",)
GEOJSON = (".geojson", ".json")

_FORMAT_NAMES = {
    ".gpkg": "a GeoPackage",
    ".png": "a PNG image",
    ".tif": "a GeoTIFF",
    ".keras": "a Keras model",
    ".csv": "CSV",
    ".kml": "KML",
    ".geojson": "GeoJSON",
}

#: Files that come with an input and are read with it: a label's image is found beside the label.
_LABEL_SUFFIXES = (".lbl",)


@dataclass(frozen=True)
class Output:
    """One output of a command, as the user named it.

    ``suffixes``: the names it may end with (case-insensitive), None for any name. ``folder``: a folder the
    command writes files into; ``replaced``: such a folder is replaced as a whole (``tile --overwrite``), so no
    input may lie inside it. ``in_place``: an existing file is updated rather than replaced (a results
    GeoPackage gains rows), so the file itself must be writable too. ``option`` names it in messages.
    """

    path: str | Path | None
    suffixes: Sequence[str] | None = None
    option: str = "-o"
    folder: bool = False
    in_place: bool = False
    replaced: bool = False


def check_outputs(inputs: Iterable[str | Path | None], outputs: Iterable[Output]) -> None:
    """Refuse, before any work, outputs that would replace an input, are misnamed or cannot be written.

    ``inputs`` are every file the command reads (None entries are ignored); a label's image file and a
    model's card are added here. Raises :class:`OutputError` naming the option, the path and what to do.
    """
    known = _input_files(inputs)
    seen: dict[tuple[str, str], str] = {}
    for out in outputs:
        if out.path is None:
            continue
        path = Path(out.path)
        what = f"{out.option} {path}"
        hit = _matching_input(path, known)
        if hit is not None:
            raise OutputError(
                f"{what} is {hit}, an input of this run, which the output would replace; choose another name"
            )
        key = _identity_key(path)
        if key in seen:
            raise OutputError(f"{what} names the same file as {seen[key]}; give each output its own name")
        seen[key] = what
        if out.folder:
            if path.exists() and not path.is_dir():
                raise OutputError(f"{what} is a file, not a folder; give a folder to write into")
            inside = _input_inside(path, known) if out.replaced else None
            if inside is not None:
                raise OutputError(f"{what} would be replaced, and {inside} lies inside it; choose another folder")
            _probe_folder(path, what)
            continue
        if out.suffixes is not None and not path.name.lower().endswith(tuple(s.lower() for s in out.suffixes)):
            kind = _FORMAT_NAMES.get(out.suffixes[0].lower(), out.suffixes[0])
            endings = " or ".join(out.suffixes)
            raise OutputError(f"{what}: this output is written as {kind}; give a name ending in {endings}")
        if path.is_dir():
            raise OutputError(f"{what} is a folder; give a file name")
        _probe_folder(path.parent, what)
        if out.in_place and path.exists():
            try:
                os.close(os.open(path, os.O_RDWR))  # opens for writing, changes nothing
            except OSError as exc:
                raise OutputError(
                    f"{what} cannot be updated ({exc.strerror or exc}); fix its permissions or write to another file"
                ) from exc


def _input_files(inputs: Iterable[str | Path | None]) -> list[tuple[Path, str]]:
    """(path, description) of every input file, with a label's image file and a model's card."""
    files: list[tuple[Path, str]] = []
    for entry in inputs:
        if entry is None:
            continue
        path = Path(entry)
        files.append((path, f"the input {path.name}"))
        if path.suffix.lower() in _LABEL_SUFFIXES:
            files.extend((image, f"the image file of {path.name}") for image in _label_images(path))
        if path.suffix.lower() == ".keras":
            card = path.with_suffix("").with_suffix(".card.json")
            files.append((card, f"the card of {path.name}"))
    return files


def _label_images(label: Path) -> list[Path]:
    """The image file a label names (found as the reader finds it), else its same-name siblings.

    A label that cannot be parsed is reported by the reader later; here it must not hide its image, so
    the siblings sharing its name (any extension, any case) stand in for it.
    """
    from .errors import MarsIceError

    try:
        from .labels import read_label
        from .product import resolve_image_file

        return [resolve_image_file(read_label(label))]
    except MarsIceError:
        pass
    folder, stem = label.parent, label.stem.lower()
    try:
        return [p for p in folder.iterdir() if p.stem.lower() == stem and p != label]
    except OSError:
        return []


def _matching_input(path: Path, inputs: list[tuple[Path, str]]) -> str | None:
    """The description of the input ``path`` is (same file: device and inode; or same resolved path)."""
    for candidate, description in inputs:
        try:
            if os.path.samefile(path, candidate):
                return description
        except OSError:  # one of them does not exist: compare where they would be
            if _resolved(path) == _resolved(candidate):
                return description
    return None


def _input_inside(folder: Path, inputs: list[tuple[Path, str]]) -> str | None:
    """The description of an input that lies inside ``folder`` (an input of this run)."""
    root = _resolved(folder)
    for candidate, description in inputs:
        if _resolved(candidate).is_relative_to(root):
            return description
    return None


def product_id_of(path: str | Path) -> str:
    """The product id a product's outputs are named after, as the reader gives it: the label's
    ``PRODUCT_ID``, else the file name without its extension (a raster, or a label the reader will refuse)."""
    path = Path(path)
    if path.suffix.lower() in _LABEL_SUFFIXES:
        from .errors import MarsIceError
        from .labels import read_label

        try:
            return read_label(path).product_id
        except MarsIceError:
            pass
    return path.stem


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return path.absolute()


def _identity_key(path: Path) -> tuple[str, str]:
    try:
        st = path.stat()
        return ("inode", f"{st.st_dev}:{st.st_ino}")
    except OSError:
        return ("path", str(_resolved(path)))


def _probe_folder(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``, or in its nearest existing ancestor if it is still to be made."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {what}: {existing} is a file, not a folder; choose an output in a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".marsice-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write {what}: nothing can be created in {existing} ({exc.strerror or exc}); "
            "choose another folder or fix its permissions"
        ) from exc


# -- file modes --------------------------------------------------------------------------------------------
def normal_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the process umask.

    Read from /proc (Linux) where possible: ``os.umask`` can only be read by setting it, which races with
    other threads creating files.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def publish(tmp: str | Path, path: str | Path) -> Path:
    """Rename the finished temporary file ``tmp`` onto ``path`` with the mode a plain write would give it.

    A new file gets :func:`normal_file_mode`; a replaced file keeps its own mode, as rewriting it in place
    would. Raises OSError (the caller says which output failed).
    """
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = normal_file_mode()
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return path


def write_atomically(
    path: Path,
    write: Callable[[Path], Any],
    finish: Callable[[Path, Path], Any] | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> Path:
    """Write ``path`` through a temporary file beside it: ``write(tmp)`` fills it, ``finish(tmp, path)`` puts it
    in place (default :func:`publish`, at once; detect defers its side outputs with :meth:`SideOutputs.defer`).

    Why one function for every file a command writes this way: a failed or cancelled write must leave neither a
    half-written ``path`` nor a stray temporary file, and a full disk must read as an output problem. Any failure
    removes the temporary file; one of ``errors`` (what the writer raises for a file it cannot write) becomes an
    :class:`OutputError` naming ``path``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        (finish or publish)(tmp, path)
    except errors as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# -- side outputs ------------------------------------------------------------------------------------------
class SideOutputs:
    """Side outputs (quick-look, probability raster) written under temporary names, put in place last.

    A run creates each side output's folder with :meth:`make_folder`, has the writer write its temporary file
    beside the final name and hand it to :meth:`defer` instead of renaming it, commits its main output, then
    calls :meth:`commit`. Any failure before that calls :meth:`discard`: the temporary files and any folder made
    for them go, so a failed run leaves no side output beside an unchanged main output.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._made: list[Path] = []

    def make_folder(self, folder: str | Path) -> None:
        """Create ``folder`` (and parents), remembering which ones were new so :meth:`discard` removes them."""
        folder = Path(folder)
        missing = []
        probe = folder
        while not probe.exists() and probe != probe.parent:
            missing.append(probe)
            probe = probe.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
        self._made.extend(missing)  # deepest first

    def defer(self, tmp: str | Path, path: str | Path) -> None:
        """Keep the finished temporary file ``tmp`` (in ``path``'s folder) until :meth:`commit` renames it."""
        self._staged.append((Path(tmp), Path(path)))

    @property
    def finals(self) -> list[Path]:
        return [final for _, final in self._staged]

    def discard(self) -> None:
        """Delete every staged file not yet in place, and the folders made for them when empty."""
        for tmp, _ in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged = []
        for folder in self._made:
            try:
                folder.rmdir()
            except OSError:
                break  # not empty, or already gone: its parents are not ours to remove either
        self._made = []

    def commit(self, written: Sequence[Path]) -> list[Path]:
        """Rename every staged file into place; ``written`` are the outputs already committed.

        A rename that fails deletes the staged files left and raises an :class:`OutputError` that says which
        outputs exist and which were not written.
        """
        placed: list[Path] = []
        for i, (tmp, final) in enumerate(self._staged):
            try:
                publish(tmp, final)
            except OSError as exc:
                left = self._staged[i:]
                for rest, _ in left:
                    rest.unlink(missing_ok=True)
                self._staged = []
                kept = ", ".join(str(p) for p in [*written, *placed])
                lost = ", ".join(str(f) for _, f in left)
                raise OutputError(
                    f"cannot put {final} in place ({exc.strerror or exc}); written: {kept}; not written: {lost} "
                    "(rerun to write it)"
                ) from exc
            placed.append(final)
        self._staged = []
        self._made = []
        return placed
