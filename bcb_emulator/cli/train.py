"""The ``bcb-emulator train`` subcommand: fit the emulator from a JSON `TrainConfig`.

Example::

    bcb-emulator train --config my_run.json

where ``my_run.json`` holds a `bcb_emulator.config.TrainConfig` (see ``docs/emulator.md``);
calls `bcb_emulator.training.train`. TensorFlow is imported only when the command runs.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``train`` on `subparsers` and returns its parser."""
    parser = subparsers.add_parser(
        "train",
        help="train the emulator (model.fit, two tiers) from a JSON TrainConfig",
        description=(
            "Train the BCB emulator on a built dataset. The JSON config is a TrainConfig; it is "
            "saved beside the model as train_config.json. Rerunning the same command after an "
            "interruption resumes from the last finished epoch."
        ),
    )
    parser.add_argument("--config", required=True, help="path of the TrainConfig JSON file")
    parser.add_argument(
        "--verbose", type=int, default=2, choices=(0, 1, 2), help="model.fit verbosity"
    )
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator import training
    from bcb_emulator.config import TrainConfig

    config = TrainConfig.load(args.config)
    summary = training.train(config, verbose=args.verbose)
    for tier, history in summary.history.items():
        if history.get("val_loss"):
            print(
                f"{tier}: best val_loss {summary.best(tier):.4f}, "
                f"val_r2 {summary.best(tier, 'val_r2'):.3f}, "
                f"val_r2_l01 {summary.best(tier, 'val_r2_l01'):.3f} "
                f"over {len(history['val_loss'])} epochs"
            )
    print(f"saved {summary.model_path} and {summary.config_path}")
    return 0
