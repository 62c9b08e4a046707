"""The ``bcb-emulator`` console script: one subcommand per stage of the pipeline.

Each subcommand is a thin module of this package that exposes ``add_parser(subparsers)``,
which registers the subcommand and sets ``func`` (called with the parsed arguments), and calls
library functions. A bad input (`ValueError`, a missing file, any other `OSError` of a file or
folder) ends the command with its message on one line and exit status 2, not a traceback.
Heavy modules are imported when a command runs, so that ``bcb-emulator simulate`` never
imports TensorFlow.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile

#: Subcommand name -> module that defines ``add_parser``.
SUBCOMMANDS: dict[str, str] = {
    "simulate": "bcb_emulator.cli.simulate",
    "demo": "bcb_emulator.cli.demo",
    "train": "bcb_emulator.cli.train",
    "build-dataset": "bcb_emulator.cli.build_dataset",
    "tune": "bcb_emulator.cli.tune",
    "evaluate": "bcb_emulator.cli.evaluate",
    "export": "bcb_emulator.cli.export",
    "predict": "bcb_emulator.cli.predict",
}
#: Subcommands that run TensorFlow (and TFDS): their start-up chatter is quieted.
TENSORFLOW_COMMANDS = ("demo", "train", "build-dataset", "evaluate", "tune", "export", "predict")


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


@contextlib.contextmanager
def _native_stderr_held():
    """Holds back what native code writes to file descriptor 2 inside the block.

    TensorFlow 2.21 logs its start-up (oneDNN notes, "Could not find cuda drivers", a failed
    ``cuInit`` on machines without a GPU) through absl before its log level applies, so
    ``TF_CPP_MIN_LOG_LEVEL`` does not silence it. What was held back is written out if the
    block raises, so a failed import still shows why.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quiet_tensorflow() -> None:
    """Imports TensorFlow and TFDS without their start-up chatter; TFDS progress bars off.

    The package's own progress bars (days read and written) stay.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_held():
        import tensorflow as tf
        import tensorflow_datasets as tfds

        tf.config.list_physical_devices("GPU")  # probes CUDA now, not at the first op
        tf.constant(0.0)
    tfds.disable_progress_bar()
    # TFDS's deprecation notes while reading records ("`FeatureConnector.dtype` is deprecated").
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in TENSORFLOW_COMMANDS:
        quiet_tensorflow()
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"bcb-emulator {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file or folder problem no check caught: one line, no traceback
        print(f"bcb-emulator {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
