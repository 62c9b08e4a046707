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

    Returns:
        A dataset of ``({"x2d": (B, T, H, W, 6 + M), "x3d": (B, T, H, W, 8·L)},
        y (B, H, W, L))`` with `M` memory channels,
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
    n2d = 6 + len(emission_memory_days)
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
