"""Winograd F(4×4, 3×3) convolutions with a spherical halo, in a tiled position-major layout.

A 3×3 convolution computed tile by tile: each 4 × 4 block of outputs comes from the 6 × 6
block of inputs around it through ``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` (Lavin and Gray 2016),
which takes 36 multiplies per input and output channel pair instead of 16 · 9 = 144: the
channel mixing, where all the arithmetic is, shrinks 4×. Summed over the 36 tile positions
``ξ``, the channel mixing is one batched matrix product ``M_ξ = V_ξ U_ξ`` of the transformed
inputs ``V`` `(36, tiles, C_in)` and the transformed kernel ``U`` `(36, C_in, C_out)`. It is the
same linear map as the direct convolution; only the rounding differs (about 1e-5 relative in
float32, see ``tests/test_layers.py``).

Tensors are position-major: `(positions, …, C)`, any batch and time axes in the middle. Two
position orders are used:

- image: position ``r · W + c`` of grid row `r` (south → north) and column `c`;
- tiled: position ``((dy · 4 + dx) · n_y + t_y) · n_x + t_x`` of row ``4 t_y + dy`` and
  column ``4 t_x + dx``, which is the order the output transform writes. The grid is padded up
  to whole tiles; the padding cells hold finite values that real cells never read.

The spherical halo (cyclic longitude, reflection or fold across the poles, exactly as
`spherical_pad`) is folded into the gather index tables, so padding costs nothing.

References:
    Lavin and Gray, "Fast algorithms for convolutional neural networks", CVPR 2016.
"""

from __future__ import annotations

import numpy as np
from keras import ops

TILE = 4  # outputs per tile side, m
KERNEL = 3  # kernel side, r
ALPHA = TILE + KERNEL - 1  # input tile side, 6

# F(4, 3) with the interpolation points 0, ±1, ±2 and ∞ (Lavin and Gray 2016, section 4.2).
_BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
_G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
_AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    dtype=np.float64,
)
# The 2-D transforms as matrices on flattened tiles (row-major ``i · side + j``).
INPUT_TRANSFORM = np.kron(_BT, _BT)  # (36, 36): V = Bᵀ d B
KERNEL_TRANSFORM = np.kron(_G, _G)  # (36, 9): U = G g Gᵀ
OUTPUT_TRANSFORM = np.kron(_AT, _AT)  # (16, 36): Y = Aᵀ M A


