"""Crafted ``.keras`` files are refused before Keras reads them, and nothing in them runs (issue 26).

The archives here are built like the published ``safe_mode`` bypasses: a Lambda layer whose function is a
*reference* to one of Keras's own functions (``keras.models.load_model`` with ``safe_mode=False`` on a
second model, CVE-2025-9906; ``keras.utils.get_file``, CVE-2025-8747; the global switch that turns safe
mode off), a Lambda layer carrying marshalled bytecode, and classes from ``os``/``builtins``. Every payload
writes a marker file when it runs; the bytecode one is shown to really run once Keras is told to be unsafe.
(Measured by hand: under Keras 3.10.0, ``load_model(..., safe_mode=True)`` of the ``safe_mode_switch`` and
``get_file`` archives writes the marker; the Keras pinned now refuses them too.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from marsice_plugin.cnn.model import build_model, compile_model, keras_module, load_model, model_input_size
from marsice_plugin.cnn.model_safety import MEMBER_LIMITS, check_archive
from marsice_plugin.errors import ModelError

from .conftest import REPO

FLOAT32 = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}


def _tiny(size: int = 16):
    return build_model(size, entry_filters=4, block_filters=(8,), exit_filters=8)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A real (tiny) MarsIce model archive, as ``marsice train`` writes it, to plant payloads into."""
    from marsice_plugin.cnn.train import save_for_inference

    path = tmp_path_factory.mktemp("base") / "base.keras"
    save_for_inference(_tiny(), path)
    return path


def _bytecode_payload(folder: Path) -> tuple[Path, dict, Path]:
    """A Keras-saved model whose Lambda layer writes ``folder/marker`` when it runs: (marker, layer, model).

    The marker path is a constant inside the lambda's bytecode (Keras cannot restore a lambda's default
    arguments), so the source is compiled with the path in it.
    """
    keras = keras_module()
    marker = folder / "marker"
    payload = eval(f"lambda t: (open({str(marker)!r}, 'w').close(), t)[1]")
    inputs = keras.Input((16, 16, 1), name="chunk")
    model_path = folder / "inner.keras"
    keras.Model(inputs, keras.layers.Lambda(payload, name="payload")(inputs)).save(model_path)
    # Keras calls the layer while building the model, so the payload has just run once: proof that it is live
    assert marker.exists()
    marker.unlink()
    with zipfile.ZipFile(model_path) as archive:
        layer = next(x for x in json.loads(archive.read("config.json"))["config"]["layers"] if x["name"] == "payload")
    return marker, layer, model_path


def _function(module: str, name: str) -> dict:
    """A serialised reference to a function, as Keras writes one for a Lambda layer's named function."""
    return {"module": module, "class_name": "function", "config": name, "registered_name": "function"}


def _lambda_calling(name: str, function: dict, inputs: object, **arguments: object) -> dict:
    """A Lambda layer that calls ``function(inputs, **arguments)``; ``inputs`` rides in the node's kwargs."""
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {"name": name, "trainable": True, "dtype": FLOAT32, "function": function, "arguments": arguments},
        "registered_name": None,
        "build_config": {"input_shape": [None, 10]},
        "name": name,
        "inbound_nodes": [{"args": [], "kwargs": {"inputs": inputs}}],
    }


