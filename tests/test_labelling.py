"""Label Studio export and import: task format, PNGs, config, and the relabelling rules on hand-made exports."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shapnoise.io import read_npz, write_npz
from shapnoise.labelling import (
    CHOICES,
    ExportError,
    Vote,
    decide_label,
    export_bytes,
    image_png,
    label_config,
    normalize_export,
    read_exports,
    read_filtered,
    relabel,
    source_id,
    task_source_ids,
    write_export,
)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "labelstudio"
GOOD = DATA / "good" / "train"
BAD = DATA / "bad"

# The images that tests/data/labelstudio/good/train/labelstudio-export.json annotates.
TRAIN_INDICES = [101, 202, 303, 404, 505, 606, 707]
TRAIN_LABELS = [1, 2, 3, 4, 5, 6, 7]
TRAIN_PREDICTIONS = [7, 8, 9, 0, 1, 2, 3]

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def make_filtered(indices, labels, predictions, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    count = len(indices)
    return {
        "indices": np.asarray(indices, dtype=np.int64),
        "images": rng.random((count, 28, 28), dtype=np.float32),
        "originals": rng.random((count, 28, 28), dtype=np.float32),
        "labels": np.asarray(labels, dtype=np.int64),
        "predictions": np.asarray(predictions, dtype=np.int64),
    }


@pytest.fixture
def train_filtered() -> dict[str, np.ndarray]:
    return make_filtered(TRAIN_INDICES, TRAIN_LABELS, TRAIN_PREDICTIONS)


def train_kept() -> list[str]:
    return [source_id("train", index) for index in TRAIN_INDICES]


def relabel_good(filtered, fallback):
    summary = read_exports(GOOD, "train", train_kept())
    return relabel(filtered, "train", summary, fallback)


def by_index(arrays) -> dict[int, tuple[int, str]]:
    return {int(i): (int(label), str(source)) for i, label, source in
            zip(arrays["indices"], arrays["labels"], arrays["label_source"], strict=True)}


# ---------------------------------------------------------------------------
# Export


def test_export_writes_tasks_with_preannotations(tmp_path, train_filtered):
    out = tmp_path / "train"
    count = write_export(train_filtered, "train", out, scale=8, model_version="generator-main")

    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))
    assert count == len(TRAIN_INDICES)
    assert len(tasks) == len(TRAIN_INDICES)
    for task, index, label, prediction in zip(tasks, TRAIN_INDICES, TRAIN_LABELS, TRAIN_PREDICTIONS, strict=True):
        data = task["data"]
        assert data["source_id"] == f"train-{index}"
        assert data["split"] == "train"
        assert data["mnist_index"] == index
        assert data["original_label"] == label
        assert data["image"].startswith("data:image/png;base64,")
        assert len(task["predictions"]) == 1
        assert task["predictions"][0]["model_version"] == "generator-main"
        assert task["predictions"][0]["result"] == [{
            "from_name": "label", "to_name": "image", "type": "choices",
            "value": {"choices": [str(prediction)]},
        }]


def test_export_png_matches_image(tmp_path, train_filtered):
    out = tmp_path / "train"
    write_export(train_filtered, "train", out, scale=8, model_version="generator-main")
    tasks = json.loads((out / "tasks.json").read_text(encoding="utf-8"))

    for task, image in zip(tasks, train_filtered["images"], strict=True):
        png_path = out / "images" / f"{task['data']['source_id']}.png"
        png = png_path.read_bytes()
        embedded = base64.b64decode(task["data"]["image"].split(",", 1)[1])
        assert embedded == png

        decoded = np.asarray(Image.open(io.BytesIO(png)))
        assert decoded.shape == (224, 224)
        assert decoded.dtype == np.uint8
        expected = np.rint(image * 255).astype(np.uint8)
        assert np.array_equal(decoded[::8, ::8], expected)
        assert np.array_equal(decoded[7::8, 7::8], expected)


def test_png_is_deterministic():
    image = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    assert image_png(image, 8) == image_png(image.copy(), 8)


def test_config_has_choices_and_bilingual_instructions(tmp_path, train_filtered):
    out = tmp_path / "train"
    write_export(train_filtered, "train", out, scale=8, model_version="generator-main")
    config = (out / "config.xml").read_text(encoding="utf-8")
    assert config == label_config()

    root = ET.fromstring(config)
    image = root.find(".//Image")
    assert image is not None
    assert image.get("name") == "image"
    assert image.get("value") == "$image"
    control = root.find(".//Choices")
    assert control.get("name") == "label"
    assert control.get("toName") == "image"
    assert control.get("choice") == "single-radio"
    assert [choice.get("value") for choice in control.findall("Choice")] == list(CHOICES)
    assert CHOICES == ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "unreadable")

    headers = [header.get("value") for header in root.iter("Header")]
    japanese = [text for text in headers if JAPANESE.search(text)]
    english = [text for text in headers if not JAPANESE.search(text)]
    assert len(japanese) >= 3
    assert len(english) >= 3
    assert any("unreadable" in text for text in english)
    assert any("判読不能" in text for text in japanese)


def test_export_of_empty_filtered_set(tmp_path):
    empty = make_filtered([], [], [])
    out = tmp_path / "test"
    count = write_export(empty, "test", out, scale=8, model_version="generator-main")

    assert count == 0
    assert json.loads((out / "tasks.json").read_text(encoding="utf-8")) == []
    assert (out / "config.xml").exists()
    assert list((out / "images").iterdir()) == []


def test_export_replaces_stale_images(tmp_path, train_filtered):
    out = tmp_path / "train"
    write_export(train_filtered, "train", out, scale=8, model_version="generator-main")
    fewer = {name: array[:2] for name, array in train_filtered.items()}
    write_export(fewer, "train", out, scale=8, model_version="generator-main")

    names = sorted(path.name for path in (out / "images").iterdir())
    assert names == ["train-101.png", "train-202.png"]
    assert task_source_ids(out / "tasks.json") == ["train-101", "train-202"]


def test_read_filtered_rejects_mismatched_lengths(tmp_path, train_filtered):
    broken = dict(train_filtered, labels=train_filtered["labels"][:3])
    write_npz(tmp_path / "train.npz", **broken)
    with pytest.raises(ValueError, match="labels has 3 entries but indices has 7"):
        read_filtered(tmp_path / "train.npz")


# ---------------------------------------------------------------------------
# Import: voting rules on the hand-made export


def test_import_majority_tie_unreadable_and_cancelled(train_filtered):
    arrays, metrics = relabel_good(train_filtered, "original")
    labels = by_index(arrays)

    assert labels[101] == (8, "human")
    assert labels[202] == (2, "human"), "two votes for 2 outweigh one for 9"
    assert labels[303] == (5, "human"), "tie 3 against 5: the later updated_at (5) wins over the higher id (3)"
    assert 404 not in labels, "unreadable drops the image"
    assert labels[505] == (5, "fallback"), "a cancelled annotation is no label"
    assert labels[606] == (6, "fallback"), "a task without annotations is no label"
    assert labels[707] == (7, "fallback"), "an image without a task in the export is no label"


def test_import_metrics_count_each_outcome(train_filtered):
    _, metrics = relabel_good(train_filtered, "original")
    assert metrics == {
        "kept": 7,
        "human_labelled": 3,
        "fallback_labelled": 3,
        "dropped_unreadable": 1,
        "dropped_by_fallback": 0,
        "human_changed_label": 2,
        "relabelled": 6,
        "tied_votes": 1,
        "cancelled_annotations": 1,
        "export_files": 1,
    }


def test_import_arrays_keep_rows_aligned(train_filtered):
    arrays, _ = relabel_good(train_filtered, "original")
    rows = [TRAIN_INDICES.index(int(index)) for index in arrays["indices"]]

    assert arrays["indices"].dtype == np.int64
    assert arrays["labels"].dtype == np.int64
    assert arrays["images"].dtype == np.float32
    assert arrays["images"].shape == (6, 28, 28)
    assert np.array_equal(arrays["images"], train_filtered["images"][rows])
    assert np.array_equal(arrays["original_labels"], train_filtered["labels"][rows])
    assert np.array_equal(arrays["predictions"], train_filtered["predictions"][rows])
    assert set(arrays["label_source"].tolist()) == {"human", "fallback"}


@pytest.mark.parametrize("fallback, expected", [
    ("original", {505: 5, 606: 6, 707: 7}),
    ("prediction", {505: 1, 606: 2, 707: 3}),
    ("drop", {}),
])
def test_import_fallback_policies(train_filtered, fallback, expected):
    arrays, metrics = relabel_good(train_filtered, fallback)
    labels = by_index(arrays)

    fallback_labels = {index: label for index, (label, source) in labels.items() if source == "fallback"}
    assert fallback_labels == expected
    assert {index for index, (_, source) in labels.items() if source == "human"} == {101, 202, 303}
    assert metrics["fallback_labelled"] == len(expected)
    assert metrics["dropped_by_fallback"] == 3 - len(expected)
    assert metrics["relabelled"] == 3 + len(expected)


def test_import_with_empty_labels_folder(tmp_path, train_filtered):
    (tmp_path / ".gitkeep").touch()
    summary = read_exports(tmp_path, "train", train_kept())
    arrays, metrics = relabel(train_filtered, "train", summary, "original")

    assert np.array_equal(arrays["labels"], train_filtered["labels"])
    assert set(arrays["label_source"].tolist()) == {"fallback"}
    assert metrics["human_labelled"] == 0
    assert metrics["fallback_labelled"] == 7
    assert metrics["export_files"] == 0


def test_import_with_empty_filtered_set(tmp_path):
    empty = make_filtered([], [], [])
    summary = read_exports(tmp_path, "test", [])
    arrays, metrics = relabel(empty, "test", summary, "original")

    assert arrays["indices"].shape == (0,)
    assert arrays["images"].shape == (0, 28, 28)
    assert arrays["labels"].shape == (0,)
    assert arrays["label_source"].shape == (0,)
    assert metrics["kept"] == 0
    assert metrics["relabelled"] == 0


def test_import_rejects_tasks_when_nothing_was_kept():
    empty_kept: list[str] = []
    with pytest.raises(ExportError, match="train-101 is not among the 0 images"):
        read_exports(GOOD, "train", empty_kept)


def test_import_counts_duplicate_annotation_once(tmp_path, train_filtered):
    shutil.copy(GOOD / "labelstudio-export.json", tmp_path / "a.json")
    shutil.copy(GOOD / "labelstudio-export.json", tmp_path / "b.json")
    summary = read_exports(tmp_path, "train", train_kept())

    assert summary.files == 2
    assert summary.duplicates == 7
    assert summary.cancelled == 1
    assert len(summary.votes["train-202"]) == 3
    arrays, _ = relabel(train_filtered, "train", summary, "original")
    assert by_index(arrays) == by_index(relabel_good(train_filtered, "original")[0])


# ---------------------------------------------------------------------------
# Import: bad exports stop with the file and the task id


@pytest.mark.parametrize("case, split, pattern", [
    ("unknown_task", "train", r"task 41: source_id train-99999 is not among the 7 images"),
    ("label_out_of_range", "train", r"task 42, annotation 52: label '10' is invalid"),
    ("malformed", "train", r"invalid JSON"),
    ("wrong_split", "train", r"task 44: is from the 'test' split .* move the file to labels/test/"),
])
def test_import_rejects_bad_export(case, split, pattern):
    folder = BAD / case
    with pytest.raises(ExportError, match=pattern) as raised:
        read_exports(folder, split, train_kept())
    assert str(folder / "labelstudio-export.json") in str(raised.value)


def write_tasks(folder: Path, tasks) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "export.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    return path


def annotated_task(task_id, source, result, annotation_id=1):
    return {"id": task_id, "data": {"split": source.split("-")[0], "source_id": source},
            "annotations": [{"id": annotation_id, "result": result, "was_cancelled": False}]}


@pytest.mark.parametrize("result, pattern", [
    ([{"from_name": "label", "type": "choices", "value": {"choices": ["seven"]}}], "label 'seven' is invalid"),
    ([{"from_name": "label", "type": "choices", "value": {"choices": ["-1"]}}], "label '-1' is invalid"),
    ([{"from_name": "label", "type": "choices", "value": {"choices": ["1", "2"]}}], "exactly one selected choice"),
    ([{"from_name": "digit", "type": "choices", "value": {"choices": ["1"]}}], "another labelling config"),
])
def test_import_rejects_bad_results(tmp_path, result, pattern):
    path = write_tasks(tmp_path, [annotated_task(7, "train-101", result, annotation_id=70)])
    with pytest.raises(ExportError, match=pattern) as raised:
        read_exports(tmp_path, "train", train_kept())
    assert f"{path}: task 7, annotation 70" in str(raised.value)


@pytest.mark.parametrize("content, pattern", [
    ({"id": 1}, "expected a list of tasks"),
    ([{"id": 5, "label": "3"}], "task 5: has no 'data' object"),
    ([{"id": 6, "data": {"source_id": "mnist-3"}}], "task 6: data.source_id 'mnist-3' is missing or invalid"),
    ([{"id": 8, "data": {"split": "test", "source_id": "train-101"}}], "task 8: data.split 'test' contradicts"),
])
def test_import_rejects_foreign_json(tmp_path, content, pattern):
    write_tasks(tmp_path, content)
    with pytest.raises(ExportError, match=pattern):
        read_exports(tmp_path, "train", train_kept())


def test_import_ignores_empty_result(tmp_path, train_filtered):
    write_tasks(tmp_path, [annotated_task(7, "train-101", [])])
    summary = read_exports(tmp_path, "train", train_kept())
    assert summary.empty == 1
    assert summary.votes == {}


# ---------------------------------------------------------------------------
# Tie rule


def vote(choice, annotation_id, time=None, order=0):
    from datetime import datetime

    parsed = datetime.fromisoformat(time) if time else None
    return Vote(choice, 1, annotation_id, parsed, Path("x.json"), order)


def test_tie_goes_to_latest_timestamp():
    votes = [vote("3", 9, "2026-01-01T10:00:00+00:00"), vote("5", 2, "2026-01-01T11:00:00+00:00")]
    assert decide_label(votes) == ("5", True)


def test_tie_without_timestamps_goes_to_higher_id():
    votes = [vote("3", 9, order=0), vote("5", 2, order=1)]
    assert decide_label(votes) == ("3", True)


def test_tie_ignores_votes_outside_the_tie():
    votes = [vote("1", 1, "2026-01-01T09:00:00+00:00"), vote("1", 2, "2026-01-01T09:00:00+00:00"),
             vote("4", 3, "2026-01-01T08:00:00+00:00"), vote("4", 4, "2026-01-01T08:30:00+00:00"),
             vote("7", 5, "2026-01-01T12:00:00+00:00")]
    assert decide_label(votes) == ("1", True)


def test_majority_needs_no_tie_rule():
    votes = [vote("unreadable", 1), vote("unreadable", 2), vote("6", 3, "2026-01-01T12:00:00+00:00")]
    assert decide_label(votes) == ("unreadable", False)


# ---------------------------------------------------------------------------
# Pulled exports


def test_normalize_export_is_stable_and_small():
    tasks = json.loads((GOOD / "labelstudio-export.json").read_text(encoding="utf-8"))
    for task in tasks:
        task["data"]["image"] = "data:image/png;base64,AAAA"
    stale = {"id": 99, "data": {"split": "train", "source_id": "train-5"}, "annotations": [{"id": 1}]}
    known = train_kept()

    normalized, stale_count = normalize_export(list(reversed(tasks)) + [stale], known)
    assert stale_count == 1
    assert [task["data"]["source_id"] for task in normalized] == [
        "train-101", "train-202", "train-303", "train-404", "train-505"]
    assert all("image" not in task["data"] for task in normalized)
    assert export_bytes(normalized) == export_bytes(normalize_export(tasks, known)[0])

    with_images, _ = normalize_export(tasks, known, keep_images=True)
    assert all(task["data"]["image"].startswith("data:image/png") for task in with_images)


def test_normalized_export_imports_like_the_original(tmp_path, train_filtered):
    tasks = json.loads((GOOD / "labelstudio-export.json").read_text(encoding="utf-8"))
    normalized, _ = normalize_export(tasks, train_kept())
    (tmp_path / "labelstudio-export.json").write_bytes(export_bytes(normalized))

    summary = read_exports(tmp_path, "train", train_kept())
    arrays, metrics = relabel(train_filtered, "train", summary, "original")
    assert by_index(arrays) == by_index(relabel_good(train_filtered, "original")[0])


# ---------------------------------------------------------------------------
# Stage scripts


def run_stage_script(name, *arguments, cwd):
    return subprocess.run([sys.executable, str(REPO / "stages" / f"{name}.py"), *arguments],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_stage_scripts_export_and_import(tmp_path, train_filtered):
    (tmp_path / "params.yaml").write_text("labelstudio:\n  fallback: prediction\n")
    write_npz(tmp_path / "filtered.npz", **train_filtered)
    shutil.copytree(GOOD, tmp_path / "labels")

    exported = run_stage_script("labelstudio_export", "--split", "train", "--filtered", "filtered.npz",
                                "--out", "export/train", "--scale", "4", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    png = Image.open(tmp_path / "export" / "train" / "images" / "train-101.png")
    assert png.size == (112, 112)

    imported = run_stage_script("labelstudio_import", "--split", "train", "--filtered", "filtered.npz",
                                "--labels", "labels", "--out", "relabelled.npz", "--metrics", "relabel.json",
                                cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    arrays = read_npz(tmp_path / "relabelled.npz")
    assert by_index(arrays)[707] == (3, "fallback")
    assert arrays["label_source"].dtype.kind == "U"
    metrics = json.loads((tmp_path / "relabel.json").read_text())
    assert metrics["relabelled"] == 6


def test_stage_import_fails_on_bad_export(tmp_path, train_filtered):
    (tmp_path / "params.yaml").write_text("labelstudio:\n  fallback: original\n")
    write_npz(tmp_path / "filtered.npz", **train_filtered)
    shutil.copytree(BAD / "unknown_task", tmp_path / "labels")

    result = run_stage_script("labelstudio_import", "--split", "train", "--filtered", "filtered.npz",
                              "--labels", "labels", "--out", "relabelled.npz", "--metrics", "relabel.json",
                              cwd=tmp_path)
    assert result.returncode == 1
    assert "task 41" in result.stderr
    assert "labelstudio-export.json" in result.stderr
    assert not (tmp_path / "relabelled.npz").exists()


@pytest.mark.parametrize("params, pattern", [
    ("labelstudio:\n  fallback: majority\n", r"labelstudio.fallback = 'majority' is invalid"),
    ("labelstudio:\n  fallback: original\n  fallbak: drop\n", r"unknown key\(s\) labelstudio.fallbak"),
    ("labelstudio:\n  fallbak: drop\n", r"unknown key\(s\) labelstudio.fallbak"),
    ("labelstudio: {}\n", r"missing key labelstudio.fallback"),
])
def test_stage_import_rejects_bad_params(tmp_path, train_filtered, params, pattern):
    (tmp_path / "params.yaml").write_text(params)
    write_npz(tmp_path / "filtered.npz", **train_filtered)
    (tmp_path / "labels").mkdir()

    result = run_stage_script("labelstudio_import", "--split", "train", "--filtered", "filtered.npz",
                              "--labels", "labels", "--out", "relabelled.npz", "--metrics", "relabel.json",
                              cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(pattern, result.stderr), result.stderr


def test_csv_export_is_reported(tmp_path, caplog):
    from shapnoise.labelling import read_exports

    (tmp_path / "project-1.csv").write_text("image,choice\nx,3\n")
    with caplog.at_level("WARNING", logger="shapnoise.labelling"):
        summary = read_exports(tmp_path, "train", kept=[])
    assert summary.files == 0
    assert "project-1.csv" in caplog.text
    assert "JSON format" in caplog.text
