"""``bcb-emulator export``: a trained model -> a versioned SavedModel in physical units.

Calls `bcb_emulator.export.export_model`: writes ``<out>/<name>/<version>/`` (TF Serving's
layout; the next free integer version by default), checks it against the Keras model before
renaming it into place, and prints its signatures.

Example:

    bcb-emulator export --model runs/my_run --name bcb_emulator --out saved_models
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    """Registers ``export``."""
    parser = subparsers.add_parser(
        "export",
        help="Export a trained model as a SavedModel (physical units) for TF Serving.",
        description=__doc__.split("\n\n")[1],
    )
    parser.add_argument(
        "--model", required=True, help="training out_dir with model.keras, train_config.json"
    )
    parser.add_argument("--name", required=True, help="model name (TF Serving's model_name)")
    parser.add_argument("--version", type=int, help="integer version (default: the next one)")
    parser.add_argument("--out", default="saved_models", help="base folder of all models")
    parser.add_argument(
        "--metrics", help="metrics.json of `bcb-emulator evaluate` (default: looked for)"
    )
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the reload check against the Keras model"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from bcb_emulator.export import ExportedModel, export_model
    from bcb_emulator.paths import check_output_dir

    check_output_dir(args.out, "--out")
    path = export_model(
        args.model,
        args.name,
        args.out,
        args.version,
        metrics=args.metrics,
        verify=not args.no_verify,
    )
    contract = ExportedModel.open(path).contract
    print(f"exported {path}")
    for signature, sides in contract["signatures"].items():
        inputs = ", ".join(f"{k} {_shape(v['shape'])}" for k, v in sides["inputs"].items())
        outputs = ", ".join(f"{k} {_shape(v['shape'])}" for k, v in sides["outputs"].items())
        print(f"  {signature}: {inputs} -> {outputs}")
    check = contract.get("verification")
    if check:
        print(
            f"  check: SavedModel vs Keras {check['window_vs_keras']:.1e}, step vs window "
            f"{check['step_vs_window']:.1e} (largest relative errors, tolerance "
            f"{check['tolerance']:g})"
        )
    return 0


def _shape(shape) -> str:
    return "(" + ", ".join("B" if d is None else str(d) for d in shape) + ")"
