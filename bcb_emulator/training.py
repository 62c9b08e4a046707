"""Training of the emulator with `model.fit`: callbacks, cosine schedule, two tiers.

`train` fits `models.build_emulator(config.model)` tier after tier (pre-train, then fine-tune
from the best weights of the tier before). Each tier writes into ``<out_dir>/<tier.name>/``:

- ``best.weights.h5`` — `ModelCheckpoint` on the best ``val_loss``, loaded at the tier's end;
- ``backup/`` — `BackupAndRestore`: rerunning the same command after a kill resumes at the
  last finished epoch (a finished tier is skipped: its ``model.keras`` exists). The backup is
  the last callback of an epoch, so an epoch it counts as done has its rows, its checkpoint
  and its early-stopping state already written; it is removed once the tier's ``model.keras``
  is saved;
- ``history.csv`` — `CSVLogger` (appended across resumptions): loss, mean R², R² at level 1
  and the learning rate per epoch, the values the console shows;
- ``levels.csv`` — R² and Pearson r of every level per epoch, training and validation (also
  in TensorBoard, under ``levels/``), when `TrainConfig.per_level_metrics`;
- ``logs/`` — `TensorBoard`; ``model.keras`` — the tier's final model (best weights).

and the run writes ``<out_dir>/model.keras`` and ``<out_dir>/train_config.json`` beside it.
Every ``model.keras`` is written whole or not at all (saved aside, then renamed), and nothing
is written before the config and the data of the tiers still to train have been checked. A
run killed at any point and rerun ends with the weights, ``history.csv`` and summary of a run
never interrupted (``docs/reliability.md``).

Data: a `bcb_emulator.data.BuiltDataset` (opened from `TrainConfig.data_dir` and
`TrainConfig.builder_config` unless given), whose ``windows`` yield ``({"x2d": (B, T, H, W, 6),
"x3d": (B, T, H, W, 8·L)}, y (B, H, W, L))`` normalized float32 batches and whose
``num_batches`` counts an epoch from the stored time stamps, without reading the data.

The pieces of a tier's fit are public so that other fits share them (``tuning`` fits its
trials with them): `windows` (the windows of a split for a `TrainConfig`), `steps_per_epoch`,
`compile_emulator` (optimizer, schedule, loss, metrics) and `epoch_callbacks`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import shutil
from collections.abc import Sequence
from typing import Any

from bcb_emulator import grid, paths
from bcb_emulator.config import Tier, TrainConfig

#: Name of the saved model and of its config inside `TrainConfig.out_dir`.
MODEL_FILE = "model.keras"
CONFIG_FILE = "train_config.json"
#: Per-level R² and r of each epoch, inside each tier's folder.
LEVELS_FILE = "levels.csv"


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """What `train` did.

    Attributes:
        model_path: the saved final model (``.keras``).
        config_path: the `TrainConfig` saved beside it.
        history: per tier, the per-epoch logs (``loss``, ``val_loss``, ``val_r2``, …) read
            back from its ``history.csv``, so resumed runs report every epoch.
        replicas: number of replicas that trained in sync.
    """

    model_path: pathlib.Path
    config_path: pathlib.Path
    history: dict[str, dict[str, list[float]]]
    replicas: int

    def best(self, tier: str, key: str = "val_loss") -> float:
        """Returns the best (lowest for losses, highest otherwise) value of `key` in `tier`."""
        values = self.history[tier][key]
        return min(values) if "loss" in key else max(values)


def make_strategy(distribution: str):
    """Returns the `tf.distribute` strategy for `TrainConfig.distribution`.

    ``"auto"``: `MirroredStrategy` over the GPUs when there are several, else the default
    strategy. ``"mirrored"``: over all GPUs, or else over all logical CPU devices (as set with
    `tf.config.set_logical_device_configuration`). ``"none"``: the default strategy.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if distribution == "none" or (distribution == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus if gpus else tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def train(
    config: TrainConfig,
    dataset: Any = None,
    callbacks: Sequence[Any] = (),
    verbose: int | str = 2,
) -> TrainSummary:
    """Trains the emulator as `config` says and saves it with its config.

    Args:
        config: the training configuration.
        dataset: the data, a `bcb_emulator.data.BuiltDataset` or an object with its
            ``windows(split, **kwargs)`` and ``num_batches(split, window, stride,
            batch_size)``; None opens ``BuiltDataset.open(config.data_dir,
            config.builder_config)`` (only when a tier still has to train).
        callbacks: extra Keras callbacks added to every tier.
        verbose: `model.fit` verbosity.

    Returns:
        A `TrainSummary`.
    """
    import keras

    from bcb_emulator.models import build_emulator

    out_dir = pathlib.Path(config.out_dir)
    config_path = out_dir / CONFIG_FILE
    paths.check_output_dir(out_dir, "out_dir")
    _check_same_run(config, config_path)
    pending = [tier for tier in config.tiers if not _tier_done(config, tier)]
    if pending and dataset is None:
        from bcb_emulator.data import BuiltDataset

        dataset = BuiltDataset.open(config.data_dir, config.builder_config)
    for tier in pending:  # a config the data cannot train fails before anything is written
        try:
            windows(dataset, config, tier.train_split, shuffle=True)
            windows(dataset, config, tier.val_split, shuffle=False)
            steps_per_epoch(dataset, config, tier)
        except ValueError as err:
            raise ValueError(f"Tier {tier.name!r} cannot train on its data: {err}") from err
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, *(out_dir / tier.name for tier in config.tiers)):
        paths.remove_partials(folder, _PARTIAL)  # models a killed run was saving
    config.save(config_path)

    keras.utils.set_random_seed(config.seed)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.mixed_precision)
    try:
        strategy = make_strategy(config.distribution)
        with strategy.scope():
            model = build_emulator(config.model)
        history = {}
        for tier in config.tiers:
            history[tier.name] = _train_tier(
                model, config, tier, strategy, dataset, callbacks, verbose
            )
        model_path = out_dir / MODEL_FILE
        save_model(model, model_path)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return TrainSummary(model_path, config_path, history, strategy.num_replicas_in_sync)


