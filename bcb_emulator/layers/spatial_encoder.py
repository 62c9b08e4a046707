"""Per-time-step spatial encoder of one input stream."""

from __future__ import annotations

import keras
from keras import ops

from bcb_emulator.layers.spherical_padding import SphericalPadding, check_fold_width
from bcb_emulator.layers.winograd import SphericalWinograd, check_choice, use_winograd
from bcb_emulator.options import ENCODER_CONVS, POLE_MODES


@keras.saving.register_keras_serializable(package="bcb_emulator")
class SpatialEncoder(keras.layers.Layer):
    """Encodes each time step of a gridded stream into `filters` feature maps.

    A 1×1 convolution lifts the `C` input channels to `filters`; then `num_blocks` residual
    blocks each apply ``x + SiLU(GroupNorm(conv_k×k(spherical_pad(x))))``, the convolution being
    ``"valid"`` after a spherical halo of ``k // 2`` (so the sphere has no edges). Time steps
    are independent: `B × T` are folded into one batch axis. The 1×1 convolution is a `Dense`
    on the channel axis (the same operation).

    `conv` only changes how the k×k kernels are applied: ``"direct"`` pads with the
    `SphericalPadding` halo and runs the `Conv2D`; ``"winograd"`` runs Winograd F(4×4, k×k)
    (`layers.winograd`, k = 3 or 5: 4× or 6× fewer multiplies, the halo folded into its gather
    tables) with the same weights; ``"auto"`` (default) is ``"winograd"`` for a 3×3 or 5×5
    kernel on a static grid in float32 with at least 32 `filters`, ``"direct"`` otherwise
    (see `layers.winograd.use_winograd`). Results differ by rounding only (about 1e-5
    relative in float32).

    Args:
        filters: feature maps `F` of the output.
        kernel_size: odd spatial kernel `k` of the residual blocks (5 in the seed).
        num_blocks: residual blocks (2 in the seed).
        groups: groups of the `GroupNormalization`; must divide `filters`.
        pole_mode: pole treatment of the halo, ``"fold"`` or ``"reflect"``
            (see `SphericalPadding`).
        conv: ``"auto"``, ``"direct"`` or ``"winograd"`` (see above; float32 only:
            `ValueError` at build under a float16 or bfloat16 compute dtype).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(B, T, H, W, C)` normalized (dimensionless) inputs.

    Returns:
        `(B, T, H, W, filters)` features.

    Example:

    >>> import numpy as np
    >>> encoder = SpatialEncoder(filters=8, groups=4)
    >>> encoder(np.zeros((2, 3, 8, 12, 6), "float32")).shape
    TensorShape([2, 3, 8, 12, 8])

    References:
        Gao et al., "SimVP: Simpler yet better video prediction", CVPR 2022 (spatial encoder);
        Wu & He, "Group normalization", ECCV 2018.
    """

    def __init__(
        self,
        filters=64,
        kernel_size=5,
        num_blocks=2,
        groups=8,
        pole_mode="fold",
        conv="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        check_choice("conv", conv, ENCODER_CONVS, kernel_size)
        if filters % groups:
            raise ValueError(
                f"`groups` must divide `filters`. Received: groups={groups}, filters={filters}"
            )
        if pole_mode not in POLE_MODES:
            raise ValueError(f"`pole_mode` must be one of {POLE_MODES}. Received: {pole_mode!r}")
        self.filters = filters
        self.kernel_size = kernel_size
        self.num_blocks = num_blocks
        self.groups = groups
        self.pole_mode = pole_mode
        self.conv = conv
        self.winograd = None  # set at build when `conv` resolves to Winograd
        self.stem = keras.layers.Dense(filters, dtype=self.dtype_policy, name="stem")
        self.padding = SphericalPadding(
            kernel_size // 2, kernel_size // 2, pole_mode, dtype=self.dtype_policy, name="halo"
        )
        self.convs = [
            keras.layers.Conv2D(
                filters, kernel_size, padding="valid", dtype=self.dtype_policy, name=f"conv_{i}"
            )
            for i in range(num_blocks)
        ]
        self.norms = [
            keras.layers.GroupNormalization(groups, dtype=self.dtype_policy, name=f"norm_{i}")
            for i in range(num_blocks)
        ]

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                f"`inputs` must have shape (B, T, H, W, C). Received: shape={input_shape}"
            )
        _, _, height, width, _ = input_shape
        check_fold_width(width, self.pole_mode)
        channels = (self.filters, self.filters)
        if use_winograd(
            "conv", self.conv, self.kernel_size, height, width, self.compute_dtype, channels
        ):
            self.winograd = SphericalWinograd(height, width, self.pole_mode, self.kernel_size)
        self.stem.build(input_shape)
        folded = (None, height, width, self.filters)
        padded = self.padding.compute_output_shape(folded)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            conv.build(padded)
            norm.build(folded)
        self.built = True

    def call(self, inputs):
        _, steps, height, width, _ = inputs.shape
        x = self.stem(inputs)  # (B, T, H, W, F)
        x = ops.reshape(x, (-1, height, width, self.filters))  # (B·T, H, W, F)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if self.winograd is not None:
                y = self.winograd.conv_image(x, conv.kernel) + conv.bias  # (B·T, H, W, F)
            else:
                y = conv(self.padding(x))  # (B·T, H, W, F): valid conv of the halo-padded x
            x = x + ops.silu(norm(y))
        return ops.reshape(x, (-1, steps, height, width, self.filters))  # (B, T, H, W, F)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            num_blocks=self.num_blocks,
            groups=self.groups,
            pole_mode=self.pole_mode,
            conv=self.conv,
        )
        return config
