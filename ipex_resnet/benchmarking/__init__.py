"""Benchmarking: ``ipex-resnet bench``, ``ipex-resnet compare`` and the toolkit the pytest-benchmark
suites in ``bench/`` share, one concern per module:

=============  ===================================================================================
options        every option declared once (the CLI's ``--X`` and pytest's ``--bench-X``) -> Settings
matrix         the paths: engines x the precisions each runs natively here, + the peer rows
peers          peer runtimes used directly as their docs show; pluggable (``register``)
paths          loading one path (``load()`` / a peer), with load time and peak RSS
inputs         random batches at the preset's crop size, synthetic / real JPEGs, INT8 calibration
timing         quantiles, interleaved timing, ratio estimators, the injected slowdown
memory         peak RSS of a block (kernel high-water mark) or of a child process
isolated       one path alone in a fresh process (latency b1 + largest-batch throughput)
coldstart      ``classify`` in a fresh process with a warm artifact cache: time to top-5, peak RSS
machine        versions, thread settings, the machine key that separates baselines
gate           the regression gate over pytest-benchmark results
verdict        a bench report as the gate's entries; the verdicts as text and a Markdown table
baseline       saved baselines, per machine key and model spec (``--save-baseline`` / ``--gate``)
gated          a bench run with its baseline: checked before, judged and saved after
pytest_plugin  the ``ipex_resnet_bench`` fixture for users' own tests (entry point ``pytest11``)
report         ratios, targets and the table; ``run``: the bench run; ``cli``: ``ipex-resnet bench``
streams        the report's streams x threads row (batch-1 throughput with every stream busy)
loadgen        MLCommons LoadGen: its settings, the queued SUT, the Server search
scenarios      the LoadGen scenarios run: SingleStream, Offline, Server in process and against servers
scenario_report  the scenarios' targets and their section of the text report
service_metrics  the service's /metrics histograms before and after a served-scenario step
serve_tune     ``ipex-resnet serve --tune``: candidate settings measured with LoadGen against the service
compare        ``ipex-resnet compare``: reports side by side, cost per million images, a PNG chart
=============  ===================================================================================

Importing this package imports no engine library (torch, OpenVINO, ONNX Runtime, matplotlib).
"""
