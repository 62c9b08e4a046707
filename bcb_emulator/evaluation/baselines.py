"""Baselines the emulator is judged against, on the same samples.

- **NINT** (`MonthlyClimatology`): what ModelE does today when it cannot afford the tracer
  physics — prescribe monthly-mean concentrations ("non-interactive tracers"). Here: the mean
  BCB of the training splits per calendar month, cell and level.
- **Persistence** (`Persistence`): the true field one day earlier. It uses information the
  emulator does not have (past BCB is not an input), so it is a reference line, not a rival.

Example:

>>> import numpy as np
>>> clim = MonthlyClimatology.from_arrays(
...     times=np.array([58581.5, 58582.5]),  # 2010-07-01, 07-02
...     bcb=np.array([1.0, 3.0]).reshape(2, 1, 1, 1),
... )
>>> clim.months_with_data, float(clim.predict(np.array([58600.0]))[0, 0, 0, 0])
((7,), 2.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from bcb_emulator.evaluation.regions import month_of


@dataclasses.dataclass(frozen=True)
class MonthlyClimatology:
    """The monthly mean of BCB per calendar month, cell and level (NINT).

    Attributes:
        mean: ``(12, H, W, L)`` float64, 10⁻¹¹ kg/kg; month `m` (1–12) at index ``m − 1``.
            A month without training data holds the mean of the nearest month that has data
            (in calendar distance, the earlier one on a tie): `filled_from` says which.
        months_with_data: the months (1–12) the training splits hold.
        filled_from: ``(12,)`` the month whose mean each month uses.
        n_steps: ``(12,)`` training steps of each month.
    """

    mean: np.ndarray
    months_with_data: tuple[int, ...]
    filled_from: tuple[int, ...]
    n_steps: tuple[int, ...]

    @classmethod
    def from_batches(cls, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> MonthlyClimatology:
        """Accumulates ``(times (N,), bcb (N, H, W, L))`` batches of the training splits."""
        sums = None
        counts = np.zeros(12, np.int64)
        for times, bcb in batches:
            if sums is None:
                sums = np.zeros((12,) + bcb.shape[1:])
            for time, field in zip(times, bcb, strict=True):
                month = month_of(float(time))
                sums[month - 1] += field
                counts[month - 1] += 1
        if sums is None or not counts.any():
            raise ValueError("The NINT climatology needs training steps. Received: none")
        have = np.flatnonzero(counts) + 1  # months with data, 1–12
        filled = []
        for month in range(1, 13):
            gap = np.minimum((have - month) % 12, (month - have) % 12)  # calendar distance
            filled.append(int(have[np.argmin(gap)]))  # argmin takes the earlier on ties
        mean = np.stack([sums[m - 1] / counts[m - 1] for m in filled])  # (12, H, W, L)
        return cls(mean, tuple(int(m) for m in have), tuple(filled), tuple(int(c) for c in counts))

    @classmethod
    def from_arrays(cls, times: np.ndarray, bcb: np.ndarray) -> MonthlyClimatology:
        """From all training steps at once: `times` ``(N,)``, `bcb` ``(N, H, W, L)``."""
        return cls.from_batches([(times, bcb)])

    @classmethod
    def from_dataset(cls, dataset, splits: Iterable[str] | None = None, batch_size: int = 32):
        """From the training splits of a `bcb_emulator.data.BuiltDataset` (default: the splits
        its normalization statistics come from), read in order, a batch of steps at a time."""
        splits = tuple(splits) if splits is not None else tuple(dataset.stats.splits)

        def batches():
            for split in splits:
                frames = dataset.frames(split).batch(batch_size)
                for frame in frames.as_numpy_iterator():
                    yield frame["time"], frame["bcb"]

        return cls.from_batches(batches())

    def predict(self, times: np.ndarray) -> np.ndarray:
        """``(N, H, W, L)``: the climatology of each time stamp's month."""
        return np.stack([self.mean[month_of(float(t)) - 1] for t in times])


class Persistence:
    """The true field one day earlier, at the same time of day.

    `observe` is given the true steps in time order, a batch at a time; `predict` returns, for
    each time stamp of the batches observed so far, the truth of one day before it, or None
    where that step was not observed (the first day of a split, or after a gap). Memory holds
    one day and one batch of fields.

    Args:
        steps_per_day: output steps a day of the dataset.
    """

    def __init__(self, steps_per_day: int):
        self.steps_per_day = steps_per_day
        self._seen: dict[int, np.ndarray] = {}
        self._batch = 0

    def _key(self, time: float) -> int:
        """The step's number: stamps lie inside their step, ``(k + phase) / steps_per_day``."""
        return int(np.floor(float(time) * self.steps_per_day))

    def observe(self, times: np.ndarray, bcb: np.ndarray) -> None:
        """Remembers the true fields ``(N, H, W, L)`` at `times`; forgets what no step of this
        or a later batch can ask for."""
        for time, field in zip(times, bcb, strict=True):
            self._seen[self._key(time)] = field
        self._batch = max(self._batch, len(times))
        oldest_needed = max(self._seen) - self._batch + 1 - self.steps_per_day
        for key in [k for k in self._seen if k < oldest_needed]:
            del self._seen[key]

    def predict(self, times: np.ndarray) -> list[np.ndarray | None]:
        """The truth one day before each of `times` (None where it was not observed)."""
        return [self._seen.get(self._key(t) - self.steps_per_day) for t in times]
