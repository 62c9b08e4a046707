"""Crop of a spherical halo."""

from __future__ import annotations

import keras

from bcb_emulator.layers.spherical_padding import validate_pads


@keras.saving.register_keras_serializable(package="bcb_emulator")
class SphericalCrop(keras.layers.Layer):
    """Removes the halo added by `SphericalPadding`, returning the field on the grid.

    Args:
        pad_lat: rows to remove beyond each pole (the `SphericalPadding` ``pad_lat``).
        pad_lon: columns to remove on each side in longitude.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(…, H + 2 pad_lat, W + 2 pad_lon, C)` tensor; units are kept.

    Returns:
        `(…, H, W, C)` tensor.

    Example:

    >>> import numpy as np
    >>> SphericalCrop(pad_lat=1, pad_lon=2)(np.zeros((2, 6, 10, 1), "float32")).shape
    TensorShape([2, 4, 6, 1])

    References:
        The inverse of `SphericalPadding`: ``crop(pad(x)) == x``.
    """

    def __init__(self, pad_lat=1, pad_lon=1, **kwargs):
        super().__init__(**kwargs)
        validate_pads(pad_lat, pad_lon, "fold")
        self.pad_lat = pad_lat
        self.pad_lon = pad_lon

    def call(self, inputs):
        height, width = inputs.shape[-3], inputs.shape[-2]
        return inputs[
            ..., self.pad_lat : height - self.pad_lat, self.pad_lon : width - self.pad_lon, :
        ]  # (…, H, W, C)

    def compute_output_shape(self, input_shape):
        *lead, height, width, channels = input_shape
        height = None if height is None else height - 2 * self.pad_lat
        width = None if width is None else width - 2 * self.pad_lon
        return (*lead, height, width, channels)

    def get_config(self):
        config = super().get_config()
        config.update(pad_lat=self.pad_lat, pad_lon=self.pad_lon)
        return config
