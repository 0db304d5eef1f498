"""End to end: JPEG bytes -> top-5 labels, on the real 500x375 photos and on a 1920x1080 JPEG, so the cost
of decoding and resizing is visible next to the model's."""

import pytest
from conftest import measure, no_peers, quick_reference_and_best

pytestmark = pytest.mark.end_to_end


@no_peers
@quick_reference_and_best
def test_end_to_end_photos(benchmark, ctx, path, e2e_photos):
    benchmark.group = "e2e-photos"
    built = ctx.built(path)
    data = [p.read_bytes() for p in e2e_photos]
    clf, ref = built.classifier, ctx.reference.classifier
    info = measure(
        benchmark,
        ctx,
        built,
        lambda b: clf.predict([b], topk=5),
        lambda i: (data[i % len(data)],),
        lambda b: ref.predict([b], topk=5),
        rounds=max(len(data), ctx.rounds // 2),
    )
    top = clf.predict([data[0]], topk=5)[0]
    assert len(top) == 5 and all(0 <= t["score"] <= 1 for t in top)
    info["images"] = len(data)


@no_peers
@quick_reference_and_best
def test_end_to_end_1080p(benchmark, ctx, path, large_jpeg):
    benchmark.group = "e2e-1920x1080"
    built = ctx.built(path)
    clf, ref = built.classifier, ctx.reference.classifier
    data = large_jpeg.read_bytes()
    info = measure(
        benchmark,
        ctx,
        built,
        lambda b: clf.predict([b], topk=5),
        lambda i: (data,),
        lambda b: ref.predict([b], topk=5),
        rounds=max(5, ctx.rounds // 4),
    )
    info["jpeg_bytes"] = len(data)
    assert len(clf.predict([str(large_jpeg)], topk=5)[0]) == 5
