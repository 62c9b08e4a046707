"""``bcb-emulator demo``: the main job end to end on the embedded default data.

Stages: reference model → TFDS dataset → training → evaluation report → SavedModel. Each stage
writes into ``--out`` and is skipped when its output is already complete, so an interrupted demo
resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One simulated period of the demo.

    Attributes:
        scenario: emission scenario. start, end: first and last day written (YYYY-MM-DD).
    """

    scenario: str
    start: str
    end: str


#: The demo's simulated periods: a pre-industrial month (pre-training tier), a modern
#: period (training, validation, test) and an extreme fire year (out-of-period test).
DEMO_RUNS: tuple[DemoRun, ...] = (
    DemoRun("pi", "1851-08-01", "1851-08-16"),
    DemoRun("2010s", "2010-08-01", "2010-09-06"),
    DemoRun("2020s", "2021-08-01", "2021-08-08"),
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Registers the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on the embedded reference model's data"
    )
    parser.add_argument("--out", default="demo_output", help="working folder of the demo")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def simulate(out: Path, progress: bool = True) -> Path:
    """Stage 1: simulates the demo periods into ``out/modele`` (resumable)."""
    from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

    modele_dir = out / "modele"
    for period in DEMO_RUNS:
        config = SimulationConfig.preset("demo", scenario=period.scenario)
        ReferenceModel(config).run(period.start, period.end, modele_dir, progress=progress)
    return modele_dir


def run(args: argparse.Namespace) -> int:
    """Runs every stage of the demo."""
    out = Path(args.out)
    t0 = time.perf_counter()
    modele_dir = simulate(out, progress=not args.quiet)
    n_files = len(list(modele_dir.glob("*.nc")))
    print(f"[demo] reference model: {n_files} files in {modele_dir} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    return 0
