"""The skill benchmark: a held-out simulated year and two out-of-period tests, in one run.

Stages, each resumable (a rerun with the same ``--work`` reuses what is finished, and the
recorded times of finished stages):

1. the reference model simulates `bcb_emulator.skill.SKILL_RUNS` (4°×5°, 3-hourly output of
   half-hourly steps, 30-day spin-ups) into ``WORK/modele``;
2. the TFDS builder makes ``skill_l20`` in ``WORK/data`` (``--drop-netcdf`` then deletes the
   netCDF files, about 8 GB, once the dataset is built);
3. ``model.fit`` trains `bcb_emulator.skill.cpu_train_config` into ``WORK/training/emulator``
   and, with ``--ablations [NAME ...]``, the same budget with the paper's MSE + MAE loss, also
   without the advected emission memory, without fusion (concatenation) and without the 3D
   branch (`ABLATIONS`);
4. the evaluation writes ``report.md``, its PNGs and ``metrics.json`` into ``--out`` (test =
   the year 2011, the long run; ``ood_pi``; ``ood_fire2021``), and ``README.md`` there holds
   the commands, the machine, the stage times and the targets' status.

Run (CPU, 2 cores; about 10 minutes of simulation, 5 of building, up to 60 of training per
model and 10 of evaluation)::

    .venv/bin/python benchmarks/bench_skill.py --work /tmp/bcb_skill --out docs/skill --drop-netcdf
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import sys
import time

#: Ablations trained with the emulator's budget: the `TrainConfig.loss` and `ModelConfig` fields
#: they change (``no_advection`` is also the reference paper's loss: the previous benchmark run).
ABLATIONS = {
    "mse_mae_loss": dict(loss="mse_mae"),
    "no_advection": dict(loss="mse_mae", advected_memory_days=()),
    "no_fusion": dict(fusion="none"),
    "no_3d": dict(use_3d=False, fusion="none"),
}


def _stage(times: dict, key: str, times_path: pathlib.Path, fn, done: bool):
    """Runs `fn` and records its wall time under `key` unless it was `done` and timed."""
    start = time.perf_counter()
    result = fn()
    if not done or key not in times:
        times[key] = round(time.perf_counter() - start, 1)
        times_path.write_text(json.dumps(times, indent=1))
    print(f"[skill] {key}: {'reused' if done else 'done'} ({times[key]:.0f} s)", flush=True)
    return result


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/bcb_skill", help="simulation, dataset, runs")
    parser.add_argument("--out", default="docs/skill", help="the report's folder")
    parser.add_argument(
        "--ablations",
        nargs="*",
        choices=sorted(ABLATIONS),
        default=None,
        metavar="NAME",
        help=f"train these ablations (all without a name): {', '.join(ABLATIONS)}",
    )
    parser.add_argument(
        "--drop-netcdf", action="store_true", help="delete the netCDF files once built"
    )
    args = parser.parse_args(argv)

    from bcb_emulator.cli import quiet_tensorflow

    quiet_tensorflow()
    from bcb_emulator import skill
    from bcb_emulator.data import BuiltDataset, build_dataset
    from bcb_emulator.evaluation import run_evaluation
    from bcb_emulator.skill import SKILL_BUILDER_CONFIG
    from bcb_emulator.training import train

    work, out = pathlib.Path(args.work), pathlib.Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    times_path = work / "stage_seconds.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    loads = {"start": _load()}
    modele, data = work / "modele", work / "data"

    def dataset_exists() -> bool:
        try:
            BuiltDataset.open(data, SKILL_BUILDER_CONFIG)
        except (FileNotFoundError, ValueError):
            return False
        return True

    built = dataset_exists()
    if not built:
        _stage(times, "simulate", times_path, lambda: skill.simulate(modele), False)
    dataset = _stage(
        times, "build", times_path,
        lambda: build_dataset(modele, data, SKILL_BUILDER_CONFIG), built,
    )  # fmt: skip
    if args.drop_netcdf and modele.exists():
        shutil.rmtree(modele)
    loads["after simulate and build"] = _load()

    chosen = () if args.ablations is None else args.ablations or tuple(ABLATIONS)
    runs = {"emulator": {}, **{name: ABLATIONS[name] for name in chosen}}
    dirs = {}
    for name, overrides in runs.items():
        config = skill.cpu_train_config(str(data), str(work / "training" / name), **overrides)
        done = (pathlib.Path(config.out_dir) / "model.keras").exists()
        _stage(times, f"train {name}", times_path,
               lambda c=config: train(c, dataset=dataset, verbose=2), done)  # fmt: skip
        dirs[name] = config.out_dir
        loads[f"after train {name}" + (" (reused)" if done else "")] = _load()

    compare = {name: folder for name, folder in dirs.items() if name != "emulator"}
    report = _stage(
        times, "evaluate", times_path,
        lambda: run_evaluation(dirs["emulator"], skill.SKILL_EVALUATION_SPLITS, out,
                               compare=compare, progress=False),
        False,
    )  # fmt: skip
    loads["end"] = _load()
    config = skill.cpu_train_config(str(data), dirs["emulator"])
    native = skill.native_train_config("skill/native_data", "skill/native_run")
    config.save(out / "cpu_train_config.json")
    native.save(out / "native_train_config.json")
    _write_readme(out, report, dataset, times, loads, args, sys.argv)


def _write_readme(out, report, dataset, times, loads, args, argv) -> None:
    from bcb_emulator.evaluation.report import TARGET_R2_L1
    from bcb_emulator.skill import SKILL_RUNS

    metrics = json.loads((out / "metrics.json").read_text())["splits"]
    text = (out / "report.md").read_text()
    periods = "; ".join(
        f"{run.scenario}: " + ", ".join(f"{s.name} {s.start}..{s.end}" for s in run.splits)
        for run in SKILL_RUNS
    )
    train_keys = [k for k in times if k.startswith("train")]
    lines = [
        "# The skill benchmark (CPU configuration)",
        "",
        "Made by `benchmarks/bench_skill.py`; the report is [report.md](report.md), its numbers "
        "in [metrics.json](metrics.json). The benchmark resumes: a stage finished by an earlier "
        "run of the same command (simulation, dataset, a trained model) is reused with the time "
        "recorded when it ran; the load averages are this run's.",
        "",
        "## Commands",
        "",
        "```bash",
        "make test   # creates .venv and installs (or make demo)",
        f".venv/bin/python benchmarks/bench_skill.py --work {args.work} --out {args.out}"
        + ("" if args.ablations is None else " ".join([" --ablations", *args.ablations]))
        + (" --drop-netcdf" if args.drop_netcdf else ""),
        "```",
        "",
        "The same, step by step with the command-line tool (the benchmark calls the same "
        "functions):",
        "",
        "```bash",
        "# 1. simulate (each scenario's period, 30-day spin-up, 3-hourly output)",
        *(
            f"bcb-emulator simulate --preset demo --scenario {run.scenario} --spinup-days 30 "
            f"--start {run.start} --end {run.end} --out {args.work}/modele"
            for run in SKILL_RUNS
        ),
        "# 2. build the dataset",
        f"bcb-emulator build-dataset --input {args.work}/modele --data-dir {args.work}/data "
        "--config skill_l20",
        "# 3. train (cpu_train_config.json here, with out_dir = the run's folder)",
        "bcb-emulator train --config cpu_train_config.json",
        "# 4. evaluate",
        f"bcb-emulator evaluate --model {args.work}/training/emulator --split test "
        f"--split ood_pi --split ood_fire2021 --out {args.out}",
        "```",
        "",
        "## What ran",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python "
        f"{platform.python_version()}; finished {time.strftime('%Y-%m-%d %H:%M')} UTC.",
        "- Load average (1 / 5 / 15 min): "
        + "; ".join(f"{k} {v}" for k, v in loads.items())
        + " (other processes shared the 2 cores when these exceed 2).",
        f"- Periods: {periods}.",
        f"- Dataset: `skill_l20` (4°×5°, L = 20, 3-hourly), time steps per split: "
        f"{dataset.split_sizes}.",
        "- Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + ".",
        "- Training configuration: [cpu_train_config.json](cpu_train_config.json) "
        f"({', '.join(train_keys)}); the paper-size GPU configuration, not run here: "
        "[native_train_config.json](native_train_config.json).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
    ]
    lines += _targets_by_split(text)
    lines += ["", "Level-1 R² of the emulator by split: " + ", ".join(
        f"{split} {m['models']['emulator']['r2'][0]:.3f}" for split, m in metrics.items()
    ) + f" (target {TARGET_R2_L1})."]  # fmt: skip
    (out / "README.md").write_text("\n".join(lines) + "\n")


def _targets_by_split(report: str) -> list[str]:
    """The target rows of every split of `report.md`, the split named in each row."""
    rows, split, in_targets = [], None, False
    for line in report.splitlines():
        if line.startswith("## "):
            split, in_targets = line[3:], False
        elif line == "### Targets":
            in_targets = True
        elif line.startswith("### "):
            in_targets = False
        elif in_targets and line.startswith("| ") and line[2:5] not in ("tar", "---"):
            rows.append(f"| {split}: {line[2:]}")
    return rows


if __name__ == "__main__":
    main()
