"""A stack of spherical ConvLSTM layers over a short sequence."""

from __future__ import annotations

import keras
from keras import ops

from bcb_emulator.layers.conv_lstm_cell import ConvLSTMCell


@keras.saving.register_keras_serializable(package="bcb_emulator")
class ConvLSTMStack(keras.layers.Layer):
    """`num_layers` `ConvLSTMCell` layers; returns the last hidden state of the top layer.

    Each layer reads the full hidden-state sequence of the layer below, starting from zero
    states. This is the same math as `keras.layers.ConvLSTM2D` stacked with
    ``return_sequences=True`` (but for the spherical halo instead of zero ``"same"``
    padding), computed with less work:

    - one gate kernel per layer instead of eight gate convolutions per step;
    - the first step skips the recurrent convolution (``h_0 = 0``) and the forget and
      peephole terms on ``c_0 = 0``;
    - direct convolutions (``gate_conv="fused"`` or ``"split"``): the input-to-gates
      convolution of all `T` frames runs as one convolution over `T × B` frames, time-major,
      and a Python loop over the (small, static) `T` then applies only the recurrent
      convolution and the gates;
    - Winograd (every cell's `gate_conv` resolved to ``"winograd"``): the sequence stays in
      the tiled position-major layout of `layers.winograd` from the first layer's input
      gather to the last hidden state, the input tiles of all `T` frames are transformed at
      once, and each step runs one channel mixing over ``[x_t, h_{t−1}]`` and one output
      transform. When ``"auto"`` resolves differently per cell (the first cell has other
      input channels), each cell runs its own choice on the direct path's layout.

    Args:
        filters: feature maps `F` of every layer.
        num_layers: number of stacked layers (3 in the seed).
        kernel_size: odd spatial kernel (3 in the seed).
        peepholes: ``"none"``, ``"channel"`` or ``"spatial"`` (see `ConvLSTMCell`).
        pole_mode: pole treatment of the halo, ``"fold"`` or ``"reflect"``.
        gate_conv: ``"auto"``, ``"fused"``, ``"split"`` or ``"winograd"`` (see `ConvLSTMCell`).
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
        gate_conv="auto",
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
        if all(cell.algorithm == "winograd" for cell in self.cells):
            return self._call_winograd(inputs)
        _, steps, height, width, channels = inputs.shape
        x = ops.transpose(inputs, (1, 0, 2, 3, 4))  # (T, B, H, W, C)
        for depth, cell in enumerate(self.cells):
            frames = ops.reshape(x, (-1, height, width, channels))  # (T·B, H, W, C)
            gates = cell.input_gates(frames)  # (T·B, H, W, 4F)
            gates = ops.reshape(gates, (steps, -1, height, width, 4 * self.filters))
            # Unstacking time-major frames: its gradient is one stack, where slicing `[:, t]`
            # would add T zero-filled copies of the whole gate tensor.
            h = c = None  # zero initial state
            hidden = []
            for x_gates in ops.unstack(gates, axis=0):  # T × (B, H, W, 4F)
                h, c = cell.step(x_gates, h, c)
                hidden.append(h)
            if depth < self.num_layers - 1:
                x = ops.stack(hidden, axis=0)  # (T, B, H, W, F)
                channels = self.filters
        return h

    def _call_winograd(self, inputs):
        """`call` in the tiled position-major layout of `layers.winograd`."""
        _, steps, height, width, channels = inputs.shape
        wino = self.cells[0].winograd  # the same tables for every layer
        x = ops.transpose(inputs, (2, 3, 1, 0, 4))  # (H, W, T, B, C)
        x = ops.reshape(x, (height * width, steps, -1, channels))  # (H·W, T, B, C)
        taps = wino.image_taps
        for depth, cell in enumerate(self.cells):
            u = wino.kernel(cell.kernel)  # (36, C + F, 4F)
            peepholes = [self._tiled(w, wino) for w in cell.peephole_weights]
            h = c = None  # zero initial state: step 0 mixes x_0 alone
            hidden = []
            for v in ops.unstack(wino.tiles(x, taps), axis=2):  # T × (36, tiles, B, C)
                if h is None:
                    m = wino.mix(v, u[:, :channels])
                else:
                    v = ops.concatenate([v, wino.tiles(h, wino.tiled_taps)], axis=-1)
                    m = wino.mix(v, u)  # (36, tiles · B, 4F)
                z = wino.output(m) + cell.bias  # (positions, B, 4F)
                h, c = cell.activate(z, c, peepholes)  # (positions, B, F)
                hidden.append(h)
            if depth < self.num_layers - 1:
                x = ops.stack(hidden, axis=1)  # (positions, T, B, F)
                taps, channels = wino.tiled_taps, self.filters
        h = ops.take(h, wino.image_to_tiled, axis=0)  # (H·W, B, F)
        h = ops.reshape(h, (height, width, -1, self.filters))
        return ops.transpose(h, (2, 0, 1, 3))  # (B, H, W, F)

    @staticmethod
    def _tiled(weight, wino):
        """A peephole weight, `(F,)` or `(H, W, F)`, broadcastable to `(positions, B, F)`."""
        if len(weight.shape) == 1:
            return weight
        flat = ops.reshape(weight, (wino.height * wino.width, weight.shape[-1]))
        return ops.expand_dims(ops.take(flat, wino.tiled_to_image, axis=0), 1)

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
