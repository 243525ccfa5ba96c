"""How a model fares on real HiRISE pixels, and on one scene in six containers, beside its generated-scene figures.

    .venv/bin/python bench/real_pixels.py                    # the default model
    .venv/bin/python bench/real_pixels.py --fast             # the --fast model
    .venv/bin/python bench/real_pixels.py MODEL.keras --skip-v3

Prints, in one run, for one model at its card's threshold:

1. **Ice-free real tiles and chunks flagged.** Tiles: the held-out split of ``../shared/realdata/landmark_tiles``
   (``split = heldout``: evaluation only, never training, tuning or model choice) whose ``frost_prior`` says no frost
   is expected (craters, dunes, streaks and plains at low latitude or out of season). Chunks: the ISIS3 test strips of
   ``images/`` (256 px wide) rearranged into 1024 × 1024 chunks (four 1024-row pieces side by side), the two RED5
   crops, and the UA browse of ESP_072719_1970 (17°N plains, no ice) cut into 1024 px chunks.
2. **Frost against ice-free tiles (ROC-AUC, information only).** Frost: ``frost_tiles`` labelled frost, the frosted
   Planet Four panels and the held-out bright dunes under northern-spring frost (``frost_likely``). Ice-free: the
   tiles of 1, the ``frost_tiles`` backgrounds and the defrosted Planet Four panel. Seasonal frost is not the
   remnant patches MarsIce looks for: the figure says whether the model responds to bright frost at all.
3. **Container invariance.** One generated 2048 px scene as its JPEG2000 with the PDS3 label, uint16 GeoTIFF with and
   without NBITS=10, 8-bit (DN / 4), 16-bit full range (DN × 64) and float32 I/F with ISIS NULL and saturation; the
   worst chunk probability difference to the labelled product, read as detect reads it (the card's level: GeoTIFFs
   have no JPEG2000 levels, so the reader computes the wavelet low-pass the decoder gives) and at level 0
   (normalisation alone). The float copy is scored twice: stretched from every pixel, as detect does for a raster
   this size (4 Mpx), and from the sample a float raster over
   :data:`~marsice_plugin.normalisation.STRETCH_WHOLE_PIXELS` gets (``float32_iof_isis, sampled stretch``; windows
   read at every 4th pixel, which on this scene span the whole image).
4. **Generated scenes.** ``evaluation_set_v1``..``v3`` (``--skip-v3``: v1 and v2 only) beside today's figures in
   ``models/NAME.evaluation*.json``.
5. **Patches planted into held-out real tiles** (``--sections planted``; evaluation only). The ice-free tiles of 1
   whose observation has a sun azimuth in the RDR index, each twice: with 1-3 ice patches planted at the anti-sun
   end of its real shadows, and with 1-2 bright decoys on the sunlit side of the same shadows
   (:func:`marsice_plugin.cnn.planting.plant`, seed :data:`PLANT_SEED`). Share of each flagged by the CNN and by
   detect (CNN and a kept patch), and the CNN's ROC-AUC of planted ice against decoys. **Not independent:** the fast
   member's real stage trained on patches planted the same way into open-split tiles; what is new here is the
   texture (held-out observations). It says whether the flow finds a patch the paper's criterion describes in real
   texture it never saw, not how it fares on real ice.

**How real pixels reach the model.** Tiles and chunks are 8-bit images: they are brought to the 10-bit DN scale by the
product rule for 8-bit integers (DN × 1023 / 255, :mod:`marsice_plugin.normalisation`). A 1024 px chunk is reduced to
the model's input by the same area average detect uses for a GeoTIFF
(:func:`marsice_plugin.cnn.preprocess.model_input`).
A tile (200-250 px of a reduced-resolution RDR, metres per pixel) is one chunk resized to the model's input
(bilinear): its ground scale is coarser than the 0.25-0.5 m chunks the model reads, which the figures cannot undo.
The real files are read from ``../shared/realdata`` and never copied into the project.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3  # noqa: F401  before TensorFlow, whose bundled SQLite lacks the R-tree module GeoPackages need
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from marsice_plugin.cnn.real_tiles import grey8, tile_input  # noqa: E402
from marsice_plugin.normalisation import DN_MAX, bits_scale  # noqa: E402
from marsice_plugin.synthetic.containers import write_containers  # noqa: E402

REAL = REPO.parent / "shared" / "realdata"
REAL_INDEX = REPO.parent / "shared" / "data" / "hirise_rdr_color_index.csv.gz"
#: The sun tiles are planted and turned by: its direction in the RDR image (since 2026-12-07), or with
#: ``--sun-frame north`` its azimuth from north, as before (``marsice_plugin.cnn.real_tiles.sun_azimuths``).
SUN_FRAME = "image"
#: ISIS 32-bit saturation values (LRS, LIS, HIS, HRS) put where the label's 1, 2, 1022, 1023 are.
#: The frozen sets and the overlap today's figures (models/NAME.evaluation*.json) were scored with.
#: Seed of the patches planted into held-out tiles (section 5); not a training seed (real_tiles uses --real-seed).
PLANT_SEED = 505
SETS = {"evaluation_set_v1": 0, "evaluation_set_v2": None, "evaluation_set_v3": 0}


def chunk_input(grey: np.ndarray, size: int) -> np.ndarray:
    """A chunk as detect prepares it: 8-bit → 10-bit DN scale, repaired, area-averaged to ``size``."""
    from marsice_plugin.cnn.preprocess import prepare

    dn = bits_scale(8, "8-bit chunk").to_dn(grey)
    valid = np.ones(dn.shape, dtype=bool)
    return prepare(dn, valid, ~valid, max(dn.shape), size, DN_MAX)[0]


def strip_chunks(grey: np.ndarray, chunk: int = 1024) -> list[np.ndarray]:
    """A narrow strip rearranged into ``chunk`` × ``chunk`` pieces: ``chunk // width`` row blocks side by side."""
    w = grey.shape[1]
    per = chunk // w
    pieces = [grey[r : r + chunk] for r in range(0, grey.shape[0] - chunk + 1, chunk)]
    return [np.hstack(pieces[i : i + per]) for i in range(0, len(pieces) - per + 1, per)]


