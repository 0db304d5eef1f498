"""The CLI as a user runs it: a real subprocess, real photos, real bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipex_resnet", *args], capture_output=True, text=True, timeout=timeout)


def test_probe_shows_cpu_backends_and_plan():
    proc = run("probe")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for words in ("cpu:", "isa level:", "flags:", "backends:", "inductor", "plan:", "precision:", "threads:"):
        assert words in out
    assert "Overriding" not in proc.stderr and "Traceback" not in proc.stderr


def test_probe_json_matches_the_policy():
    proc = run("probe", "--json")
    doc = json.loads(proc.stdout)
    assert set(doc) == {"cpu", "backends", "plan"}
    expected = "bf16" if doc["cpu"]["native_bf16"] and doc["plan"]["backend"] != "eager" else "fp32"
    assert doc["plan"]["precision"] == expected
    assert doc["plan"]["reasons"]["precision"]


def test_probe_precision_override_and_bad_value():
    assert json.loads(run("probe", "--json", "--precision", "fp32").stdout)["plan"]["precision"] == "fp32"
    bad = run("probe", "--precision", "fp8")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: unknown precision 'fp8': choose one of auto, fp32, bf16, int8"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, photos):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("not an image")
    data = photos[0].read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return {
        "missing": str(d / "missing.jpg"),
        "empty": str(d / "empty.jpg"),
        "text": str(d / "notes.jpg"),
        "truncated": str(d / "truncated.jpg"),
    }


def test_classify_bad_inputs_each_one_line_others_still_classified(bad_files, photos, checkpoint):
    good = [str(photos[0]), str(photos[1])]
    args = [good[0], bad_files["missing"], bad_files["empty"], good[1], bad_files["text"], bad_files["truncated"]]
    proc = run("classify", *args, "--weights", str(checkpoint), "--backend", "eager", "--json", "--topk", "3")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, proc.stderr
    assert "Traceback" not in proc.stderr
    for key, words in [
        ("missing", "no such file"),
        ("empty", "zero bytes"),
        ("text", "not an image"),
        ("truncated", "truncated"),
    ]:
        assert any(bad_files[key] in e and words in e for e in errors), (key, errors)
    doc = json.loads(proc.stdout)
    assert [r["input"] for r in doc["results"]] == args  # every input accounted for, in order
    assert [("top" in r) for r in doc["results"]] == [True, False, False, True, False, False]
    for r in doc["results"]:
        if "top" in r:
            assert len(r["top"]) == 3 and set(r["top"][0]) == {"label", "index", "score"}
            assert r["top"][0]["score"] >= r["top"][1]["score"] > 0
        else:
            assert r["error"]
    assert doc["version"] == 1 and doc["backend"] == "eager" and doc["precision"] == "fp32"
    assert doc["random_init"] is False and doc["weights"] == f"checkpoint {checkpoint}"


def test_classify_matches_the_python_api(photos, checkpoint, tmp_path):
    import ipex_resnet

    # a PNG with alpha and a grayscale image ride along with a JPEG
    rgba = tmp_path / "rgba.png"
    with Image.open(photos[2]) as img:
        img.convert("RGBA").save(rgba)
    gray = tmp_path / "gray.jpg"
    with Image.open(photos[3]) as img:
        img.convert("L").save(gray)
    files = [str(photos[2]), str(rgba), str(gray)]
    proc = run("classify", *files, "--weights", str(checkpoint), "--json")  # auto backend / precision
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager")
    expected = clf.predict(files, topk=5)
    for r, exp in zip(doc["results"], expected):
        # the optimized path (maybe BF16) agrees with the FP32 reference on the top class
        assert r["top"][0]["index"] == exp[0]["index"]
        assert len({x["index"] for x in r["top"]} & {x["index"] for x in exp}) >= 4


def test_classify_text_output_and_random_weights_warning(photos):
    proc = run("classify", str(photos[0]), "--weights", "none", "--backend", "eager", "--topk", "2")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == str(photos[0]) and len(lines) == 3 and "%" in lines[1]
    assert "random weights" in proc.stderr


def test_classify_offline_weights_one_line(photos, tmp_path):
    """Offline, with an empty cache: the measured auto (``--jsonl``: bulk measures first) stops at the
    reference's weights (one line, no download tried once per engine), and stores no decision: a
    failure is not a decision, so the call after the weights are in place measures."""
    import os

    cache = tmp_path / "cache"
    env = {
        **os.environ,
        "TORCH_HOME": str(tmp_path / "torch"),
        "IPEX_RESNET_CACHE_DIR": str(cache),
        "IPEX_RESNET_AUTO": "measure",
    }  # what a user gets: the measured auto
    proc = subprocess.run(
        [sys.executable, "-m", "ipex_resnet", "classify", str(photos[0]), "--jsonl", str(tmp_path / "out.jsonl")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if proc.returncode == 0:
        pytest.skip("network reachable: real weights downloaded")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not get ResNet18_Weights.IMAGENET1K_V1"), proc.stderr
    assert not list(cache.glob("decisions/*.json"))  # measured (the bulk path), failed, not stored


@pytest.mark.parametrize(
    "args,words",
    [
        (["--backend", "tensorrt"], "unknown backend 'tensorrt'"),
        (["--weights", "IMAGENET9"], "unknown weights 'IMAGENET9'"),
        (["--model", "resnet19"], "unknown model 'resnet19'"),
        (["--topk", "0"], "--topk must be at least 1"),
    ],
)
def test_classify_bad_options_one_line(args, words, photos):
    proc = (
        run("classify", str(photos[0]), "--weights", "none", *args)
        if "--weights" not in args
        else run("classify", str(photos[0]), *args)
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert words in proc.stderr


def test_mismatched_ipex_is_reported_not_imported(tmp_path):
    """An IPEX built for another torch exits the process when imported. Put one first on the path
    (an IPEX 2.7.0 whose import exits like the real one does) and check that probe and classify only
    read its metadata, say why it is not used, and carry on."""
    from conftest import mismatched_ipex_env

    env = mismatched_ipex_env(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "ipex_resnet", "probe", "--json"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    ipex = doc["backends"]["ipex"]
    assert ipex["available"] is False
    assert "IPEX 2.7.0 needs torch 2.7.*" in ipex["reason"] and "pip install" in ipex["reason"]
    assert doc["plan"]["backend"] in ("inductor", "eager")
    assert any("ipex not used" in n for n in doc["plan"]["notes"])
    bad = subprocess.run(
        [sys.executable, "-m", "ipex_resnet", "probe", "--backend", "ipex"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), bad.stderr
    assert "IPEX 2.7.0 needs torch 2.7.*" in bad.stderr


def test_compile_prebuilds_the_cache_then_classify_starts_warm(photos, tmp_path):
    import os

    env = {**os.environ, "IPEX_RESNET_CACHE_DIR": str(tmp_path / "cache")}

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "ipex_resnet", *args], capture_output=True, text=True, timeout=600, env=env
        )

    first = cli("compile", "--weights", "none", "--backends", "onnxruntime", "--precisions", "fp32")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.startswith("onnxruntime/fp32: built in ")
    entry = first.stdout.strip().rsplit(": ", 1)[1]
    assert os.path.isfile(os.path.join(entry, "model.onnx")) and os.path.isfile(os.path.join(entry, "meta.json"))
    again = cli("compile", "--weights", "none", "--backends", "onnxruntime", "--precisions", "fp32")
    assert again.stdout.startswith("onnxruntime/fp32: cached already: ")
    out = cli("classify", str(photos[0]), "--weights", "none", "--backend", "onnxruntime", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["backend"] == "onnxruntime"
    bad = cli("compile", "--backends", "tvm")
    assert bad.returncode == 2 and "unknown backend 'tvm'" in bad.stderr


def test_model_options_are_one_model_spec(tmp_path):
    """The model options parse into one ModelSpec; load()'s arguments and serve --tune's cache key come
    from it, a bad one is a ConfigError."""
    import argparse

    from ipex_resnet.benchmarking import serve_tune
    from ipex_resnet.cli.options import add_model_options, model_kwargs, model_spec
    from ipex_resnet.errors import ConfigError
    from ipex_resnet.models.spec import ModelSpec

    p = argparse.ArgumentParser()
    add_model_options(p)
    assert model_spec(p.parse_args([])) == ModelSpec("resnet18", "DEFAULT")
    cats = tmp_path / "cats.txt"
    cats.write_text("cat\ndog\n")
    args = p.parse_args(["--model", "pkg.mod:build", "--weights", "none", "--crop", "200", "--categories", str(cats)])
    spec = model_spec(args)
    assert (spec.model, spec.weights, spec.preset.crop_size, spec.categories) == (
        "pkg.mod:build",
        "none",
        (200,),
        ("cat", "dog"),
    )
    assert model_kwargs(args) == {"model": "pkg.mod:build", **spec.load_kwargs()}
    key = serve_tune.key(spec, {"backend": "eager", "threads": 4}, 100.0, 8, 2)["model"]
    assert key["model"] == "pkg.mod:build" and key["categories"] == ["cat", "dog"] and "threads" not in key
    assert key["transforms"]["crop_size"] == [200]
    with pytest.raises(ConfigError, match="--mean"):
        model_spec(p.parse_args(["--mean", "1,2"]))
