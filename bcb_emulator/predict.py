"""Running an exported emulator over ModelE daily files, writing ModelE-format BCB files.

`predict_files` reads the daily files of a date range (``bcb_emulator.data.reader``, every
check of ``docs/data_contract.md``), runs the SavedModel of ``bcb-emulator export`` on each
time step, and writes ``YYYYMMDD.taijlh1E3oma.nc`` per day: a copy of the input's ``taijlh1``
file (dimensions, global and variable attributes, coordinates, the ``time`` axis with its
``noleap`` calendar and stamps, ``airmass``) whose ``BCB`` holds the emulated values. Other
variables of the input's ``taijlh1`` (ModelE writes every tracer there) are not copied: the
file holds what was emulated and what the package's reader needs. Levels above L, if the input
has them (ModelE's 62), are written as fill values. The package's builder and evaluation read
these files like ModelE's: put them beside the other four streams of the same days.

- Memory: one day at a time, plus the context (the last T − 1 steps: the encoded `state` with
  ``signature="step"``, the raw inputs with ``"serving_default"``).
- Resumable: a day whose output exists and was written by the same export is skipped; files
  are written under a temporary name and renamed, so an existing file is complete. An output
  written by another export is an error unless ``overwrite``. After a skipped day the context
  is read again from the input files (the encoded state then differs by rounding only).
- Emission memory (`ModelConfig.emission_memory_days`, and the advected memory of
  `ModelConfig.advected_memory_days`): its ``x2d`` channels are computed here
  (`emission_memory`, ``bcb_emulator.data.pipeline.AdvectedMemory``), starting at the first
  step read (the context of `start`, as the training pipeline starts at a split's first step)
  and carried from day to day; skipped days are read too, so that a resumed run continues the
  same memory.
- The first T − 1 steps. Step `k` of a day needs the T − 1 steps before it; for the first day
  of the range (and the first day after a skipped one) they come from the previous days' files
  in `input_dir` (as many days as T − 1 steps need). If they are missing, `predict_files`
  fails naming the file, unless ``pad_first``: then the missing steps are copies of the
  earliest step read (persistence), and the days concerned record how many of their first
  steps saw such copies in the global attribute ``bcb_emulator_padded_steps``.

Example:

>>> predict_files("saved_models/bcb_emulator/1", "modele_run/", "2012-07-01", "2012-07-31",
...               "emulated/")  # doctest: +SKIP
PredictSummary(written=[...], skipped=[], padded_steps=0)
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import netCDF4
import numpy as np

from bcb_emulator import variables
from bcb_emulator.config import ModelConfig
from bcb_emulator.data import calendar, reader
from bcb_emulator.data.pipeline import AdvectedMemory, column_wind
from bcb_emulator.data.spec import DatasetSpec
from bcb_emulator.export import EMISSION_CHANNEL, ExportedModel
from bcb_emulator.paths import remove_partials

#: The stream written.
STREAM = variables.TARGET.stream  # taijlh1
#: Global attribute naming the export that wrote a file (``<name>/<version> exported <time>``).
MODEL_ATTRIBUTE = "bcb_emulator_model"
#: Global attribute: how many of the day's first steps had padded context (``pad_first``).
PADDED_ATTRIBUTE = "bcb_emulator_padded_steps"
SIGNATURES = ("step", "serving_default")
#: A day's file being written (``<file>.tmp<pid>``), renamed into place once complete.
_PARTIAL = r".+\.nc\.tmp(?P<pid>\d+)"
_FIELDS = ("x2d", "x3d", "times")
_PACKING = ("_FillValue", "scale_factor", "add_offset", "valid_min", "valid_max", "valid_range")


@dataclasses.dataclass(frozen=True)
class PredictSummary:
    """What `predict_files` did.

    Attributes:
        written: the files written, in date order.
        skipped: existing complete files of the same export, left as they were.
        padded_steps: steps whose window held padded context (``pad_first``).
    """

    written: list[Path]
    skipped: list[Path]
    padded_steps: int


@dataclasses.dataclass
class _Context:
    """What the next day needs of the steps before it."""

    day: int  # the day they precede
    frames: dict[str, np.ndarray]  # the last T − 1 steps, physical, x2d with its memory
    state: object = None  # their encoded `state` (signature "step"); None: encode `frames`
    padded: int = 0  # steps still to come whose window holds padded frames
    memory: np.ndarray | None = None  # (H, W, M) emission memory at the last step read
    time: float | None = None  # that step's stamp
    advected: np.ndarray | None = None  # (H, W, A) advected emission memory at that step


def emission_memory(
    emission: np.ndarray,
    times: np.ndarray,
    days: tuple[float, ...],
    memory: np.ndarray | None = None,
    time: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The emission-memory channels of consecutive steps (`ModelConfig.emission_memory_days`).

    ``m_τ(t) = a · m_τ(t_prev) + (1 − a) · e(t)``, ``a = exp(−(t − t_prev) / τ)``, in the
    emission's physical units; the recurrence of ``bcb_emulator.data.pipeline.emission_memory``
    (which runs it on the normalized emission: the same after normalization).

    Args:
        emission: ``(S, H, W)`` ``BCB_biomass_src`` of the steps.
        times: ``(S,)`` their stamps, days.
        days: the time scales τ, days.
        memory: ``(H, W, M)`` the memory at the step before, or None to start at the first
            step's emission.
        time: that step's stamp.

    Returns:
        ``(channels (S, H, W, M) float32, memory at the last step, its stamp)``.
    """
    tau = np.asarray(days, np.float64)
    out = np.empty(emission.shape + (tau.size,), np.float32)
    for k, t in enumerate(np.asarray(times, np.float64)):
        e = np.asarray(emission[k], np.float32)[..., None]  # (H, W, 1)
        if memory is None:
            memory = np.repeat(e, tau.size, axis=-1)
        else:
            a = np.exp(-(t - time) / tau).astype(np.float32)  # (M,)
            memory = a * memory + (1.0 - a) * e
        out[k], time = memory, float(t)
    return out, memory, time


