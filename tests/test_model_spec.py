"""The model spec through every command, as a user runs it: the installed ``ipex-resnet`` console
script in a subprocess, a model of the user's own package named by import path, a checkpoint, a
categories file and a preset; and one clear line for each kind of bad spec."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, require_backend
from serve_helpers import free_port

SCRIPT = shutil.which("ipex-resnet") or str(Path(sys.executable).with_name("ipex-resnet"))
CLASSES = [f"thing {i}" for i in range(10)]


@pytest.fixture(scope="module")
def user_pkg(tmp_path_factory):
    """``mypkg.net:build`` (a 10-class CNN) in a temporary package, a trained-looking checkpoint, a
    categories file and a preset file, and the environment a user's shell would have."""
    root = tmp_path_factory.mktemp("user")
    pkg = root / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(FIXTURES / "usermodels" / "tiny.py", pkg / "net.py")
    sys.path.insert(0, str(root))
    try:
        from mypkg.net import TinyNet
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(1)
    model = TinyNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.fill_(0.5)
    torch.save(model.state_dict(), root / "tiny.pth")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "preset.json").write_text(json.dumps({"resize_size": 80, "crop_size": 64, "mean": 0.5, "std": 0.25}))
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "IPEX_RESNET_CACHE_DIR": str(root / "cache"),
    }
    return root, env


def cli(user_pkg, *args, timeout=600):
    root, env = user_pkg
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=root)


def spec(user_pkg):
    root = user_pkg[0]
    return [
        "--model",
        "mypkg.net:build",
        "--weights",
        str(root / "tiny.pth"),
        "--categories",
        str(root / "classes.txt"),
        "--preset",
        str(root / "preset.json"),
    ]


