"""``bcb-emulator build-dataset``: ModelE daily files -> the ``modele_bcb`` TFDS dataset.

Calls `bcb_emulator.data.build_dataset` (same result as ``tfds build``) and prints the splits
and their sizes.

Example:

    bcb-emulator build-dataset --input sim/ --data-dir data/ --config coarse_l20 \\
        --split train=2010-01-01:2010-01-20 --split validation=2010-01-21:2010-01-25
"""

from __future__ import annotations

import argparse


def _parse_split(text: str) -> tuple[str, tuple[str, str]]:
    try:
        name, dates = text.split("=", 1)
        start, end = dates.split(":", 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"`--split` must look like name=YYYY-MM-DD:YYYY-MM-DD. Received: {text!r}"
        ) from None
    return name, (start, end)


def add_parser(subparsers) -> None:
    """Registers ``build-dataset``."""
    parser = subparsers.add_parser(
        "build-dataset",
        help="Build the modele_bcb TFDS dataset from ModelE daily files.",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument(
        "--input",
        required=True,
        help="folder of YYYYMMDD.<stream>E3oma.nc (and ModelE's annual ANN<year>.xaij<run>.nc)",
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data_dir to build into")
    parser.add_argument("--config", default="coarse_l20", help="builder config (grid and L)")
    parser.add_argument(
        "--split",
        action="append",
        type=_parse_split,
        metavar="NAME=START:END",
        help="a split's date range (repeat); default the config's ranges",
    )
    parser.add_argument(
        "--name", help="name of the built config if --split changes it (default CONFIG_custom)"
    )
    parser.add_argument("--allow-gaps", action="store_true", help="skip days without files")
    parser.add_argument(
        "--static-file",
        help="netCDF file with axyp and landfr (default: the ANN*.xaij*.nc file in --input, "
        "else every aijh1 file)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild an existing dataset (aside; it replaces the old one only when complete)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.data import build_dataset

    names = [name for name, _ in args.split or []]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"`--split` names must be distinct: {repeated} given more than once. "
            f"Received: {[f'{n}={a}:{b}' for n, (a, b) in args.split]}"
        )
    dataset = build_dataset(
        args.input,
        args.data_dir,
        args.config,
        dict(args.split) if args.split else None,
        name=args.name,
        allow_gaps=True if args.allow_gaps else None,
        overwrite=args.overwrite,
        static_file=args.static_file,
    )
    print(f"modele_bcb/{dataset.name} in {dataset.path}")
    width = max(len(s) for s in dataset.split_sizes)
    for split, size in dataset.split_sizes.items():
        print(f"  {split:<{width}}  {size:>8d} steps")
    return 0
