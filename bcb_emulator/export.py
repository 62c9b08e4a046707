"""Export of a trained emulator as a SavedModel in physical units, for TF Serving and coupling.

`export_model` turns a training run (``<out_dir>/model.keras`` and ``train_config.json``) into
``<out_root>/<name>/<version>/``, the layout TF Serving polls (integer versions, the highest
served by default). The version folder is written under a temporary name, checked, then renamed:
a folder with an integer name is always complete, and the temporary folder of a killed export
is removed by the next one.

::

    saved_models/<name>/<version>/
        saved_model.pb, variables/, fingerprint.pb   the SavedModel (what TF Serving loads)
        assets.extra/                                 beside it, never read by the graph:
            model.keras, train_config.json           the Keras model and its training config
            normalization.json, dataset_spec.json    the dataset's statistics and layout
            export.json                              the contract: signatures, tensor names,
                                                     channels, units, checked ranges
            model_card.md                            data periods, metrics, the contract
            metrics.json                             the evaluation report, if one existed

Signatures (``docs/serving.md``): every input and output is float32 in physical units,
channels-last, with a dynamic batch `B` (independent columns of the globe's sequence, e.g.
ensemble members or windows):

- ``serving_default``: ``x2d`` (B, T, H, W, 6), ``x3d`` (B, T, H, W, 8·L) → ``bcb``
  (B, H, W, L): the windowed prediction;
- ``init_state``: ``x2d`` (B, T−1, H, W, 6), ``x3d`` (B, T−1, H, W, 8·L) → ``state``
  (B, T−1, H, W, F): the context of a coupled run's first step;
- ``step``: ``x2d`` (B, H, W, 6), ``x3d`` (B, H, W, 8·L), ``state`` → ``bcb``, ``state``: one
  new time step (the coupling step).

``x2d`` holds the channels of ``variables.X2D`` in registry order and ``x3d`` those of
``variables.X3D`` variable-major (channel ``i·L + k`` = variable `i`, level `k + 1`), the
layout of ``bcb_emulator.data.reader.read_day``; a model with emission memory
(`ModelConfig.emission_memory_days`, then `ModelConfig.advected_memory_days`) takes one more
``x2d`` channel per time scale, in the emission's units. ``bcb`` is BCB in 10⁻¹¹ kg/kg at the
time of the last input step, levels 1..L bottom up, clipped at 0. Inside the graph: the checks
(`INPUT_RANGES`, finiteness), the dataset's normalization, the network, the inverse of the
target transform (`TrainConfig.target_transform`). ``state`` is the fused encoder features of
the last T − 1 steps, oldest first (`F` = the ConvLSTM stack's input channels): `step` encodes
only its new step and runs the ConvLSTM stack over the T fused frames, so a host model that
calls it once per time step pays for the encoders once per step instead of T times.

Example:

>>> path = export_model("runs/demo", "bcb_emulator")  # doctest: +SKIP
>>> check_export(path).window_vs_keras < 1e-5  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bcb_emulator import variables
from bcb_emulator.config import ModelConfig, TrainConfig
from bcb_emulator.data import normalization
from bcb_emulator.data.normalization import NormalizationStats
from bcb_emulator.data.spec import DatasetSpec
from bcb_emulator.paths import remove_partials

#: Folder of the files beside the SavedModel, inside the version folder. TF Serving reads
#: nothing there but ``tf_serving_warmup_requests``; the graph never reads it.
ASSETS_EXTRA = "assets.extra"
MODEL_FILE = "model.keras"
TRAIN_CONFIG_FILE = "train_config.json"
SPEC_FILE = "dataset_spec.json"
CONTRACT_FILE = "export.json"
CARD_FILE = "model_card.md"
#: The evaluation report looked for beside the trained model.
METRICS_FILE = "metrics.json"
#: The signatures, in the order they are written.
SIGNATURES = ("serving_default", "init_state", "step")
#: Version of the layout of ``export.json``.
CONTRACT_FORMAT = 1
#: Largest relative error between the SavedModel and the Keras model (and between `step`
#: and `serving_default`) `export_model` accepts in float32.
TOLERANCE = 1e-5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Range:
    """The physical range of an input variable, checked inside the SavedModel.

    A value outside it is a units or sign error (e.g. °C for K, percent for a fraction) rather
    than weather, so the signature refuses the request.

    Attributes:
        lower: smallest allowed value, or None.
        upper: largest allowed value, or None.
        strict: the lower bound itself is not allowed (``> lower``).
    """

    lower: float | None = None
    upper: float | None = None
    strict: bool = False

    def describe(self) -> str:
        """E.g. ``"> 0"``, ``"in [0, 1]"``, ``"any finite value"``."""
        if self.lower is not None and self.upper is not None:
            return f"in {'(' if self.strict else '['}{self.lower:g}, {self.upper:g}]"
        if self.lower is not None:
            return f"{'>' if self.strict else '>='} {self.lower:g}"
        if self.upper is not None:
            return f"<= {self.upper:g}"
        return "any finite value"


_POSITIVE = Range(0.0, strict=True)
_NON_NEGATIVE = Range(0.0)
#: Ranges checked per input variable (every value must also be finite); variables absent
#: here (fluxes, winds, ω) may take any finite value.
INPUT_RANGES: Mapping[str, Range] = {
    "axyp": _POSITIVE,
    "landfr": Range(0.0, 1.0),
    "pblht_bp": _NON_NEGATIVE,
    "BCB_biomass_src": _NON_NEGATIVE,
    "p_3d": _POSITIVE,
    "t": _POSITIVE,
    "th": _POSITIVE,
    "q": _NON_NEGATIVE,
    "prec_3d_sum": _NON_NEGATIVE,
}


@dataclasses.dataclass(frozen=True)
class ExportCheck:
    """What `check_export` measured: largest elementwise relative errors.

    The error of a value is ``|a − b| / max(|b|, floor)``: relative, with `error_floor` as the
    floor (the log transform's offset, below which BCB is zero to the model; for a model
    trained in physical space, each level's standard deviation, the scale float32 resolves
    the de-normalized output at).

    Attributes:
        window_vs_keras: ``serving_default`` of the SavedModel vs the Keras model on the same
            physical inputs (normalized, run, denormalized, clipped at 0 in numpy).
        step_vs_window: `init_state` then `step` over a sequence vs ``serving_default`` on
            the window ending at each step.
        steps: the number of steps compared.
    """

    window_vs_keras: float
    step_vs_window: float
    steps: int


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """An exported version folder, opened: its layout, statistics and contract.

    Attributes:
        path: the version folder ``<root>/<name>/<version>``.
        spec: the dataset layout the model was trained on (grid, L, steps a day, splits).
        train_config: the training config (`model` is the architecture).
        stats: the dataset's normalization statistics (inside the graph already).
        contract: the content of ``export.json``.
    """

    path: Path
    spec: DatasetSpec
    train_config: TrainConfig
    stats: NormalizationStats
    contract: dict[str, Any]

    @classmethod
    def open(cls, path: str | os.PathLike) -> ExportedModel:
        """Opens a version folder written by `export_model`."""
        path = Path(path)
        extra = path / ASSETS_EXTRA
        needed = [path / "saved_model.pb"] + [
            extra / name
            for name in (CONTRACT_FILE, SPEC_FILE, TRAIN_CONFIG_FILE, normalization.STATS_FILENAME)
        ]
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise ValueError(
                f"`model` must be a version folder written by `bcb-emulator export` "
                f"(<root>/<name>/<version>/ with saved_model.pb and {ASSETS_EXTRA}/). "
                f"Received: {path}, missing {missing}"
            )
        return cls(
            path=path,
            spec=DatasetSpec.from_json(json.loads((extra / SPEC_FILE).read_text())),
            train_config=TrainConfig.load(extra / TRAIN_CONFIG_FILE),
            stats=normalization.load(extra / normalization.STATS_FILENAME),
            contract=json.loads((extra / CONTRACT_FILE).read_text()),
        )

    @property
    def model_config(self) -> ModelConfig:
        """The architecture."""
        return self.train_config.model

    @property
    def target_transform(self) -> str:
        """The space the model's target was normalized in (``"log"`` or ``"none"``)."""
        return self.train_config.target_transform

    @property
    def time_steps(self) -> int:
        """`T`, the window length."""
        return self.model_config.time_steps

    @property
    def input_names(self) -> tuple[str, ...]:
        """``("x2d", "x3d")``, or ``("x2d",)`` for a model without the 3D branch."""
        return ("x2d", "x3d") if self.model_config.use_3d else ("x2d",)

    def load(self):
        """The SavedModel, loaded with `tf.saved_model.load` (its ``signatures`` are the
        serving signatures)."""
        import tensorflow as tf

        return tf.saved_model.load(str(self.path))


