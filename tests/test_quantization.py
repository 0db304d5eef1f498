"""INT8: real quantization on every engine this stack can run, judged against FP32 on held-out photos.

The BN-calibrated test ResNet-18 is calibrated on images from one half of the real photos and judged
on images from the other half (never the calibration ones), as the product does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_weights_gate, require_int8
from int8_loaders import load

from ipex_resnet.errors import ConfigError
from ipex_resnet.quantization import ENGINES, accuracy, calibration, engine_module

CALIBRATION_IMAGES = 32
HELD_OUT_IMAGES = 48


require = require_int8


def has_native_bf16() -> bool:
    from ipex_resnet.hardware.cpu import probe

    return probe().has_native_bf16


@pytest.fixture(scope="module")
def fp32_module(calibrated_resnet18) -> torch.nn.Module:
    return calibrated_resnet18


@pytest.fixture(scope="module")
def preprocess():
    from torchvision.models import ResNet18_Weights

    from ipex_resnet.imaging import Preprocessor

    return Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms())


@pytest.fixture(scope="module")
def data(photos, preprocess):
    """Calibration batches from one half of the photos, held-out batch from the other half."""
    calib_paths, held_paths = calibration.split(photos, 0.5)
    assert not set(calib_paths) & set(held_paths)
    calib = calibration.collect(calib_paths, count=CALIBRATION_IMAGES)
    held = calibration.collect(held_paths, count=HELD_OUT_IMAGES)
    calib_batches = calibration.batches(calib.items, preprocess, batch_size=16, progress=False)
    held_batch = np.concatenate(calibration.batches(held.items, preprocess, progress=False))
    return calib_batches, held_batch


@pytest.fixture(scope="module")
def reference(fp32_module, data) -> np.ndarray:
    with torch.no_grad():
        return fp32_module(torch.from_numpy(data[1])).numpy()


@pytest.fixture(scope="module")
def quantized(fp32_module, data, tmp_path_factory):
    """engine -> (info, runner), each engine quantized once per module."""
    done = {}

    def get(engine: str, bf16: bool = False):
        if (engine, bf16) not in done:
            out = tmp_path_factory.mktemp(f"int8-{engine}{'-bf16' if bf16 else ''}")
            info = engine_module(engine).quantize(
                fp32_module, data[0], out, threads=torch.get_num_threads(), example=data[1][:1], bf16=bf16
            )
            done[engine, bf16] = info, load(engine, out), out
        return done[engine, bf16]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_int8_agrees_with_fp32_on_held_out_photos(engine, quantized, data, reference):
    require(engine)
    info, run, out = quantized(engine)
    expected = {
        "inductor": {"model.pt2"},
        "ipex": {"model.pt"},
        "openvino": {"model.xml", "model.bin"},
        "onnxruntime": {"model.onnx"},
    }[engine]
    assert {p.name for p in out.iterdir()} == expected
    assert info["calibration_images"] == CALIBRATION_IMAGES and info["scheme"] and info["tool"]
    logits = run(data[1])
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    a = accuracy.agreement(logits, reference)
    accuracy.check(a, random_weights_gate(), what=f"{engine} int8")
    # INT8 is not FP32: a path that silently ran unquantized would show zero error
    assert 1e-3 < a.rel_error < 0.5, a
    # any batch size, including the batch-1 latency case, gives the same answer
    one = run(data[1][:1])
    five = run(data[1][:5])
    np.testing.assert_allclose(one[0], logits[0], rtol=0, atol=0.05 * float(np.abs(logits[0]).max()))
    np.testing.assert_allclose(five, logits[:5], rtol=0, atol=0.05 * float(np.abs(logits[:5]).max()))


@pytest.mark.slow
def test_inductor_int8_with_bf16(quantized, data, reference):
    require("inductor")
    if not has_native_bf16():
        pytest.skip("this CPU has no native BF16 (AVX512_BF16 or AMX)")
    info, run, _ = quantized("inductor", bf16=True)
    assert info["bf16"] is True
    logits = run(data[1])
    assert logits.dtype == np.float32
    accuracy.check(accuracy.agreement(logits, reference), random_weights_gate(), what="inductor int8+bf16")


@pytest.mark.slow
def test_gate_refuses_a_model_calibrated_on_a_constant_image(fp32_module, data, reference, tmp_path):
    engine = next((e for e in ("onnxruntime", "openvino") if engine_module(e).status()[0]), None)
    if engine is None:
        pytest.skip("neither onnxruntime nor openvino is installed")
    constant = [np.zeros((4, 3, 224, 224), np.float32)]  # the normalized mean colour, everywhere
    engine_module(engine).quantize(fp32_module, constant, tmp_path, threads=1, example=data[1][:1])
    a = accuracy.agreement(load(engine, tmp_path)(data[1]), reference)
    with pytest.raises(accuracy.AccuracyGateError) as err:
        accuracy.check(a, random_weights_gate(), what=f"{engine} int8")
    msg = str(err.value)
    assert f"{a.top1:.1%}" in msg and f"{a.top5:.1%}" in msg and "accept_accuracy" in msg
    assert err.value.agreement == a


def test_quantize_without_calibration_is_a_clear_error(fp32_module, tmp_path):
    for engine in ("onnxruntime", "openvino", "inductor"):
        if not engine_module(engine).status()[0]:
            continue
        with pytest.raises(ConfigError, match="calibration"):
            engine_module(engine).quantize(
                fp32_module, [], tmp_path, threads=1, example=np.zeros((1, 3, 224, 224), np.float32)
            )
    with pytest.raises(ConfigError, match="no INT8 quantization for engine 'eager'"):
        engine_module("eager")


# -- the agreement metrics, by hand ---------------------------------------------------------------


def test_agreement_metrics_by_hand():
    ref = np.array([[9, 8, 7, 6, 5, 0, 0], [0, 1, 2, 3, 4, 5, 6]], np.float32)
    # row 0: same top-1 (0), top-5 {0,1,2,3,6} vs {0,1,2,3,4}: 4 of 5
    # row 1: top-1 5 vs 6, top-5 {2,3,4,5,6} vs {2,3,4,5,6}: 5 of 5
    out = np.array([[9, 8, 7, 6, 0, 0, 5.5], [0, 1, 2, 3, 4, 7, 6]], np.float32)
    a = accuracy.agreement(out, ref)
    assert a.images == 2 and a.top1 == 0.5 and a.top5 == pytest.approx((4 / 5 + 1) / 2)
    assert a.rel_error == pytest.approx(np.linalg.norm(out - ref) / np.linalg.norm(ref))
    assert accuracy.agreement(ref, ref) == accuracy.Agreement(2, 1.0, 1.0, 0.0)
    assert accuracy.Agreement.from_dict(a.as_dict()) == a
    with pytest.raises(ValueError):
        accuracy.agreement(out[:1], ref)


def test_gate_thresholds_and_override_numbers():
    gate = accuracy.Gate(min_top1=0.9, min_top5=0.8)
    assert gate.passes(accuracy.Agreement(10, 0.9, 0.8, 0.1))
    assert not gate.passes(accuracy.Agreement(10, 0.89, 0.99, 0.1))
    assert not gate.passes(accuracy.Agreement(10, 1.0, 0.79, 0.1))
    with pytest.raises(accuracy.AccuracyGateError, match=r"top-1 agreement 50\.0% \(gate 90%\)"):
        accuracy.check(accuracy.Agreement(10, 0.5, 0.9, 0.2), gate)
    # real weights (EfficientNet-Lite1): the worst correct engine agreed on 98.5% of the photos
    assert accuracy.DEFAULT_GATE.passes(accuracy.Agreement(200, 0.985, 0.97, 0.1))
    assert not accuracy.DEFAULT_GATE.passes(accuracy.Agreement(100, 0.35, 0.33, 0.7))  # constant calibration
    assert random_weights_gate().passes(accuracy.Agreement(100, 0.87, 0.91, 0.1))  # the random-weights test model