def tiles(grey: np.ndarray, chunk: int = 1024) -> list[np.ndarray]:
    """Whole ``chunk`` px tiles of an image (an image smaller than a chunk is one chunk of its own size)."""
    h, w = grey.shape
    if h < chunk or w < chunk:
        return [grey]
    return [
        grey[r : r + chunk, c : c + chunk]
        for r in range(0, h - chunk + 1, chunk)
        for c in range(0, w - chunk + 1, chunk)
    ]


def real_sets(size: int) -> dict[str, tuple[np.ndarray, np.ndarray, list[np.ndarray], list[str]]]:
    """Per real set: model inputs, frost labels (1 frost, 0 ice-free), the grey images and their observation ids."""
    rows = list(csv.DictReader((REAL / "landmark_tiles" / "tiles.csv").open()))
    held = [r for r in rows if r["split"] == "heldout"]
    free = [r for r in held if r["frost_prior"].startswith("no_")]
    frost_dunes = [r for r in held if r["frost_likely"] == "1"]
    greys: dict[str, tuple[list[np.ndarray], list[int], list[str], bool]] = {}  # images, labels, observations, chunk
    greys["landmark held-out ice-free tiles"] = (
        [grey8(REAL / "landmark_tiles" / r["file"]) for r in free],
        [0] * len(free),
        [r["observation"] for r in free],
        False,
    )
    greys["landmark held-out frosted bright dunes"] = (
        [grey8(REAL / "landmark_tiles" / r["file"]) for r in frost_dunes],
        [1] * len(frost_dunes),
        [r["observation"] for r in frost_dunes],
        False,
    )
    labels = list(csv.DictReader((REAL / "frost_tiles" / "labels.csv").open()))
    greys["frost_tiles"] = (
        [grey8(REAL / "frost_tiles" / r["file"]) for r in labels],
        [int(r["label"]) for r in labels],
        [Path(r["file"]).name[:15] for r in labels],
        False,
    )
    panels = sorted((REAL / "planet4_timelapse" / "panels").glob("*.png"))
    greys["Planet Four panels"] = ([grey8(p) for p in panels], [int("_frosted" in p.name) for p in panels], [], False)
    chunks, observations = [], []
    for name in (
        "PSP_001331_2260_IR10_1_image8bit_LUTcompressed.png",
        "PSP_001446_1790_BG12_0_image8bit_LUTcompressed.png",
    ):
        pieces = strip_chunks(grey8(REAL / "images" / name))
        chunks += pieces
        observations += [name[:15]] * len(pieces)
    import rasterio

    with rasterio.open(REAL / "images" / "PSP_001331_2260_IR10_1.IMG") as ds:
        pieces = strip_chunks(ds.read(1).astype(np.float32))
    chunks += pieces
    observations += ["PSP_001331_2260"] * len(pieces)
    greys["ice-free chunks: ISIS3 test strips"] = (chunks, [0] * len(chunks), observations, True)
    crops = [grey8(p) for p in sorted((REAL / "images").glob("PSP_004398_1610_RED5_0.*.crop.jpg"))]
    greys["ice-free chunks: RED5 crops"] = (crops, [0] * len(crops), ["PSP_004398_1610"] * len(crops), True)
    browse = tiles(grey8(REAL / "browse" / "ESP_072719_1970_RED.browse.jpg"))
    greys["ice-free chunks: ESP_072719_1970 browse"] = (
        browse,
        [0] * len(browse),
        ["ESP_072719_1970"] * len(browse),
        True,
    )
    out = {}
    for name, (images, y, obs, is_chunk) in greys.items():
        x = np.stack([chunk_input(g, size) if is_chunk else tile_input(g, size) for g in images])[..., None]
        out[name] = (x, np.array(y), images, obs)
    return out


