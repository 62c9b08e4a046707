"""tf.data input pipeline: sliding windows of T time steps over a built ``modele_bcb`` split.

The TFDS dataset stores single time steps in time order; windows are cut here, at read time,
so that changing ``T`` (e.g. in a tuner) never rebuilds the dataset. A window never crosses a
split boundary (each split is read on its own) nor a gap in time (the spacing of its time stamps
is checked against the dataset's step).

How the split is read: in order, in chunks of ``chunk_frames`` consecutive steps held in memory
(consecutive chunks overlap by ``T − 1`` steps, so every window lies wholly in one chunk and is
made exactly once). Within a chunk the window starts are shuffled with a stateless seeded
permutation that changes every epoch (deterministically, from `seed`). If the split fits in
one chunk (the default budget is 1 GiB of frames, ≈ 8 days at 46×72, L = 20) the shuffle is a
full permutation of the split's windows; otherwise chunks come in time order, shuffled inside.

Shapes (channels-last, as everywhere in the package):

- ``x2d``: ``(B, T, H, W, 6)``;
- ``x3d``: ``(B, T, H, W, 8·L)``, variable-major (channel ``i·L + k`` = variable ``i``, level
  ``k + 1``), exactly as stored;
- ``y``: ``(B, H, W, L)``, BCB at the time of the last frame of the window.

Normalization uses the statistics stored with the dataset (`BuiltDataset.stats`); the target is
normalized per level after the registry's transform of ``BCB`` (``log(BCB + offset)``, see
``bcb_emulator.data.normalization``) unless ``target_transform="none"``.

Example:

>>> dataset = BuiltDataset.open(data_dir, "coarse_l20")  # doctest: +SKIP
>>> ds = make_windows(dataset, "train", window=8, batch_size=4, shuffle=True,
...                   seed=0)  # doctest: +SKIP
>>> inputs, y = next(iter(ds))  # doctest: +SKIP
>>> inputs["x3d"].shape  # doctest: +SKIP
TensorShape([4, 8, 46, 72, 160])
"""

from __future__ import annotations

import tensorflow as tf

from bcb_emulator.data.dataset import BuiltDataset
from bcb_emulator.data.normalization import NormalizationStats
from bcb_emulator.grid import Grid

#: Default memory budget of one chunk of frames, bytes (about twice that is resident: the
#: chunk and the frames tf.data buffers to cut the next one).
CHUNK_BYTES = 2**30


def read_frames(dataset: BuiltDataset, split: str) -> tf.data.Dataset:
    """The time steps of `split` in time order: dicts of ``x2d, x3d, bcb, airmass, time``."""
    import tensorflow_datasets as tfds

    dataset.check_split(split)
    builder = tfds.builder_from_directory(dataset.path)
    read_config = tfds.ReadConfig(try_autocache=False, interleave_cycle_length=1)
    return builder.as_dataset(split=split, shuffle_files=False, read_config=read_config)


