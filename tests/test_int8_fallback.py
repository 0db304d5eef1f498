"""Accuracy-aware INT8 building blocks: ``keep_float`` on every engine, and the sensitivity ranking.

Real engines, real photos: the BN-calibrated test ResNet-18 is calibrated on images from one half of
the photos and judged on images from the other half. Each engine's *artifact* is opened to check that
the kept layers really run unquantized (and the others quantized), and the runner still agrees with
FP32. A "hostile" copy of the model -- mathematically the same function, but one layer's input has
a channel 256x larger than the rest and that layer's weights for it 256x smaller, the classic
outlier that per-tensor activation / per-channel weight INT8 cannot represent -- must be ranked
first by :func:`rank_layers`, and keeping just that layer in float must repair the INT8 model.
"""

from __future__ import annotations

import copy
import re
import zipfile

import numpy as np
import pytest
import torch
from conftest import random_weights_gate, require_int8
from int8_loaders import load

from ipex_resnet.errors import ConfigError
from ipex_resnet.quantization import ENGINES, accuracy, calibration, engine_module, quantize
from ipex_resnet.quantization.sensitivity import quantizable_layers, rank_layers

CALIBRATION_IMAGES = 16
HELD_OUT_IMAGES = 32
KEEP = ("layer1.0.conv2", "fc")  # an inner conv and the classifier
HOSTILE = "layer2.1.conv2"  # its input is layer2.1.relu(layer2.1.bn1(...)), read by nothing else
OUTLIER = 256.0


require = require_int8


@pytest.fixture(scope="module")
def fp32_module(calibrated_resnet18) -> torch.nn.Module:
    return calibrated_resnet18


@pytest.fixture(scope="module")
def data(photos):
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.imaging import Preprocessor

    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms())
    calib_paths, held_paths = calibration.split(photos, 0.5)
    calib = calibration.collect(calib_paths, count=CALIBRATION_IMAGES)
    held = calibration.collect(held_paths, count=HELD_OUT_IMAGES)
    calib_batches = calibration.batches(calib.items, pre, batch_size=16, progress=False)
    held_batch = np.concatenate(calibration.batches(held.items, pre, progress=False))
    return calib_batches, held_batch


