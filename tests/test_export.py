"""The SavedModel export: physical units, equivalence with the Keras model, the coupling step,
the checks at the signature, the version folders and the model card."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import ADVECTED_DAYS, MEMORY_DAYS, TIME_STEPS, tiny_export, tiny_model_dir

from bcb_emulator import export, predict
from bcb_emulator.cli import main
from bcb_emulator.models import load_emulator


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    return export.ExportedModel.open(tiny_export(tiny_dataset, tmp_path_factory))


@pytest.fixture(scope="module")
def loaded(exported):
    return exported.load()


@pytest.fixture(scope="module")
def keras_model(exported):
    return load_emulator(exported.path / export.ASSETS_EXTRA / export.MODEL_FILE, compile=False)


@pytest.fixture(scope="module")
def sequence(tiny_dataset):
    """The 8 steps of the train split (two days), physical units: ``(1, 8, H, W, C)``."""
    frames = list(tiny_dataset.frames("train").as_numpy_iterator())
    return {k: np.stack([f[k] for f in frames])[None] for k in ("x2d", "x3d")}


@pytest.fixture(scope="module")
def windows(sequence):
    """Every window of T steps of `sequence`, batched: ``(6, T, H, W, C)``."""
    n = sequence["x2d"].shape[1]
    return {
        k: np.concatenate([v[:, s : s + TIME_STEPS] for s in range(n - TIME_STEPS + 1)])
        for k, v in sequence.items()
    }


def test_served_bcb_is_the_keras_model_in_physical_units(exported, loaded, keras_model, windows):
    stats = exported.stats
    served = loaded.signatures["serving_default"](**windows)["bcb"].numpy()
    assert served.shape == (6, 6, 8, 3) and served.dtype == np.float32
    # The Keras model on the normalized windows, denormalized by the package's statistics.
    normalized = {
        "x2d": stats.normalize_x2d(windows["x2d"]),
        "x3d": stats.normalize_x3d(windows["x3d"]),
    }
    z = keras_model.predict(normalized, verbose=0)
    expected = np.maximum(stats.denormalize_target(z), 0.0)
    assert export.relative_error(served, expected, stats.log_offset) < 1e-5
    # Physical units: BCB = exp(z·σ + μ) − offset per level, not the normalized output.
    level = 2
    by_hand = np.exp(z[..., level] * stats.y_log_std[level] + stats.y_log_mean[level])
    np.testing.assert_allclose(served[..., level], by_hand - stats.log_offset, rtol=1e-5)
    assert not np.allclose(served, z, rtol=0.1)
    assert (served >= 0).all()


def test_saved_model_cli_runs_the_export_without_the_package(
    exported, keras_model, windows, tmp_path
):
    """``saved_model_cli`` (a separate process that never imports bcb_emulator) gives the Keras
    model's BCB, and lists the graph tensor names the contract gives a C API host."""
    cli = Path(sys.executable).parent / "saved_model_cli"
    for name, array in windows.items():
        np.save(tmp_path / f"{name}.npy", array)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    common = ["--dir", str(exported.path), "--tag_set", "serve"]
    subprocess.run(
        [str(cli), "run", *common, "--signature_def", "serving_default", "--outdir",
         str(tmp_path / "out"), "--inputs", f"x2d={tmp_path}/x2d.npy;x3d={tmp_path}/x3d.npy"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    served = np.load(tmp_path / "out" / "bcb.npy")
    expected = export.keras_reference(keras_model, exported.stats, windows)
    assert export.relative_error(served, expected, exported.stats.log_offset) < 1e-5
    shown = subprocess.run(
        [str(cli), "show", *common, "--signature_def", "step"],
        check=True, capture_output=True, text=True, env=env,
    ).stdout  # fmt: skip
    step = exported.contract["signatures"]["step"]
    for side in ("inputs", "outputs"):
        for key, tensor in step[side].items():
            assert f"name: {tensor['tensor']}" in shown, (key, shown)
    assert "(-1, 2, 6, 8, 8)" in shown  # the state: T − 1 = 2 steps of 8 fused features


def test_coupling_step_reproduces_the_windowed_prediction(exported, loaded, sequence):
    window_fn, init_fn, step_fn = (loaded.signatures[s] for s in export.SIGNATURES)
    t, n = TIME_STEPS, sequence["x2d"].shape[1]
    state = init_fn(**{k: v[:, : t - 1] for k, v in sequence.items()})["state"]
    assert state.shape == (1, t - 1, 6, 8, 8)
    for k in range(t - 1, n):  # the step at k completes the window [k − T + 1, k]
        out = step_fn(**{name: v[:, k] for name, v in sequence.items()}, state=state)
        window = window_fn(**{name: v[:, k - t + 1 : k + 1] for name, v in sequence.items()})
        error = export.relative_error(out["bcb"], window["bcb"], exported.stats.log_offset)
        assert error < 1e-5, (k, error)
        state = out["state"]
        # The state is the encoded context: the last T − 1 steps, as init_state encodes them.
        fresh = init_fn(**{name: v[:, k - t + 2 : k + 1] for name, v in sequence.items()})
        np.testing.assert_allclose(state, fresh["state"], rtol=1e-5, atol=1e-6)


def _bad(windows, name, index, value):
    bad = {k: v.copy() for k, v in windows.items()}
    bad[name][(0, 0, 1, 2, index)] = value
    return bad


@pytest.mark.parametrize(
    "case, match",
    [
        ("nan", r"Input `x2d` must be finite \(no NaN or Inf\); non-finite values in: shflx"),
        ("inf", r"Input `x3d` must be finite .*: q level 2 \(kg/kg\)"),
        ("negative emission", r"`x2d` is out of .*BCB_biomass_src .* must be >= 0; found min -1"),
        ("percent", r"landfr \(1\) must be in \[0, 1\]; found min 0 max 50"),
        ("celsius", r"t level 1 \(K\) must be > 0; found min -"),
    ],
)
def test_bad_values_fail_at_the_signature_naming_the_variable(loaded, windows, case, match):
    fn = loaded.signatures["serving_default"]
    inputs = {
        "nan": lambda: _bad(windows, "x2d", 3, np.nan),
        "inf": lambda: _bad(windows, "x3d", 6 * 3 + 1, np.inf),
        "negative emission": lambda: _bad(windows, "x2d", 5, -1.0),
        "percent": lambda: {**windows, "x2d": _set(windows["x2d"], 1, 50.0)},
        "celsius": lambda: {**windows, "x3d": _shift(windows["x3d"], 4, -273.15)},
    }[case]()
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        fn(**inputs)


def _set(x, channel, value):
    x = x.copy()
    x[0, :, :, :, channel] = value
    return x


def _shift(x, variable, offset):
    x = x.copy()
    x[..., variable * 3 : (variable + 1) * 3] += offset
    return x


def test_negative_fluxes_and_winds_are_weather_not_errors(loaded, windows):
    x2d, x3d = windows["x2d"].copy(), windows["x3d"].copy()
    x2d[..., 3:5] = -np.abs(x2d[..., 3:5]) - 1  # upward heat fluxes
    x3d[..., :9] = -np.abs(x3d[..., :9])  # u, v, ω
    assert np.isfinite(loaded.signatures["serving_default"](x2d=x2d, x3d=x3d)["bcb"]).all()


def test_the_step_signature_checks_its_inputs_and_state(loaded, sequence):
    init_fn, step_fn = loaded.signatures["init_state"], loaded.signatures["step"]
    state = init_fn(**{k: v[:, :2] for k, v in sequence.items()})["state"].numpy()
    new = {k: v[:, 2] for k, v in sequence.items()}
    bad_state = state.copy()
    bad_state[0, 1, 2, 3, 4] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="Input `state` must be finite"):
        step_fn(**new, state=bad_state)
    bad = new["x3d"].copy()
    bad[..., 3 * 3] = 0.0  # p_3d level 1
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"p_3d level 1 \(hPa\) must be > 0"):
        step_fn(x2d=new["x2d"], x3d=bad, state=state)
    with pytest.raises(TypeError, match=r"shape=\(None, 2, 6, 8, 8\)"):
        step_fn(**new, state=state[:, :1])  # a state of another window length


