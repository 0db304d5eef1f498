"""Which layers hurt most when quantized: a cheap per-layer INT8 sensitivity ranking, in eager torch.

:func:`rank_layers` quantizes one ``Conv2d``/``Linear`` at a time *in simulation* and measures how
far the logits move from FP32 on a few calibration images:

1. one FP32 pass over the images records the reference logits and, with forward pre-hooks, the
   range of every layer's input;
2. for each layer, one more pass with only that layer fake-quantized the way the engines' static
   INT8 does it -- weights per output channel, symmetric int8 (``[-127, 127]``, scale
   ``max|w| / 127``); input activations per tensor, affine 8-bit over the observed ``[min, max]``
   (widened to include 0), as Inductor/IPEX (uint8) and ONNX Runtime (int8) calibrate with MinMax;
3. the layer's score is the mean over images of ``||logits_q - logits_fp32|| / ||logits_fp32||``.

Layers come back most sensitive first (ties in module order), so ``[name for name, _ in
rank_layers(...)[:k]]`` is the ``keep_float`` list that helps most. BatchNorm is not folded first:
per-channel weight quantization is invariant to the per-output-channel scale folding applies, so
the simulation matches what the engines do after folding.

Cost: ``1 + layers`` forward passes over at most ``max_images`` images (16 by default; up to 32 is
sensible) -- ResNet-18 (21 layers) on 16 images takes about 20 s on two slow cores, on 4 images about
9 s. Deterministic: fixed images, no randomness. It works on a private channels-last copy of the
model (faster convolutions on CPU; the caller's module is not touched), swapping each quantized
weight in with ``torch.func.functional_call``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ipex_resnet.quantization._common import check_calibration

MAX_IMAGES = 16
ACT_LEVELS = 255  # 8-bit affine activations
WEIGHT_MAX = 127  # symmetric int8 weights, [-127, 127]


def _images(batches: Sequence[Any], max_images: int):
    import torch

    arrays = check_calibration([b.detach().cpu().numpy() if hasattr(b, "detach") else b for b in batches])
    x = np.concatenate(arrays)[: max(1, int(max_images))]
    return torch.from_numpy(np.ascontiguousarray(x))


def fake_quant_weight(w):
    """Per-output-channel symmetric int8 fake quantization of a conv/linear weight."""
    import torch

    flat = w.detach().reshape(w.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / WEIGHT_MAX).clamp_min(1e-12).float()
    zero = torch.zeros(w.shape[0], dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w.detach().float(), scale, zero, 0, -WEIGHT_MAX, WEIGHT_MAX)


def fake_quant_activation(x, lo: float, hi: float):
    """Per-tensor affine 8-bit fake quantization of ``x`` over ``[min(lo, 0), max(hi, 0)]``."""
    import torch

    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / ACT_LEVELS, 1e-12)
    zero = round(-lo / scale)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, ACT_LEVELS)


def quantizable_layers(module) -> list[str]:
    """Names of the module's ``Conv2d`` and ``Linear`` layers (subclasses included), in module order."""
    import torch

    return [n for n, m in module.named_modules() if n and isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def _relative_error(q, ref) -> float:
    err = (q - ref).flatten(1).norm(dim=1)
    norm = ref.flatten(1).norm(dim=1).clamp_min(1e-12)
    return float((err / norm).mean())


def rank_layers(
    module, batches: Sequence[Any], *, limit: int | None = None, max_images: int = MAX_IMAGES, batch_size: int = 16
) -> list[tuple[str, float]]:
    """``[(layer name, score)]`` for the module's Conv2d/Linear layers, most sensitive to INT8 first.

    ``batches``: float32 NCHW batches (numpy or torch; the calibration batches of
    :mod:`.calibration`), of which the first ``max_images`` images are used. ``score`` is the mean
    relative L2 distance of the logits from FP32 with only that layer quantized (0 = no effect).
    ``limit`` returns only the ``limit`` most sensitive. Layers the forward pass never reaches are
    left out."""
    import copy

    import torch

    # a private channels-last copy: ~1.6x faster convolutions on CPU, and the caller's module untouched
    module = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
    x = _images(batches, max_images).contiguous(memory_format=torch.channels_last)
    chunks = list(torch.split(x, max(1, int(batch_size))))
    names = set(quantizable_layers(module))
    layers = {name: m for name, m in module.named_modules() if name in names}
    with torch.no_grad():
        reference, ranges = _reference_and_ranges(module, layers, chunks)
        scores = [
            (name, _relative_error(_one_layer_quantized(module, name, m, ranges[name], chunks), reference))
            for name, m in layers.items()
            if name in ranges
        ]
    ranked = sorted(scores, key=lambda s: -s[1])  # stable: ties keep module order
    return ranked[:limit] if limit is not None else ranked


__all__ = ["fake_quant_activation", "fake_quant_weight", "quantizable_layers", "rank_layers"]


def _reference_and_ranges(module, layers: dict, chunks: list) -> tuple[Any, dict[str, tuple[float, float]]]:
    """FP32 logits over ``chunks``, and each reached layer's input range (min, max) on the way."""
    import torch

    ranges: dict[str, list[float]] = {}

    def observer(name: str):
        def hook(_mod, args):
            t = args[0].detach()
            lo, hi = float(t.min()), float(t.max())
            r = ranges.setdefault(name, [lo, hi])
            r[0], r[1] = min(r[0], lo), max(r[1], hi)

        return hook

    hooks = [m.register_forward_pre_hook(observer(name)) for name, m in layers.items()]
    try:
        reference = torch.cat([module(c).float() for c in chunks])
    finally:
        for h in hooks:
            h.remove()
    return reference, {name: (lo, hi) for name, (lo, hi) in ranges.items()}


def _one_layer_quantized(module, name: str, layer, rng: tuple[float, float], chunks: list) -> Any:
    """Logits over ``chunks`` with only ``layer`` fake-quantized (its input to ``rng``, its weight per
    channel); the module itself is left as it was."""
    import torch

    lo, hi = rng
    hook = layer.register_forward_pre_hook(lambda _mod, args: (fake_quant_activation(args[0], lo, hi), *args[1:]))
    w = fake_quant_weight(layer.weight).to(layer.weight.dtype)
    weights = {f"{name}.weight": w.contiguous(memory_format=torch.channels_last) if w.ndim == 4 else w}
    try:
        return torch.cat([torch.func.functional_call(module, weights, (c,)).float() for c in chunks])
    finally:
        hook.remove()
