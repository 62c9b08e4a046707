"""Reading and validating the daily ModelE E3 files of one dataset (``docs/data_contract.md``).

Everything that reads ModelE netCDF goes through here: the TFDS builder, the statistics and the
naive benchmark loader. Every check raises a ``ValueError`` naming the file, the variable and
what was expected, so that bad input fails before any record is written:

- a missing file (stream) of a day, or a day missing inside a split's date range;
- a file that is not netCDF;
- a missing variable, or one with other dimensions than the data contract;
- a grid (``lat``/``lon`` sizes or coordinates) other than the dataset's, fewer levels than ``L``;
- a time axis in another calendar or unit, with duplicate stamps, a gap, or other stamps than
  ``day + (k + stamp_phase) / steps_per_day``;
- NaN, Inf or fill values in the data that is kept.

Array layout of a day (channels-last, as inside the package):

- ``x2d``: ``(T, H, W, 6)``, channels in registry order (``variables.X2D``);
- ``x3d``: ``(T, H, W, 8·L)``, variable-major: channel ``i·L + k`` is variable
  ``variables.X3D[i]`` on level ``k + 1``;
- ``bcb``, ``airmass``: ``(T, H, W, L)``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np

from bcb_emulator import variables
from bcb_emulator.data import calendar
from bcb_emulator.data.calendar import expected_times, format_date
from bcb_emulator.data.spec import DatasetSpec, SplitRange

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
    input_dir: str | os.PathLike, day: int, spec: DatasetSpec, *, check_values: bool = True
) -> DayData:
    """Reads and validates the files of `day`; see the module docstring for the checks."""
    grid, n_levels = spec.grid, spec.n_levels
    values: dict[str, np.ndarray] = {}
    times = None
    for stream, path in day_paths(input_dir, day).items():
        stream_times = _read_stream(path, stream, spec, values, check_values)
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


def scan_day(input_dir: str | os.PathLike, day: int, spec: DatasetSpec) -> None:
    """Validates the structure of `day`'s files (names, dims, grid, time axis) without data."""
    for stream, path in day_paths(input_dir, day).items():
        _read_stream(path, stream, spec, None, False)


def iter_examples(
    input_dir: str | os.PathLike, split: SplitRange, days: list[int], spec: DatasetSpec
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yields ``(key, example)`` per time step of `days` (of `split`), in time order.

    Examples hold ``x2d (H, W, 6)``, ``x3d (H, W, 8·L)``, ``bcb (H, W, L)``,
    ``airmass (H, W, L)`` and ``time`` (float64 days since 1850-01-01). See :func:`example_key`.
    """
    for day in days:
        yield from day_examples(input_dir, day, spec, split)


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
    input_dir: str | os.PathLike, day: int, spec: DatasetSpec, split: SplitRange
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The ``(key, example)`` pairs of one day of `split` (see :func:`iter_examples`)."""
    data = read_day(input_dir, day, spec)
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


def _open(path: Path, stream: str) -> netCDF4.Dataset:
    try:
        return netCDF4.Dataset(path, "r")
    except (OSError, RuntimeError) as err:
        names = [v.name for v in _in_stream(stream)]
        raise ValueError(
            f"{path} is not a readable netCDF file; stream {stream!r} must hold variables "
            f"{names}. Received: {err}"
        ) from None


def _read_stream(
    path: Path,
    stream: str,
    spec: DatasetSpec,
    out: dict[str, np.ndarray] | None,
    check_values: bool,
) -> np.ndarray:
    """Validates one stream file; reads its variables into `out` unless None. Returns times."""
    if not path.exists():
        raise ValueError(
            f"Missing file {path}: stream {stream!r} must hold variables "
            f"{[v.name for v in _in_stream(stream)]}."
        )
    with _open(path, stream) as ds:
        times = _check_time(ds, path, spec)
        _check_grid(ds, path, spec)
        for v in _in_stream(stream):
            if v.name not in ds.variables:
                raise ValueError(
                    f"{path}: variable {v.name!r} ({v.long_name}, {v.units}) is missing from "
                    f"stream {stream!r}. Variables in the file: {sorted(ds.variables)}"
                )
            var = ds.variables[v.name]
            dims = _expected_dims(v)
            if tuple(var.dimensions) != dims:
                raise ValueError(
                    f"{path}: variable {v.name!r} must have dimensions {dims}. "
                    f"Received: {tuple(var.dimensions)}"
                )
            if out is None:
                continue
            index = (slice(None), slice(0, spec.n_levels)) if v.is_3d else ()
            data = var[index]
            if check_values:
                _check_values(data, path, v.name)
            data = np.asarray(np.ma.getdata(data), np.float32)
            if v.is_3d:
                data = data.transpose(0, 2, 3, 1)  # (T, L, H, W) -> (T, H, W, L)
            out[v.name] = np.ascontiguousarray(data)
    return times


def _expected_dims(v: variables.Variable) -> tuple[str, ...]:
    if not v.time_varying:
        return ("lat", "lon")
    return ("time", "level", "lat", "lon") if v.is_3d else ("time", "lat", "lon")


def _check_time(ds: netCDF4.Dataset, path: Path, spec: DatasetSpec) -> np.ndarray:
    if "time" not in ds.variables:
        raise ValueError(f"{path}: variable 'time' is missing; every stream needs a time axis.")
    var = ds.variables["time"]
    calendar_name = getattr(var, "calendar", None)
    units = " ".join(str(getattr(var, "units", "")).split())
    if calendar_name not in calendar.CALENDARS or not units.startswith("days since 1850-01-01"):
        raise ValueError(
            f"{path}: variable 'time' must be in {calendar.TIME_UNITS!r}, calendar 'noleap'. "
            f"Received: units={units!r}, calendar={calendar_name!r}"
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


def _check_values(data: np.ndarray, path: Path, name: str) -> None:
    if np.ma.isMaskedArray(data) and np.ma.getmaskarray(data).any():
        raise ValueError(f"{path}: variable {name!r} has fill (missing) values.")
    raw = np.ma.getdata(data)
    finite = np.isfinite(raw)
    if not finite.all():
        where = np.unravel_index(np.argmin(finite), raw.shape)
        raise ValueError(
            f"{path}: variable {name!r} must be finite; found {raw[where]} at index {where} "
            f"({np.size(raw) - np.count_nonzero(finite)} non-finite values)."
        )


def _day_of_path(path: Path) -> int:
    stamp = path.name[:8]
    return calendar.day_number(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