def test_names_shapes_and_dtypes_are_enforced_by_the_signature(loaded, windows):
    fn = loaded.signatures["serving_default"]
    with pytest.raises(TypeError, match="missing a required argument: 'x3d'"):
        fn(x2d=windows["x2d"], x3=windows["x3d"])
    with pytest.raises(TypeError, match=r"shape=\(None, 3, 6, 8, 6\)"):
        fn(x2d=windows["x2d"][:, :2], x3d=windows["x3d"])  # T = 2
    with pytest.raises(TypeError, match=r"shape=\(None, 3, 6, 8, 24\)"):
        fn(x2d=windows["x2d"], x3d=windows["x3d"][..., :16])  # 8·L channels of another L
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a float tensor"):
        fn(x2d=tf.constant(windows["x2d"], tf.float64), x3d=tf.constant(windows["x3d"]))


def test_the_version_folder_holds_what_serving_and_a_reader_need(exported):
    path = exported.path
    assert path.name == "1" and (path / "saved_model.pb").is_file()
    assert (path / "variables").is_dir()
    extra = {p.name for p in (path / export.ASSETS_EXTRA).iterdir()}
    assert extra == {
        "model.keras", "train_config.json", "normalization.json", "dataset_spec.json",
        "export.json", "model_card.md",
    }  # fmt: skip
    signatures = exported.contract["signatures"]
    assert signatures["serving_default"]["inputs"]["x3d"]["shape"] == [None, 3, 6, 8, 24]
    assert signatures["step"]["outputs"]["state"]["shape"] == [None, 2, 6, 8, 8]
    contract = exported.contract
    assert contract["verification"]["window_vs_keras"] < 1e-5
    assert contract["verification"]["step_vs_window"] < 1e-5
    card = (path / export.ASSETS_EXTRA / "model_card.md").read_text()
    assert "No evaluation report" in card
    assert "| `train` | 2010-01-01 | 2010-01-02 | 8 | training (tier `finetune`)" in card
    assert "| `test` | 2010-01-04 | 2010-01-04 | 4 | held out (not seen in training) |" in card
    assert "| 5 | `BCB_biomass_src`" in card
    assert "| `step` | `state` | (None, 2, 6, 8, 8) | `step_state:0` |" in card


