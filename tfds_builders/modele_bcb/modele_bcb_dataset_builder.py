"""modele_bcb: ModelE E3 black carbon (BCB) output as TFRecords, one example per time step.

Reads the daily ``YYYYMMDD.<stream>E3oma.nc`` files (``docs/data_contract.md``) from
``manual_dir`` — real ModelE output or the reference model's — and the static fields from
ModelE's annual ``ANN<year>.xaij<run>.nc`` there (or the builder's ``static_file``, else the
daily ``aijh1`` files); validates all of them first (``bcb_emulator.data.reader``), computes the
normalization statistics from the training split(s) (``bcb_emulator.data.normalization``),
then writes one example per time step in time order. Each example's features are serialized in
sorted key order, so two builds of the same files write byte-identical records.

Splits are date ranges in the builder config (``bcb_emulator.data.spec``). Besides the
TFRecords, the version folder holds ``normalization.json`` (statistics),
``dataset_spec.json`` (grid, levels, time step, split date ranges) and ``split_days.json``
(the days each split holds); ``bcb_emulator.data.BuiltDataset`` reads them.

Under Apache Beam (``tfds build --beam_pipeline_options=...`` or a ``DownloadConfig`` with a
``beam_runner``) ``_generate_examples`` returns a Beam transform over days instead of a
generator; the records are the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
import tqdm
from tensorflow_datasets.core import example_serializer

from bcb_emulator import variables
from bcb_emulator.data import normalization, reader
from bcb_emulator.data.dataset import SPEC_FILENAME, SPLIT_DAYS_FILENAME
from bcb_emulator.data.spec import DatasetSpec, SplitRange
from bcb_emulator.demo import DEMO_SPLITS
from bcb_emulator.skill import SKILL_SPLITS


@dataclasses.dataclass(eq=False, kw_only=True)
class ModelEBcbConfig(tfds.core.BuilderConfig):
    """Builder config: one grid × level count, with its date-range splits.

    Attributes:
        spec: the dataset layout (grid, ``L``, steps per day, splits, statistics splits).
    """

    spec: DatasetSpec | None = None

    def __post_init__(self):
        if self.spec is None or self.spec.name != self.name:
            raise ValueError(
                f"`spec` must be a DatasetSpec named like the config {self.name!r}. "
                f"Received: {self.spec!r}"
            )


#: Default date ranges of the full-size configs (the reference model's scenarios: 'pi' in the
#: 1850s, '2010s' 2010-2012, '2020s' 2020-2021 with an extreme fire year). Users with other
#: periods pass their own ranges (``bcb_emulator.data.build_dataset(splits=...)``).
DEFAULT_SPLITS: tuple[SplitRange, ...] = (
    SplitRange("pi_train", "1850-01-01", "1851-12-31"),
    SplitRange("ood_pi", "1852-01-01", "1852-12-31"),
    SplitRange("train", "2010-01-01", "2011-12-31"),
    SplitRange("validation", "2012-01-01", "2012-06-30"),
    SplitRange("test", "2012-07-01", "2012-12-31"),
    SplitRange("ood_2020", "2020-01-01", "2020-12-31"),
    SplitRange("ood_fire2021", "2021-01-01", "2021-12-31"),
)
#: Training splits: statistics come from these only.
DEFAULT_STATS_SPLITS = ("pi_train", "train")

#: Dates of the dummy data (``dummy_data/make_dummy_data.py``), 4 steps a day.
TINY_SPLITS: tuple[SplitRange, ...] = (
    SplitRange("pi_train", "1850-01-01", "1850-01-01"),
    SplitRange("train", "2010-01-01", "2010-01-02"),
    SplitRange("validation", "2010-01-03", "2010-01-03"),
    SplitRange("test", "2010-01-04", "2010-01-04"),
    SplitRange("ood_fire2021", "2021-08-01", "2021-08-01"),
)


def _config(name: str, grid_name: str, n_levels: int, description: str, **kw) -> ModelEBcbConfig:
    splits = kw.pop("splits", DEFAULT_SPLITS)
    stats_splits = kw.pop("stats_splits", DEFAULT_STATS_SPLITS)
    spec = DatasetSpec(
        name=name,
        grid_name=grid_name,
        n_levels=n_levels,
        splits=splits,
        stats_splits=stats_splits,
        **kw,
    )
    return ModelEBcbConfig(name=name, description=description, spec=spec)


def _examples_of_day(
    day: int, input_dir: str, spec: DatasetSpec, split: SplitRange, static: reader.StaticFields
):
    """Beam ``FlatMap`` body: the ``(key, example)`` pairs of one day."""
    return list(reader.day_examples(input_dir, day, spec, split, static))


class _DeterministicSerializer(example_serializer.ExampleSerializer):
    """TFDS's serializer with the features of each ``tf.train.Example`` in sorted key order.

    A ``tf.train.Example`` keeps its features in a protobuf map, which protobuf serializes in
    its hash table's order; that hash is seeded per process, so two identical builds wrote
    records with the five features in different orders. ``deterministic=True`` sorts map keys.
    """

    def serialize_example(self, example) -> bytes:
        return self.get_tf_example(example).SerializeToString(deterministic=True)


@contextlib.contextmanager
def _deterministic_records():
    """TFDS's split writers create their serializer as ``example_serializer.ExampleSerializer``
    while a build runs: for the block, that name is the deterministic one."""
    original = example_serializer.ExampleSerializer
    example_serializer.ExampleSerializer = _DeterministicSerializer
    try:
        yield
    finally:
        example_serializer.ExampleSerializer = original


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for ModelE E3 BCB output."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: X2D, X3D, BCB, airmass and time per half-hourly step.",
        "1.1.0": "split_days.json: the days each split holds (window counts without reading).",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Put the daily ModelE E3 output files of every split's date range into one folder,
    `manual_dir`, named `YYYYMMDD.<stream>E3oma.nc` for the streams aijh1, aijlh1, cijlh1,
    taijlh1 and tNDaijh1 (see docs/data_contract.md), with ModelE's annual file
    `ANN<year>.xaij<run>.nc` holding `axyp` and `landfr` (or put those two into every aijh1
    file). No ModelE output can be downloaded; `bcb-emulator simulate` writes such files.
    Then: `bcb-emulator build-dataset --input DIR --data-dir OUT --config coarse_l20`, or
    `tfds build tfds_builders/modele_bcb --manual_dir DIR --data_dir OUT --config coarse_l20`.
    """
    BUILDER_CONFIGS = [
        _config("coarse_l20", "coarse", 20, "4x5 degree grid (46x72), lowest 20 levels."),
        _config("native_l20", "native", 20, "2x2.5 degree grid (90x144), lowest 20 levels."),
        _config(
            "demo_l20",
            "coarse",
            20,
            "The demo: 4x5 degree grid, 20 levels, 3-hourly output of the reference model.",
            splits=DEMO_SPLITS,
            steps_per_day=8,
            stamp_phase=11 / 12,  # 3-hourly output stamped HH:45 (bcb_emulator.reference.model)
        ),
        _config(
            "skill_l20",
            "coarse",
            20,
            "The skill benchmark: 4x5 degree grid, 20 levels, 3-hourly output of the reference "
            "model; training on 2010, test (the long run) on 2011 (bcb_emulator.skill).",
            splits=SKILL_SPLITS,
            stats_splits=("train",),
            steps_per_day=8,
            stamp_phase=11 / 12,
        ),
        _config(
            "tiny_l3",
            "tiny",
            3,
            "6x8 toy grid, 3 levels, 4 steps a day: the dummy data of the tests.",
            splits=TINY_SPLITS,
            steps_per_day=4,
        ),
    ]
    DEFAULT_CONFIG_NAME = "coarse_l20"

    def __init__(self, *, static_file: str | os.PathLike | None = None, **kwargs):
        """`static_file`: the file holding ``axyp`` and ``landfr``; default the annual
        ``ANN<year>.xaij<run>.nc`` of ``manual_dir``, else each day's ``aijh1`` file."""
        super().__init__(**kwargs)
        self.static_file = static_file
        self._original_state["static_file"] = static_file  # TFDS pickles builders by this

    @property
    def spec(self) -> DatasetSpec:
        """The dataset layout of the chosen config."""
        return self.builder_config.spec

    def _info(self) -> tfds.core.DatasetInfo:
        """Features of one time step; shapes from the config's grid and L."""
        h, w = self.spec.grid.shape
        n_levels = self.spec.n_levels

        def field(channels):
            return tfds.features.Tensor(
                shape=(h, w, channels), dtype=np.float32, encoding=tfds.features.Encoding.BYTES
            )

        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "x2d": field(len(variables.X2D)),
                    "x3d": field(len(variables.X3D) * n_levels),
                    "bcb": field(n_levels),
                    "airmass": field(n_levels),
                    # As bytes: TFDS stores a plain float64 in a float32 list, which would
                    # round half-hourly stamps of recent years to ~6 minutes.
                    "time": tfds.features.Tensor(
                        shape=(), dtype=np.float64, encoding=tfds.features.Encoding.BYTES
                    ),
                },
                doc={
                    "x2d": "(H, W, 6): " + ", ".join(v.name for v in variables.X2D),
                    "x3d": "(H, W, 8L), channel i*L+k = level k+1 of "
                    + ", ".join(v.name for v in variables.X3D),
                    "bcb": f"(H, W, L) {variables.TARGET.units}",
                    "airmass": "(H, W, L) kg/m2",
                    "time": "days since 1850-01-01, noleap calendar",
                },
            ),
            supervised_keys=None,
            disable_shuffling=True,
            homepage="https://www.giss.nasa.gov/tools/modelE/",
        )

    def _log_download_bytes(self) -> None:
        """Says what is built (TFDS's own line speaks of downloads of unknown size)."""
        print(
            f"Building {self.name}/{self.builder_config.name} {self.version} into {self.data_dir}"
        )

    def _log_download_done(self) -> None:
        """Nothing: the caller reports the built dataset."""

    def _download_and_prepare(self, dl_manager, download_config):
        """Records whether a Beam runner is configured, then builds as usual."""
        self._use_beam = bool(download_config.beam_runner or download_config.beam_options)
        with _deterministic_records():
            return super()._download_and_prepare(
                dl_manager=dl_manager, download_config=download_config
            )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """Validates every file of every split, stores statistics, returns the generators."""
        input_dir = Path(dl_manager.manual_dir)
        days = {
            s.name: reader.split_days(input_dir, s, self.spec.allow_gaps) for s in self.spec.splits
        }
        self._static = reader.find_static(input_dir, self.spec, self.static_file)
        stats = _validate_and_compute_stats(input_dir, days, self.spec, self._static)
        out_dir = Path(self.data_dir)  # the temporary folder until the build completes
        stats.save(out_dir / normalization.STATS_FILENAME)
        (out_dir / SPEC_FILENAME).write_text(json.dumps(self.spec.to_json(), indent=1))
        (out_dir / SPLIT_DAYS_FILENAME).write_text(json.dumps(days))
        return {
            name: self._generate_examples(input_dir=str(input_dir), split=name, days=split_days)
            for name, split_days in days.items()
        }

    def _generate_examples(self, input_dir: str, split: str, days: list[int]):
        """Yields ``(key, example)`` in time order, or a Beam transform over `days`."""
        split_range = self.spec.split(split)
        if getattr(self, "_use_beam", False):
            beam = tfds.core.lazy_imports.apache_beam
            return beam.Create(days) | beam.FlatMap(
                _examples_of_day,
                input_dir=input_dir,
                spec=self.spec,
                split=split_range,
                static=self._static,
            )
        return reader.iter_examples(
            input_dir, split_range, _progress(days, split), self.spec, self._static
        )


def _progress(days: list[int], split: str):
    """Yields `days` with a progress bar, opened when the first day is asked for."""
    yield from tqdm.tqdm(days, desc=f"writing {split}", unit="day", leave=False)


def _validate_and_compute_stats(
    input_dir: os.PathLike,
    days: dict[str, list[int]],
    spec: DatasetSpec,
    static: reader.StaticFields,
) -> normalization.NormalizationStats:
    """Reads every day once (all checks, values included); accumulates training statistics.

    Structure first (cheap), so a missing variable in the last file fails at once; then values.
    """
    for split_days in days.values():
        for day in split_days:
            reader.scan_day(input_dir, day, spec, static)
    acc = normalization.StatsAccumulator(spec.grid.area, spec.n_levels)
    todo = [(name, day) for name, split_days in days.items() for day in split_days]
    for name, day in tqdm.tqdm(todo, desc="checking values, statistics", unit="day"):
        data = reader.read_day(input_dir, day, spec, static=static)
        if name in spec.stats_splits:
            acc.update(data.x2d, data.x3d, data.bcb)
    return acc.result(splits=spec.stats_splits)
