"""The ``bcb-emulator`` console script: one subcommand per stage of the pipeline.

Each subcommand is a thin module of this package that exposes ``add_parser(subparsers)``,
which registers the subcommand and sets ``func`` (called with the parsed arguments), and calls
library functions. Heavy modules are imported when a command runs, so that ``bcb-emulator
simulate`` never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

#: Subcommand name -> module that defines ``add_parser``.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "bcb_emulator.cli.simulate",
    "demo": "bcb_emulator.cli.demo",
    "train": "bcb_emulator.cli.train",
    "build-dataset": "bcb_emulator.cli.build_dataset",
}


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="bcb-emulator",
        description="Emulate biomass-burning black carbon transport in NASA GISS ModelE.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    # TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for users of the CLI.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"bcb-emulator {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