def tile_crops(
    images: list[np.ndarray], observations: list[str], min_contrast: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every outline's crop in ``images`` as detect's second stage reads real tiles, and the image of each crop.

    Every outline of the brightness rule, cut at one crop pixel per image pixel (0.5 m, as the second stage's real
    negatives were) and turned by the observation's sun from the RDR index (a fixed random turn where the index has
    none: the Planet Four panels). Shared by :func:`best_patches`, ``bench/confirm_rule.py`` and the tuning-ground
    budget of ``bench/train_patch_model.py --density`` and ``bench/search_outside.py``, so all read real tiles
    alike. ``min_contrast``: the rule's seed level (None: detect's flagged search's; ``--search all`` seeds at 0.25).
    """
    from marsice_plugin.candidates import CandidateOptions
    from marsice_plugin.cnn.real_tiles import sun_azimuths
    from marsice_plugin.patches.training import array_examples

    seeds = CandidateOptions.min_contrast if min_contrast is None else min_contrast
    suns = sun_azimuths(REAL_INDEX, frame=SUN_FRAME)
    rng = np.random.default_rng(21)
    crops, image_of = [], []
    for k, grey in enumerate(images):
        sun = suns.get(observations[k]) if k < len(observations) else None
        azimuth = float(sun) if sun is not None else float(rng.uniform(0, 360))
        ex = array_examples(grey, 0.5, azimuth, "real", limit=10_000, min_contrast=seeds)
        crops.extend(ex.x)
        image_of.extend([k] * len(ex.x))
    return np.asarray(crops, np.float32).reshape(-1, 64, 64, 2), np.asarray(image_of, int)


def tile_probabilities(model: object, images: list[np.ndarray], size: int) -> np.ndarray:
    """The chunk CNN's probability for each 8-bit tile, read whole (``real_tiles.tile_input``) as detect's batches."""
    from marsice_plugin.detect_defaults import batch_size_for

    x = np.stack([tile_input(g, size) for g in images])[..., None]
    return np.asarray(model.predict(x, batch_size=batch_size_for(size), verbose=0)).reshape(-1)


def ground_km2(images: list[np.ndarray]) -> float:
    """Ground area of ``images`` in km² at 0.5 m/px, the scale the second stage reads real tiles at (their own is
    coarser)."""
    return sum(g.size for g in images) * 0.5**2 / 1e6


def best_patches(images: list[np.ndarray], observations: list[str], stage: object) -> tuple[np.ndarray, np.ndarray]:
    """The second stage's best probability per image (-1: nothing outlined) and its outlines kept, as detect reads them
    (:func:`tile_crops`)."""
    from marsice_plugin.patches.model import predict_crops

    crops, image_of = tile_crops(images, observations)
    p = predict_crops(stage.model, crops) if len(crops) else np.zeros(0)
    best = np.full(len(images), -1.0)
    np.maximum.at(best, image_of, p)
    kept = np.bincount(image_of[p >= stage.threshold], minlength=len(images))
    return best, kept


#: Latitude (degrees, either hemisphere) from which "ice-free" tiles may hold perennial water ice: the landmark
#: table's ``frost_prior`` rules out *seasonal* frost only, and the north polar residual cap and its outliers lie
#: poleward of about 75°N (the paper's band is 40-70°S).
POLAR_LATITUDE = 75.0


def _by_latitude(
    kept: np.ndarray, cnn: np.ndarray, detect: np.ndarray, images: list[np.ndarray], observations: list[str]
) -> str:
    """Tiles flagged (CNN, detect) and kept polygons per km² under and over :data:`POLAR_LATITUDE` (information only).

    The landmark table's centre latitude per observation; tile area at 0.5 m/px, as the second stage reads them.
    Under it, "ice-free" is a label one can believe; over it, a flag may be perennial ice rather than a false alarm.
    """
    rows = csv.DictReader((REAL / "landmark_tiles" / "tiles.csv").open())
    latitude = {r["observation"]: abs(float(r["approx_center_lat_deg"])) for r in rows}
    polar = np.array([latitude[o] >= POLAR_LATITUDE for o in observations])
    parts = []
    for name, where in ((f"under {POLAR_LATITUDE:.0f}°", ~polar), (f"{POLAR_LATITUDE:.0f}° and over", polar)):
        if not where.any():
            parts.append(f"{name}: no tiles")
            continue
        km2 = ground_km2([g for g, w in zip(images, where, strict=True) if w])
        count = int(np.asarray(kept)[where].sum())
        holding = {o for o, w, k in zip(observations, where, kept, strict=True) if w and k}
        parts.append(
            f"{name}: {int(where.sum())} tiles from {len({o for o, w in zip(observations, where, strict=True) if w})} "
            f"observations, CNN flags {int(cnn[where].sum())}, detect {int(detect[where].sum())}, "
            f"{count} kept polygons in CNN-flagged tiles ({count / km2:.2f} per km² of {km2:.2f}) "
            f"in {len(holding)} observations"
        )
    return "by latitude: " + "; ".join(parts)


def detect_scores(p: np.ndarray, best: np.ndarray, patch_threshold: float, threshold: float) -> np.ndarray:
    """Detect's image score (``confirm``) from the CNN's ``p`` and the best patch probability (-1: no outline).

    Detect outlines only the images the CNN flags, so only those can be confirmed.
    """
    from marsice_plugin.patches.chunk_score import patch_chunk_score

    return np.array(
        [
            patch_chunk_score(float(v), b if b >= 0 and v >= threshold else None, "confirm", patch_threshold, threshold)
            for v, b in zip(p, best, strict=True)
        ]
    )


def container_invariance(model, model_path: Path, threshold: float) -> dict[str, dict[str, float]]:
    """Worst chunk difference of each container to the labelled product, at the card's level and at level 0."""
    from unittest import mock

    from marsice_plugin import normalisation
    from marsice_plugin.detection import DetectOptions, score_chunks
    from marsice_plugin.product import open_product
    from marsice_plugin.progress import Reporter
    from marsice_plugin.synthetic.product_writer import write_sample_product
    from marsice_plugin.synthetic.scene import SceneConfig

    whole = normalisation.STRETCH_WHOLE_PIXELS

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="marsice-containers-") as tmp:
        sample = write_sample_product(Path(tmp), SceneConfig(width=2048, height=2048, seed=21, n_ice_boulder=8))
        paths = write_containers(sample, Path(tmp))
        for level_name, level in (("card level", None), ("level 0", 0)):
            options = DetectOptions(model_path=model_path, threshold=threshold, read_level=level)
            scores = {}
            # the float copy twice: stretched from every pixel (detect, this 4 Mpx scene) and from the sample a
            # raster over STRETCH_WHOLE_PIXELS gets (what a full-size I/F cube gets)
            runs = [(name, path, False) for name, path in paths.items()]
            runs.append(("float32_iof_isis, sampled stretch", paths["float32_iof_isis"], True))
            for name, path, sampled in runs:
                limit = 0 if sampled else whole
                with mock.patch.object(normalisation, "STRETCH_WHOLE_PIXELS", limit), open_product(path) as product:
                    chunks = score_chunks(product, model, options, Reporter("quiet"))
                scores[name] = {(c.chunk_row, c.chunk_col): c.probability for c in chunks}
            ref = scores["jp2_label"]
            out[level_name] = {
                name: max(abs((s.get(k) or 0.0) - p) for k, p in ref.items() if p is not None)
                for name, s in scores.items()
                if name != "jp2_label"
            }
    return out


