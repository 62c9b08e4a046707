"""Evaluation: each metric on hand-computed cases, the baselines, and the report on the tiny
dataset (a tiny emulator trained on it, evaluated through ``bcb-emulator evaluate``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bcb_emulator.evaluation import regions, skill
from bcb_emulator.evaluation.baselines import MonthlyClimatology, Persistence
from bcb_emulator.grid import get_grid


def _fields(values, shape=(1, 1, -1, 1)):
    return np.asarray(values, np.float64).reshape(shape)  # (N, H, W, L)


def test_pooled_metrics_on_a_hand_computed_case():
    """y = (1, 2, 3), p = (1, 3, 2), cell weights (1, 1, 2): every sum by hand."""
    y, p, w = _fields([1, 2, 3]), _fields([1, 3, 2]), np.array([[[1.0, 1.0, 2.0]]])
    m = skill.Moments(1, 1)
    m.update(y, p, w)
    # ȳ = 9/4, p̄ = 2; Σw(y−ȳ)² = 2.75, Σw(p−p̄)² = 2, cov = 1; SSE = 0 + 1 + 2 = 3.
    assert m.r2()[0, 0] == pytest.approx(1 - 3 / 2.75)
    assert m.r()[0, 0] == pytest.approx(1 / math.sqrt(2.75 * 2))
    assert m.rmse()[0, 0] == pytest.approx(math.sqrt(3 / 4))
    assert m.bias()[0, 0] == pytest.approx((0 + 1 - 2) / 4)


def test_constant_prediction_has_no_correlation_and_weights_matter():
    """y = (1, 3), p = (2, 2), weights (1, 3): ȳ = 2.5, SST = 3, SSE = 4, bias = −0.5."""
    m = skill.Moments(1, 1)
    m.update(_fields([1, 3]), _fields([2, 2]), np.array([[[1.0, 3.0]]]))
    assert m.r2()[0, 0] == pytest.approx(-1 / 3)
    assert m.bias()[0, 0] == pytest.approx(-0.5)
    assert m.rmse()[0, 0] == pytest.approx(1.0)
    assert np.isnan(m.r()[0, 0])


def test_pooled_differs_from_per_step_mean_and_both_match_numpy():
    """Two steps with different means: pooled R² sees the between-step variance, the per-step
    mean does not; each equals a direct NumPy computation."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, 3, 4, 2)) + np.array([0.0, 5.0]).reshape(2, 1, 1, 1)
    p = y + rng.normal(size=y.shape) * 0.5
    area = get_grid("tiny").area[:3, :4]
    pooled, per_step = skill.Moments(1, 2), skill.PerStepMean(1, 2)
    for n in range(2):  # two updates: pooling is over every update
        pooled.update(y[n : n + 1], p[n : n + 1], area[None])
        per_step.update(y[n : n + 1], p[n : n + 1], area[None])

    def r2(yy, pp):  # (..., H, W) of one level, weighted by area
        w = np.broadcast_to(area, yy.shape)
        mean = (w * yy).sum() / w.sum()
        return 1 - (w * (yy - pp) ** 2).sum() / (w * (yy - mean) ** 2).sum()

    for k in range(2):
        assert pooled.r2()[0, k] == pytest.approx(r2(y[..., k], p[..., k]))
        steps = [r2(y[n, ..., k], p[n, ..., k]) for n in range(2)]
        assert per_step.result()["r2"][0, k] == pytest.approx(np.mean(steps))
    assert not np.allclose(pooled.r2(), per_step.result()["r2"])


def test_groups_equal_the_metric_on_their_cells_alone():
    rng = np.random.default_rng(1)
    y, p = rng.random((3, 2, 4, 1)), rng.random((3, 2, 4, 1))
    area = np.arange(1.0, 9.0).reshape(2, 4)
    mask = np.zeros((2, 4))
    mask[:, 1:3] = 1.0
    both = skill.Moments(2, 1)
    both.update(y, p, np.stack([area, area * mask]))
    alone = skill.Moments(1, 1)
    alone.update(y[:, :, 1:3], p[:, :, 1:3], area[None, :, 1:3])
    for name, value in alone.result().items():
        assert both.result()[name][1, 0] == pytest.approx(value[0, 0])


