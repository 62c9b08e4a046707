"""Regenerate ``landfrac_0p5deg.npz``, the land fraction the reference model ships with.

Run once, offline, in an environment that has the PyPI package ``global-land-mask`` (1.0.0,
a 30-arc-second land/sea mask derived from NOAA's GLOBE digital elevation model, public domain).
The package is *not* a runtime dependency: the reference model reads only the .npz written here.

    python make_landfrac.py  # writes landfrac_0p5deg.npz beside this script

Output: ``landfrac`` (360, 720) uint8, land fraction × 250 on a 0.5° grid, rows south → north
(cell centres −89.75 … 89.75), columns west → east (−179.75 … 179.75).
"""

from pathlib import Path

import numpy as np
from global_land_mask import globe

BLOCK = 60  # 30-arc-second cells per 0.5° cell


def main() -> None:
    land = ~globe._mask  # (21600, 43200) bool, True over land, rows north -> south
    ny, nx = land.shape[0] // BLOCK, land.shape[1] // BLOCK
    frac = np.empty((ny, nx), np.float64)
    for j in range(ny):
        rows = land[j * BLOCK : (j + 1) * BLOCK]  # (60, 43200)
        frac[j] = rows.reshape(BLOCK, nx, BLOCK).mean(axis=(0, 2))
    frac = frac[::-1]  # rows south -> north
    out = Path(__file__).with_name("landfrac_0p5deg.npz")
    np.savez_compressed(out, landfrac=np.round(frac * 250).astype(np.uint8))


if __name__ == "__main__":
    main()
