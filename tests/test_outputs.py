"""Outputs: never an input, the right extension, a writable folder checked before any work, side outputs only
after the GeoPackage commit, and the mode of a plain new file.

Detect runs use the 700 x 500 px product (one chunk) and the demo model: about a second each once TensorFlow is
loaded. Refusals are checked before the product is opened or the model loaded: those two functions are replaced by
ones that fail the test if they are called.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from marsice_plugin import pipeline
from marsice_plugin.detection import DetectOptions
from marsice_plugin.errors import OutputError
from marsice_plugin.outputs import Output, SideOutputs, check_outputs, normal_file_mode
from marsice_plugin.pipeline import detect

from .conftest import DEMO_MODEL

#: An existing folder in which nothing can be created, even by root: ``os.access(W_OK)`` says yes there for root
#: (it only looks at permission bits), but creating a file fails with ENOENT. chmod cannot make such a folder for
#: the tests, which run as root (root writes through any mode bits).
PROC_FOLDER = Path("/proc")


@pytest.fixture
def product(small_product, tmp_path) -> Path:
    """A copy of the small product (label + JP2) in its own folder; returns the label."""
    folder = tmp_path / "product"
    folder.mkdir()
    for path in (small_product.label_path, small_product.image_path):
        shutil.copy2(path, folder / path.name)
    return folder / small_product.label_path.name


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if detect opens the product or loads a model: refusals come before any work."""

    def forbidden(*args, **kwargs):
        raise AssertionError("detect started work before refusing its outputs")

    monkeypatch.setattr(pipeline, "open_product", forbidden)
    monkeypatch.setattr("marsice_plugin.cnn.model.load_model", forbidden)


@pytest.fixture
def cli(capsys):
    """Run ``marsice ...`` in this process; returns (exit code, stderr lines). Restores the CLI's global hooks."""
    from marsice_plugin.cli import main

    def run(*args: str | Path) -> tuple[int, list[str]]:
        term, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
        try:
            code = main([str(a) for a in args])
        finally:
            signal.signal(signal.SIGTERM, term)
            sys.unraisablehook = hook
        return code, capsys.readouterr().err.strip().splitlines()

    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(label: Path, out: Path, **kwargs):
    return detect(label, out / "o.gpkg", DetectOptions(model_path=DEMO_MODEL), **kwargs)


# -- outputs that are inputs (issue 26, item 4) -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "target", "named"),
    [
        ("quicklook", lambda label: label, "the input {label}"),
        ("probability_raster", lambda label: label.with_suffix(".JP2"), "the image file of {label}"),
        ("quicklook", lambda label: label.parent / "sub" / ".." / label.name, "the input {label}"),
    ],
    ids=["quicklook-at-label", "raster-at-jp2", "dotdot-path"],
)
def test_detect_refuses_an_output_that_is_an_input(product, no_work, option, target, named):
    (product.parent / "sub").mkdir()
    before = _snapshot(product.parent)
    with pytest.raises(OutputError) as info:
        detect(product, product.parent / "o.gpkg", DetectOptions(model_path=DEMO_MODEL), **{option: target(product)})
    assert info.value.exit_code == 4
    assert named.format(label=product.name) + ", an input of this run" in str(info.value)
    assert _snapshot(product.parent) == before  # the product byte-identical, nothing added


