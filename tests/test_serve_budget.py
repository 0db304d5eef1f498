"""The worker's body budget (``--max-buffered-bytes``) on a real server on loopback: slow uploads are
admitted up to the budget, the next one gets 503 + Retry-After, and every way a request ends (closed by
its client, 408, refused part-way through a chunked body, answered) gives its bytes back."""

from __future__ import annotations

import json
import socket
import time

import pytest
from conftest import sample_photos
from serve_helpers import metric, require_service

require_service()
httpx = pytest.importorskip("httpx")

import ipex_resnet
from ipex_resnet.serve import ServeConfig, ServerThread, create_app

PHOTOS = sample_photos()
pytestmark = pytest.mark.any_stack

BODY = 1_000_000  # --max-body-bytes
BUDGET = 3 * BODY  # --max-buffered-bytes: three bodies of the largest size at once


@pytest.fixture(scope="module")
def server():
    loader = lambda: ipex_resnet.load("resnet18", weights="none", backend="eager", precision="fp32")
    cfg = ServeConfig(
        max_batch=4, max_wait_ms=2, max_body_bytes=BODY, max_buffered_bytes=BUDGET, body_timeout_s=6.0, retry_after_s=2
    )
    with ServerThread(create_app(loader, cfg)) as srv:
        srv.wait_ready()
        yield srv


def start_upload(srv, size: int, path: str = "/v1/classify", chunked: bool = False) -> socket.socket:
    """Headers and the first bytes of a body that then stops arriving (a slow client)."""
    s = socket.create_connection((srv.host, srv.port), timeout=15)
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % size
    s.sendall(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n%s\r\n\r\n" % (path.encode(), length)
        + (b"" if chunked else b"\xff\xd8")
    )
    return s


def read_answer(s: socket.socket) -> bytes:
    """Everything until the server closes; a reset fails the test (the answer must not be lost)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def split(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, json.loads(body)


def buffered(srv) -> float:
    return metric(httpx.get(srv.url + "/metrics", timeout=15).text, "ipex_resnet_buffered_body_bytes")


def wait_buffered(srv, want: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := buffered(srv)) != want:
        assert time.monotonic() < deadline, f"{got:.0f} body bytes held, expected {want}"
        time.sleep(0.05)


def classify_photo(srv) -> httpx.Response:
    return httpx.post(
        srv.url + "/v1/classify", content=PHOTOS[0].read_bytes(), headers={"content-type": "image/jpeg"}, timeout=60
    )


def test_budget_admits_up_to_its_size_then_503_and_is_whole_again(server):
    before = httpx.get(server.url + "/metrics").text
    slow = [start_upload(server, BODY) for _ in range(3)]
    try:
        wait_buffered(server, 3 * BODY)  # all three declared bodies are reserved: the budget is full
        extra = start_upload(server, BODY)
        status, headers, body = split(read_answer(extra))
        extra.close()
        assert status == 503 and body["error"]["code"] == "body_budget", body
        assert headers["retry-after"] == "2" and headers["connection"] == "close"
        small = start_upload(server, 10)  # even a small body does not fit now
        status, _, body = split(read_answer(small))
        small.close()
        assert status == 503 and body["error"]["code"] == "body_budget"
        oip = start_upload(server, 1000, path="/v2/models/resnet18/infer")  # one budget for /v1 and /v2
        status, headers, body = split(read_answer(oip))
        oip.close()
        assert status == 503 and "retry-after" in headers and "retry" in body["error"]
        assert buffered(server) == 3 * BODY  # the refusals took nothing
        slow[0].close()  # a client that leaves gives its bytes back
        wait_buffered(server, 2 * BODY)
        r = classify_photo(server)
        assert r.status_code == 200, r.text
        assert buffered(server) == 2 * BODY  # so does an answered request
        # the other two reach the body timeout: 408, and their bytes come back too
        for s in slow[1:]:
            status, _, body = split(read_answer(s))
            assert status == 408 and body["error"]["code"] == "body_timeout"
        wait_buffered(server, 0)
    finally:
        for s in slow:
            s.close()
    assert classify_photo(server).status_code == 200
    after = httpx.get(server.url + "/metrics").text
    assert (
        metric(after, "ipex_resnet_rejected_total", reason="body_budget")
        - metric(before, "ipex_resnet_rejected_total", reason="body_budget")
        == 3
    )
    assert metric(after, "ipex_resnet_requests_in_flight") == 0


def test_chunked_body_reserves_as_it_arrives_and_gives_back_when_refused(server):
    held = [start_upload(server, BODY), start_upload(server, BODY), start_upload(server, 600_000)]
    try:
        wait_buffered(server, 2 * BODY + 600_000)
        s = start_upload(server, 0, chunked=True)
        chunk = b"\xff" * 100_000
        for _ in range(9):  # 900 KB, under --max-body-bytes, over the 400 KB the budget has left
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, headers, body = split(read_answer(s))  # refused part-way, while the client was sending
        s.close()
        assert status == 503 and body["error"]["code"] == "body_budget", body
        assert headers["connection"] == "close"
        assert buffered(server) == 2 * BODY + 600_000  # the chunks it had taken are back
    finally:
        for h in held:
            h.close()
    wait_buffered(server, 0)
    assert classify_photo(server).status_code == 200


def test_budget_must_hold_the_largest_body():
    with pytest.raises(ValueError, match=r"--max-buffered-bytes \(1000\) must be at least --max-body-bytes"):
        ServeConfig(max_body_bytes=2000, max_buffered_bytes=1000)
    assert ServeConfig(max_body_bytes=2000, max_buffered_bytes=2000).max_buffered_bytes == 2000
    assert ServeConfig().max_buffered_bytes >= ServeConfig().max_body_bytes
