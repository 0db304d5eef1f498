"""Helpers for the service tests: a free port, the module set-up (stack installed), a classifier wrapper
that hooks inference (slow, failing or stuck batches) through the public API only, and Prometheus text
parsed with prometheus_client's parser."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_service() -> None:
    """Skip the calling test module unless the service's stack (starlette, uvicorn) is installed."""
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")


class HookedClassifier:
    """Delegates to a real classifier; ``hook(batch)`` runs before each inference call (it may sleep,
    block or raise)."""

    def __init__(self, clf, hook: Callable):
        self._clf, self._hook = clf, hook

    def __getattr__(self, name):
        return getattr(self._clf, name)

    def __call__(self, batch):
        self._hook(batch)
        return self._clf(batch)


def metric(text: str, name: str, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (parsed by prometheus_client)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == str(v) for k, v in labels.items()):
                total += s.value
    return total


def families(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(text)}
