"""The tiny emulator the tests train on the session's ``tiny_l3`` dataset (6×8, L = 3)."""

from __future__ import annotations

from bcb_emulator.config import ModelConfig, Tier, TrainConfig

#: A small network: 8 filters, one ConvLSTM layer, T = 2.
TINY_MODEL = dict(
    time_steps=2, encoder_filters=8, groups=4, sft_hidden=8, lstm_filters=8, lstm_layers=1
)


def tiny_model_config(dataset, **overrides) -> ModelConfig:
    """`TINY_MODEL` on `dataset`'s grid and levels; `overrides` are `ModelConfig` fields."""
    height, width = dataset.spec.grid.shape
    return ModelConfig(
        height=height, width=width, levels=dataset.spec.n_levels, **{**TINY_MODEL, **overrides}
    )


def tiny_train_config(dataset, out_dir, model=None, **overrides) -> TrainConfig:
    """One short tier (``train`` → ``validation``, 1 epoch, batches of 4) of the tiny model on
    `dataset`, into `out_dir`; `overrides` are `TrainConfig` fields."""
    settings = dict(tiers=(Tier("only", "train", "validation", epochs=1),), batch_size=4)
    return TrainConfig(
        data_dir=str(dataset.data_dir),
        builder_config=dataset.name,
        out_dir=str(out_dir),
        model=model or tiny_model_config(dataset),
        **{**settings, **overrides},
    )
