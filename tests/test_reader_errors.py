"""Every input error is a ValueError naming the file and variable, raised before anything is
written; an interrupted build leaves no dataset that looks complete, and a rerun finishes it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from bcb_emulator.data import BuiltDataset, build_dataset, calendar, reader, synthetic, writer
from bcb_emulator.data.spec import TINY_GRID, DatasetSpec, SplitRange
from bcb_emulator.grid import Grid

DAYS = [58400, 58401, 58402]  # 2010-01-01 .. 2010-01-03
SPLITS = {"train": ("2010-01-01", "2010-01-02"), "test": ("2010-01-03", "2010-01-03")}
SPEC = DatasetSpec(
    name="t",
    grid_name="tiny",
    n_levels=3,
    splits=tuple(SplitRange(k, *v) for k, v in SPLITS.items()),
    stats_splits=("train",),
    steps_per_day=4,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pristine")
    synthetic.write_days(out, DAYS, TINY_GRID, n_levels=4, steps_per_day=4, seed=1)
    return out


@pytest.fixture
def files(pristine, tmp_path) -> Path:
    out = tmp_path / "input"
    shutil.copytree(pristine, out)
    return out


def _path(folder: Path, day: int, stream: str) -> Path:
    return folder / f"{calendar.yyyymmdd(day)}.{stream}E3oma.nc"


def _read(folder: Path, day: int = 58401):
    return reader.read_day(folder, day, SPEC)


def _rewrite(path: Path, drop: str | None = None, edit=None) -> None:
    """Copies `path` onto itself without variable `drop`, applying `edit(name, data)`."""
    tmp = path.with_suffix(".tmp")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(tmp, "w") as dst:
        for name, dim in src.dimensions.items():
            dst.createDimension(name, None if dim.isunlimited() else len(dim))
        for name, var in src.variables.items():
            if name == drop:
                continue
            out = dst.createVariable(name, var.dtype, var.dimensions)
            out.setncatts({k: var.getncattr(k) for k in var.ncattrs()})
            data = var[:]
            out[:] = edit(name, data) if edit else data
    tmp.replace(path)


def _assert_nothing_written(data_dir: Path) -> None:
    assert not list(data_dir.rglob("*.tfrecord*")), "records were written"
    with pytest.raises(ValueError, match="No built dataset"):
        BuiltDataset.open(data_dir, "tiny_l3_custom")


def test_clean_files_read(files):
    day = _read(files)
    assert day.x3d.shape == (4, 6, 8, 24) and day.bcb.shape == (4, 6, 8, 3)


def test_missing_file_names_file_and_stream(files):
    _path(files, 58401, "cijlh1").unlink()
    with pytest.raises(ValueError, match=r"Missing file .*20100102\.cijlh1E3oma\.nc.*prec_3d_sum"):
        reader.split_days(files, SPEC.split("train"), allow_gaps=False)


def test_missing_variable_names_file_and_variable(files):
    _rewrite(_path(files, 58401, "aijlh1"), drop="omega")
    with pytest.raises(ValueError, match=r"20100102\.aijlh1E3oma\.nc: variable 'omega'.*missing"):
        _read(files)


def test_missing_static_variable(files):
    _rewrite(_path(files, 58401, "aijh1"), drop="landfr")
    with pytest.raises(ValueError, match=r"aijh1E3oma\.nc: variable 'landfr'"):
        _read(files)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_value_names_file_and_variable(files, bad):
    with netCDF4.Dataset(_path(files, 58401, "taijlh1"), "a") as ds:
        ds.variables["BCB"][2, 1, 3, 4] = bad
    with pytest.raises(
        ValueError, match=r"20100102\.taijlh1E3oma\.nc: variable 'BCB' must be finite"
    ):
        _read(files)


def test_non_finite_value_above_level_l_is_ignored(files):
    with netCDF4.Dataset(_path(files, 58401, "taijlh1"), "a") as ds:
        ds.variables["BCB"][2, 3, 3, 4] = np.nan  # level 4, cut away (L = 3)
    assert np.isfinite(_read(files).bcb).all()


def test_grid_of_other_size(files):
    grid = Grid("other", jm=8, im=8)
    times, fields, static = synthetic.day_fields(58401, grid, 4, 4, seed=0)
    tmp = files / "other"
    writer.write_day(tmp, 58401, times, fields, static, grid, 4)
    shutil.copy(_path(tmp, 58401, "cijlh1"), _path(files, 58401, "cijlh1"))
    with pytest.raises(ValueError, match=r"cijlh1E3oma\.nc: dimension 'lat' must have size 6"):
        _read(files)


def test_grid_of_other_coordinates(files):
    _rewrite(_path(files, 58401, "tNDaijh1"), edit=lambda n, d: d + 1.0 if n == "lon" else d)
    with pytest.raises(ValueError, match=r"tNDaijh1E3oma\.nc: variable 'lon' does not match grid"):
        _read(files)


def test_too_few_levels(files):
    spec = DatasetSpec(**{**SPEC.to_json(), "splits": SPEC.splits, "n_levels": 5})
    with pytest.raises(ValueError, match=r"dimension 'level' must have at least L=5"):
        reader.read_day(files, 58401, spec)


def test_duplicate_time_stamp(files):
    def dup(name, data):
        if name == "time":
            data = np.array(data)
            data[2] = data[1]
        return data

    _rewrite(_path(files, 58401, "aijlh1"), edit=dup)
    with pytest.raises(ValueError, match=r"aijlh1E3oma\.nc: variable 'time' has a duplicate"):
        _read(files)


def test_time_gap_inside_a_day(files):
    shift = lambda name, data: np.array(data) + (0.25 if name == "time" else 0)  # noqa: E731
    _rewrite(_path(files, 58401, "taijlh1"), edit=lambda n, d: shift(n, d) if n == "time" else d)
    with pytest.raises(ValueError, match=r"taijlh1E3oma\.nc: variable 'time' holds 4 stamps "):
        _read(files)


def test_other_output_interval_is_said_in_words_with_the_matching_config(files):
    """4 steps a day read as 8: the counts and intervals in words, and the config that fits."""
    spec = dataclasses.replace(SPEC, steps_per_day=8)
    with pytest.raises(ValueError) as err:
        reader.read_day(files, 58401, spec)
    message = str(err.value)
    assert "holds 4 evenly spaced steps of 2010-01-02 (every 6 h)" in message
    assert "dataset config 't' expects 8 steps a day (every 3 h)" in message
    assert "Build with --config tiny_l3" in message
    assert "np.float64" not in message


def test_reference_demo_output_read_as_half_hourly_points_to_the_demo_config(files):
    """3-hourly stamps at HH:45 (the reference model's demo preset) under a 48-a-day config."""
    demo_stamps = lambda name, data: (  # noqa: E731
        58401 + (np.arange(8) + 11 / 12) / 8 if name == "time" else data
    )
    _rewrite(_path(files, 58401, reader.streams_read()[0]), edit=demo_stamps)
    spec = dataclasses.replace(SPEC, steps_per_day=48)
    with pytest.raises(ValueError, match=r"8 evenly spaced steps .*every 3 h.*--config demo_l20"):
        reader.read_day(files, 58401, spec)


def test_wrong_calendar(files):
    with netCDF4.Dataset(_path(files, 58401, "aijh1"), "a") as ds:
        ds.variables["time"].calendar = "gregorian"
    with pytest.raises(ValueError, match=r"aijh1E3oma\.nc: variable 'time' must be in .*noleap"):
        _read(files)


def test_missing_day_inside_a_range_is_a_calendar_gap(files):
    for stream in reader.streams_read():
        _path(files, 58401, stream).unlink()
    with pytest.raises(ValueError, match=r"Calendar gap in split 'train'.*2010-01-02"):
        reader.split_days(files, SPEC.split("train"), allow_gaps=False)
    assert reader.split_days(files, SPEC.split("train"), allow_gaps=True) == [58400]


def test_range_without_files(files):
    empty = SplitRange("ood_fire2021", "2021-08-01", "2021-08-03")
    with pytest.raises(ValueError, match=r"'ood_fire2021' has no files .*2021-08-01\.\.2021-08-03"):
        reader.split_days(files, empty, allow_gaps=True)


def test_non_netcdf_file(files):
    _path(files, 58401, "aijlh1").write_text("this is not netCDF\n")
    with pytest.raises(ValueError, match=r"aijlh1E3oma\.nc is not a readable netCDF file.*'u'"):
        _read(files)


def test_errors_in_the_last_file_stop_the_build_before_any_record(files, tmp_path):
    with netCDF4.Dataset(_path(files, 58402, "aijlh1"), "a") as ds:
        ds.variables["q"][0, 0, 0, 0] = np.nan
    data_dir = tmp_path / "tfds"
    with pytest.raises(ValueError, match=r"20100103\.aijlh1E3oma\.nc: variable 'q'"):
        build_dataset(files, data_dir, "tiny_l3", SPLITS)
    _assert_nothing_written(data_dir)


def test_interrupted_build_leaves_no_dataset_and_rerun_completes(files, tmp_path, monkeypatch):
    data_dir = tmp_path / "tfds"
    original = reader.day_examples
    on_disk_before_interruption = []

    def dies_in_the_last_split(input_dir, day, spec, split, static=None):
        if day == 58402:  # the `train` records are on disk by then, in the temporary folder
            on_disk_before_interruption.extend(data_dir.rglob("*-train.tfrecord*"))
            raise KeyboardInterrupt("simulated interruption mid-build")
        yield from original(input_dir, day, spec, split, static)

    monkeypatch.setattr(reader, "day_examples", dies_in_the_last_split)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(files, data_dir, "tiny_l3", SPLITS)
    assert on_disk_before_interruption, "the interruption came before any record was written"
    with pytest.raises(ValueError, match="No built dataset"):
        BuiltDataset.open(data_dir, "tiny_l3_custom")
    assert not list(data_dir.rglob("*.tfrecord*"))  # the temporary folder is gone too
    assert not list(data_dir.rglob("*incomplete*"))

    monkeypatch.setattr(reader, "day_examples", original)
    dataset = build_dataset(files, data_dir, "tiny_l3", SPLITS)
    assert dataset.split_sizes == {"train": 8, "test": 4}
    assert BuiltDataset.open(data_dir, "tiny_l3_custom").split_sizes == dataset.split_sizes