def generated_sets(model_path: Path, skip_v3: bool, cache: Path) -> list[dict]:
    """The model on the frozen evaluation sets at its card's threshold, beside today's figures."""
    from marsice_plugin.evaluation import evaluate

    rows = []
    for name, overlap in SETS.items():
        if skip_v3 and name.endswith("v3"):
            continue
        report = evaluate(model_path, cache, name, overlap=overlap)
        images = report["images"]
        today = _today(model_path, name, "auto" if overlap is None else overlap, report["threshold"])
        rows.append(
            {
                "set": name,
                "overlap": "auto" if overlap is None else overlap,
                "threshold": report["threshold"],
                "roc_auc": report["chunks"]["roc_auc"],
                "today_roc_auc": round(today["chunks"]["roc_auc"], 3) if today else None,
                "images_found": f"{images['flagged_with_ice']}/{images['with_ice']}",
                "image_precision": images["precision"],
                "today_images_found": f"{_found(today['images'])} at {today['threshold']}" if today else None,
            }
        )
    return rows


def _today(model_path: Path, name: str, overlap: object, threshold: float) -> dict | None:
    """Today's report of the model on set ``name`` at this overlap, the one at ``threshold`` when there is one."""
    reports = [json.loads(f.read_text()) for f in sorted(model_path.parent.glob(f"{model_path.stem}.evaluation*.json"))]
    reports = [r for r in reports if r.get("evaluation_set") == name and r.get("overlap") == overlap]
    reports.sort(key=lambda r: r.get("threshold") != threshold)
    return reports[0] if reports else None


