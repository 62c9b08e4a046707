"""Tests of `tuning`: the search space config, a search on the built tiny dataset (T changes
between trials, resume after a kill), the ``tune`` command with Hyperband and the retrain of
the best configuration, and keras-tuner's chief/worker mode with one chief and two workers."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import pytest

from bcb_emulator.cli import main
from bcb_emulator.config import ModelConfig, Tier, TrainConfig
from tuning import search
from tuning.config import SearchSpace, TuneConfig
from tuning.results import read_trials

BASE_MODEL = ModelConfig(
    height=6,
    width=8,
    levels=3,
    time_steps=2,
    encoder_filters=8,
    groups=4,
    sft_hidden=8,
    lstm_filters=8,
    lstm_layers=1,
)
TINY_SPACE = SearchSpace(
    time_steps=(1, 2, 3),
    encoder_filters=(4, 8),
    lstm_filters=(4, 8),
    lstm_layers=(1, 2),
    fusion=("3d_conditions_2d", "none"),
    sft_hidden=(4, 8),
    learning_rate=(3e-4, 3e-3),
)


def _tune_config(dataset, tmp_path, **overrides) -> TuneConfig:
    train = TrainConfig(
        data_dir=str(dataset.data_dir) if dataset is not None else "data/",
        builder_config=dataset.name if dataset is not None else "tiny_l3",
        out_dir=str(tmp_path / "best"),
        model=BASE_MODEL,
        tiers=(
            Tier("pretrain", "pi_train", "validation", epochs=1, learning_rate=1e-3),
            Tier("finetune", "train", "validation", epochs=1, learning_rate=3e-4),
        ),
        batch_size=4,
    )
    settings = dict(
        train=train,
        out_dir=str(tmp_path / "tune"),
        search_space=TINY_SPACE,
        tuner="random",
        epochs=1,
        max_trials=3,
        train_split="train",
        seed=3,
    )
    return TuneConfig(**{**settings, **overrides})


# --- the config ------------------------------------------------------------------------------


def test_tune_config_round_trips_through_json_and_maps_onto_training(tmp_path):
    config = _tune_config(None, tmp_path, tuner="bayesian", objective="val_r2_l01")
    text = config.to_json()
    assert TuneConfig.from_json(text) == config
    assert json.loads(text)["search_space"]["lstm_layers"] == [1, 2]  # lists in the file
    # Defaults fill what a file leaves out; the search space is typed back into tuples.
    minimal = {
        "train": config.train.to_dict(),
        "out_dir": "x",
        "search_space": {"fusion": ["none"]},
    }
    loaded = TuneConfig.from_dict(minimal)
    assert loaded.tuner == "hyperband" and loaded.objective == "val_loss"
    assert loaded.search_space.fusion == ("none",)
    assert loaded.search_space.time_steps == SearchSpace().time_steps

    values = {
        "time_steps": 3,
        "encoder_filters": 4,
        "lstm_filters": 8,
        "lstm_layers": 2,
        "fusion": "none",
        "learning_rate": 2e-3,
    }
    trial = config.trial_train_config(values, str(tmp_path / "t"))
    assert trial.model == dataclasses.replace(
        BASE_MODEL, time_steps=3, encoder_filters=4, lstm_filters=8, lstm_layers=2, fusion="none"
    )  # sft_hidden absent (no fusion): the base model's
    assert trial.tiers == (Tier("trial", "train", "validation", epochs=1, learning_rate=2e-3),)
    assert trial.out_dir == str(tmp_path / "t") and trial.batch_size == config.train.batch_size
    # Without a split named, the trials fit on the first tier's splits.
    first = dataclasses.replace(config, train_split=None).trial_tier
    assert (first.train_split, first.val_split) == ("pi_train", "validation")

    # Retraining the best: both tiers, the tuned rate as the first's, the ratio 0.3 kept.
    best = config.best_train_config({**values, "fusion": "3d_conditions_2d", "sft_hidden": 4})
    assert best.out_dir == config.train.out_dir
    assert best.model.sft_hidden == 4 and best.model.time_steps == 3
    assert [t.name for t in best.tiers] == ["pretrain", "finetune"]
    assert [t.learning_rate for t in best.tiers] == pytest.approx([2e-3, 6e-4])


def test_the_example_in_the_docs_is_a_valid_config():
    text = (pathlib.Path(__file__).parents[1] / "docs" / "tuning.md").read_text()
    example = TuneConfig.from_json(text.split("```json\n", 1)[1].split("```", 1)[0])
    assert example.objective == "val_r2_l01" and example.search_space.time_steps == (4, 8)
    assert example.trial_tier.train_split == "pi_train"  # the first tier's


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SearchSpace(time_steps=()), "`time_steps` must be a non-empty list"),
        (lambda: SearchSpace(encoder_filters=(16, 16)), "`encoder_filters` must be .* distinct"),
        (lambda: SearchSpace(lstm_filters=(0, 8)), "`lstm_filters` must be .* > 0"),
        (lambda: SearchSpace(lstm_layers=(3, 1)), r"`lstm_layers` must be a range \[min, max\]"),
        (lambda: SearchSpace(learning_rate=(0.0, 1e-3)), "`learning_rate` must be a range"),
        (lambda: SearchSpace(learning_rate=(1e-3,)), "`learning_rate` must be a range"),
        (lambda: SearchSpace(fusion=("sft",)), "`fusion` must be one of"),
        (lambda: SearchSpace.from_dict({"filters": [8]}), "`SearchSpace` has no fields"),
    ],
)
def test_search_space_errors_name_the_field(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "Received: " in str(info.value)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(tuner="grid"), "`tuner` must be one of"),
        (dict(objective="val_accuracy"), "`objective` must be one of"),
        (dict(epochs=0), "`epochs` must be > 0"),
        (dict(hyperband_factor=1), "`hyperband_factor` must be >= 2"),
        (dict(seed=0), "`seed` must be > 0"),
        (dict(search_space=SearchSpace(encoder_filters=(6, 8))), "multiples of the base"),
    ],
)
def test_tune_config_errors_name_the_field(tmp_path, overrides, match):
    with pytest.raises(ValueError, match=match) as info:
        _tune_config(None, tmp_path, **overrides)
    assert "Received: " in str(info.value)


def test_no_3d_base_model_allows_only_no_fusion(tmp_path):
    config = _tune_config(None, tmp_path)
    train = dataclasses.replace(
        config.train, model=dataclasses.replace(BASE_MODEL, use_3d=False, fusion="none")
    )
    with pytest.raises(ValueError, match="`fusion` must be \\['none'\\].*Received"):
        dataclasses.replace(config, train=train)
    ok = dataclasses.replace(config, train=train, search_space=SearchSpace(fusion=("none",)))
    assert ok.model_config({"fusion": "none"}).use_3d is False


@pytest.mark.parametrize(
    "epochs, factor, iterations", [(2, 2, 1), (3, 3, 1), (10, 3, 1), (27, 3, 2), (5, 2, 1)]
)
def test_planned_budget_is_what_keras_tuners_hyperband_oracle_schedules(
    tmp_path, epochs, factor, iterations
):
    """Drives keras-tuner's own Hyperband oracle (no training) and counts its trials and the
    epochs they add."""
    import keras_tuner
    from keras_tuner.src.tuners.hyperband import HyperbandOracle

    hp = keras_tuner.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    oracle = HyperbandOracle(
        keras_tuner.Objective("val_loss", "min"),
        max_epochs=epochs,
        factor=factor,
        hyperband_iterations=iterations,
        seed=1,
        hyperparameters=hp,
    )
    oracle._set_project_dir(str(tmp_path), "p")
    oracle.verbose = 0
    trials = trained = 0
    while (trial := oracle.create_trial("tuner0")).status != "STOPPED":
        values = trial.hyperparameters.values
        trials, trained = (
            trials + 1,
            trained + values["tuner/epochs"] - values["tuner/initial_epoch"],
        )
        oracle.update_trial(trial.trial_id, {"val_loss": (trials * 0.37) % 1.0})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    config = _tune_config(
        None,
        tmp_path,
        tuner="hyperband",
        epochs=epochs,
        hyperband_factor=factor,
        hyperband_iterations=iterations,
    )
    assert config.planned_budget() == (trials, trained)
    random = dataclasses.replace(config, tuner="random", max_trials=7)
    assert random.planned_budget() == (7, 7 * epochs)


def test_tune_config_file_errors_name_the_file(tmp_path):
    path = tmp_path / "tune.json"
    path.write_text(json.dumps({"out_dir": "x"}))
    with pytest.raises(ValueError, match="tune.json is invalid: `TuneConfig` needs `train`"):
        TuneConfig.load(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        TuneConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "tuner, objective, direction",
    [
        ("hyperband", "val_loss", "min"),
        ("random", "val_r2", "max"),
        ("bayesian", "val_r2_l01", "max"),
    ],
)
def test_each_tuner_is_made_with_its_objective_and_budget(tmp_path, tuner, objective, direction):
    import keras_tuner

    config = _tune_config(None, tmp_path, tuner=tuner, objective=objective, epochs=3, max_trials=5)
    made = search.make_tuner(config)
    expected = {
        "hyperband": keras_tuner.Hyperband,
        "random": keras_tuner.RandomSearch,
        "bayesian": keras_tuner.BayesianOptimization,
    }[tuner]
    assert isinstance(made, expected)
    assert (made.oracle.objective.name, made.oracle.objective.direction) == (objective, direction)
    if tuner == "hyperband":
        assert (made.oracle.max_epochs, made.oracle.factor) == (3, config.hyperband_factor)
    else:
        assert made.oracle.max_trials == 5
    # The space as declared: conditional SFT width, log-sampled learning rate.
    space = {hp.name: hp for hp in made.oracle.get_space().space}
    assert set(space) == {
        "time_steps", "encoder_filters", "lstm_filters", "lstm_layers", "fusion", "sft_hidden",
        "learning_rate",
    }  # fmt: skip
    assert list(space["time_steps"].values) == [1, 2, 3]
    assert space["sft_hidden"].conditions[0].values == ["3d_conditions_2d"]
    assert space["learning_rate"].sampling == "log"


# --- a search on the built tiny dataset ---------------------------------------------------


class _Recording:
    """The built dataset, recording the window length and batch shape of every read."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.reads = []  # (split, window, x2d batch shape)

    def windows(self, split, **kwargs):
        ds = self.dataset.windows(split, **kwargs)
        shape = tuple(ds.element_spec[0]["x2d"].shape)
        self.reads.append((split, kwargs["window"], shape))
        return ds

    def num_batches(self, split, **kwargs):
        return self.dataset.num_batches(split, **kwargs)


