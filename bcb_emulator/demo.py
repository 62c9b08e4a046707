"""``bcb-emulator demo``: the main job end to end on the embedded default data.

Stages, each writing under ``--out`` and each resuming or reusing what an interrupted demo left:

1. the reference transport model simulates a pre-industrial month, a modern period and an
   extreme fire year (4°×5°, 3-hourly output) into ``out/modele``;
2. the TFDS builder turns those files into the ``modele_bcb/demo_l20`` dataset in ``out/data``
   and prints its splits;
3. ``model.fit`` trains a small emulator in two tiers (pre-industrial, then modern) and saves it
   with its config in ``out/training``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

#: The TFDS builder config whose splits cover the demo's periods.
DEMO_BUILDER_CONFIG = "demo_l20"


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One simulated period of the demo.

    Attributes:
        scenario: emission scenario. start, end: first and last day written (YYYY-MM-DD).
    """

    scenario: str
    start: str
    end: str


#: The demo's simulated periods: a pre-industrial fortnight (pre-training tier), a modern
#: period (training, validation, test) and the extreme fire year 2021 (out-of-period test).
#: They cover the splits of the ``demo_l20`` builder config.
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
    """Runs every stage of the demo, timing each."""
    from bcb_emulator.config import demo_train_config
    from bcb_emulator.dataset_cli import build_dataset
    from bcb_emulator.training import train

    out = Path(args.out)
    t0 = time.perf_counter()
    modele_dir = simulate(out, progress=not args.quiet)
    n_files = len(list(modele_dir.glob("*.nc")))
    print(f"[demo 1/3] reference model: {n_files} daily files in {modele_dir} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip

    t1 = time.perf_counter()
    data_dir = out / "data"
    sizes = build_dataset(modele_dir, data_dir, DEMO_BUILDER_CONFIG)
    print(f"[demo 2/3] TFDS dataset modele_bcb/{DEMO_BUILDER_CONFIG} in {data_dir} "
          f"({time.perf_counter() - t1:.0f} s), time steps per split:")  # fmt: skip
    for split, n in sizes.items():
        print(f"    {split:14s} {n:6d}")

    t2 = time.perf_counter()
    config = demo_train_config(str(data_dir), str(out / "training"), DEMO_BUILDER_CONFIG)
    summary = train(config, verbose=0 if args.quiet else 2)
    print(f"[demo 3/3] trained and saved {summary.model_path} with its config "
          f"{summary.config_path} ({time.perf_counter() - t2:.0f} s)")  # fmt: skip
    for tier, history in summary.history.items():
        epochs = len(history.get("val_loss", []))
        print(f"    {tier}: best validation loss {summary.best(tier):.4f} over {epochs} epochs")
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s")
    return 0