def export_model(
    model_dir: str | os.PathLike,
    name: str,
    out_root: str | os.PathLike = "saved_models",
    version: int | None = None,
    *,
    dataset=None,
    metrics: str | os.PathLike | None = None,
    verify: bool = True,
) -> Path:
    """Exports the trained model of `model_dir` to ``<out_root>/<name>/<version>/``.

    Args:
        model_dir: a training ``out_dir`` holding ``model.keras`` and ``train_config.json``.
        name: the model name, TF Serving's ``model_name`` (letters, digits, ``_.-``).
        out_root: TF Serving's base folder of all models.
        version: an integer version; None takes the highest existing version + 1 (TF Serving
            serves the highest by default), 1 for the first.
        dataset: the `BuiltDataset` whose statistics and layout go in; None opens the training
            config's ``data_dir`` / ``builder_config``.
        metrics: the evaluation report (``metrics.json`` of ``bcb-emulator evaluate``) whose
            headline figures go into the model card; None looks for it (`find_metrics`).
        verify: reload the SavedModel before it is renamed into place and refuse it if it
            differs from the Keras model, or `step` from ``serving_default``, by more than
            `TOLERANCE` (float32; 1e-2 under a 16-bit compute dtype) — `check_export`.

    Returns:
        The version folder written.
    """
    from bcb_emulator.models import load_emulator

    model_dir = Path(model_dir)
    if not _NAME.match(name):
        raise ValueError(
            "`name` must be letters, digits, '_', '.' or '-' (TF Serving's model name, part of "
            f"its URLs). Received: name={name!r}"
        )
    if version is not None and (isinstance(version, bool) or int(version) < 1):
        raise ValueError(f"`version` must be an integer >= 1. Received: version={version!r}")
    paths = {f: model_dir / f for f in (MODEL_FILE, TRAIN_CONFIG_FILE)}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ValueError(
            "`model` must be a training out_dir holding model.keras and train_config.json "
            f"(`bcb-emulator train`). Received: {model_dir}, missing {missing}"
        )
    config = TrainConfig.load(paths[TRAIN_CONFIG_FILE])
    if dataset is None:
        from bcb_emulator.data import BuiltDataset

        dataset = BuiltDataset.open(config.data_dir, config.builder_config)
    _check_layout(config.model, dataset.spec, paths[TRAIN_CONFIG_FILE])
    model = load_emulator(paths[MODEL_FILE], compile=False)
    metrics_path = Path(metrics) if metrics is not None else find_metrics(model_dir)
    report = None if metrics_path is None else _read_metrics(metrics_path)

    model_root = Path(out_root) / name
    model_root.mkdir(parents=True, exist_ok=True)
    remove_partials(model_root, _PARTIAL)  # version folders a killed export was writing
    version = _choose_version(model_root, version)
    final = model_root / str(version)
    tmp = model_root / f".tmp-export-{version}-{os.getpid()}"  # _PARTIAL
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write_saved_model(model, dataset.stats, config.model, tmp, config.target_transform)
        extra = tmp / ASSETS_EXTRA
        extra.mkdir()
        shutil.copy2(paths[MODEL_FILE], extra / MODEL_FILE)
        shutil.copy2(paths[TRAIN_CONFIG_FILE], extra / TRAIN_CONFIG_FILE)
        dataset.stats.save(extra / normalization.STATS_FILENAME)
        (extra / SPEC_FILE).write_text(json.dumps(dataset.spec.to_json(), indent=1) + "\n")
        if metrics_path is not None:
            shutil.copy2(metrics_path, extra / METRICS_FILE)
        contract = _contract(tmp, name, version, config, dataset)
        (extra / CONTRACT_FILE).write_text(json.dumps(contract, indent=1) + "\n")
        if verify:
            result = check_export(tmp, keras_model=model)
            tolerance = TOLERANCE if _compute_dtype(model) == "float32" else 1e-2
            if max(result.window_vs_keras, result.step_vs_window) > tolerance:
                raise ValueError(
                    f"The SavedModel of {model_dir} does not reproduce the Keras model: "
                    f"relative errors window vs Keras {result.window_vs_keras:.2e}, step vs "
                    f"window {result.step_vs_window:.2e}, expected <= {tolerance:g}. Nothing "
                    "was exported."
                )
            contract["verification"] = dataclasses.asdict(result) | {"tolerance": tolerance}
            (extra / CONTRACT_FILE).write_text(json.dumps(contract, indent=1) + "\n")
        card = model_card(contract, config, dataset, report, metrics_path or model_dir)
        (extra / CARD_FILE).write_text(card)
        if final.exists():
            raise ValueError(f"Version folder {final} appeared while exporting; not replaced.")
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _read_metrics(path: Path) -> dict:
    """The evaluation report at `path`, or a `ValueError` naming the file and what is wrong."""
    expected = "the metrics.json of `bcb-emulator evaluate` (a JSON object)"
    if not path.is_file():
        raise ValueError(f"`metrics` must be {expected}; {path} is not a file. Received: {path}")
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"`metrics` {path} is not valid JSON ({err}); expected {expected}."
        ) from err
    if not isinstance(report, dict):
        raise ValueError(
            f"`metrics` must be {expected}. Received: {path} holding a {type(report).__name__}"
        )
    return report


