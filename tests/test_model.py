"""Tests of `build_emulator`, the layout helpers, the config, the loss and the metrics."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from bcb_emulator import grid, variables
from bcb_emulator.config import ModelConfig, Tier, TrainConfig, demo_train_config
from bcb_emulator.layers import ConvLSTMCell, ConvLSTMStack, SpatialEncoder, SphericalPadding
from bcb_emulator.losses import MseMae
from bcb_emulator.metrics import PearsonR, R2Score
from bcb_emulator.models import build_emulator, from_channels_first, to_channels_first

B, T, H, W, L, F = 2, 3, 8, 12, 3, 8
TINY = ModelConfig(
    height=H,
    width=W,
    levels=L,
    time_steps=T,
    encoder_filters=F,
    groups=4,
    sft_hidden=8,
    lstm_filters=F,
    lstm_layers=2,
)


def _inputs(batch=B, seed=0, config=TINY):
    rng = np.random.default_rng(seed)
    return {
        "x2d": rng.normal(size=(batch, T, H, W, 6)).astype("float32"),
        "x3d": rng.normal(size=(batch, T, H, W, 8 * config.levels)).astype("float32"),
    }


def test_model_io_names_and_shapes():
    model = build_emulator(TINY)
    assert sorted(model.input.keys()) == ["x2d", "x3d"]
    assert model.output_names == ["bcb"]
    assert model.input["x2d"].shape == (None, T, H, W, 6)
    assert model.input["x3d"].shape == (None, T, H, W, 8 * L)
    assert model(_inputs()).shape == (B, H, W, L)


def test_seed_default_config():
    config = ModelConfig()
    assert (config.height, config.width, config.levels) == (90, 144, 20)
    assert (config.encoder_filters, config.lstm_layers, config.lstm_filters) == (64, 3, 64)
    assert (config.lstm_kernel, config.encoder_kernel, config.encoder_blocks) == (3, 5, 2)
    assert config.fusion == "3d_conditions_2d"


@pytest.mark.parametrize(
    "overrides, layer_names, absent",
    [
        ({"fusion": "3d_conditions_2d"}, {"fusion", "encoder_3d"}, {"concat"}),
        ({"fusion": "2d_conditions_3d"}, {"fusion", "encoder_3d"}, {"concat"}),
        ({"fusion": "none"}, {"concat", "encoder_3d"}, {"fusion"}),
        ({"fusion": "none", "use_3d": False}, set(), {"encoder_3d", "fusion", "concat"}),
        ({"peepholes": "spatial", "pole_mode": "reflect"}, {"fusion"}, set()),
    ],
)
def test_variants_build_and_predict(overrides, layer_names, absent):
    config = dataclasses.replace(TINY, **overrides)
    model = build_emulator(config)
    names = {layer.name for layer in model.layers}
    assert layer_names <= names and not absent & names
    inputs = _inputs()
    if not config.use_3d:
        inputs.pop("x3d")
        assert list(model.input.keys()) == ["x2d"]
    assert model.predict(inputs, verbose=0).shape == (B, H, W, L)


def test_fusion_direction_decides_which_stream_is_modulated():
    """3D→2D modulates F=8 2D features by the 3D ones; the reverse swaps the roles."""
    for fusion, x_source, cond_source in [
        ("3d_conditions_2d", "encoder_2d", "encoder_3d"),
        ("2d_conditions_3d", "encoder_3d", "encoder_2d"),
    ]:
        model = build_emulator(dataclasses.replace(TINY, fusion=fusion))
        node = model.get_layer("fusion")._inbound_nodes[0]
        sources = [t._keras_history.operation.name for t in node.arguments.keras_tensors]
        assert sources == [x_source, cond_source]


def test_model_save_load_identical_outputs(tmp_path):
    model = build_emulator(dataclasses.replace(TINY, peepholes="channel"))
    inputs = _inputs()
    expected = model.predict(inputs, verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(restored.predict(inputs, verbose=0), expected)
    assert [w.shape for w in restored.weights] == [w.shape for w in model.weights]


def test_trained_model_loads_in_a_fresh_interpreter(tmp_path):
    """A `.keras` file compiled with the package's loss and metrics loads with
    `load_emulator` alone (nothing else imported) and predicts the same values."""
    model = build_emulator(TINY)
    metrics = [R2Score(L, name="r2"), R2Score(L, level=0, name="r2_l01"), PearsonR(L, name="r")]
    model.compile(optimizer="adam", loss=MseMae(), metrics=metrics)
    inputs = _inputs()
    model.fit(inputs, np.zeros((B, H, W, L), "float32"), epochs=1, verbose=0)
    np.save(tmp_path / "expected.npy", model.predict(inputs, verbose=0))
    np.savez(tmp_path / "inputs.npz", **inputs)
    model.save(tmp_path / "m.keras")
    script = (
        "import sys, numpy as np\n"
        "from bcb_emulator.models import load_emulator\n"
        "d = sys.argv[1]\n"
        "model = load_emulator(d + '/m.keras')\n"
        "assert type(model.loss).__name__ == 'MseMae', model.loss\n"
        "got = model.predict(dict(np.load(d + '/inputs.npz')), verbose=0)\n"
        "np.testing.assert_allclose(got, np.load(d + '/expected.npy'), rtol=1e-6, atol=1e-6)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_every_trainable_weight_gets_a_gradient():
    keras.utils.set_random_seed(1)
    model = build_emulator(dataclasses.replace(TINY, peepholes="channel"))
    inputs = _inputs()
    y = np.random.default_rng(3).normal(size=(B, H, W, L)).astype("float32")
    with tf.GradientTape() as tape:
        loss = MseMae()(y, model(inputs, training=True))
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == len(model.trainable_weights) > 20
    for weight, grad in zip(model.trainable_weights, grads, strict=True):
        assert grad is not None, weight.path
        assert float(tf.reduce_max(tf.abs(grad))) > 0.0, weight.path


def test_model_overfits_a_tiny_batch():
    keras.utils.set_random_seed(0)
    model = build_emulator(TINY)
    inputs = _inputs()
    rng = np.random.default_rng(1)
    y = rng.normal(size=(B, H, W, L)).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss=MseMae())
    first = model.evaluate(inputs, y, verbose=0)
    model.fit(inputs, y, epochs=120, batch_size=B, verbose=0)
    last = model.evaluate(inputs, y, verbose=0)
    assert last < first / 10, (first, last)


def test_channels_first_mapping_is_variable_major():
    rng = np.random.default_rng(0)
    b, t, levels, h, w = 2, 3, 4, 5, 6
    x2d_cf = rng.normal(size=(b, t, 6, 1, h, w))
    x3d_cf = rng.normal(size=(b, t, 8, levels, h, w))
    x2d, x3d = from_channels_first(x2d_cf, x3d_cf)
    assert x2d.shape == (b, t, h, w, 6)
    assert x3d.shape == (b, t, h, w, 8 * levels)
    # Channel v·L + l of the flattened X3D is variable v (registry order), level l.
    v, lev = variables.X3D.index(variables.get("q")), 2
    np.testing.assert_array_equal(x3d[1, 2, :, :, v * levels + lev], x3d_cf[1, 2, v, lev])
    np.testing.assert_array_equal(x2d[0, 1, :, :, 5], x2d_cf[0, 1, 5, 0])
    y = rng.normal(size=(b, h, w, levels))
    y_cf = to_channels_first(y)
    assert y_cf.shape == (b, 1, levels, h, w)
    np.testing.assert_array_equal(y_cf[1, 0, 3], y[1, :, :, 3])
    with pytest.raises(ValueError, match="`x2d`.*Received"):
        from_channels_first(x2d, x3d_cf)


def test_configs_round_trip_json_and_reject_bad_values(tmp_path):
    config = demo_train_config("/data", "/out")
    assert TrainConfig.from_json(config.to_json()) == config
    assert (config.model.height, config.model.width, config.model.levels) == (46, 72, 20)
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="`fusion`.*Received"):
        ModelConfig(fusion="concat")
    with pytest.raises(ValueError, match="`fusion` must be 'none'"):
        ModelConfig(use_3d=False)
    with pytest.raises(ValueError, match="no fields"):
        ModelConfig.from_dict({"filters": 3})
    with pytest.raises(ValueError, match="distinct"):
        TrainConfig("d", "c", "o", tiers=(Tier("a", "x", "y"), Tier("a", "x", "y")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 3


@pytest.mark.parametrize("row", [0, 23, 45])  # south polar cap, equator, north polar cap
def test_loss_area_weighting_uses_the_exact_cell_areas(row):
    """Each row weighs its cell area; the polar caps are real cells (cos(±90°) would drop them)."""
    g = grid.get_grid("coarse")
    y = np.zeros((1, g.jm, g.im, 1), "float32")
    pred = np.zeros_like(y)
    pred[0, row] = 2.0  # error only on one row: (4 + 2) / 2 = 3 there
    areas = g.area[:, 0]  # (H,) m², every column of a row has the same area
    expected = 3.0 * areas[row] / areas.mean() / g.jm
    loss = MseMae(areas)
    np.testing.assert_allclose(float(loss(y, pred)), expected, rtol=1e-5)
    assert float(loss(y, pred)) > 1e-3 * 3.0 / g.jm  # a cap row weighs 0.014 of a mean row, not 0
    np.testing.assert_allclose(float(MseMae()(y, pred)), 3.0 / g.jm, rtol=1e-6)
    assert MseMae.from_config(loss.get_config()).row_areas == pytest.approx(list(areas))
    with pytest.raises(ValueError, match="`row_areas` must be"):
        MseMae([1.0, 0.0])


def test_metrics_pool_over_the_whole_set_not_batches():
    """R² and r over 3 batches equal the NumPy values over all points, level by level."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 4, 5, 2)) * np.array([1.0, 10.0]) + np.array([0.0, 3.0])
    pred = y + rng.normal(size=y.shape) * np.array([0.5, 2.0])
    r2, r = R2Score(2), PearsonR(2)
    batch_r2 = []
    for i in range(3):
        sl = slice(2 * i, 2 * i + 2)
        r2.update_state(y[sl], pred[sl])
        r.update_state(y[sl], pred[sl])
        one = R2Score(2)
        one.update_state(y[sl], pred[sl])
        batch_r2.append(np.asarray(one.result_per_level()))
    flat_y, flat_p = y.reshape(-1, 2), pred.reshape(-1, 2)
    r2_ref = 1 - ((flat_y - flat_p) ** 2).sum(0) / ((flat_y - flat_y.mean(0)) ** 2).sum(0)
    r_ref = [np.corrcoef(flat_y[:, k], flat_p[:, k])[0, 1] for k in range(2)]
    np.testing.assert_allclose(r2.result_per_level(), r2_ref, rtol=1e-6)
    np.testing.assert_allclose(r.result_per_level(), r_ref, rtol=1e-6)
    np.testing.assert_allclose(float(r2.result()), r2_ref.mean(), rtol=1e-6)
    assert not np.allclose(np.mean(batch_r2, axis=0), r2_ref, rtol=1e-4)
    np.testing.assert_allclose(r2.r_per_level(), r_ref, rtol=1e-6)  # r from R²'s moments
    r2.reset_state()
    assert float(np.asarray(r2.sum_w).sum()) == 0.0


