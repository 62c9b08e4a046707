"""Williamson et al. (1992) test case 1: solid-body rotation of a cosine bell on the sphere.

The wind ``u = u₀ (cos θ cos α + sin θ cos λ sin α)``, ``v = −u₀ sin λ sin α`` with
``u₀ = 2πa / 12 days`` carries the bell once around the sphere in 12 days; ``α = π/2`` takes it
over both poles. Face mass fluxes come from the streamfunction
``ψ = −a u₀ (sin θ cos α − cos λ cos θ sin α)`` evaluated at cell corners, so they are
discretely non-divergent and the air mass of every cell returns to its start after each step.

The bell ``h = (h₀/2)(1 + cos(π r / R))`` (``r < R``, ``h₀ = 1000``, ``R = a/3``, centre
``(λ, θ) = (3π/2, 0)``) is loaded as cell averages with their first and second moments
(3-point Gauss quadrature per direction, in the cells' mass coordinates): the bell starts with its
exact sub-grid moments. ``run(..., moments=False)`` starts it from the cell averages alone (all
moments zero), as a field read from a file would. The norms compare the
cell averages after 12 days with the initial cell averages, weighted by cell area:
``l1 = I|q − q_T| / I|q_T|``, ``l2 = √I(q − q_T)² / √I q_T²``, ``l∞ = max|q − q_T| / max|q_T|``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bcb_emulator.grid import EARTH_RADIUS, GRAVITY, Grid
from bcb_emulator.reference import qus

DAY = 86400.0
#: Rotation period of the bell, s.
PERIOD = 12 * DAY
_GAUSS_X = np.array([-np.sqrt(0.6), 0.0, np.sqrt(0.6)]) / 2 + 0.5  # nodes on [0, 1]
_GAUSS_W = np.array([5.0, 8.0, 5.0]) / 18.0


@dataclasses.dataclass(frozen=True)
class TC1Result:
    """Normalized error norms after one revolution, and run facts.

    Attributes:
        l1, l2, linf: Williamson et al. (1992) normalized errors.
        min_value: smallest mixing ratio at the end (a positive-definite scheme keeps it ≥ 0).
        mass_error: relative change of the global tracer mass.
        max_substeps: most sub-steps any x sweep needed.
    """

    l1: float
    l2: float
    linf: float
    min_value: float
    mass_error: float
    max_substeps: int


def _streamfunction(lon, lat, alpha):
    """``ψ / (a u₀)`` at longitudes/latitudes in radians."""
    return -(np.sin(lat) * np.cos(alpha) - np.cos(lon) * np.cos(lat) * np.sin(alpha))


def cosine_bell(lon, lat, h0=1000.0):
    """Bell height at longitude/latitude in radians (centre 3π/2, 0; radius a/3)."""
    lon_c, lat_c = 1.5 * np.pi, 0.0
    cos_r = np.sin(lat_c) * np.sin(lat) + np.cos(lat_c) * np.cos(lat) * np.cos(lon - lon_c)
    r = np.arccos(np.clip(cos_r, -1.0, 1.0))  # great-circle distance / a
    radius = 1.0 / 3.0
    return np.where(r < radius, 0.5 * h0 * (1.0 + np.cos(np.pi * r / radius)), 0.0)


def face_fluxes(grid: Grid, alpha: float, dt: float, column_mass: float):
    """Air mass crossing each face in one step, kg: ``(U, V)`` each ``(1, jm, im)``."""
    u0 = 2 * np.pi * EARTH_RADIUS / PERIOD
    lon_c = np.deg2rad(grid.lon_edges[1:])  # east corners of each column
    lat_c = np.deg2rad(grid.lat_edges)  # (jm + 1,) corner latitudes
    psi = EARTH_RADIUS * u0 * _streamfunction(lon_c[None, :], lat_c[:, None], alpha)
    # psi: (jm + 1, im) at the north-east corner rows (row edge j, east edge of column i)
    u = -(psi[1:] - psi[:-1]) * column_mass * dt  # (jm, im) through east faces
    u[0] = u[-1] = 0.0  # polar caps: single cells, no x-sweep
    v = np.zeros((grid.jm, grid.im))
    v[:-1] = (psi[1:-1] - np.roll(psi[1:-1], 1, axis=1)) * column_mass * dt
    return u[None], v[None]


def initial_state(grid: Grid, column_mass: float, moments: bool = True):
    """Cell air mass, tracer mass and moments of the bell: ``(mass, s, mom)``.

    With ``moments=False`` the moments are zero: the bell is known by its cell averages only.
    """
    lon_e = np.deg2rad(grid.lon_edges)
    sin_e = np.sin(np.deg2rad(grid.lat_edges))
    xi = lon_e[:-1, None] + np.diff(lon_e)[:, None] * _GAUSS_X[None, :]  # (im, 3)
    eta = sin_e[:-1, None] + np.diff(sin_e)[:, None] * _GAUSS_X[None, :]  # (jm, 3)
    h = cosine_bell(xi[None, :, None, :], np.arcsin(eta)[:, None, :, None])  # (jm, im, 3y, 3x)
    wy, wx = _GAUSS_W[:, None], _GAUSS_W[None, :]
    p1 = 2 * _GAUSS_X - 1  # shifted Legendre polynomials on [0, 1]
    p2 = 6 * _GAUSS_X**2 - 6 * _GAUSS_X + 1
    mass = (grid.area * column_mass)[None]
    mean = (h * wy * wx).sum(axis=(-2, -1))
    mom = np.zeros((qus.N_MOMENTS, 1, grid.jm, grid.im))
    mom[qus.MX, 0] = 3 * (h * wy * wx * p1[None, :]).sum(axis=(-2, -1))
    mom[qus.MXX, 0] = 5 * (h * wy * wx * p2[None, :]).sum(axis=(-2, -1))
    mom[qus.MY, 0] = 3 * (h * wy * wx * p1[:, None]).sum(axis=(-2, -1))
    mom[qus.MYY, 0] = 5 * (h * wy * wx * p2[:, None]).sum(axis=(-2, -1))
    mom[qus.MXY, 0] = 9 * (h * wy * wx * p1[:, None] * p1[None, :]).sum(axis=(-2, -1))
    for pole in (0, -1):  # a cap holds its mean only, shared over the im copies
        mean[pole] = np.average(mean[pole])
        mom[:, 0, pole] = 0.0
    mom *= mass[None] if moments else 0.0
    return mass, mean[None] * mass, mom


def error_norms(q: np.ndarray, q_true: np.ndarray, area: np.ndarray):
    """Williamson et al. (1992) normalized ``(l1, l2, l∞)`` of `q` against `q_true`."""
    diff = q - q_true
    l1 = np.sum(area * np.abs(diff)) / np.sum(area * np.abs(q_true))
    l2 = np.sqrt(np.sum(area * diff**2) / np.sum(area * q_true**2))
    linf = np.max(np.abs(diff)) / np.max(np.abs(q_true))
    return float(l1), float(l2), float(linf)


def run(grid: Grid, alpha: float, dt: float = 1800.0, moments: bool = True) -> TC1Result:
    """Rotates the bell once (12 days) with the QUS scheme and returns the error norms.

    With ``moments=False`` the bell starts from its cell averages only (moments zero); the
    reference solution is the same cell averages either way.
    """
    column_mass = 1.0e4 / GRAVITY  # kg m-2, any constant works
    n_steps = int(round(PERIOD / dt))
    if abs(n_steps * dt - PERIOD) > 1e-6:
        raise ValueError(f"`dt` must divide 12 days. Received: dt={dt}")
    u, v = face_fluxes(grid, alpha, dt, column_mass)
    w = np.zeros_like(u)
    mass, s, mom = initial_state(grid, column_mass, moments)
    q_true = s[0] / mass[0]
    total0 = s.sum()
    most = 1
    for step in range(n_steps):
        most = max(most, qus.advect(s, mom, mass, u, v, w, reverse=bool(step % 2)))
    q = s[0] / mass[0]
    l1, l2, linf = error_norms(q, q_true, grid.area)
    return TC1Result(l1, l2, linf, float(q.min()), float((s.sum() - total0) / total0), int(most))
