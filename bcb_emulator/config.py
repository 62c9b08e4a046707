"""Typed, frozen configuration of the emulator and of its training.

`ModelConfig` says what network `models.build_emulator` builds; `TrainConfig` says how
`training.train` fits it. Both round-trip through JSON (`to_json` / `from_json`), and the
configuration of every trained model is saved beside it.

Example:

>>> from bcb_emulator.config import ModelConfig, TrainConfig
>>> ModelConfig.from_json(ModelConfig(levels=5).to_json()).levels
5
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

from bcb_emulator import grid, variables
from bcb_emulator.options import (
    ENCODER_CONVS,
    FUSIONS,
    GATE_CONVS,
    PEEPHOLES,
    POLE_MODES,
    WINOGRAD_KERNELS,
)

TARGET_TRANSFORMS = ("log", "none")
#: `TrainConfig.loss`: the reference paper's ``(MSE + MAE) / 2``, or the MSE alone.
LOSSES = ("mse_mae", "mse")
MIXED_PRECISION = ("float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = ("auto", "none", "mirrored")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}. Received: {name}={value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: What each field annotation of the configs accepts: no truthy strings, no silent coercion.
_TYPE_CHECKS = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (_is_number, "a number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "int | None": (lambda v: v is None or _TYPE_CHECKS["int"][0](v), "an integer or null"),
    "tuple[float, ...]": (
        lambda v: isinstance(v, tuple) and all(_is_number(x) for x in v),
        "a tuple of numbers (a list in JSON)",
    ),
}


def _check_types(config) -> None:
    """Raises `TypeError` naming the first field whose value is not of its annotated type."""
    for field in dataclasses.fields(config):
        check = _TYPE_CHECKS.get(str(field.type))
        value = getattr(config, field.name)
        if check is not None and not check[0](value):
            raise TypeError(
                f"`{field.name}` of {type(config).__name__} must be {check[1]}. "
                f"Received: {field.name}={value!r} ({type(value).__name__})"
            )


def _check_at_least(minimum: float, **values: int | float | None) -> None:
    for name, value in values.items():
        if value is not None and value < minimum:
            raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value!r}")


def _dict_of_fields(cls, data: Any) -> dict:
    """`data` as the fields of `cls`, or a `ValueError` saying a JSON object was expected."""
    if not isinstance(data, dict):
        raise ValueError(
            f"`{cls.__name__}` must be a JSON object of its fields. Received: {type(data).__name__}"
        )
    reject_unknown(cls, data)
    return dict(data)


def _check_positive(**values: int | float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"`{name}` must be > 0. Received: {name}={value!r}")


class JsonConfig:
    """JSON round trip of a frozen config dataclass; subclasses give `from_dict` and
    `_DESCRIPTION` (what the file is, for error messages)."""

    _DESCRIPTION = "Config"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def differences(self, other: JsonConfig) -> list[str]:
        """The fields whose values differ from `other`'s, nested ones dotted (``model.levels``)."""

        def walk(a: dict, b: dict, prefix: str) -> list[str]:
            out = []
            for key in b:
                if isinstance(a.get(key), dict) and isinstance(b[key], dict):
                    out += walk(a[key], b[key], f"{prefix}{key}.")
                elif a.get(key) != b[key]:
                    out.append(f"{prefix}{key}")
            return out

        return walk(self.to_dict(), other.to_dict(), "")

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | pathlib.Path):
        """Reads a JSON config file, failing with the file name on bad content."""
        path = pathlib.Path(path)
        if path.is_dir():
            raise ValueError(
                f"{cls._DESCRIPTION} {path} is a folder; expected a JSON file of "
                f"`{cls.__name__}` fields. Received: {path}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{cls._DESCRIPTION} {path} does not exist.")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{cls._DESCRIPTION} {path} is not valid JSON ({err}); expected a JSON object "
                f"of `{cls.__name__}` fields."
            ) from err
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{cls._DESCRIPTION} {path} is invalid: {err}") from err

    def save(self, path: str | pathlib.Path) -> None:
        """Writes the JSON file whole or not at all (a temporary file renamed into place), so
        that a reader — a resumed run, a distributed search's worker — never sees half a file."""
        path = pathlib.Path(path)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(self.to_json() + "\n")
        os.replace(partial, path)


