"""Input pipeline benchmark: tf.data windows/s vs a naive per-sample xarray loader, vs the
training step, and peak build memory of a short vs a longer archive. Writes a Markdown table.

Run: ``.venv/bin/python benchmarks/bench_input_pipeline.py [--days 4 --mem-days 8 16]``.
Data: seeded synthetic files (``bcb_emulator.data.synthetic``) on the coarse grid, L = 20,
48 steps a day. Results are measured side by side in one run; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bcb_emulator import variables
from bcb_emulator.data import calendar, synthetic
from bcb_emulator.grid import get_grid

START = calendar.day_number(2010, 1, 1)
T, BATCH, L = 4, 4, 20


def naive_window(input_dir: Path, start_step: int):
    """The reference paper's code's approach: open the netCDF files with xarray for every sample."""
    import xarray as xr

    x2d, x3d = [], []
    for step in range(start_step, start_step + T):
        day, k = divmod(step, 48)
        stamp = calendar.yyyymmdd(START + day)
        ds = {s: xr.open_dataset(input_dir / f"{stamp}.{s}E3oma.nc") for s in variables.STREAMS}
        x2d.append(
            np.stack(
                [
                    ds[variables.file_stream(v)][v.name].values[..., :, :]
                    if not v.time_varying
                    else ds[v.stream][v.name].isel(time=k).values
                    for v in variables.X2D
                ],
                -1,
            )
        )
        x3d.append(
            np.concatenate(
                [ds[v.stream][v.name].isel(time=k, level=slice(0, L)).values for v in variables.X3D]
            ).transpose(1, 2, 0)
        )
        y = ds["taijlh1"]["BCB"].isel(time=k, level=slice(0, L)).values.transpose(1, 2, 0)
        for d in ds.values():
            d.close()
    return np.stack(x2d), np.stack(x3d), y


def measure_build_memory(input_dir: Path, data_dir: Path, n_days: int) -> dict:
    """Builds `n_days` in a fresh process; returns its peak RSS (MiB) and wall time (s)."""
    end = calendar.yyyymmdd(START + n_days - 1)
    code = (
        "import resource, time, json; from bcb_emulator.data import build_dataset; "
        f"t=time.time(); s=build_dataset({str(input_dir)!r}, {str(data_dir)!r}, 'coarse_l20', "
        f"{{'train': ('2010-01-01', '{end[:4]}-{end[4:6]}-{end[6:]}')}}, name='mem{n_days}'); "
        "print(json.dumps({'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
        " 'seconds': time.time()-t, 'steps': s['train']}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=4, help="days of the throughput dataset")
    parser.add_argument("--mem-days", type=int, nargs=2, default=(8, 16))
    parser.add_argument("--naive-windows", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--out", default="docs/benchmarks/input_pipeline.md")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_input_"))
    input_dir = work / "input"
    n_gen = max(args.days, *args.mem_days)
    t0 = time.time()
    todo = [
        START + d
        for d in range(n_gen)
        if not (input_dir / f"{calendar.yyyymmdd(START + d)}.taijlh1E3oma.nc").exists()
    ]
    synthetic.write_days(input_dir, todo, get_grid("coarse"), L, seed=0, complevel=1)
    print(f"generated {len(todo)} days in {time.time() - t0:.0f}s")

    # Peak memory of builds over a short and a longer archive, each in a fresh process.
    mem = {n: measure_build_memory(input_dir, work / f"tfds_mem{n}", n) for n in args.mem_days}
    print("build memory", mem)

    import tensorflow as tf

    from bcb_emulator.data import build_dataset

    end = calendar.yyyymmdd(START + args.days - 1)
    dataset = build_dataset(
        input_dir, work / "tfds", "coarse_l20",
        {"train": ("2010-01-01", f"{end[:4]}-{end[4:6]}-{end[6:]}")}, name="bench",
    )  # fmt: skip
    ds = dataset.windows("train", window=T, batch_size=BATCH, shuffle=True, seed=0)
    it = iter(ds.repeat())
    next(it)
    n_batches, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 10:
        next(it)
        n_batches += 1
    pipe_rate = n_batches * BATCH / (time.perf_counter() - t0)

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(args.naive_windows):
        naive_window(input_dir, int(rng.integers(0, args.days * 48 - T)))
    naive_rate = args.naive_windows / (time.perf_counter() - t0)

    # Training step: the package's emulator if present, else a stand-in ConvLSTM.
    import keras

    try:
        from bcb_emulator.config import ModelConfig
        from bcb_emulator.models import build_emulator

        model = build_emulator(ModelConfig(height=46, width=72, levels=L, time_steps=T))
        model_name = "bcb_emulator.models.build_emulator (default ModelConfig, 46x72, L=20)"
    except Exception as err:  # noqa: BLE001 - fall back to a stand-in, and say so
        x2d = keras.Input((T, 46, 72, 6), name="x2d")
        x3d = keras.Input((T, 46, 72, 8 * L), name="x3d")
        h = keras.layers.ConvLSTM2D(32, 3, padding="same")(keras.layers.Concatenate()([x2d, x3d]))
        model = keras.Model({"x2d": x2d, "x3d": x3d}, keras.layers.Conv2D(L, 1)(h))
        model_name = f"stand-in ConvLSTM2D(32) ({type(err).__name__}: emulator unavailable)"
    model.compile(optimizer="adam", loss="mse")
    batch = next(it)
    model.train_on_batch(*batch)
    wait = step = 0.0
    for _ in range(args.train_steps):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        model.train_on_batch(*batch)
        wait, step = wait + t1 - t0, step + time.perf_counter() - t1
    step_rate = args.train_steps * BATCH / step
    load = os.getloadavg()
    a, b = args.mem_days
    lines = [
        "# Input pipeline benchmark",
        "",
        f"`benchmarks/bench_input_pipeline.py`, one run, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPU cores, no GPU, load average at the end {load[0]:.1f} / "
        f"{load[1]:.1f} / {load[2]:.1f} (other processes share the cores).",
        f"Data: seeded synthetic ModelE files, coarse grid 46x72, L = {L}, 48 steps a day, "
        f"{args.days} days; windows of T = {T}, batches of {BATCH}, shuffled.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| tf.data pipeline (`make_windows`) | {pipe_rate:.1f} windows/s |",
        f"| naive loader (xarray opens files per sample) | {naive_rate:.2f} windows/s |",
        f"| pipeline / naive | **{pipe_rate / naive_rate:.0f}x** (target >= 50x) |",
        f"| training step consumption ({model_name}) | {step_rate:.2f} windows/s |",
        f"| input wait / step time in the training loop | **{100 * wait / step:.2f}%** "
        "(target < 5%) |",
        f"| build peak RSS, {a} days ({mem[a]['steps']} steps) | {mem[a]['rss_mib']:.0f} MiB "
        f"({mem[a]['seconds']:.0f} s) |",
        f"| build peak RSS, {b} days ({mem[b]['steps']} steps) | {mem[b]['rss_mib']:.0f} MiB "
        f"({mem[b]['seconds']:.0f} s) |",
        f"| ratio longer / shorter | **{mem[b]['rss_mib'] / mem[a]['rss_mib']:.2f}** "
        "(target <= 1.5) |",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    _ = tf  # the pipeline and model run on TensorFlow


if __name__ == "__main__":
    main()