#: Models being saved (`save_model`): a killed run's are removed by the next run.
_PARTIAL = r"\.model\.(?P<pid>\d+)\.partial\.keras"


def save_model(model, path: pathlib.Path) -> None:
    """Saves `model` at `path` (``.keras``) whole or not at all: written beside it under a
    temporary name, then renamed, so that a kill never leaves a truncated ``model.keras``
    that a rerun would take for a finished one."""
    path = pathlib.Path(path)
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")
    model.save(partial)
    os.replace(partial, path)


def _check_same_run(config: TrainConfig, config_path: pathlib.Path) -> None:
    """Refuses to resume, or overwrite the config of, a run made with another configuration.

    A rerun of the same config resumes; another config in the same `out_dir` would mix
    checkpoints of two models and leave a ``train_config.json`` that does not describe the
    saved model.
    """
    if not config_path.exists():
        return
    differing = TrainConfig.load(config_path).differences(config)
    if not differing:
        return
    fields = sorted(differing, key=lambda f: ("." in f, f))  # top-level fields, then nested
    raise ValueError(
        f"{config_path.parent} holds a run of another configuration (fields that differ: "
        f"{', '.join(fields)}). Use another `out_dir`, or remove that folder to start afresh. "
        f"Received: {config_path}"
    )


def _tier_done(config: TrainConfig, tier: Tier) -> bool:
    """Whether an earlier run finished `tier` (its ``model.keras`` exists)."""
    return (pathlib.Path(config.out_dir) / tier.name / MODEL_FILE).exists()


