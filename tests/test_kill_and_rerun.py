"""Kill-and-rerun: a command SIGKILLed at a chosen point, then rerun, ends as a run never
interrupted — the same weights, the same per-epoch files, the same summary — and leaves
nothing partial behind.

The kill is real: ``tests/kill_at.py`` runs ``bcb-emulator`` in a subprocess that sends itself
SIGKILL at the `N`-th call of a chosen function (no clean-up code runs). Each test checks
that the process did die there (exit status −9), so a point never reached fails the test
instead of passing it unkilled. The uninterrupted runs the reruns are compared with run
in-process, once per module, and so do the reruns (the killed process did part of the work:
equal results also show that two processes compute the same). One kill point per command runs
by default for train, export and predict; the others, and evaluate's and tune's, are marked
``slow``.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
from tiny import tiny_train_config

from bcb_emulator.cli import main
from bcb_emulator.config import Tier, TrainConfig

KILL_AT = pathlib.Path(__file__).with_name("kill_at.py")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _killed(args: list[str], spec: str) -> None:
    """Runs ``bcb-emulator ARGS`` killed as `spec` (``kill_at.py``) says; checks it died so."""
    out = subprocess.run(
        [sys.executable, str(KILL_AT), spec, "--", *map(str, args)],
        capture_output=True, text=True, env=ENV, timeout=600,
    )  # fmt: skip
    assert out.returncode == -signal.SIGKILL, (spec, out.returncode, out.stderr[-3000:])


def _in_process(args: list[str]) -> str:
    """Runs ``bcb-emulator ARGS`` in this process; returns its standard output."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(list(map(str, args))) == 0
    return stdout.getvalue()


def _summary(stdout: str, out_dir: pathlib.Path) -> list[str]:
    """The lines of `stdout` that report results, with `out_dir` made relative."""
    return [line.replace(str(out_dir), "OUT") for line in stdout.splitlines()]


# ---------------------------------------------------------------------------------------------
# train: two tiers of two epochs each

TIERS = ("pretrain", "finetune")


def _train_config_file(dataset, root: pathlib.Path) -> pathlib.Path:
    """The tiny model, two tiers of two epochs with per-level logs, into ``root/run``."""
    tiers = (
        Tier("pretrain", "pi_train", "validation", epochs=2, learning_rate=3e-3),
        Tier("finetune", "train", "validation", epochs=2, learning_rate=1e-3),
    )
    config = tiny_train_config(dataset, root / "run", tiers=tiers, early_stopping_patience=5)
    root.mkdir(parents=True, exist_ok=True)
    config.save(root / "train.json")
    return root / "train.json"


@pytest.fixture(scope="module")
def trained_whole(tiny_dataset, tmp_path_factory):
    """The uninterrupted two-tier run: its folder and its console summary."""
    path = _train_config_file(tiny_dataset, tmp_path_factory.mktemp("whole"))
    run = path.parent / "run"
    return run, _summary(_in_process(["train", "--config", path, "--verbose", "0"]), run)


def _assert_same_training(run: pathlib.Path, whole: pathlib.Path, config: pathlib.Path) -> None:
    """`run` holds what `whole` holds: final and per-tier weights, history and levels rows."""
    for name in ("model.keras", *(f"{tier}/model.keras" for tier in TIERS)):
        got = keras.saving.load_model(run / name, compile=False).get_weights()
        want = keras.saving.load_model(whole / name, compile=False).get_weights()
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    for tier in TIERS:
        for name in ("history.csv", "levels.csv"):
            assert (run / tier / name).read_text() == (whole / tier / name).read_text(), name
        assert not (run / tier / "backup").exists()
    assert not list(run.rglob("*.partial.keras"))  # no model a killed run was saving
    assert TrainConfig.load(run / "train_config.json") == TrainConfig.load(config)


TRAIN_KILLS = {
    # Epoch 0 of tier 1 backed up, epoch 1 begins (the bug: tier 2 then started at epoch 1).
    "during_tier_1": "keras.callbacks:CSVLogger.on_epoch_begin:2:before",
    "during_tier_2": "keras.callbacks:CSVLogger.on_epoch_begin:4:before",
    # Tier 2's last epoch counted done by its backup, the tier's model.keras not yet saved.
    "after_tier_2s_last_epoch": "keras.callbacks:BackupAndRestore.on_epoch_end:4:after",
    # Tier 2's last row written, the backup not yet: the epoch is rerun, its row once.
    "after_the_last_row": "keras.callbacks:CSVLogger.on_epoch_end:4:after",
    # Both tiers saved, the final model.keras not yet.
    "before_the_final_save": "bcb_emulator.training:save_model:3:before",
    # The final model half written (under its temporary name).
    "during_the_final_save": "keras:Model.save:3:after",
}


