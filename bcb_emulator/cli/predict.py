"""``bcb-emulator predict``: an exported model over ModelE daily files -> emulated BCB files.

Calls `bcb_emulator.predict.predict_files`: reads the five streams of each day from START to
END in INPUT, runs the SavedModel (the coupling step by default) and writes
``YYYYMMDD.taijlh1E3oma.nc`` per day to OUT (the input's taijlh1 with the emulated BCB; see
docs/serving.md). Rerunning skips the days already written by the same export.

Example:

    bcb-emulator predict --model saved_models/bcb_emulator/1 --input modele_run/ \\
        --start 2012-07-01 --end 2012-07-31 --out emulated/
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Registers ``predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="Run an exported model over ModelE daily files; write taijlh1 files of BCB.",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--model", required=True, help="version folder saved_models/NAME/N")
    parser.add_argument("--input", required=True, help="folder of YYYYMMDD.<stream>E3oma.nc")
    parser.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    parser.add_argument("--out", required=True, help="folder for the taijlh1 files")
    parser.add_argument(
        "--signature",
        default="step",
        choices=("step", "serving_default"),
        help="the coupling step (encoders once per step) or full windows",
    )
    parser.add_argument(
        "--batch-size", type=int, default=8, help="windows per call with serving_default"
    )
    parser.add_argument(
        "--pad-first",
        action="store_true",
        help="repeat the earliest step when the days before START are missing",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="recompute days whose output exists"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.paths import check_input_dir, check_output_dir
    from bcb_emulator.predict import predict_files

    check_input_dir(args.input, "--input", "the daily ModelE files")
    check_output_dir(args.out, "--out")
    summary = predict_files(
        args.model,
        args.input,
        args.start,
        args.end,
        args.out,
        signature=args.signature,
        batch_size=args.batch_size,
        pad_first=args.pad_first,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"wrote {len(summary.written)} files to {args.out}"
        + (f", skipped {len(summary.skipped)} complete ones" if summary.skipped else "")
        + (
            f"; {summary.padded_steps} steps had padded context (--pad-first)"
            if summary.padded_steps
            else ""
        )
    )
    return 0
