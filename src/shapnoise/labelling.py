"""Label Studio tasks for the kept SHAP noise images, and the relabelled data set from their annotations.

Export: per split, the tasks in Label Studio's JSON import format, one PNG per
image and the labelling config. Each task embeds its PNG as a data URI in
``data.image``. So the same ``tasks.json`` works when ``shapnoise labelstudio push``
sends it to a server and when a person imports it in the web UI, with no file
serving or storage to set up.

Import: Label Studio's "JSON" export (a list of tasks, each with its
``annotations``) decides one label per image by majority vote. A tie goes to the
label of the most recent annotation among the tied labels (``updated_at``, else
``created_at``, then the higher annotation id). Images without a usable
annotation get the fallback policy of ``params.yaml``. "unreadable" drops the image.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

from shapnoise.io import atomic_dir, read_npz

log = logging.getLogger(__name__)

SPLITS = ("train", "test")

# Names inside the labelling config: results carry them as from_name and to_name,
# and tasks carry the image under data[IMAGE_NAME].
IMAGE_NAME = "image"
CONTROL_NAME = "label"
UNREADABLE = "unreadable"
CHOICES = tuple(str(digit) for digit in range(10)) + (UNREADABLE,)

FALLBACK_POLICIES = ("original", "prediction", "drop")
PARAM_KEYS = ("fallback",)

FILTERED_ARRAYS = ("indices", "images", "originals", "labels", "predictions")
TASKS_FILE = "tasks.json"
CONFIG_FILE = "config.xml"
IMAGES_DIR = "images"

HUMAN = "human"
FALLBACK = "fallback"

_SOURCE_ID = re.compile(r"(train|test)-(\d+)")

# Pairs of (English, Japanese) sentences. Each sentence becomes a Header of its own, so each language reads alone.
INSTRUCTIONS = (
    ("Which digit does the image show? Choose 0 to 9 by what you see now, "
     "not by what the image may once have been.",
     "画像に見える数字を 0〜9 から選んでください。元の数字を推測せず、いま見えるとおりに選んでください。"),
    ("The preselected choice is the model's prediction. Change it whenever you see another digit.",
     "あらかじめ選ばれている選択肢はモデルの予測です。別の数字に見える場合は選び直してください。"),
    ("Choose \"unreadable\" when the image shows no digit or you cannot decide. "
     "Such images are left out of the training data.",
     "数字に見えない、または判断できない場合は「unreadable」(判読不能) を選んでください。"
     "その画像は学習データから除かれます。"),
)


class ExportError(ValueError):
    """A Label Studio export under labels/ that cannot be used as it is."""


# ---------------------------------------------------------------------------
# Export: filtered images to Label Studio tasks


def source_id(split: str, index: int) -> str:
    """Return the stable task key of an image: its split and its index in the MNIST subset."""
    return f"{split}-{int(index)}"


def parse_source_id(value: Any) -> tuple[str, int] | None:
    """Return ``(split, index)`` of a source id such as ``train-12345``, or None when it has another form."""
    if not isinstance(value, str):
        return None
    match = _SOURCE_ID.fullmatch(value)
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def read_filtered(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load the filter stage's ``.npz`` and check that its arrays agree with each other."""
    arrays = read_npz(path, required=FILTERED_ARRAYS)
    count = len(arrays["indices"])
    for name in FILTERED_ARRAYS:
        if len(arrays[name]) != count:
            raise ValueError(
                f"{path}: array {name} has {len(arrays[name])} entries but indices has {count}; "
                "rerun the filter stage (dvc repro --force filter)"
            )
    for name in ("images", "originals"):
        if arrays[name].shape[1:] != (28, 28):
            raise ValueError(f"{path}: array {name} has shape {arrays[name].shape}, expected (N, 28, 28)")
    if len(np.unique(arrays["indices"])) != count:
        raise ValueError(f"{path}: indices contains duplicates, so source ids would not be unique")
    for name in ("labels", "predictions"):
        values = arrays[name]
        if count and (values.min() < 0 or values.max() > 9):
            raise ValueError(f"{path}: array {name} has values outside 0 to 9 ({values.min()} to {values.max()})")
    return arrays