def test_log_space_burden_and_global_mass_by_hand():
    np.testing.assert_allclose(skill.log_space(np.array([0.0, 1.0])), np.log([1e-3, 1.001]))
    bcb = np.array([2.0, 4.0]).reshape(1, 1, 1, 2)  # 10⁻¹¹ kg/kg on 2 levels
    air = np.array([1000.0, 500.0]).reshape(1, 1, 1, 2)  # kg m⁻²
    assert skill.column_burden(bcb, air)[0, 0, 0] == pytest.approx(1e-11 * (2000 + 2000))
    area = np.array([[3.0]])
    assert skill.global_mass(bcb, air, area)[0] == pytest.approx(3 * 4e-8)


def test_polar_caps_weigh_their_area_in_the_metrics():
    """An error only in the polar-cap rows counts (cos(90°) weights would hide it)."""
    grid = get_grid("coarse")
    y = np.ones((1, *grid.shape, 1))
    y[0, 10:30] = 2.0  # some variance
    p = y.copy()
    p[0, [0, -1]] += 1.0  # wrong only at the poles
    m = skill.Moments(1, 1)
    m.update(y, p, grid.area[None])
    cap_share = grid.area[[0, -1]].sum() / grid.area.sum()
    assert m.bias()[0, 0] == pytest.approx(cap_share)
    assert 0 < cap_share < 1e-3


def test_regions_are_disjoint_and_hold_the_fire_regions_of_their_name():
    from bcb_emulator.reference.emissions import FIRE_REGIONS

    grid = get_grid("native")
    masks = regions.region_masks(grid)
    np.testing.assert_array_equal(masks.sum(axis=0), 1.0)
    names = regions.region_names()
    assert len(names) == 15 and names[-1] == regions.REMOTE
    for fire in FIRE_REGIONS:
        row = int(np.argmin(np.abs(grid.lat - fire.lat)))
        col = int(np.argmin(np.abs(grid.lon - fire.lon)))
        assert names[int(np.argmax(masks[:, row, col]))] == fire.name
    assert regions.season_of(58400.5) == "DJF" and regions.season_of(58581.5) == "JJA"


def test_nint_is_the_monthly_mean_and_fills_months_from_the_nearest():
    # 2010-01-10 (twice) and 2010-04-10: January mean 2, April 10.
    times = np.array([58409.5, 58409.75, 58499.5])
    clim = MonthlyClimatology.from_arrays(times, _fields([1.0, 3.0, 10.0], (3, 1, 1, 1)))
    assert clim.months_with_data == (1, 4) and clim.n_steps[:4] == (2, 0, 0, 1)
    # February is nearer January, March nearer April; July: 6 from January, 3 from April.
    assert clim.filled_from[:7] == (1, 1, 4, 4, 4, 4, 4)
    assert clim.filled_from[11] == 1  # December: next to January
    july, feb = 58581.5, 58440.5
    np.testing.assert_allclose(clim.predict(np.array([july, feb]))[:, 0, 0, 0], [10.0, 2.0])
    with pytest.raises(ValueError, match="needs training steps"):
        MonthlyClimatology.from_batches([])


def test_nint_from_the_built_dataset(tiny_dataset):
    clim = MonthlyClimatology.from_dataset(tiny_dataset, ["train"])
    frames = list(tiny_dataset.frames("train").as_numpy_iterator())
    expected = np.mean([f["bcb"] for f in frames], axis=0)  # both days are in January
    np.testing.assert_allclose(clim.mean[0], expected, rtol=1e-6)
    assert clim.months_with_data == (1,) and clim.n_steps[0] == 8


def test_persistence_is_the_truth_one_day_earlier():
    pers = Persistence(steps_per_day=4)
    times = 58400 + (np.arange(12) + 0.5) / 4  # three days
    truth = np.arange(12.0).reshape(12, 1, 1, 1)
    got = []
    for start in range(0, 12, 5):  # batches of 5 (more than a day)
        pers.observe(times[start : start + 5], truth[start : start + 5])
        got += pers.predict(times[start : start + 5])
    assert got[:4] == [None] * 4
    np.testing.assert_array_equal([g[0, 0, 0] for g in got[4:]], np.arange(8.0))


