"""``ipex-resnet compare``: reports from a real (small) bench run, side by side, labelled per machine,
with a PNG chart; bad inputs are one-line errors."""

from __future__ import annotations

import copy
import json
import re

import pytest

from ipex_resnet.benchmarking import compare as C
from ipex_resnet.benchmarking import report as R
from ipex_resnet.benchmarking.options import Settings
from ipex_resnet.benchmarking.run import run_report
from ipex_resnet.cli import main as cli_main

pytestmark = pytest.mark.any_stack


@pytest.fixture(scope="module")
def report_doc() -> dict:
    """A real report: eager FP32 only, batch 1 and 2, a tiny timing budget, no subprocess phase."""
    return run_report(
        Settings(
            backends=["eager"],
            precisions=["fp32"],
            peers=[],
            batch_sizes=[1, 2],
            quick=True,
            budget=0.3,
            alone_budget=0,
            cold_start=False,
            threads=1,
        )
    )


@pytest.fixture
def two_reports(report_doc, tmp_path):
    here = tmp_path / "here.json"
    here.write_text(json.dumps(report_doc))
    other = copy.deepcopy(report_doc)  # the same run, relabelled as another SKU, stack and thread count
    other["cpu"]["model_name"] = "Intel(R) Xeon(R) Platinum 8480+"
    other["cpu"]["isa_level"] = "avx512_core_amx"
    other["versions"]["torch"] = "2.99.0"
    other["versions"]["intel_extension_for_pytorch"] = None
    other["threads"]["used"] = 56
    other["paths"]["eager/fp32"]["throughput"]["2"] *= 4
    there = tmp_path / "there.json"
    there.write_text(json.dumps(other))
    return here, there


def test_report_table_and_targets_are_consistent(report_doc):
    text = R.format_table(report_doc)
    assert "eager/fp32" in text and report_doc["cpu"]["model_name"] in text and "(crop 224)" in text
    # no peer ran: only the input pipeline's targets (of the one path there is), with their bounds
    names = [t["name"] for t in report_doc["targets"]]
    assert len(names) == 3 and "no peer ran" in text, names
    assert all(t["ours"] == "eager/fp32" and t["peer"] == "model only" for t in report_doc["targets"])
    assert names[0].startswith("JPEG -> top-5 end to end, 500x375") and names[2].startswith("bulk classify")
    assert report_doc["targets"][0]["bound"] > 1 and "input 500x375 (one core, p50): preprocess fast" in text
    assert "alone" not in report_doc["paths"]["eager/fp32"] and report_doc["cold_start"] == {}


def test_old_reports_still_load_with_peer_rows_marked(report_doc, tmp_path):
    old = copy.deepcopy(report_doc)
    old["schema"] = "ipex_resnet.bench/1"
    old["paths"]["openvino/fp32"] = {**copy.deepcopy(old["paths"]["eager/fp32"]), "kind": "peer"}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(old))
    doc = C.load_report(p)
    assert "openvino/fp32 (peer)" in doc["paths"] and "openvino/fp32" not in doc["paths"]
    assert "eager/fp32" in doc["paths"]


def test_labels_keep_machines_apart(two_reports):
    docs = [C.load_report(p) for p in two_reports]
    labs = C.labels(docs)
    assert labs[0] != labs[1]
    assert "Platinum 8480+" in labs[1] and "torch 2.99.0" in labs[1] and "56 thr" in labs[1]
    assert "IPEX" not in labs[1]
    diff = C.differences(docs)
    here, there = C.identity(docs[0]), C.identity(docs[1])
    # the other machine is an AMX Xeon: its ISA differs from this one's unless this one has AMX too
    assert set(diff) == {"cpu", "torch", "threads"} | ({"isa"} if here["isa"] != there["isa"] else set()) | (
        {"ipex"} if docs[0]["versions"].get("intel_extension_for_pytorch") else set()
    )
    # two identical reports are numbered, never merged
    same = C.labels([docs[0], docs[0]])
    assert same[0].endswith("#1") and same[1].endswith("#2")