def image_png(image: np.ndarray, scale: int) -> bytes:
    """Encode a [0, 1] image as an 8-bit greyscale PNG, enlarged ``scale`` times by repeating pixels.

    Nearest-neighbour enlargement keeps every MNIST pixel a sharp square, so a
    person sees the exact pixels the model saw instead of a smoothed digit.
    """
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def choice_result(choice: str) -> list[dict[str, Any]]:
    """Return the ``result`` of an annotation or prediction that selects ``choice``."""
    return [{
        "from_name": CONTROL_NAME,
        "to_name": IMAGE_NAME,
        "type": "choices",
        "value": {"choices": [choice]},
    }]


def make_task(split: str, index: int, png: bytes, original_label: int, prediction: int, model_version: str) -> dict:
    """Return one task in Label Studio's import format, with the generator's prediction as a pre-annotation."""
    return {
        "data": {
            IMAGE_NAME: png_data_uri(png),
            "split": split,
            "source_id": source_id(split, index),
            "mnist_index": int(index),
            "original_label": int(original_label),
        },
        "predictions": [{"model_version": model_version, "result": choice_result(str(int(prediction)))}],
    }


def label_config() -> str:
    """Return the labelling config: the image, the bilingual instructions and a single choice of 0 to 9 or unreadable.

    The original label is in each task's data but not shown, so that it does
    not sway the person's judgement.
    """
    headers = []
    for english, japanese in INSTRUCTIONS:
        headers.append(f"    <Header size=\"6\" value={quoteattr(english)}/>")
        headers.append(f"    <Header size=\"6\" value={quoteattr(japanese)}/>")
    hotkeys = {str(digit): str(digit) for digit in range(10)}
    hotkeys[UNREADABLE] = "u"
    choices = [f"    <Choice value=\"{choice}\" hotkey=\"{hotkeys[choice]}\"/>" for choice in CHOICES]
    return "\n".join([
        "<View>",
        "  <View style=\"margin-bottom: 1em\">",
        *headers,
        "  </View>",
        f"  <Image name=\"{IMAGE_NAME}\" value=\"${IMAGE_NAME}\" zoom=\"true\" smoothing=\"false\"/>",
        f"  <Choices name=\"{CONTROL_NAME}\" toName=\"{IMAGE_NAME}\" choice=\"single-radio\" "
        "required=\"true\" showInline=\"true\">",
        *choices,
        "  </Choices>",
        "</View>",
        "",
    ])


