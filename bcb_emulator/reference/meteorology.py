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


#: Convective updraft mass flux per unit convective rain, (kg m-2 s-1) / (kg m-2 s-1).
CONVECTIVE_MASS_FLUX_PER_RAIN = 180.0


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


class SyntheticMeteorology:
    """Deterministic synthetic meteorology on a ModelE grid.

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

    # ----- time helpers ------------------------------------------------------------------------
    @staticmethod
    def season(t_days: float) -> float:
        """cos of the seasonal phase: +1 at the June solstice, −1 at the December one."""
        return float(np.cos(2 * np.pi * ((t_days % 365.0) - SOLSTICE_DAY) / 365.0))

    def cos_zenith(self, t_days: float, lag_hours: float = 0.0) -> np.ndarray:
        """Cosine of the solar zenith angle ``(jm, im)``, clipped at 0 (night)."""
        decl = np.deg2rad(23.44) * self.season(t_days)
        hours = ((t_days - lag_hours / 24.0) % 1.0) * 24.0
        local = hours + self.grid.lon[None, :] / 15.0
        hour_angle = np.deg2rad(15.0 * (local - 12.0))
        lat = np.deg2rad(self.grid.lat)[:, None]
        mu = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
        return np.maximum(mu, 0.0)

    # ----- winds -------------------------------------------------------------------------------
    def _zonal_wind(self, lat, p_hpa, t_days):
        """Zonal-mean wind, m/s, at latitudes `lat` (rad) and pressures `p_hpa`."""
        s = self.season(t_days)
        lat_d = np.rad2deg(lat)
        height = (984.0 - p_hpa) / (984.0 - P_TOP)  # 0 at the surface, 1 at the top
        jet = 10.0 + 32.0 * height
        north = (1.0 - 0.35 * s) * np.exp(-(((lat_d - (40.0 + 6.0 * s)) / 11.0) ** 2))
        south = (1.15 + 0.2 * s) * np.exp(-(((lat_d + (47.0 - 4.0 * s)) / 11.0) ** 2))
        trades = -8.0 * (1.0 - height) * np.exp(-(((lat_d - 5.0 * s) / 17.0) ** 2))
        polar = -4.0 * (1.0 - height) * np.exp(-(((np.abs(lat_d) - 75.0) / 9.0) ** 2))
        return jet * (north + south) + trades + polar

    def _streamfunction(self, t_days):
        """Velocity streamfunction ψ ``(n_layers, jm + 1, im)`` at NE cell corners, m²/s."""
        grid, vgrid = self.grid, self.vgrid
        lat_e = np.deg2rad(grid.lat_edges)  # (jm + 1,)
        p_mid_ref = vgrid.mid_pressure(np.array(984.0))  # (n_layers,)
        # Zonal part: ψ(θ) = −a ∫ u dθ from the south pole.
        fine = np.linspace(-np.pi / 2, np.pi / 2, 4 * (grid.jm + 1) * 8 + 1)
        u_fine = self._zonal_wind(fine[None, :], p_mid_ref[:, None], t_days)
        cum = np.concatenate(
            [np.zeros((u_fine.shape[0], 1)),
             np.cumsum(0.5 * (u_fine[:, 1:] + u_fine[:, :-1]) * np.diff(fine), axis=1)],
            axis=1,
        )  # fmt: skip
        psi_zonal = -EARTH_RADIUS * np.stack([np.interp(lat_e, fine, c) for c in cum])
        # Travelling waves, one set per hemisphere.
        lon_c = np.deg2rad(grid.lon_edges[1:])  # east edges
        height = (984.0 - p_mid_ref) / (984.0 - P_TOP)
        amp = np.clip(1.0 + 0.45 * self._wave_amp.value(t_days), 0.2, 2.2)  # (2, 4)
        winter = np.array([1.0 - 0.3 * self.season(t_days), 1.0 + 0.3 * self.season(t_days)])
        phase_speed = 9.0 / (EARTH_RADIUS * np.cos(np.deg2rad(45.0)))  # rad/s at 45°
        psi_wave = np.zeros((grid.jm + 1, grid.im))
        for h, sign in enumerate((1.0, -1.0)):
            shape = np.where(sign * lat_e > 0, np.sin(2 * lat_e) ** 2, 0.0)  # peaks at ±45°
            for n, m in enumerate(self.wavenumbers):
                a_m = 7.0 / (np.sqrt(2.0) * m) * amp[h, n] * winter[h]  # v ≈ 7 m/s per wave
                phase = (
                    m * (lon_c - phase_speed * t_days * DAY)
                    + self._wave_phase0[h, n]
                    + 1.2 * self._wave_phase.value(t_days)[h, n]
                )
                psi_wave += EARTH_RADIUS * a_m * shape[:, None] * np.cos(phase)[None, :]
        vert = 0.6 + 0.8 * height
        return psi_zonal[:, :, None] + vert[:, None, None] * psi_wave[None], psi_wave

    def _velocity_potential(self, t_days, psi_wave):
        """Velocity potential χ ``(jm, im)`` at cell centres, m²/s (low-level sense)."""
        grid = self.grid
        s = self.season(t_days)
        lat_d = grid.lat[:, None]
        itcz = 5.0 + 7.0 * s
        hadley = 4.5e6 * np.exp(-(((lat_d - itcz) / 14.0) ** 2)) * np.ones(grid.im)
        monsoon_lat = itcz + 9.0 * s
        monsoon = 5.0e6 * self._land_smooth * np.exp(-(((lat_d - monsoon_lat) / 13.0) ** 2))
        # Ascent ahead of troughs: χ follows the wave streamfunction a quarter wave east.
        centre = 0.5 * (psi_wave[:-1] + psi_wave[1:])  # corners -> rows
        waves = 0.22 * np.roll(centre, grid.im // 16, axis=1)
        chi = hadley + monsoon + waves
        for pole in (0, -1):
            chi[pole] = chi[pole].mean()
        return chi

    @functools.cached_property
    def _divergent_profile(self) -> np.ndarray:
        """Vertical profile of the divergent wind: + low levels, − aloft, σ-weighted mean 0."""
        sig = self.vgrid.sigma_mid
        prof = np.cos(np.pi * (1.0 - sig))
        return prof - np.sum(prof * self.vgrid.dsigma) / np.sum(self.vgrid.dsigma)

    def mass_fluxes(self, t_days: float):
        """Face mass fluxes ``(U, V, W)``, kg/s, each ``(n_layers, jm, im)``; also ψ_wave."""
        grid = self.grid
        lat_e = np.deg2rad(grid.lat_edges)
        psi, psi_wave = self._streamfunction(t_days)  # (nl, jm + 1, im)
        # Mass streamfunction: ψ times the layer's air mass per area at the corner.
        col_corner = self._column(self._ps_at(lat_e))  # (nl, jm + 1)
        mpsi = psi * col_corner[:, :, None]
        u_flux = -(mpsi[:, 1:] - mpsi[:, :-1])  # (nl, jm, im) east faces
        u_flux[:, 0] = 0.0
        u_flux[:, -1] = 0.0
        v_flux = np.zeros_like(u_flux)
        v_flux[:, :-1] = mpsi[:, 1:-1] - np.roll(mpsi[:, 1:-1], 1, axis=2)
        # Divergent part.
        chi = self._velocity_potential(t_days, psi_wave)  # (jm, im)
        prof = self._divergent_profile[:, None, None]
        lat_c = np.deg2rad(grid.lat)
        dx_row = EARTH_RADIUS * np.cos(lat_c) * np.deg2rad(grid.dlon)  # (jm,)
        col_row = self._column(self._ps_at(lat_c))  # (nl, jm)
        grad_x = (np.roll(chi, -1, axis=1) - chi) / np.where(dx_row > 0, dx_row, 1.0)[:, None]
        ud = grad_x[None] * grid.dy[None, :, None] * col_row[:, :, None] * prof
        ud[:, 0] = 0.0
        ud[:, -1] = 0.0
        dist_y = EARTH_RADIUS * np.deg2rad(np.diff(grid.lat))  # (jm - 1,) centre to centre
        grad_y = (chi[1:] - chi[:-1]) / dist_y[:, None]
        col_edge = self._column(self._ps_at(lat_e[1:-1]))  # (nl, jm - 1)
        vd = grad_y[None] * grid.dx_edges[1:-1][None, :, None] * col_edge[:, :, None] * prof
        u_flux += ud
        v_flux[:, :-1] += vd
        # Continuity: W through the top of each layer from the horizontal divergence.
        div = self.horizontal_divergence(u_flux, v_flux)
        w_flux = -np.cumsum(div, axis=0)
        w_flux[-1] = 0.0  # the lid: the column divergence is zero to round-off
        return u_flux, v_flux, w_flux, psi_wave

    def horizontal_divergence(self, u_flux, v_flux):
        """Net horizontal outflow of each cell, same units as the fluxes; caps shared."""
        div = u_flux - np.roll(u_flux, 1, axis=2)
        div[:, :-1] += v_flux[:, :-1]
        div[:, 1:] -= v_flux[:, :-1]
        for pole in (0, -1):
            div[:, pole] = div[:, pole].mean(axis=1, keepdims=True)
        return div

    # ----- thermodynamics and moist processes --------------------------------------------------
    def surface_temperature(self, t_days: float) -> np.ndarray:
        """Surface air temperature ``(jm, im)``, K: latitude, season, land–sea, diurnal cycle."""
        s = self.season(t_days)
        lat = np.deg2rad(self.grid.lat)[:, None]
        land = self.landfr
        mu_lag = self.cos_zenith(t_days, lag_hours=2.0)
        return (
            302.0
            - 48.0 * np.sin(lat) ** 2
            - 6.0 * np.maximum(np.sin(lat), 0) ** 4
            + 14.0 * np.sin(lat) * s * (0.5 + land)
            + 9.0 * land * (mu_lag - 0.25)
            - 4.0 * land * np.abs(np.sin(lat))
        )

    def temperature_profile(self, t_surf: np.ndarray, p: np.ndarray):
        """Temperature (K) and height above the surface (m) at pressures `p` (6.5 K/km)."""
        ratio = (p / self.ps) ** (R_DRY * LAPSE_RATE / GRAVITY)
        return t_surf * ratio, t_surf / LAPSE_RATE * (1.0 - ratio)

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

    def transport(self, t_days: float) -> TransportFields:
        """What the tracer physics needs at `t_days`: fluxes, rain, convection, heights."""
        grid, vgrid = self.grid, self.vgrid
        u_flux, v_flux, w_flux, _ = self.mass_fluxes(t_days)
        s = self.season(t_days)
        land = self.landfr
        lat = np.deg2rad(grid.lat)[:, None]
        t_surf = self.surface_temperature(t_days)
        w_mid = self.omega(w_flux[self._k_mid - 1 : self._k_mid + 1])[1]  # ω at σ ≈ 0.5
        ascent = np.maximum(-w_mid, 0.0)
        ascent_scale = max(float(np.average(ascent, weights=grid.area)), 1e-12)
        # Precipitation: rising, moist air, broken up by travelling rain cells.
        lon = np.deg2rad(grid.lon)[None, :]
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
        # Rain forms between the surface and the cloud top, deep in the tropics.
        tropical = np.exp(-(((np.rad2deg(lat) - 5.0 * s) / 22.0) ** 2)) * np.ones(grid.im)
        sigma_top = 0.55 - 0.42 * tropical
        below_top = (vgrid.sigma_edges[:-1, None, None] - sigma_top[None]) / (1.0 - sigma_top[None])
        prec = rate[None] * np.clip(below_top, 0.0, 1.0) ** 0.8  # through each layer bottom
        # Convective updraft at layer tops: grows through the lowest layers, detrains aloft.
        conv_rain = rate * np.clip(0.25 + 0.6 * tropical + 0.3 * land * max(s, 0.0), 0.0, 0.9)
        mu_base = CONVECTIVE_MASS_FLUX_PER_RAIN * conv_rain / DAY  # kg m-2 s-1
        height = np.clip(
            (1.0 - vgrid.sigma_edges[1:, None, None]) / (1.0 - sigma_top[None]), 0.0, 1.0
        )
        mu_top = mu_base[None] * np.sin(np.pi * height) ** 0.5
        mu_top[-1] = 0.0
        p_edges = vgrid.edge_pressure(self.ps)
        _, z_edges = self.temperature_profile(t_surf, p_edges)
        return TransportFields(u_flux, v_flux, w_flux, prec, rate, mu_top, z_edges, t_surf)

    def boundary_layer(self, t_days: float, rain: np.ndarray):
        """Boundary-layer height (m), sensible and latent heat flux (W/m², negative = up)."""
        land = self.landfr
        alat = np.abs(self.grid.lat)[:, None]
        mu_now = self.cos_zenith(t_days)
        mu_lag = self.cos_zenith(t_days, lag_hours=2.0)
        pbl_ocean = (380.0 + 300.0 * np.exp(-(((alat - 18.0) / 14.0) ** 2))) * (
            1.0 - 0.45 * (alat / 90.0)
        )
        pbl_land = (110.0 + 1900.0 * mu_lag**1.3) * (1.0 - 0.6 * (alat / 90.0) ** 2)
        pblht = land * pbl_land + (1.0 - land) * pbl_ocean
        wet = np.clip(rain / 6.0, 0.0, 1.0)
        trade = np.exp(-(((alat - 15.0) / 15.0) ** 2))
        shflx = land * (25.0 * (mu_now == 0) - 380.0 * mu_now * (1.0 - 0.6 * wet)) + (
            1.0 - land
        ) * (-8.0 - 18.0 * trade)
        lhflx = land * (-15.0 - 260.0 * mu_now * (0.25 + 0.75 * wet)) + (1.0 - land) * (
            -50.0 - 130.0 * trade * (1.0 - 0.5 * wet)
        )
        return pblht, shflx, lhflx

    def diagnostics(self, t_days: float, tf: TransportFields) -> dict[str, np.ndarray]:
        """The ModelE output fields of the meteorology at `t_days`, by registry name."""
        grid, vgrid = self.grid, self.vgrid
        ps = self.ps
        p = vgrid.mid_pressure(ps)
        col = vgrid.air_mass(ps)
        face_col_x = col * grid.dy[None, :, None]
        u_face = tf.u_flux / face_col_x
        u = 0.5 * (u_face + np.roll(u_face, 1, axis=2))
        v_face = tf.v_flux[:, :-1] / (
            0.5 * (col[:, :-1] + col[:, 1:]) * grid.dx_edges[1:-1][None, :, None]
        )
        v = np.zeros_like(u)
        v[:, 1:-1] = 0.5 * (v_face[:, 1:] + v_face[:, :-1])
        omega = self.omega(tf.w_flux)
        t_surf = self.surface_temperature(t_days)
        t, z = self.temperature_profile(t_surf, p)
        th = t * (1000.0 / p) ** KAPPA
        rising = np.tanh(-omega[self._k_mid] / max(np.abs(omega[self._k_mid]).mean(), 1e-12))
        rh = np.clip(0.6 + 0.3 * rising + 0.1 * (1.0 - self.landfr), 0.1, 0.98)[None] * (
            0.35 + 0.65 * vgrid.sigma_mid[:, None, None] ** 1.5
        )
        q = rh * self.saturation_humidity(t, p)
        mu_bottom = np.concatenate([np.zeros_like(tf.mu_top[:1]), tf.mu_top[:-1]])
        pblht, shflx, lhflx = self.boundary_layer(t_days, tf.rain)
        return {
            "u": u, "v": v, "omega": omega, "p_3d": p, "t": t, "th": th, "q": q, "z": z,
            "prec_3d_sum": tf.prec, "mcuflx": 0.5 * (tf.mu_top + mu_bottom),
            "pblht_bp": pblht, "shflx": shflx, "lhflx": lhflx, "prsurf": ps.copy(),
        }  # fmt: skip