def test_compare_cli_prints_table_and_writes_png(two_reports, tmp_path, capsys):
    png = tmp_path / "chart.png"
    assert cli_main(["compare", str(two_reports[0]), str(two_reports[1]), "--output", str(png)]) == 0
    out = capsys.readouterr().out
    assert "reports differ in: cpu" in out and "[1]" in out and "[2]" in out
    row = next(line for line in out.splitlines() if line.startswith("eager/fp32"))
    cells = row.split()
    assert float(cells[4]) == pytest.approx(4 * float(cells[3]), rel=0.01)  # img/s b2: [2] is 4x [1]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ("{not json", "is not JSON"),
        ('{"schema": "something else", "paths": {}}', "is not an ipex-resnet bench report"),
    ],
)
def test_compare_bad_inputs_are_one_line_errors(tmp_path, capsys, content, message):
    p = tmp_path / "r.json"
    if content is not None:
        p.write_text(content)
    assert cli_main(["compare", str(p), "--no-chart"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_compare_prices_the_best_path_per_million_images(two_reports, tmp_path, capsys):
    """A priced report: its best path's cost per million images at its Offline rate; unpriced: "no price"."""
    here, there = two_reports
    priced = json.loads(there.read_text())
    priced["price_per_hour_usd"] = 3.6
    priced["scenarios"] = {"path": "eager/fp32", "p99_ms_bound": 100.0, "service": {"capacity_qps": 50.0}}
    there.write_text(json.dumps(priced))
    docs = [C.load_report(p) for p in two_reports]
    best = C.best_offline(docs[1])
    rate = priced["paths"]["eager/fp32"]["throughput"]["2"]  # batch sizes 1, 2: the Offline batch is 2
    assert best["path"] == "eager/fp32" and best["batch"] == 2 and best["img_per_s"] == pytest.approx(rate)
    assert best["cost_per_million"] == pytest.approx(3.6 / (rate * 3600) * 1e6)
    assert best["served_qps"] == 50.0 and best["served_cost_per_million"] == pytest.approx(3.6 / (50 * 3600) * 1e6)
    assert C.best_offline(docs[0])["cost_per_million"] is None and C.best_offline(docs[0])["served_qps"] is None
    assert C.cost_per_million(1.0, 1e6 / 3600) == pytest.approx(1.0)  # 1 USD/h at 1M images/h: 1 USD
    assert C.offline_batch({"batch_sizes": [1, 8, 32, 64]}) == 32 and C.offline_batch({"batch_sizes": [1, 8]}) == 8
    png = tmp_path / "chart.png"
    assert cli_main(["compare", str(here), str(there), "--output", str(png)]) == 0
    out = capsys.readouterr().out
    row1 = next(line for line in out.splitlines() if line.startswith("[1] ") and "b2" in line)
    row2 = next(line for line in out.splitlines() if line.startswith("[2] ") and "b2" in line)
    cells1, cells2 = (re.split(r"\s{2,}", row.strip()) for row in (row1, row2))
    assert cells1[1] == "eager/fp32 b2" and cells1[3:] == ["no price", "no price", "not measured", "-"], cells1
    assert float(cells2[3]) == pytest.approx(3.6) and float(cells2[4]) == pytest.approx(
        best["cost_per_million"], rel=1e-3
    )
    assert cells2[5] == "50.0 (eager/fp32, <= 100 ms)" and float(cells2[6]) == pytest.approx(20.0, rel=1e-3), cells2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_best_path_ignores_peers(report_doc):
    doc = copy.deepcopy(report_doc)
    doc["price_per_hour_usd"] = 1.0
    doc["paths"]["onnxruntime/fp32 (peer)"] = {**copy.deepcopy(doc["paths"]["eager/fp32"]), "kind": "peer"}
    doc["paths"]["onnxruntime/fp32 (peer)"]["throughput"]["2"] *= 10
    assert C.best_offline(doc)["path"] == "eager/fp32"


def test_report_records_no_price_unless_given(report_doc):
    assert report_doc["price_per_hour_usd"] is None


@pytest.mark.parametrize("price", ["0", "-2.5", "nan"])
def test_bench_bad_price_is_one_line_error(capsys, price):
    assert cli_main(["bench", "--quick", "--price-per-hour", price]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --price-per-hour must be a positive number") and "\n" not in err, err
