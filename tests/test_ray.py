"""The Ray path on a local cluster started by the test: results identical to single-process classify."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ray = pytest.importorskip(
    "ray", reason="Ray is not installed on this stack (pip install 'ipex_resnet[ray]'); the IPEX stack has no Ray"
)
pytest.importorskip("ray.data", reason="ray[data] is not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(photos, tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    bad = d / "bad.jpg"
    bad.write_text("not an image")
    return [str(p) for p in photos[:7]] + [str(bad)] + [str(p) for p in photos[7:10]]


def single_process(checkpoint, inputs) -> list[dict]:
    import ipex_resnet
    from ipex_resnet.apps import bulk

    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager", precision="fp32", threads=1)
    out = []
    bulk.run(
        clf,
        inputs,
        lambda n, top, err: out.append({"input": n, "top": top} if err is None else {"input": n, "error": err}),
        progress=False,
    )
    return out


def assert_same_results(got: list[dict], expected: list[dict]) -> None:
    """Same inputs, order, errors, top-k labels and indices; scores equal to float32 rounding (the batch
    composition differs between Ray blocks and the single process, and oneDNN's sums with it)."""
    assert [r["input"] for r in got] == [r["input"] for r in expected]
    for a, b in zip(got, expected):
        assert a.get("error") == b.get("error")
        if "top" in b:
            assert [(t["label"], t["index"]) for t in a["top"]] == [(t["label"], t["index"]) for t in b["top"]]
            assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]], rel=1e-4, abs=1e-7)


def test_ray_data_actor_pool_matches_single_process(inputs, checkpoint):
    from ipex_resnet.apps.ray import classify_dataset, row_to_record

    expected = single_process(checkpoint, inputs)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = classify_dataset(
            inputs, actors=2, cpus_per_actor=1, batch_size=4, weights=str(checkpoint), backend="eager", precision="fp32"
        )
        rows = ds.take_all()
        threads = ray.get(
            [ray.remote(num_cpus=1)(lambda: __import__("ipex_resnet.apps.ray").apps.ray.assigned_cpus(99)).remote()]
        )
    finally:
        ray.shutdown()
    got = [row_to_record(r) for r in rows]
    assert threads == [1]  # a worker sees the CPUs Ray gave it, and pins its threads to them
    assert_same_results(got, expected)
    assert "not an image" in got[7]["error"]


def test_cli_ray_jsonl_matches_cli_single_process(inputs, checkpoint, tmp_path):
    model = ["--weights", str(checkpoint), "--backend", "eager", "--precision", "fp32"]
    ref, out = tmp_path / "ref.jsonl", tmp_path / "ray.jsonl"
    p1 = subprocess.run(
        [sys.executable, "-m", "ipex_resnet", "classify", *inputs, "--jsonl", str(ref), *model, "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p1.returncode == 1, p1.stderr
    p2 = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipex_resnet",
            "classify",
            *inputs,
            "--jsonl",
            str(out),
            *model,
            "--ray",
            "--actors",
            "2",
            "--cpus-per-actor",
            "1",
            "--batch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p2.returncode == 1, p2.stderr[-3000:]
    assert "10 classified, 1 failed (Ray, 2 actors x 1 CPU)" in p2.stderr
    a = [json.loads(x) for x in ref.read_text().splitlines()]
    b = [json.loads(x) for x in out.read_text().splitlines()]
    assert_same_results(b, a)
    assert "Traceback" not in p2.stderr

    pq = tmp_path / "parquet"
    p3 = subprocess.run(
        [
            sys.executable,
            "-m",
            "ipex_resnet",
            "classify",
            *inputs,
            "--parquet",
            str(pq),
            *model,
            "--ray",
            "--actors",
            "1",
            "--batch-size",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p3.returncode == 1, p3.stderr[-3000:]
    assert "10 classified, 1 failed (Ray, 1 actors x 1 CPU)" in p3.stderr
    import pyarrow.parquet

    from ipex_resnet.apps.ray import row_to_record

    rows = pyarrow.parquet.read_table(pq).to_pylist()
    by_input = {r["input"]: row_to_record(r) for r in rows}
    assert_same_results([by_input[r["input"]] for r in a], a)
