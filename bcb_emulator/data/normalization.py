"""Normalization statistics of a dataset: area-weighted, from the training split(s) only.

Weights are the ModelE cell areas ``axyp`` of the dataset's grid (the exact integral of
cos(latitude) over each cell), so a mean is a global area mean and every time step counts the
same. One mean/std per X2D channel, one per (variable, level) for X3D, one per level for the
target ``BCB``, both in physical units and in log space, ``log(BCB + log_offset)``.

``log_offset`` = :data:`LOG_OFFSET` = 10⁻³ (in 10⁻¹¹ kg/kg, i.e. 10⁻¹⁴ kg/kg): far below the
BCB of any polluted cell and small against its typical value (≈ 5), it keeps ``log`` finite
where BCB is zero and barely bends the rest.

The statistics are computed by streaming (Chan's parallel update of mean and M2 in float64,
one day at a time), stored as ``normalization.json`` in the dataset's version folder, and
loaded by :func:`load` (or as ``bcb_emulator.data.BuiltDataset.stats``). A zero std (a constant
channel, e.g. ``landfr`` on an all-ocean toy grid) is stored as 1 so normalizing never divides
by zero.

Example:

>>> import numpy as np
>>> acc = StatsAccumulator(area=np.ones((2, 2)), n_levels=1)
>>> acc.n_time
0
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from bcb_emulator import variables

#: Offset of the log transform of the target, in 10⁻¹¹ kg/kg.
LOG_OFFSET = 1e-3
#: File name of the statistics inside the dataset's version folder.
STATS_FILENAME = "normalization.json"
_TRANSFORMS = ("none", "log")


def _xp_log(x):
    if isinstance(x, np.ndarray | float | np.floating):
        return np.log(x)
    import tensorflow as tf

    return tf.math.log(x)


def _xp_exp(x):
    if isinstance(x, np.ndarray | float | np.floating):
        return np.exp(x)
    import tensorflow as tf

    return tf.math.exp(x)


def _check_transform(transform: str | variables.Transform | None) -> str:
    if transform is None:
        return variables.TARGET.transform.value
    value = transform.value if isinstance(transform, variables.Transform) else transform
    if value not in _TRANSFORMS:
        raise ValueError(f"`transform` must be one of {_TRANSFORMS}. Received: {transform!r}")
    return value


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
    """Per-channel statistics of a dataset, and the transforms that use them.

    All arrays are float64. Channels-last tensors broadcast against them directly.

    Attributes:
        x2d_mean, x2d_std: ``(6,)``, X2D channels in registry order.
        x3d_mean, x3d_std: ``(8·L,)``, X3D channels variable-major (``i·L + k``).
        y_mean, y_std: ``(L,)``, target per level, physical units (10⁻¹¹ kg/kg).
        y_log_mean, y_log_std: ``(L,)``, ``log(BCB + log_offset)`` per level.
        log_offset: offset of the log transform, 10⁻¹¹ kg/kg.
        n_levels: ``L``.
        splits: the splits the statistics were computed from.
        n_time: number of time steps they cover.
    """

    x2d_mean: np.ndarray
    x2d_std: np.ndarray
    x3d_mean: np.ndarray
    x3d_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    y_log_mean: np.ndarray
    y_log_std: np.ndarray
    log_offset: float
    n_levels: int
    splits: tuple[str, ...]
    n_time: int

    _ARRAYS = (
        "x2d_mean",
        "x2d_std",
        "x3d_mean",
        "x3d_std",
        "y_mean",
        "y_std",
        "y_log_mean",
        "y_log_std",
    )

    def normalize_x2d(self, x):
        """``(..., 6)`` physical -> normalized (numpy or tf)."""
        return (x - self.x2d_mean.astype(np.float32)) / self.x2d_std.astype(np.float32)

    def normalize_x3d(self, x):
        """``(..., 8·L)`` physical -> normalized (numpy or tf)."""
        return (x - self.x3d_mean.astype(np.float32)) / self.x3d_std.astype(np.float32)

    def _target_moments(self, transform: str) -> tuple[np.ndarray, np.ndarray]:
        if transform == "log":
            return self.y_log_mean.astype(np.float32), self.y_log_std.astype(np.float32)
        return self.y_mean.astype(np.float32), self.y_std.astype(np.float32)

    def normalize_target(self, y, transform: str | None = None):
        """``(..., L)`` BCB in 10⁻¹¹ kg/kg -> normalized.

        Args:
            y: BCB, physical units, numpy or tf.
            transform: ``"log"`` (normalize ``log(y + log_offset)``) or ``"none"``; default
                the registry's transform of ``BCB`` (``"log"``).
        """
        transform = _check_transform(transform)
        mean, std = self._target_moments(transform)
        if transform == "log":
            y = _xp_log(y + np.float32(self.log_offset))
        return (y - mean) / std

    def denormalize_target(self, z, transform: str | None = None):
        """Inverse of :meth:`normalize_target`: normalized ``(..., L)`` -> 10⁻¹¹ kg/kg."""
        transform = _check_transform(transform)
        mean, std = self._target_moments(transform)
        y = z * std + mean
        if transform == "log":
            y = _xp_exp(y) - np.float32(self.log_offset)
        return y

    def to_json(self) -> dict:
        """JSON-serializable dict."""
        out = {name: getattr(self, name).tolist() for name in self._ARRAYS}
        out.update(
            log_offset=self.log_offset,
            n_levels=self.n_levels,
            splits=list(self.splits),
            n_time=self.n_time,
            x2d_channels=[v.name for v in variables.X2D],
            x3d_channels=[f"{v.name}@{k + 1}" for v in variables.X3D for k in range(self.n_levels)],
            weighting="cell area (axyp of the grid), every time step equal",
        )
        return out

    @classmethod
    def from_json(cls, data: dict) -> NormalizationStats:
        """Inverse of :meth:`to_json`."""
        arrays = {name: np.asarray(data[name], np.float64) for name in cls._ARRAYS}
        return cls(
            **arrays,
            log_offset=float(data["log_offset"]),
            n_levels=int(data["n_levels"]),
            splits=tuple(data["splits"]),
            n_time=int(data["n_time"]),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Writes the statistics as JSON to `path`."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1))


def load(path: str | os.PathLike) -> NormalizationStats:
    """Reads statistics written by :meth:`NormalizationStats.save`."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"No normalization statistics at {path}; build the dataset first.")
    return NormalizationStats.from_json(json.loads(path.read_text()))


