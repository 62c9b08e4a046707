"""The one registry of ModelE E3 variables the package reads, writes and learns from.

Every module that needs to know a variable's stream, units, dimensionality or role reads it
from here: the reference model's writer, the TFDS builder, normalization, plots and docs.
See ``docs/data_contract.md`` for the layout of the files.

Example:

>>> from bcb_emulator import variables
>>> [v.name for v in variables.X2D]
['axyp', 'landfr', 'pblht_bp', 'shflx', 'lhflx', 'BCB_biomass_src']
>>> variables.get("BCB").stream
'taijlh1'
"""

from __future__ import annotations

import dataclasses
import enum
import math


class Role(enum.Enum):
    """What a variable is used for by the emulator."""

    X2D = "x2d"  # one of the 6 surface input channels
    X3D = "x3d"  # one of the 8 profile input variables (L channels each)
    TARGET = "target"  # what the emulator predicts
    AUX = "aux"  # carried for evaluation or consistency, not a model input


class Transform(enum.Enum):
    """Value transform applied before normalization."""

    NONE = "none"
    LOG = "log"  # log(x + offset); the offset is stored with the statistics


@dataclasses.dataclass(frozen=True)
class Variable:
    """One variable of the ModelE E3 output.

    Attributes:
        name: netCDF variable name, exactly as ModelE writes it.
        stream: output stream, the ``<stream>`` in ``YYYYMMDD.<stream>E3oma.nc``; ``"static"``
            for time-independent fields (ModelE's annual ``ANN<year>.xaij<run>.nc``, or the
            ``aijh1`` daily file as the reference model writes them).
        units: CF-style units string written to the file.
        long_name: human-readable description.
        is_3d: True for ``(time, level, lat, lon)`` fields, False for ``(time, lat, lon)``.
        role: how the emulator uses the variable.
        transform: transform applied before normalization.
        time_varying: False for static fields (``landfr``, ``axyp``).
        valid_range: ``(lower, upper)``, the physically possible values in `units`; the
            reader refuses anything outside (``docs/data_contract.md``). Generous on purpose:
            it catches wrong signs, wrong units and garbage (fill values, 3e38), not outliers.
        lower_open: True if `lower` itself is impossible (a strictly positive quantity).
    """

    name: str
    stream: str
    units: str
    long_name: str
    is_3d: bool
    role: Role
    transform: Transform = Transform.NONE
    time_varying: bool = True
    valid_range: tuple[float, float] = (-math.inf, math.inf)
    lower_open: bool = False

    def range_text(self) -> str:
        """`valid_range` in words, e.g. ``0 <= x <= 1e+08 10^-11 kg/kg``."""
        lower, upper = self.valid_range
        units = "" if self.units == "1" else f" {self.units}"
        return f"{lower:g} {'<' if self.lower_open else '<='} x <= {upper:g}{units}"