def context_frames(
    input_dir: str | os.PathLike,
    day: int,
    steps: int,
    spec: DatasetSpec,
    pad_first: bool = False,
) -> tuple[dict[str, np.ndarray], int]:
    """The `steps` time steps before `day`, read from the previous days' files.

    Args:
        input_dir: folder of the daily files.
        day: the day they precede.
        steps: how many (T − 1).
        spec: the dataset layout.
        pad_first: if the files of a needed day are missing, repeat the earliest step read
            (`day`'s first step if none) instead of failing.

    Returns:
        ``({"x2d": (steps, H, W, 6), "x3d": (steps, H, W, 8·L), "times": (steps,)}, padded)``,
        oldest first; `padded` is the number of repeated steps at the start.
    """
    parts: list[reader.DayData] = []  # oldest first
    previous = day - 1
    while len(parts) * spec.steps_per_day < steps:
        missing = [p for p in reader.day_paths(input_dir, previous).values() if not p.exists()]
        if missing:
            if not pad_first:
                raise ValueError(
                    f"The first steps of {calendar.format_date(day)} need the {steps} steps "
                    f"before it (T - 1) from the files of {calendar.format_date(previous)}, "
                    f"but {missing[0]} is missing. Add the earlier days' files to the input "
                    "folder, start later, or pass `--pad-first` (`pad_first=True`) to repeat "
                    "the earliest step instead."
                )
            break
        parts.insert(0, reader.read_day(input_dir, previous, spec))
        previous -= 1
    if parts:
        frames = {k: np.concatenate([getattr(p, k) for p in parts])[-steps:] for k in _FIELDS}
    elif steps:
        first = reader.read_day(input_dir, day, spec)
        frames = {k: getattr(first, k)[:1] for k in _FIELDS}
    else:  # T = 1: no context
        height, width = spec.grid.shape
        channels = {"x2d": len(variables.X2D), "x3d": len(variables.X3D) * spec.n_levels}
        frames = {k: np.zeros((0, height, width, c), np.float32) for k, c in channels.items()}
        return {**frames, "times": np.zeros((0,), np.float64)}, 0
    padded = steps - frames["x2d"].shape[0] if parts else steps
    if padded:
        times = frames["times"][0] - spec.dt_days * np.arange(padded, 0, -1)
        frames = {
            k: np.concatenate([np.repeat(v[:1], padded, axis=0), v if parts else v[:0]])
            for k, v in frames.items()
        }
        frames["times"][:padded] = times  # copies of the step, at the stamps they stand for
    return {k: np.ascontiguousarray(v) for k, v in frames.items()}, padded


