"""The model the tests and the standalone bench scripts use: a seeded ResNet-18 whose BatchNorm
statistics are calibrated on 48 real photos (no pretrained weights can be downloaded here).

Random-init BN (mean 0, var 1) makes activations blow up or vanish, so logits come out near-uniform
and any two backends would "agree"; calibrated running statistics give well-scaled, image-dependent
logits, so agreement checks can fail for real."""

from __future__ import annotations

CALIBRATION_PHOTOS = 48


def bn_calibrated_resnet18(photos, pre):
    """``pre(path)`` -> 3xHxW float32 array (the classifier's preprocessing)."""
    import numpy as np
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None)
    step = max(1, len(photos) // CALIBRATION_PHOTOS)
    batch = torch.from_numpy(
        np.stack([np.asarray(pre(p), dtype=np.float32) for p in photos[::step][:CALIBRATION_PHOTOS]])
    )
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


__all__ = ["CALIBRATION_PHOTOS", "bn_calibrated_resnet18"]
