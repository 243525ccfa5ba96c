"""The frozen evaluation set and ``marsice evaluate``: a model beside the brightness baseline.

The evaluation set is defined by a versioned specification (``data/evaluation_set_v1.json``): scene
seeds, sizes, geometry and renderer settings, written down before the models it judges were trained
and never used for training or tuning (training draws seeds below
:data:`~marsice_plugin.cnn.training_data.EVALUATION_SEED_BASE`). Products are rendered on demand
into a cache folder, deterministically, so every evaluation of every model sees the same pixels.

Reported, on the same chunks: chunk-level accuracy, precision, recall, NPV and ROC-AUC of the model;
ROC-AUC of the brightness-threshold baseline; the paper's image-level summary (products with no chunk
at or above the threshold, with exactly one, with more than one) and image-level precision and
negative predictive value. The paper's figures (image-level precision 13.6 %, NPV 100 %) were measured
on real HiRISE images and are quoted only as context, never as a like-for-like comparison.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .cnn.metrics import brightness_baseline, roc_auc_interval, summary, wilson_interval
from .detect_defaults import is_flagged
from .progress import Reporter

SPEC_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_SET = "evaluation_set_v1"
PAPER_CONTEXT = (
    "paper (real HiRISE images, not comparable): image-level precision 13.6%, NPV 100% (16 of 16 'no ice' "
    "images right), bright-pixel anomalies read as ice in 5 of 38 images"
)


def load_spec(name: str = DEFAULT_SET) -> dict[str, Any]:
    """The frozen specification of an evaluation set."""
    path = SPEC_DIR / f"{name}.json"
    return json.loads(path.read_text())


@dataclass
class ChunkRecord:
    product_id: str
    truth: bool
    probability: float
    baseline: float


def entry_scene(spec: dict[str, Any], entry: dict[str, Any]) -> tuple[Any, Any]:
    """The scene configuration and product geometry of one product of a set's specification."""
    from .synthetic.product_writer import ProductGeometry
    from .synthetic.scene import SceneConfig

    settings = {**spec["scene_defaults"], **entry["scene"], "seed": entry["seed"]}
    settings["ice_contrast"] = tuple(settings["ice_contrast"])
    settings["ice_at"] = tuple(tuple(patch) for patch in settings.get("ice_at", ()))
    return SceneConfig(**settings), ProductGeometry(**entry["geometry"])


def render_set(spec: dict[str, Any], cache: Path, limit: int | None = None) -> list[Any]:
    """Render the set's products into ``cache`` (deterministic: the same pixels every time)."""
    from .synthetic.product_writer import write_sample_product

    products = []
    for entry in spec["products"][:limit]:
        config, geometry = entry_scene(spec, entry)
        products.append(write_sample_product(cache / spec["name"] / f"seed_{entry['seed']}", config, geometry))
    return products


def render_without_hot_pixels(spec: dict[str, Any], entry: dict[str, Any], cache: Path) -> Any:
    """The same product with no planted hot pixels: its twin for telling what the hot pixels caused.

    The renderer plants hot pixels last, from the end of its random stream, so the twin's DNs equal
    the product's everywhere except at the hot pixels, which keep the scene's own values (tested).
    """
    from .synthetic.product_writer import write_sample_product

    config, geometry = entry_scene(spec, entry)
    clean = replace(config, n_hot_special=0, n_hot_ordinary=0)
    return write_sample_product(cache / spec["name"] / f"seed_{entry['seed']}_without_hot_pixels", clean, geometry)


def patch_recall(
    ice: np.ndarray, scores: list[Any], threshold: float, grid: int, min_pixels: int = 16
) -> dict[str, Any]:
    """Recall on truth patches cut by the paper's chunk grid versus patches lying inside one grid cell.

    A truth patch (8-connected ice pixels) is *found* when a chunk at or above the threshold holds at
    least ``min_pixels`` of it (all of it when the patch is smaller), whatever the chunking used for
    scoring. It is *cut* when the paper's non-overlapping ``grid``-pixel chunks split it: those are the
    patches the paper saw "cut in half at chunk edges". The target is cut-patch recall within 5 points
    of the rest.
    """
    from scipy import ndimage

    labels, n = ndimage.label(ice, structure=np.ones((3, 3), bool))
    flagged = [s.window for s in scores if is_flagged(s.probability, threshold)]
    found = {"cut": [0, 0], "whole": [0, 0]}
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        rows, cols = sl
        cut = rows.start // grid != (rows.stop - 1) // grid or cols.start // grid != (cols.stop - 1) // grid
        mask = labels[sl] == k
        need = min(min_pixels, int(mask.sum()))
        hit = False
        for w in flagged:
            r0, r1 = max(rows.start, w.row_off), min(rows.stop, w.row_off + w.height)
            c0, c1 = max(cols.start, w.col_off), min(cols.stop, w.col_off + w.width)
            if r0 < r1 and c0 < c1 and (labels[r0:r1, c0:c1] == k).sum() >= need:
                hit = True
                break
        entry = found["cut" if cut else "whole"]
        entry[0] += int(hit)
        entry[1] += 1
    return {key: {"found": v[0], "patches": v[1]} for key, v in found.items()}


