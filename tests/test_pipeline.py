"""The tf.data window pipeline: window contents, shapes, strides, gaps, split boundaries,
normalization and seeded shuffling (hypothesis for the windowing invariants)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from bcb_emulator.data import BuiltDataset, build_dataset
from bcb_emulator.data.calendar import expected_times, yyyymmdd
from bcb_emulator.data.dataset import count_windows
from bcb_emulator.data.pipeline import _window_starts

DUMMY = Path(__file__).parents[1] / "tfds_builders" / "modele_bcb" / "dummy_data"
DT = 0.25  # days: the dummy data has 4 steps a day


@pytest.fixture(scope="module")
def gap_dataset(tmp_path_factory) -> BuiltDataset:
    """`train` = 2010-01-01..03 with 2010-01-02 missing: one split with a one-day gap."""
    inputs = tmp_path_factory.mktemp("gap_input")
    for path in DUMMY.glob("2010010[13].*.nc"):
        shutil.copy(path, inputs)
    out = tmp_path_factory.mktemp("tfds_gap")
    dataset = build_dataset(
        inputs, out, "tiny_l3", {"train": ("2010-01-01", "2010-01-03")}, name="gap", allow_gaps=True
    )
    assert dataset.split_sizes == {"train": 8}
    assert dataset.split_days == {"train": (58400, 58402)}
    return dataset


def _frames(dataset, split):
    return list(dataset.frames(split).as_numpy_iterator())


def _batches(ds):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds]


def _last_times(dataset, split, **kw):
    kw = {"window": 2, "batch_size": 3, "shuffle": False, "seed": 0, **kw}
    ds = dataset.windows(split, return_metadata=True, normalize=False, **kw)
    return np.concatenate([m["time"] for _, _, m in _batches(ds)])


def test_shapes_and_dtypes(tiny_dataset):
    ds = tiny_dataset.windows("train", window=3, batch_size=2, shuffle=True, seed=1)
    inputs, y = next(iter(ds))
    assert inputs["x2d"].shape == (2, 3, 6, 8, 6) and inputs["x2d"].dtype == tf.float32
    assert inputs["x3d"].shape == (2, 3, 6, 8, 24) and inputs["x3d"].dtype == tf.float32
    assert y.shape == (2, 6, 8, 3) and y.dtype == tf.float32
    spec_inputs, spec_y = ds.element_spec
    assert spec_inputs["x3d"].shape[1:] == (3, 6, 8, 24)  # static for Keras
    assert spec_y.shape[1:] == (6, 8, 3)


def test_window_contents_are_consecutive_frames_and_y_is_the_last_bcb(tiny_dataset):
    frames = _frames(tiny_dataset, "train")  # 8 frames
    ds = tiny_dataset.windows(
        "train",
        window=3,
        stride=2,
        batch_size=10,
        shuffle=False,
        seed=0,
        normalize=False,
        return_metadata=True,
    )
    ((inputs, y, meta),) = _batches(ds)
    starts = [0, 2, 4]  # stride 2, windows of 3 in 8 frames
    assert len(y) == len(starts)
    for b, s in enumerate(starts):
        for t in range(3):
            np.testing.assert_array_equal(inputs["x2d"][b, t], frames[s + t]["x2d"])
            np.testing.assert_array_equal(inputs["x3d"][b, t], frames[s + t]["x3d"])
        np.testing.assert_array_equal(y[b], frames[s + 2]["bcb"])
        np.testing.assert_array_equal(meta["airmass"][b], frames[s + 2]["airmass"])
        assert meta["time"][b] == frames[s + 2]["time"]
        np.testing.assert_array_equal(meta["bcb"][b], frames[s + 2]["bcb"])


def test_normalization_uses_the_stored_statistics(tiny_dataset):
    kw = {"window": 2, "batch_size": 4, "shuffle": False, "seed": 0}
    raw = _batches(tiny_dataset.windows("test", normalize=False, **kw))
    norm = _batches(tiny_dataset.windows("test", **kw))
    lin = _batches(tiny_dataset.windows("test", target_transform="none", **kw))
    stats = tiny_dataset.stats
    (x_raw, y_raw), (x_norm, y_norm), (_, y_lin) = raw[0], norm[0], lin[0]
    (_, y_meta, meta), *_ = _batches(tiny_dataset.windows("test", return_metadata=True, **kw))
    np.testing.assert_array_equal(y_meta, y_norm)
    np.testing.assert_array_equal(meta["bcb"], y_raw)  # the metadata's target stays physical
    np.testing.assert_allclose(
        x_norm["x3d"], (x_raw["x3d"] - stats.x3d_mean) / stats.x3d_std, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        x_norm["x2d"], (x_raw["x2d"] - stats.x2d_mean) / stats.x2d_std, rtol=1e-5, atol=1e-5
    )
    log_y = np.log(y_raw.astype(np.float64) + stats.log_offset)
    np.testing.assert_allclose(y_norm, (log_y - stats.y_log_mean) / stats.y_log_std, atol=1e-4)
    np.testing.assert_allclose(y_lin, (y_raw - stats.y_mean) / stats.y_std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats.denormalize_target(y_norm), y_raw, rtol=1e-4)


def test_windows_never_cross_a_split_boundary(tiny_dataset):
    for split, (first, last) in {"train": (58400, 58401), "validation": (58402, 58402)}.items():
        frames = _frames(tiny_dataset, split)
        times = _last_times(tiny_dataset, split, window=3)
        assert len(times) == len(frames) - 2
        assert times.min() >= first + 2 * DT and times.max() < last + 1


def test_windows_never_cross_a_time_gap(gap_dataset):
    times = _last_times(gap_dataset, "train", window=2)
    # 4 + 4 frames with a day missing between: 3 + 3 windows, none spanning the gap.
    np.testing.assert_allclose(
        times, [58400.375, 58400.625, 58400.875] + [58402.375, 58402.625, 58402.875]
    )


def test_shuffle_is_a_seeded_permutation_that_changes_per_epoch(tiny_dataset):
    kw = {"window": 2, "batch_size": 20, "seed": 7}
    ordered = _last_times(tiny_dataset, "train", shuffle=False, **kw)
    ds = tiny_dataset.windows("train", shuffle=True, return_metadata=True, **kw)
    epoch1 = np.concatenate([m["time"] for _, _, m in _batches(ds)])
    epoch2 = np.concatenate([m["time"] for _, _, m in _batches(ds)])
    again = tiny_dataset.windows("train", shuffle=True, return_metadata=True, **kw)
    epoch1_again = np.concatenate([m["time"] for _, _, m in _batches(again)])
    np.testing.assert_array_equal(np.sort(epoch1), ordered)  # same windows
    np.testing.assert_array_equal(epoch1, epoch1_again)  # same seed, same order
    assert not np.array_equal(epoch1, ordered)
    assert not np.array_equal(epoch1, epoch2)


def test_bad_arguments(tiny_dataset):
    with pytest.raises(ValueError, match="`window` must be an integer >= 1"):
        tiny_dataset.windows("train", window=0, batch_size=1, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="`split` must be one of"):
        tiny_dataset.windows("nope", window=1, batch_size=1, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="`window` must not exceed the 4 steps of split 'test'"):
        tiny_dataset.windows("test", window=5, batch_size=1, shuffle=False, seed=0)
    with pytest.raises(ValueError, match="No built dataset"):
        BuiltDataset.open(tiny_dataset.data_dir, "coarse_l20")


@settings(max_examples=12, deadline=None)
@given(
    window=st.integers(1, 5),
    stride=st.integers(1, 3),
    chunk_frames=st.integers(1, 9),
    shuffle=st.booleans(),
)
def test_property_chunked_windows_equal_all_valid_windows(
    tiny_dataset, window, stride, chunk_frames, shuffle
):
    """Whatever the chunking: every gap-free window at a stride-aligned start, exactly once."""
    frames = _frames(tiny_dataset, "train")  # 8 consecutive frames
    expected = [frames[s + window - 1]["time"] for s in range(0, len(frames) - window + 1, stride)]
    got = _last_times(
        tiny_dataset,
        "train",
        window=window,
        stride=stride,
        chunk_frames=chunk_frames,
        shuffle=shuffle,
    )
    np.testing.assert_array_equal(np.sort(got), expected)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.sampled_from([1, 1, 1, 2, 5]), min_size=0, max_size=30),
    window=st.integers(1, 6),
    stride=st.integers(1, 4),
    shift=st.integers(1, 40),
)
def test_property_window_starts(steps, window, stride, shift):
    """`_window_starts` returns exactly the aligned, owned starts whose window has no gap."""
    dt = 1 / 48
    time = 100.0 + np.concatenate([[0], np.cumsum(steps)]) * dt  # (n,) with gaps where step > 1
    got = _window_starts(tf.constant(time), window, stride, shift, dt).numpy().tolist()
    n = len(time)
    expected = [
        s
        for s in range(0, max(n - window + 1, 0))
        if s % stride == 0 and s < shift and all(np.array(steps[s : s + window - 1]) == 1)
    ]
    assert got == expected


def test_timestamps_of_a_split_match_the_date_range(tiny_dataset):
    frames = _frames(tiny_dataset, "ood_fire2021")
    assert yyyymmdd(int(frames[0]["time"])) == "20210801"
    np.testing.assert_allclose(
        [f["time"] for f in frames], expected_times(int(frames[0]["time"]), 4)
    )
    np.testing.assert_array_equal(tiny_dataset.times("ood_fire2021"), [f["time"] for f in frames])


@pytest.mark.parametrize("window, stride", [(1, 1), (2, 1), (3, 2), (4, 3), (9, 1)])
def test_window_and_batch_counts_come_from_the_stored_stamps(
    tiny_dataset, gap_dataset, window, stride
):
    """`num_windows`/`num_batches` equal what the pipeline yields, gaps included, unread."""
    for dataset in (tiny_dataset, gap_dataset):
        yielded = (
            len(_last_times(dataset, "train", window=window, stride=stride)) if window <= 8 else 0
        )
        kw = {"window": window, "stride": stride}
        assert dataset.num_windows("train", **kw) == yielded
        assert dataset.num_batches("train", batch_size=3, **kw) == -(-yielded // 3)
        assert dataset.num_batches("train", batch_size=3, drop_remainder=True, **kw) == yielded // 3


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.sampled_from([1, 1, 1, 2, 5]), min_size=0, max_size=30),
    window=st.integers(1, 6),
    stride=st.integers(1, 4),
)
def test_property_count_windows_equals_the_pipeline_rule(steps, window, stride):
    """`count_windows` (numpy, whole split) counts the starts `_window_starts` (tf) keeps."""
    dt = 1 / 48
    time = 100.0 + np.concatenate([[0], np.cumsum(steps)]) * dt  # (n,) with gaps where step > 1
    kept = _window_starts(tf.constant(time), window, stride, len(time) + 1, dt).numpy()
    assert count_windows(time, window, stride, dt) == len(kept)


@pytest.mark.parametrize("name", ["tiny", "gap"])
def test_emission_memory_is_the_decaying_mean_of_past_emissions(tiny_dataset, gap_dataset, name):
    """Each memory channel equals the exponentially weighted mean computed by hand over the
    split's frames, the weight decaying with the time elapsed (across a gap too)."""
    dataset = {"tiny": tiny_dataset, "gap": gap_dataset}[name]
    taus = (0.5, 2.0)
    frames = _frames(dataset, "train")
    memory = np.zeros((len(taus),) + frames[0]["x2d"].shape[:2])
    expected, previous = [], None
    for f in frames:
        a = (
            np.zeros(len(taus))
            if previous is None
            else np.exp(-(f["time"] - previous) / np.array(taus))
        )
        memory = a[:, None, None] * memory + (1 - a[:, None, None]) * f["x2d"][..., 5]
        expected.append(memory.copy())
        previous = f["time"]
    ds = dataset.windows(
        "train", window=1, batch_size=16, shuffle=False, seed=0, normalize=False,
        emission_memory_days=taus,
    )  # fmt: skip
    (inputs, _), *_ = _batches(ds)
    assert inputs["x2d"].shape == (8, 1, 6, 8, 8)  # 6 fields + 2 memories
    np.testing.assert_array_equal(inputs["x2d"][:, 0, ..., :6], [f["x2d"] for f in frames])
    got = np.moveaxis(inputs["x2d"][:, 0, ..., 6:], -1, 1)  # (N, M, H, W)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-6)


