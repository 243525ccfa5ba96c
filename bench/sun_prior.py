"""How good a guess of the sun is the latitude prior, and what a wrong sun costs the second stage.

A raster without a label, sun metadata or a product-id name (a renamed export, a mosaic, another generator's
scene) used to have its crops turned as if the sun were in the north. Detect now assumes the typical HiRISE sun at
the product's latitude (:mod:`marsice_plugin.catalogue.sun_prior`). This prints, in one run:

* ``prior``: over the bundled catalogue, each observation's own sun azimuth against the prior at its latitude
  computed **without it** (leave-one-out), by latitude band: median and 90th percentile of the error, the share
  over 30° and over 90°; and the same for "north" (0°), the old behaviour;
* ``tiles``: on the real landmark tiles (``../shared/realdata``; the open split, then the held-out split, which
  nothing here chooses from), the prior and the image's own shading (the direction of the brightness gradients
  weighted by their squared size, :func:`shading_azimuth`) against the observation's sun in the RDR index, by
  tile class. The choice of the prior over the shading was made on the catalogue and the open split;
* ``stage``: on rendered products (seeds :data:`STAGE_SEED` and up; information only, nothing is chosen from
  it), every outline the rule draws (50 % seeds, every chunk) is scored by the shipped second stage with its
  crops turned by the true sun plus an offset: kept outlines on ice / kept, and ice outlines kept, per offset.

Usage::

    .venv/bin/python bench/sun_prior.py [--sections prior,tiles,stage] [--scenes 12]
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REAL = REPO.parent / "shared" / "realdata"
REAL_INDEX = REPO.parent / "shared" / "data" / "hirise_rdr_color_index.csv.gz"
#: Rendered products of the ``stage`` section: clear of every training, tuning and evaluation range.
STAGE_SEED = 1_700_000
#: Latitude bands of the ``prior`` section (degrees).
BANDS = [(-90, -70), (-70, -40), (-40, -10), (-10, 10), (10, 40), (40, 70), (70, 90)]
OFFSETS = (0, 5, 10, 15, 20, 30, 45, 60, 90, 180)


def _errors_line(name: str, err: np.ndarray) -> str:
    return (
        f"{name:<28} n={len(err):>6}  median {np.median(err):5.1f}°  p90 {np.percentile(err, 90):5.1f}°  "
        f">30° {np.mean(err > 30):.3f}  >90° {np.mean(err > 90):.3f}"
    )


def prior_section() -> None:
    """Leave-one-out prior against each catalogue observation's own sun, by band, beside north."""
    from marsice_plugin.catalogue.sun_prior import WINDOW_DEG, angular_difference, observation_suns

    lat, az = observation_suns()
    order = np.argsort(lat)
    lat, az = lat[order], az[order]
    s, c = np.sin(np.radians(az)), np.cos(np.radians(az))
    cs, cc = np.concatenate([[0], np.cumsum(s)]), np.concatenate([[0], np.cumsum(c)])
    lo = np.searchsorted(lat, lat - WINDOW_DEG, side="left")
    hi = np.searchsorted(lat, lat + WINDOW_DEG, side="right")
    loo = np.degrees(np.arctan2(cs[hi] - cs[lo] - s, cc[hi] - cc[lo] - c)) % 360  # without the observation itself
    err, north = angular_difference(loo, az), angular_difference(0.0, az)
    print(f"prior: {len(az)} catalogue observations, window ±{WINDOW_DEG:g}° of latitude, leave-one-out")
    print(_errors_line("all: prior", err))
    print(_errors_line("all: north (before)", north))
    for a, b in BANDS:
        band = (lat >= a) & (lat < b)
        print(_errors_line(f"{a:+d}..{b:+d}: prior", err[band]))
        print(_errors_line(f"{a:+d}..{b:+d}: north", north[band]))


def shading_azimuth(grey: np.ndarray) -> float:
    """The sun azimuth (clockwise from north, north-up image) read from the image's shading.

    A sunlit face turns dark abruptly where its shadow begins, so the largest brightness gradients point toward
    the sun: the mean gradient weighted by its squared length (the first harmonic of the gradients' third moment)
    gives the direction. Rows run south, columns east, so a gradient (d_row, d_col) points to azimuth
    atan2(d_col, -d_row).
    """
    from scipy import ndimage

    g = grey.astype(float) / max(float(np.median(grey)), 1e-6)
    gr, gc = ndimage.sobel(g, 0) / 8.0, ndimage.sobel(g, 1) / 8.0
    w = gr**2 + gc**2
    return math.degrees(math.atan2(float((gc * w).sum()), float(-(gr * w).sum()))) % 360.0


