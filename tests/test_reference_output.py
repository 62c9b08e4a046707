"""Files written by the reference model follow the ModelE E3 data contract exactly."""

import numpy as np
import pytest
import xarray as xr

from bcb_emulator import variables
from bcb_emulator.cli import main
from bcb_emulator.data import writer
from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

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
