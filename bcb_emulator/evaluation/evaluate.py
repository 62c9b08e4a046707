"""Streaming evaluation of trained emulators and the baselines over splits of a built dataset.

`evaluate` reads each split's windows once, in time order, a batch at a time (memory holds a
batch, a day of truth for persistence, and the accumulators), predicts with every model, turns
predictions back into physical units (10⁻¹¹ kg/kg, clipped at 0) and accumulates the metrics of
`bcb_emulator.evaluation.skill` for each model on the same samples: the last step of every
window of `T` steps (persistence only where the previous day is in the split).

Models: ``emulator`` (the model evaluated), ``nint`` (the monthly climatology of the training
splits, `baselines.MonthlyClimatology`), ``persistence`` (`baselines.Persistence`, a reference
line that uses past BCB) and any other trained model given by name (e.g. ablations).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import tqdm

from bcb_emulator.evaluation import regions, skill
from bcb_emulator.evaluation.baselines import MonthlyClimatology, Persistence

EMULATOR, NINT, PERSISTENCE = "emulator", "nint", "persistence"
TRUTH = "truth"
#: Remote cells whose level-1 time series the report draws (name, latitude, longitude).
REMOTE_CELLS = (
    ("South Pacific", -30.0, -140.0),
    ("Southern Ocean", -60.0, 0.0),
    ("North Atlantic", 40.0, -35.0),
)
#: Source cells drawn: the cells of highest mean level-1 BCB in the NINT climatology.
N_SOURCE_CELLS = 3


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A trained emulator and what its inputs and output need.

    Attributes:
        model: the Keras model (normalized windows in, normalized BCB out).
        target_transform: the space its target was normalized in (``TrainConfig``).
        emission_memory_days: its emission-memory channels (``ModelConfig``).
        advected_memory_days: its advected emission-memory channels (``ModelConfig``).
    """

    model: object
    target_transform: str = "log"
    emission_memory_days: tuple[float, ...] = ()
    advected_memory_days: tuple[float, ...] = ()


@dataclasses.dataclass
class SplitSkill:
    """The accumulated evaluation of one split.

    Attributes:
        split: split name.
        models: model names, the emulator first.
        pooled: per model, `skill.Moments` over groups ``GLOBAL`` then the regions of
            `regions.region_names` (physical units).
        pooled_log: per model, `skill.Moments` of ``log(BCB + offset)``, global.
        per_step: per model, `skill.PerStepMean`, global, physical units.
        seasons: per model and season, `skill.Moments`, global, physical units.
        months: per model and calendar month ``"YYYY-MM"`` present, `skill.Moments`, global,
            physical units (the long run's monthly skill).
        burden: per model, `skill.Moments` of the column burden (kg m⁻², one "level").
        n_steps: samples per model.
        times: ``(N,)`` time stamps of the samples, days since 1850-01-01.
        mass: the global BCB mass in the L levels (kg) per sample, of the truth and each model
            (persistence NaN where unavailable).
        emission: global emission rate (kg s⁻¹) of the last input frame per sample.
        burden_sum: the sum over samples of the column-burden map ``(H, W)`` (kg m⁻²), of the
            truth and each model but persistence.
        cells: ``(name, row, column)`` of the cells whose level-1 series are kept.
        series: per truth/model, ``(N, n_cells)`` level-1 BCB at `cells`.
    """

    split: str
    models: tuple[str, ...]
    pooled: dict
    pooled_log: dict
    per_step: dict
    seasons: dict
    months: dict
    burden: dict
    n_steps: dict
    times: list
    mass: dict
    emission: list
    burden_sum: dict
    cells: list
    series: dict

    def to_json(self, levels: int) -> dict:
        """The JSON of the split in ``metrics.json``: lists over levels 1..L."""
        names = regions.region_names()
        models = {}
        for model in self.models:
            result = {k: v[0].tolist() for k, v in self.pooled[model].result().items()}
            result["log"] = {k: v[0].tolist() for k, v in self.pooled_log[model].result().items()}
            result["per_step"] = {
                k: v[0].tolist() for k, v in self.per_step[model].result().items()
            }
            pooled = self.pooled[model].result()
            result["regions"] = {
                name: {k: v[g + 1].tolist() for k, v in pooled.items()}
                for g, name in enumerate(names)
            }
            result["seasons"] = {
                season: {k: v[0].tolist() for k, v in moments.result().items()}
                for season, moments in self.seasons[model].items()
                if moments.sums["w"].any()
            }
            result["months"] = {
                month: {k: v[0].tolist() for k, v in moments.result().items()}
                for month, moments in self.months[model].items()
            }
            result["burden"] = {k: float(v[0, 0]) for k, v in self.burden[model].result().items()}
            result["n_steps"] = self.n_steps[model]
            models[model] = result
        return {
            "n_steps": len(self.times),
            "levels": list(range(1, levels + 1)),
            "models": models,
            "global_mass_kg": {
                "time": list(self.times),
                **{k: [None if np.isnan(x) else x for x in v] for k, v in self.mass.items()},
            },
        }


