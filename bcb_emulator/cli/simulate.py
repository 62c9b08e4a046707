"""``bcb-emulator simulate``: run the reference transport model and write ModelE-layout files."""

from __future__ import annotations

import argparse

from bcb_emulator.reference.emissions import SCENARIOS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="run the reference transport model, writing daily ModelE E3 files",
        description=(
            "Simulate BCB transport with the embedded reference model and write one netCDF "
            "file per day and stream (YYYYMMDD.<stream>E3oma.nc) to --out. A restart file is "
            "kept in --out, so an interrupted run picks up where it stopped."
        ),
    )
    parser.add_argument(
        "--preset",
        choices=("demo", "coarse", "native"),
        default="coarse",
        help="demo: 4°×5°, 3-hourly output; coarse: 4°×5°; native: 2°×2.5°",
    )
    parser.add_argument("--start", required=True, help="first day written, YYYY-MM-DD")
    parser.add_argument("--end", required=True, help="last day written, YYYY-MM-DD (inclusive)")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="2010s")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", type=int, default=20, help="layers written (L)")
    parser.add_argument(
        "--output-every",
        type=int,
        default=None,
        help="model steps (30 min) between written time stamps",
    )
    parser.add_argument("--spinup-days", type=int, default=None)
    parser.add_argument(
        "--no-resume", action="store_true", help="ignore a restart file in --out and start afresh"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Runs the simulation described by the parsed arguments."""
    from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

    overrides = {"scenario": args.scenario, "seed": args.seed, "n_levels": args.levels}
    if args.output_every is not None:
        overrides["output_every"] = args.output_every
    if args.spinup_days is not None:
        overrides["spinup_days"] = args.spinup_days
    config = SimulationConfig.preset(args.preset, **overrides)
    model = ReferenceModel(config)
    budget = model.run(args.start, args.end, args.out, progress=not args.quiet,
                       resume=not args.no_resume)  # fmt: skip
    print(
        f"simulated {args.start}..{args.end} ({config.scenario}, {config.grid}) -> {args.out}\n"
        f"  BCB burden {model.total_mass() / 1e9:.4f} Tg; since the start of the spin-up: "
        f"emitted {budget.emitted / 1e9:.4f} Tg, removed {budget.removed / 1e9:.4f} Tg"
    )
    return 0