@dataclasses.dataclass(frozen=True)
class ModelConfig(JsonConfig):
    """Architecture of the emulator (defaults = the reference paper's model, Erfani et al. 2025,
    on the native grid).

    Attributes:
        height: latitude rows `H` of the grid (90 native, 46 coarse).
        width: longitudes `W` (144 native, 72 coarse); even.
        levels: model levels `L` predicted, and levels of each X3D variable.
        time_steps: input frames `T`; the target is BCB at the time of the last one.
        encoder_filters: feature maps `F` of both spatial encoders.
        encoder_kernel: kernel of the encoders' residual blocks.
        encoder_blocks: residual blocks per encoder.
        groups: groups of the encoders' `GroupNormalization`.
        fusion: ``"3d_conditions_2d"`` (seed: profile features modulate surface features),
            ``"2d_conditions_3d"``, or ``"none"`` (ablation: concatenate the two streams).
        sft_hidden: hidden width of the SFT γ/β stacks.
        use_3d: False for the ablation without the 3D branch (no ``x3d`` input).
        lstm_filters: feature maps of each ConvLSTM layer.
        lstm_layers: ConvLSTM layers.
        lstm_kernel: ConvLSTM kernel.
        peepholes: ``"none"``, ``"channel"`` or ``"spatial"`` (see `layers.ConvLSTMCell`).
        pole_mode: ``"fold"`` or ``"reflect"`` (see `layers.SphericalPadding`).
        gate_conv: ``"auto"`` (Winograd for a 3×3 or 5×5 kernel in float32 with at least
            32 channels in and out, else ``"fused"``), ``"fused"`` (one 4F-output convolution
            per step), ``"split"`` (four) or ``"winograd"``; same weights and math, a speed
            choice (see `layers.ConvLSTMCell`).
        encoder_conv: ``"auto"`` (as `gate_conv`, else ``"direct"``), ``"direct"`` or
            ``"winograd"``: how the encoders apply their k×k kernels; same weights and math
            (see `layers.SpatialEncoder`).
        emission_memory_days: time scales τ (days) of emission-memory channels appended to
            ``x2d``: for each τ the exponentially weighted mean of ``BCB_biomass_src`` over the
            past, weight ``exp(−Δt/τ)``, computed by the input pipeline from the inputs alone
            (`bcb_emulator.data.pipeline`). BCB lives for days; a window of `T` steps alone
            does not show how much smoke the fires of the last days have put up. Empty (the
            reference paper's inputs) by default.
        advected_memory_days: time scales τ (days) of advected emission-memory channels,
            appended to ``x2d`` after the emission memory: the same weighted mean of
            ``BCB_biomass_src``, carried along the mean wind of the `levels` layers
            (`bcb_emulator.data.pipeline.advected_memory`): where the smoke of the last days
            has blown to. Inputs only. Empty by default.
    """

    height: int = 90
    width: int = 144
    levels: int = 20
    time_steps: int = 4
    encoder_filters: int = 64
    encoder_kernel: int = 5
    encoder_blocks: int = 2
    groups: int = 8
    fusion: str = "3d_conditions_2d"
    sft_hidden: int = 64
    use_3d: bool = True
    lstm_filters: int = 64
    lstm_layers: int = 3
    lstm_kernel: int = 3
    peepholes: str = "none"
    pole_mode: str = "fold"
    gate_conv: str = "auto"
    encoder_conv: str = "auto"
    emission_memory_days: tuple[float, ...] = ()
    advected_memory_days: tuple[float, ...] = ()

    def __post_init__(self):
        _check_types(self)
        _check_positive(
            height=self.height,
            width=self.width,
            levels=self.levels,
            time_steps=self.time_steps,
            encoder_filters=self.encoder_filters,
            encoder_kernel=self.encoder_kernel,
            encoder_blocks=self.encoder_blocks,
            groups=self.groups,
            sft_hidden=self.sft_hidden,
            lstm_filters=self.lstm_filters,
            lstm_layers=self.lstm_layers,
            lstm_kernel=self.lstm_kernel,
        )
        _check_choice("fusion", self.fusion, FUSIONS)
        _check_choice("peepholes", self.peepholes, PEEPHOLES)
        _check_choice("pole_mode", self.pole_mode, POLE_MODES)
        _check_choice("gate_conv", self.gate_conv, GATE_CONVS)
        _check_choice("encoder_conv", self.encoder_conv, ENCODER_CONVS)
        if self.pole_mode == "fold" and self.width % 2:
            raise ValueError(
                "`width` must be even for `pole_mode='fold'` (across a pole a row continues "
                f"at longitude + 180°, W/2 columns away). Received: width={self.width}"
            )
        for name, choice, kernel in (
            ("gate_conv", self.gate_conv, "lstm_kernel"),
            ("encoder_conv", self.encoder_conv, "encoder_kernel"),
        ):
            if choice == "winograd" and getattr(self, kernel) not in WINOGRAD_KERNELS:
                raise ValueError(
                    f"`{name}='winograd'` needs {kernel} in {WINOGRAD_KERNELS}. "
                    f"Received: {kernel}={getattr(self, kernel)}"
                )
        for name in ("emission_memory_days", "advected_memory_days"):
            memory = getattr(self, name)
            if not isinstance(memory, tuple) or not all(
                isinstance(tau, int | float) and not isinstance(tau, bool) and tau > 0
                for tau in memory
            ):
                raise ValueError(
                    f"`{name}` must be a tuple of positive numbers of days. "
                    f"Received: {name}={memory!r}"
                )
        if not self.use_3d and self.fusion != "none":
            raise ValueError(
                "`fusion` must be 'none' when `use_3d` is False (nothing to fuse with). "
                f"Received: fusion={self.fusion!r}, use_3d=False"
            )

    @classmethod
    def for_grid(cls, grid_name: str, **overrides) -> ModelConfig:
        """Returns a config on grid preset `grid_name` (``"native"`` or ``"coarse"``)."""
        height, width = grid.get_grid(grid_name).shape
        return cls(height=height, width=width, **overrides)

    @property
    def x2d_channels(self) -> int:
        """Channels of the ``x2d`` input: the 6 surface fields, then one per emission memory,
        then one per advected emission memory."""
        return len(variables.X2D) + len(self.emission_memory_days) + len(self.advected_memory_days)

    @property
    def x3d_channels(self) -> int:
        """Channels of the ``x3d`` input: 8 variables × `levels`, variable-major."""
        return len(variables.X3D) * self.levels

    _DESCRIPTION = "Model config"

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        data = _dict_of_fields(cls, data)
        for name in ("emission_memory_days", "advected_memory_days"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Tier:
    """One tier of training: fit on `train_split`, select on `val_split`.

    Attributes:
        name: tier name, also the sub-directory of its checkpoints and logs.
        train_split: split of the dataset to fit on (e.g. ``"pi_train"``, the pre-industrial
            run, or ``"train"``, the modern one).
        val_split: split for validation, checkpoint selection and early stopping.
        epochs: maximum epochs.
        learning_rate: peak learning rate of the cosine schedule.
    """

    name: str
    train_split: str
    val_split: str
    epochs: int = 10
    learning_rate: float = 1e-3

    def __post_init__(self):
        _check_types(self)
        _check_positive(epochs=self.epochs, learning_rate=self.learning_rate)


@dataclasses.dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """How to train the emulator; saved as ``train_config.json`` beside the model.

    Attributes:
        data_dir: TFDS ``data_dir`` holding the built dataset.
        builder_config: TFDS builder config name (e.g. ``"coarse_l20"``).
        out_dir: directory for checkpoints, logs, the final ``model.keras`` and this config.
        model: the architecture; `model.time_steps` is the window length.
        tiers: training tiers run in order, each starting from the previous one's best
            weights (two-tier: pre-train then fine-tune).
        batch_size: global batch size (split over replicas under a distribution strategy).
        stride: step between window starts when cutting training windows.
        warmup_fraction: fraction of each tier's steps with a linear warm-up before the
            cosine decay.
        weight_decay: AdamW weight decay.
        area_weighted: weight the loss by the exact cell areas (polar caps included).
        target_transform: the space the target is normalized and the loss taken in:
            ``"log"`` (``log(BCB + offset)``, per level; the registry's) or ``"none"``
            (physical 10⁻¹¹ kg/kg, per level). A loss in log space fits the median of skewed
            plumes; in physical space the mean, which the mass budget and physical-unit R²
            judge. Evaluation and export undo the same transform.
        loss: ``"mse_mae"`` (the reference paper's ``(MSE + MAE) / 2``) or ``"mse"``, on the
            normalized target (`losses.MseMae`). The MAE half is minimized by the median:
            where most cells are clean air and a few are plumes, it pulls every prediction
            toward the clean air's value and the emulated mass low (0.61 of the truth at
            level 1 on the skill benchmark's training year). The MSE alone is minimized by
            the mean, which the mass budget and R² judge.
        per_level_metrics: write R² and r of every level per epoch (``levels.csv``,
            TensorBoard), besides the console's mean R² and R² at level 1.
        early_stopping_patience: epochs without validation improvement before stopping.
        steps_per_epoch: cap on training steps per epoch (None: the whole split).
        validation_steps: cap on validation steps (None: the whole split).
        mixed_precision: ``"float32"``, ``"mixed_float16"`` (GPU) or ``"mixed_bfloat16"``.
        jit_compile: compile the train step with XLA.
        distribution: ``"auto"`` (MirroredStrategy when >1 GPU), ``"none"`` or
            ``"mirrored"`` (all visible GPUs, else all logical CPUs).
        seed: seed of weights and shuffling (`keras.utils.set_random_seed`).
    """

    data_dir: str
    builder_config: str
    out_dir: str
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    tiers: tuple[Tier, ...] = (
        Tier("pretrain", "pi_train", "validation"),
        Tier("finetune", "train", "validation", learning_rate=3e-4),
    )
    batch_size: int = 8
    stride: int = 1
    warmup_fraction: float = 0.05
    weight_decay: float = 1e-4
    area_weighted: bool = False
    target_transform: str = "log"
    loss: str = "mse_mae"
    per_level_metrics: bool = True
    early_stopping_patience: int = 5
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    mixed_precision: str = "float32"
    jit_compile: bool = False
    distribution: str = "auto"
    seed: int = 0

    def __post_init__(self):
        _check_types(self)
        if not isinstance(self.model, ModelConfig):
            raise TypeError(f"`model` must be a ModelConfig. Received: {self.model!r}")
        if not isinstance(self.tiers, tuple) or not all(isinstance(t, Tier) for t in self.tiers):
            raise TypeError(f"`tiers` must be a tuple of Tier. Received: {self.tiers!r}")
        _check_positive(batch_size=self.batch_size, stride=self.stride)
        _check_at_least(1, steps_per_epoch=self.steps_per_epoch)
        _check_at_least(1, validation_steps=self.validation_steps)
        _check_at_least(0, weight_decay=self.weight_decay, seed=self.seed)
        _check_at_least(0, early_stopping_patience=self.early_stopping_patience)
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(
                "`warmup_fraction` must be in [0, 1). "
                f"Received: warmup_fraction={self.warmup_fraction!r}"
            )
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        _check_choice("distribution", self.distribution, DISTRIBUTIONS)
        _check_choice("target_transform", self.target_transform, TARGET_TRANSFORMS)
        _check_choice("loss", self.loss, LOSSES)
        if not self.tiers:
            raise ValueError("`tiers` must hold at least one tier. Received: tiers=()")
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"`tiers` must have distinct names. Received: {names}")

    _DESCRIPTION = "Training config"

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = _dict_of_fields(cls, data)
        if "model" in data:
            data["model"] = ModelConfig.from_dict(data["model"])
        if "tiers" in data:
            if not isinstance(data["tiers"], list | tuple):
                raise TypeError(
                    "`tiers` must be a list of tier objects. "
                    f"Received: tiers={data['tiers']!r} ({type(data['tiers']).__name__})"
                )
            data["tiers"] = tuple(Tier(**_dict_of_fields(Tier, t)) for t in data["tiers"])
        return cls(**data)