def test_classify_and_compile_take_the_users_model(user_pkg, photos):
    require_backend("onnxruntime")
    first = cli(user_pkg, "compile", *spec(user_pkg), "--backends", "onnxruntime", "--precisions", "fp32")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith("onnxruntime/fp32: built in ")
    out = cli(
        user_pkg,
        "classify",
        str(photos[0]),
        str(photos[1]),
        *spec(user_pkg),
        "--backend",
        "onnxruntime",
        "--precision",
        "fp32",
        "--json",
        "--topk",
        "3",
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["model"] == "mypkg.net:build" and doc["backend"] == "onnxruntime"
    assert doc["weights"] == f"checkpoint {user_pkg[0] / 'tiny.pth'}"
    for r in doc["results"]:
        assert [t["label"] for t in r["top"]] == [CLASSES[t["index"]] for t in r["top"]] and len(r["top"]) == 3
    again = cli(user_pkg, "compile", *spec(user_pkg), "--backends", "onnxruntime", "--precisions", "fp32")
    assert again.stdout.startswith("onnxruntime/fp32: cached already: "), again.stdout + again.stderr


@pytest.mark.parametrize("backend", ["eager", "onnxruntime"])
def test_json_stays_json_when_the_users_model_prints(user_pkg, photos, backend):
    """``classify --json``: what the user's model prints as it is built (from Python, or on file
    descriptor 1), as an engine builds it and as it runs goes to stderr; stdout is the document alone."""
    require_backend(backend)
    proc = cli(
        user_pkg,
        "classify",
        str(photos[0]),
        "--model",
        "mypkg.net:build_loud",
        "--weights",
        "none",
        "--preset",
        str(user_pkg[0] / "preset.json"),
        "--backend",
        backend,
        "--precision",
        "fp32",
        "--json",
        "--topk",
        "2",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["model"] == "mypkg.net:build_loud" and len(doc["results"][0]["top"]) == 2
    for said in ("Loaded pretrained weights for loudnet", "LoudNet: written on file descriptor 1", "LoudNet: forward"):
        assert said in proc.stderr, proc.stderr[-2000:]


def test_the_preset_is_the_users(user_pkg):
    """The artifact's preprocessing is the user's preset (64x64 crop), not ImageNet's."""
    sys.path.insert(0, str(user_pkg[0]))
    try:
        import ipex_resnet
        from ipex_resnet.models.spec import preset_from_options

        pre = preset_from_options(user_pkg[0] / "preset.json")
        clf = ipex_resnet.load(
            "mypkg.net:build",
            weights=str(user_pkg[0] / "tiny.pth"),
            backend="eager",
            precision="fp32",
            transforms=pre,
            categories=CLASSES,
        )
    finally:
        sys.path.remove(str(user_pkg[0]))
    assert clf.preprocessor.crop_size == 64 and clf.preprocessor.spec.mean == (0.5, 0.5, 0.5)
    assert list(clf.categories) == CLASSES


@pytest.mark.slow
def test_quantize_and_evaluate_take_the_users_model(user_pkg, photos, tmp_path):
    require_backend("onnxruntime")
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in photos[:16]:
        shutil.copy(p, calib / p.name)  # a copy in a temporary folder, as a user's calibration set
    q = cli(
        user_pkg,
        "quantize",
        *spec(user_pkg),
        "--backend",
        "onnxruntime",
        "--calibration",
        str(calib),
        "--accept-accuracy",
        "--json",
    )
    assert q.returncode == 0, q.stderr[-2000:]
    report = json.loads(q.stdout)
    assert report["precision"] == "int8" and report["accuracy"]["images"] >= 1
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        w.writerows([str(p), i % 10] for i, p in enumerate(photos[20:30]))
    ev = cli(
        user_pkg,
        "evaluate",
        "--data",
        str(tmp_path),
        *spec(user_pkg),
        "--backends",
        "eager,onnxruntime",
        "--precisions",
        "fp32,int8",
        "--calibration",
        str(calib),
        "--accept-accuracy",
        "--json",
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = json.loads(ev.stdout)
    assert [r["precision"] for r in rows] == ["fp32 (eager)", "fp32 (onnxruntime)", "int8 (onnxruntime)"]
    assert all(r["images"] == 10 for r in rows) and rows[0]["drop_pts"] is None
    assert rows[1]["agreement"] == 1.0 and rows[1]["drop_pts"] == 0.0  # FP32 engines give eager's answers
    assert "skipped eager/int8" in ev.stderr  # eager runs no int8: said, and the rest evaluated


@pytest.mark.slow
def test_serve_takes_the_users_model(user_pkg, photos):
    httpx = pytest.importorskip("httpx")
    port = free_port()
    root, env = user_pkg
    proc = subprocess.Popen(
        [
            SCRIPT,
            "serve",
            *spec(user_pkg),
            "--backend",
            "eager",
            "--precision",
            "fp32",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-tune",
            "--log-level",
            "warning",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "never ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/classify?topk=2",
            content=photos[0].read_bytes(),
            headers={"content-type": "image/jpeg"},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]["top"]
        assert len(top) == 2 and all(t["label"] in CLASSES for t in top)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--model", "nosuchpkg.net:build"], "cannot import module 'nosuchpkg.net'"),
        (["--model", "mypkg.net:not_a_model"], "is a int, not an nn.Module or a callable returning one"),
        (["--model", "mypkg.net:missing"], "has no attribute 'missing'"),
        (["--model", "mypkg.net:build", "--weights", "{root}/wrong.pth"], "does not fit TinyNet"),
        (["--model", "mypkg.net:build", "--mean", "0.5,0.5"], "--mean needs 1 or 3 values"),
        (
            ["--model", "mypkg.net:build", "--categories", "{root}/three.txt"],
            "3 categories given for mypkg.net:build, which has 10 outputs",
        ),
        (["--model", "mypkg.net:build", "--preset", "{root}/nope.json"], "preset file"),
    ],
)
def test_bad_specs_get_one_clear_line(user_pkg, photos, extra, words):
    root = user_pkg[0]
    torch.save({"conv.weight": torch.zeros(1)}, root / "wrong.pth")
    (root / "three.txt").write_text("a\nb\nc\n")
    args = [a.replace("{root}", str(root)) for a in extra]
    proc = cli(user_pkg, "classify", str(photos[0]), *args, "--backend", "eager", "--precision", "fp32")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], proc.stderr


@pytest.mark.slow
def test_bench_takes_the_users_model(user_pkg, tmp_path, photos):
    """``ipex-resnet bench`` on the user's model: its checkpoint, its preset (crop 64) in every part of
    the run, the in-process paths, the fresh-process ones and the cold start alike."""
    require_backend("onnxruntime")
    out = tmp_path / "report.json"
    root = user_pkg[0]
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    with open(labelled / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        w.writerows([str(p), i % 10] for i, p in enumerate(photos[40:52]))
    proc = cli(
        user_pkg,
        "bench",
        "--model",
        "mypkg.net:build",
        "--weights",
        str(root / "tiny.pth"),
        "--preset",
        str(root / "preset.json"),
        "--labels",
        str(labelled),
        "--quick",
        "--backends",
        "eager,onnxruntime",
        "--precisions",
        "fp32",
        "--peers",
        "none",
        "--batch-sizes",
        "2",
        "--budget",
        "0.5",
        "--alone-budget",
        "0.4",
        "--threads",
        "1",
        "--output",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["model"] == "mypkg.net:build" and doc["weights"] == str(root / "tiny.pth")
    assert doc["inputs"]["crop_size"] == 64 and doc["preset"]["crop_size"] == [64]
    for name in ("eager/fp32", "onnxruntime/fp32"):
        r = doc["paths"][name]
        assert r["latency"]["1"]["p50_ms"] > 0 and r["alone"]["latency"]["1"]["p50_ms"] > 0, r
    assert "error" not in doc["cold_start"]["onnxruntime"], doc["cold_start"]
    # with labels: accuracy beside speed, and the drop vs eager fp32 (none for an fp32 engine)
    ref, ort = doc["paths"]["eager/fp32"]["accuracy"], doc["paths"]["onnxruntime/fp32"]["accuracy"]
    assert ref["images"] == 12 and ref["drop_pts"] == 0 and ort["top1"] == ref["top1"] and ort["drop_pts"] == 0
    assert "top-1" in proc.stdout and "drop pts" in proc.stdout
    bad = cli(user_pkg, "bench", "--model", "mypkg.net:nothing_here", "--quick")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: ") and "has no attribute" in bad.stderr


def test_optimize_takes_an_import_path(user_pkg):
    import numpy as np

    import ipex_resnet
    from ipex_resnet.errors import ConfigError

    sys.path.insert(0, str(user_pkg[0]))
    try:
        runner, plan = ipex_resnet.optimize(
            "mypkg.net:build", backend="eager", precision="fp32", example=np.zeros((1, 3, 64, 64), np.float32)
        )
    finally:
        sys.path.remove(str(user_pkg[0]))
    assert np.asarray(runner(np.zeros((2, 3, 64, 64), np.float32))).shape == (2, 10)
    with pytest.raises(ConfigError, match="for a torchvision model name use load"):
        ipex_resnet.optimize("resnet18", backend="eager", precision="fp32")


@pytest.mark.slow
def test_classify_with_ray_takes_the_users_model(user_pkg, photos, tmp_path):
    pytest.importorskip(
        "ray", reason="Ray is not installed on this stack (pip install 'ipex_resnet[ray]'); the IPEX stack has no Ray"
    )
    out = tmp_path / "ray.jsonl"
    proc = cli(
        user_pkg,
        "classify",
        str(photos[0]),
        str(photos[1]),
        *spec(user_pkg),
        "--backend",
        "eager",
        "--precision",
        "fp32",
        "--ray",
        "--actors",
        "1",
        "--jsonl",
        str(out),
        "--topk",
        "2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all(t["label"] in CLASSES for r in rows for t in r["top"])


def test_first_classify_answers_on_eager_and_measures_in_the_background(user_pkg, photos, tmp_path):
    """The first ``classify`` of a model on a machine (the measured auto, an empty cache) answers on
    eager, the reference with nothing to compile, and leaves the measuring to a background process
    (one progress line per step in its log); the next call reads the decision it cached."""
    import re

    import psutil

    root, env = user_pkg
    cache = tmp_path / "cache"
    env = {**env, "IPEX_RESNET_CACHE_DIR": str(cache), "IPEX_RESNET_AUTO": "measure"}  # the user's default
    args = [SCRIPT, "classify", str(photos[0]), *spec(user_pkg), "--json", "--threads", "1"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(first.stdout)["backend"] == "eager"
    m = re.search(
        r"this call runs on eager \(the FP32 reference, nothing to compile\); a background process "
        r"\(pid (\d+)\) measures them \(log: (.+?)\); the next call uses the fastest",
        first.stderr,
    )
    assert m, first.stderr[-2000:]
    try:
        psutil.Process(int(m[1])).wait(600)
    except psutil.NoSuchProcess:
        pass  # already done
    except psutil.TimeoutExpired:
        psutil.Process(int(m[1])).kill()  # nothing left running behind the test
        raise
    log = Path(m[2]).read_text()
    steps = re.findall(r"ipex-resnet: measuring engines \((\d+)/(\d+)\): \S+", log)
    assert steps and steps[-1][0] == steps[-1][1] and "measured: " in log, log[-2000:]
    decision = json.loads(next(cache.glob("decisions/*.json")).read_text())
    second = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=root)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads(second.stdout)["backend"] == decision["backend"] and "background" not in second.stderr