def find_metrics(model_dir: str | os.PathLike) -> Path | None:
    """The evaluation report of the model in `model_dir`, if there is one.

    ``bcb-emulator evaluate --out DIR`` writes ``DIR/metrics.json`` naming the model folder it
    evaluated (its ``"model"``). Looked for: ``<model_dir>/metrics.json``, then
    ``<model_dir>/evaluation/metrics.json`` and ``<model_dir>/../evaluation/metrics.json``
    (the demo's layout), the latter two only if they name `model_dir`.
    """
    model_dir = Path(model_dir)
    if (model_dir / METRICS_FILE).is_file():
        return model_dir / METRICS_FILE
    for path in (model_dir / "evaluation", model_dir.parent / "evaluation"):
        path = path / METRICS_FILE
        if not path.is_file():
            continue
        try:
            named = json.loads(path.read_text()).get("model")
        except (ValueError, AttributeError):
            continue
        if named and Path(named).resolve() == model_dir.resolve():
            return path
    return None


def _compute_dtype(model) -> str:
    return model.get_layer("encoder_2d").compute_dtype


def _check_layout(config: ModelConfig, spec: DatasetSpec, config_path: Path) -> None:
    """The model's grid and L must be the dataset's."""
    want = (spec.grid.jm, spec.grid.im, spec.n_levels)
    got = (config.height, config.width, config.levels)
    if want != got:
        raise ValueError(
            f"{config_path}: the model's (height, width, levels) must be those of dataset "
            f"{spec.name!r}, {want}. Received: {got}"
        )


def existing_versions(model_root: str | os.PathLike) -> list[int]:
    """The integer version folders of a model's folder, sorted (other names are ignored, as
    TF Serving ignores them)."""
    root = Path(model_root)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit())


#: The temporary version folder of an export in progress (``.tmp-export-<version>-<pid>``).
_PARTIAL = r"\.tmp-export-\d+-(?P<pid>\d+)"


def _choose_version(model_root: Path, version: int | None) -> int:
    versions = existing_versions(model_root)
    if version is None:
        return (versions[-1] + 1) if versions else 1
    version = int(version)
    if version in versions:
        raise ValueError(
            f"`version` {version} of {model_root} exists already (versions {versions}); "
            f"choose another or omit --version for {versions[-1] + 1}. Received: "
            f"version={version}"
        )
    return version


# --------------------------------------------------------------------------------------------
# The graph.


#: The emission's channel in ``x2d`` (``BCB_biomass_src``), the source of the memory channels.
EMISSION_CHANNEL = [v.name for v in variables.X2D].index("BCB_biomass_src")