def _nearest_cell(grid, lat: float, lon: float) -> tuple[int, int]:
    row = int(np.argmin(np.abs(grid.lat - lat)))
    col = int(np.argmin(np.abs((grid.lon - lon + 180.0) % 360.0 - 180.0)))
    return row, col


def load_models(model_dir, compare: Mapping[str, str] | None = None):
    """Loads the emulator of `model_dir` and the models to compare with; checks they share
    the dataset and the window length.

    Returns:
        ``(config, {name: TrainedModel})``: the emulator's `TrainConfig` and the models,
        ``"emulator"`` first.
    """
    from bcb_emulator.config import TrainConfig
    from bcb_emulator.models import load_emulator
    from bcb_emulator.training import CONFIG_FILE, MODEL_FILE

    reserved = sorted({EMULATOR, NINT, PERSISTENCE, TRUTH})
    taken = sorted(set(compare or {}) & set(reserved))
    if taken:
        raise ValueError(f"Compared models cannot be named {reserved}. Received: {taken}")
    dirs = {EMULATOR: model_dir, **(compare or {})}
    configs, models = {}, {}
    for name, folder in dirs.items():
        folder = pathlib.Path(folder)
        for file in (MODEL_FILE, CONFIG_FILE):
            if not (folder / file).is_file():
                raise FileNotFoundError(
                    f"Model {name!r}: {folder / file} does not exist; `--model` and `--compare` "
                    "take the out_dir of `bcb-emulator train`."
                )
        configs[name] = config = TrainConfig.load(folder / CONFIG_FILE)
        models[name] = TrainedModel(
            load_emulator(folder / MODEL_FILE, compile=False),
            config.target_transform,
            config.model.emission_memory_days,
            config.model.advected_memory_days,
        )
    config = configs[EMULATOR]
    for name, other in configs.items():
        same = (other.data_dir, other.builder_config, other.model.time_steps)
        if same != (config.data_dir, config.builder_config, config.model.time_steps):
            raise ValueError(
                f"Model {name!r} must use the emulator's dataset and window length "
                f"({config.builder_config!r} in {config.data_dir}, T={config.model.time_steps}) "
                f"to be compared on the same samples. Received: {other.builder_config!r} in "
                f"{other.data_dir}, T={other.model.time_steps}"
            )
    return config, models


