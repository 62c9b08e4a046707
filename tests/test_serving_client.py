"""The TF Serving client: its REST bodies and gRPC requests, run through the exported
SavedModel's signatures by an in-process stand-in for ``tensorflow_model_server``.

No TF Serving binary can be installed here. `_Serving` does what the server does with a
request: decodes the JSON ``inputs``/``instances`` (numbers as the signature's float32) or the
``PredictRequest``'s tensor protos (`tf.make_ndarray`, keeping their dtype), calls the
signature of the loaded SavedModel, and encodes the response as TF Serving does (``outputs`` /
``predictions``, a single output without its name; ``{"error": …}`` with HTTP 400, gRPC
INVALID_ARGUMENT). It listens on loopback HTTP and gRPC ports, so the client's transport runs
too.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from serving_helpers import TIME_STEPS, tiny_export
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bcb_emulator import export, serving_client
from bcb_emulator.serving_client import ServingError

MODEL = "tiny"


class _Serving:
    """TF Serving's Predict API on a loaded SavedModel (one model, version 1)."""

    def __init__(self, loaded):
        self.loaded = loaded

    def _call(self, signature_name: str, inputs: dict):
        fn = self.loaded.signatures[signature_name or "serving_default"]
        return {k: v.numpy() for k, v in fn(**inputs).items()}

    def rest(self, path: str, body: bytes) -> tuple[int, bytes]:
        match = re.fullmatch(rf"/v1/models/{MODEL}(/versions/1)?:predict", path)
        if match is None:
            return 404, json.dumps({"error": f"Servable not found for request: {path}"}).encode()
        try:
            request = json.loads(body)
            signature = request.get("signature_name", "serving_default")
            row = "instances" in request
            if row:
                rows = request["instances"]
                inputs = {k: np.asarray([r[k] for r in rows], np.float32) for k in rows[0]}
            else:
                inputs = {k: np.asarray(v, np.float32) for k, v in request["inputs"].items()}
            outputs = self._call(signature, inputs)
        except Exception as err:  # the server answers every failure as {"error": ...}
            return 400, json.dumps({"error": str(err)}).encode()
        if row:
            if len(outputs) == 1:
                answer = {"predictions": next(iter(outputs.values())).tolist()}
            else:
                batch = len(next(iter(outputs.values())))
                rows = [{k: v[i].tolist() for k, v in outputs.items()} for i in range(batch)]
                answer = {"predictions": rows}
        elif len(outputs) == 1:
            answer = {"outputs": next(iter(outputs.values())).tolist()}
        else:
            answer = {"outputs": {k: v.tolist() for k, v in outputs.items()}}
        return 200, json.dumps(answer).encode()

    def grpc(self, request) -> predict_pb2.PredictResponse:
        if request.model_spec.name != MODEL:
            raise KeyError(f"Servable not found for request: {request.model_spec.name}")
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = self._call(request.model_spec.signature_name, inputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = MODEL
        response.model_spec.version.value = 1
        response.model_spec.signature_name = request.model_spec.signature_name
        for k, v in outputs.items():
            response.outputs[k].CopyFrom(tf.make_tensor_proto(v))
        return response


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    return export.ExportedModel.open(tiny_export(tiny_dataset, tmp_path_factory))


@pytest.fixture(scope="module")
def serving(exported):
    return _Serving(exported.load())


@pytest.fixture(scope="module")
def rest_server(serving):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, answer = serving.rest(self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def grpc_target(serving):
    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the service's name)
            try:
                return serving.grpc(request)
            except KeyError as err:
                context.abort(grpc.StatusCode.NOT_FOUND, str(err))
            except Exception as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))

    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture(scope="module")
def requests(tiny_dataset, exported):
    """Inputs of each signature from the train split (physical units), and what the loaded
    signature returns for them."""
    frames = list(tiny_dataset.frames("train").as_numpy_iterator())
    seq = {k: np.stack([f[k] for f in frames]) for k in ("x2d", "x3d")}  # (8, H, W, C)
    t = TIME_STEPS
    window = {k: np.stack([v[s : s + t] for s in (0, 3)]) for k, v in seq.items()}  # B = 2
    init = {k: v[:, : t - 1] for k, v in window.items()}
    loaded = exported.load()
    state = loaded.signatures["init_state"](**init)["state"].numpy()
    step = {**{k: v[:, t - 1] for k, v in window.items()}, "state": state}
    inputs = {"serving_default": window, "init_state": init, "step": step}
    expected = {
        name: {k: v.numpy() for k, v in loaded.signatures[name](**x).items()}
        for name, x in inputs.items()
    }
    return inputs, expected


@pytest.mark.parametrize("layout", ["columnar", "row"])
@pytest.mark.parametrize("signature", ["serving_default", "init_state", "step"])
def test_rest_requests_give_the_signature_outputs(
    requests, rest_server, exported, signature, layout
):
    inputs, expected = requests
    url = serving_client.rest_url("127.0.0.1", MODEL, version=1, port=rest_server)
    assert url.endswith(f"/v1/models/{MODEL}/versions/1:predict")
    outputs = serving_client.rest_predict(
        url, inputs[signature], signature, layout, contract=exported.contract
    )
    assert set(outputs) == set(serving_client.SIGNATURE_OUTPUTS[signature])
    for name, value in expected[signature].items():
        np.testing.assert_array_equal(outputs[name], value)  # float32 survives JSON exactly
        assert outputs[name].dtype == np.float32


