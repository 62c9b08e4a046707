"""Winograd F(4×4, k×k) convolutions with a spherical halo, in a tiled position-major layout.

A k×k convolution (k = 3 or 5) computed tile by tile: each 4 × 4 block of outputs comes from
the α × α block of inputs around it (α = 4 + k − 1) through
``Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`` (Lavin and Gray 2016). That takes α² multiplies per input
and output channel pair instead of 16 k²: for 3×3, 36 instead of 144; for 5×5, 64 instead of
400. Summed over the α² tile positions ``ξ``, the channel mixing, where the arithmetic is,
is one batched matrix product ``M_ξ = V_ξ U_ξ``. Its operands are the transformed inputs ``V``
`(α², tiles, C_in)` and the transformed kernel ``U`` `(α², C_in, C_out)`. It is the same linear
map as the direct convolution; only the rounding differs (about 1e-5 relative in float32, see
``tests/test_layers.py``).

Tensors are position-major: `(positions, …, C)`, with any batch and time axes in the middle.
Two position orders are used:

- image: position ``r · W + c`` of grid row `r` (south → north) and column `c`;
- tiled: position ``((dy · 4 + dx) · n_y + t_y) · n_x + t_x`` of row ``4 t_y + dy`` and
  column ``4 t_x + dx``. This is the order the output transform writes. The grid is padded
  up to whole tiles; the padding cells hold finite values that real cells never read.

The spherical halo (cyclic longitude, reflection or fold across the poles, exactly as
`spherical_pad`) is folded into the gather index tables, so padding costs nothing.

References:
    Lavin and Gray, "Fast algorithms for convolutional neural networks", CVPR 2016.
"""

from __future__ import annotations

import functools

import numpy as np
from keras import ops

from bcb_emulator.options import WINOGRAD_KERNELS

TILE = 4  # outputs per tile side, m
KERNELS = WINOGRAD_KERNELS  # supported kernel sides, r
MIN_CHANNELS = 32  # "auto" runs Winograd from this many input and output channels (see below)
# Interpolation points, taken in this order (then ∞): small magnitudes keep the transforms'
# entries, and so the rounding, small (Lavin and Gray 2016, section 4.2).
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)