def _train_tiny(dataset, out, memory=(), transform="log", advected=()):
    """A tiny emulator trained for one epoch on the tiny dataset, into `out`."""
    from tiny import tiny_model_config, tiny_train_config

    from bcb_emulator import training

    model = tiny_model_config(dataset, emission_memory_days=memory, advected_memory_days=advected)
    config = tiny_train_config(
        dataset, out, model=model, per_level_metrics=False, target_transform=transform
    )
    training.train(config, verbose=0)
    return out


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    return _train_tiny(tiny_dataset, tmp_path_factory.mktemp("eval_run"))


def _direct_r2(dataset, model_dir, memory, transform, advected=()):
    """Pooled area-weighted R² per level of a model on the train split, computed directly."""
    from bcb_emulator.models import load_emulator

    model = load_emulator(model_dir / "model.keras", compile=False)
    windows = dataset.windows(
        "train", window=2, batch_size=8, shuffle=False, seed=0, return_metadata=True,
        emission_memory_days=memory, advected_memory_days=advected,
    )  # fmt: skip
    inputs, _, meta = next(windows.as_numpy_iterator())
    z = model.predict(inputs, verbose=0)
    pred = np.maximum(dataset.stats.denormalize_target(z, transform), 0)
    w = np.broadcast_to(dataset.spec.grid.area[None, :, :, None], pred.shape)
    y = meta["bcb"].astype(np.float64)
    mean = (w * y).sum(axis=(0, 1, 2)) / w.sum(axis=(0, 1, 2))
    sse = (w * (y - pred) ** 2).sum(axis=(0, 1, 2))
    return 1 - sse / (w * (y - mean) ** 2).sum(axis=(0, 1, 2)), pred, y, w


def test_compared_models_with_their_own_memory_and_transform(trained, tiny_dataset, tmp_path):
    """An ablation with emission memory, advected memory and a physical-space loss, beside the
    emulator: each gets its own input channels and its own inverse transform."""
    from bcb_emulator.evaluation import run_evaluation

    variant = _train_tiny(
        tiny_dataset, tmp_path / "variant", memory=(1.0,), transform="none", advected=(2.0,)
    )
    run_evaluation(trained, ["train"], tmp_path / "r", compare={"variant": str(variant)},
                   progress=False)  # fmt: skip
    models = json.loads((tmp_path / "r" / "metrics.json").read_text())["splits"]["train"]["models"]
    assert list(models) == ["emulator", "variant", "nint", "persistence"]
    for name, folder, memory, transform, advected in (
        ("emulator", trained, (), "log", ()),
        ("variant", variant, (1.0,), "none", (2.0,)),
    ):
        r2, *_ = _direct_r2(tiny_dataset, folder, memory, transform, advected)
        np.testing.assert_allclose(models[name]["r2"], r2, rtol=1e-4)