def _metres_per_cell(grid, row: int) -> tuple[float, float]:
    """Metres of one column at `row` and of one row (the advection's geometry)."""
    from bcb_emulator.grid import EARTH_RADIUS

    lat = grid.lat[row] if 0 < row < grid.jm - 1 else grid.lat[1 if row == 0 else -2]
    return (
        EARTH_RADIUS * np.cos(np.deg2rad(lat)) * np.deg2rad(grid.dlon),
        EARTH_RADIUS * np.deg2rad(grid.dlat),
    )


def test_advection_moves_a_field_by_the_wind_and_wraps_in_longitude():
    """A wind of exactly one column (one row) per step moves the field one cell east (north),
    across the date line; half a cell gives the mean of two cells; the pole rows take no
    departure point beyond the grid; no wind and no emission leave the field decaying only."""
    from bcb_emulator.data.pipeline import AdvectedMemory
    from bcb_emulator.grid import get_grid

    grid = get_grid("small")  # 24 × 36
    h, w = grid.shape
    advection = AdvectedMemory(grid, (1.0,))
    rng = np.random.default_rng(0)
    field = rng.uniform(size=(h, w, 1)).astype(np.float32)
    seconds = 3 * 3600.0
    col_m = np.array([_metres_per_cell(grid, i)[0] for i in range(h)])[:, None]  # (H, 1)
    row_m = _metres_per_cell(grid, 1)[1]
    zero = np.zeros((h, w), np.float32)
    east = np.broadcast_to(col_m / seconds, (h, w)).astype(np.float32)
    moved = advection.shift(field, east, zero, seconds).numpy()
    np.testing.assert_allclose(moved, np.roll(field, 1, axis=1), rtol=1e-5, atol=1e-6)
    half = advection.shift(field, east / 2, zero, seconds).numpy()
    expected = 0.5 * (field + np.roll(field, 1, axis=1))
    np.testing.assert_allclose(half, expected, rtol=1e-4, atol=1e-6)
    north = np.full((h, w), row_m / seconds, np.float32)
    moved = advection.shift(field, zero, north, seconds).numpy()
    np.testing.assert_allclose(moved[1:], field[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(moved[0], field[0])  # clamped at the south pole row
    # One step of the recurrence: the decay of the elapsed time, the emission added.
    emission = rng.uniform(size=(h, w)).astype(np.float32)
    step = advection.step(field, emission, zero, zero, 0.25).numpy()
    a = np.exp(-0.25)
    np.testing.assert_allclose(step, a * field + (1 - a) * emission[..., None], rtol=1e-6)
    first = advection.step(field, emission, zero, zero, np.inf).numpy()
    np.testing.assert_array_equal(first, emission[..., None])


@pytest.mark.parametrize("name", ["tiny", "gap"])
def test_advected_memory_matches_a_loop_by_loop_reference(tiny_dataset, gap_dataset, name):
    """The pipeline's advected memory channels (after the emission memory's) equal an
    independent float64 implementation on the split's physical frames; with normalization
    they are the normalized reference (the shift commutes with it)."""
    from advection_reference import advected_memory

    dataset = {"tiny": tiny_dataset, "gap": gap_dataset}[name]
    frames = _frames(dataset, "train")
    lev = dataset.spec.n_levels
    x3d = np.stack([f["x3d"] for f in frames])  # (N, H, W, 8L)
    taus = (0.5, 3.0)
    expected = advected_memory(
        np.stack([f["x2d"][..., 5] for f in frames]),
        x3d[..., :lev].mean(axis=-1),
        x3d[..., lev : 2 * lev].mean(axis=-1),
        np.array([f["time"] for f in frames]),
        taus,
        dataset.spec.grid,
    )  # (N, H, W, 2)
    kw = dict(window=1, batch_size=16, shuffle=False, seed=0, advected_memory_days=taus)
    (inputs, _), *_ = _batches(dataset.windows("train", normalize=False, **kw))
    assert inputs["x2d"].shape == (8, 1, 6, 8, 8)  # 6 fields + 2 advected memories
    # float32 departure points: interpolation weights good to ~1e-6 of the field's scale
    scale = np.abs(expected).max()
    np.testing.assert_allclose(inputs["x2d"][:, 0, ..., 6:], expected, atol=1e-5 * scale)
    assert np.ptp(expected[-1, ..., 0]) > 0  # a field that moved, not a constant
    (inputs, _), *_ = _batches(
        dataset.windows("train", normalize=True, emission_memory_days=(1.0,), **kw)
    )
    assert inputs["x2d"].shape[-1] == 9  # then 1 emission memory, then the 2 advected ones
    stats = dataset.stats
    normalized = (expected - stats.x2d_mean[5]) / stats.x2d_std[5]
    np.testing.assert_allclose(
        inputs["x2d"][:, 0, ..., 7:], normalized, atol=1e-5 * np.abs(normalized).max()
    )
