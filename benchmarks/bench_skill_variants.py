"""Skill of the demo emulator and the variants a modeller tries, side by side, in one run.

Trains each variant with the demo's budget (`config.demo_train_config`: same data, epochs and
steps) on the demo dataset, evaluates all of them with NINT and persistence on the demo's
validation, test and extreme-fire splits (`bcb_emulator.evaluation`), and writes the table to
``docs/benchmarks/skill_variants.md`` (the full report beside the run, in ``--work``).

Run (after ``make demo``, which builds the demo dataset in ``demo_output/data``)::

    .venv/bin/python benchmarks/bench_skill_variants.py --data demo_output/data --work /tmp/skill

About 2–3 minutes of training per variant on 2 CPU cores; a rerun with the same ``--work``
reuses the finished runs (and their recorded training times) and only evaluates again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import platform
import time

VARIANTS = {
    "log loss (paper)": dict(target_transform="log"),
    "physical loss": dict(target_transform="none"),
    "log loss + emission memory": dict(target_transform="log", memory=(0.5, 2.0)),
    "physical loss + emission memory": dict(target_transform="none", memory=(0.5, 2.0)),
    # The ablations of the last variant: concatenation instead of the SFT fusion; no 3D branch.
    "… without fusion (concatenation)": dict(
        target_transform="none", memory=(0.5, 2.0), model=dict(fusion="none")
    ),
    "… without the 3D branch": dict(
        target_transform="none", memory=(0.5, 2.0), model=dict(use_3d=False, fusion="none")
    ),
}
SPLITS = ("validation", "test", "ood_fire2021")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="demo_output/data", help="data_dir of demo_l20")
    parser.add_argument("--work", default="/tmp/bcb_skill_variants", help="runs and report")
    parser.add_argument("--out", default="docs/benchmarks/skill_variants.md")
    args = parser.parse_args()

    from bcb_emulator.cli import quiet_tensorflow

    quiet_tensorflow()
    from bcb_emulator.config import demo_train_config
    from bcb_emulator.data import BuiltDataset
    from bcb_emulator.evaluation import run_evaluation
    from bcb_emulator.training import train

    work = pathlib.Path(args.work)
    dataset = BuiltDataset.open(args.data, "demo_l20")
    # Training times are kept beside the runs: a rerun reuses finished runs (and their times).
    times_path = work / "training_seconds.json"
    seconds = json.loads(times_path.read_text()) if times_path.exists() else {}
    dirs = {}
    for k, (label, v) in enumerate(VARIANTS.items()):
        base = demo_train_config(args.data, str(work / f"v{k}"), "demo_l20")
        model = dataclasses.replace(
            base.model, emission_memory_days=v.get("memory", ()), **v.get("model", {})
        )
        config = dataclasses.replace(base, target_transform=v["target_transform"], model=model)
        start = time.perf_counter()
        reused = (pathlib.Path(config.out_dir) / "model.keras").exists()
        train(config, dataset=dataset, verbose=0)
        if not reused or label not in seconds:
            seconds[label] = time.perf_counter() - start
        dirs[label] = config.out_dir
        print(f"{label}: {'reused' if reused else 'trained'} ({seconds[label]:.0f} s)", flush=True)
    times_path.write_text(json.dumps(seconds, indent=1))
    first, *others = dirs
    names = {label: f"v{k}" for k, label in enumerate(dirs)}
    run_evaluation(dirs[first], SPLITS, work / "report",
                   compare={names[o]: dirs[o] for o in others}, progress=False)  # fmt: skip
    metrics = json.loads((work / "report" / "metrics.json").read_text())["splits"]
    key = {first: "emulator", **{o: names[o] for o in others}, "NINT": "nint",
           "persistence (uses past BCB)": "persistence"}  # fmt: skip
    lines = [
        "# Skill of the demo emulator's variants (pooled, area-weighted, physical units)",
        "",
        f"`benchmarks/bench_skill_variants.py`, one run, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{platform.processor() or platform.machine()}, {args.data} (demo_l20: 4°×5°, L = 20, "
        "3-hourly; training splits pi_train 1851-08-01..16 and train 2010-08-01..28).",
        "",
        "Each variant trains with the demo's budget (`demo_train_config`: 16 filters, 2 ConvLSTM "
        "layers, T = 4, two tiers of 3 epochs × 40 steps). NINT is the August mean of the "
        "training split; persistence uses the true field one day earlier (information the "
        "emulator does not have). Emission memory: decaying means of past emissions over "
        "τ = 0.5 and 2 days as extra `x2d` channels. The last two rows are the ablations of the "
        'variant above them: the two streams concatenated instead of fused (`fusion="none"`), '
        "and no 3D branch (`use_3d=False`), same budget.",
        "",
        "| model | "
        + " | ".join(f"{s}: R² L1 | {s}: R² L10 | {s}: mean R²" for s in SPLITS)
        + " | training s |",
        "|" + " --- |" * (2 + 3 * len(SPLITS)),
    ]
    for label, name in key.items():
        cells = []
        for split in SPLITS:
            r2 = metrics[split]["models"][name]["r2"]
            cells += [f"{r2[0]:.3f}", f"{r2[9]:.3f}", f"{sum(r2) / len(r2):.3f}"]
        spent = f"{seconds[label]:.0f}" if label in seconds else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {spent} |")
    lines += [
        "",
        "Global BCB mass in levels 1–20 of each model over the truth's, averaged over the "
        "samples (the truth's mass is what the emulator should carry):",
        "",
        "| model | " + " | ".join(SPLITS) + " |",
        "|" + " --- |" * (1 + len(SPLITS)),
    ]
    for label, name in key.items():
        ratios = []
        for split in SPLITS:
            mass = metrics[split]["global_mass_kg"]
            pairs = [
                (m, t) for m, t in zip(mass[name], mass["truth"], strict=True) if m is not None
            ]
            ratios.append(f"{sum(m / t for m, t in pairs) / len(pairs):.2f}")
        lines.append(f"| {label} | " + " | ".join(ratios) + " |")
    steps = {s: metrics[s]["n_steps"] for s in SPLITS}
    lines += ["", f"Samples per split: {steps}. Small samples: differences of a few hundredths "
              "between variants are within run-to-run noise (not measured here)."]  # fmt: skip
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
