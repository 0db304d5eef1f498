"""Input pipeline (issue 11): what one JPEG costs before the model sees it, on one core (fast and
exact preprocessing, the full decode, and the decode floor: a 1/8-scale DCT decode, i.e. entropy
decoding only), and bulk classification of the photos against model-only batches of the planned path
at the same threads. The end-to-end and bulk targets are printed at the end of the session with the
bound the decode floor puts on them (``suite_targets`` in conftest)."""

import pytest

from ipex_resnet.benchmarking import pipeline as P

pytestmark = pytest.mark.end_to_end

STAGES = {
    "preprocess_fast": lambda pre: pre.with_mode("fast"),
    "preprocess_exact": lambda pre: pre.with_mode("exact"),
    "decode_full": lambda pre: P.decode_jpeg,
    "decode_floor": lambda pre: lambda d: P.decode_jpeg(d, 8),
}


@pytest.fixture(scope="session")
def cases(e2e_photos, large_jpeg) -> dict:
    return {"photo": [p.read_bytes() for p in e2e_photos], "1920x1080": [large_jpeg.read_bytes()]}


@pytest.fixture(scope="session")
def planned(ctx):
    name = f"{ctx.plan.backend}/{ctx.plan.precision}"
    if all(s.name != name for s in ctx.paths):
        pytest.skip(f"the planned path {name} is not in this run's matrix")
    return ctx.built(name)


@pytest.mark.parametrize("case", ["photo", "1920x1080"])
@pytest.mark.parametrize("stage", list(STAGES))
def test_input_cost(benchmark, ctx, planned, cases, case, stage):
    benchmark.group = f"input-{case}"
    fn = STAGES[stage](planned.classifier.preprocessor)
    data = cases[case]
    fn(data[0])
    state = {"i": 0}

    def one():
        state["i"] += 1
        return fn(data[state["i"] % len(data)])

    out = benchmark.pedantic(one, rounds=max(10, ctx.rounds // (4 if case == "photo" else 8)), iterations=1)
    assert out is not None
    info = benchmark.extra_info
    info.update(
        {
            "stage": stage,
            "case": case,
            "size": "x".join(map(str, P.jpeg_size(data[0]))),
            "p50_ms": benchmark.stats.stats.median * 1e3,
            "threads": 1,
        }
    )


def test_bulk_vs_model(benchmark, ctx, planned, photos, tmp_path):
    """``bulk.run`` on the planned path against model-only batches (alternating chunks)."""
    benchmark.group = "bulk"
    clf = planned.classifier
    result: dict = {}
    images = [p.read_bytes() for p in photos]

    def run():
        result.update(P.bulk_vs_model(clf, images, tmp_path, count=64 if ctx.quick else 320))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert result["failed"] == 0 and result["images_per_s"] > 0
    benchmark.extra_info.update(result)
