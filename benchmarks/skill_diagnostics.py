"""Two diagnostics on the skill benchmark's data (``bench_skill.py --work /tmp/bcb_skill``).

``probe``: how much of BCB the memory channels alone explain. On the first 480 steps of a
split (January–February for ``train``), daily samples after two weeks, a linear least-squares
fit of BCB at levels 1, 10 and 15 on the local emission memory (`emission_memory`) or the
advected one (`advected_memory`), τ = 0.5, 2, 7 (and 14) days; pooled, area-weighted R² in
physical units / in log space. The figures in ``docs/dataset.md`` come from
``probe train 480``.

``bias``: a trained model's area-mean level-1 BCB over a split (one window every day) against
the truth's; the ratios in ``docs/evaluation.md`` and ``docs/emulator.md`` come from
``bias /tmp/bcb_skill/training/<run> train``.

Run::

    .venv/bin/python benchmarks/skill_diagnostics.py probe train 480
    .venv/bin/python benchmarks/skill_diagnostics.py bias /tmp/bcb_skill/training/emulator train
"""

from __future__ import annotations

import sys

import numpy as np

DATA = "/tmp/bcb_skill/data"
TAUS = (0.5, 2.0, 7.0, 14.0)


def probe(split: str, n: int) -> None:
    from bcb_emulator.data import pipeline as P
    from bcb_emulator.data.dataset import BuiltDataset

    ds = BuiltDataset.open(DATA, "skill_l20")
    stats, spec = ds.stats, ds.spec
    frames = P.read_frames(ds, split).map(
        lambda ex: (
            stats.normalize_x2d(ex["x2d"]),
            stats.normalize_x3d(ex["x3d"]),
            ex["bcb"],
            ex["time"],
        )
    )
    frames = P.emission_memory(frames, TAUS)
    frames = P.advected_memory(frames, TAUS, grid=spec.grid, n_levels=spec.n_levels, stats=stats)
    x, y = [], []
    for i, (x2d, _, bcb, _) in enumerate(frames.take(n)):
        if i % 8 == 7 and i > 112:  # one sample a day, after two weeks of memory
            x.append(x2d.numpy()[..., 6:])
            y.append(bcb.numpy()[..., [0, 9, 14]])
    x, y = np.stack(x), np.stack(y)  # (N, H, W, 8), (N, H, W, 3)
    w = np.broadcast_to(spec.grid.area / spec.grid.area.sum(), x.shape[:3]).reshape(-1)

    def r2(cols, k, log=False):
        a = np.c_[x[..., cols].reshape(-1, len(cols)), np.ones(w.size)]
        t = y[..., k].reshape(-1)
        t = np.log(t + 1e-3) if log else t
        coef, *_ = np.linalg.lstsq(a * np.sqrt(w)[:, None], t * np.sqrt(w), rcond=None)
        mean = np.sum(w * t) / w.sum()
        return 1 - np.sum(w * (t - a @ coef) ** 2) / np.sum(w * (t - mean) ** 2)

    sets = {
        "local .5/2/7": [0, 1, 2], "local +14": [0, 1, 2, 3], "advected .5/2/7": [4, 5, 6],
        "advected +14": [4, 5, 6, 7], "both": list(range(8)),
    }  # fmt: skip
    print(f"{len(x)} daily samples; R² physical / log")
    for k, level in enumerate((1, 10, 15)):
        cells = ", ".join(f"{name} {r2(c, k):.3f}/{r2(c, k, True):.3f}" for name, c in sets.items())
        print(f"level {level}: {cells}")


def bias(run: str, split: str) -> None:
    from bcb_emulator.config import TrainConfig
    from bcb_emulator.data.dataset import BuiltDataset
    from bcb_emulator.models import load_emulator

    config = TrainConfig.load(f"{run}/train_config.json")
    m = config.model
    ds = BuiltDataset.open(config.data_dir, config.builder_config)
    model = load_emulator(f"{run}/model.keras", compile=False)
    windows = ds.windows(
        split, window=m.time_steps, batch_size=16, stride=ds.spec.steps_per_day, shuffle=False,
        seed=0, return_metadata=True, target_transform=config.target_transform,
        emission_memory_days=m.emission_memory_days, advected_memory_days=m.advected_memory_days,
    )  # fmt: skip
    area = ds.spec.grid.area
    pred, truth = [], []
    for x, _, meta in windows.as_numpy_iterator():
        z = model.predict(x, verbose=0)
        p = np.maximum(ds.stats.denormalize_target(z, config.target_transform), 0)
        pred.append((p[..., 0] * area).sum((1, 2)) / area.sum())
        truth.append((meta["bcb"][..., 0] * area).sum((1, 2)) / area.sum())
    pred, truth = np.concatenate(pred), np.concatenate(truth)
    print(f"{split}, {len(pred)} windows: level-1 area mean {pred.mean():.4g} vs truth "
          f"{truth.mean():.4g}, ratio {pred.mean() / truth.mean():.3f}")  # fmt: skip


if __name__ == "__main__":
    from bcb_emulator.cli import quiet_tensorflow

    quiet_tensorflow()
    if sys.argv[1:2] == ["probe"]:
        probe(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["bias"]:
        bias(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
