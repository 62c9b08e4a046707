"""Tests of `training.train`: fit, resume after a kill, two tiers, MirroredStrategy, CLI."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import textwrap
import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from bcb_emulator import training
from bcb_emulator.config import ModelConfig, Tier, TrainConfig

T, H, W, L = 3, 8, 12, 3
MODEL = ModelConfig(
    height=H,
    width=W,
    levels=L,
    time_steps=T,
    encoder_filters=8,
    groups=4,
    sft_hidden=8,
    lstm_filters=8,
    lstm_layers=1,
)


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
    """Stand-in for a `BuiltDataset`: learnable normalized windows, one seed per split.

    The real TFDS → tf.data → `model.fit` path is trained in `test_end_to_end.py`; these tests
    are about the training loop (tiers, resume, strategies) on data fast to make.
    """

    examples: int = 8
    ordered: bool = False

    def windows(self, split, *, window, stride=1, batch_size, shuffle, seed, **pipeline_options):
        rng = np.random.default_rng(zlib.crc32(split.encode()))
        x2d = rng.normal(size=(self.examples, window, H, W, 6)).astype("float32")
        x3d = rng.normal(size=(self.examples, window, H, W, 8 * L)).astype("float32")
        # BCB rises with the last emission frame and follows the last profile of variable 0.
        y = 0.5 * x2d[:, -1, :, :, 5:6] + 0.5 * x3d[:, -1, :, :, :L]  # (N, H, W, L)
        ds = tf.data.Dataset.from_tensor_slices(({"x2d": x2d, "x3d": x3d}, y.astype("float32")))
        if shuffle and not self.ordered:
            ds = ds.shuffle(self.examples, seed=seed)
        return ds.batch(batch_size)

    def num_batches(self, split, *, window, batch_size, stride=1, drop_remainder=False):
        return -(-self.examples // batch_size)


SYNTHETIC = SyntheticDataset()


def _config(tmp_path, **overrides):
    base = TrainConfig(
        data_dir=str(tmp_path / "data"),
        builder_config="tiny",
        out_dir=str(tmp_path / "run"),
        model=MODEL,
        tiers=(
            Tier("pretrain", "pre", "val", epochs=2, learning_rate=3e-3),
            Tier("finetune", "train", "val", epochs=3, learning_rate=1e-3),
        ),
        batch_size=4,
        per_level_metrics=True,
        early_stopping_patience=10,
    )
    return dataclasses.replace(base, **overrides)


def test_two_tier_training_saves_model_config_and_logs(tmp_path):
    config = _config(tmp_path)
    summary = training.train(config, dataset=SYNTHETIC, verbose=0)
    run = pathlib.Path(config.out_dir)
    assert summary.model_path == run / "model.keras" and summary.model_path.exists()
    assert TrainConfig.load(summary.config_path) == config
    assert summary.replicas == 1
    for tier in ("pretrain", "finetune"):
        assert (run / tier / "best.weights.h5").exists()
        assert (run / tier / "model.keras").exists()
        assert any((run / tier / "logs").rglob("*tfevents*"))
        assert not (run / tier / "backup").exists()  # removed after a finished fit
    hist = summary.history
    assert len(hist["pretrain"]["loss"]) == 2 and len(hist["finetune"]["loss"]) == 3
    # The console and history.csv: loss, mean R², R² at level 1; every level in levels.csv.
    assert set(hist["finetune"]) == {
        "loss", "r2", "r2_l01", "val_loss", "val_r2", "val_r2_l01", "learning_rate"
    }  # fmt: skip
    levels = training._read_history(run / "finetune" / "levels.csv")
    assert len(levels["val_r2_l03"]) == 3 and len(levels["r_l01"]) == 3
    assert {f"{p}{m}_l{k:02d}" for p in ("", "val_") for m in ("r2", "r") for k in (1, 2, 3)} == (
        set(levels)
    )
    np.testing.assert_allclose(levels["val_r2_l01"], hist["finetune"]["val_r2_l01"], rtol=1e-6)
    np.testing.assert_allclose(
        np.mean([levels[f"val_r2_l{k:02d}"] for k in (1, 2, 3)], axis=0),
        hist["finetune"]["val_r2"],
        rtol=1e-5,
    )
    np.testing.assert_allclose(levels["r2_l01"], hist["finetune"]["r2_l01"], rtol=1e-6)
    # Fine-tuning starts from pre-trained weights: it begins better than pre-training did.
    assert hist["finetune"]["loss"][0] < hist["pretrain"]["loss"][0]
    # Cosine schedule: the learning rate decays within a tier.
    lr = hist["finetune"]["learning_rate"]
    assert lr[-1] < lr[0] <= 1e-3
    # The saved model is the best-val checkpoint of the last tier and loads with its layers.
    model = keras.saving.load_model(summary.model_path)
    x, y = next(iter(SYNTHETIC.windows("val", window=T, batch_size=8, shuffle=False, seed=0)))
    pred = model.predict(x, verbose=0)
    assert pred.shape == (8, H, W, L)
    err = float(np.mean(0.5 * ((pred - y) ** 2 + np.abs(pred - y))))
    np.testing.assert_allclose(err, summary.best("finetune"), rtol=1e-4)
    # Rerunning a finished run fits nothing: both tiers are skipped, the history is kept.
    rerun = training.train(config, dataset=_NoData(), verbose=0)
    assert rerun.history == summary.history
    np.testing.assert_array_equal(
        keras.saving.load_model(rerun.model_path).predict(x, verbose=0), pred
    )


class _NoData:
    def windows(self, *args, **kwargs):
        raise AssertionError("a finished tier must not read data")

    num_batches = windows


class _KillAt(keras.callbacks.Callback):
    """Simulates a kill: raises at the start of epoch `epoch` of the tier it is attached to."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"killed at epoch {epoch}")


