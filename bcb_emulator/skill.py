"""The skill benchmark: its simulated periods, its dataset and its two training configurations.

The benchmark (``benchmarks/bench_skill.py``, report in ``docs/skill/``) measures the
emulator's skill on a held-out year of the reference model against NINT and persistence:

- `SKILL_RUNS`: the 2010s scenario from 2009-12-01 to 2011-12-31 (validation: December 2009;
  training: the year 2010; test and long run: the year 2011), the pre-industrial July 1851
  and the extreme fire season of 2021 (July–August) as out-of-period tests. The reference
  model steps every 30 minutes at 4°×5° and writes every 6th step (3-hourly), after a
  30-day spin-up: a year of half-hourly output would be 6× the data for windows no longer in
  time.
- ``skill_l20`` (`SKILL_BUILDER_CONFIG`): the TFDS builder config of those splits.
- `cpu_train_config`: what trains on 2 CPU cores within 60 minutes (measured in
  ``docs/skill/README.md``).
- `native_train_config`: the reference paper's shapes for a GPU: 2°×2.5°, T = 48 half-hourly
  steps (a day), 64 filters in the encoders and in 3 ConvLSTM layers, on ``native_l20``.
"""

from __future__ import annotations

from pathlib import Path

from bcb_emulator.config import ModelConfig, Tier, TrainConfig
from bcb_emulator.data.spec import SplitRange
from bcb_emulator.demo import SimulatedPeriod

#: The TFDS builder config whose splits cover the skill benchmark's periods.
SKILL_BUILDER_CONFIG = "skill_l20"
#: Days simulated before each period from a clean atmosphere (≈ 4 BCB lifetimes).
SKILL_SPINUP_DAYS = 30
#: The skill benchmark's simulated periods (3-hourly output of the reference model).
SKILL_RUNS: tuple[SimulatedPeriod, ...] = (
    SimulatedPeriod(
        "2010s",
        (
            SplitRange("validation", "2009-12-01", "2009-12-31"),
            SplitRange("train", "2010-01-01", "2010-12-31"),
            SplitRange("test", "2011-01-01", "2011-12-31"),
        ),
    ),
    SimulatedPeriod("pi", (SplitRange("ood_pi", "1851-07-01", "1851-07-31"),)),
    SimulatedPeriod("2020s", (SplitRange("ood_fire2021", "2021-07-01", "2021-08-31"),)),
)
#: The splits of the ``skill_l20`` builder config.
SKILL_SPLITS: tuple[SplitRange, ...] = tuple(s for run in SKILL_RUNS for s in run.splits)
#: The splits the skill report evaluates: the held-out year (the long run) and out of period.
SKILL_EVALUATION_SPLITS = ("test", "ood_pi", "ood_fire2021")
#: Emission-memory time scales of the CPU configuration, days: the fires of the last half day,
#: two days and a week (the BCB lifetime is about 7 days).
SKILL_EMISSION_MEMORY_DAYS = (0.5, 2.0, 7.0)
#: Advected emission-memory time scales of the CPU configuration, days: the smoke of the last
#: two days, week and fortnight, carried by the wind.
SKILL_ADVECTED_MEMORY_DAYS = (2.0, 7.0, 14.0)


def simulate(out: str | Path, progress: bool = True) -> Path:
    """Simulates the skill benchmark's periods into `out` (resumable); returns it."""
    from bcb_emulator.reference.model import ReferenceModel, SimulationConfig

    out = Path(out)
    for period in SKILL_RUNS:
        config = SimulationConfig.preset(
            "demo", scenario=period.scenario, spinup_days=SKILL_SPINUP_DAYS
        )
        ReferenceModel(config).run(period.start, period.end, out, progress=progress)
    return out


def cpu_train_config(
    data_dir: str, out_dir: str, loss: str = "mse", **model_overrides
) -> TrainConfig:
    """The skill benchmark's CPU configuration (2 cores, within 60 minutes of training).

    4°×5°, L = 20, T = 8 three-hourly steps (a day), 16 filters, 2 ConvLSTM layers of 16,
    emission memory over `SKILL_EMISSION_MEMORY_DAYS` and advected emission memory over
    `SKILL_ADVECTED_MEMORY_DAYS` (an ablation without it: ``advected_memory_days=()``), the
    loss in physical space (the demo's variants: twice the physical-unit R² of the log-space
    loss at level 1) and the MSE alone (`TrainConfig.loss`; the paper's MSE + MAE leaves
    the mass low), one tier on the year 2010 selected on December 2009.

    Args:
        data_dir: where ``skill_l20`` is built.
        out_dir: the training run's folder.
        loss: `TrainConfig.loss` (the ablation: ``"mse_mae"``, the reference paper's).
        **model_overrides: `ModelConfig` fields to change (the ablations:
            ``advected_memory_days=()``; ``fusion="none"``; ``use_3d=False, fusion="none"``).
    """
    fields = dict(
        levels=20,
        time_steps=8,
        encoder_filters=16,
        groups=4,
        sft_hidden=16,
        lstm_filters=16,
        lstm_layers=2,
        emission_memory_days=SKILL_EMISSION_MEMORY_DAYS,
        advected_memory_days=SKILL_ADVECTED_MEMORY_DAYS,
    )
    model = ModelConfig.for_grid("coarse", **{**fields, **model_overrides})
    return TrainConfig(
        data_dir=data_dir,
        builder_config=SKILL_BUILDER_CONFIG,
        out_dir=out_dir,
        model=model,
        tiers=(Tier("modern", "train", "validation", epochs=10, learning_rate=2e-3),),
        batch_size=8,
        stride=1,
        steps_per_epoch=300,
        validation_steps=None,  # December 2009: 241 windows
        early_stopping_patience=4,
        area_weighted=True,
        target_transform="none",
        loss=loss,
    )


def native_train_config(data_dir: str, out_dir: str) -> TrainConfig:
    """The reference paper's shapes for a GPU: 2°×2.5° (``native_l20``, half-hourly), T = 48,
    64 filters, 3 ConvLSTM layers of 64, two tiers (pre-industrial, then modern), mixed
    precision and XLA; the skill benchmark's emission memories (local and advected) and
    physical-space loss.

    Not run here (no GPU on the CPU benchmark's machine); its cost per step is measured in
    ``docs/benchmarks/emulator_training.md`` at T = 4.
    """
    model = ModelConfig.for_grid(
        "native",
        levels=20,
        time_steps=48,
        emission_memory_days=SKILL_EMISSION_MEMORY_DAYS,
        advected_memory_days=SKILL_ADVECTED_MEMORY_DAYS,
    )
    return TrainConfig(
        data_dir=data_dir,
        builder_config="native_l20",
        out_dir=out_dir,
        model=model,
        tiers=(
            Tier("pretrain", "pi_train", "validation", epochs=10, learning_rate=1e-3),
            Tier("finetune", "train", "validation", epochs=20, learning_rate=3e-4),
        ),
        batch_size=8,
        stride=6,  # a window every 3 hours
        area_weighted=True,
        target_transform="none",
        loss="mse",
        mixed_precision="mixed_bfloat16",
        jit_compile=True,
    )