def evaluate(
    models: Mapping[str, object],
    dataset,
    splits: Sequence[str],
    *,
    window: int,
    batch_size: int = 8,
    climatology: MonthlyClimatology | None = None,
    progress: bool = True,
) -> dict[str, SplitSkill]:
    """Evaluates `models` and the baselines on each split of `dataset`.

    Args:
        models: ``{name: TrainedModel}`` (``"emulator"`` first); each gets the windows'
            inputs with its own emission-memory channels and has its output turned back into
            physical units with its own target transform.
        dataset: the `bcb_emulator.data.BuiltDataset` the models were trained on.
        splits: the splits to evaluate (e.g. ``"test"``, ``"ood_fire2021"``).
        window: `T` of the models' windows.
        batch_size: windows per batch.
        climatology: the NINT baseline; default from the dataset's training splits.
        progress: show a progress bar per split.

    Returns:
        ``{split: SplitSkill}``.
    """
    if climatology is None:
        climatology = MonthlyClimatology.from_dataset(dataset)
    for split in splits:
        dataset.check_split(split)
    grid, levels = dataset.spec.grid, dataset.spec.n_levels
    area = grid.area
    masks = np.concatenate([area[None], regions.region_masks(grid) * area])  # (16, H, W)
    global_mask = area[None]  # (1, H, W)
    names = (*models, NINT, PERSISTENCE)
    source = np.argsort(climatology.mean[..., 0].mean(axis=0).ravel())[::-1][:N_SOURCE_CELLS]
    cells = [(f"source {k + 1}", *divmod(int(c), grid.im)) for k, c in enumerate(source)]
    cells += [(name, *_nearest_cell(grid, lat, lon)) for name, lat, lon in REMOTE_CELLS]
    rows = np.array([c[1] for c in cells])
    cols = np.array([c[2] for c in cells])
    stats = dataset.stats
    # One set of windows for every model: the memory channels of all, each model taking its own.
    memory = tuple(sorted({tau for m in models.values() for tau in m.emission_memory_days}))
    advected = tuple(sorted({tau for m in models.values() for tau in m.advected_memory_days}))
    channels = {
        name: [
            *range(6),
            *(6 + memory.index(tau) for tau in m.emission_memory_days),
            *(6 + len(memory) + advected.index(tau) for tau in m.advected_memory_days),
        ]
        for name, m in models.items()
    }
    results = {}
    for split in splits:
        acc = SplitSkill(
            split=split,
            models=names,
            pooled={m: skill.Moments(len(masks), levels) for m in names},
            pooled_log={m: skill.Moments(1, levels) for m in names},
            per_step={m: skill.PerStepMean(1, levels) for m in names},
            seasons={m: {s: skill.Moments(1, levels) for s in regions.SEASONS} for m in names},
            months={m: {} for m in names},
            burden={m: skill.Moments(1, 1) for m in names},
            n_steps=dict.fromkeys(names, 0),
            times=[],
            mass={m: [] for m in (TRUTH, *names)},
            emission=[],
            burden_sum={m: np.zeros(grid.shape) for m in (TRUTH, *names) if m != PERSISTENCE},
            cells=cells,
            series={m: [] for m in (TRUTH, *names)},
        )
        persistence = Persistence(dataset.spec.steps_per_day)
        windows = dataset.windows(
            split, window=window, batch_size=batch_size, shuffle=False, seed=0,
            return_metadata=True, emission_memory_days=memory, advected_memory_days=advected,
        )  # fmt: skip
        n_batches = int(windows.cardinality())
        for inputs, _, meta in tqdm.tqdm(
            windows.as_numpy_iterator(), total=n_batches, desc=f"evaluating {split}",
            unit="batch", disable=not progress, leave=False,
        ):  # fmt: skip
            times, truth, airmass = meta["time"], meta["bcb"], meta["airmass"]  # (B,), (B, H, W, L)
            persistence.observe(times, truth)
            predictions = {}
            for name, trained in models.items():
                feed = {"x2d": inputs["x2d"][..., channels[name]], "x3d": inputs["x3d"]}
                feed = {k: v for k, v in feed.items() if k in trained.model.input}
                z = np.asarray(trained.model.predict_on_batch(feed))  # (B, H, W, L) normalized
                bcb = stats.denormalize_target(z, trained.target_transform)  # 10⁻¹¹ kg/kg
                predictions[name] = np.maximum(bcb, 0.0)
            predictions[NINT] = climatology.predict(times)
            yesterday = persistence.predict(times)
            have = np.array([p is not None for p in yesterday])
            predictions[PERSISTENCE] = np.stack(
                [p if p is not None else np.full_like(truth[0], np.nan) for p in yesterday]
            )
            acc.times += [float(t) for t in times]
            emission = inputs["x2d"][:, -1, :, :, 5] * stats.x2d_std[5] + stats.x2d_mean[5]
            acc.emission += (1e-12 * np.einsum("nhw,hw->n", emission, area)).tolist()
            truth_burden = skill.column_burden(truth, airmass)[..., None]  # (B, H, W, 1)
            acc.mass[TRUTH] += skill.global_mass(truth, airmass, area).tolist()
            acc.burden_sum[TRUTH] += truth_burden[..., 0].sum(axis=0)
            acc.series[TRUTH].append(truth[:, rows, cols, 0])
            seasons = np.array([regions.season_of(t) for t in times])
            months = np.array([regions.year_month_of(t) for t in times])
            for name, pred in predictions.items():
                keep = have if name == PERSISTENCE else np.ones(len(times), bool)
                mass = np.full(len(times), np.nan)
                acc.series[name].append(pred[:, rows, cols, 0])
                if keep.any():
                    y, p, air = truth[keep], pred[keep], airmass[keep]
                    acc.pooled[name].update(y, p, masks)
                    acc.pooled_log[name].update(skill.log_space(y), skill.log_space(p), global_mask)
                    acc.per_step[name].update(y, p, global_mask)
                    for season in set(seasons[keep]):
                        here = seasons[keep] == season
                        acc.seasons[name][season].update(y[here], p[here], global_mask)
                    for month in sorted(set(months[keep])):
                        here = months[keep] == month
                        moments = acc.months[name].setdefault(month, skill.Moments(1, levels))
                        moments.update(y[here], p[here], global_mask)
                    burden = skill.column_burden(p, air)[..., None]
                    acc.burden[name].update(truth_burden[keep], burden, global_mask)
                    mass[keep] = skill.global_mass(p, air, area)
                    if name in acc.burden_sum:
                        acc.burden_sum[name] += burden[..., 0].sum(axis=0)
                    acc.n_steps[name] += int(keep.sum())
                acc.mass[name] += mass.tolist()
        acc.series = {k: np.concatenate(v) for k, v in acc.series.items()}
        results[split] = acc
    return results


