"""Profile-guided fusion by a spatial feature transform."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="bcb_emulator")
class SFTFusion(keras.layers.Layer):
    """Modulates features `x` by a condition stream: ``x ⊙ (1 + γ) + β``.

    The scale γ and the shift β are computed from the condition features, point by point, by
    two small stacks of 1×1 convolutions (``Dense`` on the channel axis: `hidden_units`
    with leaky ReLU, then `F_x` linear). The emulator's default conditions the 2D surface
    features on the 3D profile features (the seed's profile-guided fusion module); the
    opposite direction is obtained by swapping the arguments.

    Args:
        hidden_units: width of the hidden 1×1 convolution of each stack.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        x: `(…, F_x)` features to modulate, e.g. `(B, T, H, W, F_x)`.
        condition: `(…, F_c)` features with the same leading dims as `x`.

    Returns:
        `(…, F_x)` modulated features (dimensionless, like the inputs).

    Example:

    >>> import numpy as np
    >>> fusion = SFTFusion(hidden_units=8)
    >>> x, c = np.zeros((2, 3, 8, 12, 8), "float32"), np.ones((2, 3, 8, 12, 16), "float32")
    >>> fusion(x, c).shape
    TensorShape([2, 3, 8, 12, 8])

    References:
        Wang et al., "Recovering realistic texture in image super-resolution by deep spatial
        feature transform", CVPR 2018.
    """

    def __init__(self, hidden_units=32, **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = hidden_units
        self.scale_hidden = keras.layers.Dense(
            hidden_units, dtype=self.dtype_policy, name="scale_hidden"
        )
        self.shift_hidden = keras.layers.Dense(
            hidden_units, dtype=self.dtype_policy, name="shift_hidden"
        )
        self.scale_out = None
        self.shift_out = None

    def build(self, x_shape, condition_shape):
        if tuple(x_shape[:-1])[1:] != tuple(condition_shape[:-1])[1:]:
            raise ValueError(
                "`x` and `condition` must have the same shape but for the channel axis. "
                f"Received: x.shape={x_shape}, condition.shape={condition_shape}"
            )
        channels = x_shape[-1]
        self.scale_out = keras.layers.Dense(channels, dtype=self.dtype_policy, name="scale_out")
        self.shift_out = keras.layers.Dense(channels, dtype=self.dtype_policy, name="shift_out")
        self.scale_hidden.build(condition_shape)
        self.shift_hidden.build(condition_shape)
        hidden_shape = (*condition_shape[:-1], self.hidden_units)
        self.scale_out.build(hidden_shape)
        self.shift_out.build(hidden_shape)
        self.built = True

    def call(self, x, condition):
        act = keras.activations.leaky_relu
        gamma = self.scale_out(act(self.scale_hidden(condition), 0.1))  # (…, F_x)
        beta = self.shift_out(act(self.shift_hidden(condition), 0.1))  # (…, F_x)
        return x * (1.0 + gamma) + beta

    def compute_output_shape(self, x_shape, condition_shape):
        return x_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units)
        return config
