"""Files written by the reference model follow the ModelE E3 data contract exactly."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from bcb_emulator import variables
from bcb_emulator.cli import main
from bcb_emulator.data import writer
from bcb_emulator.reference.model import EMISSION_UNIT, ReferenceModel, SimulationConfig

START, END = "2010-07-01", "2010-07-02"


def _run(out, **kw):
    config = SimulationConfig(grid="small", spinup_days=1, output_every=6, **kw)
    ReferenceModel(config).run(START, END, out, progress=False)
    return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    _run(out, n_levels=5)
    return out


def test_one_file_per_day_and_stream_and_nothing_else(run_dir):
    names = sorted(p.name for p in run_dir.glob("*.nc"))
    expected = sorted(
        variables.filename(day, stream)
        for day in ("20100701", "20100702")
        for stream in variables.STREAMS
    )
    assert names == expected
    assert not list(run_dir.glob("*.tmp*"))  # no temporary file survives


def test_variables_units_and_dims_follow_the_registry(run_dir):
    for stream in variables.STREAMS:
        with xr.open_dataset(run_dir / variables.filename("20100701", stream)) as ds:
            for var in variables.in_stream(stream):
                da = ds[var.name]
                assert da.attrs["units"] == var.units
                if not var.time_varying:
                    assert da.dims == ("lat", "lon")
                elif var.is_3d:
                    assert da.dims == ("time", "level", "lat", "lon")
                else:
                    assert da.dims == ("time", "lat", "lon")
                assert np.isfinite(da.values).all()
            assert {v.name for v in variables.in_stream(stream)} == set(ds.data_vars)


def test_time_level_and_grid_coordinates(run_dir):
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_dataset(run_dir / "20100702.taijlh1E3oma.nc", decode_times=coder) as ds:
        times = ds["time"].values
        assert ds["time"].encoding["calendar"] == "noleap"
        assert [t.day for t in times] == [2] * 8  # 3-hourly output, all on the file's day
        assert {t.minute for t in times} <= {15, 45}
        assert [t.hour for t in times] == [2, 5, 8, 11, 14, 17, 20, 23]
        np.testing.assert_array_equal(ds["level"].values, np.arange(1.0, 6.0))
        assert ds["level"].dtype == np.float64
        assert ds["lat"].values[0] == -90.0 and ds["lat"].values[-1] == 90.0
        bcb = ds["BCB"].values
        assert bcb.min() >= 0.0 and bcb.max() > 0.0
        assert (ds["airmass"].values > 0).all()


def test_static_area_sums_to_the_sphere(run_dir):
    with xr.open_dataset(run_dir / "20100701.aijh1E3oma.nc") as ds:
        total = float(ds["axyp"].sum())
        assert total == pytest.approx(4 * np.pi * 6.371e6**2, rel=1e-6)
        assert 0.0 <= float(ds["landfr"].min()) and float(ds["landfr"].max()) <= 1.0


def test_interrupted_run_resumes_to_identical_files(tmp_path, run_dir):
    out = tmp_path / "resumed"
    config = SimulationConfig(grid="small", spinup_days=1, output_every=6, n_levels=5)
    ReferenceModel(config).run(START, START, out, progress=False)  # stops after day 1
    ReferenceModel(config).run(START, END, out, progress=False)  # resumes from the restart
    for stream in variables.STREAMS:
        name = variables.filename("20100702", stream)
        with xr.open_dataset(out / name) as a, xr.open_dataset(run_dir / name) as b:
            xr.testing.assert_identical(a, b)


def test_resume_refuses_a_restart_beyond_missing_days(tmp_path):
    config = SimulationConfig(grid="small", spinup_days=0, output_every=6, n_levels=2)
    ReferenceModel(config).run("2010-07-05", "2010-07-05", tmp_path, progress=False)
    with pytest.raises(ValueError, match="lacks 20100701"):
        ReferenceModel(config).run("2010-07-01", "2010-07-06", tmp_path, progress=False)
    # Starting afresh works.
    ReferenceModel(config).run("2010-07-01", "2010-07-01", tmp_path, progress=False, resume=False)
    assert (tmp_path / "20100701.taijlh1E3oma.nc").exists()


def test_write_failure_leaves_no_file_under_a_final_name(tmp_path, monkeypatch):
    def broken(path, stream, *args):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_write_stream", broken)
    with pytest.raises(OSError, match="disk full"):
        _run(tmp_path)
    assert not list(tmp_path.glob("*.nc*"))


def test_cli_simulate_and_bad_dates(tmp_path, capsys):
    status = main(["simulate", "--preset", "demo", "--start", "1851-01-01", "--end", "1851-01-01",
                   "--scenario", "pi", "--out", str(tmp_path), "--spinup-days", "0", "--quiet",
                   "--levels", "3"])  # fmt: skip
    assert status == 0
    assert len(list(tmp_path.glob("18510101.*E3oma.nc"))) == 5
    assert "simulated 1851-01-01..1851-01-01" in capsys.readouterr().out
    status = main(["simulate", "--start", "2010-02-30", "--end", "2010-03-01",
                   "--out", str(tmp_path)])  # fmt: skip
    assert status == 2
    assert "noleap" in capsys.readouterr().err


def test_negative_spinup_is_refused(tmp_path, capsys):
    argv = ["simulate", "--preset", "demo", "--start", "2010-07-01", "--end", "2010-07-01"]
    assert main([*argv, "--out", str(tmp_path), "--spinup-days", "-2", "--quiet"]) == 2
    assert "`spinup_days` must be an integer >= 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _day_files(folder):
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".nc")


def test_background_writer_writes_the_same_bytes_as_synchronous_writing(tmp_path):
    # Half-hourly output over three days: both day buffers are reused.
    config = SimulationConfig(grid="small", spinup_days=1, output_every=1, n_levels=3)
    for name, threaded in (("threaded", True), ("synchronous", False)):
        ReferenceModel(config).run(START, "2010-07-03", tmp_path / name, progress=False,
                                   background_writer=threaded)  # fmt: skip
    names = _day_files(tmp_path / "threaded")
    assert len(names) == 15 and names == _day_files(tmp_path / "synchronous")
    for name in names:
        a = (tmp_path / "threaded" / name).read_bytes()
        assert a == (tmp_path / "synchronous" / name).read_bytes(), name
    with (
        np.load(tmp_path / "threaded" / "restart_2010s.npz") as a,
        np.load(tmp_path / "synchronous" / "restart_2010s.npz") as b,
    ):
        for key in ("tracer", "moments", "time", "budget"):
            np.testing.assert_array_equal(a[key], b[key])


def test_a_failed_background_write_is_raised_and_stops_later_writes(tmp_path, monkeypatch):
    written = []
    original = writer.write_day

    def failing_second_day(out_dir, day, *args):
        if written:
            raise OSError("disk full")
        written.append(day)
        return original(out_dir, day, *args)

    monkeypatch.setattr(writer, "write_day", failing_second_day)
    config = SimulationConfig(grid="small", spinup_days=0, output_every=6, n_levels=2)
    with pytest.raises(OSError, match="disk full"):
        ReferenceModel(config).run(START, "2010-07-05", tmp_path, progress=False)
    # Day 1 and its restart; nothing after the failed day 2.
    assert {p[:8] for p in _day_files(tmp_path)} == {"20100701"}
    restart = ReferenceModel(config)
    restart.load_restart(tmp_path / "restart_2010s.npz")
    assert restart.time == written[0] + 1


def test_each_field_is_written_at_its_time_stamp(run_dir):
    """The emission flux written is the one the step applied, at its middle (the stamp);
    the meteorology's diagnostics are evaluated at the stamp too."""
    config = SimulationConfig(grid="small", spinup_days=1, output_every=6, n_levels=5)
    model = ReferenceModel(config)
    with (
        xr.open_dataset(run_dir / "20100701.tNDaijh1E3oma.nc", decode_times=False) as src,
        xr.open_dataset(run_dir / "20100701.aijh1E3oma.nc", decode_times=False) as aij,
    ):
        stamps = src["time"].values
        np.testing.assert_allclose((stamps * 48) % 1, 0.5)  # the middle of a 30-min step
        for i, stamp in enumerate(stamps):
            flux, _ = model.emissions.flux(float(stamp))
            expected = (flux / EMISSION_UNIT).astype(np.float32)
            np.testing.assert_array_equal(src["BCB_biomass_src"].values[i], expected)
            at_end, _ = model.emissions.flux(float(stamp) + 0.5 / 48)
            assert not np.array_equal((at_end / EMISSION_UNIT).astype(np.float32), expected)
            pbl = model.met.pbl_height(float(stamp)).astype(np.float32)
            np.testing.assert_array_equal(aij["pblht_bp"].values[i], pbl)