def write_export(
    filtered: dict[str, np.ndarray],
    split: str,
    out_dir: str | os.PathLike,
    scale: int,
    model_version: str,
) -> int:
    """Write ``tasks.json``, ``config.xml`` and ``images/<source_id>.png`` of one split; return the task count.

    The directory is replaced as a whole, so images of an earlier run that the
    filter no longer keeps do not linger.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is invalid: expected one of {', '.join(SPLITS)}")

    tasks = []
    with atomic_dir(out_dir) as tmp:
        images_dir = tmp / IMAGES_DIR
        images_dir.mkdir()
        for index, image, original_label, prediction in zip(
            filtered["indices"], filtered["images"], filtered["labels"], filtered["predictions"], strict=True
        ):
            png = image_png(image, scale)
            (images_dir / f"{source_id(split, index)}.png").write_bytes(png)
            tasks.append(make_task(split, index, png, original_label, prediction, model_version))

        (tmp / TASKS_FILE).write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / CONFIG_FILE).write_text(label_config(), encoding="utf-8")

    log.info("%s: %d Label Studio tasks written to %s", split, len(tasks), out_dir)
    return len(tasks)


# ---------------------------------------------------------------------------
# Import: Label Studio exports to one label per image


@dataclass(frozen=True)
class Vote:
    """One submitted annotation of an image, with what the tie rule and error messages need."""

    choice: str
    task_id: Any
    annotation_id: Any
    time: datetime | None
    path: Path
    order: int


@dataclass
class ExportSummary:
    """Votes per source id, and counts of what was read and set aside."""

    votes: dict[str, list[Vote]]
    files: int = 0
    tasks: int = 0
    empty: int = 0
    duplicates: int = 0
    # (task id, annotation id) of cancelled annotations, so that one in two export files counts once.
    cancelled_keys: set = field(default_factory=set)

    @property
    def cancelled(self) -> int:
        return len(self.cancelled_keys)


def _task_name(task: Any, position: int) -> str:
    task_id = task.get("id") if isinstance(task, dict) else None
    return f"task {task_id}" if task_id is not None else f"task at position {position} (no id)"


def _parse_time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as error:
        raise ExportError(f"{where}: timestamp {value!r} is invalid: {error}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _annotation_choice(annotation: dict, where: str) -> str | None:
    """Return the chosen label of one annotation, or None when its result is empty."""
    result = annotation.get("result")
    if result is None or result == []:
        return None
    if not isinstance(result, list):
        raise ExportError(f"{where}: result must be a list, got {type(result).__name__}")

    choices = [item for item in result if isinstance(item, dict) and item.get("from_name") == CONTROL_NAME]
    if len(choices) != 1:
        names = sorted({str(item.get("from_name")) for item in result if isinstance(item, dict)})
        raise ExportError(
            f"{where}: expected one result from the {CONTROL_NAME!r} control, found {len(choices)} "
            f"(controls in the result: {', '.join(names) or 'none'}); "
            f"the export comes from a project with another labelling config than {CONFIG_FILE}"
        )
    value = choices[0].get("value")
    selected = value.get("choices") if isinstance(value, dict) else None
    if not isinstance(selected, list) or len(selected) != 1:
        raise ExportError(f"{where}: expected exactly one selected choice, got {selected!r}")
    choice = selected[0]
    if choice not in CHOICES:
        raise ExportError(
            f"{where}: label {choice!r} is invalid: expected one of {', '.join(CHOICES)}. "
            "Correct the annotation in Label Studio and export again"
        )
    return choice


def _check_task_source(task: dict, split: str, kept: set[str], where: str) -> str:
    """Return the task's source id after checking that it is one of this split's kept images."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise ExportError(
            f"{where}: has no 'data' object; expected Label Studio's JSON export (not JSON_MIN or CSV)"
        )
    value = data.get("source_id")
    parsed = parse_source_id(value)
    if parsed is None:
        raise ExportError(
            f"{where}: data.source_id {value!r} is missing or invalid (expected 'train-<index>' or "
            "'test-<index>'); the task was not created by labelstudio_export"
        )
    task_split = parsed[0]
    if data.get("split", task_split) != task_split:
        raise ExportError(
            f"{where}: data.split {data.get('split')!r} contradicts source_id {value}; "
            "the task was edited by hand, so restore it from tasks.json or remove it"
        )
    if task_split != split:
        raise ExportError(
            f"{where}: is from the {task_split!r} split (source_id {value}) but this folder contains "
            f"{split!r} exports; move the file to labels/{task_split}/"
        )
    if value not in kept:
        raise ExportError(
            f"{where}: source_id {value} is not among the {len(kept)} images that the filter kept for "
            f"{split}; the export belongs to another run or project. Remove the task from the file, or pull "
            "again with `shapnoise labelstudio pull`, which leaves out tasks of earlier runs"
        )
    return value