def _train_tier(model, config, tier: Tier, strategy, dataset, extra_callbacks, verbose):
    """Fits `model` on one tier, leaving it with the tier's best weights; returns its history."""
    import keras

    from bcb_emulator.models import load_emulator

    tier_dir = pathlib.Path(config.out_dir) / tier.name
    tier_dir.mkdir(parents=True, exist_ok=True)
    final_path = tier_dir / MODEL_FILE
    if final_path.exists():
        # Finished in an earlier run: take its weights and go on to the next tier.
        model.set_weights(load_emulator(final_path, compile=False).get_weights())
        return _read_history(tier_dir / "history.csv")

    train_ds = windows(dataset, config, tier.train_split, shuffle=True)
    val_ds = windows(dataset, config, tier.val_split, shuffle=False)
    steps = steps_per_epoch(dataset, config, tier)
    # One repeated stream of seeded, reshuffled epochs: epoch e is batches [e·steps, (e+1)·steps).
    # A resumed run skips the epochs already done, so it sees the batches an uninterrupted run
    # would have seen, in the same order.
    backup_dir = tier_dir / "backup"
    done = _resume_epoch(backup_dir)
    train_ds = train_ds.repeat().skip(done * steps)
    history_path = tier_dir / "history.csv"
    _truncate_history(history_path, done)  # rows of an epoch the backup does not count
    _truncate_history(tier_dir / LEVELS_FILE, done)
    resumed = replay_val_loss(
        _read_history(history_path).get("val_loss", []), config.early_stopping_patience
    )
    skill = compile_emulator(model, config, tier, steps, strategy)
    best_path = tier_dir / "best.weights.h5"
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            str(best_path),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=resumed.best,
        ),
        keras.callbacks.TensorBoard(str(tier_dir / "logs")),
        *epoch_callbacks(config, tier_dir, skill, tier_dir / "logs", resumed),
        *extra_callbacks,
        # Last, so that the epoch it records as done is recorded everywhere above; kept until
        # the tier's model.keras is saved (a kill after the last epoch resumes with no epoch).
        keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=False),
    ]
    # `BackupAndRestore` resumes by setting `model._initial_epoch`, which `fit` reads and never
    # clears: left from a resumed tier, it would make the next tier start at that epoch.
    model._initial_epoch = None
    model.fit(
        train_ds,
        validation_data=val_ds,
        # A tier that early stopping ended before the kill gets no further epoch.
        epochs=done if resumed.stopped else tier.epochs,
        steps_per_epoch=steps,
        validation_steps=config.validation_steps,
        callbacks=callbacks,
        shuffle=False,  # the windows are shuffled by the pipeline, seeded
        verbose=verbose,
    )
    model._initial_epoch = None
    if best_path.exists():
        model.load_weights(best_path)
    _check_finite(model, tier, history_path)
    save_model(model, final_path)
    shutil.rmtree(backup_dir, ignore_errors=True)
    return _read_history(history_path)


def _check_finite(model, tier: Tier, history_path: pathlib.Path) -> None:
    """Raises `ValueError` if a weight of `model` is NaN or infinite: such a model is never
    saved as a finished tier (a non-finite input or a diverging fit would otherwise end with
    exit status 0 and a model that predicts NaN)."""
    import keras
    import numpy as np

    bad = [w.path for w in model.weights if not np.isfinite(keras.ops.convert_to_numpy(w)).all()]
    if not bad:
        return
    losses = _read_history(history_path).get("loss", [])
    first = next((epoch for epoch, loss in enumerate(losses) if not math.isfinite(loss)), None)
    when = (
        f"the loss was first non-finite at epoch {first}"
        if first is not None
        else ("the loss stayed finite")
    )
    raise ValueError(
        f"Tier {tier.name!r} ended with non-finite weights ({len(bad)} of "
        f"{len(model.weights)} variables, e.g. {bad[0]}; {when}, {history_path}). Expected "
        "finite weights: check the dataset for non-finite or absurd values, or lower the "
        f"tier's `learning_rate`. The tier's model was not saved; remove {history_path.parent} "
        f"to train the tier afresh. Received: learning_rate={tier.learning_rate}"
    )


def steps_per_epoch(dataset, config: TrainConfig, tier: Tier) -> int:
    """Training batches per epoch of `tier`: `TrainConfig.steps_per_epoch`, else the whole
    split's windows of `config.model.time_steps` steps (counted without reading the data)."""
    m = config.model
    steps = config.steps_per_epoch or dataset.num_batches(
        tier.train_split, window=m.time_steps, stride=config.stride, batch_size=config.batch_size
    )
    if steps < 1:
        raise ValueError(
            f"Split {tier.train_split!r} of tier {tier.name!r} yields no window of "
            f"{m.time_steps} steps. Received: 0 batches"
        )
    return steps