def _recall_of(counts: dict[str, int]) -> float:
    return counts["found"] / counts["patches"] if counts["patches"] else float("nan")


def evaluate(
    model_path: Path,
    cache: Path,
    spec_name: str = DEFAULT_SET,
    threshold: float | None = None,
    limit: int | None = None,
    reporter: Reporter | None = None,
    overlap: int | None = 0,
    read_level: int | None = None,
    search: str = "flagged",
    patch_model: Path | None = None,
    search_threshold: float | None = None,
) -> dict[str, Any]:
    """Score every chunk of the evaluation set with the model and the baseline; return the report.

    ``threshold`` None is the model card's, as detect (0.6 without one). ``overlap`` is the chunk
    overlap used for scoring (0: the paper's tiling; None: the grid module's default, which keeps
    every patch up to 32 m whole in some chunk); ``read_level`` is the JPEG2000 resolution level
    decoded (see :func:`marsice_plugin.model_registry.read_scale`; None: the model card's). Beside the
    paper's metrics the report holds two of its failure modes measured directly: chunks flagged without any
    ice that contain planted hot pixels (and how many of them the hot pixels caused, from the
    product's hot-pixel-free twin), and recall on patches cut by the paper's chunk grid. ``second_stage`` holds
    what the ``ice_candidates`` layer gives (:mod:`marsice_plugin.patches.metrics`): polygon precision and
    planted-patch recall at the second stage's threshold, and average precision of ``rank`` beside ordering by area
    and by chunk probability, with candidates searched as ``search`` and ``search_threshold`` say (detect's
    ``--search`` and ``--search-threshold``).
    """
    from .cnn.model import load_model, model_input_size
    from .detection import DetectOptions, detect_product, load_stage
    from .model_registry import model_read_level, model_threshold
    from .patches.metrics import RankingTally
    from .product import open_product
    from .truth import chunk_truth

    reporter = reporter or Reporter("quiet")
    threshold = model_threshold(threshold, model_path)
    spec = load_spec(spec_name)
    reporter.progress(0, f"rendering {spec['name']}")
    products = render_set(spec, cache, limit)
    model = load_model(model_path)
    options = DetectOptions(
        model_path=Path(model_path),
        threshold=threshold,
        overlap=overlap,
        read_level=read_level,
        patch_model_path=patch_model,
        all_candidates=True,  # every outline scored: the tally applies the threshold itself
        search=search,
        search_threshold=search_threshold,
    )
    tally = RankingTally(load_stage(patch_model).threshold)
    read_level = model_read_level(options, model_input_size(model))
    options = replace(options, read_level=read_level)
    records: list[ChunkRecord] = []
    images = []
    hot_false_flags = 0
    hot_caused = 0
    patches = {"cut": {"found": 0, "patches": 0}, "whole": {"found": 0, "patches": 0}}
    outlines = {"candidates": 0, "on_ice": 0, "patches": 0, "patches_outlined": 0}
    searched_from: float | None = None
    for i, (entry, sample) in enumerate(zip(spec["products"], products, strict=False), start=1):
        with open_product(sample.label_path) as product:
            found = detect_product(product, model, options)
            searched_from = found.search_threshold  # as detect resolved it (None when every chunk is searched)
            scores = found.chunks
            truth = chunk_truth(sample.scene.ice, scores)
            with_hot: list[tuple[int, int]] = []
            for s in scores:
                if s.skipped or s.probability is None:
                    continue
                # the rendered DNs are the product's pixels exactly (lossless JP2): no second decode needed
                rows, cols = s.window.slices
                grey = product.pixel_scale.to_dn(sample.scene.dn[rows, cols])  # the DN scale the model reads
                base = float(brightness_baseline(grey[None] / product.valid_max)[0])
                is_ice = truth[(s.chunk_row, s.chunk_col)]
                records.append(ChunkRecord(sample.product_id, is_ice, s.probability, base))
                if is_flagged(s.probability, threshold) and not is_ice and sample.scene.hot[rows, cols].any():
                    with_hot.append((s.chunk_row, s.chunk_col))
            hot_false_flags += len(with_hot)
            hot_caused += _flags_caused_by_hot_pixels(spec, entry, cache, model, options, with_hot)
            for key, value in candidate_truth(product, sample.scene.ice, found.candidates).items():
                outlines[key] += value
            tally.add(product, sample.scene.ice, found.candidates)
            for key, counts in patch_recall(sample.scene.ice, scores, threshold, options.chunk_size).items():
                patches[key]["found"] += counts["found"]
                patches[key]["patches"] += counts["patches"]
            images.append({"product_id": sample.product_id, "truth": any(truth.values()), "above": len(found.above)})
        reporter.progress(100 * i / len(products), f"product {i}/{len(products)}")
    y = np.array([r.truth for r in records])
    p = np.array([r.probability for r in records])
    b = np.array([r.baseline for r in records])
    cut, whole = _recall_of(patches["cut"]), _recall_of(patches["whole"])
    return {
        "evaluation_set": spec["name"],
        "model": Path(model_path).name,
        "threshold": threshold,
        "overlap": "auto" if overlap is None else overlap,
        "read_level": read_level,
        "chunks": chunk_summary(y, p, threshold, np.array([r.product_id for r in records])),
        "baseline_roc_auc": summary(y, b, 0.5)["roc_auc"],
        "images": image_summary(images),
        "failure_modes": {
            "false_flags_with_hot_pixels": hot_false_flags,
            "false_flags_caused_by_hot_pixels": hot_caused,
            "patches_cut_by_grid": {**patches["cut"], "recall": cut},
            "patches_inside_a_chunk": {**patches["whole"], "recall": whole},
            "recall_gap_points": 100.0 * (whole - cut),
        },
        "candidates": {
            **outlines,
            "precision": outlines["on_ice"] / outlines["candidates"] if outlines["candidates"] else float("nan"),
            "patch_recall": outlines["patches_outlined"] / outlines["patches"] if outlines["patches"] else float("nan"),
        },
        "second_stage": {
            **tally.report(),
            "search": search,
            "search_threshold": searched_from,
        },
        "paper_context": PAPER_CONTEXT,
        "_curve": {"y": y.tolist(), "p": p.tolist(), "baseline": b.tolist()},
    }


