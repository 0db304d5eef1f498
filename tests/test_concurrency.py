"""A classifier shared between threads: every engine x precision that runs here answers 8 threads x 50
calls (``predict`` on real photos and ``predict_tensors``) exactly as it answers them one by one, through
the installed package and the default artifact cache (the test session's). With two streams too, and
the streams' own guarantees: the plan says how many, ``submit`` never blocks, a dropped classifier takes
its threads along."""

from __future__ import annotations

import gc
import threading
import time
import warnings

import numpy as np
import pytest

import ipex_resnet
from ipex_resnet import engines
from ipex_resnet.errors import ConfigError
from tests.conftest import random_weights_gate, require_backend, require_int8

THREADS, CALLS = 8, 50
PHOTOS = 6


def _paths():
    eng = [(e, p) for e in engines.names() for p in ("fp32", "bf16", "int8")]
    return [pytest.param(e, p, id=f"{e}-{p}") for e, p in eng if not (e == "eager" and p == "int8")]


@pytest.fixture(scope="module")
def calib_dir(photos, tmp_path_factory):
    """The calibration set of test_int8_load (links to the same photos: the same fingerprint, one build)."""
    d = tmp_path_factory.mktemp("calib")
    for p in photos[::2][:40]:
        (d / p.name).symlink_to(p)
    return d


def _load(engine: str, precision: str, checkpoint, calib_dir, streams="auto"):
    require_backend(engine)
    cpu = ipex_resnet.probe(check_torch=False)
    if precision == "int8":
        require_int8(engine)
        return ipex_resnet.load(
            "resnet18",
            weights=str(checkpoint),
            backend=engine,
            precision="int8",
            calibration=str(calib_dir),
            accuracy_gate=random_weights_gate(engine),
            accept_accuracy=True,
            streams=streams,
        )
    if precision not in engines.get(engine).precisions(cpu):
        pytest.skip(f"{engine} runs no {precision} on this CPU ({cpu.isa_level})")
    if precision == "bf16" and not cpu.has_native_bf16:
        pytest.skip(f"this CPU has no native BF16 ({cpu.isa_level}): emulated BF16 is slow, not what a server runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ipex_resnet.load(
            "resnet18", weights=str(checkpoint), backend=engine, precision=precision, streams=streams
        )


def _hammer(clf, photos) -> tuple[list[str], dict]:
    """8 threads x 50 calls, alternating predict(photo) and predict_tensors(preprocessed photo);
    returns the errors and, per (kind, photo), every answer given."""
    tensors = [clf.preprocess(p) for p in photos]
    answers: dict[tuple[str, int], list] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(t: int):
        start.wait()
        for i in range(CALLS):
            j = (t + i) % len(photos)
            kind = "predict" if i % 2 else "tensors"
            try:
                top = clf.predict([photos[j]])[0] if kind == "predict" else clf.predict_tensors([tensors[j]])[0]
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                answers.setdefault((kind, j), []).append(top)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "a call hung"
    return errors, answers


def _same(a: list[dict], b: list[dict]) -> bool:
    return [r["index"] for r in a] == [r["index"] for r in b] and np.allclose(
        [r["score"] for r in a], [r["score"] for r in b], rtol=0, atol=1e-6
    )


def _check(clf, photos):
    sequential = {("predict", j): clf.predict([p])[0] for j, p in enumerate(photos)}
    sequential.update({("tensors", j): clf.predict_tensors([clf.preprocess(p)])[0] for j, p in enumerate(photos)})
    errors, answers = _hammer(clf, photos)
    assert errors == [], f"{len(errors)} of {THREADS * CALLS} calls failed, e.g. {errors[0]}"
    assert sum(len(v) for v in answers.values()) == THREADS * CALLS
    for key, given in answers.items():
        bad = [a for a in given if not _same(a, sequential[key])]
        assert not bad, f"{key}: {len(bad)} of {len(given)} answers differ from the sequential call's"


@pytest.mark.slow
@pytest.mark.parametrize("engine,precision", _paths())
def test_threads_share_one_classifier(engine, precision, photos, checkpoint, calib_dir):
    clf = _load(engine, precision, checkpoint, calib_dir)
    assert clf.plan.precision == precision and clf.plan.streams >= 1
    _check(clf, photos[:PHOTOS])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ipex", "inductor", "openvino", "onnxruntime", "eager"])
def test_two_streams_answer_as_one(engine, photos, checkpoint, calib_dir):
    if (ipex_resnet.plan_for(backend="eager").threads or 1) < 2:
        pytest.skip("needs two CPUs: two streams need a thread each")
    clf = _load(engine, "fp32", checkpoint, calib_dir, streams=2)
    assert clf.streams == 2 and clf.plan.streams == 2
    assert "streams:       2 x " in clf.plan.describe()
    _check(clf, photos[:PHOTOS])
    one = _load(engine, "fp32", checkpoint, calib_dir, streams=1)
    tensors = [one.preprocess(p) for p in photos[:PHOTOS]]
    # a long list is split over both streams, in order
    assert [[r["index"] for r in t] for t in clf.predict_tensors(tensors * 3, batch_size=4)] == [
        [r["index"] for r in t] for t in one.predict_tensors(tensors * 3, batch_size=4)
    ]