@pytest.mark.parametrize(
    "make_layer, shape",
    [
        (lambda: SphericalPadding(1, 1, "fold"), (None, 8, 11, 3)),
        (lambda: SpatialEncoder(8, groups=4, conv="direct"), (None, 2, 8, 11, 3)),
        (lambda: SpatialEncoder(8, groups=4, conv="winograd"), (None, 2, 8, 11, 3)),
        (lambda: ConvLSTMCell(4, gate_conv="fused"), (None, 8, 11, 3)),
        (lambda: ConvLSTMCell(4, gate_conv="winograd"), (None, 8, 11, 3)),
        (lambda: ConvLSTMStack(4, num_layers=2, gate_conv="winograd"), (None, 2, 8, 11, 3)),
    ],
)
def test_fold_needs_an_even_width_at_every_layer_build(make_layer, shape):
    """An odd W with `pole_mode='fold'` fails at build on every path, Winograd included."""
    with pytest.raises(ValueError, match="W must be even for `pole_mode='fold'`"):
        make_layer().build(shape)


def test_fold_needs_an_even_width_in_the_config():
    with pytest.raises(ValueError, match="`width` must be even for `pole_mode='fold'`"):
        ModelConfig(height=8, width=11)
    assert ModelConfig(height=8, width=11, pole_mode="reflect").width == 11


