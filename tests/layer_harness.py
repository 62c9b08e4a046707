"""One shared test of a Keras layer's contract, in the spirit of keras-hub's ``run_layer_test``.

`run_layer_test` builds the layer from its constructor arguments and checks, on small data:

1. Config: `get_config` holds every constructor argument; `from_config` re-creates a layer
   that, given the same weights, returns the same outputs and the same config.
2. Saving: a functional model around the layer survives ``keras.saving.save_model`` /
   ``keras.saving.load_model`` (``.keras`` format, registered class, no ``custom_objects``)
   with the same outputs.
3. Weights: the built layer has the expected numbers of trainable and non-trainable weights.
4. Shapes: a symbolic call on ``keras.Input`` and an eager call on NumPy data give the
   expected output shapes (batch axis ``None`` when symbolic), `compute_output_shape` agrees
   with the eager outputs, and the outputs are finite.
5. Training: two steps of ``fit`` (MSE against random targets), with ``jit_compile=False``
   and ``jit_compile=True``: the loss is finite and every trainable weight moves (a weight
   that stays put is not connected to the output); a layer without weights keeps its loss.
6. Mixed precision, under ``"mixed_float16"`` and ``"mixed_bfloat16"``, set globally with
   ``keras.config.set_dtype_policy`` (as ``training.train`` does) and passed as the layer's
   ``dtype`` argument: every variable stays float32, the layer and all its sub-layers compute
   in the policy's dtype, symbolic and eager outputs have that dtype (unless the constructor
   arguments fix ``dtype``, e.g. the emulator's ``Readout(dtype="float32")``: then that one's),
   and with the float32 layer's weights the outputs match the float32 outputs to the
   rounding of the compute dtype. The global policy is restored afterwards.

Call arguments are given as `call_args`, the tuple of the positional arguments of ``call``;
each is an array or a (nested) list of arrays, e.g. ``(x, [h, c])`` for `ConvLSTMCell`. Outputs
are compared after ``keras.tree.flatten``: `expected_output_shape` is one shape or a list of
shapes in that order.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
from keras import ops

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
# Tolerated difference to the float32 outputs, relative to their largest magnitude: a few
# roundings of the inputs, weights and intermediate results (float16 keeps 11 significant bits,
# bfloat16 8).
MIXED_RTOL = {"float16": 1e-2, "bfloat16": 5e-2}


def run_layer_test(
    layer_cls: type[keras.layers.Layer],
    init_kwargs: dict,
    call_args: tuple,
    expected_output_shape: tuple | list[tuple],
    expected_num_trainable_weights: int,
    expected_num_non_trainable_weights: int = 0,
    *,
    run_training: bool = True,
    run_jit: bool = True,
    run_mixed_precision: bool = True,
    seed: int = 0,
) -> keras.layers.Layer:
    """Runs the checks of this module on `layer_cls(**init_kwargs)`; returns the built layer.

    Args:
        layer_cls: the layer class; it must be registered for serialization.
        init_kwargs: constructor arguments. A ``dtype`` among them is kept under the mixed
            policies (the layer's outputs are then expected in its compute dtype).
        call_args: positional arguments of ``call``: arrays, or lists of arrays, with a
            leading batch axis.
        expected_output_shape: the shape of the output, or a list of the shapes of the
            flattened outputs, with the batch size of `call_args`.
        expected_num_trainable_weights: trainable weights of the built layer.
        expected_num_non_trainable_weights: non-trainable weights of the built layer.
        run_training: whether to run the ``fit`` check.
        run_jit: whether the ``fit`` check also runs with ``jit_compile=True`` (XLA).
        run_mixed_precision: whether to run the mixed-precision check.
        seed: seed of the random training targets.

    Returns:
        The float32 layer, built and called, for further assertions.
    """
    call_args = tuple(call_args)
    expected_shapes = _shape_list(expected_output_shape)

    # 3, 4: symbolic call, weights, eager call, compute_output_shape.
    layer = layer_cls(**init_kwargs)
    symbolic_args = _symbolic(call_args, "float32")
    symbolic_outputs = keras.tree.flatten(layer(*symbolic_args))
    assert [tuple(t.shape) for t in symbolic_outputs] == [
        (None, *shape[1:]) for shape in expected_shapes
    ], f"symbolic output shapes of {layer_cls.__name__}"
    assert [t.dtype for t in symbolic_outputs] == [layer.compute_dtype] * len(expected_shapes)
    _assert_num_weights(layer, expected_num_trainable_weights, expected_num_non_trainable_weights)
    outputs = _numpy(layer(*call_args))
    assert [o.shape for o in outputs] == expected_shapes, f"eager shapes of {layer_cls.__name__}"
    assert all(np.isfinite(o).all() for o in outputs)
    arg_shapes = keras.tree.map_structure(lambda a: tuple(a.shape), call_args)
    assert _shape_list(layer.compute_output_shape(*arg_shapes)) == expected_shapes

    # 1: config round trip.
    config = layer.get_config()
    for name, value in init_kwargs.items():
        if name != "dtype":
            assert config.get(name, KeyError) == value, f"`get_config()` lacks `{name}={value!r}`"
    clone = layer_cls.from_config(config)
    clone(*call_args)
    clone.set_weights(layer.get_weights())
    _assert_equal(_numpy(clone(*call_args)), outputs)
    assert clone.get_config() == config

    # 2: `.keras` save and load of a functional model around the layer.
    model = keras.Model(keras.tree.flatten(symbolic_args), symbolic_outputs)
    flat_args = keras.tree.flatten(call_args)
    _assert_equal(_numpy(model(flat_args)), outputs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.keras"
        keras.saving.save_model(model, path)
        restored = keras.saving.load_model(path)
    _assert_equal(_numpy(restored(flat_args)), outputs)
    (restored_layer,) = [sub for sub in restored.layers if isinstance(sub, layer_cls)]
    assert restored_layer.get_config() == config

    # 5: training steps, in a tf.function and compiled by XLA.
    if run_training:
        for jit_compile in (False, True) if run_jit else (False,):
            _check_fit(layer_cls, init_kwargs, call_args, expected_shapes, jit_compile, seed)

    # 6: mixed precision.
    if run_mixed_precision:
        for policy in MIXED_POLICIES:
            for how in ("global", "argument"):
                _check_mixed(layer, layer_cls, init_kwargs, call_args, outputs, policy, how)
    return layer


def _check_fit(layer_cls, init_kwargs, call_args, expected_shapes, jit_compile, seed):
    """Two `fit` steps (batches of one) of a functional model around a fresh layer."""
    layer = layer_cls(**init_kwargs)
    symbolic_args = _symbolic(call_args, "float32")
    model = keras.Model(
        keras.tree.flatten(symbolic_args), keras.tree.flatten(layer(*symbolic_args))
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", jit_compile=jit_compile)
    rng = np.random.default_rng(seed)
    targets = [rng.normal(size=shape).astype("float32") for shape in expected_shapes]
    before = [w.numpy() for w in layer.trainable_weights]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The model does not have any trainable weights")
        history = model.fit(
            keras.tree.flatten(call_args), targets, batch_size=1, epochs=2, shuffle=False, verbose=0
        )
    losses = history.history["loss"]
    where = f"{layer_cls.__name__} fit (jit_compile={jit_compile})"
    assert np.isfinite(losses).all(), f"{where}: loss {losses}"
    for weight, old in zip(layer.trainable_weights, before, strict=True):
        moved = not np.array_equal(weight.numpy(), old)
        assert moved, f"{where}: {weight.path} did not move"
    if not layer.trainable_weights:
        np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6, err_msg=where)


def _check_mixed(reference, layer_cls, init_kwargs, call_args, expected, policy, how):
    """The layer under the dtype `policy`, set globally or as its `dtype` argument."""
    previous = keras.config.dtype_policy()
    kwargs = dict(init_kwargs)
    if how == "global":
        keras.config.set_dtype_policy(policy)
    else:
        kwargs.setdefault("dtype", policy)
    try:
        compute = keras.DTypePolicy(policy).compute_dtype
        output_dtype = keras.DTypePolicy(kwargs.get("dtype", policy)).compute_dtype
        where = f"{layer_cls.__name__} under {policy} ({how})"
        layer = layer_cls(**kwargs)
        # Inputs in the policy's compute dtype, as the layers before it would emit them.
        symbolic = keras.tree.flatten(layer(*_symbolic(call_args, compute)))
        assert [t.dtype for t in symbolic] == [output_dtype] * len(symbolic), where
        args = keras.tree.map_structure(lambda a: ops.cast(a, compute), call_args)
        layer.set_weights(reference.get_weights())
        flat = keras.tree.flatten(layer(*args))
        dtypes = [keras.backend.standardize_dtype(t.dtype) for t in flat]
        assert dtypes == [output_dtype] * len(flat), where
        variables = {v.path: v.dtype for v in layer.weights}
        assert set(variables.values()) <= {"float32"}, f"{where}: variables {variables}"
        sublayers = {sub.name: sub.compute_dtype for sub in layer._flatten_layers()}
        assert set(sublayers.values()) == {output_dtype}, f"{where}: sub-layers {sublayers}"
        atol = MIXED_RTOL[compute]  # a float32 layer still reads rounded inputs
        for got, want in zip(_numpy(flat), expected, strict=True):
            np.testing.assert_allclose(
                got, want, atol=atol * np.abs(want).max(), rtol=0, err_msg=where
            )
    finally:
        keras.config.set_dtype_policy(previous)


def _symbolic(call_args, dtype):
    """`keras.Input`s with the structure, shapes (but for the batch) of `call_args`."""
    return keras.tree.map_structure(lambda a: keras.Input(a.shape[1:], dtype=dtype), call_args)


def _numpy(outputs):
    """The flattened outputs as float32 NumPy arrays."""
    return [np.asarray(ops.cast(t, "float32")) for t in keras.tree.flatten(outputs)]


def _assert_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def _assert_num_weights(layer, trainable, non_trainable):
    names = [w.path for w in layer.weights]
    assert len(layer.trainable_weights) == trainable, f"trainable weights: {names}"
    assert len(layer.non_trainable_weights) == non_trainable, f"non-trainable weights: {names}"


def _shape_list(shapes):
    """A shape, or a nested structure of shapes, as a flat list of tuples."""
    if all(d is None or isinstance(d, int) for d in shapes):
        return [tuple(shapes)]
    return [s for shape in shapes for s in _shape_list(shape)]
