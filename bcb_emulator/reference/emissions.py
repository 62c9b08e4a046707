"""Biomass-burning BCB emissions: fire regions, their seasons, and year scenarios.

Each fire region is a patch of land (a Gaussian in longitude and latitude times the land
fraction) with a seasonal cycle peaking in its fire season (``docs/reference_model.md``: Sahel
Dec–Jan, southern Africa Jun–Sep, Amazon Jun–Nov peaking in September, boreal Jun–Aug,
mainland SE Asia Feb–Apr, Indonesia Aug–Oct, Australia Sep–Dec), day-to-day red-noise
variability, and a diurnal cycle peaking in the local afternoon. A scenario fixes the global
annual total (≈ 1.56 Tg/yr pre-industrial, ≈ 1.75 Tg/yr in the 2010s) and per-region, per-year
factors (for example the extreme boreal fire season of 2021).
"""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from bcb_emulator.grid import Grid
from bcb_emulator.reference.meteorology import DAY, RedNoise, load_land_fraction

SECONDS_PER_YEAR = 365 * DAY
TG = 1.0e9  # kg


@numba.njit(cache=True, error_model="numpy")
def _weigh_regions(patterns, weights, by_region):
    """Fills ``by_region = patterns · weights`` (per region) and returns its sum over regions.

    The sum is accumulated region by region, as numpy's ``sum(axis=0)`` does.
    """
    n, jm, im = patterns.shape
    total = np.empty((jm, im))
    for r in range(n):
        w = weights[r]
        for j in range(jm):
            for i in range(im):
                x = patterns[r, j, i] * w
                by_region[r, j, i] = x
                total[j, i] = x if r == 0 else total[j, i] + x
    return total


@numba.njit(cache=True, error_model="numpy")
def _diurnal_flux_and_share(total, free, diurnal):
    """``total · diurnal`` (``diurnal`` per longitude) and ``free / total`` (0 where no fire)."""
    jm, im = total.shape
    flux = np.empty((jm, im))
    share = np.empty((jm, im))
    for j in range(jm):
        for i in range(im):
            flux[j, i] = total[j, i] * diurnal[i]
            share[j, i] = free[j, i] / total[j, i] if total[j, i] > 0 else 0.0
    return flux, share


@dataclasses.dataclass(frozen=True)
class FireRegion:
    """One fire region.

    Attributes:
        name: GFED basis-region code.
        lon, lat: centre, degrees. width_lon, width_lat: e-folding half-widths, degrees.
        peak_day: day of year (0-based) of the season's peak. season_days: e-folding
            half-length of the season, days.
        share: share of the global annual total in the reference (2010s) scenario.
        free_troposphere: share of the emission injected above the boundary layer.
    """

    name: str
    lon: float
    lat: float
    width_lon: float
    width_lat: float
    peak_day: float
    season_days: float
    share: float
    free_troposphere: float = 0.1


FIRE_REGIONS: tuple[FireRegion, ...] = (
    FireRegion("NHAF", 15.0, 9.0, 14.0, 4.0, 0.0, 40.0, 0.29),  # Sahel, Dec–Jan
    FireRegion("SHAF", 23.0, -11.0, 11.0, 5.0, 220.0, 45.0, 0.31),  # southern Africa, Jun–Sep
    FireRegion("SHSA", -55.0, -10.0, 10.0, 6.0, 250.0, 45.0, 0.12),  # Amazon, Jun–Nov
    FireRegion("BONA", -115.0, 58.0, 16.0, 6.0, 200.0, 30.0, 0.03, 0.2),  # boreal America
    FireRegion("BOAS", 115.0, 57.0, 22.0, 6.0, 195.0, 35.0, 0.05, 0.2),  # boreal Asia
    FireRegion("SEAS", 101.0, 18.0, 6.0, 5.0, 75.0, 30.0, 0.06),  # mainland SE Asia, Feb–Apr
    FireRegion("EQAS", 110.0, -2.0, 9.0, 4.0, 255.0, 30.0, 0.05),  # Indonesia, Aug–Oct
    FireRegion("AUST", 133.0, -17.0, 14.0, 5.0, 305.0, 40.0, 0.05, 0.15),  # Australia, Sep–Dec
    FireRegion("CEAM", -90.0, 16.0, 6.0, 4.0, 100.0, 30.0, 0.015),  # Central America, Mar–May
    FireRegion("NHSA", -66.0, 7.0, 6.0, 4.0, 45.0, 30.0, 0.01),  # Llanos, Jan–Mar
    FireRegion("CEAS", 85.0, 25.0, 14.0, 6.0, 100.0, 35.0, 0.02),  # India/China, Mar–May
    FireRegion("TENA", -95.0, 38.0, 14.0, 6.0, 110.0, 50.0, 0.01),  # temperate America
    FireRegion("EURO", 25.0, 48.0, 15.0, 5.0, 110.0, 50.0, 0.005),  # Europe
    FireRegion("MIDE", 45.0, 33.0, 10.0, 5.0, 180.0, 40.0, 0.005),  # Middle East
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A year scenario of emissions.

    Attributes:
        name: scenario name used on the command line.
        total_tg: global annual total, Tg/yr, before per-year factors.
        region_factors: multiplies a region's share (renormalized to `total_tg`).
        year_factors: ``{year: {region: factor}}`` applied after renormalization: an extreme
            year raises the global total.
    """

    name: str
    total_tg: float
    region_factors: dict = dataclasses.field(default_factory=dict)
    year_factors: dict = dataclasses.field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    # Pre-industrial: less tropical deforestation fire, relatively more boreal and savanna.
    "pi": Scenario("pi", 1.56, {"SHSA": 0.5, "EQAS": 0.3, "SEAS": 0.7, "BONA": 1.3, "BOAS": 1.3}),
    "2010s": Scenario("2010s", 1.75),
    # 2020–21: Australian "black summer" tail in early 2020, Amazon 2020, record boreal 2021.
    "2020s": Scenario(
        "2020s",
        1.75,
        year_factors={
            2020: {"AUST": 1.8, "SHSA": 1.3},
            2021: {"BOAS": 3.5, "BONA": 3.0, "TENA": 2.0},
        },
    ),
}


def get_scenario(name: str) -> Scenario:
    """Returns the emission scenario `name` (``pi``, ``2010s`` or ``2020s``)."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"`scenario` must be one of {sorted(SCENARIOS)}. Received: scenario={name!r}"
        ) from None


