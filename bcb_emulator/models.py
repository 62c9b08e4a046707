"""The emulator network and the channels-first (seed) ↔ channels-last (Keras) boundary.

`build_emulator` assembles the custom layers of `bcb_emulator.layers` into a functional
`keras.Model` with named inputs ``x2d`` and ``x3d`` and output ``bcb`` (``docs/emulator.md``,
"Architecture").

Layouts. The reference paper's code (Erfani et al. 2025, arXiv 2510.10654; "the seed" below)
writes channels-first; this package is channels-last:

=======  ===========================  ===========================================
tensor   seed (channels-first)        package (channels-last)
=======  ===========================  ===========================================
X2D      ``(B, T, 6, 1, H, W)``       ``(B, T, H, W, 6)``
X3D      ``(B, T, 8, L, H, W)``       ``(B, T, H, W, 8·L)``, channel ``v·L + l``
Ŷ        ``(B, 1, L, H, W)``          ``(B, H, W, L)``
=======  ===========================  ===========================================

X3D is flattened variable-major: channel ``v·L + l`` holds variable ``variables.X3D[v]`` on
level ``l + 1``. `from_channels_first` and `to_channels_first` convert; they are the only
place the seed layout is known.

Example:

>>> from bcb_emulator.config import ModelConfig
>>> model = build_emulator(ModelConfig(height=8, width=12, levels=3, time_steps=3,
...                                    encoder_filters=8, lstm_filters=8, sft_hidden=8))
>>> model.output_names
['bcb']
"""

from __future__ import annotations

import json
import pathlib
import zipfile

import keras
import numpy as np

from bcb_emulator import losses, metrics  # noqa: F401  (register the loss and metrics)
from bcb_emulator.config import ModelConfig
from bcb_emulator.layers import ConvLSTMStack, Readout, SFTFusion, SpatialEncoder

#: The members of a `.keras` archive that `load_emulator` needs.
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")


def build_emulator(config: ModelConfig) -> keras.Model:
    """Returns the emulator for `config`, a functional model ``{x2d, x3d} → bcb``.

    Inputs (normalized, dimensionless): ``x2d`` `(B, T, H, W, 6)` and ``x3d``
    `(B, T, H, W, 8·L)` (absent when ``config.use_3d`` is False). Output ``bcb``:
    `(B, H, W, L)` normalized BCB at the time of the last input frame. Under a mixed dtype
    policy the readout stays float32.
    """
    t, h, w = config.time_steps, config.height, config.width
    x2d = keras.Input((t, h, w, config.x2d_channels), name="x2d")  # (B, T, H, W, 6)
    inputs = {"x2d": x2d}
    common = dict(groups=config.groups, pole_mode=config.pole_mode)
    encoder = dict(
        filters=config.encoder_filters,
        kernel_size=config.encoder_kernel,
        num_blocks=config.encoder_blocks,
        conv=config.encoder_conv,
        **common,
    )
    f1 = SpatialEncoder(**encoder, name="encoder_2d")(x2d)  # (B, T, H, W, F)
    if config.use_3d:
        x3d = keras.Input((t, h, w, config.x3d_channels), name="x3d")  # (B, T, H, W, 8L)
        inputs["x3d"] = x3d
        f2 = SpatialEncoder(**encoder, name="encoder_3d")(x3d)  # (B, T, H, W, F)
        if config.fusion == "3d_conditions_2d":
            fused = SFTFusion(config.sft_hidden, name="fusion")(f1, f2)  # (B, T, H, W, F)
        elif config.fusion == "2d_conditions_3d":
            fused = SFTFusion(config.sft_hidden, name="fusion")(f2, f1)  # (B, T, H, W, F)
        else:
            fused = keras.layers.Concatenate(name="concat")([f1, f2])  # (B, T, H, W, 2F)
    else:
        fused = f1
    hidden = ConvLSTMStack(
        filters=config.lstm_filters,
        num_layers=config.lstm_layers,
        kernel_size=config.lstm_kernel,
        peepholes=config.peepholes,
        pole_mode=config.pole_mode,
        gate_conv=config.gate_conv,
        name="conv_lstm",
    )(fused)  # (B, H, W, F_lstm)
    bcb = Readout(config.levels, dtype="float32", name="bcb")(hidden)  # (B, H, W, L)
    return keras.Model(inputs=inputs, outputs=bcb, name="bcb_emulator")


