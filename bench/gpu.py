"""The GPU check of the CNN issue, prepared here to run in one short call on a lent GPU machine.

Not a test: it times things. Two steps.

1. **Here** (CPU, TensorFlow): ``reference`` renders held-out-style chunks the way detect reads them (level-2
   JPEG2000 decode, half with strip-edge no-data bands; seeds 600000+, never trained on), scores them with the
   default model in float32 on the CPU and saves inputs and probabilities::

       .venv/bin/python bench/gpu.py reference -o bench/gpu_reference.npz

2. **On the GPU machine** (its image has PyTorch but no TensorFlow; Keras 3 loads the same ``.keras`` file on the
   ``torch`` backend, see :func:`marsice_plugin.cnn.model.keras_module`): ``run`` reports

   * agreement of the GPU's float32 probabilities with the CPU reference (target: max |Δp| ≤ 1e-3) and of
     mixed_float16 with float32 on the thresholded decision (the issue asks for the decision, since that is
     what a user acts on);
   * chunks/s of the paper's net at 1024² (and of the shipped 256² model) over a batch-size sweep, float32
     and mixed_float16, after warm-up, on inputs already on the host (the bare model's ceiling);

   and writes them as JSON::

       KERAS_BACKEND=torch python3 bench/gpu.py run --reference bench/gpu_reference.npz --json $OUT/gpu.json

   Keras and its two small missing dependencies travel as wheels (1.9 MB; checked 2026-11-29 that these are all
   the machine lacks): here, ``echo /.whl/ >> .git/info/exclude`` and ``.venv/bin/python -m pip download --no-deps
   --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform
   manylinux_2_17_x86_64 -d .whl keras==3.10.0 namex optree``; there, with ``.whl`` carried, start the command with
   ``python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site``.

``run`` also works on a CPU (smaller sweep with ``--batches 1 2 --sizes 256``), which is how it is checked here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: detect's default model, named here rather than through ``model_registry.default_model_path()``: that module
#: pulls in the product readers, which the GPU machine (Keras and numpy only) has no use for.
DEFAULT_MODEL = REPO / "models" / "marsice_xception_256_level2.keras"
REFERENCE_SEED = 600_000


def reference(args: argparse.Namespace) -> int:
    """Inputs and CPU float32 probabilities of the default model, saved for the GPU run."""
    from marsice_plugin.cnn.model import load_model, model_input_size
    from marsice_plugin.cnn.training_data import synthetic_chunks
    from marsice_plugin.model_registry import card_read_level

    model = load_model(args.model)
    level = card_read_level(args.model)
    x, y, _ = synthetic_chunks(
        args.count, seed=REFERENCE_SEED, input_size=model_input_size(model), read_level=level, edge_nodata=0.5
    )
    p = np.asarray(model.predict(x, batch_size=16, verbose=0)).reshape(-1)
    np.savez_compressed(args.output, x=x.astype(np.float32), y=y, p=p.astype(np.float64), read_level=level)
    print(f"{args.output}: {len(p)} chunks read at level {level}, {int(y.sum())} with ice; CPU float32 p saved")
    return 0


def _probabilities(model: object, x: np.ndarray) -> np.ndarray:
    """The model's probabilities for ``x`` in four batches, through detect's own ``predict``."""
    from marsice_plugin.cnn.inference import predict

    return np.concatenate([predict(model, batch) for batch in np.array_split(x, 4)])


def _rate(model: object, x: np.ndarray, repeat: int) -> float:
    model.predict_on_batch(x)  # compile / autotune
    model.predict_on_batch(x)
    t = time.perf_counter()
    for _ in range(repeat):
        np.asarray(model.predict_on_batch(x))
    return repeat * len(x) / (time.perf_counter() - t)


def run(args: argparse.Namespace) -> int:
    """Agreement with the CPU reference, then the batch-size sweep."""
    from marsice_plugin.cnn.model import build_model, keras_module, load_model, with_precision

    keras = keras_module()
    backend = keras.backend.backend()
    devices = _devices(backend)
    print(f"Keras {keras.__version__}, backend {backend}, devices: {devices}")
    out: dict = {"keras": keras.__version__, "backend": backend, "devices": devices}

    ref = np.load(args.reference)
    x, p_cpu = ref["x"], ref["p"]
    model = load_model(args.model)
    p32 = _probabilities(model, x)
    d32 = float(np.abs(p32 - p_cpu).max())
    agree32 = int(((p32 >= args.threshold) == (p_cpu >= args.threshold)).sum())
    mixed = with_precision(model, "mixed_float16")
    p16 = _probabilities(mixed, x)
    d16 = float(np.abs(p16 - p32).max())
    agree16 = int(((p16 >= args.threshold) == (p32 >= args.threshold)).sum())
    print(f"float32 here vs CPU reference: max |dp| {d32:.2e} (target <= 1e-3), decisions agree {agree32}/{len(x)}")
    print(f"mixed_float16 vs float32 here: max |dp| {d16:.2e}, decisions at {args.threshold} agree {agree16}/{len(x)}")
    out["agreement"] = {
        "chunks": len(x),
        "float32_vs_cpu_max_abs_dp": d32,
        "float32_vs_cpu_decisions_agree": agree32,
        "mixed_float16_vs_float32_max_abs_dp": d16,
        "mixed_float16_vs_float32_decisions_agree": agree16,
        "threshold": args.threshold,
    }

    sweep = []
    rng = np.random.default_rng(0)
    for size in args.sizes:
        net = model if size == 256 else build_model(input_size=size)
        for precision in ("float32", "mixed_float16"):
            m = with_precision(net, precision)
            for batch in args.batches:
                batch_x = rng.random((batch, size, size, 1), dtype=np.float32)
                try:
                    rate = _rate(m, batch_x, args.repeat)
                except Exception as exc:  # noqa: BLE001 - out of memory ends this size's sweep, not the run
                    print(f"{size}^2 {precision} batch {batch}: {type(exc).__name__}: {str(exc)[:120]}")
                    break
                mpx = rate * size * size / 1e6
                print(f"{size}^2 {precision:13s} batch {batch:3d}: {rate:8.1f} chunks/s ({mpx:8.1f} Mpx/s of input)")
                sweep.append({"size": size, "precision": precision, "batch": batch, "chunks_per_s": rate})
    out["sweep"] = sweep
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def _devices(backend: str) -> list[str]:
    """What the backend computes on, so a CPU fallback on the GPU machine is visible in the output."""
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] or ["cpu"]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices()]
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    r = sub.add_parser("reference", help="here: save inputs and CPU float32 probabilities")
    r.add_argument("-o", "--output", type=Path, default=REPO / "bench" / "gpu_reference.npz")
    r.add_argument("--count", type=int, default=32)
    r.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    g = sub.add_parser("run", help="on the GPU machine: agreement and batch-size sweep")
    g.add_argument("--reference", type=Path, default=REPO / "bench" / "gpu_reference.npz")
    g.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    g.add_argument("--sizes", type=int, nargs="+", default=[1024, 256])
    g.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    g.add_argument("--repeat", type=int, default=10)
    g.add_argument("--threshold", type=float, default=0.6)
    g.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    return reference(args) if args.step == "reference" else run(args)


if __name__ == "__main__":
    sys.exit(main())
