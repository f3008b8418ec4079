"""`shapnoise labelstudio push` and `pull` against a real Label Studio server on 127.0.0.1.

The server runs from its own virtual environment, .venv-labelstudio in the
repository root, because Label Studio pins other versions of shared packages
than dvc does. The session fixture installs it there on first use (70 to 90 s,
1 GB). It starts the server with a fresh data folder and a bootstrap user from
environment variables, and stops it at the end, also when a test fails.

The tests that need no server (unreachable URL, silent server, missing key)
are not marked ``labelstudio``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from label_studio_sdk import LabelStudio

from shapnoise import cli
from shapnoise.data import load_mnist, to_float
from shapnoise.io import write_npz
from shapnoise.labelling import (
    UNREADABLE,
    choice_result,
    label_config,
    read_exports,
    relabel,
    source_id,
    write_export,
)

log = logging.getLogger("shapnoise.tests.labelstudio")

REPO = Path(__file__).resolve().parents[1]
LABEL_STUDIO_VERSION = "1.23.2"
LABEL_STUDIO_VENV = REPO / ".venv-labelstudio"
INSTALL_TIMEOUT_S = 1200
# A fresh database needs its migrations first: 37 to 56 s on a 2-core development machine.
START_TIMEOUT_S = 300


@dataclass
class RunningServer:
    url: str
    username: str
    legacy_token: str
    start_seconds: float
    log_path: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def log_tail(path: Path, lines: int = 60) -> str:
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def labelstudio_executable() -> Path:
    """Return the label-studio command of .venv-labelstudio, installing it there first when missing."""
    executable = LABEL_STUDIO_VENV / "bin" / "label-studio"
    stamp = LABEL_STUDIO_VENV / f".installed-label-studio-{LABEL_STUDIO_VERSION}"
    if stamp.exists() and executable.exists():
        return executable

    install_log = REPO / ".pytest_cache" / "labelstudio-install.log"
    install_log.parent.mkdir(parents=True, exist_ok=True)
    log.info("installing label-studio==%s into %s (about a minute)", LABEL_STUDIO_VERSION, LABEL_STUDIO_VENV)
    start = time.perf_counter()
    with open(install_log, "w", encoding="utf-8") as output:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(LABEL_STUDIO_VENV)],
            [str(LABEL_STUDIO_VENV / "bin" / "python"), "-m", "pip", "install", "--progress-bar", "off",
             f"label-studio=={LABEL_STUDIO_VERSION}"],
        ]
        for step in steps:
            result = subprocess.run(step, stdout=output, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
            if result.returncode != 0:
                pytest.fail(f"installing Label Studio failed: {' '.join(step)} exited with {result.returncode}.\n"
                            f"Last lines of {install_log}:\n{log_tail(install_log)}")
    stamp.touch()
    log.info("label-studio installed in %.0f s", time.perf_counter() - start)
    return executable


def server_environment(data_dir: Path, username: str, password: str, token: str) -> dict[str, str]:
    """Return the server's environment: the bootstrap user, and no traffic to hosts other than 127.0.0.1."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("LABEL_STUDIO_", "HEARTEX_"))}
    environment.update({
        "LABEL_STUDIO_USERNAME": username,
        "LABEL_STUDIO_PASSWORD": password,
        "LABEL_STUDIO_USER_TOKEN": token,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        # By default Label Studio 1.23 reports errors to Sentry, sends usage data and queries
        # PyPI for newer versions. The test server must reach nothing but 127.0.0.1.
        "LABEL_STUDIO_SENTRY_DSN": "",
        "LABEL_STUDIO_FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_COLLECT_ANALYTICS": "false",
        "LABEL_STUDIO_LATEST_VERSION_CHECK": "false",
    })
    return environment


