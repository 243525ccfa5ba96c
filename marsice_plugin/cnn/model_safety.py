"""Check a ``.keras`` archive before Keras reads it: only what MarsIce itself builds may load.

A ``.keras`` file is a zip whose ``config.json`` names every object to rebuild by module and class, and
Keras imports and calls what it names. ``safe_mode=True`` only refuses a Lambda layer's marshalled
bytecode, and it has been bypassed release after release: CVE-2025-1550 (a config naming any module's
function), CVE-2025-8747 and CVE-2025-9906 (a Lambda layer whose *function reference* calls Keras's own
``keras.utils.get_file``, ``keras.config.enable_unsafe_deserialization`` or ``keras.models.load_model``
with ``safe_mode=False`` on a second, code-carrying model), and later ones through other Keras classes.
A newer Keras closes the known ones; this check closes the class of bug for MarsIce, whose models are
built by :func:`.model.build_model` and :func:`.ensemble.build_ensemble` from a dozen Keras layers:

* the archive holds exactly ``config.json``, ``metadata.json`` and ``model.weights.h5``, of sane sizes
  (no ``assets/``: Keras writes those to disk, and MarsIce models have none);
* every object in ``config.json`` (anything with a ``class_name``, ``module`` or ``registered_name``)
  is one of :data:`ALLOWED_CLASSES`, the classes found in the configs of the shipped models and of
  models those two builders produce;
* nothing is a function reference (``"class_name": "function"``), Lambda bytecode (``__lambda__``),
  or a string naming the loaders and switches the published exploits called.

Only the JSON is read (no Keras import), so a refused file never reaches Keras at all.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ..errors import ModelError

MiB = 1024 * 1024

#: Archive members a MarsIce model holds, with the most each may unpack to. The shipped ensemble's
#: config.json is 68 KiB and its weights 21 MiB; an ensemble of ten 1024-px members stays far below.
MEMBER_LIMITS = {"config.json": 8 * MiB, "metadata.json": 64 * 1024, "model.weights.h5": 2048 * MiB}

_LAYERS = (
    "InputLayer",
    "Conv2D",
    "SeparableConv2D",
    "BatchNormalization",
    "Activation",
    "MaxPooling2D",
    "Add",
    "GlobalAveragePooling2D",
    "Dropout",
    "Dense",
    "AveragePooling2D",  # ensemble: a smaller member's block-averaged input
    "Average",  # ensemble: the mean of the members
    "Maximum",  # second-stage union: the larger of its members' mapped probabilities (patches/union.py)
)

#: (module, class_name) of every object serialised in a model MarsIce builds (Keras 3.10 to 3.15 write
#: the same names). ``Adam`` appears only in a model saved compiled (``compile_model``), and MarsIce
#: loads with ``compile=False``, but such a file is still one of its own.
ALLOWED_CLASSES: frozenset[tuple[str | None, str]] = frozenset(
    {("keras.layers", name) for name in _LAYERS}
    | {
        ("keras.src.models.functional", "Functional"),
        ("keras.initializers", "GlorotUniform"),
        ("keras.initializers", "Zeros"),
        ("keras.initializers", "Ones"),
        ("keras", "DTypePolicy"),
        (None, "__keras_tensor__"),
        ("keras.optimizers", "Adam"),
    }
)

#: Keys that only Lambda-like layers have: a function to call and the arguments to call it with.
_FUNCTION_KEYS = frozenset({"function", "function_type", "arguments", "output_shape_type"})

#: Names the published exploits made Keras call; no MarsIce model contains any of them, even as a layer name.
_DENIED_NAMES = (
    "load_model",
    "get_file",
    "enable_unsafe_deserialization",
    "set_global_attribute",
    "safe_mode",
    "keras.saving",
    "keras.config",
    "keras.utils",
    "keras.models",
    "__lambda__",
)

_MAX_DEPTH = 64


def _short(value: Any) -> str:
    """A config value for the one-line message: ``repr`` (so no newline escapes), cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Walk:
    """Collects what is off the allow-list in a parsed config, most dangerous first in :meth:`worst`."""

    def __init__(self) -> None:
        self.findings: list[tuple[int, str]] = []

    def visit(self, node: Any, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.findings.append((2, f"objects nested more than {_MAX_DEPTH} deep"))
            return
        if isinstance(node, dict):
            self._object(node)
            for key, value in node.items():
                self._string(key)
                if key in _FUNCTION_KEYS:
                    self.findings.append((1, f"a Lambda-style {_short(key)} entry"))
                self.visit(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                self.visit(value, depth + 1)
        elif isinstance(node, str):
            self._string(node)

    def _object(self, node: dict) -> None:
        if not {"class_name", "module", "registered_name"} & node.keys():
            return
        module, name, registered = node.get("module"), node.get("class_name"), node.get("registered_name")
        if name == "__lambda__":
            self.findings.append((0, "a Lambda layer's marshalled Python bytecode ('__lambda__')"))
        elif name == "function" or registered == "function":
            target = node.get("config")
            self.findings.append((0, f"a reference to the function {_short(f'{module}.{target}')}"))
        elif not isinstance(name, str) or not isinstance(module, str | None) or (module, name) not in ALLOWED_CLASSES:
            self.findings.append((2, f"class {_short(name)} from module {_short(module)}"))
        elif registered not in (None, name):
            self.findings.append((2, f"registered name {_short(registered)} for class {_short(name)}"))

    def _string(self, text: Any) -> None:
        if isinstance(text, str) and any(denied in text for denied in _DENIED_NAMES):
            self.findings.append((1, f"the name {_short(text)}"))

    def worst(self) -> str | None:
        if not self.findings:
            return None
        rank = min(r for r, _ in self.findings)
        first = next(text for r, text in self.findings if r == rank)
        more = len(self.findings) - 1
        return first + (f" (and {more} more entr{'y' if more == 1 else 'ies'} MarsIce does not build)" if more else "")


def config_offence(config: Any) -> str | None:
    """What in a parsed ``config.json`` MarsIce does not build (most dangerous first), or None if nothing."""
    walk = _Walk()
    walk.visit(config)
    return walk.worst()


def _read_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Any:
    limit = MEMBER_LIMITS[info.filename]
    with archive.open(info) as member:
        raw = member.read(limit + 1)
    if len(raw) > limit:
        raise ModelError(f"{path}: its {info.filename} is larger than the {limit // 1024} KiB a MarsIce model's is")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"{path} is not a loadable Keras model ({info.filename} is not JSON: {exc})") from exc


def check_archive(path: Path) -> None:
    """Refuse (:class:`ModelError`, one line) a ``.keras`` file that holds anything MarsIce does not build.

    Reads the zip's directory and its two JSON members only; never imports Keras.
    """
    if not path.is_file():
        raise ModelError(f"{path} is not a loadable Keras model (a folder or special file, not a .keras file)")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a loadable Keras model (not a zip archive, which every .keras file is)")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            for name in names:
                if name not in MEMBER_LIMITS:
                    raise ModelError(
                        f"{path} is not a loadable Keras model for MarsIce: it holds {_short(name)}, and a MarsIce "
                        f"model holds only {', '.join(MEMBER_LIMITS)}"
                    )
            for name in MEMBER_LIMITS:
                if names.count(name) != 1:
                    raise ModelError(
                        f"{path} is not a loadable Keras model: it holds {names.count(name)} copies of {name}, "
                        "a MarsIce model exactly one"
                    )
            for info in infos:
                limit = MEMBER_LIMITS[info.filename]
                if info.file_size > limit:
                    raise ModelError(
                        f"{path} is not a loadable Keras model: its {info.filename} unpacks to "
                        f"{info.file_size / MiB:.1f} MiB, more than the {limit / MiB:g} MiB MarsIce accepts"
                    )
            by_name = {info.filename: info for info in infos}
            metadata = _read_json(archive, by_name["metadata.json"], path)
            if not isinstance(metadata, dict) or not all(
                isinstance(v, str | int | float | bool) or v is None for v in metadata.values()
            ):
                raise ModelError(f"{path} is not a loadable Keras model (metadata.json is not a flat JSON object)")
            config = _read_json(archive, by_name["config.json"], path)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:  # encrypted, odd codecs
        raise ModelError(f"{path} is not a loadable Keras model (damaged zip archive: {exc})") from exc
    for member, parsed in (("config.json", config), ("metadata.json", metadata)):
        offence = config_offence(parsed)
        if offence:
            raise ModelError(
                f"{path} is not a loadable Keras model for MarsIce: its {member} names {offence}; only the layer "
                "classes MarsIce itself builds load (no Lambda layers, no function references), so a model file "
                "never runs code"
            )
