"""The opt-in result cache (issue 18): exact (SHA-256 of the bytes) and perceptual (pHash) keys, never
shared across models or precisions, bounded LRU, Prometheus counters, bad images never cached, and the
service under concurrent identical requests. A numpy "model" keeps it fast; the photos are the shared
samples, used where they are."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import struct
import threading
import zlib

import numpy as np
import pytest
from conftest import sample_photos
from PIL import Image

pytest.importorskip("imagehash")

from ipex_resnet.core.classifier import Classifier
from ipex_resnet.core.policy import Plan
from ipex_resnet.core.result_cache import DEFAULT_THRESHOLD, ResultCache, identity
from ipex_resnet.errors import ConfigError, ImageError
from ipex_resnet.imaging import Preprocessor, PresetSpec

PHOTOS = sample_photos()
pytestmark = pytest.mark.any_stack

N_CLASSES = 10


class FakeRunner:
    """Pools the batch to 3x14x14 and projects it to 10 logits (row by row: batch-independent); counts images."""

    def __init__(self, seed: int = 0):
        self.w = np.random.default_rng(seed).standard_normal((3 * 14 * 14, N_CLASSES))
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.images += len(batch)
        pooled = np.asarray(batch, dtype=np.float64).reshape(len(batch), 3, 14, 16, 14, 16).mean(axis=(3, 5))
        return (pooled.reshape(len(batch), -1) @ self.w * 20).astype(np.float32)


def make_clf(
    *, seed: int = 0, precision: str = "fp32", model: str = "fake18", entry: str | None = "entry-a", cache=None
) -> Classifier:
    plan = Plan(
        backend="onnxruntime",
        precision=precision,
        memory_format="contiguous",
        threads=1,
        native_bf16=False,
        isa_level="avx2",
        reasons={},
        model=model,
        weights="w",
    )
    clf = Classifier(
        FakeRunner(seed),
        plan,
        model_name=model,
        categories=[f"c{i}" for i in range(N_CLASSES)],
        preprocessor=Preprocessor(PresetSpec(), mode="fast"),
        cpu=None,
        artifact={"entry": f"/cache/{entry}", "hit": True, "info": {}} if entry else None,
    )
    if cache is not None:
        clf.result_cache = cache
    return clf


def reencoded(data: bytes, quality: int = 75, scale: float = 0.8) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels (a decompression bomb's header) with no real data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photo_bytes() -> list[bytes]:
    return [p.read_bytes() for p in PHOTOS[:8]]


# -- hits and misses -----------------------------------------------------------------------------------
def test_exact_hit_skips_inference_and_decoding(photo_bytes, monkeypatch):
    clf = make_clf(cache="exact")
    plain = make_clf()
    first = clf.predict(photo_bytes[:3], topk=5)
    assert clf._runner.images == 3 and clf.result_cache.stats == {"hit": 0, "miss": 3, "eviction": 0}
    assert first == plain.predict(photo_bytes[:3], topk=5)

    def no_decode(*a, **k):
        raise AssertionError("an exact hit must not decode")

    monkeypatch.setattr("ipex_resnet.imaging.preprocessor.decode", no_decode)
    again = clf.predict([photo_bytes[1], PHOTOS[0], photo_bytes[2]], topk=5)  # bytes and a path with the same bytes
    assert again == [first[1], first[0], first[2]]
    assert clf._runner.images == 3 and clf.result_cache.stats["hit"] == 3


def test_the_flow_runs_misses_and_plain_tensors_and_stores_only_misses(photo_bytes):
    """The one flow every caller uses: look up -> the caller runs what to_run picks -> store."""
    from ipex_resnet.core.result_flow import Hit, Miss, ResultFlow, to_run

    cache, clf = ResultCache("exact"), make_clf()
    flow = ResultFlow(cache, clf)
    miss = flow.look_up(photo_bytes[0], name="a", topk=3)
    plain = clf.preprocess(photo_bytes[1])  # e.g. a tensor sent preprocessed: never looked up
    assert isinstance(miss, Miss) and miss.key is not None and cache.stats["miss"] == 1
    items = [miss, plain]
    tops = clf.predict_tensors(to_run(items), topk=3)
    assert flow.store(items, tops, 3) == tops == make_clf().predict(photo_bytes[:2], topk=3)
    assert len(cache) == 1
    hit = flow.look_up(photo_bytes[0], name="a", topk=3)
    assert isinstance(hit, Hit) and hit.top == tops[0] and to_run([hit]) == []
    assert flow.store([hit], [], 3) == [tops[0]]


def test_exact_misses_a_reencoded_copy_and_perceptual_hits_it(photo_bytes):
    exact, perc = make_clf(cache="exact"), make_clf(cache="perceptual")
    copy = reencoded(photo_bytes[0])
    for clf in (exact, perc):
        clf.predict([photo_bytes[0]], topk=5)
        clf.predict([copy], topk=5)
    assert exact.result_cache.stats["hit"] == 0 and exact._runner.images == 2
    assert perc.result_cache.stats["hit"] == 1 and perc._runner.images == 1
    assert perc.predict([photo_bytes[1]], topk=5) and perc._runner.images == 2  # a different photo misses
    img = Image.open(io.BytesIO(copy))
    assert perc.predict([img])[0] == perc.predict([photo_bytes[0]])[0]  # a PIL image is keyed too (perceptual)


def test_perceptual_threshold_separates_copies_from_other_photos(photo_bytes):
    """The evidence in small (bench/result_cache_threshold.py measures all 200 photos)."""
    from ipex_resnet.core.result_cache import decode_for_hash, perceptual_hash

    def ph(d):
        return perceptual_hash(decode_for_hash(d, max_pixels=10**8, name="x"))

    hashes = [ph(d) for d in photo_bytes]
    assert all((a ^ b).bit_count() > DEFAULT_THRESHOLD for i, a in enumerate(hashes) for b in hashes[i + 1 :])
    assert all((h ^ ph(reencoded(d))).bit_count() <= DEFAULT_THRESHOLD for h, d in zip(hashes, photo_bytes))


def test_larger_topk_recomputes_smaller_is_served(photo_bytes):
    clf = make_clf(cache="exact")
    top3 = clf.predict([photo_bytes[0]], topk=3)[0]
    top5 = clf.predict([photo_bytes[0]], topk=5)[0]  # more than cached: recomputed, stored with k=5
    assert clf._runner.images == 2 and top5[:3] == top3
    assert clf.predict([photo_bytes[0]], topk=2)[0] == top5[:2] and clf._runner.images == 2
    assert clf.predict([photo_bytes[0]], topk=5)[0] == top5 and clf._runner.images == 2


def test_results_are_copies(photo_bytes):
    clf = make_clf(cache="exact")
    r = clf.predict([photo_bytes[0]])[0]
    r[0]["label"] = "tampered"
    assert clf.predict([photo_bytes[0]])[0][0]["label"] != "tampered"


# -- never shared across models -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "other",
    [
        {"precision": "bf16", "entry": "entry-b"},
        {"model": "other", "entry": "entry-c"},
        {"entry": "entry-d", "seed": 1},
        {"entry": None},
        {"entry": None, "seed": 1},
    ],
)
@pytest.mark.parametrize("mode", ["exact", "perceptual"])
def test_other_model_or_precision_never_shares_entries(photo_bytes, other, mode):
    shared = ResultCache(mode)
    a = make_clf(cache=shared)
    b = make_clf(cache=shared, **{"seed": 1, **other})
    ra = a.predict([photo_bytes[0]])[0]
    rb = b.predict([photo_bytes[0]])[0]
    assert b._runner.images == 1 and shared.stats["hit"] == 0 and len(shared) == 2
    if other.get("seed"):
        assert ra != rb
    assert a.predict([photo_bytes[0]])[0] == ra and b.predict([photo_bytes[0]])[0] == rb and shared.stats["hit"] == 2


def test_identity_covers_preprocessing_and_uncached_instances():
    a = make_clf()
    b = make_clf()
    assert identity(a) == identity(b)  # same artifact entry, same preprocessing
    b.preprocessor = b.preprocessor.with_mode("exact")
    assert identity(a) != identity(b)
    u1, u2 = make_clf(entry=None), make_clf(entry=None)  # built in memory: only the instance itself
    assert identity(u1) == identity(u1) and identity(u1) != identity(u2)
    assert identity(make_clf(precision="int8")) != identity(a)


# -- bounded --------------------------------------------------------------------------------------------
def test_eviction_at_the_entry_bound(photo_bytes):
    cache = ResultCache("exact", max_entries=3)
    clf = make_clf(cache=cache)
    clf.predict(photo_bytes[:3])
    clf.predict([photo_bytes[0]])  # photo 0 is now the most recently used
    clf.predict(photo_bytes[3:5])  # evicts 1 and 2
    assert len(cache) == 3 and cache.stats["eviction"] == 2
    before = clf._runner.images
    clf.predict([photo_bytes[0], photo_bytes[4]])
    assert clf._runner.images == before
    clf.predict([photo_bytes[1]])
    assert clf._runner.images == before + 1 and cache.stats["eviction"] == 3


def test_eviction_at_the_byte_bound(photo_bytes):
    probe = ResultCache("exact")
    make_clf(cache=probe).predict([photo_bytes[0]])
    one = probe.nbytes
    cache = ResultCache("exact", max_bytes=2 * one + one // 2)
    make_clf(cache=cache).predict(photo_bytes[:5])
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes and cache.stats["eviction"] == 3


def test_bad_settings_refused():
    with pytest.raises(ConfigError):
        ResultCache("fuzzy")
    with pytest.raises(ConfigError):
        ResultCache("exact", max_entries=0)
    with pytest.raises(ConfigError):
        make_clf(cache="sometimes")


def test_load_refuses_a_bad_mode_before_building():
    import ipex_resnet

    with pytest.raises(ConfigError, match="result"):
        ipex_resnet.load(
            "resnet18", weights="none", backend="onnxruntime", precision="fp32", measure=False, result_cache="sometimes"
        )


def test_plan_describe_says_it_is_on(photo_bytes):
    clf = make_clf()
    assert "result cache" not in clf.plan.describe()
    clf.result_cache = "perceptual"
    text = clf.plan.describe()
    assert "result cache on" in text and "perceptual" in text and "artifact key" in text
    clf.result_cache = "exact"
    assert "SHA-256" in clf.plan.describe() and "perceptual" not in clf.plan.describe()
    clf.result_cache = None
    assert "result cache" not in clf.plan.describe()


# -- bad images are never cached ------------------------------------------------------------------------
BAD = {
    "truncated": lambda photo_bytes: photo_bytes[0][: len(photo_bytes[0]) // 3],
    "not_an_image": lambda photo_bytes: b"<html>definitely not a jpeg</html>" * 10,
    "bomb_header": lambda photo_bytes: png_declaring(100_000, 100_000),
    "empty": lambda photo_bytes: b"",
}


@pytest.mark.parametrize("mode", ["exact", "perceptual"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_image_gets_its_error_and_is_never_cached(photo_bytes, mode, bad):
    data = BAD[bad](photo_bytes)
    plain = make_clf()
    with pytest.raises(ImageError) as want:
        plain.predict([data])
    clf = make_clf(cache=mode)
    for _ in range(2):
        with pytest.raises(ImageError) as got:
            clf.predict([photo_bytes[1], data])
        assert str(got.value) == str(want.value).replace("input 0", "input 1")
    assert len(clf.result_cache) == 0 and clf._runner.images == 0


def test_truncated_copy_of_a_cached_photo_still_fails_in_perceptual_mode(photo_bytes):
    clf = make_clf(cache="perceptual")
    clf.predict([photo_bytes[0]])
    with pytest.raises(ImageError, match="truncated"):
        clf.predict([photo_bytes[0][:-2000]])


def test_missing_file_gets_its_error(tmp_path):
    clf = make_clf(cache="exact")
    with pytest.raises(ImageError, match="no such file"):
        clf.predict([tmp_path / "nope.jpg"])
    assert len(clf.result_cache) == 0


# -- bulk classify --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "perceptual"])
def test_bulk_run_uses_the_cache(tmp_path, photo_bytes, mode):
    from ipex_resnet.apps import bulk

    paths = []
    for i, d in enumerate([photo_bytes[0], photo_bytes[1], photo_bytes[0], reencoded(photo_bytes[1]), b"junk" * 20]):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(d)
        paths.append(str(p))
    clf = make_clf(cache=mode)
    got = {}
    summary = bulk.run(
        clf, paths, lambda n, top, err: got.__setitem__(n, (top, err)), topk=3, batch_size=2, workers=1, progress=False
    )
    assert summary.ok == 4 and summary.failed == 1 and got[paths[4]][1]
    want = make_clf().predict(paths[:2], topk=3)
    assert got[paths[0]][0] == want[0] and got[paths[1]][0] == want[1]
    # (whether the identical copy in this first run hits depends on whether its first copy's result was
    # stored before the decoder reached it: decoding runs ahead of inference; the second run must hit)
    again = {}
    bulk.run(
        clf, paths[:2], lambda n, top, err: again.__setitem__(n, top), topk=3, batch_size=2, workers=1, progress=False
    )
    assert again == {paths[0]: want[0], paths[1]: want[1]} and clf.result_cache.stats["hit"] >= 2


# -- the service ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server():
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    pytest.importorskip("httpx")
    from ipex_resnet.serve import ServeConfig, ServerThread, create_app

    cfg = ServeConfig(
        max_batch=8, max_wait_ms=10, max_queue=64, request_timeout_s=60, result_cache="exact", result_cache_size=6
    )
    with ServerThread(create_app(make_clf, cfg)) as srv:
        srv.wait_ready()
        yield srv


def post(url, data, topk=5):
    import httpx

    return httpx.post(
        f"{url}/v1/classify?topk={topk}", content=data, headers={"content-type": "image/jpeg"}, timeout=60
    )


def metrics_of(url) -> str:
    import httpx

    return httpx.get(url + "/metrics", timeout=30).text


def test_service_concurrent_identical_requests_identical_answers(server, photo_bytes):
    from serve_helpers import metric

    runner = server.state.clf._runner
    before, text0 = runner.images, metrics_of(server.url)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(server.url, photo_bytes[2]), range(24)))
    assert all(r.status_code == 200 for r in answers), answers[0].text
    bodies = [r.json() for r in answers]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["results"][0]["top"] == make_clf().predict([photo_bytes[2]])[0]
    text = metrics_of(server.url)
    hits = metric(text, "ipex_resnet_result_cache_events_total", event="hit") - metric(
        text0, "ipex_resnet_result_cache_events_total", event="hit"
    )
    misses = metric(text, "ipex_resnet_result_cache_events_total", event="miss") - metric(
        text0, "ipex_resnet_result_cache_events_total", event="miss"
    )
    assert hits + misses == 24 and hits >= 1 and runner.images - before == misses


def test_service_metrics_count_hits_misses_evictions(server, photo_bytes):
    from serve_helpers import metric

    text0 = metrics_of(server.url)
    for d in photo_bytes[:7] + [photo_bytes[6]]:  # 7 distinct into 6 slots: one eviction at least; then a hit
        assert post(server.url, d, topk=3).status_code == 200
    text = metrics_of(server.url)

    def delta(event):
        return metric(text, "ipex_resnet_result_cache_events_total", event=event) - metric(
            text0, "ipex_resnet_result_cache_events_total", event=event
        )

    assert delta("hit") >= 1 and delta("miss") >= 6 and delta("eviction") >= 1
    assert metric(text, "ipex_resnet_result_cache_entries") <= 6


def test_service_bad_image_gets_its_error_every_time(server, photo_bytes):
    for bad in ("truncated", "not_an_image", "bomb_header"):
        data = BAD[bad](photo_bytes)
        codes = [post(server.url, data) for _ in range(2)]
        assert all(400 <= r.status_code < 500 for r in codes), [r.text for r in codes]
        assert codes[0].json() == codes[1].json()
    assert all(e.top for e in server.state.result_cache._lru.values())


def test_service_describes_the_cache(server):
    assert "exact" in server.state.result_cache.describe()
    assert dataclasses.fields(server.state.cfg.__class__)  # the options are declared in ServeConfig
    from ipex_resnet.serve.config import ServeConfig

    with pytest.raises(ValueError):
        ServeConfig(result_cache="sometimes")


def test_service_perceptual_over_oip_hits_a_reencoded_copy(photo_bytes):
    """Perceptual mode through the Open Inference Protocol: a re-encoded, resized copy is answered from
    the cache (no inference), a hostile image still gets its error."""
    import base64

    import httpx

    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    from ipex_resnet.serve import ServeConfig, ServerThread, create_app

    def infer(url, data):
        doc = {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(data).decode()]}],
            "parameters": {"topk": 3},
        }
        return httpx.post(f"{url}/v2/models/fake18/infer", json=doc, timeout=60)

    cfg = ServeConfig(max_batch=4, max_wait_ms=5, request_timeout_s=60, result_cache="perceptual")
    with ServerThread(create_app(make_clf, cfg)) as srv:
        srv.wait_ready()
        runner = srv.state.clf._runner
        first = infer(srv.url, photo_bytes[3])
        assert first.status_code == 200, first.text
        n = runner.images
        copy = infer(srv.url, reencoded(photo_bytes[3]))
        assert copy.status_code == 200 and runner.images == n
        assert copy.json()["outputs"] == first.json()["outputs"]
        bad = infer(srv.url, photo_bytes[3][: len(photo_bytes[3]) // 3])
        assert 400 <= bad.status_code < 500 and "truncated" in bad.text
        assert srv.state.result_cache.stats["hit"] == 1 and len(srv.state.result_cache) == 1
