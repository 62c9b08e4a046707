"""Hyperparameter sweeps of the emulator with keras-tuner.

- `tuning.config`: `SearchSpace` and `TuneConfig` (typed, frozen, JSON round trip) and
  `demo_tune_config`, a sweep sized for the demo dataset; no Keras imported.
- `tuning.hypermodel`: `EmulatorHyperModel`, whose ``build(hp)`` maps the hyperparameters
  onto the `bcb_emulator.config.ModelConfig` training uses and whose ``fit`` windows the
  built dataset at the trial's `T` and fits with the training's own loss, metrics and
  callbacks.
- `tuning.search`: `run_search` (Hyperband, random search or Bayesian optimization;
  resumable; keras-tuner's chief/worker mode) and `retrain_best`.
- `tuning.results`: the results table (CSV, Markdown) and the plot of the objective per trial.

The command is ``bcb-emulator tune --config tune.json [--retrain-best]``; see
``docs/tuning.md``.
"""

from tuning.config import SearchSpace, TuneConfig, demo_tune_config

__all__ = ["SearchSpace", "TuneConfig", "demo_tune_config"]