def logits(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def hostile_module(fp32_module) -> torch.nn.Module:
    """The same function as ``fp32_module`` with an outlier channel at the input of HOSTILE: channel 0
    of ``layer2.1.bn1`` (scale and shift) times OUTLIER -- ReLU commutes with a positive scale -- and
    HOSTILE's weights reading that channel divided by OUTLIER."""
    model = copy.deepcopy(fp32_module)
    block = model.layer2[1]
    with torch.no_grad():
        block.bn1.weight[0] *= OUTLIER
        block.bn1.bias[0] *= OUTLIER
        block.conv2.weight[:, 0] /= OUTLIER
    return model.eval()


def test_hostile_model_is_the_same_function(fp32_module, hostile_module, data):
    x = data[1][:8]
    a = accuracy.agreement(logits(hostile_module, x), logits(fp32_module, x))
    assert a.top1 == 1.0 and a.rel_error < 1e-4, a


# -- (a) keep_float leaves the named layers unquantized in every engine's artifact -------------------


def onnx_layers(path) -> dict[str, bool]:
    """``{Conv/Gemm/MatMul node name: whether its inputs come through DequantizeLinear}``."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    out = {}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            kinds = [producer[i].op_type if i in producer else "initializer" for i in node.input[:2]]
            out[node.name] = kinds == ["DequantizeLinear", "DequantizeLinear"]
            assert out[node.name] or "DequantizeLinear" not in kinds, (node.name, kinds)
    return out


def openvino_layers(path) -> dict[str, bool]:
    """``{Convolution/MatMul op name: whether its activation comes through FakeQuantize and its weight is
    an int8 constant}`` (NNCF's int8 IR: FakeQuantize on activations, i8 weights decompressed)."""
    import openvino as ov

    def weight_source(port):
        op = port.get_source_output().get_node()
        while op.get_type_name() in ("Convert", "Subtract", "Multiply", "Reshape", "Transpose"):
            op = op.input(0).get_source_output().get_node()
        return op

    out = {}
    for op in ov.Core().read_model(str(path)).get_ordered_ops():
        if op.get_type_name() not in ("Convolution", "MatMul"):
            continue
        act = op.input(0).get_source_output().get_node()
        while act.get_type_name() in ("MaxPool", "Reshape", "Squeeze", "Unsqueeze"):  # NNCF quantizes before
            act = act.input(0).get_source_output().get_node()
        act = act.get_type_name()
        w = weight_source(op.input(1))
        int8_weight = w.get_type_name() == "Constant" and w.get_element_type().get_type_name() == "i8"
        w_fq = w.get_type_name() == "FakeQuantize"
        out[op.get_friendly_name()] = act == "FakeQuantize" and (int8_weight or w_fq)
        assert out[op.get_friendly_name()] or (act != "FakeQuantize" and not int8_weight and not w_fq), (
            op.get_friendly_name(),
            act,
            w.get_type_name(),
        )
    return out


def onnx_prefix(name: str) -> str:
    """The scope prefix torch.onnx gives a ResNet submodule's nodes: layer1.0.conv2 -> /layer1/layer1.0/conv2/."""
    parts = name.split(".")
    scopes, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            scopes += [parts[i], f"{parts[i]}.{parts[i + 1]}"]
            i += 2
        else:
            scopes.append(parts[i])
            i += 1
    return "/" + "/".join(scopes) + "/"


def check_split(layers: dict[str, bool], kept_prefixes: list[str], total: int) -> None:
    """The layers under ``kept_prefixes`` are float, every other is int8, and all ``total`` are there."""
    assert len(layers) == total, layers
    for name, quantized in layers.items():
        kept = any(name.startswith(p) for p in kept_prefixes)
        assert quantized != kept, (name, "quantized" if quantized else "float")
    assert sum(not q for q in layers.values()) == len(kept_prefixes), layers


def inductor_artifact_ops(path) -> dict[str, int]:
    """Counts of the int8 and float conv/linear kernels the AOTInductor wrapper code calls."""
    calls: dict[str, int] = {"qconv": 0, "conv": 0, "qlinear": 0, "linear": 0, "layer1_0_conv2 float": 0}
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".wrapper.cpp") and "/model/" in n)
        code = z.read(name).decode()
    for m in re.finditer(r"aoti_torch_cpu_(\w+)\(([^;]*)", code):
        fn, args = m.group(1), m.group(2)
        # a float fc is mkldnn's _linear_pointwise (torch 2.14) or addmm_out (torch 2.8)
        op = "conv" if "conv" in fn else "linear" if "linear" in fn or "addmm" in fn else ""
        kind = ("q" if "qconv" in fn or "qlinear" in fn else "") + op
        if kind in calls:
            calls[kind] += 1
            if kind == "conv" and "layer1_0_conv2" in args:
                calls["layer1_0_conv2 float"] += 1
    return calls


def ipex_artifact_layers(path):
    """(int8 convs, float convs' weights, float linears' weights) of IPEX's frozen TorchScript."""
    from ipex_resnet.export.ipex import import_ipex

    import_ipex()
    graph = torch.jit.load(str(path)).graph
    q, float_conv, float_linear = 0, [], []
    for node in graph.nodes():
        if node.kind() not in ("aten::_convolution", "aten::conv2d", "aten::linear"):
            continue
        w = list(node.inputs())[1].node()
        if w.kind() == "aten::dequantize":
            q += 1
        else:
            assert w.kind() == "prim::Constant", w.kind()
            (float_linear if node.kind() == "aten::linear" else float_conv).append(w.output().toIValue())
    return q, float_conv, float_linear


