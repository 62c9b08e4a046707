"""A built ``modele_bcb`` dataset, opened once; and the build itself as a library function.

`build_dataset` turns a folder of ModelE daily files into the TFDS dataset
``data_dir/modele_bcb/<name>/<version>/`` (the same result as ``tfds build``) and returns it
opened. `BuiltDataset.open` finds the version folder once and reads what is stored beside the
records: the layout (``dataset_spec.json``), the normalization statistics
(``normalization.json``), the split sizes (TFDS's ``dataset_info.json``) and the days of each
split (``split_days.json``). Training, evaluation, tuning and export all take this one object.

Example:

>>> dataset = BuiltDataset.open("data/", "coarse_l20")  # doctest: +SKIP
>>> dataset.split_sizes  # doctest: +SKIP
{'pi_train': 35040, 'train': 35040, 'validation': 8688, 'test': 8832, ...}
>>> ds = dataset.windows("train", window=8, batch_size=4, shuffle=True, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from bcb_emulator.data import normalization
from bcb_emulator.data.calendar import expected_times
from bcb_emulator.data.spec import DatasetSpec, SplitRange

#: Name of the TFDS dataset (``tfds_builders/modele_bcb``).
DATASET_NAME = "modele_bcb"
#: Files stored in the version folder beside the records.
SPEC_FILENAME = "dataset_spec.json"
SPLIT_DAYS_FILENAME = "split_days.json"
#: The daily files a build's input folder must hold, ``YYYYMMDD.<stream>E3oma.nc``.
DAILY_FILE_GLOB = "[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9].*E3oma.nc"
_VERSION = re.compile(r"^\d+\.\d+\.\d+$")

#: Split date ranges as given to `build_dataset`: name -> ("YYYY-MM-DD", "YYYY-MM-DD").
SplitRanges = Mapping[str, tuple[str, str]]


def version_dir(data_dir: str | os.PathLike, builder_config: str) -> Path:
    """The version folder ``data_dir/modele_bcb/<builder_config>/<latest version>``."""
    config_dir = Path(data_dir) / DATASET_NAME / builder_config
    versions = (
        sorted(
            (p for p in config_dir.iterdir() if p.is_dir() and _VERSION.match(p.name)),
            key=lambda p: tuple(int(x) for x in p.name.split(".")),
        )
        if config_dir.is_dir()
        else []
    )
    if not versions or not (versions[-1] / "dataset_info.json").exists():
        aside = sorted(config_dir.glob("*.old.*")) if config_dir.is_dir() else []
        hint = (
            f" An --overwrite stopped mid-swap left the previous dataset at {aside[0]}; "
            "rerun `bcb-emulator build-dataset` to put it back."
            if aside
            else ""
        )
        raise ValueError(
            f"No built dataset {DATASET_NAME}/{builder_config} in {data_dir}: expected "
            f"{config_dir}/<version>/dataset_info.json. Build it with "
            f"`bcb-emulator build-dataset`.{hint}"
        )
    return versions[-1]


@dataclasses.dataclass(frozen=True)
class BuiltDataset:
    """A built dataset: where it is, its layout, statistics and splits.

    Attributes:
        path: the version folder ``data_dir/modele_bcb/<name>/<version>``.
        name: the builder config it was built with (e.g. ``"coarse_l20"``).
        spec: grid, ``L``, steps per day and split date ranges.
        stats: normalization statistics (training splits only).
        split_sizes: number of time steps of each split.
        split_days: the day numbers each split holds, in order (days without files are
            absent when the dataset was built with ``allow_gaps``).
    """

    path: Path
    name: str
    spec: DatasetSpec
    stats: normalization.NormalizationStats
    split_sizes: dict[str, int]
    split_days: dict[str, tuple[int, ...]]

    @classmethod
    def open(cls, data_dir: str | os.PathLike, builder_config: str) -> BuiltDataset:
        """Opens the latest version of ``modele_bcb/<builder_config>`` in `data_dir`."""
        path = version_dir(data_dir, builder_config)
        spec = DatasetSpec.from_json(json.loads((path / SPEC_FILENAME).read_text()))
        stats = normalization.load(path / normalization.STATS_FILENAME)
        info = json.loads((path / "dataset_info.json").read_text())
        sizes = {
            split["name"]: sum(int(n) for n in split.get("shardLengths", []))
            for split in info.get("splits", [])
        }
        days_path = path / SPLIT_DAYS_FILENAME
        if days_path.exists():
            days = {k: tuple(v) for k, v in json.loads(days_path.read_text()).items()}
        else:  # built before the days were stored: every day of each range
            days = {s.name: tuple(s.days()) for s in spec.splits if s.name in sizes}
        for split, n_steps in sizes.items():
            if len(days.get(split, ())) * spec.steps_per_day != n_steps:
                raise ValueError(
                    f"{path}: split {split!r} holds {n_steps} steps but its stored days "
                    f"give {len(days.get(split, ())) * spec.steps_per_day}; rebuild the dataset "
                    "with `bcb-emulator build-dataset --overwrite`."
                )
        return cls(path, builder_config, spec, stats, sizes, days)

    def check_split(self, split: str) -> None:
        """Raises `ValueError` naming the splits if `split` is not one of them."""
        if split not in self.split_sizes:
            raise ValueError(
                f"`split` must be one of {sorted(self.split_sizes)} of "
                f"{DATASET_NAME}/{self.name}. Received: split={split!r}"
            )

    def times(self, split: str) -> np.ndarray:
        """``(n_steps,)`` float64 time stamps of `split` (days since 1850-01-01), in order."""
        self.check_split(split)
        days = self.split_days[split]
        stamps = [expected_times(d, self.spec.steps_per_day, self.spec.stamp_phase) for d in days]
        return np.concatenate(stamps) if stamps else np.zeros((0,), np.float64)

    @property
    def data_dir(self) -> Path:
        """The TFDS ``data_dir`` the dataset was built into."""
        return self.path.parents[2]

    def num_windows(self, split: str, *, window: int, stride: int = 1) -> int:
        """Windows `windows` yields for `split`: starts ``0, stride, …`` without a time gap."""
        return count_windows(self.times(split), window, stride, self.spec.dt_days)

    def num_batches(
        self,
        split: str,
        *,
        window: int,
        batch_size: int,
        stride: int = 1,
        drop_remainder: bool = False,
    ) -> int:
        """Batches `windows` yields for `split` with the same arguments, from the stored time
        stamps (no data read)."""
        n = self.num_windows(split, window=window, stride=stride)
        return n // batch_size if drop_remainder else -(-n // batch_size)

    def frames(self, split: str):
        """The time steps of `split` in order: a `tf.data.Dataset` of dicts of ``x2d, x3d,
        bcb, airmass, time`` (see ``bcb_emulator.data.pipeline.read_frames``)."""
        from bcb_emulator.data.pipeline import read_frames

        return read_frames(self, split)

    def windows(self, split: str, **kwargs):
        """Batches of windows of `split` for ``model.fit``; keyword arguments as
        ``bcb_emulator.data.pipeline.make_windows`` (``window``, ``batch_size``, ``shuffle``,
        ``seed``, ``stride``, ``normalize``, ``return_metadata``, …)."""
        from bcb_emulator.data.pipeline import make_windows

        return make_windows(self, split, **kwargs)


def count_windows(times: np.ndarray, window: int, stride: int, dt_days: float) -> int:
    """Windows of `window` consecutive steps starting at ``0, stride, 2·stride, …`` of `times`
    whose stamps are `dt_days` apart (no gap), the rule of ``pipeline.make_windows``."""
    n = times.shape[0]
    if n < window:
        return 0
    step_ok = np.abs(np.diff(times) - dt_days) < 1e-3 * dt_days  # (n - 1,)
    bad = np.concatenate([[0], np.cumsum(~step_ok)])  # (n,) gaps before each step
    starts = np.arange(0, n - window + 1, stride)
    return int(np.count_nonzero(bad[starts + window - 1] == bad[starts]))


def build_dataset(
    input_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    config_name: str = "coarse_l20",
    splits: SplitRanges | Sequence[str] | None = None,
    *,
    name: str | None = None,
    stats_splits: Sequence[str] | None = None,
    allow_gaps: bool | None = None,
    beam_runner=None,
    overwrite: bool = False,
    static_file: str | os.PathLike | None = None,
) -> BuiltDataset:
    """Builds the dataset from the daily files in `input_dir` and returns it opened.

    An existing dataset of the same name is reused only if it was built with the same layout
    (splits, statistics splits, gaps); otherwise this refuses unless `overwrite`. With
    `overwrite` the new dataset is built aside and replaces the old one only once complete, so
    bad input or a kill leaves the old one as it was. What a killed build left is removed first
    (``bcb_emulator.data.build_dir``).

    Args:
        input_dir: folder of ``YYYYMMDD.<stream>E3oma.nc`` files (TFDS ``manual_dir``), and
            ModelE's annual ``ANN<year>.xaij<run>.nc`` with the static fields if it has one.
        data_dir: TFDS ``data_dir``; the dataset goes to ``data_dir/modele_bcb/<name>/<version>``.
        config_name: builder config giving grid and L: ``coarse_l20``, ``native_l20``,
            ``demo_l20``, ``tiny_l3``.
        splits: None for the config's date ranges; a sequence of split names to keep a subset;
            or a mapping ``name -> (start, end)`` of your own date ranges (inclusive).
        name: name of the built config when `splits`, `stats_splits` or `allow_gaps` change
            the layout; default ``<config_name>_custom``.
        stats_splits: training splits the statistics come from; default the config's that
            remain.
        allow_gaps: skip days without files inside a range instead of failing.
        beam_runner: an Apache Beam runner (e.g. ``DirectRunner()``) to build with Beam.
        overwrite: rebuild if the dataset already exists (aside, then swapped in).
        static_file: the netCDF file holding ``axyp`` and ``landfr``; default the annual file
            of `input_dir`, else each day's ``aijh1`` file (``docs/data_contract.md``).

    Returns:
        The built dataset, opened (`BuiltDataset.name` is the config name it was built as).
    """
    import tensorflow_datasets as tfds

    from bcb_emulator.data import build_dir
    from tfds_builders.modele_bcb import modele_bcb_dataset_builder as mb

    builder_cls = mb.Builder
    if config_name not in builder_cls.builder_configs:
        raise ValueError(
            f"`config_name` must be one of {sorted(builder_cls.builder_configs)}. "
            f"Received: config_name={config_name!r}"
        )
    base = builder_cls.builder_configs[config_name]
    spec = base.spec
    if splits is not None:
        if isinstance(splits, Mapping):
            ranges = tuple(SplitRange(k, *v) for k, v in splits.items())
        else:
            ranges = tuple(spec.split(s) for s in splits)
        spec = spec.with_splits(ranges, stats_splits=tuple(stats_splits) if stats_splits else None)
    elif stats_splits is not None:
        spec = spec.with_splits(spec.splits, stats_splits=tuple(stats_splits))
    if allow_gaps is not None:
        spec = dataclasses.replace(spec, allow_gaps=allow_gaps)
    config = base
    if spec != base.spec or (name and name != config_name):
        # TFDS refuses a custom config named like a registered one (its folder would hold other
        # data under the same name): a changed layout gets its own name.
        built_name = name or f"{config_name}_custom"
        if built_name in builder_cls.builder_configs:
            raise ValueError(
                f"`name` must differ from the registered configs "
                f"{sorted(builder_cls.builder_configs)} when the splits change. "
                f"Received: name={built_name!r}"
            )
        spec = dataclasses.replace(spec, name=built_name)
        config = mb.ModelEBcbConfig(name=built_name, description=base.description, spec=spec)
    config_dir = Path(data_dir) / DATASET_NAME / config.name
    version = str(builder_cls.VERSION)
    target = config_dir / version
    if overwrite or not target.exists():  # a dataset to reuse needs no input
        build_dir.check_input_dir(input_dir, DAILY_FILE_GLOB)
    made = build_dir.prepare_config_dir(data_dir, config_dir)

    def prepare(into: Path) -> None:
        build_dir.check_input_dir(input_dir, DAILY_FILE_GLOB)
        builder = builder_cls(config=config, data_dir=os.fspath(into), static_file=static_file)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.fspath(input_dir),
                download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
                beam_runner=beam_runner,
            )
        )

    try:
        with build_dir.build_lock(config_dir, f"{DATASET_NAME}/{config.name}"):
            build_dir.remove_leftovers(config_dir, version)
            if not target.exists():
                prepare(Path(data_dir))
            elif not overwrite:
                _check_reusable(target, spec)
            else:
                staging = build_dir.staging_dir(config_dir)
                try:
                    prepare(staging)
                    build_dir.swap_in(staging / DATASET_NAME / config.name / version, target)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        build_dir.remove_created(made)  # the folders this call made, unless they hold more
        raise
    return BuiltDataset.open(data_dir, config.name)


def _check_reusable(path: Path, spec: DatasetSpec) -> None:
    """Raises `ValueError` unless the dataset in `path` was built with `spec`'s layout."""
    spec_path = path / SPEC_FILENAME
    if not (path / "dataset_info.json").exists() or not spec_path.exists():
        raise ValueError(
            f"{path} is not a complete dataset (no dataset_info.json or {SPEC_FILENAME}). "
            "Rebuild it with --overwrite (`overwrite=True`)."
        )
    built = DatasetSpec.from_json(json.loads(spec_path.read_text()))
    if built == spec:
        return
    differences = []
    for field in dataclasses.fields(DatasetSpec):
        old, new = getattr(built, field.name), getattr(spec, field.name)
        if old != new:
            if field.name == "splits":
                old, new = _ranges_text(old), _ranges_text(new)
            differences.append(f"{field.name}: built {old}, requested {new}")
    raise ValueError(
        f"{path} already holds {DATASET_NAME}/{spec.name} built with another layout ("
        f"{'; '.join(differences)}). Rebuild it with --overwrite (`overwrite=True`), or build "
        "under another --name (`name=`)."
    )


def _ranges_text(splits: tuple[SplitRange, ...]) -> str:
    return "[" + ", ".join(f"{s.name}={s.start}:{s.end}" for s in splits) + "]"