def compile_emulator(model, config: TrainConfig, tier: Tier, steps: int, strategy=None):
    """Compiles `model` for `tier` as `train` does and returns its `r2` metric.

    AdamW (`TrainConfig.weight_decay`) on a cosine schedule from `tier.learning_rate` over
    ``tier.epochs × steps`` steps with a linear warm-up (`TrainConfig.warmup_fraction`); loss
    `MseMae` (``(MSE + MAE) / 2``, or the MSE alone with `TrainConfig.loss` ``"mse"``; cell-area
    weighted if `TrainConfig.area_weighted`); metrics ``r2`` (mean R² over
    levels, also holding the per-level moments `level_logger` reads) and ``r2_l01``. Under
    `strategy`'s scope when one is given.
    """
    import contextlib

    import keras

    from bcb_emulator.losses import MseMae
    from bcb_emulator.metrics import R2Score

    m = config.model
    total_steps = max(1, steps * tier.epochs)
    warmup = int(config.warmup_fraction * total_steps)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else tier.learning_rate,
        decay_steps=total_steps - warmup,
        warmup_target=tier.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    row_areas = None
    if config.area_weighted:
        row_areas = grid.Grid("model", m.height, m.width).area[:, 0]  # (H,), caps included
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        skill = R2Score(m.levels, name="r2")  # also holds what per-level r needs
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
            loss=MseMae(row_areas, mae=config.loss == "mse_mae"),
            metrics=[skill, R2Score(m.levels, level=0, name="r2_l01")],
            jit_compile=config.jit_compile,
        )
    return skill


def epoch_callbacks(
    config: TrainConfig, run_dir: pathlib.Path, skill, logs_dir, resumed: Resumed | None = None
) -> list:
    """The per-epoch callbacks of every fit of the emulator, writing into `run_dir`.

    The learning rate into the epoch logs, `EarlyStopping` on ``val_loss``
    (`TrainConfig.early_stopping_patience`; starting from `resumed`'s state when a fit resumes
    after a kill), `CSVLogger` (``history.csv``, appended) and, when
    `TrainConfig.per_level_metrics`, `level_logger` (``levels.csv`` and TensorBoard under
    `logs_dir`) reading `skill`, the ``r2`` metric `compile_emulator` returns.
    """
    import keras

    run_dir = pathlib.Path(run_dir)
    resumed = resumed or Resumed()

    class ResumedEarlyStopping(keras.callbacks.EarlyStopping):
        """`EarlyStopping` that starts from the best ``val_loss`` and the epochs waited of the
        epochs done before a kill, as an uninterrupted fit would have them."""

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.best, self.wait = resumed.best, resumed.wait

    callbacks = [
        log_learning_rate_callback(),
        ResumedEarlyStopping(monitor="val_loss", patience=config.early_stopping_patience),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    if config.per_level_metrics:
        callbacks.append(level_logger(skill, run_dir / LEVELS_FILE, logs_dir))
    return callbacks


@dataclasses.dataclass(frozen=True)
class Resumed:
    """The state of the ``val_loss`` monitors after the epochs done before a kill.

    Attributes:
        best: the best ``val_loss`` so far, as `ModelCheckpoint` and `EarlyStopping` hold it
            (None before the first epoch).
        wait: epochs since the last improvement (`EarlyStopping`'s counter).
        stopped: whether `EarlyStopping` stopped the fit at the last of those epochs.
    """

    best: float | None = None
    wait: int = 0
    stopped: bool = False


def replay_val_loss(val_losses: Sequence[float], patience: int) -> Resumed:
    """Replays Keras's ``val_loss`` monitors (`ModelCheckpoint` with ``save_best_only``,
    `EarlyStopping` with `patience`) over the ``val_loss`` of the epochs done, in order.

    >>> replay_val_loss([3.0, 2.0, 2.5, 2.4], patience=2)
    Resumed(best=2.0, wait=2, stopped=True)
    """
    best, wait, stopped = None, 0, False
    for epoch, value in enumerate(val_losses):
        wait += 1
        stopped = False
        if best is None or value < best:
            best, wait = value, 0
        elif wait >= patience and epoch > 0:
            stopped = True
    return Resumed(best, wait, stopped)


def _resume_epoch(backup_dir: pathlib.Path) -> int:
    """Returns the epochs a killed run finished, as its `BackupAndRestore` recorded them."""
    metadata = backup_dir / "training_metadata.json"
    if not metadata.exists():
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


def _truncate_history(path: pathlib.Path, epochs: int) -> None:
    """Keeps the first `epochs` rows of a per-epoch CSV (none: the file is removed)."""
    if not path.exists():
        return
    with path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) < epochs]
    if not rows:
        path.unlink()
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def level_logger(skill, csv_path: pathlib.Path, logs_dir: pathlib.Path):
    """A callback writing R² and r of every level to `csv_path` (one row per epoch) and to
    TensorBoard under `logs_dir` (``train/`` and ``validation/``, tags ``levels/…``).

    `skill` is the compiled `metrics.R2Score`: its moments hold the training epoch when
    validation begins (``on_test_begin`` comes before Keras resets the metrics) and the
    validation set at the end of the epoch.
    """
    import keras
    import tensorflow as tf

    class LevelLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.train_values = None
            self.writers = {
                prefix: tf.summary.create_file_writer(str(pathlib.Path(logs_dir) / sub))
                for prefix, sub in (("", "train"), ("val_", "validation"))
            }

        def _values(self, prefix):
            values = {}
            for key, per_level in (("r2", skill.result_per_level()), ("r", skill.r_per_level())):
                for k, value in enumerate(keras.ops.convert_to_numpy(per_level)):
                    values[f"{prefix}{key}_l{k + 1:02d}"] = float(value)
            return values

        def on_epoch_begin(self, epoch, logs=None):
            self.train_values = None

        def on_test_begin(self, logs=None):
            if self.train_values is None and self.model is not None:
                self.train_values = self._values("")

        def on_epoch_end(self, epoch, logs=None):
            if self.train_values is None:  # no validation this epoch
                row = self._values("")
            else:
                row = {**self.train_values, **self._values("val_")}
            _append_row(pathlib.Path(csv_path), {"epoch": epoch, **row})
            for prefix, writer in self.writers.items():
                with writer.as_default():
                    for key, value in row.items():
                        if key.startswith("val_") == bool(prefix):
                            tf.summary.scalar(f"levels/{key.removeprefix(prefix)}", value, epoch)
                writer.flush()

    return LevelLogger()


