"""pytest plugin (entry point ``pytest11``: installed with ipex_resnet, active in every pytest run): the
``ipex_resnet_bench`` fixture benchmarks *your* model in your own test files and judges it with the same
gate as ``ipex-resnet bench --gate``::

    def test_my_model_is_not_slower(ipex_resnet_bench):
        run = ipex_resnet_bench("mypkg.net:build", weights="model.pth", preset={"crop_size": 64},
                                backends="eager,onnxruntime", precisions="fp32", quick=True)
        assert run.report["paths"]["onnxruntime/fp32"]["throughput"]["8"] > 100

    python -m pytest --ipex-resnet-save-baseline main     # on main
    python -m pytest --ipex-resnet-gate main              # on a PR: the test fails on a regression

With a gate or a baseline to save, the fixture times the gate's paired calls in fresh single-threaded
processes as the CLI does (``gate_rounds=``, ``gate_processes=``; docs/ci.md).

Options (all ``--ipex-resnet-``, never clashing with ipex_resnet's own ``--bench-`` suites):
``save-baseline NAME``, ``gate NAME``, ``baseline-dir DIR``, ``summary-md FILE``. The fixture's
``save_baseline=``/``gate=``/``baseline_dir=`` arguments win over them. Nothing heavy is imported until
the fixture runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PREFIX = "--ipex-resnet-"
PLUGIN_OPTIONS = ("save_baseline", "gate", "baseline_dir", "summary_md")
METAVARS = {"save_baseline": "NAME", "gate": "NAME", "baseline_dir": "DIR", "summary_md": "FILE"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ipex_resnet", "ipex_resnet benchmarks of your model (the ipex_resnet_bench fixture)")
    helps = {
        "save_baseline": "save each ipex_resnet_bench run as baseline NAME (per machine key and model spec)",
        "gate": "judge each ipex_resnet_bench run against baseline NAME; a regression fails the test",
        "baseline_dir": "where baselines live (default: <artifact cache root>/baselines)",
        "summary_md": "append the gate's verdicts as Markdown to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    }
    for dest in PLUGIN_OPTIONS:
        group.addoption(
            PREFIX + dest.replace("_", "-"),
            dest="ipex_resnet_" + dest,
            default=None,
            metavar=METAVARS[dest],
            help=helps[dest],
        )


@dataclass
class BenchRun:
    """One fixture call: the report (as ``ipex-resnet bench`` writes it), the gate's verdicts per path
    (empty without a gate), its text lines, and where the baseline was saved (None when not)."""

    report: dict[str, Any]
    verdicts: dict[str, str]
    lines: list[str]
    saved: Path | None = None
    ok: bool = True
    inconclusive: bool = False


def _preset_options(preset: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """``preset``: a dict (the JSON form) or a path to a preset JSON file -> the bench options."""
    if preset is None or isinstance(preset, str):
        return {"preset": preset}
    keys = {
        "resize_size": "resize",
        "crop_size": "crop",
        "mean": "mean",
        "std": "std",
        "interpolation": "interpolation",
    }
    unknown = set(preset) - set(keys)
    if unknown:
        raise pytest.UsageError(f"ipex_resnet_bench: unknown preset field(s) {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for field, opt in keys.items():
        v = preset.get(field)
        if isinstance(v, (list, tuple)):
            v = v[0] if opt in ("resize", "crop") else ",".join(str(x) for x in v)
        out[opt] = str(v) if opt in ("mean", "std") and v is not None else v
    return out


def _raw(
    config: pytest.Config,
    model: str,
    weights: str,
    preset: Mapping[str, Any] | str | None,
    gate_args: Mapping[str, str | None],
    options: Mapping[str, Any],
) -> dict[str, Any]:
    from ipex_resnet.benchmarking.options import OPTIONS

    known = {o.dest for o in OPTIONS} | {"no_cold_start", "no_progress"}
    unknown = set(options) - known
    if unknown:
        raise pytest.UsageError(
            f"ipex_resnet_bench: unknown option(s) {', '.join(sorted(unknown))}; choose from {', '.join(sorted(known))}"
        )
    raw: dict[str, Any] = {
        "no_progress": True,
        **options,
        "model": model,
        "weights": weights,
        **_preset_options(preset),
    }
    for dest in PLUGIN_OPTIONS:
        given = gate_args.get(dest)
        raw[dest] = given if given is not None else config.getoption("ipex_resnet_" + dest)
    return raw


def _run(raw: dict[str, Any]) -> BenchRun:
    from ipex_resnet.benchmarking import gated
    from ipex_resnet.benchmarking.options import settings
    from ipex_resnet.benchmarking.run import Progress, run_report
    from ipex_resnet.errors import ConfigError

    try:
        s = settings(raw)
        prepared = gated.prepare(s)
    except ConfigError as exc:
        pytest.fail(f"ipex_resnet_bench: error: {exc}", pytrace=False)
    doc = json.loads(
        json.dumps(run_report(s, Progress(enabled=s.progress), baseline=prepared.baseline_entries), default=str)
    )
    try:
        outcome = gated.finish(prepared, s, doc)
    except ConfigError as exc:
        pytest.fail(f"ipex_resnet_bench: error: {exc}", pytrace=False)
    return BenchRun(
        report=doc,
        verdicts=outcome.verdicts,
        lines=outcome.lines,
        saved=outcome.saved,
        ok=outcome.ok,
        inconclusive=outcome.inconclusive,
    )


@pytest.fixture
def ipex_resnet_bench(request: pytest.FixtureRequest) -> Callable[..., BenchRun]:
    """``ipex_resnet_bench(model, *, weights="none", preset=None, save_baseline=None, gate=None,
    baseline_dir=None, summary_md=None, **options)`` -> :class:`BenchRun`. ``options`` are
    ``ipex-resnet bench``'s, by their Python names (``backends="eager,onnxruntime"``, ``batch_sizes="8"``,
    ``budget=2``, ``alone_budget=0``, ``no_cold_start=True``, ``threads=1``, ``time_tolerance=0.1`` ...).
    A regression against the gate's baseline fails the test, listing each one; an inconclusive gate (a
    change within the measured noise) skips it, saying what it measured and what to change."""
    config = request.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def bench(
        model: str = "resnet18",
        *,
        weights: str = "none",
        preset: Mapping[str, Any] | str | None = None,
        save_baseline: str | None = None,
        gate: str | None = None,
        baseline_dir: str | None = None,
        summary_md: str | None = None,
        **options: Any,
    ) -> BenchRun:
        gate_args = {
            "save_baseline": save_baseline,
            "gate": gate,
            "baseline_dir": baseline_dir,
            "summary_md": summary_md,
        }
        run = _run(_raw(config, model, weights, preset, gate_args, options))
        if reporter is not None:
            for line in run.lines:
                reporter.write_line(f"ipex_resnet_bench [{model}] {line}")
        if run.inconclusive:  # not a pass and not a regression: a skip that says why
            pytest.skip(
                "ipex_resnet_bench: gate inconclusive (a change within the measured noise)\n" + "\n".join(run.lines)
            )
        if not run.ok:
            pytest.fail("ipex_resnet_bench: regression against the baseline\n" + "\n".join(run.lines), pytrace=False)
        return run

    return bench


__all__ = ["BenchRun", "ipex_resnet_bench", "pytest_addoption"]