def _plant(base: Path, out: Path, layers: list[dict], extra_members: dict[str, bytes] | None = None) -> Path:
    """Copy ``base`` to ``out`` with ``layers`` added to its functional config (unconnected to the output,
    as the published exploits do: Keras still builds and calls every layer in the list)."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"].extend(layers)
                data = json.dumps(config).encode()
            dst.writestr(info.filename, data)
        for name, data in (extra_members or {}).items():
            dst.writestr(name, data)
    return out


def _exploit(kind: str, base: Path, folder: Path) -> tuple[Path, Path, str]:
    """A crafted archive of the given kind: (archive, marker its payload writes, what the refusal must name)."""
    marker, bytecode, inner = _bytecode_payload(folder)
    shell = f"touch {marker}"
    load_inner = _lambda_calling("unsafe", _function("keras.models", "load_model"), str(inner), safe_mode=False)
    kinds = {
        # CVE-2025-9906 as published: switch safe mode off from inside the config (Keras calls the layer while
        # rebuilding the model), then load a second model, whose Lambda bytecode writes the marker
        "safe_mode_switch": (
            [
                _lambda_calling(
                    "switch",
                    _function("keras.src.backend.common.global_state", "set_global_attribute"),
                    "safe_mode_saving",
                    value=False,
                ),
                load_inner,
            ],
            "the function 'keras.src.backend.common.global_state.set_global_attribute' (and ",
        ),
        # the same chain through the public switch the CVE-2025-9906 advisory names (a Lambda passes it one
        # argument, which it does not take, so Keras 3.10 fails here; the entry is refused by name all the same)
        "enable_unsafe": (
            [_lambda_calling("switch", _function("keras.config", "enable_unsafe_deserialization"), None), load_inner],
            "the function 'keras.config.enable_unsafe_deserialization'",
        ),
        "load_model": ([load_inner], "the function 'keras.models.load_model'"),
        # CVE-2025-8747: keras.utils.get_file writes a fetched file where the config says (a file:// origin here)
        "get_file": (
            [
                _lambda_calling(
                    "fetch",
                    _function("keras.utils", "get_file"),
                    marker.name,
                    origin=inner.as_uri(),
                    cache_dir=str(folder),
                    cache_subdir=".",
                )
            ],
            "the function 'keras.utils.get_file'",
        ),
        "bytecode": ([bytecode], "marshalled Python bytecode ('__lambda__')"),
        # CVE-2025-1550 shape: any module's callable named as a layer class
        "os_system": (
            [{"module": "os", "class_name": "system", "config": {"command": shell}, "name": "x"}],
            "class 'system' from module 'os'",
        ),
        "builtins_exec": (
            [{"module": "builtins", "class_name": "exec", "config": {"source": shell}, "name": "x"}],
            "class 'exec' from module 'builtins'",
        ),
    }
    layers, named = kinds[kind]
    return _plant(base, folder / "evil.keras", layers), marker, named


EXPLOITS = ["safe_mode_switch", "enable_unsafe", "load_model", "get_file", "bytecode", "os_system", "builtins_exec"]


@pytest.mark.parametrize("kind", EXPLOITS)
def test_published_exploit_shapes_are_refused_with_one_line_and_nothing_runs(kind, base, tmp_path):
    evil, marker, named = _exploit(kind, base, tmp_path)
    with pytest.raises(ModelError) as refused:
        load_model(evil)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{evil} is not a loadable Keras model for MarsIce: its config.json names ")
    assert named in message
    assert "only the layer classes MarsIce itself builds load" in message
    assert not marker.exists()


def test_the_bytecode_payload_really_runs_when_keras_is_told_to_be_unsafe(tmp_path):
    """The fixtures carry live code: with safe mode off, plain Keras runs the payload and writes the marker."""
    marker, _, inner = _bytecode_payload(tmp_path)
    with pytest.raises(ModelError, match="Lambda layer's marshalled Python bytecode"):
        load_model(inner)
    assert not marker.exists()
    keras_module().saving.load_model(inner, safe_mode=False)
    assert marker.exists()


def test_a_refused_model_never_reaches_keras(base, tmp_path):
    """The check reads only the zip's JSON: in a fresh process, refusing a crafted file imports no Keras."""
    evil, marker, _ = _exploit("safe_mode_switch", base, tmp_path)
    code = (
        "import sys\n"
        "from marsice_plugin.cnn.model import load_model\n"
        "from marsice_plugin.errors import ModelError\n"
        f"try:\n    load_model({str(evil)!r})\nexcept ModelError as exc:\n    print('refused:', exc)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    refused, modules = proc.stdout.strip().splitlines()
    assert refused.startswith(f"refused: {evil} is not a loadable Keras model for MarsIce")
    assert modules == "[]"
    assert not marker.exists()


def test_cli_detect_with_a_crafted_model_exits_2_with_one_line_and_writes_nothing(
    base, tmp_path, small_product, marsice_cli
):
    evil, marker, _ = _exploit("safe_mode_switch", base, tmp_path)
    out, quicklook = tmp_path / "out.gpkg", tmp_path / "q.png"
    proc = marsice_cli(
        "detect", str(small_product.label_path), "-o", str(out), "--quicklook", str(quicklook), "--model", str(evil)
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"marsice: error: {evil} is not a loadable Keras model for MarsIce")
    assert "'keras.src.backend.common.global_state.set_global_attribute'" in lines[0]
    assert not marker.exists() and not out.exists() and not quicklook.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.keras", "inner.keras"]


def _members(base: Path, out: Path, members: dict[str, bytes | None]) -> Path:
    """``base`` with members replaced (bytes), removed (None) or added."""
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename not in members:
                dst.writestr(info.filename, src.read(info))
        for name, data in members.items():
            if data is not None:
                dst.writestr(name, data)
    return out


def test_archives_that_are_not_shaped_like_a_marsice_model_are_refused(base, tmp_path):
    def refused(path: Path) -> str:
        with pytest.raises(ModelError) as exc:
            load_model(path)
        assert "\n" not in str(exc.value)
        return str(exc.value)

    extra = _members(base, tmp_path / "extra.keras", {"assets/../../evil.py": b"print('hi')"})
    assert "it holds 'assets/../../evil.py', and a MarsIce model holds only config.json" in refused(extra)
    npz = _members(base, tmp_path / "npz.keras", {"model.weights.h5": None, "model.weights.npz": b"PK"})
    assert "it holds 'model.weights.npz'" in refused(npz)
    no_weights = _members(base, tmp_path / "none.keras", {"model.weights.h5": None})
    assert "it holds 0 copies of model.weights.h5, a MarsIce model exactly one" in refused(no_weights)
    # a config.json that unpacks past the limit (a few KiB in the zip)
    with zipfile.ZipFile(base) as archive:
        padded = archive.read("config.json") + b" " * (MEMBER_LIMITS["config.json"] + 1024 * 1024)
    bomb = _members(base, tmp_path / "bomb.keras", {"config.json": padded})
    assert bomb.stat().st_size < 200_000
    assert "its config.json unpacks to 9.0 MiB, more than the 8 MiB MarsIce accepts" in refused(bomb)
    bad_json = _members(base, tmp_path / "json.keras", {"config.json": b"{" * 100_000})
    assert "is not a loadable Keras model (config.json is not JSON" in refused(bad_json)
    nested = _members(base, tmp_path / "deep.keras", {"config.json": json.dumps(json.loads("[" * 80 + "]" * 80))})
    assert "objects nested more than 64 deep" in refused(nested)
    odd = _members(base, tmp_path / "odd.keras", {"config.json": json.dumps({"class_name": ["Dense"], "module": 1})})
    assert "names class ['Dense'] from module 1;" in refused(odd)
    folder = tmp_path / "folder.keras"
    (folder / "config.json").parent.mkdir()
    (folder / "config.json").write_text("{}")
    assert refused(folder) == f"{folder} is not a loadable Keras model (a folder or special file, not a .keras file)"
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    assert refused(text) == f"{text} is not a loadable Keras model (not a zip archive, which every .keras file is)"


def test_every_shipped_model_and_every_builder_output_passes_the_check(tmp_path):
    """The allow-list is what MarsIce builds: the shipped models, a trained model, an ensemble, a compiled save."""
    from marsice_plugin.cnn.ensemble import build_ensemble
    from marsice_plugin.cnn.train import save_for_inference

    shipped = sorted((REPO / "models").glob("*.keras"))
    assert len(shipped) == 6  # five chunk models and the second stage's marsice_patch_64.keras
    for path in shipped:
        check_archive(path)
    fine, coarse = _tiny(32), _tiny(16)
    save_for_inference(build_ensemble([fine, coarse]), tmp_path / "ensemble.keras")
    assert model_input_size(load_model(tmp_path / "ensemble.keras")) == 32
    compile_model(coarse).save(tmp_path / "compiled.keras")
    with zipfile.ZipFile(tmp_path / "compiled.keras") as archive:
        assert json.loads(archive.read("config.json"))["compile_config"]["optimizer"]["class_name"] == "Adam"
    assert model_input_size(load_model(tmp_path / "compiled.keras")) == 16
