"""Synthetic but physically consistent meteorology for the reference transport model.

Everything is a deterministic function of time and the seed (no hidden state), so a run can be
restarted anywhere and two runs with the same seed agree exactly.

Winds are built as *mass fluxes* on the C-grid faces, in two parts:

* non-divergent: a mass streamfunction on cell corners (zonal jets that strengthen with height
  and shift with the seasons, tropical and polar easterlies, travelling Rossby–Haurwitz-like
  waves of wavenumbers 3–6 whose amplitudes and phases wander as red noise with a few days'
  memory). Differences of a corner field are discretely divergence-free, layer by layer;
* divergent: a velocity potential at cell centres (a Hadley cell following the ITCZ, monsoon
  overturning over summer continents, ascent ahead of wave troughs) times a vertical profile
  whose mass-weighted mean is zero, so the column-integrated divergence vanishes and surface
  pressure stays constant.

The vertical mass flux is integrated from the discrete horizontal divergence (continuity), zero
at the surface and at the lid; ω, precipitation and convection follow from it. Temperature
follows latitude, season, land–sea contrast and the diurnal cycle with a 6.5 K/km lapse rate;
humidity from a relative-humidity field; θ = T (1000/p)^0.286; the boundary layer follows local
solar time over land.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib import resources

import numba
import numpy as np

from bcb_emulator.grid import EARTH_RADIUS, GRAVITY, P_TOP, Grid, VerticalGrid

DAY = 86400.0
R_DRY = 287.04  # J kg-1 K-1
LAPSE_RATE = 6.5e-3  # K m-1
KAPPA = 0.286
SOLSTICE_DAY = 172  # day of year of the June solstice (0-based)
PRECIP_GLOBAL_MEAN = 2.8  # mm/day, ModelE E3 level-1 mean


def load_land_fraction(grid: Grid) -> np.ndarray:
    """Land fraction ``(jm, im)`` on `grid`, area-averaged from the embedded 0.5° field."""
    with (
        resources.files("bcb_emulator.reference")
        .joinpath("data/landfrac_0p5deg.npz")
        .open("rb") as fh
    ):
        fine = np.load(fh)["landfrac"].astype(np.float64) / 250.0  # (360, 720) south -> north
    lat_f = np.arange(-89.75, 90.0, 0.5)
    lon_f = np.arange(-179.75, 180.0, 0.5)
    w_f = np.cos(np.deg2rad(lat_f))
    rows = np.clip(np.searchsorted(grid.lat_edges, lat_f, side="right") - 1, 0, grid.jm - 1)
    cols = np.clip(np.searchsorted(grid.lon_edges, lon_f, side="right") - 1, 0, grid.im - 1)
    num = np.zeros(grid.shape)
    den = np.zeros(grid.shape)
    np.add.at(num, (rows[:, None], cols[None, :]), fine * w_f[:, None])
    np.add.at(den, (rows[:, None], cols[None, :]), np.broadcast_to(w_f[:, None], fine.shape))
    frac = num / den
    for pole in (0, -1):  # caps are single cells
        frac[pole] = frac[pole].mean()
    return frac


class RedNoise:
    """Smooth random series with a few days' memory: a sum of random sinusoids.

    ``value(t)`` has zero mean and unit variance; its spectrum covers periods of
    `min_period`–`max_period` days. Stateless, so it can be evaluated at any time.
    """

    def __init__(self, rng: np.random.Generator, shape=(), n_modes=6, min_period=3.0,
                 max_period=30.0):  # fmt: skip
        self.freq = 2 * np.pi / rng.uniform(min_period, max_period, size=(n_modes,) + shape)
        self.phase = rng.uniform(0, 2 * np.pi, size=(n_modes,) + shape)
        self.norm = np.sqrt(2.0 / n_modes)

    def value(self, t_days: float) -> np.ndarray:
        return self.norm * np.cos(self.freq * t_days + self.phase).sum(axis=0)


# Calibration constants (docs/reference_model.md, "Calibration"): the annual BCB lifetime,
# burden, column share and the reach of plumes into the southern extratropics depend on them.
#: Bulk convective updraft mass flux per unit convective rain, (kg m-2 s-1) / (kg m-2 s-1).
#: The bulk updraft carries all it entrains to the upper half of the cloud, so it stands for
#: the deep part of the convective mass flux only.
CONVECTIVE_MASS_FLUX_PER_RAIN = 50.0
#: σ of the cloud top (the highest layer where rain forms) outside the tropics (≈ 400 hPa:
#: frontal cloud) and in the deep tropics (≈ 260 hPa).
CLOUD_TOP_EXTRATROPICS = 0.30
CLOUD_TOP_TROPICS = 0.13
#: Meridional wind of one travelling wave where its latitude shape peaks, m/s.
WAVE_WIND = 8.5
#: Exponent ``p`` of the latitude shape ``|sin 2φ|^p`` of each hemisphere's waves: 1 reaches
#: into the subtropics and towards the pole (storm tracks feeding the polar regions).
WAVE_SHAPE_POWER = 1.0
#: Amplitude of each hemisphere's waves across the equator, ``exp(−(φ/15°)²)`` (tropical
#: eddies exchanging air between the hemispheres).
WAVE_CROSS_EQUATOR = 0.3


@dataclasses.dataclass
class TransportFields:
    """Meteorology the tracer needs over one met interval. 3-D ``(nl, jm, im)``, 2-D ``(jm, im)``.

    Attributes:
        u_flux, v_flux, w_flux: air mass crossing east, north and top faces, kg/s.
        prec: precipitation flux through the bottom of each layer, mm/day.
        rain: surface precipitation, mm/day.
        mu_top: convective updraft mass flux through the top of each layer, kg m-2 s-1.
        z_edges: ``(nl + 1, jm, im)`` layer edge heights above the surface, m.
        t_surf: surface air temperature, K.
    """

    u_flux: np.ndarray
    v_flux: np.ndarray
    w_flux: np.ndarray
    prec: np.ndarray
    rain: np.ndarray
    mu_top: np.ndarray
    z_edges: np.ndarray
    t_surf: np.ndarray


@numba.njit(cache=True, error_model="numpy")
def _zonal_streamfunction(jet, trade_amp, polar_amp, jets, e_trade, e_polar, fine, lat_e, below):
    """−ψ_zonal / a ``(n_layers, jm + 1)`` at the row edges `lat_e` (rad), one pass per layer.

    The zonal wind of layer ``k`` at the fine latitude ``i`` is ``jet[k] · jets[i] +
    trade_amp[k] · e_trade[i] + polar_amp[k] · e_polar[i]``; it is integrated with the trapezoid
    rule from the south pole along `fine` and interpolated linearly to `lat_e`, where
    ``below[e]`` is the fine point at or below ``lat_e[e]``. The arithmetic is that of numpy's
    ``cumsum`` and ``interp`` (for finite values) term by term, so the result is identical.
    """
    nl = jet.shape[0]
    nf = fine.shape[0]
    ne = lat_e.shape[0]
    out = np.empty((nl, ne))
    cum = np.empty(nf)
    for k in range(nl):
        cum[0] = 0.0
        prev = jet[k] * jets[0] + trade_amp[k] * e_trade[0] + polar_amp[k] * e_polar[0]
        for i in range(1, nf):
            u = jet[k] * jets[i] + trade_amp[k] * e_trade[i] + polar_amp[k] * e_polar[i]
            term = 0.5 * (u + prev) * (fine[i] - fine[i - 1])
            cum[i] = term if i == 1 else cum[i - 1] + term  # cumsum starts from the first term
            prev = u
        for e in range(ne):
            j = below[e]
            x = lat_e[e]
            if j < 0:
                out[k, e] = cum[0]
            elif j >= nf - 1 or x == fine[j]:
                out[k, e] = cum[min(j, nf - 1)]
            else:
                slope = (cum[j + 1] - cum[j]) / (fine[j + 1] - fine[j])
                out[k, e] = slope * (x - fine[j]) + cum[j]
    return out


@numba.njit(cache=True, error_model="numpy")
def _face_fluxes(psi_zonal, vert, psi_wave, col_corner, grad_x, col_row, grad_y, col_edge, prof):
    """Face mass fluxes ``U, V`` and their divergence, kg/s, each ``(n_layers, jm, im)``.

    The mass streamfunction at the corners is ``(psi_zonal[k, e] + vert[k] · psi_wave[e, i]) ·
    col_corner[k, e]``. ``U`` is minus its difference across a row plus the divergent part
    ``grad_x[j, i] · col_row[k, j] · prof[k]``, zero in the polar caps; ``V`` is its difference
    along the row edge plus ``grad_y[j, i] · col_edge[k, j] · prof[k]``, zero at the north pole.
    The divergence is :meth:`SyntheticMeteorology.horizontal_divergence`'s before the caps are
    shared. Same arithmetic, in the same order, as the numpy expressions it replaces.
    """
    nl = psi_zonal.shape[0]
    jm = psi_wave.shape[0] - 1
    im = psi_wave.shape[1]
    u = np.empty((nl, jm, im))
    v = np.empty((nl, jm, im))
    div = np.empty((nl, jm, im))
    south = np.empty(im)
    north = np.empty(im)
    for k in range(nl):
        vk, pk = vert[k], prof[k]
        zonal, col = psi_zonal[k, 0], col_corner[k, 0]
        for i in range(im):
            north[i] = (zonal + vk * psi_wave[0, i]) * col
        for j in range(jm):
            south, north = north, south
            zonal, col = psi_zonal[k, j + 1], col_corner[k, j + 1]
            for i in range(im):
                north[i] = (zonal + vk * psi_wave[j + 1, i]) * col
            if 0 < j < jm - 1:
                col = col_row[k, j]
                for i in range(im):
                    u[k, j, i] = -(north[i] - south[i]) + grad_x[j, i] * col * pk
            else:
                u[k, j, :] = 0.0
            if j < jm - 1:
                col = col_edge[k, j]
                v[k, j, 0] = (north[0] - north[im - 1]) + grad_y[j, 0] * col * pk
                for i in range(1, im):
                    v[k, j, i] = (north[i] - north[i - 1]) + grad_y[j, i] * col * pk
            else:
                v[k, j, :] = 0.0
        for j in range(jm):
            div[k, j, 0] = u[k, j, 0] - u[k, j, im - 1]
            for i in range(1, im):
                div[k, j, i] = u[k, j, i] - u[k, j, i - 1]
            if j < jm - 1:
                for i in range(im):
                    div[k, j, i] += v[k, j, i]
            if j > 0:
                for i in range(im):
                    div[k, j, i] -= v[k, j - 1, i]
    return u, v, div


@numba.njit(cache=True, error_model="numpy")
def _vertical_flux(div):
    """Turns the divergence ``(n_layers, jm, im)`` into the mass flux through the layer tops.

    In place: ``W_k = −Σ_{l ≤ k} div_l`` (summed as numpy's ``cumsum``), zero at the lid.
    """
    acc = div[0].copy()
    div[0] = -acc
    for k in range(1, div.shape[0]):
        acc += div[k]
        div[k] = -acc
    div[-1] = 0.0
    return div


@numba.njit(cache=True, error_model="numpy")
def _cos_zenith(sin_lat, cos_lat, sin_decl, cos_decl, cos_hour):
    """``max(sin φ sin δ + cos φ cos δ cos h, 0)`` ``(jm, im)`` from ``(jm,)`` and ``(im,)``."""
    jm, im = sin_lat.shape[0], cos_hour.shape[0]
    mu = np.empty((jm, im))
    for j in range(jm):
        a = sin_lat[j] * sin_decl
        b = cos_lat[j] * cos_decl
        for i in range(im):
            x = a + b * cos_hour[i]
            mu[j, i] = x if x >= 0.0 else 0.0
    return mu


@numba.njit(cache=True, error_model="numpy")
def _pbl_land_sea(sun, lat_factor, land, ocean):
    """Boundary-layer height ``land · (110 + 1900 sun) · lat_factor + ocean``, in place in `sun`.

    `sun` and `land`, `ocean` are ``(jm, im)``, `lat_factor` ``(jm,)``.
    """
    jm, im = sun.shape
    for j in range(jm):
        for i in range(im):
            sun[j, i] = land[j, i] * ((110.0 + 1900.0 * sun[j, i]) * lat_factor[j]) + ocean[j, i]
    return sun


class SyntheticMeteorology:
    """Deterministic synthetic meteorology on a ModelE grid.

    Everything that does not depend on time (pressures, column air masses, latitude trigonometry,
    land-dependent factors) is computed once, on first use, and kept; a call only evaluates the
    time-dependent parts, with the same arithmetic as the formulas it documents.

    Args:
        grid: horizontal grid.
        vgrid: vertical grid.
        seed: selects the weather (wave amplitudes and phases, rain intermittency).
    """

    def __init__(self, grid: Grid, vgrid: VerticalGrid, seed: int = 0):
        self.grid = grid
        self.vgrid = vgrid
        self.seed = seed
        rng = np.random.default_rng(seed)
        self.wavenumbers = np.array([3, 4, 5, 6])
        self._wave_amp = RedNoise(rng, shape=(2, 4), min_period=3.0, max_period=12.0)
        self._wave_phase = RedNoise(rng, shape=(2, 4), min_period=4.0, max_period=20.0)
        self._wave_phase0 = rng.uniform(0, 2 * np.pi, size=(2, 4))
        self._rain_noise = RedNoise(rng, shape=(3, 2), min_period=1.0, max_period=4.0)
        self._rain_k = rng.integers(7, 16, size=3)
        self.landfr = load_land_fraction(grid)
        self._land_smooth = self._smooth(self.landfr, passes=4)

    # ----- static geometry ---------------------------------------------------------------------
    @functools.cached_property
    def ps(self) -> np.ndarray:
        """Surface pressure ``(jm, im)``, hPa: subtropical highs, subpolar lows; steady."""
        return self._ps_at(np.deg2rad(self.grid.lat))[:, None] * np.ones(self.grid.im)

    @staticmethod
    def _ps_at(lat):
        alat = np.rad2deg(np.abs(lat))
        return (
            984.0
            + 6.0 * np.exp(-(((alat - 30.0) / 12.0) ** 2))
            - 9.0 * np.exp(-(((alat - 62.0) / 10.0) ** 2))
        )

    @functools.cached_property
    def air_mass(self) -> np.ndarray:
        """Air mass of every cell ``(n_layers, jm, im)``, kg."""
        return self.vgrid.air_mass(self.ps) * self.grid.area[None]

    def _column(self, ps_hpa):
        """σ-layer air mass per unit area at a given surface pressure: (n_layers, ...)."""
        return self.vgrid.air_mass(ps_hpa)

    def _smooth(self, field, passes):
        out = field.copy()
        for _ in range(passes):
            out = (
                2 * out
                + np.roll(out, 1, axis=1)
                + np.roll(out, -1, axis=1)
                + np.concatenate([out[:1], out[:-1]])
                + np.concatenate([out[1:], out[-1:]])
            ) / 6.0
        return out

    @functools.cached_property
    def _lat(self) -> np.ndarray:
        """``(jm, 1)`` row-centre latitudes, rad."""
        return np.deg2rad(self.grid.lat)[:, None]

    @functools.cached_property
    def _sin_lat(self) -> np.ndarray:
        return np.sin(self._lat)

    @functools.cached_property
    def _cos_lat(self) -> np.ndarray:
        return np.cos(self._lat)

    @functools.cached_property
    def _lon_hours(self) -> np.ndarray:
        """``(im,)`` longitude as a local-time offset, hours."""
        return self.grid.lon / 15.0

    @functools.cached_property
    def _lat_e(self) -> np.ndarray:
        """``(jm + 1,)`` row-edge latitudes, rad."""
        return np.deg2rad(self.grid.lat_edges)

    @functools.cached_property
    def _col_corner(self) -> np.ndarray:
        """``(n_layers, jm + 1)`` layer air mass per area at the cell corners, kg/m²."""
        return self._column(self._ps_at(self._lat_e))

    @functools.cached_property
    def _fine(self):
        """Fine latitude grid of the zonal-wind integral and where each row edge falls in it."""
        fine = np.linspace(-np.pi / 2, np.pi / 2, 4 * (self.grid.jm + 1) * 8 + 1)
        below = np.searchsorted(fine, self._lat_e, side="right") - 1
        return fine, below

    # ----- time helpers ------------------------------------------------------------------------
    @staticmethod
    def season(t_days: float) -> float:
        """cos of the seasonal phase: +1 at the June solstice, −1 at the December one."""
        return float(np.cos(2 * np.pi * ((t_days % 365.0) - SOLSTICE_DAY) / 365.0))

    def cos_zenith(self, t_days: float, lag_hours: float = 0.0) -> np.ndarray:
        """Cosine of the solar zenith angle ``(jm, im)``, clipped at 0 (night).

        ``sin φ sin δ + cos φ cos δ cos h`` with declination δ and hour angle h.
        """
        decl = np.deg2rad(23.44) * self.season(t_days)
        hours = ((t_days - lag_hours / 24.0) % 1.0) * 24.0
        local = hours + self._lon_hours
        hour_angle = np.deg2rad(15.0 * (local - 12.0))
        return _cos_zenith(self._sin_lat[:, 0], self._cos_lat[:, 0], np.sin(decl), np.cos(decl),
                           np.cos(hour_angle))  # fmt: skip

    # ----- winds -------------------------------------------------------------------------------
    def _zonal_wind_terms(self, lat, p_hpa, t_days):
        """The separable parts of the zonal-mean wind at latitudes `lat` (rad), pressures `p_hpa`.

        ``u = (10 + 32 h) · jets − 8 (1 − h) · trades − 4 (1 − h) · polar`` m/s, with the height
        ``h`` (0 at the surface, 1 at the top) and the latitude shapes of the north and south
        jets (summed), the tropical easterlies and the polar easterlies.

        Returns:
            ``(h, jets, trades, polar)``, shaped like `p_hpa`, `lat`, `lat`, `lat`.
        """
        s = self.season(t_days)
        lat_d = np.rad2deg(lat)
        height = (984.0 - p_hpa) / (984.0 - P_TOP)  # 0 at the surface, 1 at the top
        north = (1.0 - 0.35 * s) * np.exp(-(((lat_d - (40.0 + 6.0 * s)) / 11.0) ** 2))
        south = (1.15 + 0.2 * s) * np.exp(-(((lat_d + (47.0 - 4.0 * s)) / 11.0) ** 2))
        trades = np.exp(-(((lat_d - 5.0 * s) / 17.0) ** 2))
        polar = np.exp(-(((np.abs(lat_d) - 75.0) / 9.0) ** 2))
        return height, north + south, trades, polar

    @functools.cached_property
    def _p_mid_ref(self) -> np.ndarray:
        """``(n_layers,)`` mid-layer pressures at 984 hPa."""
        return self.vgrid.mid_pressure(np.array(984.0))

    def _streamfunction(self, t_days):
        """Velocity streamfunction ψ at NE cell corners, m²/s, in parts.

        Returns ``(psi_zonal, vert, psi_wave)``, ``(n_layers, jm + 1)``, ``(n_layers,)`` and
        ``(jm + 1, im)``: ``ψ = psi_zonal[:, :, None] + vert[:, None, None] · psi_wave``.
        """
        grid = self.grid
        lat_e = self._lat_e  # (jm + 1,)
        p_mid_ref = self._p_mid_ref  # (n_layers,)
        # Zonal part: ψ(θ) = −a ∫ u dθ from the south pole (trapezoids on a fine grid).
        fine, below = self._fine
        height, jets, trades, polar = self._zonal_wind_terms(fine, p_mid_ref, t_days)
        jet, easterly = 10.0 + 32.0 * height, 1.0 - height
        psi_zonal = _zonal_streamfunction(jet, -8.0 * easterly, -4.0 * easterly, jets, trades,
                                          polar, fine, lat_e, below)  # fmt: skip
        psi_zonal *= -EARTH_RADIUS
        # Travelling waves, one set per hemisphere.
        lon_c = np.deg2rad(grid.lon_edges[1:])  # east edges
        height = (984.0 - p_mid_ref) / (984.0 - P_TOP)
        amp = np.clip(1.0 + 0.45 * self._wave_amp.value(t_days), 0.2, 2.2)  # (2, 4)
        winter = np.array([1.0 - 0.3 * self.season(t_days), 1.0 + 0.3 * self.season(t_days)])
        phase_speed = 9.0 / (EARTH_RADIUS * np.cos(np.deg2rad(45.0)))  # rad/s at 45°
        drift = lon_c - phase_speed * t_days * DAY
        wave_phase = self._wave_phase.value(t_days)
        psi_wave = np.zeros((grid.jm + 1, grid.im))
        for h, sign in enumerate((1.0, -1.0)):
            own = np.abs(np.sin(2 * lat_e)) ** WAVE_SHAPE_POWER  # peaks at ±45°
            shape = np.where(sign * lat_e > 0, own, 0.0)
            shape += WAVE_CROSS_EQUATOR * np.exp(-((lat_e / np.deg2rad(15.0)) ** 2))
            for n, m in enumerate(self.wavenumbers):
                a_m = WAVE_WIND / (np.sqrt(2.0) * m) * amp[h, n] * winter[h]  # v per wave
                phase = m * drift + self._wave_phase0[h, n] + 1.2 * wave_phase[h, n]
                psi_wave += EARTH_RADIUS * a_m * shape[:, None] * np.cos(phase)[None, :]
        vert = 0.6 + 0.8 * height
        return psi_zonal, vert, psi_wave

    def _velocity_potential(self, t_days, psi_wave):
        """Velocity potential χ ``(jm, im)`` at cell centres, m²/s (low-level sense)."""
        grid = self.grid
        s = self.season(t_days)
        lat_d = grid.lat[:, None]
        itcz = 5.0 + 7.0 * s
        hadley = 4.5e6 * np.exp(-(((lat_d - itcz) / 14.0) ** 2))
        monsoon_lat = itcz + 9.0 * s
        chi = self._monsoon_land * np.exp(-(((lat_d - monsoon_lat) / 13.0) ** 2))
        chi += hadley
        # Ascent ahead of troughs: χ follows the wave streamfunction a quarter wave east.
        centre = psi_wave[:-1] + psi_wave[1:]  # corners -> rows
        centre *= 0.5
        waves = 0.22 * np.roll(centre, grid.im // 16, axis=1)
        chi += waves
        for pole in (0, -1):
            chi[pole] = chi[pole].mean()
        return chi

    @functools.cached_property
    def _monsoon_land(self) -> np.ndarray:
        """``(jm, im)`` amplitude of the monsoon overturning, m²/s: smoothed land × 5·10⁶."""
        return 5.0e6 * self._land_smooth

    @functools.cached_property
    def _divergent_profile(self) -> np.ndarray:
        """Vertical profile of the divergent wind: + low levels, − aloft, σ-weighted mean 0."""
        sig = self.vgrid.sigma_mid
        prof = np.cos(np.pi * (1.0 - sig))
        return prof - np.sum(prof * self.vgrid.dsigma) / np.sum(self.vgrid.dsigma)

    @functools.cached_property
    def _divergent_geometry(self):
        """Static factors of the divergent fluxes: ``(Δx, dy, col_row, Δy, dx_edge, col_edge)``.

        Zonal distance between cell centres (1 where it vanishes) and east-face length,
        ``(jm, 1)``; layer air mass per area at the rows, ``(n_layers, jm)``; distance between
        row centres and north-face length, ``(jm − 1, 1)``; layer air mass per area at the row
        edges, ``(n_layers, jm − 1)``.
        """
        grid = self.grid
        lat_c = np.deg2rad(grid.lat)
        dx_row = EARTH_RADIUS * np.cos(lat_c) * np.deg2rad(grid.dlon)  # (jm,)
        dist_y = EARTH_RADIUS * np.deg2rad(np.diff(grid.lat))  # (jm - 1,) centre to centre
        return (
            np.where(dx_row > 0, dx_row, 1.0)[:, None],
            grid.dy[:, None],
            self._column(self._ps_at(lat_c)),
            dist_y[:, None],
            grid.dx_edges[1:-1][:, None],
            self._column(self._ps_at(self._lat_e[1:-1])),
        )

    def mass_fluxes(self, t_days: float):
        """Face mass fluxes ``(U, V, W)``, kg/s, each ``(n_layers, jm, im)``; also ψ_wave.

        ``U`` and ``V`` are differences of the mass streamfunction (ψ times the layer's air mass
        per area at the corner) plus the divergent wind ∇χ times the face length, the face's air
        mass per area and the vertical profile; ``W`` follows from continuity.
        """
        psi_zonal, vert, psi_wave = self._streamfunction(t_days)
        chi = self._velocity_potential(t_days, psi_wave)  # (jm, im)
        dx_row, dy, col_row, dist_y, dx_edge, col_edge = self._divergent_geometry
        grad_x = np.empty_like(chi)
        np.subtract(chi[:, 1:], chi[:, :-1], out=grad_x[:, :-1])
        np.subtract(chi[:, 0], chi[:, -1], out=grad_x[:, -1])
        grad_x /= dx_row
        grad_x *= dy
        grad_y = chi[1:] - chi[:-1]
        grad_y /= dist_y
        grad_y *= dx_edge
        u_flux, v_flux, div = _face_fluxes(
            psi_zonal, vert, psi_wave, self._col_corner, grad_x, col_row, grad_y, col_edge,
            self._divergent_profile,
        )  # fmt: skip
        # Continuity: W through the top of each layer from the horizontal divergence; at the
        # lid the column divergence is zero to round-off.
        w_flux = _vertical_flux(self._share_caps(div))
        return u_flux, v_flux, w_flux, psi_wave

    def horizontal_divergence(self, u_flux, v_flux):
        """Net horizontal outflow of each cell, same units as the fluxes; caps shared."""
        div = np.empty_like(u_flux)
        np.subtract(u_flux[..., 1:], u_flux[..., :-1], out=div[..., 1:])
        np.subtract(u_flux[..., 0], u_flux[..., -1], out=div[..., 0])
        div[:, :-1] += v_flux[:, :-1]
        div[:, 1:] -= v_flux[:, :-1]
        return self._share_caps(div)

    @staticmethod
    def _share_caps(div):
        """Spreads the divergence of each polar cap evenly over its `im` copies, in place."""
        for pole in (0, -1):
            div[:, pole] = div[:, pole].mean(axis=1, keepdims=True)
        return div

    # ----- thermodynamics and moist processes --------------------------------------------------
    @functools.cached_property
    def _t_surf_static(self):
        """Time-independent terms of :meth:`surface_temperature`.

        ``(302 − 48 sin²φ − 6 max(sin φ, 0)⁴, 14 sin φ, 0.5 + land, 9 land, 4 land |sin φ|)``.
        """
        sin_lat = self._sin_lat
        land = self.landfr
        base = 302.0 - 48.0 * sin_lat**2 - 6.0 * np.maximum(sin_lat, 0) ** 4
        return base, 14.0 * sin_lat, 0.5 + land, 9.0 * land, 4.0 * land * np.abs(sin_lat)

    def surface_temperature(self, t_days: float) -> np.ndarray:
        """Surface air temperature ``(jm, im)``, K: latitude, season, land–sea, diurnal cycle.

        ``302 − 48 sin²φ − 6 max(sin φ, 0)⁴ + 14 sin φ · s · (0.5 + land)
        + 9 land (μ₋₂ₕ − 0.25) − 4 land |sin φ|`` with the season `s` and the cosine of the
        solar zenith angle two hours earlier μ₋₂ₕ.
        """
        s = self.season(t_days)
        base, season_amp, land_half, land_diurnal, land_cool = self._t_surf_static
        diurnal = self.cos_zenith(t_days, lag_hours=2.0)
        diurnal -= 0.25
        diurnal *= land_diurnal
        t_surf = season_amp * s * land_half
        t_surf += base
        t_surf += diurnal
        t_surf -= land_cool
        return t_surf

    @functools.cached_property
    def _edge_depth(self) -> np.ndarray:
        """``1 − (p/p_s)^(RΓ/g)`` at the layer edges ``(n_layers + 1, jm, 1)``: z = T_s/Γ · this.

        The surface pressure is zonally uniform, so one longitude stands for all.
        """
        ps = self.ps[:, :1]
        return 1.0 - (self.vgrid.edge_pressure(ps) / ps) ** (R_DRY * LAPSE_RATE / GRAVITY)

    @functools.cached_property
    def _mid_levels(self):
        """Static mid-layer fields of :meth:`diagnostics`.

        ``(p, (p/p_s)^(RΓ/g), (1000/p)^κ, air mass per area times the east-face length, its
        mean at the row edges times the north-face length)``, ``(n_layers, jm, im)`` but the
        last ``(n_layers, jm − 1, im)``.
        """
        ps = self.ps
        p = self.vgrid.mid_pressure(ps)
        col = self.vgrid.air_mass(ps)
        ratio = (p / ps) ** (R_DRY * LAPSE_RATE / GRAVITY)
        face_y = 0.5 * (col[:, :-1] + col[:, 1:]) * self.grid.dx_edges[1:-1][None, :, None]
        return p, ratio, (1000.0 / p) ** KAPPA, col * self.grid.dy[None, :, None], face_y

    @staticmethod
    def saturation_humidity(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Saturation specific humidity, kg/kg (Bolton 1980 vapour pressure)."""
        e_sat = 6.112 * np.exp(17.67 * (t - 273.15) / (t - 29.65))  # hPa
        return 0.622 * e_sat / (p - 0.378 * e_sat)

    def omega(self, w_flux: np.ndarray) -> np.ndarray:
        """ω at layer mid-points, hPa/s, from the vertical mass flux (negative = rising)."""
        w_mid = 0.5 * (w_flux + np.concatenate([np.zeros_like(w_flux[:1]), w_flux[:-1]]))
        return -w_mid * GRAVITY / self.grid.area[None] / 100.0

    @functools.cached_property
    def _k_mid(self) -> int:
        return int(np.argmin(np.abs(self.vgrid.sigma_mid - 0.5)))

    @functools.cached_property
    def _rain_static(self):
        """Static factors of :meth:`transport`'s rain and convection.

        ``(longitudes (1, im) rad, latitudes (jm, 1) deg, σ at the layer bottoms and 1 − σ at
        the layer tops (n_layers, 1, 1), 0.3 land (jm, im))``.
        """
        sig = self.vgrid.sigma_edges[:, None, None]
        return (
            np.deg2rad(self.grid.lon)[None, :],
            np.rad2deg(self._lat),
            sig[:-1],
            1.0 - sig[1:],
            0.3 * self.landfr,
        )

    def transport(self, t_days: float) -> TransportFields:
        """What the tracer physics needs at `t_days`: fluxes, rain, convection, heights."""
        grid = self.grid
        u_flux, v_flux, w_flux, _ = self.mass_fluxes(t_days)
        s = self.season(t_days)
        lat = self._lat
        lon, lat_d, sigma_bottom, depth_top, land_conv = self._rain_static
        t_surf = self.surface_temperature(t_days)
        w_mid = self.omega(w_flux[self._k_mid - 1 : self._k_mid + 1])[1]  # ω at σ ≈ 0.5
        ascent = np.maximum(-w_mid, 0.0)
        ascent_scale = max(float(np.average(ascent, weights=grid.area)), 1e-12)
        # Precipitation: rising, moist air, broken up by travelling rain cells.
        cells = np.zeros(grid.shape)
        noise = self._rain_noise.value(t_days)
        for n, k in enumerate(self._rain_k):
            cells += np.cos(k * lon + 3 * noise[n, 0]) * np.cos(
                (k // 2) * 2 * lat + 3 * noise[n, 1]
            )
        interm = np.clip(0.6 + 0.5 * cells, 0.0, None)
        q_surf = self.saturation_humidity(t_surf, self.ps)
        moist = q_surf / q_surf.max()
        rate = (ascent / ascent_scale) ** 1.3 * moist * interm + 0.05 * moist
        rate = rate * PRECIP_GLOBAL_MEAN / np.average(rate, weights=grid.area)
        # Rain forms between the surface and the cloud top, deep in the tropics. The cloud top
        # follows latitude only, so the vertical profiles are computed per row, (nl, jm, 1).
        tropical = np.exp(-(((lat_d - 5.0 * s) / 22.0) ** 2))  # (jm, 1)
        sigma_top = CLOUD_TOP_EXTRATROPICS - (CLOUD_TOP_EXTRATROPICS - CLOUD_TOP_TROPICS) * tropical
        below_top = (sigma_bottom - sigma_top) / (1.0 - sigma_top)
        prec = rate * np.clip(below_top, 0.0, 1.0) ** 0.8  # through each layer bottom
        # Convective updraft at layer tops: grows through the lowest layers, detrains aloft.
        conv_rain = rate * np.clip(0.25 + 0.6 * tropical + land_conv * max(s, 0.0), 0.0, 0.9)
        mu_base = CONVECTIVE_MASS_FLUX_PER_RAIN * conv_rain / DAY  # kg m-2 s-1
        height = np.clip(depth_top / (1.0 - sigma_top), 0.0, 1.0)
        mu_top = mu_base * np.sin(np.pi * height) ** 0.5
        mu_top[-1] = 0.0
        z_edges = t_surf / LAPSE_RATE * self._edge_depth
        return TransportFields(u_flux, v_flux, w_flux, prec, rate, mu_top, z_edges, t_surf)

    @functools.cached_property
    def _pbl_static(self):
        """Time-independent factors of :meth:`boundary_layer`, ``(jm, 1)`` or ``(jm, im)``.

        ``(land-PBL latitude factor, (1 − land) · ocean PBL height, ocean sensible heat flux,
        130 × trade-wind shape, 1 − land)``.
        """
        land = self.landfr
        alat = np.abs(self.grid.lat)[:, None]
        pbl_ocean = (380.0 + 300.0 * np.exp(-(((alat - 18.0) / 14.0) ** 2))) * (
            1.0 - 0.45 * (alat / 90.0)
        )
        trade = np.exp(-(((alat - 15.0) / 15.0) ** 2))
        return (
            1.0 - 0.6 * (alat / 90.0) ** 2,
            (1.0 - land) * pbl_ocean,
            (1.0 - land) * (-8.0 - 18.0 * trade),
            130.0 * trade,
            1.0 - land,
        )

    def pbl_height(self, t_days: float) -> np.ndarray:
        """Boundary-layer height ``(jm, im)``, m: the first output of :meth:`boundary_layer`."""
        lat_factor, ocean, _, _, _ = self._pbl_static
        sun = self.cos_zenith(t_days, lag_hours=2.0)  # two hours late
        sun **= 1.3
        return _pbl_land_sea(sun, lat_factor[:, 0], self.landfr, ocean)

    def boundary_layer(self, t_days: float, rain: np.ndarray):
        """Boundary-layer height (m), sensible and latent heat flux (W/m², negative = up).

        Over land the boundary layer follows the sun (two hours late) and the surface fluxes
        the sun and the rain; over the ocean they follow latitude (and the rain).
        """
        land = self.landfr
        _, _, shflx_ocean, trade, sea = self._pbl_static
        mu_now = self.cos_zenith(t_days)
        pblht = self.pbl_height(t_days)
        wet = np.clip(rain / 6.0, 0.0, 1.0)
        shflx = land * (25.0 * (mu_now == 0) - 380.0 * mu_now * (1.0 - 0.6 * wet)) + shflx_ocean
        lhflx = land * (-15.0 - 260.0 * mu_now * (0.25 + 0.75 * wet)) + sea * (
            -50.0 - trade * (1.0 - 0.5 * wet)
        )
        return pblht, shflx, lhflx

    def diagnostics(self, t_days: float, tf: TransportFields) -> dict[str, np.ndarray]:
        """The ModelE output fields of the meteorology at `t_days`, by registry name."""
        vgrid = self.vgrid
        ps = self.ps
        p, ratio, exner, face_col_x, face_col_y = self._mid_levels
        u_face = tf.u_flux / face_col_x
        u = 0.5 * (u_face + np.roll(u_face, 1, axis=2))
        v_face = tf.v_flux[:, :-1] / face_col_y
        v = np.zeros_like(u)
        v[:, 1:-1] = 0.5 * (v_face[:, 1:] + v_face[:, :-1])
        omega = self.omega(tf.w_flux)
        t_surf = self.surface_temperature(t_days)
        t = t_surf * ratio
        z = t_surf / LAPSE_RATE * (1.0 - ratio)
        th = t * exner
        rising = np.tanh(-omega[self._k_mid] / max(np.abs(omega[self._k_mid]).mean(), 1e-12))
        rh = np.clip(0.6 + 0.3 * rising + 0.1 * (1.0 - self.landfr), 0.1, 0.98)[None] * (
            0.35 + 0.65 * vgrid.sigma_mid[:, None, None] ** 1.5
        )
        q = rh * self.saturation_humidity(t, p)
        mu_bottom = np.concatenate([np.zeros_like(tf.mu_top[:1]), tf.mu_top[:-1]])
        pblht, shflx, lhflx = self.boundary_layer(t_days, tf.rain)
        return {
            "u": u, "v": v, "omega": omega, "p_3d": p.copy(), "t": t, "th": th, "q": q, "z": z,
            "prec_3d_sum": tf.prec, "mcuflx": 0.5 * (tf.mu_top + mu_bottom),
            "pblht_bp": pblht, "shflx": shflx, "lhflx": lhflx, "prsurf": ps.copy(),
        }  # fmt: skip
