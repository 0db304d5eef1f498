"""Cold start: process start -> first result (a fresh interpreter per round), with the split into
import, load (incl. optimization/compile) and first inference, and the child's peak RSS."""

import json
import subprocess
import sys
import time

import pytest

from conftest import REPO, no_peers, quick_no_inductor

pytestmark = pytest.mark.cold_start

CHILD = r"""
import time, sys, json
t0 = time.perf_counter()
import warnings; warnings.simplefilter("ignore")
import ipex_resnet
t_import = time.perf_counter()
clf = ipex_resnet.load(sys.argv[1], weights="none", backend=sys.argv[2], precision=sys.argv[3],
                       threads=int(sys.argv[4]))
t_load = time.perf_counter()
top = clf.predict([sys.argv[5]], topk=5)
t_first = time.perf_counter()
clf.predict([sys.argv[5]], topk=5)
t_second = time.perf_counter()
hwm = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import, "first_result_s": t_first - t_load,
                  "second_result_s": t_second - t_first, "peak_rss_mb": hwm, "top1": top[0][0]["label"]}))
"""


@no_peers
@quick_no_inductor
def test_cold_start(benchmark, ctx, path, large_jpeg, photos):
    benchmark.group = "cold-start"
    spec = ctx.spec(path)
    child: dict = {}

    def run():
        proc = subprocess.run([sys.executable, "-c", CHILD, ctx.model, spec.backend, spec.precision,
                               str(ctx.threads), str(photos[0])], capture_output=True, text=True, cwd=REPO,
                              timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"cold start of {path} failed: {proc.stderr.strip()[-800:]}")
        child.update(json.loads(proc.stdout.strip().splitlines()[-1]))

    t0 = time.perf_counter()
    benchmark.pedantic(run, rounds=1 if ctx.quick else 3, iterations=1)
    assert child["first_result_s"] > 0
    benchmark.extra_info.update({
        "path": path, "kind": "ipex_resnet", "backend": spec.backend, "precision": spec.precision,
        "process_to_first_result_s": benchmark.stats.stats.median,
        "import_s": child["import_s"], "load_s": child["load_s"],
        "first_inference_after_load_s": child["first_result_s"], "steady_state_s": child["second_result_s"],
        "cold_peak_rss_mb": child["peak_rss_mb"], "wall_s": time.perf_counter() - t0,
    })