def _read_export_file(path: Path, split: str, kept: set[str], summary: ExportSummary, order: int) -> int:
    """Add the votes of one export file to ``summary``; return the next vote order number."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExportError(
            f"{path}: invalid JSON ({error}); export the project again in Label Studio's JSON format"
        ) from error
    if not isinstance(tasks, list):
        raise ExportError(
            f"{path}: expected a list of tasks (Label Studio's JSON export), got a {type(tasks).__name__}"
        )

    for position, task in enumerate(tasks):
        where = f"{path}: {_task_name(task, position)}"
        if not isinstance(task, dict):
            raise ExportError(f"{where}: expected an object, got {type(task).__name__}")
        key = _check_task_source(task, split, kept, where)
        annotations = task.get("annotations", [])
        if not isinstance(annotations, list):
            raise ExportError(f"{where}: annotations must be a list, got {type(annotations).__name__}")
        summary.tasks += 1

        for number, annotation in enumerate(annotations):
            if not isinstance(annotation, dict):
                raise ExportError(f"{where}: annotation {number} must be an object")
            annotation_where = f"{where}, annotation {annotation.get('id', f'at position {number}')}"
            if annotation.get("was_cancelled"):
                has_ids = task.get("id") is not None and annotation.get("id") is not None
                summary.cancelled_keys.add((task.get("id"), annotation.get("id")) if has_ids else (path, order))
                order += 1
                continue
            choice = _annotation_choice(annotation, annotation_where)
            if choice is None:
                summary.empty += 1
                continue
            time = _parse_time(annotation.get("updated_at") or annotation.get("created_at"), annotation_where)
            summary.votes.setdefault(key, []).append(
                Vote(choice, task.get("id"), annotation.get("id"), time, path, order)
            )
            order += 1
    return order


def _recency(vote: Vote) -> tuple:
    """Sort key of the tie rule: timestamp, then annotation id (ids grow on one server), then reading order."""
    time = vote.time or datetime.min.replace(tzinfo=timezone.utc)
    annotation_id = vote.annotation_id if isinstance(vote.annotation_id, int) else -1
    return time, annotation_id, vote.order


def _drop_duplicate_votes(votes: list[Vote]) -> tuple[list[Vote], int]:
    """Keep one vote per (task id, annotation id): the same annotation can sit in an old and a new export."""
    latest: dict[tuple, Vote] = {}
    unique = []
    for vote in votes:
        if vote.task_id is None or vote.annotation_id is None:
            unique.append(vote)
            continue
        key = (vote.task_id, vote.annotation_id)
        if key not in latest or _recency(vote) > _recency(latest[key]):
            latest[key] = vote
    unique.extend(latest.values())
    unique.sort(key=lambda vote: vote.order)
    return unique, len(votes) - len(unique)


def read_exports(labels_dir: str | os.PathLike, split: str, kept: Iterable[str]) -> ExportSummary:
    """Read every ``*.json`` export in ``labels_dir`` and collect the votes per source id.

    Other files (a ``.gitkeep``, notes) are skipped. Any task that names an
    image outside ``kept``, comes from the other split or carries a label
    outside 0 to 9 and unreadable raises ``ExportError`` with the file and task id.
    """
    labels_dir = Path(labels_dir)
    kept = set(kept)
    summary = ExportSummary(votes={})
    if not labels_dir.is_dir():
        log.warning("%s: folder not found, so no image has a human label", labels_dir)
        return summary

    # Label Studio's CSV and TSV exports carry no task ids this import can check, so they are not read.
    # The warning keeps such a file from being mistaken for labels that count.
    for path in sorted(labels_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".jsonl", ".xml"):
            log.warning("%s: not read; export the project in Label Studio's JSON format "
                        "(shapnoise labelstudio pull does) and remove this file", path)

    order = 0
    for path in sorted(labels_dir.glob("*.json")):
        order = _read_export_file(path, split, kept, summary, order)
        summary.files += 1

    for key, votes in summary.votes.items():
        summary.votes[key], duplicates = _drop_duplicate_votes(votes)
        summary.duplicates += duplicates
    if summary.duplicates:
        log.warning("%s: %d annotations appear in more than one export file; each counts once",
                    labels_dir, summary.duplicates)
    log.info("%s: %d export files, %d tasks, %d images with votes, %d cancelled and %d empty annotations ignored",
             labels_dir, summary.files, summary.tasks, len(summary.votes), summary.cancelled, summary.empty)
    return summary


def decide_label(votes: list[Vote]) -> tuple[str, bool]:
    """Return the majority choice of ``votes`` and whether a tie had to be broken.

    A tie goes to the most recent annotation among the tied choices (see
    ``_recency``), because a later annotation is usually a second look or a
    reviewer's correction.
    """
    if not votes:
        raise ValueError("decide_label needs at least one vote")
    counts = Counter(vote.choice for vote in votes)
    top = max(counts.values())
    leaders = {choice for choice, count in counts.items() if count == top}
    if len(leaders) == 1:
        return leaders.pop(), False
    latest = max((vote for vote in votes if vote.choice in leaders), key=_recency)
    return latest.choice, True


def relabel(
    filtered: dict[str, np.ndarray],
    split: str,
    summary: ExportSummary,
    fallback: str,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Return the relabelled arrays of one split and the counts for its metrics file."""
    if fallback not in FALLBACK_POLICIES:
        raise ValueError(f"fallback {fallback!r} is invalid: expected one of {', '.join(FALLBACK_POLICIES)}")

    keep, labels, sources = [], [], []
    counts = Counter()
    for row, (index, original, prediction) in enumerate(
        zip(filtered["indices"], filtered["labels"], filtered["predictions"], strict=True)
    ):
        votes = summary.votes.get(source_id(split, index), [])
        if votes:
            choice, tied = decide_label(votes)
            counts["tied_votes"] += int(tied)
            if choice == UNREADABLE:
                counts["dropped_unreadable"] += 1
                continue
            keep.append(row)
            labels.append(int(choice))
            sources.append(HUMAN)
            counts["human_labelled"] += 1
            counts["human_changed_label"] += int(int(choice) != int(original))
            continue

        if fallback == "drop":
            counts["dropped_by_fallback"] += 1
            continue
        keep.append(row)
        labels.append(int(original) if fallback == "original" else int(prediction))
        sources.append(FALLBACK)
        counts["fallback_labelled"] += 1

    rows = np.asarray(keep, dtype=np.int64)
    arrays = {
        "indices": filtered["indices"][rows].astype(np.int64),
        "images": filtered["images"][rows].astype(np.float32).reshape(-1, 28, 28),
        "labels": np.asarray(labels, dtype=np.int64),
        "original_labels": filtered["labels"][rows].astype(np.int64),
        "predictions": filtered["predictions"][rows].astype(np.int64),
        "label_source": np.asarray(sources, dtype="<U8"),
    }
    metrics = {
        "kept": int(len(filtered["indices"])),
        "human_labelled": counts["human_labelled"],
        "fallback_labelled": counts["fallback_labelled"],
        "dropped_unreadable": counts["dropped_unreadable"],
        "dropped_by_fallback": counts["dropped_by_fallback"],
        "human_changed_label": counts["human_changed_label"],
        "relabelled": int(len(rows)),
        "tied_votes": counts["tied_votes"],
        "cancelled_annotations": summary.cancelled,
        "export_files": summary.files,
    }
    return arrays, metrics


