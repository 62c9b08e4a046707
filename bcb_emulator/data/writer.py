"""Writing daily files in the ModelE E3 "OMA" layout (``docs/data_contract.md``).

One netCDF file per day and stream, ``YYYYMMDD.<stream>E3oma.nc``, dims ``time, level, lat,
lon``, float ``level`` 1..L, ``noleap`` calendar, time stamps at HH:15 / HH:45 for half-hourly
output (the middle of each 30-minute step). Static fields (``axyp``, ``landfr``) go into the
``aijh1`` file with dims ``(lat, lon)``. Files are zlib-compressed and written atomically: a
temporary file in the same folder is renamed into place only once complete, so an interrupted
run never leaves a half-written file under a final name; :func:`remove_stale_temporaries`
clears what a killed run left.

Each compressed chunk holds one level of one variable over the whole day, ``(T, 1, lat, lon)``
(``(T, lat, lon)`` for 2D): successive time stamps of a level differ little, so after the
byte shuffle zlib finds long repeats, and the day compresses to less than half the size of
per-stamp chunks in half the time. The chunking changes the file's bytes, not its values.

:class:`BackgroundWriter` runs the writing on a thread while the model computes the next day.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Mapping
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
        n_time = times.shape[0]
        for v in stream_vars:
            if not v.time_varying:
                dims, chunks = ("lat", "lon"), grid.shape
            elif v.is_3d:
                dims, chunks = ("time", "level", "lat", "lon"), (n_time, 1) + grid.shape
            else:
                dims, chunks = ("time", "lat", "lon"), (n_time,) + grid.shape
            var = ds.createVariable(
                v.name, "f4", dims, zlib=True, complevel=complevel, shuffle=True,
                chunksizes=chunks,
            )  # fmt: skip
            var.setncatts({"units": v.units, "long_name": v.long_name})
            var[:] = np.asarray(values[v.name], np.float32)


#: Temporary names the reference model writes next to its outputs (day files, restart files,
#: config records): ``<final name>.tmp<pid>``, and ``.tmp<pid>.npz`` for restart files
#: (``numpy.savez`` insists on the suffix).
_TEMPORARY = re.compile(
    r"^(\d{8}\.\w+E3oma\.nc|restart_\w+\.npz|simulation_\w+\.json)\.tmp(?P<pid>\d+)(\.npz)?$"
)


def remove_stale_temporaries(out_dir: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files a killed run left in `out_dir`; returns those deleted.

    Only names this package writes (a day file's, a restart file's or a config record's name
    followed by ``.tmp<pid>``) are considered, and only those of a process that no longer runs,
    or of this process (call it before this process writes into `out_dir`): a run writing
    into the same folder at the same time keeps its files.
    """
    removed = []
    for path in sorted(Path(out_dir).glob("*.tmp*")):
        match = _TEMPORARY.match(path.name)
        if match is None or not path.is_file():
            continue
        pid = int(match["pid"])
        if pid != os.getpid() and _process_exists(pid):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _process_exists(pid: int) -> bool:
    """Whether a process with id `pid` exists (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class BackgroundWriter:
    """Runs write jobs one after the other, in order, on one background thread.

    netCDF and zlib release the GIL while they compress and write, so the model's next day
    computes meanwhile. At most `depth` jobs wait; :meth:`submit` blocks beyond that, which
    bounds memory. An error in a job is raised again by the next :meth:`submit` or by
    :meth:`close`, and no later job runs. With ``threaded=False`` every job runs at once in
    the caller's thread (the reference for tests).

    Args:
        threaded: run jobs on the background thread (else synchronously).
        depth: jobs that may wait behind the running one.

    Example:

    >>> with BackgroundWriter() as jobs:  # doctest: +SKIP
    ...     jobs.submit(write_day, out_dir, day, times, fields, static, grid, n_levels)
    """

    def __init__(self, threaded: bool = True, depth: int = 1):
        self.threaded = threaded
        self.depth = depth
        self._error: BaseException | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._thread = None
        if threaded:
            self._thread = threading.Thread(target=self._work, name="bcb-writer", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is None:
                fn, args = job
                try:
                    fn(*args)
                except BaseException as err:  # noqa: BLE001 - handed to the caller
                    self._error = err

    def check(self) -> None:
        """Raises the error of an earlier job, if any (every later call raises it again)."""
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable, *args) -> None:
        """Queues ``fn(*args)``; raises the error of an earlier job, if any."""
        self.check()
        if self._thread is None:
            fn(*args)
        else:
            self._jobs.put((fn, args))

    def close(self) -> None:
        """Waits for every queued job; raises the error of a job, if any."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        self.check()

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Jobs already queued are whole days: they are finished even when the caller failed.
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except BaseException:  # noqa: BLE001 - the caller's error is the one to raise
                pass