def _found(images: dict) -> str:
    """Ice images flagged, of those with ice (older reports give only the categories and the precision)."""
    found = images.get("flagged_with_ice")
    if found is None:
        found = round(images["precision"] * (images["count"] - images["categories"]["none"]))
    return f"{found}/{images['with_ice']}"


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from marsice_plugin.cnn.metrics import summary

    return float(summary(y.astype(bool), p, 0.5)["roc_auc"])


def main() -> None:
    from marsice_plugin.cnn.domain import load_reference
    from marsice_plugin.cnn.model import load_model, model_input_size
    from marsice_plugin.model_registry import default_model_path, fast_model_path, model_threshold

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="model (default: the shipped default)")
    parser.add_argument("--fast", action="store_true", help="the shipped --fast model")
    parser.add_argument("--skip-v3", action="store_true", help="evaluation_set_v1 and v2 only (v3 takes minutes)")
    parser.add_argument("--cache", type=Path, default=REPO / ".marsice-eval", help="rendered evaluation products")
    parser.add_argument(
        "--sections",
        default="real,containers,sets,planted",
        help="which figures: real, containers, sets, planted (comma-separated)",
    )
    parser.add_argument("--patch-model", type=Path, default=None, help="second stage (default: the shipped one)")
    parser.add_argument(
        "--plant-geometry",
        choices=("anti_sun", "poleward"),
        default="anti_sun",
        help="section 5: ice at the shadow's anti-sun end, or poleward of its caster (marsice_plugin.cnn.planting)",
    )
    parser.add_argument(
        "--sun-frame",
        choices=("image", "north"),
        default="image",
        help="tiles' sun: its direction in the RDR image (default) or its azimuth from north (before 2026-12-07)",
    )
    args = parser.parse_args()
    global SUN_FRAME
    SUN_FRAME = args.sun_frame
    sections = set(args.sections.split(","))
    if not REAL.is_dir():
        raise SystemExit(f"{REAL} is missing: this bench reads the real HiRISE pixels there")
    model_path = args.model or (fast_model_path() if args.fast else default_model_path())
    threshold = model_threshold(None, model_path)
    model = load_model(model_path)
    size = model_input_size(model)
    reference = load_reference(model_path)
    started = time.time()
    print(f"{model_path.name} at its card's threshold {threshold}, {size} px input; tiles' sun: {SUN_FRAME} frame")

    if "real" in sections:
        real_figures(model, size, threshold, reference, args.patch_model)
    if "containers" in sections:
        print("\n3. container invariance (worst chunk |dp| to the JPEG2000 + label; target <= 0.05)")
        for level_name, worst in container_invariance(model, model_path, threshold).items():
            print(
                f"  {level_name}: "
                + ", ".join(f"{k} {v:.3f}" for k, v in worst.items())
                + f"; worst {max(worst.values()):.3f}"
            )
    if "sets" in sections:
        print("\n4. generated scenes, at the card's threshold (today: models/NAME.evaluation*.json)")
        for row in generated_sets(model_path, args.skip_v3, args.cache):
            print(
                f"  {row['set']} (overlap {row['overlap']}): ROC-AUC {row['roc_auc']:.3f} "
                f"(today {row['today_roc_auc']}), ice images found {row['images_found']} at {row['threshold']} "
                f"(today {row['today_images_found']}), image precision {row['image_precision']:.3f}"
            )
    if "planted" in sections:
        planted_figures(model, size, threshold, args.patch_model, args.plant_geometry)
    print(f"\n{time.time() - started:.0f} s")


