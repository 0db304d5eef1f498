"""The HTTP service on a real uvicorn server (loopback, free port): correctness, batching, overload,
bad input, readiness and metrics. Real photos come from ../shared/data/imagenet-samples."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SAMPLES, sample_photos
from serve_helpers import HookedClassifier, families, metric, require_service

require_service()
httpx = pytest.importorskip("httpx")

import ipex_resnet
from ipex_resnet.serve import ServeConfig, ServerThread, create_app

PHOTOS = sample_photos()

BACKEND = "eager"  # fast to prepare on both stacks; the batching path is the same for every backend


@pytest.fixture(scope="module")
def calibrated_weights(tmp_path_factory) -> Path:
    """Random ResNet-18 with BatchNorm statistics calibrated on real photos and a sharpened head, so that
    different photos get clearly different top-5 lists and scores (a mix-up across a batch would show)."""
    from torchvision.models import get_model

    torch.manual_seed(0)
    model = get_model("resnet18", weights=None)
    pre = ipex_resnet.load(model, weights=None, backend="eager", precision="fp32").preprocessor
    x = torch.stack([torch.from_numpy(pre(p)) for p in PHOTOS[-16:]])
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(x)
        model.fc.weight.mul_(8.0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-bn-calibrated.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def server(calibrated_weights):
    loader = lambda: ipex_resnet.load("resnet18", weights=str(calibrated_weights), backend=BACKEND, precision="fp32")
    cfg = ServeConfig(
        max_batch=8, max_wait_ms=20, max_queue=64, max_body_bytes=2_000_000, request_timeout_s=120, p99_ms=2000
    )  # a target that lets batches of 8 form on any machine: grouping is tested
    with ServerThread(create_app(loader, cfg)) as srv:
        srv.wait_ready()
        yield srv


@pytest.fixture(scope="module")
def photo_bytes() -> list[bytes]:
    return [p.read_bytes() for p in PHOTOS[:24]]


@pytest.fixture(scope="module")
def reference(server, photo_bytes) -> list[list[dict]]:
    """Classifier.predict on each photo alone, through the very classifier the server uses."""
    return [server.state.clf.predict([data], topk=5)[0] for data in photo_bytes]


def post_image(url: str, data: bytes, topk: int | None = None, ctype: str = "image/jpeg", client=httpx, **kw):
    q = f"?topk={topk}" if topk is not None else ""
    return client.post(url + "/v1/classify" + q, content=data, headers={"content-type": ctype}, timeout=120, **kw)


def same_top(got: list[dict], want: list[dict]) -> bool:
    return (
        [g["index"] for g in got] == [w["index"] for w in want]
        and all(abs(g["score"] - w["score"]) < 1e-3 for g, w in zip(got, want))
        and [g["label"] for g in got] == [w["label"] for w in want]
    )


# -- correctness ------------------------------------------------------------------------------------
def test_outputs_are_distinct(reference):
    # the test model must tell photos apart, or the mix-up test below would prove nothing
    assert len({tuple(r["index"] for r in top) for top in reference}) >= len(reference) * 3 // 4
    assert len({round(top[0]["score"], 4) for top in reference}) == len(reference)


def test_classify_matches_predict(server, photo_bytes, reference):
    for data, want in zip(photo_bytes[:6], reference[:6]):
        r = post_image(server.url, data)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["model"] == "resnet18" and doc["backend"] == BACKEND and doc["precision"] == "fp32"
        assert len(doc["results"]) == 1
        top = doc["results"][0]["top"]
        assert len(top) == 5 and set(top[0]) == {"label", "index", "score"}
        assert same_top(top, want), (top, want)


def test_topk_and_octet_stream(server, photo_bytes, reference):
    r = post_image(server.url, photo_bytes[0], topk=2, ctype="application/octet-stream")
    assert r.status_code == 200
    assert same_top(r.json()["results"][0]["top"], reference[0][:2])
    assert len(r.json()["results"][0]["top"]) == 2


def test_multipart_several_files(server, photo_bytes, reference):
    files = [("file", (f"img{i}.jpg", photo_bytes[i], "image/jpeg")) for i in (3, 1, 2)]
    r = httpx.post(server.url + "/v1/classify?topk=3", files=files, timeout=120)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["input"] for x in res] == ["img3.jpg", "img1.jpg", "img2.jpg"]
    for x, i in zip(res, (3, 1, 2)):
        assert same_top(x["top"], reference[i][:3])


def test_concurrent_clients_get_their_own_results(server, photo_bytes, reference):
    before = httpx.get(server.url + "/metrics").text
    jobs = [i % len(photo_bytes) for i in range(64)]

    def one(i):
        return i, post_image(server.url, photo_bytes[i])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, jobs))
    for i, r in answers:
        assert r.status_code == 200, r.text
        assert same_top(r.json()["results"][0]["top"], reference[i]), f"photo {i} got another photo's result"
    after = httpx.get(server.url + "/metrics").text
    batches = metric(after, "ipex_resnet_batch_size_count") - metric(before, "ipex_resnet_batch_size_count")
    images = metric(after, "ipex_resnet_batch_size_sum") - metric(before, "ipex_resnet_batch_size_sum")
    assert images == len(jobs)
    assert batches < len(jobs), "requests were never grouped into a batch"


# -- bad input ----------------------------------------------------------------------------------------
def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "case, body, ctype, status, code",
    [
        ("empty body", b"", "image/jpeg", 400, "empty_body"),
        ("not an image", b"this is plain text, not a JPEG" * 10, "image/jpeg", 400, "not_an_image"),
        ("truncated jpeg", None, "image/jpeg", 400, ("truncated_image", "bad_image")),
        ("decompression bomb", png_bomb(), "image/png", 400, "image_too_large"),
        ("unsupported type", b'{"image": "..."}', "application/json", 415, "unsupported_media_type"),
        ("form urlencoded", b"a=b", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_bad_input(server, photo_bytes, case, body, ctype, status, code):
    if body is None:
        body = photo_bytes[0][: len(photo_bytes[0]) // 3]
    r = post_image(server.url, body, ctype=ctype)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    codes = code if isinstance(code, tuple) else (code,)  # the decoder's typed code, where it gives one
    assert err["code"] in codes and err["status"] == status and err["message"], err
    # and the service keeps serving others
    assert post_image(server.url, photo_bytes[1]).status_code == 200


def test_bad_image_in_multipart_names_the_file(server, photo_bytes):
    files = [("file", ("good.jpg", photo_bytes[0], "image/jpeg")), ("file", ("bad.jpg", b"nope", "image/jpeg"))]
    r = httpx.post(server.url + "/v1/classify", files=files, timeout=60)
    assert r.status_code == 400
    assert "bad.jpg" in r.json()["error"]["message"]
    r = httpx.post(
        server.url + "/v1/classify",
        data={"field": "x"},
        files={},
        timeout=60,
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert r.status_code == 400


@pytest.mark.parametrize("topk", ["0", "-3", "abc", "2.5", "1001", ""])
def test_bad_topk(server, photo_bytes, topk):
    r = httpx.post(
        server.url + f"/v1/classify?topk={topk}",
        content=photo_bytes[0],
        headers={"content-type": "image/jpeg"},
        timeout=60,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "bad_topk" and "topk" in r.json()["error"]["message"]


def test_oversized_upload_declared(server):
    """Refused from the declared Content-Length alone. The client sends its whole 3 MB body before it
    reads (as httpx does): the server's lingering close discards it, so the client gets the answer."""
    r = post_image(server.url, b"\xff" * 3_000_000)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


