"""INT8 static quantization, one module per engine, each the engine's own recommended flow.

Every engine module exposes the same function::

    quantize(module, calibration, out_dir, *, threads, example, bf16=False, keep_float=()) -> dict

``module`` is the FP32 classifier (eval), ``calibration`` a list of float32 NCHW numpy batches
(preprocessed images, see :mod:`.calibration`), ``example`` one float32 NCHW batch (shapes for
export/tracing), ``out_dir`` an existing empty directory. It writes the engine's artifact with the
names the engine's loader reads (``model.pt2``, ``model.pt``, ``model.xml``+``model.bin``,
``model.onnx``) and returns a small dict describing the scheme, for the plan's description.

``keep_float`` names submodules (as in ``module.named_modules()``: ``"conv1"``, ``"layer1.0.conv2"``,
``"fc"``; a container keeps everything in it) to leave unquantized -- FP32, or BF16 where the flow
runs the rest in BF16 -- each engine with its own tool (Inductor ``set_module_name_qconfig(name,
None)``, IPEX's qconf summary, NNCF ``IgnoredScope``, ORT ``nodes_to_exclude``); an unknown name is
a :class:`ConfigError`. The info dict's ``kept_float`` lists the names actually kept (those owning
at least one op of the engine's graph). :mod:`.sensitivity` ranks the layers worth keeping.

=============  ====================================================================================
inductor       PT2E: strict ``torch.export`` -> ``X86InductorQuantizer`` -> ``prepare_pt2e`` ->
               calibrate -> ``convert_pt2e`` -> ``torch.export`` -> AOTInductor with freezing
ipex           ``ipex.quantization.prepare``/``convert`` -> ``torch.jit.trace`` + ``freeze``
openvino       NNCF ``nncf.quantize`` on the OpenVINO model read from the FP32 ONNX export
onnxruntime    ``quant_pre_process`` -> ``quantize_static`` (QDQ, per-channel, S8S8)
=============  ====================================================================================

:mod:`.accuracy` judges a quantized runner against the FP32 eager reference on held-out images and
gates it; :mod:`.evaluate` measures top-1/top-5 against labels; :mod:`.peers` has the INT8 peer
runners (OpenVINO+NNCF and ORT QDQ used as their docs show) for the benchmark.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.errors import ConfigError

ENGINES = ("inductor", "ipex", "openvino", "onnxruntime")


def engine_module(engine: str):
    """The quantization module of ``engine`` (imports only that engine's dependencies when called)."""
    if engine not in ENGINES:
        raise ConfigError(f"no INT8 quantization for engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return importlib.import_module(f"{__name__}.{engine}")


def quantize(
    engine: str,
    module,
    calibration,
    out_dir: Path,
    *,
    threads: int,
    example,
    bf16: bool = False,
    keep_float: Sequence[str] = (),
) -> dict[str, Any]:
    """Dispatch to ``engine``'s ``quantize`` (same arguments)."""
    return engine_module(engine).quantize(
        module, calibration, Path(out_dir), threads=threads, example=example, bf16=bf16, keep_float=keep_float
    )


__all__ = ["ENGINES", "engine_module", "quantize"]
