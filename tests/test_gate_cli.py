"""The gate as a user runs it: docs/ci.md's workflow commands (``ipex-resnet bench ... --save-baseline main``
and ``--gate main --summary-md "$GITHUB_STEP_SUMMARY"``) in subprocesses on a tiny model of the user's own
package, and the pytest plugin's ``ipex_resnet_bench`` fixture from a user's test file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from user_repo import PRESET, sh, user_repo  # noqa: F401 - user_repo is a fixture

pytestmark = pytest.mark.any_stack

REPO = Path(__file__).resolve().parents[1]


def recipe_commands() -> dict[str, str]:
    """The workflow's ``run: ipex-resnet bench ...`` lines in docs/ci.md, by what they do."""
    lines = re.findall(r"^\s*run: (ipex-resnet bench .*)$", (REPO / "docs" / "ci.md").read_text(), re.M)
    save = [c for c in lines if "--save-baseline main" in c]
    gate = [c for c in lines if "--gate main" in c and '--summary-md "$GITHUB_STEP_SUMMARY"' in c]
    assert len(save) == 1 and len(gate) == 1, lines
    return {"save": save[0], "gate": gate[0]}


def saved_baseline(root: Path) -> Path:
    files = list((root / "cache" / "baselines").glob("*/*/main.json"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.slow
def test_ci_recipe_saves_passes_catches_and_refuses(user_repo):
    root, _ = user_repo
    cmd = recipe_commands()
    save = sh(user_repo, cmd["save"] + " --price-per-hour 1.25")
    assert save.returncode == 0, save.stdout[-2000:] + save.stderr[-2000:]
    path = saved_baseline(root)
    base = json.loads(path.read_text())
    report = json.loads((root / "bench-report.json").read_text())
    assert path.parent.parent.name == base["machine_key"] == report["machine_key"]
    assert base["model_spec"]["model"] == "mypkg.net:build" and report["price_per_hour_usd"] == 1.25
    assert {b["fullname"] for b in base["benchmarks"]} >= {
        "onnxruntime/fp32 b1",
        "onnxruntime/fp32 b2",
        "eager/fp32 memory",
    }
    assert f"baseline 'main' saved: {path}" in save.stdout
    # the gate's own timing: paired calls in 3+ fresh 1-thread processes, their median, at b1 and the run's batch 2
    g = report["gate"]
    assert (g["estimator"], g["threads"], g["rounds"]) == ("median-of-processes", 1, 32) and g["processes"] >= 3
    assert len(g["per_process"]) == g["processes"] and set(g["ratios"]["onnxruntime/fp32"]) == {"1", "2"}
    assert (
        len(g["process_ratios"]["onnxruntime/fp32"]["1"]) == g["processes"] and g["noise"]["onnxruntime/fp32"]["1"] >= 0
    )
    assert base["gate_method"] == {"estimator": "median-of-processes", "threads": 1, "rounds": 32, "processes": 3}
    b1 = next(b for b in base["benchmarks"] if b["fullname"] == "onnxruntime/fp32 b1")["extra_info"]
    assert b1["process_ratios"] == g["process_ratios"]["onnxruntime/fp32"]["1"]  # the baseline keeps its spread

    same = sh(user_repo, cmd["gate"])
    if same.returncode in (1, 4):  # timing noise: one retry
        same = sh(user_repo, cmd["gate"])
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-2000:]
    assert "onnxruntime/fp32: PASS" in same.stdout and same.stdout.rstrip().endswith("gate: PASS")
    # "vs N": the baseline's own processes (--save-baseline takes more while its floor is above the tolerance)
    assert re.search(
        rf"b1: [+-]\d+\.\d% \(median of \d+ processes vs {len(b1['process_ratios'])}\); noise floor \d+\.\d%; smallest slowdown "
        r"it could detect: \d+\.\d%",
        same.stdout,
    ), same.stdout
    assert "ipex-resnet gate: PASS" in (root / "summary.md").read_text()

    (root / "summary.md").unlink()
    slow = sh(user_repo, cmd["gate"], IPEX_RESNET_BENCH_SLOWDOWN="0.5")
    assert slow.returncode == 1, slow.stdout[-3000:] + slow.stderr[-2000:]
    assert "onnxruntime/fp32: REGRESSION" in slow.stdout and "gate: FAIL" in slow.stdout
    md = (root / "summary.md").read_text()
    assert "ipex-resnet gate: FAIL" in md and "| path | metric | baseline | now | ratio | noise floor | verdict |" in md
    row = next(line for line in md.splitlines() if line.startswith("| onnxruntime/fp32 b1 |"))
    # past the gate's 20% tolerance (a 50% spin measured 1.28x on a shared AVX2 box: the ratio is to a noisy reference)
    assert "**REGRESSION**" in row and float(row.split("|")[5].strip().rstrip("x")) > 1.2, row
    assert json.loads(path.read_text()) == base  # --gate alone never touches the baseline

    _noisy_baseline_is_inconclusive(user_repo, cmd, path, base)
    _refuses_another_timing(user_repo, cmd, path, base)
    _refuses_other_machine_key(user_repo, cmd, path, base)


def _noisy_baseline_is_inconclusive(user_repo, cmd, path: Path, base: dict) -> None:
    """A baseline whose processes disagree by tens of percent: a real 50% slowdown, measured past the 20%
    tolerance but within that noise floor, is INCONCLUSIVE (exit 4), never REGRESSION, after the gate took
    more processes within --gate-budget; the baseline is left alone."""
    noisy = json.loads(json.dumps(base))
    for b in noisy["benchmarks"]:
        r = b["extra_info"].get("process_ratios")
        if r:
            m = sorted(r)[len(r) // 2]
            b["extra_info"]["process_ratios"] = [m * 0.5, m, m * 2.0]
    path.write_text(json.dumps(noisy))
    proc = sh(user_repo, cmd["gate"] + " --gate-budget 60", IPEX_RESNET_BENCH_SLOWDOWN="0.5")
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "onnxruntime/fp32: INCONCLUSIVE" in proc.stdout and "REGRESSION" not in proc.stdout
    assert "gate: INCONCLUSIVE" in proc.stdout and "To judge it: a larger --gate-budget" in proc.stdout
    assert json.loads((user_repo[0] / "bench-report.json").read_text())["gate"]["processes"] > 3  # it took more
    assert "INCONCLUSIVE" in (user_repo[0] / "summary.md").read_text()
    assert json.loads(path.read_text()) == noisy
    path.write_text(json.dumps(base))


def _refuses_another_timing(user_repo, cmd, path: Path, base: dict) -> None:
    """A baseline saved by the older gate (ratio of minimums, no ``gate_method``) is refused, not misjudged."""
    path.write_text(json.dumps({k: v for k, v in base.items() if k != "gate_method"}))
    refused = sh(user_repo, cmd["gate"])
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and "was timed by an older gate (ratio of minimums)" in err[0], err
    assert "save it again with --save-baseline" in err[0] and refused.stdout == ""
    path.write_text(json.dumps(base))


def _refuses_other_machine_key(user_repo, cmd, path: Path, base: dict) -> None:
    other = "amd-epyc-9654_avx512_core_bf16_torch2.8.0_ipex2.8.0_t1"
    path.write_text(json.dumps({**base, "machine_key": other}))
    refused = sh(user_repo, cmd["gate"])
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    err = refused.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: baseline 'main' is from machine key " + other), err
    assert f"this run is machine key {base['machine_key']}" in err[0] and refused.stdout == ""
    # the same baseline stored under the other machine key's directory only: refused the same way
    moved = path.parent.parent.parent / other / path.parent.name
    moved.mkdir(parents=True)
    path.rename(moved / "main.json")
    refused = sh(user_repo, cmd["gate"])
    assert refused.returncode == 2 and refused.stderr.strip().startswith(
        f"error: baseline 'main' is from machine key {other}, this run is machine key {base['machine_key']}"
    )


@pytest.mark.parametrize(
    "extra, words",
    [
        ("--gate nothing-saved", "no baseline 'nothing-saved' for model mypkg.net:build on machine key"),
        ("--save-baseline 'a/b'", "--save-baseline 'a/b': a baseline name is"),
        ("--summary-md out.md", "--summary-md needs --gate"),
        ("--time-tolerance -1", "--time-tolerance must be 0 or more"),
        ("--gate-processes 0", "--gate-processes must be a whole number from 1 to 1000"),
        ("--gate-rounds 2", "--gate-rounds must be a whole number from 4 to 1000"),
        ("--gate-budget -1", "--gate-budget must be a number of seconds from 0 to 86400"),
    ],
)
def test_usage_errors_exit_2_in_one_line(user_repo, tmp_path, extra, words):
    proc = sh(user_repo, f"ipex-resnet bench $BENCH_ARGS --baseline-dir {tmp_path} {extra}")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr


USER_TEST = """
def test_tiny_model(ipex_resnet_bench):
    run = ipex_resnet_bench("mypkg.net:build", preset=PRESET, quick=True, backends="eager,onnxruntime",
                            precisions="fp32", peers="none", batch_sizes="2", budget=0.5, alone_budget=0,
                            no_cold_start=True, threads=1, time_tolerance=0.2)
    assert run.report["model"] == "mypkg.net:build" and "onnxruntime/fp32" in run.report["paths"]
    print("VERDICTS", run.verdicts, "SAVED", run.saved)
"""


@pytest.mark.slow
def test_pytest_plugin_fixture_saves_and_gates(user_repo, tmp_path):
    root, _ = user_repo
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "test_speed.py").write_text(f"PRESET = {PRESET!r}\n" + USER_TEST)
    plugin = (
        []
        if any(e.value == "ipex_resnet.benchmarking.pytest_plugin" for e in entry_points(group="pytest11"))
        else ["-p", "ipex_resnet.benchmarking.pytest_plugin"]
    )
    base = (
        f"{sys.executable} -m pytest -q -s -p no:cacheprovider {' '.join(plugin)} test_speed.py "
        f"--ipex-resnet-baseline-dir {tmp_path / 'baselines'}"
    )

    def run(extra: str, **env):
        return subprocess.run(
            ["bash", "-c", f"{base} {extra}"],
            cwd=proj,
            env={**user_repo[1], **env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    saved = run("--ipex-resnet-save-baseline main")
    assert saved.returncode == 0, saved.stdout[-3000:] + saved.stderr[-2000:]
    assert len(list((tmp_path / "baselines").glob("*/*/main.json"))) == 1
    gated = run("--ipex-resnet-gate main")
    if gated.returncode == 1:  # timing noise: one retry
        gated = run("--ipex-resnet-gate main")
    assert gated.returncode == 0, gated.stdout[-3000:]
    assert "'onnxruntime/fp32': 'PASS'" in gated.stdout and "gate: PASS" in gated.stdout
    slow = run("--ipex-resnet-gate main", IPEX_RESNET_BENCH_SLOWDOWN="0.5")
    assert slow.returncode == 1, slow.stdout[-3000:]
    assert "regression against the baseline" in slow.stdout and "REGRESSION onnxruntime/fp32 b1" in slow.stdout
