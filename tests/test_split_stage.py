"""The split stage's validation, run as DVC runs it: the script on a params file."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import REPO

VALID = {
    "seed": 0,
    "test_size": 500,
    "sizes": {
        "generator": 100,
        "generator_b": 100,
        "generator_c": 100,
        "clean": 100,
        "noise_source": 100,
        "adversarial_source": 100,
        "adversarial_source_b": 100,
    },
}


def run_split(tmp_path: Path, split_params: dict) -> subprocess.CompletedProcess:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"split": split_params}))
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "split.py"), "--params", str(params),
         "--out", str(tmp_path / "splits.npz"), "--summary", str(tmp_path / "sizes.json")],
        capture_output=True, text=True, cwd=tmp_path,
    )


def with_size(name, value):
    params = yaml.safe_load(yaml.safe_dump(VALID))
    params["sizes"][name] = value
    return params


def test_split_stage_writes_disjoint_splits(tmp_path):
    result = run_split(tmp_path, VALID)
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "splits.npz") as splits:
        names = [n for n in splits.files if n != "test"]
        union = np.concatenate([splits[n] for n in names])
        assert len(np.unique(union)) == 700
        assert len(splits["test"]) == 500


@pytest.mark.parametrize(
    "params, expected",
    [
        (with_size("clean", 0), "split.sizes.clean = 0"),
        (with_size("clean", -5), "split.sizes.clean = -5"),
        (with_size("clean", "many"), "split.sizes.clean = 'many'"),
        (with_size("clean", 2.5), "split.sizes.clean = 2.5"),
        (with_size("cleen", 10), "split.sizes.cleen"),
        (with_size("generator", 59500), "60000"),
        ({**VALID, "test_size": 20000}, "split.test_size = 20000"),
        ({**VALID, "colour": "red"}, "split.colour"),
        ({k: v for k, v in VALID.items() if k != "seed"}, "missing key split.seed"),
    ],
)
def test_split_stage_rejects_bad_params(tmp_path, params, expected):
    result = run_split(tmp_path, params)
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "splits.npz").exists()