def test_evaluate_command_writes_the_report_and_consistent_metrics(trained, tiny_dataset, tmp_path):
    from bcb_emulator.cli import main

    out = tmp_path / "report"
    argv = ["evaluate", "--model", str(trained), "--split", "train", "--split", "ood_fire2021"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    report = (out / "report.md").read_text()
    for split in ("train", "ood_fire2021"):
        assert f"## {split}" in report
        for plot in ("skill", "profiles", "burden", "series"):
            assert (out / f"{split}_{plot}.png").stat().st_size > 1000
            assert f"({split}_{plot}.png)" in report
    assert "R² ≥ 0.9 at level 1 (out of period)" in report
    metrics = json.loads((out / "metrics.json").read_text())
    train = metrics["splits"]["train"]
    assert train["n_steps"] == 7  # 8 steps, T = 2
    for model in ("emulator", "nint", "persistence"):
        for key in ("r2", "r", "rmse", "bias"):
            assert len(train["models"][model][key]) == 3
    # Persistence: second-day steps whose previous-day step is a sample (step 0 is not: T = 2).
    assert train["models"]["persistence"]["n_steps"] == 3
    assert set(train["models"]["emulator"]["regions"]) == set(regions.region_names())
    # One calendar month: its monthly metrics are the pooled ones.
    assert list(train["models"]["emulator"]["months"]) == ["2010-01"]
    np.testing.assert_allclose(
        train["models"]["emulator"]["months"]["2010-01"]["r2"], train["models"]["emulator"]["r2"]
    )

    # The emulator's pooled R² and bias equal a direct computation on its predictions.
    r2, pred, y, w = _direct_r2(tiny_dataset, trained, (), "log")
    np.testing.assert_allclose(train["models"]["emulator"]["r2"], r2, rtol=1e-4)
    for k in range(3):
        bias = (w[..., k] * (pred[..., k] - y[..., k])).sum() / w[..., k].sum()
        assert train["models"]["emulator"]["bias"][k] == pytest.approx(bias, rel=1e-4, abs=1e-9)
    # NINT is the training split's own January mean (all 8 steps) on these 7 samples.
    clim = np.mean([f["bcb"] for f in tiny_dataset.frames("train").as_numpy_iterator()], axis=0)
    for k in range(3):
        bias = (w[..., k] * (clim[..., k] - y[..., k])).sum() / w[..., k].sum()
        assert train["models"]["nint"]["bias"][k] == pytest.approx(bias, rel=1e-4, abs=1e-9)


def test_evaluate_refuses_unknown_splits_and_reserved_names(trained, tmp_path):
    from bcb_emulator.evaluation import run_evaluation

    with pytest.raises(ValueError, match="`split` must be one of"):
        run_evaluation(trained, ["nope"], tmp_path / "r")
    with pytest.raises(ValueError, match="cannot be named"):
        run_evaluation(trained, ["test"], tmp_path / "r", compare={"nint": str(trained)})
    with pytest.raises(FileNotFoundError, match="model.keras"):
        run_evaluation(tmp_path, ["test"], tmp_path / "r")


def test_the_long_run_month_by_month(tmp_path):
    """Monthly skill, the daily mass ratio and the monthly trend on a hand-made two-month run."""
    from bcb_emulator.evaluation import report, skill
    from bcb_emulator.evaluation.evaluate import SplitSkill

    # 2010-01-31 and 2010-02-01, two steps a day; one cell, one level.
    times = [58430.25, 58430.75, 58431.25, 58431.75]
    truth, emulator = np.array([1.0, 3.0, 2.0, 6.0]), np.array([1.0, 3.0, 3.0, 4.0])
    assert [regions.year_month_of(t) for t in times] == ["2010-01"] * 2 + ["2010-02"] * 2
    months = {}
    for model, pred in (("emulator", emulator), ("nint", np.full(4, 3.0))):
        months[model] = {}
        for month, here in (("2010-01", slice(0, 2)), ("2010-02", slice(2, 4))):
            m = months[model][month] = skill.Moments(1, 1)
            m.update(_fields(truth[here], (2, 1, 1, 1)), _fields(pred[here], (2, 1, 1, 1)),
                     np.ones((1, 1, 1)))  # fmt: skip
    result = SplitSkill(
        split="year", models=("emulator", "nint"), pooled={}, pooled_log={}, per_step={},
        seasons={}, months=months, burden={}, n_steps={}, times=times,
        mass={"truth": list(truth * 10), "emulator": list(emulator * 10), "nint": [30.0] * 4},
        emission=[], burden_sum={}, cells=[], series={},
    )  # fmt: skip
    days, ratio = report.daily_mass_ratio(result)
    np.testing.assert_array_equal(days, [58430, 58431])
    np.testing.assert_allclose(ratio, [4 / 4, 7 / 8])
    # January: perfect (R² 1); February: R² = 1 − (1 + 4) / (4 + 4) = 0.375.
    assert months["emulator"]["2010-02"].r2()[0, 0] == pytest.approx(0.375)
    assert report.monthly_trend(result) == pytest.approx(0.375 - 1.0)
    table = report._monthly_table(result)
    assert table[2].startswith("| 2010-01 | 1 | ") and "| 1.000 (1.000–1.000) |" in table[2]
    assert table[3].startswith("| 2010-02 | 0.375 | ") and "| 0.875 (0.875–0.875) |" in table[3]
    report._plot_monthly(result, tmp_path / "monthly.png")
    assert (tmp_path / "monthly.png").stat().st_size > 1000
