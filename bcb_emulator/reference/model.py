"""The reference transport model: BCB carried by synthetic ModelE-like meteorology.

∂c/∂t = −∇·(c v) − ∂(c ω)/∂p + mixing + convection + E − dry deposition − wet scavenging,

solved with ModelE's numerics where it matters: QUS (Prather second-order moments) advection
with air mass carried along and alternating Strang splitting, half-hour steps, sub-cycling near
the poles, then column physics (:mod:`bcb_emulator.reference.physics`). Tracer is kept as mass
(kg) with its moments; files report the mixing ratio in ModelE's units (10⁻¹¹ kg/kg).

Example:

>>> from bcb_emulator.reference.model import ReferenceModel, SimulationConfig
>>> model = ReferenceModel(SimulationConfig.preset("coarse", scenario="2010s"))
>>> model.run(start="2010-01-01", end="2010-01-03", out_dir="out")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import zipfile
from pathlib import Path

import numba
import numpy as np

from bcb_emulator import variables
from bcb_emulator.data import writer
from bcb_emulator.data.calendar import parse_date, yyyymmdd
from bcb_emulator.grid import VerticalGrid, get_grid
from bcb_emulator.reference import physics, qus
from bcb_emulator.reference.emissions import FireEmissions, get_scenario
from bcb_emulator.reference.meteorology import DAY, SyntheticMeteorology, TransportFields

#: ModelE's BCB file unit: 10^-11 kg/kg.
BCB_UNIT = 1.0e-11
#: ModelE's emission file unit: 10^-12 kg m-2 s-1.
EMISSION_UNIT = 1.0e-12


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """Settings of a reference-model run.

    Attributes:
        grid: ``"coarse"`` (4°×5°, 46×72) or ``"native"`` (2°×2.5°, 90×144).
        n_levels: ``L``, layers written to files (the model also runs buffer layers above).
        scenario: emission scenario, ``"pi"``, ``"2010s"`` or ``"2020s"``.
        seed: selects the weather and the fires' day-to-day variability.
        dt: time step, s (ModelE: 1800).
        output_every: steps between written time stamps (1: half-hourly, 6: 3-hourly).
        met_every: steps between updates of the winds, rain and convection.
        spinup_days: days simulated before `start` without output, from a clean atmosphere.
        tau_mix: boundary-layer mixing time scale, s.
        dry_velocity_land, dry_velocity_ocean: dry-deposition velocities, m/s.
        soluble_fraction: BCB fraction removed by in-cloud scavenging (ModelE: 0.8).
        washout: ``b`` of the below-cloud washout ``b (1 − exp(−0.1 P))``, P in mm per step.
        incloud_per_mm: in-cloud removal per mm of rain formed in a layer.
        convective_efficiency: share of the updraft's tracer that the rain formed along the
            updraft removes (times `soluble_fraction`).
    """

    grid: str = "coarse"
    n_levels: int = 20
    scenario: str = "2010s"
    seed: int = 0
    dt: float = 1800.0
    output_every: int = 1
    met_every: int = 6
    spinup_days: int = 30
    tau_mix: float = 3600.0
    dry_velocity_land: float = 5.0e-4
    dry_velocity_ocean: float = 2.0e-4
    soluble_fraction: float = 0.8
    washout: float = 0.1
    incloud_per_mm: float = 0.9
    convective_efficiency: float = 1.0

    def __post_init__(self):
        get_grid(self.grid)
        get_scenario(self.scenario)
        VerticalGrid(self.n_levels)
        if DAY % self.dt or self.dt <= 0:
            raise ValueError(f"`dt` must divide one day. Received: dt={self.dt}")
        if not isinstance(self.spinup_days, int) or self.spinup_days < 0:
            raise ValueError(
                "`spinup_days` must be an integer >= 0 (days simulated before `start`). "
                f"Received: spinup_days={self.spinup_days!r}"
            )
        steps_per_day = int(DAY // self.dt)
        for name in ("output_every", "met_every"):
            value = getattr(self, name)
            if value < 1 or steps_per_day % value:
                raise ValueError(
                    f"`{name}` must be a positive divisor of {steps_per_day} steps per day. "
                    f"Received: {name}={value}"
                )

    @classmethod
    def preset(cls, name: str, **overrides) -> SimulationConfig:
        """Named settings: ``demo`` (4°×5°, 3-hourly output), ``coarse``, ``native``."""
        presets = {
            "demo": {"grid": "coarse", "output_every": 6, "spinup_days": 20},
            "coarse": {"grid": "coarse"},
            "native": {"grid": "native"},
        }
        if name not in presets:
            raise ValueError(f"`preset` must be one of {sorted(presets)}. Received: {name!r}")
        return cls(**{**presets[name], **overrides})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


@numba.njit(cache=True, error_model="numpy")
def _rain_by_layer(prec, per_step, falling_coef, formed_coef, formed, falling_arg, formed_arg):
    """Rain formed in each layer and the arguments of the two scavenging exponentials.

    All arrays are ``(n_layers, n_columns)``. Fills ``formed = max(P_k − P_{k+1}, 0) · per_step``
    (mm formed in layer ``k``; ``P`` the flux through the layer bottoms in mm/day, zero above
    the lid), ``falling_arg = falling_coef · P_{k+1} · per_step`` and ``formed_arg =
    formed_coef · formed``.
    """
    nl, n = prec.shape
    for k in range(nl):
        for c in range(n):
            above = prec[k + 1, c] if k + 1 < nl else 0.0
            f = max(prec[k, c] - above, 0.0) * per_step
            formed[k, c] = f
            falling_arg[k, c] = falling_coef * (above * per_step)
            formed_arg[k, c] = formed_coef * f


@numba.njit(cache=True, error_model="numpy")
def _scavenging(formed, keep_falling, keep_formed, mu_top, washout, soluble, conv_coef):
    """Large-scale wet-scavenging factors and convective scavenging fractions.

    All arrays are ``(n_layers, n_columns)``. ``wet_keep = 1 − min(1 − (1 − washout (1 −
    keep_falling)) (1 − soluble (1 − keep_formed)), 0.999)``; ``conv_scav = conv_coef · formed /
    max(Σ_k formed, 1e−30)`` where the updraft flows (``mu_top > 0``), else 0.
    """
    nl, n = formed.shape
    wet_keep = np.empty((nl, n))
    conv_scav = np.empty((nl, n))
    total = formed[0].copy()
    for k in range(1, nl):
        for c in range(n):
            total[c] += formed[k, c]
    for c in range(n):
        total[c] = max(total[c], 1e-30)
    for k in range(nl):
        for c in range(n):
            removed = 1.0 - (1.0 - washout * (1.0 - keep_falling[k, c])) * (
                1.0 - soluble * (1.0 - keep_formed[k, c])
            )
            wet_keep[k, c] = 1.0 - min(removed, 0.999)
            conv = conv_coef * formed[k, c] / total[c]
            conv_scav[k, c] = conv if mu_top[k, c] > 0 else 0.0
    return wet_keep, conv_scav


@dataclasses.dataclass
class Budget:
    """Global BCB mass budget since the start of the run, kg."""

    emitted: float = 0.0
    dry_deposited: float = 0.0
    wet_large_scale: float = 0.0
    wet_convective: float = 0.0

    @property
    def removed(self) -> float:
        return self.dry_deposited + self.wet_large_scale + self.wet_convective


class ReferenceModel:
    """Reference BCB transport model.

    Args:
        config: run settings.
    """

    def __init__(self, config: SimulationConfig):
        self.config = config
        self.grid = get_grid(config.grid)
        self.vgrid = VerticalGrid(config.n_levels)
        self.met = SyntheticMeteorology(self.grid, self.vgrid, seed=config.seed)
        self.emissions = FireEmissions(self.grid, get_scenario(config.scenario), seed=config.seed)
        self.air_mass = self.met.air_mass  # kg, constant: the column divergence is zero
        shape = self.air_mass.shape
        self.tracer = np.zeros(shape)  # kg
        self.moments = np.zeros((qus.N_MOMENTS,) + shape)  # kg
        self.budget = Budget()
        self.time = 0.0  # days since 1850-01-01
        self.max_substeps = 1
        self._tf: TransportFields | None = None
        self._mass = self.air_mass.copy()
        land = self.met.landfr
        # −v_d, m/s: dry-deposition velocity of layer 1.
        self._neg_vd = -(land * config.dry_velocity_land + (1.0 - land) * config.dry_velocity_ocean)
        # Reused: the scratch of _removal_rates, the per-step fluxes of a met interval.
        self._rain_scratch = [np.empty((shape[0], shape[1] * shape[2])) for _ in range(3)]
        self._fluxes = [np.empty(shape) for _ in range(3)]
        self._mu_step = np.empty(shape)
        # Emission flux (kg m-2 s-1) applied in the last step, evaluated at its middle.
        self._applied_flux: np.ndarray | None = None

    # ----- state -------------------------------------------------------------------------------
    def mixing_ratio(self) -> np.ndarray:
        """BCB mass mixing ratio ``(n_layers, jm, im)``, kg/kg."""
        return self.tracer / self.air_mass

    def total_mass(self) -> float:
        """Global BCB mass, kg."""
        return float(self.tracer.sum())

    def save_restart(self, path: str | os.PathLike) -> None:
        """Writes the model state atomically (tracer, moments, budget, clock)."""
        _write_restart(path, self._restart_state())

    def _restart_state(self) -> dict:
        """A copy of the state :meth:`save_restart` writes (the model may step on)."""
        return {
            "tracer": self.tracer.copy(), "moments": self.moments.copy(), "time": self.time,
            "budget": np.array(dataclasses.astuple(self.budget)), "config": self.config.to_json(),
        }  # fmt: skip

    def load_restart(self, path: str | os.PathLike) -> None:
        """Restores a state written by :meth:`save_restart` with the same configuration."""
        try:
            with np.load(path) as data:
                saved = json.loads(str(data["config"]))
                state = {k: data[k].copy() for k in ("tracer", "moments", "time", "budget")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"Restart file {path} is unreadable ({err}); delete it or run without resuming."
            ) from err
        if saved != json.loads(self.config.to_json()):
            raise ValueError(f"Restart file {path} was written with another configuration: {saved}")
        if state["tracer"].shape != self.tracer.shape:
            raise ValueError(
                f"Restart file {path}: `tracer` must have shape {self.tracer.shape}. "
                f"Received: {state['tracer'].shape}"
            )
        self.tracer = state["tracer"]
        self.moments = state["moments"]
        self.time = float(state["time"])
        self.budget = Budget(*state["budget"].tolist())
        self._tf = None
        self._applied_flux = None

    # ----- time stepping -----------------------------------------------------------------------
    def _removal_rates(self, tf: TransportFields):
        """Per-step factors ``exp(−k Δt)`` of dry deposition (layer 1) and large-scale wet
        scavenging, and the convective scavenging fractions; constant over a met interval."""
        cfg = self.config
        dz0 = tf.z_edges[1] - tf.z_edges[0]
        dry_keep = np.exp(self._neg_vd / dz0 * cfg.dt)  # M · exp(−k Δt), k = v_d / Δz₁
        steps_per_mm = cfg.dt / DAY  # mm/day -> mm per step
        # Rain formed in each layer and falling in from above, mm per step; the fractions left
        # by below-cloud washout, exp(−0.1 · falling), and by in-cloud scavenging.
        shape = tf.prec.shape
        prec = tf.prec.reshape(shape[0], -1)
        if self._rain_scratch[0].shape != prec.shape:
            self._rain_scratch = [np.empty(prec.shape) for _ in range(3)]
        formed, keep_falling, keep_formed = self._rain_scratch
        _rain_by_layer(
            prec, steps_per_mm, -0.1, -cfg.incloud_per_mm, formed, keep_falling, keep_formed
        )
        np.exp(keep_falling, out=keep_falling)
        np.exp(keep_formed, out=keep_formed)
        # wet_keep = exp(−k Δt) with k = −ln(1 − f) / Δt, f the fraction removed (≤ 0.999).
        wet_keep, conv_scav = _scavenging(
            formed, keep_falling, keep_formed, tf.mu_top.reshape(prec.shape), cfg.washout,
            cfg.soluble_fraction, cfg.soluble_fraction * cfg.convective_efficiency,
        )  # fmt: skip
        return dry_keep, wet_keep.reshape(shape), conv_scav.reshape(shape)

    def step(self) -> None:
        """Advances the model by one time step.

        Winds, rain and convection are refreshed every ``met_every`` steps on a clock aligned
        to midnight, so a run restarted at any step follows the uninterrupted one exactly.
        """
        cfg = self.config
        n = int(round(self.time * DAY / cfg.dt))  # steps since 1850-01-01
        if self._tf is None or n % cfg.met_every == 0:
            t_met = (n - n % cfg.met_every) * cfg.dt / DAY
            tf = self._tf = self.met.transport(t_met)
            self._rates = self._removal_rates(tf)
            np.multiply(tf.mu_top, self.grid.area, out=self._mu_step)
            self._mu_step *= cfg.dt
            for out, f in zip(self._fluxes, (tf.u_flux, tf.v_flux, tf.w_flux), strict=True):
                np.multiply(f, cfg.dt, out=out)
        tf = self._tf
        mass = self._mass
        mass[...] = self.air_mass
        most = qus.advect(self.tracer, self.moments, mass, *self._fluxes, reverse=bool(n % 2))
        self.max_substeps = max(self.max_substeps, most)
        flux, share = self.emissions.flux(n * cfg.dt / DAY + 0.5 * cfg.dt / DAY)  # mid-step
        self._applied_flux = flux
        pblht = self.met.pbl_height(self.time)
        dry_keep, wet_keep, conv_scav = self._rates
        budget = physics.column_physics(
            self.tracer, self.moments, self.air_mass, tf.z_edges, flux * self.grid.area * cfg.dt,
            share, pblht, self._mu_step, conv_scav, dry_keep, wet_keep, cfg.dt, cfg.tau_mix,
        ).sum(axis=1)  # fmt: skip
        self.budget.emitted += budget[physics.EMITTED]
        self.budget.dry_deposited += budget[physics.DRY_DEPOSITED]
        self.budget.wet_large_scale += budget[physics.WET_LARGE_SCALE]
        self.budget.wet_convective += budget[physics.WET_CONVECTIVE]
        self.time = (n + 1) * cfg.dt / DAY

    def output_fields(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The registry's time-varying fields of the step just taken (lowest L layers) and
        the static ones.

        Every field belongs to the time stamp of the step, its middle (:meth:`stamp`): the
        tracer and air mass are the state after the step; the emission flux is the one the
        step applied, evaluated at its middle; the meteorology's diagnostics are evaluated at
        the middle, with the winds, rain and convection of the step's met interval.
        """
        L = self.config.n_levels
        stamp = self.stamp()
        tf = self._tf if self._tf is not None else self.met.transport(stamp)
        fields = self.met.diagnostics(stamp, tf)
        flux = self._applied_flux
        if flux is None:  # no step taken since the start or a restart
            flux, _ = self.emissions.flux(stamp)
        fields["BCB"] = self.mixing_ratio() / BCB_UNIT
        fields["BCB_biomass_src"] = flux / EMISSION_UNIT
        fields["airmass"] = self.air_mass / self.grid.area[None]
        out = {k: (v[:L] if v.ndim == 3 else v) for k, v in fields.items()}
        static = {"axyp": self.grid.area, "landfr": self.met.landfr}
        return out, static

    def stamp(self) -> float:
        """Time stamp of the step just taken, its middle (HH:15 or HH:45), days: the time
        at which :meth:`step` evaluated the emissions, to the last bit."""
        dt = self.config.dt
        n = int(round(self.time * DAY / dt)) - 1  # the step's number since 1850-01-01
        return n * dt / DAY + 0.5 * dt / DAY

    def run(
        self,
        start: str,
        end: str,
        out_dir: str | os.PathLike,
        progress: bool = True,
        resume: bool = True,
        background_writer: bool = True,
    ) -> Budget:
        """Simulates ``[start, end]`` (inclusive, YYYY-MM-DD) and writes daily files.

        A spin-up of ``config.spinup_days`` precedes `start`. A restart file in `out_dir`
        (``restart_<scenario>.npz``) is written after every day, once the day's files are on
        disk; with `resume`, a run restarts from it and skips the days already written. Each
        written field belongs to the middle of a model step, its time stamp (HH:15 or HH:45;
        :meth:`output_fields`). Temporary files a killed run left in `out_dir` are deleted
        first. The folder's config record (``simulation_<scenario>.json``) is written once;
        a run with another configuration into a folder that holds output is refused.

        With `background_writer`, the files of a day are compressed and written on a thread
        while the next day computes; the files are the same as without.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        first, last = parse_date(start), parse_date(end)
        if last < first:
            raise ValueError(f"`end` must not precede `start`. Received: {start}..{end}")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        writer.remove_stale_temporaries(out_dir)
        # One restart file and config record per scenario: several runs may share a folder.
        restart = out_dir / f"restart_{cfg.scenario}.npz"
        self._record_config(out_dir, restart)
        steps_per_day = int(DAY // cfg.dt)
        if resume and restart.exists():
            self.load_restart(restart)
            # Days of the range before the restart point must already be on disk.
            for day in range(first, min(int(round(self.time)), last + 1)):
                missing = [
                    name
                    for name in (
                        variables.filename(yyyymmdd(day), s) for s in variables.STREAMS
                    )  # fmt: skip
                    if not (out_dir / name).exists()
                ]
                if missing:
                    raise ValueError(
                        f"Restart file {restart} is at day {yyyymmdd(int(self.time))} "
                        f"but {out_dir} lacks {missing[0]} of the requested range: run without "
                        "resuming (--no-resume) or into another folder."
                    )
        else:
            self.time = float(first - cfg.spinup_days)
        day0 = int(round(self.time))
        total = (last + 1 - day0) * steps_per_day
        n_out = steps_per_day // cfg.output_every
        # Two sets of day buffers: one filled by the model while the writer writes the other.
        free: queue.Queue = queue.Queue()
        for _ in range(2):
            free.put(self._day_buffers(n_out))
        with (
            _core_left_for_writer(background_writer),
            writer.BackgroundWriter(threaded=background_writer) as jobs,
            tqdm(total=total, desc=f"simulate {cfg.scenario}", unit="step",
                 disable=not progress) as bar,
        ):  # fmt: skip
            for day in range(day0, last + 1):
                output = day >= first
                if output:
                    times, frames = np.empty(n_out), _next_free(free, jobs)
                for n in range(steps_per_day):
                    self.step()
                    bar.update(1)
                    if output and (n + 1) % cfg.output_every == 0:
                        i = (n + 1) // cfg.output_every - 1
                        fields, static = self.output_fields()
                        times[i] = self.stamp()
                        for name, buffer in frames.items():
                            buffer[i] = fields[name]  # float32, as written
                if output:
                    jobs.submit(
                        _write_day_and_restart, out_dir, day, times, frames, static, self.grid,
                        cfg.n_levels, restart, self._restart_state(), free,
                    )  # fmt: skip
                else:
                    jobs.submit(_write_restart, restart, self._restart_state())
        return self.budget

    def _day_buffers(self, n_out: int) -> dict[str, np.ndarray]:
        """Float32 buffers ``(T, ...)`` for one day's time-varying fields, by name."""
        L, shape = self.config.n_levels, self.grid.shape
        return {
            v.name: np.empty((n_out, L) + shape if v.is_3d else (n_out,) + shape, np.float32)
            for v in variables.ALL
            if v.time_varying
        }

    def _record_config(self, out_dir: Path, restart: Path) -> None:
        """Writes ``simulation_<scenario>.json``, or checks it against this configuration.

        A record that differs is rewritten only when the folder holds no output it could
        describe (no day file, no restart file of the scenario); otherwise the run is
        refused, naming the fields that differ.
        """
        cfg = self.config
        record = out_dir / f"simulation_{cfg.scenario}.json"
        if record.exists():
            try:
                saved = json.loads(record.read_text())
            except (OSError, ValueError) as err:
                saved = {"unreadable": str(err)}
            current = json.loads(cfg.to_json())
            if saved == current:
                return
            output = restart.exists() or any(
                next(out_dir.glob(f"*.{stream}E3oma.nc"), None) for stream in variables.STREAMS
            )
            if output:
                differ = ", ".join(
                    f"{k}={saved.get(k, '(missing)')!r} there, {current.get(k, '(missing)')!r} now"
                    for k in sorted(set(saved) | set(current))
                    if saved.get(k) != current.get(k)
                )
                raise ValueError(
                    f"{out_dir} holds output of another configuration ({record}: {differ}). "
                    "Run into another folder, or delete that folder's files first."
                )
        tmp = record.with_name(record.name + f".tmp{os.getpid()}")
        tmp.write_text(cfg.to_json())
        os.replace(tmp, record)