@functools.cache
def transforms(kernel: int, tile: int = TILE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns ``(Bᵀ, G, Aᵀ)`` of F(tile, kernel), shapes `(α, α)`, `(α, r)`, `(m, α)`.

    Toom-Cook construction on the first ``α − 1`` `POINTS` and ∞: ``Aᵀ`` evaluates the
    output polynomial at the points, ``G`` the kernel polynomial divided by the Lagrange
    denominators, and ``Bᵀ`` is the unique matrix that makes the algorithm exact.
    """
    alpha = tile + kernel - 1
    points = np.array(POINTS[: alpha - 1])
    if len(points) < alpha - 1:
        raise ValueError(f"F({tile}, {kernel}) needs {alpha - 1} points; {len(POINTS)} are set")
    at = np.zeros((tile, alpha))
    at[:, :-1] = points[None, :] ** np.arange(tile)[:, None]
    at[tile - 1, -1] = 1.0
    g = np.zeros((alpha, kernel))
    for j, p in enumerate(points):
        g[j] = p ** np.arange(kernel) / np.prod(p - np.delete(points, j))
    g[-1, -1] = 1.0
    # Exactness: Σ_j Aᵀ[i, j] G[j, k] Bᵀ[j, l] = δ(l, i + k) for every output i, tap k, input l.
    system = (at[:, None, :] * g.T[None, :, :]).reshape(tile * kernel, alpha)
    target = np.zeros((tile * kernel, alpha))
    for i in range(tile):
        for k in range(kernel):
            target[i * kernel + k, i + k] = 1.0
    bt = np.linalg.lstsq(system, target, rcond=None)[0]
    if not np.allclose(system @ bt, target, atol=1e-9):
        raise ArithmeticError(f"No exact F({tile}, {kernel}) on the points {points.tolist()}")
    return bt, g, at


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
    """Gather tables and transforms of k×k spherical-halo convolutions on one `H × W` grid.

    Attributes:
        kernel_size: the kernel side `k` (one of `KERNELS`); alpha: input tile side ``4 + k − 1``.
        tiles_y, tiles_x: tiles per column and row, ``⌈H/4⌉`` and ``⌈W/4⌉``.
        positions: tiled positions ``16 · tiles_y · tiles_x`` (≥ ``H · W``).
        image_taps, tiled_taps: `(α², tiles)` int32: for each tile position and tile, the
            input cell it reads, as an image or a tiled position.
        image_to_tiled: `(H · W,)` int32, tiled position of each image cell.
        tiled_to_image: `(positions,)` int32, image cell that each tiled position holds (or,
            for tile padding, the cell it mirrors).
    """

    def __init__(self, height: int, width: int, pole_mode: str, kernel_size: int = 3):
        if kernel_size not in KERNELS:
            raise ValueError(f"Winograd kernels are {KERNELS}. Received: {kernel_size}")
        if kernel_size // 2 > height - 2:  # as `SphericalPadding`: the halo mirrors real rows
            raise ValueError(
                f"A {kernel_size}×{kernel_size} spherical convolution needs H >= "
                f"{kernel_size // 2 + 2}. Received: H={height}"
            )
        self.height, self.width = height, width
        self.kernel_size, self.alpha = kernel_size, TILE + kernel_size - 1
        bt, g, at = transforms(kernel_size)
        self.input_transform = np.kron(bt, bt)  # (α², α²): V = Bᵀ d B on flattened tiles
        self.kernel_transform = np.kron(g, g)  # (α², k²): U = G g Gᵀ
        self.output_transform = np.kron(at, at)  # (16, α²): Y = Aᵀ M A
        self.tiles_y, self.tiles_x = -(-height // TILE), -(-width // TILE)
        self.positions = TILE * TILE * self.tiles_y * self.tiles_x
        ty, tx, i, j = np.meshgrid(
            np.arange(self.tiles_y),
            np.arange(self.tiles_x),
            np.arange(self.alpha),
            np.arange(self.alpha),
            indexing="ij",
        )
        pad = kernel_size // 2
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

    def _flat(self, taps):
        return taps.reshape(self.alpha * self.alpha, -1).astype(np.int32)  # (α², tiles)

    def _tiled(self, rows, cols):
        (ty, dy), (tx, dx) = np.divmod(rows, TILE), np.divmod(cols, TILE)
        return ((dy * TILE + dx) * self.tiles_y + ty) * self.tiles_x + tx

    def kernel(self, kernel):
        """`(k, k, C_in, C_out)` kernel → `(α², C_in, C_out)` transformed kernel ``U``."""
        _, _, c_in, c_out = kernel.shape
        flat = ops.reshape(kernel, (self.kernel_size**2, c_in * c_out))
        u = ops.matmul(ops.cast(self.kernel_transform, kernel.dtype), flat)  # (α², C_in·C_out)
        return ops.reshape(u, (self.alpha**2, c_in, c_out))

    def tiles(self, x, taps):
        """Transformed input tiles ``V`` of `x` `(positions, …, C)`: `(α², tiles, …, C)`.

        `taps` is `image_taps` or `tiled_taps`, matching the position order of `x`.
        """
        d = ops.take(x, taps, axis=0)  # (α², tiles, …, C)
        flat = ops.reshape(d, (self.alpha**2, -1))
        v = ops.matmul(ops.cast(self.input_transform, x.dtype), flat)
        return ops.reshape(v, ops.shape(d))

    def mix(self, v, u):
        """Channel mixing ``M_ξ = V_ξ U_ξ``: `(α², tiles, …, C_in)` → `(α², tiles · …, C_out)`."""
        return ops.matmul(ops.reshape(v, (self.alpha**2, -1, v.shape[-1])), u)

    def output(self, m):
        """Inverse transform of ``M`` `(α², tiles · N, C)`: `(positions, N, C)`, tiled order."""
        flat = ops.reshape(m, (self.alpha**2, -1))
        y = ops.matmul(ops.cast(self.output_transform, m.dtype), flat)
        return ops.reshape(y, (self.positions, -1, m.shape[-1]))

    def conv_image(self, x, kernel):
        """The spherical k×k convolution of `(N, H, W, C)` `x`: `(N, H, W, C_out)`."""
        positions = ops.transpose(x, (1, 2, 0, 3))  # (H, W, N, C)
        positions = ops.reshape(positions, (self.height * self.width, -1, x.shape[-1]))
        y = self.output(self.mix(self.tiles(positions, self.image_taps), self.kernel(kernel)))
        y = ops.take(y, self.image_to_tiled, axis=0)  # (H · W, N, C_out)
        y = ops.reshape(y, (self.height, self.width, -1, y.shape[-1]))
        return ops.transpose(y, (2, 0, 1, 3))


def check_choice(arg: str, choice: str, choices: tuple, kernel_size: int) -> None:
    """Raises `ValueError` on a convolution choice a layer's `arg` cannot honour."""
    if choice not in choices:
        raise ValueError(f"`{arg}` must be one of {choices}. Received: {choice!r}")
    if choice == "winograd" and kernel_size not in KERNELS:
        raise ValueError(
            f"`{arg}='winograd'` needs a kernel size in {KERNELS}. "
            f"Received: kernel_size={kernel_size}"
        )


def use_winograd(
    arg: str, choice: str, kernel_size: int, height, width, dtype: str, channels: tuple[int, int]
) -> bool:
    """Whether the convolution choice `choice` of a layer's `arg` runs Winograd here.

    ``"winograd"`` needs a static grid and a float32 (or float64) compute `dtype`. ``"auto"``
    picks it for a supported kernel on a static grid in float32 with at least `MIN_CHANNELS`
    input and output `channels`. With fewer, the transforms cost about as much as the
    multiplies they save (the encoder-alone rows of ``docs/benchmarks/emulator_training.md``:
    slower at 16 filters, even at 32). In float16 and bfloat16, the transforms (entries up to
    8, Lagrange denominators down to 1/24) lose more digits to rounding than a direct
    convolution: about 1e-2 (float16) and 1e-1 (bfloat16) of the output's scale, 30 to 50
    times the direct convolution's error, so an explicit ``"winograd"`` is refused there.
    """
    static = height is not None and width is not None
    if choice == "winograd" and not static:
        raise ValueError(f"`{arg}='winograd'` needs a static grid. Received: H={height}, W={width}")
    if choice == "winograd" and dtype not in ("float32", "float64"):
        raise ValueError(
            f"`{arg}='winograd'` needs a float32 compute dtype: in {dtype} the Winograd "
            "transforms lose 30-50x more to rounding than a direct convolution. Under a mixed "
            f"dtype policy use `{arg}='auto'` (direct there). Received: dtype={dtype!r}"
        )
    if choice == "winograd":
        return True
    wide = min(channels) >= MIN_CHANNELS
    return choice == "auto" and static and dtype == "float32" and kernel_size in KERNELS and wide