def test_emission_memory_and_target_transform_round_trip_and_are_checked(tmp_path):
    model = ModelConfig(
        height=8, width=12, levels=3, emission_memory_days=(1.0, 3), advected_memory_days=(2.0,)
    )
    assert model.x2d_channels == 9
    config = TrainConfig("d", "c", "o", model=model, target_transform="none")
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config  # tuples survive JSON lists
    with pytest.raises(ValueError, match="`emission_memory_days` must be a tuple of positive"):
        ModelConfig(emission_memory_days=(1.0, -2.0))
    with pytest.raises(ValueError, match="`advected_memory_days` must be a tuple of positive"):
        ModelConfig(advected_memory_days=(0.0,))
    with pytest.raises(TypeError, match="`advected_memory_days` of ModelConfig must be a tuple"):
        ModelConfig(advected_memory_days=[1.0])
    with pytest.raises(ValueError, match="`target_transform` must be one of"):
        TrainConfig("d", "c", "o", target_transform="sqrt")
    small = dict(time_steps=2, encoder_filters=8, lstm_filters=8, sft_hidden=8, groups=4)
    emulator = build_emulator(dataclasses.replace(model, **small))
    assert emulator.input["x2d"].shape == (None, 2, 8, 12, 9)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"area_weighted": "false"}, "area_weighted"),  # a truthy string is not true
        ({"batch_size": "8"}, "batch_size"),
        ({"batch_size": 8.0}, "batch_size"),
        ({"learning_rate": "fast"}, None),  # not a TrainConfig field: refused by name
        ({"tiers": {"pretrain": {}}}, "tiers"),
        ({"tiers": [{"name": "a", "train_split": "x", "val_split": "y", "epochs": 1.5}]}, "epochs"),
        (
            {
                "tiers": [
                    {"name": "a", "train_split": "x", "val_split": "y", "learning_rate": "fast"}
                ]
            },
            "learning_rate",
        ),  # fmt: skip
        ({"steps_per_epoch": -1}, "steps_per_epoch"),
        ({"steps_per_epoch": 0}, "steps_per_epoch"),
        ({"validation_steps": 0}, "validation_steps"),
        ({"warmup_fraction": -0.5}, "warmup_fraction"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
        ({"weight_decay": -1e-4}, "weight_decay"),
        ({"jit_compile": 1}, "jit_compile"),
        ({"model": {"lstm_layers": "3"}}, "lstm_layers"),
        ({"model": {"use_3d": "no"}}, "use_3d"),
        ({"model": {"encoder_kernel": 0}}, "encoder_kernel"),
        ({"model": [1, 2]}, "ModelConfig"),
    ],
)
def test_train_config_files_are_checked_field_by_field(tmp_path, bad, field):
    """Wrong types and out-of-range numbers fail naming the file and the field (no coercion)."""
    from bcb_emulator.cli import main

    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data_dir": "d", "builder_config": "c", "out_dir": "o", **bad}))
    with pytest.raises(ValueError, match=f"{path}.*`{field or 'TrainConfig'}"):
        TrainConfig.load(path)
    assert main(["train", "--config", str(path)]) == 2  # a clear error, not a traceback


