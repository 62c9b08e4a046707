"""Hostile input to the reader and ``bcb-emulator build-dataset``: each bad input exits with
status 2 and one line that names the file or path, the variable, where the bad value sits and
what was expected — no traceback — and leaves nothing partial (no records, no ``incomplete.*``
or ``building.*`` folder, no lock); a dataset already there is left byte for byte as it was.

Also the real ModelE layout: static fields in the annual ``ANN<year>.xaij<run>.nc`` and
``axyp`` with a time axis in ``aijh1`` build the same records as the reference model's layout,
and the tiny model trains on them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from bcb_emulator.cli import main
from bcb_emulator.data import BuiltDataset, build_dataset, build_dir, calendar, synthetic
from bcb_emulator.data.spec import TINY_GRID

DAYS = [58400, 58401, 58402]  # 2010-01-01 .. 2010-01-03
SPLITS = {"train": ("2010-01-01", "2010-01-02"), "test": ("2010-01-03", "2010-01-03")}
NAME = "hostile"
SPLIT_ARGS = ["--split", "train=2010-01-01:2010-01-02", "--split", "test=2010-01-03:2010-01-03"]
#: Where the tests put a bad value: the file of 2010-01-02, time index 2 (15:00), level 2,
#: lat index 3 (22°N), lon index 4 (22.5°E); and how the error must say it.
INDEX_3D, INDEX_2D = (2, 1, 3, 4), (2, 3, 4)
PLACE_3D = "time 2010-01-02 15:00, index 2, level 2, lat 22, lon 22.5 (index (2, 1, 3, 4))"
PLACE_2D = "time 2010-01-02 15:00, index 2, lat 22, lon 22.5 (index (2, 3, 4))"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """Reference-model-layout files of `DAYS` (4 levels, 4 steps a day)."""
    out = tmp_path_factory.mktemp("pristine")
    synthetic.write_days(out, DAYS, TINY_GRID, n_levels=4, steps_per_day=4, seed=3)
    return out


@pytest.fixture(scope="module")
def baseline(pristine, tmp_path_factory) -> Path:
    """The `NAME` dataset built from `pristine` (its TFDS ``data_dir``)."""
    data_dir = tmp_path_factory.mktemp("baseline")
    build_dataset(pristine, data_dir, "tiny_l3", SPLITS, name=NAME)
    return data_dir


@pytest.fixture
def files(pristine, tmp_path) -> Path:
    out = tmp_path / "input"
    shutil.copytree(pristine, out)
    return out


def _path(folder: Path, stream: str, day: int = 58401) -> Path:
    return folder / f"{calendar.yyyymmdd(day)}.{stream}E3oma.nc"


def _cli(capsys, files, data_dir, *extra) -> tuple[int, str]:
    """Runs ``build-dataset`` of `NAME` in-process; returns the exit status and stderr."""
    argv = ["build-dataset", "--input", str(files), "--data-dir", str(data_dir)]
    argv += ["--config", "tiny_l3", "--name", NAME, *SPLIT_ARGS, *map(str, extra)]
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _snapshot(data_dir: Path) -> dict[str, bytes]:
    """Every file of the `NAME` dataset, by relative path."""
    root = Path(data_dir) / "modele_bcb" / NAME / "1.1.0"
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _assert_nothing_partial(data_dir: Path) -> None:
    """A failed build into a new `data_dir` leaves not even the folder (nor TFDS's
    ``downloads/`` and ``.config/``)."""
    data_dir = Path(data_dir)
    assert not data_dir.exists(), sorted(str(p) for p in data_dir.rglob("*"))
    with pytest.raises(ValueError, match="No built dataset"):
        BuiltDataset.open(data_dir, NAME)


def _assert_no_leftovers(data_dir: Path) -> None:
    """No temporary folder, lock or moved-aside dataset anywhere under `data_dir`."""
    for pattern in ("incomplete.*", "building.*", "*.old.*", build_dir.LOCK_NAME):
        assert not list(Path(data_dir).rglob(pattern)), pattern


def _edit(path: Path, name: str, value, index=INDEX_3D) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds.variables[name][index] = value


def _set_attribute(path: Path, name: str, attribute: str, value) -> None:
    with netCDF4.Dataset(path, "a") as ds:
        ds.variables[name].setncattr(attribute, value)


def _rewrite(path: Path, replace: dict | None = None, drop: tuple[str, ...] = ()) -> None:
    """Copies `path` onto itself without `drop`; `replace` maps a name to ``(dims, dtype,
    data, attributes)`` for a variable to write instead (or in addition)."""
    replace = replace or {}
    tmp = path.with_name(path.name + ".edit")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(tmp, "w") as dst:
        for dim_name, dim in src.dimensions.items():
            dst.createDimension(dim_name, None if dim.isunlimited() else len(dim))
        names = [n for n in src.variables if n not in drop] + [
            n for n in replace if n not in src.variables
        ]
        for name in names:
            if name in replace:
                dims, dtype, data, attributes = replace[name]
            else:
                var = src.variables[name]
                dims, dtype, data = var.dimensions, var.dtype, var[:]
                attributes = {k: var.getncattr(k) for k in var.ncattrs()}
            out = dst.createVariable(name, dtype, dims)
            out.setncatts(attributes)
            out[:] = data
    tmp.replace(path)


def _to_modele_layout(folder: Path, year: int = 2010) -> Path:
    """Rewrites reference-model files as ModelE writes them: `axyp` and `landfr` moved into
    the annual ``ANN<year>.xaijE3oma.nc`` on ``(lat, lon)``; every ``aijh1`` file keeps `axyp`
    with a time axis ``(time, lat, lon)`` and has no `landfr`. Returns the annual file."""
    aijh1 = sorted(folder.glob("*.aijh1E3oma.nc"))
    with netCDF4.Dataset(aijh1[0]) as ds:
        axyp, landfr = ds["axyp"][:], ds["landfr"][:]
        lat, lon = ds["lat"][:], ds["lon"][:]
    annual = folder / f"ANN{year}.xaijE3oma.nc"
    with netCDF4.Dataset(annual, "w") as ds:
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", lon.size)
        for name, data, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            ds.createVariable(name, "f8", (name,)).units = units
            ds[name][:] = data
        for name, data, units in (("axyp", axyp, "m^2"), ("landfr", landfr, "1")):
            ds.createVariable(name, "f4", ("lat", "lon")).units = units
            ds[name][:] = data
    for path in aijh1:
        with netCDF4.Dataset(path) as ds:
            n_time = len(ds.dimensions["time"])
        timed = np.repeat(np.asarray(axyp)[None], n_time, axis=0)  # (T, H, W)
        attributes = {"units": "m2", "long_name": "grid cell area"}
        _rewrite(
            path, {"axyp": (("time", "lat", "lon"), "f4", timed, attributes)}, drop=("landfr",)
        )
    return annual


# --- Values: sign, finiteness, magnitude, fill -------------------------------------------------

VALUE_CASES = {
    "negative BCB": ("taijlh1", "BCB", -1.0, "0 <= x <= 1e+08 10^-11 kg/kg; found -1 at "),
    "BCB of 3e38": ("taijlh1", "BCB", 3e38, "0 <= x <= 1e+08 10^-11 kg/kg; found 3e+38 at "),
    "zero air mass": ("taijlh1", "airmass", 0.0, "0 < x <= 20000 kg/m2; found 0 at "),
    "negative air mass": ("taijlh1", "airmass", -50.0, "0 < x <= 20000 kg/m2; found -50 at "),
    "infinite air mass": ("taijlh1", "airmass", np.inf, "must be finite; found inf at "),
    "NaN humidity": ("aijlh1", "q", np.nan, "must be finite; found nan at "),
    "humidity in g/kg": ("aijlh1", "q", 12.0, "0 <= x <= 0.1 kg/kg; found 12 at "),
    "temperature in Celsius": ("aijlh1", "t", 15.0, "100 <= x <= 400 K; found 15 at "),
    "negative precipitation": ("cijlh1", "prec_3d_sum", -3.0, "0 <= x <= 100000 mm/day"),
    "fill value in BCB": ("taijlh1", "BCB", np.ma.masked, "has fill (missing) values, first at "),
    "negative emission": ("tNDaijh1", "BCB_biomass_src", -2.0, "0 <= x <= 1e+12 10^-12"),
    "PBL height of -1e4 m": ("aijh1", "pblht_bp", -1e4, "0 <= x <= 100000 m; found -10000 at "),
}


@pytest.mark.parametrize("case", VALUE_CASES)
def test_a_bad_value_is_refused_naming_file_variable_place_and_range(case, files, tmp_path, capsys):
    stream, name, value, expected = VALUE_CASES[case]
    is_3d = stream in ("aijlh1", "cijlh1", "taijlh1")
    _edit(_path(files, stream), name, value, INDEX_3D if is_3d else INDEX_2D)
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"20100102.{stream}E3oma.nc: variable {name!r}" in err
    assert expected in err
    assert (PLACE_3D if is_3d else PLACE_2D) in err
    _assert_nothing_partial(tmp_path / "data")


def test_a_value_above_level_l_is_not_read(files, tmp_path):
    """Level 4 of the files is cut (L = 3): a bad value there is no error."""
    _edit(_path(files, "taijlh1"), "BCB", -1.0, (2, 3, 3, 4))
    assert build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME).split_sizes == {
        "train": 8,
        "test": 4,
    }


# --- Units, types, time axis -------------------------------------------------------------------

ATTRIBUTE_CASES = {
    "BCB in kg/kg": (
        "taijlh1", "BCB", "kg/kg",
        "has units 'kg/kg', but the data contract says '10^-11 kg/kg': values in 'kg/kg' are "
        "1e+11 times values in '10^-11 kg/kg'",
    ),
    "pressure in Pa": ("aijlh1", "p_3d", "Pa", "has units 'Pa', but the data contract says 'hPa'"),
    "temperature in degC": (
        "aijlh1", "t", "degC", "has units 'degC', but the data contract says 'K'"
    ),
    "land fraction in percent": (
        "aijh1", "landfr", "%", "has units '%', but the data contract says '1'"
    ),
    "time 12 h off": (
        "aijlh1", "time", "days since 1850-01-01 12:00:00",
        "variable 'time' must be in 'days since 1850-01-01 00:00:00', calendar 'noleap'. "
        "Received: units='days since 1850-01-01 12:00:00'",
    ),
    "time in hours": (
        "taijlh1", "time", "hours since 1850-01-01", "must be in 'days since 1850-01-01"
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ATTRIBUTE_CASES)
def test_units_other_than_the_contract_are_refused(case, files, tmp_path, capsys):
    stream, name, units, expected = ATTRIBUTE_CASES[case]
    _set_attribute(_path(files, stream), name, "units", units)
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"20100102.{stream}E3oma.nc: variable {name!r}" in err
    assert expected in err
    _assert_nothing_partial(tmp_path / "data")


def test_units_spelled_otherwise_are_accepted(files, tmp_path):
    for stream, name, units in (
        ("taijlh1", "BCB", "10**-11 kg kg-1"),
        ("taijlh1", "airmass", "kg m-2"),
        ("aijh1", "shflx", "W m^-2"),
        ("aijlh1", "omega", "mb/s"),
        ("aijh1", "time", "days since 1850-1-1 0:0:0"),
    ):
        for day in DAYS:
            _set_attribute(_path(files, stream, day), name, "units", units)
    assert build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME).split_sizes["train"] == 8


def test_integer_data_is_refused(files, tmp_path, capsys):
    path = _path(files, "taijlh1")
    with netCDF4.Dataset(path) as ds:
        bcb = np.round(ds["BCB"][:]).astype(np.int16)
        dims, attributes = ds["BCB"].dimensions, {"units": ds["BCB"].units}
    _rewrite(path, {"BCB": (dims, "i2", bcb, attributes)})
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert "20100102.taijlh1E3oma.nc: variable 'BCB' is stored as int16; it must be float" in err
    assert "or integers CF-packed with `scale_factor`" in err
    _assert_nothing_partial(tmp_path / "data")


# --- Static fields: the annual file, axyp with a time axis -------------------------------------


def test_modele_layout_builds_the_same_records_and_trains(files, baseline, tmp_path):
    """Static fields from ``ANN2010.xaijE3oma.nc``, `axyp` with a time axis in ``aijh1``: the
    records equal the reference-model layout's byte for byte; windows read; the tiny model
    trains one epoch to a finite loss."""
    from tiny import tiny_train_config

    from bcb_emulator import training
    from bcb_emulator.config import Tier

    _to_modele_layout(files)
    with netCDF4.Dataset(_path(files, "aijh1")) as ds:
        assert ds["axyp"].dimensions == ("time", "lat", "lon") and "landfr" not in ds.variables
    dataset = build_dataset(files, tmp_path / "data", "tiny_l3", SPLITS, name=NAME)
    assert _snapshot(tmp_path / "data") == _snapshot(baseline)
    windows = dataset.windows("train", window=2, batch_size=4, shuffle=False, seed=0)
    inputs, target = next(iter(windows))
    assert inputs["x2d"].shape == (4, 2, 6, 8, 6)  # (B, T, H, W, 6)
    assert inputs["x3d"].shape == (4, 2, 6, 8, 24) and target.shape == (4, 6, 8, 3)
    tiers = (Tier("only", "train", "test", epochs=1),)
    config = tiny_train_config(dataset, tmp_path / "run", tiers=tiers)
    summary = training.train(config, dataset, verbose=0)
    assert np.isfinite(summary.best("only", "loss"))


def test_static_file_given_by_option(files, baseline, tmp_path, capsys):
    """The annual file elsewhere, given with --static-file; the daily files lack the fields."""
    annual = _to_modele_layout(files)
    elsewhere = tmp_path / "static" / annual.name
    elsewhere.parent.mkdir()
    annual.rename(elsewhere)
    code, err = _cli(capsys, files, tmp_path / "without")
    assert code == 2 and "variable 'landfr' (land fraction, 1) is missing from stream" in err
    assert "ANN2012.xaijE3oma.nc" in err and "--static-file" in err
    _assert_nothing_partial(tmp_path / "without")
    code, _ = _cli(capsys, files, tmp_path / "data", "--static-file", elsewhere)
    assert code == 0
    assert _snapshot(tmp_path / "data") == _snapshot(baseline)


def test_missing_static_file_option(files, tmp_path, capsys):
    code, err = _cli(capsys, files, tmp_path / "data", "--static-file", tmp_path / "nope.nc")
    assert code == 2
    assert "`static_file` must be an existing netCDF file holding ['axyp', 'landfr']" in err
    assert f"Received: {tmp_path / 'nope.nc'} (no such file)" in err
    _assert_nothing_partial(tmp_path / "data")


def test_static_file_option_naming_a_folder(files, tmp_path, capsys):
    code, err = _cli(capsys, files, tmp_path / "data", "--static-file", files)
    assert code == 2 and f"Received: {files} (a folder)" in err
    _assert_nothing_partial(tmp_path / "data")


def test_annual_file_that_is_not_netcdf(files, tmp_path, capsys):
    annual = _to_modele_layout(files)
    annual.write_text("ANN2010 diagnostics, printed\n")
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"{annual} is not a readable netCDF file; the static (annual) file must hold " in err
    assert "['axyp', 'landfr']" in err
    _assert_nothing_partial(tmp_path / "data")


def test_annual_file_on_another_grid(files, tmp_path, capsys):
    annual = _to_modele_layout(files)
    _rewrite(annual, {"lat": (("lat",), "f8", np.linspace(-80, 80, 6), {})})
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2 and f"{annual}: variable 'lat' does not match grid 'tiny'" in err
    _assert_nothing_partial(tmp_path / "data")


def test_annual_file_without_landfr(files, tmp_path, capsys):
    annual = _to_modele_layout(files)
    _rewrite(annual, drop=("landfr",))
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"{annual}: variable 'landfr' (land fraction, 1) is missing from the static" in err
    _assert_nothing_partial(tmp_path / "data")


def test_annual_files_that_disagree(files, tmp_path, capsys):
    annual = _to_modele_layout(files)
    other = annual.with_name("ANN2011.xaijE3oma.nc")
    shutil.copy(annual, other)
    _edit(other, "landfr", 0.5, (1, 1))
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"{other}: variable 'landfr' differs from the one in {annual}" in err
    assert "--static-file" in err
    _assert_nothing_partial(tmp_path / "data")


def _axyp_with_time_axis(path: Path, change_at: tuple[int, int, int] | None = None) -> None:
    """Gives `axyp` of an ``aijh1`` file a time axis, constant unless `change_at` is set."""
    with netCDF4.Dataset(path) as ds:
        axyp, n_time = np.asarray(ds["axyp"][:]), len(ds.dimensions["time"])
    timed = np.repeat(axyp[None], n_time, axis=0)  # (T, H, W)
    if change_at is not None:
        timed[change_at] *= 1.01
    _rewrite(path, {"axyp": (("time", "lat", "lon"), "f4", timed, {"units": "m2"})})


def test_axyp_with_a_constant_time_axis_in_the_daily_files(files, baseline, tmp_path):
    for day in DAYS:
        _axyp_with_time_axis(_path(files, "aijh1", day))
    build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME)
    assert _snapshot(tmp_path) == _snapshot(baseline)


def test_axyp_changing_along_its_time_axis(files, tmp_path, capsys):
    _axyp_with_time_axis(_path(files, "aijh1"), change_at=INDEX_2D)
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert (
        "20100102.aijh1E3oma.nc: variable 'axyp' is a static field, so it must be the same at "
        "every time step of its time axis; it differs between time index 0 and 2 at lat 22, "
        "lon 22.5"
    ) in err
    _assert_nothing_partial(tmp_path / "data")


def test_cell_areas_in_km2_labelled_m2(files, tmp_path, capsys):
    annual = _to_modele_layout(files)
    with netCDF4.Dataset(annual, "a") as ds:
        ds["axyp"][:] = ds["axyp"][:] / 1e6
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert f"{annual}: variable 'axyp' (grid cell area) must sum to the sphere's area" in err
    assert "(1e-06 times)" in err
    _assert_nothing_partial(tmp_path / "data")


# --- Paths -------------------------------------------------------------------------------------


def test_missing_input_folder(tmp_path, capsys):
    code, err = _cli(capsys, tmp_path / "nowhere", tmp_path / "data")
    assert code == 2
    assert "`input_dir` (--input) must be a folder of ModelE daily files" in err
    assert f"Received: {tmp_path / 'nowhere'} (no such file or folder)" in err
    _assert_nothing_partial(tmp_path / "data")


def test_empty_input_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, err = _cli(capsys, tmp_path / "empty", tmp_path / "data")
    assert code == 2 and f"Received: {tmp_path / 'empty'} (an empty folder)" in err
    _assert_nothing_partial(tmp_path / "data")


def test_input_folder_without_daily_files(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.txt").write_text("ModelE run E3oma\n")
    code, err = _cli(capsys, tmp_path / "notes", tmp_path / "data")
    assert code == 2 and "(holds no such file, only ['README.txt'])" in err
    _assert_nothing_partial(tmp_path / "data")


def test_input_that_is_a_file(files, tmp_path, capsys):
    code, err = _cli(capsys, _path(files, "aijh1"), tmp_path / "data")
    assert code == 2 and "(a file, not a folder)" in err
    _assert_nothing_partial(tmp_path / "data")


def test_data_dir_under_a_file(files, tmp_path, capsys):
    (tmp_path / "plain").write_text("not a folder\n")
    code, err = _cli(capsys, files, tmp_path / "plain" / "data")
    assert code == 2
    assert "`data_dir` (--data-dir) must be a folder or a path that can be created as one" in err
    assert f"({tmp_path / 'plain'} is a file)" in err
    assert (tmp_path / "plain").read_text() == "not a folder\n"


def test_data_dir_that_cannot_be_written(files, tmp_path, capsys, monkeypatch):
    """Any OSError while creating or writing the folder (permissions, read-only file system)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(build_dir.tempfile, "mkstemp", refuse)
    code, err = _cli(capsys, files, tmp_path / "data")
    assert code == 2
    assert "`data_dir` (--data-dir) must be a folder this user can write to" in err
    assert "failed: Permission denied" in err
    _assert_nothing_partial(tmp_path / "data")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_data_dir_without_write_permission(files, tmp_path, capsys):
    (tmp_path / "locked").mkdir(mode=0o500)
    code, err = _cli(capsys, files, tmp_path / "locked" / "data")
    assert code == 2 and "must be a folder this user can write to" in err