class _Moments:
    """Weighted mean and M2 per channel, merged with Chan et al.'s parallel update."""

    def __init__(self, n_channels: int):
        self.weight = 0.0
        self.mean = np.zeros(n_channels)
        self.m2 = np.zeros(n_channels)

    def update(self, x: np.ndarray, w: np.ndarray) -> None:
        """Adds samples `x` ``(N, C)`` with weights `w` ``(N,)``."""
        x = x.astype(np.float64)
        wb = float(w.sum())
        mean_b = w @ x / wb
        m2_b = w @ (x - mean_b) ** 2
        total = self.weight + wb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * wb / total
        self.m2 = self.m2 + m2_b + delta**2 * self.weight * wb / total
        self.weight = total

    def std(self) -> np.ndarray:
        std = np.sqrt(np.maximum(self.m2 / self.weight, 0.0))
        constant = std <= 1e-9 * np.maximum(np.abs(self.mean), 1.0)  # zero up to round-off
        return np.where(constant, 1.0, std)


class StatsAccumulator:
    """Streams time steps in and returns :class:`NormalizationStats`.

    Args:
        area: ``(H, W)`` cell areas, the weights.
        n_levels: ``L``.
        log_offset: offset of the target's log transform.
    """

    def __init__(self, area: np.ndarray, n_levels: int, log_offset: float = LOG_OFFSET):
        self.area = np.asarray(area, np.float64)
        self.n_levels = n_levels
        self.log_offset = log_offset
        self.n_time = 0
        self._x2d = _Moments(len(variables.X2D))
        self._x3d = _Moments(len(variables.X3D) * n_levels)
        self._y = _Moments(n_levels)
        self._ylog = _Moments(n_levels)

    def update(self, x2d: np.ndarray, x3d: np.ndarray, bcb: np.ndarray) -> None:
        """Adds steps: `x2d` ``(T, H, W, 6)``, `x3d` ``(T, H, W, 8·L)``, `bcb` ``(T, H, W, L)``."""
        n_time = x2d.shape[0]
        if x2d.shape[1:3] != self.area.shape:
            raise ValueError(
                f"`x2d` must be on the {self.area.shape} grid of `area`. Received: {x2d.shape}"
            )
        w = np.tile(self.area.reshape(-1), n_time)  # (T·H·W,)
        flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731  (T, H, W, C) -> (T·H·W, C)
        self._x2d.update(flat(x2d), w)
        self._x3d.update(flat(x3d), w)
        self._y.update(flat(bcb), w)
        self._ylog.update(np.log(flat(bcb).astype(np.float64) + self.log_offset), w)
        self.n_time += n_time

    def result(self, splits: tuple[str, ...] = ()) -> NormalizationStats:
        """The statistics of everything added so far."""
        if self.n_time == 0:
            raise ValueError("No time steps were added; cannot compute statistics.")
        stats = NormalizationStats(
            x2d_mean=self._x2d.mean,
            x2d_std=self._x2d.std(),
            x3d_mean=self._x3d.mean,
            x3d_std=self._x3d.std(),
            y_mean=self._y.mean,
            y_std=self._y.std(),
            y_log_mean=self._ylog.mean,
            y_log_std=self._ylog.std(),
            log_offset=self.log_offset,
            n_levels=self.n_levels,
            splits=tuple(splits),
            n_time=self.n_time,
        )
        for field in dataclasses.fields(stats):
            values = np.asarray(getattr(stats, field.name))
            if values.dtype.kind == "f" and not np.isfinite(values).all():
                raise ValueError(
                    f"Normalization statistic {field.name!r} of splits {list(splits)} is not "
                    f"finite: {values}. The reader checks every value's range, so this is an "
                    "overflow; report it with the input."
                )
        return stats
