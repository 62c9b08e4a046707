"""Client of the emulator served by TF Serving: requests built from arrays, responses decoded.

The exported SavedModel (`bcb_emulator.export`, ``docs/serving.md``) has three signatures;
every input and output is a float32 array in physical units with a leading batch axis:

===================  ===========================  =================
signature            inputs                       outputs
===================  ===========================  =================
``serving_default``  ``x2d``, ``x3d``             ``bcb``
``init_state``       ``x2d``, ``x3d``             ``state``
``step``             ``x2d``, ``x3d``, ``state``  ``bcb``, ``state``
===================  ===========================  =================

REST (port 8501): `rest_request` builds the JSON body of
``POST /v1/models/<name>[/versions/<n>]:predict`` (`rest_url`), in the columnar (``"inputs"``)
or row (``"instances"``) format; `decode_rest_response` turns the ``"outputs"`` or
``"predictions"`` back into arrays; `rest_predict` posts it (standard library only).

gRPC (port 8500): `grpc_request` builds a ``tensorflow.serving.PredictRequest`` (tensors by
`tf.make_tensor_proto`); `decode_grpc_response` reads a ``PredictResponse`` (`tf.make_ndarray`);
`grpc_predict` calls ``PredictionService/Predict``. gRPC sends the float32 bytes as they are:
use it for real grids (a 2°×2.5°, T = 4 window is 34 MB as float32, several times that as
JSON text).

Both builders cast floating arrays to float32 (netCDF and numpy often give float64) and refuse
other dtypes; given the export's contract (``assets.extra/export.json``), they also check the
names and shapes before anything is sent (`check_inputs`). The server checks them again, and
the values (finite, physical ranges), at the signature.

Example:

>>> import numpy as np
>>> body = rest_request({"x2d": np.zeros((1, 2, 1, 1, 6)), "x3d": np.ones((1, 2, 1, 1, 8))})
>>> sorted(body), body["signature_name"], np.shape(body["inputs"]["x3d"])
(['inputs', 'signature_name'], 'serving_default', (1, 2, 1, 1, 8))
>>> decode_rest_response({"outputs": [[[[0.5]]]]})["bcb"].shape
(1, 1, 1, 1)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Output names of each signature, in the order of the SavedModel's signature.
SIGNATURE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "serving_default": ("bcb",),
    "init_state": ("state",),
    "step": ("bcb", "state"),
}
REST_PORT = 8501
GRPC_PORT = 8500
LAYOUTS = ("columnar", "row")


class ServingError(RuntimeError):
    """TF Serving refused a request; the message is the server's (e.g. the signature's check
    of a NaN or out-of-range input)."""


def _outputs_of(signature_name: str) -> tuple[str, ...]:
    if signature_name not in SIGNATURE_OUTPUTS:
        raise ValueError(
            f"`signature_name` must be one of {sorted(SIGNATURE_OUTPUTS)}. "
            f"Received: signature_name={signature_name!r}"
        )
    return SIGNATURE_OUTPUTS[signature_name]


def as_float32(inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of `inputs` as float32; floating arrays are cast, others refused."""
    out = {}
    for name, value in inputs.items():
        array = np.asarray(value)
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(
                f"Input `{name}` must hold floating-point values (physical units, sent as "
                f"float32). Received: dtype={array.dtype}"
            )
        out[name] = np.ascontiguousarray(array, np.float32)
    return out


def check_inputs(
    inputs: Mapping[str, np.ndarray], contract: Mapping[str, Any], signature_name: str
) -> None:
    """Checks names and shapes of `inputs` against an export's contract (``export.json``).

    Raises:
        ValueError: naming the input, with the shape the signature takes.
    """
    signatures = contract["signatures"]
    if signature_name not in signatures:
        raise ValueError(
            f"`signature_name` must be one of {sorted(signatures)} of model "
            f"{contract.get('name')!r}. Received: signature_name={signature_name!r}"
        )
    specs = signatures[signature_name]["inputs"]
    if set(inputs) != set(specs):
        raise ValueError(
            f"Signature {signature_name!r} takes inputs {sorted(specs)}. Received: {sorted(inputs)}"
        )
    batch = {}
    for name, spec in specs.items():
        shape, want = np.shape(inputs[name]), spec["shape"]
        fits = len(shape) == len(want) and all(
            w is None or w == s for s, w in zip(shape, want, strict=True)
        )
        if not fits:
            pretty = "(" + ", ".join("B" if w is None else str(w) for w in want) + ")"
            raise ValueError(
                f"Input `{name}` of signature {signature_name!r} must have shape {pretty}. "
                f"Received: shape={shape}"
            )
        batch[name] = shape[0]
    if len(set(batch.values())) > 1:
        raise ValueError(f"All inputs must have the same batch size. Received: {batch}")


def _prepare(inputs, contract, signature_name) -> dict[str, np.ndarray]:
    _outputs_of(signature_name)
    arrays = as_float32(inputs)
    if contract is not None:
        check_inputs(arrays, contract, signature_name)
    return arrays


# --------------------------------------------------------------------------------------------
# REST.


