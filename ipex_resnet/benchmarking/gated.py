"""A bench run with its baseline: checked before anything is measured (:func:`prepare`), judged and saved
after (:func:`finish`). Shared by ``ipex-resnet bench --gate/--save-baseline`` and the pytest plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ipex_resnet.benchmarking import baseline as B
from ipex_resnet.benchmarking.gate import GateResult, gate
from ipex_resnet.benchmarking.gate_timing import method
from ipex_resnet.benchmarking.options import MEMORY_SLACK_MB, Settings
from ipex_resnet.errors import ConfigError

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2
EXIT_INCONCLUSIVE = 4  # no regression, but a change within the measured noise: not judged (3: targets not met)


@dataclass
class Prepared:
    directory: Path
    spec: dict
    machine_key: str | None = None
    baseline: dict | None = None

    @property
    def baseline_entries(self) -> list | None:
        """The ``--gate`` baseline's entries (what the gate's timing judges against while it measures)."""
        return self.baseline["benchmarks"] if self.baseline else None


@dataclass
class Outcome:
    """What the gate found (``result`` None without ``--gate``), its text lines, and the saved baseline."""

    result: GateResult | None = None
    lines: list[str] = field(default_factory=list)
    markdown: str = ""
    verdicts: dict[str, str] = field(default_factory=dict)
    saved: Path | None = None

    @property
    def ok(self) -> bool:
        return self.result is None or self.result.ok

    @property
    def inconclusive(self) -> bool:
        return self.result is not None and not self.result.regressions and bool(self.result.inconclusive)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_INCONCLUSIVE if self.inconclusive else EXIT_REGRESSION


def prepare(s: Settings) -> Prepared:
    """Find and read the ``--gate`` baseline before the run (ConfigError: unknown name, another machine key)."""
    p = Prepared(B.base_dir(s.baseline_dir), B.model_spec(s.model))
    if s.gate:
        p.machine_key = B.current_machine_key(s.threads)
        p.baseline = B.load(
            B.find(p.directory, p.machine_key, p.spec, s.gate),
            p.machine_key,
            p.spec,
            method(s.gate_rounds, s.gate_processes),
        )
    if s.summary_md:
        out_dir = Path(s.summary_md).resolve().parent
        if not out_dir.is_dir():
            raise ConfigError(f"--summary-md directory {str(out_dir)!r} does not exist")
    return p


def finish(p: Prepared, s: Settings, doc: dict) -> Outcome:
    """Judge ``doc`` against the prepared baseline, append the Markdown summary, then save ``--save-baseline``
    (only when the gate passed: a regressed run never replaces a good baseline)."""
    from ipex_resnet.benchmarking import verdict as V

    if (s.gate or s.save_baseline) and (doc.get("gate") or {}).get("error"):
        raise ConfigError(f"the gate could not time this run: {doc['gate']['error']}")
    current = V.entries(doc)
    out = Outcome()
    if p.baseline is not None:
        if doc["machine_key"] != p.machine_key:
            raise ConfigError(
                f"this run's machine key {doc['machine_key']} is not {p.machine_key}, the one the "
                "baseline was checked against"
            )
        old = p.baseline["benchmarks"]
        out.result = gate(current, old, time_tolerance=s.time_tolerance, memory_tolerance=s.memory_tolerance)
        out.verdicts = V.verdicts(out.result, current, old)
        out.lines = V.lines(
            out.result, out.verdicts, p.baseline, (s.time_tolerance, s.memory_tolerance, MEMORY_SLACK_MB)
        )
        out.markdown = V.markdown(out.result, out.verdicts, p.baseline, doc)
        if s.summary_md:
            with open(s.summary_md, "a") as f:
                f.write(out.markdown + "\n")
    if s.save_baseline:
        if out.ok:
            out.saved = B.save(
                p.directory, s.save_baseline, doc, p.spec, current, method(s.gate_rounds, s.gate_processes)
            )
            out.lines.append(f"baseline {s.save_baseline!r} saved: {out.saved}")
            out.lines += V.baseline_noise(current, s.time_tolerance)
        else:
            why = "inconclusive" if out.inconclusive else "failed"
            out.lines.append(f"baseline {s.save_baseline!r} NOT saved: the gate {why}")
    return out


__all__ = ["EXIT_INCONCLUSIVE", "EXIT_OK", "EXIT_REGRESSION", "EXIT_USAGE", "Outcome", "Prepared", "finish", "prepare"]
