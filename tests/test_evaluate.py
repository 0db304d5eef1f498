"""ipex-resnet evaluate: top-1/top-5 against labels, checked against hand-computed expectations."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch

from ipex_resnet.cli import evaluate as evaluate_cmd
from ipex_resnet.core import evaluate
from ipex_resnet.errors import ConfigError

# 4 images, 7 classes. Labels 0, 1, 2, 3.
LOGITS = {
    "a.jpg": [9, 1, 2, 3, 4, 5, 6],  # label 0: top-1 hit
    "b.jpg": [9, 8, 1, 1, 1, 1, 1],  # label 1: 2nd -> top-5 hit only
    "c.jpg": [9, 8, 7, 6, 5, 4, 3],  # label 2: 3rd -> top-5 hit only
    "d.jpg": [9, 8, 7, 6, 5, 0, 4],  # label 3: 4th -> top-5 hit only
}
LABELS = {"a.jpg": 0, "b.jpg": 1, "c.jpg": 2, "d.jpg": 3}
# another "precision" that gets d.jpg's top-1 right and a.jpg's wrong, and ranks b's label 6th
OTHER = {
    "a.jpg": [1, 9, 2, 3, 4, 5, 6],
    "b.jpg": [9, 0.5, 8, 7, 6, 5, 1],
    "c.jpg": [9, 8, 7, 6, 5, 4, 3],
    "d.jpg": [1, 2, 3, 9, 5, 0, 4],
}


def table_fn(table):
    return lambda paths: np.array([table[p.name] for p in paths], np.float32)


@pytest.fixture
def labelled(tmp_path):
    for name in LABELS:
        (tmp_path / name).write_bytes(b"the metric never opens the file")
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index", "wnid", "name"])
        for name, idx in LABELS.items():
            w.writerow([name, idx, f"n{idx:08d}", f"class{idx}"])
    return tmp_path


def test_topk_accuracy_by_hand(labelled):
    samples = evaluate.read_labels(labelled)
    assert [(p.name, i) for p, i in samples] == list(LABELS.items())
    rows = evaluate.evaluate(samples, {"fp32": table_fn(LOGITS), "int8": table_fn(OTHER)}, batch_size=3)
    fp32, int8 = rows
    assert (fp32.precision, fp32.images, fp32.top1, fp32.top5, fp32.agreement) == ("fp32", 4, 0.25, 1.0, None)
    # int8: top-1 hits d only; top-5 hits c (3rd) and d; a's and b's labels rank last
    assert int8.top1 == 0.25
    assert int8.top5 == 0.5
    assert int8.agreement == 0.5  # fp32 says class 0 everywhere; int8 says 1, 0, 0, 3
    text = evaluate.format_table(rows)
    assert "25.0%" in text and "100.0%" in text and "50.0%" in text and "top-1 = fp32" in text


def test_folder_per_class_by_index_or_name(tmp_path):
    for folder, names in {"0": ["a.jpg"], "class_1": ["b.JPG"], "Class 2": ["sub/c.png"]}.items():
        for n in names:
            (tmp_path / folder / n).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / folder / n).write_bytes(b"x")
    (tmp_path / "0" / "readme.txt").write_text("ignored")
    cats = ["class 0", "class 1", "class 2"]
    got = [(p.name, i) for p, i in evaluate.read_labels(tmp_path, cats)]
    assert got == [("a.jpg", 0), ("c.png", 2), ("b.JPG", 1)]
    (tmp_path / "zebra").mkdir()
    with pytest.raises(ConfigError, match="'zebra' is neither a class index nor one of the model's category"):
        evaluate.read_labels(tmp_path, cats)


def test_label_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        evaluate.read_labels(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is empty"):
        evaluate.read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("path,label\nx.jpg,1\n")
    with pytest.raises(ConfigError, match="needs columns 'file' and 'class_index'"):
        evaluate.read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("file,class_index\nx.jpg,1\n")
    with pytest.raises(ConfigError, match=r"labels.csv:2: image .*x.jpg does not exist"):
        evaluate.read_labels(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("file,class_index\nx.jpg,cat\n")
    with pytest.raises(ConfigError, match="class_index 'cat' is not an integer"):
        evaluate.read_labels(tmp_path)


def parse(*argv):
    p = argparse.ArgumentParser()
    evaluate_cmd.add_arguments(p)
    return p.parse_args(list(argv))


def test_int8_without_calibration_is_a_clear_error(labelled):
    with pytest.raises(ConfigError, match="int8 needs calibration images: add --calibration DIR"):
        evaluate_cmd.main(parse("--data", str(labelled), "--precisions", "fp32,int8"))


@pytest.mark.slow
def test_cli_on_real_photos(photos, checkpoint, calibrated_state_dict, tmp_path, capsys):
    """Labels = the model's own top-1 for three photos and a wrong one for the fourth: 75% top-1."""
    from torchvision.models import ResNet18_Weights, resnet18

    from ipex_resnet.imaging import Preprocessor

    chosen = photos[:4]
    model = resnet18(weights=None)
    model.load_state_dict(calibrated_state_dict)
    pre = Preprocessor.from_preset(ResNet18_Weights.DEFAULT.transforms())
    with torch.no_grad():
        logits = model.eval()(torch.stack([torch.as_tensor(pre(p)) for p in chosen]))
    labels = logits.argmax(1).tolist()
    top5 = logits.topk(5).indices.tolist()
    labels[3] = next(i for i in range(1000) if i not in top5[3])  # outside the top-5: a miss for both
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "class_index"])
        w.writerows([str(p), i] for p, i in zip(chosen, labels))  # absolute paths work too
    assert (
        evaluate_cmd.main(
            parse(
                "--data",
                str(tmp_path),
                "--precisions",
                "fp32",
                "--weights",
                str(checkpoint),
                "--backend",
                "eager",
                "--json",
            )
        )
        == 0
    )
    (row,) = json.loads(capsys.readouterr().out)
    assert row["precision"] == "fp32 (eager)" and row["images"] == 4
    assert row["top1"] == 0.75 and row["top5"] == 0.75
