"""Skill metrics of BCB fields, defined once, with the dimensions each one reduces.

Fields are ``(N, H, W, L)``: `N` samples (time steps), latitude rows `H`, longitudes `W`,
levels `L`, in physical units (10⁻¹¹ kg/kg) unless said otherwise. Every metric is weighted by
the exact cell areas (``grid.Grid.area``: the polar caps are real cells, not ``cos(±90°) = 0``)
and, within a group, reduces the sample and grid dimensions ``(N, H, W)`` while keeping the level
`L`. A group is a set of cells (the globe, a region) given as a ``(G, H, W)`` weight mask.

Two ways to reduce over time, both used in the report and labelled:

- **pooled** (`Moments`): one sum over every sample and cell of the whole set, then the
  statistic — the reference paper's figure;
- **per step, then averaged** (`PerStepMean`): the statistic of each time step over the grid,
  averaged over the steps — the reference code's figure.

With ``y`` the truth, ``p`` the prediction and ``w`` the area weights, summed over ``(N, H, W)``:

=========  ===============================================================
metric     definition
=========  ===============================================================
R²         ``1 − Σ w (y − p)² / Σ w (y − ȳ)²``, ``ȳ = Σ w y / Σ w``
Pearson r  ``Σ w (y − ȳ)(p − p̄) / sqrt(Σ w (y − ȳ)² · Σ w (p − p̄)²)``
RMSE       ``sqrt(Σ w (p − y)² / Σ w)``
bias       ``Σ w (p − y) / Σ w``
=========  ===============================================================

Example:

>>> import numpy as np
>>> y = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 2, 2, 1)  # (N, H, W, L)
>>> m = Moments(n_groups=1, n_levels=1)
>>> m.update(y, y + 1.0, np.ones((1, 2, 2)))
>>> [round(float(x[0, 0]), 6) for x in (m.bias(), m.rmse(), m.r2())]  # SSE 4, SST 5
[1.0, 1.0, 0.2]
"""

from __future__ import annotations

import numpy as np

#: Offset of the log-space metrics, 10⁻¹¹ kg/kg: ``log(BCB + LOG_OFFSET)`` (as the training's
#: log transform, ``bcb_emulator.data.normalization.LOG_OFFSET``).
LOG_OFFSET = 1e-3
#: The statistics every accumulator returns, by name.
METRICS = ("r2", "r", "rmse", "bias")
_TINY = 1e-300


def _check(y: np.ndarray, p: np.ndarray, masks: np.ndarray) -> None:
    if y.ndim != 4 or y.shape != p.shape:
        raise ValueError(
            "`y` and `p` must both have shape (N, H, W, L). "
            f"Received: y.shape={y.shape}, p.shape={p.shape}"
        )
    if masks.ndim != 3 or masks.shape[1:] != y.shape[1:3]:
        raise ValueError(
            f"`masks` must have shape (G, H, W) with (H, W) = {y.shape[1:3]}. "
            f"Received: masks.shape={masks.shape}"
        )