def test_submit_does_not_block_and_a_dropped_classifier_frees_its_threads(checkpoint, calib_dir):
    clf = _load("onnxruntime", "fp32", checkpoint, calib_dir, streams=1)
    x = np.zeros((1, 3, 224, 224), dtype=np.float32)
    clf(x)
    before = threading.active_count()
    t0 = time.perf_counter()
    futures = [clf.submit(x) for _ in range(20)]
    queued_s = time.perf_counter() - t0
    done_at_return = sum(f.done() for f in futures)
    assert done_at_return < 20, f"submit ran the calls before returning ({queued_s:.3f} s to queue 20)"
    assert all(np.array_equal(f.result(), futures[0].result()) for f in futures)
    with pytest.raises(ConfigError, match="Nx3xHxW"):
        clf.submit(np.zeros((3, 224, 224), dtype=np.float32))
    del clf, futures
    gc.collect()
    deadline = time.monotonic() + 10
    while threading.active_count() >= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() < before, "the stream thread outlived its classifier"


def test_streams_option_is_checked_and_stated(monkeypatch):
    plan = ipex_resnet.plan_for(backend="onnxruntime", threads=2, streams=2)
    assert (plan.streams, plan.threads_per_stream) == (2, 1)
    assert "requested (argument)" in plan.reasons["streams"]
    monkeypatch.setenv("IPEX_RESNET_STREAMS", "2")
    assert ipex_resnet.plan_for(backend="onnxruntime", threads=2).streams == 2
    monkeypatch.setenv("IPEX_RESNET_STREAMS", "two")
    with pytest.raises(ConfigError, match="IPEX_RESNET_STREAMS='two' is not a positive whole number"):
        ipex_resnet.plan_for(backend="onnxruntime", threads=2)
    monkeypatch.delenv("IPEX_RESNET_STREAMS")
    with pytest.raises(ConfigError, match="3 streams need at least 3 threads"):
        ipex_resnet.plan_for(backend="onnxruntime", threads=2, streams=3)
    with pytest.raises(ConfigError, match="streams=0"):
        ipex_resnet.plan_for(backend="onnxruntime", threads=2, streams=0)
    assert ipex_resnet.plan_for(backend="onnxruntime", threads=2).streams == 1


@pytest.mark.slow
def test_auto_measures_streams_on_the_chosen_engine(checkpoint):
    """The measured auto (engine and streams) on a cache of its own: the record holds a row per stream
    count, and the plan says which won and why."""
    from ipex_resnet.core import autoselect
    from ipex_resnet.core.build import Request, make_classifier
    from ipex_resnet.core.policy import make_plan

    cpu = ipex_resnet.probe(check_torch=False)
    plan = make_plan(cpu, "onnxruntime", "fp32", 2, availability=engines.availability(), env={})
    req = Request(model="resnet18", weights=str(checkpoint), cpu=cpu)
    record = autoselect.measure_streams(plan, lambda p: make_classifier(p, req, True))
    assert set(record["rows"]) == {"1x2", "2x1"} and record["chosen"] in (1, 2)
    assert all(r["img_s"] > 0 and r["b1_ms"] > 0 for r in record["rows"].values())
    why = autoselect.streams_reason(record)
    assert "1x2" in why and "2x1" in why and "img/s" in why


_FIRST_OUTPUTS = """
import sys, threading, numpy as np, openvino as ov, openvino.opset13 as ops
p = ops.parameter([1, 8], np.float32)
compiled = ov.Core().compile_model(ov.Model([ops.relu(p)], [p]), "CPU", {"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"})
from ipex_resnet.engines.openvino import request_runner
runners = [request_runner(compiled) for _ in range(2)]
barrier = threading.Barrier(2)
def first(run):
    barrier.wait()  # both streams read their first output at once
    assert run(np.ones((1, 8), np.float32)).sum() == 8
threads = [threading.Thread(target=first, args=(r,)) for r in runners]
[t.start() for t in threads]
[t.join() for t in threads]
"""


def test_openvino_streams_first_outputs_at_once_do_not_deadlock():
    """Two streams reading their first output at the same moment, in fresh processes. OpenVINO's numpy
    bridge set up from two threads at once deadlocks (openvino 2026.4: a bare repro hung 5 of 40
    processes, this script 1 of 40 without the fix, 0 of 120 with it); the runner now primes it in the
    loading thread. A race: this guards against the hang coming back, it cannot prove it gone."""
    import subprocess
    import sys

    require_backend("openvino")
    for i in range(24):
        try:
            r = subprocess.run([sys.executable, "-c", _FIRST_OUTPUTS], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {i + 1} of 24 hung: two streams' first outputs deadlocked")
        assert r.returncode == 0, r.stderr[-2000:]
