"""Dates and time stamps of ModelE output: the ``noleap`` calendar from 1850-01-01.

Every file's time axis is in days since 1850-01-01 00:00 of the ``noleap`` (365-day) calendar,
the day number of a date is the integer part, and the output stamps of a day are
``day + (k + phase) / steps_per_day`` (see ``docs/data_contract.md``).

Example:

>>> parse_date("2010-01-01")
58400
>>> format_date(58400), yyyymmdd(58400)
('2010-01-01', '20100101')
>>> expected_times(58400, steps_per_day=4).tolist()
[58400.125, 58400.375, 58400.625, 58400.875]
"""

from __future__ import annotations

import re

import numpy as np

#: Time axis of every file: days since this date in the ``noleap`` calendar.
TIME_UNITS = "days since 1850-01-01 00:00:00"
CALENDAR = "noleap"
#: Calendar names read as ``noleap`` (CF gives both for the 365-day calendar).
CALENDARS = ("noleap", "365_day")
DAYS_PER_YEAR = 365
#: Cumulative day of year at the start of each month, ``noleap``.
MONTH_START = np.cumsum([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def day_number(year: int, month: int, day: int) -> int:
    """Days since 1850-01-01 in the ``noleap`` calendar (may be negative before 1850)."""
    if not 1 <= month <= 12 or not 1 <= day <= MONTH_START[month] - MONTH_START[month - 1]:
        raise ValueError(f"Not a date of the noleap calendar. Received: {year:04d}-{month}-{day}")
    return (year - 1850) * DAYS_PER_YEAR + int(MONTH_START[month - 1]) + day - 1


def date_of(day: int) -> tuple[int, int, int]:
    """Inverse of :func:`day_number`: ``(year, month, day)``."""
    year, doy = divmod(int(day), DAYS_PER_YEAR)
    month = int(np.searchsorted(MONTH_START, doy, side="right"))
    return 1850 + year, month, doy - int(MONTH_START[month - 1]) + 1


def parse_date(text: str) -> int:
    """Returns the day number of ``"YYYY-MM-DD"`` (days since 1850-01-01, ``noleap``)."""
    match = _DATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"A date must be a 'YYYY-MM-DD' string. Received: {text!r}")
    year, month, day = (int(g) for g in match.groups())
    return day_number(year, month, day)


def format_date(day: int) -> str:
    """Inverse of :func:`parse_date`: ``"YYYY-MM-DD"``."""
    y, m, d = date_of(day)
    return f"{y:04d}-{m:02d}-{d:02d}"


def yyyymmdd(day: int) -> str:
    """``YYYYMMDD`` string of day number `day`, as in the daily file names."""
    y, m, d = date_of(day)
    return f"{y:04d}{m:02d}{d:02d}"


def expected_times(day: int, steps_per_day: int, phase: float = 0.5) -> np.ndarray:
    """``(steps_per_day,)`` stamps of `day`: ``day + (k + phase) / steps_per_day``."""
    return day + (np.arange(steps_per_day) + phase) / steps_per_day
