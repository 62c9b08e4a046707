"""Kill-and-rerun: a command SIGKILLed at a chosen point, then rerun, ends as a run never
interrupted — the same weights, the same per-epoch files, the same summary — and leaves
nothing partial behind.

The kill is real: ``tests/kill_at.py`` runs ``bcb-emulator`` in a subprocess that sends itself
SIGKILL at the `N`-th call of a chosen function (no clean-up code runs). Each test checks
that the process did die there (exit status −9), so a point never reached fails the test
instead of passing it unkilled. The uninterrupted runs the reruns are compared with run
in-process, once per module. One kill point per command runs by default; the others are
marked ``slow``.
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


def _rerun(args: list[str]) -> str:
    """Runs ``bcb-emulator ARGS`` as a user would; returns its standard output."""
    command = [str(pathlib.Path(sys.executable).parent / "bcb-emulator"), *map(str, args)]
    out = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return out.stdout


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
    assert _summary(_rerun(args), run) == whole_summary
    _assert_same_training(run, whole, path)
