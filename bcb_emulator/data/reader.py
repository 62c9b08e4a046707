"""Reading and validating the ModelE E3 files of one dataset (``docs/data_contract.md``).

Everything that reads ModelE netCDF goes through here: the TFDS builder, the statistics, the
naive benchmark loader and ``predict``. The static fields (``axyp``, ``landfr``) come from
ModelE's annual file ``ANN<year>.xaij<run>.nc`` when the folder holds one (or one is given,
:func:`find_static`), else from each day's ``aijh1`` file (the reference model's layout); in
either file they may carry a time axis if they are constant along it. Every check raises a
``ValueError`` naming the file, the variable and what was expected, so that bad input fails
before any record is written:

- a missing file (stream) of a day, or a day missing inside a split's date range;
- a file that is not netCDF;
- a missing variable, or one with other dimensions than the data contract;
- a ``units`` attribute other than the registry's (``kg/m2`` and ``kg m-2`` are the same,
  ``bcb_emulator.data.units``), integer data that is not CF-packed;
- a grid (``lat``/``lon`` sizes or coordinates) other than the dataset's, fewer levels than ``L``;
- a time axis in another calendar, unit or reference time, with duplicate stamps, a gap, or
  other stamps than ``day + (k + stamp_phase) / steps_per_day``;
- NaN, Inf or fill values in the data that is kept, values outside the variable's physical
  range (``Variable.valid_range``: negative BCB, zero air mass, 3e38), a static field that
  changes along its time axis, cell areas that do not sum to the sphere's.

Array layout of a day (channels-last, as inside the package):

- ``x2d``: ``(T, H, W, 6)``, channels in registry order (``variables.X2D``);
- ``x3d``: ``(T, H, W, 8·L)``, variable-major: channel ``i·L + k`` is variable
  ``variables.X3D[i]`` on level ``k + 1``;
- ``bcb``, ``airmass``: ``(T, H, W, L)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import netCDF4
import numpy as np

from bcb_emulator import variables
from bcb_emulator.data import calendar, units
from bcb_emulator.data.calendar import expected_times, format_date
from bcb_emulator.data.spec import DatasetSpec, SplitRange
from bcb_emulator.grid import EARTH_RADIUS

#: The variables the dataset keeps, besides the inputs and target: ``airmass`` (column burden).
AUX_KEPT: tuple[variables.Variable, ...] = (variables.get("airmass"),)
#: Every variable read, in order: X2D, X3D, target, kept auxiliaries.
READ_VARIABLES: tuple[variables.Variable, ...] = (
    variables.X2D + variables.X3D + (variables.TARGET,) + AUX_KEPT
)
#: Absolute tolerance on time stamps, days (about 0.1 s).
TIME_ATOL = 1e-6
#: Absolute tolerance on latitude/longitude coordinates, degrees.
COORD_ATOL = 1e-3
#: The static fields, read from the annual file when there is one.
STATIC_VARIABLES: tuple[variables.Variable, ...] = tuple(
    v for v in READ_VARIABLES if not v.time_varying
)
#: ModelE's annual diagnostics file, e.g. ``ANN2012.xaijE3oma.nc``: holds the static fields.
STATIC_FILE_GLOB = "ANN*.xaij*.nc"
#: Relative tolerance of a static field along its time axis, and of ``axyp``'s sum to 4πa².
STATIC_RTOL = 1e-6
AREA_RTOL = 0.01
#: The time axis's reference: 1850-01-01 at midnight, in any of its usual spellings.
_TIME_UNITS = re.compile(
    r"^days since 1850-0?1-0?1(?:[ T]0?0:0?0(?::0?0(?:\.0*)?)?)?\s*(?:Z|UTC|[+]00:?00)?$"
)


@dataclasses.dataclass(frozen=True, eq=False)
class StaticFields:
    """Where the static fields (``axyp``, ``landfr``) of a dataset come from.

    Attributes:
        path: the annual file they were read from, or None: each day's ``aijh1`` file holds
            them (the reference model's layout).
        fields: ``{name: (H, W) float32}`` read from `path`; empty when `path` is None.
    """

    path: Path | None
    fields: Mapping[str, np.ndarray]

    def describe(self) -> str:
        """Where the fields come from, in words."""
        return str(self.path) if self.path else "each day's aijh1 file"


def find_static(
    input_dir: str | os.PathLike,
    spec: DatasetSpec,
    static_file: str | os.PathLike | None = None,
) -> StaticFields:
    """The static fields of `input_dir`: from `static_file` if given, else from the folder's
    annual files ``ANN<year>.xaij<run>.nc`` (which must agree), else from the daily ``aijh1``
    files (read with each day). Validates what it reads (grid, dims, units, values)."""
    if static_file is not None:
        path = Path(static_file)
        if not path.is_file():
            raise ValueError(
                f"`static_file` must be an existing netCDF file holding "
                f"{[v.name for v in STATIC_VARIABLES]} on (lat, lon), such as ModelE's annual "
                f"ANN2012.xaijE3oma.nc. Received: {path} "
                f"({'a folder' if path.is_dir() else 'no such file'})"
            )
        return StaticFields(path, _read_static_file(path, spec))
    found = sorted(Path(input_dir).glob(STATIC_FILE_GLOB))
    if not found:
        return StaticFields(None, {})
    fields = _read_static_file(found[0], spec)
    for other in found[1:]:
        for name, values in _read_static_file(other, spec).items():
            if not np.allclose(values, fields[name], rtol=STATIC_RTOL, atol=0):
                raise ValueError(
                    f"{other}: variable {name!r} differs from the one in {found[0]}; the annual "
                    f"files ({STATIC_FILE_GLOB}) of {input_dir} must hold the same static "
                    "fields. Give the one to use with --static-file (`static_file=`)."
                )
    return StaticFields(found[0], fields)


@dataclasses.dataclass(frozen=True)
class DayData:
    """One day of validated data, channels-last.

    Attributes:
        day: day number (days since 1850-01-01, ``noleap``).
        times: ``(T,)`` float64 time stamps, days since 1850-01-01.
        x2d: ``(T, H, W, 6)`` float32.
        x3d: ``(T, H, W, 8·L)`` float32, variable-major.
        bcb: ``(T, H, W, L)`` float32, 10⁻¹¹ kg/kg.
        airmass: ``(T, H, W, L)`` float32, kg/m².
    """

    day: int
    times: np.ndarray
    x2d: np.ndarray
    x3d: np.ndarray
    bcb: np.ndarray
    airmass: np.ndarray


def streams_read() -> tuple[str, ...]:
    """The streams whose files a day needs, in ``variables.STREAMS`` order."""
    needed = {variables.file_stream(v) for v in READ_VARIABLES}
    return tuple(s for s in variables.STREAMS if s in needed)


def day_paths(input_dir: str | os.PathLike, day: int) -> dict[str, Path]:
    """The file of each needed stream for `day`, ``YYYYMMDD.<stream>E3oma.nc``."""
    stamp = calendar.yyyymmdd(day)
    return {s: Path(input_dir) / variables.filename(stamp, s) for s in streams_read()}


def split_days(input_dir: str | os.PathLike, split: SplitRange, allow_gaps: bool) -> list[int]:
    """The days of `split` to read, checking that their files exist.

    A day with some but not all stream files is always an error; a day with none is an error
    unless `allow_gaps`, and a range without any file is always an error.
    """
    days = []
    for day in split.days():
        paths = day_paths(input_dir, day)
        present = {s: p.exists() for s, p in paths.items()}
        if all(present.values()):
            days.append(day)
            continue
        if any(present.values()):
            stream = next(s for s, ok in present.items() if not ok)
            raise ValueError(
                f"Missing file {paths[stream]}: stream {stream!r} of {format_date(day)} must "
                f"hold variables {[v.name for v in _in_stream(stream)]}; the other streams of "
                "that day exist."
            )
        if not allow_gaps:
            raise ValueError(
                f"Calendar gap in split {split.name!r} ({split.start}..{split.end}): no files "
                f"for {format_date(day)}, expected e.g. {paths[streams_read()[0]]}. Add the "
                "files, shorten the range, or set `allow_gaps=True`."
            )
    if not days:
        raise ValueError(
            f"Split {split.name!r} has no files for its date range {split.start}..{split.end} "
            f"in {input_dir} (expected e.g. {day_paths(input_dir, split.first_day)})."
        )
    return days


def read_day(
    input_dir: str | os.PathLike,
    day: int,
    spec: DatasetSpec,
    *,
    check_values: bool = True,
    static: StaticFields | None = None,
) -> DayData:
    """Reads and validates the files of `day`; see the module docstring for the checks.

    `static` is where the static fields come from (:func:`find_static`, looked up in
    `input_dir` if None); a build finds it once for every day.
    """
    grid, n_levels = spec.grid, spec.n_levels
    static = find_static(input_dir, spec) if static is None else static
    values: dict[str, np.ndarray] = dict(static.fields)
    times = None
    for stream, path in day_paths(input_dir, day).items():
        stream_times = _read_stream(path, stream, spec, values, check_values, static)
        times = stream_times if times is None else times
    n_time = times.shape[0]
    x2d = np.stack(
        [np.broadcast_to(values[v.name], (n_time,) + grid.shape) for v in variables.X2D], axis=-1
    )  # (T, H, W, 6)
    x3d = np.stack([values[v.name] for v in variables.X3D], axis=-2)  # (T, H, W, 8, L)
    x3d = x3d.reshape(x3d.shape[:3] + (len(variables.X3D) * n_levels,))  # (T, H, W, 8·L)
    return DayData(
        day=day,
        times=times,
        x2d=np.ascontiguousarray(x2d, np.float32),
        x3d=np.ascontiguousarray(x3d, np.float32),
        bcb=values[variables.TARGET.name],
        airmass=values["airmass"],
    )


def scan_day(
    input_dir: str | os.PathLike, day: int, spec: DatasetSpec, static: StaticFields | None = None
) -> None:
    """Validates the structure of `day`'s files (names, dims, units, grid, time axis) without
    reading data."""
    static = find_static(input_dir, spec) if static is None else static
    for stream, path in day_paths(input_dir, day).items():
        _read_stream(path, stream, spec, None, False, static)


def iter_examples(
    input_dir: str | os.PathLike,
    split: SplitRange,
    days: list[int],
    spec: DatasetSpec,
    static: StaticFields | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields ``(key, example)`` per time step of `days` (of `split`), in time order.

    Examples hold ``x2d (H, W, 6)``, ``x3d (H, W, 8·L)``, ``bcb (H, W, L)``,
    ``airmass (H, W, L)`` and ``time`` (float64 days since 1850-01-01). See :func:`example_key`.
    """
    static = find_static(input_dir, spec) if static is None else static
    for day in days:
        yield from day_examples(input_dir, day, spec, split, static)


def example_key(time: float, split: SplitRange, spec: DatasetSpec) -> int:
    """Integer key of the step at `time`: unique, increasing in time, spread over [0, 2¹²⁸).

    TFDS writes examples with ``disable_shuffling`` in key order through 1000 temporary buckets
    that split the 128-bit key range evenly, and sorts one bucket at a time in memory. Plain step
    numbers would all land in bucket 0 and the whole split would be sorted in memory; spreading
    the split's steps over the key range keeps a build's memory bounded (a few steps a bucket).
    """
    n_steps = (split.last_day - split.first_day + 1) * spec.steps_per_day
    step = int(np.floor((time - split.first_day) * spec.steps_per_day))
    return step * (2**128 // n_steps)


def day_examples(
    input_dir: str | os.PathLike,
    day: int,
    spec: DatasetSpec,
    split: SplitRange,
    static: StaticFields | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The ``(key, example)`` pairs of one day of `split` (see :func:`iter_examples`)."""
    data = read_day(input_dir, day, spec, static=static)
    for t, time in enumerate(data.times):
        yield (
            example_key(time, split, spec),
            {
                "x2d": data.x2d[t],
                "x3d": data.x3d[t],
                "bcb": data.bcb[t],
                "airmass": data.airmass[t],
                "time": np.float64(time),
            },
        )


def _in_stream(stream: str) -> tuple[variables.Variable, ...]:
    return tuple(v for v in READ_VARIABLES if variables.file_stream(v) == stream)


def _open(path: Path, stream: str | None) -> netCDF4.Dataset:
    """Opens a daily file of `stream`, or the static (annual) file if `stream` is None."""
    try:
        return netCDF4.Dataset(path, "r")
    except (OSError, RuntimeError) as err:
        if stream is None:
            what, names = "the static (annual) file", [v.name for v in STATIC_VARIABLES]
        else:
            what, names = f"stream {stream!r}", [v.name for v in _in_stream(stream)]
        raise ValueError(
            f"{path} is not a readable netCDF file; {what} must hold variables {names}. "
            f"Received: {err}"
        ) from None


def _read_stream(
    path: Path,
    stream: str,
    spec: DatasetSpec,
    out: dict[str, np.ndarray] | None,
    check_values: bool,
    static: StaticFields,
) -> np.ndarray:
    """Validates one stream file; reads its variables into `out` unless None. Returns times.

    The static fields are read here only if `static` says the daily files hold them.
    """
    if not path.exists():
        raise ValueError(
            f"Missing file {path}: stream {stream!r} must hold variables "
            f"{[v.name for v in _in_stream(stream)]}."
        )
    with _open(path, stream) as ds:
        times = _check_time(ds, path, spec)
        _check_grid(ds, path, spec)
        for v in _in_stream(stream):
            if static.path is not None and not v.time_varying:
                continue  # from the annual file
            if v.name not in ds.variables:
                hint = (
                    f" Static fields come from ModelE's annual file ({STATIC_FILE_GLOB}, e.g. "
                    "ANN2012.xaijE3oma.nc) when the input folder holds one, or from the file "
                    "given with --static-file; otherwise every aijh1 file must hold them."
                    if not v.time_varying
                    else ""
                )
                raise ValueError(
                    f"{path}: variable {v.name!r} ({v.long_name}, {v.units}) is missing from "
                    f"stream {stream!r}. Variables in the file: {sorted(ds.variables)}.{hint}"
                )
            data = _read_variable(ds, path, v, spec, times, out is not None, check_values)
            if out is not None:
                out[v.name] = data
    return times


def _read_static_file(path: Path, spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Reads and validates the static fields of an annual file: ``{name: (H, W) float32}``."""
    with _open(path, None) as ds:
        _check_grid(ds, path, spec)
        fields = {}
        for v in STATIC_VARIABLES:
            if v.name not in ds.variables:
                raise ValueError(
                    f"{path}: variable {v.name!r} ({v.long_name}, {v.units}) is missing from "
                    f"the static (annual) file. Variables in the file: {sorted(ds.variables)}"
                )
            times = None
            if "time" in ds.variables and ds.variables["time"].dimensions == ("time",):
                times = np.asarray(np.ma.getdata(ds.variables["time"][:]), np.float64)
            fields[v.name] = _read_variable(ds, path, v, spec, times, True, True)
    return fields


def _read_variable(
    ds: netCDF4.Dataset,
    path: Path,
    v: variables.Variable,
    spec: DatasetSpec,
    times: np.ndarray | None,
    read: bool,
    check_values: bool,
) -> np.ndarray | None:
    """Checks dims, dtype and units of `v` in `ds`; if `read`, returns its lowest L levels
    channels-last (``(T, H, W, L)``, ``(T, H, W)``, or ``(H, W)`` for a static field)."""
    var = ds.variables[v.name]
    dims = tuple(var.dimensions)
    allowed = _expected_dims(v)
    if dims not in allowed:
        raise ValueError(
            f"{path}: variable {v.name!r} must have dimensions "
            f"{' or '.join(map(str, allowed))}. Received: {dims}"
        )
    packed = any(hasattr(var, a) for a in ("scale_factor", "add_offset"))
    if var.dtype.kind != "f" and not packed:
        raise ValueError(
            f"{path}: variable {v.name!r} is stored as {var.dtype}; it must be floating point "
            f"(float32 or float64) in {v.units}, or integers CF-packed with `scale_factor`/"
            "`add_offset`."
        )
    given = getattr(var, "units", None)
    if given is not None and not units.same(str(given), v.units):
        factor = units.scale(str(given), v.units)
        hint = (
            f": values in {given!r} are {factor:g} times values in {v.units!r}"
            if factor is not None
            else ""
        )
        raise ValueError(
            f"{path}: variable {v.name!r} has units {str(given)!r}, but the data contract says "
            f"{v.units!r}{hint}. Convert the values and the attribute (docs/data_contract.md)."
        )
    if not read:
        return None
    index = (slice(None), slice(0, spec.n_levels)) if v.is_3d else ()
    data = var[index]
    if check_values:
        _check_values(data, path, v, dims, times, spec)
    data = np.asarray(np.ma.getdata(data), np.float32)
    if not v.time_varying:
        return _static_field(data, path, v, dims, spec)
    if v.is_3d:
        data = data.transpose(0, 2, 3, 1)  # (T, L, H, W) -> (T, H, W, L)
    return np.ascontiguousarray(data)


def _static_field(
    data: np.ndarray, path: Path, v: variables.Variable, dims: tuple[str, ...], spec: DatasetSpec
) -> np.ndarray:
    """A static field's ``(H, W)`` values, checked constant along its time axis if it has one."""
    if dims[0] == "time":
        changed = np.abs(data - data[:1]) > STATIC_RTOL * np.abs(data[:1])  # (T, H, W)
        if changed.any():
            t, j, i = np.unravel_index(np.argmax(changed), changed.shape)
            raise ValueError(
                f"{path}: variable {v.name!r} is a static field, so it must be the same at every "
                f"time step of its time axis; it differs between time index 0 and {t} at "
                f"{_place(('lat', 'lon'), (j, i), None, spec)}: {data[0, j, i]:g} vs "
                f"{data[t, j, i]:g} {v.units}."
            )
        data = data[0]  # (T, H, W) -> (H, W)
    if v.name == "axyp":
        sphere = 4 * math.pi * EARTH_RADIUS**2
        total = float(np.sum(data, dtype=np.float64))
        if not math.isclose(total, sphere, rel_tol=AREA_RTOL):
            raise ValueError(
                f"{path}: variable 'axyp' (grid cell area) must sum to the sphere's area "
                f"4πa² = {sphere:.4g} m² (a = {EARTH_RADIUS:g} m) to {AREA_RTOL:.0%}. "
                f"Received: {total:.4g} m² ({total / sphere:.4g} times)."
            )
    return np.ascontiguousarray(data)


def _expected_dims(v: variables.Variable) -> tuple[tuple[str, ...], ...]:
    if not v.time_varying:
        return (("lat", "lon"), ("time", "lat", "lon"))
    return (("time", "level", "lat", "lon"),) if v.is_3d else (("time", "lat", "lon"),)


def _check_time(ds: netCDF4.Dataset, path: Path, spec: DatasetSpec) -> np.ndarray:
    if "time" not in ds.variables:
        raise ValueError(f"{path}: variable 'time' is missing; every stream needs a time axis.")
    var = ds.variables["time"]
    calendar_name = getattr(var, "calendar", None)
    time_units = " ".join(str(getattr(var, "units", "")).split())
    if calendar_name not in calendar.CALENDARS or not _TIME_UNITS.match(time_units):
        hint = (
            " (another reference time would shift every stamp)"
            if time_units.startswith("days since") and calendar_name in calendar.CALENDARS
            else ""
        )
        raise ValueError(
            f"{path}: variable 'time' must be in {calendar.TIME_UNITS!r}, calendar 'noleap'. "
            f"Received: units={time_units!r}, calendar={calendar_name!r}{hint}"
        )
    times = np.asarray(np.ma.getdata(var[:]), np.float64)
    day = _day_of_path(path)
    expected = expected_times(day, spec.steps_per_day, spec.stamp_phase)
    unique, counts = np.unique(np.round(times / TIME_ATOL).astype(np.int64), return_counts=True)
    if (counts > 1).any():
        dup = unique[counts > 1][0] * TIME_ATOL
        raise ValueError(f"{path}: variable 'time' has a duplicate time stamp {dup:.6f} days.")
    if not np.all(np.diff(times) > 0):
        raise ValueError(f"{path}: variable 'time' must increase. Received: {times}")
    if times.shape != expected.shape or not np.allclose(times, expected, rtol=0, atol=TIME_ATOL):
        raise ValueError(f"{path}: variable 'time' {_describe_stamps(times, day, spec)}")
    return times


def _describe_stamps(times: np.ndarray, day: int, spec: DatasetSpec) -> str:
    """Says in words how the stamps of a day's file differ from what `spec` expects."""
    expected = (
        f"dataset config {spec.name!r} expects {spec.steps_per_day} steps a day "
        f"({_interval(spec.steps_per_day)}) stamped at day + (k + {spec.stamp_phase:g})/"
        f"{spec.steps_per_day}"
    )
    n = times.size
    offsets = (times - day) * n - np.arange(n)  # the phase of each stamp if n a day, evenly
    if n and np.all(np.isclose(offsets, offsets[0], rtol=0, atol=1e-3)) and 0 < offsets[0] < 1:
        have = (
            f"holds {n} evenly spaced steps of {format_date(day)} ({_interval(n)}) stamped at "
            f"day + (k + {offsets[0]:.4g})/{n}"
        )
        match = [
            name
            for name, (steps, phase) in _builder_layouts().items()
            if steps == n and abs(phase - offsets[0]) < 1e-3
        ]
        hint = (
            f"Build with --config {' or '.join(match)}"
            if match
            else f"Build with a config of steps_per_day={n}, stamp_phase={offsets[0]:.4g} "
            "(--split ranges keep a registered config's grid and L)"
        )
        if n == 8 and abs(offsets[0] - 11 / 12) < 1e-3:
            hint += " (`bcb-emulator simulate --preset demo` writes 3-hourly output)"
        elif n == 48 and abs(offsets[0] - 0.5) < 1e-3:
            hint += " (`bcb-emulator simulate --preset coarse/native` and ModelE write these)"
        return f"{have}, but the {expected}. {hint}."
    want = expected_times(day, spec.steps_per_day, spec.stamp_phase)
    missing = [t for t in want if not np.isclose(times, t, rtol=0, atol=TIME_ATOL).any()]
    stray = [t for t in times if not np.isclose(want, t, rtol=0, atol=TIME_ATOL).any()]
    return (
        f"holds {n} stamps that are not a day of evenly spaced steps, but the {expected}: "
        f"{len(missing)} expected stamps are missing ({_clock(missing, day)}) and {len(stray)} "
        f"are stray ({_clock(stray, day)}): a calendar gap, a shift, or stray stamps."
    )


def _clock(times: list[float], day: int) -> str:
    """The first few stamps as ``+D HH:MM`` from the start of `day` (``none`` if empty)."""
    if not times:
        return "none"
    words = []
    for t in times[:4]:
        minutes = int(round((t - day) * 1440))
        d, m = divmod(minutes, 1440)
        words.append(f"{'+' + str(d) + 'd ' if d else ''}{m // 60:02d}:{m % 60:02d}")
    return ", ".join(words) + (", ..." if len(times) > 4 else "")


def _interval(steps_per_day: int) -> str:
    minutes = 24 * 60 / steps_per_day
    return f"every {minutes / 60:g} h" if minutes >= 60 else f"every {minutes:g} min"


def _builder_layouts() -> dict[str, tuple[int, float]]:
    """``{config name: (steps_per_day, stamp_phase)}`` of the registered builder configs."""
    from tfds_builders.modele_bcb.modele_bcb_dataset_builder import Builder

    return {
        name: (config.spec.steps_per_day, config.spec.stamp_phase)
        for name, config in Builder.builder_configs.items()
    }


def _check_grid(ds: netCDF4.Dataset, path: Path, spec: DatasetSpec) -> None:
    grid = spec.grid
    for dim, size, coord in (("lat", grid.jm, grid.lat), ("lon", grid.im, grid.lon)):
        if dim not in ds.dimensions or len(ds.dimensions[dim]) != size:
            got = len(ds.dimensions[dim]) if dim in ds.dimensions else None
            raise ValueError(
                f"{path}: dimension {dim!r} must have size {size} (grid {grid.name!r}, "
                f"{grid.jm}x{grid.im}). Received: {got}"
            )
        if dim in ds.variables:
            values = np.asarray(ds.variables[dim][:], np.float64)
            if not np.allclose(values, coord, rtol=0, atol=COORD_ATOL):
                raise ValueError(
                    f"{path}: variable {dim!r} does not match grid {grid.name!r}. "
                    f"Expected {coord[:3]}..., received {values[:3]}..."
                )
    if "level" in ds.dimensions:
        n = len(ds.dimensions["level"])
        if n < spec.n_levels:
            raise ValueError(
                f"{path}: dimension 'level' must have at least L={spec.n_levels} levels. "
                f"Received: {n}"
            )
        if "level" in ds.variables:
            levels = np.asarray(ds.variables["level"][: spec.n_levels], np.float64)
            if not np.array_equal(levels, np.arange(1, spec.n_levels + 1)):
                raise ValueError(
                    f"{path}: variable 'level' must start 1, 2, ..., {spec.n_levels} "
                    f"(bottom up). Received: {levels}"
                )


def _check_values(
    data: np.ndarray,
    path: Path,
    v: variables.Variable,
    dims: tuple[str, ...],
    times: np.ndarray | None,
    spec: DatasetSpec,
) -> None:
    """No fill values, all finite, all in ``v.valid_range``; errors say where (index, time,
    level, lat, lon) and what was expected."""
    name = v.name
    mask = np.ma.getmaskarray(data) if np.ma.isMaskedArray(data) else None
    if mask is not None and mask.any():
        where = np.unravel_index(np.argmax(mask), mask.shape)
        raise ValueError(
            f"{path}: variable {name!r} has fill (missing) values, first at "
            f"{_place(dims, where, times, spec)} ({np.count_nonzero(mask)} in all); every value "
            f"must be a number in {v.range_text()}."
        )
    raw = np.ma.getdata(data)
    finite = np.isfinite(raw)
    if not finite.all():
        where = np.unravel_index(np.argmin(finite), raw.shape)
        raise ValueError(
            f"{path}: variable {name!r} must be finite; found {raw[where]} at "
            f"{_place(dims, where, times, spec)} ({np.size(raw) - np.count_nonzero(finite)} "
            f"non-finite values); expected {v.range_text()}."
        )
    lower, upper = v.valid_range
    outside = ((raw <= lower) if v.lower_open else (raw < lower)) | (raw > upper)
    if outside.any():
        where = np.unravel_index(np.argmax(outside), raw.shape)
        count = np.count_nonzero(outside)
        raise ValueError(
            f"{path}: variable {name!r} ({v.long_name}) must be in {v.range_text()}; found "
            f"{raw[where]:g} at {_place(dims, where, times, spec)} "
            f"({count} value{'s' if count > 1 else ''} outside)."
        )


def _place(dims: tuple[str, ...], index: tuple, times: np.ndarray | None, spec: DatasetSpec) -> str:
    """Where `index` (of an array with `dims`) is, in words: time, level, lat, lon and index."""
    words = []
    for dim, i in zip(dims, index, strict=True):
        i = int(i)
        if dim == "time":
            stamp = f"{_stamp(times[i])}, " if times is not None and i < times.size else ""
            words.append(f"time {stamp}index {i}")
        elif dim == "level":
            words.append(f"level {i + 1}")
        elif dim == "lat":
            words.append(f"lat {spec.grid.lat[i]:g}")
        elif dim == "lon":
            words.append(f"lon {spec.grid.lon[i]:g}")
    return f"{', '.join(words)} (index {tuple(int(i) for i in index)})"


def _stamp(time: float) -> str:
    """``YYYY-MM-DD HH:MM`` of a time stamp (days since 1850-01-01, ``noleap``)."""
    day = math.floor(time)
    minutes = int(round((time - day) * 1440))
    return f"{format_date(day)} {minutes // 60:02d}:{minutes % 60:02d}"


def _day_of_path(path: Path) -> int:
    stamp = path.name[:8]
    return calendar.day_number(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
