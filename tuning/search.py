"""The search: keras-tuner's tuners on `EmulatorHyperModel`, resumable and distributable.

`run_search(config)` runs Hyperband, a random search or Bayesian optimization as
`TuneConfig.tuner` says, into `TuneConfig.out_dir`, and writes the results table
(`tuning.results`). It resumes: keras-tuner reloads its project (``overwrite=False``) and
reruns only the trial that was running when the search was killed. Under keras-tuner's
chief/worker mode (``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP``,
``KERASTUNER_ORACLE_PORT``) the chief serves the oracle and writes the results when every
worker is done; workers run trials. `retrain_best` trains the best configuration through
`bcb_emulator.training.train` (both tiers) where ``bcb-emulator train`` would save it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time
from collections.abc import Sequence
from typing import Any

import keras_tuner

from tuning import results as results_module
from tuning.config import OBJECTIVES, TuneConfig
from tuning.hypermodel import EmulatorHyperModel

#: Inside each ``trial_<id>/``: one line per start and per end of the trial's run.
RUNS_FILE = "runs.jsonl"
#: Inside `TuneConfig.out_dir`.
CONFIG_FILE = "tune_config.json"
BEST_CONFIG_FILE = "best_train_config.json"
TENSORBOARD_DIR = "tensorboard"


class _TrialRuns:
    """Mixin for keras-tuner's tuners: gives `EmulatorHyperModel.fit` the trial's folder and
    appends each start and end of a trial to its ``runs.jsonl`` (with the tuner's id), so a
    trial run twice shows. A trial rerun after a kill starts with no history or TensorBoard
    logs of the killed run."""

    def run_trial(self, trial, *args, **kwargs):
        trial_dir = pathlib.Path(self.get_trial_dir(trial.trial_id))
        if read_runs(trial_dir):
            for name in ("history.csv", "levels.csv"):
                (trial_dir / name).unlink(missing_ok=True)
            for callback in kwargs.get("callbacks", []):
                if type(callback).__name__ == "TensorBoard":
                    shutil.rmtree(pathlib.Path(callback.log_dir) / trial.trial_id, True)
        _log_run(trial_dir, {"event": "start", "tuner_id": self.tuner_id, "time": time.time()})
        outcome = super().run_trial(trial, *args, trial_dir=str(trial_dir), **kwargs)
        _log_run(trial_dir, {"event": "end", "tuner_id": self.tuner_id, "time": time.time()})
        return outcome


class HyperbandTuner(_TrialRuns, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` that logs its trials' runs."""


class RandomSearchTuner(_TrialRuns, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` that logs its trials' runs."""


class BayesianTuner(_TrialRuns, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that logs its trials' runs."""


def _log_run(trial_dir: pathlib.Path, record: dict) -> None:
    with (trial_dir / RUNS_FILE).open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_runs(trial_dir: str | os.PathLike) -> list[dict]:
    """The start and end records of a trial's runs (``runs.jsonl``), in order."""
    path = pathlib.Path(trial_dir) / RUNS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def role() -> str:
    """``"chief"``, ``"worker"`` (keras-tuner's distributed mode) or ``"single"``."""
    from keras_tuner.src.distribute import utils as dist_utils

    if not dist_utils.has_chief_oracle():
        return "single"
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def make_tuner(config: TuneConfig, dataset: Any = None, strategy: Any = None):
    """Returns the keras-tuner tuner of `config` on an `EmulatorHyperModel`.

    The project in ``config.out_dir / config.project_name`` is reloaded when it exists
    (``overwrite=False``): finished trials are kept, a trial that was running is rerun.
    """
    hypermodel = EmulatorHyperModel(config, dataset, strategy)
    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(config.objective, OBJECTIVES[config.objective]),
        directory=config.out_dir,
        project_name=config.project_name,
        overwrite=False,
        seed=config.seed,
    )
    if config.tuner == "hyperband":
        return HyperbandTuner(
            max_epochs=config.epochs,
            factor=config.hyperband_factor,
            hyperband_iterations=config.hyperband_iterations,
            **common,
        )
    if config.tuner == "random":
        return RandomSearchTuner(max_trials=config.max_trials, **common)
    return BayesianTuner(max_trials=config.max_trials, **common)


@dataclasses.dataclass(frozen=True)
class TuneSummary:
    """What `run_search` did.

    Attributes:
        role: ``"single"``, ``"chief"`` or ``"worker"``.
        trials: every trial in the project, in order (empty on a worker, which does not
            hold the oracle).
        best: the best completed trial by the objective (None on a worker or without one).
        results: paths of ``results.csv``, ``results.md``, ``results.png`` (empty on a
            worker).
    """

    role: str
    trials: list[results_module.TrialResult]
    best: results_module.TrialResult | None
    results: dict[str, pathlib.Path]


def run_search(
    config: TuneConfig,
    dataset: Any = None,
    callbacks: Sequence[Any] = (),
    verbose: int | str = 1,
) -> TuneSummary:
    """Runs (or resumes) the search of `config` and writes its results.

    Args:
        config: the search.
        dataset: a `bcb_emulator.data.BuiltDataset` (or an object with its ``windows`` and
            ``num_batches``); None opens the base training config's dataset.
        callbacks: extra Keras callbacks for every trial (deep-copied per trial by
            keras-tuner).
        verbose: keras-tuner's and `model.fit`'s verbosity.

    Returns:
        A `TuneSummary`.
    """
    import keras

    from bcb_emulator.training import make_strategy

    out_dir = pathlib.Path(config.out_dir)
    _check_same_search(config, out_dir / CONFIG_FILE)
    if dataset is None:
        from bcb_emulator.data import BuiltDataset

        dataset = BuiltDataset.open(config.train.data_dir, config.train.builder_config)
    check_windows(config, dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    me = role()
    if me != "worker":
        config.save(out_dir / CONFIG_FILE)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.train.mixed_precision)
    try:
        tuner = make_tuner(config, dataset, make_strategy(config.train.distribution))
        tuner.search(
            callbacks=[keras.callbacks.TensorBoard(str(out_dir / TENSORBOARD_DIR)), *callbacks],
            epochs=config.epochs,
            verbose=verbose,
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if me == "worker":
        return TuneSummary(me, [], None, {})
    trials = results_module.read_trials(config)
    paths = results_module.write_results(config, trials)
    return TuneSummary(me, trials, results_module.best_trial(config, trials), paths)


#: Fields a resumed search may change: more trials for a random or Bayesian search, and what
#: ``--retrain-best`` trains (the base config's tiers and out_dir).
RESUMABLE_CHANGES = ("max_trials", "train.tiers", "train.out_dir")


def _check_same_search(config: TuneConfig, path: pathlib.Path) -> None:
    """Refuses to resume a search made with another configuration (other space, tuner,
    objective, data or training settings would mix incomparable trials); names the fields."""
    if not path.exists():
        return
    fields = TuneConfig.load(path).differences(config)
    fields = [f for f in fields if f not in RESUMABLE_CHANGES]
    if fields:
        raise ValueError(
            f"{path.parent} holds a search of another configuration (fields that differ: "
            f"{', '.join(fields)}). Use another `out_dir` (or `project_name`), or remove that "
            f"folder to start afresh. Received: {path}"
        )


def check_windows(config: TuneConfig, dataset: Any) -> None:
    """Raises `ValueError` before the search if a split the trials use (`TuneConfig.trial_tier`)
    holds no window of one of the `time_steps` choices (counted from the stored time stamps,
    without reading the data)."""
    tier = config.trial_tier
    for split, stride in ((tier.train_split, config.train.stride), (tier.val_split, 1)):
        for steps in config.search_space.time_steps:
            batches = dataset.num_batches(
                split, window=steps, batch_size=config.train.batch_size, stride=stride
            )
            if batches < 1:
                raise ValueError(
                    f"`time_steps` must leave a window in every split the trials use: split "
                    f"{split!r} of {config.train.builder_config!r} holds no window of {steps} "
                    f"steps. Received: time_steps={list(config.search_space.time_steps)}"
                )


def retrain_best(config: TuneConfig, dataset: Any = None, verbose: int | str = 2):
    """Trains the best trial's configuration with `bcb_emulator.training.train`.

    The `TrainConfig` is `TuneConfig.best_train_config` of the best completed trial (the base
    config's tiers and ``out_dir``, the tuned model and learning rate); it is also written to
    ``<out_dir>/best_train_config.json``. Returns `training.train`'s `TrainSummary`: the model
    and its config are saved in ``config.train.out_dir`` as ``bcb-emulator train`` saves them.
    """
    from bcb_emulator import training

    best = results_module.best_trial(config, results_module.read_trials(config))
    if best is None:
        raise ValueError(
            f"`--retrain-best` needs a completed trial in {config.project_dir}. "
            "Received: no completed trial"
        )
    train_config = config.best_train_config(best.values)
    train_config.save(pathlib.Path(config.out_dir) / BEST_CONFIG_FILE)
    return training.train(train_config, dataset=dataset, verbose=verbose)
