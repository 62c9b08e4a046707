"""The demo: the main job end to end on the embedded default data (``bcb-emulator demo``).

Stages, each writing under ``out`` and each resuming or reusing what an interrupted demo left:

1. the reference transport model simulates a pre-industrial fortnight, a modern period and an
   extreme fire year (4°×5°, 3-hourly output) into ``out/modele``;
2. the TFDS builder turns those files into the ``modele_bcb/demo_l20`` dataset in ``out/data``
   and prints its splits;
3. ``model.fit`` trains a small emulator in two tiers (pre-industrial, then modern) and saves it
   with its config in ``out/training``;
4. the evaluation compares it with NINT (the monthly mean of the training days) and persistence
   on the validation, test and extreme-fire splits, in physical units, and writes
   ``out/evaluation/report.md`` (with its PNGs) and ``metrics.json``;
5. the trained model is exported as a SavedModel in physical units to
   ``<saved_models>/bcb_demo/<version>/`` (reloaded and checked against the Keras model; a
   rerun reuses the version that holds this very model);
6. a demo-sized keras-tuner sweep (`tuning.demo_tune_config`: a few trials of one or two
   epochs) writes its results table into ``out/tune``.

The demo's periods are defined here once: `DEMO_RUNS` (what is simulated, per scenario) and
`DEMO_SPLITS` (the splits of the ``demo_l20`` builder config) come from the same ranges.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from bcb_emulator.data.spec import SplitRange

#: The TFDS builder config whose splits cover the demo's periods.
DEMO_BUILDER_CONFIG = "demo_l20"


@dataclasses.dataclass(frozen=True)
class SimulatedPeriod:
    """One simulated period (of the demo, of the skill benchmark): consecutive splits of one
    emission scenario.

    Attributes:
        scenario: emission scenario of the reference model (``"pi"``, ``"2010s"``, ``"2020s"``).
        splits: the splits the period holds, consecutive, in time order.
    """

    scenario: str
    splits: tuple[SplitRange, ...]

    @property
    def start(self) -> str:
        """First day simulated and written, ``YYYY-MM-DD``."""
        return self.splits[0].start

    @property
    def end(self) -> str:
        """Last day written, ``YYYY-MM-DD``."""
        return self.splits[-1].end


#: The demo's simulated periods: a pre-industrial fortnight (pre-training tier), a modern
#: period (training, validation, test) and the extreme fire year 2021 (out-of-period test).
DEMO_RUNS: tuple[SimulatedPeriod, ...] = (
    SimulatedPeriod("pi", (SplitRange("pi_train", "1851-08-01", "1851-08-16"),)),
    SimulatedPeriod(
        "2010s",
        (
            SplitRange("train", "2010-08-01", "2010-08-28"),
            SplitRange("validation", "2010-08-29", "2010-09-02"),
            SplitRange("test", "2010-09-03", "2010-09-06"),
        ),
    ),
    SimulatedPeriod("2020s", (SplitRange("ood_fire2021", "2021-08-01", "2021-08-08"),)),
)
#: The splits the demo's evaluation reports on.
DEMO_EVALUATION_SPLITS = ("validation", "test", "ood_fire2021")
#: The splits of the ``demo_l20`` builder config.
DEMO_SPLITS: tuple[SplitRange, ...] = tuple(s for run in DEMO_RUNS for s in run.splits)


def simulate(out: Path, progress: bool = True) -> Path:
    """Stage 1: simulates the demo periods into ``out/modele`` (resumable); returns it."""
    from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

    modele_dir = Path(out) / "modele"
    for period in DEMO_RUNS:
        config = SimulationConfig.preset("demo", scenario=period.scenario)
        ReferenceModel(config).run(period.start, period.end, modele_dir, progress=progress)
    return modele_dir


def _set_aside_if_changed(folder: Path, config_file: str, config) -> None:
    """Renames `folder` to ``<folder>.previous-<n>`` if it holds a run of another config.

    A newer version of the demo may train or tune differently; training and tuning refuse to
    resume another configuration's run, and nothing is deleted: the old run is kept aside.
    """
    path = folder / config_file
    if not path.exists() or type(config).load(path) == config:
        return
    n = 1
    while folder.with_name(f"{folder.name}.previous-{n}").exists():
        n += 1
    aside = folder.with_name(f"{folder.name}.previous-{n}")
    folder.rename(aside)
    print(f"[demo] {folder} held a run of another configuration (an older demo): moved to {aside}")


#: TF Serving's model name of the demo's export.
DEMO_MODEL_NAME = "bcb_demo"


def export_demo_model(model_dir: Path, saved_models: Path) -> tuple[Path, bool]:
    """Stage 5: exports the model of `model_dir` unless a version already holds it.

    Returns:
        ``(version folder, exported now)``.
    """
    from bcb_emulator.export import ASSETS_EXTRA, existing_versions, export_model

    model = (model_dir / "model.keras").read_bytes()
    root = saved_models / DEMO_MODEL_NAME
    for version in sorted(existing_versions(root), reverse=True):
        kept = root / str(version) / ASSETS_EXTRA / "model.keras"
        if kept.is_file() and kept.read_bytes() == model:
            return root / str(version), False
    return export_model(model_dir, DEMO_MODEL_NAME, saved_models), True


def run_demo(
    out: str | Path, progress: bool = True, saved_models: str | Path = "saved_models"
) -> None:
    """Runs every stage of the demo into `out` (the export into `saved_models`), printing what
    each made and its time."""
    from bcb_emulator.config import demo_train_config
    from bcb_emulator.data import build_dataset
    from bcb_emulator.evaluation import run_evaluation
    from bcb_emulator.export import check_export
    from bcb_emulator.training import train
    from tuning import search
    from tuning.config import demo_tune_config

    out = Path(out)
    t0 = time.perf_counter()
    modele_dir = simulate(out, progress=progress)
    n_files = len(list(modele_dir.glob("*.nc")))
    print(f"[demo 1/6] reference model: {n_files} daily files in {modele_dir} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip

    t1 = time.perf_counter()
    data_dir = out / "data"
    dataset = build_dataset(modele_dir, data_dir, DEMO_BUILDER_CONFIG)
    print(f"[demo 2/6] TFDS dataset modele_bcb/{dataset.name} in {dataset.path} "
          f"({time.perf_counter() - t1:.0f} s), time steps per split:")  # fmt: skip
    for split, n in dataset.split_sizes.items():
        print(f"    {split:14s} {n:6d}")

    t2 = time.perf_counter()
    config = demo_train_config(str(data_dir), str(out / "training"), DEMO_BUILDER_CONFIG)
    _set_aside_if_changed(out / "training", "train_config.json", config)
    summary = train(config, dataset=dataset, verbose=2 if progress else 0)
    print(f"[demo 3/6] trained and saved {summary.model_path} with its config "
          f"{summary.config_path} ({time.perf_counter() - t2:.0f} s)")  # fmt: skip
    for tier, history in summary.history.items():
        epochs = len(history.get("val_loss", []))
        print(f"    {tier}: best validation loss {summary.best(tier):.4f} over {epochs} epochs")

    t3 = time.perf_counter()
    report = run_evaluation(
        summary.model_path.parent, DEMO_EVALUATION_SPLITS, out / "evaluation", progress=progress
    )
    print(f"[demo 4/6] evaluation against NINT and persistence "
          f"({time.perf_counter() - t3:.0f} s): {report}")  # fmt: skip

    t4 = time.perf_counter()
    version, exported = export_demo_model(summary.model_path.parent, Path(saved_models))
    check = check_export(version)  # reloads the SavedModel: window vs Keras, step vs window
    how = "exported" if exported else "reused"
    print(f"[demo 5/6] SavedModel {version} ({how}, {time.perf_counter() - t4:.0f} s): "
          f"reloaded, relative error vs Keras {check.window_vs_keras:.1e}, coupling step vs "
          f"window {check.step_vs_window:.1e}")  # fmt: skip

    t5 = time.perf_counter()
    tune = demo_tune_config(str(data_dir), str(out / "tune"), DEMO_BUILDER_CONFIG)
    _set_aside_if_changed(out / "tune", search.CONFIG_FILE, tune)
    found = search.run_search(tune, dataset=dataset, verbose=0)
    best = found.best
    best_text = f"; best {tune.objective} {best.objective:.4f}: {best.values}" if best else ""
    print(f"[demo 6/6] keras-tuner sweep: {len(found.trials)} trials "
          f"({time.perf_counter() - t5:.0f} s), results {found.results['md']}"
          f"{best_text}")  # fmt: skip
    print(f"[demo] done in {time.perf_counter() - t0:.0f} s; the evaluation report: {report}")