def make_windows(
    dataset: BuiltDataset,
    split: str,
    *,
    window: int,
    stride: int = 1,
    batch_size: int,
    shuffle: bool,
    seed: int,
    normalize: bool = True,
    target_transform: str | None = None,
    return_metadata: bool = False,
    drop_remainder: bool = False,
    chunk_frames: int | None = None,
    emission_memory_days: tuple[float, ...] = (),
    advected_memory_days: tuple[float, ...] = (),
) -> tf.data.Dataset:
    """Batches of windows of `window` consecutive steps of `split`, ready for ``model.fit``.

    Args:
        dataset: the built dataset (`BuiltDataset.open`).
        split: split name, e.g. ``"train"``, ``"pi_train"``, ``"ood_fire2021"``.
        window: ``T``, steps per window (>= 1).
        stride: steps between the starts of consecutive windows (>= 1); starts are the steps
            ``0, stride, 2·stride, …`` of the split whose windows have no gap.
        batch_size: windows per batch.
        shuffle: shuffle window order (deterministic in `seed`; differs between epochs).
        seed: seed of the shuffle.
        normalize: normalize inputs and target with the stored statistics.
        target_transform: ``"log"`` or ``"none"``; default the registry's (``"log"``).
        return_metadata: also yield ``{"time": (B,) float64, "airmass": (B, H, W, L),
            "bcb": (B, H, W, L)}`` of the last frame, ``bcb`` the target in physical units
            (10⁻¹¹ kg/kg) whatever `normalize` says, for evaluation (column burden, per-time
            metrics).
        drop_remainder: drop the last, smaller batch.
        chunk_frames: steps held in memory at a time; default fits :data:`CHUNK_BYTES`.
        emission_memory_days: time scales τ (days) of emission-memory channels appended to
            ``x2d`` (see :func:`emission_memory`); empty for none.
        advected_memory_days: time scales τ (days) of advected emission-memory channels
            appended after those (see :func:`advected_memory`); empty for none.

    Returns:
        A dataset of ``({"x2d": (B, T, H, W, 6 + M), "x3d": (B, T, H, W, 8·L)},
        y (B, H, W, L))`` with `M` memory channels (emission memory, then advected),
        float32, plus the metadata dict if `return_metadata`; its cardinality is the number of
        batches (`BuiltDataset.num_batches`).
    """
    for name, value in (("window", window), ("stride", stride), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
    spec = dataset.spec
    stats = dataset.stats if normalize else None
    frames = read_frames(dataset, split)
    n_steps = dataset.split_sizes[split]
    if n_steps < window:
        raise ValueError(
            f"`window` must not exceed the {n_steps} steps of split {split!r} of "
            f"{dataset.path}. Received: window={window}"
        )
    h, w = spec.grid.shape
    n2d = 6 + len(emission_memory_days) + len(advected_memory_days)
    frame_bytes = 4 * h * w * (n2d + 8 * spec.n_levels + 3 * spec.n_levels) + 8
    if chunk_frames is None:
        chunk_frames = max(window + stride, CHUNK_BYTES // frame_bytes)
    shift = max(stride, (chunk_frames - window + 1) // stride * stride)  # multiple of stride
    chunk_len = shift + window - 1

    # Normalize each frame once (not once per window it belongs to); keep what is yielded.
    def frame(ex):
        x2d, x3d, y = ex["x2d"], ex["x3d"], ex["bcb"]  # (H, W, 6), (H, W, 8L), (H, W, L)
        if stats is not None:
            x2d, x3d = stats.normalize_x2d(x2d), stats.normalize_x3d(x3d)
            y = stats.normalize_target(y, target_transform)
        parts = (x2d, x3d, y, ex["time"])
        return parts + (ex["airmass"], ex["bcb"]) if return_metadata else parts

    frames = frames.map(frame, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if emission_memory_days:
        frames = emission_memory(frames, emission_memory_days)  # x2d: (H, W, 6 + M)
    if advected_memory_days:
        frames = advected_memory(
            frames, advected_memory_days, grid=spec.grid, n_levels=spec.n_levels, stats=stats
        )

    # Chunks of consecutive frames, overlapping by window - 1 steps; each gets an epoch seed.
    chunks = frames.window(chunk_len, shift=shift, drop_remainder=False)
    chunks = chunks.flat_map(lambda *parts: tf.data.Dataset.zip(parts).batch(chunk_len))
    epoch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    chunks = tf.data.Dataset.zip(chunks, epoch_seeds)

    def windows_of_chunk(chunk, chunk_seed):
        x2d, x3d, y, time = chunk[:4]  # (n, H, W, C) each; time (n,)
        starts = _window_starts(time, window, stride, shift, spec.dt_days)  # (n_windows,)
        if shuffle:
            starts = tf.random.experimental.stateless_shuffle(
                starts, seed=tf.stack([tf.cast(seed, tf.int64), chunk_seed])
            )

        def cut(s):
            inputs = {
                "x2d": tf.ensure_shape(x2d[s : s + window], (window, h, w, n2d)),
                "x3d": tf.ensure_shape(x3d[s : s + window], (window, h, w, 8 * spec.n_levels)),
            }  # (T, H, W, C)
            last = s + window - 1
            if not return_metadata:
                return inputs, y[last]  # y: (H, W, L)
            meta = {"time": time[last], "airmass": chunk[4][last], "bcb": chunk[5][last]}
            return inputs, y[last], meta

        return tf.data.Dataset.from_tensor_slices(starts).map(cut)

    ds = chunks.flat_map(windows_of_chunk)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)  # (B, T, H, W, C), (B, H, W, L)
    # The number of batches is known from the stored stamps: Keras shows progress against it
    # and does not take the end of the first epoch for data running out.
    n_batches = dataset.num_batches(
        split, window=window, stride=stride, batch_size=batch_size, drop_remainder=drop_remainder
    )
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    return ds.prefetch(tf.data.AUTOTUNE)


def emission_memory(frames: tf.data.Dataset, days: tuple[float, ...]) -> tf.data.Dataset:
    """Appends to each frame's ``x2d`` the emission memory: for each τ in `days`, the
    exponentially weighted mean of the emission channel (``BCB_biomass_src``, channel 5) over
    the split up to this step.

    ``m_τ(t) = a · m_τ(t_prev) + (1 − a) · e(t)`` with ``a = exp(−(t − t_prev) / τ)``: the weight
    of the past decays with the time elapsed, so a gap in the split decays it too. It starts at
    the split's first emission (no spin-up: the first days of a split remember less than τ).
    A weighted mean of the (normalized) emission has the emission's scale: no statistics of
    its own are needed. Inputs only — never the target.

    Args:
        frames: the split's frames in time order, tuples ``(x2d (H, W, 6), x3d, y, time, …)``.
        days: the time scales τ, days.

    Returns:
        The frames with ``x2d`` of shape ``(H, W, 6 + len(days))``.
    """
    tau = tf.constant(days, tf.float64)  # (M,)
    x2d_spec = frames.element_spec[0]
    h, w = x2d_spec.shape[0], x2d_spec.shape[1]
    start = (tf.constant(-float("inf"), tf.float64), tf.zeros((h, w, len(days)), tf.float32))

    def step(state, frame):
        previous_time, memory = state
        x2d, time = frame[0], frame[3]
        a = tf.cast(tf.exp(-(time - previous_time) / tau), tf.float32)  # (M,); 0 at the start
        memory = a * memory + (1.0 - a) * x2d[..., 5:6]  # (H, W, M)
        return (time, memory), (tf.concat([x2d, memory], axis=-1), *frame[1:])

    return frames.scan(start, step)


def _window_starts(
    time: tf.Tensor, window: int, stride: int, shift: int, dt_days: float
) -> tf.Tensor:
    """Local starts of the windows a chunk owns: aligned to `stride`, before `shift`, no gap.

    Args:
        time: ``(n,)`` float64 time stamps of the chunk, days.

    Returns:
        ``(n_windows,)`` int64 starts, increasing.
    """
    n = tf.shape(time, out_type=tf.int64)[0]
    step_ok = tf.abs(time[1:] - time[:-1] - dt_days) < 1e-3 * dt_days  # (n - 1,)
    bad = tf.concat([[0], tf.cumsum(tf.cast(~step_ok, tf.int64))], axis=0)  # (n,)
    n_starts = tf.maximum(n - window + 1, 0)
    starts = tf.range(n_starts, dtype=tf.int64)
    no_gap = tf.gather(bad, starts + window - 1) - tf.gather(bad, starts) == 0
    keep = no_gap & (starts < shift) & (starts % stride == 0)
    return tf.boolean_mask(starts, keep)


def column_wind(x3d, n_levels: int):
    """``(u, v)``, each ``(..., H, W)``: the mean wind of the `n_levels` layers of physical
    ``x3d`` ``(..., H, W, 8·L)`` (``u`` and ``v`` are its first two variables), m/s."""
    return (
        tf.reduce_mean(x3d[..., :n_levels], axis=-1),
        tf.reduce_mean(x3d[..., n_levels : 2 * n_levels], axis=-1),
    )


class AdvectedMemory:
    """One step of the advected emission memory on `grid` for time scales `days`.

    ``m_τ(t) = a · S(m_τ(t_prev)) + (1 − a) · e(t)`` with ``a = exp(−(t − t_prev) / τ)``, where
    ``S`` moves the field along the wind over ``t − t_prev`` (at most a day): a semi-Lagrangian
    step, each cell taking the bilinear interpolation of the previous field at its departure
    point, periodic in longitude and clamped at the pole rows (whose zonal distance is their
    neighbours'). Bilinear weights sum to 1, so ``S`` commutes with a normalization
    ``(e − mean) / std``: the memory of the normalized emission is the normalized memory.
    No physics beyond the wind: no convection, no deposition, no vertical structure, and a
    numerically diffusive scheme; the network corrects the rest.

    Used by the training pipeline (`advected_memory`) and by ``bcb-emulator predict``: one
    implementation for both.
    """

    def __init__(self, grid: Grid, days: tuple[float, ...]):
        import numpy as np

        from bcb_emulator.grid import EARTH_RADIUS

        self.shape = grid.shape
        self.tau = tf.constant(days, tf.float64)  # (M,)
        cos_lat = np.cos(np.deg2rad(grid.lat))
        cos_lat[0], cos_lat[-1] = cos_lat[1], cos_lat[-2]
        # Cells per metre: rows along the meridian, columns along the parallel.
        self.rows_per_m = float(1.0 / (EARTH_RADIUS * np.deg2rad(grid.dlat)))
        self.cols_per_m = tf.constant(
            (1.0 / (EARTH_RADIUS * cos_lat * np.deg2rad(grid.dlon)))[:, None], tf.float32
        )  # (H, 1)

    def shift(self, field, u, v, seconds):
        """`field` ``(H, W, M)`` at the departure points of the wind `u`, `v` ``(H, W)`` (m/s)
        over `seconds`."""
        h, w = self.shape
        rows = tf.range(h, dtype=tf.float32)[:, None]  # (H, 1)
        cols = tf.range(w, dtype=tf.float32)[None, :]  # (1, W)
        r = tf.clip_by_value(rows - v * seconds * self.rows_per_m, 0.0, h - 1.0)  # (H, W)
        c = cols - u * seconds * self.cols_per_m  # (H, W)
        r0, c0 = tf.floor(r), tf.floor(c)
        fr, fc = (r - r0)[..., None], (c - c0)[..., None]  # (H, W, 1)
        r0 = tf.cast(r0, tf.int32)
        r1 = tf.minimum(r0 + 1, h - 1)
        c0 = tf.math.floormod(tf.cast(c0, tf.int32), w)
        c1 = tf.math.floormod(c0 + 1, w)

        def at(i, j):
            return tf.gather_nd(field, tf.stack([i, j], axis=-1))  # (H, W, M)

        south = (1 - fc) * at(r0, c0) + fc * at(r0, c1)
        north = (1 - fc) * at(r1, c0) + fc * at(r1, c1)
        return (1 - fr) * south + fr * north

    def step(self, memory, emission, u, v, elapsed_days):
        """The memory ``(H, W, M)`` after `elapsed_days` (float64; ``inf`` at the first step,
        which returns the emission) with `emission` ``(H, W)`` and wind `u`, `v` ``(H, W)``."""
        elapsed = tf.cast(elapsed_days, tf.float64)
        a = tf.cast(tf.exp(-elapsed / self.tau), tf.float32)  # (M,); 0 at the start
        seconds = tf.cast(tf.minimum(elapsed, 1.0) * 86400.0, tf.float32)
        moved = self.shift(tf.cast(memory, tf.float32), u, v, seconds)
        return a * moved + (1.0 - a) * tf.cast(emission, tf.float32)[..., None]


def advected_memory(
    frames: tf.data.Dataset,
    days: tuple[float, ...],
    *,
    grid: Grid,
    n_levels: int,
    stats: NormalizationStats | None,
) -> tf.data.Dataset:
    """Appends to each frame's ``x2d`` the advected emission memory (`AdvectedMemory`): for each
    τ in `days`, the emission channel (``BCB_biomass_src``, channel 5) carried along the mean
    wind of the dataset's `n_levels` layers (`column_wind`) and forgotten with time scale τ,
    over the split up to this step: where the fires of the last days have blown their smoke,
    not only where they burn (:func:`emission_memory`). Like the local memory it is a
    weighted mean of the (normalized) emission, with its scale, and starts at the split's
    first emission; a gap in time decays it and moves it (by at most a day's wind). Inputs
    only — never the target.

    Args:
        frames: the split's frames in time order, tuples ``(x2d (H, W, C), x3d (H, W, 8·L),
            y, time, …)``, ``x3d`` normalized with `stats` (physical if `stats` is None).
        days: the time scales τ, days.
        grid: the dataset's horizontal grid.
        n_levels: ``L``.
        stats: the statistics `frames` are normalized with, or None.

    Returns:
        The frames with ``len(days)`` more ``x2d`` channels.
    """
    advection = AdvectedMemory(grid, days)
    if stats is not None:
        mean = tf.constant(stats.x3d_mean[: 2 * n_levels], tf.float32)  # u, v channels
        std = tf.constant(stats.x3d_std[: 2 * n_levels], tf.float32)
    start = (tf.constant(-float("inf"), tf.float64), tf.zeros((*grid.shape, len(days))))

    def step(state, frame):
        previous_time, memory = state
        x2d, x3d, time = frame[0], frame[1], frame[3]
        wind = x3d[..., : 2 * n_levels]  # (H, W, 2L)
        if stats is not None:
            wind = wind * std + mean
        u, v = column_wind(wind, n_levels)  # (H, W) each
        memory = advection.step(memory, x2d[..., 5], u, v, time - previous_time)  # (H, W, M)
        return (time, memory), (tf.concat([x2d, memory], axis=-1), *frame[1:])

    return frames.scan(start, step)
