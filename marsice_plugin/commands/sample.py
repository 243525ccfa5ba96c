"""``marsice sample``: write a generated HiRISE-like RED RDR with its truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Reporter


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="write a generated HiRISE-like RED RDR (JP2 + PDS3 label + truth GeoPackage)",
        description="Render a scene with known truth and write it as a HiRISE RED RDR product.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--width", type=int, default=3072)
    p.add_argument("--height", type=int, default=2048)
    p.add_argument("--scale", type=float, default=0.5, help="map scale (m/pixel)")
    p.add_argument("--lat", type=float, default=-50.2, help="image centre latitude (planetocentric)")
    p.add_argument("--lon", type=float, default=31.4, help="image centre longitude (east, 0-360)")
    p.add_argument("--ls", type=float, default=172.0, help="solar longitude (degrees)")
    p.add_argument("--sun-azimuth", type=float, default=297.0, help="sun azimuth from north (degrees)")
    p.add_argument("--incidence", type=float, default=68.0, help="solar incidence angle (degrees)")
    p.add_argument("--ice", type=int, default=8, help="ice patches beside boulders")
    p.add_argument("--dtm", action="store_true", help="also write a DTEEC_...IMG DTM at 4x the image scale")
    p.add_argument("--projection", choices=("EQUIRECTANGULAR", "POLAR STEREOGRAPHIC"), default="EQUIRECTANGULAR")
    p.add_argument("--preview", type=Path, default=None, help="also write a PNG overview + inset with the truth")


def write_sample(args: argparse.Namespace) -> Any:
    from ..synthetic.product_writer import ProductGeometry, write_sample_product
    from ..synthetic.scene import SceneConfig

    config = SceneConfig(
        width=args.width,
        height=args.height,
        scale_m=args.scale,
        sun_azimuth=args.sun_azimuth,
        incidence=args.incidence,
        seed=args.seed,
        n_ice_boulder=args.ice,
    )
    geometry = ProductGeometry(
        center_latitude=args.lat,
        center_longitude=args.lon,
        solar_longitude=args.ls,
        projection=getattr(args, "projection", "EQUIRECTANGULAR"),
    )
    sample = write_sample_product(args.output, config, geometry, dtm_factor=4 if getattr(args, "dtm", False) else None)
    if getattr(args, "preview", None):
        from ..synthetic.preview import write_preview

        write_preview(sample.scene, args.preview)
    return sample


def run(args: argparse.Namespace, reporter: Reporter) -> None:
    from ..outputs import PNG, Output, check_outputs

    check_outputs([], [Output(args.output, folder=True), Output(args.preview, PNG, "--preview")])
    reporter.progress(0, "rendering scene")
    sample = write_sample(args)
    reporter.progress(100, "written")
    reporter.result(
        {
            "LABEL": str(sample.label_path),
            "IMAGE": str(sample.image_path),
            "TRUTH": str(sample.truth_path),
            **({"DTM": str(sample.dtm_path)} if sample.dtm_path else {}),
        },
        f"sample product {sample.product_id}: {int(sample.scene.ice.sum())} ice pixels planted",
    )