@pytest.mark.parametrize(
    "point",
    [
        "during_tier_1",
        *(pytest.param(p, marks=pytest.mark.slow) for p in TRAIN_KILLS if p != "during_tier_1"),
    ],
)
def test_train_killed_and_rerun_equals_an_uninterrupted_run(
    point, trained_whole, tiny_dataset, tmp_path
):
    whole, whole_summary = trained_whole
    path = _train_config_file(tiny_dataset, tmp_path)
    run = tmp_path / "run"
    args = ["train", "--config", path, "--verbose", "0"]
    _killed(args, TRAIN_KILLS[point])
    assert not (run / "model.keras").exists()
    assert _summary(_in_process(args), run) == whole_summary
    _assert_same_training(run, whole, path)


# ---------------------------------------------------------------------------------------------
# export: the version folder is renamed into place only once complete


def _export_files(version: pathlib.Path, exported_at: str) -> dict[str, bytes]:
    """The files of a version folder, the export's time stamp blanked (the only difference
    between two exports of one model); the SavedModel's graph and checkpoint files, whose
    bytes differ between two saves of one model, by their variables' values."""
    import tensorflow as tf

    files = {
        str(p.relative_to(version)): p.read_bytes().replace(exported_at.encode(), b"TIME")
        for p in sorted(version.rglob("*"))
        if p.is_file() and p.parent.name != "variables"
        and p.name not in ("saved_model.pb", "fingerprint.pb")
    }  # fmt: skip
    reader = tf.train.load_checkpoint(str(version / "variables" / "variables"))
    values = [  # their numbering in the checkpoint changes from save to save
        np.asarray(reader.get_tensor(name)).tobytes()
        for name in reader.get_variable_to_shape_map()
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    ]
    files["variables/"] = b"".join(sorted(values))
    return files


def _exported_at(version: pathlib.Path) -> str:
    import json

    return json.loads((version / "assets.extra" / "export.json").read_text())["exported"]


@pytest.fixture(scope="module")
def exported_whole(tiny_dataset, tmp_path_factory):
    """The tiny model's uninterrupted export (shared with the serving tests): its training
    folder and its version folder."""
    from serving_helpers import tiny_export

    version = tiny_export(tiny_dataset, tmp_path_factory)
    return version.parents[2] / "run", version


def test_export_killed_and_rerun_equals_an_uninterrupted_export(exported_whole, tmp_path):
    model_dir, whole = exported_whole
    out = tmp_path / "saved_models"
    args = ["export", "--model", model_dir, "--name", "tiny", "--out", out]
    # Killed once the SavedModel is written and checked, before its folder is renamed.
    _killed(args, "bcb_emulator.export:model_card:1:before")
    assert [p.name for p in (out / "tiny").iterdir()] != ["1"]  # a partial folder, no version
    _in_process(args)
    assert sorted(p.name for p in (out / "tiny").iterdir()) == ["1"]  # the partial removed
    got = _export_files(out / "tiny" / "1", _exported_at(out / "tiny" / "1"))
    assert got == _export_files(whole, _exported_at(whole))


# ---------------------------------------------------------------------------------------------
# predict: each day's file is renamed into place only once complete; a rerun skips those

PREDICT_DAYS = ("2010-01-02", "2010-01-04")
DUMMY_DATA = pathlib.Path(__file__).resolve().parents[1] / "tfds_builders/modele_bcb/dummy_data"


def _predict_args(version: pathlib.Path, out: pathlib.Path) -> list:
    return ["predict", "--model", version, "--input", DUMMY_DATA, "--start", PREDICT_DAYS[0],
            "--end", PREDICT_DAYS[1], "--out", out, "--no-progress"]  # fmt: skip


def _netcdf_contents(folder: pathlib.Path) -> dict:
    """Each file's variables (values, attributes) and global attributes, less ``history``
    (it holds the time of writing)."""
    import netCDF4

    contents = {}
    for path in sorted(folder.iterdir()):
        with netCDF4.Dataset(path) as ds:
            attrs = {k: ds.getncattr(k) for k in ds.ncattrs() if k != "history"}
            values = {
                name: (np.asarray(var[:]).tobytes(), {k: var.getncattr(k) for k in var.ncattrs()})
                for name, var in ds.variables.items()
            }
        contents[path.name] = (repr(attrs), values)
    return contents


