"""``bcb-emulator evaluate``: skill of a trained emulator in physical units, against NINT.

Calls `bcb_emulator.evaluation.run_evaluation`: writes ``--out/report.md`` (with its PNGs) and
``--out/metrics.json``.

Example:

    bcb-emulator evaluate --model runs/coarse --split test --split ood_fire2021 --out report/
"""

from __future__ import annotations

import argparse


def _parse_compare(text: str) -> tuple[str, str]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"`--compare` must look like NAME=DIR. Received: {text!r}")
    return name, folder


def add_parser(subparsers) -> None:
    """Registers ``evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained emulator against NINT and persistence; write a report",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument("--model", required=True, help="out_dir of `bcb-emulator train`")
    parser.add_argument(
        "--split", action="append", required=True, help="a split to evaluate (repeat)"
    )
    parser.add_argument("--out", required=True, help="folder of report.md and metrics.json")
    parser.add_argument(
        "--compare",
        action="append",
        type=_parse_compare,
        metavar="NAME=DIR",
        help="another trained model on the same dataset and T, e.g. an ablation (repeat)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.evaluation import run_evaluation
    from bcb_emulator.paths import check_output_dir

    check_output_dir(args.out, "--out")  # before the evaluation, not after it
    if len(set(args.split)) != len(args.split):
        raise ValueError(f"`--split` names must be distinct. Received: {args.split}")
    compare = dict(args.compare or [])
    if len(compare) != len(args.compare or []):
        raise ValueError(f"`--compare` names must be distinct. Received: {args.compare}")
    report = run_evaluation(
        args.model, args.split, args.out, compare=compare, batch_size=args.batch_size,
        progress=not args.quiet,
    )  # fmt: skip
    print(f"report: {report}")
    print(f"metrics: {report.with_name('metrics.json')}")
    return 0