def load_emulator(path, compile: bool = True) -> keras.Model:
    """Loads an emulator saved as `.keras` (e.g. ``<out_dir>/model.keras`` of training).

    Importing this module registers everything such a file names: the custom layers, the
    `losses.MseMae` loss and the `metrics` it was compiled with. ``compile=False`` skips the
    optimizer, loss and metrics (inference only).

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: naming the file and what is wrong with it, when it is not a ``.keras``
            zip archive (empty, truncated, another format), lacks a member of one, holds a
            configuration Keras cannot rebuild, or is a model without the emulator's inputs.
    """
    path = pathlib.Path(path)
    expected = (
        "a `.keras` model saved by `bcb-emulator train` (a zip archive of "
        f"{', '.join(KERAS_MEMBERS)})"
    )
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; expected {expected}.")
    if not path.is_file():
        raise ValueError(f"{path} is a folder; expected {expected}. Received: {path}")
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path} is not a zip archive ({size} bytes: empty, truncated by an interrupted "
            f"copy or save, or another format); expected {expected}. Received: {path}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            missing = sorted(set(KERAS_MEMBERS) - set(archive.namelist()))
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path} is a damaged zip archive ({err}); expected {expected}.") from err
    if missing:
        raise ValueError(
            f"{path} lacks {missing} of a `.keras` archive; expected {expected}. "
            f"Received: {path} ({size} bytes)"
        )
    if damaged is not None:
        raise ValueError(
            f"{path} holds a damaged member {damaged!r} (its checksum does not match); "
            f"expected {expected}."
        )
    try:
        model = keras.saving.load_model(path, compile=compile)
    except (ValueError, TypeError, KeyError, OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{path} could not be loaded as an emulator: {type(err).__name__}: "
            f"{str(err)[:500]}. Expected {expected}."
        ) from err
    try:
        inputs = model.input
    except (AttributeError, ValueError):  # a model never called has no inputs
        inputs = None
    names = sorted(inputs) if isinstance(inputs, dict) else None
    if names not in (["x2d"], ["x2d", "x3d"]):
        raise ValueError(
            f"{path} holds a Keras model that is not an emulator: its inputs must be a dict "
            f"named 'x2d' (and 'x3d'). Received: {type(model).__name__} {model.name!r} with "
            f"inputs {names or inputs}"
        )
    return model


def from_channels_first(x2d, x3d):
    """Converts seed-layout inputs to the package layout.

    Args:
        x2d: `(B, T, 6, 1, H, W)` array.
        x3d: `(B, T, 8, L, H, W)` array.

    Returns:
        ``(x2d, x3d)`` of shapes `(B, T, H, W, 6)` and `(B, T, H, W, 8·L)`, X3D channel
        ``v·L + l`` = variable `v`, level `l`.
    """
    x2d, x3d = np.asarray(x2d), np.asarray(x3d)
    if x2d.ndim != 6 or x2d.shape[3] != 1:
        raise ValueError(f"`x2d` must have shape (B, T, 6, 1, H, W). Received: {x2d.shape}")
    if x3d.ndim != 6:
        raise ValueError(f"`x3d` must have shape (B, T, 8, L, H, W). Received: {x3d.shape}")
    b, t, n_var, levels, h, w = x3d.shape
    x2d = np.transpose(x2d[:, :, :, 0], (0, 1, 3, 4, 2))  # (B, T, H, W, 6)
    x3d = np.transpose(x3d, (0, 1, 4, 5, 2, 3))  # (B, T, H, W, 8, L)
    x3d = x3d.reshape(b, t, h, w, n_var * levels)  # (B, T, H, W, 8L)
    return x2d, x3d


def to_channels_first(y):
    """Converts a package-layout prediction `(B, H, W, L)` to the seed's `(B, 1, L, H, W)`."""
    y = np.asarray(y)
    if y.ndim != 4:
        raise ValueError(f"`y` must have shape (B, H, W, L). Received: {y.shape}")
    return np.transpose(y, (0, 3, 1, 2))[:, None]  # (B, 1, L, H, W)