def real_figures(
    model: object, size: int, threshold: float, reference: object, patch_model: Path | None = None
) -> None:
    """Sections 1-2: ice-free real tiles and chunks flagged, and frost against ice-free (held-out split only).

    Two flags per image: the chunk CNN's alone, and detect's (``confirm``, :mod:`marsice_plugin.patches.chunk_score`):
    the CNN at the threshold **and** a patch the second stage keeps in the image.
    """
    from marsice_plugin.cnn.domain import check, input_statistics
    from marsice_plugin.detect_defaults import batch_size_for, is_flagged
    from marsice_plugin.detection import load_stage

    stage = load_stage(patch_model)
    print(
        f"\n1-2. real pixels (held-out split only); detect = CNN and a kept patch ({stage.name} >= {stage.threshold})"
    )
    sets = real_sets(size)
    ys, ps, ds = [], [], []
    flags: dict[str, tuple[int, int, int]] = {}
    for name, (x, y, images, observations) in sets.items():
        p = np.asarray(model.predict(x, batch_size=batch_size_for(size), verbose=0)).reshape(-1)
        best, kept = best_patches(images, observations, stage)
        both = detect_scores(p, best, stage.threshold, threshold)
        cnn_flags, detect_flags = is_flagged(p, threshold), is_flagged(both, threshold)
        flagged, detected = int(cnn_flags.sum()), int(detect_flags.sum())
        flags[name] = (flagged, detected, len(p))
        if name == "landmark held-out ice-free tiles":  # issue 22: kept polygons per km², in detect's flagged images
            polygons = int(kept[cnn_flags].sum())
            km2 = ground_km2(images)
            from marsice_plugin.cnn.metrics import poisson_interval

            low, high = poisson_interval(polygons)
            density = (
                f"{polygons} kept polygons in CNN-flagged tiles of {km2:.2f} km², {polygons / km2:.2f} per km² "
                f"(95 % interval {low / km2:.2f}-{high / km2:.2f}; target <= 1)"
            )
            density += "\n  " + _by_latitude(kept * cnn_flags, cnn_flags, detect_flags, images, observations)
        domain = check([input_statistics(v[..., 0]) for v in x], reference)
        inside = (
            f", domain distance {domain.distance:.2f} ({'inside' if domain.inside else 'outside'})" if domain else ""
        )
        kind = "frost" if y.all() else "ice-free" if not y.any() else "mixed"
        print(
            f"  {name} ({kind}): CNN {flagged} of {len(p)} flagged ({flagged / len(p):.0%}), detect {detected} "
            f"({detected / len(p):.0%}); median p {np.median(p):.3f}{inside}"
        )
        ys.append(y)
        ps.append(p)
        ds.append(both)
    y, p, d = np.concatenate(ys), np.concatenate(ps), np.concatenate(ds)
    tiles_name = "landmark held-out ice-free tiles"
    chunk_sets = [k for k in sets if k.startswith("ice-free chunks")]
    for i, who in enumerate(("CNN alone", "detect (both stages)")):
        t_flag, n_tiles = flags[tiles_name][i], flags[tiles_name][2]
        c_flag, n_chunks = sum(flags[k][i] for k in chunk_sets), sum(flags[k][2] for k in chunk_sets)
        print(
            f"  {who}: ice-free real tiles flagged {t_flag}/{n_tiles} ({t_flag / n_tiles:.1%}); "
            f"ice-free real chunks flagged {c_flag}/{n_chunks} ({c_flag / n_chunks:.0%}) (target <= 5 %)"
        )
    print(f"  {density}; area at 0.5 m/px, the scale the second stage reads them at (their own is coarser)")
    frost_vs_free = y == 1
    print(
        f"  ROC-AUC frost ({int(frost_vs_free.sum())}) vs ice-free ({int((~frost_vs_free).sum())}) tiles and chunks: "
        f"CNN {roc_auc(y, p):.3f}, detect's chunk score {roc_auc(y, d):.3f} (information only)"
    )


