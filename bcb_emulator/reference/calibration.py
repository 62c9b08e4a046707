"""Calibration figures of the reference model over a period, measured without writing files.

:func:`measure` runs the model (after its spin-up from a clean atmosphere) through a period and
reports, for the whole period and month by month:

* the lifetime, mean burden over mean removal rate (τ = B / R);
* the mean burden;
* the share of the column in levels 1–20 (ratio of the period's mean masses);
* the removal split: dry deposition, large-scale wet and convective wet scavenging;
* the level-1 BCB mixing ratio: area means of the southern extratropics (south of 35°S), of the
  northern mid-latitudes (35°N–60°N) and of the globe, and at a few remote sites.

The state is sampled every ``sample_every`` steps (3-hourly by default); budgets come from the
model's own accounting, differenced at month ends, so removal is exact, not sampled.

Example:

>>> from bcb_emulator.reference.calibration import measure
>>> from bcb_emulator.reference.model import SimulationConfig
>>> figures = measure(SimulationConfig(), "2010-01-01", "2010-12-31")  # doctest: +SKIP
>>> figures.lifetime_days, figures.monthly["lifetime_days"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bcb_emulator.data.calendar import DAYS_PER_YEAR, MONTH_START, parse_date
from bcb_emulator.reference.meteorology import DAY
from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

#: Remote sites of the level-1 figure: name, latitude and longitude in degrees.
SITES = (
    ("South Pole", -90.0, 0.0),
    ("Cape Grim", -40.7, 144.7),
    ("South Pacific (45°S, 130°W)", -45.0, -130.0),
    ("Mauna Loa", 19.5, -155.6),
)
#: Latitude bands of the meridional figure, degrees (south edge, north edge).
SOUTHERN_EXTRATROPICS = (-90.0, -35.0)
NORTHERN_MIDLATITUDES = (35.0, 60.0)


@dataclasses.dataclass(frozen=True)
class CalibrationFigures:
    """Figures of one period; the level-1 mixing ratios in kg/kg.

    Attributes:
        lifetime_days: mean burden over mean removal rate, days.
        burden_tg: mean burden, Tg.
        share_levels_1_20: share of the mean column mass in levels 1–20.
        removal_shares: dry, large-scale wet, convective wet shares of the removed mass.
        emitted_tg: mass emitted in the period, Tg.
        min_tracer: smallest tracer mass of any cell at any sample, kg (never negative).
        closure: ``(M − (E − R)) / E`` at the end: global mass against the budget since the
            start of the run (spin-up included); round-off only.
        level1_south: level-1 BCB area mean south of 35°S, kg/kg.
        level1_north: level-1 BCB area mean 35°N–60°N, kg/kg.
        level1_global: level-1 BCB global area mean, kg/kg.
        level10_global: level-10 BCB global area mean, kg/kg.
        sites: level-1 BCB at each of :data:`SITES`, kg/kg, by name.
        monthly: the same scalar figures per calendar month, each a list of 12 (or as many
            months as the period touches), keyed by attribute name.
    """

    lifetime_days: float
    burden_tg: float
    share_levels_1_20: float
    removal_shares: tuple[float, float, float]
    emitted_tg: float
    min_tracer: float
    closure: float
    level1_south: float
    level1_north: float
    level1_global: float
    level10_global: float
    sites: dict[str, float]
    monthly: dict[str, list[float]]

    def seasonal_range(self, name: str) -> tuple[float, float]:
        """Smallest and largest monthly value of the figure `name`."""
        values = self.monthly[name]
        return min(values), max(values)


class _Accumulator:
    """Sums of the sampled state and the budget at the start of a (sub-)period."""

    def __init__(self, model: ReferenceModel):
        b = model.budget
        self.start = (b.emitted, b.dry_deposited, b.wet_large_scale, b.wet_convective)
        self.n = 0
        self.burden = 0.0
        self.by_level = np.zeros(model.tracer.shape[0])
        self.q1 = np.zeros(model.tracer.shape[1:])
        self.q10 = np.zeros(model.tracer.shape[1:])
        self.min_tracer = np.inf

    def sample(self, model: ReferenceModel) -> None:
        self.n += 1
        column = model.tracer.sum(axis=(1, 2))  # (n_layers,)
        self.by_level += column
        self.burden += column.sum()
        self.q1 += model.tracer[0] / model.air_mass[0]
        self.q10 += model.tracer[9] / model.air_mass[9]
        self.min_tracer = min(self.min_tracer, float(model.tracer.min()))

    def figures(self, model: ReferenceModel, days: float, monthly=None) -> CalibrationFigures:
        b = model.budget
        now = (b.emitted, b.dry_deposited, b.wet_large_scale, b.wet_convective)
        emitted, dry, wet_ls, wet_cv = (x - x0 for x, x0 in zip(now, self.start, strict=True))
        removed = dry + wet_ls + wet_cv
        burden = self.burden / self.n  # kg
        grid = model.grid
        q1 = self.q1 / self.n
        area = grid.area

        def band(edges):
            rows = (grid.lat >= edges[0]) & (grid.lat <= edges[1])
            return float(np.average(q1[rows], weights=area[rows]))

        sites = {}
        for name, lat, lon in SITES:
            j = int(np.argmin(np.abs(grid.lat - lat)))
            i = int(np.argmin(np.abs((grid.lon - lon + 180.0) % 360.0 - 180.0)))
            sites[name] = float(q1[j, i])
        return CalibrationFigures(
            lifetime_days=burden / (removed / days),
            burden_tg=burden / 1e9,
            share_levels_1_20=float(self.by_level[:20].sum() / self.by_level.sum()),
            removal_shares=(dry / removed, wet_ls / removed, wet_cv / removed),
            emitted_tg=emitted / 1e9,
            min_tracer=self.min_tracer,
            closure=(model.total_mass() - (b.emitted - b.removed)) / b.emitted,
            level1_south=band(SOUTHERN_EXTRATROPICS),
            level1_north=band(NORTHERN_MIDLATITUDES),
            level1_global=float(np.average(q1, weights=area)),
            level10_global=float(np.average(self.q10 / self.n, weights=area)),
            sites=sites,
            monthly=monthly or {},
        )


#: Scalar figures reported month by month.
MONTHLY = ("lifetime_days", "burden_tg", "share_levels_1_20", "level1_south", "level1_north")


def measure(
    config: SimulationConfig, start: str, end: str, sample_every: int = 6
) -> CalibrationFigures:
    """Runs `config` through ``[start, end]`` (inclusive) after its spin-up; no files written.

    Args:
        config: run settings; ``config.spinup_days`` of spin-up precede `start`.
        start, end: first and last day of the period, ``YYYY-MM-DD``.
        sample_every: steps between samples of the state (burden, column, level-1 field).

    Returns:
        The period's figures, with :attr:`CalibrationFigures.monthly` per calendar month.
    """
    first, last = parse_date(start), parse_date(end)
    if last < first:
        raise ValueError(f"`end` must not precede `start`. Received: {start}..{end}")
    model = ReferenceModel(config)
    model.time = float(first - config.spinup_days)
    steps_per_day = int(DAY // config.dt)
    for _ in range(config.spinup_days * steps_per_day):
        model.step()
    whole = _Accumulator(model)
    month = _Accumulator(model)
    month_days = 0
    monthly: dict[str, list[float]] = {name: [] for name in MONTHLY}
    month_ends = set(MONTH_START[1:] - 1)
    for day in range(first, last + 1):
        for n in range(steps_per_day):
            model.step()
            if (n + 1) % sample_every == 0:
                whole.sample(model)
                month.sample(model)
        month_days += 1
        if (day % DAYS_PER_YEAR) in month_ends or day == last:
            figures = month.figures(model, month_days)
            for name in MONTHLY:
                monthly[name].append(float(getattr(figures, name)))
            month, month_days = _Accumulator(model), 0
    return whole.figures(model, last + 1 - first, monthly)
