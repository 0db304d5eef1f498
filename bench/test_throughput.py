"""Batched throughput, model only: images/s at each --bench-batch-sizes (default 8 and 32)."""

import pytest
from conftest import measure

pytestmark = pytest.mark.throughput


def test_throughput(benchmark, ctx, path, batch):
    benchmark.group = f"throughput-b{batch}"
    built = ctx.built(path)
    x = ctx.batch(batch, seed=batch)
    rounds = max(3, (ctx.rounds * 4) // batch)
    info = measure(
        benchmark,
        ctx,
        built,
        built.runner,
        lambda i: (x,),
        ctx.reference.runner,
        rounds=rounds,
        warmup_rounds=1,
        items=batch,
    )
    info["batch"] = batch
    info["images_per_s"] = info["items_per_s"]
    assert info["images_per_s"] > 0
