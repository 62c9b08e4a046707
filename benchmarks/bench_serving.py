"""Serving latency of the exported SavedModel: the full window vs the coupling step.

One global time step (batch 1) through the SavedModel of `bcb_emulator.export`, side by side
in one run, rounds interleaved (so that other processes on the machine slow every variant
alike):

- ``serving_default``: the full window, both encoders over all T steps, then the ConvLSTM
  stack and the readout;
- ``step``: the coupling step, the encoders over the one new step, the stack over the T fused
  frames (the new one and the T − 1 of the state), the readout.

for the 4°×5° (46 × 72) and 2°×2.5° (90 × 144) grids, T = 4 and T = 48, untrained weights of
the reference paper's shapes (encoders 64 filters, ConvLSTM 3 × 64, L = 20; `ModelConfig()`
defaults). Statistics come from one synthetic day (`bcb_emulator.data.synthetic`), inputs are
drawn around them (`export.random_inputs`); values do not change the cost.

The analytic ratio. The ConvLSTM stack restarts from a zero state in every window, so its
work is the same in both signatures; only the encoders' (and the fusion's) work on T − 1
frames is saved. With E the encoders' cost per frame, S the stack's over T frames and R the
readout's, the step's speed-up over the window is at most (T·E + S + R) / (E + S + R). E, S
and R are counted two ways:

- FLOPs (forward, one multiply-add = 2): direct-equivalent (direct convolutions) and
  performed (Winograd F(4×4, k×k), what ``"auto"`` runs at 64 filters), with the counting
  helpers of ``bench_emulator_training.py``; elementwise work is not counted;
- measured: the pieces timed alone (the encoders and fusion over T frames and over one
  frame, the stack and readout over T frames), as `tf.function` of the same Keras layers.

Run: ``.venv/bin/python benchmarks/bench_serving.py [--quick]``; writes
``docs/benchmarks/serving.md`` (``--quick``: one round on the 4°×5° grid only, printed, not
written).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_emulator_training import conv_flops, encoder_flops, stack_flops  # noqa: E402

from bcb_emulator import export, grid, variables  # noqa: E402
from bcb_emulator.config import ModelConfig  # noqa: E402
from bcb_emulator.data import synthetic  # noqa: E402
from bcb_emulator.data.normalization import StatsAccumulator  # noqa: E402
from bcb_emulator.models import build_emulator  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "serving.md"
GRIDS = ("coarse", "native")
WINDOWS = (4, 48)
#: Rounds per case: fewer where one call takes seconds (the 2°×2.5°, T = 48 window).
ROUNDS = {("coarse", 4): 20, ("native", 4): 10, ("coarse", 48): 8, ("native", 48): 6}


def synthetic_stats(config: ModelConfig, grid_name: str):
    """Statistics of one synthetic day (4 steps) on the grid: realistic magnitudes."""
    g = grid.get_grid(grid_name)
    times, fields, static = synthetic.day_fields(58400, g, config.levels, 4, seed=0)
    n = times.shape[0]
    x2d = np.stack(
        [np.broadcast_to(static[v.name] if not v.time_varying else fields[v.name], (n, *g.shape))
         for v in variables.X2D],
        axis=-1,
    )  # (T, H, W, 6)  # fmt: skip
    x3d = np.stack([fields[v.name] for v in variables.X3D], axis=-1)  # (T, L, H, W, 8)
    x3d = np.transpose(x3d, (0, 2, 3, 4, 1)).reshape(n, *g.shape, -1)  # (T, H, W, 8·L)
    bcb = np.transpose(fields["BCB"], (0, 2, 3, 1))  # (T, H, W, L)
    acc = StatsAccumulator(g.area, config.levels)
    acc.update(x2d, x3d, bcb)
    return acc.result(("synthetic",))


def flops(config: ModelConfig) -> dict[str, dict[str, float]]:
    """Forward FLOPs of the pieces, batch 1: ``{"direct"|"performed": {E, S, R}}``."""
    c1 = dataclasses.replace(config, time_steps=1)
    hw = config.height * config.width
    f, h = config.encoder_filters, config.sft_hidden
    sft = 2 * (conv_flops(hw, 1, f, h) + conv_flops(hw, 1, h, f))  # γ and β stacks, a frame
    out = {}
    for kind, conv, stack in (
        ("direct", "direct", "direct"),
        ("performed", "winograd", "winograd"),
    ):
        e = sum(encoder_flops(c1, 1, ch, f, conv) for ch in (6, config.x3d_channels)) + sft
        s = stack_flops(config, 1, f, stack)
        r = conv_flops(hw, 1, config.lstm_filters, config.levels)
        out[kind] = {"E": e, "S": s, "R": r}
    return out


def analytic(t: int, e_window: float, e_step: float, rest: float) -> float:
    """Window cost over step cost: (encoders over T frames + rest) / (over one frame + rest)."""
    return (e_window + rest) / (e_step + rest)


@dataclasses.dataclass
class Case:
    grid_name: str
    time_steps: int
    config: ModelConfig
    times: dict = dataclasses.field(default_factory=dict)
    export_s: float = 0.0
    load_s: float = 0.0
    first_call: dict = dataclasses.field(default_factory=dict)
    step_error: float = 0.0
    flops: dict = dataclasses.field(default_factory=dict)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_case(grid_name: str, t: int, rounds: int, workdir: pathlib.Path) -> Case:
    config = ModelConfig.for_grid(grid_name, levels=20, time_steps=t)
    case = Case(grid_name, t, config, flops=flops(config))
    keras.utils.set_random_seed(0)
    model = build_emulator(config)
    stats = synthetic_stats(config, grid_name)
    path = workdir / f"{grid_name}_{t}"
    case.export_s = _timed(lambda: export.write_saved_model(model, stats, config, path))
    loaded = None

    def load():
        nonlocal loaded
        loaded = tf.saved_model.load(str(path))

    case.load_s = _timed(load)
    window_fn, init_fn, step_fn = (loaded.signatures[s] for s in export.SIGNATURES)
    seq = export.random_inputs(stats, config, 1, t, seed=0)
    window = {k: tf.constant(v) for k, v in seq.items()}
    state = init_fn(**{k: v[:, : t - 1] for k, v in window.items()})["state"]
    new = {k: v[:, t - 1] for k, v in window.items()}

    # The pieces, from the same Keras layers (what the signatures run, without the checks).
    graph = export._ServingGraph(model, stats, config, "log")
    normalized = {k: tf.constant(v) for k, v in graph_normalize(stats, seq).items()}
    last = {k: v[:, t - 1 :] for k, v in normalized.items()}
    fused = tf.function(graph.encode)(normalized)
    pieces = {
        "encoders, T frames": (tf.function(graph.encode), normalized),
        "encoders, 1 frame": (tf.function(graph.encode), last),
        "stack + readout, T frames": (tf.function(graph.head), fused),
    }
    variants = {
        "window (serving_default)": lambda: window_fn(**window)["bcb"].numpy(),
        "step": lambda: step_fn(**new, state=state)["bcb"].numpy(),
    }
    for name, (fn, x) in pieces.items():
        variants[name] = lambda fn=fn, x=x: fn(x).numpy()
    for name, fn in variants.items():  # trace, optimize, warm up
        case.first_call[name] = _timed(fn)
    full, stepped = variants["window (serving_default)"](), variants["step"]()
    case.step_error = export.relative_error(stepped, full, stats.log_offset)
    for _ in range(rounds):
        for name, fn in variants.items():
            case.times.setdefault(name, []).append(_timed(fn))
    del loaded
    keras.backend.clear_session()
    return case


def graph_normalize(stats, seq):
    return {"x2d": stats.normalize_x2d(seq["x2d"]), "x3d": stats.normalize_x3d(seq["x3d"])}


def report(cases: list[Case], load: tuple, wall: float) -> str:
    cpu = _cpu_model()
    lines = [
        "# Serving: full window vs coupling step",
        "",
        "Written by `benchmarks/bench_serving.py` (one run; cases one after another, inside a "
        "case the variants interleaved round by round; best and median round). Numbers are "
        "measurements on this machine, not targets.",
        "",
        f"- Machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.machine()}; TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, float32, no XLA, no GPU.",
        f"- Load average before / after: {_load(load[0])} / {_load(load[1])} (other "
        "processes shared the cores when these exceed 0 noticeably). Whole run: "
        f"{wall / 60:.1f} min.",
        "- Model: untrained, the reference paper's shapes (`ModelConfig()`): encoders 64 "
        "filters (2 × 5×5 blocks, Winograd), SFT fusion, ConvLSTM 3 × 64 (3×3, Winograd), "
        "L = 20. One global time step: batch 1.",
        "- Latency: one call of the loaded SavedModel's signature (`tf.saved_model.load`), "
        "physical inputs in, BCB out (numpy), in-graph checks included. Throughput: global "
        "time steps per second at batch 1, calls one after another (1 / latency).",
        "",
        "| grid | T | variant | latency best (s) | latency median (s) | steps/s (best) | rounds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        for name, times in c.times.items():
            best, median = min(times), statistics.median(times)
            lines.append(
                f"| {_grid(c)} | {c.time_steps} | {name} | {best:.4f} | {median:.4f} | "
                f"{1 / best:.2f} | {len(times)} |"
            )
    lines += [
        "",
        "Speed-up of the coupling step over the full window (latency ratio, best rounds) and "
        "its analytic bound (T·E + S + R) / (E + S + R): from forward FLOPs (direct-equivalent "
        "and as performed with Winograd) and from the pieces' measured times (encoders over T "
        "frames and over one frame, stack + readout over T frames). The encoders' share is "
        "their part of the window's cost.",
        "",
        "| grid | T | measured speed-up | analytic, FLOPs direct | analytic, FLOPs performed | "
        "analytic, measured pieces | encoders' share (FLOPs direct / performed / time) | "
        "step vs window, max relative error |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        t = c.time_steps
        best = {k: min(v) for k, v in c.times.items()}
        measured = best["window (serving_default)"] / best["step"]
        by_flops, shares = [], []
        for kind in ("direct", "performed"):
            f = c.flops[kind]
            by_flops.append(analytic(t, t * f["E"], f["E"], f["S"] + f["R"]))
            shares.append(t * f["E"] / (t * f["E"] + f["S"] + f["R"]))
        e_t, e_1 = best["encoders, T frames"], best["encoders, 1 frame"]
        rest = best["stack + readout, T frames"]
        by_time = analytic(t, e_t, e_1, rest)
        shares.append(e_t / (e_t + rest))
        lines.append(
            f"| {_grid(c)} | {t} | **{measured:.2f}×** | {by_flops[0]:.2f}× | "
            f"{by_flops[1]:.2f}× | {by_time:.2f}× | "
            f"{' / '.join(f'{100 * s:.0f}%' for s in shares)} | {c.step_error:.1e} |"
        )
    lines += [
        "",
        "Forward GFLOP per call, batch 1 (E: both encoders and the fusion, one frame; S: the "
        "ConvLSTM stack over T frames; R: the readout):",
        "",
        "| grid | T | E direct | E performed | S direct | S performed | window direct | "
        "step direct |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        d, p, t = c.flops["direct"], c.flops["performed"], c.time_steps
        window = t * d["E"] + d["S"] + d["R"]
        step = d["E"] + d["S"] + d["R"]
        lines.append(
            f"| {_grid(c)} | {t} | {d['E'] / 1e9:.2f} | {p['E'] / 1e9:.2f} | "
            f"{d['S'] / 1e9:.1f} | {p['S'] / 1e9:.1f} | {window / 1e9:.1f} | {step / 1e9:.1f} |"
        )
    lines += [
        "",
        "Cost of getting there (once per model, not per call): writing the SavedModel "
        "(`export.write_saved_model`: tracing three signatures, the stack unrolled over T), "
        "loading it, and the first call of each signature (graph optimization):",
        "",
        "| grid | T | write (s) | load (s) | first window call (s) | first step call (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in cases:
        lines.append(
            f"| {_grid(c)} | {c.time_steps} | {c.export_s:.1f} | {c.load_s:.1f} | "
            f"{c.first_call['window (serving_default)']:.2f} | {c.first_call['step']:.2f} |"
        )
    lines.append("")
    return "\n".join(lines)


def _grid(c: Case) -> str:
    return {"coarse": "4°×5°", "native": "2°×2.5°"}[c.grid_name]


def _load(values) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, 4°×5° only, printed")
    args = parser.parse_args()
    start = time.perf_counter()
    load_before = os.getloadavg()
    cases = []
    grids = ("coarse",) if args.quick else GRIDS
    with tempfile.TemporaryDirectory() as tmp:
        for grid_name in grids:
            for t in WINDOWS:
                rounds = 1 if args.quick else ROUNDS[(grid_name, t)]
                print(f"{grid_name}, T = {t}: {rounds} rounds", flush=True)
                cases.append(run_case(grid_name, t, rounds, pathlib.Path(tmp)))
                print({k: f"{min(v):.4f}" for k, v in cases[-1].times.items()}, flush=True)
    text = report(cases, (load_before, os.getloadavg()), time.perf_counter() - start)
    if args.quick:
        print(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
