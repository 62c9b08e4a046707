"""An independent, loop-by-loop float64 implementation of the advected emission memory
(``bcb_emulator.data.pipeline.AdvectedMemory``), for the tests to compare against."""

from __future__ import annotations

import math

import numpy as np

from bcb_emulator.grid import EARTH_RADIUS, Grid


def advected_memory(
    emission: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    times: np.ndarray,
    days: tuple[float, ...],
    grid: Grid,
) -> np.ndarray:
    """``(S, H, W, M)`` memory channels of `S` consecutive steps, starting at the first step's
    `emission` ``(S, H, W)``; `u`, `v` ``(S, H, W)`` the wind (m/s), `times` ``(S,)`` days."""
    h, w = grid.shape
    row_m = EARTH_RADIUS * math.radians(grid.dlat)
    col_m = [
        EARTH_RADIUS * math.cos(math.radians(lat)) * math.radians(grid.dlon) for lat in grid.lat
    ]
    col_m[0], col_m[-1] = col_m[1], col_m[-2]  # the pole rows move like their neighbours
    out = np.empty(emission.shape + (len(days),))
    memory = None
    for k, t in enumerate(times):
        e = emission[k].astype(np.float64)
        if memory is None:
            memory = np.repeat(e[..., None], len(days), axis=-1)
        else:
            dt = t - times[k - 1]
            seconds = min(dt, 1.0) * 86400.0
            moved = np.empty_like(memory)
            for i in range(h):
                for j in range(w):
                    r = min(max(i - v[k, i, j] * seconds / row_m, 0.0), h - 1.0)
                    c = j - u[k, i, j] * seconds / col_m[i]
                    i0, j0 = math.floor(r), math.floor(c)
                    fr, fc = r - i0, c - j0
                    i1 = min(i0 + 1, h - 1)
                    south = (1 - fc) * memory[i0, j0 % w] + fc * memory[i0, (j0 + 1) % w]
                    north = (1 - fc) * memory[i1, j0 % w] + fc * memory[i1, (j0 + 1) % w]
                    moved[i, j] = (1 - fr) * south + fr * north
            a = np.exp(-dt / np.asarray(days))
            memory = a * moved + (1 - a) * e[..., None]
        out[k] = memory
    return out