# ---------------------------------------------------------------------------
# Pulled exports: a stable form for git


def normalize_export(
    tasks: list[dict], known: Iterable[str], keep_images: bool = False
) -> tuple[list[dict], int]:
    """Return the tasks of a pulled export in a stable order, and how many stale tasks were left out.

    Kept: annotated tasks whose source id is in ``known`` (the current
    ``tasks.json``). Left out: tasks nobody annotated yet, which carry no label,
    and tasks of images that an earlier filter run kept but the current one
    does not. Unless ``keep_images``, ``data.image`` is removed because it
    repeats the PNG of the export stage and would make each pull megabytes larger.
    """
    known = set(known)
    kept_tasks = []
    stale = 0
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or data.get("source_id") not in known:
            stale += 1
            continue
        if not task.get("annotations"):
            continue
        task = dict(task, data=dict(data))
        if not keep_images:
            task["data"].pop(IMAGE_NAME, None)
        task["annotations"] = sorted(task["annotations"], key=lambda annotation: _id_key(annotation.get("id")))
        kept_tasks.append(task)
    kept_tasks.sort(key=lambda task: (task["data"]["source_id"], _id_key(task.get("id"))))
    return kept_tasks, stale


def _id_key(value: Any) -> tuple:
    """Sort key that orders Label Studio's integer ids numerically and puts anything else after them."""
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value))


def export_bytes(tasks: list[dict]) -> bytes:
    """Serialise tasks with sorted keys, so that equal content gives equal bytes."""
    return (json.dumps(tasks, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def task_source_ids(tasks_path: str | os.PathLike) -> list[str]:
    """Return the source ids of the tasks in an export stage's ``tasks.json``."""
    tasks_path = Path(tasks_path)
    if not tasks_path.exists():
        raise FileNotFoundError(
            f"{tasks_path}: file not found; run the export stage first (dvc repro labelstudio_export)"
        )
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    return [task["data"]["source_id"] for task in tasks]
