"""Tests of the modele_bcb builder on its dummy data (6×8 grid, files with 4 levels, L = 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
import xarray as xr

from bcb_emulator import variables
from bcb_emulator.data import BuiltDataset, calendar, normalization
from tfds_builders.modele_bcb import modele_bcb_dataset_builder

DUMMY = Path(__file__).parent / "dummy_data"
SPLITS = {"pi_train": 4, "train": 8, "validation": 4, "test": 4, "ood_fire2021": 4}


class ModelEBcbTest(tfds.testing.DatasetBuilderTestCase):
    """The TFDS template checks: build from dummy data, splits, reload, as_dataset."""

    DATASET_CLASS = modele_bcb_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["tiny_l3"]
    SPLITS = SPLITS
    DUMMY_DATA = DUMMY
    SKIP_CHECKSUMS = True  # nothing is downloaded: everything comes from manual_dir


@pytest.fixture
def built(tiny_dataset) -> Path:
    """The TFDS ``data_dir`` of the session's ``tiny_l3`` build (``conftest.py``)."""
    return tiny_dataset.data_dir


def _frames(data_dir: Path, split: str, config: str = "tiny_l3") -> list[dict]:
    return list(tfds.as_numpy(BuiltDataset.open(data_dir, config).frames(split)))


def test_shapes_dtypes_and_time_order(built):
    for split, n in SPLITS.items():
        frames = _frames(built, split)
        assert len(frames) == n
        times = np.array([f["time"] for f in frames])
        np.testing.assert_allclose(np.diff(times), 0.25)  # 4 steps a day, in order
        for f in frames:
            assert f["x2d"].shape == (6, 8, 6) and f["x2d"].dtype == np.float32
            assert f["x3d"].shape == (6, 8, 24) and f["x3d"].dtype == np.float32
            assert f["bcb"].shape == (6, 8, 3) and f["bcb"].dtype == np.float32
            assert f["airmass"].shape == (6, 8, 3) and f["time"].dtype == np.float64


def test_values_equal_the_netcdf_files_cut_to_l_levels(built):
    frames = _frames(built, "train")
    first = frames[5]  # 2010-01-02, second step
    assert first["time"] == pytest.approx(58401.375)
    files = {s: xr.open_dataset(DUMMY / f"20100102.{s}E3oma.nc") for s in variables.STREAMS}
    try:
        assert files["aijlh1"].sizes["level"] == 4  # files hold one level more than L
        for c, v in enumerate(variables.X2D):
            field = files[variables.file_stream(v)][v.name].values
            expected = field if field.ndim == 2 else field[1]
            np.testing.assert_array_equal(first["x2d"][..., c], expected)
        for i, v in enumerate(variables.X3D):
            raw = files[v.stream][v.name].values[1]  # (level, lat, lon)
            for k in range(3):
                np.testing.assert_array_equal(first["x3d"][..., i * 3 + k], raw[k])
        bcb = files["taijlh1"]["BCB"].values[1, :3]  # (L, lat, lon)
        np.testing.assert_array_equal(first["bcb"], bcb.transpose(1, 2, 0))
        airmass = files["taijlh1"]["airmass"].values[1, :3]
        np.testing.assert_array_equal(first["airmass"], airmass.transpose(1, 2, 0))
    finally:
        for f in files.values():
            f.close()


def test_statistics_and_spec_are_stored_with_the_dataset(built):
    folder = BuiltDataset.open(built, "tiny_l3").path
    stats = normalization.load(folder / normalization.STATS_FILENAME)
    assert stats.splits == ("pi_train", "train")
    assert stats.n_time == SPLITS["pi_train"] + SPLITS["train"]
    assert stats.x3d_mean.shape == (24,) and stats.y_log_std.shape == (3,)
    spec = json.loads((folder / "dataset_spec.json").read_text())
    assert spec["n_levels"] == 3 and spec["steps_per_day"] == 4
    assert [s["name"] for s in spec["splits"]] == list(SPLITS)


def test_half_hourly_time_stamps_are_stored_exactly(tmp_path):
    """48 stamps a day in 2021 are not representable in float32; they must survive exactly."""
    from bcb_emulator.data import synthetic
    from bcb_emulator.data.spec import TINY_GRID, DatasetSpec, SplitRange

    day = 62050  # 2020-01-01
    synthetic.write_days(tmp_path / "in", [day], TINY_GRID, 3, steps_per_day=48, seed=0)
    spec = DatasetSpec(
        name="tiny48",
        grid_name="tiny",
        n_levels=3,
        splits=(SplitRange("train", "2020-01-01", "2020-01-01"),),
        steps_per_day=48,
    )
    config = modele_bcb_dataset_builder.ModelEBcbConfig(name="tiny48", spec=spec)
    builder = modele_bcb_dataset_builder.Builder(config=config, data_dir=str(tmp_path / "out"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "in"))
    )
    times = np.array([f["time"] for f in _frames(tmp_path / "out", "train", "tiny48")])
    with xr.open_dataset(tmp_path / "in" / "20200101.taijlh1E3oma.nc", decode_times=False) as ds:
        np.testing.assert_array_equal(times, ds["time"].values)
    np.testing.assert_allclose(np.diff(times), 1 / 48, rtol=0, atol=1e-9)


def test_keys_increase_and_spread_over_the_writer_buckets():
    """Bounded build memory: TFDS sorts one of its 1000 key-range buckets at a time in memory."""
    from tensorflow_datasets.core import shuffle

    from bcb_emulator.data import reader
    from bcb_emulator.data.spec import SplitRange

    spec = modele_bcb_dataset_builder.Builder.builder_configs["coarse_l20"].spec
    year = SplitRange("train", "2010-01-01", "2010-12-31")
    times = np.concatenate([calendar.expected_times(d, 48) for d in year.days()])
    keys = [reader.example_key(t, year, spec) for t in times]
    assert all(a < b for a, b in zip(keys[:-1], keys[1:], strict=True)) and keys[-1] < 2**128
    buckets = np.bincount(
        [shuffle.get_bucket_number(k, shuffle.BUCKETS_NUMBER) for k in keys],
        minlength=shuffle.BUCKETS_NUMBER,
    )
    assert buckets.max() <= np.ceil(len(keys) / shuffle.BUCKETS_NUMBER) + 1  # 18 of 17520
