"""Evaluation and the report's statistics on hand-made models and numbers with known results."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from shapnoise.evaluation import confusion_matrix, mean_and_std, within_spread
from shapnoise.io import write_npz
from shapnoise.models import build_cnn, save_model
from shapnoise.report import Cell, check_findings, paper_comparison, summarise
from tests.conftest import REPO


def constant_model(digit: int):
    """A CNN whose output ignores the image: all weights zero, the last bias favours ``digit``."""
    model = build_cnn()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model[-1].bias[digit] = 1.0
    return model


def labelled_set(labels):
    labels = np.asarray(labels, dtype=np.int64)
    return {"images": np.zeros((len(labels), 28, 28), dtype=np.float32), "labels": labels,
            "indices": np.arange(len(labels))}


def test_evaluate_stage_known_accuracy(tmp_path, raw_dir):
    test_indices = np.arange(200)
    write_npz(tmp_path / "splits.npz", test=test_indices)
    for digit, name in ((3, "model_a"), (7, "model_b")):
        save_model(constant_model(digit), tmp_path / "models" / name / "seed_0.pt")
    save_model(constant_model(1), tmp_path / "models" / "model_b" / "seed_1.pt")
    for generator in ("main", "b", "c"):
        save_model(constant_model(3), tmp_path / "generators" / f"{generator}.pt")
    write_npz(tmp_path / "ii.npz", **labelled_set([3, 3, 3, 7]))
    write_npz(tmp_path / "iii.npz", **labelled_set([7] * 5))
    write_npz(tmp_path / "iv.npz", **labelled_set([1, 3]))
    params = {"evaluate": {"seed": 0, "corruptions": {"gaussian": [0.3], "salt_pepper": [], "rotate": []}},
              "train_model": {"mixtures": {"model_a": {}, "model_b": {}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    # A folder of a mixture no longer in params: evaluate must leave it out.
    save_model(constant_model(0), tmp_path / "models" / "model_removed" / "seed_0.pt")

    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "evaluate.py"), "--params", "params.yaml", "--raw", str(raw_dir),
         "--splits", "splits.npz", "--models", "models", "--generators", "generators",
         "--shap-noise", "ii.npz", "--adversarial-main", "iii.npz", "--adversarial-c", "iv.npz",
         "--metrics", "accuracy.json", "--per-seed", "per_seed.json", "--confusion", "confusion"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr

    from shapnoise.data import load_mnist

    _, labels = load_mnist(raw_dir, "test")
    share = {d: round(float((labels[test_indices] == d).mean()) * 100, 2) for d in range(10)}
    accuracy = json.loads((tmp_path / "accuracy.json").read_text())
    assert accuracy["model_a"]["I"] == share[3]
    assert accuracy["model_a"]["II"] == 75.0
    assert accuracy["model_a"]["III"] == 0.0
    assert accuracy["model_a"]["IV"] == 50.0
    # A constant model ignores the noise too.
    assert accuracy["model_a"]["gaussian_1"] == share[3]
    # model_b: seed 0 predicts 7, seed 1 predicts 1; the metric is their mean.
    assert accuracy["model_b"]["III"] == 50.0
    assert accuracy["model_b"]["IV"] == 25.0
    assert accuracy["generator_c"]["II"] == 75.0
    assert "model_removed" not in accuracy

    per_seed = json.loads((tmp_path / "per_seed.json").read_text())
    assert per_seed["accuracy_percent"]["model_b"]["III"] == [100.0, 0.0]
    assert per_seed["set_sizes"] == {"I": 200, "II": 4, "III": 5, "IV": 2, "gaussian_1": 200}
    rows = (tmp_path / "confusion" / "model_a_II.csv").read_text().splitlines()
    assert rows == ["actual,predicted", "3,3", "3,3", "3,3", "7,3"]


def test_evaluate_stage_rejects_bad_corruption_params(tmp_path):
    params = {"evaluate": {"seed": 0, "corruptions": {"gaussian": "strong", "salt_pepper": [], "rotate": []}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run(
        [sys.executable, str(REPO / "stages" / "evaluate.py"), "--params", "params.yaml",
         "--shap-noise", "x", "--adversarial-main", "x", "--adversarial-c", "x"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 1
    assert "evaluate.corruptions.gaussian = 'strong'" in result.stderr


def test_confusion_matrix():
    matrix = confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), n_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_mean_and_std_known_numbers():
    mean, std = mean_and_std([90.0, 92.0, 94.0])
    assert mean == 92.0
    assert std == 2.0
    assert mean_and_std([95.0]) == (95.0, 0.0)


def test_within_spread():
    assert within_spread(90.0, 1.0, 91.5, 1.0)
    assert not within_spread(90.0, 0.5, 91.5, 0.5)
    assert within_spread(90.0, 0.0, 90.0, 0.0)
    assert not within_spread(90.0, 0.0, 90.01, 0.0)


def test_summarise_ignores_missing_values():
    cells = summarise({"m": {"I": [90.0, 94.0], "II": [float("nan")]}})
    assert cells["m"]["I"].mean == 92.0
    assert cells["m"]["I"].seeds == 2
    assert cells["m"]["II"].seeds == 0


def paper_like_cells(model_1_ii: float, spread: float = 0.5) -> dict:
    table = {
        "model_0": {"I": 97, "II": 54, "III": 70, "IV": 72, "gaussian_1": 80},
        "model_1": {"I": 97, "II": model_1_ii, "III": 98, "IV": 86, "gaussian_1": 70},
        "model_2": {"I": 97, "II": 87, "III": 98, "IV": 90, "gaussian_1": 85},
        "model_3": {"I": 97, "II": 87, "III": 87, "IV": 92, "gaussian_1": 85},
        "model_4": {"I": 94, "II": 86, "III": 98, "IV": 87, "gaussian_1": 75},
    }
    return {m: {s: Cell(float(v), spread, 3) for s, v in sets.items()} for m, sets in table.items()}


def test_findings_hold_on_paper_numbers():
    findings = check_findings(paper_like_cells(model_1_ii=70), ["gaussian_1"])
    assert [f.holds for f in findings] == [True, True, True, True, True]


def test_findings_fail_strong_model_one_ii():
    findings = check_findings(paper_like_cells(model_1_ii=99), ["gaussian_1"])
    assert findings[0].holds is False
    assert findings[1].holds is False


def test_findings_within_spread_do_not_count():
    cells = paper_like_cells(model_1_ii=70, spread=10.0)
    findings = check_findings(cells, [])
    assert findings[2].holds is False
    assert "within the seed spread" in findings[2].evidence


def test_findings_missing_model():
    cells = paper_like_cells(model_1_ii=70)
    del cells["model_4"]
    findings = check_findings(cells, [])
    assert findings[2].holds is None


def test_comparison_includes_new_mixture():
    cells = paper_like_cells(model_1_ii=70)
    cells["model_5"] = {s: Cell(90.0, 0.0, 1) for s in ("I", "II", "III", "IV")}
    table = paper_comparison(cells)
    rows = table[table["model"] == "model_5"]
    assert len(rows) == 4
    assert rows["accuracy"].tolist() == [90.0] * 4
    assert rows["paper"].isna().all()
    assert table["model"].tolist()[:4] == ["model_0"] * 4
