"""The real path end to end: a built TFDS dataset → `make_windows` → `training.train`.

No stand-in data: the session's ``tiny_l3`` dataset (built once from the dummy data by the
`tiny_dataset` fixture) is windowed by the package's pipeline and fitted for one short epoch
per tier with `model.fit`, through the ``bcb-emulator train`` command as a user runs it.
"""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import tensorflow as tf
from tiny import tiny_train_config

from bcb_emulator import training
from bcb_emulator.cli import main
from bcb_emulator.config import Tier, TrainConfig
from bcb_emulator.models import load_emulator


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.per_epoch = []

    def on_epoch_begin(self, epoch, logs=None):
        self.per_epoch.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.per_epoch[-1] += 1


def _config(dataset, out_dir, **overrides) -> TrainConfig:
    """Two one-epoch tiers of the tiny model (pre-industrial, then modern)."""
    tiers = (
        Tier("pretrain", "pi_train", "validation", epochs=1),
        Tier("finetune", "train", "validation", epochs=1),
    )
    return tiny_train_config(dataset, out_dir, **{"tiers": tiers, **overrides})


def test_train_command_on_the_built_dataset(tiny_dataset, tmp_path, capsys):
    config = _config(tiny_dataset, tmp_path / "run")
    path = tmp_path / "run.json"
    config.save(path)
    assert main(["train", "--config", str(path), "--verbose", "2"]) == 0
    out = capsys.readouterr().out
    assert "finetune: best val_loss" in out and "val_r2_l01" in out
    # The console's epoch lines are short: loss, mean R², R² at level 1 (no per-level list).
    epoch_lines = [line for line in out.splitlines() if "val_loss:" in line]
    assert len(epoch_lines) == 2, out
    for line in epoch_lines:
        assert "val_r2_l01:" in line and "r2_l02" not in line and "_r:" not in line, line
        assert len(line) < 200, line  # a loaded machine prints "13s" for the epoch
    run = pathlib.Path(config.out_dir)
    assert TrainConfig.load(run / "train_config.json") == config
    for tier in ("pretrain", "finetune"):
        history = training._read_history(run / tier / "history.csv")
        assert len(history["loss"]) == 1 and np.isfinite(history["val_loss"]).all()
        levels = training._read_history(run / tier / "levels.csv")
        assert {"r2_l03", "val_r_l01"} <= set(levels)

    # The saved model predicts the test split's windows; in physical units BCB is positive.
    model = load_emulator(run / "model.keras", compile=False)
    inputs, y = next(
        iter(tiny_dataset.windows("test", window=2, batch_size=8, shuffle=False, seed=0))
    )
    pred = model.predict(inputs, verbose=0)  # (B, H, W, L) normalized
    assert pred.shape == y.shape == (3, 6, 8, 3)  # 4 steps, T = 2: 3 windows
    bcb = tiny_dataset.stats.denormalize_target(pred)  # 10⁻¹¹ kg/kg
    assert np.isfinite(bcb).all() and (bcb > -tiny_dataset.stats.log_offset).all()


def test_an_epoch_is_every_window_of_the_split_counted_without_reading(
    tiny_dataset, tmp_path, monkeypatch
):
    """With `steps_per_epoch` unset an epoch is the split's batches, counted from the stored
    stamps: train holds 8 steps, T = 2 and stride 1 give 7 windows, 2 batches of 4."""
    config = _config(
        tiny_dataset,
        tmp_path / "run",
        tiers=(Tier("only", "train", "validation", epochs=2),),
        per_level_metrics=False,
    )
    counter = _CountBatches()

    def no_pass_to_count(*args, **kwargs):
        raise AssertionError("the training split was read through to count its batches")

    monkeypatch.setattr(tf.data.Dataset, "reduce", no_pass_to_count)
    summary = training.train(config, callbacks=[counter], verbose=0)
    assert counter.per_epoch == [2, 2]
    assert tiny_dataset.num_batches("train", window=2, batch_size=4) == 2
    assert len(summary.history["only"]["loss"]) == 2
    assert (
        json.loads((pathlib.Path(config.out_dir) / "train_config.json").read_text())["stride"] == 1
    )