def folded_weight(conv, bn) -> torch.Tensor:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (conv.weight * scale.reshape(-1, 1, 1, 1)).detach()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_keep_float_leaves_those_layers_unquantized(engine, fp32_module, data, tmp_path):
    require(engine)
    calib, held = data
    info = quantize(
        engine, fp32_module, calib, tmp_path, threads=torch.get_num_threads(), example=held[:1], keep_float=list(KEEP)
    )
    assert info["kept_float"] == list(KEEP)
    assert "2 submodule(s) kept" in info["scheme"]
    convs_and_fc = 21  # ResNet-18: 20 convolutions (3 downsample) and fc

    if engine == "onnxruntime":
        check_split(onnx_layers(tmp_path / "model.onnx"), [onnx_prefix(k) for k in KEEP], convs_and_fc)
        assert onnx_prefix("layer1.0.conv2") == "/layer1/layer1.0/conv2/"
    elif engine == "openvino":
        check_split(openvino_layers(tmp_path / "model.xml"), [onnx_prefix(k) for k in KEEP], convs_and_fc)
    elif engine == "inductor":
        from ipex_resnet.quantization import inductor

        # the PT2E graph Inductor compiles: only the kept layers have float weights
        graph, _ = inductor.quantized_graph(fp32_module, calib, example=held[:1], keep_float=KEEP)
        layers = inductor.quantized_layers(graph)
        assert set(layers) == set(quantizable_layers(fp32_module))
        assert {n for n, q in layers.items() if not q} == set(KEEP), layers
        # the compiled artifact: 19 int8 convolutions, one float convolution (layer1.0.conv2), a float fc
        ops = inductor_artifact_ops(tmp_path / "model.pt2")
        assert ops == {"qconv": 19, "conv": 1, "qlinear": 0, "linear": 1, "layer1_0_conv2 float": 1}, ops
    elif engine == "ipex":
        q, float_convs, float_linears = ipex_artifact_layers(tmp_path / "model.pt")
        assert q == 19 and len(float_convs) == 1 and len(float_linears) == 1, (q, len(float_convs))
        block = fp32_module.layer1[0]
        torch.testing.assert_close(
            float_convs[0].float().contiguous(), folded_weight(block.conv2, block.bn2), rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(float_linears[0].float(), fp32_module.fc.weight.detach())

    reference = logits(fp32_module, held)
    a = accuracy.agreement(load(engine, tmp_path)(held), reference)
    accuracy.check(a, random_weights_gate(engine), what=f"{engine} int8 with {', '.join(KEEP)} in fp32")
    assert 1e-3 < a.rel_error < 0.5, a  # still INT8 (not silently all float), still close


@pytest.mark.parametrize("reduce", [False, True])
def test_inductor_activations_get_7_bits_without_vnni(reduce, fp32_module, data):
    """On a CPU without VNNI/AMX oneDNN's u8*s8 kernels can saturate, so the quantizer's activations
    get 7 bits (``reduce_range``), as X86InductorQuantizer's docs advise; with VNNI the full 8 bits."""
    require("inductor")
    from ipex_resnet.hardware.cpu import probe
    from ipex_resnet.quantization import inductor
    from ipex_resnet.quantization._common import reduced_range_here

    calib, held = data
    graph, _ = inductor.quantized_graph(fp32_module, calib[:1], example=held[:1], reduce_range=reduce)
    qmax = {
        n.args[4]
        for n in graph.graph.nodes
        if n.op == "call_function" and "quantize_per_tensor" in str(n.target) and len(n.args) > 4
    }
    assert qmax == {127 if reduce else 255}, qmax
    assert reduced_range_here() is (probe(check_torch=False).int8_dot_isa is None)


def test_onnxruntime_weights_get_7_bits_on_request(fp32_module, data, tmp_path):
    """ONNX Runtime's ``reduce_range`` (7-bit weights, the default on a CPU without VNNI/AMX)."""
    require("onnxruntime")
    import onnx
    from onnx import numpy_helper

    from ipex_resnet.export.onnx import export_onnx
    from ipex_resnet.quantization.onnxruntime import quantize_onnx

    calib, held = data
    fp32 = export_onnx(fp32_module, tmp_path / "fp32.onnx", crop=int(held.shape[-1]))
    widest = {}
    for reduce in (False, True):
        out = tmp_path / f"q{int(reduce)}.onnx"
        info = quantize_onnx(fp32, calib[:1], out, reduce_range=reduce)
        assert info["reduce_range"] is reduce and ("7 bits" in info["scheme"]) is reduce
        weights = [
            numpy_helper.to_array(t)
            for t in onnx.load(str(out)).graph.initializer
            if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4
        ]
        widest[reduce] = max(int(abs(w.astype(int)).max()) for w in weights)
    assert widest[True] <= 64 < widest[False], widest


def test_keep_float_rejects_unknown_names(fp32_module, data, tmp_path):
    calib, held = data
    for engine in ENGINES:
        if not engine_module(engine).status()[0]:
            continue
        with pytest.raises(ConfigError, match=r"keep_float names no submodule.*'layer9\.conv'.*conv1"):
            quantize(engine, fp32_module, calib, tmp_path, threads=1, example=held[:1], keep_float=["layer9.conv"])


def test_scope_names_map_to_modules():
    from ipex_resnet.quantization._common import owned_by, scope_owner

    known = {
        "conv1",
        "layer1",
        "layer1.0",
        "layer1.0.conv2",
        "layer2",
        "layer2.0",
        "layer2.0.downsample",
        "layer2.0.downsample.0",
        "_blocks",
        "_blocks.3",
        "_blocks.3._depthwise_conv",
        "fc",
    }
    assert scope_owner("/layer1/layer1.0/conv2/Conv", known) == "layer1.0.conv2"
    assert scope_owner("/layer1/layer1.0/conv2/Conv/WithoutBiases", known) == "layer1.0.conv2"
    assert scope_owner("/layer2/layer2.0/downsample/downsample.0/Conv", known) == "layer2.0.downsample.0"
    assert scope_owner("/_blocks.3/_depthwise_conv/Conv", known) == "_blocks.3._depthwise_conv"
    assert scope_owner("/Flatten", known) is None and scope_owner("Multiply_329", known) is None
    nodes = ["/conv1/Conv", "/layer1/layer1.0/conv2/Conv", "/layer1/layer1.0/conv1/Conv", "/fc/Gemm"]
    assert owned_by(nodes, ["layer1.0.conv2", "fc"], known) == {
        "layer1.0.conv2": ["/layer1/layer1.0/conv2/Conv"],
        "fc": ["/fc/Gemm"],
    }
    assert owned_by(nodes, ["layer1"], known) == {"layer1": nodes[1:3]}
    assert owned_by(nodes, ["layer1.0.conv2"], ()) == {"layer1.0.conv2": ["/layer1/layer1.0/conv2/Conv"]}


# -- (b) the sensitivity ranking finds the hostile layer ---------------------------------------------


def test_rank_layers_puts_the_hostile_layer_first(fp32_module, hostile_module, data):
    calib = data[0]
    ranked = rank_layers(hostile_module, calib, max_images=4)
    assert {n for n, _ in ranked} == set(quantizable_layers(fp32_module)) and len(ranked) == 21
    assert ranked[0][0] == HOSTILE, ranked[:4]
    assert ranked[0][1] > 3 * ranked[1][1], ranked[:4]  # and by far
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True) and all(s >= 0 for s in scores)
    # deterministic, `limit` truncates, and the caller's model is left as it was
    assert rank_layers(hostile_module, calib, max_images=4, limit=3) == ranked[:3]
    assert not hostile_module.training and hostile_module.conv1.weight.is_contiguous()


# -- (c) keeping the hostile layer in float repairs the INT8 model -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino", "ipex"])
def test_keep_float_repairs_a_hostile_layer(engine, hostile_module, data, tmp_path):
    require(engine)
    calib, held = data
    reference = logits(hostile_module, held)

    def agreement(keep, out):
        out.mkdir()
        info = quantize(
            engine, hostile_module, calib, out, threads=torch.get_num_threads(), example=held[:1], keep_float=keep
        )
        assert info["kept_float"] == keep
        return accuracy.agreement(load(engine, out)(held), reference)

    plain = agreement([], tmp_path / "plain")
    kept = agreement([HOSTILE], tmp_path / "kept")
    # plain INT8 fails the test model's gate on the outlier; keeping that one layer in float passes it
    assert not random_weights_gate(engine).passes(plain), (plain, kept)
    accuracy.check(kept, random_weights_gate(engine), what=f"{engine} int8 with {HOSTILE} in fp32")
    assert kept.top1 >= plain.top1 + 0.25 and kept.rel_error < 0.75 * plain.rel_error, (plain, kept)