def planted_figures(
    model: object, size: int, threshold: float, patch_model: Path | None = None, geometry: str = "anti_sun"
) -> None:
    """Section 5: ice and decoys planted into the held-out ice-free tiles, flagged by the CNN and by detect.

    ``geometry``: where ice and decoys go (:data:`marsice_plugin.cnn.planting.GEOMETRIES`)."""
    from marsice_plugin.cnn.planting import plant
    from marsice_plugin.cnn.real_tiles import sun_azimuths
    from marsice_plugin.detect_defaults import is_flagged
    from marsice_plugin.detection import load_stage

    stage = load_stage(patch_model)
    suns = sun_azimuths(REAL_INDEX, frame=SUN_FRAME)
    rows = list(csv.DictReader((REAL / "landmark_tiles" / "tiles.csv").open()))
    free = [
        r for r in rows if r["split"] == "heldout" and r["frost_prior"].startswith("no_") and r["observation"] in suns
    ]
    rng = np.random.default_rng(PLANT_SEED)
    images: dict[str, list[np.ndarray]] = {"ice": [], "decoy": []}
    observations: dict[str, list[str]] = {"ice": [], "decoy": []}
    for r in free:
        grey = grey8(REAL / "landmark_tiles" / r["file"])
        for kind, count in (("ice", int(rng.integers(1, 4))), ("decoy", int(rng.integers(1, 3)))):
            sun, latitude = suns[r["observation"]], float(r["approx_center_lat_deg"])
            out, mask = plant(grey, sun, rng, kind, count=count, geometry=geometry, latitude=latitude)
            if mask.any():  # a tile with no usable shadow gets no patch: it is left out
                images[kind].append(out)
                observations[kind].append(r["observation"])
    print(
        f"\n5. patches planted ({geometry}) into held-out ice-free tiles ({len(free)} with a sun azimuth; seed "
        f"{PLANT_SEED}); "
        f"detect = CNN and a kept patch ({stage.name} >= {stage.threshold})"
    )
    probs = {}
    for kind in ("ice", "decoy"):
        p = tile_probabilities(model, images[kind], size)
        best, _ = best_patches(images[kind], observations[kind], stage)
        both = detect_scores(p, best, stage.threshold, threshold)
        flagged, detected = int(is_flagged(p, threshold).sum()), int(is_flagged(both, threshold).sum())
        probs[kind] = p
        print(
            f"  {kind} planted in {len(p)} tiles: CNN flags {flagged} ({flagged / len(p):.0%}), detect {detected} "
            f"({detected / len(p):.0%}); the second stage keeps a patch in {int((best >= stage.threshold).sum())}"
        )
    y = np.concatenate([np.ones(len(probs["ice"])), np.zeros(len(probs["decoy"]))])
    print(
        f"  CNN ROC-AUC planted ice vs planted decoys: {roc_auc(y, np.concatenate([probs['ice'], probs['decoy']])):.3f}"
    )


if __name__ == "__main__":
    main()
