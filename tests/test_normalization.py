"""Area-weighted statistics against hand-computed cases, streaming vs one-shot, round-trips,
and the stored statistics of a build coming from the training splits only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bcb_emulator.data import normalization, reader
from bcb_emulator.data.spec import DatasetSpec, SplitRange
from bcb_emulator.grid import Grid

DUMMY = Path(__file__).parents[1] / "tfds_builders" / "modele_bcb" / "dummy_data"
GRID = Grid("g", jm=6, im=8)
L = 2


def _constant_fields(value_2d: np.ndarray, n_time: int = 2):
    """x2d, x3d, bcb all equal to `value_2d` (H, W) on every channel and step."""
    tile = lambda c: np.repeat(value_2d[None, :, :, None], c, axis=-1).repeat(n_time, 0)  # noqa: E731
    return tile(6), tile(8 * L), tile(L) + 1.0


def test_hemispheres_hand_computed():
    # 1 in the northern half, 0 in the southern: the area mean is 1/2, the std 1/2, exactly.
    north = (GRID.lat > 0).astype(np.float64)[:, None].repeat(GRID.im, 1)
    acc = normalization.StatsAccumulator(GRID.area, L)
    acc.update(*_constant_fields(north))
    stats = acc.result()
    np.testing.assert_allclose(stats.x2d_mean, 0.5, atol=1e-12)
    np.testing.assert_allclose(stats.x3d_std, 0.5, atol=1e-12)
    np.testing.assert_allclose(stats.y_mean, 1.5, atol=1e-12)


def test_polar_caps_weight_is_the_exact_cap_area():
    # 1 on the two polar-cap rows: the mean is their area fraction, 1 − sin(88°) (exact integral
    # of cos(latitude) from 88° to 90°, both hemispheres, over the sphere's 2).
    caps = np.zeros(GRID.shape)
    caps[[0, -1]] = 1.0
    acc = normalization.StatsAccumulator(GRID.area, L)
    acc.update(*_constant_fields(caps))
    fraction = 1 - np.sin(np.deg2rad(88.0))
    stats = acc.result()
    np.testing.assert_allclose(stats.x2d_mean, fraction, rtol=1e-12)
    np.testing.assert_allclose(stats.x2d_std, np.sqrt(fraction * (1 - fraction)), rtol=1e-12)
    expected_log = fraction * np.log(2 + 1e-3) + (1 - fraction) * np.log(1 + 1e-3)
    np.testing.assert_allclose(stats.y_log_mean, expected_log, rtol=1e-12)


def test_streaming_equals_one_shot_weighted_moments():
    rng = np.random.default_rng(0)
    x2d = rng.normal(3, 2, (5, 6, 8, 6))
    x3d = rng.normal(-1, 0.5, (5, 6, 8, 8 * L))
    bcb = rng.lognormal(1, 2, (5, 6, 8, L))
    streamed = normalization.StatsAccumulator(GRID.area, L)
    for t in range(5):
        streamed.update(x2d[t : t + 1], x3d[t : t + 1], bcb[t : t + 1])
    w = np.broadcast_to(GRID.area[None, :, :, None], (5, 6, 8, 1))
    mean = (w * x3d).sum((0, 1, 2)) / w.sum()
    std = np.sqrt((w * (x3d - mean) ** 2).sum((0, 1, 2)) / w.sum())
    stats = streamed.result()
    np.testing.assert_allclose(stats.x3d_mean, mean, rtol=1e-10)
    np.testing.assert_allclose(stats.x3d_std, std, rtol=1e-10)
    assert stats.n_time == 5


def test_constant_channel_gets_unit_std_and_round_trips(tmp_path):
    acc = normalization.StatsAccumulator(GRID.area, L)
    acc.update(*_constant_fields(np.full(GRID.shape, 4.0)))
    stats = acc.result(splits=("train",))
    np.testing.assert_array_equal(stats.x2d_std, 1.0)
    stats.save(tmp_path / "s.json")
    loaded = normalization.load(tmp_path / "s.json")
    for name in normalization.NormalizationStats._ARRAYS:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stats, name))
    assert loaded.splits == ("train",) and loaded.log_offset == normalization.LOG_OFFSET


@pytest.mark.parametrize("transform", ["log", "none"])
def test_target_round_trip_numpy_and_tf(transform):
    rng = np.random.default_rng(1)
    acc = normalization.StatsAccumulator(GRID.area, L)
    bcb = rng.lognormal(1, 2, (3, 6, 8, L))
    acc.update(rng.normal(size=(3, 6, 8, 6)), rng.normal(size=(3, 6, 8, 8 * L)), bcb)
    stats = acc.result()
    y = bcb.astype(np.float32)
    z = stats.normalize_target(y, transform)
    np.testing.assert_allclose(stats.denormalize_target(z, transform), y, rtol=1e-4, atol=1e-5)
    z_tf = stats.normalize_target(tf.constant(y), transform)
    np.testing.assert_allclose(z_tf.numpy(), z, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`transform` must be one of"):
        stats.normalize_target(y, "sqrt")


def test_stored_statistics_come_from_training_splits_only(tiny_dataset):
    stored, spec = tiny_dataset.stats, tiny_dataset.spec
    acc = normalization.StatsAccumulator(spec.grid.area, spec.n_levels)
    for name in ("pi_train", "train"):
        for day in spec.split(name).days():
            data = reader.read_day(DUMMY, day, spec)
            acc.update(data.x2d, data.x3d, data.bcb)
    expected = acc.result()
    np.testing.assert_allclose(stored.x3d_mean, expected.x3d_mean, rtol=1e-12)
    np.testing.assert_allclose(stored.y_log_std, expected.y_log_std, rtol=1e-12)
    # A validation day alone has other statistics: they were not mixed in.
    other = normalization.StatsAccumulator(spec.grid.area, spec.n_levels)
    data = reader.read_day(DUMMY, spec.split("validation").first_day, spec)
    other.update(data.x2d, data.x3d, data.bcb)
    assert not np.allclose(other.result().x3d_mean, stored.x3d_mean)


def test_stats_splits_must_exist():
    with pytest.raises(ValueError, match="`stats_splits` must name"):
        DatasetSpec("x", "tiny", 3, (SplitRange("test", "2010-01-01", "2010-01-02"),), ("train",))