def memory_label(tau: float, advected: bool = False) -> str:
    """The name of the emission-memory channel of time scale `tau` (days), or of the advected
    emission-memory channel."""
    return f"BCB_biomass_src {'advected ' if advected else ''}memory {tau:g} d"


def _memory_labels(config: ModelConfig) -> list[str]:
    """The names of the memory channels of ``x2d``, in order."""
    return [memory_label(tau) for tau in config.emission_memory_days] + [
        memory_label(tau, advected=True) for tau in config.advected_memory_days
    ]


def x2d_moments(stats: NormalizationStats, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """float32 mean and std of the ``x2d`` channels: the 6 fields, then one per emission memory
    (`ModelConfig.emission_memory_days`) with the emission's own: the pipeline averages the
    normalized emission, and a weighted mean of it normalizes like the emission."""
    m = len(config.emission_memory_days) + len(config.advected_memory_days)
    mean = np.concatenate([stats.x2d_mean, np.repeat(stats.x2d_mean[EMISSION_CHANNEL], m)])
    std = np.concatenate([stats.x2d_std, np.repeat(stats.x2d_std[EMISSION_CHANNEL], m)])
    return mean.astype(np.float32), std.astype(np.float32)


def _channel_table(config: ModelConfig) -> dict[str, list[tuple[str, str, Range]]]:
    """Per input, its channels as ``(label, units, range)``."""
    table = {"x2d": [(v.name, v.units, INPUT_RANGES.get(v.name, Range())) for v in variables.X2D]}
    emission = variables.X2D[EMISSION_CHANNEL]
    table["x2d"] += [(label, emission.units, _NON_NEGATIVE) for label in _memory_labels(config)]
    if config.use_3d:
        table["x3d"] = [
            (f"{v.name} level {k + 1}", v.units, INPUT_RANGES.get(v.name, Range()))
            for v in variables.X3D
            for k in range(config.levels)
        ]
    return table


class _ServingGraph:
    """The functions behind the signatures, from the Keras model's own layers.

    The per-step features are computed exactly as `models.build_emulator` wires them: the two
    encoders, then the fusion of `ModelConfig.fusion` (or the concatenation).
    """

    def __init__(
        self, model, stats: NormalizationStats, config: ModelConfig, target_transform: str
    ):
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.config = config
        self.stats = stats
        self.target_transform = target_transform
        self.x2d_mean, self.x2d_std = x2d_moments(stats, config)
        self.channels = _channel_table(config)
        self.encoder_2d = model.get_layer("encoder_2d")
        self.encoder_3d = model.get_layer("encoder_3d") if config.use_3d else None
        self.fusion = None
        if config.use_3d and config.fusion != "none":
            self.fusion = model.get_layer("fusion")
        self.stack = model.get_layer("conv_lstm")
        self.readout = model.get_layer("bcb")
        self.features = int(self.stack.input.shape[-1])  # F of the fused frames
        self.dtype = self.stack.compute_dtype

    # Checks and normalization.

    def check(self, name: str, x):
        """`x` `(…, C)` after asserting it finite and in range, channel by channel."""
        tf = self.tf
        labels, units, ranges = zip(*self.channels[name], strict=True)
        labels = tf.constant([f"{lab} ({u})" for lab, u in zip(labels, units, strict=True)])
        axes = list(range(len(x.shape) - 1))
        finite = tf.reduce_all(tf.math.is_finite(x), axis=axes)  # (C,)
        check_finite = tf.debugging.Assert(
            tf.reduce_all(finite),
            [
                tf.strings.join(
                    [
                        f"Input `{name}` must be finite (no NaN or Inf); non-finite values in: ",
                        tf.strings.reduce_join(tf.boolean_mask(labels, ~finite), separator=", "),
                    ]
                )
            ],
        )
        lower = np.array([-np.inf if r.lower is None else r.lower for r in ranges], np.float32)
        upper = np.array([np.inf if r.upper is None else r.upper for r in ranges], np.float32)
        strict = np.array([r.strict for r in ranges])
        with tf.control_dependencies([check_finite]):
            low = tf.reduce_min(x, axis=axes)  # (C,)
            high = tf.reduce_max(x, axis=axes)  # (C,)
        ok = tf.where(strict, low > lower, low >= lower) & (high <= upper)  # (C,)
        described = tf.strings.join(
            [
                labels,
                tf.constant([f" must be {r.describe()}; found min " for r in ranges]),
                tf.strings.as_string(low, shortest=True),
                " max ",
                tf.strings.as_string(high, shortest=True),
            ]
        )
        check_range = tf.debugging.Assert(
            tf.reduce_all(ok),
            [
                tf.strings.join(
                    [
                        f"Input `{name}` is out of its physical range (units? see "
                        "docs/serving.md): ",
                        tf.strings.reduce_join(tf.boolean_mask(described, ~ok), separator="; "),
                    ]
                )
            ],
        )
        with tf.control_dependencies([check_finite, check_range]):
            return tf.identity(x)

    def normalize(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        out = {"x2d": (self.check("x2d", inputs["x2d"]) - self.x2d_mean) / self.x2d_std}
        if self.config.use_3d:
            out["x3d"] = self.stats.normalize_x3d(self.check("x3d", inputs["x3d"]))
        return out

    # Pieces of the network.

    def encode(self, normalized: Mapping[str, Any]):
        """Fused features `(B, n, H, W, F)` of `n` normalized steps."""
        f1 = self.encoder_2d(normalized["x2d"])  # (B, n, H, W, F_enc)
        if not self.config.use_3d:
            return f1
        f2 = self.encoder_3d(normalized["x3d"])  # (B, n, H, W, F_enc)
        if self.config.fusion == "3d_conditions_2d":
            return self.fusion(f1, f2)
        if self.config.fusion == "2d_conditions_3d":
            return self.fusion(f2, f1)
        return self.tf.concat([f1, f2], axis=-1)  # (B, n, H, W, 2·F_enc)

    def head(self, fused):
        """BCB in 10⁻¹¹ kg/kg `(B, H, W, L)` from the `(B, T, H, W, F)` fused window."""
        tf = self.tf
        z = tf.cast(self.readout(self.stack(fused)), tf.float32)  # (B, H, W, L) normalized
        bcb = self.stats.denormalize_target(z, self.target_transform)  # 10⁻¹¹ kg/kg
        return tf.maximum(bcb, 0.0)

    # The signatures.

    def specs(self, steps: int | None) -> list:
        """`tf.TensorSpec` of the physical inputs, `steps` per sample (None: one step, no T
        axis)."""
        tf = self.tf
        c = self.config
        lead = (None,) if steps is None else (None, steps)
        specs = [tf.TensorSpec((*lead, c.height, c.width, c.x2d_channels), tf.float32, "x2d")]
        if c.use_3d:
            specs.append(
                tf.TensorSpec((*lead, c.height, c.width, c.x3d_channels), tf.float32, "x3d")
            )
        return specs

    def state_spec(self):
        c = self.config
        shape = (None, c.time_steps - 1, c.height, c.width, self.features)
        return self.tf.TensorSpec(shape, self.tf.float32, "state")

    def _inputs(self, args) -> dict[str, Any]:
        return dict(zip(("x2d", "x3d"), args, strict=False))

    def window(self, *args):
        fused = self.encode(self.normalize(self._inputs(args)))  # (B, T, H, W, F)
        return {"bcb": self.head(fused)}

    def init_state(self, *args):
        tf = self.tf
        inputs = self._inputs(args)
        if self.config.time_steps == 1:  # no context: an empty state
            batch = tf.shape(inputs["x2d"])[0]
            c = self.config
            return {"state": tf.zeros((batch, 0, c.height, c.width, self.features))}
        fused = self.encode(self.normalize(inputs))  # (B, T − 1, H, W, F)
        return {"state": tf.cast(fused, tf.float32)}

    def step(self, *args):
        tf = self.tf
        *physical, state = args
        inputs = {k: tf.expand_dims(v, 1) for k, v in self._inputs(physical).items()}
        new = self.encode(self.normalize(inputs))  # (B, 1, H, W, F)
        state = tf.debugging.check_numerics(
            state, "Input `state` must be finite (the `state` of `init_state` or `step`)"
        )
        fused = tf.concat([tf.cast(state, new.dtype), new], axis=1)  # (B, T, H, W, F)
        return {"bcb": self.head(fused), "state": tf.cast(fused[:, 1:], tf.float32)}


def write_saved_model(
    model,
    stats: NormalizationStats,
    config: ModelConfig,
    path: str | os.PathLike,
    target_transform: str = "log",
) -> Path:
    """Writes the SavedModel alone (the three signatures, no ``assets.extra``) to `path`.

    Args:
        model: the emulator (`models.build_emulator` / `models.load_emulator`).
        stats: the statistics it was trained with; they become constants of the graph.
        config: its architecture.
        path: the folder to write.
        target_transform: the space its target was normalized in
            (`TrainConfig.target_transform`): ``"log"`` or ``"none"``.

    Returns:
        `path`.
    """
    import keras

    graph = _ServingGraph(model, stats, config, target_transform)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", graph.window, graph.specs(config.time_steps))
    archive.add_endpoint("init_state", graph.init_state, graph.specs(max(config.time_steps - 1, 0)))
    archive.add_endpoint("step", graph.step, [*graph.specs(None), graph.state_spec()])
    archive.write_out(str(path), verbose=False)
    return Path(path)


def signature_tensors(path: str | os.PathLike) -> dict[str, dict[str, dict[str, Any]]]:
    """The signatures of the SavedModel at `path` as ``saved_model_cli show`` lists them:
    ``{signature: {"inputs"|"outputs": {key: {"tensor", "dtype", "shape"}}}}``.

    ``tensor`` is the graph tensor name a TensorFlow C API host passes to ``TF_SessionRun``.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
    (meta,) = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
    out = {}
    for key in SIGNATURES:
        sig = meta.signature_def[key]
        out[key] = {
            side: {
                k: {
                    "tensor": t.name,
                    "dtype": "float32" if t.dtype == 1 else str(t.dtype),
                    "shape": [None if d.size < 0 else d.size for d in t.tensor_shape.dim],
                }
                for k, t in sorted(getattr(sig, side).items(), key=_tensor_order)
            }
            for side in ("inputs", "outputs")
        }
    return out


def _tensor_order(item) -> tuple[int, str]:
    order = ("x2d", "x3d", "bcb", "state")
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


def _contract(path: Path, name: str, version: int, train_config: TrainConfig, dataset) -> dict:
    import keras
    import tensorflow as tf

    config = train_config.model
    spec = dataset.spec
    x2d = [
        {"index": i, "name": v.name, "units": v.units, "long_name": v.long_name}
        for i, v in enumerate(variables.X2D)
    ]
    emission = variables.X2D[EMISSION_CHANNEL]
    x2d += [
        {
            "index": len(variables.X2D) + i,
            "name": memory_label(tau),
            "units": emission.units,
            "long_name": f"emission memory: exponentially weighted mean of {emission.name} "
            f"over the past, time scale {tau:g} days",
            "tau_days": tau,
        }
        for i, tau in enumerate(config.emission_memory_days)
    ]
    x2d += [
        {
            "index": len(x2d) + i,
            "name": memory_label(tau, advected=True),
            "units": emission.units,
            "long_name": f"advected emission memory: {emission.name} carried along the mean "
            f"wind of levels 1..L, time scale {tau:g} days",
            "tau_days": tau,
        }
        for i, tau in enumerate(config.advected_memory_days)
    ]
    ranges = {label: r.describe() for label, _, r in _channel_table(config)["x2d"]}
    for channel in x2d:
        channel["range"] = ranges[channel["name"]]
    x3d = [
        {"index": i, "name": v.name, "units": v.units, "long_name": v.long_name}
        for i, v in enumerate(variables.X3D)
    ]
    return {
        "format": CONTRACT_FORMAT,
        "name": name,
        "version": version,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "time_steps": config.time_steps,
        "grid": {"name": spec.grid_name, "height": config.height, "width": config.width},
        "levels": config.levels,
        "steps_per_day": spec.steps_per_day,
        "stamp_phase": spec.stamp_phase,
        "dataset": spec.name,
        "signatures": signature_tensors(path),
        "x2d_channels": x2d,
        "emission_memory": (
            "channel 6 + i = m_i(t) = a m_i(t_prev) + (1 - a) e(t), a = exp(-(t - t_prev) / "
            "tau_i), e = BCB_biomass_src, m_i = e at the first step"
            if config.emission_memory_days
            else "none"
        ),
        "advected_memory": (
            "the next channels: m_i(t) = a S(m_i(t_prev)) + (1 - a) e(t), S = semi-Lagrangian "
            "bilinear shift along the mean u, v of levels 1..L over t - t_prev (at most a day), "
            "bcb_emulator.data.pipeline.AdvectedMemory"
            if config.advected_memory_days
            else "none"
        ),
        "x3d_layout": "variable-major: channel i*L + k = variable i, level k + 1 (bottom up)",
        "x3d_variables": x3d if config.use_3d else [],
        "ranges": {k: r.describe() for k, r in INPUT_RANGES.items()},
        "output": {
            "name": "bcb",
            "units": variables.TARGET.units,
            "levels": f"1..{config.levels}, bottom up",
            "time": "the time of the last input step",
            "clipped_at": 0.0,
        },
        "state": {
            "content": "fused encoder features of the last T - 1 steps, oldest first; opaque",
            "features": int(model_features(config)),
        },
        "target_transform": train_config.target_transform,
        "log_offset": dataset.stats.log_offset,
    }


def model_features(config: ModelConfig) -> int:
    """`F` of the `state`: the channels of the fused frames the ConvLSTM stack reads."""
    if config.use_3d and config.fusion == "none":
        return 2 * config.encoder_filters
    return config.encoder_filters


# --------------------------------------------------------------------------------------------
# Checks.


def random_inputs(
    stats: NormalizationStats,
    config: ModelConfig,
    batch: int,
    steps: int,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Physical inputs `(batch, steps, H, W, C)` drawn around the statistics' means, clipped
    into `INPUT_RANGES` (for checks and benchmarks; not weather)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, mean, std in (
        ("x2d", *x2d_moments(stats, config)),
        ("x3d", stats.x3d_mean, stats.x3d_std),
    ):
        if name == "x3d" and not config.use_3d:
            continue
        shape = (batch, steps, config.height, config.width, mean.shape[0])
        x = mean.astype(np.float64) + std * rng.standard_normal(shape)
        for c, (_, _, r) in enumerate(_channel_table(config)[name]):
            lower = -np.inf if r.lower is None else r.lower
            upper = np.inf if r.upper is None else r.upper
            x[..., c] = np.clip(x[..., c], lower, upper)
            if r.strict:
                x[..., c] = np.maximum(x[..., c], lower + max(abs(mean[c]), 1.0) * 1e-3)
        out[name] = x.astype(np.float32)
    return out


def error_floor(stats: NormalizationStats, target_transform: str):
    """The floor of `relative_error` for a model's output, 10⁻¹¹ kg/kg: ``log_offset`` for a
    log-space target (``exp`` keeps relative errors relative); ``(L,)`` the standard deviation
    of each level for a physical-space one, whose output ``z · std + mean`` is resolved to a
    float32 rounding of that scale, not of the (possibly near-zero) result."""
    if target_transform == "log":
        return stats.log_offset
    return np.maximum(stats.y_std, stats.log_offset)


def relative_error(actual, expected, floor) -> float:
    """Largest ``|actual − expected| / max(|expected|, floor)``; `floor` a number or ``(L,)``."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.max(np.abs(actual - expected) / np.maximum(np.abs(expected), floor)))


def keras_reference(
    model,
    stats: NormalizationStats,
    inputs: Mapping[str, np.ndarray],
    target_transform: str = "log",
):
    """The Keras model on physical `inputs`, in numpy: normalize, predict, denormalize, clip at
    0 — what ``serving_default`` computes in the graph. Emission-memory channels of ``x2d``
    (after the 6 fields) are normalized with the emission's statistics."""
    x2d = inputs["x2d"]
    n = len(variables.X2D)
    memory = x2d[..., n:]
    mean, std = stats.x2d_mean[EMISSION_CHANNEL], stats.x2d_std[EMISSION_CHANNEL]
    normalized = {
        "x2d": np.concatenate(
            [stats.normalize_x2d(x2d[..., :n]), (memory - np.float32(mean)) / np.float32(std)],
            axis=-1,
        )
    }
    if "x3d" in inputs:
        normalized["x3d"] = stats.normalize_x3d(inputs["x3d"])
    z = model.predict(normalized, verbose=0)  # (B, H, W, L)
    return np.maximum(stats.denormalize_target(z, target_transform), 0.0)


def check_export(
    path: str | os.PathLike, *, keras_model=None, batch: int = 2, extra_steps: int = 2
) -> ExportCheck:
    """Reloads an export and compares it with its Keras model, and `step` with the window.

    On random physical inputs (`random_inputs`) of ``T + extra_steps`` steps: the SavedModel's
    ``serving_default`` vs the Keras model (``assets.extra/model.keras``, or `keras_model`) on
    each window; `init_state` on the first T − 1 steps, then `step` for each later step, vs
    ``serving_default`` on the window ending there.
    """
    exported = ExportedModel.open(path)
    config, stats = exported.model_config, exported.stats
    if keras_model is None:
        from bcb_emulator.models import load_emulator

        keras_model = load_emulator(exported.path / ASSETS_EXTRA / MODEL_FILE, compile=False)
    loaded = exported.load()
    t = config.time_steps
    n = t + extra_steps
    seq = random_inputs(stats, config, batch, n, seed=1)
    names = exported.input_names
    window_fn, init_fn, step_fn = (loaded.signatures[s] for s in SIGNATURES)
    state = init_fn(**{k: seq[k][:, : t - 1] for k in names})["state"]
    keras_err = step_err = 0.0
    floor = error_floor(stats, exported.target_transform)
    for end in range(t, n + 1):  # the window of steps [end − T, end)
        window = {k: seq[k][:, end - t : end] for k in names}
        served = window_fn(**window)["bcb"].numpy()
        keras_err = max(
            keras_err,
            relative_error(
                served,
                keras_reference(keras_model, stats, window, exported.target_transform),
                floor,
            ),
        )
        out = step_fn(**{k: seq[k][:, end - 1] for k in names}, state=state)
        state = out["state"]
        step_err = max(step_err, relative_error(out["bcb"].numpy(), served, floor))
    return ExportCheck(keras_err, step_err, n - t + 1)


# --------------------------------------------------------------------------------------------
# The model card.


def model_card(
    contract: Mapping[str, Any],
    config: TrainConfig,
    dataset,
    metrics: Any,
    metrics_path: Path,
) -> str:
    """The ``model_card.md`` of an export (Markdown)."""
    spec = dataset.spec
    m = config.model
    roles: dict[str, list[str]] = {}
    for tier in config.tiers:
        roles.setdefault(tier.train_split, []).append(f"training (tier `{tier.name}`)")
        roles.setdefault(tier.val_split, []).append(f"validation (tier `{tier.name}`)")
    for split in spec.stats_splits:
        roles.setdefault(split, []).append("normalization statistics")
    lines = [
        f"# Model card: `{contract['name']}` version {contract['version']}",
        "",
        "BCB (black carbon from biomass burning) emulator of NASA GISS ModelE: a ConvLSTM "
        "nowcast of the BCB mass mixing ratio on levels 1..L from the last T steps of surface "
        "and profile fields (architecture of Erfani et al. 2025, arXiv 2510.10654; "
        "`docs/emulator.md`). Exported "
        f"{contract['exported']} with TensorFlow {contract['tensorflow']}, Keras "
        f"{contract['keras']} (`bcb-emulator export`).",
        "",
        "## Model",
        "",
        f"- Grid `{spec.grid_name}` (H × W = {m.height} × {m.width}), L = {m.levels} levels, "
        f"window T = {m.time_steps} steps of {24 * 60 / spec.steps_per_day:g} min "
        f"({spec.steps_per_day} a day, stamps at day + (k + {spec.stamp_phase:g})/"
        f"{spec.steps_per_day}).",
        f"- Encoders {m.encoder_filters} filters ({m.encoder_blocks} × {m.encoder_kernel}×"
        f"{m.encoder_kernel} blocks), fusion `{m.fusion}`, ConvLSTM {m.lstm_layers} × "
        f"{m.lstm_filters} ({m.lstm_kernel}×{m.lstm_kernel}), peepholes `{m.peepholes}`, "
        f"pole mode `{m.pole_mode}`; trained in `{config.mixed_precision}`, loss on the "
        f"target in `{config.target_transform}` space (undone in the graph).",
        "- Full configuration: `assets.extra/train_config.json`; the Keras model: "
        "`assets.extra/model.keras`.",
        "",
        "## Training data",
        "",
        f"Dataset `modele_bcb/{spec.name}` (`assets.extra/dataset_spec.json`, statistics in "
        "`assets.extra/normalization.json`). Splits (inclusive dates, `noleap` calendar):",
        "",
        "| split | first day | last day | time steps | used for |",
        "| --- | --- | --- | --- | --- |",
    ]
    for split in spec.splits:
        steps = dataset.split_sizes.get(split.name, "not built")
        use = ", ".join(roles.get(split.name, [])) or "held out (not seen in training)"
        lines.append(f"| `{split.name}` | {split.start} | {split.end} | {steps} | {use} |")
    lines += [
        "",
        "Tiers, in order: "
        + "; ".join(
            f"`{t.name}` on `{t.train_split}` (validation `{t.val_split}`, {t.epochs} epochs "
            f"at most, peak learning rate {t.learning_rate:g})"
            for t in config.tiers
        )
        + ".",
        "",
        "## Evaluation",
        "",
    ]
    lines += _metrics_lines(metrics, metrics_path)
    check = contract.get("verification")
    lines += [
        "",
        "Export check (`bcb_emulator.export.check_export`, random physical inputs, largest "
        "relative error): "
        + (
            f"SavedModel vs Keras {check['window_vs_keras']:.1e}, `step` vs window "
            f"{check['step_vs_window']:.1e} over {check['steps']} steps (tolerance "
            f"{check['tolerance']:g})."
            if check
            else "not run (`verify=False`)."
        ),
        "",
        "## Input contract",
        "",
        "All tensors float32, physical ModelE units, channels-last, dynamic batch B "
        "(`docs/serving.md`). Values must be finite; the ranges below are checked in the "
        "graph and a request outside them fails with the variable named.",
        "",
    ]
    for side in ("inputs", "outputs"):
        lines += [f"| signature | {side[:-1]} | shape | graph tensor (C API) |", "| --- " * 4 + "|"]
        for sig, sides in contract["signatures"].items():
            for key, t in sides[side].items():
                lines.append(f"| `{sig}` | `{key}` | {_shape(t['shape'])} | `{t['tensor']}` |")
        lines.append("")
    lines += [
        "`x2d` channels, in order:",
        "",
        "| channel | variable | units | checked range |",
        "| --- | --- | --- | --- |",
    ]
    for c in contract["x2d_channels"]:
        lines.append(
            f"| {c['index']} | `{c['name']}` ({c['long_name']}) | {c['units']} | {c['range']} |"
        )
    if m.emission_memory_days:
        lines += [
            "",
            "Emission memory (channels 6 and up, `ModelConfig.emission_memory_days`): the caller "
            "keeps, per time scale τ, m(t) = a·m(t_prev) + (1 − a)·e(t) with a = exp(−(t − "
            "t_prev)/τ) and e = `BCB_biomass_src` in its physical units, starting at m = e at "
            "its first step (the training pipeline starts it at each split's first step).",
        ]
    if m.advected_memory_days:
        lines += [
            "",
            "Advected emission memory (the channels after those, "
            "`ModelConfig.advected_memory_days`): the same recurrence with the previous memory "
            "first moved along the mean wind (`u`, `v`) of levels 1..L over t − t_prev (at most "
            "a day), semi-Lagrangian with bilinear interpolation, periodic in longitude, "
            "starting at m = e: `bcb_emulator.data.pipeline.AdvectedMemory.step`, which "
            "`bcb-emulator predict` calls.",
        ]
    if contract["x3d_variables"]:
        lines += [
            "",
            f"`x3d` channels, variable-major: channel `i·L + k` is variable `i` on level "
            f"`k + 1` (L = {m.levels}, levels from the surface up):",
            "",
            "| i | channels | variable | units | checked range |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in contract["x3d_variables"]:
            i, r = c["index"], INPUT_RANGES.get(c["name"], Range()).describe()
            lines.append(
                f"| {i} | {i * m.levels}–{(i + 1) * m.levels - 1} | `{c['name']}` "
                f"({c['long_name']}) | {c['units']} | {r} |"
            )
    lines += [
        "",
        f"Output `bcb`: {variables.TARGET.units} at the time of the last input step, levels "
        f"1..{m.levels} bottom up, clipped at 0. `state` (`init_state`, `step`): the fused "
        f"encoder features of the last T − 1 = {m.time_steps - 1} steps, oldest first, "
        f"{contract['state']['features']} channels; opaque to the caller, passed back as it "
        "came.",
        "",
        "## Limits",
        "",
        "The emulator has seen only the periods and the model (ModelE or this package's "
        "reference transport model) of the dataset above; its skill elsewhere is unknown "
        "until evaluated. It predicts BCB from the meteorology and emissions of the last T "
        "steps only: it carries no memory of BCB older than the window.",
        "",
    ]
    return "\n".join(lines)


def _shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _metrics_lines(metrics: Any, path: Path) -> list[str]:
    if metrics is None:
        return [
            f"No evaluation report: no `{METRICS_FILE}` of `bcb-emulator evaluate` was found "
            f"for the model ({path}; see `bcb_emulator.export.find_metrics`) at export time, "
            "so this card holds no skill figures. Evaluate the model, then export again (or "
            "pass `--metrics`).",
        ]
    lines = [f"From `{path}` (copied to `assets.extra/{METRICS_FILE}`).", ""]
    splits = metrics.get("splits") if isinstance(metrics, Mapping) else None
    if isinstance(splits, Mapping) and splits:
        lines += [
            "Pooled over each split, area-weighted, BCB in 10⁻¹¹ kg/kg (the report's "
            "definitions are in the file):",
            "",
            "| split | model | R² level 1 | R² mean over levels | RMSE level 1 | bias level 1 "
            "| column burden R² |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for split, content in splits.items():
            for model, m in (content.get("models") or {}).items():
                r2, rmse, bias = (m.get(k) or [None] for k in ("r2", "rmse", "bias"))
                valid = [x for x in r2 if x is not None]
                mean = sum(valid) / len(valid) if valid else None
                burden = (m.get("burden") or {}).get("r2")
                cells = [_num(r2[0]), _num(mean), _num(rmse[0]), _num(bias[0]), _num(burden)]
                lines.append(f"| `{split}` | `{model}` | " + " | ".join(cells) + " |")
        return lines
    numbers = _flatten(metrics)
    if not numbers:
        return lines + ["The report holds no numbers."]
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [f"| `{k}` | {v:.4g} |" for k, v in numbers[:40]]
    if len(numbers) > 40:
        lines += ["", f"({len(numbers) - 40} more in the report.)"]
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """The numbers of a JSON document as ``(dotted.key, value)``, in document order."""
    if isinstance(data, bool):
        return []
    if isinstance(data, int | float):
        return [(prefix or "value", float(data))]
    if isinstance(data, Mapping):
        out = []
        for k, v in data.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return []
