"""A tiny exported emulator shared by the serving tests (export, client, predict).

`tiny_export` saves an untrained tiny emulator (T = 3 on the ``tiny_l3`` grid: the values do
not matter to what these tests check, equality of two ways of computing them) as a training
``out_dir`` and exports it once per test session.
"""

from __future__ import annotations

from pathlib import Path

from bcb_emulator.config import ModelConfig, Tier, TrainConfig

#: The window of the tiny model: 2 steps of context, half of a day of the dummy data.
TIME_STEPS = 3
_CACHE: dict[str, Path] = {}


def tiny_model_dir(dataset, out_dir: Path, target_transform: str = "log", **overrides) -> Path:
    """Saves an untrained tiny emulator and its `TrainConfig` as `bcb-emulator train` does;
    `overrides` are `ModelConfig` fields."""
    import keras

    from bcb_emulator.models import build_emulator

    height, width = dataset.spec.grid.shape
    settings = dict(
        height=height,
        width=width,
        levels=dataset.spec.n_levels,
        time_steps=TIME_STEPS,
        encoder_filters=8,
        groups=4,
        sft_hidden=8,
        lstm_filters=8,
        lstm_layers=2,
    )
    model = ModelConfig(**{**settings, **overrides})
    config = TrainConfig(
        data_dir=str(dataset.data_dir),
        builder_config=dataset.name,
        out_dir=str(out_dir),
        model=model,
        tiers=(Tier("finetune", "train", "validation", epochs=1),),
        target_transform=target_transform,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    build_emulator(model).save(out_dir / "model.keras")
    config.save(out_dir / "train_config.json")
    return out_dir


#: The variant with the optional inputs and output space: emission memory, physical target.
MEMORY_DAYS = (0.5,)
ADVECTED_DAYS = (1.0,)


def tiny_export(dataset, tmp_path_factory, variant: str = "default") -> Path:
    """The version folder of the tiny emulator, exported once per session.

    `variant`: ``"default"`` (the reference paper's inputs, log target) or ``"memory"``
    (an emission-memory channel of τ = 0.5 days, an advected one of 1 day, target normalized
    in physical space).
    """
    if variant not in _CACHE:
        from bcb_emulator.export import export_model

        root = tmp_path_factory.mktemp(f"tiny_export_{variant}")
        if variant == "memory":
            model_dir = tiny_model_dir(
                dataset,
                root / "run",
                "none",
                emission_memory_days=MEMORY_DAYS,
                advected_memory_days=ADVECTED_DAYS,
            )
        else:
            model_dir = tiny_model_dir(dataset, root / "run")
        _CACHE[variant] = export_model(model_dir, "tiny", root / "saved_models", dataset=dataset)
    return _CACHE[variant]