def _final_weights(config):
    return keras.saving.load_model(pathlib.Path(config.out_dir) / "model.keras").get_weights()


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    """A run killed mid-tier and rerun reaches the weights of a run never interrupted."""
    tiers = (Tier("only", "train", "val", epochs=3, learning_rate=3e-3),)
    whole = _config(tmp_path / "whole", tiers=tiers, per_level_metrics=False)
    training.train(whole, dataset=SYNTHETIC, verbose=0)

    killed = _config(tmp_path / "killed", tiers=tiers, per_level_metrics=False)
    with pytest.raises(KeyboardInterrupt):
        training.train(killed, dataset=SYNTHETIC, callbacks=[_KillAt(2)], verbose=0)
    run = pathlib.Path(killed.out_dir)
    assert (run / "only" / "backup").exists()
    assert not (run / "model.keras").exists()
    summary = training.train(killed, dataset=SYNTHETIC, verbose=0)
    assert len(summary.history["only"]["loss"]) == 3  # 2 before the kill + 1 after

    for a, b in zip(_final_weights(whole), _final_weights(killed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bad_dataset_shape_fails_early_naming_split(tmp_path):
    config = _config(tmp_path, model=dataclasses.replace(MODEL, levels=4))
    with pytest.raises(ValueError, match="split 'pre'.*Received"):
        training.train(config, dataset=SYNTHETIC, verbose=0)


def test_no_3d_ablation_area_weighted(tmp_path):
    """The ablation without the 3D branch, area-weighted, without per-level logs."""
    config = _config(
        tmp_path,
        model=dataclasses.replace(MODEL, use_3d=False, fusion="none"),
        tiers=(Tier("only", "train", "val", epochs=1),),
        area_weighted=True,
        per_level_metrics=False,
    )
    training.train(config, dataset=SYNTHETIC, verbose=0)
    run = pathlib.Path(config.out_dir)
    model = keras.saving.load_model(run / "model.keras")
    assert list(model.input.keys()) == ["x2d"]  # the windows' x3d is dropped, not fed
    assert TrainConfig.load(run / "train_config.json") == config
    history = training._read_history(run / "only" / "history.csv")
    assert "val_r2" in history and not (run / "only" / "levels.csv").exists()


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys, pathlib
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    sys.path.insert(0, {tests!r})
    from test_training import _config, SyntheticDataset
    from bcb_emulator import training
    from bcb_emulator.config import Tier
    tmp = pathlib.Path({tmp!r})
    tiers = (Tier("only", "train", "val", epochs=1, learning_rate=1e-3),)
    weights = {{}}
    for mode in ("mirrored", "none"):
        config = _config(
            tmp / mode, tiers=tiers, distribution=mode, warmup_fraction=0.0,
            per_level_metrics=False,
        )
        # Same batches in the same order on both sides (a distributed dataset may draw its
        # shuffle differently); the comparison is about the reduction of the gradients.
        summary = training.train(config, dataset=SyntheticDataset(ordered=True), verbose=0)
        weights[mode] = keras.saving.load_model(summary.model_path).get_weights()
        print(mode, "replicas", summary.replicas)
    flat = {{k: np.concatenate([w.ravel() for w in v]) for k, v in weights.items()}}
    print("reldiff", np.linalg.norm(flat["mirrored"] - flat["none"]) / np.linalg.norm(flat["none"]))
    print("fraction_changed", np.mean(np.abs(flat["mirrored"] - flat["none"]) > 1e-5))
    """
)


def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(tmp_path):
    """Data-parallel training over 2 replicas gives the weights of single-device training."""
    script = _MIRRORED_SCRIPT.format(tests=str(pathlib.Path(__file__).parent), tmp=str(tmp_path))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.rsplit(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["mirrored replicas"] == "2"
    assert lines["none replicas"] == "1"
    # Adam's first steps move each weight by about ±lr whatever the gradient's size, so a few
    # near-zero gradients may differ in sign between the two reductions; the rest agree.
    assert float(lines["reldiff"]) < 1e-3, out.stdout
    assert float(lines["fraction_changed"]) < 0.05, out.stdout


def test_a_run_of_another_config_is_neither_resumed_nor_overwritten(tmp_path):
    tiers = (Tier("only", "train", "val", epochs=1),)
    config = _config(tmp_path, tiers=tiers, per_level_metrics=False)
    training.train(config, dataset=SYNTHETIC, verbose=0)
    saved = (pathlib.Path(config.out_dir) / "train_config.json").read_text()
    other = dataclasses.replace(
        config, target_transform="none", model=dataclasses.replace(MODEL, lstm_filters=4)
    )
    with pytest.raises(ValueError, match=r"another configuration.*target_transform.*lstm_filters"):
        training.train(other, dataset=SYNTHETIC, verbose=0)
    assert (pathlib.Path(config.out_dir) / "train_config.json").read_text() == saved
    training.train(config, dataset=_NoData(), verbose=0)  # the same config: done, nothing read


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_replayed_val_loss_is_what_keras_early_stopping_and_checkpoint_hold(patience):
    """A resumed tier starts its monitors from the history's val_loss: the best, the epochs
    waited and whether early stopping had stopped are those of Keras's own callbacks after
    the same epochs (ties, a NaN epoch and a first-epoch NaN included)."""

    class Model:
        metrics = []
        stop_training = False

    rng = np.random.default_rng(patience)
    sequences = [rng.choice([3.0, 2.0, 2.0, 1.5, 2.5, np.nan], size=8) for _ in range(40)]
    sequences += [np.array([np.nan, 1.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0])]
    for losses in sequences:
        stopping = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience)
        checkpoint = keras.callbacks.ModelCheckpoint("unused.weights.h5", save_best_only=True)
        model = Model()
        stopping.set_model(model)
        checkpoint.set_model(model)
        stopping.on_train_begin()
        checkpoint._set_monitor_op()
        for epoch, loss in enumerate(losses):
            model.stop_training = False
            stopping.on_epoch_end(epoch, {"val_loss": float(loss)})
            if checkpoint._is_improvement(float(loss), checkpoint.best):
                checkpoint.best = float(loss)
            replayed = training.replay_val_loss([float(v) for v in losses[: epoch + 1]], patience)
            np.testing.assert_equal(replayed.best, stopping.best)
            np.testing.assert_equal(replayed.best, checkpoint.best)
            assert (replayed.wait, replayed.stopped) == (stopping.wait, model.stop_training)
            if model.stop_training:
                break


@dataclasses.dataclass(frozen=True)
class _PoisonedDataset(SyntheticDataset):
    """`SyntheticDataset` with one NaN target cell, as one bad input value would give."""

    def windows(self, split, **kwargs):
        def poison(x, y):
            bad = tf.tensor_scatter_nd_update(y, [[0, 0, 0, 0]], [float("nan")])
            return x, bad

        return super().windows(split, **kwargs).map(poison)


def test_a_tier_ending_with_non_finite_weights_is_an_error_not_a_saved_model(tmp_path):
    config = _config(
        tmp_path, tiers=(Tier("only", "train", "val", epochs=1),), per_level_metrics=False
    )
    with pytest.raises(ValueError, match=r"Tier 'only' ended with non-finite weights.*epoch 0"):
        training.train(config, dataset=_PoisonedDataset(), verbose=0)
    run = pathlib.Path(config.out_dir)
    assert not (run / "only" / "model.keras").exists() and not (run / "model.keras").exists()
