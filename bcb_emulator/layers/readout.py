"""Readout of the vertical profile from the last hidden state."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="bcb_emulator")
class Readout(keras.layers.Layer):
    """A 1×1 convolution from `F` feature maps to `levels` BCB levels.

    Args:
        levels: number of output levels `L` (levels 1..L, bottom up).
        **kwargs: base `keras.layers.Layer` arguments; pass ``dtype="float32"`` under mixed
            precision so that the output stays in float32.

    Call arguments:
        inputs: `(B, H, W, F)` features.

    Returns:
        `(B, H, W, levels)` BCB in normalized units (per-level standardized, see the dataset
        statistics).

    Example:

    >>> import numpy as np
    >>> Readout(levels=20)(np.zeros((2, 8, 12, 16), "float32")).shape
    TensorShape([2, 8, 12, 20])

    References:
        Gao et al., "SimVP: Simpler yet better video prediction", CVPR 2022 (1×1 readout).
    """

    def __init__(self, levels=20, **kwargs):
        super().__init__(**kwargs)
        if levels < 1:
            raise ValueError(f"`levels` must be >= 1. Received: levels={levels}")
        self.levels = levels
        self.projection = keras.layers.Dense(levels, dtype=self.dtype_policy, name="projection")

    def build(self, input_shape):
        self.projection.build(input_shape)
        self.built = True

    def call(self, inputs):
        return self.projection(inputs)  # (B, H, W, L)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.levels)

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels)
        return config