def test_predict_killed_and_rerun_equals_an_uninterrupted_run(exported_whole, tmp_path):
    _, version = exported_whole
    whole, out = tmp_path / "whole", tmp_path / "out"
    _in_process(_predict_args(version, whole))
    # Killed while the second day's file is half written (under its temporary name).
    _killed(_predict_args(version, out), "bcb_emulator.predict:_write_bcb:2:after")
    assert any(".tmp" in p.name for p in out.iterdir())
    assert "skipped 1 complete ones" in _in_process(_predict_args(version, out))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    got, want = _netcdf_contents(out), _netcdf_contents(whole)
    assert got.keys() == want.keys() and len(got) == 3
    for name in want:
        assert got[name][0] == want[name][0], name
        for variable, (values, attrs) in want[name][1].items():
            assert got[name][1][variable][1] == attrs, (name, variable)
            if variable != "BCB":
                assert got[name][1][variable][0] == values, (name, variable)
    # BCB: the same within float32 rounding (the rerun's first day starts from the context
    # frames read from files, the whole run's from the steps it carried).
    for name in want:
        bcb = [np.frombuffer(c[name][1]["BCB"][0], "float32") for c in (got, want)]
        np.testing.assert_allclose(*bcb, rtol=1e-5, atol=0, err_msg=name)


# ---------------------------------------------------------------------------------------------
# evaluate: metrics.json and report.md are written whole; a rerun recomputes them


@pytest.mark.slow
def test_evaluate_killed_and_rerun_equals_an_uninterrupted_run(exported_whole, tmp_path):
    model_dir, _ = exported_whole

    def args(out):
        return ["evaluate", "--model", model_dir, "--split", "test", "--out", out, "--quiet"]

    whole, out = tmp_path / "whole", tmp_path / "out"
    _in_process(args(whole))
    # Killed among the report's figures: metrics.json written, report.md not yet.
    _killed(args(out), "bcb_emulator.evaluation.report:_plot_burden:1:before")
    assert (out / "metrics.json").exists() and not (out / "report.md").exists()
    _in_process(args(out))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())
    for name in ("metrics.json", "report.md"):
        assert (out / name).read_text() == (whole / name).read_text(), name


# ---------------------------------------------------------------------------------------------
# tune: a rerun resumes the search; finished trials are not repeated


def _tune_config_file(dataset, root: pathlib.Path) -> pathlib.Path:
    """A random search of two one-epoch trials of the tiny model into ``root/tune``."""
    from tuning.config import SearchSpace, TuneConfig

    base = tiny_train_config(dataset, root / "best", per_level_metrics=False)
    config = TuneConfig(
        train=base, out_dir=str(root / "tune"), tuner="random", epochs=1, max_trials=2, seed=3,
        search_space=SearchSpace(time_steps=(1, 2), lstm_filters=(4, 8)),
    )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    config.save(root / "tune.json")
    return root / "tune.json"


def _results(root: pathlib.Path) -> list[dict]:
    """The rows of results.csv less the measured times."""
    import csv

    with open(root / "tune" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{k: v for k, v in row.items() if k not in ("seconds", "s_per_step")} for row in rows]


@pytest.mark.slow
def test_tune_killed_and_rerun_equals_an_uninterrupted_search(tiny_dataset, tmp_path):
    from tuning import search

    args = {k: ["tune", "--config", _tune_config_file(tiny_dataset, tmp_path / k), "--verbose",
                "0"] for k in ("whole", "killed")}  # fmt: skip
    _in_process(args["whole"])
    # Killed as the second trial's fit begins: the first trial done, the second running.
    _killed(args["killed"], "tuning.hypermodel:EmulatorHyperModel.fit:2:before")
    _in_process(args["killed"])
    assert _results(tmp_path / "killed") == _results(tmp_path / "whole")
    project = tmp_path / "killed" / "tune" / "search"
    starts = [
        [r for r in search.read_runs(project / f"trial_{i}") if r["event"] == "start"] for i in "01"
    ]
    assert [len(s) for s in starts] == [1, 2]  # the finished trial was not rerun
