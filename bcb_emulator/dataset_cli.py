"""``bcb-emulator build-dataset``: ModelE daily files -> the ``modele_bcb`` TFDS dataset.

Wraps ``tfds_builders/modele_bcb`` (same result as ``tfds build``) and prints the splits and
their sizes. :func:`build_dataset` is the same in Python, for the demo and notebooks.

Example:

    bcb-emulator build-dataset --input sim/ --data-dir data/ --config coarse_l20 \\
        --split train=2010-01-01:2010-01-20 --split validation=2010-01-21:2010-01-25
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence

#: Split date ranges as given to :func:`build_dataset`: name -> ("YYYY-MM-DD", "YYYY-MM-DD").
SplitRanges = Mapping[str, tuple[str, str]]


def build_dataset(
    input_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    config_name: str = "coarse_l20",
    splits: SplitRanges | Sequence[str] | None = None,
    *,
    name: str | None = None,
    stats_splits: Sequence[str] | None = None,
    allow_gaps: bool | None = None,
    beam_runner=None,
    overwrite: bool = False,
) -> dict[str, int]:
    """Builds the dataset from the daily files in `input_dir`; returns ``{split: n_steps}``.

    Args:
        input_dir: folder of ``YYYYMMDD.<stream>E3oma.nc`` files (TFDS ``manual_dir``).
        data_dir: TFDS ``data_dir``; the dataset goes to ``data_dir/modele_bcb/<name>/<version>``.
        config_name: builder config giving grid and L: ``coarse_l20``, ``native_l20``,
            ``tiny_l3``.
        splits: None for the config's date ranges; a sequence of split names to keep a subset;
            or a mapping ``name -> (start, end)`` of your own date ranges (inclusive).
        name: name of the built config when `splits`, `stats_splits` or `allow_gaps` change
            the layout; default ``<config_name>_custom``. Pass it as ``builder_config`` to
            ``bcb_emulator.pipeline.make_windows``.
        stats_splits: training splits the statistics come from; default the config's that
            remain.
        allow_gaps: skip days without files inside a range instead of failing.
        beam_runner: an Apache Beam runner (e.g. ``DirectRunner()``) to build with Beam.
        overwrite: rebuild if the dataset already exists.
    """
    import tensorflow_datasets as tfds

    from bcb_emulator.dataset_spec import SplitRange
    from tfds_builders.modele_bcb import modele_bcb_dataset_builder as mb

    builder_cls = mb.Builder
    if config_name not in builder_cls.builder_configs:
        raise ValueError(
            f"`config_name` must be one of {sorted(builder_cls.builder_configs)}. "
            f"Received: config_name={config_name!r}"
        )
    base = builder_cls.builder_configs[config_name]
    spec = base.spec
    if splits is not None:
        if isinstance(splits, Mapping):
            ranges = tuple(SplitRange(k, *v) for k, v in splits.items())
        else:
            ranges = tuple(spec.split(s) for s in splits)
        spec = spec.with_splits(ranges, stats_splits=tuple(stats_splits) if stats_splits else None)
    elif stats_splits is not None:
        spec = spec.with_splits(spec.splits, stats_splits=tuple(stats_splits))
    if allow_gaps is not None:
        spec = dataclasses.replace(spec, allow_gaps=allow_gaps)
    config = base
    if spec != base.spec or (name and name != config_name):
        # TFDS refuses a custom config named like a registered one (its folder would hold other
        # data under the same name): a changed layout gets its own name.
        built_name = name or f"{config_name}_custom"
        if built_name in builder_cls.builder_configs:
            raise ValueError(
                f"`name` must differ from the registered configs "
                f"{sorted(builder_cls.builder_configs)} when the splits change. "
                f"Received: name={built_name!r}"
            )
        spec = dataclasses.replace(spec, name=built_name)
        config = mb.ModelEBcbConfig(name=built_name, description=base.description, spec=spec)
    builder = builder_cls(config=config, data_dir=os.fspath(data_dir))
    download_mode = (
        tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
        if overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=os.fspath(input_dir), download_mode=download_mode, beam_runner=beam_runner
        )
    )
    return {s: builder.info.splits[s].num_examples for s in builder.info.splits}


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
    parser.add_argument("--input", required=True, help="folder of YYYYMMDD.<stream>E3oma.nc")
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
    parser.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    splits = dict(args.split) if args.split else None
    sizes = build_dataset(
        args.input,
        args.data_dir,
        args.config,
        splits,
        name=args.name,
        allow_gaps=True if args.allow_gaps else None,
        overwrite=args.overwrite,
    )
    from bcb_emulator import pipeline

    built = args.name or (f"{args.config}_custom" if splits or args.allow_gaps else args.config)
    print(f"modele_bcb/{built} in {pipeline.dataset_dir(args.data_dir, built)}")
    width = max(len(s) for s in sizes)
    for split, size in sizes.items():
        print(f"  {split:<{width}}  {size:>8d} steps")
    return 0
