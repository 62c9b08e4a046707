"""Per-level skill metrics accumulated over a whole dataset.

Both metrics keep running first and second moments (float64) of the truth `y` and the
prediction `ŷ` for each level, and compute the statistic from them at `result()`: the value
is that of the set as a whole (pooled over every sample and grid cell seen since
`reset_state`), never an average of per-batch values.

Shapes: ``y_true`` and ``y_pred`` are `(B, H, W, L)`. Reduced dims: `B`, `H`, `W` (pooled,
in one sum); kept: `L`. ``result()`` is the value on level `level` (0-based) if given, else the
mean over the `L` levels of the per-level values; `result_per_level()` returns all `L`.

Example:

>>> import numpy as np
>>> metric = R2Score(levels=2)
>>> y = np.random.default_rng(0).normal(size=(4, 3, 5, 2)).astype("float32")
>>> metric.update_state(y, y)
>>> float(metric.result())
1.0
"""

from __future__ import annotations

import keras
from keras import ops

_MOMENTS = ("sum_w", "sum_t", "sum_p", "sum_tt", "sum_pp", "sum_tp")


class _LevelMoments(keras.metrics.Metric):
    """Running weighted moments per level; subclasses turn them into a statistic."""

    def __init__(self, levels, level=None, name=None, **kwargs):
        super().__init__(name=name, dtype="float64", **kwargs)
        if level is not None and not 0 <= level < levels:
            raise ValueError(f"`level` must be None or in [0, {levels}). Received: level={level}")
        self.levels = levels
        self.level = level
        for moment in _MOMENTS:
            setattr(
                self,
                moment,
                self.add_variable(shape=(levels,), initializer="zeros", name=moment),
            )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float64")  # (B, H, W, L)
        y_pred = ops.cast(y_pred, "float64")  # (B, H, W, L)
        if sample_weight is None:
            w = ops.ones_like(y_true)
        else:
            w = ops.broadcast_to(ops.cast(sample_weight, "float64"), ops.shape(y_true))
        axes = tuple(range(len(y_true.shape) - 1))
        updates = {
            "sum_w": w,
            "sum_t": w * y_true,
            "sum_p": w * y_pred,
            "sum_tt": w * y_true * y_true,
            "sum_pp": w * y_pred * y_pred,
            "sum_tp": w * y_true * y_pred,
        }
        for moment, value in updates.items():
            variable = getattr(self, moment)
            variable.assign_add(ops.sum(value, axis=axes))  # (L,)

    def _centred(self):
        n = ops.maximum(self.sum_w, 1e-300)
        var_t = self.sum_tt - self.sum_t * self.sum_t / n
        var_p = self.sum_pp - self.sum_p * self.sum_p / n
        cov = self.sum_tp - self.sum_t * self.sum_p / n
        return var_t, var_p, cov

    def result_per_level(self):
        """Returns the `(L,)` statistic, one value per level."""
        raise NotImplementedError

    def r2_per_level(self):
        """`(L,)` R² from the moments (see `R2Score`)."""
        var_t, var_p, cov = self._centred()
        n = ops.maximum(self.sum_w, 1e-300)
        diff = (self.sum_t - self.sum_p) / n
        # Σ w (y − ŷ)² = centred part + n (ȳ − mean ŷ)².
        sse = var_t + var_p - 2.0 * cov + n * diff * diff
        return 1.0 - sse / ops.maximum(var_t, 1e-300)

    def r_per_level(self):
        """`(L,)` Pearson r from the moments (see `PearsonR`)."""
        var_t, var_p, cov = self._centred()
        return cov / ops.sqrt(ops.maximum(var_t * var_p, 1e-300))

    def result(self):
        values = self.result_per_level()
        return values[self.level] if self.level is not None else ops.mean(values)

    def get_config(self):
        return {"levels": self.levels, "level": self.level, "name": self.name}


@keras.saving.register_keras_serializable(package="bcb_emulator")
class R2Score(_LevelMoments):
    """Coefficient of determination per level, pooled over the set.

    ``R² = 1 − Σ w (y − ŷ)² / Σ w (y − ȳ)²``, sums over `B`, `H`, `W` and all batches seen,
    ``ȳ`` the (weighted) mean of the truth on that level over the same points.

    Args:
        levels: number of levels `L`.
        level: 0-based level reported by `result()`; None reports the mean over levels.
        name: metric name.
    """

    def result_per_level(self):
        return self.r2_per_level()


@keras.saving.register_keras_serializable(package="bcb_emulator")
class PearsonR(_LevelMoments):
    """Pearson correlation per level, pooled over the set.

    ``r = Σ w (y − ȳ)(ŷ − mean ŷ) / sqrt(Σ w (y − ȳ)² · Σ w (ŷ − mean ŷ)²)``, sums over `B`,
    `H`, `W` and all batches seen.

    Args:
        levels: number of levels `L`.
        level: 0-based level reported by `result()`; None reports the mean over levels.
        name: metric name.
    """

    def result_per_level(self):
        return self.r_per_level()
