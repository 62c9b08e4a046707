"""Typed description of a ModelE BCB dataset: grid, levels, time step and date-range splits.

The TFDS builder (``tfds_builders/modele_bcb``), the reader, the statistics and the input
pipeline all take their layout from a :class:`DatasetSpec`. Splits are date ranges, never index
arithmetic: each :class:`SplitRange` names a split and the first and last day (inclusive, in the
``noleap`` calendar) whose daily files it holds.

Example:

>>> spec = DatasetSpec(
...     name="tiny",
...     grid_name="tiny",
...     n_levels=3,
...     steps_per_day=4,
...     splits=(SplitRange("train", "2010-01-01", "2010-01-02"),),
...     stats_splits=("train",),
... )
>>> spec.split("train").days()
[58400, 58401]
"""

from __future__ import annotations

import dataclasses
import re

from bcb_emulator.data.calendar import parse_date
from bcb_emulator.grid import GRIDS, Grid

#: The grid of the dummy data and tests (not a ModelE resolution).
TINY_GRID = GRIDS["tiny"]


@dataclasses.dataclass(frozen=True)
class SplitRange:
    """A named split holding every daily file from `start` to `end`, both inclusive.

    Attributes:
        name: split name, e.g. ``"train"``, ``"pi_train"``, ``"ood_fire2021"``.
        start: first day, ``"YYYY-MM-DD"`` (``noleap`` calendar).
        end: last day, ``"YYYY-MM-DD"``, not before `start`.
    """

    name: str
    start: str
    end: str

    def __post_init__(self):
        if not re.match(r"^[a-z][a-z0-9_]*$", self.name) or self.name == "all":
            raise ValueError(
                "`name` must be a lower-case identifier other than 'all'. "
                f"Received: name={self.name!r}"
            )
        if parse_date(self.end) < parse_date(self.start):
            raise ValueError(
                f"Split {self.name!r}: `end` must not be before `start`. "
                f"Received: start={self.start!r}, end={self.end!r}"
            )

    @property
    def first_day(self) -> int:
        """Day number of `start`."""
        return parse_date(self.start)

    @property
    def last_day(self) -> int:
        """Day number of `end`."""
        return parse_date(self.end)

    def days(self) -> list[int]:
        """Every day number of the range, in order."""
        return list(range(self.first_day, self.last_day + 1))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Layout of a dataset built from ModelE E3 daily files.

    Attributes:
        name: config name (the TFDS builder config).
        grid_name: horizontal grid, ``"coarse"`` (46×72), ``"native"`` (90×144) or ``"tiny"``
            (6×8, dummy data only).
        n_levels: ``L``, the number of lowest levels kept; files with more levels are cut.
        steps_per_day: output steps a day; stamps are at
            ``day + (k + stamp_phase) / steps_per_day``, ``k = 0 … steps_per_day − 1``.
        stamp_phase: where in each output interval its stamp sits, in (0, 1). 0.5 with 48
            steps a day gives ModelE's HH:15 / HH:45 stamps. Output of every n-th half-hour
            step stamped, as ModelE does, in the middle of that step (the reference model's
            subsampled output) has ``1 − 1/(2n)``: 11/12 for 3-hourly stamps at HH:45.
        splits: the date-range splits; ranges must not overlap.
        stats_splits: splits the normalization statistics are computed from (training splits
            only, never validation or test).
        allow_gaps: if False (default) a day without files inside a split's range is an error;
            if True such days are skipped (windows never cross them). A range with no files at
            all is always an error.
    """

    name: str
    grid_name: str
    n_levels: int
    splits: tuple[SplitRange, ...]
    stats_splits: tuple[str, ...] = ("train",)
    steps_per_day: int = 48
    allow_gaps: bool = False
    stamp_phase: float = 0.5

    def __post_init__(self):
        if self.grid_name not in GRIDS:
            raise ValueError(
                f"`grid_name` must be one of {sorted(GRIDS)}. "
                f"Received: grid_name={self.grid_name!r}"
            )
        if not 1 <= self.n_levels <= 62:
            raise ValueError(f"`n_levels` must be in 1..62. Received: n_levels={self.n_levels}")
        if self.steps_per_day < 1:
            raise ValueError(
                f"`steps_per_day` must be >= 1. Received: steps_per_day={self.steps_per_day}"
            )
        if not 0.0 < self.stamp_phase < 1.0:
            raise ValueError(
                f"`stamp_phase` must be in (0, 1). Received: stamp_phase={self.stamp_phase}"
            )
        if not self.splits:
            raise ValueError("`splits` must hold at least one SplitRange. Received: ()")
        names = [s.name for s in self.splits]
        if len(set(names)) != len(names):
            raise ValueError(f"`splits` must have unique names. Received: {names}")
        ordered = sorted(self.splits, key=lambda s: s.first_day)
        for a, b in zip(ordered[:-1], ordered[1:], strict=True):
            if b.first_day <= a.last_day:
                raise ValueError(
                    f"Split date ranges must not overlap: {a.name!r} ({a.start}..{a.end}) and "
                    f"{b.name!r} ({b.start}..{b.end})."
                )
        unknown = [s for s in self.stats_splits if s not in names]
        if not self.stats_splits or unknown:
            raise ValueError(
                f"`stats_splits` must name one or more of the splits {names}. "
                f"Received: stats_splits={self.stats_splits}"
            )

    @property
    def grid(self) -> Grid:
        """The horizontal grid."""
        return GRIDS[self.grid_name]

    @property
    def dt_days(self) -> float:
        """Time step, days."""
        return 1.0 / self.steps_per_day

    def split(self, name: str) -> SplitRange:
        """Returns the split called `name`."""
        for s in self.splits:
            if s.name == name:
                return s
        raise ValueError(
            f"`split` must be one of {[s.name for s in self.splits]}. Received: {name!r}"
        )

    def with_splits(
        self,
        splits: tuple[SplitRange, ...],
        name: str | None = None,
        stats_splits: tuple[str, ...] | None = None,
    ) -> DatasetSpec:
        """Returns a copy with other splits (and name); statistics splits default to ours."""
        names = {s.name for s in splits}
        if stats_splits is None:
            stats_splits = tuple(s for s in self.stats_splits if s in names)
        return dataclasses.replace(
            self, name=name or self.name, splits=tuple(splits), stats_splits=tuple(stats_splits)
        )

    def to_json(self) -> dict:
        """A JSON-serializable dict (stored with the dataset)."""
        out = dataclasses.asdict(self)
        out["splits"] = [dataclasses.asdict(s) for s in self.splits]
        out["stats_splits"] = list(self.stats_splits)
        return out

    @classmethod
    def from_json(cls, data: dict) -> DatasetSpec:
        """Inverse of :meth:`to_json`."""
        data = dict(data)
        data["splits"] = tuple(SplitRange(**s) for s in data["splits"])
        data["stats_splits"] = tuple(data["stats_splits"])
        return cls(**data)