def tiles_section() -> None:
    """The prior and the shading against the real tiles' sun, by split and class."""
    from marsice_plugin.catalogue.sun_prior import angular_difference, observation_suns, prior_from
    from marsice_plugin.cnn.real_tiles import grey8, sun_azimuths

    suns = sun_azimuths(REAL_INDEX)
    lat, az = observation_suns()
    with open(REAL / "landmark_tiles" / "tiles.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["observation"] in suns]
    for split in ("open", "heldout"):
        errs: dict[str, list[float]] = defaultdict(list)
        observations: dict[str, float] = {}
        for r in (r for r in rows if r["split"] == split):
            truth = suns[r["observation"]]
            prior = prior_from(lat, az, float(r["approx_center_lat_deg"]))
            observations[r["observation"]] = float(angular_difference(prior.azimuth, truth)) if prior else math.nan
            shade = float(angular_difference(shading_azimuth(grey8(REAL / "landmark_tiles" / r["file"])), truth))
            errs[r["class"]].append(shade)
            errs["all"].append(shade)
        print(f"tiles, {split} split ({len(errs['all'])} tiles, {len(observations)} observations with an indexed sun):")
        print(_errors_line("  prior, per observation", np.asarray(list(observations.values()))))
        for name in ["all", *sorted(k for k in errs if k != "all")]:
            print(_errors_line(f"  shading, {name} tiles", np.asarray(errs[name])))
    frame_section(rows, suns)


def frame_section(rows: list[dict[str, str]], suns: dict[str, float]) -> None:
    """Open tiles of polar stereographic RDRs (north not up): is their shading nearer the sun's direction in the
    RDR image or its azimuth from north? Tells which frame the tiles are in (the held-out split is not read)."""
    from marsice_plugin.catalogue.sun_prior import angular_difference
    from marsice_plugin.cnn.real_tiles import grey8, sun_azimuths

    in_image = sun_azimuths(REAL_INDEX, frame="image")
    polar = [r for r in rows if r["split"] == "open" and abs(in_image[r["observation"]] - suns[r["observation"]]) > 1]
    near = {"image": 0, "north": 0}
    for r in polar:
        shade = shading_azimuth(grey8(REAL / "landmark_tiles" / r["file"]))
        near["image"] += int(angular_difference(shade, in_image[r["observation"]]) < 30)
        near["north"] += int(angular_difference(shade, suns[r["observation"]]) < 30)
    print(
        f"frame: {len(polar)} open tiles of {len({r['observation'] for r in polar})} polar observations; shading "
        f"within 30° of the sun in the RDR image: {near['image']}, of its azimuth from north: {near['north']}"
    )


def stage_section(scenes: int) -> None:
    """Second-stage keeps with crops turned by the true sun plus each offset, on rendered products."""
    import tempfile
    from dataclasses import replace

    from marsice_plugin.detection import load_stage
    from marsice_plugin.patches.model import predict_crops
    from marsice_plugin.patches.stage import product_crops
    from marsice_plugin.patches.training import MIN_ICE_SHARE, all_candidates, ice_share, scene_config
    from marsice_plugin.product import open_product
    from marsice_plugin.synthetic.product_writer import write_sample_product

    stage = load_stage(None)
    probs: dict[int, list[np.ndarray]] = {o: [] for o in OFFSETS}
    labels: list[np.ndarray] = []
    start = time.perf_counter()
    for seed in range(STAGE_SEED, STAGE_SEED + scenes):
        config, geometry = scene_config(seed)
        with tempfile.TemporaryDirectory(prefix="marsice-sun-") as tmp:
            sample = write_sample_product(Path(tmp), config, geometry)
            with open_product(sample.label_path) as product:
                found = all_candidates(product)
                labels.append(
                    np.array([ice_share(product, c.geometry, sample.scene.ice)[0] >= MIN_ICE_SHARE for c in found])
                )
                own = product.viewing.sun_azimuth_from_north
                for offset in OFFSETS:
                    product.viewing = replace(product.viewing, sun_azimuth_from_north=(own + offset) % 360)
                    probs[offset].append(predict_crops(stage.model, product_crops(product, found)))
    y = np.concatenate(labels)
    print(
        f"stage: {scenes} rendered products (seeds {STAGE_SEED}+), {len(y)} outlines, {int(y.sum())} on ice, "
        f"{stage.name} at {stage.threshold:.2f} ({time.perf_counter() - start:.0f} s)"
    )
    for offset in OFFSETS:
        keep = np.concatenate(probs[offset]) >= stage.threshold
        on = int((keep & y).sum())
        print(
            f"  sun off by {offset:>3}°: kept {int(keep.sum()):>4}, on ice {on:>4} "
            f"(precision {on / max(int(keep.sum()), 1):.3f}), ice outlines kept {on}/{int(y.sum())} "
            f"({on / max(int(y.sum()), 1):.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="prior,tiles,stage")
    parser.add_argument("--scenes", type=int, default=12)
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if "prior" in sections:
        prior_section()
    if "tiles" in sections:
        tiles_section()
    if "stage" in sections:
        stage_section(args.scenes)


if __name__ == "__main__":
    main()
