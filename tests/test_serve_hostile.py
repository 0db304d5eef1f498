"""Hostile and unlucky clients against a real server on loopback: slow bodies and headers, too many
connections, clients that vanish mid-body, a batch that fails, a batch that hangs, and a request whose
images declare too many pixels. Each checks that ordinary requests keep being served."""

from __future__ import annotations

import io
import json
import select
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from conftest import sample_photos
from serve_helpers import HookedClassifier, metric, require_service

require_service()
httpx = pytest.importorskip("httpx")

import ipex_resnet
from ipex_resnet.serve import ServeConfig, ServerThread, create_app

PHOTOS = sample_photos()
pytestmark = pytest.mark.any_stack
MARK = 7.0  # a preprocessed tensor filled with this (far outside normalized pixel values) triggers the hook


def marked(batch) -> bool:
    return bool((np.asarray(batch).reshape(len(batch), -1).mean(1) > 5).any())


class Hook:
    """Fails or blocks batches that contain a marked tensor."""

    def __init__(self):
        self.mode = "fail"
        self.release = threading.Event()

    def __call__(self, batch):
        if not marked(batch):
            return
        if self.mode == "fail":
            raise RuntimeError("secret internal detail: tensor at 0xdeadbeef")
        assert self.release.wait(60)


class BuggyPreprocess(HookedClassifier):
    """A preprocessing bug (not an ImageError) for the input named "boom"."""

    def preprocess(self, data, *, name=None):
        if name == "boom":
            raise KeyError("secret internal key /etc/shadow")
        return self._clf.preprocess(data, name=name)


@pytest.fixture(scope="module")
def hook():
    return Hook()


@pytest.fixture(scope="module")
def server(hook):
    loader = lambda: BuggyPreprocess(
        ipex_resnet.load("resnet18", weights="none", backend="eager", precision="fp32"), hook
    )
    cfg = ServeConfig(
        max_batch=4,
        max_wait_ms=2,
        max_connections=24,
        body_timeout_s=1.0,
        header_timeout_s=1.0,
        stall_timeout_s=0.5,
        request_timeout_s=60,
        max_request_pixels=60_000_000,
    )
    with ServerThread(create_app(loader, cfg)) as srv:
        srv.wait_ready()
        yield srv


def classify(url: str, data: bytes | None = None, **kw) -> httpx.Response:
    data = PHOTOS[0].read_bytes() if data is None else data
    return httpx.post(url + "/v1/classify", content=data, headers={"content-type": "image/jpeg"}, timeout=60, **kw)


def raw_connect(srv) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=15)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything until the server closes the connection. A reset fails the test: the server closes
    with a lingering close, so even a client that was still sending reads the whole answer."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def json_body(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def post_tensor(url: str, value: float) -> httpx.Response:
    """An OIP request with one preprocessed FP32 tensor (binary tensor extension) filled with ``value``."""
    raw = torch.full((1, 3, 224, 224), value).numpy().astype("<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "tensor",
                    "datatype": "FP32",
                    "shape": [1, 3, 224, 224],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "indices", "parameters": {"binary_data": False}}],
        }
    ).encode()
    return httpx.post(
        url + "/v2/models/resnet18/infer",
        content=head + raw,
        timeout=60,
        headers={"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"},
    )


def test_slow_body_gets_408_and_others_are_served(server):
    before = httpx.get(server.url + "/metrics").text
    slow = []
    for _ in range(8):  # each declares 1 MB and trickles
        s = raw_connect(server)
        s.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 1000000\r\n\r\n\xff\xd8"
        )
        slow.append(s)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            for s in slow:
                if select.select([s], [], [], 0)[0]:
                    continue  # the server answered (408): stop sending, as a real client would
                try:
                    s.send(b"\x00")
                except OSError:
                    pass
            time.sleep(0.2)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        codes = [classify(server.url).status_code for _ in range(4)]  # while the slow ones hold connections
        answers = [read_all(s) for s in slow]
    finally:
        stop.set()
        t.join()
        for s in slow:
            s.close()
    assert codes == [200] * 4
    # each slow sender: 408 with a JSON error, then the connection closed (read_all returned)
    for raw in answers:
        assert status_of(raw) == 408, raw[:200]
        assert json_body(raw)["error"]["code"] == "body_timeout"
    after = httpx.get(server.url + "/metrics").text
    assert metric(after, "ipex_resnet_rejected_total", reason="body_timeout") - metric(
        before, "ipex_resnet_rejected_total", reason="body_timeout"
    ) == len(slow)
    assert metric(after, "ipex_resnet_requests_in_flight") == 0  # they never held a place in the queue


