"""ONNX Runtime INT8: ``quantize_static`` in QDQ format, per-channel, S8S8 (``model.onnx``).

The flow from ONNX Runtime's quantization guide: FP32 ONNX export -> ``quant_pre_process`` (shape
inference + graph optimization, so Conv+BN are fused before calibration) -> ``quantize_static`` with
a ``CalibrationDataReader`` over the calibration images (MinMax calibration, the default), QDQ
format, per-channel weights, signed int8 activations and weights (S8S8, the guide's default for
x86 with VNNI).

``keep_float`` leaves submodules unquantized with ``quantize_static``'s own ``nodes_to_exclude``:
the ONNX nodes of a submodule are found by their scope names (``/layer1/layer1.0/conv2/Conv`` is
``layer1.0.conv2``, see :func:`._common.scope_owner`) on the pre-processed graph that
``quantize_static`` sees, so their weights get no QuantizeLinear/DequantizeLinear. Their activation
inputs must stay float too (as in the other engines, where a layer's input quantization belongs to
the layer): ORT quantizes a Conv's *output* tensor for all its readers, so the op types producing
the kept nodes' inputs go to ``extra_options["OpTypesToExcludeOutputQuantization"]`` -- the quantized
consumers still quantize those tensors as their own inputs (measured on ResNet-18: the same
QLinearConv fusion and latency as without).
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from ipex_resnet.errors import BackendUnavailable
from ipex_resnet.quantization._common import (
    check_calibration,
    check_keep_float,
    count,
    images,
    module_names,
    owned_by,
    reduced_range_here,
)
from ipex_resnet.util.deps import dist_version, first_missing

ARTIFACT = "model.onnx"
HINT = "pip install onnxruntime onnx onnxscript (or pip install 'ipex_resnet[int8]')"


def status() -> tuple[bool, str]:
    gone = first_missing("onnxruntime", "onnx")
    if gone:
        return False, f"{gone} is not installed; {HINT}"
    return True, f"onnxruntime {(dist_version('onnxruntime') or '?')} quantize_static (QDQ, S8S8)"


def excluded_nodes(onnx_path: Path, keep_float: Sequence[str], known: Collection[str]) -> dict[str, list[str]]:
    """``{submodule: [its ONNX node names]}`` for the ``keep_float`` submodules found in the graph."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return owned_by((n.name for n in graph.node if n.name), keep_float, known)


# ops ORT quantizes "through" (their output takes the input's quantization, Relu/Clip are even folded
# into it): the float input of a kept node is looked for above them
_PASS_THROUGH = {"Relu", "Clip", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "MaxPool"}


def input_producers(onnx_path: Path, nodes: Collection[str]) -> set[str]:
    """The op types that produce the activation inputs of ``nodes`` (looking through pass-through ops).
    ORT's QDQ recipe quantizes a Conv's (Gemm's, Add's, ...) *output* tensor, which every consumer then
    reads through DequantizeLinear -- excluded nodes included; ``OpTypesToExcludeOutputQuantization``
    with these types leaves those tensors to their consumers, so a kept node reads them in float while
    quantized consumers still quantize their own inputs."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    init = {i.name for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    types: set[str] = set()
    todo = [i for n in graph.node if n.name in nodes for i in n.input if i and i not in init]
    seen: set[str] = set()
    while todo:
        tensor = todo.pop()
        node = producer.get(tensor)
        if node is None or node.name in seen or node.op_type == "Constant":
            continue
        seen.add(node.name)
        types.add(node.op_type)
        if node.op_type in _PASS_THROUGH:
            todo.extend(i for i in node.input[:1] if i and i not in init)
    return types


def _calibration_reader(base: type, batches, name: str):
    """ORT's calibration reader over ``batches``: one image at a time, under the graph's input ``name``."""

    class Reader(base):  # ORT's CalibrationDataReader, imported by the caller
        def __init__(self) -> None:
            self.items = images(batches)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {name: item}

    return Reader()


def _scheme(reduce: bool, kept: int) -> str:
    return (
        "static QDQ (MinMax): per-channel int8 weights"
        + (" in 7 bits (reduce_range: no VNNI or AMX)" if reduce else "")
        + ", per-tensor int8 activations (S8S8)"
        + (f", {kept} submodule(s) kept in FP32" if kept else "")
    )


def quantize_onnx(
    fp32_onnx: Path,
    calibration,
    out_path: Path,
    *,
    keep_float: Sequence[str] = (),
    known: Collection[str] = (),
    reduce_range: bool | None = None,
) -> dict[str, Any]:
    """Quantize an FP32 ONNX file to ``out_path`` (QDQ, per-channel, S8S8). ``keep_float`` names
    submodules (``known`` holds every submodule name of the exported module) to leave in FP32.
    ``reduce_range`` (7-bit weights) defaults to on for a CPU without VNNI or AMX."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )
    except ImportError:
        raise BackendUnavailable(f"ONNX Runtime INT8 needs onnxruntime: {HINT}") from None
    batches = check_calibration(calibration)
    reduce = reduced_range_here() if reduce_range is None else bool(reduce_range)

    import onnx

    name = onnx.load(str(fp32_onnx), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ort_q_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        excluded = excluded_nodes(pre, keep_float, known) if keep_float else {}
        nodes = [n for ns in excluded.values() for n in ns]
        extra = {"OpTypesToExcludeOutputQuantization": sorted(input_producers(pre, set(nodes)))} if nodes else {}
        quantize_static(
            str(pre),
            str(out_path),
            _calibration_reader(CalibrationDataReader, batches, name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes,
            extra_options=extra,
        )
    return {
        "scheme": _scheme(reduce, len(excluded)),
        "tool": f"onnxruntime {(dist_version('onnxruntime') or '?')}",
        "calibration_images": count(batches),
        "kept_float": list(excluded),
        "reduce_range": reduce,
    }


def quantize(
    module, calibration, out_dir: Path, *, threads: int, example, bf16: bool = False, keep_float: Sequence[str] = ()
) -> dict[str, Any]:
    from ipex_resnet.export.onnx import export_onnx

    check_calibration(calibration)
    keep = check_keep_float(module, keep_float)
    crop = int(check_calibration([example])[0].shape[-1])
    with tempfile.TemporaryDirectory(prefix="ipex_resnet_ort_fp32_") as tmp:
        fp32 = export_onnx(module, Path(tmp) / "fp32.onnx", crop=crop)
        info = quantize_onnx(fp32, calibration, Path(out_dir) / ARTIFACT, keep_float=keep, known=module_names(module))
    info["bf16"] = False  # ORT's CPU provider has no BF16 path for these ops
    return info
