"""Spherical halo padding of latitude-longitude fields."""

from __future__ import annotations

import keras
from keras import ops

from bcb_emulator.options import POLE_MODES


def spherical_pad(x, pad_lat: int, pad_lon: int, pole_mode: str):
    """Pads the `(…, H, W, C)` field `x` by a spherical halo; returns `(…, H + 2p, W + 2q, C)`.

    Axis -3 is latitude (south → north, pole rows first and last), axis -2 longitude
    (a full circle). Latitude is padded first, so that the corners wrap in longitude too.
    """
    height, width = x.shape[-3], x.shape[-2]
    if pad_lat:
        # Rows 1..p beyond each pole, nearest first: the rows next to the pole row, mirrored.
        south = ops.flip(x[..., 1 : pad_lat + 1, :, :], axis=-3)  # (…, p, W, C)
        north = ops.flip(x[..., height - 1 - pad_lat : height - 1, :, :], axis=-3)  # (…, p, W, C)
        if pole_mode == "fold":
            # Across the pole a row continues at longitude + 180°: roll by W/2.
            half = width // 2
            south = ops.concatenate([south[..., half:, :], south[..., :half, :]], axis=-2)
            north = ops.concatenate([north[..., half:, :], north[..., :half, :]], axis=-2)
        x = ops.concatenate([south, x, north], axis=-3)  # (…, H + 2p, W, C)
    if pad_lon:
        # Longitude is periodic: the last columns go west of the first and vice versa.
        x = ops.concatenate(
            [x[..., width - pad_lon :, :], x, x[..., :pad_lon, :]], axis=-2
        )  # (…, H + 2p, W + 2q, C)
    return x


def check_fold_width(width, pole_mode):
    """Raises `ValueError` if `pole_mode` is ``"fold"`` and the grid width `width` is odd.

    Across a pole a row continues at longitude + 180°, ``W / 2`` columns away: every layer
    that pads or convolves on the sphere checks this once, at build, whichever convolution
    algorithm it runs.
    """
    if pole_mode == "fold" and width is not None and width % 2:
        raise ValueError(
            "The input width W must be even for `pole_mode='fold'` (across a pole a row "
            f"continues W/2 columns away). Received: W={width}, pole_mode={pole_mode!r}"
        )


def validate_pads(pad_lat, pad_lon, pole_mode):
    """Raises `ValueError` on pads or a pole mode that `spherical_pad` cannot honour."""
    if pole_mode not in POLE_MODES:
        raise ValueError(
            f"`pole_mode` must be one of {POLE_MODES}. Received: pole_mode={pole_mode!r}"
        )
    for name, value in (("pad_lat", pad_lat), ("pad_lon", pad_lon)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="bcb_emulator")
class SphericalPadding(keras.layers.Layer):
    """Pads a latitude-longitude field with a halo taken from the sphere itself.

    Longitude is periodic: the column west of −178.75° is 178.75°. Beyond a pole the grid
    continues on the other side of the globe. ModelE pole rows are polar caps centred on the
    pole (``grid.lat`` is ±90), so the first row beyond the north pole lies as far from it as
    the row just south of it: padded row ``k`` (``k = 1 … p``) beyond the pole row ``H − 1`` is
    row ``H − 1 − k``. With ``pole_mode="fold"`` it is taken at longitude + 180° (rolled by
    ``W / 2``), which is where the meridian actually continues across the pole; with
    ``pole_mode="reflect"`` it is the same row unrolled (a plain mirror, as in NumPy's
    ``"reflect"``). The south pole is treated the same way.

    Units are those of the input; the layer only copies values. Use `SphericalCrop` with the
    same pads to undo it, or follow it with a ``"valid"`` convolution of kernel ``2p + 1``.

    Args:
        pad_lat: rows added beyond each pole; at most ``H − 2``.
        pad_lon: columns added on each side in longitude; at most ``W``.
        pole_mode: ``"fold"`` (across-the-pole continuation) or ``"reflect"``.
        **kwargs: base `keras.layers.Layer` arguments (``name``, ``dtype``, …).

    Call arguments:
        inputs: `(…, H, W, C)` tensor, latitude south → north on axis -3 and longitude on
            axis -2; any leading dims (e.g. ``(B, T)``) are carried through. ``W`` must be even
            for ``"fold"``.

    Returns:
        `(…, H + 2 pad_lat, W + 2 pad_lon, C)` tensor.

    Example:

    >>> import numpy as np
    >>> x = np.arange(2 * 4 * 6 * 1, dtype="float32").reshape(2, 4, 6, 1)
    >>> SphericalPadding(pad_lat=1, pad_lon=2)(x).shape
    TensorShape([2, 6, 10, 1])

    References:
        Cheng et al., "Cube padding for weakly-supervised saliency prediction in 360° videos",
        CVPR 2018 (spherical padding for CNNs); ModelE ``GEOM_B`` polar caps.
    """

    def __init__(self, pad_lat=1, pad_lon=1, pole_mode="fold", **kwargs):
        super().__init__(**kwargs)
        validate_pads(pad_lat, pad_lon, pole_mode)
        self.pad_lat = pad_lat
        self.pad_lon = pad_lon
        self.pole_mode = pole_mode

    def build(self, input_shape):
        height, width = input_shape[-3], input_shape[-2]
        if height is not None and self.pad_lat > height - 2:
            raise ValueError(
                f"`pad_lat` must be at most H - 2 = {height - 2} for an input of height {height}. "
                f"Received: pad_lat={self.pad_lat}"
            )
        check_fold_width(width, self.pole_mode)
        if width is not None and self.pad_lon > width:
            raise ValueError(
                f"The input width W must be at least `pad_lon`. "
                f"Received: W={width}, pad_lon={self.pad_lon}"
            )
        self.built = True

    def call(self, inputs):
        return spherical_pad(inputs, self.pad_lat, self.pad_lon, self.pole_mode)

    def compute_output_shape(self, input_shape):
        *lead, height, width, channels = input_shape
        height = None if height is None else height + 2 * self.pad_lat
        width = None if width is None else width + 2 * self.pad_lon
        return (*lead, height, width, channels)

    def get_config(self):
        config = super().get_config()
        config.update(pad_lat=self.pad_lat, pad_lon=self.pad_lon, pole_mode=self.pole_mode)
        return config