def sphere_cell(rows, cols, height: int, width: int, pole_mode: str):
    """Maps (possibly out-of-range) halo coordinates to the grid cells they copy.

    Same rule as `spherical_pad`: longitude is cyclic; row ``−k`` is row ``k`` and row
    ``H − 1 + k`` is row ``H − 1 − k``, rolled by ``W // 2`` columns with ``"fold"``. Rows
    further out (only read by tile padding) are clipped into the grid.
    """
    rows, cols = np.asarray(rows), np.asarray(cols)
    beyond = (rows < 0) | (rows > height - 1)
    rows = np.where(rows < 0, -rows, rows)
    rows = np.where(rows > height - 1, 2 * (height - 1) - rows, rows)
    if pole_mode == "fold":
        cols = np.where(beyond, cols + width // 2, cols)
    return np.clip(rows, 0, height - 1), cols % width


class SphericalWinograd:
    """Gather tables and transforms of 3×3 spherical-halo convolutions on one `H × W` grid.

    Attributes:
        tiles_y, tiles_x: tiles per column and row, ``⌈H/4⌉`` and ``⌈W/4⌉``.
        positions: tiled positions ``16 · tiles_y · tiles_x`` (≥ ``H · W``).
        image_taps, tiled_taps: `(36, tiles)` int32: for each tile position and tile, the
            input cell it reads, as an image or a tiled position.
        image_to_tiled: `(H · W,)` int32, tiled position of each image cell.
        tiled_to_image: `(positions,)` int32, image cell that each tiled position holds (or,
            for tile padding, the cell it mirrors).
    """

    def __init__(self, height: int, width: int, pole_mode: str):
        self.height, self.width = height, width
        self.tiles_y, self.tiles_x = -(-height // TILE), -(-width // TILE)
        self.positions = TILE * TILE * self.tiles_y * self.tiles_x
        ty, tx, i, j = np.meshgrid(
            np.arange(self.tiles_y),
            np.arange(self.tiles_x),
            np.arange(ALPHA),
            np.arange(ALPHA),
            indexing="ij",
        )
        pad = KERNEL // 2
        rows, cols = sphere_cell(ty * TILE + i - pad, tx * TILE + j - pad, height, width, pole_mode)
        order = (2, 3, 0, 1)  # → (i, j, ty, tx)
        self.image_taps = self._flat(np.transpose(rows * width + cols, order))
        self.tiled_taps = self._flat(np.transpose(self._tiled(rows, cols), order))
        r, c = np.divmod(np.arange(height * width), width)
        self.image_to_tiled = self._tiled(r, c).astype(np.int32)
        dy, dx, ty, tx = np.meshgrid(
            np.arange(TILE),
            np.arange(TILE),
            np.arange(self.tiles_y),
            np.arange(self.tiles_x),
            indexing="ij",
        )
        rows, cols = sphere_cell(ty * TILE + dy, tx * TILE + dx, height, width, pole_mode)
        self.tiled_to_image = (rows * width + cols).reshape(-1).astype(np.int32)

    @staticmethod
    def _flat(taps):
        return taps.reshape(ALPHA * ALPHA, -1).astype(np.int32)  # (36, tiles)

    def _tiled(self, rows, cols):
        (ty, dy), (tx, dx) = np.divmod(rows, TILE), np.divmod(cols, TILE)
        return ((dy * TILE + dx) * self.tiles_y + ty) * self.tiles_x + tx

    def kernel(self, kernel):
        """`(3, 3, C_in, C_out)` kernel → `(36, C_in, C_out)` transformed kernel ``U``."""
        _, _, c_in, c_out = kernel.shape
        flat = ops.reshape(kernel, (KERNEL * KERNEL, c_in * c_out))
        u = ops.matmul(ops.cast(KERNEL_TRANSFORM, kernel.dtype), flat)  # (36, C_in · C_out)
        return ops.reshape(u, (ALPHA * ALPHA, c_in, c_out))

    def tiles(self, x, taps):
        """Transformed input tiles ``V`` of `x` `(positions, …, C)`: `(36, tiles, …, C)`.

        `taps` is `image_taps` or `tiled_taps`, matching the position order of `x`.
        """
        d = ops.take(x, taps, axis=0)  # (36, tiles, …, C)
        v = ops.matmul(ops.cast(INPUT_TRANSFORM, x.dtype), ops.reshape(d, (ALPHA * ALPHA, -1)))
        return ops.reshape(v, ops.shape(d))

    def mix(self, v, u):
        """Channel mixing ``M_ξ = V_ξ U_ξ``: `(36, tiles, …, C_in)` → `(36, tiles · …, C_out)`."""
        c_in = v.shape[-1]
        return ops.matmul(ops.reshape(v, (ALPHA * ALPHA, -1, c_in)), u)

    def output(self, m):
        """Inverse transform of ``M`` `(36, tiles · N, C)`: `(positions, N, C)`, tiled order."""
        y = ops.matmul(ops.cast(OUTPUT_TRANSFORM, m.dtype), ops.reshape(m, (ALPHA * ALPHA, -1)))
        return ops.reshape(y, (self.positions, -1, m.shape[-1]))

    def conv_image(self, x, kernel):
        """The spherical 3×3 convolution of `(N, H, W, C)` `x`: `(N, H, W, C_out)`."""
        n_channels = x.shape[-1]
        positions = ops.transpose(x, (1, 2, 0, 3))  # (H, W, N, C)
        positions = ops.reshape(positions, (self.height * self.width, -1, n_channels))
        y = self.output(self.mix(self.tiles(positions, self.image_taps), self.kernel(kernel)))
        y = ops.take(y, self.image_to_tiled, axis=0)  # (H · W, N, C_out)
        y = ops.reshape(y, (self.height, self.width, -1, y.shape[-1]))
        return ops.transpose(y, (2, 0, 1, 3))
