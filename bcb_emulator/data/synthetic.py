"""Seeded synthetic ModelE E3 daily files, for dummy data, tests and benchmarks.

Not physics: smooth fields with the right shapes, units and orders of magnitude (positive BCB
spanning decades, air mass from the sigma layers), written through
:func:`bcb_emulator.data.writer.write_day`, so the files are byte-for-byte in the layout the
reference model and ModelE write. The physical reference model lives in ``bcb_emulator.reference``.

Example:

>>> import tempfile
>>> from bcb_emulator.data.spec import TINY_GRID
>>> out = tempfile.mkdtemp()
>>> paths = write_days(out, [58400], TINY_GRID, n_levels=3, steps_per_day=4, seed=0)
>>> len(paths)
5
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bcb_emulator import variables
from bcb_emulator.data import writer
from bcb_emulator.grid import Grid, VerticalGrid

#: Typical magnitude of each variable (mean, spread), in registry units.
_SCALE: dict[str, tuple[float, float]] = {
    "pblht_bp": (800.0, 400.0),
    "shflx": (-30.0, 40.0),
    "lhflx": (-80.0, 60.0),
    "prsurf": (984.0, 10.0),
    "u": (5.0, 10.0),
    "v": (0.0, 5.0),
    "omega": (0.0, 0.05),
    "p_3d": (900.0, 5.0),
    "t": (280.0, 15.0),
    "th": (290.0, 15.0),
    "q": (0.008, 0.004),
    "prec_3d_sum": (2.0, 2.0),
    "z": (1000.0, 300.0),
    "mcuflx": (0.01, 0.01),
}


def day_fields(
    day: int, grid: Grid, n_levels: int, steps_per_day: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Returns ``(times, fields, static)`` of one day, as :func:`writer.write_day` takes them.

    Deterministic in ``(seed, day)``: the same day gives the same fields whatever else is made.
    """
    rng = np.random.default_rng([seed, 1, day + 10**7])
    times = day + (np.arange(steps_per_day) + 0.5) / steps_per_day
    lat = np.deg2rad(grid.lat)[None, :, None]  # (1, H, 1)
    lon = np.deg2rad(grid.lon)[None, None, :]  # (1, 1, W)
    phase = 2 * np.pi * (times[:, None, None] % 1.0)  # (T, 1, 1) diurnal cycle
    base = np.cos(lat) * np.sin(lon + phase) + 0.3 * np.sin(2 * lat)  # (T, H, W)
    levels = np.arange(1, n_levels + 1)[None, :, None, None]  # (1, L, 1, 1)
    fields: dict[str, np.ndarray] = {}
    for v in variables.ALL:
        if not v.time_varying or v.name in ("BCB", "airmass", "BCB_biomass_src"):
            continue
        mean, spread = _SCALE[v.name]
        noise_shape = (steps_per_day, n_levels) + grid.shape if v.is_3d else None
        if v.is_3d:
            field = base[:, None] * np.cos(0.1 * levels) + 0.2 * rng.standard_normal(noise_shape)
        else:
            field = base + 0.2 * rng.standard_normal(base.shape)
        fields[v.name] = mean + spread * field
    fields["q"] = np.abs(fields["q"])
    fields["prec_3d_sum"] = np.abs(fields["prec_3d_sum"])
    fire = np.exp(3 * base - 2) * (rng.random(base.shape) < 0.3)  # sparse positive emissions
    fields["BCB_biomass_src"] = 100.0 * fire
    log_bcb = 1.0 + 2.0 * base[:, None] - 0.1 * levels + 0.5 * rng.standard_normal(noise_shape)
    fields["BCB"] = np.exp(log_bcb)  # spans decades, mean of a few 10⁻¹¹ kg/kg
    air = np.moveaxis(VerticalGrid().air_mass(fields["prsurf"]), 0, 1)  # (T, layers, H, W)
    if n_levels > air.shape[1]:  # more levels than the column: repeat the top layer
        top = np.repeat(air[:, -1:], n_levels - air.shape[1], axis=1)
        air = np.concatenate([air, top], axis=1)
    fields["airmass"] = air[:, :n_levels]
    static_rng = np.random.default_rng([seed, 0])
    static = {
        "axyp": grid.area,
        "landfr": np.clip(static_rng.random(grid.shape) * 1.5 - 0.25, 0.0, 1.0),
    }
    return times, fields, static


def write_days(
    out_dir: str | os.PathLike,
    days: Iterable[int],
    grid: Grid,
    n_levels: int,
    steps_per_day: int = 48,
    seed: int = 0,
    complevel: int = 4,
) -> list[Path]:
    """Writes synthetic files of every day in `days` to `out_dir`; returns the paths."""
    written = []
    for day in days:
        times, fields, static = day_fields(day, grid, n_levels, steps_per_day, seed)
        written += writer.write_day(
            out_dir, day, times, fields, static, grid, n_levels, complevel=complevel
        )
    return written
