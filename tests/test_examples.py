"""The example scripts of ``examples/`` run on the tiny dataset and return what they print."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
WINDOW, EPOCHS = 2, 2


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fit_run(tiny_dataset, tmp_path_factory):
    """`train_with_model_fit.main` on ``tiny_l3``: 2 epochs, T = 2, stride 1."""
    out = tmp_path_factory.mktemp("example_out")
    argv = ["--data-dir", str(tiny_dataset.data_dir), "--config", tiny_dataset.name]
    argv += ["--epochs", str(EPOCHS), "--window", str(WINDOW), "--stride", "1"]
    return _load("train_with_model_fit").main([*argv, "--out", str(out)]), out


def test_per_level_scores_are_finite(fit_run, tiny_dataset):
    result, _ = fit_run
    levels = tiny_dataset.spec.n_levels
    r2, rmse = np.asarray(result["r2_level"]), np.asarray(result["rmse_level"])
    assert r2.shape == rmse.shape == (levels,) == (3,)
    assert np.all(np.isfinite(r2)) and np.all(r2 <= 1.0)
    assert np.all(np.isfinite(rmse)) and np.all(rmse >= 0.0)


def test_history_has_the_epochs_asked_for(fit_run):
    history = fit_run[0]["history"]
    for key in ("loss", "r2", "val_loss", "val_r2"):
        assert len(history[key]) == EPOCHS and np.all(np.isfinite(history[key])), key


def test_physical_truth_is_the_stored_bcb_and_predictions_are_finite(fit_run, tiny_dataset):
    result, _ = fit_run
    raw = tiny_dataset.windows(
        "test", window=WINDOW, stride=1, batch_size=8, shuffle=False, seed=0, normalize=False
    )
    bcb = np.concatenate([y for _, y in raw.as_numpy_iterator()])  # (N, H, W, L), 1e-11 kg/kg
    area = tiny_dataset.spec.grid.area / tiny_dataset.spec.grid.area.sum()
    expected = (bcb[..., 0] * area).sum(axis=(1, 2))  # (N,) global mean at level 1
    assert len(expected) == tiny_dataset.num_windows("test", window=WINDOW) == 3
    np.testing.assert_allclose(result["mean_truth_l1"], expected, rtol=1e-5)
    pred = np.asarray(result["mean_pred_l1"])
    assert pred.shape == expected.shape and np.all(np.isfinite(pred))


def test_outputs_go_to_the_out_folder(fit_run):
    result, out = fit_run
    assert result["out"] == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.keras"]
    assert json.loads((out / "metrics.json").read_text())["rmse_level"] == result["rmse_level"]