def test_the_emission_written_is_the_emission_applied():
    model = ReferenceModel(SimulationConfig(grid="small", spinup_days=0, n_levels=5))
    model.time = 58400.25  # 06:00
    for _ in range(3):
        before = model.budget.emitted
        model.step()
        fields, _ = model.output_fields()
        emitted = (fields["BCB_biomass_src"] * EMISSION_UNIT * model.grid.area).sum()
        assert emitted * model.config.dt == pytest.approx(model.budget.emitted - before, rel=1e-12)


def test_a_run_removes_only_stale_temporaries_of_its_own_kind(tmp_path):
    dead_pid = _exited_pid()
    stale = [
        tmp_path / f"20100630.aijh1E3oma.nc.tmp{dead_pid}",
        tmp_path / f"restart_2010s.npz.tmp{dead_pid}.npz",
        tmp_path / f"simulation_2010s.json.tmp{dead_pid}",
    ]
    kept = [
        tmp_path / f"20100630.taijlh1E3oma.nc.tmp{os.getppid()}",  # a live process's
        tmp_path / "notes.tmp1",  # not ours
        tmp_path / f"model.nc.tmp{dead_pid}",  # not a day file's name
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    config = SimulationConfig(grid="small", spinup_days=0, output_every=6, n_levels=2)
    ReferenceModel(config).run(START, START, tmp_path, progress=False)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


def _exited_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen(["true"])  # noqa: S603, S607
    proc.wait()
    return proc.pid


def test_another_configuration_into_a_folder_with_output_is_refused(tmp_path, capsys):
    argv = ["simulate", "--preset", "demo", "--start", START, "--end", START, "--levels", "2",
            "--spinup-days", "0", "--quiet", "--out", str(tmp_path)]  # fmt: skip
    assert main([*argv, "--seed", "0"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main([*argv, "--seed", "3", "--no-resume"]) == 2
    err = capsys.readouterr().err
    assert "simulation_2010s.json" in err and "seed=0 there, 3 now" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # A record without output beside it is rewritten.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "simulation_2010s.json").write_bytes(before["simulation_2010s.json"])
    assert main([*argv[:-1], str(empty), "--seed", "3"]) == 0
    assert json.loads((empty / "simulation_2010s.json").read_text())["seed"] == 3


#: Runs ``bcb-emulator simulate`` and SIGKILLs itself at the `n`-th call of
#: ``module.function``, having left the partial file that call would leave (`partial`: its
#: name from the call's first argument and the process id; "" for none).
_KILLER = """
import os, signal, sys
import {module} as target
original, calls = target.{function}, [0]
def dying(path, *args, **kwargs):
    calls[0] += 1
    if calls[0] == {n}:
        if {partial!r}:
            with open({partial!r}.format(path=path, pid=os.getpid()), "wb") as f:
                f.write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path, *args, **kwargs)
target.{function} = dying
from bcb_emulator.cli import main
sys.exit(main(sys.argv[1:]))
"""
_CLI = "import sys\nfrom bcb_emulator.cli import main\nsys.exit(main(sys.argv[1:]))"
_KILL_ARGV = ["simulate", "--preset", "demo", "--start", "2010-07-01", "--end", "2010-07-03",
              "--levels", "3", "--spinup-days", "1", "--quiet"]  # fmt: skip


def _killed_then_rerun(tmp_path, module, function, n, partial):
    out, straight = tmp_path / "killed", tmp_path / "straight"
    code = _KILLER.format(module=module, function=function, n=n, partial=partial)
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}

    def simulate(code, out):
        return subprocess.run([sys.executable, "-c", code, *_KILL_ARGV, "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=600)  # fmt: skip

    # Every run in its own process, after one that fills the numba cache: a process that
    # compiles its kernels afresh ends with a float64 state a few ulps off that of processes
    # loading them from the cache (measured: 6e-12 kg in a cell after three days; the float32
    # files agree, the restart file does not), so all three runs compared load the same code.
    assert simulate(_CLI, tmp_path / "warm").returncode == 0
    assert simulate(_CLI, straight).returncode == 0
    proc = simulate(code, out)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if partial:
        assert list(out.glob("*.tmp*"))
    rerun = simulate(_CLI, out)
    assert rerun.returncode == 0, rerun.stderr
    names = sorted(p.name for p in straight.iterdir())
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file left
    for name in names:
        if name.endswith(".npz"):  # zip members carry their time of writing
            with np.load(out / name) as a, np.load(straight / name) as b:
                assert all(np.array_equal(a[k], b[k]) for k in b.files)
        else:
            assert (out / name).read_bytes() == (straight / name).read_bytes(), name


def test_simulate_killed_while_writing_a_file_reruns_to_identical_files(tmp_path):
    # The 8th stream file is day 2's third: day 1 is on disk, day 2 half-written.
    _killed_then_rerun(tmp_path, "bcb_emulator.data.writer", "_write_stream", 8, "{path}")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "function", "n", "partial"),
    [
        # The restart after day 2.
        ("bcb_emulator.reference.model", "_write_restart", 3, "{path}.tmp{pid}.npz"),
        ("bcb_emulator.reference.physics", "column_physics", 150, ""),  # within day 2's steps
        ("bcb_emulator.data.writer", "_write_stream", 15, "{path}"),  # the run's last file
    ],
)
def test_simulate_killed_at_other_points_reruns_to_identical_files(
    tmp_path, module, function, n, partial
):
    _killed_then_rerun(tmp_path, module, function, n, partial)