HEAD_TOO_LARGE = b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"


def test_declared_too_large_client_still_sending_reads_the_413(server):
    """The server answers 413 from the headers and closes while the client goes on sending its body: the
    lingering close reads and discards that body, so the client reads the answer instead of a reset.
    The reset race depends on timing: several rounds, half of them sending only after the answer is out."""
    limit = server.state.cfg.max_body_bytes
    for attempt in range(6):
        s = raw_connect(server)
        s.sendall(HEAD_TOO_LARGE % (limit + 1) + b"\xff" * 65536)
        if attempt % 2:
            assert select.select([s], [], [], 10)[0], "no answer"  # the server has answered and closed
        for _ in range(16):  # 1 MB more of the body
            s.sendall(b"\xff" * 65536)
        raw = read_all(s)
        s.close()
        assert status_of(raw) == 413, raw[:200]
        assert json_body(raw)["error"]["code"] == "body_too_large"


def test_slow_body_still_trickling_reads_the_408(server):
    timeout_s = server.state.cfg.body_timeout_s
    for _ in range(3):
        s = raw_connect(server)
        s.sendall(HEAD_TOO_LARGE % 100_000 + b"\xff\xd8")
        end = time.monotonic() + timeout_s + 0.5
        while time.monotonic() < end:  # goes on trickling after the 408 (sent at timeout_s)
            s.sendall(b"\x00")
            time.sleep(0.05)
        assert select.select([s], [], [], 0)[0], "the 408 did not arrive while the client was sending"
        raw = read_all(s)
        s.close()
        assert status_of(raw) == 408, raw[:200]
        assert json_body(raw)["error"]["code"] == "body_timeout"


def test_lingering_is_bounded_and_counts_as_open(server):
    stats, linger_s = server.state.connections, server.state.cfg.linger_timeout_s
    deadline = time.monotonic() + linger_s + 5
    while stats.open:  # earlier tests' connections are gone once the server has seen their closes
        assert time.monotonic() < deadline, f"{stats.open} connections still open"
        time.sleep(0.02)
    s = raw_connect(server)
    s.sendall(HEAD_TOO_LARGE % (server.state.cfg.max_body_bytes + 1) + b"\xff" * 65536)
    raw = read_all(s)  # the answer, then the server's FIN: it shut down its side, and lingers
    t0 = time.monotonic()
    assert status_of(raw) == 413
    assert stats.lingering == 1 and stats.open == 1  # still counts toward --max-connections
    while stats.lingering:  # this client never closes: the server closes after the bound
        assert time.monotonic() < t0 + linger_s + 5, "the lingering connection was never closed"
        time.sleep(0.02)
    assert time.monotonic() - t0 > linger_s / 2
    assert stats.open == 0
    s.close()
    # a client that keeps sending fast is cut at the byte bound, well before the time bound
    s = raw_connect(server)
    s.sendall(HEAD_TOO_LARGE % (server.state.cfg.max_body_bytes + 1))
    assert select.select([s], [], [], 10)[0], "no answer"
    t0 = time.monotonic()
    with pytest.raises(OSError):  # reset (or broken pipe) once the server stops reading
        for _ in range(1024):  # 64 MB
            s.sendall(b"\xff" * 65536)
    assert time.monotonic() - t0 < linger_s
    s.close()
    assert classify(server.url).status_code == 200