def candidate_truth(product: Any, ice: np.ndarray, candidates: list[Any]) -> dict[str, int]:
    """Candidate outlines (as detect draws them in the flagged chunks) against the truth ice.

    Counts the candidates, those touching at least one truth ice pixel, the truth patches (8-connected)
    and those touched by a candidate: the polygon-level precision and recall a geologist meets in the
    ``ice_candidates`` layer, which the chunk metrics do not show.
    """
    import shapely
    from scipy import ndimage

    labels, n_patches = ndimage.label(ice, structure=np.ones((3, 3), bool))
    counts = {"candidates": 0, "on_ice": 0, "patches": int(n_patches), "patches_outlined": 0}
    inverse = ~product.transform
    touched: set[int] = set()
    for candidate in candidates:
        x0, y0, x1, y1 = candidate.geometry.bounds
        cols, rows = inverse @ (np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        r0, r1 = max(0, int(rows.min())), min(ice.shape[0], int(np.ceil(rows.max())) + 1)
        c0, c1 = max(0, int(cols.min())), min(ice.shape[1], int(np.ceil(cols.max())) + 1)
        rr, cc = np.mgrid[r0:r1, c0:c1]
        px, py = product.transform @ (cc + 0.5, rr + 0.5)
        inside = shapely.contains_xy(candidate.geometry, px, py)
        hit = np.unique(labels[r0:r1, c0:c1][inside])
        hit = hit[hit > 0]
        counts["candidates"] += 1
        counts["on_ice"] += int(hit.size > 0)
        touched.update(int(h) for h in hit)
    counts["patches_outlined"] = len(touched)
    return counts


def _flags_caused_by_hot_pixels(
    spec: dict[str, Any], entry: dict[str, Any], cache: Path, model: Any, options: Any, flagged: list[tuple[int, int]]
) -> int:
    """How many of these ice-free flagged chunks fall below the threshold once the hot pixels are gone.

    A chunk flagged without ice that holds hot pixels may be flagged for something else (bright dust,
    say); scoring the product's hot-pixel-free twin the same way tells the two apart. This is the
    paper's "bright pixel anomalies read as ice" failure, measured as a cause, not a coincidence.
    """
    if not flagged:
        return 0
    from .detection import score_chunks
    from .product import open_product

    twin = render_without_hot_pixels(spec, entry, cache)
    with open_product(twin.label_path) as product:
        twin_scores = score_chunks(product, model, options, Reporter("quiet"))
    scores = {(s.chunk_row, s.chunk_col): s.probability for s in twin_scores}
    return sum(1 for key in flagged if (scores.get(key) or 0.0) < options.threshold)


def chunk_summary(y: np.ndarray, p: np.ndarray, threshold: float, products: np.ndarray | None) -> dict[str, Any]:
    """Chunk-level metrics with a 95 % interval of ROC-AUC, bootstrapped over products when known.

    The interval resamples whole products (their chunks are not independent; see
    :func:`marsice_plugin.cnn.metrics.roc_auc_interval`) and is recorded with what it resampled.
    """
    report: dict[str, Any] = summary(y, p, threshold)
    report["roc_auc_ci95"] = list(roc_auc_interval(y, p, products))
    report["roc_auc_ci95_resamples"] = "chunks" if products is None else "products"
    return report


def image_summary(images: list[dict[str, Any]]) -> dict[str, Any]:
    """The paper's image-level summary: categories by chunks above the threshold, precision and NPV."""
    category = {"none": 0, "one": 0, "several": 0}
    tp = fp = tn = fn = 0
    for im in images:
        category["none" if im["above"] == 0 else "one" if im["above"] == 1 else "several"] += 1
        flagged = im["above"] > 0
        tp += flagged and im["truth"]
        fp += flagged and not im["truth"]
        tn += (not flagged) and not im["truth"]
        fn += (not flagged) and im["truth"]
    return {
        "count": len(images),
        "with_ice": int(sum(im["truth"] for im in images)),
        "categories": category,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "npv": tn / (tn + fn) if tn + fn else float("nan"),
        "flagged": tp + fp,
        "flagged_with_ice": tp,
        "called_ice_free": tn + fn,
        "called_ice_free_right": tn,
        # a dozen images pin these down only loosely: say how loosely (Wilson, 95 %)
        "precision_ci95": list(wilson_interval(tp, tp + fp)),
        "npv_ci95": list(wilson_interval(tn, tn + fn)),
    }


def evaluate_labelled(
    model_path: Path,
    data: Path,
    threshold: float | None = None,
    label_field: str = "label",
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """The same chunk-level report on labelled chunks (folders ``0/`` + ``1/`` or a labelled tile index).

    A tile index also names each chunk's product, so the paper's image-level summary is reported too.
    """
    from .cnn.chunk_data import load_labelled
    from .cnn.model import load_model, model_input_size
    from .detect_defaults import batch_size_for
    from .model_registry import model_threshold

    reporter = reporter or Reporter("quiet")
    threshold = model_threshold(threshold, model_path)
    model = load_model(model_path)
    reporter.progress(5, f"reading labelled chunks from {data}")
    chunks = load_labelled(Path(data), model_input_size(model), label_field)
    reporter.progress(40, f"scoring {len(chunks.y)} chunks")
    # detect's batch size: as fast, and its memory (detect_defaults.BATCH_PIXELS)
    size = model_input_size(model)
    p = np.asarray(model.predict(chunks.x, batch_size=batch_size_for(size), verbose=0)).reshape(-1)
    b = brightness_baseline(chunks.x)
    y = chunks.y.astype(bool)
    products = _products_of(chunks.files, Path(data))
    report: dict[str, Any] = {
        "evaluation_set": str(data),
        "model": Path(model_path).name,
        "threshold": threshold,
        "chunks": chunk_summary(y, p, threshold, np.array(products) if products else None),
        "baseline_roc_auc": summary(y, b, 0.5)["roc_auc"],
        "paper_context": PAPER_CONTEXT,
        "_curve": {"y": y.tolist(), "p": p.tolist(), "baseline": b.tolist()},
    }
    if products:
        images = []
        for pid in sorted(set(products)):
            sel = [i for i, q in enumerate(products) if q == pid]
            images.append(
                {"product_id": pid, "truth": bool(y[sel].any()), "above": int(is_flagged(p[sel], threshold).sum())}
            )
        report["images"] = image_summary(images)
    return report


def _products_of(files: list[str], data: Path) -> list[str]:
    """Product id of each chunk file of a tile index (``ID_tiles/rRRR_cCCC.tif``); [] for folders."""
    if data.suffix.lower() != ".gpkg":
        return []
    return [Path(f).parent.name.removesuffix("_tiles") for f in files]


def precision_recall_png(report: dict[str, Any], path: Path) -> Path:
    """Precision-recall curves of the model and the baseline on the evaluation chunks."""
    import warnings

    warnings.filterwarnings("ignore", message="Unable to import Axes3D")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(report["_curve"]["y"], bool)
    fig, ax = plt.subplots(figsize=(5, 4))
    for key, label in (("p", "CNN"), ("baseline", "brightness baseline")):
        scores = np.asarray(report["_curve"][key])
        order = np.argsort(-scores)
        hits = np.cumsum(y[order])
        precision = hits / np.arange(1, len(y) + 1)
        recall = hits / max(1, y.sum())
        ax.plot(recall, precision, label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{report['model']} on {report['evaluation_set']}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