@contextlib.contextmanager
def _core_left_for_writer(background_writer: bool):
    """Runs the kernels on one thread fewer than the cores while the writer thread works.

    The parallel kernels wait at a barrier for their slowest thread; one that shares its core
    with the writer makes every kernel wait for it (a day at 4°×5° with half-hourly output
    took 2.9 times as long with both kernel threads as with one, on 2 cores under load).
    """
    threads = numba.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if background_writer and threads >= (cores or 1) > 1:
        numba.set_num_threads(threads - 1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _next_free(free: queue.Queue, jobs: writer.BackgroundWriter):
    """The next set of day buffers the writer hands back (a failed write raises here)."""
    while True:
        jobs.check()
        try:
            return free.get(timeout=1.0)
        except queue.Empty:
            continue


def _write_restart(path: str | os.PathLike, state: dict) -> None:
    """Writes a restart file atomically from a state of :meth:`ReferenceModel._restart_state`."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **state)
    os.replace(tmp, path)


def _write_day_and_restart(out_dir, day, times, frames, static, grid, n_levels, restart, state,
                           free):  # fmt: skip
    """Job of the writer: a day's files, then the restart file that says they exist; the
    day's buffers are handed back to the model (`free`) whatever happens."""
    try:
        writer.write_day(out_dir, day, times, frames, static, grid, n_levels)
        _write_restart(restart, state)
    finally:
        free.put(frames)