class _KillInTrial(keras.callbacks.Callback):
    """Simulates a kill: raises when the `trial`-th fit (0-based) of the process begins.

    keras-tuner deep-copies callbacks per trial: the count lives on the class."""

    fits = 0

    def __init__(self, trial):
        super().__init__()
        self.trial = trial

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:
            type(self).fits += 1
            if type(self).fits == self.trial + 1:
                raise KeyboardInterrupt(f"killed in trial {self.trial}")


def _starts(config, trial_id):
    runs = search.read_runs(config.project_dir / f"trial_{trial_id}")
    return [r for r in runs if r["event"] == "start"], [r for r in runs if r["event"] == "end"]


def _plugins_in(folder: pathlib.Path) -> set:
    import tensorflow as tf

    plugins = set()
    for path in folder.rglob("*tfevents*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugins.add(value.metadata.plugin_data.plugin_name)
    return plugins


def test_search_windows_each_trial_at_its_T_and_resumes_after_a_kill(tiny_dataset, tmp_path):
    config = _tune_config(tiny_dataset, tmp_path)
    recording = _Recording(tiny_dataset)
    _KillInTrial.fits = 0
    with pytest.raises(KeyboardInterrupt):
        search.run_search(config, dataset=recording, callbacks=[_KillInTrial(1)], verbose=0)
    killed = {t.trial_id: t.status for t in read_trials(config)}
    assert killed == {"0": "COMPLETED", "1": "RUNNING"}

    summary = search.run_search(config, dataset=recording, verbose=0)
    trials = summary.trials
    assert [t.trial_id for t in trials] == ["0", "1", "2"]
    assert all(t.status == "COMPLETED" for t in trials)
    # The finished trial was not rerun; the killed one was, once; the last ran once.
    assert [len(_starts(config, i)[0]) for i in "012"] == [1, 2, 1]
    assert [len(_starts(config, i)[1]) for i in "012"] == [1, 1, 1]

    # Every fit read its training and validation windows at its trial's T: the batches are
    # (B, T, H, W, 6). Fits in order: trial 0, trial 1 (killed), trial 1, trial 2.
    fits = [trials[0], trials[1], trials[1], trials[2]]
    assert [split for split, _, _ in recording.reads] == ["train", "validation"] * 4
    for k, trial in enumerate(fits):
        for split, window, shape in recording.reads[2 * k : 2 * k + 2]:
            assert window == trial.values["time_steps"], (split, trial)
            assert shape[1:] == (trial.values["time_steps"], 6, 8, 6)
    assert len({t.values["time_steps"] for t in trials}) > 1  # T really changed

    # The results table: one row per trial, the objective the best epoch's val_loss, the
    # cost recorded (the model's weights counted from its config, a positive wall time).
    with open(summary.results["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["trial"] for row in rows] == ["0", "1", "2"]
    for row, trial in zip(rows, trials, strict=True):
        assert float(row["objective"]) == pytest.approx(float(row["val_loss"]))
        assert int(row["time_steps"]) == trial.values["time_steps"]
        assert int(row["epochs"]) == 1 and float(row["seconds"]) > 0
        steps = tiny_dataset.num_batches("train", window=trial.values["time_steps"], batch_size=4)
        assert trial.metrics["steps_per_epoch"] == steps
        assert 0 < float(row["s_per_step"]) * steps <= float(row["seconds"])
        assert (row["sft_hidden"] == "") == (trial.values["fusion"] == "none")
        from bcb_emulator.models import build_emulator

        model = build_emulator(config.model_config(trial.values))
        assert int(row["params"]) == model.count_params()
        history = (config.project_dir / f"trial_{trial.trial_id}" / "history.csv").read_text()
        assert len(history.splitlines()) == 2  # header + the one epoch (killed run's cleared)
    best = min(trials, key=lambda t: t.objective)
    assert summary.best == best
    assert f"| **{best.trial_id}** (best) |" in summary.results["md"].read_text()
    assert summary.results["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # TensorBoard: one folder per trial with the HParams dashboard's data.
    tensorboard = pathlib.Path(config.out_dir) / search.TENSORBOARD_DIR
    assert sorted(p.name for p in tensorboard.iterdir()) == ["0", "1", "2"]
    assert "hparams" in _plugins_in(tensorboard / "1")

    # A finished search rerun runs nothing; one with another space is refused, naming it.
    again = search.run_search(config, dataset=_NoData(tiny_dataset), verbose=0)
    assert again.trials == trials
    other = dataclasses.replace(
        config, search_space=dataclasses.replace(TINY_SPACE, time_steps=(2,))
    )
    with pytest.raises(ValueError, match="fields that differ: search_space.time_steps\\)"):
        search.run_search(other, dataset=_NoData(tiny_dataset), verbose=0)


class _NoData:
    """Counts windows from the stored stamps (as the check before a search does), reads none."""

    def __init__(self, dataset):
        self.num_batches = dataset.num_batches

    def windows(self, *args, **kwargs):
        raise AssertionError("a finished search must not read data")


def test_a_T_longer_than_a_split_fails_before_the_search(tiny_dataset, tmp_path):
    space = dataclasses.replace(TINY_SPACE, time_steps=(2, 5))  # validation holds 4 steps
    config = _tune_config(tiny_dataset, tmp_path, search_space=space)
    with pytest.raises(ValueError, match="split 'validation' .* no window of 5 steps. Received"):
        search.run_search(config, dataset=_NoData(tiny_dataset), verbose=0)
    assert not config.project_dir.exists()


def test_tune_command_hyperband_then_retrain_best(tiny_dataset, tmp_path, capsys):
    """Hyperband through ``bcb-emulator tune``, R² at level 1 maximized, then the best
    configuration retrained through both tiers of `training.train`."""
    config = _tune_config(
        tiny_dataset, tmp_path, tuner="hyperband", objective="val_r2_l01", epochs=2
    )
    path = tmp_path / "tune.json"
    config.save(path)
    assert main(["tune", "--config", str(path), "--retrain-best", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    trials = read_trials(config)
    # max_epochs 2, factor 3: one bracket of two trials of two epochs.
    assert len(trials) == 2 and all(t.metrics["epochs"] == 2 for t in trials)
    assert config.planned_budget() == (2, 4)
    assert "planned: at most 2 trials, 4 epochs in all" in out
    best = max(trials, key=lambda t: t.objective)
    assert f"best trial {best.trial_id}: val_r2_l01 {best.objective:.4f}" in out
    for trial in trials:
        assert trial.objective == pytest.approx(trial.metrics["val_r2_l01"])

    run = pathlib.Path(config.train.out_dir)
    expected = config.best_train_config(best.values)
    assert TrainConfig.load(run / "train_config.json") == expected
    assert TrainConfig.load(pathlib.Path(config.out_dir) / search.BEST_CONFIG_FILE) == expected
    for tier in ("pretrain", "finetune"):
        assert (run / tier / "model.keras").exists()
    from bcb_emulator.models import load_emulator

    model = load_emulator(run / "model.keras", compile=False)
    assert model.input["x2d"].shape[1] == best.values["time_steps"]
    assert f"saved {run / 'model.keras'}" in out


# --- keras-tuner's chief/worker mode -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_chief_and_two_workers_share_a_search_without_repeating_a_trial(tiny_dataset, tmp_path):
    """One chief (the oracle, over gRPC) and two workers, as processes on localhost, run
    ``bcb-emulator tune`` with the same config: two trials, one on each worker, each run once.

    Kept to two trials: three processes start TensorFlow on the 2 cores, and the chief checks
    every 20 s whether the workers are done once the oracle has stopped (keras-tuner's
    `oracle_chief.start_server`)."""
    config = _tune_config(tiny_dataset, tmp_path, max_trials=2)
    path = tmp_path / "tune.json"
    config.save(path)
    port = str(_free_port())
    command = [str(pathlib.Path(sys.executable).parent / "bcb-emulator"), "tune", "--config", path]
    processes = {}
    for tuner_id in ("chief", "tuner0", "tuner1"):
        env = dict(
            os.environ,
            KERASTUNER_TUNER_ID=tuner_id,
            KERASTUNER_ORACLE_IP="127.0.0.1",
            KERASTUNER_ORACLE_PORT=port,
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        processes[tuner_id] = subprocess.Popen(
            [*command, "--verbose", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id] = process.communicate(timeout=600)[0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, (tuner_id, outputs[tuner_id][-3000:])
    assert "worker done" in outputs["tuner0"] and "worker done" in outputs["tuner1"]
    assert "2 trials (2 completed)" in outputs["chief"], outputs["chief"][-3000:]

    trials = read_trials(config)
    assert [t.trial_id for t in trials] == ["0", "1"]
    assert all(t.status == "COMPLETED" for t in trials)
    ran_by = {}
    for trial in trials:
        starts, ends = _starts(config, trial.trial_id)
        assert len(starts) == 1 and len(ends) == 1, trial.trial_id  # no trial run twice
        ran_by[trial.trial_id] = starts[0]["tuner_id"]
    assert sorted(ran_by.values()) == ["tuner0", "tuner1"]  # one each, the chief none
    assert trials[0].values != trials[1].values
    with open(pathlib.Path(config.out_dir) / "results.csv", newline="") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["COMPLETED"] * 2
