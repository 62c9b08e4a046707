"""Writes the dummy data of the `tiny_l3` config: seeded, tiny, in the ModelE E3 file layout.

Run from the repository root:
``.venv/bin/python tfds_builders/modele_bcb/dummy_data/make_dummy_data.py``.
The files hold 4 levels so that the builder's cut to the lowest L = 3 is exercised.
"""

from __future__ import annotations

from pathlib import Path

from bcb_emulator.data import synthetic
from bcb_emulator.data.spec import TINY_GRID
from tfds_builders.modele_bcb.modele_bcb_dataset_builder import TINY_SPLITS

SEED = 20240601
FILE_LEVELS = 4  # one more than the config's L = 3
STEPS_PER_DAY = 4


def main() -> None:
    out_dir = Path(__file__).parent
    for old in out_dir.glob("*.nc"):
        old.unlink()
    days = [day for split in TINY_SPLITS for day in split.days()]
    synthetic.write_days(
        out_dir, days, TINY_GRID, FILE_LEVELS, steps_per_day=STEPS_PER_DAY, seed=SEED
    )
    print(f"Wrote {len(days)} days x 5 streams to {out_dir}")


if __name__ == "__main__":
    main()
