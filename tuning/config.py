"""The search space and the settings of a hyperparameter search: typed, frozen, JSON round trip.

`SearchSpace` holds a choice or a range for every tuned hyperparameter; `TuneConfig` says which
data and fixed architecture the trials share (a base `bcb_emulator.config.TrainConfig`), how to
search (tuner, objective, budget) and where to write. No Keras is imported here.

Example:

>>> from bcb_emulator.config import TrainConfig
>>> from tuning.config import SearchSpace, TuneConfig
>>> base = TrainConfig(data_dir="data/", builder_config="coarse_l20", out_dir="runs/best")
>>> space = SearchSpace(time_steps=(4, 8), lstm_layers=(1, 2))
>>> config = TuneConfig(train=base, out_dir="runs/tune", search_space=space)
>>> TuneConfig.from_json(config.to_json()) == config
True
>>> SearchSpace(encoder_filters=())  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: `encoder_filters` must be a non-empty list of distinct integers > 0. Received: ...
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any

from bcb_emulator.config import (
    JsonConfig,
    ModelConfig,
    Tier,
    TrainConfig,
    _check_choice,
    _check_positive,
    reject_unknown,
)
from bcb_emulator.options import FUSIONS

#: Tuners: keras-tuner's `Hyperband`, `RandomSearch` and `BayesianOptimization`.
TUNERS = ("hyperband", "random", "bayesian")
#: Objectives and their directions: validation loss, mean R² over levels, R² at level 1.
OBJECTIVES = {"val_loss": "min", "val_r2": "max", "val_r2_l01": "max"}
#: The tuned hyperparameters, in the order of the results table: `ModelConfig` fields and the
#: peak learning rate.
HYPERPARAMETERS = (
    "time_steps",
    "encoder_filters",
    "lstm_filters",
    "lstm_layers",
    "fusion",
    "sft_hidden",
    "learning_rate",
)


def _check_choices(name: str, values: Any, kind: type) -> tuple:
    """Returns `values` as a tuple after checking it is a non-empty list of distinct values of
    `kind` (integers > 0 when `kind` is int)."""
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    ok = (
        isinstance(values, tuple)
        and len(values) > 0
        and len(set(values)) == len(values)
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in values)
        and (kind is not int or all(v > 0 for v in values))
    )
    if not ok:
        what = "integers > 0" if kind is int else "strings"
        raise ValueError(
            f"`{name}` must be a non-empty list of distinct {what}. Received: {name}={values!r}"
        )
    return values


def _check_range(name: str, values: Any, kind: type) -> tuple:
    """Returns `values` as a ``(min, max)`` tuple after checking ``0 < min <= max``."""
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    number = (int,) if kind is int else (int, float)
    ok = (
        isinstance(values, tuple)
        and len(values) == 2
        and all(isinstance(v, number) and not isinstance(v, bool) for v in values)
        and 0 < values[0] <= values[1]
    )
    if not ok:
        what = "integers" if kind is int else "numbers"
        raise ValueError(
            f"`{name}` must be a range [min, max] of {what} with 0 < min <= max. "
            f"Received: {name}={values!r}"
        )
    return tuple(kind(v) for v in values)


@dataclasses.dataclass(frozen=True)
class SearchSpace(JsonConfig):
    """What the search may pick, per hyperparameter: a list of choices or a ``[min, max]``
    range (both ends included). One choice, or ``min == max``, fixes the value.

    Attributes:
        time_steps: window lengths `T` (`ModelConfig.time_steps`); the windows are cut from the
            built dataset at read time, so every `T` uses the same TFRecords.
        encoder_filters: feature maps `F` of both encoders (`ModelConfig.encoder_filters`);
            each must be a multiple of the base model's `groups`.
        lstm_filters: feature maps of each ConvLSTM layer (`ModelConfig.lstm_filters`).
        lstm_layers: range of ConvLSTM layers (`ModelConfig.lstm_layers`).
        fusion: fusion modes (`ModelConfig.fusion`); ``"none"`` is the fusion switched off
            (the two streams concatenated).
        sft_hidden: hidden widths of the SFT γ/β stacks (`ModelConfig.sft_hidden`); tuned
            only in trials whose fusion is not ``"none"``.
        learning_rate: range of the peak learning rate, sampled log-uniformly.
    """

    time_steps: tuple[int, ...] = (2, 4, 8)
    encoder_filters: tuple[int, ...] = (16, 32, 64)
    lstm_filters: tuple[int, ...] = (16, 32, 64)
    lstm_layers: tuple[int, int] = (1, 3)
    fusion: tuple[str, ...] = ("3d_conditions_2d", "none")
    sft_hidden: tuple[int, ...] = (16, 32, 64)
    learning_rate: tuple[float, float] = (1e-4, 3e-3)

    def __post_init__(self):
        for name in ("time_steps", "encoder_filters", "lstm_filters", "sft_hidden"):
            object.__setattr__(self, name, _check_choices(name, getattr(self, name), int))
        object.__setattr__(self, "fusion", _check_choices("fusion", self.fusion, str))
        for value in self.fusion:
            _check_choice("fusion", value, FUSIONS)
        object.__setattr__(self, "lstm_layers", _check_range("lstm_layers", self.lstm_layers, int))
        object.__setattr__(
            self, "learning_rate", _check_range("learning_rate", self.learning_rate, float)
        )

    def to_dict(self) -> dict:
        return {key: list(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        reject_unknown(cls, data)
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class TuneConfig(JsonConfig):
    """A hyperparameter search: the data and fixed settings, the space, the tuner, the budget.

    Attributes:
        train: the base training configuration. Its data (`data_dir`, `builder_config`), grid,
            `levels` and every `model` field the space does not tune, `batch_size`, `stride`,
            `steps_per_epoch`, `validation_steps`, loss and hardware settings are those of
            every trial; its `tiers` and `out_dir` are what ``--retrain-best`` trains and
            where it saves (`best_train_config`).
        out_dir: the search's folder: keras-tuner's project (``<project_name>/``, one
            ``trial_<id>/`` per trial), TensorBoard logs (``tensorboard/``), the results
            (``results.csv``, ``results.md``, ``results.png``) and
            ``best_train_config.json``.
        search_space: the choices and ranges (`SearchSpace`).
        tuner: ``"hyperband"`` (default), ``"random"`` or ``"bayesian"``.
        objective: ``"val_loss"`` (minimized), ``"val_r2"`` (mean R² over levels) or
            ``"val_r2_l01"`` (R² at level 1), both maximized; its best epoch scores a trial.
        epochs: epochs of one trial (random, bayesian); for Hyperband the most epochs any
            trial reaches (its ``max_epochs``).
        max_trials: trials of a random or Bayesian search (Hyperband sizes itself from
            `epochs`, `hyperband_factor` and `hyperband_iterations`).
        hyperband_factor: Hyperband's reduction factor (≥ 2): each round keeps 1 trial in
            `hyperband_factor` and trains it `hyperband_factor` times longer.
        hyperband_iterations: times the whole Hyperband schedule runs.
        train_split: split the trials fit on; None: the first tier's `train_split`.
        val_split: split that scores the trials; None: the first tier's `val_split`.
        seed: seed of the tuner's sampling (≥ 1: keras-tuner takes 0 as "no seed"); the
            weights and the shuffling follow `train.seed`.
        project_name: name of keras-tuner's project folder inside `out_dir`.
    """

    train: TrainConfig
    out_dir: str
    search_space: SearchSpace = dataclasses.field(default_factory=SearchSpace)
    tuner: str = "hyperband"
    objective: str = "val_loss"
    epochs: int = 10
    max_trials: int = 20
    hyperband_factor: int = 3
    hyperband_iterations: int = 1
    train_split: str | None = None
    val_split: str | None = None
    seed: int = 1
    project_name: str = "search"

    def __post_init__(self):
        _check_choice("tuner", self.tuner, TUNERS)
        _check_choice("objective", self.objective, tuple(OBJECTIVES))
        _check_positive(
            epochs=self.epochs,
            max_trials=self.max_trials,
            hyperband_iterations=self.hyperband_iterations,
            seed=self.seed,
        )
        if self.hyperband_factor < 2:
            raise ValueError(
                "`hyperband_factor` must be >= 2. "
                f"Received: hyperband_factor={self.hyperband_factor!r}"
            )
        if not self.project_name or "/" in self.project_name:
            raise ValueError(
                "`project_name` must be a non-empty folder name without '/'. "
                f"Received: project_name={self.project_name!r}"
            )
        model, space = self.train.model, self.search_space
        bad = [f for f in space.encoder_filters if f % model.groups]
        if bad:
            raise ValueError(
                f"`encoder_filters` must be multiples of the base model's groups="
                f"{model.groups} (GroupNormalization). Received: encoder_filters="
                f"{list(space.encoder_filters)}"
            )
        if not model.use_3d and space.fusion != ("none",):
            raise ValueError(
                "`fusion` must be ['none'] when the base model has `use_3d=False`. "
                f"Received: fusion={list(space.fusion)}"
            )

    @property
    def trial_tier(self) -> Tier:
        """The tier every trial fits (its learning rate is the trial's; epochs `epochs`)."""
        first = self.train.tiers[0]
        return Tier(
            "trial",
            self.train_split or first.train_split,
            self.val_split or first.val_split,
            epochs=self.epochs,
            learning_rate=first.learning_rate,
        )

    def model_config(self, values: dict) -> ModelConfig:
        """The base model with the tuned `values` (hyperparameter name -> value) in place.

        ``sft_hidden`` keeps the base model's value when absent (a trial without fusion).
        """
        fields = {k: values[k] for k in HYPERPARAMETERS if k != "learning_rate" and k in values}
        return dataclasses.replace(self.train.model, **fields)

    def trial_train_config(self, values: dict, trial_dir: str | None = None) -> TrainConfig:
        """The `TrainConfig` one trial fits with: the base config, the tuned model and one tier
        (`trial_tier`) at the tuned learning rate; `out_dir` is the trial's folder."""
        tier = dataclasses.replace(self.trial_tier, learning_rate=float(values["learning_rate"]))
        return dataclasses.replace(
            self.train,
            model=self.model_config(values),
            tiers=(tier,),
            out_dir=trial_dir or self.out_dir,
        )

    def best_train_config(self, values: dict) -> TrainConfig:
        """The base training config with the best `values`: the tuned model, the tuned learning
        rate as the first tier's, and every later tier's learning rate scaled by the same
        factor (their ratio to the first tier's is kept); saves to ``train.out_dir``."""
        scale = float(values["learning_rate"]) / self.train.tiers[0].learning_rate
        tiers = tuple(
            dataclasses.replace(tier, learning_rate=tier.learning_rate * scale)
            for tier in self.train.tiers
        )
        return dataclasses.replace(self.train, model=self.model_config(values), tiers=tiers)

    def planned_budget(self) -> tuple[int, int]:
        """``(trials, epochs)`` the search runs at most: the epochs summed over all trials.

        Random and Bayesian: `max_trials` trials of `epochs` epochs (fewer when early stopping
        ends a trial). Hyperband: keras-tuner's brackets (`hyperband_factor`, `epochs` as
        ``max_epochs``) times `hyperband_iterations`; a round that continues a trial trains
        only the epochs it adds. Multiply the epochs by the steps per epoch and the measured
        seconds per step to size a sweep (``docs/tuning.md``).
        """
        if self.tuner != "hyperband":
            return self.max_trials, self.max_trials * self.epochs
        factor, max_epochs = self.hyperband_factor, self.epochs
        brackets, e = 0, float(max_epochs)
        while e >= 1:  # keras-tuner's HyperbandOracle._get_num_brackets
            e, brackets = e / factor, brackets + 1
        end_size = math.ceil(1 + math.log(max_epochs, factor))
        trials = epochs = 0
        for bracket in range(brackets):
            done = 0
            for round_ in range(bracket + 1):
                size = math.ceil(end_size / (bracket + 1) * factor ** (bracket - round_))
                reach = math.ceil(max_epochs / factor ** (bracket - round_))
                trials, epochs = trials + size, epochs + size * (reach - done)
                done = reach
        return trials * self.hyperband_iterations, epochs * self.hyperband_iterations

    @property
    def project_dir(self) -> pathlib.Path:
        """keras-tuner's project folder, ``<out_dir>/<project_name>``."""
        return pathlib.Path(self.out_dir) / self.project_name

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        data["search_space"] = self.search_space.to_dict()
        return data

    _DESCRIPTION = "Tuning config"

    @classmethod
    def from_dict(cls, data: dict) -> TuneConfig:
        reject_unknown(cls, data)
        data = dict(data)
        if "train" not in data:
            raise ValueError(
                "`TuneConfig` needs `train`, the base TrainConfig (data_dir, builder_config, "
                f"out_dir, model, ...). Received: {sorted(data)}"
            )
        data["train"] = TrainConfig.from_dict(data["train"])
        if "search_space" in data:
            data["search_space"] = SearchSpace.from_dict(data["search_space"])
        return cls(**data)


def demo_tune_config(data_dir: str, out_dir: str, builder_config: str = "demo_l20") -> TuneConfig:
    """A sweep of a few short trials on the demo dataset, under 10 minutes on 2 CPU cores.

    The demo's training setup (`bcb_emulator.config.demo_train_config`: 46 × 72, L = 20,
    GroupNormalization groups 4, batch 8, stride 2) with 20 steps an epoch, around a small
    space: T in {2, 4}, 8 or 16 encoder and ConvLSTM filters, 1–2 ConvLSTM layers, fusion on
    (SFT width 16) or off, the peak learning rate in [5e-4, 3e-3]. A random search of 6 trials
    of 2 epochs on the modern ``train`` split, scored by ``val_loss`` on ``validation``
    (seed 4 draws both values of T, of the fusion and of the layers). The search goes to
    `out_dir`; ``--retrain-best`` trains the demo's two tiers into ``<out_dir>/best``.
    """
    from bcb_emulator.config import demo_train_config

    train = demo_train_config(data_dir, str(pathlib.Path(out_dir) / "best"), builder_config)
    return TuneConfig(
        train=dataclasses.replace(train, steps_per_epoch=20),
        out_dir=out_dir,
        search_space=SearchSpace(
            time_steps=(2, 4),
            encoder_filters=(8, 16),
            lstm_filters=(8, 16),
            lstm_layers=(1, 2),
            fusion=("3d_conditions_2d", "none"),
            sft_hidden=(16,),
            learning_rate=(5e-4, 3e-3),
        ),
        tuner="random",
        objective="val_loss",
        epochs=2,
        max_trials=6,
        train_split="train",
        val_split="validation",
        seed=4,
    )
