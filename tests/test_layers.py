"""Unit tests of the custom layers: the shared contract (`tests.layer_harness`) of every public
layer, and their maths against independent references (padding values, Winograd, ConvLSTM)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from layer_harness import run_layer_test

from bcb_emulator import grid
from bcb_emulator import layers as public_layers
from bcb_emulator.config import ModelConfig
from bcb_emulator.layers import (
    ConvLSTMCell,
    ConvLSTMStack,
    Readout,
    SFTFusion,
    SpatialEncoder,
    SphericalCrop,
    SphericalPadding,
)
from bcb_emulator.layers.spherical_padding import spherical_pad
from bcb_emulator.layers.winograd import SphericalWinograd, transforms

B, T, H, W, L, F = 2, 3, 8, 12, 3, 8


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _cell_args(channels=3, filters=4):
    """`ConvLSTMCell` call arguments: a frame and nonzero states ``[h, c]``."""
    x, h, c = (
        _rand(B, H, W, channels),
        _rand(B, H, W, filters, seed=1),
        _rand(B, H, W, filters, seed=2),
    )
    return (x, [h, c])


def _check_cell(cell):
    return (
        cell.kernel.shape == (3, 3, 3 + 4, 16)  # one fused kernel over [x, h] → 4F gates
        and [w.shape for w in cell.peephole_weights] == [(4,)] * 3
        and cell.algorithm == "fused"
    )


# Every public layer through the shared harness: (id, class, kwargs, call args, output shape,
# trainable weights, predicate on the built float32 layer or None).
HARNESS_CASES = [
    ("padding_fold", SphericalPadding, dict(pad_lat=1, pad_lon=2, pole_mode="fold"),
     (_rand(B, H, W, 4),), (B, H + 2, W + 4, 4), 0, None),
    ("padding_reflect_5d", SphericalPadding, dict(pad_lat=2, pad_lon=1, pole_mode="reflect"),
     (_rand(B, T, H, W, 4),), (B, T, H + 4, W + 2, 4), 0, None),
    ("crop", SphericalCrop, dict(pad_lat=1, pad_lon=2),
     (_rand(B, H + 2, W + 4, 4),), (B, H, W, 4), 0, None),
    # stem (2) + 2 blocks × (conv 2 + norm 2)
    ("encoder", SpatialEncoder, dict(filters=F, kernel_size=3, groups=4, conv="direct"),
     (_rand(B, T, H, W, 6),), (B, T, H, W, F), 10, lambda e: e.winograd is None),
    # 4 Dense layers × (kernel, bias)
    ("sft", SFTFusion, dict(hidden_units=4),
     (_rand(B, T, H, W, F), _rand(B, T, H, W, 5, seed=1)), (B, T, H, W, F), 8, None),
    # kernel, bias, 3 peepholes; returns (h, [h, c])
    ("cell", ConvLSTMCell, dict(filters=4, peepholes="channel", gate_conv="fused"),
     _cell_args(), [(B, H, W, 4)] * 3, 5, _check_cell),
    # 2 cells × (kernel, bias, 3 peepholes)
    ("stack", ConvLSTMStack, dict(filters=4, num_layers=2, peepholes="spatial", gate_conv="fused"),
     (_rand(B, T, H, W, 5),), (B, H, W, 4), 10,
     lambda s: [c.algorithm for c in s.cells] == ["fused"] * 2),
    ("readout", Readout, dict(levels=L), (_rand(B, H, W, F),), (B, H, W, L), 2, None),
    # as `models.build_emulator` builds it: float32 outputs under a mixed policy
    ("readout_float32", Readout, dict(levels=L, dtype="float32"),
     (_rand(B, H, W, F),), (B, H, W, L), 2, None),
]  # fmt: skip

# Explicit Winograd: float32 only (see `test_winograd_under_mixed_precision`).
WINOGRAD_CASES = [
    ("cell_winograd", ConvLSTMCell, dict(filters=4, peepholes="channel", gate_conv="winograd"),
     _cell_args(), [(B, H, W, 4)] * 3, 5, lambda c: c.algorithm == "winograd"),
    ("stack_winograd", ConvLSTMStack,
     dict(filters=4, num_layers=2, peepholes="channel", gate_conv="winograd"),
     (_rand(B, T, H, W, 5),), (B, H, W, 4), 10,
     lambda s: [c.algorithm for c in s.cells] == ["winograd"] * 2),
    ("encoder_winograd", SpatialEncoder, dict(filters=F, groups=4, conv="winograd"),
     (_rand(B, T, H, W, 6),), (B, T, H, W, F), 10, lambda e: e.winograd is not None),
]  # fmt: skip


@pytest.mark.parametrize(
    "layer_cls, kwargs, call_args, output_shape, trainable, check",
    [pytest.param(*case[1:], id=case[0]) for case in HARNESS_CASES],
)
def test_layer_contract(layer_cls, kwargs, call_args, output_shape, trainable, check):
    """Config, save/load, weights, shapes, fit (eager and XLA) and mixed precision."""
    layer = run_layer_test(layer_cls, kwargs, call_args, output_shape, trainable)
    assert check is None or check(layer)


@pytest.mark.parametrize(
    "layer_cls, kwargs, call_args, output_shape, trainable, check",
    [pytest.param(*case[1:], id=case[0]) for case in WINOGRAD_CASES],
)
def test_winograd_layer_contract(layer_cls, kwargs, call_args, output_shape, trainable, check):
    layer = run_layer_test(
        layer_cls, kwargs, call_args, output_shape, trainable, run_mixed_precision=False
    )
    assert check(layer), "the explicit Winograd choice did not resolve to Winograd"


def test_harness_covers_every_public_layer():
    covered = {case[1] for case in HARNESS_CASES}
    assert covered == {getattr(public_layers, name) for name in public_layers.__all__}


def test_longitude_wraps_at_dateline():
    """The value at 178.75° sits next to −178.75° after padding, and vice versa."""
    g = grid.get_grid("native")
    lon = np.broadcast_to(g.lon, (1, g.jm, g.im))[..., None].astype("float32")  # (1, H, W, 1)
    padded = np.asarray(SphericalPadding(1, 1)(lon))  # (1, H + 2, W + 2, 1)
    assert padded.shape == (1, g.jm + 2, g.im + 2, 1)
    interior = padded[0, 1:-1, :, 0]  # (H, W + 2)
    np.testing.assert_allclose(interior[:, 0], 178.75)  # west of −178.75
    np.testing.assert_allclose(interior[:, 1], -178.75)
    np.testing.assert_allclose(interior[:, -2], 178.75)
    np.testing.assert_allclose(interior[:, -1], -178.75)  # east of 178.75


@pytest.mark.parametrize("pad_lat", [1, 2])
def test_pole_fold_continues_at_longitude_plus_180(pad_lat):
    """Padded row k beyond a pole is row k inside it, taken at longitude + 180°."""
    g = grid.get_grid("coarse")
    x = _rand(1, g.jm, g.im, 2)
    padded = np.asarray(SphericalPadding(pad_lat, 0, "fold")(x))  # (1, H + 2p, W, 2)
    assert padded.shape == (1, g.jm + 2 * pad_lat, g.im, 2)
    lon_plus_180 = (np.arange(g.im) + g.im // 2) % g.im
    # +180° of column i is the column whose centre is lon_i + 180 (mod 360).
    np.testing.assert_allclose(
        (g.lon[lon_plus_180] - g.lon[np.arange(g.im)]) % 360.0, 180.0, atol=1e-9
    )
    for k in range(1, pad_lat + 1):
        north = padded[0, pad_lat + g.jm - 1 + k]
        south = padded[0, pad_lat - k]
        np.testing.assert_array_equal(north, x[0, g.jm - 1 - k, lon_plus_180])
        np.testing.assert_array_equal(south, x[0, k, lon_plus_180])


def test_pole_reflect_mirrors_without_roll():
    x = _rand(1, H, W, 1)
    padded = np.asarray(SphericalPadding(2, 0, "reflect")(x))  # (1, H + 4, W, 1)
    np.testing.assert_array_equal(padded[0, 0], x[0, 2])
    np.testing.assert_array_equal(padded[0, 1], x[0, 1])
    np.testing.assert_array_equal(padded[0, -1], x[0, H - 3])


def test_fold_corners_wrap_in_both_directions():
    x = _rand(1, H, W, 1)
    padded = np.asarray(SphericalPadding(1, 1, "fold")(x))  # (1, H + 2, W + 2, 1)
    # North-west corner: the folded row (row H − 2 at +180°), then wrapped in longitude.
    folded = x[0, H - 2, (np.arange(W) + W // 2) % W]
    np.testing.assert_array_equal(padded[0, -1, 0], folded[-1])
    np.testing.assert_array_equal(padded[0, -1, -1], folded[0])


def test_crop_inverts_padding():
    x = _rand(B, T, H, W, 3)
    padded = SphericalPadding(2, 3, "fold")(x)  # (B, T, H + 4, W + 6, 3)
    np.testing.assert_array_equal(np.asarray(SphericalCrop(2, 3)(padded)), x)


def test_padding_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`pole_mode`.*Received"):
        SphericalPadding(1, 1, "mirror")
    with pytest.raises(ValueError, match="`pad_lat`"):
        SphericalPadding(7, 1)(np.zeros((1, 8, 12, 1), "float32"))
    with pytest.raises(ValueError, match="even"):
        SphericalPadding(1, 1, "fold")(np.zeros((1, 8, 11, 1), "float32"))


@pytest.mark.parametrize("conv, atol", [("direct", 1e-5), ("winograd", 5e-5)])
def test_encoder_is_periodic_in_longitude(conv, atol):
    """Rolling the input in longitude rolls the output: no seam at the dateline. (Winograd
    tiles do not roll with the field, so its rounding differs a little more.)"""
    encoder = SpatialEncoder(F, groups=4, conv=conv)
    x = _rand(1, 2, H, W, 6)
    y = np.asarray(encoder(x))  # (1, 2, H, W, F)
    y_rolled = np.asarray(encoder(np.roll(x, 5, axis=3)))
    np.testing.assert_allclose(y_rolled, np.roll(y, 5, axis=3), atol=atol)


def test_encoder_time_steps_are_independent():
    """Folding B×T keeps time steps apart: changing frame 0 leaves frame 1 unchanged."""
    encoder = SpatialEncoder(F, groups=4)
    x = _rand(1, 2, H, W, 6)
    x2 = x.copy()
    x2[:, 0] += 1.0
    y, y2 = np.asarray(encoder(x)), np.asarray(encoder(x2))
    np.testing.assert_allclose(y[:, 1], y2[:, 1], atol=1e-6)
    assert np.abs(y[:, 0] - y2[:, 0]).max() > 1e-3


def test_sft_is_affine_modulation():
    """out = x ⊙ (1 + γ(c)) + β(c), γ and β read from the layer's own sub-layers."""
    fusion = SFTFusion(hidden_units=4)
    x, c = _rand(B, H, W, F), _rand(B, H, W, 5, seed=1)
    out = np.asarray(fusion(x, c))
    act = lambda v: np.asarray(keras.activations.leaky_relu(v, 0.1))  # noqa: E731
    gamma = np.asarray(fusion.scale_out(act(fusion.scale_hidden(c))))
    beta = np.asarray(fusion.shift_out(act(fusion.shift_hidden(c))))
    np.testing.assert_allclose(out, x * (1 + gamma) + beta, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        SFTFusion()(x, _rand(B, H, W + 2, 5))


@pytest.mark.parametrize("gate_conv", ["fused", "winograd"])
def test_conv_lstm_stack_matches_stepwise_cell(gate_conv):
    """The batched input convolution and the zero-state first step give the same states as
    calling the cell step by step from explicit zero states."""
    stack = ConvLSTMStack(4, 1, peepholes="channel", pole_mode="reflect", gate_conv=gate_conv)
    x = _rand(B, T, H, W, 3)
    out = np.asarray(stack(x))  # (B, H, W, 4)
    cell = stack.cells[0]
    for w in cell.peephole_weights:  # nonzero peepholes so that they matter
        w.assign(_rand(*w.shape, seed=7))
    out = np.asarray(stack(x))
    h = c = np.zeros((B, H, W, 4), "float32")
    for t in range(T):
        h, (h, c) = cell(x[:, t], [h, c])
    np.testing.assert_allclose(out, np.asarray(h), rtol=1e-5, atol=1e-5)


def test_conv_lstm_cell_matches_shi_equations_with_zero_halo_free_kernel():
    """With a 1×1 kernel the cell is a pointwise LSTM: check against NumPy equations."""
    cell = ConvLSTMCell(2, kernel_size=1, peepholes="spatial")
    x, h, c = _rand(1, H, W, 3), _rand(1, H, W, 2, seed=1), _rand(1, H, W, 2, seed=2)
    cell(x, [h, c])
    for w in cell.peephole_weights:
        w.assign(_rand(*w.shape, seed=3))
    h1, (_, c1) = cell(x, [h, c])
    kernel, bias = np.asarray(cell.kernel)[0, 0], np.asarray(cell.bias)
    w_ci, w_cf, w_co = (np.asarray(w) for w in cell.peephole_weights)
    z = np.concatenate([x, h], -1) @ kernel + bias
    zi, zf, zc, zo = np.split(z, 4, -1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c_ref = sig(zf + w_cf * c) * c + sig(zi + w_ci * c) * np.tanh(zc)
    h_ref = sig(zo + w_co * c_ref) * np.tanh(c_ref)
    np.testing.assert_allclose(np.asarray(c1), c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(h1), h_ref, rtol=1e-5, atol=1e-5)
    assert np.asarray(cell.bias)[2:4].tolist() == [1.0, 1.0]  # unit forget bias


@pytest.mark.parametrize("gate_conv", ["fused", "winograd"])
def test_layers_run_in_a_tf_function_with_dynamic_batch(gate_conv):
    stack = ConvLSTMStack(4, 2, gate_conv=gate_conv)
    fn = tf.function(stack, input_signature=[tf.TensorSpec((None, T, H, W, 3))])
    assert fn(_rand(5, T, H, W, 3)).shape == (5, H, W, 4)


def test_split_gate_convolutions_equal_fused():
    """`gate_conv="split"` applies the same kernel as four convolutions: same outputs."""
    x = _rand(B, T, H, W, 3)
    fused = ConvLSTMStack(4, 2, peepholes="channel", gate_conv="fused")
    split = ConvLSTMStack(4, 2, peepholes="channel", gate_conv="split")
    fused(x), split(x)
    split.set_weights(fused.get_weights())
    np.testing.assert_allclose(np.asarray(split(x)), np.asarray(fused(x)), rtol=1e-5, atol=1e-6)
    assert split.get_config()["gate_conv"] == "split"


@pytest.mark.parametrize(
    "height, width, pole_mode, k",
    [
        (8, 12, "fold", 3),
        (46, 72, "fold", 3),
        (7, 10, "reflect", 3),
        (5, 6, "fold", 3),
        (3, 4, "reflect", 3),
        (8, 12, "fold", 5),
        (46, 72, "reflect", 5),
        (9, 14, "fold", 5),
    ],
)
def test_winograd_convolution_equals_direct_spherical_convolution(height, width, pole_mode, k):
    """F(4×4, k×k) on grids with and without whole tiles equals the halo + valid convolution."""
    x, kernel = _rand(3, height, width, 5), _rand(k, k, 5, 7, seed=1)
    padded = spherical_pad(x, k // 2, k // 2, pole_mode)
    expected = tf.nn.conv2d(padded, kernel, 1, "VALID").numpy()
    got = np.asarray(SphericalWinograd(height, width, pole_mode, k).conv_image(x, kernel))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-5 * np.abs(expected).max())


def test_winograd_transforms_are_lavin_and_gray_f43_and_exact():
    """The Toom-Cook construction reproduces the published F(4, 3) matrices, and every
    supported F(4, k) computes a 1-D correlation exactly (in float64)."""
    bt, g, at = transforms(3)
    np.testing.assert_allclose(at, [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0],
                                    [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])  # fmt: skip
    np.testing.assert_allclose(g[:, 0], [1 / 4, -1 / 6, -1 / 6, 1 / 24, 1 / 24, 0])
    np.testing.assert_allclose(bt[0], [4, 0, -5, 0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(bt[5], [0, 4, 0, -5, 0, 1], atol=1e-12)
    rng = np.random.default_rng(0)
    for k in (3, 5):
        bt, g, at = transforms(k)
        d, w = rng.normal(size=4 + k - 1), rng.normal(size=k)
        expected = np.correlate(d, w, mode="valid")  # y_i = Σ_j w_j d_{i+j}
        np.testing.assert_allclose(at @ ((g @ w) * (bt @ d)), expected, rtol=1e-12, atol=1e-12)


def test_winograd_tables_round_trip_and_cover_the_grid():
    wino = SphericalWinograd(10, 14, "fold")  # tiles pad the grid to 12 × 16
    assert wino.positions == 12 * 16
    x = _rand(10 * 14, 2)
    tiled = np.take(x, wino.tiled_to_image, axis=0)  # (positions, 2)
    np.testing.assert_array_equal(np.take(tiled, wino.image_to_tiled, axis=0), x)
    assert sorted(wino.image_to_tiled) == sorted(set(wino.image_to_tiled))  # one slot per cell
    assert wino.image_taps.shape == wino.tiled_taps.shape == (36, 3 * 4)
    # Tiled taps read the same cells as image taps, through the tiled layout.
    np.testing.assert_array_equal(wino.tiled_to_image[wino.tiled_taps], wino.image_taps)


@pytest.mark.parametrize("peepholes", ["none", "channel", "spatial"])
def test_winograd_stack_equals_direct_stack_values_and_gradients(peepholes):
    """Same weights, same function: outputs and every gradient agree to rounding."""
    x = tf.constant(_rand(B, T, 10, W, 5))  # 10 rows: tiles pad the grid
    direct = ConvLSTMStack(6, 2, peepholes=peepholes, gate_conv="fused")
    wino = ConvLSTMStack(6, 2, peepholes=peepholes, gate_conv="winograd")
    direct(x), wino(x)
    weights = [0.3 * _rand(*w.shape, seed=i) for i, w in enumerate(direct.get_weights())]
    direct.set_weights(weights)
    wino.set_weights(weights)
    assert wino.cells[0].algorithm == "winograd" and direct.cells[0].algorithm == "fused"
    _assert_same_function(direct, wino, x, rtol=1e-5)


def _assert_same_function(direct, wino, x, rtol):
    """Outputs and gradients (input and every weight) of two layers agree to `rtol` of each
    array's largest magnitude, and none vanishes."""
    results = []
    for layer in (direct, wino):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * tf.sin(tf.range(y.shape[-1], dtype=y.dtype)))
        results.append([y, *tape.gradient(loss, [x, *layer.trainable_weights])])
    for a, b in zip(*results, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a).max() > 0
        np.testing.assert_allclose(b, a, atol=rtol * np.abs(a).max())


def test_winograd_layers_compile_with_xla():
    """The XLA switch (`TrainConfig.jit_compile`) compiles the gathers and transforms."""
    x = tf.constant(_rand(B, T, 10, W, 5))
    encoder = SpatialEncoder(6, 5, groups=2, conv="winograd")
    stack = ConvLSTMStack(6, 2, peepholes="spatial", gate_conv="winograd")
    stack(encoder(x))
    weights = [*encoder.trainable_weights, *stack.trainable_weights]

    def forward_backward(x):
        with tf.GradientTape() as tape:
            y = stack(encoder(x))
            loss = tf.reduce_sum(y * y)
        return [y, *tape.gradient(loss, weights)]

    eager = forward_backward(x)
    compiled = tf.function(forward_backward, jit_compile=True)(x)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5 * np.abs(a).max())


def test_gate_conv_auto_and_its_errors():
    x = _rand(B, T, H, W, 24)
    cases = [
        (8, 1, 3, ["winograd"], 0),  # gate convolution 24 + 8 → 32 channels
        (8, 1, 5, ["winograd"], 0),
        (8, 1, 7, ["fused"], T),  # no Winograd transforms for 7×7
        (4, 1, 3, ["fused"], T),  # 28 input channels: too few for Winograd to pay
        (8, 2, 3, ["winograd", "fused"], T),  # the second cell reads 8 + 8 channels
    ]
    for filters, layers, kernel, expected, convolutions in cases:
        stack = ConvLSTMStack(filters, layers, kernel_size=kernel)
        y = stack(x)
        assert stack.get_config()["gate_conv"] == "auto"
        assert [cell.algorithm for cell in stack.cells] == expected
        graph = tf.function(stack).get_concrete_function(tf.TensorSpec(x.shape)).graph
        ops = [op.type for op in graph.get_operations()]
        # Fused: one 4F-output convolution for the input of all T frames, one per later step.
        assert ops.count("Conv2D") == convolutions, ops
    fused = ConvLSTMStack(8, 2, gate_conv="fused")  # the last (mixed) stack, all direct
    fused(x)
    fused.set_weights(stack.get_weights())
    np.testing.assert_allclose(np.asarray(y), np.asarray(fused(x)), atol=1e-5)
    for filters, winograd in ((16, False), (32, True)):
        encoder = SpatialEncoder(filters, groups=4)
        encoder(x)
        assert (encoder.winograd is not None) == winograd
    half = ConvLSTMStack(8, 1, dtype="mixed_float16")
    half(x)
    assert half.cells[0].algorithm == "fused"  # Winograd transforms lose digits in float16
    with pytest.raises(ValueError, match=r"kernel size in \(3, 5\)"):
        ConvLSTMCell(4, kernel_size=7, gate_conv="winograd")
    with pytest.raises(ValueError, match=r"kernel size in \(3, 5\)"):
        SpatialEncoder(4, kernel_size=7, groups=2, conv="winograd")
    with pytest.raises(ValueError, match="static grid"):
        ConvLSTMCell(4, gate_conv="winograd").build((None, None, None, 3))
    with pytest.raises(ValueError, match="needs H >= 4"):
        SphericalWinograd(3, 8, "fold", kernel_size=5)
    with pytest.raises(ValueError, match=r"lstm_kernel in \(3, 5\)"):
        ModelConfig(lstm_kernel=7, gate_conv="winograd")
    with pytest.raises(ValueError, match=r"encoder_kernel in \(3, 5\)"):
        ModelConfig(encoder_kernel=7, encoder_conv="winograd")


@pytest.mark.parametrize("kernel", [3, 5])
def test_winograd_encoder_equals_direct_values_and_gradients(kernel):
    """`SpatialEncoder(conv="winograd")` is the same function of the same weights."""
    x = tf.constant(_rand(B, 2, 10, W, 6))
    direct = SpatialEncoder(F, kernel, groups=4, conv="direct")
    wino = SpatialEncoder(F, kernel, groups=4, conv="winograd")
    direct(x), wino(x)
    assert direct.winograd is None and wino.winograd is not None
    wino.set_weights(direct.get_weights())
    _assert_same_function(direct, wino, x, rtol=2e-5)
    assert SpatialEncoder(F, groups=4).get_config()["conv"] == "auto"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_winograd_under_mixed_precision(policy):
    """Set globally, as `training.train` does: "auto" resolves to direct convolutions even
    where float32 would pick Winograd, and an explicit "winograd" is refused at build with an
    error naming the argument (its transforms lose 30-50× more to rounding)."""
    x = _rand(B, T, H, W, 24)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        stack = ConvLSTMStack(8, 1)  # gate convolution 24 + 8 → 32 channels
        encoder = SpatialEncoder(32, 3, num_blocks=1, groups=4)
        cell = ConvLSTMCell(8)
        stack(x), encoder(x), cell(x[:, 0], [_rand(B, H, W, 8)] * 2)
        assert [stack.cells[0].algorithm, cell.algorithm] == ["fused", "fused"]
        assert encoder.winograd is None
        for layer, arg in [
            (ConvLSTMStack(8, 1, gate_conv="winograd"), "gate_conv"),
            (SpatialEncoder(32, 3, num_blocks=1, groups=4, conv="winograd"), "conv"),
        ]:
            with pytest.raises(ValueError, match=rf"`{arg}='winograd'` needs a float32.*mixed"):
                layer(x)
        with pytest.raises(ValueError, match=r"`gate_conv='winograd'` needs a float32"):
            ConvLSTMCell(8, gate_conv="winograd").build((None, H, W, 24))
    finally:
        keras.config.set_dtype_policy(previous)
    with pytest.raises(ValueError, match="Received: dtype='float16'"):  # as the `dtype` argument
        ConvLSTMStack(8, 1, gate_conv="winograd", dtype="mixed_float16")(x)
    assert keras.config.dtype_policy().name == previous.name
    stack = ConvLSTMStack(8, 1)  # float32 again: "auto" picks Winograd
    stack(x)
    assert stack.cells[0].algorithm == "winograd"