def predict_files(
    model: str | os.PathLike,
    input_dir: str | os.PathLike,
    start: str,
    end: str,
    out_dir: str | os.PathLike,
    *,
    signature: str = "step",
    batch_size: int = 8,
    pad_first: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictSummary:
    """Writes the emulated BCB of every day from `start` to `end` as ModelE files.

    Args:
        model: an export's version folder (``saved_models/<name>/<version>``).
        input_dir: folder of the daily ModelE files (all five streams), in the layout of the
            dataset the model was trained on (grid, L, steps a day: ``assets.extra``).
        start: first day, ``YYYY-MM-DD`` (``noleap``).
        end: last day, inclusive.
        out_dir: where the ``YYYYMMDD.taijlh1E3oma.nc`` files go (not `input_dir`).
        signature: ``"step"`` (default: the coupling step, the encoders once per step) or
            ``"serving_default"`` (full windows, `batch_size` at a time); same results
            within 1e-5 relative.
        batch_size: windows per call with ``"serving_default"``.
        pad_first: repeat the earliest step when the steps before `start` are missing
            (see the module docstring) instead of failing.
        overwrite: recompute days whose output exists (from any export).
        progress: show a progress bar (tqdm) over the days.

    Returns:
        A `PredictSummary`.
    """
    from tqdm.auto import tqdm

    if signature not in SIGNATURES:
        raise ValueError(f"`signature` must be one of {SIGNATURES}. Received: {signature!r}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1. Received: batch_size={batch_size}")
    exported = ExportedModel.open(model)
    spec = exported.spec
    first, last = _parse_day("start", start), _parse_day("end", end)
    if last < first:
        raise ValueError(
            f"`end` must not be before `start`. Received: start={start!r}, end={end!r}"
        )
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if out_dir.resolve() == input_dir.resolve():
        raise ValueError(
            "`out` must be another folder than `input`: the output's taijlh1 files would "
            f"replace the input's. Received: {out_dir}"
        )
    days = list(range(first, last + 1))
    for day in days:  # every file present before the first prediction
        for path in reader.day_paths(input_dir, day).values():
            if not path.exists():
                raise ValueError(
                    f"Missing input file {path}: `predict` needs the five streams of every "
                    f"day from {start} to {end} in {input_dir}."
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_partials(out_dir, _PARTIAL)  # files a killed run was writing
    identity = _identity(exported)
    loaded = exported.load()
    runner = _Runner(exported, loaded, signature, batch_size)
    written, skipped, padded_total = [], [], 0
    memory = _Memory(exported.model_config, spec)
    context: _Context | None = None
    bar = tqdm(days, desc="predict", unit="day", disable=not progress)
    for day in bar:
        path = out_dir / variables.filename(calendar.yyyymmdd(day), STREAM)
        done = path.exists() and not overwrite and _written_by(path, identity)
        if done and not memory:
            skipped.append(path)
            continue
        data = reader.read_day(input_dir, day, spec)
        if context is None or context.day != day:
            frames, padded = context_frames(
                input_dir, day, exported.time_steps - 1, spec, pad_first
            )
            context = _Context(day, frames, padded=padded)
            memory.add(context.frames, frames["times"], context)
        inputs = {"x2d": data.x2d, "x3d": data.x3d}
        memory.add(inputs, data.times, context)
        affected = min(context.padded, spec.steps_per_day)
        context.padded -= affected
        if done:  # read to carry the emission memory on; the file stays as it is
            context = runner.carry(inputs, context)
            skipped.append(path)
            continue
        bcb, context = runner.run_day(inputs, context)  # (S, H, W, L)
        padded_total += affected
        write_prediction(
            input_dir / variables.filename(calendar.yyyymmdd(day), STREAM),
            path,
            bcb,
            identity,
            padded_steps=affected,
        )
        written.append(path)
        bar.set_postfix(written=len(written), skipped=len(skipped))
    bar.close()
    return PredictSummary(written, skipped, padded_total)


def _parse_day(name: str, text: str) -> int:
    """The day `text` (``YYYY-MM-DD``) of argument `name`, or a `ValueError` naming both."""
    try:
        return calendar.parse_date(text)
    except ValueError as err:
        raise ValueError(
            f"`{name}` must be a day YYYY-MM-DD of the noleap calendar ({err}). "
            f"Received: {name}={text!r}"
        ) from err


class _Memory:
    """The memory channels of a model's ``x2d`` (`ModelConfig.emission_memory_days`, then
    `ModelConfig.advected_memory_days`), carried from day to day in a `_Context`."""

    def __init__(self, config: ModelConfig, spec: DatasetSpec):
        self.days = config.emission_memory_days
        self.advected_days = config.advected_memory_days
        self.levels = spec.n_levels
        self.advection = (
            AdvectedMemory(spec.grid, self.advected_days) if self.advected_days else None
        )

    def __bool__(self) -> bool:
        return bool(self.days or self.advected_days)

    def add(self, inputs: dict, times: np.ndarray, context: _Context):
        """Appends the memory channels to ``inputs["x2d"]`` (physical), carrying `context`'s."""
        if not self:
            return
        emission = inputs["x2d"][..., EMISSION_CHANNEL]  # (S, H, W)
        if not len(times):  # no context (T = 1): no channels to compute, nothing to carry
            width = len(self.days) + len(self.advected_days)
            shape = (*inputs["x2d"].shape[:-1], inputs["x2d"].shape[-1] + width)
            inputs["x2d"] = np.zeros(shape, np.float32)
            return
        parts = [inputs["x2d"]]
        time = context.time
        if self.days:
            channels, context.memory, _ = emission_memory(
                emission, times, self.days, context.memory, time
            )
            parts.append(channels)
        if self.advection is not None:
            u, v = (np.asarray(x) for x in column_wind(inputs["x3d"], self.levels))  # (S, H, W)
            memory = context.advected
            if memory is None:
                memory = np.zeros((*emission.shape[1:], len(self.advected_days)), np.float32)
            channels = np.empty((*emission.shape, len(self.advected_days)), np.float32)
            for k, t in enumerate(np.asarray(times, np.float64)):
                elapsed = np.inf if time is None else t - time
                memory = self.advection.step(memory, emission[k], u[k], v[k], elapsed).numpy()
                channels[k], time = memory, float(t)
            context.advected = memory
            parts.append(channels)
        context.time = float(times[-1])
        inputs["x2d"] = np.concatenate(parts, axis=-1)  # (S, H, W, 6 + M + A)


class _Runner:
    """Runs one day through a signature, carrying the context to the next day."""

    def __init__(self, exported: ExportedModel, loaded, signature: str, batch_size: int):
        self.names = exported.input_names
        self.t = exported.time_steps
        self.signature = signature
        self.batch_size = batch_size
        self.fn = loaded.signatures[signature]
        self.init = loaded.signatures["init_state"]

    def _frames(self, inputs, context: _Context) -> dict[str, np.ndarray]:
        return {n: np.concatenate([context.frames[n], inputs[n]]) for n in self.names}

    def _next(self, frames, context: _Context, state) -> _Context:
        n = frames["x2d"].shape[0] - (self.t - 1)  # keep the last T − 1 steps
        keep = {k: np.ascontiguousarray(v[n:]) for k, v in frames.items()}
        return dataclasses.replace(context, day=context.day + 1, frames=keep, state=state)

    def carry(self, inputs, context: _Context) -> _Context:
        """The context after a day that is not computed."""
        return self._next(self._frames(inputs, context), context, None)

    def run_day(self, inputs, context: _Context) -> tuple[np.ndarray, _Context]:
        """BCB `(S, H, W, L)` of the day's steps, and the context after it."""
        frames = self._frames(inputs, context)
        steps = inputs["x2d"].shape[0]
        out = []
        if self.signature == "step":
            state = context.state
            if state is None:
                state = self.init(**{n: context.frames[n][None] for n in self.names})["state"]
            for k in range(steps):
                result = self.fn(**{n: inputs[n][k : k + 1] for n in self.names}, state=state)
                state = result["state"]
                out.append(result["bcb"].numpy())
            return np.concatenate(out), self._next(frames, context, state)
        for start in range(0, steps, self.batch_size):
            ks = range(start, min(start + self.batch_size, steps))
            windows = {n: np.stack([frames[n][k : k + self.t] for k in ks]) for n in self.names}
            out.append(self.fn(**windows)["bcb"].numpy())
        return np.concatenate(out), self._next(frames, context, None)


def _identity(exported: ExportedModel) -> str:
    c = exported.contract
    return f"{c['name']}/{c['version']} exported {c['exported']}"


def _written_by(path: Path, identity: str) -> bool:
    """Whether `path` is a complete output of the export `identity`; an output of another
    export is an error (rerun with ``overwrite``), anything else is rewritten."""
    try:
        with netCDF4.Dataset(path) as ds:
            if MODEL_ATTRIBUTE not in ds.ncattrs():
                return False
            other = ds.getncattr(MODEL_ATTRIBUTE)
    except OSError:
        return False
    if other != identity:
        raise ValueError(
            f"{path} was written by another export ({other}), not by {identity}. Pass "
            "`--overwrite` to replace it, or choose another `--out`."
        )
    return True


def write_prediction(
    source: Path,
    path: Path,
    bcb: np.ndarray,
    identity: str,
    padded_steps: int = 0,
) -> Path:
    """Writes `path` as a copy of the ``taijlh1`` file `source` with `bcb` as ``BCB``.

    Copied: the global attributes, every dimension, the coordinate variables (and the
    variables their ``bounds`` name) and ``airmass``, values and attributes as they are.
    ``BCB`` keeps its attributes (less packing and fill) with `bcb` `(S, H, W, L)` on its
    lowest L levels and fill values above. Written to a temporary name, then renamed.
    """
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")  # _PARTIAL
    try:
        with (
            netCDF4.Dataset(source) as src,
            netCDF4.Dataset(tmp, "w", format=src.data_model) as dst,
        ):
            src.set_auto_maskandscale(False)
            dst.set_auto_maskandscale(False)
            _copy_structure(src, dst, identity, padded_steps)
            compress = src.data_model.startswith("NETCDF4")
            for name in _kept_variables(src):
                var = src.variables[name]
                if name == variables.TARGET.name:
                    _write_bcb(var, dst, bcb, compress)
                    continue
                fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
                filters = (var.filters() or {}) if compress else {}
                out = dst.createVariable(
                    name,
                    var.datatype,
                    var.dimensions,
                    fill_value=fill,
                    zlib=bool(filters.get("zlib")),
                    complevel=filters.get("complevel") or 4,
                    shuffle=bool(filters.get("shuffle")),
                )
                out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
                out[:] = var[:]
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _copy_structure(src, dst, identity: str, padded_steps: int) -> None:
    attrs = {k: src.getncattr(k) for k in src.ncattrs()}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    note = f"{now}: BCB emulated by bcb-emulator predict ({identity})"
    attrs["history"] = f"{note}\n{attrs['history']}" if "history" in attrs else note
    attrs[MODEL_ATTRIBUTE] = identity
    if padded_steps:
        attrs[PADDED_ATTRIBUTE] = np.int32(padded_steps)
    dst.setncatts(attrs)
    for name, dim in src.dimensions.items():
        dst.createDimension(name, None if dim.isunlimited() else len(dim))


def _kept_variables(src) -> list[str]:
    """Coordinates (and their bounds), ``airmass`` and ``BCB``, in the file's order."""
    keep = {name for name in src.variables if name in src.dimensions}
    for name in list(keep):
        var = src.variables[name]
        if "bounds" in var.ncattrs() and var.getncattr("bounds") in src.variables:
            keep.add(var.getncattr("bounds"))
    keep |= {"airmass", variables.TARGET.name}
    return [name for name in src.variables if name in keep]


def _write_bcb(var, dst, bcb: np.ndarray, compress: bool) -> None:
    """``BCB`` `(time, level, lat, lon)`: `bcb` `(S, H, W, L)` on the lowest L levels."""
    fill = np.float32(netCDF4.default_fillvals["f4"])
    out = dst.createVariable(
        var.name, "f4", var.dimensions, fill_value=fill, zlib=compress, complevel=1, shuffle=True
    )
    out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k not in _PACKING})
    out.setncattr(
        "comment",
        "emulated by bcb_emulator (levels 1..L; fill above): see the global attribute "
        f"{MODEL_ATTRIBUTE}",
    )
    n_time, n_level = var.shape[0], var.shape[1]
    values = np.full((n_time, n_level) + bcb.shape[1:3], fill, np.float32)  # (S, n, H, W)
    if bcb.shape[0] != n_time or bcb.shape[3] > n_level:
        raise ValueError(
            f"`bcb` must have shape ({n_time}, H, W, <= {n_level}) to fit {var.name!r}. "
            f"Received: {bcb.shape}"
        )
    values[:, : bcb.shape[3]] = np.transpose(bcb, (0, 3, 1, 2))  # (S, L, H, W)
    out[:] = values
