"""The ``bcb-emulator tune`` subcommand: a keras-tuner search from a JSON `TuneConfig`.

Example::

    bcb-emulator tune --config tune.json [--retrain-best]
    bcb-emulator tune --demo demo_output   # the demo-sized sweep on the demo dataset

where ``tune.json`` holds a `tuning.config.TuneConfig` (see ``docs/tuning.md``); calls
`tuning.search.run_search` and, with ``--retrain-best``, `tuning.search.retrain_best`. Rerun
after an interruption to resume; set ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT`` to run as keras-tuner's chief or one of its workers.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``tune`` on `subparsers` and returns its parser."""
    parser = subparsers.add_parser(
        "tune",
        help="hyperparameter search (keras-tuner) from a JSON TuneConfig",
        description=(
            "Search the emulator's hyperparameters with keras-tuner (Hyperband, random search or "
            "Bayesian optimization) on a built dataset. Rerunning the same command resumes the "
            "search without repeating finished trials. Writes results.csv, results.md and "
            "results.png into the config's out_dir, TensorBoard logs with the HParams "
            "dashboard into <out_dir>/tensorboard."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="path of the TuneConfig JSON file")
    source.add_argument(
        "--demo",
        metavar="DEMO_DIR",
        help=(
            "the demo-sized sweep (tuning.demo_tune_config) on the demo dataset in DEMO_DIR/data "
            "(made by `bcb-emulator demo --out DEMO_DIR`), into DEMO_DIR/tune"
        ),
    )
    parser.add_argument(
        "--retrain-best",
        action="store_true",
        help="then train the best configuration (both tiers) into the base config's out_dir",
    )
    parser.add_argument(
        "--verbose", type=int, default=2, choices=(0, 1, 2), help="keras-tuner/model.fit verbosity"
    )
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.paths import check_output_dir
    from tuning import search
    from tuning.config import TuneConfig

    if args.demo:
        from pathlib import Path

        from bcb_emulator.demo import DEMO_BUILDER_CONFIG
        from tuning.config import demo_tune_config

        demo = Path(args.demo)
        config = demo_tune_config(str(demo / "data"), str(demo / "tune"), DEMO_BUILDER_CONFIG)
    else:
        config = TuneConfig.load(args.config)
    check_output_dir(config.out_dir, "out_dir")
    trials, epochs = config.planned_budget()
    print(f"{config.tuner} search into {config.out_dir}; planned: at most {trials} trials, "
          f"{epochs} epochs in all")  # fmt: skip
    summary = search.run_search(config, verbose=args.verbose)
    if summary.role == "worker":
        print(f"worker done: the chief writes the results into {config.out_dir}")
        return 0
    done = sum(t.objective is not None for t in summary.trials)
    print(f"{len(summary.trials)} trials ({done} completed); results in {summary.results['md']}")
    if summary.best is not None:
        best = summary.best
        print(f"best trial {best.trial_id}: {config.objective} {best.objective:.4f}, {best.values}")
    if args.retrain_best:
        trained = search.retrain_best(config, verbose=2 if args.verbose else 0)
        print(f"retrained the best configuration: saved {trained.model_path} and "
              f"{trained.config_path}")  # fmt: skip
    return 0
