"""The Open Inference Protocol (KServe v2) through tritonclient's real HTTP client, on loopback: health,
metadata, and inference from encoded images (BYTES) and preprocessed tensors (FP32), binary and JSON."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from conftest import sample_photos
from serve_helpers import require_service

require_service()
httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException

import ipex_resnet
from ipex_resnet.serve import ServeConfig, ServerThread, create_app

PHOTOS = sample_photos()[:3]
pytestmark = pytest.mark.any_stack


@pytest.fixture(scope="module")
def server(checkpoint):
    def loader():
        return ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager", precision="fp32")

    with ServerThread(create_app(loader, ServeConfig(max_batch=4, max_wait_ms=2))) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def client(server):
    c = httpclient.InferenceServerClient(f"{server.host}:{server.port}", connection_timeout=60, network_timeout=60)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(server):
    return server.state.clf.predict([p.read_bytes() for p in PHOTOS], topk=3)


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("resnet18") and client.is_model_ready("resnet18", "1")
    meta = client.get_model_metadata("resnet18")
    assert meta["name"] == "resnet18" and meta["versions"] == ["1"]
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {"image": "BYTES", "tensor": "FP32"}
    assert {o["name"] for o in meta["outputs"]} == {"labels", "scores", "indices"}
    assert client.get_server_metadata()["name"] == "ipex-resnet"
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.get_model_metadata("resnet50")
    assert not client.is_model_ready("resnet50")


@pytest.mark.parametrize("binary", [True, False])
def test_infer_encoded_images(client, reference, binary):
    images = np.array([p.read_bytes() for p in PHOTOS], dtype=np.object_)
    inp = httpclient.InferInput("image", [len(PHOTOS)], "BYTES")
    if binary:
        inp.set_data_from_numpy(images, binary_data=True)
    else:  # JSON: BYTES elements as base64 strings
        inp.set_data_from_numpy(
            np.array([base64.b64encode(b).decode() for b in images], dtype=np.object_), binary_data=False
        )
    outs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("labels", "scores", "indices")]
    res = client.infer("resnet18", [inp], outputs=outs, parameters={"topk": 3}, request_id="req-1")
    assert res.get_response()["id"] == "req-1"
    indices, scores, labels = res.as_numpy("indices"), res.as_numpy("scores"), res.as_numpy("labels")
    assert indices.shape == scores.shape == labels.shape == (len(PHOTOS), 3)
    for i, want in enumerate(reference):
        assert indices[i].tolist() == [w["index"] for w in want]
        assert np.allclose(scores[i], [w["score"] for w in want], atol=1e-4)
        assert [x.decode() if isinstance(x, bytes) else x for x in labels[i]] == [w["label"] for w in want]


def test_infer_preprocessed_tensor_and_classification(server, client, reference):
    clf = server.state.clf
    batch = np.stack([np.asarray(clf.preprocess(p)) for p in PHOTOS]).astype(np.float32)
    inp = httpclient.InferInput("tensor", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    res = client.infer("resnet18", [inp], outputs=[httpclient.InferRequestedOutput("labels", class_count=2)])
    got = res.as_numpy("labels")  # Triton's classification extension: "score:index:label"
    assert got.shape == (len(PHOTOS), 2)
    for row, want in zip(got, reference):
        assert [int(x.decode().split(":")[1]) for x in row] == [w["index"] for w in want[:2]]


def test_bad_requests_are_clear(client):
    wrong = httpclient.InferInput("tensor", [1, 3, 8, 8], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 3, 224, 224\]") as e:
        client.infer("resnet18", [wrong])
    assert e.value.status() == "400"
    junk = httpclient.InferInput("image", [1], "BYTES")
    junk.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="not an image"):
        client.infer("resnet18", [junk])
    other = httpclient.InferInput("pixels", [1], "BYTES")
    other.set_data_from_numpy(np.array([b"x"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="unknown input 'pixels'"):
        client.infer("resnet18", [other])
