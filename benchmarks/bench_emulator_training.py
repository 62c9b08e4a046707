"""Training throughput of the emulator: custom ConvLSTM stack vs stock Keras, vs matmul peak.

Everything is measured side by side in one run, interleaved round by round (so that other
processes on the machine slow every variant alike):

- the matmul peak: FLOP/s of a float32 ``tf.matmul`` of two N × N matrices;
- the ConvLSTM stack alone (seed: 3 layers × 64 filters, 3×3) — ours (`ConvLSTMStack` with
  each `gate_conv`: direct convolutions with one fused or four split gate kernels, or
  Winograd F(4×4, 3×3); spherical halo) and the same network from stock
  ``keras.layers.ConvLSTM2D`` (``padding="same"``);
- the whole emulator (`build_emulator`) with each stack.

Training FLOPs are counted analytically: a convolution or dense layer with `K` taps, `C_in`
input and `C_out` output channels on `P` output points costs ``2 · P · K · C_in · C_out``
forward (one multiply-add = 2 FLOPs); a training step costs 3 × the forward (forward, gradient
with respect to the input, gradient with respect to the weights), 2 × for the Winograd
transforms (products with constant matrices: no weight gradient). Elementwise work (gates,
normalization, padding, gathers) is not counted, so achieved FLOP/s is a lower bound.

Two counts per variant:

- direct-equivalent FLOPs: what the stock layer computes (8 gate convolutions every step,
  the first step's on zero states included). The same for every variant: the work of the
  model, not of an implementation;
- performed FLOPs: the arithmetic the variant actually does. Our direct stack skips the
  first step's recurrent convolution (zero state); Winograd also replaces each 3×3
  convolution by its transforms (36 × 36 input, 16 × 36 output, each a matrix product)
  and a channel mixing of 36 instead of 144 multiplies per 4 × 4 tile and channel pair.

Run: ``.venv/bin/python benchmarks/bench_emulator_training.py [--quick]``; writes
``docs/benchmarks/emulator_training.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from bcb_emulator.config import ModelConfig
from bcb_emulator.layers import ConvLSTMStack, SpatialEncoder
from bcb_emulator.layers.winograd import TILE
from bcb_emulator.models import build_emulator

GATE_CONVS = ("fused", "split", "winograd")
ENCODER_FILTERS = (16, 32, 64)  # widths of the encoder-alone variants
OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "emulator_training.md"


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Returns the best FLOP/s of an n × n float32 matmul."""
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    fn = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    fn().numpy()
    best = min(_timed(lambda: fn().numpy()) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stock_stack(config: ModelConfig, name: str = "conv_lstm") -> keras.Sequential:
    """The ConvLSTM stack of `config` from stock `keras.layers.ConvLSTM2D` (zero padding)."""
    layers = [
        keras.layers.ConvLSTM2D(
            config.lstm_filters,
            config.lstm_kernel,
            padding="same",
            return_sequences=i < config.lstm_layers - 1,
        )
        for i in range(config.lstm_layers)
    ]
    return keras.Sequential(layers, name=name)


def stack_model(config: ModelConfig, stock: bool) -> keras.Model:
    """The stack alone: `(B, T, H, W, F)` → 1×1 readout to L levels."""
    x = keras.Input((config.time_steps, config.height, config.width, config.encoder_filters))
    if stock:
        h = stock_stack(config)(x)
    else:
        h = ConvLSTMStack(
            config.lstm_filters,
            config.lstm_layers,
            config.lstm_kernel,
            gate_conv=config.gate_conv,
        )(x)
    return keras.Model(x, keras.layers.Dense(config.levels)(h))


def emulator_model(config: ModelConfig, stock: bool) -> keras.Model:
    """The emulator; with `stock`, its ConvLSTMStack is swapped for the stock stack."""
    model = build_emulator(config)
    if not stock:
        return model
    fused = model.get_layer("conv_lstm").input
    hidden = stock_stack(config, name="stock_conv_lstm")(fused)
    out = keras.layers.Dense(config.levels, name="bcb")(hidden)
    return keras.Model(model.inputs, out)


def conv_flops(points: int, taps: int, c_in: int, c_out: int) -> int:
    return 2 * points * taps * c_in * c_out


def winograd_flops(tiles: int, kernel: int, c_in: int, c_out: int, output: bool = True):
    """``(mixing, transforms)`` forward FLOPs of a Winograd F(4×4, k×k) convolution.

    As `layers.winograd` computes it over `tiles` 4 × 4 tiles: kernel and input transforms,
    channel mixing and (with `output`) the output transform, each a matrix product.
    """
    a2 = (TILE + kernel - 1) ** 2
    mixing = conv_flops(tiles * a2, 1, c_in, c_out)
    transforms = conv_flops(a2, kernel**2, 1, c_in * c_out) + conv_flops(tiles, a2, a2, c_in)
    if output:
        transforms += conv_flops(tiles, a2, TILE * TILE, c_out)
    return mixing, transforms


def _tiles(c: ModelConfig, frames: int) -> int:
    return frames * -(-c.height // TILE) * -(-c.width // TILE)


def stack_flops(
    c: ModelConfig, batch: int, c_in: int, algorithm: str = "stock", training: bool = False
) -> int:
    """FLOPs of the ConvLSTM stack, forward or (`training`) a whole training step.

    `algorithm`: ``"stock"`` (input and recurrent convolutions at every step: the
    direct-equivalent count), ``"direct"`` (our stack: no recurrent convolution at the first
    step) or ``"winograd"`` (`winograd_flops`; input and recurrent mixing are summed before
    one output transform per step). A training step costs 3 × the forward of products with
    weights (convolutions, channel mixing) but 2 × that of the Winograd transforms, products
    with constant matrices that need no weight gradient.
    """
    weighted, constant = (3, 2) if training else (1, 1)
    frame = batch * c.height * c.width  # output points of one time step
    steps, k, f = c.time_steps, c.lstm_kernel, c.lstm_filters
    recurrent_steps = steps if algorithm == "stock" else steps - 1
    total = 0
    for _ in range(c.lstm_layers):
        if algorithm == "winograd":
            m_x, t_x = winograd_flops(_tiles(c, batch * steps), k, c_in, 4 * f)
            m_h, t_h = winograd_flops(_tiles(c, batch * recurrent_steps), k, f, 4 * f, False)
            total += weighted * (m_x + m_h) + constant * (t_x + t_h)
        else:
            total += weighted * conv_flops(frame * steps, k * k, c_in, 4 * f)
            total += weighted * conv_flops(frame * recurrent_steps, k * k, f, 4 * f)
        c_in = f
    return total


def encoder_flops(
    c: ModelConfig, batch: int, channels: int, filters: int, conv: str, training: bool = False
) -> int:
    """FLOPs of one `SpatialEncoder` (1×1 stem, k×k blocks), as `stack_flops`.

    `conv`: ``"direct"`` or ``"winograd"`` convolutions in the blocks.
    """
    weighted, constant = (3, 2) if training else (1, 1)
    points = batch * c.time_steps * c.height * c.width
    k = c.encoder_kernel
    total = weighted * conv_flops(points, 1, channels, filters)
    for _ in range(c.encoder_blocks):
        if conv == "winograd":
            mixing, transforms = winograd_flops(
                _tiles(c, batch * c.time_steps), k, filters, filters
            )
            total += weighted * mixing + constant * transforms
        else:
            total += weighted * conv_flops(points, k * k, filters, filters)
    return total


def emulator_flops(
    c: ModelConfig,
    batch: int,
    algorithm: str = "stock",
    encoder: str = "direct",
    training: bool = False,
) -> int:
    """FLOPs of the emulator (encoders, SFT, ConvLSTM stack, readout), as `stack_flops`.

    `encoder`: ``"direct"`` or ``"winograd"`` convolutions in the encoders' blocks.
    """
    weighted = 3 if training else 1
    points = batch * c.time_steps * c.height * c.width
    f = c.encoder_filters
    total = sum(
        encoder_flops(c, batch, channels, f, encoder, training)
        for channels in (c.x2d_channels, c.x3d_channels)
    )
    sft = conv_flops(points, 1, f, c.sft_hidden) + conv_flops(points, 1, c.sft_hidden, f)
    readout = conv_flops(batch * c.height * c.width, 1, c.lstm_filters, c.levels)
    total += weighted * (2 * sft + readout)
    return total + stack_flops(c, batch, f, algorithm, training)


@dataclasses.dataclass
class Variant:
    name: str
    model: keras.Model
    inputs: object
    target: np.ndarray
    train_flops: int  # direct-equivalent
    performed_flops: int
    times: list = dataclasses.field(default_factory=list)


def make_variants(config: ModelConfig, batch: int) -> list[Variant]:
    rng = np.random.default_rng(0)
    shape = (batch, config.time_steps, config.height, config.width)
    features = rng.normal(size=(*shape, config.encoder_filters)).astype("float32")
    inputs = {
        "x2d": rng.normal(size=(*shape, config.x2d_channels)).astype("float32"),
        "x3d": rng.normal(size=(*shape, config.x3d_channels)).astype("float32"),
    }
    target = rng.normal(size=(batch, config.height, config.width, config.levels))
    target = target.astype("float32")
    readout = conv_flops(batch * config.height * config.width, 1, config.lstm_filters, 1)
    readout *= config.levels
    variants = []
    # The emulator with every stack (Winograd encoders, the default), then the emulator
    # with direct encoders too (the stock-Keras baseline and our stack's direct path).
    cases = [(g, "stack", "winograd") for g in (*GATE_CONVS, "stock")]
    cases += [(g, "emulator", "winograd") for g in (*GATE_CONVS, "stock")]
    cases += [(g, "emulator", "direct") for g in ("fused", "stock")]
    for gate_conv, kind, encoder in cases:
        stock = gate_conv == "stock"
        label = "stock ConvLSTM2D" if stock else f"custom ConvLSTMStack ({gate_conv})"
        algorithm = {"stock": "stock", "winograd": "winograd"}.get(gate_conv, "direct")
        c = dataclasses.replace(
            config, gate_conv="fused" if stock else gate_conv, encoder_conv=encoder
        )
        keras.utils.set_random_seed(0)
        if kind == "stack":
            flops = [
                stack_flops(c, batch, c.encoder_filters, a, training=True) + 3 * readout
                for a in ("stock", algorithm)
            ]
            model, x = stack_model(c, stock), features
        else:
            label += f", {encoder} encoders"
            flops = [
                emulator_flops(c, batch, "stock", "direct", training=True),
                emulator_flops(c, batch, algorithm, encoder, training=True),
            ]
            model, x = emulator_model(c, stock), inputs
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
        variants.append(Variant(f"{kind}: {label}", model, x, target, *flops))
    # One encoder (the 2D one) alone, at several widths: where Winograd starts to pay.
    for filters in ENCODER_FILTERS:
        for conv in ("direct", "winograd"):
            keras.utils.set_random_seed(0)
            x = keras.Input((config.time_steps, config.height, config.width, 6))
            encoder = SpatialEncoder(
                filters, config.encoder_kernel, config.encoder_blocks, config.groups, conv=conv
            )
            model = keras.Model(x, encoder(x))
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="mse")
            y = rng.normal(size=(*shape, filters)).astype("float32")
            flops = [encoder_flops(config, batch, 6, filters, a, True) for a in ("direct", conv)]
            name = f"encoder: SpatialEncoder F = {filters} ({conv})"
            variants.append(Variant(name, model, inputs["x2d"], y, *flops))
    return variants


def run(config: ModelConfig, batch: int, steps: int, rounds: int) -> dict:
    load_before = os.getloadavg()
    peaks = [matmul_peak()]
    variants = make_variants(config, batch)
    for v in variants:  # trace and warm up
        v.model.train_on_batch(v.inputs, v.target)
    for _ in range(rounds):
        for v in variants:
            v.model.train_on_batch(v.inputs, v.target)
            v.times.append(_timed(lambda v=v: [
                v.model.train_on_batch(v.inputs, v.target) for _ in range(steps)
            ]) / steps)  # fmt: skip
        peaks.append(matmul_peak(repeats=3))
    return {
        "peak": max(peaks),
        "peaks": peaks,
        "variants": variants,
        "load": (load_before, os.getloadavg()),
    }


def report(config: ModelConfig, batch: int, steps: int, rounds: int, result: dict) -> str:
    peak = result["peak"]
    rows = []
    best = {}
    for v in result["variants"]:
        t, median = min(v.times), statistics.median(v.times)
        best[v.name] = t
        rows.append(
            f"| {v.name} | {1 / t:.3f} | {1 / median:.3f} | {v.train_flops / 1e9:.1f} "
            f"| {v.performed_flops / 1e9:.1f} | {v.performed_flops / t / 1e9:.1f} "
            f"| {100 * v.performed_flops / t / peak:.0f}% | {v.train_flops / t / 1e9:.1f} |"
        )
    speedups = []
    emulator = "emulator: {}, winograd encoders"
    for gate_conv in GATE_CONVS:
        custom = f"custom ConvLSTMStack ({gate_conv})"
        stack = best["stack: stock ConvLSTM2D"] / best[f"stack: {custom}"]
        emu = best[emulator.format("stock ConvLSTM2D")] / best[emulator.format(custom)]
        speedups.append(
            f"- **{gate_conv}: {stack:.2f}× (stack alone), {emu:.2f}× (whole emulator)**"
        )

    def encoder_ratio(filters):
        name = "encoder: SpatialEncoder F = {} ({})"
        return best[name.format(filters, "direct")] / best[name.format(filters, "winograd")]

    default = best[emulator.format("custom ConvLSTMStack (winograd)")]
    all_stock = best["emulator: stock ConvLSTM2D, direct encoders"]
    all_direct = best["emulator: custom ConvLSTMStack (fused), direct encoders"]
    speedups += [
        "",
        "One encoder alone (1×1 stem and the 5×5 blocks, the 2D stream), Winograd vs direct "
        "blocks, training steps/s, best rounds (`auto` picks Winograd from 32 filters):",
        "",
        *(f"- F = {f}: **{encoder_ratio(f):.2f}×**" for f in ENCODER_FILTERS),
        "",
        "The default emulator (Winograd stack and encoders) against the same network with "
        "direct convolutions, training steps/s, best rounds:",
        "",
        f"- **{all_stock / default:.2f}×** against stock `ConvLSTM2D` and direct encoders;",
        f"- **{all_direct / default:.2f}×** against our direct (fused) stack and direct encoders.",
    ]
    # No implementation of the same FLOPs can run faster than the matmul peak.
    stock = next(v for v in result["variants"] if v.name == "stack: stock ConvLSTM2D")
    ceiling = peak * best[stock.name] / stock.train_flops
    (l1, l5, l15), (a1, a5, a15) = result["load"]
    return "\n".join(
        [
            "# Emulator training throughput",
            "",
            "Written by `benchmarks/bench_emulator_training.py` (one run, variants interleaved "
            f"round by round, {rounds} rounds × {steps} steps each after a warm-up step; best "
            "and median round reported). Numbers are measurements on this machine, not targets.",
            "",
            f"- Machine: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} logical CPUs, TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}, float32, no XLA.",
            f"- Load average before / after: {l1:.2f} {l5:.2f} {l15:.2f} / "
            f"{a1:.2f} {a5:.2f} {a15:.2f} (other processes shared the cores when these exceed "
            "0 noticeably).",
            "- Shapes (the reference paper's model scaled to the CPU): "
            f"B = {batch}, T = {config.time_steps}, "
            f"grid {config.height} × {config.width}, L = {config.levels}, encoders "
            f"F = {config.encoder_filters} (5×5), ConvLSTM {config.lstm_layers} × "
            f"{config.lstm_filters} ({config.lstm_kernel}×{config.lstm_kernel}).",
            f"- Matmul peak (float32 2048² `tf.matmul`, best of the run): "
            f"**{peak / 1e9:.1f} GFLOP/s** (samples: "
            + ", ".join(f"{p / 1e9:.0f}" for p in result["peaks"])
            + ").",
            "",
            "| variant | steps/s (best) | steps/s (median) | direct-equivalent GFLOP per step "
            "| performed GFLOP per step | performed GFLOP/s | % of matmul peak "
            "| direct-equivalent GFLOP/s |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Custom stack vs stock ConvLSTM2D, training steps/s, best rounds (target ≥ 1.3×):",
            "",
            *speedups,
            "",
            f"The stock stack runs at {100 / ceiling:.0f}% of the matmul peak, so an "
            "implementation doing the same FLOPs could beat it by at most "
            f"**{ceiling:.2f}×** on this CPU. The custom stack does less arithmetic for the "
            "same function: it skips the first step's recurrent convolution (zero state) and, "
            "with Winograd F(4×4, 3×3), does the channel mixing with 4× fewer multiplies. "
            "The encoders' 5×5 blocks with Winograd F(4×4, 5×5) need 6.25× fewer.",
            "",
            "FLOPs are counted analytically (see the benchmark's docstring): "
            "`2 · points · taps · C_in · C_out` per convolution forward, × 3 for a training "
            "step (× 2 for the Winograd transforms: constant matrices, no weight gradient); "
            "elementwise work and gathers are not counted. Direct-equivalent FLOPs are "
            "those of the stock layer (the same for every variant); performed FLOPs are those "
            "each variant actually computes, and give its % of the matmul peak. The stock stack "
            "does the same convolutions (zero `same` padding instead of the spherical halo).",
            "",
        ]
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, for a smoke run")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args()
    config = ModelConfig.for_grid("coarse", levels=20, time_steps=4)
    if args.quick:
        config = dataclasses.replace(config, height=8, width=12, levels=3)
    result = run(config, args.batch, args.steps, args.rounds)
    text = report(config, args.batch, args.steps, args.rounds, result)
    print(text)
    if not args.quick:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