def test_rest_bodies_have_tf_servings_shapes(requests):
    inputs, _ = requests
    columnar = serving_client.rest_request(inputs["step"], "step")
    assert columnar["signature_name"] == "step"
    assert np.shape(columnar["inputs"]["state"]) == (2, 2, 6, 8, 8)
    row = serving_client.rest_request(inputs["step"], "step", layout="row")
    assert len(row["instances"]) == 2  # one object per batch element, without the batch axis
    assert {k: np.shape(v) for k, v in row["instances"][1].items()} == {
        "x2d": (6, 8, 6), "x3d": (6, 8, 24), "state": (2, 6, 8, 8),
    }  # fmt: skip
    one = serving_client.decode_rest_response({"predictions": [[[[1.0]]], [[[2.0]]]]})
    assert one["bcb"].shape == (2, 1, 1, 1)
    two = serving_client.decode_rest_response(
        json.dumps({"predictions": [{"bcb": [1.0], "state": [2.0, 3.0]}]}), "step"
    )
    assert two["state"].tolist() == [[2.0, 3.0]]


@pytest.mark.parametrize("signature", ["serving_default", "step"])
def test_grpc_requests_give_the_signature_outputs(requests, grpc_target, exported, signature):
    inputs, expected = requests
    request = serving_client.grpc_request(
        inputs[signature], MODEL, signature, version=1, contract=exported.contract
    )
    assert request.model_spec.name == MODEL and request.model_spec.version.value == 1
    assert request.model_spec.signature_name == signature
    for name, value in inputs[signature].items():
        proto = request.inputs[name]
        assert proto.dtype == tf.float32.as_datatype_enum
        assert [d.size for d in proto.tensor_shape.dim] == list(value.shape)
    outputs = serving_client.grpc_predict(grpc_target, request)
    for name, value in expected[signature].items():
        np.testing.assert_array_equal(outputs[name], value)


def test_float64_arrays_are_sent_as_float32(requests, grpc_target):
    inputs, expected = requests
    doubles = {k: v.astype(np.float64) for k, v in inputs["serving_default"].items()}
    request = serving_client.grpc_request(doubles, MODEL)
    assert request.inputs["x3d"].dtype == tf.float32.as_datatype_enum
    outputs = serving_client.grpc_predict(grpc_target, request)
    np.testing.assert_array_equal(outputs["bcb"], expected["serving_default"]["bcb"])


def test_the_servers_refusals_reach_the_caller(requests, rest_server, grpc_target):
    inputs, _ = requests
    bad = {k: v.copy() for k, v in inputs["serving_default"].items()}
    bad["x2d"][..., 5] = -1.0  # a negative emission
    url = serving_client.rest_url("127.0.0.1", MODEL, port=rest_server)
    with pytest.raises(ServingError, match=r"(?s)HTTP 400: .*BCB_biomass_src .* must be >= 0"):
        serving_client.rest_predict(url, bad)
    with pytest.raises(ServingError, match=r"(?s)INVALID_ARGUMENT: .*BCB_biomass_src"):
        serving_client.grpc_predict(grpc_target, serving_client.grpc_request(bad, MODEL))
    # A request the client did not build: double tensors, refused at the signature.
    request = serving_client.grpc_request(inputs["serving_default"], MODEL)
    request.inputs["x2d"].CopyFrom(tf.make_tensor_proto(bad["x2d"].astype(np.float64)))
    with pytest.raises(ServingError, match="expected to be a float tensor but is a double"):
        serving_client.grpc_predict(grpc_target, request)
    with pytest.raises(ServingError, match="NOT_FOUND"):
        serving_client.grpc_predict(
            grpc_target, serving_client.grpc_request(inputs["serving_default"], "other")
        )


def test_the_client_checks_names_shapes_and_dtypes_before_sending(requests, exported):
    inputs, _ = requests
    window, contract = inputs["serving_default"], exported.contract
    with pytest.raises(ValueError, match=r"takes inputs \['x2d', 'x3d'\]. Received: \['x2d'\]"):
        serving_client.rest_request({"x2d": window["x2d"]}, contract=contract)
    with pytest.raises(ValueError, match=r"`x3d` .* must have shape \(B, 3, 6, 8, 24\)"):
        serving_client.grpc_request(
            {**window, "x3d": window["x3d"][:, :, :, :, :3]}, MODEL, contract=contract
        )
    with pytest.raises(ValueError, match="same batch size"):
        serving_client.rest_request({**window, "x3d": window["x3d"][:1]}, contract=contract)
    with pytest.raises(ValueError, match="Input `x2d` must hold floating-point values"):
        serving_client.rest_request({**window, "x2d": window["x2d"].astype(np.int32)})
    with pytest.raises(ValueError, match="`signature_name` must be one of"):
        serving_client.rest_request(window, "predict")
    with pytest.raises(ServingError, match="Servable not found"):
        serving_client.decode_rest_response({"error": "Servable not found for request: x"})