def test_slow_headers_are_cut_off(server):
    s = raw_connect(server)
    s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    raw = read_all(s)
    s.close()
    assert status_of(raw) == 408 and json_body(raw)["error"]["code"] == "header_timeout"
    idle = raw_connect(server)  # a connection that sends nothing is closed without a word
    assert read_all(idle) == b""
    idle.close()
    assert classify(server.url).status_code == 200


def test_connection_cap_answers_503(server):
    held = [raw_connect(server) for _ in range(server.state.cfg.max_connections)]
    try:
        time.sleep(0.3)  # let the server see them all
        r = httpx.get(server.url + "/healthz", timeout=15)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "too_many_connections"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 15
    while True:  # the slots free up as the server sees the closes
        r = httpx.get(server.url + "/healthz", timeout=15)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200
    assert (
        metric(httpx.get(server.url + "/metrics").text, "ipex_resnet_connections_refused_total", reason="refused") >= 1
    )


def test_client_disconnect_mid_body_is_not_a_500(server):
    before = httpx.get(server.url + "/metrics").text
    s = raw_connect(server)
    s.sendall(
        b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 200000\r\n\r\n" + b"\xff" * 5000
    )
    time.sleep(0.2)
    s.close()
    key = {"name": "ipex_resnet_requests_total", "endpoint": "/v1/classify", "status": "499"}
    deadline = time.monotonic() + 10
    while metric(httpx.get(server.url + "/metrics").text, **key) == metric(before, **key):
        assert time.monotonic() < deadline, "the disconnect was never recorded"
        time.sleep(0.05)
    after = httpx.get(server.url + "/metrics").text
    for status in ("500", "408"):
        k = {"name": "ipex_resnet_requests_total", "endpoint": "/v1/classify", "status": status}
        assert metric(after, **k) == metric(before, **k)
    assert classify(server.url).status_code == 200


def test_failing_batch_fails_only_its_requests(server, hook):
    hook.mode = "fail"
    before = httpx.get(server.url + "/metrics").text
    r = post_tensor(server.url, MARK)
    assert r.status_code == 500, r.text
    assert "secret" not in r.text and "0xdeadbeef" not in r.text and "RuntimeError" not in r.text
    assert "inference failed" in r.json()["error"]
    ok = post_tensor(server.url, 0.0)  # the same kind of request, unmarked: served
    assert ok.status_code == 200 and ok.json()["outputs"][0]["name"] == "indices"
    assert classify(server.url).status_code == 200
    assert httpx.get(server.url + "/healthz").status_code == 200
    after = httpx.get(server.url + "/metrics").text
    assert metric(after, "ipex_resnet_failed_batches_total") - metric(before, "ipex_resnet_failed_batches_total") == 1


def test_stuck_batch_turns_health_red(server, hook):
    hook.mode = "block"
    hook.release.clear()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", post_tensor(server.url, MARK)), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            h = httpx.get(server.url + "/healthz", timeout=10)
            if h.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert h.status_code == 503 and h.json()["error"]["code"] == "inference_stalled", h.text
        assert httpx.get(server.url + "/readyz", timeout=10).status_code == 503
        assert httpx.get(server.url + "/v2/health/live", timeout=10).status_code == 503
        r = classify(server.url)  # new work is refused at once while stalled, not queued behind the stuck batch
        assert r.status_code == 503 and r.json()["error"]["code"] == "inference_stalled"
    finally:
        hook.release.set()
        t.join(60)
    assert result["r"].status_code == 200  # the stuck request itself is answered once the batch finishes
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/healthz").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert classify(server.url).status_code == 200