# Input order matters: it is the channel order of X2D and the variable order of X3D.
# Ranges (`valid_range`, in each variable's units) say what is physically possible at all, not
# what is typical: the sphere's area bounds a cell, 10⁸ × 10⁻¹¹ kg/kg = 1 g/kg of soot bounds BCB.
_POSITIVE = dict(lower_open=True)
_REGISTRY: tuple[Variable, ...] = (
    # X2D: 6 surface channels.
    Variable(
        "axyp", "static", "m2", "grid cell area", False, Role.X2D, time_varying=False,
        valid_range=(0.0, 5.2e14), **_POSITIVE,
    ),
    Variable(
        "landfr", "static", "1", "land fraction", False, Role.X2D, time_varying=False,
        valid_range=(0.0, 1.0),
    ),
    Variable(
        "pblht_bp", "aijh1", "m", "planetary boundary layer height", False, Role.X2D,
        valid_range=(0.0, 1e5),
    ),
    Variable(
        "shflx", "aijh1", "W/m2", "sensible heat flux (negative = upward into air)", False,
        Role.X2D, valid_range=(-1e4, 1e4),
    ),
    Variable(
        "lhflx", "aijh1", "W/m2", "latent heat flux (negative = upward into air)", False,
        Role.X2D, valid_range=(-1e4, 1e4),
    ),
    Variable(
        "BCB_biomass_src", "tNDaijh1", "10^-12 kg m-2 s-1",
        "black carbon biomass burning emission", False, Role.X2D, valid_range=(0.0, 1e12),
    ),
    # X3D: 8 profile variables.
    Variable("u", "aijlh1", "m/s", "eastward wind", True, Role.X3D, valid_range=(-500.0, 500.0)),
    Variable("v", "aijlh1", "m/s", "northward wind", True, Role.X3D, valid_range=(-500.0, 500.0)),
    Variable(
        "omega", "aijlh1", "hPa/s", "vertical pressure velocity", True, Role.X3D,
        valid_range=(-100.0, 100.0),
    ),
    Variable(
        "p_3d", "aijlh1", "hPa", "mid-layer pressure", True, Role.X3D,
        valid_range=(0.0, 1200.0), **_POSITIVE,
    ),
    Variable("t", "aijlh1", "K", "temperature", True, Role.X3D, valid_range=(100.0, 400.0)),
    Variable(
        "th", "aijlh1", "K", "potential temperature", True, Role.X3D, valid_range=(100.0, 1e4)
    ),
    Variable("q", "aijlh1", "kg/kg", "specific humidity", True, Role.X3D, valid_range=(0.0, 0.1)),
    Variable(
        "prec_3d_sum", "cijlh1", "mm/day", "precipitation flux through the bottom of the layer",
        True, Role.X3D, valid_range=(0.0, 1e5),
    ),
    # Target.
    Variable(
        "BCB", "taijlh1", "10^-11 kg/kg", "black carbon from biomass burning, mass mixing ratio",
        True, Role.TARGET, transform=Transform.LOG, valid_range=(0.0, 1e8),
    ),
    # Auxiliary: consistency and evaluation.
    Variable("prsurf", "aijh1", "hPa", "surface pressure", False, Role.AUX),
    Variable("z", "aijlh1", "m", "mid-layer geopotential height", True, Role.AUX),
    Variable("mcuflx", "cijlh1", "kg m-2 s-1", "convective updraft mass flux", True, Role.AUX),
    Variable(
        "airmass", "taijlh1", "kg/m2", "air mass per unit area of the layer", True, Role.AUX,
        valid_range=(0.0, 2e4), **_POSITIVE,
    ),
)  # fmt: skip

ALL: tuple[Variable, ...] = _REGISTRY
X2D: tuple[Variable, ...] = tuple(v for v in _REGISTRY if v.role is Role.X2D)
X3D: tuple[Variable, ...] = tuple(v for v in _REGISTRY if v.role is Role.X3D)
TARGET: Variable = next(v for v in _REGISTRY if v.role is Role.TARGET)
STATIC_STREAM = "static"
#: Streams that hold time-varying fields, one file per day each. Static fields are read from
#: ModelE's annual file when there is one, else from ``aijh1`` (``bcb_emulator.data.reader``).
STREAMS: tuple[str, ...] = ("aijh1", "aijlh1", "cijlh1", "taijlh1", "tNDaijh1")
#: The daily stream that carries the static fields when there is no annual file (the reference
#: model writes them there, without a time axis).
STATIC_HOST_STREAM = "aijh1"

_BY_NAME = {v.name: v for v in _REGISTRY}


def get(name: str) -> Variable:
    """Returns the registry entry of variable `name`.

    Raises:
        KeyError: with the known names, if `name` is not registered.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"`name` must be a registered ModelE variable, one of {sorted(_BY_NAME)}. "
            f"Received: name={name!r}"
        ) from None


def file_stream(variable: Variable) -> str:
    """Returns the stream whose daily file holds `variable`."""
    return STATIC_HOST_STREAM if variable.stream == STATIC_STREAM else variable.stream


def in_stream(stream: str) -> tuple[Variable, ...]:
    """Returns the variables stored in the daily file of `stream`, in registry order."""
    if stream not in STREAMS:
        raise ValueError(f"`stream` must be one of {STREAMS}. Received: stream={stream!r}")
    return tuple(v for v in _REGISTRY if file_stream(v) == stream)


def filename(date_yyyymmdd: str, stream: str) -> str:
    """Returns the ModelE daily file name, e.g. ``20100101.taijlh1E3oma.nc``."""
    if stream not in STREAMS:
        raise ValueError(f"`stream` must be one of {STREAMS}. Received: stream={stream!r}")
    if len(date_yyyymmdd) != 8 or not date_yyyymmdd.isdigit():
        raise ValueError(
            f"`date_yyyymmdd` must be 8 digits (YYYYMMDD). Received: {date_yyyymmdd!r}"
        )
    return f"{date_yyyymmdd}.{stream}E3oma.nc"
