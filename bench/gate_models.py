"""Small user models for the gate experiment (``bench/gate_experiment.py``), given by import path
(``gate_models:tiny``) the way a user gives their own."""

from __future__ import annotations

from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def tiny() -> nn.Module:
    """Two conv-BN-ReLU blocks and a linear head: ~1 ms per image at one thread (the issue's small CNN)."""
    return nn.Sequential(
        _block(3, 16), _block(16, 32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1000)
    ).eval()
