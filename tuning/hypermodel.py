"""`EmulatorHyperModel`: keras-tuner's view of the emulator.

`build(hp)` maps the trial's hyperparameters onto the `bcb_emulator.config.ModelConfig` that
training uses and builds it with `bcb_emulator.models.build_emulator`; `fit(hp, model, ...)`
cuts the built TFDS dataset into windows of the trial's `T` at read time
(`BuiltDataset.windows(window=T)`, no rebuild) and fits with the training's own pieces
(`bcb_emulator.training`: windows, schedule, `MseMae` loss, ``r2`` / ``r2_l01`` metrics,
learning-rate log, `EarlyStopping`, ``history.csv``, ``levels.csv``). `T` is part of the
model's input shape, so `build` reads it too: both read the same `hp` values.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import time
from typing import Any

import keras_tuner

from tuning.config import OBJECTIVES, SearchSpace, TuneConfig


def define_hyperparameters(hp: keras_tuner.HyperParameters, space: SearchSpace) -> dict:
    """Declares `space` on `hp` and returns the trial's active values by name.

    A list of choices becomes `hp.Choice`, a range `hp.Int` or a log-sampled `hp.Float`, a
    single value `hp.Fixed`. ``sft_hidden`` is declared under the condition that ``fusion``
    is not ``"none"`` (when both kinds are choices), so trials without fusion do not differ
    by an unused width. Calling it again with the same `hp` returns the same values.
    """

    def choice(name, values):
        if len(values) == 1:
            return hp.Fixed(name, values[0])
        return hp.Choice(name, list(values))

    values = {
        "time_steps": choice("time_steps", space.time_steps),
        "encoder_filters": choice("encoder_filters", space.encoder_filters),
        "lstm_filters": choice("lstm_filters", space.lstm_filters),
    }
    low, high = space.lstm_layers
    values["lstm_layers"] = (
        hp.Int("lstm_layers", low, high) if low < high else hp.Fixed("lstm_layers", low)
    )
    values["fusion"] = choice("fusion", space.fusion)
    fused = [f for f in space.fusion if f != "none"]
    if fused and len(fused) < len(space.fusion):
        with hp.conditional_scope("fusion", fused):
            sft_hidden = choice("sft_hidden", space.sft_hidden)
    elif fused:
        sft_hidden = choice("sft_hidden", space.sft_hidden)
    else:
        sft_hidden = None
    if sft_hidden is not None:
        values["sft_hidden"] = sft_hidden
    low, high = space.learning_rate
    values["learning_rate"] = (
        hp.Float("learning_rate", low, high, sampling="log")
        if low < high
        else hp.Fixed("learning_rate", low)
    )
    return values


class EmulatorHyperModel(keras_tuner.HyperModel):
    """Builds and fits one trial's emulator from a `TuneConfig`.

    Args:
        config: the search (space, base training config, objective).
        dataset: a `bcb_emulator.data.BuiltDataset` (or an object with its ``windows`` and
            ``num_batches``); None opens ``config.train.data_dir`` / ``builder_config`` at
            the first fit.
        strategy: a `tf.distribute` strategy to build and compile under (None: the default).
    """

    def __init__(self, config: TuneConfig, dataset: Any = None, strategy: Any = None):
        super().__init__(name="bcb_emulator")
        self.config = config
        self._dataset = dataset
        self.strategy = strategy

    @property
    def dataset(self):
        if self._dataset is None:
            from bcb_emulator.data import BuiltDataset

            self._dataset = BuiltDataset.open(
                self.config.train.data_dir, self.config.train.builder_config
            )
        return self._dataset

    def build(self, hp):
        """Returns the emulator of `hp`'s `ModelConfig` (uncompiled: `fit` compiles it)."""
        import contextlib

        import keras

        from bcb_emulator.models import build_emulator

        values = define_hyperparameters(hp, self.config.search_space)
        keras.utils.set_random_seed(self.config.train.seed)
        scope = self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()
        with scope:
            return build_emulator(self.config.model_config(values))

    def fit(
        self,
        hp,
        model,
        *args,
        callbacks=(),
        epochs: int | None = None,
        initial_epoch: int = 0,
        verbose: int | str = 2,
        trial_dir: str | None = None,
        **kwargs,
    ) -> dict[str, float]:
        """Fits `model` on windows of the trial's `T`; returns the best epoch's metrics.

        Args:
            hp: the trial's hyperparameters (the same values `build` read).
            model: the model `build` returned (or, for a Hyperband round that continues a
                trial, that trial's best weights).
            callbacks: keras-tuner's callbacks (checkpoint of the best epoch, TensorBoard with
                the HParams callback) and the user's, run after the training's own.
            epochs: last epoch (default `TuneConfig.epochs`; Hyperband sets it per round).
            initial_epoch: first epoch (Hyperband's continued trials). The cosine schedule
                spans ``epochs - initial_epoch`` epochs: a continued trial restarts it.
            verbose: `model.fit` verbosity.
            trial_dir: the trial's folder for ``history.csv`` and ``levels.csv`` (the search's
                tuners pass it; None: a new folder inside `TuneConfig.out_dir`).

        Returns:
            The logs of the epoch best by `TuneConfig.objective` (``loss``, ``val_loss``,
            ``val_r2``, ``val_r2_l01``, …) and the trial's cost: ``epochs`` (run here),
            ``best_epoch`` (1-based), ``seconds`` (wall time of windowing, compiling and
            fitting), ``epoch_seconds`` (wall time of the last epoch, validation included:
            no tracing when the trial ran more than one epoch), ``steps_per_epoch``,
            ``train_steps`` (training batches run) and ``params`` (weights).
        """
        import keras
        import numpy as np

        from bcb_emulator import training

        start = time.perf_counter()
        values = define_hyperparameters(hp, self.config.search_space)
        epochs = epochs or self.config.epochs
        if trial_dir is None:
            pathlib.Path(self.config.out_dir).mkdir(parents=True, exist_ok=True)
            trial_dir = tempfile.mkdtemp(prefix="fit_", dir=self.config.out_dir)
        config = self.config.trial_train_config(values, trial_dir)
        tier = dataclasses.replace(config.tiers[0], epochs=epochs - initial_epoch)
        dataset = self.dataset
        train_ds = training.windows(dataset, config, tier.train_split, shuffle=True)
        val_ds = training.windows(dataset, config, tier.val_split, shuffle=False)
        steps = training.steps_per_epoch(dataset, config, tier)
        skill = training.compile_emulator(model, config, tier, steps, self.strategy)
        timer = _epoch_timer()
        tensorboard = [c for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]
        logs_dir = tensorboard[0].log_dir if tensorboard else pathlib.Path(trial_dir) / "logs"
        history = model.fit(
            train_ds.repeat(),
            validation_data=val_ds,
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            validation_steps=config.validation_steps,
            callbacks=[
                timer,
                *training.epoch_callbacks(config, trial_dir, skill, logs_dir),
                *callbacks,
            ],
            shuffle=False,  # the windows are shuffled by the pipeline, seeded
            verbose=verbose,
        )
        seconds = time.perf_counter() - start
        scores = np.asarray(history.history[self.config.objective], dtype="float64")
        if np.isnan(scores).all():
            best = len(scores) - 1
        elif OBJECTIVES[self.config.objective] == "min":
            best = int(np.nanargmin(scores))
        else:
            best = int(np.nanargmax(scores))
        result = {key: float(series[best]) for key, series in history.history.items()}
        result.update(
            epochs=float(len(history.epoch)),
            best_epoch=float(history.epoch[best] + 1),
            seconds=seconds,
            epoch_seconds=timer.seconds[-1],
            steps_per_epoch=float(steps),
            train_steps=float(steps * len(history.epoch)),
            params=float(model.count_params()),
        )
        return result


def _epoch_timer():
    """A callback holding the wall time of each epoch, validation included (``.seconds``)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []
            self._start = 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()