def png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_request_pixel_budget(server):
    # each image is under the per-image cap (64 MP), together they declare 75 MP > the 60 MP request cap:
    # refused from the headers alone, before anything is decoded
    files = [("file", (f"big{i}.png", png_header(5000, 5000), "image/png")) for i in range(3)]
    r = httpx.post(server.url + "/v1/classify", files=files, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_pixels", r.text
    assert classify(server.url).status_code == 200


def encoded(fmt: str, mode: str = "RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (16, 16)).save(buf, fmt)
    return buf.getvalue()


# outside the decoder's allow-list: ICO and PCX have a refused signature, MSP has none
@pytest.mark.parametrize("fmt, mode", [("ICO", "RGB"), ("PCX", "RGB"), ("MSP", "1")])
def test_pixel_check_runs_no_parser_outside_the_allow_list(monkeypatch, fmt, mode):
    """The declared-pixel check reads the headers of untrusted uploads before anything else: only the
    allowed formats' Pillow plugins may parse them, as in the decoder."""
    from PIL import Image

    from ipex_resnet.imaging.decode import ALLOWED_FORMATS
    from ipex_resnet.serve.errors import BadImage
    from ipex_resnet.serve.limits import declared_pixels

    data = encoded(fmt, mode)
    Image.init()
    opened = []
    for name, (factory, accept) in list(Image.OPEN.items()):
        if name not in ALLOWED_FORMATS:

            def spy(fp, filename=None, _factory=factory, _name=name):
                opened.append(_name)
                return _factory(fp, filename)

            monkeypatch.setitem(Image.OPEN, name, (spy, accept))
    try:
        declared_pixels("upload", data, 64_000_000)
        refused = None
    except BadImage as exc:
        refused = exc
    assert opened == [], f"Pillow's {opened} plugin parsed the upload"
    assert refused is not None and refused.status == 400


def test_refused_format_is_named_in_the_answer(server):
    r = classify(server.url, encoded("ICO"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_image", r.text
    assert r.json()["error"]["message"].startswith("body: ICO images are not accepted (accepted: JPEG")
    r = classify(server.url, encoded("MSP", "1"))
    assert r.status_code == 400 and r.json()["error"]["code"] in ("not_an_image", "bad_image"), r.text
    assert classify(server.url).status_code == 200


def test_client_gone_while_queued_drops_its_work():
    gate = threading.Event()
    gate.set()  # open during warm-up

    loader = lambda: HookedClassifier(
        ipex_resnet.load("resnet18", weights="none", backend="eager", precision="fp32"), lambda batch: gate.wait(60)
    )
    with ServerThread(create_app(loader, ServeConfig(max_batch=1, stall_timeout_s=60))) as srv:
        srv.wait_ready()
        gate.clear()  # from now on every batch waits for the gate
        first = {}
        t = threading.Thread(target=lambda: first.setdefault("r", classify(srv.url)), daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while metric(httpx.get(srv.url + "/metrics").text, "ipex_resnet_batch_size_count") < 1:
            assert time.monotonic() < deadline, "the first request's batch never started"
            time.sleep(0.05)
        photo = PHOTOS[1].read_bytes()
        s = raw_connect(srv)
        s.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % len(photo) + photo
        )
        deadline = time.monotonic() + 20
        while metric(httpx.get(srv.url + "/metrics").text, "ipex_resnet_queue_depth") < 1:
            assert time.monotonic() < deadline, "the second request never reached the queue"
            time.sleep(0.05)
        s.close()  # while its image waits behind the blocked batch
        key = {"name": "ipex_resnet_requests_total", "endpoint": "/v1/classify", "status": "499"}
        while metric(httpx.get(srv.url + "/metrics").text, **key) < 1:
            assert time.monotonic() < deadline, "the disconnect was never noticed"
            time.sleep(0.05)
        gate.set()
        t.join(60)
        assert first["r"].status_code == 200
        m = httpx.get(srv.url + "/metrics").text
        assert metric(m, "ipex_resnet_images_total") == 1  # the departed client's image never ran
        assert metric(m, "ipex_resnet_queue_depth") == 0
        assert metric(m, "ipex_resnet_requests_total", endpoint="/v1/classify", status="500") == 0


def test_a_bug_answers_500_without_its_text(server):
    r = httpx.post(
        server.url + "/v1/classify?name=boom",
        content=PHOTOS[0].read_bytes(),
        headers={"content-type": "image/jpeg"},
        timeout=60,
    )
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert "secret" not in r.text and "shadow" not in r.text and "KeyError" not in r.text
    assert "reference" in r.json()["error"]["message"]
    assert classify(server.url).status_code == 200
