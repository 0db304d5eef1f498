"""Batch-1 latency, model only (a preprocessed tensor in): median, p90, p99 per path and peer."""

import pytest
from conftest import measure

pytestmark = pytest.mark.latency


def test_latency_b1(benchmark, ctx, path):
    benchmark.group = "latency-b1"
    built = ctx.built(path)
    ref = ctx.reference
    x = ctx.batch(1)  # at the weights' preset crop size
    info = measure(benchmark, ctx, built, built.runner, lambda i: (x,), ref.runner, rounds=ctx.rounds, warmup_rounds=2)
    assert info["p50_ms"] > 0 and info["p99_ms"] >= info["p50_ms"] and info["ratio_to_ref"] > 0
