"""``bcb-emulator demo``: the whole pipeline on the embedded default data (`bcb_emulator.demo`)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded reference model's data"
    )
    parser.add_argument("--out", default="demo_output", help="working folder of the demo")
    parser.add_argument(
        "--saved-models", default="saved_models", help="TF Serving base folder of the export"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.demo import run_demo
    from bcb_emulator.paths import check_output_dir

    check_output_dir(args.out, "--out")
    check_output_dir(args.saved_models, "--saved-models")
    run_demo(args.out, progress=not args.quiet, saved_models=args.saved_models)
    return 0
