"""The groups of cells and samples the evaluation reduces over: regions and seasons.

Regions are the 14 GFED basis regions (Giglio et al. 2006, "Global estimation of burned area
using MODIS active fire observations", ACP 6), approximated by latitude-longitude boxes taken
in GFED order, so that a cell belongs to the first box that holds it and the regions are
disjoint. Every box holds the reference model's fire region of the same name
(``bcb_emulator.reference.emissions.FIRE_REGIONS``). Cells in no box form ``REMOTE`` (oceans,
polar and other remote air). ``GLOBAL`` is every cell.

Example:

>>> from bcb_emulator.grid import get_grid
>>> masks = region_masks(get_grid("coarse"))
>>> masks.shape, bool((masks.sum(axis=0) == 1).all())  # every cell in exactly one region
((15, 46, 72), True)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bcb_emulator.data.calendar import date_of
from bcb_emulator.grid import Grid


@dataclasses.dataclass(frozen=True)
class Box:
    """A latitude-longitude box, degrees: west ≤ lon < east, south ≤ lat < north."""

    name: str
    west: float
    east: float
    south: float
    north: float

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Boolean mask of the points ``(lat, lon)`` inside the box (broadcasting)."""
        return (lon >= self.west) & (lon < self.east) & (lat >= self.south) & (lat < self.north)


#: The GFED basis regions as boxes, in GFED order (earlier boxes win where boxes overlap).
GFED_REGIONS: tuple[Box, ...] = (
    Box("BONA", -170.0, -50.0, 50.0, 75.0),  # boreal North America
    Box("TENA", -130.0, -60.0, 25.0, 50.0),  # temperate North America
    Box("CEAM", -120.0, -75.0, 5.0, 25.0),  # Central America
    Box("NHSA", -85.0, -30.0, 0.0, 15.0),  # northern hemisphere South America
    Box("SHSA", -85.0, -30.0, -60.0, 0.0),  # southern hemisphere South America
    Box("EURO", -10.0, 40.0, 35.0, 75.0),  # Europe
    Box("MIDE", -20.0, 65.0, 20.0, 40.0),  # Middle East and North Africa
    Box("NHAF", -20.0, 55.0, 0.0, 20.0),  # northern hemisphere Africa
    Box("SHAF", 5.0, 55.0, -35.0, 0.0),  # southern hemisphere Africa
    Box("BOAS", 40.0, 180.0, 50.0, 80.0),  # boreal Asia
    Box("CEAS", 65.0, 145.0, 20.0, 50.0),  # central Asia (India, China)
    Box("SEAS", 65.0, 125.0, 5.0, 20.0),  # southeast Asia
    Box("EQAS", 95.0, 160.0, -10.0, 5.0),  # equatorial Asia
    Box("AUST", 110.0, 180.0, -50.0, -10.0),  # Australia and New Zealand
)
REMOTE = "REMOTE"
GLOBAL = "GLOBAL"
#: Seasons by month (1–12): December–February, March–May, June–August, September–November.
SEASONS: dict[str, tuple[int, ...]] = {
    "DJF": (12, 1, 2),
    "MAM": (3, 4, 5),
    "JJA": (6, 7, 8),
    "SON": (9, 10, 11),
}


def region_names() -> tuple[str, ...]:
    """The region names in the order of `region_masks`: the 14 GFED regions, then REMOTE."""
    return tuple(b.name for b in GFED_REGIONS) + (REMOTE,)


def region_masks(grid: Grid) -> np.ndarray:
    """``(15, H, W)`` 0/1 masks of the GFED regions and REMOTE; each cell in exactly one."""
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")  # (H, W)
    taken = np.zeros(grid.shape, bool)
    masks = []
    for box in GFED_REGIONS:
        inside = box.contains(lat, lon) & ~taken
        masks.append(inside)
        taken |= inside
    masks.append(~taken)
    return np.stack(masks).astype(np.float64)


def season_of(time: float) -> str:
    """The season (``"DJF"``, ``"MAM"``, ``"JJA"``, ``"SON"``) of a time stamp (days since
    1850-01-01, ``noleap``)."""
    month = date_of(int(np.floor(time)))[1]
    return next(name for name, months in SEASONS.items() if month in months)


def year_month_of(time: float) -> str:
    """The calendar month ``"YYYY-MM"`` of a time stamp (days since 1850-01-01, ``noleap``).

    >>> year_month_of(58400.5), year_month_of(58581.5)
    ('2010-01', '2010-07')
    """
    year, month, _ = date_of(int(np.floor(time)))
    return f"{year:04d}-{month:02d}"


def month_of(time: float) -> int:
    """The month (1–12) of a time stamp (days since 1850-01-01, ``noleap``)."""
    return date_of(int(np.floor(time)))[1]
