"""The whole pipeline on real MNIST, small profile, driven by real dvc commands in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shapnoise.data import MIRROR_ENV
from tests.conftest import REPO, mnist_mirror

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
MODELS = [f"model_{i}" for i in range(5)]
SETS = ["I", "II", "III", "IV", "gaussian_1", "salt_pepper_1", "rotate_1"]


def run(command: list[str], cwd: Path, env: dict) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output[-6000:]}"
    return output


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def set_param(repo: Path, dotted: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A git + DVC copy of the repository with the small profile, after a first full dvc repro."""
    repo = tmp_path_factory.mktemp("pipeline") / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():
            (repo / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / relative)
    shutil.copy2(REPO / "profiles" / "small.yaml", repo / "params.yaml")
    for stale in ("dvc.lock",):
        (repo / stale).unlink(missing_ok=True)

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           MIRROR_ENV: str(mnist_mirror()), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test",
           "GIT_AUTHOR_EMAIL": "test@example.invalid", "GIT_COMMITTER_NAME": "test",
           "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    run(["git", "init", "-q"], repo, env)
    # dvc exp commits through its own git library, which reads the repository's config, not the environment.
    run(["git", "config", "user.name", "shapnoise tests"], repo, env)
    run(["git", "config", "user.email", "tests@example.invalid"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "small profile"], repo, env)
    first = run([str(BIN / "dvc"), "repro"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "first run"], repo, env)
    return repo, env, first


def test_first_run_runs_every_stage(pipeline):
    repo, env, first = pipeline
    listed = run([str(BIN / "dvc"), "stage", "list", "--name-only"], repo, env).split()
    assert stages_run(first) == set(listed)


def test_accuracy_holds_every_model_and_set(pipeline):
    repo, _, _ = pipeline
    accuracy = json.loads((repo / "metrics" / "accuracy.json").read_text())
    for model in MODELS + ["generator_main", "generator_b", "generator_c"]:
        assert model in accuracy
        for set_name in SETS:
            value = accuracy[model][set_name]
            assert value is None or 0.0 <= value <= 100.0, (model, set_name, value)
        assert accuracy[model]["I"] is not None
    # The main generator is attacked for III, so it must do worse there than on clean images.
    assert accuracy["generator_main"]["III"] < accuracy["generator_main"]["I"]


def test_report_and_figures(pipeline):
    repo, _, _ = pipeline
    report = (repo / "reports" / "report.md").read_text()
    assert "Table 2" in report
    for model in MODELS:
        assert model in report
    for figure in ("accuracy_vs_paper", "shap_noise_train", "shap_noise_test", "adversarial_test"):
        assert (repo / "reports" / "figures" / f"{figure}.png").stat().st_size > 1000
    assert (repo / "reports" / "accuracy.csv").read_text().startswith("model,set,accuracy")


def test_metrics_show_lists_models(pipeline):
    repo, env, _ = pipeline
    shown = run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "model_4" in shown
    assert "generator_main" in shown


def test_second_repro_does_nothing(pipeline):
    repo, env, _ = pipeline
    output = run([str(BIN / "dvc"), "repro"], repo, env)
    assert stages_run(output) == set()


def test_generator_epochs_touch_only_generators(pipeline):
    repo, env, _ = pipeline
    original = (repo / "params.yaml").read_text()
    try:
        set_param(repo, "generator.epochs", 3)
        status = json.loads(run([str(BIN / "dvc"), "status", "--json"], repo, env) or "{}")
        assert set(status) == {"train_generator@main", "train_generator@b", "train_generator@c"}
    finally:
        (repo / "params.yaml").write_text(original)


def test_failed_stage_keeps_previous_output(pipeline):
    repo, env, _ = pipeline
    original = (repo / "params.yaml").read_text()
    output_path = repo / "data" / "noise" / "train.npz"
    before = output_path.read_bytes()
    try:
        set_param(repo, "noise.train.algorithm", "blur")
        result = subprocess.run([str(BIN / "dvc"), "repro"], cwd=repo, env=env, capture_output=True, text=True)
        assert result.returncode != 0
        assert "noise.train.algorithm = 'blur'" in result.stdout + result.stderr
        assert output_path.read_bytes() == before
    finally:
        (repo / "params.yaml").write_text(original)


def test_literal_protocol_changes_only_test3():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    items = stages["adversarial"]["foreach"]
    assert items["test3"]["literal_source"] == "adversarial_source"
    assert items["test3"]["source"] == "test"
    for name in ("train3", "train4", "test4"):
        assert items[name]["literal_source"] == items[name]["source"], name


def test_noise_param_reruns_from_noise_not_shap(pipeline):
    repo, env, _ = pipeline
    set_param(repo, "noise.train.strength", 0.9)
    output = run([str(BIN / "dvc"), "repro"], repo, env)
    ran = stages_run(output)
    assert "noise_images@train" in ran
    assert "filter@train" in ran
    assert "labelstudio_import@train" in ran
    assert "evaluate" in ran
    assert not any(stage.startswith(("shap_maps", "train_generator", "adversarial", "download", "split"))
                   for stage in ran), ran
    assert "noise_images@test" not in ran
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "noise strength 0.9"], repo, env)


def test_epsilon_experiment_reruns_adversarial_and_after(pipeline):
    repo, env, _ = pipeline
    output = run([str(BIN / "dvc"), "exp", "run", "-S", "adversarial.epsilon=0.05"], repo, env)
    ran = stages_run(output)
    assert {"adversarial@train3", "adversarial@train4", "adversarial@test3", "adversarial@test4"} <= ran
    assert "evaluate" in ran
    assert not any(stage.startswith(("shap_maps", "noise_images", "filter", "train_generator", "labelstudio"))
                   for stage in ran), ran
    diff = json.loads(run([str(BIN / "dvc"), "metrics", "diff", "--json"], repo, env))
    changed = diff.get("metrics/accuracy.json", {})
    assert any(key.endswith(".III") and entry.get("diff") not in (None, 0) for key, entry in changed.items()), changed
