"""Bulk classification as a user runs it: folders walked, one JSON line per image streamed while the run
goes on, --resume after a torn write, bad inputs reported on their own line without stopping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.any_stack


def classify(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipex_resnet", "classify", *args], capture_output=True, text=True, timeout=timeout
    )


def model_args(checkpoint) -> list[str]:
    return ["--weights", str(checkpoint), "--backend", "eager", "--precision", "fp32", "--threads", "1"]


def read_jsonl(path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, photos):
    """12 real photos in two levels, plus bad files with image names, plus files a walk must skip."""
    d = tmp_path_factory.mktemp("mixed")
    (d / "sub").mkdir()
    for i, p in enumerate(photos[:12]):
        (d / ("sub" if i % 3 == 0 else ".") / f"{i:02d}_{p.name}").symlink_to(p)
    (d / "05_text.jpg").write_text("not a picture")
    data = photos[20].read_bytes()
    (d / "07_truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "sub" / "08_eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    (d / "labels.csv").write_text("file,label\n")  # not an image extension: skipped by the walk
    (d / ".hidden.jpg").write_bytes(data)  # hidden: skipped
    return d


def expected_order(folder) -> list[str]:
    from ipex_resnet.apps.bulk import expand_inputs

    return expand_inputs([str(folder)])


def test_folder_with_bad_inputs_one_line_each(mixed_folder, checkpoint, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = classify(str(mixed_folder), "--jsonl", str(out), "--batch-size", "4", *model_args(checkpoint))
    assert proc.returncode == 1, proc.stderr  # some inputs failed, the rest were done
    assert "Traceback" not in proc.stderr
    recs = read_jsonl(out)
    order = expected_order(mixed_folder)
    assert len(order) == 15 and not any("labels.csv" in p or ".hidden" in p for p in order)
    assert [r["input"] for r in recs] == order
    errors = {os.path.basename(r["input"]): r["error"] for r in recs if "error" in r}
    assert set(errors) == {"05_text.jpg", "07_truncated.jpg", "08_eps.png"}
    assert "not an image" in errors["05_text.jpg"] and "truncated" in errors["07_truncated.jpg"]
    assert "EPS" in errors["08_eps.png"] and "not accepted" in errors["08_eps.png"]
    for r in recs:
        if "top" in r:
            assert len(r["top"]) == 5 and r["top"][0]["score"] >= r["top"][-1]["score"]
    assert sum(1 for line in proc.stderr.splitlines() if line.startswith("error: ")) == 3
    assert "12 classified, 3 failed" in proc.stderr

    # the same top-5 as the Python API on the same files
    import ipex_resnet

    clf = ipex_resnet.load("resnet18", weights=str(checkpoint), backend="eager", precision="fp32", threads=1)
    good = [r for r in recs if "top" in r]
    api = clf.predict([r["input"] for r in good], topk=5)
    for r, top in zip(good, api):
        assert [t["index"] for t in r["top"]] == [t["index"] for t in top]
        assert r["top"][0]["score"] == pytest.approx(top[0]["score"], abs=1e-5)


def test_resume_after_a_torn_write(mixed_folder, checkpoint, tmp_path):
    full = tmp_path / "full.jsonl"
    assert classify(str(mixed_folder), "--jsonl", str(full), *model_args(checkpoint)).returncode == 1
    lines = full.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:6]) + lines[6][: len(lines[6]) // 2])  # killed mid-line
    proc = classify(str(mixed_folder), "--jsonl", str(part), "--resume", *model_args(checkpoint))
    assert proc.returncode == 1, proc.stderr
    assert "6 already in" in proc.stderr
    recs = read_jsonl(part)  # every line parses: the torn one was cut
    assert [r["input"] for r in recs] == expected_order(mixed_folder)
    assert [("top" in r) for r in recs] == [("top" in r) for r in read_jsonl(full)]
    for a, b in zip(recs, read_jsonl(full)):
        if "top" in a:
            assert [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
    again = classify(str(mixed_folder), "--jsonl", str(part), "--resume", *model_args(checkpoint))
    assert again.returncode == 0 and "0 classified, 0 failed, 15 already in" in again.stderr
    assert len(read_jsonl(part)) == 15


def test_lines_stream_before_the_run_ends(photos, checkpoint, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for k in range(3):
        for i, p in enumerate(photos):
            (d / f"{k}_{i:03d}{p.suffix}").symlink_to(p)
    out = tmp_path / "stream.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipex_resnet",
            "classify",
            str(d),
            "--jsonl",
            str(out),
            "--batch-size",
            "8",
            *model_args(checkpoint),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    expected = 3 * len(photos)
    partial = []  # line counts seen while the process ran, before the last image
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        n = out.read_text().count("\n") if out.exists() else 0
        if 0 < n < expected:
            partial.append(n)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(read_jsonl(out)) == expected
    assert partial and partial[0] % 8 == 0, partial  # whole batches of lines on disk while it still ran
    assert len(set(partial)) > 3, partial  # and more, batch after batch


@pytest.mark.parametrize(
    "args,words",
    [
        (["--resume"], "--resume needs --jsonl"),
        (["--json", "--jsonl", "x.jsonl"], "exclusive"),
        (["--jsonl", "/nonexistent-dir/out.jsonl"], "cannot write /nonexistent-dir/out.jsonl"),
        (["--workers", "0", "--jsonl", "-"], "--workers must be at least 1"),
    ],
)
def test_bulk_bad_options_exit_2(args, words, photos, checkpoint):
    proc = classify(str(photos[0]), *args, *model_args(checkpoint))
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_empty_folder_is_a_setup_error(tmp_path):
    proc = classify(str(tmp_path))
    assert proc.returncode == 2 and "no images found" in proc.stderr
