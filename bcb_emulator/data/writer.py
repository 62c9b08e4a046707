"""Writing daily files in the ModelE E3 "OMA" layout (``docs/data_contract.md``).

One netCDF file per day and stream, ``YYYYMMDD.<stream>E3oma.nc``, dims ``time, level, lat,
lon``, float ``level`` 1..L, ``noleap`` calendar, time stamps at HH:15 / HH:45 for half-hourly
output (the middle of each 30-minute step). Static fields (``axyp``, ``landfr``) go into the
``aijh1`` file with dims ``(lat, lon)``. Files are zlib-compressed and written atomically: a
temporary file in the same folder is renamed into place only once complete, so an interrupted
run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import netCDF4
import numpy as np

from bcb_emulator import variables
from bcb_emulator.data.calendar import CALENDAR, TIME_UNITS, yyyymmdd
from bcb_emulator.grid import Grid


def write_day(
    out_dir: str | os.PathLike,
    day: int,
    times: np.ndarray,
    fields: Mapping[str, np.ndarray],
    static: Mapping[str, np.ndarray],
    grid: Grid,
    n_levels: int,
    complevel: int = 1,
) -> list[Path]:
    """Writes one day of output as the five ModelE stream files, atomically.

    Args:
        out_dir: destination folder (created if missing).
        day: day number (days since 1850-01-01, noleap) of the files.
        times: ``(T,)`` time stamps in days since 1850-01-01 (fractional), increasing.
        fields: every time-varying registry variable, by name: ``(T, L, jm, im)`` for 3D,
            ``(T, jm, im)`` for 2D, in the units of the registry.
        static: ``axyp`` and ``landfr``, ``(jm, im)``.
        grid: horizontal grid of the fields.
        n_levels: ``L``, the number of levels written.
        complevel: zlib compression level (1: float fields barely compress further at higher
            levels, which cost a third more time).

    Returns:
        The paths written, one per stream.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times = np.asarray(times, np.float64)
    n_time = times.shape[0]
    expected = {
        v.name: ((n_time, n_levels) if v.is_3d else (n_time,)) + grid.shape
        for v in variables.ALL
        if v.time_varying
    }
    expected.update({v.name: grid.shape for v in variables.ALL if not v.time_varying})
    given = {**fields, **static}
    for name, shape in expected.items():
        if name not in given:
            raise ValueError(f"`fields` must hold variable {name!r}; it is missing.")
        if given[name].shape != shape:
            raise ValueError(
                f"Variable {name!r} must have shape {shape}. Received: {given[name].shape}"
            )
    stamp = yyyymmdd(day)
    written = []
    for stream in variables.STREAMS:
        path = out_dir / variables.filename(stamp, stream)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            _write_stream(tmp, stream, times, given, grid, n_levels, complevel)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        written.append(path)
    return written


def _write_stream(
    path: Path,
    stream: str,
    times: np.ndarray,
    values: Mapping[str, np.ndarray],
    grid: Grid,
    n_levels: int,
    complevel: int,
) -> None:
    """Writes the variables of `stream` to `path` (a temporary name)."""
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncattr("Conventions", "CF-1.8")
        ds.setncattr("source", "bcb_emulator reference transport model (ModelE E3 layout)")
        stream_vars = variables.in_stream(stream)
        ds.createDimension("time", None)
        coords = {"time": (("time",), times, {"units": TIME_UNITS, "calendar": CALENDAR})}
        if any(v.is_3d for v in stream_vars):
            ds.createDimension("level", n_levels)
            levels = np.arange(1, n_levels + 1, dtype=np.float64)
            coords["level"] = (("level",), levels, {"units": "1", "positive": "up"})
        ds.createDimension("lat", grid.jm)
        ds.createDimension("lon", grid.im)
        coords["lat"] = (("lat",), grid.lat, {"units": "degrees_north"})
        coords["lon"] = (("lon",), grid.lon, {"units": "degrees_east"})
        for name, (dims, data, attrs) in coords.items():
            var = ds.createVariable(name, "f8", dims)
            var.setncatts(attrs)
            var[:] = data
        for v in stream_vars:
            if not v.time_varying:
                dims = ("lat", "lon")
            elif v.is_3d:
                dims = ("time", "level", "lat", "lon")
            else:
                dims = ("time", "lat", "lon")
            var = ds.createVariable(
                v.name, "f4", dims, zlib=True, complevel=complevel, shuffle=True
            )
            var.setncatts({"units": v.units, "long_name": v.long_name})
            var[:] = np.asarray(values[v.name], np.float32)