def rest_url(host: str, model_name: str, version: int | None = None, port: int = REST_PORT) -> str:
    """``http://<host>:<port>/v1/models/<model_name>[/versions/<version>]:predict``."""
    path = f"/v1/models/{model_name}" + (f"/versions/{int(version)}" if version else "")
    return f"http://{host}:{port}{path}:predict"


def rest_request(
    inputs: Mapping[str, Any],
    signature_name: str = "serving_default",
    layout: str = "columnar",
    contract: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body (a dict; ``json.dumps`` it) of a REST ``:predict`` request.

    Args:
        inputs: arrays by input name, each with the batch axis first.
        signature_name: ``"serving_default"``, ``"init_state"`` or ``"step"``.
        layout: ``"columnar"``: ``{"signature_name", "inputs": {name: nested list}}``;
            ``"row"``: ``{"signature_name", "instances": [{name: nested list}, …]}``, one
            object per batch element.
        contract: an export's ``export.json``, to check names and shapes first.
    """
    arrays = _prepare(inputs, contract, signature_name)
    if layout == "columnar":
        return {
            "signature_name": signature_name,
            "inputs": {k: v.tolist() for k, v in arrays.items()},
        }
    if layout == "row":
        batch = {v.shape[0] for v in arrays.values()}
        if len(batch) != 1:
            raise ValueError(
                "All inputs must have the same batch size for `layout='row'`. "
                f"Received: { ({k: v.shape[0] for k, v in arrays.items()}) }"
            )
        instances = [{k: v[i].tolist() for k, v in arrays.items()} for i in range(batch.pop())]
        return {"signature_name": signature_name, "instances": instances}
    raise ValueError(f"`layout` must be one of {LAYOUTS}. Received: layout={layout!r}")


def decode_rest_response(
    body: Mapping[str, Any] | str | bytes, signature_name: str = "serving_default"
) -> dict[str, np.ndarray]:
    """The float32 arrays of a REST ``:predict`` response, by output name.

    TF Serving answers the columnar format with ``{"outputs": …}`` and the row format with
    ``{"predictions": […]}``; a signature with one output gives its value without the name,
    one with several an object per name (columnar) or per batch element (row).

    Raises:
        ServingError: the body is TF Serving's ``{"error": …}``.
    """
    if isinstance(body, str | bytes):
        body = json.loads(body)
    names = _outputs_of(signature_name)
    if "error" in body:
        raise ServingError(str(body["error"]))
    if "outputs" in body:
        outputs = body["outputs"]
        if len(names) == 1 and not isinstance(outputs, Mapping):
            return {names[0]: np.asarray(outputs, np.float32)}
        return {k: np.asarray(outputs[k], np.float32) for k in _named(outputs, names)}
    if "predictions" in body:
        rows = body["predictions"]
        if len(names) == 1 and not (rows and isinstance(rows[0], Mapping)):
            return {names[0]: np.asarray(rows, np.float32)}
        return {
            k: np.asarray([row[k] for row in rows], np.float32)
            for k in _named(rows[0] if rows else {}, names)
        }
    raise ValueError(
        "A REST :predict response must hold 'outputs', 'predictions' or 'error'. "
        f"Received keys: {sorted(body)}"
    )


def _named(obj: Mapping[str, Any], names: Sequence[str]) -> Sequence[str]:
    missing = [k for k in names if k not in obj]
    if missing:
        raise ValueError(f"The response must hold outputs {list(names)}. Received: {sorted(obj)}")
    return names


def rest_predict(
    url: str,
    inputs: Mapping[str, Any],
    signature_name: str = "serving_default",
    layout: str = "columnar",
    contract: Mapping[str, Any] | None = None,
    timeout: float = 600.0,
) -> dict[str, np.ndarray]:
    """POSTs a `rest_request` to `url` (`rest_url`) and returns the decoded outputs.

    Raises:
        ServingError: with the server's message, when it refuses the request.
    """
    body = json.dumps(rest_request(inputs, signature_name, layout, contract)).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return decode_rest_response(response.read(), signature_name)
    except urllib.error.HTTPError as err:
        text = err.read().decode(errors="replace")
        try:
            message = json.loads(text).get("error", text)
        except ValueError:
            message = text
        raise ServingError(f"{url} answered HTTP {err.code}: {message}") from None


# --------------------------------------------------------------------------------------------
# gRPC.


def grpc_request(
    inputs: Mapping[str, Any],
    model_name: str,
    signature_name: str = "serving_default",
    version: int | None = None,
    contract: Mapping[str, Any] | None = None,
):
    """A ``tensorflow.serving.PredictRequest`` for `model_name` (and `version`, else the
    server's policy), the inputs as float32 ``TensorProto`` s (`tf.make_tensor_proto`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    arrays = _prepare(inputs, contract, signature_name)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=tf.float32))
    return request


def decode_grpc_response(response) -> dict[str, np.ndarray]:
    """The arrays of a ``PredictResponse``, by output name (`tf.make_ndarray`)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def grpc_predict(target: str, request, timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Sends `request` (`grpc_request`) to TF Serving at `target` (``host:8500``).

    Message sizes are unlimited on the client side (a 2°×2.5° window is tens of MB).

    Raises:
        ServingError: with the server's status and message, when it refuses the request.
    """
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as err:
            raise ServingError(f"{target} answered {err.code().name}: {err.details()}") from None
    return decode_grpc_response(response)