def test_export_command_numbers_versions_and_reads_the_evaluation(tiny_dataset, tmp_path, capsys):
    model_dir = tiny_model_dir(tiny_dataset, tmp_path / "training")
    evaluation = tmp_path / "evaluation"  # the demo's layout: beside the training folder
    evaluation.mkdir()
    report = {
        "model": str(model_dir),
        "splits": {"test": {"models": {
            "emulator": {"r2": [0.81, 0.5, None], "rmse": [1.25, 1, 1], "bias": [-0.125, 0, 0],
                         "burden": {"r2": 0.75}},
            "nint": {"r2": [0.25, 0.25, 0.25], "rmse": [3, 3, 3], "bias": [1, 1, 1]},
        }}},
    }  # fmt: skip
    (evaluation / "metrics.json").write_text(json.dumps(report))
    root = tmp_path / "saved_models"
    (root / "m" / "notes").mkdir(parents=True)  # not an integer: not a version
    args = ["export", "--model", str(model_dir), "--name", "m", "--out", str(root)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"exported {root / 'm' / '1'}" in out
    assert "step: x2d (B, 6, 8, 6), x3d (B, 6, 8, 24), state (B, 2, 6, 8, 8) -> " in out
    card = (root / "m" / "1" / export.ASSETS_EXTRA / "model_card.md").read_text()
    assert "| `test` | `emulator` | 0.81 | 0.655 | 1.25 | -0.125 | 0.75 |" in card
    assert "| `test` | `nint` | 0.25 | 0.25 | 3 | 1 | n/a |" in card
    assert (root / "m" / "1" / export.ASSETS_EXTRA / "metrics.json").is_file()

    assert main([*args, "--no-verify"]) == 0  # the next free version
    assert export.existing_versions(root / "m") == [1, 2]
    assert main([*args, "--version", "2", "--no-verify"]) == 2
    assert "`version` 2 of" in capsys.readouterr().err
    assert sorted(p.name for p in (root / "m").iterdir()) == ["1", "2", "notes"]


def test_a_failed_export_leaves_no_version_folder(tiny_dataset, tmp_path, monkeypatch):
    model_dir = tiny_model_dir(tiny_dataset, tmp_path / "run")

    def broken(path, **kwargs):
        return export.ExportCheck(window_vs_keras=0.5, step_vs_window=0.0, steps=1)

    monkeypatch.setattr(export, "check_export", broken)
    with pytest.raises(ValueError, match="does not reproduce the Keras model"):
        export.export_model(model_dir, "m", tmp_path / "out", dataset=tiny_dataset)
    assert list((tmp_path / "out" / "m").iterdir()) == []  # no version, no temporary folder


def test_export_refuses_a_model_of_another_grid_or_a_bad_name(tiny_dataset, tmp_path):
    model_dir = tiny_model_dir(tiny_dataset, tmp_path / "run", levels=5)
    with pytest.raises(ValueError, match=r"\(height, width, levels\) must be those of dataset "):
        export.export_model(model_dir, "m", tmp_path / "out", dataset=tiny_dataset)
    with pytest.raises(ValueError, match="`name` must be letters"):
        export.export_model(model_dir, "my model", tmp_path / "out", dataset=tiny_dataset)
    with pytest.raises(ValueError, match="`model` must be a training out_dir"):
        export.export_model(tmp_path, "m", tmp_path / "out", dataset=tiny_dataset)


def test_find_metrics_takes_only_a_report_of_this_model(tmp_path):
    model_dir = tmp_path / "training"
    model_dir.mkdir()
    assert export.find_metrics(model_dir) is None
    other = tmp_path / "evaluation" / "metrics.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"model": str(tmp_path / "another_run")}))
    assert export.find_metrics(model_dir) is None
    other.write_text(json.dumps({"model": str(model_dir)}))
    assert export.find_metrics(model_dir) == other
    (model_dir / "metrics.json").write_text("{}")
    assert export.find_metrics(model_dir) == model_dir / "metrics.json"


def _advected(x2d, x3d, times, spec):
    """The advected memory channels of consecutive physical steps (the loop reference)."""
    from advection_reference import advected_memory

    lev = spec.n_levels
    u, v = x3d[..., :lev].mean(axis=-1), x3d[..., lev : 2 * lev].mean(axis=-1)
    return advected_memory(x2d[..., 5], u, v, times, ADVECTED_DAYS, spec.grid).astype(np.float32)


def test_emission_memory_and_a_physical_target_are_served_as_trained(
    tiny_dataset, tmp_path_factory
):
    """A model with an emission-memory channel and an advected one, its target normalized in
    physical space: the signature takes the memories in the emission's units and gives what
    the Keras model gives on the training pipeline's windows."""
    exported = export.ExportedModel.open(tiny_export(tiny_dataset, tmp_path_factory, "memory"))
    assert exported.target_transform == "none"
    contract = exported.contract
    assert contract["x2d_channels"][6]["name"] == "BCB_biomass_src memory 0.5 d"
    assert contract["x2d_channels"][7]["name"] == "BCB_biomass_src advected memory 1 d"
    assert contract["signatures"]["serving_default"]["inputs"]["x2d"]["shape"][-1] == 8
    # What the model trained on: the pipeline's normalized windows with the memory.
    pipeline, _ = next(iter(tiny_dataset.windows(
        "train", window=TIME_STEPS, batch_size=16, shuffle=False, seed=0,
        emission_memory_days=MEMORY_DAYS, advected_memory_days=ADVECTED_DAYS,
    )))  # fmt: skip
    # The contract: physical inputs, the memory kept in the emission's units by the caller.
    frames = list(tiny_dataset.frames("train").as_numpy_iterator())
    x2d = np.stack([f["x2d"] for f in frames])  # (8, H, W, 6)
    times = np.array([f["time"] for f in frames])
    memory, _, _ = predict.emission_memory(x2d[..., 5], times, MEMORY_DAYS)
    x3d = np.stack([f["x3d"] for f in frames])
    advected = _advected(x2d, x3d, times, tiny_dataset.spec)
    seq = {"x2d": np.concatenate([x2d, memory, advected], axis=-1), "x3d": x3d}
    physical = {k: np.stack([v[s : s + TIME_STEPS] for s in range(6)]) for k, v in seq.items()}
    mean, std = export.x2d_moments(exported.stats, exported.model_config)
    np.testing.assert_allclose((physical["x2d"] - mean) / std, pipeline["x2d"], atol=1e-5)
    served = exported.load().signatures["serving_default"](**physical)["bcb"].numpy()
    model = load_emulator(exported.path / export.ASSETS_EXTRA / export.MODEL_FILE, compile=False)
    z = model.predict({k: v.numpy() for k, v in pipeline.items()}, verbose=0)
    expected = np.maximum(exported.stats.denormalize_target(z, "none"), 0.0)
    assert export.relative_error(served, expected, exported.stats.log_offset) < 1e-5


@pytest.mark.parametrize(
    "overrides",
    [{"time_steps": 1}, {"use_3d": False, "fusion": "none"}, {"fusion": "none"}],
    ids=["T=1", "no 3D branch", "concatenation"],
)
def test_other_architectures_export_with_the_same_guarantees(tiny_dataset, tmp_path, overrides):
    """No context (T = 1: an empty state), no ``x3d`` input, 2·F concatenated features."""
    import keras

    from bcb_emulator.config import ModelConfig
    from bcb_emulator.models import build_emulator

    height, width = tiny_dataset.spec.grid.shape
    settings = dict(height=height, width=width, levels=3, time_steps=2, encoder_filters=8,
                    groups=4, sft_hidden=8, lstm_filters=8, lstm_layers=1)  # fmt: skip
    config = ModelConfig(**{**settings, **overrides})
    keras.utils.set_random_seed(0)
    model = build_emulator(config)
    stats = tiny_dataset.stats
    loaded = tf.saved_model.load(str(export.write_saved_model(model, stats, config, tmp_path)))
    names = ["x2d", "x3d"] if config.use_3d else ["x2d"]
    assert set(loaded.signatures["serving_default"].structured_input_signature[1]) == set(names)
    t = config.time_steps
    seq = export.random_inputs(stats, config, 2, t + 2)
    state = loaded.signatures["init_state"](**{k: seq[k][:, : t - 1] for k in names})["state"]
    assert state.shape == (2, t - 1, height, width, export.model_features(config))
    for end in range(t, t + 3):
        window = {k: seq[k][:, end - t : end] for k in names}
        served = loaded.signatures["serving_default"](**window)["bcb"]
        expected = export.keras_reference(model, stats, window)
        assert export.relative_error(served, expected, stats.log_offset) < 1e-5
        out = loaded.signatures["step"](**{k: seq[k][:, end - 1] for k in names}, state=state)
        assert export.relative_error(out["bcb"], served, stats.log_offset) < 1e-5
        state = out["state"]


def test_error_floor_follows_the_target_transform(tiny_dataset):
    """A physical-space model's output is ``z · std + mean``: near zero it carries the float32
    rounding of the terms (≈ 60 here), which is no error at the field's scale; the log-space
    floor (10⁻³) would call it one. In log space the floor stays the offset."""
    stats = dataclasses.replace(tiny_dataset.stats, y_mean=np.full(3, 60.0), y_std=np.full(3, 50.0))
    expected = np.full((1, 1, 1, 3), 0.01)  # 10⁻¹¹ kg/kg, remote air
    actual = expected + np.spacing(np.float32(60.0))  # one float32 step of the terms
    floor = export.error_floor(stats, "none")
    np.testing.assert_array_equal(floor, 50.0)
    assert export.relative_error(actual, expected, floor) < 1e-5
    assert export.relative_error(actual, expected, stats.log_offset) > export.TOLERANCE
    assert export.error_floor(stats, "log") == stats.log_offset