# --- An existing dataset: reuse, --overwrite, leftovers of killed builds, a concurrent build ----


@pytest.fixture
def existing(baseline, tmp_path) -> Path:
    """A copy of the baseline dataset's ``data_dir``."""
    data_dir = tmp_path / "existing"
    shutil.copytree(baseline, data_dir)
    return data_dir


def test_other_splits_are_not_served_from_an_existing_dataset(files, existing, capsys):
    before = _snapshot(existing)
    argv = ["build-dataset", "--input", str(files), "--data-dir", str(existing)]
    argv += ["--config", "tiny_l3", "--name", NAME, "--split", "train=2010-01-01:2010-01-03"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"modele_bcb/{NAME}/1.1.0 already holds modele_bcb/{NAME} built with another " in err
    assert (
        "splits: built [train=2010-01-01:2010-01-02, test=2010-01-03:2010-01-03], requested "
        "[train=2010-01-01:2010-01-03]"
    ) in err
    assert "--overwrite" in err and "Traceback" not in err
    assert _snapshot(existing) == before
    assert main([*argv, "--overwrite"]) == 0  # rebuilt as asked
    assert BuiltDataset.open(existing, NAME).split_sizes == {"train": 12}
    _assert_no_leftovers(existing)


def test_the_same_request_reuses_the_dataset(files, existing, capsys):
    before = _snapshot(existing)
    _edit(_path(files, "taijlh1"), "BCB", -1.0)  # not read: nothing is rebuilt
    code, _ = _cli(capsys, files, existing)
    assert code == 0 and _snapshot(existing) == before
    _assert_no_leftovers(existing)
    shutil.rmtree(files)  # reusing needs no input (the netCDF files may be gone)
    code, _ = _cli(capsys, files, existing)
    assert code == 0 and _snapshot(existing) == before


def test_overwrite_with_bad_input_keeps_the_old_dataset(files, existing, capsys):
    before = _snapshot(existing)
    _edit(_path(files, "taijlh1", 58402), "airmass", 0.0)
    code, err = _cli(capsys, files, existing, "--overwrite")
    assert code == 2 and "20100103.taijlh1E3oma.nc: variable 'airmass'" in err
    assert _snapshot(existing) == before
    assert BuiltDataset.open(existing, NAME).split_sizes == {"train": 8, "test": 4}
    _assert_no_leftovers(existing)


def test_leftovers_of_killed_builds_are_cleaned_by_the_next_run(files, baseline, tmp_path):
    """TFDS's ``incomplete.*`` and an --overwrite's ``building.*`` are removed; a dataset left
    aside by a swap stopped between its renames is put back (and then reused)."""
    config_dir = tmp_path / "modele_bcb" / NAME
    shutil.copytree(baseline / "modele_bcb" / NAME / "1.1.0", config_dir / "1.1.0.old.4242")
    for stale in ("incomplete.AB12CD_1.1.0", "building.4242/modele_bcb"):
        (config_dir / stale).mkdir(parents=True)
        (config_dir / stale / "modele_bcb-train.tfrecord-00000-of-00001").write_bytes(b"x" * 99)
    with pytest.raises(ValueError, match=r"left the previous dataset at .*1\.1\.0\.old\.4242"):
        BuiltDataset.open(tmp_path, NAME)
    build_dataset(files, tmp_path, "tiny_l3", SPLITS, name=NAME)
    assert sorted(p.name for p in config_dir.iterdir()) == ["1.1.0"]
    assert _snapshot(tmp_path) == _snapshot(baseline)


def test_a_concurrent_build_of_the_same_dataset_is_refused(files, tmp_path, capsys):
    config_dir = tmp_path / "modele_bcb" / NAME
    config_dir.mkdir(parents=True)
    with open(config_dir / build_dir.LOCK_NAME, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process's build holds the lock
        (config_dir / "incomplete.RUNNING_1.1.0").mkdir()  # its work in progress
        code, err = _cli(capsys, files, tmp_path)
        assert (config_dir / "incomplete.RUNNING_1.1.0").is_dir()
    assert code == 2 and f"Another build of modele_bcb/{NAME} is running in {tmp_path}" in err


def test_statistics_that_are_not_finite_are_never_stored():
    """The last guard before ``normalization.json``: a NaN or Inf statistic is an error."""
    from bcb_emulator.data import normalization

    accumulator = normalization.StatsAccumulator(TINY_GRID.area, 3)
    x2d, x3d = np.ones((2, 6, 8, 6), np.float32), np.ones((2, 6, 8, 24), np.float32)
    bcb = np.ones((2, 6, 8, 3), np.float32)
    bcb[1, 2, 3, 1] = np.inf
    accumulator.update(x2d, x3d, bcb)
    with pytest.raises(ValueError, match=r"Normalization statistic 'y_mean' of splits \['train'\]"):
        accumulator.result(splits=("train",))