def demo_train_config(
    data_dir: str, out_dir: str, builder_config: str = "coarse_l20"
) -> TrainConfig:
    """A small configuration that trains on the demo dataset in a few minutes on 2 CPU cores.

    Coarse grid (46 × 72), L = 20, 16 filters, 2 ConvLSTM layers, T = 4, two short tiers; the
    loss in physical space (`TrainConfig.target_transform` ``"none"``), which doubles the
    demo's physical-unit R² at level 1 over the log-space loss
    (``docs/benchmarks/skill_variants.md``).
    """
    model = ModelConfig.for_grid(
        "coarse",
        levels=20,
        time_steps=4,
        encoder_filters=16,
        groups=4,
        sft_hidden=16,
        lstm_filters=16,
        lstm_layers=2,
    )
    return TrainConfig(
        data_dir=data_dir,
        builder_config=builder_config,
        out_dir=out_dir,
        model=model,
        tiers=(
            Tier("pretrain", "pi_train", "validation", epochs=3, learning_rate=2e-3),
            Tier("finetune", "train", "validation", epochs=3, learning_rate=1e-3),
        ),
        batch_size=8,
        stride=2,
        steps_per_epoch=40,
        validation_steps=None,  # the whole validation split (5 days)
        early_stopping_patience=3,
        target_transform="none",
    )


def reject_unknown(cls, data: dict) -> None:
    """Raises `ValueError` naming the keys of `data` that are not fields of `cls`."""
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"`{cls.__name__}` has no fields {unknown}; known: {sorted(known)}. "
            f"Received: {sorted(data)}"
        )