def metrics_json(
    results: Mapping[str, SplitSkill], levels: int, climatology: MonthlyClimatology, **about
) -> dict:
    """The content of ``metrics.json``: per split and model, lists over levels 1..L of ``r2``,
    ``r``, ``rmse``, ``bias`` (pooled, area-weighted, physical units) and the other groups."""
    return {
        **about,
        "definitions": {
            "r2, r, rmse, bias": "pooled over every sample and cell of the split, area-weighted "
            "with the exact cell areas, BCB in 1e-11 kg/kg; lists over levels 1..L",
            "log": f"the same of log(BCB + {skill.LOG_OFFSET}) (1e-11 kg/kg)",
            "per_step": "each metric per time step over the grid, then averaged over the steps",
            "regions": "pooled within each GFED basis region box and REMOTE",
            "seasons": "pooled within each season present",
            "months": "pooled within each calendar month present (YYYY-MM), global",
            "burden": "pooled metrics of the column burden over levels 1..L, kg m-2",
            "nint": "monthly mean of the training split per month, cell and level; months "
            f"without training data use the nearest month with data: {climatology.filled_from}",
            "persistence": "the true field one day earlier (uses past BCB, which the emulator "
            "is not given); only steps whose previous day is in the split",
        },
        "splits": {split: r.to_json(levels) for split, r in results.items()},
    }


def write_metrics(path: pathlib.Path, content: dict) -> None:
    """Writes `content` as JSON (NaN as null) to `path` atomically."""

    def clean(x):
        if isinstance(x, float) and not np.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(clean(content), indent=1))
    tmp.replace(path)