def test_oversized_upload_streamed(server, photo_bytes):
    sent = {"bytes": 0}
    total = 400 * 65536  # 26 MB offered; the server's limit is 2 MB

    def body():  # chunked, no Content-Length: the limit must hold while streaming
        for _ in range(400):
            sent["bytes"] += 65536
            yield b"\xff" * 65536

    before = httpx.get(server.url + "/metrics").text
    try:
        r = httpx.post(server.url + "/v1/classify", content=body(), headers={"content-type": "image/jpeg"}, timeout=60)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        # httpx reads only once it has sent everything; past the lingering close's byte bound the server
        # stops reading and closes, and the reset may take the answer with it (see the 3 MB case below)
        r = None
    if r is not None:
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "body_too_large"
    after = httpx.get(server.url + "/metrics").text
    assert (
        metric(after, "ipex_resnet_requests_total", status="413")
        - metric(before, "ipex_resnet_requests_total", status="413")
        == 1
    )
    # the server answered and closed once past the limit: the client could not push the whole body
    # (what it did push is the 2 MB limit plus what the loopback socket buffers hold)
    assert sent["bytes"] < total // 2, f"the client sent {sent['bytes']} of {total} bytes"
    # 1 MB over the limit, within what the lingering close discards: the client reads the 413
    r = httpx.post(
        server.url + "/v1/classify",
        content=iter([b"\xff" * 65536] * 48),
        headers={"content-type": "image/jpeg"},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    assert post_image(server.url, photo_bytes[0]).status_code == 200


def test_unknown_route_and_method(server):
    assert httpx.get(server.url + "/v1/classify").status_code == 405
    assert httpx.get(server.url + "/nope").status_code == 404


# -- metrics ------------------------------------------------------------------------------------------
def test_metrics_reflect_traffic(server, photo_bytes):
    before = httpx.get(server.url + "/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    b = before.text
    for data in photo_bytes[:3]:
        assert post_image(server.url, data).status_code == 200
    assert post_image(server.url, b"junk").status_code == 400
    a = httpx.get(server.url + "/metrics").text
    ok = {"name": "ipex_resnet_requests_total", "endpoint": "/v1/classify", "status": "200"}
    assert metric(a, **ok) - metric(b, **ok) == 3
    bad = {"name": "ipex_resnet_requests_total", "endpoint": "/v1/classify", "status": "400"}
    assert metric(a, **bad) - metric(b, **bad) == 1
    assert metric(a, "ipex_resnet_images_total") - metric(b, "ipex_resnet_images_total") == 3
    lat = {"name": "ipex_resnet_request_duration_seconds_count", "endpoint": "/v1/classify"}
    assert metric(a, **lat) - metric(b, **lat) == 4
    assert metric(a, "ipex_resnet_queue_wait_seconds_count") - metric(b, "ipex_resnet_queue_wait_seconds_count") == 3
    assert metric(a, "ipex_resnet_batch_size_count") > metric(b, "ipex_resnet_batch_size_count")
    assert metric(a, "ipex_resnet_queue_depth") == 0
    assert metric(a, "ipex_resnet_ready") == 1
    assert metric(a, "ipex_resnet_model_info", model="resnet18", backend=BACKEND, precision="fp32") == 1
    fams = families(a)
    for name in ("ipex_resnet_request_duration_seconds", "ipex_resnet_queue_wait_seconds", "ipex_resnet_batch_size"):
        assert fams[name].type == "histogram"
        inf = [s for s in fams[name].samples if s.name == name + "_bucket" and s.labels["le"] == "+Inf"]
        counts = [s for s in fams[name].samples if s.name == name + "_count"]
        assert inf and len(inf) == len(counts), name
        for i, c in zip(inf, counts):  # the +Inf bucket holds every observation
            assert i.value == c.value > 0, (name, i, c)
    # process metrics from prometheus_client's collectors
    assert metric(a, "process_resident_memory_bytes") > 10e6
    assert metric(a, "process_cpu_seconds_total") > 0


def test_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "v1/classify" in r.text and 'type="file"' in r.text


# -- readiness ----------------------------------------------------------------------------------------
def test_readiness_before_and_after_warmup():
    gate = threading.Event()

    def slow_loader():
        assert gate.wait(60)
        return ipex_resnet.load("resnet18", weights="none", backend=BACKEND, precision="fp32")

    with ServerThread(create_app(slow_loader, ServeConfig(max_batch=4, p99_ms=5000))) as srv:
        assert httpx.get(srv.url + "/healthz").status_code == 200
        r = httpx.get(srv.url + "/readyz")
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["code"] == "not_ready"
        r = post_image(srv.url, PHOTOS[0].read_bytes())
        assert r.status_code == 503 and "retry-after" in r.headers
        gate.set()
        srv.wait_ready()
        r = httpx.get(srv.url + "/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["backend"] == BACKEND
        assert post_image(srv.url, PHOTOS[0].read_bytes()).status_code == 200


def test_load_failure_is_reported():
    def broken():
        raise ipex_resnet.WeightsError("no such checkpoint: /nowhere.pt")

    with ServerThread(create_app(broken)) as srv:
        deadline = time.monotonic() + 10
        while srv.state.load_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        r = httpx.get(srv.url + "/healthz")  # a model that cannot load cannot make progress: red
        assert r.status_code == 503 and r.json()["error"]["code"] == "load_failed"
        r = httpx.get(srv.url + "/readyz")
        assert r.status_code == 503 and "nowhere.pt" in r.json()["error"]["message"]


# -- overload -----------------------------------------------------------------------------------------
def test_overload_sheds_with_503_and_recovers(calibrated_weights, photo_bytes):
    def slow_loader():  # make the model slow so the queue fills
        clf = ipex_resnet.load("resnet18", weights=str(calibrated_weights), backend=BACKEND, precision="fp32")
        return HookedClassifier(clf, lambda batch: time.sleep(0.15))

    cfg = ServeConfig(max_batch=2, max_wait_ms=1, max_queue=4, request_timeout_s=60, p99_ms=5000)
    with ServerThread(create_app(slow_loader, cfg)) as srv:
        srv.wait_ready()
        want = [srv.state.clf.predict([d], topk=5)[0] for d in photo_bytes[:8]]

        def one(i):
            return i, post_image(srv.url, photo_bytes[i % 8])

        with concurrent.futures.ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(one, range(48)))
        codes = [r.status_code for _, r in answers]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) > 0, "the bounded queue never refused anything"
        assert codes.count(200) > 0
        for i, r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert r.json()["error"]["code"] == "overloaded"
            else:
                assert same_top(r.json()["results"][0]["top"], want[i % 8])
        m = httpx.get(srv.url + "/metrics").text
        assert metric(m, "ipex_resnet_requests_total", endpoint="/v1/classify", status="503") == codes.count(503)
        assert metric(m, "ipex_resnet_rejected_total", reason="overloaded") == codes.count(503)
        # still healthy, and serves normally once the burst is over
        assert httpx.get(srv.url + "/healthz").status_code == 200
        assert httpx.get(srv.url + "/readyz").status_code == 200
        assert post_image(srv.url, photo_bytes[0]).status_code == 200


def test_request_timeout_answers_504(photo_bytes):
    slow = threading.Event()

    def slow_loader():
        clf = ipex_resnet.load("resnet18", weights="none", backend=BACKEND, precision="fp32")
        return HookedClassifier(clf, lambda batch: slow.is_set() and time.sleep(1.5))

    with ServerThread(create_app(slow_loader, ServeConfig(max_batch=1, request_timeout_s=0.5, p99_ms=5000))) as srv:
        srv.wait_ready()
        slow.set()
        r = post_image(srv.url, photo_bytes[0])
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        slow.clear()
        time.sleep(1.6)
        assert httpx.get(srv.url + "/healthz").status_code == 200
        assert post_image(srv.url, photo_bytes[0]).status_code == 200


# -- CLI and load test --------------------------------------------------------------------------------
def test_cli_has_serve_options():
    from ipex_resnet.cli import build_parser

    args = build_parser().parse_args(
        [
            "serve",
            "--backend",
            "eager",
            "--weights",
            "none",
            "--max-batch",
            "4",
            "--max-wait-ms",
            "2",
            "--max-queue",
            "8",
            "--max-body-bytes",
            "1000",
            "--request-timeout",
            "3",
            "--port",
            "0",
        ]
    )
    assert args.max_batch == 4 and args.max_queue == 8 and args.backend == "eager" and args.port == 0


def _loadtest_module():
    path = Path(__file__).resolve().parents[1] / "tools" / "loadtest.py"
    spec = importlib.util.spec_from_file_location("loadtest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_loadtest_script_against_running_server(server, capsys):
    loadtest = _loadtest_module()

    rc = loadtest.main(
        [
            "--images",
            str(SAMPLES),
            "--num-images",
            "8",
            "--url",
            server.url,
            "--clients",
            "1,4",
            "--requests",
            "8",
            "--max-seconds",
            "30",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "| server | 1 |" in out and "| server | 4 |" in out
    assert loadtest.main(["--images", str(SAMPLES), "--url", "http://example.com"]) == 2


# -- the batcher on its own (no model, no server) -----------------------------------------------------
def test_batcher_pads_to_warmed_sizes_and_keeps_rows_apart():
    import asyncio

    from ipex_resnet.serve.batching import Batcher, QueueFull, bucket_sizes, warmup_sizes

    assert bucket_sizes(16) == [1, 2, 4, 8, 16] and bucket_sizes(12) == [1, 2, 4, 8, 12]
    assert warmup_sizes(16, pad=True) == [1, 2, 4, 8, 16] and warmup_sizes(16, pad=False) == [1, 16]
    shapes = []

    def infer(batch):  # the "logits" of image i are one-hot at the value the image carries
        shapes.append(batch.shape[0])
        out = np.zeros((batch.shape[0], 10), dtype=np.float32)
        out[np.arange(batch.shape[0]), batch[:, 0, 0, 0].astype(int)] = 10.0
        return out

    def topk(logits, k):
        return [[{"index": int(i)} for i in np.argsort(-row)[:k]] for row in logits]

    async def main():
        b = Batcher(infer, topk, max_batch=16, max_wait_s=0.05, max_queue=40, pad=True)
        b.start()
        futures = []
        for i in range(37):
            futures += b.submit([np.full((3, 2, 2), float(i % 10), dtype=np.float32)], topk=1)
        with pytest.raises(QueueFull):
            b.submit([np.zeros((3, 2, 2), dtype=np.float32)] * 4, topk=1)  # 37 + 4 > 40: all or nothing
        got = await asyncio.gather(*futures)
        await b.stop()
        return got

    got = asyncio.run(main())
    assert [g[0]["index"] for g in got] == [i % 10 for i in range(37)]
    assert set(shapes) <= {1, 2, 4, 8, 16}, shapes  # 37 = 16 + 16 + 5 -> padded to 8