@pytest.fixture(scope="session")
def labelstudio_server(labelstudio_executable, tmp_path_factory) -> RunningServer:
    """Start Label Studio on a free port of 127.0.0.1 with an empty database; stop it after the session."""
    data_dir = tmp_path_factory.mktemp("labelstudio-data")
    log_path = data_dir / "server.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    username = "admin@shapnoise.test"
    token = secrets.token_hex(20)
    environment = server_environment(data_dir, username, secrets.token_urlsafe(16), token)
    command = [str(labelstudio_executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
               "--port", str(port), "--data-dir", str(data_dir)]

    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as output:
        # A session of its own, so that stopping the group ends every process the server started.
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_healthy(process, url, log_path)
        start_seconds = time.perf_counter() - start
        log.info("Label Studio %s answered on %s after %.1f s", LABEL_STUDIO_VERSION, url, start_seconds)
        yield RunningServer(url, username, token, start_seconds, log_path)
    finally:
        stop(process)


def wait_until_healthy(process: subprocess.Popen, url: str, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"Label Studio exited with {process.returncode} before answering on {url}.\n"
                        f"Last lines of {log_path}:\n{log_tail(log_path)}")
        try:
            if httpx.get(f"{url}/health/", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"Label Studio did not answer on {url}/health/ within {START_TIMEOUT_S} s.\n"
                f"Last lines of {log_path}:\n{log_tail(log_path)}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def admin(labelstudio_server) -> LabelStudio:
    """A client with the bootstrap user's legacy token, for the steps a person would do in the web UI."""
    return LabelStudio(base_url=labelstudio_server.url, api_key=labelstudio_server.legacy_token)


@pytest.fixture(scope="session")
def personal_access_token(admin) -> str:
    """Create the bootstrap user's personal access token, the kind of key Label Studio 1.23 hands out by default."""
    return admin.tokens.create().token


@pytest.fixture(scope="session")
def mnist(raw_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Real MNIST images and labels of both subsets, from the local mirror (see conftest.py)."""
    return {subset: load_mnist(raw_dir, subset) for subset in ("train", "test")}


def noise_images(mnist, split: str, count: int) -> dict[str, np.ndarray]:
    """Return a filter-stage-like set of ``count`` real MNIST images with a SHAP-noise-like perturbation.

    The stroke intensity replaces the SHAP weight: pixels move towards their
    inverse in proportion to it, as the method's noise does.
    """
    images, labels = mnist[split]
    indices = np.arange(10, 10 + 7 * count, 7, dtype=np.int64)
    originals = to_float(images[indices])
    weights = originals / originals.max(axis=(1, 2), keepdims=True)
    noisy = np.clip(originals + 0.8 * weights * (1.0 - 2.0 * originals), 0.0, 1.0).astype(np.float32)
    original_labels = labels[indices].astype(np.int64)
    return {
        "indices": indices,
        "images": noisy,
        "originals": originals,
        "labels": original_labels,
        "predictions": (original_labels + 1 + np.arange(count) % 9) % 10,
    }


def project_by_title(client: LabelStudio, title: str):
    matches = [project for project in client.projects.list(title=title) if project.title == title]
    assert len(matches) == 1, f"expected one project titled {title!r}, found {len(matches)}"
    return matches[0]


def tasks_by_source(client: LabelStudio, project_id: int) -> dict[str, object]:
    tasks = list(client.tasks.list(project=project_id, fields="all"))
    return {task.data["source_id"]: task for task in tasks}


def run_cli(*arguments: str) -> int:
    return cli.main(["labelstudio", *arguments])


@pytest.mark.labelstudio
def test_round_trip_push_annotate_pull_import(labelstudio_server, admin, personal_access_token, mnist,
                                              tmp_path, monkeypatch, caplog, capsys):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", personal_access_token)
    export_dir = tmp_path / "labelstudio"
    labels_dir = tmp_path / "labels"
    title = "shapnoise-test {split} noise"
    common = ["--export-dir", str(export_dir), "--title", title]
    filtered = {"train": noise_images(mnist, "train", 6), "test": noise_images(mnist, "test", 3)}
    for split, arrays in filtered.items():
        write_export(arrays, split, export_dir / split, scale=8, model_version="generator-main")

    round_trip_start = time.perf_counter()
    assert run_cli("push", *common) == 0

    # Projects with the exported config, tasks with their image and pre-annotation.
    projects = {split: project_by_title(admin, title.format(split=split)) for split in filtered}
    for split, project in projects.items():
        assert project.label_config.strip() == label_config().strip()
        stored = tasks_by_source(admin, project.id)
        assert sorted(stored) == sorted(source_id(split, index) for index in filtered[split]["indices"])
        for key, task in stored.items():
            png = (export_dir / split / "images" / f"{key}.png").read_bytes()
            assert base64.b64decode(task.data["image"].split(",", 1)[1]) == png
            assert len(task.predictions) == 1
            assert task.predictions[0].model_version == "generator-main"

    # A second push adds nothing; a push after new noise images adds only those.
    first_ids = {key: task.id for key, task in tasks_by_source(admin, projects["train"].id).items()}
    assert run_cli("push", *common) == 0
    assert {key: task.id for key, task in tasks_by_source(admin, projects["train"].id).items()} == first_ids

    filtered["train"] = noise_images(mnist, "train", 8)
    write_export(filtered["train"], "train", export_dir / "train", scale=8, model_version="generator-main")
    assert run_cli("push", "--split", "train", *common) == 0
    after = {key: task.id for key, task in tasks_by_source(admin, projects["train"].id).items()}
    assert len(after) == 8
    assert {key: after[key] for key in first_ids} == first_ids

    # Annotations as the labelling interface submits them, from two people.
    annotator = admin.users.create(email="annotator@shapnoise.test", username="annotator")
    train = filtered["train"]
    keys = [source_id("train", index) for index in train["indices"]]
    originals = [int(label) for label in train["labels"]]
    changed = str((originals[0] + 5) % 10)
    first_of_tie, second_of_tie = str((originals[2] + 1) % 10), str((originals[2] + 2) % 10)

    def annotate(key, choice, user=None, cancelled=False):
        author = {} if user is None else {"completed_by": user}
        admin.annotations.create(id=after[key], result=[] if cancelled else choice_result(choice),
                                 was_cancelled=cancelled, **author)

    annotate(keys[0], changed)
    annotate(keys[1], UNREADABLE)
    annotate(keys[2], first_of_tie)
    time.sleep(0.05)
    annotate(keys[2], second_of_tie, user=annotator.id)
    annotate(keys[3], None, cancelled=True)
    annotate(keys[4], str(originals[4]), user=annotator.id)
    test_task = tasks_by_source(admin, projects["test"].id)
    test_key = source_id("test", filtered["test"]["indices"][0])
    admin.annotations.create(id=test_task[test_key].id, result=choice_result("7"))

    assert run_cli("pull", *common, "--labels-dir", str(labels_dir)) == 0
    round_trip_seconds = time.perf_counter() - round_trip_start

    export_path = labels_dir / "train" / "labelstudio-export.json"
    exported = json.loads(export_path.read_text(encoding="utf-8"))
    assert [task["data"]["source_id"] for task in exported] == sorted(keys[:5])
    assert all("image" not in task["data"] for task in exported)

    # The import stage's logic on the pulled export.
    summary = read_exports(labels_dir / "train", "train", keys)
    arrays, metrics = relabel(train, "train", summary, "original")
    final = {int(index): (int(label), str(source)) for index, label, source in
             zip(arrays["indices"], arrays["labels"], arrays["label_source"], strict=True)}
    indices = [int(index) for index in train["indices"]]
    assert final[indices[0]] == (int(changed), "human")
    assert indices[1] not in final
    assert final[indices[2]] == (int(second_of_tie), "human"), "a tie goes to the most recent annotation"
    assert final[indices[3]] == (originals[3], "fallback"), "a cancelled annotation is no label"
    assert final[indices[4]] == (originals[4], "human")
    for row in range(5, 8):
        assert final[indices[row]] == (originals[row], "fallback")
    assert metrics["human_labelled"] == 3
    assert metrics["dropped_unreadable"] == 1
    assert metrics["fallback_labelled"] == 4
    assert metrics["human_changed_label"] == 2
    assert metrics["tied_votes"] == 1
    assert metrics["cancelled_annotations"] == 1

    # The same through the import stage's script, as `dvc repro` runs it after a pull.
    write_npz(tmp_path / "filtered-train.npz", **train)
    (tmp_path / "params.yaml").write_text("labelstudio:\n  fallback: original\n", encoding="utf-8")
    stage = subprocess.run(
        [sys.executable, str(REPO / "stages" / "labelstudio_import.py"), "--split", "train",
         "--params", str(tmp_path / "params.yaml"), "--filtered", str(tmp_path / "filtered-train.npz"),
         "--labels", str(labels_dir / "train"), "--out", str(tmp_path / "relabelled.npz"),
         "--metrics", str(tmp_path / "relabel.json")],
        capture_output=True, text=True,
    )
    assert stage.returncode == 0, stage.stderr
    stage_metrics = json.loads((tmp_path / "relabel.json").read_text(encoding="utf-8"))
    assert stage_metrics["human_labelled"] == 3
    assert stage_metrics["dropped_unreadable"] == 1

    test_summary = read_exports(labels_dir / "test", "test",
                                [source_id("test", index) for index in filtered["test"]["indices"]])
    assert [vote.choice for vote in test_summary.votes[test_key]] == ["7"]

    # A second pull with nothing new changes no file.
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in labels_dir.rglob("*.json")}
    time.sleep(1.0)
    assert run_cli("pull", *common, "--labels-dir", str(labels_dir)) == 0
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in labels_dir.rglob("*.json")} == before

    captured = capsys.readouterr()
    assert personal_access_token not in caplog.text
    assert personal_access_token not in captured.out + captured.err
    log.info("server start %.1f s; round trip (push, second push, push of new images, annotate, pull) %.1f s",
             labelstudio_server.start_seconds, round_trip_seconds)


@pytest.mark.labelstudio
def test_push_rejects_project_with_other_config(labelstudio_server, admin, personal_access_token,
                                                tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", personal_access_token)
    other_config = label_config().replace('    <Choice value="unreadable" hotkey="u"/>\n', "")
    project = admin.projects.create(title="shapnoise-mismatch train noise", label_config=other_config)
    export_dir = tmp_path / "labelstudio"
    write_export(noise_images_random(2), "train", export_dir / "train", scale=8, model_version="generator-main")

    status = run_cli("push", "--split", "train", "--export-dir", str(export_dir),
                     "--title", "shapnoise-mismatch {split} noise")
    assert status == 1
    assert f"(id {project.id}) at {labelstudio_server.url} has another labelling config" in caplog.text
    assert admin.projects.get(project.id).task_number == 0


@pytest.mark.labelstudio
def test_push_rejects_wrong_api_key(labelstudio_server, tmp_path, monkeypatch, caplog):
    wrong_key = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("LABEL_STUDIO_URL", labelstudio_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", wrong_key)
    export_dir = tmp_path / "labelstudio"
    write_export(noise_images_random(1), "train", export_dir / "train", scale=8, model_version="generator-main")

    assert run_cli("push", "--split", "train", "--export-dir", str(export_dir)) == 1
    assert f"Label Studio at {labelstudio_server.url} rejected the API key from LABEL_STUDIO_API_KEY" in caplog.text
    assert "HTTP 401" in caplog.text
    assert wrong_key not in caplog.text


# ---------------------------------------------------------------------------
# Without a server


def noise_images_random(count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "indices": np.arange(count, dtype=np.int64),
        "images": rng.random((count, 28, 28), dtype=np.float32),
        "originals": rng.random((count, 28, 28), dtype=np.float32),
        "labels": np.zeros(count, dtype=np.int64),
        "predictions": np.ones(count, dtype=np.int64),
    }


@pytest.fixture
def small_export(tmp_path) -> Path:
    export_dir = tmp_path / "labelstudio"
    write_export(noise_images_random(1), "train", export_dir / "train", scale=8, model_version="generator-main")
    return export_dir


def test_push_names_unreachable_url(small_export, monkeypatch, caplog):
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-legacy-token")

    status = run_cli("push", "--split", "train", "--export-dir", str(small_export), "--retries", "1")
    assert status == 1
    assert f"cannot connect to Label Studio at {url}" in caplog.text
    assert "retry 1 of 1" in caplog.text


def test_push_times_out_after_bounded_retries(small_export, monkeypatch, caplog):
    """A server that accepts connections but never responds: 1 + retries attempts, then an error."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    accepted = []
    stop_event = threading.Event()

    def accept_and_stay_silent():
        while not stop_event.is_set():
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-legacy-token")
    try:
        started = time.perf_counter()
        status = run_cli("push", "--split", "train", "--export-dir", str(small_export),
                         "--timeout", "0.5", "--retries", "2")
        elapsed = time.perf_counter() - started
    finally:
        stop_event.set()
        thread.join(timeout=5)
        for connection in accepted:
            connection.close()
        listener.close()

    assert status == 1
    assert f"request to Label Studio at {url} to list the projects titled 'shapnoise train noise' timed out after 0.5 s" in caplog.text
    assert "(3 attempts)" in caplog.text
    assert len(accepted) == 3
    assert elapsed < 30


def test_push_requires_api_key(small_export, monkeypatch, caplog):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert run_cli("push", "--export-dir", str(small_export)) == 1
    assert "LABEL_STUDIO_API_KEY is not set" in caplog.text


def test_pull_requires_export_stage_output(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "some-legacy-token")
    status = run_cli("pull", "--split", "test", "--export-dir", str(tmp_path / "missing"),
                     "--labels-dir", str(tmp_path / "labels"))
    assert status == 1
    assert "tasks.json: file not found" in caplog.text
    assert not (tmp_path / "labels").exists()
