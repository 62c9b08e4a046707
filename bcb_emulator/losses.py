"""Training loss of the emulator."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="bcb_emulator")
class MseMae(keras.losses.Loss):
    """``(MSE + MAE) / 2`` (or the MSE alone) on normalized values, optionally weighted by
    cell area.

    Per sample: ``mean over (H, W, L) of a_j · ((y − ŷ)² + |y − ŷ|) / 2`` (``a_j · (y − ŷ)²``
    with ``mae=False``) where ``a_j`` is
    the cell area of row `j` scaled to mean 1 over the rows (all ones without `row_areas`),
    so the weighted loss has the scale of the unweighted one. The batch reduction is the mean.
    Use the exact cell areas (``grid.Grid.area[:, 0]``): ModelE's pole rows are polar caps,
    real cells with an area, which ``cos(±90°) = 0`` would drop.

    Args:
        row_areas: `(H,)` cell area of each latitude row (any unit, e.g.
            ``grid.get_grid("coarse").area[:, 0]`` in m²), or None for no weighting.
        mae: add the MAE (the reference paper's loss; its optimum is the median, below the
            mean of skewed plumes); False for the MSE alone (optimum: the mean).
        name: loss name (default ``"mse_mae"`` or ``"mse"``).
        **kwargs: base `keras.losses.Loss` arguments.

    Example:

    >>> import numpy as np
    >>> float(MseMae()(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 2.0)))
    3.0
    >>> float(MseMae(mae=False)(np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 2.0)))
    4.0
    """

    def __init__(self, row_areas=None, mae=True, name=None, **kwargs):
        super().__init__(name=name or ("mse_mae" if mae else "mse"), **kwargs)
        self.mae = bool(mae)
        self.row_areas = None if row_areas is None else [float(v) for v in row_areas]
        if self.row_areas is None:
            self._row_weights = None
        else:
            weights = np.asarray(self.row_areas, np.float64)
            if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
                raise ValueError(
                    "`row_areas` must be a 1-D sequence of positive, finite areas. "
                    f"Received: row_areas={row_areas!r}"
                )
            self._row_weights = (weights / weights.mean()).reshape(-1, 1, 1).astype("float32")

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        error = ops.cast(y_true, "float32") - y_pred  # (B, H, W, L)
        if self.mae:
            elementwise = 0.5 * (error * error + ops.abs(error))  # (B, H, W, L)
        else:
            elementwise = error * error
        if self._row_weights is not None:
            elementwise = elementwise * self._row_weights  # (B, H, W, L) · (H, 1, 1)
        return ops.mean(elementwise, axis=(1, 2, 3))  # (B,)

    def get_config(self):
        config = super().get_config()
        config.update(row_areas=self.row_areas, mae=self.mae)
        return config