def _append_row(path: pathlib.Path, row: dict) -> None:
    """Appends `row` to the CSV at `path`, writing the header first if the file is new."""
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def log_learning_rate_callback():
    import keras

    class LogLearningRate(keras.callbacks.Callback):
        """Adds the optimizer's current ``learning_rate`` to the epoch logs."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(
                    keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
                )

    return LogLearningRate()


def windows(dataset, config: TrainConfig, split: str, shuffle: bool):
    """Returns the batched windows of `split` cut to `config.model.time_steps` steps at read
    time (shuffled, seeded and strided for training; in order for validation), checked
    against the model config; ``x3d`` dropped for a model without the 3D branch."""
    ds = dataset.windows(
        split,
        window=config.model.time_steps,
        target_transform=config.target_transform,
        emission_memory_days=config.model.emission_memory_days,
        advected_memory_days=config.model.advected_memory_days,
        stride=config.stride if shuffle else 1,
        batch_size=config.batch_size,
        shuffle=shuffle,
        seed=config.seed,
        normalize=True,
    )
    inputs_spec, target_spec = ds.element_spec
    m = config.model
    expected = {
        "x2d": (m.time_steps, m.height, m.width, m.x2d_channels),
        "x3d": (m.time_steps, m.height, m.width, m.x3d_channels),
    }
    received = {key: tuple(spec.shape[1:]) for key, spec in inputs_spec.items()}
    received["y"] = tuple(target_spec.shape[1:])
    expected["y"] = (m.height, m.width, m.levels)
    if any(received.get(key) != shape for key, shape in expected.items()):
        raise ValueError(
            f"The windows of split {split!r} in {config.data_dir} (builder config "
            f"{config.builder_config!r}) must have per-example shapes {expected} to match "
            f"`config.model`. Received: {received}"
        )
    if not m.use_3d:
        ds = ds.map(lambda x, y: ({"x2d": x["x2d"]}, y))
    return ds


def _read_history(path: pathlib.Path) -> dict[str, list[float]]:
    """Reads a `CSVLogger` file into ``{column: [value per epoch]}``."""
    if not path.exists():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = [key for key in (rows[0] if rows else {}) if key != "epoch"]
    return {
        key: [float(row[key]) if row[key] not in ("", None) else math.nan for row in rows]
        for key in keys
    }
