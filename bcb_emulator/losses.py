"""Training loss of the emulator."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="bcb_emulator")
class MseMae(keras.losses.Loss):
    """``(MSE + MAE) / 2`` on normalized values, optionally weighted by cell area.

    Per sample: ``mean over (H, W, L) of a_j · ((y − ŷ)² + |y − ŷ|) / 2`` where ``a_j`` is
    ``cos(latitude_j)`` scaled to mean 1 over the rows (all ones without `latitudes`), so
    the weighted loss has the scale of the unweighted one. The batch reduction is the mean.

    Args:
        latitudes: `(H,)` row latitudes in degrees (e.g. ``grid.get_grid("coarse").lat``)
            to weight by area, or None for no weighting.
        name: loss name.
        **kwargs: base `keras.losses.Loss` arguments.

    Example:

    >>> import numpy as np
    >>> float(MseMae()(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 2.0)))
    3.0
    """

    def __init__(self, latitudes=None, name="mse_mae", **kwargs):
        super().__init__(name=name, **kwargs)
        self.latitudes = None if latitudes is None else [float(v) for v in latitudes]
        if self.latitudes is None:
            self._row_weights = None
        else:
            weights = np.cos(np.deg2rad(np.asarray(self.latitudes)))
            weights = np.maximum(weights, 0.0)
            self._row_weights = (weights / weights.mean()).reshape(-1, 1, 1).astype("float32")

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        error = ops.cast(y_true, "float32") - y_pred  # (B, H, W, L)
        elementwise = 0.5 * (error * error + ops.abs(error))  # (B, H, W, L)
        if self._row_weights is not None:
            elementwise = elementwise * self._row_weights  # (B, H, W, L) · (H, 1, 1)
        return ops.mean(elementwise, axis=(1, 2, 3))  # (B,)

    def get_config(self):
        config = super().get_config()
        config.update(latitudes=self.latitudes)
        return config