class Moments:
    """Pooled weighted moments of truth and prediction per group and level.

    Reduces ``(N, H, W)`` — every sample and cell seen by `update` — in one sum; keeps
    ``(G, L)``. Statistics of the set as a whole, never averages of per-batch values.

    Args:
        n_groups: number of groups `G` (cell masks).
        n_levels: number of levels `L`.
    """

    _SUMS = ("w", "y", "p", "yy", "pp", "yp")

    def __init__(self, n_groups: int, n_levels: int):
        self.sums = {k: np.zeros((n_groups, n_levels)) for k in self._SUMS}

    def update(self, y: np.ndarray, p: np.ndarray, masks: np.ndarray) -> None:
        """Adds samples.

        Args:
            y: ``(N, H, W, L)`` truth.
            p: ``(N, H, W, L)`` prediction.
            masks: ``(G, H, W)`` weights of each group's cells: cell areas inside the group,
                0 outside.
        """
        _check(y, p, masks)
        y, p = y.astype(np.float64), p.astype(np.float64)
        m = masks.astype(np.float64)
        s = self.sums
        s["w"] += y.shape[0] * m.sum(axis=(1, 2))[:, None]  # (G, 1) broadcast over L
        for key, value in (("y", y), ("p", p), ("yy", y * y), ("pp", p * p), ("yp", y * p)):
            s[key] += np.einsum("ghw,nhwl->gl", m, value)  # (G, L)

    def _centred(self):
        s = self.sums
        w = np.maximum(s["w"], _TINY)
        var_y = s["yy"] - s["y"] ** 2 / w
        var_p = s["pp"] - s["p"] ** 2 / w
        cov = s["yp"] - s["y"] * s["p"] / w
        return w, var_y, var_p, cov

    def _sse(self) -> np.ndarray:
        s = self.sums
        return np.maximum(s["yy"] - 2.0 * s["yp"] + s["pp"], 0.0)  # Σ w (y − p)²

    def r2(self) -> np.ndarray:
        """``(G, L)`` coefficient of determination (NaN where the truth is constant)."""
        _, var_y, _, _ = self._centred()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(var_y > 0, 1.0 - self._sse() / var_y, np.nan)

    def r(self) -> np.ndarray:
        """``(G, L)`` Pearson correlation (NaN where truth or prediction is constant)."""
        _, var_y, var_p, cov = self._centred()
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((var_y > 0) & (var_p > 0), cov / np.sqrt(var_y * var_p), np.nan)

    def rmse(self) -> np.ndarray:
        """``(G, L)`` root-mean-square error, in the units of the fields."""
        return np.sqrt(self._sse() / np.maximum(self.sums["w"], _TINY))

    def bias(self) -> np.ndarray:
        """``(G, L)`` mean error ``p − y``, in the units of the fields."""
        return (self.sums["p"] - self.sums["y"]) / np.maximum(self.sums["w"], _TINY)

    def result(self) -> dict[str, np.ndarray]:
        """``{metric: (G, L)}`` for every metric of :data:`METRICS`."""
        return {name: getattr(self, name)() for name in METRICS}


class PerStepMean:
    """Each metric per time step over the grid, then averaged over the steps.

    For each sample ``n`` the metric reduces ``(H, W)`` of that step (area-weighted, within each
    group); the result is the mean over the steps `N` of all `update` calls; keeps ``(G, L)``.
    A step whose statistic is undefined (constant truth on a level) is left out of that mean.

    Args:
        n_groups: number of groups `G`.
        n_levels: number of levels `L`.
    """

    def __init__(self, n_groups: int, n_levels: int):
        self.total = {k: np.zeros((n_groups, n_levels)) for k in METRICS}
        self.count = {k: np.zeros((n_groups, n_levels)) for k in METRICS}

    def update(self, y: np.ndarray, p: np.ndarray, masks: np.ndarray) -> None:
        """Adds samples; arguments as `Moments.update`."""
        _check(y, p, masks)
        for n in range(y.shape[0]):
            step = Moments(*self.total["r2"].shape)
            step.update(y[n : n + 1], p[n : n + 1], masks)
            for name, value in step.result().items():
                ok = np.isfinite(value)
                self.total[name] += np.where(ok, value, 0.0)
                self.count[name] += ok

    def result(self) -> dict[str, np.ndarray]:
        """``{metric: (G, L)}``, the mean over steps (NaN where no step was defined)."""
        with np.errstate(invalid="ignore"):
            return {k: np.where(self.count[k] > 0, self.total[k] / self.count[k], np.nan)
                    for k in METRICS}  # fmt: skip


def log_space(x: np.ndarray) -> np.ndarray:
    """``log(x + LOG_OFFSET)`` of BCB in 10⁻¹¹ kg/kg, the space of the log-space metrics."""
    return np.log(np.maximum(x.astype(np.float64), 0.0) + LOG_OFFSET)


def column_burden(bcb: np.ndarray, airmass: np.ndarray) -> np.ndarray:
    """Column burden of BCB over the `L` levels, kg m⁻².

    Args:
        bcb: ``(..., L)`` mixing ratio, 10⁻¹¹ kg/kg.
        airmass: ``(..., L)`` air mass of each layer, kg m⁻².

    Returns:
        ``(...)``: ``Σ_levels 10⁻¹¹ · bcb · airmass`` (reduces `L`).
    """
    return 1e-11 * np.einsum("...l,...l->...", bcb.astype(np.float64), airmass.astype(np.float64))


def global_mass(bcb: np.ndarray, airmass: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Global BCB mass in the `L` levels, kg, per sample.

    Args:
        bcb: ``(N, H, W, L)`` mixing ratio, 10⁻¹¹ kg/kg.
        airmass: ``(N, H, W, L)`` kg m⁻².
        area: ``(H, W)`` cell areas, m².

    Returns:
        ``(N,)``: reduces ``(H, W, L)``.
    """
    return np.einsum("nhw,hw->n", column_burden(bcb, airmass), area.astype(np.float64))