def test_a_config_file_must_be_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="`TrainConfig` must be a JSON object.*Received: list"):
        TrainConfig.load(path)


def test_mse_loss_is_minimized_by_the_mean_and_mse_mae_below_it():
    """The MSE alone (`TrainConfig.loss="mse"`) equals the area-weighted mean squared error and
    its best constant is the mean; with the MAE half the best constant of a skewed sample
    (most cells clean, one plume) lies below the mean: the low bias of the paper's loss."""
    g = grid.get_grid("coarse")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(2, g.jm, g.im, 3)).astype("float32")
    pred = rng.normal(size=y.shape).astype("float32")
    areas = g.area[:, 0]
    w = (areas / areas.mean())[None, :, None, None]
    expected = np.mean(np.mean(w * (y - pred) ** 2, axis=(1, 2, 3)))
    loss = MseMae(areas, mae=False)
    assert loss.name == "mse" and MseMae().name == "mse_mae"
    np.testing.assert_allclose(float(loss(y, pred)), expected, rtol=1e-5)
    assert MseMae.from_config(loss.get_config()).mae is False
    skewed = np.zeros((1, 4, 4, 1), "float32")
    skewed[0, 0, 0] = 16.0  # one plume in 16 cells: mean 1, median 0
    constants = np.linspace(0.0, 2.0, 201)
    # d/dc of the 16 cells' sum: MSE 2(16c − 16) → c = 1; with MAE 16c − 9 → c = 9/16
    for mae, best in ((False, 1.0), (True, 9 / 16)):
        values = [float(MseMae(mae=mae)(skewed, np.full_like(skewed, c))) for c in constants]
        assert constants[int(np.argmin(values))] == pytest.approx(best, abs=0.011)


def test_train_config_loss_is_a_checked_choice_that_compiles(tmp_path):
    from bcb_emulator.training import compile_emulator

    with pytest.raises(ValueError, match="`loss` must be one of"):
        TrainConfig("d", "c", "o", loss="mae")
    assert TrainConfig("d", "c", "o").loss == "mse_mae"  # the reference paper's
    model_config = ModelConfig(
        height=8, width=12, levels=3, time_steps=2, encoder_filters=8, lstm_filters=8,
        sft_hidden=8, groups=4, lstm_layers=1,
    )  # fmt: skip
    config = TrainConfig("d", "c", "o", model=model_config, loss="mse")
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json").loss == "mse"
    model = build_emulator(model_config)
    compile_emulator(model, config, config.tiers[0], steps=1)
    assert model.loss.name == "mse" and model.loss.mae is False