def test_symlinks_and_hard_links_to_an_input_are_the_input(product, tmp_path, no_work):
    """A link under an output-like name is still the JP2: files are compared by device and inode."""
    jp2 = product.with_suffix(".JP2")
    (tmp_path / "soft.tif").symlink_to(jp2)
    os.link(jp2, tmp_path / "hard.tif")
    before = jp2.read_bytes()
    for name in ("soft.tif", "hard.tif"):
        with pytest.raises(OutputError, match=f"--probability-raster {tmp_path / name} is the image file of"):
            _run(product, tmp_path, probability_raster=tmp_path / name)
    assert jp2.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hard.tif", "product", "soft.tif"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"quicklook": "q.jpg"},
            "--quicklook {tmp}/q.jpg: this output is written as a PNG image; give a name ending in .png",
        ),
        (
            {"probability_raster": "p.png"},
            "--probability-raster {tmp}/p.png: this output is written as a GeoTIFF; give a name ending in .tif or "
            ".tiff",
        ),
        ({"quicklook": "o.gpkg"}, "--quicklook {tmp}/o.gpkg names the same file as -o {tmp}/o.gpkg"),
    ],
)
def test_detect_refuses_misnamed_outputs(product, tmp_path, no_work, kwargs, message):
    with pytest.raises(OutputError) as info:
        _run(product, tmp_path, **{k: tmp_path / v for k, v in kwargs.items()})
    assert message.format(tmp=tmp_path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product"]


def test_cli_output_at_the_input_is_one_line_and_exit_4(product, tmp_path, cli):
    before = _snapshot(product.parent)
    code, err = cli("detect", product, "-o", tmp_path / "o.gpkg", "--model", DEMO_MODEL, "--quicklook", product)
    assert code == 4
    assert err == [
        f"marsice: error: --quicklook {product} is the input {product.name}, an input of this run, which the "
        "output would replace; choose another name"
    ]
    assert _snapshot(product.parent) == before and not (tmp_path / "o.gpkg").exists()


def test_export_sites_onto_itself_is_refused(tmp_path, cli):
    sites = tmp_path / "sites.gpkg"
    sites.write_bytes(b"the user's sites")  # refused before it is read
    code, err = cli("export", sites, "-o", sites)
    assert code == 4 and "is the input sites.gpkg, an input of this run" in err[-1]
    code, err = cli("export", sites, "--format", "kml", "-o", tmp_path / "sites.csv")
    assert code == 4 and err[-1].endswith("this output is written as KML; give a name ending in .kml")
    assert sites.read_bytes() == b"the user's sites"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sites.gpkg"]


def test_every_command_refuses_to_overwrite_its_inputs(small_product, tmp_path, cli):
    """sites, train, ensemble, terrain, tile and sample: the input named as output is refused, byte-identical."""
    results = tmp_path / "r.gpkg"
    results.write_bytes(b"results")
    model = tmp_path / "m.keras"
    shutil.copy2(DEMO_MODEL, model)
    other = tmp_path / "n.keras"
    shutil.copy2(DEMO_MODEL, other)
    # terrain writes OUTPUT/ID_height.tif: a DTM of that name in the output folder would be replaced
    image, dtm = tmp_path / "scene.tif", tmp_path / "scene_height.tif"
    image.write_bytes(b"image")
    dtm.write_bytes(b"dtm")
    # tile --overwrite replaces OUTPUT/ID_tiles/: a product inside it would go with it
    tiles = tmp_path / f"{small_product.product_id}_tiles"
    tiles.mkdir()
    label = tiles / small_product.label_path.name
    shutil.copy2(small_product.label_path, label)
    shutil.copy2(small_product.image_path, tiles / small_product.image_path.name)
    before = _snapshot(tmp_path)
    cases = [
        (["sites", results, "-o", results], f"-o {results} is the input r.gpkg"),
        (["train", "--synthetic", "4", "--init", model, "-o", model], f"-o {model} is the input m.keras"),
        (["ensemble", model, other, "-o", other], f"-o {other} is the input n.keras"),
        (["terrain", "--dtm", dtm, "--image", image, "-o", tmp_path], f"-o {dtm} is the input scene_height.tif"),
        (["tile", label, "-o", label], f"-o {label} is the input {label.name}"),
        (["tile", label, "-o", tmp_path, "--overwrite"], f"-o {tiles} would be replaced, and the input {label.name}"),
        (["sample", "-o", results], f"-o {results} is a file, not a folder"),
    ]
    for argv, message in cases:
        code, err = cli(*argv)
        assert code == 4, (argv, err)
        assert message in err[-1], (argv, err)
    assert _snapshot(tmp_path) == before


# -- outputs that cannot be written, found before the work (item 5) ---------------------------------------------
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_output_folder_is_exit_4_before_any_work(product, tmp_path, no_work, where):
    """Two folders that refuse writes even to root: one in /proc, one whose 'parent' is a regular file."""
    if where == "proc":
        out, folder = PROC_FOLDER / "marsice-outputs" / "o.gpkg", PROC_FOLDER
        message = f"nothing can be created in {folder} (No such file or directory)"
    else:
        (tmp_path / "plain").write_text("a file")
        out, folder = tmp_path / "plain" / "sub" / "o.gpkg", tmp_path / "plain"
        message = f"{folder} is a file, not a folder"
    with pytest.raises(OutputError) as info:
        detect(product, out, DetectOptions(model_path=DEMO_MODEL))
    assert info.value.exit_code == 4
    assert str(info.value).startswith(f"cannot write -o {out}: {message}")
    # the same for a side output, with the GeoPackage itself writable
    with pytest.raises(OutputError, match="cannot write --quicklook"):
        _run(product, tmp_path, quicklook=out.with_suffix(".png"))
    assert not (tmp_path / "o.gpkg").exists()


def test_probe_leaves_nothing_and_creates_no_folder(tmp_path):
    check_outputs([], [Output(tmp_path / "new" / "deeper" / "o.gpkg", (".gpkg",)), Output(tmp_path / "f", folder=True)])
    assert list(tmp_path.iterdir()) == []


# -- side outputs only when the run succeeds (item 5) -----------------------------------------------------------
def _disk_full_in_sqlite(monkeypatch):
    from marsice_plugin import gpkg

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(gpkg.GeoPackage, "insert", full)


def test_geopackage_disk_full_leaves_no_side_outputs(product, tmp_path, monkeypatch):
    out = tmp_path / "new" / "folder"
    _disk_full_in_sqlite(monkeypatch)
    with pytest.raises(OutputError) as info:
        _run(product, out, quicklook=out / "q.png", probability_raster=out / "p.tif")
    assert info.value.exit_code == 4
    assert str(info.value) == (
        f"cannot write {out / 'o.gpkg'}: database or disk is full; nothing was written: {out / 'o.gpkg'} was not "
        f"created, {out / 'q.png'} and {out / 'p.tif'} not written"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product"]  # not even the folders made for the outputs


def test_failures_before_the_commit_keep_every_earlier_output_byte_identical(product, tmp_path, monkeypatch):
    """An earlier run's GeoPackage, quick-look and raster are kept as they were when a rerun fails at any step."""
    side = {"quicklook": tmp_path / "q.png", "probability_raster": tmp_path / "p.tif"}
    _run(product, tmp_path, **side)
    before = _snapshot(tmp_path)
    assert sorted(before) == ["o.gpkg", "p.tif", f"product/{product.stem}.JP2", f"product/{product.name}", "q.png"]

    import rasterio.io
    from PIL import Image
    from rasterio.errors import RasterioIOError

    def raster_full(*args, **kwargs):
        raise RasterioIOError("Write failed. See previous exception for details.")  # GDAL on a full disk

    def png_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    steps = {
        "raster": (lambda m: m.setattr(rasterio.io.DatasetWriter, "write", raster_full), "p.tif: Write failed"),
        "quick-look": (lambda m: m.setattr(Image.Image, "save", png_full), "q.png: No space left on device"),
        "geopackage": (_disk_full_in_sqlite, "o.gpkg: database or disk is full; the file is unchanged"),
    }
    for step, (break_it, message) in steps.items():
        with monkeypatch.context() as m:
            break_it(m)
            with pytest.raises(OutputError) as info:
                _run(product, tmp_path, **side)
        text = str(info.value)
        assert message in text, step
        assert text.endswith(
            f"nothing was written: {tmp_path / 'o.gpkg'} is as it was, {side['quicklook']} and "
            f"{side['probability_raster']} not written"
        ), step
        assert _snapshot(tmp_path) == before, step


def test_a_side_output_that_cannot_be_put_in_place_is_named(product, tmp_path, monkeypatch):
    """After the commit only renames are left; one that fails says which outputs exist and which do not."""
    from marsice_plugin import outputs

    real = outputs.publish

    def publish(tmp, path):
        if Path(path).name == "q.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tmp, path)

    monkeypatch.setattr(outputs, "publish", publish)
    with pytest.raises(OutputError) as info:
        _run(product, tmp_path, quicklook=tmp_path / "q.png", probability_raster=tmp_path / "p.tif")
    assert str(info.value) == (
        f"cannot put {tmp_path / 'q.png'} in place (No space left on device); written: {tmp_path / 'o.gpkg'}, "
        f"{tmp_path / 'p.tif'}; not written: {tmp_path / 'q.png'} (rerun to write it)"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg", "p.tif", "product"]  # no temporary left
    with sqlite3.connect(tmp_path / "o.gpkg") as db:
        assert db.execute("SELECT count(*) FROM products").fetchone() == (1,)


def test_side_outputs_discard_removes_their_new_folders_only(tmp_path):
    side = SideOutputs()
    for folder in (tmp_path / "a" / "b", tmp_path / "keep"):
        if folder.name == "keep":
            folder.mkdir()
        side.make_folder(folder)
        (folder / ".x.partial").write_bytes(b"finished")
        side.defer(folder / ".x.partial", folder / "x.png")
    side.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"] and list((tmp_path / "keep").iterdir()) == []


# -- file modes (item 7) --------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    """Set the process umask for one test, then put the previous one back."""
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o002, 0o664)], ids=["umask-022", "umask-002"])
def test_detect_outputs_get_the_mode_of_a_plain_new_file(product, tmp_path, umask, mask, mode):
    """Not mkstemp's 0600, nor SQLite's fixed 0644: 0666 minus the umask, as open() gives."""
    umask(mask)
    assert normal_file_mode() == mode
    _run(product, tmp_path, quicklook=tmp_path / "q.png", probability_raster=tmp_path / "p.tif")
    modes = {name: oct((tmp_path / name).stat().st_mode & 0o777) for name in ("o.gpkg", "q.png", "p.tif")}
    assert modes == dict.fromkeys(modes, oct(mode))
