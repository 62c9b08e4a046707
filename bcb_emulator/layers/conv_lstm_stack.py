"""A stack of spherical ConvLSTM layers over a short sequence."""

from __future__ import annotations

import keras
from keras import ops

from bcb_emulator.layers.conv_lstm_cell import ConvLSTMCell


@keras.saving.register_keras_serializable(package="bcb_emulator")
class ConvLSTMStack(keras.layers.Layer):
    """`num_layers` `ConvLSTMCell` layers; returns the last hidden state of the top layer.

    Each layer reads the full hidden-state sequence of the layer below, starting from zero
    states. Per layer, the input-to-gates convolution of all `T` frames runs as one batched
    convolution over `B × T` frames; a Python loop over the (small, static) `T` then applies
    only the recurrent convolution and the gate arithmetic. This is the same math as
    `keras.layers.ConvLSTM2D` stacked with ``return_sequences=True`` (but for the spherical
    halo instead of zero ``"same"`` padding), with one fused gate kernel per layer instead of
    eight gate convolutions per step.

    Args:
        filters: feature maps `F` of every layer.
        num_layers: number of stacked layers (3 in the seed).
        kernel_size: odd spatial kernel (3 in the seed).
        peepholes: ``"none"``, ``"channel"`` or ``"spatial"`` (see `ConvLSTMCell`).
        pole_mode: pole treatment of the halo, ``"fold"`` or ``"reflect"``.
        gate_conv: ``"fused"`` or ``"split"`` gate convolutions (see `ConvLSTMCell`).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(B, T, H, W, C)` sequence, oldest frame first; `T` must be static.

    Returns:
        `(B, H, W, filters)` hidden state of the top layer after the last frame.

    Example:

    >>> import numpy as np
    >>> stack = ConvLSTMStack(filters=4, num_layers=2)
    >>> stack(np.ones((2, 3, 8, 12, 5), "float32")).shape
    TensorShape([2, 8, 12, 4])

    References:
        Shi et al., "Convolutional LSTM network: a machine learning approach for
        precipitation nowcasting", NeurIPS 2015.
    """

    def __init__(
        self,
        filters=64,
        num_layers=3,
        kernel_size=3,
        peepholes="none",
        pole_mode="fold",
        gate_conv="fused",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"`num_layers` must be >= 1. Received: num_layers={num_layers}")
        self.filters = filters
        self.num_layers = num_layers
        self.kernel_size = kernel_size
        self.peepholes = peepholes
        self.pole_mode = pole_mode
        self.gate_conv = gate_conv
        self.cells = [
            ConvLSTMCell(
                filters,
                kernel_size,
                peepholes,
                pole_mode,
                gate_conv,
                dtype=self.dtype_policy,
                name=f"cell_{i}",
            )
            for i in range(num_layers)
        ]

    def build(self, input_shape):
        if len(input_shape) != 5 or input_shape[1] is None:
            raise ValueError(
                "`inputs` must have shape (B, T, H, W, C) with a static T. "
                f"Received: shape={input_shape}"
            )
        _, _, height, width, channels = input_shape
        for cell in self.cells:
            cell.build((None, height, width, channels))
            channels = self.filters
        self.built = True

    def call(self, inputs):
        _, steps, height, width, channels = inputs.shape
        x = inputs
        for depth, cell in enumerate(self.cells):
            frames = ops.reshape(x, (-1, height, width, channels))  # (B·T, H, W, C)
            gates = cell.input_gates(frames)  # (B·T, H, W, 4F)
            gates = ops.reshape(gates, (-1, steps, height, width, 4 * self.filters))
            # gates: (B, T, H, W, 4F)
            h = c = ops.zeros_like(gates[:, 0, :, :, : self.filters])  # (B, H, W, F)
            hidden = []
            for t in range(steps):
                h, c = cell.step(gates[:, t], h, c)
                hidden.append(h)
            if depth < self.num_layers - 1:
                x = ops.stack(hidden, axis=1)  # (B, T, H, W, F)
                channels = self.filters
        return h

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], input_shape[3], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            num_layers=self.num_layers,
            kernel_size=self.kernel_size,
            peepholes=self.peepholes,
            pole_mode=self.pole_mode,
            gate_conv=self.gate_conv,
        )
        return config