class FireEmissions:
    """Emission fluxes of a scenario on a grid.

    :meth:`flux` reuses a scratch array, so one instance must not be called from several
    threads at once.

    Args:
        grid: horizontal grid.
        scenario: emission scenario.
        seed: selects the day-to-day variability.
    """

    def __init__(self, grid: Grid, scenario: Scenario, seed: int = 0):
        self.grid = grid
        self.scenario = scenario
        land = load_land_fraction(grid)
        lon = grid.lon[None, :]
        lat = grid.lat[:, None]
        shares = np.array(
            [r.share * scenario.region_factors.get(r.name, 1.0) for r in FIRE_REGIONS]
        )
        shares = shares / shares.sum()
        patterns = []
        for r, share in zip(FIRE_REGIONS, shares, strict=True):
            dlon = (lon - r.lon + 180.0) % 360.0 - 180.0
            shape = np.exp(-((dlon / r.width_lon) ** 2) - ((lat - r.lat) / r.width_lat) ** 2)
            shape = shape * land
            # kg m-2 s-1 averaged over the year: annual share / (area integral · seconds)
            total = scenario.total_tg * TG * share / SECONDS_PER_YEAR
            patterns.append(total * shape / np.sum(shape * grid.area))
        self.patterns = np.stack(patterns)  # (n_regions, jm, im), kg m-2 s-1 annual mean
        self.free_troposphere = np.array([r.free_troposphere for r in FIRE_REGIONS])
        peak = np.array([r.peak_day for r in FIRE_REGIONS])
        width = np.array([r.season_days for r in FIRE_REGIONS])
        days = np.arange(365.0)
        gap = (days[None, :] - peak[:, None] + 182.5) % 365.0 - 182.5
        cycle = np.exp(-((gap / width[:, None]) ** 2))
        self.seasonal = cycle / cycle.mean(axis=1, keepdims=True)  # (n_regions, 365), mean 1
        self._noise = RedNoise(np.random.default_rng(seed + 7919), shape=(len(FIRE_REGIONS),),
                               min_period=2.0, max_period=15.0)  # fmt: skip
        self._yearly: dict[int, np.ndarray] = {}
        # Scratch for the per-region fluxes of a call (reused: a fresh array costs page faults).
        self._by_region = np.empty_like(self.patterns)
        self._lon_hours = grid.lon / 15.0

    def _region_weights(self, t_days: float) -> np.ndarray:
        year = 1850 + int(t_days // 365)
        doy = t_days % 365.0
        d0 = int(doy)
        frac = doy - d0
        seasonal = (1 - frac) * self.seasonal[:, d0] + frac * self.seasonal[:, (d0 + 1) % 365]
        daily = np.exp(0.45 * self._noise.value(t_days) - 0.5 * 0.45**2)
        yearly = self._yearly.get(year)
        if yearly is None:
            factors = self.scenario.year_factors.get(year, {})
            yearly = self._yearly[year] = np.array([factors.get(r.name, 1.0) for r in FIRE_REGIONS])
        return seasonal * daily * yearly

    def flux(self, t_days: float) -> tuple[np.ndarray, np.ndarray]:
        """Emission flux ``(jm, im)`` (kg m-2 s-1) and its share injected above the PBL."""
        by_region = self._by_region
        total = _weigh_regions(self.patterns, self._region_weights(t_days), by_region)
        # Σ_r free_r · flux_r, as np.tensordot(free_troposphere, by_region, axes=1) computes it.
        n_regions = len(self.free_troposphere)
        free = np.dot(self.free_troposphere.reshape(1, n_regions), by_region.reshape(n_regions, -1))
        free = free.reshape(total.shape)
        local_hour = ((t_days % 1.0) * 24.0 + self._lon_hours) % 24.0
        diurnal = 1.0 + 0.8 * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
        return _diurnal_flux_and_share(total, free, diurnal)
