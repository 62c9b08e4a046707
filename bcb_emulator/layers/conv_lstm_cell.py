"""One convolutional LSTM cell with fused gates and optional peepholes."""

from __future__ import annotations

import keras
from keras import ops

from bcb_emulator.layers.spherical_padding import check_fold_width, spherical_pad
from bcb_emulator.layers.winograd import SphericalWinograd, check_choice, use_winograd
from bcb_emulator.options import GATE_CONVS, PEEPHOLES, POLE_MODES


@keras.saving.register_keras_serializable(package="bcb_emulator")
class ConvLSTMCell(keras.layers.Layer):
    """A ConvLSTM cell (Shi et al. 2015) on the sphere, its four gates from one convolution.

    With `*` a ``"valid"`` convolution after a spherical halo and `⊙` the Hadamard product::

        [z_i, z_f, z_c, z_o] = W * [x_t, h_{t-1}] + b           (one kernel, 4F outputs)
        i_t = σ(z_i + w_ci ⊙ c_{t-1})
        f_t = σ(z_f + w_cf ⊙ c_{t-1})
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ tanh(z_c)
        o_t = σ(z_o + w_co ⊙ c_t)
        h_t = o_t ⊙ tanh(c_t)

    The kernel ``W`` has shape ``(k, k, C + F, 4F)``: one fused convolution over the
    concatenation ``[x, h]``. Because convolution is linear in its input channels, ``W * [x, h]
    = W_x * x + W_h * h`` with ``W_x = W[:, :, :C]`` and ``W_h = W[:, :, C:]``; `input_gates`
    applies ``W_x`` to a whole sequence at once (the batch of `B × T` frames), so a time step
    only pays for the recurrent ``W_h * h`` — the same arithmetic, fewer and larger kernels.

    Peepholes: ``"none"`` (no ``w_c*`` terms), ``"channel"`` (``w_ci, w_cf, w_co`` of shape
    ``(F,)``, one weight per feature map, shared over the grid) or ``"spatial"`` (shape
    ``(H, W, F)``, a weight per grid cell, as in Shi et al. 2015; ties the layer to one grid).
    The forget-gate bias starts at 1.

    `gate_conv` only changes how the same kernel is applied: ``"fused"`` runs one direct
    convolution with `4F` outputs, ``"split"`` four of `F` outputs (one per gate slice of the
    kernel), ``"winograd"`` the Winograd F(4×4, k×k) algorithm (`layers.winograd`: 4× fewer
    multiplies for 3×3, 6× for 5×5; the halo folded into its gather tables). ``"auto"``
    (default) is ``"winograd"`` for a 3×3 or 5×5 kernel on a static grid in float32 with
    ``C + F`` and ``4F`` of at least `layers.winograd.MIN_CHANNELS` (32), ``"fused"``
    otherwise (see `layers.winograd.use_winograd`). The
    weights and the math are the same; results differ by rounding only (about 1e-5 relative in
    float32). See ``docs/benchmarks/emulator_training.md`` for the speeds.

    Args:
        filters: hidden and cell feature maps `F`.
        kernel_size: odd spatial kernel `k`.
        peepholes: ``"none"``, ``"channel"`` or ``"spatial"``.
        pole_mode: pole treatment of the halo, ``"fold"`` or ``"reflect"``.
        gate_conv: ``"auto"``, ``"fused"`` (one 4F-output convolution), ``"split"`` (four
            F-output) or ``"winograd"`` (float32 only: `ValueError` at build under a float16
            or bfloat16 compute dtype).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(B, H, W, C)` input of one time step.
        states: list ``[h, c]`` of two `(B, H, W, F)` tensors.

    Returns:
        ``(h_t, [h_t, c_t])``, each `(B, H, W, F)`.

    Example:

    >>> import numpy as np
    >>> cell = ConvLSTMCell(filters=4)
    >>> x, h = np.ones((2, 8, 12, 3), "float32"), np.zeros((2, 8, 12, 4), "float32")
    >>> cell(x, [h, h])[0].shape
    TensorShape([2, 8, 12, 4])

    References:
        Shi et al., "Convolutional LSTM network: a machine learning approach for
        precipitation nowcasting", NeurIPS 2015.
    """

    def __init__(
        self,
        filters=64,
        kernel_size=3,
        peepholes="none",
        pole_mode="fold",
        gate_conv="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        check_choice("gate_conv", gate_conv, GATE_CONVS, kernel_size)
        if peepholes not in PEEPHOLES:
            raise ValueError(f"`peepholes` must be one of {PEEPHOLES}. Received: {peepholes!r}")
        if pole_mode not in POLE_MODES:
            raise ValueError(f"`pole_mode` must be one of {POLE_MODES}. Received: {pole_mode!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.peepholes = peepholes
        self.pole_mode = pole_mode
        self.gate_conv = gate_conv
        self.algorithm = None  # `gate_conv` resolved at build
        self.winograd = None

    def build(self, inputs_shape, states_shape=None):
        _, height, width, channels = inputs_shape
        check_fold_width(width, self.pole_mode)
        self.input_channels = channels
        k, f = self.kernel_size, self.filters
        gates = (channels + f, 4 * f)  # input and output channels of the gate convolution
        dtype = self.compute_dtype
        if use_winograd("gate_conv", self.gate_conv, k, height, width, dtype, gates):
            self.algorithm = "winograd"
            self.winograd = SphericalWinograd(height, width, self.pole_mode, k)
        else:
            self.algorithm = "fused" if self.gate_conv == "auto" else self.gate_conv
        self.kernel = self.add_weight(
            shape=(k, k, channels + f, 4 * f), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(4 * f,), initializer=self._bias_init, name="bias")
        self.peephole_weights = []
        if self.peepholes != "none":
            shape = (f,) if self.peepholes == "channel" else (height, width, f)
            self.peephole_weights = [
                self.add_weight(shape=shape, initializer="zeros", name=f"peephole_{gate}")
                for gate in ("i", "f", "o")
            ]
        self.built = True

    def _bias_init(self, shape, dtype=None):
        f = self.filters
        return ops.concatenate(
            [ops.zeros((f,), dtype), ops.ones((f,), dtype), ops.zeros((2 * f,), dtype)]
        )

    def _conv(self, x, kernel):
        if self.algorithm == "winograd":
            return self.winograd.conv_image(x, kernel)  # (N, H, W, 4F)
        pad = self.kernel_size // 2
        x = spherical_pad(x, pad, pad, self.pole_mode)  # (N, H + k - 1, W + k - 1, C)
        if self.algorithm == "fused":
            return ops.conv(x, kernel, padding="valid")  # (N, H, W, 4F)
        f = self.filters
        gates = [ops.conv(x, kernel[..., g * f : (g + 1) * f]) for g in range(4)]
        # gates: 4 × (N, H, W, F)
        return ops.concatenate(gates, axis=-1)  # (N, H, W, 4F)

    def input_gates(self, x):
        """Returns ``W_x * x + b``, `(N, H, W, 4F)`, for `(N, H, W, C)` frames (e.g. N = B·T)."""
        return self._conv(x, self.kernel[:, :, : self.input_channels, :]) + self.bias

    def step(self, x_gates, h, c):
        """Advances one time step from precomputed `input_gates`; returns ``(h_t, c_t)``.

        ``h = c = None`` is the zero initial state: the recurrent convolution is skipped.
        """
        z = x_gates  # (B, H, W, 4F)
        if h is not None:
            z = z + self._conv(h, self.kernel[:, :, self.input_channels :, :])
        return self.activate(z, c, self.peephole_weights)

    def activate(self, z, c, peepholes):
        """The gates: pre-activations `z` `(…, 4F)` and ``c_{t−1}`` `(…, F)` → ``(h_t, c_t)``.

        ``c = None`` is the zero state (``f_t ⊙ c_{t−1}`` and the ``w_ci``, ``w_cf`` terms
        vanish). `peepholes` are ``[w_ci, w_cf, w_co]`` broadcastable to `c`, or empty.
        """
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)  # 4 × (…, F)
        if c is None:
            c = ops.sigmoid(z_i) * ops.tanh(z_c)
        else:
            if peepholes:
                z_i = z_i + peepholes[0] * c
                z_f = z_f + peepholes[1] * c
            c = ops.sigmoid(z_f) * c + ops.sigmoid(z_i) * ops.tanh(z_c)
        if peepholes:
            z_o = z_o + peepholes[2] * c
        h = ops.sigmoid(z_o) * ops.tanh(c)
        return h, c

    def call(self, inputs, states):
        h, c = states
        h, c = self.step(self.input_gates(inputs), h, c)
        return h, [h, c]

    def compute_output_shape(self, inputs_shape, states_shape=None):
        state = (*inputs_shape[:-1], self.filters)
        return state, [state, state]

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            peepholes=self.peepholes,
            pole_mode=self.pole_mode,
            gate_conv=self.gate_conv,
        )
        return config
